//! The container init's setup, as one linear sequence of named steps.
//!
//! [`prepare`] runs in the container's init: a clone of the spawner's per-request helper, so
//! single-threaded, already in the container's cgroup and in its new or joined namespaces, with
//! the host's mount tree still visible (as a private copy). It returns the program ready to
//! exec; the caller reports "ready", waits for "start" and calls [`Exec::exec`]. Nothing here
//! logs: every failure is an [`InitError`] whose text names the step, the path or value and the
//! errno; things skipped travel as [`Exec::warnings`].

use std::os::fd::OwnedFd;
use std::path::Path;

use nix::unistd::chdir;
use oci_spec::runtime::{Linux, LinuxPersonality, LinuxSeccomp, Process, Spec};

use super::capabilities::{
    CapabilityPlan, apply_capabilities, check_capabilities, drop_bounding, last_cap,
    plan_capabilities, read_available,
};
use super::credentials::switch_user;
use super::device_nodes::{create_dev_symlinks, create_devices, link_ptmx, plan_devices};
use super::fds::{install_stdio, reopen_dev_null};
use super::hooks::{HookKind, StateBase, run_hooks, spec_hooks};
use super::hostname::set_host_and_domain_name;
use super::in_root::RootDir;
use super::lsm::{HostProc, apply_labels, asks_labels};
use super::masks::{make_paths_readonly, mask_paths};
use super::namespaces::{NamespaceKind, NamespacePlan};
use super::pivot::pivot_into;
use super::process_attrs::{
    set_io_priority, set_no_new_privileges, set_personality, set_scheduler, set_umask,
};
use super::program::{find_executable, path_variable};
use super::rlimits::apply_rlimits;
use super::rootfs::{
    IdmappedTrees, make_root_readonly, mount_all, prepare_root, remount_dev_readonly,
    root_propagation,
};
use super::seccomp::{SeccompFilter, compile};
use super::sysctl::{apply_sysctls, check_sysctl};
use super::terminal::create_console;
use super::{ExecConfig, InitConfig};

pub use super::error::InitError;
pub use super::program::Exec;

/// The capability sets to apply, decided before anything changed.
struct CapabilityStep {
    plan: CapabilityPlan,
    last_cap: u32,
}

/// Sets the container up, from stdio to the resolved executable. See the module docs.
/// `idmapped` holds the idmapped binds' trees the helper made (see `mounts::open_idmapped_tree`).
///
/// `runtime_hooks` asks the daemon to run the `prestart` and `createRuntime` hooks and waits
/// for them (sync 2 and 3); it is called, only when the spec has such hooks, once the mounts
/// are done and before the `createContainer` hooks and pivot_root.
pub fn prepare(
    config: &InitConfig,
    stdio: [OwnedFd; 3],
    idmapped: IdmappedTrees,
    runtime_hooks: &mut dyn FnMut() -> Result<(), String>,
) -> Result<Exec, InitError> {
    let spec = &config.spec;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid("process is missing"))?;
    let namespaces = NamespacePlan::from_spec(spec)?;
    check_spec(spec, process, &namespaces)?;
    // First, so the fd layout is final before /dev/null is re-opened and fds are swept. A
    // terminal replaces these later, from the container's own devpts.
    install_stdio(stdio, false)?;
    let terminal = process.terminal().unwrap_or(false);
    // oomScoreAdj (and, in a new user namespace, the rlimits) came from the helper.
    // The labels for execve, through the host's /proc while this process still sees it.
    if asks_labels(process) {
        let host_proc = HostProc::open().map_err(|errno| InitError::ReadHostFile {
            path: "/proc".into(),
            error: errno.into(),
        })?;
        apply_labels(process, &host_proc)?;
    }
    // Before any mount: a spec asking for a capability we lack, or a bad seccomp profile,
    // fails without side effects.
    let (capabilities, mut warnings) = plan_capability_step(process)?;
    let profile = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let (seccomp, seccomp_warnings) = compile_seccomp(profile)?;
    warnings.extend(seccomp_warnings);
    let hooks = InitHooks::new(config);
    build_rootfs(config, &namespaces, idmapped, &hooks, runtime_hooks)?;
    // After pivot_root (the pty must come from the container's devpts) and before /dev or the
    // root become read-only (/dev/console is bound over).
    let console = terminal.then(|| create_console(true)).transpose()?;
    configure_kernel_state(spec, &namespaces)?;
    let personality = spec.linux().as_ref().and_then(|l| l.personality().as_ref());
    let late_seccomp = drop_privileges(process, personality, capabilities.as_ref(), seccomp)?;
    set_umask(process.user().umask());
    // After the switch to the container user, so the permission checks are the user's.
    enter_cwd(process.cwd())?;
    Ok(build_exec(process, warnings)?
        .with_console(console)
        .with_seccomp(late_seccomp)
        .with_start_hooks(hooks.start_container()))
}

