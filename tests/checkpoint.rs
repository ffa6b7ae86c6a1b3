//! Checkpoint (and restore) with CRIU, protocol level: the test plays containerd against the
//! real shim and a real CRIU. Needs root, `make rootfs` and a working CRIU: `SIBLING_CRIU`, or
//! `build/criu/usr/sbin/criu` from `scripts/fetch-criu.sh` (`make criu`).

mod shim_harness;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use containerd_shim_protos::api::*;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::shim::oci::CheckpointOptions;
use containerd_shim_protos::ttrpc::{self, Code};
use shim_harness::*;

const COUNTER: &str =
    "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; echo $i; sleep 0.05; done";

/// The CRIU the tests use; a missing one fails the test (in CI it must be there).
fn criu() -> PathBuf {
    let path = std::env::var_os("SIBLING_CRIU").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("build/criu/usr/sbin/criu"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "no CRIU at {} (run scripts/fetch-criu.sh or set SIBLING_CRIU)",
        path.display()
    );
    path
}

fn sibling_options(criu: &Path) -> Any {
    let options = containerd_shim_sibling_v2::protos::options::Options {
        criu_path: criu.display().to_string(),
        ..Default::default()
    };
    Any {
        type_url: "sibling.v1.Options".into(),
        value: options.write_to_bytes().unwrap(),
        ..Default::default()
    }
}

fn checkpoint_options(options: CheckpointOptions) -> Any {
    Any {
        type_url: "containerd.runc.v1.CheckpointOptions".into(),
        value: options.write_to_bytes().unwrap(),
        ..Default::default()
    }
}

fn rpc_code(err: &ttrpc::Error) -> Code {
    match err {
        ttrpc::Error::RpcStatus(status) => status.code(),
        other => panic!("not an RPC status: {other:?}"),
    }
}

fn rpc_message(err: &ttrpc::Error) -> String {
    match err {
        ttrpc::Error::RpcStatus(status) => status.message().to_owned(),
        other => format!("{other:?}"),
    }
}

