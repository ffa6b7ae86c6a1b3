//! Security tests: confinement from the spec (seccomp, ...) and one regression test per runc
//! CVE class, each trying the escape from inside a container and asserting it fails. Played
//! like the protocol tests: the real shim binary, Task RPCs over ttrpc, real namespaces.
//! Needs root and `make rootfs`.

mod shim_harness;

use std::path::Path;

use containerd_shim_protos::api::*;
use shim_harness::*;

/// The `echo` test bundle's config.json, to change before writing a bundle.
fn template_spec() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("test-bundles/echo/config.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The template running `sh -c script`, stderr folded into stdout by the script itself.
fn spec_running(script: &str) -> serde_json::Value {
    let mut spec = template_spec();
    spec["process"]["args"] = serde_json::json!(["/bin/sh", "-c", script]);
    spec
}

fn rpc_message(err: &containerd_shim_protos::ttrpc::Error) -> String {
    match err {
        containerd_shim_protos::ttrpc::Error::RpcStatus(status) => status.message().to_owned(),
        other => format!("{other:?}"),
    }
}

/// A container of its own shim, created from `spec` (stdout to a FIFO the test reads).
struct Container<'a> {
    fake: &'a FakeContainerd,
    shim: Shim,
    id: String,
    /// The init's host pid.
    pid: u32,
    output: Option<std::thread::JoinHandle<String>>,
}

impl<'a> Container<'a> {
    fn create(fake: &'a FakeContainerd, id: &str, mut spec: serde_json::Value) -> Self {
        Self::try_create(fake, id, &mut spec).unwrap_or_else(|e| panic!("create {id}: {e}"))
    }

    fn try_create(
        fake: &'a FakeContainerd,
        id: &str,
        spec: &mut serde_json::Value,
    ) -> Result<Self, String> {
        spec["linux"]["cgroupsPath"] = serde_json::json!(fake.cgroup_path(id));
        let bundle = fake.bundle_with_spec(id, spec);
        let shim = fake.start_shim(id, &bundle);
        let (stdout, reader) = fake.output_fifo(&format!("{id}-stdout"));
        let mut request = fake.create_request(id, &bundle, &stdout);
        request.terminal = spec["process"]["terminal"].as_bool().unwrap_or(false);
        match shim.task.create(ctx(), &request) {
            Ok(created) => Ok(Self {
                fake,
                shim,
                id: id.into(),
                pid: created.pid,
                output: Some(reader),
            }),
            Err(e) => {
                abandon_reader(&stdout, reader);
                let message = rpc_message(&e);
                assert_released(fake, id);
                shim.shutdown_and_wait();
                Err(message)
            }
        }
    }

    fn start(&self) {
        let req = StartRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        self.shim.task.start(ctx(), &req).expect("start");
    }

    fn wait(&self) -> u32 {
        let req = WaitRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        self.shim.task.wait(ctx(), &req).expect("wait").exit_status
    }

    /// Start, wait for the exit: (exit status, stdout).
    fn run(mut self) -> (u32, String) {
        self.start();
        let status = self.wait();
        let output = self.output.take().unwrap().join().unwrap();
        self.delete();
        (status, output)
    }

    /// Records exec `exec_id` of `args`, its process spec changed by `patch`; returns the
    /// FIFO path and reader of its stdout.
    fn add_exec(
        &self,
        exec_id: &str,
        args: &[&str],
        patch: impl FnOnce(&mut serde_json::Value),
    ) -> (String, std::thread::JoinHandle<String>) {
        self.try_add_exec(exec_id, args, patch).expect("exec")
    }

    /// [`add_exec`](Self::add_exec), or the Exec RPC's error.
    fn try_add_exec(
        &self,
        exec_id: &str,
        args: &[&str],
        patch: impl FnOnce(&mut serde_json::Value),
    ) -> Result<(String, std::thread::JoinHandle<String>), String> {
        let (stdout, reader) = self.fake.output_fifo(&format!("{}-{exec_id}", self.id));
        let mut request = self.fake.exec_request(&self.id, exec_id, args, &stdout);
        let spec = request.spec.as_mut().unwrap();
        let mut process: serde_json::Value = serde_json::from_slice(&spec.value).unwrap();
        patch(&mut process);
        spec.value = serde_json::to_vec(&process).unwrap();
        match self.shim.task.exec(ctx(), &request) {
            Ok(_) => Ok((stdout, reader)),
            Err(e) => {
                abandon_reader(&stdout, reader);
                Err(rpc_message(&e))
            }
        }
    }

