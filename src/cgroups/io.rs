//! `linux.resources.blockIO`: the blkio controller on v1, io on v2.
//!
//! v1 takes one `major:minor value` line per write in `blkio.throttle.*_device` and
//! `blkio.[bfq.]weight_device`; v2 gathers a device's four throttles in one `io.max` line
//! (`major:minor rbps=… wbps=… riops=… wiops=…`). The weight goes to BFQ's file when the
//! kernel has BFQ, else to the CFQ-era (v1) or `io.weight` (v2) file, converted from the
//! v1 range 10..=1000 to v2's 1..=10000 as runc does.

use std::collections::BTreeMap;
use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxThrottleDevice};

use super::resources::{Target, write_resource};
use super::{Cgroup, CgroupError};

impl Cgroup {
    pub(super) fn apply_block_io(&self, io: &LinuxBlockIo) -> Result<(), CgroupError> {
        let weight = io.weight().filter(|w| *w != 0);
        let devices = io.weight_device().as_deref().unwrap_or_default();
        let throttles = throttles(io);
        if weight.is_none() && devices.is_empty() && throttles.is_empty() {
            return Ok(());
        }
        // On cgroup2 the controller is named io; find_controller falls back to that directory.
        match self.find_controller("blkio")? {
            Target::V1(dir) => {
                if let Some(weight) = weight {
                    write_weight(
                        dir,
                        &["blkio.bfq.weight", "blkio.weight"],
                        &weight.to_string(),
                    )?;
                }
                for device in devices {
                    if let Some(weight) = device.weight() {
                        let line = format!("{}:{} {weight}", device.major(), device.minor());
                        let files = ["blkio.bfq.weight_device", "blkio.weight_device"];
                        write_weight(dir, &files, &line)?;
                    }
                }
                for (file, device) in throttles {
                    let line = format!("{}:{} {}", device.major(), device.minor(), device.rate());
                    write_resource(dir, &format!("blkio.throttle.{file}"), &line)?;
                }
                Ok(())
            }
            Target::V2(dir) => {
                if let Some(weight) = weight {
                    if dir.join("io.bfq.weight").exists() {
                        write_resource(dir, "io.bfq.weight", &weight.to_string())?;
                    } else {
                        let value = format!("default {}", blkio_weight_to_io_weight(weight));
                        write_resource(dir, "io.weight", &value)?;
                    }
                }
                for device in devices {
                    if let Some(weight) = device.weight() {
                        let line = format!("{}:{} {weight}", device.major(), device.minor());
                        write_resource(dir, "io.bfq.weight", &line)?;
                    }
                }
                for line in io_max_lines(&throttles) {
                    write_resource(dir, "io.max", &line)?;
                }
                Ok(())
            }
        }
    }
}

/// The first of `files` that exists gets `value`; none existing is an error naming the first.
fn write_weight(dir: &Path, files: &[&str], value: &str) -> Result<(), CgroupError> {
    let file = files
        .iter()
        .find(|f| dir.join(f).exists())
        .unwrap_or(&files[0]);
    write_resource(dir, file, value)
}

/// Each throttle with the v1 file suffix it goes to.
fn throttles(io: &LinuxBlockIo) -> Vec<(&'static str, &LinuxThrottleDevice)> {
    let lists = [
        ("read_bps_device", io.throttle_read_bps_device()),
        ("write_bps_device", io.throttle_write_bps_device()),
        ("read_iops_device", io.throttle_read_iops_device()),
        ("write_iops_device", io.throttle_write_iops_device()),
    ];
    lists
        .into_iter()
        .flat_map(|(file, list)| list.iter().flatten().map(move |d| (file, d)))
        .collect()
}

/// One `io.max` line per device, its throttles as `rbps=`, `wbps=`, `riops=`, `wiops=`.
fn io_max_lines(throttles: &[(&'static str, &LinuxThrottleDevice)]) -> Vec<String> {
    let mut per_device: BTreeMap<(i64, i64), Vec<String>> = BTreeMap::new();
    for (file, device) in throttles {
        let key = match *file {
            "read_bps_device" => "rbps",
            "write_bps_device" => "wbps",
            "read_iops_device" => "riops",
            _ => "wiops",
        };
        per_device
            .entry((device.major(), device.minor()))
            .or_default()
            .push(format!("{key}={}", device.rate()));
    }
    per_device
        .into_iter()
        .map(|((major, minor), limits)| format!("{major}:{minor} {}", limits.join(" ")))
        .collect()
}

/// runc's conversion of a v1 blkio weight (10..=1000) to a v2 io weight (1..=10000).
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    let weight = u64::from(weight.clamp(10, 1000));
    1 + (weight - 10) * 9999 / 990
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_io(json: serde_json::Value) -> LinuxBlockIo {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn weights_convert_like_runc() {
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000), 10000);
    }

    #[test]
    fn throttles_of_a_device_share_one_io_max_line() {
        let io = block_io(serde_json::json!({
            "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
            "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 100},
                                        {"major": 254, "minor": 0, "rate": 7}],
        }));
        let lines = io_max_lines(&throttles(&io));
        assert_eq!(lines, ["8:0 rbps=1048576 wiops=100", "254:0 wiops=7"]);
    }
}
