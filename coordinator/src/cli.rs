//! The command line: every flag has a `VALKEY_COORDINATOR_<FLAG>` environment twin, so the same
//! binary is configured by flags on a laptop and by environment in a container.
//!
//! `serve` is the service; `demo` runs it on top of a local lab of real Valkey processes. The
//! subcommand layout leaves room for the operational commands (`startup`, `role-probe`,
//! `member-leave`, `switchover`) without breaking scripts that already call `serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::addr::Addr;
use crate::heal::{self, HealConfig, plan::ExplicitSettings};
use crate::secret::{self, Secret, SecretError};
use crate::server::{self, Permissions, ServerConfig, Users};
use crate::service::ServiceConfig;
use crate::upstream::{self, UpstreamConfig};
use crate::verdict;

/// Where clients reach the coordinator unless told otherwise: the sentinel port, so a client
/// needs no port of its own, on loopback, so nothing is exposed until an operator says so.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:26379";

/// How long a graceful shutdown may take before the remaining tasks are abandoned.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 5_000;

/// Serves the master a majority of Valkey sentinels agree on, as a sentinel-compatible endpoint.
#[derive(Debug, Parser)]
#[command(name = "valkey-coordinator", version, about, long_about = None)]
pub struct Cli {
    /// Log line format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = LogFormat::Text,
        env = "VALKEY_COORDINATOR_LOG_FORMAT"
    )]
    pub log_format: LogFormat,

    /// Threads that run the service; one per core when absent. Measured against a real
    /// sentinel on 2 cores: 1 (a single-threaded runtime) spends the least CPU per discovery
    /// request, while one per core delivers a `+switch-master` to 10,000 subscribers about
    /// twice as fast, which is why it is the default.
    #[arg(
        long,
        global = true,
        value_name = "N",
        env = "VALKEY_COORDINATOR_WORKER_THREADS"
    )]
    pub worker_threads: Option<usize>,

    #[command(subcommand)]
    pub command: Command,
}

/// What the binary is asked to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Follow the sentinels and serve the agreed master to sentinel-aware clients.
    Serve(Box<ServeArgs>),
    /// Run a local 3 data + 3 sentinel Valkey group on loopback with a coordinator on top, and
    /// print the live verdict and events until Ctrl-C (builds with the `demo` feature only).
    Demo(DemoArgs),
}

/// The `demo` flags.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The Valkey build the lab runs (8.0.1, 8.1.8 or 9.1.2), as installed by
    /// tests/install-valkey.sh.
    #[arg(
        long = "valkey-version",
        value_name = "VERSION",
        default_value = "9.1.2",
        env = "VALKEY_COORDINATOR_DEMO_VALKEY_VERSION"
    )]
    pub valkey_version: String,

    /// Where the demo's coordinator listens for sentinel-aware clients.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN, env = "VALKEY_COORDINATOR_DEMO_LISTEN")]
    pub listen: SocketAddr,

    /// Ask a sentinel for a failover once the coordinator agrees on a master, to show the switch.
    #[arg(long, env = "VALKEY_COORDINATOR_DEMO_FAILOVER")]
    pub failover: bool,

    /// Stop by itself after this many seconds (for scripted runs); runs until Ctrl-C otherwise.
    #[arg(
        long = "for",
        value_name = "SECONDS",
        env = "VALKEY_COORDINATOR_DEMO_FOR"
    )]
    pub run_for: Option<u64>,
}

