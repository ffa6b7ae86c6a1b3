//! `process.capabilities`: the five sets as bit masks, checked against what this process can
//! give, then applied in runc's order around the credential change (see `init`).
//!
//! CVE-2022-29162: the inheritable and ambient sets get exactly what the spec lists (nothing when
//! it lists nothing), never a copy of the bounding or permitted set.

use std::collections::BTreeSet;

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use super::error::InitError;
use super::sys::{
    CapSets, ambient_clear_all, ambient_raise, capbset_drop, capbset_read, capget, capset,
};

/// Every capability up to CAP_CHECKPOINT_RESTORE, indexed by its number.
pub const CAPABILITIES: [(&str, Capability); 41] = [
    ("CAP_CHOWN", Capability::Chown),
    ("CAP_DAC_OVERRIDE", Capability::DacOverride),
    ("CAP_DAC_READ_SEARCH", Capability::DacReadSearch),
    ("CAP_FOWNER", Capability::Fowner),
    ("CAP_FSETID", Capability::Fsetid),
    ("CAP_KILL", Capability::Kill),
    ("CAP_SETGID", Capability::Setgid),
    ("CAP_SETUID", Capability::Setuid),
    ("CAP_SETPCAP", Capability::Setpcap),
    ("CAP_LINUX_IMMUTABLE", Capability::LinuxImmutable),
    ("CAP_NET_BIND_SERVICE", Capability::NetBindService),
    ("CAP_NET_BROADCAST", Capability::NetBroadcast),
    ("CAP_NET_ADMIN", Capability::NetAdmin),
    ("CAP_NET_RAW", Capability::NetRaw),
    ("CAP_IPC_LOCK", Capability::IpcLock),
    ("CAP_IPC_OWNER", Capability::IpcOwner),
    ("CAP_SYS_MODULE", Capability::SysModule),
    ("CAP_SYS_RAWIO", Capability::SysRawio),
    ("CAP_SYS_CHROOT", Capability::SysChroot),
    ("CAP_SYS_PTRACE", Capability::SysPtrace),
    ("CAP_SYS_PACCT", Capability::SysPacct),
    ("CAP_SYS_ADMIN", Capability::SysAdmin),
    ("CAP_SYS_BOOT", Capability::SysBoot),
    ("CAP_SYS_NICE", Capability::SysNice),
    ("CAP_SYS_RESOURCE", Capability::SysResource),
    ("CAP_SYS_TIME", Capability::SysTime),
    ("CAP_SYS_TTY_CONFIG", Capability::SysTtyConfig),
    ("CAP_MKNOD", Capability::Mknod),
    ("CAP_LEASE", Capability::Lease),
    ("CAP_AUDIT_WRITE", Capability::AuditWrite),
    ("CAP_AUDIT_CONTROL", Capability::AuditControl),
    ("CAP_SETFCAP", Capability::Setfcap),
    ("CAP_MAC_OVERRIDE", Capability::MacOverride),
    ("CAP_MAC_ADMIN", Capability::MacAdmin),
    ("CAP_SYSLOG", Capability::Syslog),
    ("CAP_WAKE_ALARM", Capability::WakeAlarm),
    ("CAP_BLOCK_SUSPEND", Capability::BlockSuspend),
    ("CAP_AUDIT_READ", Capability::AuditRead),
    ("CAP_PERFMON", Capability::Perfmon),
    ("CAP_BPF", Capability::Bpf),
    ("CAP_CHECKPOINT_RESTORE", Capability::CheckpointRestore),
];

/// The kernel's number for a capability.
pub fn capability_number(cap: Capability) -> u32 {
    // Every variant of oci-spec's enum is in the table (a unit test checks it), so the
    // fallback is never taken; u32::MAX would be above any cap_last_cap and skipped.
    CAPABILITIES
        .iter()
        .position(|(_, c)| *c == cap)
        .map_or(u32::MAX, |n| n as u32)
}

