//! End to end exec through a real containerd (1.6.20 on the CI machines) and `ctr task exec`,
//! into a container started with `ctr run -d ... sleep 1000`.
//!
//! Every check runs twice, like e2e_ctr.rs: `::runc` against the reference shim
//! `io.containerd.runc.v2`, which proves the harness and the expectation right, and `::sibling`
//! against our shim. Each test has its own private containerd and ends with a leak check (no
//! mount, cgroup, shim, socket, zombie or container record left) after removing the container.
//!
//! What ctr 1.6 does with an exec, which these tests rely on: it always wires its own stdin to
//! the exec (CloseIO once it reads EOF), waits for the exit and exits with the exec's code
//! (128 + signal for a signal death), and Deletes the exec afterwards, unless `-d`: then it
//! returns right after Start and never Deletes the exec.
//!
//! Needs root, containerd and ctr: skipped with a message otherwise, failed in CI (`CI=true`).
//! `make test` sets SIBLING_IMAGE_TAR; without it the image is built into build/ on first use.

#[macro_use]
mod common;

use std::fs;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    BackgroundRun, CtrResult, PrivateContainerd, RUNC, SIBLING, assert_reaped, cmdline,
    command_timeout, containerd_version, ppid, require_root_and_tools, shim_binary_name, unique_id,
    zombie_children_of,
};

const POLL: Duration = Duration::from_millis(50);

for_each_runtime!(
    exit_code_and_output,
    exec_killed_by_signal,
    concurrent_execs,
    missing_binary,
    ps_shows_exec_id,
    exec_is_child_of_the_shim,
    stdin_reaches_the_exec,
    execs_die_with_the_init,
    detached_exec_delete,
    exec_exits_while_its_child_holds_stdout,
);

/// One line of `ctr task ps`: a host pid and, for an exec, its exec id (from the
/// `&ProcessDetails{ExecID:X,...}` ctr 1.x prints in the INFO column, `exec_id:"X"` in 2.x).
#[derive(Debug, Clone, PartialEq)]
struct PsLine {
    pid: u32,
    exec_id: Option<String>,
    info: String,
}

/// A private containerd with one running container, `sleep 1000` as its init.
struct Container {
    c: PrivateContainerd,
    id: String,
    init: u32,
}

impl Container {
    /// None when this machine cannot run the test.
    fn start(runtime: &str, tag: &str) -> Option<Self> {
        if !require_root_and_tools() {
            return None;
        }
        let c = PrivateContainerd::start_with_runtime(runtime);
        let id = unique_id(tag);
        // From here a panic drops `c`, which kills and removes the container.
        c.run_detached(&id, &["sleep", "1000"]);
        let init = c.wait_for_task(&id, "RUNNING", None);
        Some(Self { c, id, init })
    }

    /// `ctr task exec --fifo-dir D [FLAGS] --exec-id EXEC ID ARGS...`
    fn exec_args(&self, flags: &[&str], exec_id: &str, args: &[&str]) -> Vec<String> {
        let fifo_dir = self.c.fifo_dir().display().to_string();
        let mut all: Vec<String> = ["task", "exec", "--fifo-dir", &fifo_dir]
            .iter()
            .map(|s| s.to_string())
            .collect();
        all.extend(flags.iter().map(|s| s.to_string()));
        all.extend([
            "--exec-id".to_string(),
            exec_id.to_string(),
            self.id.clone(),
        ]);
        all.extend(args.iter().map(|s| s.to_string()));
        all
    }

    /// An exec to completion, stdin /dev/null: what ctr printed and its exit code (the exec's).
    fn exec(&self, exec_id: &str, args: &[&str]) -> CtrResult {
        let all = self.exec_args(&[], exec_id, args);
        self.c.ctr(&as_strs(&all)).into()
    }

    /// Like [`exec`](Self::exec), with more `ctr task exec` flags.
    fn exec_with_flags(&self, flags: &[&str], exec_id: &str, args: &[&str]) -> CtrResult {
        let all = self.exec_args(flags, exec_id, args);
        self.c.ctr(&as_strs(&all)).into()
    }

    /// An exec to completion with `input` on ctr's stdin, closed after it.
    fn exec_with_input(&self, exec_id: &str, args: &[&str], input: &[u8]) -> CtrResult {
        let all = self.exec_args(&[], exec_id, args);
        self.c.ctr_with_input(&as_strs(&all), input).into()
    }

