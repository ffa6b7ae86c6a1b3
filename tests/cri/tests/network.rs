//! Pod networking through containerd's CRI plugin and CNI, the way a Kubernetes node runs pods:
//! each pod in a network namespace of its own, wired by Debian's CNI plugins (bridge,
//! host-local IPAM, loopback) to one bridge. Two pods of the `sibling` runtime class and two of
//! `runc` (`io.containerd.runc.v2`, the reference) in one private containerd; every expectation
//! holds for both:
//!
//! - each pod gets an address in the network's subnet (PodSandboxStatus), and its containers
//!   see it on their `eth0`;
//! - a container of a client pod fetches a page from the `httpd` of a container of every server
//!   pod by IP (busybox `wget` over TCP: no capability beyond containerd's defaults; busybox
//!   `ping` would need CAP_NET_RAW, or the ping_group_range 1.6 does not set), across runtimes
//!   too;
//! - after StopPodSandbox and RemovePodSandbox, no veth is left on the bridge, no pod network
//!   namespace is left, no IPAM lease is left, and no shim is left.
//!
//! The CNI bridge plugin makes the bridge and the veths' host ends in the network namespace of
//! the process that runs it, containerd: so the test runs its containerd in a network namespace
//! it made (removed at the end, even after a failure), and nothing touches the host's network.
//! Pod network namespaces are mounted under the containerd's state directory
//! (`netns_mounts_under_state_dir`), not in the machine's /var/run/netns.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ExecSyncRequest, ImageSpec,
    LinuxContainerConfig, LinuxContainerSecurityContext, NamespaceMode, PodSandboxStatusRequest,
    RunPodSandboxRequest, StartContainerRequest,
};
use sibling_cri_test::{CriContainerd, TestNetns, can_run, have_cni_plugins, pods};
use tonic::transport::Channel;

const IMAGE: &str = "docker.io/library/sibling-busybox:latest";
/// Runtime classes (handlers) of the private containerd and the shim each one runs.
const HANDLERS: [(&str, &str); 2] = [
    ("runc", "io.containerd.runc.v2"),
    ("sibling", "io.containerd.sibling.v2"),
];
const NETWORK: &str = "sibling-cri-test";
/// host-local's `dataDir`, in the private containerd's directory.
const LEASES: &str = "cni/leases";
const PORT: u16 = 8080;
/// How long a server pod's httpd may take to answer after its container started.
const REACH_LIMIT: Duration = Duration::from_secs(15);
/// How long the pods' network may take to be gone after RemovePodSandbox returned.
const CLEANUP_LIMIT: Duration = Duration::from_secs(20);

fn container_config(name: &str, command: Vec<String>) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: IMAGE.into(),
            ..Default::default()
        }),
        command,
        log_path: format!("{name}.log"),
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(pods::namespaces(NamespaceMode::Pod)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A running pod with one container.
struct Pod {
    name: String,
    handler: &'static str,
    sandbox: String,
    container: String,
    ip: Ipv4Addr,
    /// The pod's network namespace, as its sandbox's runtime spec names it.
    netns: PathBuf,
}

struct Cri<'a> {
    client: RuntimeServiceClient<Channel>,
    containerd: &'a CriContainerd,
}

