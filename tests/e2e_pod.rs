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
    NAMESPACE, PrivateContainerd, RUNC, SIBLING, assert_reaped, command_timeout,
    containerd_version, ppid, proc_status_field, require_root_and_tools, shim_socket_path,
    unique_id,
};

for_each_runtime!(
    two_containers_outside_pods_get_two_daemons,
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

/// The default, as runc.v2: two `ctr run -d` containers outside pods get two shim daemons,
/// each the parent of its own init; removing one leaves the other's daemon serving.
fn two_containers_outside_pods_get_two_daemons(runtime: &str) {
    let Some(c) = containerd(runtime) else { return };
    let ids: Vec<String> = (0..2).map(|i| unique_id(&format!("own{i}"))).collect();
    let mut parents = Vec::new();
    for id in &ids {
        c.run_detached(id, &["sleep", "300"]);
        parents.push(ppid_of(c.wait_for_task(id, "RUNNING", None)));
    }
    let daemons = shim_daemons(&c);
    assert_eq!(daemons.len(), 2, "shim daemons: {daemons:?}");
    assert_ne!(parents[0], parents[1], "inits' parents {parents:?}");
    assert!(
        parents.iter().all(|p| daemons.contains(p)),
        "parents {parents:?}, daemons {daemons:?}"
    );
    c.remove_container(&ids[0]);
    let second = c.wait_for_task(&ids[1], "RUNNING", None);
    assert_eq!(ppid_of(second), parents[1], "the second daemon serves on");
    c.remove_container(&ids[1]);
    c.assert_no_leaks(&[&ids[0], &ids[1]]);
}

/// sibling only (runc.v2 has no such option): with sharing turned on in the runtime's options
/// (`ctr run --runtime-config-path`, the `runtimeoptions.v1.Options` CRI also sends, naming a
/// TOML file), containers without a pod share a daemon, each init its direct child; a
/// container started while another still runs joins it too, and once all are removed the
/// daemon leaves after its idle time (1 s here) with nothing behind.
#[test]
#[ignore = "needs root"]
fn with_sharing_on_containers_outside_pods_share_one_daemon() {
    let Some(c) = containerd(SIBLING) else { return };
    let config = c.dir().join("sibling.toml");
    std::fs::write(&config, "containers_per_shim = 16\nidle_seconds = 1\n").unwrap();
    let config = config.display().to_string();
    let flags = ["--runtime-config-path", config.as_str()];
    let ids: Vec<String> = (0..3).map(|i| unique_id(&format!("solo{i}"))).collect();
    let mut parents = Vec::new();
    for id in &ids[..2] {
        c.run_detached_with(&flags, id, &["sleep", "300"]);
        parents.push(ppid_of(c.wait_for_task(id, "RUNNING", None)));
    }
    let daemons = shim_daemons(&c);
    assert_eq!(daemons.len(), 1, "shim daemons: {daemons:?}");
    assert!(
        parents.iter().all(|&p| p == daemons[0]),
        "parents {parents:?}"
    );

    c.remove_container(&ids[0]);
    c.run_detached_with(&flags, &ids[2], &["sleep", "300"]);
    let third = c.wait_for_task(&ids[2], "RUNNING", None);
    assert_eq!(ppid_of(third), daemons[0], "the third container's daemon");
    // Without the option, a container gets a daemon of its own even while one is shared.
    let own = unique_id("solo-own");
    c.run_detached(&own, &["sleep", "300"]);
    let own_init = c.wait_for_task(&own, "RUNNING", None);
    assert!(
        !daemons.contains(&ppid_of(own_init)),
        "a container without the option joined the shared daemon"
    );
    c.remove_container(&own);
    assert_eq!(shim_daemons(&c), daemons, "one shared daemon all along");
    // Every line of the shared daemon names the container it is about, and reached
    // containerd through that container's log FIFO, also after the first one was gone.
    let log = std::fs::read_to_string(c.log_path()).unwrap_or_default();
    let id = &ids[2];
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("msg=\"create {id} ")) && l.contains(&format!("id={id}"))),
        "no daemon log line naming {id} in containerd's log"
    );
    for id in &ids[1..] {
        c.remove_container(id);
    }
    c.assert_no_leaks(&[&ids[0], &ids[1], &ids[2], &own]);
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
/// reports code 7. containerd 1.7 and 2.x instead take a shim that lists no pids and serves no
/// sandbox for one left over from a failed create ("cleaning leaked shim process",
/// containerd#6860) and delete it while loading: the task is gone, with either shim, and
/// nothing may be left behind.
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
    if containerd_version() >= (1, 7) {
        // containerd loads (and here deletes) shims before it answers: start_again waited.
        assert_eq!(c.task(&id), None, "the task is gone\n{}", c.log_tail());
        let log = std::fs::read_to_string(c.log_path()).unwrap_or_default();
        assert!(
            log.contains("cleaning leaked shim process"),
            "containerd did not say why the task is gone\n{}",
            c.log_tail()
        );
        c.remove_container(&id);
        c.assert_no_leaks(&[&id]);
        return;
    }
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

