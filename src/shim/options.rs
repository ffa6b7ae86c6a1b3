//! Runtime options, in the forms containerd sends: runc's `containerd.runc.v1.Options` (ctr and a
//! runc-style runtime config), the older `containerd.linux.runc.CreateOptions` (ctr with
//! --uidmap), CRI's `runtimeoptions.v1.Options` (a runtime class with a non-runc runtime_type;
//! its `config_path` names a TOML file with this shim's fields) and this shim's own
//! `sibling.v1.Options`. Anything else is refused with a clear error.
//!
//! containerd hands a runtime's options to the shim twice: marshalled as an `Any` on `start`'s
//! stdin ([`read_shim_options`]: how the daemon is run, and whether it is shared) and in
//! `CreateTaskRequest.options` ([`parse_options`]: what applies to one container).

use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::shim::oci::Options as RuncOptions;
use log::LevelFilter;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use super::error::TaskError;
use crate::protos::api::Options as CriOptions;
use crate::protos::options::Options as SiblingOptions;
use crate::protos::runc::CreateOptions;

/// What this shim takes from a Create's options.
#[derive(Debug, Default, PartialEq)]
pub struct RuntimeOptions {
    /// The log level of this container's lines (the daemon's others keep theirs).
    pub log_level: Option<LevelFilter>,
    /// The owner (uid, gid) to give the process's stdio pipes.
    pub io_owner: Option<(u32, u32)>,
    /// The CRIU binary for checkpoint and restore (runc's `CriuPath`); `None`: `criu` in PATH.
    pub criu_path: Option<std::path::PathBuf>,
    /// The systemd cgroup driver (runc's `SystemdCgroup`, sibling's `systemd_cgroup`).
    pub systemd_cgroup: bool,
}

/// Field 8 of runc's `containerd.runc.v1.Options`, `criu_path`: containerd 1.6 and 1.7 send it,
/// the proto this crate is built from (containerd 2's) no longer names it, so it arrives as an
/// unknown field.
const RUNC_CRIU_PATH_FIELD: u32 = 8;

fn runc_criu_path(options: &RuncOptions) -> Option<std::path::PathBuf> {
    use containerd_shim_protos::protobuf::UnknownValueRef;
    match options
        .special_fields
        .unknown_fields()
        .get(RUNC_CRIU_PATH_FIELD)
    {
        Some(UnknownValueRef::LengthDelimited(bytes)) if !bytes.is_empty() => Some(
            std::path::PathBuf::from(String::from_utf8_lossy(bytes).into_owned()),
        ),
        _ => None,
    }
}

/// Decodes `options`; no options (or an empty Any) are the defaults.
pub fn parse_options(options: Option<&Any>) -> Result<RuntimeOptions, TaskError> {
    let Some(any) = options.filter(|a| !a.type_url.is_empty()) else {
        return Ok(RuntimeOptions::default());
    };
    // containerd's typeurl names messages by their full name, sometimes behind a host prefix.
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    let invalid = |e: containerd_shim_protos::protobuf::Error| {
        TaskError::invalid(format!("runtime options {name}: {e}"))
    };
    match name {
        "sibling.v1.Options" => {
            let options = SiblingOptions::parse_from_bytes(&any.value).map_err(invalid)?;
            Ok(RuntimeOptions {
                log_level: parse_level(&options.log_level)?,
                criu_path: (!options.criu_path.is_empty())
                    .then(|| std::path::PathBuf::from(&options.criu_path)),
                systemd_cgroup: options.systemd_cgroup,
                ..RuntimeOptions::default()
            })
        }
        "containerd.runc.v1.Options" => {
            // runc's knobs that name runc itself (binary name, root) do not apply to this
            // runtime: they are read (to reject garbage) and ignored. `SystemdCgroup` chooses
            // the cgroup driver, `CriuPath` the CRIU binary for checkpoint and restore.
            let options = RuncOptions::parse_from_bytes(&any.value).map_err(invalid)?;
            Ok(RuntimeOptions {
                criu_path: runc_criu_path(&options),
                systemd_cgroup: options.systemd_cgroup,
                ..RuntimeOptions::default()
            })
        }
        "containerd.linux.runc.CreateOptions" => {
            let options = CreateOptions::parse_from_bytes(&any.value).map_err(invalid)?;
            let owned = options.io_uid != 0 || options.io_gid != 0;
            Ok(RuntimeOptions {
                io_owner: owned.then_some((options.io_uid, options.io_gid)),
                ..RuntimeOptions::default()
            })
        }
        "runtimeoptions.v1.Options" => {
            let options = CriOptions::parse_from_bytes(&any.value).map_err(invalid)?;
            let file = read_config_file(&options).map_err(TaskError::invalid)?;
            Ok(RuntimeOptions {
                log_level: parse_level(&file.log_level)?,
                criu_path: (!file.criu_path.is_empty())
                    .then(|| std::path::PathBuf::from(&file.criu_path)),
                systemd_cgroup: file.systemd_cgroup,
                ..RuntimeOptions::default()
            })
        }
        other => Err(TaskError::invalid(format!(
            "unknown runtime options type {other:?}: expected sibling.v1.Options, \
             containerd.runc.v1.Options, containerd.linux.runc.CreateOptions or \
             runtimeoptions.v1.Options"
        ))),
    }
}

