//! `linux.resources` as systemd unit properties (cgroup v2 names), converted as runc's
//! systemd driver converts them. Whatever systemd has no property for is written through
//! cgroupfs after the unit started (`Cgroup::apply_resources`), with the same values, so both
//! agree.

use oci_spec::runtime::LinuxResources;

use super::marshal::Value;
use crate::cgroups::CgroupError;
use crate::cgroups::cpu_shares_to_weight;
use crate::cgroups::resources::swap_to_v2;

/// systemd's "infinity" for limits and `USEC_INFINITY`.
const INFINITY: u64 = u64::MAX;
/// The CPU quota period the kernel uses when none is given (µs).
const DEFAULT_PERIOD: u64 = 100_000;

fn prop(name: &str, value: Value) -> (String, Value) {
    (name.to_owned(), value)
}

/// The unit properties for `resources`: MemoryMax, MemoryLow, MemorySwapMax, CPUWeight,
/// CPUQuotaPerSecUSec and CPUQuotaPeriodUSec, AllowedCPUs, AllowedMemoryNodes, TasksMax.
pub fn resource_properties(
    resources: &LinuxResources,
) -> Result<Vec<(String, Value)>, CgroupError> {
    let mut props = Vec::new();
    if let Some(memory) = resources.memory() {
        let limit = memory.limit().filter(|l| *l != 0);
        match limit {
            Some(-1) => props.push(prop("MemoryMax", Value::U64(INFINITY))),
            Some(l) if l > 0 => props.push(prop("MemoryMax", Value::U64(l as u64))),
            _ => {}
        }
        if let Some(low) = memory.reservation().filter(|r| *r > 0) {
            props.push(prop("MemoryLow", Value::U64(low as u64)));
        }
        if let Some(swap) = memory.swap().filter(|s| *s != 0) {
            let value = match swap_to_v2(swap, limit)?.as_str() {
                "max" => INFINITY,
                v => v.parse().map_err(|_| CgroupError::Unsupported {
                    what: "linux.resources.memory.swap",
                })?,
            };
            props.push(prop("MemorySwapMax", Value::U64(value)));
        }
    }
    if let Some(cpu) = resources.cpu() {
        if let Some(shares) = cpu.shares().filter(|s| *s != 0) {
            props.push(prop("CPUWeight", Value::U64(cpu_shares_to_weight(shares))));
        }
        let quota = cpu.quota().unwrap_or(0);
        let period = cpu.period().unwrap_or(0);
        if period != 0 {
            props.push(prop("CPUQuotaPeriodUSec", Value::U64(period)));
        }
        if quota != 0 || period != 0 {
            let mut per_sec = INFINITY;
            if quota > 0 {
                let period = if period == 0 { DEFAULT_PERIOD } else { period };
                per_sec = (quota as u64).saturating_mul(1_000_000) / period;
                // systemd rounds to 10 ms steps; round up so the limit is never tighter.
                if !per_sec.is_multiple_of(10_000) {
                    per_sec = (per_sec / 10_000 + 1) * 10_000;
                }
            }
            props.push(prop("CPUQuotaPerSecUSec", Value::U64(per_sec)));
        }
        if let Some(cpus) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
            props.push(prop("AllowedCPUs", Value::Bytes(cpu_list_to_bits(cpus)?)));
        }
        if let Some(mems) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
            props.push(prop(
                "AllowedMemoryNodes",
                Value::Bytes(cpu_list_to_bits(mems)?),
            ));
        }
    }
    if let Some(pids) = resources.pids() {
        match pids.limit() {
            -1 => props.push(prop("TasksMax", Value::U64(INFINITY))),
            l if l > 0 => props.push(prop("TasksMax", Value::U64(l as u64))),
            _ => {}
        }
    }
    Ok(props)
}

/// A cpuset list (`0-2,7`) as systemd's bitmask: byte `n / 8`, bit `n % 8`.
pub fn cpu_list_to_bits(list: &str) -> Result<Vec<u8>, CgroupError> {
    const MOST: u32 = 8192;
    let bad = || CgroupError::Unsupported {
        what: "a cpuset list that is not of the form 0-2,7",
    };
    let mut bytes = Vec::new();
    for part in list.trim().split(',') {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part.trim(), part.trim()),
        };
        let first: u32 = first.parse().map_err(|_| bad())?;
        let last: u32 = last.parse().map_err(|_| bad())?;
        if first > last || last >= MOST {
            return Err(bad());
        }
        for n in first..=last {
            let byte = (n / 8) as usize;
            if bytes.len() <= byte {
                bytes.resize(byte + 1, 0);
            }
            bytes[byte] |= 1 << (n % 8);
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn limits_become_properties_as_runc_converts_them() {
        let props = resource_properties(&resources(
            r#"{"memory": {"limit": 268435456, "reservation": 1048576, "swap": 536870912},
                "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-2,9",
                        "mems": "0"},
                "pids": {"limit": 64}}"#,
        ))
        .unwrap();
        assert_eq!(
            props,
            vec![
                prop("MemoryMax", Value::U64(268_435_456)),
                prop("MemoryLow", Value::U64(1_048_576)),
                prop("MemorySwapMax", Value::U64(268_435_456)),
                prop("CPUWeight", Value::U64(39)),
                prop("CPUQuotaPeriodUSec", Value::U64(100_000)),
                prop("CPUQuotaPerSecUSec", Value::U64(500_000)),
                prop("AllowedCPUs", Value::Bytes(vec![0b0000_0111, 0b0000_0010])),
                prop("AllowedMemoryNodes", Value::Bytes(vec![1])),
                prop("TasksMax", Value::U64(64)),
            ]
        );
    }

    #[test]
    fn unlimited_and_rounded_values() {
        let props = resource_properties(&resources(
            r#"{"memory": {"limit": -1, "swap": -1}, "cpu": {"quota": 12345},
                "pids": {"limit": -1}}"#,
        ))
        .unwrap();
        assert_eq!(
            props,
            vec![
                prop("MemoryMax", Value::U64(u64::MAX)),
                prop("MemorySwapMax", Value::U64(u64::MAX)),
                // 12345 µs per 100 ms = 123450 µs/s, rounded up to 10 ms steps.
                prop("CPUQuotaPerSecUSec", Value::U64(130_000)),
                prop("TasksMax", Value::U64(u64::MAX)),
            ]
        );
        let period_only = resource_properties(&resources(r#"{"cpu": {"period": 50000}}"#)).unwrap();
        assert_eq!(
            period_only,
            vec![
                prop("CPUQuotaPeriodUSec", Value::U64(50_000)),
                prop("CPUQuotaPerSecUSec", Value::U64(u64::MAX)),
            ]
        );
        assert!(resource_properties(&resources("{}")).unwrap().is_empty());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(cpu_list_to_bits("0").unwrap(), [1]);
        assert_eq!(cpu_list_to_bits("8").unwrap(), [0, 1]);
        assert_eq!(cpu_list_to_bits("0-7,16").unwrap(), [0xff, 0, 1]);
        for bad in ["", "a", "3-1", "1-", "99999"] {
            assert!(cpu_list_to_bits(bad).is_err(), "{bad}");
        }
    }
}
