//! Device access rules (`linux.resources.devices`) on the v1 `devices` controller.
//!
//! containerd sends "deny everything" first, then the devices a container may use. They are
//! written in order, each to `devices.deny` or `devices.allow`, before the init is cloned into
//! the cgroup, then the devices every container gets (the OCI default devices the init creates,
//! and `mknod` of any device, which grants no access by itself), as runc does. runc also allows
//! `/dev/net/tun` by default; nothing in the spec asks for it, so it is not allowed here.
//!
//! On cgroup2 device access is an eBPF program attached to the cgroup, built from the same
//! rules (`device_program`).

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::device_program::{self, DeviceRule};
use super::resources::write_resource;
use super::{Cgroup, CgroupError};

/// Allowed for every container after the spec's own rules: (type, major, minor, access).
const DEFAULT_ALLOWED: [(char, Option<i64>, Option<i64>, &str); 9] = [
    ('c', None, None, "m"),
    ('b', None, None, "m"),
    ('c', Some(1), Some(3), "rwm"), // /dev/null
    ('c', Some(1), Some(5), "rwm"), // /dev/zero
    ('c', Some(1), Some(7), "rwm"), // /dev/full
    ('c', Some(1), Some(8), "rwm"), // /dev/random
    ('c', Some(1), Some(9), "rwm"), // /dev/urandom
    ('c', Some(5), Some(0), "rwm"), // /dev/tty
    ('c', Some(5), Some(2), "rwm"), // /dev/ptmx
];
/// The container's own devpts (`/dev/pts/*`).
const PTS: (char, Option<i64>, Option<i64>, &str) = ('c', Some(136), None, "rwm");

/// Whether the rules could be enforced.
#[derive(Debug, PartialEq, Eq)]
pub enum DeviceRules {
    Applied,
    /// There are rules but neither a v1 devices hierarchy nor a cgroup2 directory.
    NotEnforced,
    /// The spec has no rules: nothing to do.
    None,
}

impl Cgroup {
    /// Writes the spec's device rules, in order, then the default allowed devices.
    pub fn apply_device_rules(
        &self,
        rules: &[LinuxDeviceCgroup],
    ) -> Result<DeviceRules, CgroupError> {
        if rules.is_empty() {
            return Ok(DeviceRules::None);
        }
        let Some(dir) = self.v1_dir("devices") else {
            return self.attach_device_program(rules);
        };
        for rule in rules {
            let Some(line) = rule_line(rule) else {
                continue;
            };
            let file = if rule.allow() {
                "devices.allow"
            } else {
                "devices.deny"
            };
            write_resource(dir, file, &line)?;
        }
        for (typ, major, minor, access) in DEFAULT_ALLOWED.into_iter().chain([PTS]) {
            write_resource(
                dir,
                "devices.allow",
                &format_rule(typ, major, minor, access),
            )?;
        }
        Ok(DeviceRules::Applied)
    }
}

impl Cgroup {
    /// cgroup2: the spec's rules and the defaults as one eBPF program on the cgroup.
    fn attach_device_program(
        &self,
        rules: &[LinuxDeviceCgroup],
    ) -> Result<DeviceRules, CgroupError> {
        let Some(dir) = self.unified_dir() else {
            return Ok(DeviceRules::NotEnforced);
        };
        let defaults =
            DEFAULT_ALLOWED
                .into_iter()
                .chain([PTS])
                .map(|(kind, major, minor, access)| DeviceRule {
                    allow: true,
                    kind: Some(kind),
                    major: major.map(|n| n as u32),
                    minor: minor.map(|n| n as u32),
                    access: access.into(),
                });
        let all: Vec<DeviceRule> = rules
            .iter()
            .filter_map(program_rule)
            .chain(defaults)
            .collect();
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
        device_program::attach(&device_program::build(&all), &fd)
            .map_err(|reason| CgroupError::DeviceProgram { reason })?;
        Ok(DeviceRules::Applied)
    }
}

/// A spec rule for the cgroup2 program; None for FIFOs (not devices to the kernel).
fn program_rule(rule: &LinuxDeviceCgroup) -> Option<DeviceRule> {
    let kind = match rule.typ().unwrap_or_default() {
        LinuxDeviceType::A => None,
        LinuxDeviceType::B => Some('b'),
        LinuxDeviceType::C | LinuxDeviceType::U => Some('c'),
        LinuxDeviceType::P => return None,
    };
    let number = |n: Option<i64>| n.filter(|n| *n >= 0).map(|n| n as u32);
    Some(DeviceRule {
        allow: rule.allow(),
        kind,
        major: number(rule.major()),
        minor: number(rule.minor()),
        access: rule
            .access()
            .clone()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "rwm".into()),
    })
}

/// The v1 line for a spec rule; None for a type the controller does not know (FIFOs).
fn rule_line(rule: &LinuxDeviceCgroup) -> Option<String> {
    let typ = match rule.typ().unwrap_or_default() {
        LinuxDeviceType::A => 'a',
        LinuxDeviceType::B => 'b',
        LinuxDeviceType::C | LinuxDeviceType::U => 'c',
        LinuxDeviceType::P => return None,
    };
    let access = rule
        .access()
        .as_deref()
        .filter(|a| !a.is_empty())
        .unwrap_or("rwm");
    Some(format_rule(typ, rule.major(), rule.minor(), access))
}

fn format_rule(typ: char, major: Option<i64>, minor: Option<i64>, access: &str) -> String {
    let number = |n: Option<i64>| match n {
        Some(n) if n >= 0 => n.to_string(),
        _ => "*".to_string(),
    };
    format!("{typ} {}:{} {access}", number(major), number(minor))
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

    #[test]
    fn spec_rules_become_v1_lines() {
        assert_eq!(
            rule_line(&rule(false, None, None, None)).unwrap(),
            "a *:* rwm"
        );
        assert_eq!(
            rule_line(&rule(true, Some(LinuxDeviceType::C), Some(1), Some(3))).unwrap(),
            "c 1:3 rwm"
        );
        assert_eq!(
            rule_line(&rule(true, Some(LinuxDeviceType::C), Some(136), None)).unwrap(),
            "c 136:* rwm"
        );
        assert_eq!(
            rule_line(&rule(true, Some(LinuxDeviceType::B), Some(-1), Some(-1))).unwrap(),
            "b *:* rwm"
        );
        assert_eq!(
            rule_line(&rule(true, Some(LinuxDeviceType::P), None, None)),
            None
        );
        let mut read_only = rule(true, Some(LinuxDeviceType::C), Some(10), Some(200));
        read_only.set_access(Some("r".into()));
        assert_eq!(rule_line(&read_only).unwrap(), "c 10:200 r");
    }
}
