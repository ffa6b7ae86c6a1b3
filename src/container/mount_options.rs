//! fstab-style mount options (`["nosuid", "ro", "mode=755", "rslave"]`) split into what each
//! mount(2) call needs: the flags of the mount itself, the propagation changes (each its own call)
//! and the filesystem's data string.

use nix::mount::MsFlags;

use super::sys::{
    MOUNT_ATTR_NODEV, MOUNT_ATTR_NODIRATIME, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID,
    MOUNT_ATTR_NOSYMFOLLOW, MOUNT_ATTR_RDONLY,
};

/// Options that set (or, for their negation, clear) one mount flag, as in mount(8) and runc.
const FLAG_OPTIONS: &[(&str, bool, MsFlags)] = &[
    // (name, clears the flag, flag)
    ("acl", false, MsFlags::MS_POSIXACL),
    ("async", true, MsFlags::MS_SYNCHRONOUS),
    ("atime", true, MsFlags::MS_NOATIME),
    ("bind", false, MsFlags::MS_BIND),
    ("defaults", false, MsFlags::empty()),
    ("dev", true, MsFlags::MS_NODEV),
    ("diratime", true, MsFlags::MS_NODIRATIME),
    ("dirsync", false, MsFlags::MS_DIRSYNC),
    ("exec", true, MsFlags::MS_NOEXEC),
    ("iversion", false, MsFlags::MS_I_VERSION),
    ("lazytime", false, MsFlags::MS_LAZYTIME),
    ("loud", true, MsFlags::MS_SILENT),
    ("mand", false, MsFlags::MS_MANDLOCK),
    ("noacl", true, MsFlags::MS_POSIXACL),
    ("noatime", false, MsFlags::MS_NOATIME),
    ("nodev", false, MsFlags::MS_NODEV),
    ("nodiratime", false, MsFlags::MS_NODIRATIME),
    ("noexec", false, MsFlags::MS_NOEXEC),
    ("noiversion", true, MsFlags::MS_I_VERSION),
    ("nolazytime", true, MsFlags::MS_LAZYTIME),
    ("nomand", true, MsFlags::MS_MANDLOCK),
    ("norelatime", true, MsFlags::MS_RELATIME),
    ("nostrictatime", true, MsFlags::MS_STRICTATIME),
    ("nosuid", false, MsFlags::MS_NOSUID),
    ("rbind", false, MsFlags::MS_BIND.union(MsFlags::MS_REC)),
    ("relatime", false, MsFlags::MS_RELATIME),
    ("remount", false, MsFlags::MS_REMOUNT),
    ("ro", false, MsFlags::MS_RDONLY),
    ("rw", true, MsFlags::MS_RDONLY),
    ("silent", false, MsFlags::MS_SILENT),
    ("strictatime", false, MsFlags::MS_STRICTATIME),
    ("suid", true, MsFlags::MS_NOSUID),
    ("sync", false, MsFlags::MS_SYNCHRONOUS),
];

/// Propagation options: each becomes a separate mount(2) call after the mount.
const PROPAGATION_OPTIONS: &[(&str, MsFlags)] = &[
    ("private", MsFlags::MS_PRIVATE),
    ("rprivate", MsFlags::MS_PRIVATE.union(MsFlags::MS_REC)),
    ("shared", MsFlags::MS_SHARED),
    ("rshared", MsFlags::MS_SHARED.union(MsFlags::MS_REC)),
    ("slave", MsFlags::MS_SLAVE),
    ("rslave", MsFlags::MS_SLAVE.union(MsFlags::MS_REC)),
    ("unbindable", MsFlags::MS_UNBINDABLE),
    ("runbindable", MsFlags::MS_UNBINDABLE.union(MsFlags::MS_REC)),
];

/// Recursive mount attributes: after the mount, one mount_setattr(2) with `AT_RECURSIVE` sets
/// (or, for the negation, clears) the attribute on the mount and every mount below it, as runc
/// does. A plain `ro` bind leaves the submounts of an `rbind` writable; `rro` does not.
const RECURSIVE_OPTIONS: &[(&str, bool, u64)] = &[
    // (name, clears the attribute, attribute)
    ("rro", false, MOUNT_ATTR_RDONLY),
    ("rrw", true, MOUNT_ATTR_RDONLY),
    ("rnosuid", false, MOUNT_ATTR_NOSUID),
    ("rsuid", true, MOUNT_ATTR_NOSUID),
    ("rnodev", false, MOUNT_ATTR_NODEV),
    ("rdev", true, MOUNT_ATTR_NODEV),
    ("rnoexec", false, MOUNT_ATTR_NOEXEC),
    ("rexec", true, MOUNT_ATTR_NOEXEC),
    ("rnodiratime", false, MOUNT_ATTR_NODIRATIME),
    ("rdiratime", true, MOUNT_ATTR_NODIRATIME),
    ("rnosymfollow", false, MOUNT_ATTR_NOSYMFOLLOW),
    ("rsymfollow", true, MOUNT_ATTR_NOSYMFOLLOW),
];