fn parse_level(level: &str) -> Result<Option<LevelFilter>, TaskError> {
    level_filter(level).map_err(TaskError::invalid)
}

fn level_filter(level: &str) -> Result<Option<LevelFilter>, String> {
    let filter = match level {
        "" => return Ok(None),
        "error" => LevelFilter::Error,
        "warn" | "warning" => LevelFilter::Warn,
        "info" => LevelFilter::Info,
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        other => {
            return Err(format!(
                "runtime options: unknown log_level {other:?} (error, warn, info, debug, trace)"
            ));
        }
    };
    Ok(Some(filter))
}

/// The shim's own settings, from the options containerd writes to `start`'s stdin.
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash)]
pub struct ShimOptions {
    /// Containers outside pods one daemon serves; 0 and 1 mean a daemon per container.
    pub containers_per_shim: u32,
    /// With sharing: seconds an idle daemon waits for a next container.
    pub idle_seconds: Option<u32>,
    /// The cgroup the daemon runs in (runc's `ShimCgroup`).
    pub shim_cgroup: Option<String>,
    /// The daemon's log level (its lines that are about no container in particular).
    pub log_level: Option<String>,
}

/// How long an idle shared daemon waits for a next container unless told otherwise.
pub const DEFAULT_IDLE_SECONDS: u32 = 10;

impl ShimOptions {
    /// Whether containers outside pods share daemons (an option a user turns on).
    pub fn sharing(&self) -> bool {
        self.containers_per_shim > 1
    }

    pub fn idle(&self) -> Duration {
        Duration::from_secs(self.idle_seconds.unwrap_or(DEFAULT_IDLE_SECONDS).into())
    }

    pub fn level(&self) -> Option<LevelFilter> {
        self.log_level
            .as_deref()
            .and_then(|l| level_filter(l).ok().flatten())
    }
}

/// How long `start` waits for containerd to finish writing the options to its stdin.
pub const STDIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the options containerd wrote to `start`'s stdin (a marshalled `Any`; nothing when the
/// runtime has none). A terminal or a closed stdin (`start` run by hand) holds no options;
/// the wait for the end of the input is bounded.
pub fn read_shim_options() -> Result<ShimOptions, String> {
    let stdin = std::io::stdin();
    let fd = stdin.as_fd();
    if nix::unistd::isatty(fd).unwrap_or(true) {
        return Ok(ShimOptions::default());
    }
    let bytes = read_until_eof(fd, STDIN_TIMEOUT)?;
    parse_shim_options(&bytes)
}

pub fn read_until_eof(
    fd: std::os::fd::BorrowedFd<'_>,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let deadline = Instant::now() + timeout;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, wait) {
            Ok(0) => {
                return Err(format!(
                    "runtime options: stdin did not end within {timeout:?}"
                ));
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("runtime options: poll stdin: {e}")),
        }
        match nix::unistd::read(fd, &mut chunk) {
            Ok(0) => return Ok(bytes),
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
            // A closed stdin: no options.
            Err(nix::errno::Errno::EBADF) => return Ok(bytes),
            Err(e) => return Err(format!("runtime options: read stdin: {e}")),
        }
        if bytes.len() > 1 << 20 {
            return Err("runtime options: more than 1 MiB on stdin".into());
        }
    }
}

