//! The systemd cgroup driver: a container's cgroup is a transient scope systemd creates
//! (`StartTransientUnit` over D-Bus, as runc's systemd driver does), with `Delegate=yes`, the
//! resource properties systemd knows, and every other setting written through cgroupfs in
//! the scope's directory afterwards.
//!
//! A scope must hold a process when it starts (systemd 252 refuses an empty one, and the
//! `PIDFDs` property is newer), and the container's init must be born inside it
//! (`CLONE_INTO_CGROUP`): the daemon gives systemd a *scope holder*, a short-lived clone of the
//! spawner that waits on its socket (see `spawn::spawner`), and lets it go once the init is
//! in the scope. Neither the daemon nor the spawner ever enters a container's scope.
//!
//! The D-Bus client is this module's own (`dbus`, `marshal`): a few hundred lines for the
//! calls needed, no threads and no async runtime in the shim.

pub mod dbus;
pub mod marshal;
mod properties;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use properties::{cpu_list_to_bits, resource_properties};

use dbus::{Bus, BusError, SIGNAL};
use marshal::Value;

/// Exists when systemd is the running init (`sd_booted(3)`).
pub const SYSTEMD_RUNNING_DIR: &str = "/run/systemd/system";
/// The system bus, unless `DBUS_SYSTEM_BUS_ADDRESS` names another `unix:path=`.
pub const SYSTEM_BUS_SOCKET: &str = "/run/dbus/system_bus_socket";
/// How long one unit operation (connect, call, job) may take in all.
pub const UNIT_TIMEOUT: Duration = Duration::from_secs(10);

const SYSTEMD_NAME: &str = "org.freedesktop.systemd1";
const SYSTEMD_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";

/// Why a unit operation failed; the text says what was asked and what answered.
#[derive(Debug)]
pub struct SystemdError(pub String);

impl std::fmt::Display for SystemdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SystemdError {}

/// The system bus socket path.
pub fn system_bus_path() -> PathBuf {
    std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
        .ok()
        .and_then(|a| {
            a.split(';')
                .find_map(|a| a.strip_prefix("unix:path=").map(str::to_owned))
        })
        .map_or_else(|| PathBuf::from(SYSTEM_BUS_SOCKET), PathBuf::from)
}

/// A connection to systemd's manager on the system bus, listening for `JobRemoved`.
pub struct Systemd {
    bus: Bus,
    deadline: Instant,
}