    fn start_exec(&self, exec_id: &str) -> Result<u32, String> {
        let request = StartRequest {
            id: self.id.clone(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        let started = self.shim.task.start(ctx(), &request);
        started.map(|r| r.pid).map_err(|e| rpc_message(&e))
    }

    /// Runs an exec of `args`: Ok((exit status, stdout)), or Err(the Start error).
    fn exec(
        &self,
        exec_id: &str,
        args: &[&str],
        cwd: Option<&str>,
    ) -> Result<(u32, String), String> {
        let (stdout, reader) = self.add_exec(exec_id, args, |process| {
            if let Some(cwd) = cwd {
                process["cwd"] = serde_json::json!(cwd);
            }
        });
        let result = match self.start_exec(exec_id) {
            Ok(_) => {
                let wait = WaitRequest {
                    id: self.id.clone(),
                    exec_id: exec_id.into(),
                    ..Default::default()
                };
                let status = self.shim.task.wait(ctx(), &wait).expect("wait exec");
                Ok((status.exit_status, reader.join().unwrap()))
            }
            Err(message) => {
                abandon_reader(&stdout, reader);
                Err(message)
            }
        };
        let delete = DeleteRequest {
            id: self.id.clone(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.shim.task.delete(ctx(), &delete).expect("delete exec");
        result
    }

    /// Waits (up to 20 s, inside the container) until the init's script created
    /// `/tmp/printed`: everything it printed before is then in its stdout.
    fn wait_until_printed(&self) {
        let script = "timeout 20 sh -c 'until [ -e /tmp/printed ]; do usleep 10000; done'";
        let waited = self.exec("printed", &["/bin/sh", "-c", script], None);
        assert_eq!(
            waited,
            Ok((0, String::new())),
            "the init never finished printing"
        );
    }

    /// SIGKILL (if still running), Delete, check nothing is left, stop the shim.
    fn kill_and_delete(self) {
        let kill = KillRequest {
            id: self.id.clone(),
            signal: 9,
            ..Default::default()
        };
        let _ = self.shim.task.kill(ctx(), &kill);
        self.wait();
        self.delete();
    }

    fn delete(self) {
        let req = DeleteRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        self.shim.task.delete(ctx(), &req).expect("delete");
        assert_released(self.fake, &self.id);
        self.shim.shutdown_and_wait();
    }
}

/// Lets go of a FIFO reader whose writer may never come (the RPC failed before the shim
/// opened the FIFO). Opening the FIFO for writing without blocking ends a reader already
/// waiting in open(2); one that is not there yet would wait forever, so the thread is not
/// joined: it ends with the test process.
fn abandon_reader(fifo: &str, reader: std::thread::JoinHandle<String>) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(fifo);
    drop(reader);
}

/// Nothing of the container is left: no mount under the test dir, no cgroup.
fn assert_released(fake: &FakeContainerd, id: &str) {
    assert_eq!(mounts_under(&fake.dir), Vec::<String>::new(), "mounts left");
    let cgroups = cgroup_dirs(&fake.cgroup_path(id));
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
}

/// A profile that allows everything but `mkdir`, which fails with ENOSYS (38).
fn mkdir_enosys_profile() -> serde_json::Value {
    serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["chmod", "fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 1, "value": 511, "op": "SCMP_CMP_EQ"}]},
            {"names": ["fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 2, "value": 511, "op": "SCMP_CMP_EQ"}]},
        ]
    })
}

const MKDIR_AND_CHMOD: &str = "mkdir /tmp/d 2>&1; echo mkdir=$?; touch /tmp/f; \
     chmod 755 /tmp/f; echo chmod755=$?; chmod 777 /tmp/f 2>&1; echo chmod777=$?";

fn assert_mkdir_and_chmod_filtered(output: &str) {
    assert!(output.contains("Function not implemented"), "{output}");
    assert!(output.contains("mkdir=1"), "{output}");
    assert!(
        output.contains("chmod755=0"),
        "an allowed argument: {output}"
    );
    assert!(output.contains("Operation not permitted"), "{output}");
    assert!(output.contains("chmod777=1"), "a denied argument: {output}");
}

#[test]
#[ignore = "needs root"]
fn seccomp_denies_with_the_configured_errno_after_no_new_privs() {
    if !require_root() {
        return;
    }
    let fake = FakeContainerd::new("seccomp-nnp");
    // The template sets noNewPrivileges: the filter is loaded just before execve.
    let mut spec = spec_running(&format!(
        "{MKDIR_AND_CHMOD}; touch /tmp/printed; exec sleep 100"
    ));
    spec["linux"]["seccomp"] = mkdir_enosys_profile();
    let mut container = Container::create(&fake, "seccomp-nnp", spec);
    container.start();
    // An exec is confined by the container's profile too.
    let (status, output) = container
        .exec("e1", &["/bin/sh", "-c", MKDIR_AND_CHMOD], None)
        .expect("exec");
    assert_eq!(status, 0);
    assert_mkdir_and_chmod_filtered(&output);
    container.wait_until_printed();
    let output = container.output.take().unwrap();
    container.kill_and_delete();
    assert_mkdir_and_chmod_filtered(&output.join().unwrap());
}

#[test]
#[ignore = "needs root"]
fn seccomp_without_no_new_privs_still_confines_a_non_root_user() {
    if !require_root() {
        return;
    }
    let fake = FakeContainerd::new("seccomp-priv");
    // Loaded before the capability drop (it needs CAP_SYS_ADMIN then); the switch to uid 1000
    // and the capability calls run under the filter, and no_new_privs stays off.
    let mut spec = spec_running(&format!(
        "{MKDIR_AND_CHMOD}; id -u; grep NoNewPrivs /proc/self/status"
    ));
    spec["process"]["noNewPrivileges"] = serde_json::json!(false);
    spec["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1000});
    spec["linux"]["seccomp"] = mkdir_enosys_profile();
    let (status, output) = Container::create(&fake, "seccomp-priv", spec).run();
    assert_eq!(status, 0, "{output}");
    assert_mkdir_and_chmod_filtered(&output);
    assert!(output.contains("\n1000\n"), "{output}");
    assert!(output.contains("NoNewPrivs:\t0"), "{output}");
}

#[test]
#[ignore = "needs root"]
fn seccomp_kill_process_ends_the_container_with_sigsys() {
    if !require_root() {
        return;
    }
    let fake = FakeContainerd::new("seccomp-kill");
    let mut spec = spec_running("echo before; exec mkdir /tmp/d");
    spec["linux"]["seccomp"] = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"}]
    });
    let (status, output) = Container::create(&fake, "seccomp-kill", spec).run();
    assert_eq!(output, "before\n");
    assert_eq!(status, 128 + 31, "killed by SIGSYS");
}

#[test]
#[ignore = "needs root"]
fn a_profile_that_cannot_be_compiled_fails_create_and_leaves_nothing() {
    if !require_root() {
        return;
    }
    let fake = FakeContainerd::new("seccomp-bad");
    let mut spec = spec_running("true");
    spec["linux"]["seccomp"] = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]
    });
    let err = Container::try_create(&fake, "seccomp-bad", &mut spec)
        .err()
        .expect("an argument index of 7 is refused");
    assert!(err.contains("linux.seccomp: argument index 7"), "{err}");
}

/// Opens `path` for appending: what an attacker does with a process's `exe` link.
fn open_for_write(path: &str) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().append(true).open(path)
}

/// CVE-2019-5736: a container must not reach the shim binary through a process that is still
/// its image. A created (not started) init is one: from the host even root cannot write it
/// (the daemon runs from a read-only overlay view of the binary), and from inside the
/// container (an exec) it can be neither read nor written (it is not dumpable).
#[test]
#[ignore = "needs root"]
fn the_shim_binary_cannot_be_written_through_a_container_process() {
    if !require_root() {
        return;
    }
    let fake = FakeContainerd::new("exe");
    let binary = env!("CARGO_BIN_EXE_containerd-shim-sibling-v2");
    let before = std::fs::read(binary).unwrap();
    let container = Container::create(&fake, "exe", spec_running("true"));
    for pid in [container.pid, container.shim.shim_pid()] {
        let exe = format!("/proc/{pid}/exe");
        let target = std::fs::read_link(&exe).unwrap();
        assert_ne!(target, Path::new(binary), "{exe} is the file on disk");
        let err = open_for_write(&exe).expect_err("the shim binary opened for writing");
        assert_eq!(err.raw_os_error(), Some(nix::libc::EROFS), "{exe}");
    }
    let script = "cat /proc/1/exe >/dev/null 2>&1; echo read=$?; \
                  (echo x >>/proc/1/exe) 2>/dev/null; echo write=$?; \
                  readlink /proc/1/fd/0 >/dev/null 2>&1; echo fds=$?";
    let (status, output) = container
        .exec("e1", &["/bin/sh", "-c", script], None)
        .expect("exec into the created container");
    assert_eq!(status, 0);
    assert_eq!(output, "read=1\nwrite=1\nfds=1\n");
    container.kill_and_delete();
    assert!(
        std::fs::read(binary).unwrap() == before,
        "the shim binary changed"
    );
}

