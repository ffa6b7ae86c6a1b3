//! `linux.cgroupsPath` of an OCI spec, turned into a cgroupfs path.
//!
//! Two forms exist, as in runc:
//! - the path form: `/default/abc` (absolute: below the root of each hierarchy as this process
//!   sees it) or `abc/def` (relative: below this process's own cgroup in each hierarchy, which is
//!   the hierarchy root when the shim is not nested);
//! - systemd's `slice:prefix:name` form, used with the systemd cgroup driver (runc's
//!   `SystemdCgroup`, sibling's `systemd_cgroup`): [`SystemdScope`] names the transient scope
//!   `prefix-name.scope` in that slice and the directory systemd gives it,
//!   `/<slice expanded>/<prefix>-<name>.scope`. Without the driver such a path is still
//!   recognised, and that directory is made in cgroupfs, with a warning saying systemd will not
//!   know it.

use std::path::{Path, PathBuf};

use log::warn;
use serde::{Deserialize, Serialize};

use super::CgroupError;

/// runc's default slice for the systemd driver.
const DEFAULT_SLICE: &str = "system.slice";
/// runc uses "runc"; a scope named after this shim tells an administrator who made it.
const DEFAULT_SCOPE_PREFIX: &str = "sibling";
const SLICE_SUFFIX: &str = ".slice";

/// A container's cgroup, relative to each hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CgroupPath {
    /// Starts with `/`: below the mount point of each hierarchy.
    Absolute(PathBuf),
    /// No leading `/`: below this process's own cgroup in each hierarchy (runc's rule).
    Relative(PathBuf),
}

impl CgroupPath {
    /// Parses `linux.cgroupsPath` for container `id`. `systemd_driver` is the runtime option
    /// (runc's `SystemdCgroup`) that says the path is in `slice:prefix:name` form.
    ///
    /// An absent or empty path gives `<id>` relative to this process's cgroup, as runc does
    /// (with the systemd driver: `system.slice:sibling:<id>`).
    pub fn parse(
        cgroups_path: Option<&Path>,
        id: &str,
        systemd_driver: bool,
    ) -> Result<CgroupPath, CgroupError> {
        parse_with(cgroups_path, id, systemd_driver)
    }

    /// The cleaned path (absolute or relative).
    pub fn as_path(&self) -> &Path {
        match self {
            CgroupPath::Absolute(p) | CgroupPath::Relative(p) => p,
        }
    }
}

fn parse_with(
    cgroups_path: Option<&Path>,
    id: &str,
    systemd_driver: bool,
) -> Result<CgroupPath, CgroupError> {
    if systemd_driver {
        return SystemdScope::parse(cgroups_path, id).map(|scope| scope.path);
    }
    let raw = cgroups_path.filter(|p| !p.as_os_str().is_empty());
    let Some(raw) = raw else {
        return clean_path(id);
    };
    let text = raw
        .to_str()
        .ok_or_else(|| invalid(raw, "not valid UTF-8"))?;
    if looks_like_systemd(text) {
        // A `*.slice:prefix:name` path is never meant literally: the runtime was configured
        // without the driver while the kubelet (or whoever made the spec) uses it.
        let path = SystemdUnit::parse(text)?.to_cgroup_path()?;
        warn!(
            "cgroupsPath {text:?} is in systemd form but the systemd cgroup driver is off \
             (SystemdCgroup / systemd_cgroup in the runtime options): creating {} in cgroupfs, \
             systemd will not know this cgroup",
            path.as_path().display()
        );
        return Ok(path);
    }
    clean_path(text)
}

/// A container's transient systemd scope: the unit, its slice, and its cgroup directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemdScope {
    /// `prefix-name.scope`.
    pub unit: String,
    /// The slice the scope goes in (`system.slice` unless the path names one).
    pub slice: String,
    /// The directory systemd makes for it, below the cgroup2 mount.
    pub path: CgroupPath,
}

