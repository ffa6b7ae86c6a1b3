//! `linux.resources.unified`: cgroup2 files written verbatim into the container's cgroup2
//! directory, after the other limits (so they can refine them), as runc does. A key must be a
//! plain file name: nothing that could reach outside the directory.

use std::collections::HashMap;

use super::resources::write_resource;
use super::{Cgroup, CgroupError};

impl Cgroup {
    pub(super) fn apply_unified(
        &self,
        unified: &HashMap<String, String>,
    ) -> Result<(), CgroupError> {
        let dir = self.unified_dir().ok_or(CgroupError::Unsupported {
            what: "linux.resources.unified without a cgroup2 hierarchy",
        })?;
        let mut keys: Vec<&String> = unified.keys().collect();
        keys.sort();
        for key in keys {
            if !is_plain_file_name(key) {
                return Err(CgroupError::InvalidUnifiedKey { key: key.clone() });
            }
            write_resource(dir, key, &unified[key])?;
        }
        Ok(())
    }
}

/// `controller.file`: no path separator, no `..`, not empty.
fn is_plain_file_name(key: &str) -> bool {
    !key.is_empty() && !key.contains('/') && key != "." && key != ".." && key.contains('.')
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_plain_file_names() {
        assert!(super::is_plain_file_name("memory.high"));
        assert!(!super::is_plain_file_name("../memory.max"));
        assert!(!super::is_plain_file_name("sub/memory.max"));
        assert!(!super::is_plain_file_name(".."));
        assert!(!super::is_plain_file_name("nodot"));
    }
}
