//! Device access rules (`linux.resources.devices`): always a default-deny allow-list.
//!
//! Whatever the spec says, as runc does, the container's devices cgroup gets: "deny
//! everything", then the spec's rules in their order, then the devices every container gets
//! (the OCI default devices the init creates, `/dev/pts/*`, `/dev/ptmx`, and `mknod` of any
//! device, which grants no access by itself). A spec without `linux.resources`, without device
//! rules, or whose rules do not begin with a deny-all (containerd's do) is therefore never left
//! with the host's devices: its own allow rules and the defaults are all it can open. A spec
//! that allows everything (`{"allow": true}`, a privileged container) still gets everything.
//! runc also allows `/dev/net/tun` by default; nothing in the spec asks for it, so it is not
//! allowed here.
//!
//! v1: the rules are written, in order, each to `devices.deny` or `devices.allow` (one open
//! file each; a rule that repeats one of the same run is left out, as it cannot change the
//! list), before the init is cloned into the cgroup. An Update moves from the current list
//! (`devices.list`) to the new one without a moment of "deny everything" for devices both allow: the new
//! exceptions are added first, then what only the old list allowed is taken away (what runc's
//! device emulator does). Where either list is allow-all it is rewritten from the deny-all.
//!
//! cgroup2: device access is an eBPF program attached to the cgroup, built from the same rules
//! (`device_program`). An Update attaches the new program and then detaches the ones it
//! replaces, so programs never stack up and no device both allow is refused in between.

use std::sync::Mutex;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::device_program::{self, DeviceRule};
use super::files::read_optional;
use super::resources::write_resource;
use super::{Cgroup, CgroupError};

/// Allowed for every container after the spec's own rules: (type, major, minor, access).
const DEFAULT_ALLOWED: [(char, Option<u32>, Option<u32>, &str); 10] = [
    ('c', None, None, "m"),
    ('b', None, None, "m"),
    ('c', Some(1), Some(3), "rwm"), // /dev/null
    ('c', Some(1), Some(5), "rwm"), // /dev/zero
    ('c', Some(1), Some(7), "rwm"), // /dev/full
    ('c', Some(1), Some(8), "rwm"), // /dev/random
    ('c', Some(1), Some(9), "rwm"), // /dev/urandom
    ('c', Some(5), Some(0), "rwm"), // /dev/tty
    ('c', Some(5), Some(2), "rwm"), // /dev/ptmx
    ('c', Some(136), None, "rwm"),  // the container's own devpts (`/dev/pts/*`)
];

/// Updates of device rules happen one at a time: a cgroup2 replacement queries, attaches and
/// detaches, and a v1 transition reads and writes `devices.list`; two Updates of one container
/// interleaving there could leave two programs or a list neither asked for.
static DEVICE_UPDATES: Mutex<()> = Mutex::new(());

/// Whether the rules could be enforced.
#[derive(Debug, PartialEq, Eq)]
pub enum DeviceRules {
    Applied,
    /// Neither a v1 devices hierarchy nor a cgroup2 directory.
    NotEnforced,
}

/// What the cgroup gets for the spec's `rules`: deny everything, the rules in order, the
/// defaults.
pub(super) fn effective_rules(rules: &[LinuxDeviceCgroup]) -> Vec<DeviceRule> {
    let deny_all = DeviceRule {
        allow: false,
        kind: None,
        major: None,
        minor: None,
        access: "rwm".into(),
    };
    let defaults = DEFAULT_ALLOWED
        .into_iter()
        .map(|(kind, major, minor, access)| DeviceRule {
            allow: true,
            kind: Some(kind),
            major,
            minor,
            access: access.into(),
        });
    std::iter::once(deny_all)
        .chain(rules.iter().filter_map(spec_rule))
        .chain(defaults)
        .collect()
}