/// `CAP_SYS_ADMIN` for 21; `None` above the table.
pub fn capability_name(number: u32) -> Option<&'static str> {
    CAPABILITIES.get(number as usize).map(|(name, _)| *name)
}

fn name_of(number: u32) -> &'static str {
    capability_name(number).unwrap_or("CAP_UNKNOWN")
}

/// The five sets of the spec as masks (bit n = capability n).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapabilityPlan {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

impl CapabilityPlan {
    fn sets(&self) -> [(&'static str, u64); 5] {
        [
            ("bounding", self.bounding),
            ("effective", self.effective),
            ("permitted", self.permitted),
            ("inheritable", self.inheritable),
            ("ambient", self.ambient),
        ]
    }
}

/// Builds the masks; capabilities above `last_cap` (unknown to this kernel) are left out with
/// a warning, as runc does, so one spec works on older kernels.
pub fn plan_capabilities(caps: &LinuxCapabilities, last_cap: u32) -> (CapabilityPlan, Vec<String>) {
    let mut skipped = BTreeSet::new();
    let mut mask = |set: &Option<Capabilities>| {
        let mut bits = 0u64;
        for number in set.iter().flatten().map(|c| capability_number(*c)) {
            if number <= last_cap && number < 64 {
                bits |= 1 << number;
            } else {
                skipped.insert(number);
            }
        }
        bits
    };
    let mut plan = CapabilityPlan {
        bounding: mask(caps.bounding()),
        effective: mask(caps.effective()),
        permitted: mask(caps.permitted()),
        inheritable: mask(caps.inheritable()),
        ambient: mask(caps.ambient()),
    };
    let mut warnings: Vec<String> = skipped
        .into_iter()
        .map(|n| {
            let name = name_of(n);
            format!("capability {name} is unknown to this kernel (last is {last_cap}): skipped")
        })
        .collect();
    // The kernel raises an ambient capability only if it is permitted and inheritable. Specs
    // commonly list ambient without inheritable (`runc spec` does since CVE-2022-29162): as in
    // runc, such entries are skipped with a warning rather than failing the container.
    let raisable = plan.ambient & plan.permitted & plan.inheritable;
    for n in bits(plan.ambient & !raisable) {
        let name = name_of(n);
        warnings.push(format!(
            "ambient capability {name} skipped: it is not both permitted and inheritable"
        ));
    }
    plan.ambient = raisable;
    (plan, warnings)
}

/// The capability numbers set in `mask`, lowest first.
fn bits(mask: u64) -> impl Iterator<Item = u32> {
    (0..64u32).filter(move |n| mask & (1 << n) != 0)
}

/// What this process can give: its permitted set and its bounding set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Available {
    pub permitted: u64,
    pub bounding: u64,
}

/// Checks, before anything changes, that the spec asks for nothing this process lacks and that
/// the sets are consistent (what capset and the ambient prctl would refuse, named clearly).
pub fn check_capabilities(plan: &CapabilityPlan, available: Available) -> Result<(), InitError> {
    for (set, bits) in plan.sets() {
        if let Some(n) = first_missing(bits, available.bounding) {
            return Err(unavailable(
                n,
                set,
                "this runtime's bounding set does not have it",
            ));
        }
        if let Some(n) = first_missing(bits, available.permitted) {
            return Err(unavailable(
                n,
                set,
                "this runtime's permitted set does not have it",
            ));
        }
    }
    if let Some(n) = first_missing(plan.effective, plan.permitted) {
        return Err(unavailable(
            n,
            "effective",
            "it is not in the spec's permitted set",
        ));
    }
    if let Some(n) = first_missing(plan.inheritable, plan.bounding) {
        return Err(unavailable(
            n,
            "inheritable",
            "it is not in the spec's bounding set",
        ));
    }
    Ok(())
}

fn first_missing(wanted: u64, have: u64) -> Option<u32> {
    let missing = wanted & !have;
    (missing != 0).then(|| missing.trailing_zeros())
}