/// Idmapped bind mounts (with the mount's `uidMappings`/`gidMappings`): `idmap` maps the top
/// mount only, `ridmap` every mount of the tree.
const IDMAP_OPTIONS: &[(&str, bool)] = &[("idmap", false), ("ridmap", true)];

/// Options with a meaning this runtime does not implement yet (the recursive atime family
/// needs the exclusive MOUNT_ATTR__ATIME handling, nosymfollow a mount flag nix lacks,
/// tmpcopyup a copy step). Passing them on as data would fail obscurely or, worse, silently
/// do less than asked.
const UNSUPPORTED_OPTIONS: &[&str] = &[
    "tmpcopyup",
    "nosymfollow",
    "rrelatime",
    "rnorelatime",
    "rnoatime",
    "ratime",
    "rstrictatime",
    "rnostrictatime",
];

/// Every option name this module gives a meaning to (flags, propagation, recursive attributes,
/// idmap), in table order: the mount options the features document (`-info`) lists. Anything
/// else is either refused (see [`MountOptions::unsupported`]) or passed to the filesystem as
/// data.
pub fn known_options() -> impl Iterator<Item = &'static str> {
    let flags = FLAG_OPTIONS.iter().map(|(name, ..)| *name);
    let propagation = PROPAGATION_OPTIONS.iter().map(|(name, _)| *name);
    let recursive = RECURSIVE_OPTIONS.iter().map(|(name, ..)| *name);
    let idmap = IDMAP_OPTIONS.iter().map(|(name, _)| *name);
    flags.chain(propagation).chain(recursive).chain(idmap)
}

/// Mount attributes for mount_setattr(2): what to set and what to clear.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MountAttrs {
    pub set: u64,
    pub clear: u64,
}

impl MountAttrs {
    pub fn is_empty(&self) -> bool {
        self.set == 0 && self.clear == 0
    }
}

/// Parsed mount options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags for the mount(2) call itself (MS_RDONLY, MS_NOSUID, MS_BIND, MS_REC, ...).
    pub flags: MsFlags,
    /// Propagation changes, in spec order; each needs its own mount(2) call after the mount.
    pub propagation: Vec<MsFlags>,
    /// Everything else (`mode=755`, `size=65536k`, `lowerdir=...`): the filesystem's data.
    pub data: Vec<String>,
    /// Recursive attributes (`rro`, `rnosuid`, ...), applied with `AT_RECURSIVE` after the mount.
    pub recursive: MountAttrs,
    /// `idmap` (false) or `ridmap` (true): the mount is idmapped with its own mappings, only
    /// its top or recursively. `None` when neither is given.
    pub idmap: Option<bool>,
    /// Options recognised but not supported yet; the caller decides whether that is an error.
    pub unsupported: Vec<String>,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self {
            flags: MsFlags::empty(),
            propagation: Vec::new(),
            data: Vec::new(),
            recursive: MountAttrs::default(),
            idmap: None,
            unsupported: Vec::new(),
        }
    }
}

impl MountOptions {
    /// Splits `options`; later options win over earlier ones (`ro` then `rw` is read-write).
    pub fn parse(options: &[String]) -> Self {
        let mut parsed = Self::default();
        for option in options {
            parsed.add(option);
        }
        parsed
    }

    fn add(&mut self, option: &str) {
        if let Some(&(_, clear, flag)) = FLAG_OPTIONS.iter().find(|(name, ..)| *name == option) {
            if clear {
                self.flags.remove(flag);
            } else {
                self.flags.insert(flag);
            }
        } else if let Some(&(_, flag)) = PROPAGATION_OPTIONS.iter().find(|(n, _)| *n == option) {
            self.propagation.push(flag);
        } else if let Some(&(_, clear, attr)) =
            RECURSIVE_OPTIONS.iter().find(|(n, ..)| *n == option)
        {
            if clear {
                self.recursive.set &= !attr;
                self.recursive.clear |= attr;
            } else {
                self.recursive.clear &= !attr;
                self.recursive.set |= attr;
            }
        } else if let Some(&(_, recursive)) = IDMAP_OPTIONS.iter().find(|(n, _)| *n == option) {
            self.idmap = Some(recursive);
        } else if UNSUPPORTED_OPTIONS.contains(&option) {
            self.unsupported.push(option.to_owned());
        } else if !option.is_empty() {
            self.data.push(option.to_owned());
        }
    }

    /// The data argument of mount(2): the filesystem options joined with commas.
    pub fn data_string(&self) -> String {
        self.data.join(",")
    }