/// What a process whose cwd is `/proc/self/fd/N` sees: a container path, or the error that
/// refused it. Never a directory outside the container (CVE-2024-21626).
fn assert_cwd_inside(result: Result<(u32, String), String>, n: u32) {
    match result {
        Ok((status, output)) => {
            assert_eq!(status, 0, "fd {n}: {output}");
            let cwd = output.trim_end();
            assert!(
                cwd.starts_with('/') && !cwd.contains("unreachable"),
                "fd {n}: the process started in {cwd:?}"
            );
        }
        Err(message) => assert!(
            message.contains("cwd /proc/self/fd/"),
            "fd {n}: unexpected error: {message}"
        ),
    }
}

/// CVE-2024-21626: a cwd of `/proc/self/fd/N` must not land on an fd the runtime still holds
/// while it sets the process up (runc leaked a host cgroup directory that way).
#[test]
#[ignore = "needs root"]
fn a_cwd_through_a_runtime_fd_never_leaves_the_container() {
    if !require_root() {
        return;
    }
    let fake = FakeContainerd::new("cwd");
    let container = Container::create(&fake, "cwd", spec_running("exec sleep 100"));
    container.start();
    for n in 3..=20 {
        let cwd = format!("/proc/self/fd/{n}");
        let result = container.exec(&format!("e{n}"), &["/bin/sh", "-c", "pwd -P"], Some(&cwd));
        assert_cwd_inside(result, n);
    }
    container.kill_and_delete();
    for n in 3..=20 {
        let mut spec = spec_running("pwd -P");
        spec["process"]["cwd"] = serde_json::json!(format!("/proc/self/fd/{n}"));
        let id = format!("cwd-init-{n}");
        let result = match Container::try_create(&fake, &id, &mut spec) {
            Ok(container) => Ok(container.run()),
            Err(message) => Err(message),
        };
        assert_cwd_inside(result, n);
    }
}

/// The template without a fresh /dev: the image's own /dev is used as it is.
fn spec_with_image_dev(script: &str) -> serde_json::Value {
    let mut spec = spec_running(script);
    let mounts = spec["mounts"].as_array_mut().unwrap();
    mounts.retain(|m| !m["destination"].as_str().unwrap().starts_with("/dev"));
    spec
}

/// Plants `name -> target` in the container's image (the overlay's upper layer) before Create.
fn plant_symlink(fake: &FakeContainerd, id: &str, name: &str, target: &str) {
    let path = fake.dir.join("snapshots").join(id).join("upper").join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, path).unwrap();
}

/// Adds `cap` to a process spec's bounding, effective and permitted sets.
fn grant_capability(process: &mut serde_json::Value, cap: &str) {
    for set in ["bounding", "effective", "permitted"] {
        let caps = process["capabilities"][set].as_array_mut().unwrap();
        caps.push(serde_json::json!(cap));
    }
}

fn core_pattern() -> String {
    std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap()
}

/// CVE-2025-31133: masking binds the container's /dev/null over each masked file. An image
/// whose /dev/null is a symlink to a /proc/sys file must not turn that into a bind of the
/// sysctl file: Create fails, saying why.
#[test]
#[ignore = "needs root"]
fn a_fake_dev_null_is_not_used_to_mask_paths() {
    if !require_root() {
        return;
    }
    let fake = FakeContainerd::new("devnull");
    let before = core_pattern();
    plant_symlink(
        &fake,
        "devnull",
        "dev/null",
        "/proc/sys/kernel/core_pattern",
    );
    let mut spec = spec_with_image_dev("echo escaped > /proc/kcore");
    let err = Container::try_create(&fake, "devnull", &mut spec)
        .err()
        .expect("a symlinked /dev/null is refused");
    assert!(err.contains("/dev/null"), "{err}");
    // A regular file passes for /dev/null as stdio, but not as the mask.
    let upper = fake.dir.join("snapshots/devnull-file/upper/dev");
    std::fs::create_dir_all(&upper).unwrap();
    std::fs::write(upper.join("null"), "").unwrap();
    let mut spec = spec_with_image_dev("true");
    let err = Container::try_create(&fake, "devnull-file", &mut spec)
        .err()
        .expect("a plain-file /dev/null is refused");
    assert!(err.contains("not the null device 1:3"), "{err}");
    assert_eq!(core_pattern(), before);
}

/// CVE-2025-52565: the terminal is bound over /dev/console. An image whose /dev/console is a
/// symlink (here to a /proc/sys file) must not redirect that bind: Create fails, saying why.
#[test]
#[ignore = "needs root"]
fn a_symlinked_dev_console_is_not_bound_over() {
    if !require_root() {
        return;
    }
    let fake = FakeContainerd::new("console");
    plant_symlink(
        &fake,
        "console",
        "dev/console",
        "/proc/sys/kernel/core_pattern",
    );
    let mut spec = spec_with_image_dev("true");
    spec["process"]["terminal"] = serde_json::json!(true);
    // The image's /dev has no ptmx: give the container a devpts of its own.
    spec["mounts"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "destination": "/dev/pts", "type": "devpts", "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
        }));
    plant_symlink(&fake, "console", "dev/ptmx", "pts/ptmx");
    let err = Container::try_create(&fake, "console", &mut spec)
        .err()
        .expect("a symlinked /dev/console is refused");
    assert!(err.contains("/dev/console is a symlink"), "{err}");
}