    /// `ctr task exec -d`: returns once the exec started; it keeps running, never Deleted.
    fn exec_detached(&self, exec_id: &str, args: &[&str]) {
        let all = self.exec_args(&["-d"], exec_id, args);
        let r: CtrResult = self.c.ctr(&as_strs(&all)).into();
        assert_eq!(r.code, 0, "ctr task exec -d {exec_id} failed:\n{r}");
    }

    /// An attached `ctr task exec` in the background: it exits with the exec's code.
    fn spawn_exec(&self, exec_id: &str, args: &[&str]) -> BackgroundRun {
        let all = self.exec_args(&[], exec_id, args);
        self.c.spawn_ctr(&as_strs(&all))
    }

    /// `ctr task ps ID`.
    fn ps(&self) -> Vec<PsLine> {
        parse_ps(&self.c.ctr_ok(&["task", "ps", &self.id]))
    }

    /// Waits until `ctr task ps` lists `exec_id`; returns its host pid. With `run` (the attached
    /// ctr that runs the exec), fails at once with what ctr printed if it exits first.
    fn wait_for_exec(&self, exec_id: &str, mut run: Option<&mut BackgroundRun>) -> u32 {
        let deadline = Instant::now() + command_timeout();
        loop {
            let ps = self.ps();
            if let Some(line) = ps.iter().find(|l| l.exec_id.as_deref() == Some(exec_id)) {
                return line.pid;
            }
            if let Some(run) = run.as_deref_mut()
                && run.has_exited()
            {
                panic!(
                    "ctr task exec {exec_id} exited before ps listed it:\n{}",
                    run.finish(POLL)
                );
            }
            assert!(
                Instant::now() < deadline,
                "ctr task ps never listed exec {exec_id} (last: {ps:?})\n{}",
                self.c.log_tail()
            );
            thread::sleep(POLL);
        }
    }

    /// Waits until `ctr task ps` lists neither `exec_id` nor `pid`.
    fn wait_exec_gone(&self, exec_id: &str, pid: u32) {
        let deadline = Instant::now() + command_timeout();
        loop {
            let ps = self.ps();
            if !ps
                .iter()
                .any(|l| l.pid == pid || l.exec_id.as_deref() == Some(exec_id))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "exec {exec_id} (pid {pid}) still listed by ctr task ps: {ps:?}"
            );
            thread::sleep(POLL);
        }
    }

    /// The task is still RUNNING with the same init.
    fn assert_running(&self) {
        assert_eq!(
            self.c.task(&self.id),
            Some((self.init, "RUNNING".to_string())),
            "ctr task ls must show the container RUNNING with init {}",
            self.init
        );
    }

    /// The shim daemon: the init's parent (for both runtimes; e2e_ctr.rs proves it).
    fn shim_pid(&self) -> u32 {
        ppid(self.init).unwrap_or_else(|| panic!("no PPid for init {}", self.init))
    }

    /// Removes the container (execs still running die with it) and checks nothing is left.
    fn remove_and_check_leaks(self) {
        self.c.remove_container(&self.id);
        self.c.assert_no_leaks(&[&self.id]);
        assert_eq!(
            self.c.container_ids(),
            Vec::<String>::new(),
            "container record left"
        );
    }
}

/// `ctr task ps` output: a `PID INFO` header, then one line per process.
fn parse_ps(out: &str) -> Vec<PsLine> {
    out.lines()
        .skip(1)
        .filter_map(|line| {
            let (pid, info) = line.trim().split_once(char::is_whitespace)?;
            let info = info.trim().to_string();
            // ctr 1.x prints `&ProcessDetails{ExecID:X,}` (gogo's String()), ctr 2.x
            // `exec_id:"X"` (protobuf text format).
            let exec_id = info
                .split_once("ExecID:")
                .and_then(|(_, rest)| rest.split([',', '}']).next())
                .or_else(|| {
                    let rest = info.split_once("exec_id:\"")?.1;
                    rest.split('"').next()
                })
                .map(str::to_string);
            Some(PsLine {
                pid: pid.parse().ok()?,
                exec_id,
                info,
            })
        })
        .collect()
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// A zombie child of the shim that lasts is an exit the shim never collected. A short-lived one
/// (a helper that exited a moment ago) is fine, so look a few times over two seconds.
fn assert_no_lasting_zombies(shim: u32) {
    let mut zombies = zombie_children_of(shim);
    for _ in 0..40 {
        if zombies.is_empty() {
            return;
        }
        thread::sleep(POLL);
        zombies.retain(|z| zombie_children_of(shim).contains(z));
    }
    assert!(zombies.is_empty(), "zombies under shim {shim}: {zombies:?}");
}

fn fds(pid: u32) -> Vec<String> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut fds: Vec<String> = dir
        .filter_map(|e| {
            let e = e.ok()?;
            let target = fs::read_link(e.path()).ok()?;
            Some(format!(
                "{} -> {}",
                e.file_name().to_string_lossy(),
                target.display()
            ))
        })
        .collect();
    fds.sort();
    fds
}

