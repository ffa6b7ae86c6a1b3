//! Where `start` puts the daemon it spawns, as containerd's Go shim does: in the runtime
//! options' `ShimCgroup`, and with containerd's `oom_score_adj` + 1, so under memory pressure
//! the kernel picks a shim before containerd. Runs in `start`, on itself, before it spawns the
//! daemon: the daemon and its spawner inherit both from birth.

use std::path::{Component, Path, PathBuf};

use crate::cgroups::{Cgroup, CgroupPath, Hierarchies};

/// Moves the calling process into `cgroup` (a path below each hierarchy's root) in every
/// hierarchy where it exists; an error if it exists in none, or a move fails.
pub fn enter(cgroup: &str) -> Result<(), String> {
    let relative = clean(cgroup)?;
    let hierarchies =
        Hierarchies::detect().map_err(|e| format!("shim cgroup {cgroup}: detect cgroups: {e}"))?;
    let path = CgroupPath::Absolute(PathBuf::from("/").join(&relative));
    let resolved = Cgroup::resolve(&hierarchies, &path);
    let mut joined = 0;
    for dir in resolved.dirs() {
        if !dir.path().is_dir() {
            continue;
        }
        let procs = dir.path().join("cgroup.procs");
        std::fs::write(&procs, "0")
            .map_err(|e| format!("shim cgroup {cgroup}: join {}: {e}", procs.display()))?;
        joined += 1;
    }
    if joined == 0 {
        return Err(format!(
            "shim cgroup {cgroup} (runtime option ShimCgroup/shim_cgroup) does not exist"
        ));
    }
    Ok(())
}

/// A cgroup path without `..`: the option names a cgroup, not a way out of the hierarchy.
fn clean(cgroup: &str) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for component in Path::new(cgroup).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(format!("shim cgroup {cgroup:?}: \"..\" is not allowed"));
            }
        }
    }
    Ok(out)
}

/// Sets this process's `oom_score_adj` to its parent's (containerd's) + 1, at most 1000.
pub fn adjust_oom_score() -> Result<(), String> {
    let parent = nix::unistd::getppid();
    let read = |path: &str| -> Result<i32, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("read {path}: {e}"))?;
        text.trim()
            .parse()
            .map_err(|_| format!("read {path}: not a number: {text:?}"))
    };
    let containerd = read(&format!("/proc/{parent}/oom_score_adj"))?;
    let score = (containerd + 1).min(1000);
    let own = read("/proc/self/oom_score_adj")?;
    if own == score {
        return Ok(());
    }
    match std::fs::write("/proc/self/oom_score_adj", score.to_string()) {
        Ok(()) => Ok(()),
        // Lowering a score needs CAP_SYS_RESOURCE; without it the shim keeps the score it
        // inherited (the Go shim ignores this error too).
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && score < own => Ok(()),
        Err(e) => Err(format!("set the shim's oom_score_adj to {score}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shim_cgroup_paths_stay_inside_the_hierarchy() {
        assert_eq!(clean("/a/b/").unwrap(), PathBuf::from("a/b"));
        assert_eq!(clean("a/./b").unwrap(), PathBuf::from("a/b"));
        assert!(clean("/a/../../etc").is_err());
    }
}