/// How log lines are written. The level comes from `VALKEY_COORDINATOR_LOG` (a tracing
/// env-filter, `info` by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The `serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A master name to follow, as the sentinels monitor it (repeat, or comma-separate in the
    /// environment).
    #[arg(
        long = "master-name",
        value_name = "NAME",
        required = true,
        value_delimiter = ',',
        env = "VALKEY_COORDINATOR_MASTER_NAME"
    )]
    pub master_names: Vec<String>,

    /// A sentinel to follow, HOST:PORT (repeat, or comma-separate in the environment). Majorities
    /// are of this list's length, so list every sentinel, reachable or not.
    #[arg(
        long = "sentinel",
        value_name = "HOST:PORT",
        required = true,
        value_delimiter = ',',
        env = "VALKEY_COORDINATOR_SENTINEL"
    )]
    pub sentinels: Vec<Addr>,

    /// Where sentinel-aware clients connect. Loopback unless an address is given.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN, env = "VALKEY_COORDINATOR_LISTEN")]
    pub listen: SocketAddr,

    /// Another coordinator instance, HOST:PORT (repeat): what `SENTINEL SENTINELS` lists, so
    /// clients that refresh their sentinel list keep talking to coordinators.
    #[arg(
        long = "peer",
        value_name = "HOST:PORT",
        value_delimiter = ',',
        env = "VALKEY_COORDINATOR_PEER"
    )]
    pub peers: Vec<Addr>,

    /// The address this instance is reachable at, when it differs from --listen (`INFO`).
    #[arg(long, value_name = "HOST:PORT", env = "VALKEY_COORDINATOR_ANNOUNCE")]
    pub announce: Option<Addr>,

    /// This instance's run id (40 hex characters) for `SENTINEL MYID`; random when absent.
    #[arg(long, value_name = "HEX40", env = "VALKEY_COORDINATOR_MY_ID")]
    pub my_id: Option<String>,

    /// The default user's password for clients. Prefer --requirepass-file or the environment:
    /// command lines are visible to every local user.
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "VALKEY_COORDINATOR_REQUIREPASS",
        hide_env_values = true
    )]
    pub requirepass: Option<String>,

    /// A file holding the default user's password (one trailing newline is ignored).
    #[arg(long, value_name = "PATH", env = "VALKEY_COORDINATOR_REQUIREPASS_FILE")]
    pub requirepass_file: Option<PathBuf>,

    /// A named client user, NAME:PRESET:PASSWORD_FILE, where PRESET is `client` (what
    /// sentinel-aware clients send) or `admin` (also `COORDINATOR ...`). Repeat, or
    /// comma-separate in the environment.
    #[arg(
        long = "user",
        value_name = "NAME:PRESET:PASSWORD_FILE",
        value_delimiter = ',',
        env = "VALKEY_COORDINATOR_USER"
    )]
    pub users: Vec<UserSpec>,

    /// The user to authenticate as to the sentinels (the `default` user when absent).
    #[arg(long, value_name = "NAME", env = "VALKEY_COORDINATOR_SENTINEL_USER")]
    pub sentinel_user: Option<String>,

    /// The password for the sentinels. Prefer --sentinel-password-file or the environment.
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "VALKEY_COORDINATOR_SENTINEL_PASSWORD",
        hide_env_values = true
    )]
    pub sentinel_password: Option<String>,

    /// A file holding the sentinels' password.
    #[arg(
        long,
        value_name = "PATH",
        env = "VALKEY_COORDINATOR_SENTINEL_PASSWORD_FILE"
    )]
    pub sentinel_password_file: Option<PathBuf>,

    /// Where Prometheus scrapes `GET /metrics`; no metrics endpoint when absent.
    #[arg(long, value_name = "ADDR", env = "VALKEY_COORDINATOR_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// How long a sentinel's answer counts towards a majority, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = duration_ms(verdict::DEFAULT_FRESHNESS), env = "VALKEY_COORDINATOR_FRESHNESS_MS")]
    pub freshness_ms: u64,

    /// How often each sentinel is polled, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = duration_ms(upstream::DEFAULT_POLL_INTERVAL), env = "VALKEY_COORDINATOR_POLL_INTERVAL_MS")]
    pub poll_interval_ms: u64,

    /// The deadline of one poll round against one sentinel, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = duration_ms(upstream::DEFAULT_QUERY_TIMEOUT), env = "VALKEY_COORDINATOR_QUERY_TIMEOUT_MS")]
    pub query_timeout_ms: u64,

    /// Clients served at once; one more is told so and closed.
    #[arg(long, value_name = "N", default_value_t = server::DEFAULT_MAX_CLIENTS, env = "VALKEY_COORDINATOR_MAX_CLIENTS")]
    pub max_clients: usize,

    /// How long an established, unsubscribed client may stay silent, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = duration_ms(server::DEFAULT_IDLE_TIMEOUT), env = "VALKEY_COORDINATOR_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: u64,

    /// How long a graceful shutdown may take, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_SHUTDOWN_GRACE_MS, env = "VALKEY_COORDINATOR_SHUTDOWN_GRACE_MS")]
    pub shutdown_grace_ms: u64,

    /// Do not heal sentinels (healing re-registers `SENTINEL MONITOR` on sentinels that lost or
    /// garbled it, towards the agreed master only).
    #[arg(long, env = "VALKEY_COORDINATOR_NO_HEAL", help_heading = "Healing")]
    pub no_heal: bool,

    /// The monitor's quorum; when absent, a registration copies the agreed master's (or a
    /// majority of --sentinel). When given, every sentinel is kept at it.
    #[arg(
        long,
        value_name = "N",
        env = "VALKEY_COORDINATOR_QUORUM",
        help_heading = "Healing"
    )]
    pub quorum: Option<u64>,

    /// down-after-milliseconds; copied from the agreed master's record when absent, enforced
    /// on every sentinel when given.
    #[arg(
        long,
        value_name = "MS",
        env = "VALKEY_COORDINATOR_DOWN_AFTER_MS",
        help_heading = "Healing"
    )]
    pub down_after_ms: Option<u64>,

    /// failover-timeout in milliseconds; copied when absent, enforced when given.
    #[arg(
        long,
        value_name = "MS",
        env = "VALKEY_COORDINATOR_FAILOVER_TIMEOUT_MS",
        help_heading = "Healing"
    )]
    pub failover_timeout_ms: Option<u64>,

    /// parallel-syncs; copied when absent, enforced when given.
    #[arg(
        long,
        value_name = "N",
        env = "VALKEY_COORDINATOR_PARALLEL_SYNCS",
        help_heading = "Healing"
    )]
    pub parallel_syncs: Option<u64>,

    /// A data pod, HOST:PORT (repeat): asked for its replication state when every sentinel
    /// lost its monitor, so the monitors can be rebuilt on the master the pods prove.
    #[arg(
        long = "data-pod",
        value_name = "HOST:PORT",
        value_delimiter = ',',
        env = "VALKEY_COORDINATOR_DATA_POD",
        help_heading = "Healing"
    )]
    pub data_pods: Vec<Addr>,

    /// The ACL user sentinels authenticate as to the data pods (`auth-user`).
    #[arg(
        long,
        value_name = "NAME",
        env = "VALKEY_COORDINATOR_DATA_USER",
        help_heading = "Healing"
    )]
    pub data_user: Option<String>,

    /// The password sentinels use for the data pods (`auth-pass`). Prefer
    /// --data-password-file or the environment.
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "VALKEY_COORDINATOR_DATA_PASSWORD",
        hide_env_values = true,
        help_heading = "Healing"
    )]
    pub data_password: Option<String>,

    /// A file holding the data pods' password.
    #[arg(
        long,
        value_name = "PATH",
        env = "VALKEY_COORDINATOR_DATA_PASSWORD_FILE",
        help_heading = "Healing"
    )]
    pub data_password_file: Option<PathBuf>,

    /// Set `resolve-hostnames yes` on a sentinel before registering (data pods by hostname).
    #[arg(
        long,
        env = "VALKEY_COORDINATOR_RESOLVE_HOSTNAMES",
        help_heading = "Healing"
    )]
    pub resolve_hostnames: bool,

    /// Set `announce-hostnames yes` on a sentinel before registering.
    #[arg(
        long,
        env = "VALKEY_COORDINATOR_ANNOUNCE_HOSTNAMES",
        help_heading = "Healing"
    )]
    pub announce_hostnames: bool,

    /// How long a sentinel may name another master than the agreed one before it is
    /// re-registered, in milliseconds (the sentinels' own gossip usually fixes it sooner).
    #[arg(long, value_name = "MS", default_value_t = duration_ms(heal::DEFAULT_GRACE), env = "VALKEY_COORDINATOR_HEAL_GRACE_MS", help_heading = "Healing")]
    pub heal_grace_ms: u64,
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// One `--user`: the password stays in its file until the configuration is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    pub name: String,
    pub permissions: Permissions,
    pub password_file: PathBuf,
}