/// CVE-2025-52881: the runtime's writes to /proc must not go through the container's /proc,
/// which the container may have rearranged. Here the container (with CAP_SYS_ADMIN) hides its
/// /proc under a tmpfs holding a fake `self/oom_score_adj`; an exec asking for oomScoreAdj 500
/// still gets it, and the fake file is untouched.
#[test]
#[ignore = "needs root"]
fn an_exec_oom_score_adj_is_not_written_through_the_containers_proc() {
    if !require_root() {
        return;
    }
    let fake = FakeContainerd::new("procwrite");
    let mut spec = spec_running("exec sleep 100");
    grant_capability(&mut spec["process"], "CAP_SYS_ADMIN");
    let container = Container::create(&fake, "procwrite", spec);
    container.start();
    // An exec shares the init's mount namespace: this rearranges the container's /proc.
    let hide = "umount -l /proc && mount -t tmpfs tmpfs /proc && mkdir /proc/self && \
                echo 0 > /proc/self/oom_score_adj && echo hidden || echo failed 2>&1";
    let (_, hidden) = container.add_exec("hide", &["/bin/sh", "-c", hide], |process| {
        grant_capability(process, "CAP_SYS_ADMIN")
    });
    container.start_exec("hide").expect("start hide");
    let hidden = hidden.join().unwrap();
    assert_eq!(hidden, "hidden\n");
    let (_stdout, _reader) = container.add_exec("e1", &["/bin/sleep", "100"], |process| {
        process["oomScoreAdj"] = serde_json::json!(500);
    });
    let pid = container.start_exec("e1").expect("start the exec");
    let host = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap();
    assert_eq!(host.trim(), "500", "the exec did not get its oomScoreAdj");
    let fake_file = container.exec("look", &["/bin/cat", "/proc/self/oom_score_adj"], None);
    assert_eq!(
        fake_file,
        Ok((0, "0\n".to_string())),
        "the container's fake file was written"
    );
    container.kill_and_delete();
}

/// The template in a new user namespace: container ids 0..65536 are host ids 100000 up.
fn spec_in_user_namespace(script: &str) -> serde_json::Value {
    let mut spec = spec_running(script);
    let map = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "user"}));
    spec["linux"]["uidMappings"] = map.clone();
    spec["linux"]["gidMappings"] = map;
    spec
}

fn host_ids(pid: u32, field: &str) -> String {
    status_field(pid, field).unwrap_or_default()
}

/// A user-namespaced container: root inside, uid 100000 on the host, so the host's files
/// (unmapped, owned by host root) are not its to write; an exec joins the same namespace.
#[test]
#[ignore = "needs root"]
fn a_user_namespaced_root_is_unprivileged_on_the_host() {
    if !require_root() {
        return;
    }
    let fake = FakeContainerd::new("userns");
    let container = Container::create(&fake, "userns", spec_in_user_namespace("exec sleep 100"));
    let map = std::fs::read_to_string(format!("/proc/{}/uid_map", container.pid)).unwrap();
    assert_eq!(
        map.split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
    assert_eq!(
        host_ids(container.pid, "Uid"),
        "100000\t100000\t100000\t100000"
    );
    assert_eq!(
        host_ids(container.pid, "Gid"),
        "100000\t100000\t100000\t100000"
    );
    container.start();
    let script = "id -u; id -g; touch /etc/probe 2>/dev/null; echo touch=$?; \
                  touch /tmp/probe && stat -c %u:%g /tmp/probe";
    let (_stdout, reader) = container.add_exec("e1", &["/bin/sh", "-c", script], |_| {});
    let exec_pid = container.start_exec("e1").expect("start the exec");
    let output = reader.join().unwrap();
    assert_eq!(output, "0\n0\ntouch=1\n0:0\n", "inside the user namespace");
    let upper = fake.dir.join("snapshots/userns/upper/tmp/probe");
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&upper).unwrap());
    assert_eq!(
        owner, 100000,
        "a file the container's root made is host uid 100000's"
    );
    assert!(exec_pid > 0);
    container.kill_and_delete();
}

/// `linux.personality`, `process.ioPriority` and `process.scheduler` reach the process (and
/// what it runs), an exec gets the container's personality too.
#[test]
#[ignore = "needs root"]
fn personality_io_priority_and_scheduler_are_applied() {
    if !require_root() {
        return;
    }
    let fake = FakeContainerd::new("attrs");
    let script = "uname -m; ionice -p $$; grep -E '^policy' /proc/self/sched | tr -d ' '; \
                  cut -d' ' -f19 /proc/self/stat; touch /tmp/printed; exec sleep 100";
    let mut spec = spec_running(script);
    spec["linux"]["personality"] = serde_json::json!({"domain": "LINUX32"});
    spec["process"]["ioPriority"] = serde_json::json!({"class": "IOPRIO_CLASS_BE", "priority": 6});
    spec["process"]["scheduler"] = serde_json::json!({"policy": "SCHED_BATCH", "nice": 5});
    let mut container = Container::create(&fake, "attrs", spec);
    container.start();
    let exec = container.exec("e1", &["/bin/uname", "-m"], None);
    assert_eq!(exec, Ok((0, "i686\n".to_string())));
    container.wait_until_printed();
    let output = container.output.take().unwrap();
    container.kill_and_delete();
    let output = output.join().unwrap();
    assert_eq!(output, "i686\nbest-effort: prio 6\npolicy:3\n5\n");
}

/// `linux.timeOffsets` in a new time namespace: the container's boottime (and /proc/uptime)
/// is a day ahead of the host's, for an exec as for the init.
#[test]
#[ignore = "needs root"]
fn a_time_namespace_gets_its_offsets() {
    if !require_root() {
        return;
    }
    let fake = FakeContainerd::new("timens");
    let mut spec = spec_running("exec sleep 100");
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "time"}));
    spec["linux"]["timeOffsets"] = serde_json::json!({"boottime": {"secs": 86400}});
    let container = Container::create(&fake, "timens", spec);
    container.start();
    let host = uptime(&std::fs::read_to_string("/proc/uptime").unwrap());
    let (status, inside) = container
        .exec("e1", &["/bin/cat", "/proc/uptime"], None)
        .expect("exec");
    assert_eq!(status, 0);
    let inside = uptime(&inside);
    // In hundredths of a second, as /proc/uptime writes them: an exec can finish within one
    // 10 ms tick, and the difference of two such readings as floats can be a hair under a day.
    assert!(
        (86_400 * 100..(86_400 + 600) * 100).contains(&(inside - host)),
        "host uptime {host}, container uptime {inside} (hundredths of a second)"
    );
    container.kill_and_delete();
}

/// The first field of /proc/uptime (`seconds.hundredths`) in hundredths of a second.
fn uptime(text: &str) -> i64 {
    let field = text.split_whitespace().next().unwrap();
    let (secs, hundredths) = field.split_once('.').unwrap();
    secs.parse::<i64>().unwrap() * 100 + hundredths.parse::<i64>().unwrap()
}

