//! End to end through a real containerd (1.6.20 on the CI machines) and `ctr`, with the busybox
//! image built by scripts/build-image.sh.
//!
//! Every check runs twice: `::runc` against the reference shim `io.containerd.runc.v2`, which
//! proves the harness and the expectation right, and `::sibling` against our shim. Each test has
//! its own private containerd and ends with a leak check.
//!
//! Needs root, containerd and ctr: skipped with a message otherwise, failed in CI (`CI=true`).
//! `make test` sets SIBLING_IMAGE_TAR; without it the image is built into build/ on first use.

#[macro_use]
mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use common::{
    CtrResult, PrivateContainerd, RUNC, SIBLING, children_of, cmdline, command_timeout,
    proc_status_field, require_root_and_tools, shim_binary_name, unique_id, zombie_children_of,
};

/// How long to wait for what a `ctr run` printed once it is known to have exited.
const POLL: Duration = Duration::from_millis(100);

for_each_runtime!(
    output,
    exit_code_of_init,
    signal_death,
    sigterm_with_handler,
    pid1_ignores_its_own_sigkill,
    is_pid_1,
    hostname,
    init_is_child_of_the_shim,
    many_short_containers,
    missing_executable,
);

/// A private containerd for `runtime`, or None when this machine cannot run the test.
fn containerd(runtime: &str) -> Option<PrivateContainerd> {
    require_root_and_tools().then(|| PrivateContainerd::start_with_runtime(runtime))
}

/// Runs `args` to completion in a new container and checks that nothing is left behind (a
/// leak report shows what `ctr run` said, which usually explains it).
fn run_once(c: &PrivateContainerd, tag: &str, args: &[&str]) -> CtrResult {
    let id = unique_id(tag);
    let result = c.run_full(&id, args);
    let leaks = c.leaks(&[&id]);
    assert!(
        leaks.is_empty(),
        "leaked:\n  {}\nafter this ctr run:\n{result}",
        leaks.join("\n  ")
    );
    result
}

fn output(runtime: &str) {
    let Some(c) = containerd(runtime) else { return };
    let r = run_once(&c, "output", &["echo", "hello"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "hello\n"), "{r}");
}

fn exit_code_of_init(runtime: &str) {
    let Some(c) = containerd(runtime) else { return };
    let r = run_once(&c, "exit", &["sh", "-c", "exit 7"]);
    assert_eq!(
        r.code, 7,
        "ctr run must exit with the init's exit code\n{r}"
    );
}

/// The init dies from a signal sent from outside: ctr reports 128 + SIGKILL.
///
/// (`sh -c 'kill -KILL $$'` would not do: a PID namespace's init ignores SIGKILL sent from
/// inside its own namespace; see pid1_ignores_its_own_sigkill.)
fn signal_death(runtime: &str) {
    let Some(c) = containerd(runtime) else { return };
    let id = unique_id("sigkill");
    let mut run = c.spawn_run(&id, &["sleep", "300"]);
    c.wait_for_task(&id, "RUNNING", Some(&mut run));
    c.ctr_ok(&["task", "kill", "-s", "SIGKILL", &id]);
    let r = run.finish(command_timeout());
    assert_eq!(r.code, 137, "expected 128 + SIGKILL\n{r}");
    c.assert_no_leaks(&[&id]);
}

/// `ctr task kill` sends SIGTERM by default. A PID-namespace init with no handler ignores it, so
/// the container installs one that exits 143 (the code a SIGTERM death reports).
fn sigterm_with_handler(runtime: &str) {
    let Some(c) = containerd(runtime) else { return };
    let id = unique_id("sigterm");
    let script = "trap 'exit 143' TERM; echo ready; sleep 300 & wait";
    let mut run = c.spawn_run(&id, &["sh", "-c", script]);
    // The handler is in place once "ready" is printed; a signal before that would be ignored.
    if run.next_line(command_timeout()).as_deref() != Some("ready") {
        panic!("container never printed ready:\n{}", run.finish(POLL));
    }
    c.ctr_ok(&["task", "kill", "-s", "SIGTERM", &id]);
    let r = run.finish(command_timeout());
    assert_eq!(r.code, 143, "{r}");
    c.assert_no_leaks(&[&id]);
}

/// The kernel protects a PID namespace's init from SIGKILL sent inside the namespace: the shell
/// survives its own `kill -KILL $$`. Shows the init really is PID 1 of a new PID namespace.
fn pid1_ignores_its_own_sigkill(runtime: &str) {
    let Some(c) = containerd(runtime) else { return };
    let r = run_once(
        &c,
        "selfkill",
        &["sh", "-c", "kill -KILL $$; echo survived"],
    );
    assert_eq!((r.code, r.stdout.as_str()), (0, "survived\n"), "{r}");
}

fn is_pid_1(runtime: &str) {
    let Some(c) = containerd(runtime) else { return };
    let r = run_once(&c, "pid1", &["sh", "-c", "echo $$"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "1\n"), "{r}");
}

