//! The systemd cgroup driver through containerd's CRI plugin, as on a kubeadm node
//! (`SystemdCgroup = true`, the kubelet's systemd cgroup driver): the kubelet gives pods a
//! `*.slice` cgroup parent, CRI turns it into `slice:cri-containerd:<id>`, and the runtime makes
//! the transient scope `cri-containerd-<id>.scope` in that slice through systemd. A pod run with
//! the `sibling` runtime class (its options name a TOML file with `SystemdCgroup = true`) must
//! land in scopes exactly as one run with `runc` (io.containerd.runc.v2, `SystemdCgroup = true`
//! in its options), in the same containerd: the init's cgroup is the scope, systemd knows the
//! scope as active with the container's memory limit, the limit is in the cgroup file, and after
//! RemovePodSandbox no scope is left.
//!
//! Needs systemd as PID 1 (the node VM of scripts/vm/node-vm.sh). Elsewhere the test skips with a
//! message, unless `SIBLING_EXPECT_SYSTEMD=1` (tests/vm/node-vm-tests.sh) makes that a failure.

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerStatusRequest, CreateContainerRequest, ImageSpec,
    LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext, NamespaceMode,
    PodSandboxStatusRequest, RunPodSandboxRequest, StartContainerRequest,
};
use sibling_cri_test::{CriContainerd, can_run, pods};
use tonic::transport::Channel;

const IMAGE: &str = "docker.io/library/sibling-busybox:latest";
/// The pods' cgroup parent, as the kubelet's systemd driver names a pod's slice.
const SLICE: &str = "sibling_test.slice";
const MEMORY_LIMIT: i64 = 64 << 20;

fn systemd_running() -> bool {
    if std::path::Path::new("/run/systemd/system").exists() {
        return true;
    }
    let why = "the CRI systemd cgroup driver test needs systemd as PID 1; scripts/vm/node-vm.sh \
               boots a VM that has it";
    let expected = std::env::var("SIBLING_EXPECT_SYSTEMD").is_ok_and(|v| v == "1");
    assert!(!expected, "{why}");
    eprintln!("skipped: {why}");
    false
}