impl Cgroup {
    /// Create: the container's device rules (see the module's comment), before anything runs
    /// in the cgroup.
    pub fn apply_device_rules(
        &self,
        rules: &[LinuxDeviceCgroup],
    ) -> Result<DeviceRules, CgroupError> {
        // No lock: nothing else knows this cgroup before Create returns.
        let rules = effective_rules(rules);
        if let Some(dir) = self.v1_dir("devices") {
            write_v1_rules(dir, &rules)?;
            return Ok(DeviceRules::Applied);
        }
        self.replace_device_program(&rules)
    }

    /// Update: replaces the device rules of a running container with deny-all, `rules` and
    /// the defaults.
    pub fn update_device_rules(
        &self,
        rules: &[LinuxDeviceCgroup],
    ) -> Result<DeviceRules, CgroupError> {
        let _serial = DEVICE_UPDATES.lock().unwrap_or_else(|e| e.into_inner());
        let rules = effective_rules(rules);
        let Some(dir) = self.v1_dir("devices") else {
            return self.replace_device_program(&rules);
        };
        let list = dir.join("devices.list");
        let read_list = || {
            read_optional(&list)
                .map_err(|source| CgroupError::ReadResource {
                    path: list.clone(),
                    source,
                })
                .map(Option::unwrap_or_default)
        };
        let target = V1List::emulate(&rules);
        match (V1List::parse(&read_list()?), &target) {
            (Some(V1List::DenyAllExcept(have)), V1List::DenyAllExcept(wanted)) => {
                for (allow, line) in transition(&have, wanted) {
                    let file = if allow {
                        "devices.allow"
                    } else {
                        "devices.deny"
                    };
                    write_resource(dir, file, &line)?;
                }
            }
            _ => write_v1_rules(dir, &rules)?,
        }
        // The kernel's list must now be the one asked for; if not (a rule the emulation reads
        // differently), write it again from the deny-all.
        if !V1List::parse(&read_list()?).is_some_and(|now| now.same(&target)) {
            log::warn!(
                "devices: {} differs from the rules after the update; rewriting it from deny-all",
                list.display()
            );
            write_v1_rules(dir, &rules)?;
        }
        Ok(DeviceRules::Applied)
    }
}

/// v1: every rule in order, each to `devices.allow` or `devices.deny`, through one open file
/// each (every write(2) is one rule to the kernel), leaving out the rules that cannot change
/// the list ([`unchanging_rules`]).
fn write_v1_rules(dir: &std::path::Path, rules: &[DeviceRule]) -> Result<(), CgroupError> {
    use std::io::Write;
    let mut allow: Option<std::fs::File> = None;
    let mut deny: Option<std::fs::File> = None;
    let skip = unchanging_rules(rules);
    for (rule, _) in rules.iter().zip(skip).filter(|(_, skip)| !skip) {
        let (name, slot) = if rule.allow {
            ("devices.allow", &mut allow)
        } else {
            ("devices.deny", &mut deny)
        };
        let line = v1_line(rule.kind, rule.major, rule.minor, &rule.access);
        let path = dir.join(name);
        let error = |source| CgroupError::WriteResource {
            path: path.clone(),
            value: line.clone(),
            source,
        };
        let file = match slot {
            Some(file) => file,
            None => slot.insert(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(error)?,
            ),
        };
        file.write_all(line.as_bytes()).map_err(error)?;
    }
    Ok(())
}

/// For each rule, whether writing it cannot change the kernel's list: it repeats a rule
/// written since the last rule of the other kind or for all devices (`a`). Within such a run
/// the kernel only adds access to exceptions (deny-all behaviour, allow rules) or only takes
/// it away (allow-all, deny rules), which repeats do not change; an `a` rule repeated at once
/// resets a list that is already reset. containerd's specs begin with the deny-all that every
/// rule list here begins with, and allow most defaults themselves.
fn unchanging_rules(rules: &[DeviceRule]) -> Vec<bool> {
    let mut run: Vec<&DeviceRule> = Vec::new();
    rules
        .iter()
        .map(|rule| {
            if run.contains(&rule) {
                return true;
            }
            if run.first().is_some_and(|first| first.allow != rule.allow) || rule.kind.is_none() {
                run.clear();
            }
            run.push(rule);
            false
        })
        .collect()
}