/// ctr 1.6 has no --hostname and its spec sets none, so the new UTS namespace keeps the copy of
/// the host's name it starts with (what runc does). Not the container id.
fn hostname(runtime: &str) {
    let Some(c) = containerd(runtime) else { return };
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("host hostname");
    let r = run_once(&c, "hostname", &["hostname"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, host.as_str()), "{r}");
}

/// The container's init is a direct child of the shim daemon (runc: runc's init is reparented to
/// the subreaper shim; sibling: CLONE_PARENT from a spawner descendant). For sibling, the shim
/// also has its single-threaded spawner child, comm `sibling-spawner`. No zombies under the shim.
fn init_is_child_of_the_shim(runtime: &str) {
    let Some(c) = containerd(runtime) else { return };
    let id = unique_id("ppid");
    c.run_detached(&id, &["sleep", "300"]);
    let init = c.wait_for_task(&id, "RUNNING", None);
    let ppid: u32 = proc_status_field(init, "PPid")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no PPid for init {init}"));
    let shim_argv = cmdline(ppid);
    let shim = shim_binary_name(runtime);
    // On failure, dropping `c` kills and removes the still-running container.
    assert!(
        shim_argv.first().is_some_and(|a| a.ends_with(&shim)),
        "parent {ppid} of init {init} is {shim_argv:?}, not {shim}"
    );
    assert!(
        c.shim_pids().contains(&ppid),
        "parent {ppid} is not a shim of our containerd"
    );
    if runtime == SIBLING {
        assert_spawner(ppid);
    }
    assert_no_lasting_zombies(ppid);
    c.remove_container(&id);
    c.assert_no_leaks(&[&id]);
}

/// A zombie child of the shim that lasts is an exit the shim never collected. A short-lived one
/// (a helper that exited a moment ago) is fine, so look a few times over two seconds.
fn assert_no_lasting_zombies(shim: u32) {
    let mut zombies = zombie_children_of(shim);
    for _ in 0..20 {
        if zombies.is_empty() {
            return;
        }
        thread::sleep(POLL);
        zombies.retain(|z| zombie_children_of(shim).contains(z));
    }
    assert!(zombies.is_empty(), "zombies under shim {shim}: {zombies:?}");
}

/// The shim daemon has a child named `sibling-spawner` with exactly one thread.
fn assert_spawner(shim: u32) {
    let children = children_of(shim);
    let spawner = children
        .iter()
        .find(|&&pid| proc_status_field(pid, "Name").as_deref() == Some("sibling-spawner"));
    let Some(&spawner) = spawner else {
        panic!("shim {shim} has no sibling-spawner child (children: {children:?})");
    };
    assert_eq!(
        proc_status_field(spawner, "Threads").as_deref(),
        Some("1"),
        "spawner threads"
    );
}

/// 50 containers, 8 at a time, each exiting with its own code: every code arrives at the right
/// `ctr run`, and nothing is left behind.
fn many_short_containers(runtime: &str) {
    const TOTAL: usize = 50;
    const WORKERS: usize = 8;
    let Some(c) = containerd(runtime) else { return };
    let ids: Vec<String> = (0..TOTAL).map(|i| unique_id(&format!("many{i}"))).collect();
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= TOTAL {
                        break;
                    }
                    let want = (i % 10) as i32;
                    let r = c.run_full(&ids[i], &["sh", "-c", &format!("exit {want}")]);
                    if r.code != want {
                        let mut failures = failures.lock().unwrap_or_else(|e| e.into_inner());
                        failures.push(format!("{}: want {want}, got {r}", ids[i]));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    // Report wrong exit codes and what was left behind together: a failed create that also
    // leaks is worth knowing about.
    let mut leaks = c.leaks(&ids);
    leaks.extend(
        c.container_ids()
            .into_iter()
            .map(|id| format!("container record: {id}")),
    );
    let leaked = if leaks.is_empty() {
        "nothing".to_string()
    } else {
        leaks.join("\n  ")
    };
    assert!(
        failures.is_empty() && leaks.is_empty(),
        "{} of {TOTAL} failed:\n{}\nleaked: {leaked}",
        failures.len(),
        failures.join("\n"),
    );
}

/// A missing executable fails `ctr run` with an error that names it, and leaves nothing: no
/// container record, no task, no shim, no mount, no cgroup.
fn missing_executable(runtime: &str) {
    let Some(c) = containerd(runtime) else { return };
    let r = run_once(&c, "nobinary", &["/bin/does-not-exist"]);
    assert_ne!(r.code, 0, "{r}");
    assert!(
        r.stderr.contains("/bin/does-not-exist"),
        "error must name the executable\n{r}"
    );
    assert_eq!(
        c.container_ids(),
        Vec::<String>::new(),
        "ctr run --rm must remove the container"
    );
}
