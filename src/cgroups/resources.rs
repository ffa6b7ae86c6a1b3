//! The resource limits of `linux.resources`, dispatched per controller to its v1 hierarchy or
//! the cgroup2 directory: memory (limit, reservation, swap, swappiness, OOM killer), pids, cpu
//! (shares/weight, quota/period, realtime), cpuset; blkio/io, hugetlb and `unified` are in
//! their own modules, device rules in `devices`. Values follow runc's conventions (0 means
//! "not set", -1 "no limit") and its v1-to-v2 conversions.

use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

use super::files::write_file;
use super::{Cgroup, CgroupError};

/// Which interface a controller is reached through.
pub(super) enum Target<'a> {
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
            self.apply_cpuset(cpu)?;
        }
        if let Some(block_io) = resources.block_io() {
            self.apply_block_io(block_io)?;
        }
        if let Some(limits) = resources
            .hugepage_limits()
            .as_deref()
            .filter(|l| !l.is_empty())
        {
            self.apply_hugetlb(limits)?;
        }
        if let Some(unified) = resources.unified().as_ref().filter(|u| !u.is_empty()) {
            self.apply_unified(unified)?;
        }
        Ok(())
    }

    fn apply_memory(&self, memory: &LinuxMemory) -> Result<(), CgroupError> {
        let set = |value: Option<i64>| value.filter(|v| *v != 0);
        let (limit, swap) = (set(memory.limit()), set(memory.swap()));
        let reservation = set(memory.reservation());
        let tuning = memory.swappiness().is_some() || memory.disable_oom_killer() == Some(true);
        if limit.is_none() && swap.is_none() && reservation.is_none() && !tuning {
            return Ok(());
        }
        if memory.kernel().is_some() || memory.kernel_tcp().is_some() {
            log::warn!("linux.resources.memory.kernel/kernelTCP are deprecated and not applied");
        }
        match self.find_controller("memory")? {
            Target::V1(dir) => apply_memory_v1(dir, memory, limit, swap, reservation),
            Target::V2(dir) => apply_memory_v2(dir, memory, limit, swap, reservation),
        }
    }

    /// `cpus` and `mems` of the cpuset controller (same file names on v1 and v2).
    fn apply_cpuset(&self, cpu: &LinuxCpu) -> Result<(), CgroupError> {
        let cpus = cpu.cpus().as_deref().filter(|c| !c.is_empty());
        let mems = cpu.mems().as_deref().filter(|m| !m.is_empty());
        if cpus.is_none() && mems.is_none() {
            return Ok(());
        }
        let dir = match self.find_controller("cpuset")? {
            Target::V1(dir) | Target::V2(dir) => dir,
        };
        if let Some(cpus) = cpus {
            write_resource(dir, "cpuset.cpus", cpus)?;
        }
        if let Some(mems) = mems {
            write_resource(dir, "cpuset.mems", mems)?;
        }
        Ok(())
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
        let realtime = (
            cpu.realtime_runtime().filter(|r| *r != 0),
            cpu.realtime_period().filter(|p| *p != 0),
        );
        let has_realtime = realtime != (None, None);
        if shares.is_none() && quota.is_none() && period.is_none() && !has_realtime {
            return Ok(());
        }
        match self.find_controller("cpu")? {
            Target::V1(dir) => {
                apply_cpu_v1(dir, shares, quota, period)?;
                apply_realtime_v1(dir, realtime)
            }
            Target::V2(_) if has_realtime => Err(CgroupError::Unsupported {
                what: "linux.resources.cpu realtime limits on cgroup v2",
            }),
            Target::V2(dir) => apply_cpu_v2(dir, shares, quota, period),
        }
    }

    pub(super) fn find_controller(
        &self,
        controller: &'static str,
    ) -> Result<Target<'_>, CgroupError> {
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

/// The realtime budget: the period first, as the runtime may not exceed it.
fn apply_realtime_v1(dir: &Path, realtime: (Option<i64>, Option<u64>)) -> Result<(), CgroupError> {
    if let Some(period) = realtime.1 {
        write_resource(dir, "cpu.rt_period_us", &period.to_string())?;
    }
    if let Some(runtime) = realtime.0 {
        write_resource(dir, "cpu.rt_runtime_us", &runtime.to_string())?;
    }
    Ok(())
}