impl std::str::FromStr for UserSpec {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let mut parts = raw.splitn(3, ':');
        let (Some(name), Some(preset), Some(file)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err("expected NAME:PRESET:PASSWORD_FILE".to_owned());
        };
        if name.is_empty() || file.is_empty() {
            return Err("expected NAME:PRESET:PASSWORD_FILE".to_owned());
        }
        if name == server::auth::DEFAULT_USER {
            return Err("the default user's password is --requirepass".to_owned());
        }
        let permissions = match preset {
            "client" => Permissions::SentinelClient,
            "admin" => Permissions::Admin,
            other => return Err(format!("unknown preset {other:?}; use client or admin")),
        };
        Ok(Self {
            name: name.to_owned(),
            permissions,
            password_file: PathBuf::from(file),
        })
    }
}

/// Why the flags do not make a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("--my-id must be 40 hexadecimal characters")]
    InvalidMyId,
    #[error("the sentinel password must be UTF-8")]
    SentinelPasswordNotUtf8,
    #[error("the data pods' password must be UTF-8")]
    DataPasswordNotUtf8,
    #[error("--{0} must be greater than zero")]
    Zero(&'static str),
}

impl ServeArgs {
    /// Loads the secrets and builds the service configuration.
    pub fn into_config(self) -> Result<ServiceConfig, ConfigError> {
        for (flag, value) in [
            ("freshness-ms", self.freshness_ms),
            ("poll-interval-ms", self.poll_interval_ms),
            ("query-timeout-ms", self.query_timeout_ms),
            ("idle-timeout-ms", self.idle_timeout_ms),
            ("max-clients", self.max_clients as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(flag));
            }
        }

