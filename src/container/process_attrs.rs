//! Small per-process attributes of `process`: oom_score_adj, no_new_privs, umask, I/O
//! priority, scheduler, and the execution domain (`linux.personality`).

use std::io::Write;

use nix::errno::Errno;
use nix::libc;
use nix::sys::prctl;
use nix::sys::stat::{Mode, umask};
use oci_spec::runtime::{
    IOPriorityClass, LinuxIOPriority, LinuxPersonality, LinuxPersonalityDomain, LinuxSchedulerFlag,
    LinuxSchedulerPolicy, Scheduler,
};

use super::error::InitError;

/// Writes `process.oomScoreAdj` to `/proc/self/oom_score_adj`.
///
/// Call it while the process still has the runtime's privileges and the host's /proc (for an
/// exec, in the helper before it joins the container's mount namespace: the container's /proc
/// is the container's to rearrange, and a write through it could land on another file,
/// CVE-2025-52881). The value is inherited by the process the helper clones. Lowering
/// the value needs CAP_SYS_RESOURCE. Where that is missing (root on some CI machines lacks it
/// in its bounding set) this fails with EACCES, reported as such, never ignored: the container
/// would otherwise run with a different OOM priority than asked.
pub fn set_oom_score_adj(value: i32) -> Result<(), InitError> {
    let error = |error| InitError::OomScoreAdj { value, error };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/oom_score_adj")
        .map_err(error)?;
    file.write_all(value.to_string().as_bytes()).map_err(error)
}

/// `process.noNewPrivileges`: execve can then grant no privileges (setuid bits, file caps).
pub fn set_no_new_privileges() -> Result<(), InitError> {
    prctl::set_no_new_privs().map_err(InitError::NoNewPrivileges)
}

/// `process.user.umask`, or 0022 as runc when the spec has none.
pub fn set_umask(spec_umask: Option<u32>) {
    let mask = spec_umask.unwrap_or(0o022) & 0o777;
    umask(Mode::from_bits_truncate(mask));
}

/// `process.ioPriority`: the I/O scheduling class and level (ioprio_set on this process).
pub fn set_io_priority(io: &LinuxIOPriority) -> Result<(), InitError> {
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_SHIFT: i64 = 13;
    let class = match io.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    let level = io.priority();
    if !(0..=7).contains(&level) {
        return Err(InitError::InvalidSpec(format!(
            "process.ioPriority.priority {level} is outside 0..7"
        )));
    }
    let value = (class << IOPRIO_CLASS_SHIFT) | level;
    // Raw because neither nix nor rustix wraps ioprio_set.
    // SAFETY: ioprio_set takes three integers; 0 is this process.
    let ret = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) };
    if ret == -1 {
        return Err(attr_error("ioprio_set (process.ioPriority)", Errno::last()));
    }
    Ok(())
}

/// `struct sched_attr` from `<linux/sched/types.h>` (version 1, 56 bytes).
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

/// `process.scheduler`: policy, nice, priority, flags and the deadline parameters, with one
/// sched_setattr call, as the spec describes them.
pub fn set_scheduler(scheduler: &Scheduler) -> Result<(), InitError> {
    let policy = match scheduler.policy() {
        LinuxSchedulerPolicy::SchedOther => 0,
        LinuxSchedulerPolicy::SchedFifo => 1,
        LinuxSchedulerPolicy::SchedRr => 2,
        LinuxSchedulerPolicy::SchedBatch => 3,
        LinuxSchedulerPolicy::SchedIso => 4,
        LinuxSchedulerPolicy::SchedIdle => 5,
        LinuxSchedulerPolicy::SchedDeadline => 6,
    };
    let flags = scheduler.flags().iter().flatten().fold(0u64, |all, flag| {
        all | match flag {
            LinuxSchedulerFlag::SchedResetOnFork => 0x01,
            LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
            LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
            LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
            LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
            LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
            LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
        }
    });
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy,
        flags,
        nice: scheduler.nice().unwrap_or(0),
        priority: scheduler.priority().unwrap_or(0) as u32,
        runtime: scheduler.runtime().unwrap_or(0),
        deadline: scheduler.deadline().unwrap_or(0),
        period: scheduler.period().unwrap_or(0),
        ..SchedAttr::default()
    };
    // Raw because no crate wraps sched_setattr (nix and rustix have sched_setscheduler only,
    // without the deadline parameters and flags).
    // SAFETY: `attr` is a valid sched_attr whose size field is its size; pid 0 is this thread.
    let ret = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if ret == -1 {
        return Err(attr_error(
            "sched_setattr (process.scheduler)",
            Errno::last(),
        ));
    }
    Ok(())
}

/// `linux.personality`: the execution domain (LINUX or LINUX32). Flags are refused, as runc
/// does: none is defined by the spec.
pub fn set_personality(personality: &LinuxPersonality) -> Result<(), InitError> {
    if personality.flags().as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(InitError::InvalidSpec(
            "linux.personality.flags are not supported".into(),
        ));
    }
    let domain: libc::c_int = match personality.domain() {
        LinuxPersonalityDomain::PerLinux => 0x0000,
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
    };
    // nix names the flags only; the execution domain is kept as bits (PER_LINUX32 is 0x0008).
    nix::sys::personality::set(nix::sys::personality::Persona::from_bits_retain(domain))
        .map(drop)
        .map_err(|errno| attr_error("personality (linux.personality)", errno))
}

fn attr_error(step: &'static str, errno: Errno) -> InitError {
    InitError::PrepareExec { step, errno }
}