    /// Whether this is a bind mount (`bind` or `rbind`).
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    /// Flags a bind mount ignores on its first call, so that a second remount call is needed
    /// to apply them (`ro`, `nosuid`, `noexec`, ...).
    pub fn bind_remount_flags(&self) -> MsFlags {
        self.flags - (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(options: &[&str]) -> MountOptions {
        let owned: Vec<String> = options.iter().map(|s| s.to_string()).collect();
        MountOptions::parse(&owned)
    }

    #[test]
    fn flags_data_and_propagation_are_separated() {
        let o = parse(&[
            "nosuid",
            "noexec",
            "nodev",
            "mode=755",
            "size=65536k",
            "rslave",
        ]);
        assert_eq!(
            o.flags,
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV
        );
        assert_eq!(o.data_string(), "mode=755,size=65536k");
        assert_eq!(o.propagation, [MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        assert!(o.unsupported.is_empty());
    }

    #[test]
    fn devpts_options_keep_their_data() {
        let o = parse(&[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC);
        assert_eq!(o.data_string(), "newinstance,ptmxmode=0666,mode=0620,gid=5");
    }

    #[test]
    fn later_options_win() {
        assert!(!parse(&["ro", "rw"]).flags.contains(MsFlags::MS_RDONLY));
        assert!(parse(&["rw", "ro"]).flags.contains(MsFlags::MS_RDONLY));
        assert!(
            !parse(&["nosuid", "suid"])
                .flags
                .contains(MsFlags::MS_NOSUID)
        );
        assert!(
            !parse(&["noatime", "atime"])
                .flags
                .contains(MsFlags::MS_NOATIME)
        );
    }

    #[test]
    fn every_documented_flag_is_known() {
        let cases = [
            ("ro", MsFlags::MS_RDONLY),
            ("nosuid", MsFlags::MS_NOSUID),
            ("nodev", MsFlags::MS_NODEV),
            ("noexec", MsFlags::MS_NOEXEC),
            ("relatime", MsFlags::MS_RELATIME),
            ("strictatime", MsFlags::MS_STRICTATIME),
            ("noatime", MsFlags::MS_NOATIME),
            ("sync", MsFlags::MS_SYNCHRONOUS),
            ("dirsync", MsFlags::MS_DIRSYNC),
            ("remount", MsFlags::MS_REMOUNT),
            ("mand", MsFlags::MS_MANDLOCK),
            ("bind", MsFlags::MS_BIND),
            ("rbind", MsFlags::MS_BIND | MsFlags::MS_REC),
        ];
        for (name, flag) in cases {
            let o = parse(&[name]);
            assert_eq!(o.flags, flag, "{name}");
            assert!(o.data.is_empty(), "{name} leaked into data");
        }
        assert_eq!(parse(&["rw", "defaults"]).flags, MsFlags::empty());
    }

    #[test]
    fn every_propagation_option_is_a_separate_call_in_order() {
        let o = parse(&[
            "private",
            "rprivate",
            "shared",
            "rshared",
            "slave",
            "rslave",
            "unbindable",
            "runbindable",
        ]);
        let rec = MsFlags::MS_REC;
        assert_eq!(
            o.propagation,
            [
                MsFlags::MS_PRIVATE,
                MsFlags::MS_PRIVATE | rec,
                MsFlags::MS_SHARED,
                MsFlags::MS_SHARED | rec,
                MsFlags::MS_SLAVE,
                MsFlags::MS_SLAVE | rec,
                MsFlags::MS_UNBINDABLE,
                MsFlags::MS_UNBINDABLE | rec,
            ]
        );
        assert_eq!(o.flags, MsFlags::empty());
    }

    #[test]
    fn bind_with_ro_needs_a_remount() {
        let o = parse(&["rbind", "ro", "nosuid"]);
        assert!(o.is_bind());
        assert_eq!(
            o.bind_remount_flags(),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID
        );
        assert!(parse(&["rbind"]).bind_remount_flags().is_empty());
    }

    #[test]
    fn unsupported_options_are_set_aside() {
        let o = parse(&["rnoatime", "tmpcopyup", "nosuid"]);
        assert_eq!(o.unsupported, ["rnoatime", "tmpcopyup"]);
        assert!(o.data.is_empty());
        assert_eq!(o.flags, MsFlags::MS_NOSUID);
    }

    #[test]
    fn recursive_attributes_are_collected_and_later_ones_win() {
        let o = parse(&["rbind", "rro", "rnosuid", "rsuid", "rnoexec"]);
        assert_eq!(o.recursive.set, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOEXEC);
        assert_eq!(o.recursive.clear, MOUNT_ATTR_NOSUID);
        assert_eq!(o.flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert!(o.data.is_empty() && o.unsupported.is_empty());
        let o = parse(&["rro", "rrw"]);
        assert_eq!(
            o.recursive,
            MountAttrs {
                set: 0,
                clear: MOUNT_ATTR_RDONLY
            }
        );
        assert!(parse(&["ro"]).recursive.is_empty());
    }

    #[test]
    fn idmap_options_say_how_far_the_mapping_goes() {
        assert_eq!(parse(&["bind"]).idmap, None);
        assert_eq!(parse(&["bind", "idmap"]).idmap, Some(false));
        assert_eq!(parse(&["rbind", "ridmap"]).idmap, Some(true));
    }

    #[test]
    fn every_known_option_has_a_meaning_and_none_is_unsupported() {
        for name in known_options() {
            let o = parse(&[name]);
            assert!(
                o.data.is_empty(),
                "{name} would go to the filesystem as data"
            );
            assert!(
                o.unsupported.is_empty(),
                "{name} is both known and unsupported"
            );
        }
        for name in UNSUPPORTED_OPTIONS {
            assert!(!known_options().any(|known| known == *name), "{name}");
        }
    }
}
