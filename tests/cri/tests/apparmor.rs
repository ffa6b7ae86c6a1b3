//! AppArmor through containerd's CRI plugin, as on an AppArmor node (Ubuntu's, or the node VM of
//! scripts/vm/node-vm.sh): CRI generates and loads its default profile,
//! `cri-containerd.apparmor.d`, and gives it to every container that asks for no profile (what
//! the kubelet sends by default). A pod run with the `sibling` runtime class must be confined
//! by it exactly as one run with `runc` (io.containerd.runc.v2), in the same containerd: the
//! kernel names the profile for the init and an exec, and what the profile denies (mount, even
//! with CAP_SYS_ADMIN and no seccomp filter) is denied, while a container that asks for
//! `unconfined` may mount (so the probe can tell).
//!
//! Where AppArmor is off (these build machines) the test skips with a message, unless
//! `SIBLING_EXPECT_APPARMOR=1` (the node VM, tests/vm/node-vm-tests.sh) makes that a failure.
//! containerd never unloads its default profile: on an AppArmor host it stays loaded, as after
//! any containerd with CRI ran there.

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    Capability, ContainerConfig, ContainerMetadata, ContainerStatusRequest, CreateContainerRequest,
    ExecSyncRequest, ImageSpec, LinuxContainerConfig, LinuxContainerSecurityContext, NamespaceMode,
    RunPodSandboxRequest, SecurityProfile, StartContainerRequest, security_profile::ProfileType,
};
use sibling_cri_test::{CriContainerd, can_run, pods};
use tonic::transport::Channel;

const IMAGE: &str = "docker.io/library/sibling-busybox:latest";
const DEFAULT_PROFILE: &str = "cri-containerd.apparmor.d";

/// What the profile decides, tried by a shell in the container: its own label and a tmpfs mount
/// (the container has CAP_SYS_ADMIN and no seccomp filter: only AppArmor's `deny mount` stops
/// it). Most other denials of the default profile (/proc/sysrq-trigger, /proc/sys) are also
/// read-only bind mounts in every CRI container, so they would fail without AppArmor too.
const PROBE: &str = "cat /proc/self/attr/current; mkdir -p /tmp/m; \
    if mount -t tmpfs probe /tmp/m 2>/dev/null; then echo mount:ok; umount /tmp/m; \
    else echo mount:refused; fi";

fn apparmor_available() -> bool {
    let enabled = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|v| v.starts_with('Y'));
    let parser = std::process::Command::new("apparmor_parser")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    // The kernel's policy interface: securityfs must be mounted for apparmor_parser to load a
    // profile (the cgroup v2 VM boots a Debian kernel with AppArmor on but mounts no securityfs).
    let policy = std::path::Path::new("/sys/kernel/security/apparmor/profiles").exists();
    if enabled && parser && policy {
        return true;
    }
    let why = format!(
        "the CRI AppArmor test needs AppArmor enabled (have: {enabled}), apparmor_parser \
         (have: {parser}) and securityfs mounted (have: {policy}); scripts/vm/node-vm.sh boots \
         a VM that has all three"
    );
    let expected = std::env::var("SIBLING_EXPECT_APPARMOR").is_ok_and(|v| v == "1");
    assert!(!expected, "{why}");
    eprintln!("skipped: {why}");
    false
}

