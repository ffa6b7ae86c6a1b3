//! The systemd cgroup driver against a real systemd (PID 1 with its system bus, pure cgroup
//! v2): the node VM (`scripts/vm/node-vm.sh`) runs these. The test plays containerd as in
//! `protocol.rs`, with runc's options `SystemdCgroup = true` on `start`'s stdin and in Create.
//! Needs root and `make rootfs`; without a running systemd each test says so and returns.

mod shim_harness;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use containerd_shim_protos::api::*;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use shim_harness::*;

fn systemd_missing() -> bool {
    if Path::new("/run/systemd/system").exists() {
        return false;
    }
    eprintln!("skipped: systemd is not running (/run/systemd/system is absent)");
    true
}

fn runc_systemd_options() -> Any {
    let options = containerd_shim_protos::shim::oci::Options {
        systemd_cgroup: true,
        ..Default::default()
    };
    Any {
        type_url: "type.googleapis.com/containerd.runc.v1.Options".into(),
        value: options.write_to_bytes().unwrap(),
        ..Default::default()
    }
}

/// `systemctl show -p <properties> <unit>` as a map.
fn show(unit: &str, properties: &[&str]) -> HashMap<String, String> {
    let out = Command::new("systemctl")
        .args(["show", "-p", &properties.join(","), unit])
        .output()
        .expect("run systemctl");
    assert!(
        out.status.success(),
        "systemctl show {unit}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn cgroup_file(control_group: &str, file: &str) -> String {
    let path = Path::new("/sys/fs/cgroup")
        .join(control_group.trim_start_matches('/'))
        .join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// A container in `system.slice:sibling-test:<id>` with limits, created and started with the
/// systemd driver; returns the shim, the bundle and the init's pid.
fn start_in_scope(fake: &FakeContainerd, id: &str) -> (Shim, PathBuf, u32) {
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("test-bundles/echo/config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(template).unwrap()).unwrap();
    spec["process"]["args"] = serde_json::json!(["/bin/sleep", "100"]);
    spec["linux"]["cgroupsPath"] = serde_json::json!(format!("system.slice:sibling-test:{id}"));
    spec["linux"]["resources"]["memory"] = serde_json::json!({"limit": 64 << 20});
    spec["linux"]["resources"]["pids"] = serde_json::json!({"limit": 32});
    spec["linux"]["resources"]["cpu"] =
        serde_json::json!({"shares": 512, "quota": 50000, "period": 100000});
    let bundle = fake.bundle_with_spec(id, &spec);
    let options = runc_systemd_options();
    let shim = fake.start_shim_options(
        id,
        &bundle,
        &DEDICATED_SHIM,
        &options.write_to_bytes().unwrap(),
    );
    let mut req = fake.create_request(id, &bundle, "");
    req.options = Some(options).into();
    let pid = shim.task.create(ctx(), &req).expect("create").pid;
    let start = StartRequest {
        id: id.into(),
        ..Default::default()
    };
    shim.task.start(ctx(), &start).expect("start");
    (shim, bundle, pid)
}

fn unit_of(id: &str) -> String {
    format!("sibling-test-{id}.scope")
}

/// The unit is unknown to systemd and its cgroup directory is gone.
fn assert_unit_gone(unit: &str, control_group: &str) {
    let state = show(unit, &["LoadState", "ActiveState"]);
    assert_eq!(
        state.get("LoadState").map(String::as_str),
        Some("not-found"),
        "{unit} still loaded: {state:?}"
    );
    let dir = Path::new("/sys/fs/cgroup").join(control_group.trim_start_matches('/'));
    assert!(!dir.exists(), "{} left", dir.display());
}

fn kill_and_wait(shim: &Shim, id: &str) {
    let kill = KillRequest {
        id: id.into(),
        signal: 9,
        ..Default::default()
    };
    shim.task.kill(ctx(), &kill).expect("kill");
    let wait = WaitRequest {
        id: id.into(),
        ..Default::default()
    };
    shim.task.wait(ctx(), &wait).expect("wait");
}

#[test]
#[ignore = "needs root"]
fn scope_limits_update_and_delete() {
    if !require_root() || systemd_missing() {
        return;
    }
    let fake = FakeContainerd::new("systemd-scope");
    let id = format!("scope-{}", std::process::id());
    let unit = unit_of(&id);
    let (shim, _bundle, pid) = start_in_scope(&fake, &id);

    let shown = show(
        &unit,
        &[
            "ActiveState",
            "ControlGroup",
            "MemoryMax",
            "TasksMax",
            "Delegate",
            "Slice",
        ],
    );
    let control_group = format!("/system.slice/{unit}");
    assert_eq!(shown["ActiveState"], "active", "{shown:?}");
    assert_eq!(shown["ControlGroup"], control_group, "{shown:?}");
    assert_eq!(shown["Slice"], "system.slice", "{shown:?}");
    assert_eq!(shown["Delegate"], "yes", "{shown:?}");
    assert_eq!(shown["MemoryMax"], (64u64 << 20).to_string(), "{shown:?}");
    assert_eq!(shown["TasksMax"], "32", "{shown:?}");
    // The limits are in effect in the scope's own directory.
    assert_eq!(
        cgroup_file(&control_group, "memory.max"),
        (64u64 << 20).to_string()
    );
    assert_eq!(cgroup_file(&control_group, "pids.max"), "32");
    assert_eq!(cgroup_file(&control_group, "cpu.max"), "50000 100000");
    assert_eq!(
        cgroup_file(&control_group, "cpu.weight"),
        containerd_shim_sibling_v2::cgroups::cpu_shares_to_weight(512).to_string()
    );
    // The init is in the scope; the scope holder is gone (only the init is there, and the
    // daemon's children are its spawner and the init).
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_eq!(own.trim(), format!("0::{control_group}"));
    assert_eq!(cgroup_file(&control_group, "cgroup.procs"), pid.to_string());
    let children = children_of(shim.shim_pid());
    assert_eq!(children.len(), 2, "daemon children: {children:?}");

    // Update changes the unit and the file.
    let resources = serde_json::json!({"memory": {"limit": 128 << 20}});
    let update = UpdateTaskRequest {
        id: id.clone(),
        resources: Some(Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into(),
            value: serde_json::to_vec(&resources).unwrap(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    shim.task.update(ctx(), &update).expect("update");
    assert_eq!(
        show(&unit, &["MemoryMax"])["MemoryMax"],
        (128u64 << 20).to_string()
    );
    assert_eq!(
        cgroup_file(&control_group, "memory.max"),
        (128u64 << 20).to_string()
    );

    kill_and_wait(&shim, &id);
    let delete = DeleteRequest {
        id: id.clone(),
        ..Default::default()
    };
    shim.task.delete(ctx(), &delete).expect("delete");
    assert_unit_gone(&unit, &control_group);
    shim.shutdown_and_wait();
}

#[test]
#[ignore = "needs root"]
fn the_delete_action_after_a_killed_daemon_stops_the_unit() {
    if !require_root() || systemd_missing() {
        return;
    }
    let fake = FakeContainerd::new("systemd-dead");
    let id = format!("dead-{}", std::process::id());
    let unit = unit_of(&id);
    let (shim, bundle, pid) = start_in_scope(&fake, &id);
    let control_group = format!("/system.slice/{unit}");
    assert_eq!(show(&unit, &["ActiveState"])["ActiveState"], "active");

    // The daemon this test started dies; the container goes on in its scope.
    let daemon = shim.shim_pid();
    let pidfd = pidfd_open(daemon).expect("daemon pidfd");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(
        wait_pidfd(&pidfd, Duration::from_secs(10)),
        "daemon survived SIGKILL"
    );
    let init = pidfd_open(pid).expect("init pidfd");

    // containerd runs `delete`: the container is killed and the unit stopped.
    let out = fake.run_delete_action(&id, &bundle);
    let response = DeleteResponse::parse_from_bytes(&out.stdout).expect("delete response");
    assert_eq!(response.exit_status, 137);
    assert!(
        wait_pidfd(&init, Duration::from_secs(10)),
        "init survived delete"
    );
    assert_unit_gone(&unit, &control_group);
}

#[test]
#[ignore = "needs root"]
fn a_failed_create_stops_its_unit() {
    if !require_root() || systemd_missing() {
        return;
    }
    let fake = FakeContainerd::new("systemd-fail");
    let id = format!("fail-{}", std::process::id());
    let unit = unit_of(&id);
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("test-bundles/echo/config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(template).unwrap()).unwrap();
    // The scope starts, then the init fails its setup: the Create must stop the unit.
    spec["process"]["args"] = serde_json::json!(["/does-not-exist"]);
    spec["linux"]["cgroupsPath"] = serde_json::json!(format!("system.slice:sibling-test:{id}"));
    let bundle = fake.bundle_with_spec(id.as_str(), &spec);
    let options = runc_systemd_options();
    let shim = fake.start_shim_options(
        &id,
        &bundle,
        &DEDICATED_SHIM,
        &options.write_to_bytes().unwrap(),
    );
    let mut req = fake.create_request(&id, &bundle, "");
    req.options = Some(options).into();
    shim.task
        .create(ctx(), &req)
        .expect_err("create of a missing binary");
    assert_unit_gone(&unit, &format!("/system.slice/{unit}"));
    let children = children_of(shim.shim_pid());
    assert_eq!(children.len(), 1, "daemon children: {children:?}");
    shim.shutdown_and_wait();
}