impl SystemdScope {
    /// The scope for `linux.cgroupsPath` in `slice:prefix:name` form; an absent or empty
    /// path gives `system.slice:sibling:<id>`. A unit name ending in `.slice` (runc makes the
    /// container a slice then) is refused.
    pub fn parse(cgroups_path: Option<&Path>, id: &str) -> Result<SystemdScope, CgroupError> {
        let raw = cgroups_path.filter(|p| !p.as_os_str().is_empty());
        let unit = match raw {
            None => SystemdUnit {
                slice: DEFAULT_SLICE,
                prefix: DEFAULT_SCOPE_PREFIX,
                name: id,
            },
            Some(raw) => SystemdUnit::parse(
                raw.to_str()
                    .ok_or_else(|| invalid(raw, "not valid UTF-8"))?,
            )?,
        };
        if unit.name.ends_with(SLICE_SUFFIX) {
            return Err(invalid(
                unit.name,
                "a container that is a slice is not supported by the systemd cgroup driver: \
                 use slice:prefix:name, which makes a scope",
            ));
        }
        Ok(SystemdScope {
            unit: unit.unit_name(),
            slice: unit.slice.to_owned(),
            path: unit.to_cgroup_path()?,
        })
    }
}

fn invalid(path: impl AsRef<Path>, reason: &'static str) -> CgroupError {
    CgroupError::InvalidPath {
        path: path.as_ref().display().to_string(),
        reason,
    }
}

fn looks_like_systemd(text: &str) -> bool {
    let parts: Vec<&str> = text.split(':').collect();
    let slice = parts.first().copied().unwrap_or_default();
    !text.starts_with('/') && parts.len() == 3 && slice.ends_with(SLICE_SUFFIX)
}

/// Lexically cleans a path form like runc's `CleanPath`: `.` and empty components dropped, `..`
/// never climbs above the start, so a spec cannot escape the hierarchy (or its own cgroup).
/// The root cgroup itself is refused: removing or killing "the container's cgroup" must never
/// mean everything on the host.
fn clean_path(text: &str) -> Result<CgroupPath, CgroupError> {
    let mut parts: Vec<&str> = Vec::new();
    for component in text.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name),
        }
    }
    if parts.is_empty() {
        return Err(invalid(text, "resolves to the root cgroup"));
    }
    let joined = parts.join("/");
    if text.starts_with('/') {
        Ok(CgroupPath::Absolute(PathBuf::from(format!("/{joined}"))))
    } else {
        Ok(CgroupPath::Relative(PathBuf::from(joined)))
    }
}

/// `slice:prefix:name`, as runc's systemd driver reads it.
struct SystemdUnit<'a> {
    slice: &'a str,
    prefix: &'a str,
    name: &'a str,
}