/// An AppArmor profile or SELinux label this host cannot apply fails Create (and an exec),
/// naming what is missing, rather than running the container unconfined.
#[test]
#[ignore = "needs root"]
fn lsm_labels_the_host_cannot_apply_are_refused() {
    if !require_root() {
        return;
    }
    let apparmor = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|v| v.starts_with('Y'));
    if apparmor {
        eprintln!("skipped: AppArmor is enabled on this host");
        return;
    }
    let fake = FakeContainerd::new("lsm");
    let mut spec = spec_running("true");
    spec["process"]["apparmorProfile"] = serde_json::json!("sibling-test-profile");
    let err = Container::try_create(&fake, "lsm", &mut spec)
        .err()
        .expect("an AppArmor profile without AppArmor");
    assert!(
        err.contains("AppArmor is not enabled on this host"),
        "{err}"
    );
    let container = Container::create(&fake, "lsm-exec", spec_running("exec sleep 100"));
    container.start();
    let err = container
        .try_add_exec("e1", &["/bin/true"], |process| {
            process["apparmorProfile"] = serde_json::json!("sibling-test-profile");
        })
        .expect_err("an exec with an AppArmor profile without AppArmor");
    assert!(err.contains("AppArmor is not enabled"), "{err}");
    container.kill_and_delete();
}

/// Whether AppArmor is enabled here and `apparmor_parser` can load profiles. Where it is not
/// (these build machines boot with AppArmor off), the AppArmor tests skip with a message,
/// unless `SIBLING_EXPECT_APPARMOR=1` (the node VM, tests/vm/node-vm-tests.sh) makes it a
/// failure.
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
        "AppArmor tests need AppArmor enabled (have: {enabled}), apparmor_parser (have: \
         {parser}) and securityfs mounted (have: {policy}); scripts/vm/node-vm.sh boots a VM \
         that has all three"
    );
    let expected = std::env::var("SIBLING_EXPECT_APPARMOR").is_ok_and(|v| v == "1");
    assert!(!expected, "{why}");
    eprintln!("skipped: {why}");
    false
}

/// An AppArmor profile loaded into the kernel for one test, removed when dropped.
struct LoadedProfile {
    name: String,
    file: std::path::PathBuf,
}

