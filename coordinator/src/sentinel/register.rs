//! The one registration routine every path uses (heal, data-plane rebuild, and later restore):
//! `MONITOR` plus every `SET`, then a read-back of `SENTINEL MASTER` compared option by option.
//! A registration whose read-back differs is an error, never counted as done.

use std::fmt;
use std::time::Duration;

use sentinel_protocol::sentinel::{FromReply, MasterRecord, MonitorSettings, ReplyError, Value};

use crate::addr::Addr;
use crate::secret::Secret;

use super::conn::{ConnError, Connection};

/// Everything one monitor is registered with.
#[derive(Clone)]
pub struct MonitorSpec {
    pub name: String,
    pub master: Addr,
    pub settings: MonitorSettings,
    /// The ACL user the sentinel authenticates as to the data pods (`auth-user`).
    pub auth_user: Option<String>,
    /// The password the sentinel authenticates with to the data pods (`auth-pass`).
    pub auth_pass: Option<Secret>,
    /// Sentinel-wide settings applied before `MONITOR` (`resolve-hostnames`,
    /// `announce-hostnames`), so a master given by hostname is accepted.
    pub sentinel_config: Vec<(&'static str, &'static str)>,
}

/// Written by hand so the password never reaches a log line.
impl fmt::Debug for MonitorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonitorSpec")
            .field("name", &self.name)
            .field("master", &self.master)
            .field("settings", &self.settings)
            .field("auth_user", &self.auth_user)
            .field("auth_pass", &self.auth_pass.as_ref().map(|_| "<redacted>"))
            .field("sentinel_config", &self.sentinel_config)
            .finish()
    }
}