fn systemctl_show(unit: &str, property: &str) -> String {
    let out = std::process::Command::new("systemctl")
        .args(["show", "--value", "-p", property, unit])
        .output()
        .expect("run systemctl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn container_config() -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "limited".into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: IMAGE.into(),
            ..Default::default()
        }),
        command: vec!["/bin/sleep".into(), "3600".into()],
        log_path: "limited.log".into(),
        linux: Some(LinuxContainerConfig {
            resources: Some(LinuxContainerResources {
                memory_limit_in_bytes: MEMORY_LIMIT,
                ..Default::default()
            }),
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(pods::namespaces(NamespaceMode::Node)),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// What systemd and the kernel say of one container's init: its cgroup (the scope's name in
/// place of the id), the scope's state and memory limit, the limit in cgroupfs.
fn scope_facts(kind: &str, id: &str, pid: u64) -> Vec<String> {
    let unit = format!("cri-containerd-{id}.scope");
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/cgroup of the {kind}: {e}"));
    let cgroup = cgroup.trim_end().replace(id, "<id>");
    let control_group = systemctl_show(&unit, "ControlGroup");
    let memory_file = std::fs::read_to_string(format!("/sys/fs/cgroup{control_group}/memory.max"))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|e| format!("memory.max: {e}"));
    vec![
        format!("{kind}: cgroup {cgroup}"),
        format!("{kind}: {}", systemctl_show(&unit, "ActiveState")),
        format!("{kind}: MemoryMax={}", systemctl_show(&unit, "MemoryMax")),
        format!("{kind}: memory.max {memory_file}"),
    ]
}

/// One pod (sandbox + a container with a memory limit) of runtime class `handler`: what its
/// scopes look like while it runs, and whether they are gone after RemovePodSandbox.
async fn scopes(
    cri: &mut RuntimeServiceClient<Channel>,
    containerd: &CriContainerd,
    handler: &str,
) -> Vec<String> {
    let config = pods::sandbox_config(
        containerd,
        &format!("systemd-{handler}"),
        NamespaceMode::Node,
        SLICE,
    );
    let sandbox = cri
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox {handler}: {e}\n{}", containerd.log_tail()))
        .into_inner()
        .pod_sandbox_id;
    let id = cri
        .create_container(CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(container_config()),
            sandbox_config: Some(config.clone()),
        })
        .await
        .unwrap_or_else(|e| panic!("CreateContainer {handler}: {e}\n{}", containerd.log_tail()))
        .into_inner()
        .container_id;
    cri.start_container(StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("StartContainer {handler}: {e}\n{}", containerd.log_tail()));
    let status = cri
        .container_status(ContainerStatusRequest {
            container_id: id.clone(),
            verbose: true,
        })
        .await
        .expect("ContainerStatus")
        .into_inner();
    let info: serde_json::Value =
        serde_json::from_str(status.info.get("info").expect("verbose info")).unwrap();
    let pid = info["pid"].as_u64().expect("the init's pid");
    let sandbox_status = cri
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: sandbox.clone(),
            verbose: true,
        })
        .await
        .expect("PodSandboxStatus")
        .into_inner();
    let sandbox_info: serde_json::Value =
        serde_json::from_str(sandbox_status.info.get("info").expect("verbose info")).unwrap();
    let sandbox_pid = sandbox_info["pid"].as_u64().expect("the sandbox's pid");
    let mut seen = scope_facts("container", &id, pid);
    let sandbox_cgroup = std::fs::read_to_string(format!("/proc/{sandbox_pid}/cgroup"))
        .expect("the sandbox's cgroup")
        .trim_end()
        .replace(&sandbox, "<sandbox>");
    seen.push(format!("sandbox: cgroup {sandbox_cgroup}"));
    seen.push(format!(
        "sandbox: {}",
        systemctl_show(&format!("cri-containerd-{sandbox}.scope"), "ActiveState")
    ));
    pods::remove(cri, containerd, &sandbox, std::slice::from_ref(&id)).await;
    for (kind, unit_id) in [("container", &id), ("sandbox", &sandbox)] {
        let unit = format!("cri-containerd-{unit_id}.scope");
        // A stopped transient scope is unloaded at once; `inactive` would also mean gone.
        let state = systemctl_show(&unit, "ActiveState");
        seen.push(format!("{kind} after RemovePodSandbox: {state}"));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn systemd_cgroup_driver_puts_sibling_pods_in_scopes_as_runc_does() {
    if !can_run() || !systemd_running() {
        return;
    }
    let containerd = CriContainerd::start_with(&[("CRI_SYSTEMD_CGROUP", "1")]);
    let channel = containerd_client::connect(containerd.socket())
        .await
        .expect("connect to containerd");
    let mut cri = RuntimeServiceClient::new(channel);

    // A slice name without '-' is a child of the root slice.
    let scope = format!("/{SLICE}/cri-containerd-<id>.scope");
    let expected = vec![
        format!("container: cgroup 0::{scope}"),
        "container: active".to_string(),
        format!("container: MemoryMax={MEMORY_LIMIT}"),
        format!("container: memory.max {MEMORY_LIMIT}"),
        format!("sandbox: cgroup 0::{}", scope.replace("<id>", "<sandbox>")),
        "sandbox: active".to_string(),
        "container after RemovePodSandbox: inactive".to_string(),
        "sandbox after RemovePodSandbox: inactive".to_string(),
    ];
    let runc = scopes(&mut cri, &containerd, "runc").await;
    let sibling = scopes(&mut cri, &containerd, "sibling").await;
    // systemd made the pods' slice when the first scope was started in it and keeps it: on a
    // node the kubelet owns the pod slices; here the test does, and stops it.
    let stopped = std::process::Command::new("systemctl")
        .args(["stop", SLICE])
        .status()
        .expect("run systemctl");
    assert!(stopped.success(), "systemctl stop {SLICE}: {stopped}");
    assert_eq!(runc, expected, "io.containerd.runc.v2 (the reference)");
    assert_eq!(sibling, expected, "io.containerd.sibling.v2");
}