impl LoadedProfile {
    /// Loads `profile NAME flags=(attach_disconnected,mediate_deleted) { BODY }`.
    fn load(name: &str, body: &str) -> LoadedProfile {
        let file = std::env::temp_dir().join(format!("{name}.apparmor"));
        let text =
            format!("profile {name} flags=(attach_disconnected,mediate_deleted) {{\n{body}}}\n");
        std::fs::write(&file, text).unwrap();
        let loaded = LoadedProfile {
            name: name.into(),
            file,
        };
        let out = std::process::Command::new("apparmor_parser")
            .args(["--replace", "--skip-cache"])
            .arg(&loaded.file)
            .output()
            .expect("run apparmor_parser");
        assert!(
            out.status.success(),
            "apparmor_parser -r {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let profiles = std::fs::read_to_string("/sys/kernel/security/apparmor/profiles")
            .expect("read the kernel's AppArmor profiles");
        assert!(
            profiles.lines().any(|l| l == format!("{name} (enforce)")),
            "{name} is not among the loaded profiles:\n{profiles}"
        );
        loaded
    }
}

impl Drop for LoadedProfile {
    fn drop(&mut self) {
        let removed = std::process::Command::new("apparmor_parser")
            .arg("--remove")
            .arg(&self.file)
            .status();
        if !removed.is_ok_and(|s| s.success()) {
            eprintln!("could not remove AppArmor profile {}", self.name);
        }
        let _ = std::fs::remove_file(&self.file);
    }
}

/// The AppArmor label of `pid` (`attr/apparmor/current`, Linux 5.8+), and the same from the
/// LSM-neutral `attr/current`, which must agree.
fn apparmor_label(pid: u32) -> String {
    let current = std::fs::read_to_string(format!("/proc/{pid}/attr/apparmor/current"))
        .unwrap_or_else(|e| panic!("attr/apparmor/current of {pid}: {e}"));
    let neutral = std::fs::read_to_string(format!("/proc/{pid}/attr/current")).unwrap();
    assert_eq!(
        current, neutral,
        "attr/apparmor/current and attr/current of {pid}"
    );
    current.trim_end().to_string()
}

/// The operations the test profile decides, tried by a shell in the container: its own label,
/// a write it allows, a write it denies, a read it denies (of a file it may write).
const APPARMOR_PROBE: &str = "cat /proc/self/attr/current; \
     if echo x > /tmp/allowed; then echo allowed-write:ok; else echo allowed-write:refused; fi; \
     if echo x > /tmp/denied; then echo denied-write:ok; else echo denied-write:refused; fi; \
     if echo s > /tmp/secret && cat /tmp/secret >/dev/null; then echo denied-read:ok; \
     else echo denied-read:refused; fi";

fn apparmor_probe_output(label: &str, allowed: &str, denied: &str) -> String {
    format!("{label}\nallowed-write:{allowed}\ndenied-write:{denied}\ndenied-read:{denied}\n")
}

/// With AppArmor on, `process.apparmorProfile` confines the init and an exec from their
/// execve on: the kernel names the profile (enforce) for both, what it denies fails and what it
/// allows works; an exec without a profile runs unconfined and may do all of it (the probe can
/// tell the difference). A profile the kernel does not have fails Create, and an exec's Start,
/// naming it, instead of running the process unconfined.
#[test]
#[ignore = "needs root"]
fn an_apparmor_profile_confines_the_init_and_an_exec() {
    if !require_root() || !apparmor_available() {
        return;
    }
    let name = format!("sibling-test-{}", std::process::id());
    let _profile = LoadedProfile::load(
        &name,
        "  file,\n  capability,\n  signal,\n  unix,\n  network,\n  \
         deny /tmp/denied w,\n  deny /tmp/secret r,\n",
    );
    let fake = FakeContainerd::new("apparmor");
    let script = format!("{APPARMOR_PROBE}; touch /tmp/printed; exec sleep 100");
    let mut spec = spec_running(&script);
    spec["process"]["apparmorProfile"] = serde_json::json!(name);
    let mut container = Container::create(&fake, "apparmor", spec);
    // Before Start the init is still the shim's code: the profile applies at its execve.
    assert_eq!(apparmor_label(container.pid), "unconfined");
    container.start();
    container.wait_until_printed();
    let enforced = format!("{name} (enforce)");
    assert_eq!(apparmor_label(container.pid), enforced, "the init's label");
    let output = container.output.take().unwrap();

    let (_, reader) = container.add_exec("confined", &["/bin/sh", "-c", APPARMOR_PROBE], |p| {
        p["apparmorProfile"] = serde_json::json!(name);
    });
    container
        .start_exec("confined")
        .expect("start the confined exec");
    let wait = WaitRequest {
        id: container.id.clone(),
        exec_id: "confined".into(),
        ..Default::default()
    };
    let status = container.shim.task.wait(ctx(), &wait).expect("wait exec");
    assert_eq!(
        (status.exit_status, reader.join().unwrap()),
        (0, apparmor_probe_output(&enforced, "ok", "refused")),
        "the confined exec"
    );
    container
        .shim
        .task
        .delete(
            ctx(),
            &DeleteRequest {
                id: container.id.clone(),
                exec_id: "confined".into(),
                ..Default::default()
            },
        )
        .expect("delete exec");

    // The same probe without a profile: nothing denies it.
    let unconfined = container.exec("unconfined", &["/bin/sh", "-c", APPARMOR_PROBE], None);
    assert_eq!(
        unconfined,
        Ok((0, apparmor_probe_output("unconfined", "ok", "ok"))),
        "an exec without apparmorProfile"
    );

    // A profile the kernel does not have: the exec's Start fails, the container runs on.
    let missing = format!("sibling-not-loaded-{}", std::process::id());
    let (fifo, reader) = container.add_exec("missing", &["/bin/true"], |p| {
        p["apparmorProfile"] = serde_json::json!(missing);
    });
    let err = container
        .start_exec("missing")
        .expect_err("an exec with a profile that is not loaded");
    abandon_reader(&fifo, reader);
    assert!(
        err.contains(&missing) && err.contains("not loaded"),
        "{err}"
    );
    assert_eq!(
        apparmor_label(container.pid),
        enforced,
        "the init after the failed exec"
    );
    container.kill_and_delete();
    // The init's own probe, written before it slept.
    assert_eq!(
        output.join().unwrap(),
        apparmor_probe_output(&enforced, "ok", "refused"),
        "the confined init"
    );

    let mut spec = spec_running("true");
    spec["process"]["apparmorProfile"] = serde_json::json!(missing);
    let err = Container::try_create(&fake, "apparmor-missing", &mut spec)
        .err()
        .expect("Create with a profile that is not loaded");
    assert!(
        err.contains(&missing) && err.contains("not loaded"),
        "{err}"
    );
}

/// CVE-2019-19921 / CVE-2023-27561: an image whose /proc is a symlink must get no mount
/// outside the rootfs, nor a /proc that is not procfs (where the kernel's protections and the
/// masks would not hold). A link out of the rootfs to nothing is refused; a link to a
/// directory of the image gets the procfs there, still masked, and the host is untouched.
#[test]
#[ignore = "needs root"]
fn a_symlinked_proc_neither_escapes_the_rootfs_nor_loses_its_masks() {
    if !require_root() {
        return;
    }
    let fake = FakeContainerd::new("procsym");
    let escape = std::env::temp_dir().join(format!("sibling-escape-{}", std::process::id()));
    let outside = format!("../../../../../../../..{}", escape.display());
    plant_symlink(&fake, "procsym", "proc", &outside);
    let script = "stat -f -c %T /proc/; wc -c < /proc/keys; grep -c ^Pid: /proc/self/status";
    let err = Container::try_create(&fake, "procsym", &mut spec_running(script))
        .err()
        .expect("a /proc symlink to a missing directory is refused");
    assert!(err.contains("mount point /proc"), "{err}");
    assert!(
        !escape.exists(),
        "{} was created on the host",
        escape.display()
    );
    plant_symlink(&fake, "procsym-in", "proc", "../../../../../tmp");
    let container = Container::create(&fake, "procsym-in", spec_running(script));
    let (status, output) = container.run();
    assert_eq!((status, output.as_str()), (0, "proc\n0\n1\n"));
}

/// No fd of the shim, spawner or helper reaches a container process (CVE-2024-21626 class):
/// the init and an exec see their stdio and the directory `ls` opened, nothing else.
#[test]
#[ignore = "needs root"]
fn only_stdio_reaches_the_init_and_an_exec() {
    if !require_root() {
        return;
    }
    let fake = FakeContainerd::new("fds");
    let script = "ls /proc/self/fd | tr '\\n' ' '; touch /tmp/printed; exec sleep 100";
    let mut container = Container::create(&fake, "fds", spec_running(script));
    container.start();
    let exec = container.exec(
        "e1",
        &["/bin/sh", "-c", "ls /proc/self/fd | tr '\\n' ' '"],
        None,
    );
    assert_eq!(exec, Ok((0, "0 1 2 3 ".to_string())));
    container.wait_until_printed();
    let output = container.output.take().unwrap();
    container.kill_and_delete();
    assert_eq!(output.join().unwrap(), "0 1 2 3 ");
}

/// A block device of this host (`major minor`), for a container to make a node of: the first
/// one the kernel lists, or loop0's numbers where there is none (the test VM): opening a node of
/// a device that does not exist fails too, but with ENXIO, never with EPERM.
fn host_block_device() -> String {
    std::fs::read_dir("/sys/dev/block")
        .ok()
        .and_then(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .min()
        })
        .map_or_else(|| "7 0".to_string(), |n| n.replace(':', " "))
}

/// Makes nodes of host devices the spec never allowed, with CAP_MKNOD (the template has it),
/// and opens them: `/dev/kmsg` (1:11, which root opens for writing without any other
/// capability) and a host block device. Then uses /dev/null and /dev/zero, which every
/// container gets.
fn host_device_probe() -> String {
    format!(
        "mknod /tmp/kmsg c 1 11 && mknod /tmp/disk b {} && echo made; \
         (: > /tmp/kmsg) 2>&1 | sed 's/^.*: /kmsg: /'; \
         (cat /tmp/disk > /dev/null) 2>&1 | sed 's/^.*: /disk: /'; \
         echo x > /dev/null && head -c 1 /dev/zero > /dev/null && echo defaults-ok",
        host_block_device()
    )
}

const HOST_DEVICES_REFUSED: &str = "made\nkmsg: Operation not permitted\n\
                                    disk: Operation not permitted\ndefaults-ok\n";