impl Cri<'_> {
    /// Runs a pod of `handler` with one container running `command`, and reads its status.
    async fn pod(
        &mut self,
        handler: &'static str,
        runtime_type: &str,
        role: &str,
        command: Vec<String>,
    ) -> Pod {
        let name = format!("{handler}-{role}");
        let config = pods::sandbox_config(self.containerd, &name, NamespaceMode::Pod, "");
        let sandbox = self
            .client
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: handler.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox {name}: {e}\n{}", self.log()))
            .into_inner()
            .pod_sandbox_id;
        let container = self
            .client
            .create_container(CreateContainerRequest {
                pod_sandbox_id: sandbox.clone(),
                config: Some(container_config(role, command)),
                sandbox_config: Some(config),
            })
            .await
            .unwrap_or_else(|e| panic!("CreateContainer in {name}: {e}\n{}", self.log()))
            .into_inner()
            .container_id;
        self.client
            .start_container(StartContainerRequest {
                container_id: container.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("StartContainer in {name}: {e}\n{}", self.log()));

        let status = self
            .client
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: sandbox.clone(),
                verbose: true,
            })
            .await
            .unwrap_or_else(|e| panic!("PodSandboxStatus {name}: {e}"))
            .into_inner();
        let ip = status
            .status
            .as_ref()
            .and_then(|s| s.network.as_ref())
            .map(|n| n.ip.clone())
            .unwrap_or_default();
        let ip: Ipv4Addr = ip
            .parse()
            .unwrap_or_else(|_| panic!("pod {name} has no IPv4 address: {ip:?}"));
        // containerd's own record of the sandbox: the shim it runs and the network namespace
        // it made (both 1.x and 2.x answer with this JSON under "info").
        let info: serde_json::Value = status
            .info
            .get("info")
            .and_then(|i| serde_json::from_str(i).ok())
            .unwrap_or_else(|| panic!("no verbose info for {name}: {:?}", status.info));
        assert_eq!(
            info["runtimeType"], runtime_type,
            "pod {name} runs on another shim"
        );
        let netns = info["runtimeSpec"]["linux"]["namespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|ns| ns["type"] == "network")
            .and_then(|ns| ns["path"].as_str())
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("pod {name}'s spec joins no network namespace: {info}"));
        Pod {
            name,
            handler,
            sandbox,
            container,
            ip,
            netns,
        }
    }

    /// ExecSync in the pod's container: (exit code, stdout, stderr).
    async fn exec(&mut self, pod: &Pod, cmd: &[&str]) -> (i32, String, String) {
        let out = self
            .client
            .exec_sync(ExecSyncRequest {
                container_id: pod.container.clone(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout: 30,
            })
            .await
            .unwrap_or_else(|e| panic!("ExecSync {cmd:?} in {}: {e}\n{}", pod.name, self.log()))
            .into_inner();
        (
            out.exit_code,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn remove(&mut self, pod: &Pod) {
        let containers = std::slice::from_ref(&pod.container);
        pods::remove(&mut self.client, self.containerd, &pod.sandbox, containers).await;
    }

    fn log(&self) -> String {
        self.containerd.log_tail()
    }
}

/// host-local's leases: files named by the address they hold, in `dataDir/<network>`.
fn leases(data_dir: &Path) -> Vec<String> {
    std::fs::read_dir(data_dir.join(NETWORK))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|name| name.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default()
}

fn veths(netns: &TestNetns) -> Vec<String> {
    netns
        .ip(&["-o", "link", "show", "type", "veth"])
        .lines()
        .map(str::to_string)
        .collect()
}

fn mounted(path: &Path) -> bool {
    let path = path.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(4) == Some(path.as_str()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn pods_on_a_cni_bridge_reach_each_other_by_ip() {
    if !can_run() || !have_cni_plugins() {
        return;
    }
    // Unique to this test process: the netns, the bridge (at most 15 bytes) and the subnet
    // (only ever used inside the netns).
    let pid = std::process::id();
    let bridge = format!("scri{pid:x}");
    let prefix = format!("10.201.{}", pid % 250);
    let subnet = format!("{prefix}.0/24");
    // Dropped after the containerd (declared before it): containerd and its pods first.
    let netns = TestNetns::add(&format!("sibling-cri-{pid}"));
    let containerd = CriContainerd::start_with_network(&netns, |dir| {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "plugins": [{
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": dir.join(LEASES),
                },
            }],
        })
    });
    let data_dir = containerd.dir().join(LEASES);
    let channel = containerd_client::connect(containerd.socket())
        .await
        .expect("connect to containerd");
    let mut cri = Cri {
        client: RuntimeServiceClient::new(channel),
        containerd: &containerd,
    };

    let mut servers = Vec::new();
    let mut clients = Vec::new();
    for (handler, runtime_type) in HANDLERS {
        let page = format!("served by {handler}-server");
        let httpd = format!(
            "mkdir -p /tmp/www && echo '{page}' > /tmp/www/index.html && \
             exec httpd -f -p {PORT} -h /tmp/www"
        );
        servers.push(
            cri.pod(
                handler,
                runtime_type,
                "server",
                vec!["/bin/sh".into(), "-c".into(), httpd],
            )
            .await,
        );
        clients.push(
            cri.pod(
                handler,
                runtime_type,
                "client",
                vec!["/bin/sleep".into(), "3600".into()],
            )
            .await,
        );
    }
    let pods: Vec<&Pod> = servers.iter().chain(&clients).collect();

    // An address of the subnet each, on the container's eth0; the pod's network namespace
    // is containerd's, under its state directory.
    let mut ips: Vec<Ipv4Addr> = pods.iter().map(|p| p.ip).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), pods.len(), "pods share an address: {ips:?}");
    for pod in &pods {
        assert!(
            pod.ip.to_string().starts_with(&format!("{prefix}.")),
            "pod {} has {}, not an address of {subnet}",
            pod.name,
            pod.ip
        );
        assert!(
            pod.netns.starts_with(containerd.dir()) && pod.netns.exists(),
            "pod {}'s network namespace {} is not containerd's",
            pod.name,
            pod.netns.display()
        );
    }
    let pods_len = pods.len();
    for pod in servers.iter().chain(&clients) {
        let (code, out, err) = cri
            .exec(pod, &["ip", "-o", "-4", "addr", "show", "dev", "eth0"])
            .await;
        assert_eq!(code, 0, "ip addr in {} ({}): {err}", pod.name, pod.handler);
        assert!(
            out.contains(&format!("inet {}/24 ", pod.ip)),
            "{} ({}) does not see {} on eth0: {out}",
            pod.name,
            pod.handler,
            pod.ip
        );
    }

    assert_eq!(
        leases(&data_dir).len(),
        pods_len,
        "host-local leases in {}: {:?}",
        data_dir.display(),
        leases(&data_dir)
    );
    // One veth per pod, their host ends on the bridge in the test's netns; nothing of it in
    // the host's network namespace.
    assert_eq!(
        veths(&netns).len(),
        pods_len,
        "veths in the test netns: {:?}",
        veths(&netns)
    );
    assert!(
        !Path::new("/sys/class/net").join(&bridge).exists(),
        "the bridge {bridge} is in the host's network namespace"
    );

    // Every client reaches every server by its address: within a runtime and across them.
    for client in &clients {
        for server in &servers {
            let url = format!("http://{}:{PORT}/", server.ip);
            let want = format!("served by {}\n", server.name);
            let deadline = Instant::now() + REACH_LIMIT;
            loop {
                let (code, out, err) = cri
                    // Bounded by busybox `timeout`: busybox 1.35's `wget -T` segfaults.
                    .exec(client, &["timeout", "5", "wget", "-q", "-O", "-", &url])
                    .await;
                if code == 0 && out == want {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} ({}) did not get {url} from {} ({}): exit {code}, {out:?}, {err}",
                    client.name,
                    client.handler,
                    server.name,
                    server.handler
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    for pod in servers.iter().chain(&clients) {
        cri.remove(pod).await;
    }
    // After RemovePodSandbox: no veth, no pod netns (neither the file nor its mount), no
    // lease, no shim.
    let deadline = Instant::now() + CLEANUP_LIMIT;
    loop {
        let veths = veths(&netns);
        let namespaces: Vec<&PathBuf> = servers
            .iter()
            .chain(&clients)
            .map(|p| &p.netns)
            .filter(|ns| ns.exists() || mounted(ns))
            .collect();
        let leases = leases(&data_dir);
        let shims = containerd.shim_pids();
        if veths.is_empty() && namespaces.is_empty() && leases.is_empty() && shims.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left after the pods were removed: veths {veths:?}, network namespaces \
             {namespaces:?}, leases {leases:?}, shims {shims:?}\n{}",
            containerd.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
