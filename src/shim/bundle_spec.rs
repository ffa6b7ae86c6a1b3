//! The bundle's `config.json` as the daemon reads it: parsed once per Create, with the
//! confinement this host cannot apply refused up front, and the container root resolved.
//! Runs in the daemon.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Linux, LinuxResources, Process as ProcessSpec, Spec};

use super::error::TaskError;

/// Reads and parses `<bundle>/config.json`; a malformed file is the caller's error.
pub(super) fn load_spec(bundle: &Path) -> Result<Spec, TaskError> {
    let path = bundle.join("config.json");
    let spec = Spec::load(&path)
        .map_err(|e| TaskError::invalid(format!("load {}: {e}", path.display())))?;
    let Some(process) = spec.process() else {
        return Err(TaskError::invalid(format!(
            "{}: no process",
            path.display()
        )));
    };
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(TaskError::invalid(format!(
            "{}: process.args is empty",
            path.display()
        )));
    }
    refuse_unsupported_version(&spec)?;
    refuse_unapplied_fields(&spec)?;
    refuse_unapplied_confinement(&spec)?;
    Ok(spec)
}

/// Confinement the spec asks for but this runtime cannot apply yet fails Create: running the
/// container without it would give it more privilege than its spec grants.
fn refuse_unapplied_confinement(spec: &Spec) -> Result<(), TaskError> {
    refuse_unapplied(spec.process().as_ref())
}

/// The same for an exec's own `process`, and the process fields this runtime does not apply.
pub(super) fn refuse_unapplied_process_confinement(process: &ProcessSpec) -> Result<(), TaskError> {
    let mut fields = Vec::new();
    process_fields(process, &mut fields);
    refuse_fields(&fields)?;
    refuse_unapplied(Some(process))
}

/// This runtime reads runtime-spec 1.x: a config of another major version may mean anything.
/// An absent `ociVersion` is read as 1.x (oci-spec leaves it empty).
fn refuse_unsupported_version(spec: &Spec) -> Result<(), TaskError> {
    let version = spec.version();
    match version.split('.').next() {
        Some("" | "1") => Ok(()),
        _ => Err(TaskError::invalid(format!(
            "ociVersion {version:?} is not supported by this runtime (it reads runtime-spec 1.x)"
        ))),
    }
}

/// Every field of runtime-spec 1.2's config that this runtime does not apply fails Create
/// when the spec asks for something with it: running without it would give the container
/// something other than its spec says. Each is named; docs/SPEC.md has the whole table.
/// Values that ask for nothing (an empty map, a zero that runc reads as "not set", `false`)
/// pass.
fn refuse_unapplied_fields(spec: &Spec) -> Result<(), TaskError> {
    refuse_fields(&unapplied_fields(spec))
}

fn refuse_fields(fields: &[&str]) -> Result<(), TaskError> {
    match fields {
        [] => Ok(()),
        [field] => Err(TaskError::invalid(format!(
            "{field} is not supported by this runtime"
        ))),
        fields => Err(TaskError::invalid(format!(
            "{} are not supported by this runtime",
            fields.join(", ")
        ))),
    }
}

/// The names (as config.json spells them) of the fields `spec` sets that are not applied.
fn unapplied_fields(spec: &Spec) -> Vec<&'static str> {
    let mut fields = Vec::new();
    let platforms = [
        ("solaris", spec.solaris().is_some()),
        ("windows", spec.windows().is_some()),
        ("vm", spec.vm().is_some()),
        ("zos", spec.zos().is_some()),
    ];
    fields.extend(platforms.iter().filter(|(_, set)| *set).map(|(f, _)| *f));
    if let Some(process) = spec.process() {
        process_fields(process, &mut fields);
    }
    if let Some(linux) = spec.linux() {
        linux_fields(linux, &mut fields);
    }
    fields
}