/// runc's default-deny allow-list holds whatever the spec says: a spec without
/// `linux.resources` gets the default devices only, so a node of a host device the container
/// makes (it has CAP_MKNOD) cannot be opened. Before, such a cgroup kept the host's allow-all.
#[test]
#[ignore = "needs root"]
fn a_spec_without_resources_still_gets_a_default_deny_device_list() {
    if !require_root() {
        return;
    }
    let fake = FakeContainerd::new("nores");
    let mut spec = spec_running(&host_device_probe());
    spec["linux"].as_object_mut().unwrap().remove("resources");
    let (status, output) = Container::create(&fake, "nores", spec).run();
    assert_eq!((status, output.as_str()), (0, HOST_DEVICES_REFUSED));
}

/// Device rules that do not begin with "deny everything" are applied after it, as runc does:
/// allowing /dev/null alone does not allow the rest of the host's devices.
#[test]
#[ignore = "needs root"]
fn device_rules_without_a_deny_all_first_still_deny_everything_else() {
    if !require_root() {
        return;
    }
    let fake = FakeContainerd::new("nodeny");
    let mut spec = spec_running(&host_device_probe());
    spec["linux"]["resources"]["devices"] = serde_json::json!([
        {"allow": true, "access": "rwm", "type": "c", "major": 1, "minor": 3}
    ]);
    let (status, output) = Container::create(&fake, "nodeny", spec).run();
    assert_eq!((status, output.as_str()), (0, HOST_DEVICES_REFUSED));
}

/// `UpdateTaskRequest` with device rules replaces the container's rules (deny-all, the new
/// rules, the defaults): on cgroup2 the one device program of the cgroup is swapped for a new
/// one instead of stacking up, on v1 `devices.list` is exactly the new list.
#[test]
#[ignore = "needs root"]
fn an_update_replaces_the_device_rules() {
    if !require_root() {
        return;
    }
    let fake = FakeContainerd::new("devupdate");
    let id = "devupdate";
    let script = "mknod /tmp/kmsg c 1 11 && touch /tmp/printed; exec sleep 100";
    let container = Container::create(&fake, id, spec_running(script));
    container.start();
    container.wait_until_printed();
    let open_kmsg = |n: &str| {
        let probe = "(: > /tmp/kmsg) 2>&1 | sed 's/^.*: //'; echo x > /dev/null && echo null-ok";
        container.exec(n, &["/bin/sh", "-c", probe], None)
    };
    let update = |devices: serde_json::Value| {
        let resources = serde_json::json!({ "devices": devices });
        let request = UpdateTaskRequest {
            id: id.into(),
            resources: Some(
                containerd_shim_protos::protobuf::well_known_types::any::Any {
                    type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
                        .into(),
                    value: serde_json::to_vec(&resources).unwrap(),
                    ..Default::default()
                },
            )
            .into(),
            ..Default::default()
        };
        container.shim.task.update(ctx(), &request).expect("update");
    };
    let refused = Ok((0, "Operation not permitted\nnull-ok\n".to_string()));
    let allowed = Ok((0, "null-ok\n".to_string()));
    assert_eq!(open_kmsg("before"), refused, "containerd's rules at Create");

    update(serde_json::json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "w"}
    ]));
    assert_eq!(
        open_kmsg("granted"),
        allowed,
        "after the update granting 1:11"
    );
    assert_device_rules(&fake, id, &["c 1:11 w"]);

    update(serde_json::json!([
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}
    ]));
    assert_eq!(
        open_kmsg("revoked"),
        refused,
        "after the update without 1:11"
    );
    assert_device_rules(&fake, id, &[]);
    container.kill_and_delete();
}

/// v1: `devices.list` holds the defaults and `extra`, nothing else. cgroup2: exactly one
/// device program is attached to the container's cgroup.
fn assert_device_rules(fake: &FakeContainerd, id: &str, extra: &[&str]) {
    let dirs = cgroup_dirs(&fake.cgroup_path(id));
    if let Some(list) = dirs
        .iter()
        .find_map(|d| std::fs::read_to_string(d.join("devices.list")).ok())
    {
        let mut expected = vec![
            "c *:* m",
            "b *:* m",
            "c 1:3 rwm",
            "c 1:5 rwm",
            "c 1:7 rwm",
            "c 1:8 rwm",
            "c 1:9 rwm",
            "c 5:0 rwm",
            "c 5:2 rwm",
            "c 136:* rwm",
        ];
        expected.extend(extra);
        expected.sort();
        let mut rules: Vec<&str> = list.lines().collect();
        rules.sort();
        assert_eq!(rules, expected, "devices.list");
        return;
    }
    let unified = dirs
        .iter()
        .find(|d| d.join("cgroup.controllers").exists())
        .expect("neither devices.list nor a cgroup2 directory");
    assert_eq!(device_programs(unified), 1, "device programs attached");
}

/// How many `BPF_CGROUP_DEVICE` programs are attached to the cgroup2 directory `dir` itself
/// (`BPF_PROG_QUERY`).
fn device_programs(dir: &Path) -> u32 {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Query {
        target_fd: u32,
        attach_type: u32,
        query_flags: u32,
        attach_flags: u32,
        prog_ids: u64,
        prog_cnt: u32,
        pad: u32,
    }
    const BPF_PROG_QUERY: i64 = 16;
    const BPF_CGROUP_DEVICE: u32 = 6;
    let cgroup = std::fs::File::open(dir).unwrap();
    let mut ids = [0u32; 64];
    let mut query = Query {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        query_flags: 0,
        attach_flags: 0,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        pad: 0,
    };
    // SAFETY: a BPF_PROG_QUERY attr whose `prog_ids` points at `prog_cnt` writable u32s that
    // outlive the call; the kernel writes only there and into `query`.
    let ret = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_bpf,
            BPF_PROG_QUERY,
            &mut query as *mut Query,
            std::mem::size_of::<Query>(),
        )
    };
    assert_eq!(
        ret,
        0,
        "BPF_PROG_QUERY: {}",
        std::io::Error::last_os_error()
    );
    query.prog_cnt
}

/// A host directory for a bind source, with a tmpfs mounted on its `sub` directory; unmounted
/// (detached) when dropped, also when the test fails.
struct DirWithSubmount {
    dir: std::path::PathBuf,
}

impl DirWithSubmount {
    /// Outside the test's directory, whose mounts must all be gone after a Delete.
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sibling-{name}-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            &dir.join("sub"),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=1m"),
        )
        .expect("mount a tmpfs under the bind source");
        DirWithSubmount { dir }
    }
}