impl Cgroup {
    /// cgroup2: the rules as one eBPF program on the cgroup, replacing the ones there.
    fn replace_device_program(&self, rules: &[DeviceRule]) -> Result<DeviceRules, CgroupError> {
        let Some(dir) = self.unified_dir() else {
            return Ok(DeviceRules::NotEnforced);
        };
        let fd = nix::fcntl::open(
            dir,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|errno| CgroupError::OpenDir {
            path: dir.to_owned(),
            source: errno.into(),
        })?;
        device_program::replace(&device_program::build(rules), &fd)
            .map_err(|reason| CgroupError::DeviceProgram { reason })?;
        Ok(DeviceRules::Applied)
    }
}

/// A spec rule in the controller's terms; None for FIFOs (not devices to the kernel: the
/// devices controller never checks them, so the rule neither grants nor withholds anything).
/// A rule for all types (`a`) is about every device whatever its numbers say, as on v1.
fn spec_rule(rule: &LinuxDeviceCgroup) -> Option<DeviceRule> {
    let kind = match rule.typ().unwrap_or_default() {
        LinuxDeviceType::A => None,
        LinuxDeviceType::B => Some('b'),
        LinuxDeviceType::C | LinuxDeviceType::U => Some('c'),
        LinuxDeviceType::P => return None,
    };
    let number = |n: Option<i64>| {
        n.filter(|n| *n >= 0 && kind.is_some())
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
    };
    let access = rule
        .access()
        .as_deref()
        .filter(|a| !a.is_empty() && kind.is_some());
    Some(DeviceRule {
        allow: rule.allow(),
        kind,
        major: number(rule.major()),
        minor: number(rule.minor()),
        access: access.unwrap_or("rwm").into(),
    })
}

/// The v1 line of a rule: `c 1:3 rwm`, `a *:* rwm`.
fn v1_line(kind: Option<char>, major: Option<u32>, minor: Option<u32>, access: &str) -> String {
    let number = |n: Option<u32>| n.map_or_else(|| "*".to_string(), |n| n.to_string());
    format!(
        "{} {}:{} {access}",
        kind.unwrap_or('a'),
        number(major),
        number(minor)
    )
}

/// One exception of a v1 list: type, major, minor (None: `*`), access bits (r 4, w 2, m 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Exception {
    kind: char,
    major: Option<u32>,
    minor: Option<u32>,
    access: u8,
}

impl Exception {
    fn same_device(&self, other: &Exception) -> bool {
        (self.kind, self.major, self.minor) == (other.kind, other.major, other.minor)
    }

    fn line(&self, access: u8) -> String {
        v1_line(
            Some(self.kind),
            self.major,
            self.minor,
            &access_letters(access),
        )
    }
}

/// What a v1 devices cgroup allows, as the kernel keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum V1List {
    /// Everything, but for deny exceptions (which `devices.list` does not show).
    AllowAll,
    /// Nothing but these, in order, each device (type and numbers) once.
    DenyAllExcept(Vec<Exception>),
}

impl V1List {
    /// The kernel's list after writing `rules` in order: `a` resets the behaviour and drops
    /// every exception; a rule of the behaviour's opposite kind adds its access to the
    /// exception of the same device (or adds one); a rule of the same kind takes its access
    /// away from that exception (dropped when none is left). Devices match only when type and
    /// numbers are the same, wildcards included, as in the kernel's `dev_exception_add/rm`.
    fn emulate(rules: &[DeviceRule]) -> V1List {
        let mut allow_all = true;
        let mut exceptions: Vec<Exception> = Vec::new();
        for rule in rules {
            let Some(kind) = rule.kind else {
                allow_all = rule.allow;
                exceptions.clear();
                continue;
            };
            let new = Exception {
                kind,
                major: rule.major,
                minor: rule.minor,
                access: access_bits(&rule.access),
            };
            let existing = exceptions.iter().position(|e| e.same_device(&new));
            if rule.allow != allow_all {
                match existing {
                    Some(i) => exceptions[i].access |= new.access,
                    None => exceptions.push(new),
                }
            } else if let Some(i) = existing {
                exceptions[i].access &= !new.access;
                if exceptions[i].access == 0 {
                    exceptions.remove(i);
                }
            }
        }
        if allow_all {
            V1List::AllowAll
        } else {
            V1List::DenyAllExcept(exceptions)
        }
    }