fn process_fields(process: &ProcessSpec, fields: &mut Vec<&'static str>) {
    // `consoleSize` is applied (`shim::spawn_process`: the pty's size before the program
    // runs); without a terminal runtime-spec says to ignore it.
    // Windows only (runtime-spec config.md).
    if process.command_line().is_some() {
        fields.push("process.commandLine");
    }
    if non_empty(process.user().username()) {
        fields.push("process.user.username");
    }
    if process
        .exec_cpu_affinity()
        .as_ref()
        .is_some_and(|a| a.initial().is_some() || a.cpu_affinity_final().is_some())
    {
        fields.push("process.execCPUAffinity");
    }
}

fn linux_fields(linux: &Linux, fields: &mut Vec<&'static str>) {
    if linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
        fields.push("linux.netDevices");
    }
    if linux.intel_rdt().is_some() {
        fields.push("linux.intelRdt");
    }
    if linux.memory_policy().is_some() {
        fields.push("linux.memoryPolicy");
    }
    // No SELinux support for mounts (no `context=`): like an unappliable process label.
    if non_empty(linux.mount_label()) {
        fields.push("linux.mountLabel");
    }
    if let Some(resources) = linux.resources() {
        resource_fields(resources, fields);
    }
}

/// The fields of `linux.resources` the cgroup code does not apply (it applies the others:
/// `cgroups::resources`), refused the same way in an Update's resources.
pub(super) fn refuse_unapplied_resources(resources: &LinuxResources) -> Result<(), TaskError> {
    let mut fields = Vec::new();
    resource_fields(resources, &mut fields);
    refuse_fields(&fields)
}

fn resource_fields(resources: &LinuxResources, fields: &mut Vec<&'static str>) {
    let set = |value: Option<i64>| value.is_some_and(|v| v != 0);
    if let Some(memory) = resources.memory() {
        // NOT RECOMMENDED in runtime-spec 1.2 and gone from the kernel (5.16), but a limit the
        // spec sets is still one the container would run without.
        if set(memory.kernel()) {
            fields.push("linux.resources.memory.kernel");
        }
        if set(memory.kernel_tcp()) {
            fields.push("linux.resources.memory.kernelTCP");
        }
        if memory.use_hierarchy().is_some() {
            fields.push("linux.resources.memory.useHierarchy");
        }
        if memory.check_before_update() == Some(true) {
            fields.push("linux.resources.memory.checkBeforeUpdate");
        }
    }
    if let Some(cpu) = resources.cpu() {
        if set(cpu.idle()) {
            fields.push("linux.resources.cpu.idle");
        }
        if cpu.burst().is_some_and(|b| b != 0) {
            fields.push("linux.resources.cpu.burst");
        }
    }
    if let Some(block_io) = resources.block_io() {
        let devices = block_io.weight_device().as_deref().unwrap_or_default();
        let leaf = |w: Option<u16>| w.is_some_and(|w| w != 0);
        if leaf(block_io.leaf_weight()) || devices.iter().any(|d| leaf(d.leaf_weight())) {
            fields.push("linux.resources.blockIO.leafWeight");
        }
    }
    if let Some(network) = resources.network() {
        if network.class_id().is_some() {
            fields.push("linux.resources.network.classID");
        }
        if network.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
            fields.push("linux.resources.network.priorities");
        }
    }
    if resources.rdma().as_ref().is_some_and(|r| !r.is_empty()) {
        fields.push("linux.resources.rdma");
    }
}

fn non_empty(value: &Option<String>) -> bool {
    value.as_deref().is_some_and(|v| !v.is_empty())
}

fn refuse_unapplied(process: Option<&ProcessSpec>) -> Result<(), TaskError> {
    match process.map(crate::container::lsm::check_host) {
        Some(Err(reason)) => Err(TaskError::precondition(format!(
            "{reason}; refusing to run the container less confined than its spec asks"
        ))),
        _ => Ok(()),
    }
}

