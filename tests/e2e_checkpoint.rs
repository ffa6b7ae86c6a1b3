//! Checkpoint and restore through a real containerd and `ctr` (`ctr c checkpoint --task`,
//! `ctr c restore --live`, `ctr task checkpoint --exit --image-path`), each against
//! `io.containerd.runc.v2` too. CRIU comes from `SIBLING_CRIU` or `build/criu` (`make criu`),
//! put in the private containerd's PATH.

#[macro_use]
mod common;

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    CtrResult, IMAGE, NAMESPACE, PrivateContainerd, RUNC, SIBLING, cmdline, command_timeout,
    containerd_tool, containerd_version, output_with_input, proc_status_field,
    require_root_and_tools, shim_binary_name, unique_id,
};

for_each_runtime!(
    checkpoint_then_restore_continues_the_counter,
    terminal_checkpoint_then_restore_continues_on_a_new_terminal,
);

const COUNTER: &str = "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done";

fn containerd(runtime: &str) -> Option<PrivateContainerd> {
    require_root_and_tools().then(|| PrivateContainerd::start_with_runtime(runtime))
}

/// The container's counter, read with an exec (0 when there is none yet).
fn count(c: &PrivateContainerd, id: &str) -> u64 {
    let exec = unique_id("cat");
    let out = c.ctr(&["task", "exec", "--exec-id", &exec, id, "cat", "/tmp/count"]);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    false
}

fn assert_parent_is_shim(c: &PrivateContainerd, runtime: &str, init: u32) {
    let ppid: u32 = proc_status_field(init, "PPid")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no PPid for init {init}"));
    let argv = cmdline(ppid);
    let shim = shim_binary_name(runtime);
    assert!(
        argv.first().is_some_and(|a| a.ends_with(&shim)),
        "parent {ppid} of the restored init {init} is {argv:?}, not {shim}"
    );
    assert!(
        c.shim_pids().contains(&ppid),
        "parent {ppid} is not our shim"
    );
}

fn checkpoint_then_restore_continues_the_counter(runtime: &str) {
    let Some(c) = containerd(runtime) else { return };
    let id = unique_id("ckpt");
    let restored = unique_id("restored");
    let image = format!("sibling-test/checkpoint:{id}");
    c.run_detached(&id, &["sh", "-c", COUNTER]);
    c.wait_for_task(&id, "RUNNING", None);
    // Far enough (about 2 s of counting) that a counter restarted from zero could not have
    // passed it by the first read after the restore.
    assert!(eventually(|| count(&c, &id) > 40), "counter never moved");

    // Leave-running (containerd pauses the task around it): it counts on afterwards.
    let before = count(&c, &id);
    // With the rootfs changes (`--rw`), as the restore: the shell may hold /tmp/count open
    // (`> /tmp/count`) at the dump, and CRIU must find it on restore.
    c.ctr_ok(&["container", "checkpoint", "--rw", "--task", &id, &image]);
    let after = count(&c, &id);
    assert!(
        eventually(|| count(&c, &id) > after + 3),
        "counter stopped after the checkpoint"
    );
    c.remove_container(&id);

    // Restore into a new container: the counter goes on from where it was, not from zero.
    c.ctr_ok(&["container", "restore", "--rw", "--live", &restored, &image]);
    let init = c.wait_for_task(&restored, "RUNNING", None);
    assert_parent_is_shim(&c, runtime, init);
    // A read between the shell's truncation and its write sees an empty file (0): the first
    // count is the first non-empty read.
    let mut first = 0;
    assert!(
        eventually(|| {
            first = count(&c, &restored);
            first > 0
        }),
        "restored counter never wrote"
    );
    assert!(
        first > before,
        "the restored counter restarted: {first}, {before} before the checkpoint"
    );
    assert!(
        eventually(|| count(&c, &restored) > first + 3),
        "restored counter does not move"
    );

    // `ctr task checkpoint --exit --image-path` is not here: ctr 1.6 sends CheckpointOptions
    // (exit, image path) only to runtimes named io.containerd.runc.*, so for this runtime it
    // would silently checkpoint into the content store instead. tests/checkpoint.rs sends the
    // same options as containerd's Go client does.
    c.remove_container(&restored);
    let _ = c.ctr(&["image", "rm", &image]);
    c.assert_no_leaks(&[&id, &restored]);
}