// ---------------------------------------------------------------------------------------------
// The checks

/// An exec's stdout and stderr reach ctr separately, and ctr exits with the exec's exit code.
fn exit_code_and_output(runtime: &str) {
    let Some(t) = Container::start(runtime, "exec-code") else {
        return;
    };
    let r = t.exec("x", &["sh", "-c", "echo hi; echo oops >&2; exit 5"]);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (5, "hi\n", "oops\n"),
        "{r}"
    );
    // The exec id is free again once ctr deleted the exec; exit 0 is reported as 0.
    let r = t.exec("x", &["sh", "-c", "echo again"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "again\n"), "{r}");
    // An exec is no PID 1: a signal it sends itself kills it, reported as 128 + signal.
    let r = t.exec("self-term", &["sh", "-c", "kill -TERM $$; echo survived"]);
    assert_eq!((r.code, r.stdout.as_str()), (143, ""), "{r}");
    // The exec gets the process fields ctr sets: cwd and user, and the container's env.
    let r = t.exec_with_flags(
        &["--cwd", "/tmp", "--user", "1000"],
        "fields",
        &["sh", "-c", "pwd; id -u; echo $PATH"],
    );
    assert_eq!(
        (r.code, r.stdout.lines().take(2).collect::<Vec<_>>()),
        (0, vec!["/tmp", "1000"]),
        "{r}"
    );
    assert!(
        r.stdout.lines().nth(2).is_some_and(|p| p.contains("/bin")),
        "PATH from the container's spec\n{r}"
    );
    t.assert_running();
    t.remove_and_check_leaks();
}

/// `ctr task kill --exec-id` reaches the exec only: an attached exec killed by SIGKILL makes
/// ctr exit 137 (128 + 9), a detached one (`-d`) disappears from `ctr task ps`, both are
/// reaped, and the container keeps running.
fn exec_killed_by_signal(runtime: &str) {
    let Some(t) = Container::start(runtime, "exec-kill") else {
        return;
    };
    t.exec_detached("bg", &["sleep", "100"]);
    let mut fg = t.spawn_exec("fg", &["sleep", "100"]);
    let bg_pid = t.wait_for_exec("bg", None);
    let fg_pid = t.wait_for_exec("fg", Some(&mut fg));

    // An exec id in use cannot be taken again; the running exec is not disturbed.
    let r = t.exec_with_flags(&["-d"], "bg", &["true"]);
    assert_ne!(r.code, 0, "a second exec with id bg must fail\n{r}");
    assert!(
        r.stderr.contains("already exists"),
        "the error must say the exec id exists\n{r}"
    );
    assert!(
        t.ps().iter().any(|l| l.pid == bg_pid),
        "exec bg must keep running: {:?}",
        t.ps()
    );

    t.c.ctr_ok(&["task", "kill", "--exec-id", "fg", "-s", "SIGKILL", &t.id]);
    let r = fg.finish(command_timeout());
    assert_eq!(r.code, 137, "ctr task exec must exit 128 + SIGKILL\n{r}");
    t.wait_exec_gone("fg", fg_pid);
    assert_reaped(fg_pid);
    // The other exec was not touched.
    assert!(
        t.ps().iter().any(|l| l.pid == bg_pid),
        "killing exec fg must leave exec bg alone: {:?}",
        t.ps()
    );

    t.c.ctr_ok(&["task", "kill", "--exec-id", "bg", "-s", "SIGKILL", &t.id]);
    t.wait_exec_gone("bg", bg_pid);
    assert_reaped(bg_pid);

    t.assert_running();
    let ps = t.ps();
    assert_eq!(
        ps.iter().map(|l| l.pid).collect::<Vec<_>>(),
        vec![t.init],
        "only the init is left: {ps:?}"
    );
    assert_no_lasting_zombies(t.shim_pid());
    // The detached exec was never Deleted: removing the task must still work and leave nothing.
    t.remove_and_check_leaks();
}

