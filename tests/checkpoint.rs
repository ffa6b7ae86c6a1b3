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