/// `ctr` for this containerd with `args`, as one shell-quoted line.
fn ctr_line(c: &PrivateContainerd, args: &[&str]) -> String {
    let mut all = vec![
        containerd_tool("ctr").display().to_string(),
        "-a".into(),
        c.address().display().to_string(),
        "-n".into(),
        NAMESPACE.into(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    all.iter()
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `line` inside `script(1)` (a pty of its own: these machines have no terminal), with
/// `input` typed into it.
fn in_terminal(line: &str, input: &[u8]) -> CtrResult {
    let mut cmd = Command::new("script");
    cmd.args(["-qfec", line, "/dev/null"]);
    output_with_input(&mut cmd, Some(input), command_timeout()).into()
}

/// Counts on its terminal until /tmp/stop exists, then reads a line from it and exits 42.
const TERMINAL_COUNTER: &str = "i=0; while [ ! -e /tmp/stop ]; do i=$((i+1)); echo $i > /tmp/count; echo n=$i; sleep 0.05; done; read x; echo got:$x; exit 42";

/// A terminal container (`ctr run -d -t`) checkpointed while running; `ctr container restore
/// --live` (which attaches its own terminal to a terminal container) gives the restored
/// process a new terminal: its count continues there from where it was, the line typed into
/// ctr's terminal reaches it, and ctr exits with its exit code.
fn terminal_checkpoint_then_restore_continues_on_a_new_terminal(runtime: &str) {
    let Some(c) = containerd(runtime) else { return };
    let id = unique_id("ckpttty");
    let restored = unique_id("restoredtty");
    let image = format!("sibling-test/checkpoint:{id}");
    let mut run: Vec<String> = vec!["run".into(), "-d".into(), "-t".into()];
    run.extend(["--runtime".into(), runtime.into()]);
    if runtime == RUNC {
        run.extend([
            "--runc-root".into(),
            c.dir().join("runc").display().to_string(),
        ]);
    }
    run.extend([
        IMAGE.into(),
        id.clone(),
        "sh".into(),
        "-c".into(),
        TERMINAL_COUNTER.into(),
    ]);
    let run: Vec<&str> = run.iter().map(String::as_str).collect();
    let started = in_terminal(&ctr_line(&c, &run), b"");
    assert_eq!(started.code, 0, "ctr run -d -t: {started}");
    c.wait_for_task(&id, "RUNNING", None);
    assert!(eventually(|| count(&c, &id) > 40), "counter never moved");
    let before = count(&c, &id);
    // With the rootfs changes (`--rw`): the shell may hold /tmp/count open at the dump.
    c.ctr_ok(&["container", "checkpoint", "--rw", "--task", &id, &image]);
    c.remove_container(&id);
    let restore = ctr_line(
        &c,
        &["container", "restore", "--rw", "--live", &restored, &image],
    );
    if containerd_version() < (1, 7) {
        // ctr 1.6's `container restore` creates the task without a terminal although the
        // spec has one: runc.v2 fails ("cannot allocate tty ... without setting console
        // socket"), sibling refuses (the process holds a terminal it must get again).
        let result = in_terminal(&restore, b"");
        assert_ne!(result.code, 0, "{result}");
        let expected = if runtime == RUNC {
            "cannot allocate tty"
        } else {
            "restore it with a terminal"
        };
        assert!(result.stdout.contains(expected), "{result}");
        c.remove_container(&restored);
        let _ = c.ctr(&["image", "rm", &image]);
        c.assert_no_leaks(&[&id, &restored]);
        return;
    }

    // The restore runs in the foreground on ctr's terminal until the container exits; another
    // thread lets the counter stop once it moved on after the restore.
    let stopper = {
        let address = c.address();
        let restored = restored.clone();
        thread::spawn(move || {
            let ctr = |args: &[&str]| {
                Command::new(containerd_tool("ctr"))
                    .arg("-a")
                    .arg(&address)
                    .args(["-n", NAMESPACE])
                    .args(args)
                    .output()
                    .ok()
            };
            let read = || {
                ctr(&[
                    "task",
                    "exec",
                    "--exec-id",
                    &unique_id("cat"),
                    &restored,
                    "cat",
                    "/tmp/count",
                ])
                .and_then(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .unwrap_or(0)
            };
            let moved = eventually(|| read() > 0) && {
                let first = read();
                eventually(|| read() > first + 3)
            };
            ctr(&[
                "task",
                "exec",
                "--exec-id",
                &unique_id("stop"),
                &restored,
                "touch",
                "/tmp/stop",
            ]);
            moved
        })
    };
    let result = in_terminal(&restore, b"hello\n");
    let moved = stopper.join().unwrap();
    assert!(moved, "the restored counter did not move: {result}");
    assert_eq!(result.code, 42, "ctr container restore --live: {result}");
    let counts: Vec<u64> = result
        .stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("n=")?.parse().ok())
        .collect();
    let first = *counts
        .first()
        .unwrap_or_else(|| panic!("no count on the terminal: {result}"));
    assert!(
        first > before,
        "the restored counter restarted on its terminal: {first}, {before} before the checkpoint"
    );
    assert!(result.stdout.contains("got:hello"), "{result}");
    c.remove_container(&restored);
    let _ = c.ctr(&["image", "rm", &image]);
    c.assert_no_leaks(&[&id, &restored]);
}