/// The container root: `root.path` of the spec, relative to the bundle unless absolute.
pub(super) fn resolve_root(bundle: &Path, spec: &Spec) -> Result<PathBuf, TaskError> {
    let root = spec.root().as_ref().map(|r| r.path().clone());
    let root = root.unwrap_or_else(|| PathBuf::from("rootfs"));
    let root = if root.is_absolute() {
        root
    } else {
        bundle.join(root)
    };
    root.canonicalize()
        .map_err(|e| TaskError::invalid(format!("container root {}: {e}", root.display())))
}

#[cfg(test)]
mod tests {
    use containerd_shim_protos::ttrpc::Code;
    use serde_json::{Value, json};

    use super::*;

    /// oci-spec's default spec (what `ctr oci spec` prints, give or take) with `patch` merged in.
    fn spec_with(patch: Value) -> Spec {
        let mut base = serde_json::to_value(Spec::default()).unwrap();
        merge(&mut base, patch);
        serde_json::from_value(base).expect("the patched spec parses")
    }

    fn merge(base: &mut Value, patch: Value) {
        match (base, patch) {
            (Value::Object(base), Value::Object(patch)) => {
                for (key, value) in patch {
                    merge(base.entry(key).or_insert(Value::Null), value);
                }
            }
            (base, patch) => *base = patch,
        }
    }

    fn check(spec: &Spec) -> Result<(), TaskError> {
        refuse_unsupported_version(spec)?;
        refuse_unapplied_fields(spec)
    }

    fn assert_refused(patch: Value, field: &str) {
        let err = check(&spec_with(patch)).expect_err(field);
        assert_eq!(err.code(), Code::INVALID_ARGUMENT, "{err:?}");
        let message = format!("{err:?}");
        assert!(
            message.contains(&format!("{field} is not supported by this runtime")),
            "{message}"
        );
    }

    fn assert_accepted(patch: Value) {
        let spec = spec_with(patch.clone());
        if let Err(err) = check(&spec) {
            panic!("{patch} refused: {err:?}");
        }
    }

    macro_rules! refused {
        ($($name:ident: $patch:tt => $field:literal;)*) => {$(
            #[test]
            fn $name() {
                assert_refused(json!($patch), $field);
            }
        )*};
    }

    refused! {
        refuses_solaris: { "solaris": {} } => "solaris";
        refuses_windows: { "windows": { "layerFolders": [] } } => "windows";
        refuses_vm: { "vm": { "kernel": { "path": "/vmlinuz" } } } => "vm";
        refuses_zos: { "zos": {} } => "zos";
        refuses_process_command_line: { "process": { "commandLine": "cmd /c dir" } }
            => "process.commandLine";
        refuses_process_user_username: { "process": { "user": { "username": "app" } } }
            => "process.user.username";
        refuses_process_exec_cpu_affinity:
            { "process": { "execCPUAffinity": { "initial": "0", "final": "0-1" } } }
            => "process.execCPUAffinity";
        refuses_linux_net_devices: { "linux": { "netDevices": { "eth1": { "name": "eth0" } } } }
            => "linux.netDevices";
        refuses_linux_intel_rdt: { "linux": { "intelRdt": { "closID": "guaranteed" } } }
            => "linux.intelRdt";
        refuses_linux_memory_policy:
            { "linux": { "memoryPolicy": { "mode": "MPOL_BIND", "nodes": "0" } } }
            => "linux.memoryPolicy";
        refuses_linux_mount_label:
            { "linux": { "mountLabel": "system_u:object_r:container_file_t:s0:c1,c2" } }
            => "linux.mountLabel";
        refuses_memory_kernel:
            { "linux": { "resources": { "memory": { "kernel": 1048576 } } } }
            => "linux.resources.memory.kernel";
        refuses_memory_kernel_tcp:
            { "linux": { "resources": { "memory": { "kernelTCP": 1048576 } } } }
            => "linux.resources.memory.kernelTCP";
        refuses_memory_use_hierarchy:
            { "linux": { "resources": { "memory": { "useHierarchy": true } } } }
            => "linux.resources.memory.useHierarchy";
        refuses_memory_check_before_update:
            { "linux": { "resources": { "memory": { "checkBeforeUpdate": true } } } }
            => "linux.resources.memory.checkBeforeUpdate";
        refuses_cpu_idle: { "linux": { "resources": { "cpu": { "idle": 1 } } } }
            => "linux.resources.cpu.idle";
        refuses_cpu_burst: { "linux": { "resources": { "cpu": { "burst": 10000 } } } }
            => "linux.resources.cpu.burst";
        refuses_block_io_leaf_weight:
            { "linux": { "resources": { "blockIO": { "leafWeight": 100 } } } }
            => "linux.resources.blockIO.leafWeight";
        refuses_block_io_weight_device_leaf_weight: { "linux": { "resources": { "blockIO": {
                "weightDevice": [{ "major": 8, "minor": 0, "weight": 100, "leafWeight": 50 }]
            } } } }
            => "linux.resources.blockIO.leafWeight";
        refuses_network_class_id:
            { "linux": { "resources": { "network": { "classID": 1048577 } } } }
            => "linux.resources.network.classID";
        refuses_network_priorities: { "linux": { "resources": { "network": {
                "priorities": [{ "name": "eth0", "priority": 5 }]
            } } } }
            => "linux.resources.network.priorities";
        refuses_rdma: { "linux": { "resources": { "rdma": {
                "mlx5_1": { "hcaHandles": 3, "hcaObjects": 10000 }
            } } } }
            => "linux.resources.rdma";
    }