/// The hooks the init runs itself, and their state.
struct InitHooks<'a> {
    config: &'a InitConfig,
    /// The init's pid as the container sees it (1 in a PID namespace of its own): these hooks
    /// run in the container's namespaces, and runtime-spec's state says "for hooks executed in
    /// the container namespace, it is the pid as seen by the container" (runc does the same).
    pid: u32,
}

impl<'a> InitHooks<'a> {
    fn new(config: &'a InitConfig) -> Self {
        InitHooks {
            config,
            pid: std::process::id(),
        }
    }

    fn state(&self, status: &str) -> String {
        let config = self.config;
        StateBase::of_spec(&config.id, &config.bundle, &config.spec).json(status, Some(self.pid))
    }

    /// Sync 2 and 3 (through the daemon), then the `createContainer` hooks: in the container's
    /// namespaces, before pivot_root (so their paths resolve as in the runtime's mount tree).
    fn before_pivot(
        &self,
        runtime_hooks: &mut dyn FnMut() -> Result<(), String>,
    ) -> Result<(), InitError> {
        let spec = &self.config.spec;
        let runtime = [HookKind::Prestart, HookKind::CreateRuntime]
            .into_iter()
            .any(|kind| !spec_hooks(spec, kind).is_empty());
        if runtime {
            runtime_hooks().map_err(InitError::Hook)?;
        }
        let create = spec_hooks(spec, HookKind::CreateContainer);
        if !create.is_empty() {
            run_hooks(HookKind::CreateContainer, create, &self.state("creating"))
                .map_err(InitError::Hook)?;
        }
        Ok(())
    }

    /// The `startContainer` hooks and their state, for [`Exec::exec`].
    fn start_container(&self) -> Option<(Vec<oci_spec::runtime::Hook>, String)> {
        let hooks = spec_hooks(&self.config.spec, HookKind::StartContainer);
        (!hooks.is_empty()).then(|| (hooks.to_vec(), self.state("created")))
    }
}

/// Sets up an exec'd process, already in the container's namespaces, cgroup and root: the
/// process-level steps of [`prepare`] (no mounts, no kernel state: those belong to the init).
///
/// `host_proc` is the host's /proc, opened by the helper before it joined the container.
pub fn prepare_exec(
    config: &ExecConfig,
    stdio: [OwnedFd; 3],
    host_proc: Option<HostProc>,
) -> Result<Exec, InitError> {
    let process = &config.process;
    if !process.cwd().is_absolute() {
        let cwd = process.cwd().display();
        return Err(invalid(&format!("process.cwd {cwd:?} is not absolute")));
    }
    if process.args().as_ref().is_none_or(|args| args.is_empty()) {
        return Err(invalid("process.args is empty"));
    }
    install_stdio(stdio, false)?;
    match &host_proc {
        Some(proc) => apply_labels(process, proc)?,
        None if asks_labels(process) => {
            return Err(invalid(
                "the host's /proc is not available to apply LSM labels",
            ));
        }
        None => {}
    }
    drop(host_proc);
    let console = process
        .terminal()
        .unwrap_or(false)
        .then(|| create_console(false))
        .transpose()?;
    // oom_score_adj was set by the helper, through the host's /proc (`set_oom_score_adj`).
    let (capabilities, mut warnings) = plan_capability_step(process)?;
    let (seccomp, seccomp_warnings) = compile_seccomp(config.seccomp.as_ref())?;
    warnings.extend(seccomp_warnings);
    let late_seccomp = drop_privileges(
        process,
        config.personality.as_ref(),
        capabilities.as_ref(),
        seccomp,
    )?;
    set_umask(process.user().umask());
    enter_cwd(process.cwd())?;
    Ok(build_exec(process, warnings)?
        .with_console(console)
        .with_seccomp(late_seccomp))
}

