//! Checkpoint and restore through a real containerd and `ctr` (`ctr c checkpoint --task`,
//! `ctr c restore --live`, `ctr task checkpoint --exit --image-path`), each against
//! `io.containerd.runc.v2` too. CRIU comes from `SIBLING_CRIU` or `build/criu` (`make criu`),
//! put in the private containerd's PATH.

#[macro_use]
mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{
    PrivateContainerd, RUNC, SIBLING, cmdline, proc_status_field, require_root_and_tools,
    shim_binary_name, unique_id,
};

for_each_runtime!(checkpoint_then_restore_continues_the_counter);

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
    c.ctr_ok(&["container", "checkpoint", "--task", &id, &image]);
    let after = count(&c, &id);
    assert!(
        eventually(|| count(&c, &id) > after + 3),
        "counter stopped after the checkpoint"
    );
    c.remove_container(&id);

    // Restore into a new container: the counter goes on from where it was, not from zero.
    c.ctr_ok(&["container", "restore", "--live", &restored, &image]);
    let init = c.wait_for_task(&restored, "RUNNING", None);
    assert_parent_is_shim(&c, runtime, init);
    assert!(
        eventually(|| count(&c, &restored) > 0),
        "restored counter never wrote"
    );
    let first = count(&c, &restored);
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
