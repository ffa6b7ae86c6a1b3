//! A private containerd with the CRI plugin and the `sibling` runtime class, for the CRI test.
//!
//! scripts/containerd-private.sh (with CRI=1) writes the configuration, starts containerd and,
//! when the guard drops, stops it and removes everything under its directory, even after a
//! failed test.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (this crate lives in tests/cri).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The directory of the containerd under test (`containerd`, the `ctr` of the same version and
/// `containerd-shim-runc-v2`): `$SIBLING_CONTAINERD_BIN_DIR`, else None (the ones in PATH).
/// scripts/containerd-private.sh reads the same variable.
pub fn containerd_bin_dir() -> Option<PathBuf> {
    std::env::var_os("SIBLING_CONTAINERD_BIN_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
}

/// `containerd` or `ctr` of the containerd under test.
pub fn containerd_tool(tool: &str) -> PathBuf {
    containerd_bin_dir().map_or_else(|| PathBuf::from(tool), |dir| dir.join(tool))
}

/// Whether this machine can run the test: root, containerd and ctr. In CI it must.
pub fn can_run() -> bool {
    let root = nix_root();
    let tools = ["containerd", "ctr"]
        .iter()
        .all(|tool| match containerd_bin_dir() {
            Some(dir) => dir.join(tool).is_file(),
            None => Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success()),
        });
    if root && tools {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "the CRI test needs root, containerd and ctr, and CI must run it"
    );
    eprintln!("skipped: the CRI test needs root, containerd and ctr");
    false
}

fn nix_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
    })
}

/// Makes a CNI network configuration, given the containerd's directory.
type Conflist<'a> = Box<dyn FnOnce(&Path) -> serde_json::Value + 'a>;

/// A running private containerd with CRI; stopped and removed on drop.
pub struct CriContainerd {
    dir: PathBuf,
}

impl CriContainerd {
    /// Starts it with the shim from target/x86_64-unknown-linux-musl/release first in PATH, and imports the busybox and
    /// pause images into CRI's namespace.
    /// Pods can only use the host network: its CNI directories are empty.
    pub fn start() -> CriContainerd {
        Self::start_in(None, &[])
    }

    /// [`start`](Self::start) with more environment for scripts/containerd-private.sh (e.g.
    /// `CRI_APPARMOR=1`).
    pub fn start_with(env: &[(&str, &str)]) -> CriContainerd {
        Self::start_in(None, env)
    }

    /// Runs containerd (and so the CNI plugins it runs) in the network namespace `netns`, with
    /// the plugins of [`CNI_BIN_DIR`] and the network `conflist(dir)` makes, given this
    /// containerd's directory (where the network's private state, e.g. host-local's
    /// `dataDir`, belongs: it goes when the containerd is stopped).
    pub fn start_with_network(
        netns: &TestNetns,
        conflist: impl FnOnce(&Path) -> serde_json::Value,
    ) -> CriContainerd {
        Self::start_in(Some((netns, Box::new(conflist))), &[])
    }

    fn start_in(
        network: Option<(&TestNetns, Conflist<'_>)>,
        env: &[(&str, &str)],
    ) -> CriContainerd {
        // One directory per containerd: the tests of one binary run in parallel threads of the
        // same process, and two containerds must never share a state directory.
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("sibling-cri-{}-{n}", std::process::id()));
        let containerd = CriContainerd { dir };
        let mut script = Command::new(repo().join("scripts/containerd-private.sh"));
        script
            .arg("start")
            .arg(&containerd.dir)
            .env("CRI", "1")
            .env(
                "SHIM_DIR",
                repo().join("target/x86_64-unknown-linux-musl/release"),
            )
            .envs(env.iter().copied());
        if let Some((netns, conflist)) = network {
            let conf_dir = containerd.dir.join("cni/conf");
            fs::create_dir_all(&conf_dir).expect("create the CNI conf dir");
            let conf = conflist(&containerd.dir);
            fs::write(
                conf_dir.join("10-sibling-test.conflist"),
                serde_json::to_vec_pretty(&conf).unwrap(),
            )
            .expect("write the CNI network");
            script
                .env("NETNS", netns.name())
                .env("CNI_BIN_DIR", CNI_BIN_DIR);
        }
        let status = script.status().expect("run containerd-private.sh");
        assert!(status.success(), "private containerd did not start");
        for image in ["busybox-image.tar", "pause-image.tar"] {
            containerd.ctr(&[
                "image",
                "import",
                &repo().join("build").join(image).display().to_string(),
            ]);
        }
        containerd
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("c.sock")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `ctr -n k8s.io ...`, which must succeed; returns stdout.
    pub fn ctr(&self, args: &[&str]) -> String {
        let out = Command::new(containerd_tool("ctr"))
            .arg("-a")
            .arg(self.socket())
            .args(["-n", "k8s.io"])
            .args(args)
            .output()
            .expect("run ctr");
        assert!(
            out.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Pids of the shim processes this containerd started (their argv names its socket).
    pub fn shim_pids(&self) -> Vec<u32> {
        let socket = self.socket().display().to_string();
        let mut pids = Vec::new();
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            if args
                .windows(2)
                .any(|w| w[0] == b"-address" && w[1] == socket.as_bytes())
            {
                pids.push(pid);
            }
        }
        pids
    }

    /// Mounts left under this containerd's directory.
    pub fn mounts(&self) -> Vec<String> {
        let dir = self.dir.display().to_string();
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_whitespace().nth(4).map(str::to_string))
            .filter(|point| point.starts_with(&dir))
            .collect()
    }

    /// The tail of containerd's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for CriContainerd {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/containerd-private.sh"))
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

/// Debian's containernetworking-plugins.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// Whether the CNI plugins the network test needs are there (in CI they must be).
pub fn have_cni_plugins() -> bool {
    let missing: Vec<&str> = ["bridge", "host-local", "loopback"]
        .into_iter()
        .filter(|p| !Path::new(CNI_BIN_DIR).join(p).is_file())
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "no {missing:?} in {CNI_BIN_DIR}: install containernetworking-plugins; CI must run this test"
    );
    eprintln!("skipped: no {missing:?} in {CNI_BIN_DIR} (containernetworking-plugins)");
    false
}

/// A network namespace the test made (`ip netns add`), deleted when dropped, even after a
/// failed test. Drop it after the containerd that runs in it.
pub struct TestNetns(String);

impl TestNetns {
    pub fn add(name: &str) -> TestNetns {
        let out = Command::new("ip")
            .args(["netns", "add", name])
            .output()
            .expect("run ip netns add");
        assert!(out.status.success(), "ip netns add {name}: {out:?}");
        TestNetns(name.to_string())
    }