/// chdir to `cwd`, then check that where we landed is under the container's root. A cwd
/// such as `/proc/self/fd/7` resolves through whatever fd is still open at this point (they
/// close at execve); were one a host directory, the process would start outside its root
/// (CVE-2024-21626). getcwd fails (or, raw, says "(unreachable)") for such a directory.
fn enter_cwd(cwd: &Path) -> Result<(), InitError> {
    chdir(cwd).map_err(|errno| InitError::Cwd {
        path: cwd.to_owned(),
        errno,
    })?;
    match nix::unistd::getcwd() {
        Ok(path) if path.is_absolute() => Ok(()),
        _ => Err(InitError::CwdOutsideRoot {
            path: cwd.to_owned(),
        }),
    }
}

fn compile_seccomp(
    profile: Option<&LinuxSeccomp>,
) -> Result<(Option<SeccompFilter>, Vec<String>), InitError> {
    match profile {
        Some(profile) => compile(profile).map(|(filter, warnings)| (Some(filter), warnings)),
        None => Ok((None, Vec::new())),
    }
}

/// What must hold before anything changes.
fn check_spec(spec: &Spec, process: &Process, namespaces: &NamespacePlan) -> Result<(), InitError> {
    // Every mount below would otherwise land in the host's (or another container's) tree.
    if !namespaces.is_new(NamespaceKind::Mount) {
        return Err(invalid("the container needs a new mount namespace"));
    }
    if !process.cwd().is_absolute() {
        let cwd = process.cwd().display();
        return Err(invalid(&format!("process.cwd {cwd:?} is not absolute")));
    }
    if process.args().as_ref().is_none_or(|args| args.is_empty()) {
        return Err(invalid("process.args is empty"));
    }
    let sysctls = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref());
    for key in sysctls.into_iter().flat_map(|s| s.keys()) {
        check_sysctl(key, namespaces)?;
    }
    Ok(())
}

fn plan_capability_step(
    process: &Process,
) -> Result<(Option<CapabilityStep>, Vec<String>), InitError> {
    // No capabilities in the spec: the process keeps what it has, as with runc.
    let Some(spec_caps) = process.capabilities() else {
        return Ok((None, Vec::new()));
    };
    let last_cap = last_cap();
    let (plan, warnings) = plan_capabilities(spec_caps, last_cap);
    check_capabilities(&plan, read_available(last_cap)?)?;
    Ok((Some(CapabilityStep { plan, last_cap }), warnings))
}

/// Mounts, devices and pivot_root: the container's filesystem view.
fn build_rootfs(
    config: &InitConfig,
    namespaces: &NamespacePlan,
    idmapped: IdmappedTrees,
    hooks: &InitHooks<'_>,
    runtime_hooks: &mut dyn FnMut() -> Result<(), String>,
) -> Result<(), InitError> {
    let linux = config.spec.linux().as_ref();
    let propagation = linux.and_then(|l| l.rootfs_propagation().as_deref());
    prepare_root(&config.rootfs, root_propagation(propagation)?)?;
    // Opened after the self-bind: an fd from before would refer to the covered directory.
    let root = open_root(&config.rootfs)?;
    // The daemon mounts the rootfs at <bundle>/rootfs: relative bind sources are bundle paths.
    let bundle = config.rootfs.parent().unwrap_or(Path::new("/"));
    let mounts = config.spec.mounts().as_deref().unwrap_or_default();
    let dev = mount_all(&root, mounts, bundle, namespaces, idmapped)?;
    if dev.create_devices {
        // /dev/console comes with the terminal itself, after pivot_root (`create_console`).
        populate_dev(&root, linux)?;
    }
    if let Some(flags) = dev.remount_flags {
        remount_dev_readonly(&root, flags)?;
    }
    // No fd on the host-side rootfs path may outlive the pivot (CVE-2024-21626 class).
    drop(root);
    hooks.before_pivot(runtime_hooks)?;
    pivot_into(&config.rootfs)?;
    if dev.create_devices {
        reopen_dev_null()?;
    }
    Ok(())
}

fn populate_dev(root: &RootDir, linux: Option<&Linux>) -> Result<(), InitError> {
    let spec_devices = linux
        .and_then(|l| l.devices().as_deref())
        .unwrap_or_default();
    create_devices(root, &plan_devices(spec_devices)?)?;
    link_ptmx(root)?;
    create_dev_symlinks(root)?;
    Ok(())
}