/// A sleeping container with CAP_SYS_ADMIN; `unconfined` asks for no AppArmor profile (both
/// the field and the deprecated string, which containerd 1.6 reads), otherwise nothing is
/// asked and CRI's default applies.
fn container_config(name: &str, unconfined: bool) -> ContainerConfig {
    let mut security = LinuxContainerSecurityContext {
        namespace_options: Some(pods::namespaces(NamespaceMode::Node)),
        capabilities: Some(Capability {
            add_capabilities: vec!["SYS_ADMIN".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    if unconfined {
        security.apparmor = Some(SecurityProfile {
            profile_type: ProfileType::Unconfined as i32,
            ..Default::default()
        });
        // Deprecated in the CRI API, but the only field containerd 1.6 reads.
        #[allow(deprecated)]
        {
            security.apparmor_profile = "unconfined".into();
        }
    }
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
            security_context: Some(security),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What one runtime class gives: for the default and the unconfined container, the init's
/// label as the host reads it and the probe's output in an exec.
async fn confinement(
    cri: &mut RuntimeServiceClient<Channel>,
    containerd: &CriContainerd,
    handler: &str,
) -> Vec<(String, String)> {
    let config = pods::sandbox_config(
        containerd,
        &format!("apparmor-{handler}"),
        NamespaceMode::Node,
        "",
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
    let mut seen = Vec::new();
    let mut containers = Vec::new();
    for (name, unconfined) in [("default", false), ("unconfined", true)] {
        let id = cri
            .create_container(CreateContainerRequest {
                pod_sandbox_id: sandbox.clone(),
                config: Some(container_config(name, unconfined)),
                sandbox_config: Some(config.clone()),
            })
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "CreateContainer {handler}/{name}: {e}\n{}",
                    containerd.log_tail()
                )
            })
            .into_inner()
            .container_id;
        containers.push(id.clone());
        cri.start_container(StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "StartContainer {handler}/{name}: {e}\n{}",
                containerd.log_tail()
            )
        });
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
        let label = std::fs::read_to_string(format!("/proc/{pid}/attr/current"))
            .unwrap_or_else(|e| panic!("attr/current of {handler}/{name} (pid {pid}): {e}"));
        seen.push((
            format!("{name}: init's label"),
            label.trim_end().to_string(),
        ));
        let exec = cri
            .exec_sync(ExecSyncRequest {
                container_id: id.clone(),
                cmd: vec!["/bin/sh".into(), "-c".into(), PROBE.into()],
                timeout: 60,
            })
            .await
            .unwrap_or_else(|e| panic!("ExecSync {handler}/{name}: {e}\n{}", containerd.log_tail()))
            .into_inner();
        seen.push((
            format!("{name}: exec probe"),
            format!(
                "exit {}: {}{}",
                exec.exit_code,
                String::from_utf8_lossy(&exec.stdout),
                String::from_utf8_lossy(&exec.stderr)
            ),
        ));
    }
    pods::remove(cri, containerd, &sandbox, &containers).await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn cri_default_apparmor_profile_confines_sibling_pods_as_runc_pods() {
    if !can_run() || !apparmor_available() {
        return;
    }
    let containerd = CriContainerd::start_with(&[("CRI_APPARMOR", "1")]);
    let channel = containerd_client::connect(containerd.socket())
        .await
        .expect("connect to containerd");
    let mut cri = RuntimeServiceClient::new(channel);

    let expected = vec![
        (
            "default: init's label".to_string(),
            format!("{DEFAULT_PROFILE} (enforce)"),
        ),
        (
            "default: exec probe".to_string(),
            format!("exit 0: {DEFAULT_PROFILE} (enforce)\nmount:refused\n"),
        ),
        ("unconfined: init's label".to_string(), "unconfined".into()),
        (
            "unconfined: exec probe".to_string(),
            "exit 0: unconfined\nmount:ok\n".to_string(),
        ),
    ];
    let runc = confinement(&mut cri, &containerd, "runc").await;
    let sibling = confinement(&mut cri, &containerd, "sibling").await;
    assert_eq!(runc, expected, "io.containerd.runc.v2 (the reference)");
    assert_eq!(sibling, expected, "io.containerd.sibling.v2");
    let profiles = std::fs::read_to_string("/sys/kernel/security/apparmor/profiles").unwrap();
    assert!(
        profiles
            .lines()
            .any(|l| l == format!("{DEFAULT_PROFILE} (enforce)")),
        "containerd did not load {DEFAULT_PROFILE}:\n{profiles}"
    );
}