/// 50 execs at once (10 threads x 5) into one container, each with its own output and exit
/// code: every one arrives at the right `ctr task exec`. Afterwards only the init is left, the
/// shim has no zombie and no more open fds than before (every exec's stdio was released).
fn concurrent_execs(runtime: &str) {
    const TOTAL: usize = 50;
    const THREADS: usize = 10;
    let Some(t) = Container::start(runtime, "exec-many") else {
        return;
    };
    let shim = t.shim_pid();
    // One exec first, so whatever the shim opens once on its first exec is in the baseline.
    let r = t.exec("warm-up", &["true"]);
    assert_eq!(r.code, 0, "{r}");
    let baseline = fds(shim);
    assert!(!baseline.is_empty(), "cannot read /proc/{shim}/fd");

    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= TOTAL {
                        break;
                    }
                    let script = format!("echo out{n}; exit $(({n} % 7))");
                    let r = t.exec(&format!("x{n}"), &["sh", "-c", &script]);
                    let want = ((n % 7) as i32, format!("out{n}\n"));
                    // runc.v2 is the reference for exit codes here; its output of a concurrent
                    // exec is not: CI saw it lose one (`exec x47: got exit code 5`, no stdout).
                    // sibling's output stays strict.
                    let output_ok = r.stdout == want.1 || (runtime == RUNC && r.stdout.is_empty());
                    if r.stdout.is_empty() && runtime == RUNC && r.code == want.0 {
                        eprintln!(
                            "runc.v2 lost the output of exec x{n} (tolerated for the reference)"
                        );
                    }
                    if r.code != want.0 || !output_ok {
                        let mut failures = failures.lock().unwrap_or_else(|e| e.into_inner());
                        failures.push(format!("exec x{n}: want {want:?}, got {r}"));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    assert!(
        failures.is_empty(),
        "{} of {TOTAL} execs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    t.assert_running();
    let ps = t.ps();
    assert_eq!(
        ps.iter().map(|l| l.pid).collect::<Vec<_>>(),
        vec![t.init],
        "only the init is left: {ps:?}"
    );
    assert_no_lasting_zombies(shim);
    // ctr Deleted every exec; give the shim a moment to close what it held for them.
    // runc's shim built with Go 1.23 or later (containerd 2.x's) holds a pidfd in each
    // os.Process it started until Go's garbage collector finalizes it (its reaper waits with
    // wait4, never through the os.Process): a pidfd of runc's shim is not counted. Ours closes
    // every fd it holds for an exec at Delete.
    let counted = |fds: Vec<String>| -> Vec<String> {
        fds.into_iter()
            .filter(|fd| runtime != RUNC || !fd.ends_with("anon_inode:[pidfd]"))
            .collect()
    };
    let baseline = counted(baseline);
    let deadline = Instant::now() + Duration::from_secs(5);
    while counted(fds(shim)).len() > baseline.len() && Instant::now() < deadline {
        thread::sleep(POLL);
    }
    let now = counted(fds(shim));
    let added: Vec<&String> = now.iter().filter(|fd| !baseline.contains(fd)).collect();
    assert!(
        now.len() <= baseline.len(),
        "shim {shim} holds {} fds after {TOTAL} deleted execs, {} before; new: {added:#?}",
        now.len(),
        baseline.len()
    );
    t.remove_and_check_leaks();
}

/// An exec of a missing binary fails `ctr task exec` with an error naming it; the container
/// keeps running, the failed exec leaves no process behind, and its exec id can be used again.
fn missing_binary(runtime: &str) {
    let Some(t) = Container::start(runtime, "exec-nope") else {
        return;
    };
    let r = t.exec("nope", &["/bin/nope"]);
    assert_ne!(r.code, 0, "{r}");
    assert!(
        r.stderr.contains("/bin/nope"),
        "the error must name the missing binary\n{r}"
    );
    t.assert_running();
    let ps = t.ps();
    assert_eq!(
        ps.iter().map(|l| l.pid).collect::<Vec<_>>(),
        vec![t.init],
        "the failed exec must leave no process: {ps:?}"
    );
    let r = t.exec("nope", &["echo", "still here"]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "still here\n"),
        "an exec after the failed one (same exec id) must work\n{r}"
    );
    t.assert_running();
    assert_no_lasting_zombies(t.shim_pid());
    t.remove_and_check_leaks();
}

/// While an exec runs, `ctr task ps` lists its host pid with its exec id in the INFO column
/// (ProcessDetails), and the init with none. The pid is the exec's real process. SIGTERM by
/// exec id ends it (not a PID 1: no protection) and ctr exits 143.
fn ps_shows_exec_id(runtime: &str) {
    let Some(t) = Container::start(runtime, "exec-ps") else {
        return;
    };
    let mut run = t.spawn_exec("ps-me", &["sleep", "100"]);
    let pid = t.wait_for_exec("ps-me", Some(&mut run));
    let ps = t.ps();
    let init = ps.iter().find(|l| l.pid == t.init);
    assert!(
        init.is_some_and(|l| l.exec_id.is_none() && l.info == "-"),
        "the init has no exec id: {ps:?}"
    );
    let exec = ps.iter().find(|l| l.pid == pid).expect("listed above");
    // ctr 1.x names the type (`&ProcessDetails{ExecID:ps-me,}`); ctr 2.x prints the message in
    // protobuf text format (`exec_id:"ps-me"`), which it could only decode as ProcessDetails.
    assert!(
        exec.exec_id.as_deref() == Some("ps-me")
            && (exec.info.contains("ProcessDetails") || exec.info == r#"exec_id:"ps-me""#),
        "INFO of the exec: {exec:?}"
    );
    assert_eq!(ps.len(), 2, "init and the exec: {ps:?}");
    assert_eq!(
        cmdline(pid),
        ["sleep", "100"],
        "pid {pid} listed for exec ps-me is not the exec"
    );

    t.c.ctr_ok(&["task", "kill", "--exec-id", "ps-me", "-s", "SIGTERM", &t.id]);
    let r = run.finish(command_timeout());
    assert_eq!(r.code, 143, "ctr task exec must exit 128 + SIGTERM\n{r}");
    t.wait_exec_gone("ps-me", pid);
    t.assert_running();
    t.remove_and_check_leaks();
}

/// The exec's process is a direct child of the shim daemon (sibling: CLONE_PARENT; runc: runc's
/// exec is reparented to the subreaper shim), the same parent as the init, and it lives in the
/// container: same PID and mount namespaces, same cgroups as the init.
fn exec_is_child_of_the_shim(runtime: &str) {
    let Some(t) = Container::start(runtime, "exec-ppid") else {
        return;
    };
    t.exec_detached("child", &["sleep", "100"]);
    let pid = t.wait_for_exec("child", None);
    let parent = ppid(pid).unwrap_or_else(|| panic!("no PPid for exec {pid}"));
    let parent_argv = cmdline(parent);
    let shim = shim_binary_name(runtime);
    assert!(
        parent_argv.first().is_some_and(|a| a.ends_with(&shim)),
        "parent {parent} of exec {pid} is {parent_argv:?}, not {shim}"
    );
    assert!(
        t.c.shim_pids().contains(&parent),
        "parent {parent} is not a shim of our containerd"
    );
    assert_eq!(parent, t.shim_pid(), "exec and init have the same parent");
    for ns in ["pid", "mnt"] {
        let link = |p: u32| fs::read_link(format!("/proc/{p}/ns/{ns}")).ok();
        assert_eq!(link(pid), link(t.init), "{ns} namespace of exec vs init");
    }
    let cgroups = |p: u32| fs::read_to_string(format!("/proc/{p}/cgroup")).ok();
    assert_eq!(cgroups(pid), cgroups(t.init), "cgroups of exec vs init");
    assert!(cgroups(pid).is_some(), "no cgroup file for {pid}");

    t.c.ctr_ok(&["task", "kill", "--exec-id", "child", "-s", "SIGKILL", &t.id]);
    t.wait_exec_gone("child", pid);
    assert_reaped(pid);
    assert_no_lasting_zombies(parent);
    t.remove_and_check_leaks();
}

/// An exec that leaves a background child behind, holding the exec's stdout and stderr, still
/// ends `ctr task exec` with its own exit code and output: ctr must not wait for the child.
///
/// runc's shim copies the exec's output through a pipe of its own and, in Delete, closes its
/// end of the FIFO after waiting at most 2 s for the copy, so ctr sees EOF. A shim that hands
/// the FIFO's write end to the process itself cannot close it: the child keeps it open, ctr
/// never sees EOF and hangs (here until the harness kills it after the command timeout).
fn exec_exits_while_its_child_holds_stdout(runtime: &str) {
    let Some(t) = Container::start(runtime, "exec-orphan") else {
        return;
    };
    let mut run = t.spawn_exec("orphan", &["sh", "-c", "sleep 1000 & echo started"]);
    let r = run.finish(command_timeout());
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "started\n"),
        "ctr task exec must return once the exec exited, with a child of it still running\n{r}"
    );
    // The child lives on in the container, re-parented to its init; it dies with the container.
    let ps = t.ps();
    assert!(
        ps.iter()
            .any(|l| l.pid != t.init && cmdline(l.pid) == ["sleep", "1000"]),
        "the exec's child keeps running: {ps:?}"
    );
    t.remove_and_check_leaks();
}

