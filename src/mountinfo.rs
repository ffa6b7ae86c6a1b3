//! `/proc/self/mountinfo` parsing (proc(5)): which mounts exist, their root inside the
//! filesystem, their propagation and their filesystem type. The one parser of the mount table:
//! the cgroup hierarchies (`cgroups::Hierarchies`) and the container's rootfs setup both use it.

use std::path::PathBuf;

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Field 4: the path inside the filesystem that is this mount's root.
    pub root: PathBuf,
    /// Field 5: where it is mounted, relative to the process's root.
    pub mount_point: PathBuf,
    /// The optional fields (`shared:N`, `master:N`, ...).
    pub optional_fields: Vec<String>,
    /// The filesystem type after the ` - ` separator (`cgroup`, `cgroup2`, `proc`, ...).
    pub fstype: String,
    /// Per-superblock options (for cgroup v1: the controllers, `name=systemd`, ...).
    pub super_options: Vec<String>,
}

impl MountInfo {
    /// Whether the mount is in a shared peer group (mounts below it propagate).
    pub fn is_shared(&self) -> bool {
        self.optional_fields
            .iter()
            .any(|f| f.starts_with("shared:"))
    }
}

/// Parses the whole file; malformed lines are skipped (the kernel does not write any).
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(parse_line).collect()
}

/// One line; None when it is malformed.
pub fn parse_line(line: &str) -> Option<MountInfo> {
    let (before, after) = line.split_once(" - ")?;
    let mut fields = before.split(' ');
    let root = fields.nth(3)?;
    let mount_point = fields.next()?;
    let _mount_options = fields.next()?;
    let optional_fields = fields.map(str::to_owned).collect();
    let mut after = after.split(' ');
    let fstype = after.next()?;
    let _source = after.next()?;
    let super_options = after.next()?.split(',').map(str::to_owned).collect();
    Some(MountInfo {
        root: PathBuf::from(unescape(root)),
        mount_point: PathBuf::from(unescape(mount_point)),
        optional_fields,
        fstype: fstype.to_owned(),
        super_options,
    })
}

/// Undoes the kernel's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(digits)) => {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push(value as u8);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
90 22 0:50 /sub /run/with\\040space rw master:3 shared:7 - tmpfs tmpfs rw
";

    #[test]
    fn fields_are_parsed() {
        let mounts = parse_mountinfo(SAMPLE);
        assert_eq!(mounts.len(), 6);
        assert_eq!(mounts[0].mount_point, PathBuf::from("/"));
        assert!(mounts[0].is_shared());
        assert!(!mounts[1].is_shared());
        assert_eq!(mounts[2].fstype, "cgroup");
        assert_eq!(mounts[2].super_options, ["rw", "cpu"]);
        assert_eq!(mounts[3].super_options, ["rw", "xattr", "name=systemd"]);
        assert_eq!(mounts[4].fstype, "cgroup2");
    }

    #[test]
    fn escapes_and_optional_fields() {
        let mounts = parse_mountinfo(SAMPLE);
        let last = &mounts[5];
        assert_eq!(last.root, PathBuf::from("/sub"));
        assert_eq!(last.mount_point, PathBuf::from("/run/with space"));
        assert_eq!(last.optional_fields, ["master:3", "shared:7"]);
        assert!(last.is_shared());
    }

    #[test]
    fn malformed_lines_are_skipped() {
        assert!(parse_mountinfo("garbage\n1 2 3\n").is_empty());
    }
}
