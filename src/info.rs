//! `containerd-shim-sibling-v2 -info`: the `RuntimeInfo` containerd 2.x asks a shim for (its
//! `PluginInfo` runs the binary with only `-info`, the runtime options as a marshalled `Any` on
//! stdin, and decodes stdout as `containerd.types.RuntimeInfo`).
//!
//! Its `features` is the OCI features document (runtime-spec `features.md`), JSON in an `Any`
//! of type [`FEATURES_TYPE_URL`]. containerd refuses a container with idmapped mounts unless
//! `linux.mountExtensions.idmap.enabled` is true, and CRI offers recursive read-only mounts
//! only when `mountOptions` has `rro`. Everything in it is derived from the code that applies
//! it: mount options from `mount_options`' tables, seccomp actions, operators, flags and
//! architectures by compiling a profile with each through `seccomp::compile`, capabilities
//! from `capabilities::CAPABILITIES`. What is not implemented is stated as such (empty lists,
//! `enabled: false`), never left out.

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use oci_spec::runtime::{
    Arch, LinuxNamespaceType, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};
use serde_json::{Value, json};

use crate::container::capabilities::CAPABILITIES;
use crate::container::mount_options::known_options;
use crate::container::seccomp::compile;
use crate::protos::introspection::{RuntimeInfo, RuntimeVersion};
use crate::shim::RUNTIME_NAME;

/// The type URL containerd registers for runtime-spec's `features.Features` (JSON value).
pub const FEATURES_TYPE_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/features/Features";