    pub fn name(&self) -> &str {
        &self.0
    }

    /// `ip -n NAME ARGS`, which must succeed; returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.0])
            .args(args)
            .output()
            .expect("run ip");
        assert!(out.status.success(), "ip -n {} {args:?}: {out:?}", self.0);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A field of /proc/<pid>/status.
pub fn status_field(pid: u32, name: &str) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{name}:"))
                .map(|v| v.trim().to_string())
        })
}

/// What the kubelet sends for pods, shared by the CRI tests.
pub mod pods {
    use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
    use k8s_cri::v1::{
        LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption,
        PodSandboxConfig, PodSandboxMetadata, RemoveContainerRequest, RemovePodSandboxRequest,
        StopContainerRequest, StopPodSandboxRequest,
    };
    use tonic::transport::Channel;

    use super::CriContainerd;

    /// A PID namespace per container, IPC shared by the pod; the network is the host's
    /// (`network` = Node: CRI then runs no CNI plugin) or the pod's own (Pod).
    pub fn namespaces(network: NamespaceMode) -> NamespaceOption {
        NamespaceOption {
            network: network as i32,
            pid: NamespaceMode::Container as i32,
            ipc: NamespaceMode::Pod as i32,
            ..Default::default()
        }
    }

    /// Pod `name` with logs under the containerd's directory, in `network`'s namespaces, with
    /// `cgroup_parent` (empty: CRI's default). A host-network pod gets no hostname, as the
    /// kubelet sends it (setting one in the host's UTS namespace would change the node's).
    pub fn sandbox_config(
        containerd: &CriContainerd,
        name: &str,
        network: NamespaceMode,
        cgroup_parent: &str,
    ) -> PodSandboxConfig {
        let logs = containerd.dir().join("pod-logs").join(name);
        std::fs::create_dir_all(&logs).unwrap();
        let hostname = match network {
            NamespaceMode::Node => String::new(),
            _ => name.into(),
        };
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: format!("{name}-uid"),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname,
            log_directory: logs.display().to_string(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: cgroup_parent.into(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces(network)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// What the kubelet does to delete a pod: each container stopped (no grace) and removed,
    /// then the sandbox stopped and removed. A failure panics naming the step, with
    /// containerd's log.
    pub async fn remove(
        cri: &mut RuntimeServiceClient<Channel>,
        containerd: &CriContainerd,
        sandbox: &str,
        containers: &[String],
    ) {
        for id in containers {
            cri.stop_container(StopContainerRequest {
                container_id: id.clone(),
                timeout: 0,
            })
            .await
            .unwrap_or_else(|e| panic!("StopContainer {id}: {e}\n{}", containerd.log_tail()));
            cri.remove_container(RemoveContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("RemoveContainer {id}: {e}\n{}", containerd.log_tail()));
        }
        cri.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: sandbox.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("StopPodSandbox {sandbox}: {e}\n{}", containerd.log_tail()));
        cri.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: sandbox.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("RemovePodSandbox {sandbox}: {e}\n{}", containerd.log_tail()));
    }
}
