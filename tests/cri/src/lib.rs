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
    /// Starts it with the shim from target/release first in PATH, and imports the busybox and
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
            .env("SHIM_DIR", repo().join("target/release"))
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