    #[test]
    fn several_fields_are_named_together() {
        let spec = spec_with(json!({ "linux": { "intelRdt": {}, "netDevices": { "a": {} } } }));
        let message = format!("{:?}", check(&spec).unwrap_err());
        assert!(
            message.contains("linux.netDevices, linux.intelRdt are not supported"),
            "{message}"
        );
    }

    #[test]
    fn refuses_another_major_oci_version() {
        let err = check(&spec_with(json!({ "ociVersion": "2.0.0" }))).unwrap_err();
        assert_eq!(err.code(), Code::INVALID_ARGUMENT);
        assert!(
            format!("{err:?}").contains("ociVersion \\\"2.0.0\\\" is not supported"),
            "{err:?}"
        );
        for version in ["", "1.0.0", "1.0.2-dev", "1.2.0", "1.2.1", "1.3.0"] {
            assert_accepted(json!({ "ociVersion": version }));
        }
    }

    #[test]
    fn values_that_ask_for_nothing_are_accepted() {
        assert_accepted(json!({ "linux": {
            "netDevices": {},
            "mountLabel": "",
            "resources": {
                "memory": { "kernel": 0, "kernelTCP": 0, "checkBeforeUpdate": false },
                "cpu": { "idle": 0, "burst": 0 },
                "blockIO": { "leafWeight": 0, "weight": 100 },
                "network": { "priorities": [] },
                "rdma": {},
            },
        }}));
        assert_accepted(json!({ "process": {
            "user": { "username": "" },
            "execCPUAffinity": {},
        }}));
    }

    #[test]
    fn the_default_spec_and_the_test_bundles_are_accepted() {
        check(&Spec::default()).unwrap();
        for config in [
            include_str!("../../test-bundles/echo/config.json"),
            include_str!("../../test-bundles/bad-mount/config.json"),
            include_str!("../../test-bundles/missing-binary/config.json"),
        ] {
            let spec: Spec = serde_json::from_str(config).unwrap();
            check(&spec).unwrap();
        }
    }

