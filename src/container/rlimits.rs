//! `process.rlimits`, set with setrlimit before the credentials change (raising a hard limit
//! needs CAP_SYS_RESOURCE, which the container user will not have).

use nix::sys::resource::{Resource, setrlimit};
use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

use super::error::InitError;

/// The resource of a spec rlimit type. The spec's names are an enum: an unknown name never
/// gets this far, it fails when the spec is parsed (naming the value).
pub fn rlimit_resource(typ: PosixRlimitType) -> Resource {
    match typ {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

/// Sets every rlimit of the spec, in order.
pub fn apply_rlimits(rlimits: &[PosixRlimit]) -> Result<(), InitError> {
    for rlimit in rlimits {
        let resource = rlimit_resource(rlimit.typ());
        setrlimit(resource, rlimit.soft(), rlimit.hard()).map_err(|errno| InitError::Rlimit {
            name: rlimit.typ().to_string(),
            soft: rlimit.soft(),
            hard: rlimit.hard(),
            errno,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_names_map_to_resources() {
        let rlimits: Vec<PosixRlimit> = serde_json::from_str(
            r#"[{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024},
                {"type": "RLIMIT_RTTIME", "hard": 1, "soft": 1}]"#,
        )
        .unwrap();
        assert_eq!(rlimit_resource(rlimits[0].typ()), Resource::RLIMIT_NOFILE);
        assert_eq!(rlimit_resource(rlimits[1].typ()), Resource::RLIMIT_RTTIME);
        assert_eq!(rlimits[0].typ().to_string(), "RLIMIT_NOFILE");
    }

    #[test]
    fn unknown_names_fail_when_the_spec_is_parsed() {
        let err = serde_json::from_str::<Vec<PosixRlimit>>(
            r#"[{"type": "RLIMIT_BOGUS", "hard": 1, "soft": 1}]"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("RLIMIT_BOGUS"), "{err}");
    }
}
