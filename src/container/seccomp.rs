//! `linux.seccomp`: the OCI profile compiled with libseccomp, loaded just before execve.
//!
//! The translation follows runc's (libcontainer/seccomp): `SCMP_ACT_KILL` is libseccomp's
//! kill-thread, `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE` without `errnoRet` return EPERM, several
//! conditions on one argument become one rule each (libseccomp cannot AND them), a rule whose
//! action is the default action is dropped, and a syscall name this libseccomp does not know is
//! skipped (profiles name syscalls newer than the library). libseccomp's habit of setting
//! no_new_privs on load is turned off: that bit comes from `process.noNewPrivileges` only.
//!
//! The filter is compiled in [`compile`], before the setup changes anything, so a bad profile
//! is a Create error with nothing to undo; [`SeccompFilter::load`] only installs it.

use std::str::FromStr;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};

use super::error::InitError;

/// The most arguments a syscall has; `index` in a condition must be below it.
const SYSCALL_MAX_ARGS: usize = 6;

/// A compiled filter, ready to load.
pub struct SeccompFilter {
    context: ScmpFilterContext,
}

impl std::fmt::Debug for SeccompFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeccompFilter")
    }
}

impl SeccompFilter {
    /// Installs the filter on this process (inherited by everything it execs or forks).
    ///
    /// Needs CAP_SYS_ADMIN unless no_new_privs is already set: call it before the capability
    /// drop when the spec does not ask for no_new_privs, and as late as possible otherwise.
    pub fn load(&self) -> Result<(), InitError> {
        self.context
            .load()
            .map_err(|e| seccomp_error(format!("load the filter: {e}")))
    }
}

/// Compiles `profile`. Returns the filter and what was skipped that weakens it (a syscall the
/// profile restricts but this libseccomp cannot name), for the daemon to log.
pub fn compile(profile: &LinuxSeccomp) -> Result<(SeccompFilter, Vec<String>), InitError> {
    if profile.listener_path().is_some() {
        return Err(seccomp_error(
            "listenerPath (a seccomp notify agent) is not supported by this runtime".into(),
        ));
    }
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut context = ScmpFilterContext::new(default)
        .map_err(|e| seccomp_error(format!("create the filter: {e}")))?;
    context
        .set_ctl_nnp(false)
        .map_err(|e| seccomp_error(format!("keep no_new_privs off: {e}")))?;
    for arch in profile.architectures().as_deref().unwrap_or_default() {
        add_arch(&mut context, &arch.to_string())?;
    }
    for flag in profile.flags().as_deref().unwrap_or_default() {
        set_flag(&mut context, *flag)?;
    }
    let mut unknown = Vec::new();
    for rule in profile.syscalls().as_deref().unwrap_or_default() {
        add_syscall_rule(&mut context, rule, default, &mut unknown)?;
    }
    let warnings = if unknown.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "seccomp: syscalls unknown to libseccomp are not restricted by the profile: {}",
            unknown.join(", ")
        )]
    };
    Ok((SeccompFilter { context }, warnings))
}

/// The libseccomp action of an OCI action; `errno_ret` is for ERRNO and TRACE.
fn action(action: LinuxSeccompAction, errno_ret: Option<u32>) -> Result<ScmpAction, InitError> {
    let errno = || errno_ret.map_or(libc_eperm(), |e| e as i32);
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno()),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno() as u16),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(seccomp_error(
                "SCMP_ACT_NOTIFY needs a seccomp notify agent, which this runtime does not support"
                    .into(),
            ));
        }
    })
}

fn libc_eperm() -> i32 {
    nix::libc::EPERM
}

fn add_arch(context: &mut ScmpFilterContext, name: &str) -> Result<(), InitError> {
    let arch = ScmpArch::from_str(name)
        .map_err(|_| seccomp_error(format!("architecture {name} is not known to libseccomp")))?;
    // The native architecture is already in every new filter; adding it again is an error.
    if context.is_arch_present(arch).unwrap_or(false) {
        return Ok(());
    }
    context
        .add_arch(arch)
        .map(|_| ())
        .map_err(|e| seccomp_error(format!("add architecture {name}: {e}")))
}