fn unavailable(number: u32, set: &'static str, reason: &'static str) -> InitError {
    InitError::CapabilityUnavailable {
        cap: name_of(number),
        set,
        reason,
    }
}

/// The highest capability this kernel knows, probed with PR_CAPBSET_READ (EINVAL above it);
/// the same value as /proc/sys/kernel/cap_last_cap without needing a procfs.
pub fn last_cap() -> u32 {
    (0..64u32)
        .take_while(|&n| capbset_read(n).is_ok())
        .last()
        .unwrap_or(0)
}

/// This process's permitted and bounding sets.
pub fn read_available(last_cap: u32) -> Result<Available, InitError> {
    let sets = capget().map_err(|errno| capability_error("capget".into(), errno))?;
    let mut bounding = 0u64;
    for n in 0..=last_cap.min(63) {
        let present = capbset_read(n).map_err(|errno| {
            capability_error(format!("read {} in the bounding set", name_of(n)), errno)
        })?;
        if present {
            bounding |= 1 << n;
        }
    }
    Ok(Available {
        permitted: sets.permitted,
        bounding,
    })
}

/// Drops from the bounding set every capability the spec's bounding set does not list. Needs
/// CAP_SETPCAP in the effective set: so before the credentials change clears it.
pub fn drop_bounding(plan: &CapabilityPlan, last_cap: u32) -> Result<(), InitError> {
    for n in 0..=last_cap.min(63) {
        if plan.bounding & (1 << n) != 0 {
            continue;
        }
        let step = || format!("drop {} from the bounding set", name_of(n));
        if capbset_read(n).map_err(|errno| capability_error(step(), errno))? {
            capbset_drop(n).map_err(|errno| capability_error(step(), errno))?;
        }
    }
    Ok(())
}

/// Sets effective, permitted and inheritable (capset v3), then the ambient set: cleared, and
/// only the listed capabilities raised. After the credentials change, which with KEEPCAPS
/// kept the permitted set but cleared the effective one.
pub fn apply_capabilities(plan: &CapabilityPlan) -> Result<(), InitError> {
    let sets = CapSets {
        effective: plan.effective,
        permitted: plan.permitted,
        inheritable: plan.inheritable,
    };
    capset(&sets).map_err(|errno| {
        let step = format!(
            "capset (effective {:#x}, permitted {:#x}, inheritable {:#x})",
            plan.effective, plan.permitted, plan.inheritable
        );
        capability_error(step, errno)
    })?;
    ambient_clear_all().map_err(|errno| capability_error("clear the ambient set".into(), errno))?;
    for n in bits(plan.ambient) {
        ambient_raise(n).map_err(|errno| {
            capability_error(format!("raise {} in the ambient set", name_of(n)), errno)
        })?;
    }
    Ok(())
}