    /// What containerd's CRI plugin sets on a pod container (no SELinux): resources, sysctls,
    /// labels, hugepages, `unified`, an OOM score.
    #[test]
    fn a_cri_container_spec_is_accepted() {
        assert_accepted(json!({
            "ociVersion": "1.2.1",
            "hostname": "pod",
            "annotations": { "io.kubernetes.cri.container-type": "container" },
            "process": {
                "oomScoreAdj": 1000,
                "apparmorProfile": "",
                "selinuxLabel": "",
                "user": { "uid": 65534, "gid": 65534, "additionalGids": [65534] },
            },
            "linux": {
                "cgroupsPath": "kubepods-besteffort-pod1.slice:cri-containerd:abc",
                "sysctl": { "net.ipv4.ip_unprivileged_port_start": "0" },
                "mountLabel": "",
                "resources": {
                    "memory": { "limit": 67108864, "swap": 67108864 },
                    "cpu": { "shares": 2, "quota": 0, "period": 100000, "cpus": "", "mems": "" },
                    "hugepageLimits": [{ "pageSize": "2MB", "limit": 0 }],
                    "unified": { "memory.oom.group": "1" },
                },
            },
        }));
    }

    /// `-info`'s features document says disabled exactly where Create refuses the field.
    #[test]
    fn the_features_document_agrees() {
        let features = crate::info::features_document();
        let disabled = |pointer: &str| features.pointer(pointer) == Some(&json!(false));
        assert!(disabled("/linux/intelRdt/enabled"));
        assert_refused(json!({ "linux": { "intelRdt": {} } }), "linux.intelRdt");
        assert!(disabled("/linux/netDevices/enabled"));
        assert_refused(
            json!({ "linux": { "netDevices": { "eth1": {} } } }),
            "linux.netDevices",
        );
        assert!(disabled("/linux/cgroup/rdma"));
        assert_refused(
            json!({ "linux": { "resources": { "rdma": { "mlx5_1": { "hcaHandles": 1 } } } } }),
            "linux.resources.rdma",
        );
        assert_eq!(
            features.pointer("/linux/memoryPolicy/modes"),
            Some(&json!([]))
        );
        assert_refused(
            json!({ "linux": { "memoryPolicy": { "mode": "MPOL_DEFAULT" } } }),
            "linux.memoryPolicy",
        );
        // The systemd driver (an option of the runtime, not of the spec) exists; systemd's
        // user instance is never used.
        assert_eq!(
            features.pointer("/linux/cgroup/systemd"),
            Some(&json!(true))
        );
        assert!(disabled("/linux/cgroup/systemdUser"));
        assert_eq!(features.pointer("/ociVersionMin"), Some(&json!("1.0.0")));
        assert_eq!(
            features.pointer("/linux/mountExtensions/idmap/enabled"),
            Some(&json!(true))
        );
        assert_accepted(json!({ "mounts": [{
            "destination": "/data", "type": "bind", "source": "/tmp", "options": ["rbind"],
            "uidMappings": [{ "containerID": 0, "hostID": 100000, "size": 65536 }],
            "gidMappings": [{ "containerID": 0, "hostID": 100000, "size": 65536 }],
        }]}));
    }

    #[test]
    fn an_exec_process_is_checked_too() {
        let size = json!({ "height": 1, "width": 1 });
        assert_accepted(json!({ "process": { "terminal": false, "consoleSize": size } }));
        assert_accepted(json!({ "process": { "terminal": true, "consoleSize": size } }));
        let spec = spec_with(json!({ "process": { "commandLine": "cmd /c dir" } }));
        let err = refuse_unapplied_process_confinement(spec.process().as_ref().unwrap());
        assert!(format!("{:?}", err.unwrap_err()).contains("process.commandLine"));
    }

    #[test]
    fn an_update_is_checked_too() {
        let resources: LinuxResources =
            serde_json::from_value(json!({ "rdma": { "mlx5_1": { "hcaHandles": 3 } } })).unwrap();
        let err = refuse_unapplied_resources(&resources).unwrap_err();
        assert!(
            format!("{err:?}").contains("linux.resources.rdma"),
            "{err:?}"
        );
    }
}
