//! How many processes the kernel's OOM killer has killed in a cgroup: `oom_kill` in v1's
//! `memory.oom_control` or cgroup2's `memory.events`. The daemon compares it before each
//! TaskExit, so a TaskOOM always precedes the exit it caused.

use std::path::Path;

use super::Cgroup;
use super::files::read_optional;

impl Cgroup {
    /// The cgroup's OOM kill count (0 where the kernel does not report one).
    pub fn oom_kills(&self) -> u64 {
        if let Some(dir) = self.v1_dir("memory") {
            return read_counter(&dir.join("memory.oom_control"), "oom_kill");
        }
        match self.unified_dir() {
            Some(dir) => read_counter(&dir.join("memory.events"), "oom_kill"),
            None => 0,
        }
    }
}

/// `key N` from a flat keyed file.
fn read_counter(path: &Path, key: &str) -> u64 {
    let Ok(Some(text)) = read_optional(path) else {
        return 0;
    };
    parse_counter(&text, key)
}

fn parse_counter(text: &str, key: &str) -> u64 {
    text.lines()
        .filter_map(|line| line.split_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::parse_counter;

    #[test]
    fn oom_kill_is_read_from_v1_and_v2_files() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_counter(v1, "oom_kill"), 3);
        let v2 = "low 0\nhigh 0\nmax 5\noom 2\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(parse_counter(v2, "oom_kill"), 2);
        assert_eq!(parse_counter("", "oom_kill"), 0);
    }
}