fn read_counter(bundle: &Path) -> u64 {
    std::fs::read_to_string(bundle.join("rootfs/tmp/count"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// The counter as a snapshot's upper layer holds it (0 when it has none).
fn read_upper_counter(snapshot: &Path) -> u64 {
    std::fs::read_to_string(snapshot.join("upper/tmp/count"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Polls (test-side only) until `f` holds or 10 s pass.
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn start(shim: &Shim, id: &str) -> ttrpc::Result<StartResponse> {
    let req = StartRequest {
        id: id.into(),
        ..Default::default()
    };
    shim.task.start(ctx(), &req)
}

fn wait(shim: &Shim, id: &str) -> WaitResponse {
    let req = WaitRequest {
        id: id.into(),
        ..Default::default()
    };
    shim.task.wait(ctx(), &req).expect("wait")
}

fn delete(shim: &Shim, id: &str) -> ttrpc::Result<DeleteResponse> {
    let req = DeleteRequest {
        id: id.into(),
        ..Default::default()
    };
    shim.task.delete(ctx(), &req)
}

fn checkpoint(shim: &Shim, id: &str, path: &Path, options: Option<Any>) -> ttrpc::Result<()> {
    let req = CheckpointTaskRequest {
        id: id.into(),
        path: path.display().to_string(),
        options: options.into(),
        ..Default::default()
    };
    shim.task.checkpoint(ctx(), &req).map(|_| ())
}

fn assert_released(fake: &FakeContainerd, id: &str) {
    assert_eq!(mounts_under(&fake.dir), Vec::<String>::new(), "mounts left");
    let cgroups = cgroup_dirs(&fake.cgroup_path(id));
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
}

/// A counter container with CRIU in its options, its stdout a FIFO the test reads.
fn counter(fake: &FakeContainerd, id: &str) -> (Shim, PathBuf, std::sync::mpsc::Receiver<String>) {
    let bundle = fake.bundle(id, "echo", &["/bin/sh", "-c", COUNTER]);
    let shim = fake.start_shim(id, &bundle);
    let (stdout, lines) = fake.output_lines(&format!("{id}-stdout"));
    let mut req = fake.create_request(id, &bundle, &stdout);
    req.options = Some(sibling_options(&criu())).into();
    shim.task.create(ctx(), &req).expect("create");
    start(&shim, id).expect("start");
    assert!(
        eventually(|| read_counter(&bundle) > 3),
        "counter never moved"
    );
    (shim, bundle, lines)
}

#[test]
#[ignore = "needs root"]
fn checkpoint_leaves_running_then_exits() {
    if !require_root() {
        return;
    }
    let fake = FakeContainerd::new("ckpt-run");
    let id = "ckpt-run";
    let (shim, bundle, _lines) = counter(&fake, id);
    let init = shim
        .task
        .state(
            ctx(),
            &StateRequest {
                id: id.into(),
                ..Default::default()
            },
        )
        .expect("state")
        .pid;

    // Leave-running (the default): images written, TaskCheckpointed, the counter goes on.
    let images = fake.dir.join("images-running");
    checkpoint(&shim, id, &images, None).expect("checkpoint");
    assert!(
        images.join("inventory.img").exists(),
        "no CRIU images in {}",
        images.display()
    );
    assert!(images.join("sibling-checkpoint.json").exists());
    let events = fake.events_for(id, 3);
    assert!(
        events.iter().any(|e| e.topic == "/tasks/checkpointed"),
        "no TaskCheckpointed: {events:?}"
    );
    let after = read_counter(&bundle);
    assert!(
        eventually(|| read_counter(&bundle) > after + 3),
        "counter stopped after a leave-running checkpoint"
    );
    assert!(Path::new(&format!("/proc/{init}")).exists(), "init gone");

    // Exit: the dump, then the container stops; its exit arrives as any other (CRIU kills).
    let images = fake.dir.join("images-exit");
    let options = CheckpointOptions {
        exit: true,
        image_path: images.display().to_string(),
        empty_namespaces: vec!["network".into()],
        file_locks: true,
        open_tcp: true,
        external_unix_sockets: true,
        ..Default::default()
    };
    checkpoint(&shim, id, Path::new(""), Some(checkpoint_options(options)))
        .expect("checkpoint --exit");
    assert!(images.join("inventory.img").exists());
    assert_eq!(wait(&shim, id).exit_status, 137);
    delete(&shim, id).expect("delete");
    assert_released(&fake, id);
    shim.shutdown_and_wait();
}

#[test]
#[ignore = "needs root"]
fn checkpoint_errors_name_what_is_wrong() {
    if !require_root() {
        return;
    }
    let fake = FakeContainerd::new("ckpt-err");
    let id = "ckpt-err";
    let bundle = fake.bundle(id, "echo", &["/bin/sleep", "100"]);
    // No CRIU in the daemon's PATH: Create and Start work; Checkpoint fails naming CRIU.
    let shim = fake.start_shim_with(id, &bundle, &[("PATH", "/nonexistent")]);
    let created = fake.create_request(id, &bundle, "");
    let not_started = checkpoint(&shim, id, &fake.dir.join("x"), None).expect_err("no task");
    assert_eq!(rpc_code(&not_started), Code::NOT_FOUND);
    shim.task
        .create(ctx(), &created)
        .expect("create without CRIU");
    let refused = checkpoint(&shim, id, &fake.dir.join("x"), None).expect_err("created only");
    assert_eq!(rpc_code(&refused), Code::FAILED_PRECONDITION, "{refused:?}");
    start(&shim, id).expect("start without CRIU");
    let err = checkpoint(&shim, id, &fake.dir.join("images"), None).expect_err("no criu");
    assert_eq!(rpc_code(&err), Code::FAILED_PRECONDITION, "{err:?}");
    assert!(rpc_message(&err).contains("criu"), "{}", rpc_message(&err));
    // Neither a path nor an image_path.
    let err = checkpoint(&shim, id, Path::new(""), None).expect_err("no path");
    assert_eq!(rpc_code(&err), Code::INVALID_ARGUMENT, "{err:?}");
    let kill = KillRequest {
        id: id.into(),
        signal: 9,
        ..Default::default()
    };
    shim.task.kill(ctx(), &kill).expect("kill");
    assert_eq!(wait(&shim, id).exit_status, 137);
    delete(&shim, id).expect("delete");

    // A criu_path that is not there, and an image path that cannot be made.
    let id = "ckpt-err2";
    let bundle = fake.bundle(id, "echo", &["/bin/sleep", "100"]);
    let shim2 = fake.start_shim(id, &bundle);
    let mut req = fake.create_request(id, &bundle, "");
    req.options = Some(sibling_options(Path::new("/nonexistent/criu"))).into();
    shim2.task.create(ctx(), &req).expect("create");
    start(&shim2, id).expect("start");
    let err = checkpoint(&shim2, id, &fake.dir.join("images2"), None).expect_err("bad criu");
    assert_eq!(rpc_code(&err), Code::FAILED_PRECONDITION, "{err:?}");
    assert!(
        rpc_message(&err).contains("/nonexistent/criu"),
        "{}",
        rpc_message(&err)
    );
    shim2
        .task
        .kill(
            ctx(),
            &KillRequest {
                id: id.into(),
                signal: 9,
                ..Default::default()
            },
        )
        .expect("kill");
    assert_eq!(wait(&shim2, id).exit_status, 137);
    delete(&shim2, id).expect("delete");
    assert_released(&fake, id);
    assert_released(&fake, "ckpt-err");
    shim.shutdown_and_wait();
    shim2.shutdown_and_wait();
}

#[test]
#[ignore = "needs root"]
fn checkpoint_into_a_path_that_cannot_be_made_fails() {
    if !require_root() {
        return;
    }
    let fake = FakeContainerd::new("ckpt-badpath");
    let id = "ckpt-badpath";
    let (shim, bundle, _lines) = counter(&fake, id);
    let err = checkpoint(&shim, id, Path::new("/proc/sibling-no-such/images"), None)
        .expect_err("image path under /proc");
    assert_eq!(rpc_code(&err), Code::INVALID_ARGUMENT, "{err:?}");
    // The container runs on.
    let now = read_counter(&bundle);
    assert!(
        eventually(|| read_counter(&bundle) > now + 2),
        "counter stopped"
    );
    shim.task
        .kill(
            ctx(),
            &KillRequest {
                id: id.into(),
                signal: 9,
                ..Default::default()
            },
        )
        .expect("kill");
    assert_eq!(wait(&shim, id).exit_status, 137);
    delete(&shim, id).expect("delete");
    assert_released(&fake, id);
    shim.shutdown_and_wait();
}

/// Counts, and exits 42 once /tmp/stop exists.
const STOPPABLE_COUNTER: &str = "i=0; while [ ! -e /tmp/stop ]; do i=$((i+1)); echo $i > /tmp/count; echo $i; sleep 0.05; done; exit 42";

#[test]
#[ignore = "needs root"]
fn checkpoint_with_exit_then_restore_into_a_new_container() {
    if !require_root() {
        return;
    }
    let fake = FakeContainerd::new("ckpt-restore");
    let (a, b) = ("ckpt-a", "ckpt-b");
    let bundle_a = fake.bundle(a, "echo", &["/bin/sh", "-c", STOPPABLE_COUNTER]);
    let shim_a = fake.start_shim(a, &bundle_a);
    let (stdout_a, lines_a) = fake.output_lines("a-stdout");
    let mut req = fake.create_request(a, &bundle_a, &stdout_a);
    req.options = Some(sibling_options(&criu())).into();
    shim_a.task.create(ctx(), &req).expect("create a");
    start(&shim_a, a).expect("start a");
    assert!(
        eventually(|| read_counter(&bundle_a) > 5),
        "counter never moved"
    );

    let images = fake.dir.join("images");
    let options = CheckpointOptions {
        exit: true,
        ..Default::default()
    };
    checkpoint(&shim_a, a, &images, Some(checkpoint_options(options))).expect("checkpoint");
    assert_eq!(wait(&shim_a, a).exit_status, 137);
    let last: u64 = lines_a
        .try_iter()
        .last()
        .and_then(|l| l.parse().ok())
        .expect("a printed its count");
    delete(&shim_a, a).expect("delete a");
    shim_a.shutdown_and_wait();

    let bundle_b = fake.bundle(b, "echo", &["/bin/sh", "-c", STOPPABLE_COUNTER]);
    let shim_b = fake.start_shim(b, &bundle_b);
    let (stdout_b, lines_b) = fake.output_lines("b-stdout");
    let mut req = fake.create_request(b, &bundle_b, &stdout_b);
    // As containerd does for a restore into a new container: the new snapshot starts from the
    // old one's changes, so a file the container had open at the checkpoint (the counter's,
    // when the dump caught the shell inside `echo > /tmp/count`) is there for CRIU to reopen.
    let snapshots = fake.dir.join("snapshots");
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(snapshots.join(a).join("upper/."))
        .arg(snapshots.join(b).join("upper"))
        .status()
        .expect("cp");
    assert!(copied.success(), "copy a's changes: {copied}");
    let counted = read_upper_counter(&snapshots.join(b));
    req.options = Some(sibling_options(&criu())).into();
    req.checkpoint = images.display().to_string();
    let created = shim_b.task.create(ctx(), &req).expect("restore");
    let pid = created.pid;
    assert_eq!(
        status_field(pid, "PPid").as_deref(),
        Some(shim_b.shim_pid().to_string().as_str()),
        "the restored init is not the daemon's child"
    );
    // Stopped until Start: the counter file is as the checkpoint left it.
    assert_eq!(read_counter(&bundle_b), counted, "ran before Start");
    start(&shim_b, b).expect("start b");
    let first: u64 = lines_b
        .recv_timeout(Duration::from_secs(10))
        .expect("b prints")
        .parse()
        .expect("a number");
    assert!(
        first > last,
        "the counter restarted: {first} after {last} before the checkpoint"
    );
    assert!(
        eventually(|| read_counter(&bundle_b) > first + 2),
        "restored counter does not move"
    );
    std::fs::write(bundle_b.join("rootfs/tmp/stop"), "").unwrap();
    assert_eq!(wait(&shim_b, b).exit_status, 42);
    let events = fake.events_for(b, 3);
    let exit = events
        .iter()
        .find(|e| e.topic == "/tasks/exit")
        .expect("TaskExit");
    assert_eq!((exit.pid, exit.exit_status), (pid, Some(42)));
    delete(&shim_b, b).expect("delete b");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "restored init left"
    );
    assert_released(&fake, b);
    assert_released(&fake, a);
    shim_b.shutdown_and_wait();
}

#[test]
#[ignore = "needs root"]
fn restore_of_a_missing_image_fails_and_leaves_nothing() {
    if !require_root() {
        return;
    }
    let fake = FakeContainerd::new("ckpt-missing");
    let id = "ckpt-missing";
    let bundle = fake.bundle(id, "echo", &["/bin/sleep", "100"]);
    let shim = fake.start_shim(id, &bundle);
    let mut req = fake.create_request(id, &bundle, "");
    req.options = Some(sibling_options(&criu())).into();
    req.checkpoint = fake.dir.join("no-such-images").display().to_string();
    let err = shim
        .task
        .create(ctx(), &req)
        .expect_err("restore of nothing");
    assert_eq!(rpc_code(&err), Code::NOT_FOUND, "{err:?}");
    assert!(
        rpc_message(&err).contains("no-such-images"),
        "{}",
        rpc_message(&err)
    );
    assert_released(&fake, id);
    shim.shutdown_and_wait();
}

/// Counts on its terminal until /tmp/stop exists, then reads a line from it and exits 42.
const TERMINAL_COUNTER: &str = "i=0; while [ ! -e /tmp/stop ]; do i=$((i+1)); echo $i > /tmp/count; echo $i; sleep 0.05; done; read x; echo got:$x; exit 42";

/// The device of fd `fd` of `pid` and the process's controlling terminal (`tty_nr`).
fn terminal_of(pid: u32, fd: u32) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let rdev = std::fs::metadata(format!("/proc/{pid}/fd/{fd}"))
        .expect("stat the fd")
        .rdev();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name's closing parenthesis: state, ppid, pgrp, session, tty_nr.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let tty_nr: u64 = rest.split(' ').nth(4).unwrap().parse().unwrap();
    (rdev, tty_nr)
}

/// Whether `rdev` is a Unix98 pty slave (majors 136-143), in the kernel's encoding as stat
/// reports it.
fn is_pty_slave(rdev: u64) -> bool {
    (136..=143).contains(&nix::sys::stat::major(rdev))
}

/// The kernel's `tty_nr` encoding of a device number (as in /proc/<pid>/stat).
fn tty_nr_of(rdev: u64) -> u64 {
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// A terminal container, checkpointed with `exit` (its pty is gone with its daemon), restored
/// into a new container: the process gets a new pty as stdio and controlling terminal, its
/// output continues on the new stdout FIFO from where it was, its stdin arrives through the new
/// terminal, and its exit code is exact. (runc.v2 restores a terminal container only through
/// CRIU's RPC `orphan_pts_master`; the comparison through ctr is in e2e_checkpoint.rs.)
#[test]
#[ignore = "needs root"]
fn terminal_container_checkpoint_and_restore() {
    if !require_root() {
        return;
    }
    let fake = FakeContainerd::new("ckpt-tty");
    let id = "ckpt-tty";
    let bundle = fake.bundle(id, "echo", &["/bin/sh", "-c", TERMINAL_COUNTER]);
    let config = bundle.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    spec["process"]["terminal"] = serde_json::json!(true);
    std::fs::write(&config, serde_json::to_vec(&spec).unwrap()).unwrap();
    let shim = fake.start_shim(id, &bundle);
    let (stdout, lines) = fake.output_lines("tty-stdout");
    let mut req = fake.create_request(id, &bundle, &stdout);
    req.terminal = true;
    req.options = Some(sibling_options(&criu())).into();
    shim.task.create(ctx(), &req).expect("create");
    start(&shim, id).expect("start");
    assert!(
        eventually(|| read_counter(&bundle) > 3),
        "counter never moved"
    );
    let images = fake.dir.join("tty-images");
    let options = CheckpointOptions {
        exit: true,
        ..Default::default()
    };
    checkpoint(&shim, id, &images, Some(checkpoint_options(options)))
        .expect("checkpoint of a terminal container");
    assert_eq!(wait(&shim, id).exit_status, 137);
    let last: u64 = lines
        .try_iter()
        .filter_map(|l| l.trim().parse().ok())
        .last()
        .expect("the container printed its count on its terminal");
    delete(&shim, id).expect("delete");
    shim.shutdown_and_wait();
    assert_released(&fake, id);

    // Restored without a terminal: refused, nothing left.
    let other = "ckpt-tty2";
    let bundle2 = fake.bundle_with_spec(other, &{
        let mut s = spec.clone();
        s["linux"]["cgroupsPath"] = serde_json::json!(fake.cgroup_path(other));
        s
    });
    let shim2 = fake.start_shim(other, &bundle2);
    let (stdout2, lines2) = fake.output_lines("tty2-stdout");
    let mut req = fake.create_request(other, &bundle2, &stdout2);
    req.checkpoint = images.display().to_string();
    req.options = Some(sibling_options(&criu())).into();
    let err = shim2
        .task
        .create(ctx(), &req.clone())
        .expect_err("restore of a terminal container without a terminal");
    assert_eq!(rpc_code(&err), Code::INVALID_ARGUMENT, "{err:?}");
    assert!(
        rpc_message(&err).contains("terminal"),
        "{}",
        rpc_message(&err)
    );
    assert_eq!(mounts_under(&fake.dir), Vec::<String>::new(), "mounts left");
    assert!(
        cgroup_dirs(&fake.cgroup_path(other)).is_empty(),
        "cgroup left"
    );

    // With a terminal: a new pty.
    let stdin = fake.dir.join("tty2-stdin");
    nix::unistd::mkfifo(&stdin, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    req.terminal = true;
    req.stdin = stdin.display().to_string();
    let pid = shim2
        .task
        .create(ctx(), &req)
        .expect("restore with a terminal")
        .pid;
    assert_eq!(
        status_field(pid, "PPid").as_deref(),
        Some(shim2.shim_pid().to_string().as_str()),
        "the restored init is not the daemon's child"
    );
    let (tty, ctty) = terminal_of(pid, 0);
    assert!(
        is_pty_slave(tty),
        "stdin of the restored init is not a pty: {tty:#x}"
    );
    for fd in [1, 2] {
        assert_eq!(
            terminal_of(pid, fd).0,
            tty,
            "fd {fd} is not the new terminal"
        );
    }
    assert_eq!(
        ctty,
        tty_nr_of(tty),
        "the new pty is not its controlling terminal"
    );
    // No devpts instance of the restore is left mounted.
    assert_eq!(mounts_under(&images), Vec::<String>::new(), "mounts left");
    assert_eq!(read_counter(&bundle2), 0, "ran before Start");
    start(&shim2, other).expect("start the restored container");
    let first: u64 = loop {
        let line = lines2
            .recv_timeout(Duration::from_secs(10))
            .expect("the restored container prints on its new terminal");
        if let Ok(n) = line.trim().parse() {
            break n;
        }
    };
    assert!(
        first > last,
        "the counter restarted: {first} after {last} before the checkpoint"
    );
    assert!(
        eventually(|| read_counter(&bundle2) > first + 2),
        "restored counter does not move"
    );
    std::fs::write(bundle2.join("rootfs/tmp/stop"), "").unwrap();
    {
        use std::io::Write;
        let mut writer = std::fs::OpenOptions::new()
            .write(true)
            .open(&stdin)
            .unwrap();
        writer.write_all(b"hello\n").unwrap();
    }
    let got = loop {
        let line = lines2
            .recv_timeout(Duration::from_secs(10))
            .expect("the restored container answers its stdin");
        if line.starts_with("got:") {
            break line;
        }
    };
    assert_eq!(got.trim(), "got:hello");
    assert_eq!(wait(&shim2, other).exit_status, 42);
    let events = fake.events_for(other, 3);
    let exit = events
        .iter()
        .find(|e| e.topic == "/tasks/exit")
        .expect("TaskExit");
    assert_eq!((exit.pid, exit.exit_status), (pid, Some(42)));
    delete(&shim2, other).expect("delete the restored container");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "restored init left"
    );
    assert_released(&fake, other);
    shim2.shutdown_and_wait();
}

#[test]
#[ignore = "needs root"]
fn checkpoint_of_a_paused_container_leaves_it_paused() {
    if !require_root() {
        return;
    }
    let fake = FakeContainerd::new("ckpt-paused");
    let id = "ckpt-paused";
    let (shim, bundle, _lines) = counter(&fake, id);
    let pause = PauseRequest {
        id: id.into(),
        ..Default::default()
    };
    shim.task.pause(ctx(), &pause).expect("pause");
    let images = fake.dir.join("paused-images");
    checkpoint(&shim, id, &images, None).expect("checkpoint while paused");
    assert!(images.join("inventory.img").exists());
    let state = |shim: &Shim| {
        shim.task
            .state(
                ctx(),
                &StateRequest {
                    id: id.into(),
                    ..Default::default()
                },
            )
            .expect("state")
            .status
            .enum_value()
    };
    assert_eq!(
        state(&shim),
        Ok(containerd_shim_protos::types::task::Status::PAUSED)
    );
    let frozen_at = read_counter(&bundle);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        read_counter(&bundle),
        frozen_at,
        "counter moved while paused"
    );
    let resume = ResumeRequest {
        id: id.into(),
        ..Default::default()
    };
    shim.task.resume(ctx(), &resume).expect("resume");
    assert!(
        eventually(|| read_counter(&bundle) > frozen_at + 3),
        "counter did not resume"
    );
    shim.task
        .kill(
            ctx(),
            &KillRequest {
                id: id.into(),
                signal: 9,
                ..Default::default()
            },
        )
        .expect("kill");
    assert_eq!(wait(&shim, id).exit_status, 137);
    delete(&shim, id).expect("delete");
    assert_released(&fake, id);
    shim.shutdown_and_wait();
}

/// Namespaces the test made: a network namespace (`ip netns add`) and a process holding new
/// ipc and uts namespaces; removed (and the holder killed, by pid) when dropped.
struct TestNamespaces {
    name: String,
    netns: String,
    holder: std::process::Child,
}

impl TestNamespaces {
    fn new(name: &str) -> TestNamespaces {
        let netns = format!("{name}-{}", std::process::id());
        let status = std::process::Command::new("ip")
            .args(["netns", "add", &netns])
            .status()
            .expect("run ip netns add");
        assert!(status.success(), "ip netns add {netns}: {status}");
        // Its uts namespace named `name`, its ipc namespace with one message queue: what a
        // restore must not overwrite.
        let script =
            format!("hostname {name} && ipcmk -Q >/dev/null && echo ready && exec sleep 1000");
        let mut holder = std::process::Command::new("unshare")
            .args(["--ipc", "--uts", "--", "sh", "-c", &script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run unshare");
        let mut line = String::new();
        let stdout = holder.stdout.take().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        let namespaces = TestNamespaces {
            name: name.to_owned(),
            netns,
            holder,
        };
        assert_eq!(line.trim(), "ready", "the namespace holder failed");
        namespaces
    }

    /// The uts namespace's host name and the number of message queues of the ipc namespace.
    fn contents(&self) -> (String, usize) {
        let run = |args: &[&str]| {
            let out = std::process::Command::new("nsenter")
                .arg("-t")
                .arg(self.holder.id().to_string())
                .args(args)
                .output()
                .expect("run nsenter");
            assert!(out.status.success(), "nsenter {args:?}: {out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        let hostname = run(&["-u", "hostname"]).trim().to_owned();
        let queues = run(&["-i", "ipcs", "-q"])
            .lines()
            .filter(|l| l.starts_with("0x"))
            .count();
        (hostname, queues)
    }

    fn path(&self, name: &str) -> String {
        match name {
            "net" => format!("/run/netns/{}", self.netns),
            other => format!("/proc/{}/ns/{other}", self.holder.id()),
        }
    }

    fn inode(&self, name: &str) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(self.path(name)).unwrap().ino()
    }
}

impl Drop for TestNamespaces {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

fn ns_inode(pid: u32, name: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/ns/{name}"))
        .map(|m| m.ino())
        .unwrap_or(0)
}

/// A spec whose net, ipc and uts namespaces are the paths of `namespaces`.
fn joining(mut spec: serde_json::Value, namespaces: &TestNamespaces) -> serde_json::Value {
    let list = spec["linux"]["namespaces"].as_array_mut().unwrap();
    list.retain(|ns| !["network", "ipc", "uts"].contains(&ns["type"].as_str().unwrap()));
    for (kind, name) in [("network", "net"), ("ipc", "ipc"), ("uts", "uts")] {
        list.push(serde_json::json!({"type": kind, "path": namespaces.path(name)}));
    }
    spec
}

/// A pod's container (its net, ipc and uts namespaces joined by path, made by the test) is
/// checkpointed and restored into a container whose spec joins other namespaces: the restored
/// process is in those, and counts on from where it was. A restore whose spec does not join
/// the same kinds is refused, leaving nothing.
#[test]
#[ignore = "needs root"]
fn restore_into_namespaces_joined_by_path() {
    if !require_root() {
        return;
    }
    let fake = FakeContainerd::new("ckpt-joined");
    let first_ns = TestNamespaces::new("sib-ckpt-a");
    let second_ns = TestNamespaces::new("sib-ckpt-b");
    let (a, b) = ("ckpt-joined-a", "ckpt-joined-b");
    let bundle_a = fake.bundle(a, "echo", &["/bin/sh", "-c", STOPPABLE_COUNTER]);
    let config = bundle_a.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    // A pod's container leaves the pod's host name alone.
    spec.as_object_mut().unwrap().remove("hostname");
    let spec = joining(spec, &first_ns);
    std::fs::write(&config, serde_json::to_vec(&spec).unwrap()).unwrap();
    let shim_a = fake.start_shim(a, &bundle_a);
    let (stdout_a, lines_a) = fake.output_lines("a-stdout");
    let mut req = fake.create_request(a, &bundle_a, &stdout_a);
    req.options = Some(sibling_options(&criu())).into();
    let pid_a = shim_a.task.create(ctx(), &req).expect("create a").pid;
    for name in ["net", "ipc", "uts"] {
        assert_eq!(ns_inode(pid_a, name), first_ns.inode(name), "a's {name}");
    }
    start(&shim_a, a).expect("start a");
    assert!(
        eventually(|| read_counter(&bundle_a) > 5),
        "counter never moved"
    );
    let images = fake.dir.join("images");
    let options = CheckpointOptions {
        exit: true,
        ..Default::default()
    };
    checkpoint(&shim_a, a, &images, Some(checkpoint_options(options))).expect("checkpoint");
    assert_eq!(wait(&shim_a, a).exit_status, 137);
    let last: u64 = lines_a
        .try_iter()
        .last()
        .and_then(|l| l.parse().ok())
        .expect("a printed its count");
    delete(&shim_a, a).expect("delete a");
    shim_a.shutdown_and_wait();

    let mut spec_b = joining(spec.clone(), &second_ns);
    spec_b["linux"]["cgroupsPath"] = serde_json::json!(fake.cgroup_path(b));
    // Its own network namespace instead of a joined one: refused.
    let mut own_net = spec_b.clone();
    for ns in own_net["linux"]["namespaces"].as_array_mut().unwrap() {
        if ns["type"] == "network" {
            *ns = serde_json::json!({"type": "network"});
        }
    }
    let bundle_b = fake.bundle_with_spec(b, &own_net);
    let shim_b = fake.start_shim(b, &bundle_b);
    let (stdout_b, lines_b) = fake.output_lines("b-stdout");
    let mut req = fake.create_request(b, &bundle_b, &stdout_b);
    req.options = Some(sibling_options(&criu())).into();
    req.checkpoint = images.display().to_string();
    let err = shim_b
        .task
        .create(ctx(), &req)
        .expect_err("restore with its own network namespace");
    assert_eq!(rpc_code(&err), Code::INVALID_ARGUMENT, "{err:?}");
    assert!(rpc_message(&err).contains("net"), "{}", rpc_message(&err));
    assert_released(&fake, b);

    std::fs::write(
        bundle_b.join("config.json"),
        serde_json::to_vec(&spec_b).unwrap(),
    )
    .unwrap();
    // As containerd restores the checkpoint's rootfs changes: the file the shell may hold open
    // (`> /tmp/count`) at the dump is there.
    let snapshots = fake.dir.join("snapshots");
    std::fs::create_dir_all(snapshots.join(b).join("upper/tmp")).unwrap();
    std::fs::copy(
        snapshots.join(a).join("upper/tmp/count"),
        snapshots.join(b).join("upper/tmp/count"),
    )
    .unwrap();
    let pid = shim_b.task.create(ctx(), &req).expect("restore").pid;
    assert_eq!(
        status_field(pid, "PPid").as_deref(),
        Some(shim_b.shim_pid().to_string().as_str()),
        "the restored init is not the daemon's child"
    );
    for name in ["net", "ipc", "uts"] {
        assert_eq!(
            ns_inode(pid, name),
            second_ns.inode(name),
            "the restored init's {name} namespace is not the new spec's"
        );
    }
    // Joined, not restored over: the pod's host name and ipc objects are the pod's own.
    assert_eq!(
        second_ns.contents(),
        (second_ns.name.clone(), 1),
        "the restore changed the joined namespaces"
    );
    // Joined, not restored over: the pod's host name and ipc objects are the pod's own.
    assert_eq!(
        second_ns.contents(),
        (second_ns.name.clone(), 1),
        "the restore changed the joined namespaces"
    );
    start(&shim_b, b).expect("start b");
    let first: u64 = lines_b
        .recv_timeout(Duration::from_secs(10))
        .expect("b prints")
        .parse()
        .expect("a number");
    assert!(
        first > last,
        "the counter restarted: {first} after {last} before the checkpoint"
    );
    std::fs::write(bundle_b.join("rootfs/tmp/stop"), "").unwrap();
    assert_eq!(wait(&shim_b, b).exit_status, 42);
    delete(&shim_b, b).expect("delete b");
    assert_released(&fake, b);
    assert_released(&fake, a);
    shim_b.shutdown_and_wait();
}