impl<'a> SystemdUnit<'a> {
    fn parse(text: &'a str) -> Result<SystemdUnit<'a>, CgroupError> {
        let parts: Vec<&str> = text.split(':').collect();
        let [slice, prefix, name] = parts[..] else {
            return Err(invalid(
                text,
                "expected slice:prefix:name for the systemd driver",
            ));
        };
        if name.is_empty() {
            return Err(invalid(text, "empty unit name"));
        }
        if [slice, prefix, name].iter().any(|p| p.contains('/')) {
            return Err(invalid(text, "systemd unit names cannot contain '/'"));
        }
        let slice = if slice.is_empty() {
            DEFAULT_SLICE
        } else {
            slice
        };
        Ok(SystemdUnit {
            slice,
            prefix,
            name,
        })
    }

    /// The unit systemd would create: a scope, unless a slice is asked for by name.
    fn unit_name(&self) -> String {
        if self.name.ends_with(SLICE_SUFFIX) {
            self.name.to_string()
        } else if self.prefix.is_empty() {
            format!("{}.scope", self.name)
        } else {
            format!("{}-{}.scope", self.prefix, self.name)
        }
    }

    fn to_cgroup_path(&self) -> Result<CgroupPath, CgroupError> {
        Ok(CgroupPath::Absolute(
            expand_slice(self.slice)?.join(self.unit_name()),
        ))
    }
}

/// runc's `ExpandSlice`: `a-b-c.slice` lives at `/a.slice/a-b.slice/a-b-c.slice`; `-.slice`
/// is the root slice.
fn expand_slice(slice: &str) -> Result<PathBuf, CgroupError> {
    let stem = slice
        .strip_suffix(SLICE_SUFFIX)
        .ok_or_else(|| invalid(slice, "slice name must end in .slice"))?;
    if stem.is_empty() {
        return Err(invalid(slice, "empty slice name"));
    }
    let mut path = PathBuf::from("/");
    if stem == "-" {
        return Ok(path);
    }
    let mut prefix = String::new();
    for component in stem.split('-') {
        if component.is_empty() {
            return Err(invalid(slice, "empty component in slice name"));
        }
        path.push(format!("{prefix}{component}{SLICE_SUFFIX}"));
        prefix.push_str(component);
        prefix.push('-');
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str, systemd_driver: bool) -> Result<CgroupPath, CgroupError> {
        parse_with(Some(Path::new(raw)), "ctr", systemd_driver)
    }

    fn absolute(p: &str) -> CgroupPath {
        CgroupPath::Absolute(PathBuf::from(p))
    }

    #[test]
    fn parse_path_form() {
        assert_eq!(
            parse("/default/abc", false).unwrap(),
            absolute("/default/abc")
        );
        assert_eq!(
            parse("/default//./abc/../x/", false).unwrap(),
            absolute("/default/x")
        );
        assert_eq!(parse("/../../etc", false).unwrap(), absolute("/etc"));
        assert_eq!(
            parse("../../a/b", false).unwrap(),
            CgroupPath::Relative(PathBuf::from("a/b"))
        );
        assert!(matches!(
            parse("/", false),
            Err(CgroupError::InvalidPath { .. })
        ));
        assert!(matches!(
            parse("a/..", false),
            Err(CgroupError::InvalidPath { .. })
        ));
    }

    #[test]
    fn parse_empty_path_defaults_to_id() {
        let relative = CgroupPath::Relative(PathBuf::from("ctr"));
        assert_eq!(parse_with(None, "ctr", false).unwrap(), relative);
        assert_eq!(parse("", false).unwrap(), relative);
        assert_eq!(
            parse_with(None, "ctr", true).unwrap(),
            absolute("/system.slice/sibling-ctr.scope")
        );
    }

    #[test]
    fn parse_systemd_form_without_systemd() {
        assert_eq!(
            parse("system.slice:docker:abc", true).unwrap(),
            absolute("/system.slice/docker-abc.scope")
        );
        assert_eq!(
            parse("kubepods-burstable-pod1.slice:cri-containerd:abc", true).unwrap(),
            absolute(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-abc.scope"
            )
        );
        assert_eq!(
            parse(":docker:abc", true).unwrap(),
            absolute("/system.slice/docker-abc.scope")
        );
        assert_eq!(parse("-.slice::abc", true).unwrap(), absolute("/abc.scope"));
        // A slice as the container is refused with the driver, mapped without it.
        assert!(matches!(
            parse("a.slice:p:a-b.slice", true),
            Err(CgroupError::InvalidPath { .. })
        ));
        assert_eq!(
            parse("a.slice:p:a-b.slice", false).unwrap(),
            absolute("/a.slice/a-b.slice")
        );
        // Recognised without the driver option too.
        assert_eq!(
            parse("user.slice:x:y", false).unwrap(),
            absolute("/user.slice/x-y.scope")
        );
    }

    #[test]
    fn systemd_scopes() {
        let scope = SystemdScope::parse(
            Some(Path::new(
                "kubepods-besteffort-pod1.slice:cri-containerd:abc",
            )),
            "abc",
        )
        .unwrap();
        assert_eq!(scope.unit, "cri-containerd-abc.scope");
        assert_eq!(scope.slice, "kubepods-besteffort-pod1.slice");
        assert_eq!(
            scope.path,
            absolute(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-abc.scope"
            )
        );
        let default = SystemdScope::parse(None, "ctr").unwrap();
        assert_eq!(default.unit, "sibling-ctr.scope");
        assert_eq!(default.slice, "system.slice");
        assert_eq!(default.path, absolute("/system.slice/sibling-ctr.scope"));
        let no_prefix = SystemdScope::parse(Some(Path::new("::x")), "ctr").unwrap();
        assert_eq!(
            (no_prefix.unit.as_str(), no_prefix.slice.as_str()),
            ("x.scope", "system.slice")
        );
    }

    #[test]
    fn parse_rejects_bad_systemd_forms() {
        for bad in [
            "/default/abc",
            "a:b",
            "foo:bar:baz",
            "a--b.slice:p:n",
            "-a.slice:p:n",
            ".slice:p:n",
            "a.slice:p:",
            "a.slice:p:n/m",
        ] {
            assert!(
                matches!(parse(bad, true), Err(CgroupError::InvalidPath { .. })),
                "{bad} accepted"
            );
        }
    }
}
