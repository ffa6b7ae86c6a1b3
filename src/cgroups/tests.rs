//! Tests of `Cgroup` on a temporary directory standing in for the hierarchies (the mount table
//! text points into it), and one test on the real cgroups of this machine (root only).

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{self, Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::sys::signal::Signal;
use nix::unistd::Uid;
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

use super::*;

/// A fresh directory under the system temp dir, removed (with everything in it) on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("sibling-cgroups-{name}-{}-{n}", process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn join(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A hybrid layout like this machine's, mounted under `root`: memory, pids, `cpu,cpuacct`,
/// `name=systemd` on v1 and cgroup2 at `unified`. The memory hierarchy's own cgroup is
/// `/user/shim`.
fn fake_hybrid(root: &TempDir) -> Hierarchies {
    let mounts = [
        ("memory", "cgroup", "rw,memory"),
        ("pids", "cgroup", "rw,pids"),
        ("cpu,cpuacct", "cgroup", "rw,cpu,cpuacct"),
        ("systemd", "cgroup", "rw,xattr,name=systemd"),
        ("unified", "cgroup2", "rw"),
    ];
    let mut mountinfo = String::new();
    for (i, (dir, fs_type, options)) in mounts.iter().enumerate() {
        fs::create_dir_all(root.join(dir)).unwrap();
        mountinfo.push_str(&format!(
            "{} 31 0:{i} / {} rw,relatime - {fs_type} {fs_type} {options}\n",
            40 + i,
            root.join(dir).display()
        ));
    }
    let own = "4:name=systemd:/\n3:cpu,cpuacct:/\n2:pids:/\n1:memory:/user/shim\n0::/\n";
    Hierarchies::parse(&mountinfo, own).unwrap()
}

/// Pure cgroup v2 at `root`, whose root cgroup offers cpu, memory and pids.
fn fake_unified(root: &TempDir) -> Hierarchies {
    fs::write(root.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
    fs::write(root.join("cgroup.subtree_control"), "").unwrap();
    let mountinfo = format!(
        "26 25 0:23 / {} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
        root.0.display()
    );
    Hierarchies::parse(&mountinfo, "0::/\n").unwrap()
}

fn absolute(path: &str) -> CgroupPath {
    CgroupPath::Absolute(PathBuf::from(path))
}

#[test]
fn create_records_and_remove_removes_only_created_dirs() {
    let root = TempDir::new("create");
    let hierarchies = fake_hybrid(&root);
    fs::create_dir_all(root.join("memory/default")).unwrap();

    let cgroup = Cgroup::create(&hierarchies, &absolute("/default/abc/ctr")).unwrap();
    assert_eq!(cgroup.mode(), CgroupMode::Hybrid);
    assert_eq!(cgroup.dirs().len(), 5);
    let memory = &cgroup.dirs()[0];
    assert_eq!(memory.path(), root.join("memory/default/abc/ctr"));
    assert_eq!(
        memory.created,
        [
            root.join("memory/default/abc"),
            root.join("memory/default/abc/ctr")
        ]
    );
    assert_eq!(cgroup.dirs()[1].created.len(), 3);
    assert_eq!(
        cgroup.v1_dir("cpuacct"),
        Some(root.join("cpu,cpuacct/default/abc/ctr").as_path())
    );
    assert_eq!(
        cgroup.v1_dir("name=systemd"),
        Some(root.join("systemd/default/abc/ctr").as_path())
    );
    assert_eq!(
        cgroup.unified_dir(),
        Some(root.join("unified/default/abc/ctr").as_path())
    );
    assert!(cgroup.dirs().iter().all(|d| d.path().is_dir()));

    // Child cgroups made by the container go too, deepest first.
    fs::create_dir_all(root.join("memory/default/abc/ctr/sub/deeper")).unwrap();
    fs::create_dir_all(root.join("unified/default/abc/ctr/sub")).unwrap();

    cgroup.remove().unwrap();
    assert!(
        root.join("memory/default").is_dir(),
        "pre-existing parent removed"
    );
    assert!(!root.join("memory/default/abc").exists());
    for hierarchy in ["pids", "cpu,cpuacct", "systemd", "unified"] {
        assert!(root.join(hierarchy).is_dir());
        assert!(
            !root.join(hierarchy).join("default").exists(),
            "{hierarchy}"
        );
    }
    // A second remove finds nothing to do.
    cgroup.remove().unwrap();
}

#[test]
fn remove_keeps_created_parent_still_used_by_another_cgroup() {
    let root = TempDir::new("shared-parent");
    let hierarchies = fake_hybrid(&root);
    let first = Cgroup::create(&hierarchies, &absolute("/default/one")).unwrap();
    let second = Cgroup::create(&hierarchies, &absolute("/default/two")).unwrap();
    assert_eq!(first.dirs()[0].created.len(), 2);
    assert_eq!(second.dirs()[0].created, [root.join("memory/default/two")]);

    first.remove().unwrap();
    assert!(!root.join("memory/default/one").exists());
    assert!(root.join("memory/default/two").is_dir());
    second.remove().unwrap();
    assert!(!root.join("memory/default/two").exists());
}

#[test]
fn remove_keeps_a_leaf_it_did_not_create() {
    let root = TempDir::new("existing-leaf");
    let hierarchies = fake_hybrid(&root);
    fs::create_dir_all(root.join("pids/pod/ctr")).unwrap();
    let cgroup = Cgroup::create(&hierarchies, &absolute("/pod/ctr")).unwrap();
    assert!(!cgroup.dirs()[1].created_leaf());
    assert!(cgroup.dirs()[0].created_leaf());
    cgroup.remove().unwrap();
    assert!(root.join("pids/pod/ctr").is_dir());
    assert!(!root.join("memory/pod").exists());
}

#[test]
fn remove_names_the_directory_it_cannot_remove() {
    let root = TempDir::new("stuck");
    let hierarchies = fake_hybrid(&root);
    let cgroup = Cgroup::create(&hierarchies, &absolute("/stuck")).unwrap();
    // A plain file makes rmdir fail with ENOTEMPTY (cgroupfs would say EBUSY for a process).
    fs::write(root.join("pids/stuck/leftover"), "").unwrap();
    let err = cgroup.remove().unwrap_err();
    match &err {
        CgroupError::RemoveDir { path, .. } => assert_eq!(path, &root.join("pids/stuck")),
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().contains("pids/stuck"), "{err}");
    // The other hierarchies were still cleaned.
    assert!(!root.join("memory/stuck").exists());
    assert!(!root.join("unified/stuck").exists());
}

#[test]
fn create_failure_removes_what_it_created() {
    let root = TempDir::new("undo");
    let hierarchies = fake_hybrid(&root);
    // cgroup2 is the last hierarchy created; a file in the way makes its mkdir fail.
    fs::write(root.join("unified/blocked"), "").unwrap();
    let err = Cgroup::create(&hierarchies, &absolute("/blocked/ctr")).unwrap_err();
    assert!(matches!(err, CgroupError::CreateDir { .. }), "{err}");
    for hierarchy in ["memory", "pids", "cpu,cpuacct", "systemd"] {
        assert!(
            !root.join(hierarchy).join("blocked").exists(),
            "{hierarchy}"
        );
    }
}

#[test]
fn resolve_relative_path_below_own_cgroup() {
    let root = TempDir::new("relative");
    let hierarchies = fake_hybrid(&root);
    let path = CgroupPath::parse(None, "ctr", false).unwrap();
    let cgroup = Cgroup::resolve(&hierarchies, &path);
    assert_eq!(
        cgroup.v1_dir("memory"),
        Some(root.join("memory/user/shim/ctr").as_path())
    );
    assert_eq!(cgroup.v1_dir("pids"), Some(root.join("pids/ctr").as_path()));
    assert!(cgroup.dirs().iter().all(|d| d.created.is_empty()));
}

#[test]
fn copy_cpuset_into_empty_levels() {
    let root = TempDir::new("cpuset");
    let mount = root.join("cpuset");
    fs::create_dir_all(mount.join("pod")).unwrap();
    fs::write(mount.join("cpuset.cpus"), "0-1\n").unwrap();
    fs::write(mount.join("cpuset.mems"), "0\n").unwrap();
    fs::write(mount.join("pod/cpuset.cpus"), "\n").unwrap();
    fs::write(mount.join("pod/cpuset.mems"), "").unwrap();
    let mountinfo = format!(
        "34 31 0:31 / {} rw - cgroup cgroup rw,cpuset\n",
        mount.display()
    );
    let hierarchies = Hierarchies::parse(&mountinfo, "").unwrap();
    Cgroup::create(&hierarchies, &absolute("/pod")).unwrap();
    assert_eq!(
        fs::read_to_string(mount.join("pod/cpuset.cpus")).unwrap(),
        "0-1"
    );
    assert_eq!(
        fs::read_to_string(mount.join("pod/cpuset.mems")).unwrap(),
        "0"
    );
}

#[test]
fn create_on_unified_enables_controllers_of_parents() {
    let root = TempDir::new("subtree");
    let hierarchies = fake_unified(&root);
    assert_eq!(hierarchies.mode(), CgroupMode::Unified);
    let cgroup = Cgroup::create(&hierarchies, &absolute("/a/b")).unwrap();
    assert_eq!(cgroup.dirs().len(), 1);
    assert_eq!(
        fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(),
        "+cpu +memory +pids"
    );
    assert!(cgroup.open_dir_fd().is_ok());
    cgroup.remove().unwrap();
    assert!(!root.join("a").exists());
}

#[test]
fn open_dir_fd_needs_pure_v2() {
    let root = TempDir::new("no-fd");
    let cgroup = Cgroup::create(&fake_hybrid(&root), &absolute("/ctr")).unwrap();
    assert!(matches!(cgroup.open_dir_fd(), Err(CgroupError::NotUnified)));
}

#[test]
fn join_writes_the_pid_in_every_hierarchy() {
    let root = TempDir::new("join");
    let cgroup = Cgroup::create(&fake_hybrid(&root), &absolute("/ctr")).unwrap();
    let err = cgroup.join(1234).unwrap_err();
    match err {
        CgroupError::Join { path, pid, .. } => {
            assert_eq!(path, root.join("memory/ctr/cgroup.procs"));
            assert_eq!(pid, 1234);
        }
        other => panic!("unexpected error {other}"),
    }
    for dir in cgroup.dirs() {
        fs::write(dir.path().join("cgroup.procs"), "").unwrap();
    }
    cgroup.join(1234).unwrap();
    for dir in cgroup.dirs() {
        assert_eq!(
            fs::read_to_string(dir.path().join("cgroup.procs")).unwrap(),
            "1234"
        );
    }
}

#[test]
fn procs_is_the_union_of_all_hierarchies_and_children() {
    let root = TempDir::new("procs");
    let cgroup = Cgroup::create(&fake_hybrid(&root), &absolute("/ctr")).unwrap();
    fs::write(root.join("memory/ctr/cgroup.procs"), "20\n10\n").unwrap();
    fs::create_dir_all(root.join("memory/ctr/sub")).unwrap();
    // 0 is what the kernel shows for a pid outside our pid namespace.
    fs::write(root.join("memory/ctr/sub/cgroup.procs"), "30\n0\n").unwrap();
    fs::write(root.join("unified/ctr/cgroup.procs"), "20\n40\n").unwrap();
    assert_eq!(cgroup.procs().unwrap(), [10, 20, 30, 40]);
}

#[test]
fn serialize_round_trip_keeps_created_dirs() {
    let root = TempDir::new("serde");
    let cgroup = Cgroup::create(&fake_hybrid(&root), &absolute("/a/b")).unwrap();
    let json = serde_json::to_string(&cgroup).unwrap();
    let back: Cgroup = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cgroup);
    back.remove().unwrap();
    assert!(!root.join("memory/a").exists());
}

fn test_resources(memory: i64, pids: i64) -> LinuxResources {
    LinuxResourcesBuilder::default()
        .memory(LinuxMemoryBuilder::default().limit(memory).build().unwrap())
        .pids(LinuxPidsBuilder::default().limit(pids).build().unwrap())
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(50_000i64)
                .period(100_000u64)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

fn touch_files(dir: &Path, names: &[&str]) {
    for name in names {
        fs::write(dir.join(name), "").unwrap();
    }
}

fn read(path: PathBuf) -> String {
    fs::read_to_string(path).unwrap()
}

#[test]
fn apply_resources_on_v1() {
    let root = TempDir::new("resources-v1");
    let cgroup = Cgroup::create(&fake_hybrid(&root), &absolute("/ctr")).unwrap();
    touch_files(&root.join("memory/ctr"), &["memory.limit_in_bytes"]);
    touch_files(&root.join("pids/ctr"), &["pids.max"]);
    let cpu = root.join("cpu,cpuacct/ctr");
    touch_files(
        &cpu,
        &["cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us"],
    );

    cgroup
        .apply_resources(&test_resources(64 << 20, -1))
        .unwrap();
    assert_eq!(
        read(root.join("memory/ctr/memory.limit_in_bytes")),
        "67108864"
    );
    assert_eq!(read(root.join("pids/ctr/pids.max")), "max");
    assert_eq!(read(cpu.join("cpu.shares")), "512");
    assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "50000");
    assert_eq!(read(cpu.join("cpu.cfs_period_us")), "100000");

    // Absent resources are not touched.
    cgroup.apply_resources(&LinuxResources::default()).unwrap();
    assert_eq!(read(cpu.join("cpu.shares")), "512");
}

#[test]
fn apply_resources_on_v2() {
    let root = TempDir::new("resources-v2");
    let cgroup = Cgroup::create(&fake_unified(&root), &absolute("/ctr")).unwrap();
    let dir = root.join("ctr");
    touch_files(&dir, &["memory.max", "pids.max", "cpu.weight", "cpu.max"]);

    cgroup.apply_resources(&test_resources(-1, 32)).unwrap();
    assert_eq!(read(dir.join("memory.max")), "max");
    assert_eq!(read(dir.join("pids.max")), "32");
    assert_eq!(read(dir.join("cpu.weight")), "20");
    assert_eq!(read(dir.join("cpu.max")), "50000 100000");
}

#[test]
fn apply_resources_error_names_file_and_value() {
    let root = TempDir::new("resources-missing");
    let cgroup = Cgroup::create(&fake_unified(&root), &absolute("/ctr")).unwrap();
    let err = cgroup
        .apply_resources(&test_resources(4096, 0))
        .unwrap_err();
    match &err {
        CgroupError::WriteResource { path, value, .. } => {
            assert_eq!(path, &root.join("ctr/memory.max"));
            assert_eq!(value, "4096");
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().contains("memory.max"), "{err}");

    let mountinfo = format!(
        "40 31 0:1 / {} rw - cgroup cgroup rw,name=systemd\n34 31 0:2 / {} rw - cgroup cgroup rw,cpuset\n",
        root.join("systemd").display(),
        root.join("cpuset").display()
    );
    let legacy = Hierarchies::parse(&mountinfo, "").unwrap();
    let cgroup = Cgroup::resolve(&legacy, &absolute("/ctr"));
    assert!(matches!(
        cgroup.apply_resources(&test_resources(4096, 0)),
        Err(CgroupError::ControllerMissing {
            controller: "memory"
        })
    ));
}

/// The real hierarchies, when this test can use them: root, and this machine's v1 layout.
fn real_v1_hierarchies() -> Option<Hierarchies> {
    if !Uid::effective().is_root() {
        return None;
    }
    let hierarchies = Hierarchies::detect().ok()?;
    let pids = hierarchies.v1_controller("pids")?;
    (pids.mount_point() == Path::new("/sys/fs/cgroup/pids")).then_some(hierarchies)
}

/// Kills the test's children and removes the cgroup if the test fails half-way.
struct Cleanup {
    cgroup: Cgroup,
    children: Vec<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.cgroup.remove();
    }
}

fn spawn_sleep() -> Child {
    Command::new("sleep").arg("10").spawn().unwrap()
}

fn pid_of(child: &Child) -> i32 {
    i32::try_from(child.id()).unwrap()
}

#[test]
fn real_cgroup_create_join_kill_remove() {
    let Some(hierarchies) = real_v1_hierarchies() else {
        eprintln!(
            "skipping real_cgroup_create_join_kill_remove: needs root and a v1 pids hierarchy \
             at /sys/fs/cgroup/pids (per /proc/self/mountinfo)"
        );
        return;
    };
    let name = format!("/sibling-unit-test-{}", process::id());
    let path = CgroupPath::parse(Some(Path::new(&name)), "unused", false).unwrap();
    let cgroup = Cgroup::create(&hierarchies, &path).unwrap();
    let mut cleanup = Cleanup {
        cgroup: cgroup.clone(),
        children: Vec::new(),
    };
    assert_eq!(cgroup.dirs().len(), hierarchies.all().count());
    for dir in cgroup.dirs() {
        assert!(dir.path().is_dir() && dir.created_leaf(), "{dir:?}");
    }

    cgroup
        .apply_resources(&test_resources(64 << 20, 32))
        .unwrap();
    let memory = cgroup.v1_dir("memory").unwrap();
    assert_eq!(
        read(memory.join("memory.limit_in_bytes")).trim(),
        "67108864"
    );
    let pids_dir = cgroup.v1_dir("pids").unwrap();
    assert_eq!(read(pids_dir.join("pids.max")).trim(), "32");
    let cpu = cgroup.v1_dir("cpu").unwrap();
    assert_eq!(read(cpu.join("cpu.shares")).trim(), "512");
    assert_eq!(read(cpu.join("cpu.cfs_quota_us")).trim(), "50000");
    assert_eq!(read(cpu.join("cpu.cfs_period_us")).trim(), "100000");

    // One process in the cgroup (every hierarchy, cpuset included: it needs cpus/mems copied),
    // one in a child cgroup of the pids hierarchy.
    cleanup.children.push(spawn_sleep());
    cleanup.children.push(spawn_sleep());
    let first = pid_of(&cleanup.children[0]);
    let second = pid_of(&cleanup.children[1]);
    cgroup.join(first).unwrap();
    cgroup.join(second).unwrap();
    let sub = pids_dir.join("sub");
    fs::create_dir(&sub).unwrap();
    fs::write(sub.join("cgroup.procs"), second.to_string()).unwrap();

    let mut expected = vec![first, second];
    expected.sort_unstable();
    assert_eq!(cgroup.procs().unwrap(), expected);
    let membership = read(PathBuf::from(format!("/proc/{first}/cgroup")));
    assert_eq!(
        membership.lines().filter(|l| l.ends_with(&name)).count(),
        hierarchies.all().count(),
        "{membership}"
    );

    // SIGTERM goes through the signal loop (cgroup.kill is SIGKILL only).
    cgroup.kill_all(Signal::SIGTERM).unwrap();
    for child in cleanup.children.iter_mut() {
        assert_eq!(child.wait().unwrap().signal(), Some(Signal::SIGTERM as i32));
    }
    cleanup.children.clear();

    // remove() kills what is left itself, child cgroup included.
    cleanup.children.push(spawn_sleep());
    let third = pid_of(&cleanup.children[0]);
    cgroup.join(third).unwrap();
    fs::write(sub.join("cgroup.procs"), third.to_string()).unwrap();
    assert_eq!(cgroup.procs().unwrap(), [third]);
    cgroup.remove().unwrap();
    let status = cleanup.children[0].wait().unwrap();
    assert_eq!(status.signal(), Some(Signal::SIGKILL as i32));
    cleanup.children.clear();

    for dir in cgroup.dirs() {
        assert!(!dir.path().exists(), "{} left behind", dir.path().display());
    }
    let membership = read(PathBuf::from("/proc/self/cgroup"));
    assert!(!membership.contains(&name));
}

fn resources(json: serde_json::Value) -> LinuxResources {
    serde_json::from_value(json).unwrap()
}

#[test]
fn memory_swap_reservation_and_tuning_on_v1() {
    let root = TempDir::new("memory-v1");
    let cgroup = Cgroup::create(&fake_hybrid(&root), &absolute("/ctr")).unwrap();
    let dir = root.join("memory/ctr");
    let files = [
        "memory.limit_in_bytes",
        "memory.memsw.limit_in_bytes",
        "memory.soft_limit_in_bytes",
        "memory.swappiness",
        "memory.oom_control",
    ];
    touch_files(&dir, &files);
    let spec = resources(serde_json::json!({"memory": {
        "limit": 64 << 20, "swap": 128 << 20, "reservation": 32 << 20,
        "swappiness": 10, "disableOOMKiller": true
    }}));
    cgroup.apply_resources(&spec).unwrap();
    assert_eq!(read(dir.join("memory.limit_in_bytes")), "67108864");
    assert_eq!(read(dir.join("memory.memsw.limit_in_bytes")), "134217728");
    assert_eq!(read(dir.join("memory.soft_limit_in_bytes")), "33554432");
    assert_eq!(read(dir.join("memory.swappiness")), "10");
    assert_eq!(read(dir.join("memory.oom_control")), "1");
}

#[test]
fn memory_swap_is_swap_alone_on_v2() {
    let root = TempDir::new("memory-v2");
    let cgroup = Cgroup::create(&fake_unified(&root), &absolute("/ctr")).unwrap();
    let dir = root.join("ctr");
    touch_files(&dir, &["memory.max", "memory.swap.max", "memory.low"]);
    let spec = resources(serde_json::json!({"memory": {
        "limit": 64 << 20, "swap": 96 << 20, "reservation": 16 << 20
    }}));
    cgroup.apply_resources(&spec).unwrap();
    assert_eq!(read(dir.join("memory.max")), "67108864");
    assert_eq!(read(dir.join("memory.swap.max")), "33554432");
    assert_eq!(read(dir.join("memory.low")), "16777216");
    assert_eq!(resources::swap_to_v2(-1, Some(1)).unwrap(), "max");
    assert!(
        resources::swap_to_v2(1, Some(2)).is_err(),
        "swap below the limit"
    );
    assert!(
        resources::swap_to_v2(1, None).is_err(),
        "swap without a limit"
    );
}

#[test]
fn cpuset_io_hugetlb_and_unified_on_v2() {
    let root = TempDir::new("more-v2");
    let cgroup = Cgroup::create(&fake_unified(&root), &absolute("/ctr")).unwrap();
    let dir = root.join("ctr");
    let files = [
        "cpuset.cpus",
        "cpuset.mems",
        "io.weight",
        "io.max",
        "memory.high",
    ];
    touch_files(&dir, &files);
    // No hugetlb in this cgroup's controllers: its limit is skipped, not an error.
    fs::write(
        dir.join("cgroup.controllers"),
        "cpu cpuset io memory pids\n",
    )
    .unwrap();
    let spec = resources(serde_json::json!({
        "cpu": {"cpus": "0-1", "mems": "0"},
        "blockIO": {
            "weight": 500,
            "throttleReadBpsDevice": [{"major": 254, "minor": 0, "rate": 1048576}],
        },
        "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
        "unified": {"memory.high": "50000000"},
    }));
    cgroup.apply_resources(&spec).unwrap();
    assert_eq!(read(dir.join("cpuset.cpus")), "0-1");
    assert_eq!(read(dir.join("cpuset.mems")), "0");
    assert_eq!(read(dir.join("io.weight")), "default 4950");
    assert_eq!(read(dir.join("io.max")), "254:0 rbps=1048576");
    assert_eq!(read(dir.join("memory.high")), "50000000");
    // With the controller, the limit is written.
    fs::write(dir.join("cgroup.controllers"), "hugetlb\n").unwrap();
    touch_files(&dir, &["hugetlb.2MB.max"]);
    cgroup.apply_resources(&spec).unwrap();
    assert_eq!(read(dir.join("hugetlb.2MB.max")), "0");
    let bad = resources(serde_json::json!({"unified": {"../cgroup.procs": "1"}}));
    let err = cgroup.apply_resources(&bad).unwrap_err().to_string();
    assert!(err.contains("not a cgroup file name"), "{err}");
}

#[test]
fn realtime_limits_are_refused_on_v2() {
    let root = TempDir::new("rt-v2");
    let cgroup = Cgroup::create(&fake_unified(&root), &absolute("/ctr")).unwrap();
    let spec = resources(serde_json::json!({"cpu": {"realtimeRuntime": 950000}}));
    let err = cgroup.apply_resources(&spec).unwrap_err().to_string();
    assert!(err.contains("realtime"), "{err}");
}