impl Systemd {
    /// Connects (bounded by [`UNIT_TIMEOUT`]); fails when systemd is not the running init or
    /// the bus does not answer, naming what is missing.
    pub fn connect() -> Result<Systemd, SystemdError> {
        if !Path::new(SYSTEMD_RUNNING_DIR).exists() {
            return Err(SystemdError(format!(
                "systemd is not running ({SYSTEMD_RUNNING_DIR} does not exist)"
            )));
        }
        let deadline = Instant::now() + UNIT_TIMEOUT;
        let path = system_bus_path();
        let unreachable = |e: BusError| {
            SystemdError(format!(
                "the system D-Bus at {} does not answer: {e}",
                path.display()
            ))
        };
        let mut bus = Bus::connect(&path, SYSTEMD_NAME, true, deadline).map_err(unreachable)?;
        // Job results arrive as JobRemoved signals: match them before any job is queued, so
        // one that ends before its method's reply is not missed.
        bus.call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "AddMatch",
            &[Value::Str(
                "type='signal',sender='org.freedesktop.systemd1',\
                 interface='org.freedesktop.systemd1.Manager',member='JobRemoved',\
                 path='/org/freedesktop/systemd1'"
                    .into(),
            )],
            deadline,
        )
        .map_err(unreachable)?;
        let mut systemd = Systemd { bus, deadline };
        systemd
            .manager("Subscribe", &[])
            .map_err(|e| SystemdError(format!("systemd does not answer on the bus: {e}")))?;
        Ok(systemd)
    }

    fn manager(&mut self, member: &str, args: &[Value]) -> Result<dbus::Message, BusError> {
        self.bus
            .call("", SYSTEMD_PATH, MANAGER, member, args, self.deadline)
    }

    /// StartTransientUnit(name, "replace", properties, []) and waits until its job is done.
    pub fn start_transient_unit(
        &mut self,
        name: &str,
        properties: Vec<(String, Value)>,
    ) -> Result<(), SystemdError> {
        let reply = self
            .manager(
                "StartTransientUnit",
                &[
                    Value::Str(name.into()),
                    Value::Str("replace".into()),
                    Value::Properties(properties),
                    Value::AuxUnits(Vec::new()),
                ],
            )
            .map_err(|e| SystemdError(format!("start unit {name}: {e}")))?;
        self.wait_job(name, "start", &reply)
    }

    /// SetUnitProperties(name, runtime, properties): takes effect at once.
    pub fn set_unit_properties(
        &mut self,
        name: &str,
        properties: Vec<(String, Value)>,
    ) -> Result<(), SystemdError> {
        self.manager(
            "SetUnitProperties",
            &[
                Value::Str(name.into()),
                Value::Bool(true),
                Value::Properties(properties),
            ],
        )
        .map(drop)
        .map_err(|e| SystemdError(format!("set properties of unit {name}: {e}")))
    }

    /// StopUnit(name, "replace") and waits until its job is done; a unit systemd does not
    /// know (already stopped and unloaded) is fine.
    pub fn stop_unit(&mut self, name: &str) -> Result<(), SystemdError> {
        match self.manager(
            "StopUnit",
            &[Value::Str(name.into()), Value::Str("replace".into())],
        ) {
            Ok(reply) => self.wait_job(name, "stop", &reply),
            Err(BusError::Remote { name: error, .. }) if error == NO_SUCH_UNIT => Ok(()),
            Err(e) => Err(SystemdError(format!("stop unit {name}: {e}"))),
        }
    }

    /// The job a method returned (`o`), followed to its JobRemoved: "done" is success.
    fn wait_job(
        &mut self,
        unit: &str,
        what: &str,
        reply: &dbus::Message,
    ) -> Result<(), SystemdError> {
        let job = reply
            .body_reader()
            .str()
            .map_err(|e| SystemdError(format!("{what} unit {unit}: reply: {e}")))?;
        let result = self
            .bus
            .wait_signal(self.deadline, &format!("the {what} job of {unit}"), |m| {
                job_removed(m)
                    .filter(|(path, _)| *path == job)
                    .map(|(_, result)| result)
            })
            .map_err(|e| SystemdError(format!("{what} unit {unit}: {e}")))?;
        if result == "done" {
            Ok(())
        } else {
            Err(SystemdError(format!(
                "{what} unit {unit}: job {job} ended with {result:?} (see `journalctl -u {unit}`)"
            )))
        }
    }
}

/// (job path, result) of a JobRemoved(u id, o job, s unit, s result) signal.
fn job_removed(message: &dbus::Message) -> Option<(String, String)> {
    if message.kind != SIGNAL
        || message.member.as_deref() != Some("JobRemoved")
        || message.signature != "uoss"
    {
        return None;
    }
    let mut r = message.body_reader();
    r.u32().ok()?;
    let job = r.str().ok()?;
    r.str().ok()?;
    let result = r.str().ok()?;
    Some((job, result))
}

/// Stops `unit` (a fresh connection; for Delete and the `delete` action).
pub fn stop_unit(unit: &str) -> Result<(), SystemdError> {
    Systemd::connect()?.stop_unit(unit)
}

/// Sets `properties` on `unit` (a fresh connection; for Update).
pub fn set_unit_properties(
    unit: &str,
    properties: Vec<(String, Value)>,
) -> Result<(), SystemdError> {
    if properties.is_empty() {
        return Ok(());
    }
    Systemd::connect()?.set_unit_properties(unit, properties)
}