        let my_id = match self.my_id {
            Some(id) if id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
                id.to_ascii_lowercase()
            }
            Some(_) => return Err(ConfigError::InvalidMyId),
            None => random_run_id(),
        };

        let mut users = Users::default();
        if let Some(password) = secret::inline_or_file(
            "--requirepass",
            self.requirepass.as_deref(),
            self.requirepass_file.as_deref(),
        )? {
            users.requirepass = Some(server::Password::new(password.expose()));
        }
        for user in self.users {
            let password = Secret::from_file(&user.password_file)?;
            users = users.with_user(user.name, password.expose(), user.permissions);
        }

        let sentinel_password = secret::inline_or_file(
            "--sentinel-password",
            self.sentinel_password.as_deref(),
            self.sentinel_password_file.as_deref(),
        )?;
        let credentials = match sentinel_password {
            Some(password) => Some((
                self.sentinel_user,
                password
                    .expose_str()
                    .ok_or(ConfigError::SentinelPasswordNotUtf8)?
                    .to_owned(),
            )),
            None => None,
        };

        let mut upstream = UpstreamConfig::new(self.sentinels, self.master_names);
        upstream.credentials = credentials;
        upstream.freshness = Duration::from_millis(self.freshness_ms);
        upstream.poll_interval = Duration::from_millis(self.poll_interval_ms);
        upstream.query_timeout = Duration::from_millis(self.query_timeout_ms);

        let heal = if self.no_heal {
            None
        } else {
            let data_password = secret::inline_or_file(
                "--data-password",
                self.data_password.as_deref(),
                self.data_password_file.as_deref(),
            )?;
            if data_password
                .as_ref()
                .is_some_and(|password| password.expose_str().is_none())
            {
                return Err(ConfigError::DataPasswordNotUtf8);
            }
            // Sentinels refuse 0 for each of these; better said at start than at every heal.
            for (flag, value) in [
                ("quorum", self.quorum),
                ("down-after-ms", self.down_after_ms),
                ("failover-timeout-ms", self.failover_timeout_ms),
                ("parallel-syncs", self.parallel_syncs),
            ] {
                if value == Some(0) {
                    return Err(ConfigError::Zero(flag));
                }
            }
            Some(HealConfig {
                explicit: ExplicitSettings {
                    quorum: self.quorum,
                    down_after_ms: self.down_after_ms,
                    failover_timeout_ms: self.failover_timeout_ms,
                    parallel_syncs: self.parallel_syncs,
                },
                data_user: self.data_user,
                data_password,
                resolve_hostnames: self.resolve_hostnames,
                announce_hostnames: self.announce_hostnames,
                data_pods: self.data_pods,
                grace: Duration::from_millis(self.heal_grace_ms),
                ..HealConfig::default()
            })
        };

        let mut server = ServerConfig::new(my_id);
        server.users = users;
        server.peers = self.peers;
        server.announce = self.announce;
        server.max_clients = self.max_clients;
        server.idle_timeout = Duration::from_millis(self.idle_timeout_ms);

        Ok(ServiceConfig {
            listen: self.listen,
            metrics_listen: self.metrics_listen,
            upstream,
            server,
            heal,
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
        })
    }
}