    /// The same list, whatever the order of its exceptions.
    fn same(&self, other: &V1List) -> bool {
        let sorted = |list: &V1List| match list {
            V1List::AllowAll => None,
            V1List::DenyAllExcept(e) => {
                let mut e = e.clone();
                e.sort_by_key(|e| (e.kind, e.major, e.minor));
                Some(e)
            }
        };
        sorted(self) == sorted(other)
    }

    /// `devices.list`: `a *:* rwm` alone for allow-all, else one exception per line (none for
    /// deny-all). None for a line it cannot read.
    fn parse(text: &str) -> Option<V1List> {
        let mut exceptions = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut fields = line.split_whitespace();
            let (kind, numbers, access) = (fields.next()?, fields.next()?, fields.next()?);
            if kind == "a" {
                return Some(V1List::AllowAll);
            }
            let (major, minor) = numbers.split_once(':')?;
            let number = |n: &str| match n {
                "*" => Some(None),
                n => n.parse().ok().map(Some),
            };
            exceptions.push(Exception {
                kind: kind.chars().next().filter(|k| "bc".contains(*k))?,
                major: number(major)?,
                minor: number(minor)?,
                access: access_bits(access),
            });
        }
        Some(V1List::DenyAllExcept(exceptions))
    }
}

/// The writes (allow?, line) that turn the deny-all list `have` into `wanted` with no moment
/// where a device both allow is refused: every wanted exception first, then what only `have`
/// grants is denied.
fn transition(have: &[Exception], wanted: &[Exception]) -> Vec<(bool, String)> {
    let mut writes: Vec<(bool, String)> = wanted.iter().map(|e| (true, e.line(e.access))).collect();
    for old in have {
        let kept = wanted
            .iter()
            .find(|w| w.same_device(old))
            .map_or(0, |w| w.access);
        let extra = old.access & !kept;
        if extra != 0 {
            writes.push((false, old.line(extra)));
        }
    }
    writes
}

fn access_bits(access: &str) -> u8 {
    access.chars().fold(0, |bits, c| {
        bits | match c {
            'r' => 4,
            'w' => 2,
            'm' => 1,
            _ => 0,
        }
    })
}

