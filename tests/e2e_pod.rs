//! End to end through a real containerd: pods (several containers in one shim), a shim that dies
//! under containerd, and containerd that dies under its shims. Every check runs for `io.containerd.runc.v2` (proving the expectation)
//! and for sibling, each with its own private containerd and a leak check at the end.
//!
//! Needs root, containerd and ctr: skipped with a message otherwise, failed in CI (`CI=true`).

#[macro_use]
mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{
    NAMESPACE, PrivateContainerd, RUNC, SIBLING, assert_reaped, command_timeout, ppid,
    proc_status_field, require_root_and_tools, shim_socket_path, unique_id,
};

for_each_runtime!(
    pod_of_three_containers_shares_one_shim,
    killed_shim_is_cleaned_up,
    an_exit_while_containerd_is_down_is_reported_after,
);

fn containerd(runtime: &str) -> Option<PrivateContainerd> {
    require_root_and_tools().then(|| PrivateContainerd::start_with_runtime(runtime))
}

fn ppid_of(pid: u32) -> u32 {
    ppid(pid).unwrap_or_else(|| panic!("no PPid for {pid}"))
}

/// Shim daemons of this containerd: its shim processes but sibling's spawners (a spawner is a
/// child of its daemon and carries the daemon's command line).
fn shim_daemons(c: &PrivateContainerd) -> Vec<u32> {
    let shims = c.shim_pids();
    let mut daemons: Vec<u32> = shims
        .iter()
        .copied()
        .filter(|&pid| !shims.contains(&ppid_of(pid)))
        .collect();
    daemons.sort_unstable();
    daemons
}

/// Three containers with the same group annotation (what the CRI plugin's sandbox id does for a
/// pod) run in one shim daemon, each init its direct child; an exec works in any of them, and
/// removing one leaves the shim serving the others.
fn pod_of_three_containers_shares_one_shim(runtime: &str) {
    let Some(c) = containerd(runtime) else { return };
    let pod = unique_id("pod");
    let annotation = format!("io.containerd.runc.v2.group={pod}");
    let ids: Vec<String> = (0..3).map(|i| unique_id(&format!("pod{i}"))).collect();
    let mut parents = Vec::new();
    for id in &ids {
        c.run_detached_with(&["--annotation", &annotation], id, &["sleep", "300"]);
        let init = c.wait_for_task(id, "RUNNING", None);
        parents.push(ppid_of(init));
    }
    let daemons = shim_daemons(&c);
    assert_eq!(daemons.len(), 1, "shim daemons for one pod: {daemons:?}");
    assert!(
        parents.iter().all(|&p| p == daemons[0]),
        "parents of the inits {parents:?}, shim daemon {daemons:?}"
    );
    let fifo_dir = c.fifo_dir().display().to_string();
    let exec = [
        "task",
        "exec",
        "--fifo-dir",
        &fifo_dir,
        "--exec-id",
        "hello",
        &ids[1],
        "echo",
        "hi",
    ];
    assert_eq!(c.ctr_ok(&exec).trim(), "hi");

    c.remove_container(&ids[0]);
    assert_eq!(
        c.task(&ids[1]).map(|(_, status)| status).as_deref(),
        Some("RUNNING")
    );
    assert_eq!(shim_daemons(&c), daemons, "the pod's shim changed");
    for id in &ids[1..] {
        c.remove_container(id);
    }
    c.assert_no_leaks(&ids);
}