/// Decodes the marshalled `Any` of `start`'s stdin.
pub fn parse_shim_options(bytes: &[u8]) -> Result<ShimOptions, String> {
    if bytes.is_empty() {
        return Ok(ShimOptions::default());
    }
    let any = Any::parse_from_bytes(bytes).map_err(|e| format!("runtime options: {e}"))?;
    if any.type_url.is_empty() {
        return Ok(ShimOptions::default());
    }
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    let invalid =
        |e: containerd_shim_protos::protobuf::Error| format!("runtime options {name}: {e}");
    let non_empty = |s: String| (!s.is_empty()).then_some(s);
    match name {
        "sibling.v1.Options" => {
            let options = SiblingOptions::parse_from_bytes(&any.value).map_err(invalid)?;
            level_filter(&options.log_level)?;
            Ok(ShimOptions {
                containers_per_shim: options.containers_per_shim,
                idle_seconds: (options.idle_seconds != 0).then_some(options.idle_seconds),
                shim_cgroup: non_empty(options.shim_cgroup),
                log_level: non_empty(options.log_level),
            })
        }
        "containerd.runc.v1.Options" => {
            let options = RuncOptions::parse_from_bytes(&any.value).map_err(invalid)?;
            Ok(ShimOptions {
                shim_cgroup: non_empty(options.shim_cgroup),
                ..ShimOptions::default()
            })
        }
        "containerd.linux.runc.CreateOptions" => {
            let options = CreateOptions::parse_from_bytes(&any.value).map_err(invalid)?;
            Ok(ShimOptions {
                shim_cgroup: non_empty(options.shim_cgroup),
                ..ShimOptions::default()
            })
        }
        "runtimeoptions.v1.Options" => {
            let options = CriOptions::parse_from_bytes(&any.value).map_err(invalid)?;
            let file = read_config_file(&options)?;
            level_filter(&file.log_level)?;
            Ok(ShimOptions {
                containers_per_shim: file.containers_per_shim,
                idle_seconds: (file.idle_seconds != 0).then_some(file.idle_seconds),
                shim_cgroup: non_empty(file.shim_cgroup),
                log_level: non_empty(file.log_level),
            })
        }
        other => Err(format!(
            "unknown runtime options type {other:?}: expected sibling.v1.Options, \
             containerd.runc.v1.Options, containerd.linux.runc.CreateOptions or \
             runtimeoptions.v1.Options"
        )),
    }
}

/// The TOML file CRI's `runtimeoptions.v1.Options` names (its `type_url`, when set, must be
/// this shim's options). No file: the defaults.
fn read_config_file(options: &CriOptions) -> Result<SiblingOptions, String> {
    let type_url = options.type_url.rsplit('/').next().unwrap_or_default();
    if !type_url.is_empty() && type_url != "sibling.v1.Options" {
        return Err(format!(
            "runtime options: config file type {:?} is not sibling.v1.Options",
            options.type_url
        ));
    }
    if options.config_path.is_empty() {
        return Ok(SiblingOptions::default());
    }
    let path = Path::new(&options.config_path);
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("runtime options: read {}: {e}", path.display()))?;
    parse_config_toml(&text).map_err(|e| format!("runtime options {}: {e}", path.display()))
}

/// The flat TOML subset the config file holds: `key = value` lines (integers, quoted strings,
/// `true`/`false`), comments and blank lines. An unknown key or anything else is an error naming it.
fn parse_config_toml(text: &str) -> Result<SiblingOptions, String> {
    let mut options = SiblingOptions::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("line {}", n + 1);
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("{}: expected key = value, found {line:?}", at()))?;
        let (key, value) = (key.trim(), strip_comment(value.trim()));
        let string = || {
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .filter(|v| !v.contains('"') && !v.contains('\\'))
                .map(str::to_owned)
                .ok_or_else(|| format!("{}: {key} wants a quoted string, found {value}", at()))
        };
        let number = || {
            value
                .parse::<u32>()
                .map_err(|_| format!("{}: {key} wants a whole number, found {value}", at()))
        };
        let boolean = || match value {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!(
                "{}: {key} wants true or false, found {value}",
                at()
            )),
        };
        match key {
            "log_level" => options.log_level = string()?,
            "systemd_cgroup" | "SystemdCgroup" => options.systemd_cgroup = boolean()?,
            "containers_per_shim" => options.containers_per_shim = number()?,
            "idle_seconds" => options.idle_seconds = number()?,
            "shim_cgroup" => options.shim_cgroup = string()?,
            "criu_path" => options.criu_path = string()?,
            other => {
                return Err(format!(
                    "{}: unknown key {other:?} (known: log_level, containers_per_shim, \
                     idle_seconds, shim_cgroup, criu_path, systemd_cgroup)",
                    at()
                ));
            }
        }
    }
    Ok(options)
}