impl Drop for DirWithSubmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.dir.join("sub"), nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `rro`: the rbind and every mount under it are read-only (mount_setattr with AT_RECURSIVE);
/// a plain `ro` makes only the top read-only, its submount stays writable (as with runc).
#[test]
#[ignore = "needs root"]
fn rro_makes_submounts_read_only_where_ro_does_not() {
    if !require_root() {
        return;
    }
    let fake = FakeContainerd::new("rro");
    let source = DirWithSubmount::new("rro-source");
    let script = "for f in /rro/top /rro/sub/f /ro/top /ro/sub/f; do \
                  touch $f 2>/dev/null; echo $f=$?; done";
    let mut spec = spec_running(script);
    let bind = |destination: &str, option: &str| {
        serde_json::json!({
            "destination": destination, "type": "bind",
            "source": source.dir, "options": ["rbind", option]
        })
    };
    let mounts = spec["mounts"].as_array_mut().unwrap();
    mounts.push(bind("/rro", "rro"));
    mounts.push(bind("/ro", "ro"));
    let (status, output) = Container::create(&fake, "rro", spec).run();
    assert_eq!(
        output, "/rro/top=1\n/rro/sub/f=1\n/ro/top=1\n/ro/sub/f=0\n",
        "rro: everything read-only; ro: only the top"
    );
    assert_eq!(status, 0);
    assert!(
        source.dir.join("sub/f").exists(),
        "the ro bind's submount was written"
    );
}

/// Whether the kernel can idmap a mount of `dir`'s filesystem: tmpfs learned it in Linux 6.3, and
/// the cgroup v2 VM boots Debian bookworm's 6.1 with its temporary directories on tmpfs. Where it
/// cannot, Create must fail with an error naming the mount instead.
fn idmap_supported(dir: &Path) -> bool {
    let tmpfs = nix::sys::statfs::statfs(dir)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    !tmpfs || version >= (6, 3)
}

/// Where the kernel cannot idmap `source`, Create of `spec` fails naming `destination`.
fn assert_idmap_refused(
    fake: &FakeContainerd,
    id: &str,
    spec: &mut serde_json::Value,
    destination: &str,
) {
    let err = Container::try_create(fake, id, spec)
        .err()
        .expect("an idmapped mount the kernel cannot make must fail Create");
    assert!(err.contains(destination), "{err}");
}

/// An idmapped bind mount (`uidMappings`/`gidMappings` on the mount): the kernel shows a file
/// owned by id n on disk as the id n maps to (containerID -> hostID, as runc does). In a
/// user-namespaced container with the same maps as the mount (how Kubernetes mounts volumes
/// into user-namespaced pods), host-root's files are root's inside, and what the container's
/// root writes there is host root's on disk. Without the idmap they would be `nobody`'s.
#[test]
#[ignore = "needs root"]
fn an_idmapped_mount_shows_files_with_the_mapped_owners() {
    if !require_root() {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let fake = FakeContainerd::new("idmap");
    let source = fake.dir.join("idmap-source");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("root-file"), "x").unwrap();
    std::fs::write(source.join("user-file"), "x").unwrap();
    std::os::unix::fs::chown(source.join("user-file"), Some(1000), Some(1000)).unwrap();
    let plain = fake.dir.join("plain-source");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::write(plain.join("root-file"), "x").unwrap();
    std::os::unix::fs::chown(&source, Some(0), Some(0)).unwrap();
    // Under /run, a tmpfs of the container's: its root may create mount points there.
    let script = "stat -c %n:%u:%g /run/idmapped/root-file /run/idmapped/user-file /run/plain/root-file; \
                  touch /run/idmapped/new && echo touched";
    let mut spec = spec_in_user_namespace(script);
    let map = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    let mounts = spec["mounts"].as_array_mut().unwrap();
    mounts.push(serde_json::json!({
        "destination": "/run/idmapped", "type": "bind", "source": source,
        "options": ["rbind"], "uidMappings": map, "gidMappings": map
    }));
    mounts.push(serde_json::json!({
        "destination": "/run/plain", "type": "bind", "source": plain, "options": ["rbind"]
    }));
    if !idmap_supported(&source) {
        assert_idmap_refused(&fake, "idmap", &mut spec, "/run/idmapped");
        return;
    }
    let (status, output) = Container::create(&fake, "idmap", spec).run();
    assert_eq!(
        output,
        "/run/idmapped/root-file:0:0\n/run/idmapped/user-file:1000:1000\n\
         /run/plain/root-file:65534:65534\ntouched\n"
    );
    assert_eq!(status, 0);
    let new = std::fs::metadata(source.join("new")).unwrap();
    assert_eq!(
        (new.uid(), new.gid()),
        (0, 0),
        "written as host root on disk"
    );
}

/// In the host's user namespace, an idmapped mount mapping 0 -> 1000 shows host root's files
/// as uid 1000's and files of ids outside the map as `nobody`'s; a mount with maps that is not
/// a bind fails Create, naming it.
#[test]
#[ignore = "needs root"]
fn an_idmapped_mount_in_the_host_user_namespace() {
    if !require_root() {
        return;
    }
    let fake = FakeContainerd::new("idmaphost");
    let source = fake.dir.join("idmap-source");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("root-file"), "x").unwrap();
    std::fs::write(source.join("user-file"), "x").unwrap();
    std::os::unix::fs::chown(source.join("user-file"), Some(1000), Some(1000)).unwrap();
    let script = "stat -c %n:%u:%g /idmapped/root-file /idmapped/user-file";
    let mut spec = spec_running(script);
    let map = serde_json::json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
    spec["mounts"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "destination": "/idmapped", "type": "bind", "source": source,
            "options": ["bind"], "uidMappings": map, "gidMappings": map
        }));
    if !idmap_supported(&source) {
        assert_idmap_refused(&fake, "idmaphost", &mut spec, "/idmapped");
        return;
    }
    let (status, output) = Container::create(&fake, "idmaphost", spec).run();
    assert_eq!(
        output,
        "/idmapped/root-file:1000:1000\n/idmapped/user-file:65534:65534\n"
    );
    assert_eq!(status, 0);
    let mut spec = spec_running("true");
    spec["mounts"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "destination": "/t", "type": "tmpfs", "uidMappings": map, "gidMappings": map
        }));
    let err = Container::try_create(&fake, "idmaptmpfs", &mut spec)
        .err()
        .expect("refused");
    assert!(
        err.contains("/t") && err.contains("not a bind mount"),
        "{err}"
    );
}
