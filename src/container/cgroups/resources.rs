//! The common resource limits of `linux.resources`: memory limit, pids limit, cpu shares,
//! cpu quota and period. Values follow runc's conventions (0 means "not set", -1 "no limit").
//! Device rules are in `devices`; other limits (blkio/io, hugetlb, cpuset, rdma, unified) are not
//! applied yet.

use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

use super::files::write_file;
use super::{Cgroup, CgroupError};

/// Which interface a controller is reached through.
enum Target<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

impl Cgroup {
    /// Applies the memory limit, pids limit, cpu shares and cpu quota/period present in
    /// `resources`; absent ones are left alone. A controller is written on its v1 hierarchy
    /// when it has one, else in the cgroup2 directory.
    pub fn apply_resources(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        if let Some(memory) = resources.memory() {
            self.apply_memory(memory)?;
        }
        if let Some(pids) = resources.pids() {
            self.apply_pids(pids)?;
        }
        if let Some(cpu) = resources.cpu() {
            self.apply_cpu(cpu)?;
        }
        Ok(())
    }

    fn apply_memory(&self, memory: &LinuxMemory) -> Result<(), CgroupError> {
        let Some(limit) = memory.limit().filter(|l| *l != 0) else {
            return Ok(());
        };
        match self.find_controller("memory")? {
            Target::V1(dir) => write_resource(dir, "memory.limit_in_bytes", &limit.to_string()),
            Target::V2(dir) => write_resource(dir, "memory.max", &v2_limit(limit)),
        }
    }

    fn apply_pids(&self, pids: &LinuxPids) -> Result<(), CgroupError> {
        let limit = pids.limit();
        if limit == 0 {
            return Ok(());
        }
        let dir = match self.find_controller("pids")? {
            Target::V1(dir) | Target::V2(dir) => dir,
        };
        write_resource(dir, "pids.max", &v2_limit(limit))
    }

    fn apply_cpu(&self, cpu: &LinuxCpu) -> Result<(), CgroupError> {
        let shares = cpu.shares().filter(|s| *s != 0);
        let quota = cpu.quota().filter(|q| *q != 0);
        let period = cpu.period().filter(|p| *p != 0);
        if shares.is_none() && quota.is_none() && period.is_none() {
            return Ok(());
        }
        match self.find_controller("cpu")? {
            Target::V1(dir) => apply_cpu_v1(dir, shares, quota, period),
            Target::V2(dir) => apply_cpu_v2(dir, shares, quota, period),
        }
    }

    fn find_controller(&self, controller: &'static str) -> Result<Target<'_>, CgroupError> {
        if let Some(dir) = self.v1_dir(controller) {
            return Ok(Target::V1(dir));
        }
        self.unified_dir()
            .map(Target::V2)
            .ok_or(CgroupError::ControllerMissing { controller })
    }
}

fn apply_cpu_v1(
    dir: &Path,
    shares: Option<u64>,
    quota: Option<i64>,
    period: Option<u64>,
) -> Result<(), CgroupError> {
    if let Some(shares) = shares {
        write_resource(dir, "cpu.shares", &shares.to_string())?;
    }
    // A period shorter than the current one can be refused (EINVAL) until the quota is
    // lowered too: then set the quota first and the period after it, as runc does.
    let mut period_pending = None;
    if let Some(period) = period {
        match write_resource(dir, "cpu.cfs_period_us", &period.to_string()) {
            Ok(()) => {}
            Err(CgroupError::WriteResource { source, .. })
                if source.raw_os_error() == Some(Errno::EINVAL as i32) && quota.is_some() =>
            {
                period_pending = Some(period);
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(quota) = quota {
        write_resource(dir, "cpu.cfs_quota_us", &quota.to_string())?;
    }
    if let Some(period) = period_pending {
        write_resource(dir, "cpu.cfs_period_us", &period.to_string())?;
    }
    Ok(())
}

/// `cpu.weight` from the shares, and `cpu.max` as `"<quota|max> [period]"` (runc's format: a
/// period alone resets the quota to `max`).
fn apply_cpu_v2(
    dir: &Path,
    shares: Option<u64>,
    quota: Option<i64>,
    period: Option<u64>,
) -> Result<(), CgroupError> {
    if let Some(shares) = shares {
        write_resource(dir, "cpu.weight", &cpu_shares_to_weight(shares).to_string())?;
    }
    if quota.is_none() && period.is_none() {
        return Ok(());
    }
    let mut max = match quota {
        Some(q) if q > 0 => q.to_string(),
        _ => "max".to_string(),
    };
    if let Some(period) = period {
        max.push_str(&format!(" {period}"));
    }
    write_resource(dir, "cpu.max", &max)
}

/// runc's conversion of cgroup v1 `cpu.shares` (2..=262144) to cgroup v2 `cpu.weight`
/// (1..=10000): `1 + ((shares - 2) * 9999) / 262142`. 0 stays 0 ("not set"); shares outside
/// the v1 range are first clamped to it, as the kernel clamps them on v1 (runc would underflow
/// on 0 < shares < 2).
pub fn cpu_shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// cgroup2 (and v1 `pids.max`) spell "no limit" as `max`.
fn v2_limit(limit: i64) -> String {
    if limit < 0 {
        "max".to_string()
    } else {
        limit.to_string()
    }
}

pub(super) fn write_resource(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path: PathBuf = dir.join(file);
    write_file(&path, value).map_err(|source: io::Error| CgroupError::WriteResource {
        path,
        value: value.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn convert_shares_to_weight() {
        assert_eq!(cpu_shares_to_weight(0), 0);
        assert_eq!(cpu_shares_to_weight(1), 1);
        assert_eq!(cpu_shares_to_weight(2), 1);
        assert_eq!(cpu_shares_to_weight(512), 20);
        assert_eq!(cpu_shares_to_weight(1024), 39);
        assert_eq!(cpu_shares_to_weight(262_144), 10_000);
        assert_eq!(cpu_shares_to_weight(u64::MAX), 10_000);
    }

    #[test]
    fn spell_limits() {
        assert_eq!(v2_limit(-1), "max");
        assert_eq!(v2_limit(4096), "4096");
    }
}