/// sibling only (runc.v2 gives every container outside a pod its own shim): containers without
/// a pod share a daemon, each init its direct child; a container started while another still
/// runs joins it too, and once all are removed the daemon leaves after its idle time (1 s in
/// these tests) with nothing behind.
#[test]
fn containers_outside_pods_share_one_daemon() {
    let Some(c) = containerd(SIBLING) else { return };
    let ids: Vec<String> = (0..3).map(|i| unique_id(&format!("solo{i}"))).collect();
    let mut parents = Vec::new();
    for id in &ids[..2] {
        c.run_detached(id, &["sleep", "300"]);
        parents.push(ppid_of(c.wait_for_task(id, "RUNNING", None)));
    }
    let daemons = shim_daemons(&c);
    assert_eq!(daemons.len(), 1, "shim daemons: {daemons:?}");
    assert!(
        parents.iter().all(|&p| p == daemons[0]),
        "parents {parents:?}"
    );

    c.remove_container(&ids[0]);
    c.run_detached(&ids[2], &["sleep", "300"]);
    let third = c.wait_for_task(&ids[2], "RUNNING", None);
    assert_eq!(ppid_of(third), daemons[0], "the third container's daemon");
    let short = unique_id("solo-rm");
    let (code, out) = c.run(&short, &["sh", "-c", "echo ran; exit 3"]);
    assert_eq!((code, out.trim()), (3, "ran"));
    assert_eq!(shim_daemons(&c), daemons, "one daemon all along");
    // The daemon's log reached containerd through the log FIFO of the container that started
    // it; that one is gone, and the daemon's lines about later containers still arrive.
    let log = std::fs::read_to_string(c.log_path()).unwrap_or_default();
    for id in [&ids[2], &short] {
        assert!(
            log.contains(&format!("msg=\"create {id} ")),
            "no daemon log line for {id} in containerd's log"
        );
    }
    for id in &ids[1..] {
        c.remove_container(id);
    }
    c.assert_no_leaks(&[&ids[0], &ids[1], &ids[2], &short]);
}

/// SIGKILL of the shim daemon while its container runs: containerd notices the lost connection
/// and runs the shim's `delete` action, which kills what is left; nothing remains: no container
/// process, mount, cgroup, socket or shim.
fn killed_shim_is_cleaned_up(runtime: &str) {
    let Some(c) = containerd(runtime) else { return };
    let id = unique_id("killed");
    c.run_detached(&id, &["sleep", "300"]);
    let init = c.wait_for_task(&id, "RUNNING", None);
    let daemons = shim_daemons(&c);
    assert_eq!(daemons.len(), 1, "shim daemons: {daemons:?}");
    let daemon = daemons[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the shim daemon");

    // containerd cleans up on its own: the task disappears (or shows STOPPED) and the
    // container's init is gone, without anyone deleting it.
    let deadline = Instant::now() + command_timeout();
    loop {
        let task = c.task(&id);
        let init_alive = std::path::Path::new(&format!("/proc/{init}")).exists()
            && proc_status_field(init, "State").is_some_and(|s| !s.starts_with('Z'));
        if !init_alive && task.as_ref().is_none_or(|(_, status)| status == "STOPPED") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the shim was killed: task {task:?}, init {init} alive {init_alive}\n{}",
            c.log_tail()
        );
        thread::sleep(Duration::from_millis(100));
    }
    let _ = c.ctr(&["task", "rm", "-f", &id]);
    c.remove_container(&id);
    if runtime == RUNC {
        // The reference shim's `delete` action leaves its socket behind after a SIGKILL (its
        // daemon removes it only on a clean exit); ours must not, so only runc's is forgiven.
        if let Some(socket) = shim_socket_path(&c.address(), NAMESPACE, &id) {
            let _ = std::fs::remove_file(socket);
        }
    }
    c.assert_no_leaks(&[&id]);
}

/// containerd crashes; while it is down the container's init exits with 7; containerd comes
/// back, reconnects to the shim, and the exit is there: the task is STOPPED and its delete
/// reports code 7.
fn an_exit_while_containerd_is_down_is_reported_after(runtime: &str) {
    let Some(mut c) = containerd(runtime) else {
        return;
    };
    let id = unique_id("downexit");
    let script = "while [ ! -e /tmp/go ]; do sleep 0.05; done; exit 7";
    c.run_detached(&id, &["sh", "-c", script]);
    let init = c.wait_for_task(&id, "RUNNING", None);
    c.crash();
    // Tell the init to exit, through its root as the host sees it.
    std::fs::write(format!("/proc/{init}/root/tmp/go"), "").expect("signal the init");
    assert_reaped(init);
    c.start_again();
    c.wait_for_task(&id, "STOPPED", None);
    let deleted = c.ctr(&["task", "rm", &id]);
    let stderr = String::from_utf8_lossy(&deleted.stderr);
    assert!(
        stderr.contains("exit code 7"),
        "ctr task rm did not report exit code 7: {stderr}"
    );
    c.remove_container(&id);
    c.assert_no_leaks(&[&id]);
}