/// The hooks (`hooks.<name>` of config.json) that are run: all six kinds of runtime-spec 1.2
/// (`container::hooks`).
pub const HOOKS: &[&str] = &[
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// The runtime-spec versions whose config.json this runtime reads (mount `uidMappings`, the
/// 1.2 addition this runtime applies, included).
const OCI_VERSION_MIN: &str = "1.0.0";
const OCI_VERSION_MAX: &str = "1.2.0";

/// Builds the `-info` answer. `options` is what containerd wrote to stdin (already checked by
/// the caller); it is echoed back, as runc.v2's shim does.
pub fn runtime_info(options: Option<Any>) -> RuntimeInfo {
    let mut version = RuntimeVersion::new();
    version.version = env!("CARGO_PKG_VERSION").to_owned();
    let mut features = Any::new();
    features.type_url = FEATURES_TYPE_URL.to_owned();
    features.value = serde_json::to_vec(&features_document()).unwrap_or_default();
    let mut info = RuntimeInfo::new();
    info.name = RUNTIME_NAME.to_owned();
    info.version = MessageField::some(version);
    info.options = options.into();
    info.features = MessageField::some(features);
    info
}

/// The marshalled [`runtime_info`].
pub fn runtime_info_bytes(options: Option<Any>) -> Result<Vec<u8>, String> {
    runtime_info(options)
        .write_to_bytes()
        .map_err(|e| format!("encode RuntimeInfo: {e}"))
}

/// The OCI features document.
pub fn features_document() -> Value {
    json!({
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION_MAX,
        "hooks": HOOKS,
        "mountOptions": known_options().collect::<Vec<_>>(),
        "linux": {
            "namespaces": namespaces(),
            "capabilities": CAPABILITIES.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
            "cgroup": {
                "v1": true,
                "v2": true,
                // The systemd driver (runtime option `SystemdCgroup` / `systemd_cgroup`): a
                // transient scope per container through systemd's D-Bus API
                // (`cgroups::systemd`), on pure cgroup v2 hosts. Never systemd's user instance.
                "systemd": true,
                "systemdUser": false,
                "rdma": false,
            },
            "seccomp": seccomp(),
            // Applied through attr/exec when the spec asks (and refused where the host lacks
            // the LSM): see container::lsm.
            "apparmor": { "enabled": true },
            "selinux": { "enabled": true },
            "intelRdt": { "enabled": false },
            "memoryPolicy": { "modes": [], "flags": [] },
            "mountExtensions": { "idmap": { "enabled": true } },
            "netDevices": { "enabled": false },
        },
        "annotations": annotations(),
        "potentiallyUnsafeConfigAnnotations": [],
    })
}

fn namespaces() -> Vec<Value> {
    let all = [
        LinuxNamespaceType::Cgroup,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::User,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Time,
    ];
    // Every spec type: `namespaces::NamespaceKind::from_oci` maps each (exhaustively), and
    // creates or joins it.
    all.into_iter()
        .filter_map(|t| serde_json::to_value(t).ok())
        .collect()
}

/// A profile compiles with `change` applied: the seccomp support is what `compile` accepts.
fn compiles(change: impl FnOnce(&mut Value)) -> bool {
    let mut profile = json!({ "defaultAction": "SCMP_ACT_ALLOW" });
    change(&mut profile);
    serde_json::from_value::<LinuxSeccomp>(profile).is_ok_and(|p| compile(&p).is_ok())
}

fn names<T: serde::Serialize>(values: &[T]) -> Vec<String> {
    values
        .iter()
        .filter_map(|v| serde_json::to_value(v).ok())
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

fn seccomp() -> Value {
    let actions = names(&[
        LinuxSeccompAction::ScmpActKill,
        LinuxSeccompAction::ScmpActKillProcess,
        LinuxSeccompAction::ScmpActKillThread,
        LinuxSeccompAction::ScmpActTrap,
        LinuxSeccompAction::ScmpActErrno,
        LinuxSeccompAction::ScmpActTrace,
        LinuxSeccompAction::ScmpActAllow,
        LinuxSeccompAction::ScmpActLog,
        LinuxSeccompAction::ScmpActNotify,
    ]);
    let actions: Vec<String> = actions
        .into_iter()
        .filter(|action| compiles(|p| p["defaultAction"] = json!(action)))
        .collect();
    let operators: Vec<String> = names(&[
        LinuxSeccompOperator::ScmpCmpNe,
        LinuxSeccompOperator::ScmpCmpLt,
        LinuxSeccompOperator::ScmpCmpLe,
        LinuxSeccompOperator::ScmpCmpEq,
        LinuxSeccompOperator::ScmpCmpGe,
        LinuxSeccompOperator::ScmpCmpGt,
        LinuxSeccompOperator::ScmpCmpMaskedEq,
    ])
    .into_iter()
    .filter(|op| {
        compiles(|p| {
            p["syscalls"] = json!([{
                "names": ["getcwd"],
                "action": "SCMP_ACT_ERRNO",
                "args": [{ "index": 1, "value": 1, "valueTwo": 1, "op": op }],
            }])
        })
    })
    .collect();
    let archs: Vec<String> = names(&[
        Arch::ScmpArchX86,
        Arch::ScmpArchX86_64,
        Arch::ScmpArchX32,
        Arch::ScmpArchArm,
        Arch::ScmpArchAarch64,
        Arch::ScmpArchMips,
        Arch::ScmpArchMips64,
        Arch::ScmpArchMips64n32,
        Arch::ScmpArchMipsel,
        Arch::ScmpArchMipsel64,
        Arch::ScmpArchMipsel64n32,
        Arch::ScmpArchPpc,
        Arch::ScmpArchPpc64,
        Arch::ScmpArchPpc64le,
        Arch::ScmpArchS390,
        Arch::ScmpArchS390x,
        Arch::ScmpArchParisc,
        Arch::ScmpArchParisc64,
        Arch::ScmpArchRiscv64,
        Arch::ScmpArchLoongarch64,
        Arch::ScmpArchM68k,
        Arch::ScmpArchSh,
        Arch::ScmpArchSheb,
    ])
    .into_iter()
    .filter(|arch| compiles(|p| p["architectures"] = json!([arch])))
    .collect();
    let known_flags = names(&[
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
        LinuxSeccompFilterFlag::SeccompFilterFlagLog,
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
    ]);
    let supported_flags: Vec<String> = known_flags
        .iter()
        .filter(|flag| compiles(|p| p["flags"] = json!([flag])))
        .cloned()
        .collect();
    json!({
        "enabled": true,
        "actions": actions,
        "operators": operators,
        "archs": archs,
        "knownFlags": known_flags,
        "supportedFlags": supported_flags,
    })
}

fn annotations() -> Value {
    let version = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    json!({ "io.github.seccomp.libseccomp.version": version })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::mount_options::MountOptions;

    fn list(document: &Value, pointer: &str) -> Vec<String> {
        let values = document.pointer(pointer).and_then(Value::as_array);
        let values = values.unwrap_or_else(|| panic!("{pointer} is not a list"));
        values
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn the_document_is_an_oci_features_document() {
        let document = features_document();
        let parsed: oci_spec::runtime::Features = serde_json::from_value(document.clone())
            .expect("oci-spec reads the document as Features");
        let linux = parsed.linux().as_ref().unwrap();
        let idmap = linux.mount_extensions().as_ref().unwrap().idmap().as_ref();
        assert_eq!(idmap.unwrap().enabled(), &Some(true));
        let hooks: Vec<String> = HOOKS.iter().map(|h| h.to_string()).collect();
        assert_eq!(parsed.hooks().as_deref(), Some(&hooks[..]));
        assert_eq!(linux.namespaces().as_ref().unwrap().len(), 8);
        assert_eq!(
            linux.capabilities().as_ref().unwrap().len(),
            CAPABILITIES.len()
        );
    }

    #[test]
    fn every_mount_option_the_parser_applies_is_listed_and_nothing_else() {
        let listed = list(&features_document(), "/mountOptions");
        let known: Vec<&str> = known_options().collect();
        assert_eq!(listed, known);
        assert!(
            listed.iter().any(|o| o == "rro"),
            "rro is what CRI looks for"
        );
        for option in &listed {
            let parsed = MountOptions::parse(std::slice::from_ref(option));
            assert!(
                parsed.unsupported.is_empty(),
                "{option} is listed but refused"
            );
            assert!(
                parsed.data.is_empty(),
                "{option} is listed but only passed on"
            );
        }
        for refused in ["tmpcopyup", "rnoatime", "nosymfollow"] {
            assert!(!listed.iter().any(|o| o == refused), "{refused}");
        }
    }

    #[test]
    fn seccomp_lists_what_compile_accepts() {
        let document = features_document();
        let actions = list(&document, "/linux/seccomp/actions");
        assert!(
            !actions.iter().any(|a| a == "SCMP_ACT_NOTIFY"),
            "{actions:?}"
        );
        for action in [
            "SCMP_ACT_KILL",
            "SCMP_ACT_ERRNO",
            "SCMP_ACT_ALLOW",
            "SCMP_ACT_LOG",
        ] {
            assert!(actions.iter().any(|a| a == action), "{action}");
        }
        assert_eq!(list(&document, "/linux/seccomp/operators").len(), 7);
        let archs = list(&document, "/linux/seccomp/archs");
        assert!(archs.iter().any(|a| a == "SCMP_ARCH_X86_64"), "{archs:?}");
        assert!(!list(&document, "/linux/seccomp/supportedFlags").is_empty());
    }

    #[test]
    fn runtime_info_round_trips_with_the_features_any() {
        let mut options = Any::new();
        options.type_url = "sibling.v1.Options".into();
        let bytes = runtime_info_bytes(Some(options.clone())).unwrap();
        let info = RuntimeInfo::parse_from_bytes(&bytes).unwrap();
        assert_eq!(info.name, RUNTIME_NAME);
        assert_eq!(info.options.as_ref(), Some(&options));
        let features = info.features.as_ref().unwrap();
        assert_eq!(features.type_url, FEATURES_TYPE_URL);
        let document: Value = serde_json::from_slice(&features.value).unwrap();
        assert_eq!(document, features_document());
    }
}