/// The life of a detached exec, which ctr never Deletes by itself: `ctr task rm --exec-id`
/// refuses a running exec (failed precondition), and after it exited returns its exit code as
/// ctr's (137 after SIGKILL, 3 after `exit 3`); then the exec id is gone (not found for rm and
/// kill). A kill of an exec that has exited but is not deleted is "not found" too, and
/// `rm -f` kills a running exec and deletes it (ctr 1.6; ctr 1.7 and 2.x refuse it like `rm`).
fn detached_exec_delete(runtime: &str) {
    let Some(t) = Container::start(runtime, "exec-delete") else {
        return;
    };
    let rm = |flags: &[&str], exec_id: &str| -> CtrResult {
        let mut args = vec!["task", "rm"];
        args.extend(flags);
        args.extend(["--exec-id", exec_id, &t.id]);
        t.c.ctr(&args).into()
    };
    let kill = |exec_id: &str| -> CtrResult {
        t.c.ctr(&["task", "kill", "--exec-id", exec_id, "-s", "SIGKILL", &t.id])
            .into()
    };

    t.exec_detached("bg", &["sleep", "100"]);
    let pid = t.wait_for_exec("bg", None);
    let r = rm(&[], "bg");
    assert!(
        r.code != 0 && r.stderr.contains("failed precondition"),
        "deleting a running exec must fail with a precondition error\n{r}"
    );
    let r = kill("bg");
    assert_eq!(r.code, 0, "{r}");
    t.wait_exec_gone("bg", pid);
    assert_reaped(pid);
    let r = kill("bg");
    assert!(
        r.code != 0 && r.stderr.contains("not found"),
        "killing an exited exec must say not found\n{r}"
    );
    let r = rm(&[], "bg");
    assert_eq!(
        r.code, 137,
        "delete reports the exec's exit: 128 + SIGKILL\n{r}"
    );
    for r in [rm(&[], "bg"), kill("bg")] {
        assert!(
            r.code != 0 && r.stderr.contains("not found"),
            "a deleted exec id must be not found\n{r}"
        );
    }

    t.exec_detached("code", &["sh", "-c", "exit 3"]);
    // Deleting may only work once it has exited: retry while it is still running.
    let deadline = Instant::now() + command_timeout();
    let r = loop {
        let r = rm(&[], "code");
        if !r.stderr.contains("failed precondition") || Instant::now() >= deadline {
            break r;
        }
        thread::sleep(POLL);
    };
    assert_eq!(r.code, 3, "delete reports the exec's exit code\n{r}");

    t.exec_detached("forced", &["sleep", "100"]);
    let pid = t.wait_for_exec("forced", None);
    let r = rm(&["-f"], "forced");
    if containerd_version() >= (1, 7) {
        // ctr 1.7 (as of 1.7.24) and 2.x kill nothing here: their WithProcessKill skips a
        // process whose pid they do not know (containerd#10441), and a process `task rm` loads
        // by exec id has pid 0. ctr's own state check then refuses the running exec, as for
        // `rm` without -f.
        assert!(
            r.code != 0 && r.stderr.contains("failed precondition"),
            "ctr 1.7/2.x: rm -f of a running exec is refused\n{r}"
        );
        t.c.ctr_ok(&[
            "task",
            "kill",
            "--exec-id",
            "forced",
            "-s",
            "SIGKILL",
            &t.id,
        ]);
        t.wait_exec_gone("forced", pid);
        let r = rm(&[], "forced");
        assert_eq!(r.code, 137, "delete after SIGKILL\n{r}");
    } else {
        assert_eq!(
            r.code, 137,
            "rm -f kills the running exec, then deletes it\n{r}"
        );
    }
    assert_reaped(pid);
    t.wait_exec_gone("forced", pid);

    t.assert_running();
    assert_no_lasting_zombies(t.shim_pid());
    t.remove_and_check_leaks();
}