fn set_flag(
    context: &mut ScmpFilterContext,
    flag: LinuxSeccompFilterFlag,
) -> Result<(), InitError> {
    let result = match flag {
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => context.set_ctl_log(true),
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => context.set_ctl_ssb(true),
        // The filter is loaded by a single-threaded process: there are no threads to sync.
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => return Ok(()),
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => context.set_ctl_waitkill(true),
    };
    result
        .map(|_| ())
        .map_err(|e| seccomp_error(format!("flag {flag}: {e}")))
}

fn add_syscall_rule(
    context: &mut ScmpFilterContext,
    rule: &LinuxSyscall,
    default: ScmpAction,
    unknown: &mut Vec<String>,
) -> Result<(), InitError> {
    let rule_action = action(rule.action(), rule.errno_ret())?;
    // libseccomp refuses a rule that repeats the default action; it would change nothing.
    if rule_action == default {
        return Ok(());
    }
    let conditions = conditions(rule.args().as_deref().unwrap_or_default())?;
    for name in rule.names() {
        let Ok(syscall) = ScmpSyscall::from_name(name) else {
            // Allowing an unknown syscall loses nothing: the default still applies to it. A
            // restriction that cannot be written is worth a warning.
            if !matches!(rule_action, ScmpAction::Allow | ScmpAction::Log) {
                unknown.push(name.clone());
            }
            continue;
        };
        let result = match &conditions {
            Conditions::None => context.add_rule(rule_action, syscall).map(|_| ()),
            Conditions::All(all) => context
                .add_rule_conditional(rule_action, syscall, all)
                .map(|_| ()),
            Conditions::EachAlone(each) => each.iter().try_for_each(|condition| {
                context
                    .add_rule_conditional(rule_action, syscall, std::slice::from_ref(condition))
                    .map(|_| ())
            }),
        };
        result.map_err(|e| seccomp_error(format!("add the rule for {name}: {e}")))?;
    }
    Ok(())
}

/// How a rule's argument conditions become libseccomp rules.
#[derive(Debug, PartialEq)]
enum Conditions {
    None,
    /// One rule with every condition (all must hold).
    All(Vec<ScmpArgCompare>),
    /// One rule per condition: two conditions name the same argument, which libseccomp cannot
    /// combine in one rule (runc does the same).
    EachAlone(Vec<ScmpArgCompare>),
}

fn conditions(args: &[LinuxSeccompArg]) -> Result<Conditions, InitError> {
    if args.is_empty() {
        return Ok(Conditions::None);
    }
    let mut seen = [0usize; SYSCALL_MAX_ARGS];
    let mut compares = Vec::with_capacity(args.len());
    for arg in args {
        let index = arg.index();
        if index >= SYSCALL_MAX_ARGS {
            return Err(seccomp_error(format!(
                "argument index {index} is out of range (syscalls have {SYSCALL_MAX_ARGS})"
            )));
        }
        seen[index] += 1;
        compares.push(compare(arg)?);
    }
    Ok(if seen.iter().any(|&n| n > 1) {
        Conditions::EachAlone(compares)
    } else {
        Conditions::All(compares)
    })
}

fn compare(arg: &LinuxSeccompArg) -> Result<ScmpArgCompare, InitError> {
    let index = arg.index() as u32;
    let value = arg.value();
    let op = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // (arg & value) == valueTwo.
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            return Ok(ScmpArgCompare::new(
                index,
                ScmpCompareOp::MaskedEqual(value),
                arg.value_two().unwrap_or(0),
            ));
        }
    };
    Ok(ScmpArgCompare::new(index, op, value))
}

fn seccomp_error(reason: String) -> InitError {
    InitError::Seccomp(reason)
}

#[cfg(test)]
mod tests;
