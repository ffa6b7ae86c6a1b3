//! A pod through containerd's CRI plugin with the `sibling` runtime class, the way the kubelet
//! drives it (there is no crictl here: this test is the CRI client): a sandbox and two
//! containers, an exec, then everything stopped and removed. All of the pod runs in one
//! sibling shim daemon, whose direct children the pod's processes are.

use std::time::{Duration, Instant};

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ExecSyncRequest, ImageSpec,
    LinuxContainerConfig, LinuxContainerSecurityContext, NamespaceMode, RunPodSandboxRequest,
    StartContainerRequest, VersionRequest,
};
use sibling_cri_test::{CriContainerd, can_run, pods, status_field};
use tonic::transport::Channel;

const IMAGE: &str = "docker.io/library/sibling-busybox:latest";
const HANDLER: &str = "sibling";

fn container_config(name: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: IMAGE.into(),
            ..Default::default()
        }),
        command: vec!["/bin/sleep".into(), "3600".into()],
        log_path: format!("{name}.log"),
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(pods::namespaces(NamespaceMode::Node)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ppid(pid: u32) -> Option<u32> {
    status_field(pid, "PPid").and_then(|p| p.parse().ok())
}

/// Shim daemons of this containerd (sibling's spawners, children of a daemon, left out).
fn shim_daemons(containerd: &CriContainerd) -> Vec<u32> {
    let shims = containerd.shim_pids();
    shims
        .iter()
        .copied()
        .filter(|&pid| ppid(pid).is_none_or(|p| !shims.contains(&p)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn a_pod_with_two_containers_runs_in_one_sibling_shim() {
    if !can_run() {
        return;
    }
    let containerd = CriContainerd::start();
    let channel = containerd_client::connect(containerd.socket())
        .await
        .expect("connect to containerd");
    let mut cri: RuntimeServiceClient<Channel> = RuntimeServiceClient::new(channel);
    let version = cri
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .expect("CRI Version")
        .into_inner();
    assert_eq!(version.runtime_name, "containerd");

    let config = pods::sandbox_config(&containerd, "sibling-pod", NamespaceMode::Node, "");
    let sandbox = cri
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: HANDLER.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", containerd.log_tail()))
        .into_inner()
        .pod_sandbox_id;

    let mut containers = Vec::new();
    for name in ["first", "second"] {
        let id = cri
            .create_container(CreateContainerRequest {
                pod_sandbox_id: sandbox.clone(),
                config: Some(container_config(name)),
                sandbox_config: Some(config.clone()),
            })
            .await
            .unwrap_or_else(|e| panic!("CreateContainer {name}: {e}\n{}", containerd.log_tail()))
            .into_inner()
            .container_id;
        cri.start_container(StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("StartContainer {name}: {e}\n{}", containerd.log_tail()));
        containers.push(id);
    }

    let exec = cri
        .exec_sync(ExecSyncRequest {
            container_id: containers[0].clone(),
            cmd: vec!["/bin/sh".into(), "-c".into(), "echo hello; hostname".into()],
            timeout: 30,
        })
        .await
        .unwrap_or_else(|e| panic!("ExecSync: {e}\n{}", containerd.log_tail()))
        .into_inner();
    assert_eq!(
        exec.exit_code,
        0,
        "{}",
        String::from_utf8_lossy(&exec.stderr)
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(
        String::from_utf8_lossy(&exec.stdout),
        format!("hello\n{}\n", host.trim())
    );

    // The sandbox and both containers: one sibling shim daemon, and three `sleep` processes that
    // are its direct children.
    let daemons = shim_daemons(&containerd);
    assert_eq!(daemons.len(), 1, "shim daemons for one pod: {daemons:?}");
    let daemon = daemons[0];
    let argv0 = std::fs::read(format!("/proc/{daemon}/cmdline")).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&argv0).contains("containerd-shim-sibling-v2"),
        "the pod's shim is not sibling's"
    );
    let sleepers: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|&pid| ppid(pid) == Some(daemon))
        .filter(|&pid| status_field(pid, "Name").as_deref() == Some("sleep"))
        .collect();
    assert_eq!(
        sleepers.len(),
        3,
        "children of the shim running sleep: {sleepers:?}"
    );

    pods::remove(&mut cri, &containerd, &sandbox, &containers).await;

    // The shim exits once its last container is gone, and no rootfs stays mounted.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let shims = containerd.shim_pids();
        let rootfs: Vec<String> = containerd
            .mounts()
            .into_iter()
            .filter(|m| m.ends_with("/rootfs"))
            .collect();
        if shims.is_empty() && rootfs.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left after the pod was removed: shims {shims:?}, mounts {rootfs:?}\n{}",
            containerd.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