/// A value without its trailing `# comment` (outside a string).
fn strip_comment(value: &str) -> &str {
    if let Some(inner) = value.strip_prefix('"') {
        if let Some(end) = inner.find('"') {
            let (string, rest) = value.split_at(end + 2);
            if rest.trim().is_empty() || rest.trim().starts_with('#') {
                return string;
            }
        }
        return value;
    }
    value.split('#').next().unwrap_or_default().trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(type_url: &str, message: &dyn containerd_shim_protos::protobuf::MessageDyn) -> Any {
        Any {
            type_url: type_url.into(),
            value: message.write_to_bytes_dyn().unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn no_options_are_the_defaults() {
        assert_eq!(parse_options(None).unwrap(), RuntimeOptions::default());
        assert_eq!(
            parse_options(Some(&Any::default())).unwrap(),
            RuntimeOptions::default()
        );
    }

    #[test]
    fn own_options_set_the_log_level() {
        let options = SiblingOptions {
            log_level: "debug".into(),
            ..Default::default()
        };
        let parsed = parse_options(Some(&any("sibling.v1.Options", &options))).unwrap();
        assert_eq!(parsed.log_level, Some(LevelFilter::Debug));
        let bad = SiblingOptions {
            log_level: "loud".into(),
            ..Default::default()
        };
        assert!(parse_options(Some(&any("sibling.v1.Options", &bad))).is_err());
    }

    #[test]
    fn criu_path_from_own_and_runc_options() {
        let own = SiblingOptions {
            criu_path: "/opt/criu".into(),
            ..Default::default()
        };
        let parsed = parse_options(Some(&any("sibling.v1.Options", &own))).unwrap();
        assert_eq!(parsed.criu_path, Some("/opt/criu".into()));
        // runc's CriuPath is field 8, which containerd 2's proto no longer names.
        let mut runc = RuncOptions::default();
        runc.special_fields
            .mut_unknown_fields()
            .add_length_delimited(RUNC_CRIU_PATH_FIELD, b"/usr/local/sbin/criu".to_vec());
        let url = "type.googleapis.com/containerd.runc.v1.Options";
        let parsed = parse_options(Some(&any(url, &runc))).unwrap();
        assert_eq!(parsed.criu_path, Some("/usr/local/sbin/criu".into()));
        let none = parse_options(Some(&any(url, &RuncOptions::default()))).unwrap();
        assert_eq!(none.criu_path, None);
    }

    #[test]
    fn the_systemd_driver_from_every_form() {
        let own = SiblingOptions {
            systemd_cgroup: true,
            ..Default::default()
        };
        assert!(
            parse_options(Some(&any("sibling.v1.Options", &own)))
                .unwrap()
                .systemd_cgroup
        );
        let runc = RuncOptions {
            systemd_cgroup: true,
            ..Default::default()
        };
        let url = "type.googleapis.com/containerd.runc.v1.Options";
        assert!(
            parse_options(Some(&any(url, &runc)))
                .unwrap()
                .systemd_cgroup
        );
        let file =
            std::env::temp_dir().join(format!("sibling-systemd-{}.toml", std::process::id()));
        std::fs::write(&file, "systemd_cgroup = true\n").unwrap();
        let cri = CriOptions {
            config_path: file.display().to_string(),
            ..Default::default()
        };
        let parsed = parse_options(Some(&any("runtimeoptions.v1.Options", &cri)));
        std::fs::remove_file(&file).unwrap();
        assert!(parsed.unwrap().systemd_cgroup);
        assert!(!parse_options(None).unwrap().systemd_cgroup);
    }

    #[test]
    fn runc_and_cri_options_are_accepted() {
        let runc = RuncOptions {
            binary_name: "runc".into(),
            ..Default::default()
        };
        let url = "type.googleapis.com/containerd.runc.v1.Options";
        assert!(parse_options(Some(&any(url, &runc))).is_ok());
        let file =
            std::env::temp_dir().join(format!("sibling-options-{}.toml", std::process::id()));
        std::fs::write(&file, "log_level = \"debug\"\n").unwrap();
        let cri = CriOptions {
            config_path: file.display().to_string(),
            ..Default::default()
        };
        let parsed = parse_options(Some(&any("runtimeoptions.v1.Options", &cri)));
        std::fs::remove_file(&file).unwrap();
        assert_eq!(parsed.unwrap().log_level, Some(LevelFilter::Debug));
        // A config file that is not there is an error naming it, never silently the defaults.
        let missing = CriOptions {
            config_path: "/nonexistent/sibling.toml".into(),
            ..Default::default()
        };
        let err = parse_options(Some(&any("runtimeoptions.v1.Options", &missing))).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/sibling.toml"),
            "{err}"
        );
    }

    #[test]
    fn unknown_types_and_garbage_are_refused() {
        let unknown = Any {
            type_url: "example.v1.Whatever".into(),
            ..Default::default()
        };
        let err = parse_options(Some(&unknown)).unwrap_err();
        assert!(err.to_string().contains("example.v1.Whatever"));
        let garbage = Any {
            type_url: "sibling.v1.Options".into(),
            value: vec![0xff, 0xff, 0xff],
            ..Default::default()
        };
        assert!(parse_options(Some(&garbage)).is_err());
    }

    #[test]
    fn start_options_choose_sharing_and_the_shim_cgroup() {
        let none = parse_shim_options(&[]).unwrap();
        assert!(!none.sharing());
        let options = SiblingOptions {
            containers_per_shim: 8,
            idle_seconds: 3,
            shim_cgroup: "/shims".into(),
            ..Default::default()
        };
        let bytes = any("sibling.v1.Options", &options)
            .write_to_bytes()
            .unwrap();
        let parsed = parse_shim_options(&bytes).unwrap();
        assert!(parsed.sharing());
        assert_eq!(parsed.idle(), Duration::from_secs(3));
        assert_eq!(parsed.shim_cgroup.as_deref(), Some("/shims"));
        let runc = RuncOptions {
            shim_cgroup: "/podruntime".into(),
            ..Default::default()
        };
        let url = "type.googleapis.com/containerd.runc.v1.Options";
        let bytes = any(url, &runc).write_to_bytes().unwrap();
        let parsed = parse_shim_options(&bytes).unwrap();
        assert_eq!(parsed.shim_cgroup.as_deref(), Some("/podruntime"));
        assert!(!parsed.sharing());
        assert!(parse_shim_options(&[0xff, 0x01]).is_err());
    }

    #[test]
    fn the_config_file_is_flat_toml_and_unknown_keys_are_refused() {
        let text = "# sibling\ncontainers_per_shim = 16 # share\nidle_seconds=2\n\
                    shim_cgroup = \"/a # b\"\nlog_level = \"debug\"\n";
        let options = parse_config_toml(text).unwrap();
        assert_eq!(options.containers_per_shim, 16);
        assert_eq!(options.idle_seconds, 2);
        assert_eq!(options.shim_cgroup, "/a # b");
        assert_eq!(options.log_level, "debug");
        let err = parse_config_toml("NoPivotRoot = true").unwrap_err();
        assert!(err.contains("NoPivotRoot"), "{err}");
        assert!(
            parse_config_toml("systemd_cgroup = true")
                .unwrap()
                .systemd_cgroup
        );
        assert!(
            parse_config_toml("SystemdCgroup = true # runc's name")
                .unwrap()
                .systemd_cgroup
        );
        assert!(
            !parse_config_toml("systemd_cgroup = false")
                .unwrap()
                .systemd_cgroup
        );
        assert!(parse_config_toml("systemd_cgroup = \"true\"").is_err());
        assert!(parse_config_toml("systemd_cgroup = 1").is_err());
        assert!(parse_config_toml("idle_seconds = \"5\"").is_err());
        assert!(parse_config_toml("[section]").is_err());
    }
}
