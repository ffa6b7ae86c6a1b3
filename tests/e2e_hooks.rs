//! OCI hooks end to end through a real containerd and `ctr run --config`: what `nerdctl run -d`
//! asks of a shim. A createRuntime hook reads the state from stdin and wires the container's
//! network namespace with the CNI bridge and host-local plugins (Debian's
//! containernetworking-plugins, the CNI exec protocol); a poststop hook releases it (CNI DEL).
//! The bridge lives in a network namespace the test makes, so nothing touches the host's.
//! Every check runs against `io.containerd.runc.v2` first (`::runc`), then our shim.
//!
//! Needs root, containerd, ctr, ip, nsenter and /usr/lib/cni: skipped with a message otherwise,
//! failed in CI (`CI=true`).

#[macro_use]
mod common;

use std::path::Path;
use std::process::Command;

use common::{
    NAMESPACE, PrivateContainerd, RUNC, SIBLING, in_ci, require_root_and_tools, rootfs_dir,
    unique_id,
};

for_each_runtime!(
    cni_network_from_hooks_like_nerdctl,
    every_hook_kind_runs_once_in_order
);

const CNI_PATH: &str = "/usr/lib/cni";

fn containerd(runtime: &str) -> Option<PrivateContainerd> {
    if !require_root_and_tools() {
        return None;
    }
    if !Path::new(CNI_PATH).join("bridge").exists() {
        assert!(!in_ci(), "containernetworking-plugins is not installed");
        eprintln!("skipped: no {CNI_PATH}/bridge (containernetworking-plugins)");
        return None;
    }
    Some(PrivateContainerd::start_with_runtime(runtime))
}

/// A network namespace of the test's, deleted when dropped.
struct TestNetns(String);

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cni_network_from_hooks_like_nerdctl(runtime: &str) {
    let Some(c) = containerd(runtime) else { return };
    let id = unique_id("cnihooks");
    let dir = c.dir().join(format!("cni-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    // Unique per test process and runtime: the bridge, its netns and the subnet.
    let n = std::process::id() % 250;
    let third = if runtime == RUNC { 1 } else { 2 };
    let subnet = format!("10.{}.{third}.0/24", 100 + n % 100);
    let gateway = format!("10.{}.{third}.1", 100 + n % 100);
    let bridge = format!("sbh{:x}{third}", std::process::id() % 0xfffff);
    let netns = TestNetns(format!("sibling-{id}"));
    ip(&["netns", "add", &netns.0]);
    let leases = dir.join("leases");
    let network = "siblingtest";
    let conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": network,
        "type": "bridge",
        "bridge": bridge,
        "isGateway": true,
        "ipam": {"type": "host-local", "subnet": subnet, "dataDir": leases},
    });
    let conf_path = dir.join("net.json");
    std::fs::write(&conf_path, serde_json::to_vec(&conf).unwrap()).unwrap();
    // The CNI exec protocol, as nerdctl's hook drives it: the state from stdin gives the id and
    // (for ADD) the pid whose network namespace to wire. The plugin runs in the test's netns,
    // where the bridge goes; it moves the veth's other end into CNI_NETNS.
    let script = |command: &str| {
        format!(
            "state=$(cat); \
             id=$(echo \"$state\" | sed -n 's/.*\"id\":\"\\([^\"]*\\)\".*/\\1/p'); \
             pid=$(echo \"$state\" | sed -n 's/.*\"pid\":\\([0-9]*\\).*/\\1/p'); \
             netns=; [ -n \"$pid\" ] && netns=/proc/$pid/ns/net; \
             CNI_COMMAND={command} CNI_CONTAINERID=$id CNI_NETNS=$netns CNI_IFNAME=eth0 \
             CNI_PATH={CNI_PATH} nsenter --net=/run/netns/{ns} {CNI_PATH}/bridge < {conf} \
             > {dir}/{command}.out",
            ns = netns.0,
            conf = conf_path.display(),
            dir = dir.display(),
        )
    };
    let hook = |command: &str| {
        serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", script(command)],
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
            "timeout": 30,
        })
    };
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("test-bundles/echo/config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(template).unwrap()).unwrap();
    spec["process"]["args"] = serde_json::json!(["ping", "-c", "1", "-W", "5", gateway]);
    spec["root"] = serde_json::json!({"path": rootfs_dir(), "readonly": true});
    spec["hooks"] = serde_json::json!({
        "createRuntime": [hook("ADD")],
        "poststop": [hook("DEL")],
    });
    spec["linux"]["cgroupsPath"] = serde_json::json!(format!("/{NAMESPACE}/{id}"));
    let config = dir.join("config.json");
    std::fs::write(&config, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    let r = c.run_config(&config, &id);
    let leaks = c.leaks(&[&id]);
    assert!(leaks.is_empty(), "leaked: {leaks:?}\n{r}");
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("1 packets received"), "{r}");
    let added = std::fs::read_to_string(dir.join("ADD.out")).unwrap_or_default();
    assert!(added.contains(&gateway), "CNI ADD result: {added}");
    assert!(
        dir.join("DEL.out").exists(),
        "poststop (CNI DEL) did not run"
    );
    // No veth left on the bridge (the container's end went with its netns), no lease left.
    let veths = ip(&["-n", &netns.0, "-o", "link", "show", "type", "veth"]);
    assert_eq!(veths.trim(), "", "veths left");
    let left: Vec<String> = std::fs::read_dir(leases.join(network))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|name| name.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "IPAM leases left: {left:?}");
}

