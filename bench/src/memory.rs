//! What a runtime keeps running per container, read from `/proc/<pid>/smaps_rollup`.
//!
//! The processes counted are one runtime's shims that this benchmark's containerd started: every
//! process whose argv has `-address <our socket>` and whose argv[0] is that runtime's shim binary
//! (for sibling: the shim daemons and their spawners, which share the daemon's argv, including
//! a shared daemon still waiting out its idle time from an earlier scenario; for runc.v2: the Go
//! shims). Container processes themselves are the same busybox `sleep` under both runtimes and
//! are not counted.

use std::fs;

/// Resident and proportional set sizes, in KiB, summed over processes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub processes: usize,
    pub rss_kib: u64,
    pub pss_kib: u64,
}

/// Sums the memory of every shim of `runtime` (e.g. `io.containerd.sibling.v2`) started by the
/// containerd at `socket`.
pub fn shims_of(socket: &str, runtime: &str) -> Usage {
    let binary = shim_binary(runtime);
    let mut usage = Usage::default();
    let Ok(entries) = fs::read_dir("/proc") else {
        return usage;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if !is_shim_of(pid, socket, &binary) {
            continue;
        }
        // A shim may exit between the two reads: it then simply does not count.
        if let Ok(rollup) = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
            usage.processes += 1;
            usage.rss_kib += field_kib(&rollup, "Rss:");
            usage.pss_kib += field_kib(&rollup, "Pss:");
        }
    }
    usage
}

fn is_shim_of(pid: &str, socket: &str, binary: &str) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let name = args
        .first()
        .map(|a| a.rsplit(|b| *b == b'/').next().unwrap_or(a));
    name == Some(binary.as_bytes())
        && args
            .windows(2)
            .any(|pair| pair[0] == b"-address" && pair[1] == socket.as_bytes())
}

/// containerd's name for a runtime's shim: `io.containerd.runc.v2` → `containerd-shim-runc-v2`.
fn shim_binary(runtime: &str) -> String {
    let parts: Vec<&str> = runtime.split('.').collect();
    match parts.as_slice() {
        [.., name, version] => format!("containerd-shim-{name}-{version}"),
        _ => runtime.to_owned(),
    }
}

fn field_kib(rollup: &str, name: &str) -> u64 {
    rollup
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rollup_fields() {
        let rollup =
            "00400000-7fff [rollup]\nRss:                3000 kB\nPss:                 812 kB\n";
        assert_eq!(field_kib(rollup, "Rss:"), 3000);
        assert_eq!(field_kib(rollup, "Pss:"), 812);
        assert_eq!(field_kib(rollup, "Swap:"), 0);
    }

    #[test]
    fn shim_binary_follows_containerd() {
        assert_eq!(
            shim_binary("io.containerd.runc.v2"),
            "containerd-shim-runc-v2"
        );
        assert_eq!(
            shim_binary("io.containerd.sibling.v2"),
            "containerd-shim-sibling-v2"
        );
    }
}