/// What the container sees of the kernel: names, sysctls, hidden and read-only paths.
fn configure_kernel_state(spec: &Spec, namespaces: &NamespacePlan) -> Result<(), InitError> {
    set_host_and_domain_name(spec, namespaces)?;
    let root = open_root(Path::new("/"))?;
    let linux = spec.linux().clone().unwrap_or_default();
    // Before readonlyPaths: /proc/sys is usually one of them, and the writes would get EROFS.
    if let Some(sysctls) = linux.sysctl() {
        apply_sysctls(&root, sysctls, namespaces)?;
    }
    make_paths_readonly(&root, linux.readonly_paths().as_deref().unwrap_or_default())?;
    mask_paths(&root, linux.masked_paths().as_deref().unwrap_or_default())?;
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        make_root_readonly()?;
    }
    Ok(())
}

/// Limits, no_new_privs, then user and capabilities, in the order the kernel requires.
///
/// The seccomp filter is loaded here, before the capability drop, when the spec does not ask
/// for no_new_privs: without that bit loading a filter needs CAP_SYS_ADMIN. Otherwise it is
/// given back, to be loaded just before execve (fewer of our own syscalls run under it), as
/// runc does.
fn drop_privileges(
    process: &Process,
    personality: Option<&LinuxPersonality>,
    capabilities: Option<&CapabilityStep>,
    seccomp: Option<SeccompFilter>,
) -> Result<Option<SeccompFilter>, InitError> {
    // Before the user switch: raising a hard limit needs CAP_SYS_RESOURCE, a real-time
    // scheduler or I/O class CAP_SYS_NICE.
    apply_rlimits(process.rlimits().as_deref().unwrap_or_default())?;
    if let Some(io) = process.io_priority() {
        set_io_priority(io)?;
    }
    if let Some(scheduler) = process.scheduler() {
        set_scheduler(scheduler)?;
    }
    if let Some(personality) = personality {
        set_personality(personality)?;
    }
    let late_seccomp = if process.no_new_privileges() == Some(true) {
        set_no_new_privileges()?;
        seccomp
    } else {
        if let Some(filter) = seccomp {
            filter.load()?;
        }
        None
    };
    // PR_CAPBSET_DROP needs CAP_SETPCAP, which the switch to a non-root user clears.
    if let Some(step) = capabilities {
        drop_bounding(&step.plan, step.last_cap)?;
    }
    switch_user(process.user())?;
    if let Some(step) = capabilities {
        apply_capabilities(&step.plan)?;
    }
    Ok(late_seccomp)
}

/// Resolves the executable inside the new root as the final user, and builds the C strings.
fn build_exec(process: &Process, warnings: Vec<String>) -> Result<Exec, InitError> {
    let args = process.args().as_deref().unwrap_or_default();
    let mut env = process.env().clone().unwrap_or_default();
    // As runc: a process without HOME gets the user's home from the container's /etc/passwd.
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let home = home_of(&passwd, process.user().uid()).unwrap_or("/");
        env.push(format!("HOME={home}"));
    }
    let arg0 = args.first().map_or("", String::as_str);
    let path = find_executable(arg0, path_variable(&env), Path::new("/"), process.cwd())?;
    Exec::new(&path, args, &env, warnings)
}

/// The home directory of `uid` in a passwd file's text.
fn home_of(passwd: &str, uid: u32) -> Option<&str> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 6 && fields[2].parse() == Ok(uid)).then_some(fields[5])
    })
}

fn open_root(path: &Path) -> Result<RootDir, InitError> {
    RootDir::open(path).map_err(|errno| InitError::Resolve {
        action: "open root",
        path: path.to_owned(),
        rootfs: path.to_owned(),
        errno,
    })
}

fn invalid(reason: &str) -> InitError {
    InitError::InvalidSpec(reason.to_owned())
}

#[cfg(test)]
mod home_tests {
    #[test]
    fn home_comes_from_passwd() {
        let passwd =
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/nonexistent:/bin/false\n";
        assert_eq!(super::home_of(passwd, 0), Some("/root"));
        assert_eq!(super::home_of(passwd, 65534), Some("/nonexistent"));
        assert_eq!(super::home_of(passwd, 1000), None);
    }
}