fn access_letters(bits: u8) -> String {
    [(4, 'r'), (2, 'w'), (1, 'm')]
        .into_iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, c)| c)
        .collect()
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    use super::*;

    fn rule(
        allow: bool,
        typ: Option<LinuxDeviceType>,
        major: Option<i64>,
        minor: Option<i64>,
    ) -> LinuxDeviceCgroup {
        let mut builder = LinuxDeviceCgroupBuilder::default().allow(allow);
        if let Some(typ) = typ {
            builder = builder.typ(typ);
        }
        if let Some(major) = major {
            builder = builder.major(major);
        }
        if let Some(minor) = minor {
            builder = builder.minor(minor);
        }
        builder.build().unwrap()
    }

    fn line(rule: &LinuxDeviceCgroup) -> Option<String> {
        spec_rule(rule).map(|r| v1_line(r.kind, r.major, r.minor, &r.access))
    }

    fn lines(rules: &[DeviceRule]) -> Vec<String> {
        rules
            .iter()
            .map(|r| {
                let file = if r.allow { "allow" } else { "deny" };
                format!("{file} {}", v1_line(r.kind, r.major, r.minor, &r.access))
            })
            .collect()
    }

    #[test]
    fn spec_rules_become_v1_lines() {
        assert_eq!(line(&rule(false, None, None, None)).unwrap(), "a *:* rwm");
        assert_eq!(
            line(&rule(true, Some(LinuxDeviceType::C), Some(1), Some(3))).unwrap(),
            "c 1:3 rwm"
        );
        assert_eq!(
            line(&rule(true, Some(LinuxDeviceType::C), Some(136), None)).unwrap(),
            "c 136:* rwm"
        );
        assert_eq!(
            line(&rule(true, Some(LinuxDeviceType::B), Some(-1), Some(-1))).unwrap(),
            "b *:* rwm"
        );
        assert_eq!(
            line(&rule(true, Some(LinuxDeviceType::P), None, None)),
            None
        );
        assert_eq!(
            line(&rule(false, Some(LinuxDeviceType::A), Some(8), None)).unwrap(),
            "a *:* rwm",
            "`a` is every device, whatever the numbers"
        );
        let mut read_only = rule(true, Some(LinuxDeviceType::C), Some(10), Some(200));
        read_only.set_access(Some("r".into()));
        assert_eq!(line(&read_only).unwrap(), "c 10:200 r");
    }

    /// The defaults, as written after the spec's rules.
    const DEFAULT_LINES: [&str; 10] = [
        "allow c *:* m",
        "allow b *:* m",
        "allow c 1:3 rwm",
        "allow c 1:5 rwm",
        "allow c 1:7 rwm",
        "allow c 1:8 rwm",
        "allow c 1:9 rwm",
        "allow c 5:0 rwm",
        "allow c 5:2 rwm",
        "allow c 136:* rwm",
    ];

    #[test]
    fn every_rule_list_begins_with_deny_all_and_ends_with_the_defaults() {
        let expect = |middle: &[&str]| {
            let mut all = vec!["deny a *:* rwm".to_string()];
            all.extend(middle.iter().map(|l| l.to_string()));
            all.extend(DEFAULT_LINES.iter().map(|l| l.to_string()));
            all
        };
        assert_eq!(lines(&effective_rules(&[])), expect(&[]), "no rules");
        let only_allow = [rule(true, Some(LinuxDeviceType::C), Some(4), Some(1))];
        assert_eq!(
            lines(&effective_rules(&only_allow)),
            expect(&["allow c 4:1 rwm"]),
            "rules without a deny-all"
        );
        let containerd = [
            rule(false, None, None, None),
            rule(true, Some(LinuxDeviceType::C), Some(1), Some(3)),
        ];
        assert_eq!(
            lines(&effective_rules(&containerd)),
            expect(&["deny a *:* rwm", "allow c 1:3 rwm"]),
            "containerd's rules, deny-all first, as they are"
        );
        let privileged = [rule(true, None, None, None)];
        assert_eq!(
            V1List::emulate(&effective_rules(&privileged)),
            V1List::AllowAll,
            "allow-all in the spec is allow-all"
        );
    }

    fn exception(kind: char, major: Option<u32>, minor: Option<u32>, access: &str) -> Exception {
        Exception {
            kind,
            major,
            minor,
            access: access_bits(access),
        }
    }

    #[test]
    fn only_rules_that_cannot_change_the_list_are_left_out() {
        let device = |allow, kind, major, access: &str| DeviceRule {
            allow,
            kind,
            major,
            minor: Some(3),
            access: access.into(),
        };
        let deny_all = DeviceRule {
            minor: None,
            ..device(false, None, None, "rwm")
        };
        let null = device(true, Some('c'), Some(1), "rwm");
        let deny_read = device(false, Some('c'), Some(1), "r");
        let rules = [
            deny_all.clone(),
            deny_all.clone(), // resets a list that is already reset
            null.clone(),
            null.clone(), // repeats an allow of the same run
            deny_read.clone(),
            null.clone(), // after a deny: gives read back
            deny_all.clone(),
            null,
            deny_read.clone(),
            deny_all, // after an allow in between: clears the list
        ];
        let skip = unchanging_rules(&rules);
        assert_eq!(
            skip,
            [
                false, true, false, true, false, false, false, false, false, false
            ]
        );
        let kept = |rules: &[DeviceRule], skip: &[bool]| -> Vec<DeviceRule> {
            rules
                .iter()
                .zip(skip)
                .filter(|(_, skip)| !**skip)
                .map(|(rule, _)| rule.clone())
                .collect()
        };
        assert_eq!(
            V1List::emulate(&kept(&rules, &skip)),
            V1List::emulate(&rules)
        );
        // containerd's spec (deny-all, then allows of the default devices) with the defaults.
        let spec = [
            rule(false, None, None, None),
            rule(true, Some(LinuxDeviceType::C), Some(1), Some(3)),
            rule(true, Some(LinuxDeviceType::C), Some(5), Some(2)),
        ];
        let effective = effective_rules(&spec);
        let skip = unchanging_rules(&effective);
        assert_eq!(skip.iter().filter(|s| **s).count(), 3, "{effective:?}");
        assert_eq!(
            V1List::emulate(&kept(&effective, &skip)),
            V1List::emulate(&effective)
        );
    }

    #[test]
    fn emulation_follows_the_kernels_exception_list() {
        let rules =
            |spec: &[LinuxDeviceCgroup]| spec.iter().filter_map(spec_rule).collect::<Vec<_>>();
        let mut write_only = rule(false, Some(LinuxDeviceType::C), Some(1), Some(3));
        write_only.set_access(Some("w".into()));
        let list = V1List::emulate(&rules(&[
            rule(false, None, None, None),
            rule(true, Some(LinuxDeviceType::C), Some(1), Some(3)),
            rule(true, Some(LinuxDeviceType::C), Some(1), None),
            write_only,
            rule(true, Some(LinuxDeviceType::B), Some(8), Some(0)),
            rule(false, Some(LinuxDeviceType::B), Some(8), Some(0)),
        ]));
        assert_eq!(
            list,
            V1List::DenyAllExcept(vec![
                exception('c', Some(1), Some(3), "rm"),
                exception('c', Some(1), None, "rwm"),
            ])
        );
        assert_eq!(
            V1List::parse("c 1:3 rm\nc 1:* rwm\n").unwrap(),
            list,
            "devices.list reads back the same"
        );
        assert_eq!(V1List::parse("a *:* rwm\n").unwrap(), V1List::AllowAll);
        assert_eq!(V1List::parse("").unwrap(), V1List::DenyAllExcept(vec![]));
        assert_eq!(V1List::parse("x 1"), None);
    }

    #[test]
    fn a_transition_adds_before_it_takes_away() {
        let have = [
            exception('c', Some(1), Some(3), "rwm"),
            exception('c', Some(10), Some(200), "rwm"),
            exception('b', Some(8), Some(0), "rw"),
        ];
        let wanted = [
            exception('c', Some(1), Some(3), "rwm"),
            exception('c', Some(4), Some(1), "rw"),
            exception('b', Some(8), Some(0), "r"),
        ];
        let writes = transition(&have, &wanted);
        let text: Vec<String> = writes
            .iter()
            .map(|(allow, line)| format!("{} {line}", if *allow { "allow" } else { "deny" }))
            .collect();
        assert_eq!(
            text,
            [
                "allow c 1:3 rwm",
                "allow c 4:1 rw",
                "allow b 8:0 r",
                "deny c 10:200 rwm",
                "deny b 8:0 w",
            ]
        );
        // Replayed on the old list, the writes give the new one.
        let mut replay: Vec<DeviceRule> = have
            .iter()
            .map(|e| DeviceRule {
                allow: true,
                kind: Some(e.kind),
                major: e.major,
                minor: e.minor,
                access: access_letters(e.access),
            })
            .collect();
        replay.insert(0, effective_rules(&[])[0].clone());
        for (allow, line) in writes {
            let e = V1List::parse(&line).unwrap();
            let V1List::DenyAllExcept(e) = e else {
                panic!()
            };
            replay.push(DeviceRule {
                allow,
                kind: Some(e[0].kind),
                major: e[0].major,
                minor: e[0].minor,
                access: access_letters(e[0].access),
            });
        }
        assert!(V1List::emulate(&replay).same(&V1List::DenyAllExcept(wanted.to_vec())));
    }
}