/// sibling only (ctr cannot set runc.v2's `ShimCgroup`; its Go clients and CRI do): the
/// runtime options' `shim_cgroup` puts the daemon, and only the daemon, in that cgroup in every
/// hierarchy where it exists; the container's init stays in its own.
#[test]
#[ignore = "needs root"]
fn the_shim_cgroup_option_places_the_daemon() {
    let Some(c) = containerd(SIBLING) else { return };
    let name = format!("sibling-e2e-shim-{}", std::process::id());
    let hierarchies: Vec<std::path::PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(" - cgroup ") || l.contains(" - cgroup2 "))
        .filter_map(|l| l.split_whitespace().nth(4).map(std::path::PathBuf::from))
        .collect();
    let made: Vec<std::path::PathBuf> = hierarchies
        .iter()
        .map(|h| h.join(&name))
        .filter(|dir| std::fs::create_dir(dir).is_ok())
        .collect();
    assert!(!made.is_empty(), "no cgroup made in {hierarchies:?}");
    // Removed however the test ends (the daemon is gone by then, or killed by the leak check).
    struct Remove(Vec<std::path::PathBuf>);
    impl Drop for Remove {
        fn drop(&mut self) {
            for dir in &self.0 {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
    let _remove = Remove(made.clone());
    // A v1 cpuset cgroup takes no process until it has CPUs and memory nodes (as an operator's
    // shim cgroup would): its parent's.
    for dir in &made {
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if let Ok(parent) = std::fs::read_to_string(dir.parent().unwrap().join(file)) {
                std::fs::write(dir.join(file), parent.trim()).unwrap();
            }
        }
    }
    let config = c.dir().join("shim-cgroup.toml");
    std::fs::write(&config, format!("shim_cgroup = \"/{name}\"\n")).unwrap();
    let config = config.display().to_string();
    let id = unique_id("shimcg");
    c.run_detached_with(&["--runtime-config-path", &config], &id, &["sleep", "300"]);
    let init = c.wait_for_task(&id, "RUNNING", None);
    let daemon = ppid_of(init);
    let cgroups = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let daemon_cgroups = cgroups(daemon);
    let placed = daemon_cgroups
        .lines()
        .filter(|l| l.ends_with(&format!(":/{name}")))
        .count();
    assert_eq!(placed, made.len(), "daemon's cgroups:\n{daemon_cgroups}");
    assert!(
        !cgroups(init).contains(&name),
        "the init is in the shim cgroup:\n{}",
        cgroups(init)
    );
    // containerd's oom_score_adj + 1, as the Go shim sets it.
    let score = |pid: u32| -> i32 {
        std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let containerd_pid = c.pid().expect("containerd's pid");
    assert_eq!(
        score(daemon),
        (score(containerd_pid) + 1).min(1000),
        "daemon's oom_score_adj"
    );
    c.remove_container(&id);
    c.assert_no_leaks(&[&id]);
    for dir in made {
        // The daemon has exited (the leak check waited for it): the cgroup is empty.
        std::fs::remove_dir(&dir).unwrap_or_else(|e| panic!("rmdir {}: {e}", dir.display()));
    }
}