/// Every hook kind runs once, in the lifecycle's order, with the container's state on stdin,
/// in the namespace the runtime spec names: prestart, createRuntime, poststart and poststop in
/// the runtime's mount namespace, createContainer and startContainer in the container's.
fn every_hook_kind_runs_once_in_order(runtime: &str) {
    let Some(c) = containerd(runtime) else { return };
    let id = unique_id("hookorder");
    let dir = c.dir().join(format!("hooks-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    // A hook appends "<kind> <id from its state> <mount namespace>" to order; `hookdir` is the
    // directory as the hook sees it (the host's, or the bind mount in the container's root).
    let hook = |kind: &str, hookdir: &str| {
        let script = format!(
            "state=$(cat); \
             sid=$(echo \"$state\" | sed -n 's/.*\"id\":\"\\([^\"]*\\)\".*/\\1/p'); \
             echo \"{kind} $sid $(readlink /proc/self/ns/mnt)\" >> {hookdir}/order"
        );
        serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", script],
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
            "timeout": 30,
        })
    };
    let host = dir.display().to_string();
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("test-bundles/echo/config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(template).unwrap()).unwrap();
    // /home exists (empty) in the shared read-only rootfs: the bind mount needs no new directory.
    spec["process"]["args"] = serde_json::json!(["sh", "-c", "echo ran >> /home/order"]);
    spec["root"] = serde_json::json!({"path": rootfs_dir(), "readonly": true});
    spec["mounts"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "destination": "/home", "type": "bind", "source": host,
            "options": ["rbind", "rw"],
        }));
    spec["hooks"] = serde_json::json!({
        "prestart": [hook("prestart", &host)],
        "createRuntime": [hook("createRuntime", &host)],
        // Before pivot_root: the container's mounts, under its root as the host path names it.
        "createContainer": [hook(
            "createContainer",
            &format!("{}/home", rootfs_dir().display()),
        )],
        "startContainer": [hook("startContainer", "/home")],
        "poststart": [hook("poststart", &host)],
        "poststop": [hook("poststop", &host)],
    });
    spec["linux"]["cgroupsPath"] = serde_json::json!(format!("/{NAMESPACE}/{id}"));
    let config = dir.join("config.json");
    std::fs::write(&config, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    let r = c.run_config(&config, &id);
    assert_eq!(r.code, 0, "{r}");
    let leaks = c.leaks(&[&id]);
    assert!(leaks.is_empty(), "leaked: {leaks:?}\n{r}");
    let order = std::fs::read_to_string(dir.join("order")).unwrap_or_default();
    let host_mnt = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let host_mnt = host_mnt.to_string_lossy();
    let lines: Vec<Vec<&str>> = order.lines().map(|l| l.split(' ').collect()).collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l[0]).collect();
    // Each kind once, and the order the lifecycle fixes. poststart runs once the program was
    // started, as Start returns: runc's poststart may even come before the init's startContainer
    // has finished, so only its place after createContainer and before poststop is checked.
    let at = |kind: &str| {
        let found: Vec<usize> = kinds
            .iter()
            .enumerate()
            .filter(|(_, k)| **k == kind)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(found.len(), 1, "{kind} ran {} times: {order}", found.len());
        found[0]
    };
    let chain = [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "ran",
    ];
    for pair in chain.windows(2) {
        assert!(
            at(pair[0]) < at(pair[1]),
            "{} after {}: {order}",
            pair[0],
            pair[1]
        );
    }
    assert!(at("createContainer") < at("poststart"), "{order}");
    assert!(at("poststart") < at("poststop"), "{order}");
    assert!(at("ran") < at("poststop"), "{order}");
    assert_eq!(kinds.len(), 7, "{order}");
    for line in lines.iter().filter(|l| l[0] != "ran") {
        assert_eq!(line.get(1).copied(), Some(id.as_str()), "state id: {order}");
        let in_host = line.get(2).copied() == Some(&*host_mnt);
        let container_side = matches!(line[0], "createContainer" | "startContainer");
        assert_eq!(
            in_host, !container_side,
            "{} ran in the wrong mount namespace: {order}",
            line[0]
        );
    }
}
