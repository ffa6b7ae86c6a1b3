//! `linux.resources.hugepageLimits`: one limit per page size, `hugetlb.<size>.limit_in_bytes`
//! on v1 and `hugetlb.<size>.max` on v2. The size is the kernel's own name (`2MB`, `1GB`): a
//! size this kernel does not have has no file, and the write fails naming it.
//!
//! Where no hierarchy has the hugetlb controller (a hybrid host whose cgroup2 mount does not
//! enable it), the limits are skipped with a warning, as runc skips an unmounted controller:
//! the kubelet sends a limit for every page size the machine has, and failing every pod on
//! such a host would not make any container safer (nothing can enforce the limit there).

use oci_spec::runtime::LinuxHugepageLimit;

use super::resources::{Target, v2_limit, write_resource};
use super::{Cgroup, CgroupError};

impl Cgroup {
    pub(super) fn apply_hugetlb(&self, limits: &[LinuxHugepageLimit]) -> Result<(), CgroupError> {
        let target = self.find_controller("hugetlb")?;
        for limit in limits {
            let size = limit.page_size();
            if size.is_empty() || size.contains('/') || size.contains('.') {
                return Err(CgroupError::Unsupported {
                    what: "a hugepage size that is not a kernel page size name",
                });
            }
            match &target {
                Target::V1(dir) => write_resource(
                    dir,
                    &format!("hugetlb.{size}.limit_in_bytes"),
                    &limit.limit().to_string(),
                )?,
                Target::V2(dir) => {
                    let file = format!("hugetlb.{size}.max");
                    let controllers = std::fs::read_to_string(dir.join("cgroup.controllers"));
                    let enabled =
                        controllers.is_ok_and(|c| c.split_whitespace().any(|n| n == "hugetlb"));
                    if !enabled {
                        log::warn!("no hugetlb controller in {}: {file} not set", dir.display());
                        continue;
                    }
                    write_resource(dir, &file, &v2_limit(limit.limit()))?
                }
            }
        }
        Ok(())
    }
}