/// Why a registration did not complete. Never carries the password: sentinel error texts are
/// scrubbed of it before they are kept.
#[derive(Debug, thiserror::Error)]
pub enum HealError {
    #[error("{0}")]
    Link(#[from] ConnError),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("{command} refused: {error}")]
    Refused {
        command: &'static str,
        error: String,
    },
    #[error("read back: {option} is {found}, expected {expected}")]
    Mismatch {
        option: &'static str,
        expected: String,
        found: String,
    },
    #[error("read back: the sentinel does not monitor the name after registering it")]
    Missing,
    #[error("unreadable reply to {command}: {error}")]
    Reply {
        command: &'static str,
        error: ReplyError,
    },
}

/// Registers `spec` on the sentinel behind `connection`. With `replace`, an existing monitor of
/// the name (at a stale address) is removed first. A `MONITOR` refused because the name is
/// already monitored at the right address is not an error: the `SET`s and the read-back still
/// run, so the routine is idempotent.
pub async fn register(
    connection: &mut Connection,
    spec: &MonitorSpec,
    replace: bool,
) -> Result<MonitorSettings, HealError> {
    for (option, value) in &spec.sentinel_config {
        expect_ok(
            connection,
            "SENTINEL CONFIG SET",
            &["SENTINEL", "CONFIG", "SET", option, value],
            spec,
        )
        .await?;
    }
    if replace {
        let reply = call(connection, &["SENTINEL", "REMOVE", &spec.name]).await?;
        match reply {
            Value::Error(error) if !error.contains("No such master") => {
                return Err(HealError::Refused {
                    command: "SENTINEL REMOVE",
                    error: scrub(&error, spec),
                });
            }
            _ => {}
        }
    }
    let host = spec.master.host().to_string();
    let port = spec.master.port().to_string();
    let quorum = spec.settings.quorum.to_string();
    let reply = call(
        connection,
        &["SENTINEL", "MONITOR", &spec.name, &host, &port, &quorum],
    )
    .await?;
    let added = match reply {
        Value::Error(error) if error.contains("Duplicate") => {
            // Someone registered it meanwhile; the read-back below decides whether that is
            // the monitor we want.
            tracing::debug!(name = %spec.name, "already monitored; completing and checking it");
            false
        }
        Value::Error(error) => {
            return Err(HealError::Refused {
                command: "SENTINEL MONITOR",
                error: scrub(&error, spec),
            });
        }
        _ => true,
    };
    match set_options(connection, spec, &every_option(spec)).await {
        Err(refused @ HealError::Refused { .. }) if added => {
            Err(undo_monitor(connection, spec, refused).await)
        }
        Err(error) => Err(error),
        Ok(()) => read_back(connection, spec).await,
    }
}

/// Removes the monitor this registration just added, after its `SET` was refused (a missing
/// permission, a rejected value): a monitor without its options, `auth-pass` above all, would
/// never be completed, since no read-back can see a password, where an unmonitored sentinel is
/// registered afresh by the next heal. Returns the refusal, saying whether the undo worked.
async fn undo_monitor(
    connection: &mut Connection,
    spec: &MonitorSpec,
    refused: HealError,
) -> HealError {
    let removed = match call(connection, &["SENTINEL", "REMOVE", &spec.name]).await {
        Ok(Value::Error(error)) => Err(scrub(&error, spec)),
        Ok(_) => Ok(()),
        Err(error) => Err(error.to_string()),
    };
    match (refused, removed) {
        (HealError::Refused { command, error }, Ok(())) => HealError::Refused {
            command,
            error: format!("{error} (the monitor just added was removed again)"),
        },
        (HealError::Refused { command, error }, Err(undo)) => HealError::Refused {
            command,
            error: format!("{error}; removing the monitor just added failed too: {undo}"),
        },
        (other, _) => other,
    }
}

/// Sets `options` (name, value) on an existing monitor, then reads it back.
pub async fn reconfigure(
    connection: &mut Connection,
    spec: &MonitorSpec,
    options: &[(&'static str, u64)],
) -> Result<MonitorSettings, HealError> {
    let options: Vec<(&str, String)> = options
        .iter()
        .map(|(option, value)| (*option, value.to_string()))
        .collect();
    set_options(connection, spec, &options).await?;
    read_back(connection, spec).await
}

/// Every option a registration sets: every monitor setting and, when configured, the data
/// pods' credentials.
fn every_option(spec: &MonitorSpec) -> Vec<(&'static str, String)> {
    let mut options: Vec<(&'static str, String)> = MonitorSettings::OPTIONS
        .into_iter()
        .zip(spec.settings.values())
        .map(|(option, value)| (option, value.to_string()))
        .collect();
    if let Some(user) = &spec.auth_user {
        options.push(("auth-user", user.clone()));
    }
    if let Some(password) = spec.auth_pass.as_ref().and_then(Secret::expose_str) {
        options.push(("auth-pass", password.to_owned()));
    }
    options
}

async fn set_options(
    connection: &mut Connection,
    spec: &MonitorSpec,
    options: &[(&str, String)],
) -> Result<(), HealError> {
    if options.is_empty() {
        return Ok(());
    }
    let mut command: Vec<&str> = vec!["SENTINEL", "SET", &spec.name];
    for (option, value) in options {
        command.push(option);
        command.push(value);
    }
    expect_ok(connection, "SENTINEL SET", &command, spec).await
}

/// Reads the monitor back and compares the address and every setting with `spec`.
async fn read_back(
    connection: &mut Connection,
    spec: &MonitorSpec,
) -> Result<MonitorSettings, HealError> {
    let record = match call(connection, &["SENTINEL", "MASTER", &spec.name]).await? {
        Value::Error(error) if error.contains("No such master") => {
            return Err(HealError::Missing);
        }
        Value::Error(error) => {
            return Err(HealError::Refused {
                command: "SENTINEL MASTER",
                error: scrub(&error, spec),
            });
        }
        value => MasterRecord::from_value(&value).map_err(|error| HealError::Reply {
            command: "SENTINEL MASTER",
            error,
        })?,
    };
    let address = call(
        connection,
        &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &spec.name],
    )
    .await?;
    let address = sentinel_protocol::sentinel::master_addr(&address)
        .map_err(|error| HealError::Reply {
            command: "SENTINEL GET-MASTER-ADDR-BY-NAME",
            error,
        })?
        .and_then(|(host, port)| Addr::from_parts(&host, &port.to_string()).ok());
    if address.as_ref() != Some(&spec.master) {
        return Err(HealError::Mismatch {
            option: "master address",
            expected: spec.master.to_string(),
            found: address.map_or_else(|| "none".to_owned(), |addr| addr.to_string()),
        });
    }
    let found = record.monitor_settings();
    let mismatch = MonitorSettings::OPTIONS
        .into_iter()
        .zip(spec.settings.values())
        .zip(found.values())
        .find(|((_, expected), actual)| expected != actual);
    if let Some(((option, expected), actual)) = mismatch {
        return Err(HealError::Mismatch {
            option,
            expected: expected.to_string(),
            found: actual.to_string(),
        });
    }
    Ok(found)
}

async fn expect_ok(
    connection: &mut Connection,
    what: &'static str,
    command: &[&str],
    spec: &MonitorSpec,
) -> Result<(), HealError> {
    match call(connection, command).await? {
        Value::Error(error) => Err(HealError::Refused {
            command: what,
            error: scrub(&error, spec),
        }),
        _ => Ok(()),
    }
}

async fn call<A: AsRef<[u8]>>(connection: &mut Connection, args: &[A]) -> Result<Value, ConnError> {
    connection.queue(args);
    connection.flush().await?;
    Ok(Value::from(&connection.next_frame().await?))
}

/// A sentinel's error text without the data pods' password, should the server echo it.
fn scrub(error: &str, spec: &MonitorSpec) -> String {
    match spec.auth_pass.as_ref().and_then(Secret::expose_str) {
        Some(password) if !password.is_empty() => error.replace(password, "<redacted>"),
        _ => error.to_owned(),
    }
}