/// Running execs die with the container: SIGKILL to the init (PID 1 of the container's PID
/// namespace) takes every process of the namespace with it. The attached exec's ctr exits 137,
/// the detached exec's process is reaped, the task is STOPPED, and a new exec is refused.
fn execs_die_with_the_init(runtime: &str) {
    let Some(t) = Container::start(runtime, "exec-init-dies") else {
        return;
    };
    t.exec_detached("bg", &["sleep", "100"]);
    let mut fg = t.spawn_exec("fg", &["sleep", "100"]);
    let bg_pid = t.wait_for_exec("bg", None);
    t.wait_for_exec("fg", Some(&mut fg));
    let shim = t.shim_pid();

    t.c.ctr_ok(&["task", "kill", "-s", "SIGKILL", &t.id]);
    let r = fg.finish(command_timeout());
    assert_eq!(
        r.code, 137,
        "the exec dies with the init: 128 + SIGKILL\n{r}"
    );
    assert_eq!(t.c.wait_for_task(&t.id, "STOPPED", None), t.init);
    assert_reaped(bg_pid);
    assert_reaped(t.init);

    let r = t.exec("late", &["true"]);
    assert_ne!(r.code, 0, "an exec into a stopped container must fail\n{r}");
    assert_no_lasting_zombies(shim);
    t.remove_and_check_leaks();
}