/// A run id for an instance started without one. Unique per process start, which is what a
/// sentinel's run id is; not a secret, so std's randomly keyed hasher is entropy enough.
pub fn random_run_id() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};

    let mut id = String::with_capacity(40);
    let mut round = 0u64;
    while id.len() < 40 {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(round);
        hasher.write_u32(std::process::id());
        id.push_str(&format!("{:016x}", hasher.finish()));
        round += 1;
    }
    id.truncate(40);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_documents_every_flag_with_its_environment_variable() {
        use clap::CommandFactory;
        let mut command = Cli::command();
        for subcommand in ["serve", "demo"] {
            let subcommand = command
                .find_subcommand_mut(subcommand)
                .unwrap_or_else(|| panic!("{subcommand} exists"));
            assert_every_flag_has_an_environment_twin(subcommand);
        }
    }

    fn assert_every_flag_has_an_environment_twin(command: &clap::Command) {
        for arg in command.get_arguments() {
            if matches!(arg.get_id().as_str(), "help" | "version") {
                continue;
            }
            let env = arg
                .get_env()
                .unwrap_or_else(|| panic!("--{} has no environment twin", arg.get_id()));
            assert!(
                env.to_string_lossy().starts_with("VALKEY_COORDINATOR_"),
                "{env:?}"
            );
            assert!(
                arg.get_help().is_some(),
                "--{} is undocumented",
                arg.get_id()
            );
        }
    }

    #[test]
    fn a_user_spec_names_a_preset_and_a_password_file() {
        let spec: UserSpec = "app:client:/run/secrets/app".parse().expect("valid");
        assert_eq!(spec.name, "app");
        assert_eq!(spec.permissions, Permissions::SentinelClient);
        assert_eq!(spec.password_file, PathBuf::from("/run/secrets/app"));
        assert!("app:root:/x".parse::<UserSpec>().is_err());
        assert!("app:client".parse::<UserSpec>().is_err());
        assert!("default:admin:/x".parse::<UserSpec>().is_err());
    }

    #[test]
    fn run_ids_are_forty_hex_and_differ() {
        let a = random_run_id();
        assert_eq!(a.len(), 40);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, random_run_id());
    }
}
