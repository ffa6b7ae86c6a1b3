//! Runtime options in a Create request (`CreateTaskRequest.options`), in the forms containerd
//! sends: runc's `containerd.runc.v1.Options` (ctr and a runc-style runtime config), the
//! older `containerd.linux.runc.CreateOptions` (ctr with --uidmap), CRI's
//! `runtimeoptions.v1.Options` (a runtime class with a non-runc runtime_type) and this shim's
//! own `sibling.v1.Options`. Anything else is refused with a clear error.

use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::shim::oci::Options as RuncOptions;
use log::LevelFilter;

use super::error::TaskError;
use crate::protos::api::Options as CriOptions;
use crate::protos::options::Options as SiblingOptions;
use crate::protos::runc::CreateOptions;

/// What this shim takes from the options.
#[derive(Debug, Default, PartialEq)]
pub struct RuntimeOptions {
    /// A new log level for the daemon.
    pub log_level: Option<LevelFilter>,
    /// The owner (uid, gid) to give the process's stdio pipes.
    pub io_owner: Option<(u32, u32)>,
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
                ..RuntimeOptions::default()
            })
        }
        "containerd.runc.v1.Options" => {
            // runc's knobs (binary name, root, systemd cgroup, criu) name runc itself: nothing
            // here applies to this runtime, so they are read (to reject garbage) and ignored.
            let options = RuncOptions::parse_from_bytes(&any.value).map_err(invalid)?;
            if options.systemd_cgroup {
                log::info!("runc option SystemdCgroup: cgroup paths are used as given");
            }
            Ok(RuntimeOptions::default())
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
            if !options.config_path.is_empty() {
                log::info!(
                    "runtime config file {} is not read by this shim",
                    options.config_path
                );
            }
            Ok(RuntimeOptions::default())
        }
        other => Err(TaskError::invalid(format!(
            "unknown runtime options type {other:?}: expected sibling.v1.Options, \
             containerd.runc.v1.Options, containerd.linux.runc.CreateOptions or \
             runtimeoptions.v1.Options"
        ))),
    }
}

fn parse_level(level: &str) -> Result<Option<LevelFilter>, TaskError> {
    let filter = match level {
        "" => return Ok(None),
        "error" => LevelFilter::Error,
        "warn" | "warning" => LevelFilter::Warn,
        "info" => LevelFilter::Info,
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        other => {
            return Err(TaskError::invalid(format!(
                "runtime options: unknown log_level {other:?}"
            )));
        }
    };
    Ok(Some(filter))
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
    fn runc_and_cri_options_are_accepted() {
        let runc = RuncOptions {
            binary_name: "runc".into(),
            ..Default::default()
        };
        let url = "type.googleapis.com/containerd.runc.v1.Options";
        assert!(parse_options(Some(&any(url, &runc))).is_ok());
        let cri = CriOptions {
            config_path: "/etc/sibling.toml".into(),
            ..Default::default()
        };
        assert!(parse_options(Some(&any("runtimeoptions.v1.Options", &cri))).is_ok());
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
}