/// v1 memory: limit and memory+swap limit in the order the kernel accepts (memsw may never be
/// below the limit: raising both writes memsw first, lowering writes the limit first, as runc
/// does), then the soft limit, swappiness and the OOM killer switch.
fn apply_memory_v1(
    dir: &Path,
    memory: &LinuxMemory,
    limit: Option<i64>,
    swap: Option<i64>,
    reservation: Option<i64>,
) -> Result<(), CgroupError> {
    const LIMIT: &str = "memory.limit_in_bytes";
    const MEMSW: &str = "memory.memsw.limit_in_bytes";
    if swap.is_some() && !dir.join(MEMSW).exists() {
        return Err(CgroupError::Unsupported {
            what: "linux.resources.memory.swap (the kernel has no swap accounting)",
        });
    }
    match (limit, swap) {
        (Some(limit), Some(swap)) => {
            let current: i64 = std::fs::read_to_string(dir.join(LIMIT))
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(i64::MAX);
            if swap == -1 || current < swap {
                write_resource(dir, MEMSW, &swap.to_string())?;
                write_resource(dir, LIMIT, &limit.to_string())?;
            } else {
                write_resource(dir, LIMIT, &limit.to_string())?;
                write_resource(dir, MEMSW, &swap.to_string())?;
            }
        }
        (Some(limit), None) => write_resource(dir, LIMIT, &limit.to_string())?,
        (None, Some(swap)) => write_resource(dir, MEMSW, &swap.to_string())?,
        (None, None) => {}
    }
    if let Some(reservation) = reservation {
        write_resource(dir, "memory.soft_limit_in_bytes", &reservation.to_string())?;
    }
    if let Some(swappiness) = memory.swappiness() {
        if swappiness > 100 {
            return Err(CgroupError::Unsupported {
                what: "linux.resources.memory.swappiness above 100",
            });
        }
        write_resource(dir, "memory.swappiness", &swappiness.to_string())?;
    }
    if memory.disable_oom_killer() == Some(true) {
        write_resource(dir, "memory.oom_control", "1")?;
    }
    Ok(())
}

/// v2 memory: `memory.max`, `memory.low` (the reservation) and `memory.swap.max`, which
/// counts swap alone where the spec's `swap` is memory plus swap.
fn apply_memory_v2(
    dir: &Path,
    memory: &LinuxMemory,
    limit: Option<i64>,
    swap: Option<i64>,
    reservation: Option<i64>,
) -> Result<(), CgroupError> {
    if let Some(swap) = swap {
        write_resource(dir, "memory.swap.max", &swap_to_v2(swap, limit)?)?;
    }
    if let Some(limit) = limit {
        write_resource(dir, "memory.max", &v2_limit(limit))?;
    }
    if let Some(reservation) = reservation {
        write_resource(dir, "memory.low", &v2_limit(reservation))?;
    }
    if memory.swappiness().is_some() || memory.disable_oom_killer() == Some(true) {
        log::warn!("memory swappiness and disableOOMKiller have no cgroup v2 equivalent");
    }
    Ok(())
}

/// runc's ConvertMemorySwapToCgroupV2Value: `swap` (memory + swap) minus the memory limit.
pub fn swap_to_v2(swap: i64, limit: Option<i64>) -> Result<String, CgroupError> {
    if swap == -1 {
        return Ok("max".into());
    }
    match limit {
        Some(limit) if limit > 0 && swap >= limit => Ok((swap - limit).to_string()),
        Some(limit) if limit > 0 => Err(CgroupError::Unsupported {
            what: "linux.resources.memory.swap below the memory limit",
        }),
        _ => Err(CgroupError::Unsupported {
            what: "linux.resources.memory.swap without a memory limit on cgroup v2",
        }),
    }
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
pub(super) fn v2_limit(limit: i64) -> String {
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