/// ctr copies its stdin to the exec and closes it at EOF (CloseIO): `cat` gets the data, then
/// EOF, and exits 0. A large input (several pipe buffers) arrives whole.
fn stdin_reaches_the_exec(runtime: &str) {
    let Some(t) = Container::start(runtime, "exec-stdin") else {
        return;
    };
    let r = t.exec_with_input("in", &["cat"], b"data\n");
    assert_eq!((r.code, r.stdout.as_str()), (0, "data\n"), "{r}");

    const BIG: usize = 1 << 20;
    let input: Vec<u8> = (0..BIG).map(|i| b'a' + (i % 26) as u8).collect();
    let r = t.exec_with_input("big", &["wc", "-c"], &input);
    assert_eq!(
        (r.code, r.stdout.trim()),
        (0, BIG.to_string().as_str()),
        "{r}"
    );
    // Round trip: what cat echoes back is exactly the input.
    let r = t.exec_with_input("echo-back", &["cat"], &input);
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stdout.as_bytes() == input.as_slice(),
        "cat returned {} bytes, not the {BIG} sent (first difference at {:?})",
        r.stdout.len(),
        r.stdout.bytes().zip(&input).position(|(a, &b)| a != b)
    );
    t.assert_running();
    t.remove_and_check_leaks();
}

#[test]
#[ignore = "needs root"]
fn ps_output_parses() {
    // What ctr 1.6 prints, seen with both shims.
    let out =
        "PID      INFO\n29267    -\n29320    &ProcessDetails{ExecID:e2,XXX_unrecognized:[],}\n";
    assert_eq!(
        parse_ps(out),
        [
            PsLine {
                pid: 29267,
                exec_id: None,
                info: "-".into()
            },
            PsLine {
                pid: 29320,
                exec_id: Some("e2".into()),
                info: "&ProcessDetails{ExecID:e2,XXX_unrecognized:[],}".into()
            },
        ]
    );
    // What ctr 2.1 prints.
    let out = "PID      INFO\n17426    -\n17470    exec_id:\"bg\"\n";
    assert_eq!(
        parse_ps(out)[1],
        PsLine {
            pid: 17470,
            exec_id: Some("bg".into()),
            info: r#"exec_id:"bg""#.into()
        }
    );
}