fn capability_error(step: String, errno: nix::errno::Errno) -> InitError {
    InitError::Capability { step, errno }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_the_kernel() {
        assert_eq!(capability_number(Capability::Chown), 0);
        assert_eq!(capability_number(Capability::Setpcap), 8);
        assert_eq!(capability_number(Capability::NetRaw), 13);
        assert_eq!(capability_number(Capability::SysAdmin), 21);
        assert_eq!(capability_number(Capability::SysResource), 24);
        assert_eq!(capability_number(Capability::AuditWrite), 29);
        assert_eq!(capability_number(Capability::Setfcap), 31);
        assert_eq!(capability_number(Capability::AuditRead), 37);
        assert_eq!(capability_number(Capability::CheckpointRestore), 40);
    }

    #[test]
    fn every_oci_capability_is_in_the_table_once_with_its_own_name() {
        for (number, (name, cap)) in CAPABILITIES.iter().enumerate() {
            assert_eq!(capability_number(*cap) as usize, number);
            assert_eq!(capability_name(number as u32), Some(*name));
            // oci-spec's own spelling ("SYS_ADMIN") must agree with ours ("CAP_SYS_ADMIN").
            assert_eq!(format!("CAP_{cap}"), *name);
            let parsed: Capability = serde_json::from_str(&format!("\"{name}\"")).unwrap();
            assert_eq!(parsed, *cap);
        }
        assert_eq!(capability_name(41), None);
        let names: BTreeSet<_> = CAPABILITIES.iter().map(|(name, _)| *name).collect();
        assert_eq!(names.len(), CAPABILITIES.len(), "names are unique");
    }

    fn caps(json: serde_json::Value) -> LinuxCapabilities {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn sets_become_masks_and_unknown_caps_are_skipped_with_a_warning() {
        let spec = caps(serde_json::json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_CHECKPOINT_RESTORE"],
            "effective": ["CAP_CHOWN", "CAP_CHECKPOINT_RESTORE"],
            "permitted": ["CAP_CHOWN"]
        }));
        let (plan, warnings) = plan_capabilities(&spec, 39);
        assert_eq!(plan.bounding, 1 | 1 << 5);
        assert_eq!(plan.effective, 1);
        assert_eq!(
            plan.inheritable, 0,
            "inheritable stays empty when not listed"
        );
        assert_eq!(plan.ambient, 0);
        assert_eq!(
            warnings,
            ["capability CAP_CHECKPOINT_RESTORE is unknown to this kernel (last is 39): skipped"]
        );
        let (all, none) = plan_capabilities(&spec, 40);
        assert_eq!(all.bounding, 1 | 1 << 5 | 1 << 40);
        assert!(none.is_empty());
    }

    #[test]
    fn ambient_needs_permitted_and_inheritable_or_is_skipped_with_a_warning() {
        let spec = caps(serde_json::json!({
            "bounding": ["CAP_KILL", "CAP_CHOWN"],
            "permitted": ["CAP_KILL", "CAP_CHOWN"],
            "inheritable": ["CAP_CHOWN"],
            "ambient": ["CAP_KILL", "CAP_CHOWN"]
        }));
        let (plan, warnings) = plan_capabilities(&spec, 40);
        assert_eq!(plan.ambient, 1, "only CAP_CHOWN is raisable");
        assert_eq!(
            warnings,
            ["ambient capability CAP_KILL skipped: it is not both permitted and inheritable"]
        );
    }

    #[test]
    fn a_capability_the_runtime_lacks_is_named() {
        let spec = caps(serde_json::json!({
            "bounding": ["CAP_CHOWN", "CAP_SYS_RESOURCE"],
            "permitted": ["CAP_CHOWN", "CAP_SYS_RESOURCE"],
            "effective": ["CAP_CHOWN", "CAP_SYS_RESOURCE"]
        }));
        let (plan, _) = plan_capabilities(&spec, 40);
        let all = (1u64 << 41) - 1;
        let without_resource = Available {
            permitted: all & !(1 << 24),
            bounding: all & !(1 << 24),
        };
        let err = check_capabilities(&plan, without_resource).unwrap_err();
        assert_eq!(
            err.to_string(),
            "capability CAP_SYS_RESOURCE requested in the bounding set: \
             this runtime's bounding set does not have it"
        );
        let full = Available {
            permitted: all,
            bounding: all,
        };
        assert!(check_capabilities(&plan, full).is_ok());
    }

    #[test]
    fn inconsistent_sets_are_named() {
        let all = Available {
            permitted: u64::MAX,
            bounding: u64::MAX,
        };
        let effective_only = CapabilityPlan {
            bounding: 1,
            effective: 1,
            ..Default::default()
        };
        let err = check_capabilities(&effective_only, all).unwrap_err();
        assert!(
            err.to_string()
                .contains("CAP_CHOWN requested in the effective set"),
            "{err}"
        );
        let inheritable = CapabilityPlan {
            inheritable: 1 << 21,
            ..Default::default()
        };
        assert!(check_capabilities(&inheritable, all).is_err());
    }

    #[test]
    fn last_cap_agrees_with_procfs() {
        let text = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").unwrap();
        assert_eq!(last_cap(), text.trim().parse::<u32>().unwrap());
    }
}
