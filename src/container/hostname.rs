//! `hostname` and `domainname`: only in a UTS namespace of the container's own (new or joined),
//! never the host's, as runc.

use nix::unistd::sethostname;
use oci_spec::runtime::Spec;

use super::error::InitError;
use super::namespaces::{NamespaceKind, NamespacePlan};
use super::sys::setdomainname;

/// Sets the hostname and domain name the spec asks for, if any.
pub fn set_host_and_domain_name(spec: &Spec, namespaces: &NamespacePlan) -> Result<(), InitError> {
    let hostname = spec.hostname().as_deref().filter(|h| !h.is_empty());
    let domainname = spec.domainname().as_deref().filter(|d| !d.is_empty());
    if (hostname.is_some() || domainname.is_some()) && !namespaces.is_private(NamespaceKind::Uts) {
        let what =
            "hostname or domainname is set but the container shares the host's UTS namespace";
        return Err(InitError::InvalidSpec(what.into()));
    }
    if let Some(name) = hostname {
        sethostname(name).map_err(|errno| InitError::Hostname {
            what: "hostname",
            value: name.to_owned(),
            errno,
        })?;
    }
    if let Some(name) = domainname {
        setdomainname(name).map_err(|errno| InitError::Hostname {
            what: "domainname",
            value: name.to_owned(),
            errno,
        })?;
    }
    Ok(())
}
