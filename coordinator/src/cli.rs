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

use crate::addr::{Addr, RunId};
use crate::lifecycle::{self, Budget, Target};
use crate::secret::{self, Secret, SecretError};
use crate::sentinel::conn::{Access, Credentials};
use crate::service::heal::{self, HealConfig, plan::ExplicitSettings};
use crate::service::links::{self, UpstreamConfig};
use crate::service::server::{self, Permissions, ServerConfig, Users};
use crate::service::{self, ServiceConfig};
use crate::tls::{self, ClientAuth, ClientFiles, ClientTls, KeyPair, ServerFiles, ServerTls};
use crate::verdict;

/// Where clients reach the coordinator unless told otherwise: the sentinel port, so a client
/// needs no port of its own, on loopback, so nothing is exposed until an operator says so.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:26379";

/// Serves the master a majority of Valkey sentinels agree on, as a sentinel-compatible endpoint.
#[derive(Debug, Parser)]
#[command(
    name = "valkey-coordinator",
    version,
    about,
    long_about = None,
    after_help = "Logging: VALKEY_COORDINATOR_LOG (or RUST_LOG) sets the level as a tracing \
                  filter, e.g. `debug` or `valkey_coordinator=debug,warn`; the default is `info` \
                  for serve and `warn` for the lifecycle actions. At debug level every client \
                  command is logged, without the arguments of AUTH and HELLO."
)]
pub struct Cli {
    /// Log line format (logs go to stderr; colour only on a terminal).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = LogFormat::Text,
        env = "VALKEY_COORDINATOR_LOG_FORMAT"
    )]
    pub log_format: LogFormat,

    /// Threads that run the service's own work (the sentinel links, the healer, metrics, the
    /// accept loops); one per core when absent, 1 for a single-threaded runtime. The clients
    /// run on `serve --client-threads`.
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
    /// Lifecycle action: decide whether this data pod starts as master or as whose replica,
    /// write the decision as valkey.conf directives to --write-config, print `master` or
    /// `replica HOST PORT`.
    Startup(StartupArgs),
    /// Lifecycle action: print this pod's role versioned by the agreed config epoch
    /// (`primary EPOCH`, `secondary EPOCH` or `secondary`); exit 1 with empty stdout when no role
    /// can be proven.
    RoleProbe(RoleProbeArgs),
    /// Lifecycle action: make the leaving pod (--pod) safe to remove: fail over first if it is
    /// the master.
    MemberLeave(ActionArgs),
    /// Lifecycle action: move the master away from --pod (to --candidate when given) without
    /// losing an acknowledged write.
    Switchover(SwitchoverArgs),
    /// For operators: one survey of every sentinel and data pod, printed as a table (exit 0
    /// when a master is agreed).
    Status(StatusArgs),
    /// Lifecycle action: set (or delete) one ACL user on every data pod, and save it where the
    /// pod keeps an ACL file; exit 1 unless every pod took it.
    AccountProvision(AccountArgs),
    /// Lifecycle action: apply the directives of an updated valkey.conf that differ from this
    /// pod's (--pod) running values with CONFIG SET; immutable ones wait for the restart.
    Reconfigure(ReconfigureArgs),
    /// Copy this binary into DIR (atomically, mode 0755): how an init container from the
    /// coordinator's image (no shell, no cp) hands it to a pod running another image.
    Install(InstallArgs),
}

/// The `install` flags.
#[derive(Debug, Clone, Args)]
pub struct InstallArgs {
    /// The folder to copy the binary into (as `valkey-coordinator`).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// What every lifecycle action is told: the group, the pod it is about, where to ask, its
/// budget, and the credentials (passwords from files or the environment only).
#[derive(Debug, Clone, Args)]
pub struct ActionArgs {
    /// The master name the sentinels monitor.
    #[arg(
        long = "master-name",
        value_name = "NAME",
        default_value = "mymaster",
        env = "VALKEY_COORDINATOR_MASTER_NAME"
    )]
    pub master_name: String,

    /// A sentinel, HOST[:PORT] (port 26379 when absent): every configured sentinel (repeat,
    /// or comma-separate in the environment). Majorities are of this list's length.
    #[arg(
        value_parser = sentinel_addr,
        long = "sentinel",
        value_name = "HOST[:PORT]",
        value_delimiter = ',',
        env = "VALKEY_COORDINATOR_SENTINEL"
    )]
    pub sentinels: Vec<Addr>,

    /// A data pod, HOST[:PORT] (port 6379 when absent): every data pod, in ordinal order
    /// (repeat, or comma-separate).
    #[arg(
        value_parser = data_pod_addr,
        long = "data-pod",
        value_name = "HOST[:PORT]",
        value_delimiter = ',',
        env = "VALKEY_COORDINATOR_DATA_POD"
    )]
    pub data_pods: Vec<Addr>,

    /// The pod this action is about: the pod itself (startup, role-probe), the leaving pod
    /// (member-leave), the current master as the caller knows it (switchover).
    #[arg(value_parser = data_pod_addr, long, value_name = "HOST[:PORT]", env = "VALKEY_COORDINATOR_POD")]
    pub pod: Option<Addr>,

    /// A coordinator asked first (repeat, or comma-separate); the sentinels are asked directly
    /// when none gives an agreed verdict within its share of the budget.
    #[arg(
        value_parser = coordinator_addr,
        long = "coordinator",
        value_name = "HOST[:PORT]",
        value_delimiter = ',',
        env = "VALKEY_COORDINATOR_COORDINATOR"
    )]
    pub coordinators: Vec<Addr>,

    /// The action's whole budget in milliseconds; keep it below the action's timeout in
    /// KubeBlocks (30 s when unset there), which kills the process at it.
    #[arg(long, value_name = "MS", default_value_t = duration_ms(lifecycle::DEFAULT_TIMEOUT), env = "VALKEY_COORDINATOR_TIMEOUT_MS")]
    pub timeout_ms: u64,

    #[command(flatten)]
    pub credentials: CredentialArgs,

    #[command(flatten)]
    pub tls: TlsArgs,
}

/// TLS towards sentinels, data pods and coordinators, as `serve` and every action take it.
/// Certificate names are checked, always: there is no flag to skip verification.
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// Speak TLS on every link: to the sentinels, the data pods and the coordinators, and for
    /// `serve` to its clients. Never falls back to plaintext.
    #[arg(long, env = "VALKEY_COORDINATOR_TLS", help_heading = "TLS")]
    pub tls: bool,

    /// The CA bundle every peer's certificate must chain to (needed with --tls).
    #[arg(
        long,
        value_name = "PATH",
        env = "VALKEY_COORDINATOR_TLS_CA_CERT_FILE",
        help_heading = "TLS"
    )]
    pub tls_ca_cert_file: Option<PathBuf>,

    /// This process's certificate chain: what `serve` presents to its clients, and what every
    /// link presents to a server that asks for a client certificate, unless
    /// --tls-client-cert-file is given (as Valkey's `tls-cert-file`).
    #[arg(
        long,
        value_name = "PATH",
        env = "VALKEY_COORDINATOR_TLS_CERT_FILE",
        help_heading = "TLS"
    )]
    pub tls_cert_file: Option<PathBuf>,

    /// The private key of --tls-cert-file.
    #[arg(
        long,
        value_name = "PATH",
        env = "VALKEY_COORDINATOR_TLS_KEY_FILE",
        help_heading = "TLS"
    )]
    pub tls_key_file: Option<PathBuf>,

    /// The certificate presented to servers that ask for one, when it differs from
    /// --tls-cert-file.
    #[arg(
        long,
        value_name = "PATH",
        env = "VALKEY_COORDINATOR_TLS_CLIENT_CERT_FILE",
        help_heading = "TLS"
    )]
    pub tls_client_cert_file: Option<PathBuf>,

    /// The private key of --tls-client-cert-file.
    #[arg(
        long,
        value_name = "PATH",
        env = "VALKEY_COORDINATOR_TLS_CLIENT_KEY_FILE",
        help_heading = "TLS"
    )]
    pub tls_client_key_file: Option<PathBuf>,

    /// The name every peer's certificate is checked for, instead of the address dialled: for
    /// certificates that carry a service name but not the pods' IPs.
    #[arg(
        long,
        value_name = "NAME",
        env = "VALKEY_COORDINATOR_TLS_SERVER_NAME",
        help_heading = "TLS"
    )]
    pub tls_server_name: Option<String>,
}

impl TlsArgs {
    /// A certificate and its key, both given or neither.
    fn pair(
        cert: &Option<PathBuf>,
        key: &Option<PathBuf>,
        flags: (&'static str, &'static str),
    ) -> Result<Option<KeyPair>, ConfigError> {
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(Some(KeyPair {
                cert: cert.clone(),
                key: key.clone(),
            })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(ConfigError::TlsFlag(flags.0, flags.1)),
            (None, Some(_)) => Err(ConfigError::TlsFlag(flags.1, flags.0)),
        }
    }

    /// The client side, loaded; `None` without --tls. A TLS flag on the command line without
    /// --tls is an error rather than a silent plaintext run; the same setting from the
    /// environment alone is not (a chart sets the mount's paths whether or not TLS is on, and
    /// `VALKEY_COORDINATOR_TLS` says which).
    pub fn client(&self) -> Result<Option<ClientTls>, ConfigError> {
        if !self.tls {
            let given = [
                (
                    "VALKEY_COORDINATOR_TLS_CA_CERT_FILE",
                    &self.tls_ca_cert_file,
                ),
                ("VALKEY_COORDINATOR_TLS_CERT_FILE", &self.tls_cert_file),
                ("VALKEY_COORDINATOR_TLS_KEY_FILE", &self.tls_key_file),
                (
                    "VALKEY_COORDINATOR_TLS_CLIENT_CERT_FILE",
                    &self.tls_client_cert_file,
                ),
                (
                    "VALKEY_COORDINATOR_TLS_CLIENT_KEY_FILE",
                    &self.tls_client_key_file,
                ),
            ];
            let on_command_line = given.iter().any(|(env, file)| {
                file.as_ref().is_some_and(|file| {
                    std::env::var_os(env).map(PathBuf::from).as_ref() != Some(file)
                })
            }) || self.tls_server_name.as_ref().is_some_and(|name| {
                std::env::var("VALKEY_COORDINATOR_TLS_SERVER_NAME")
                    .ok()
                    .as_ref()
                    != Some(name)
            });
            if on_command_line {
                return Err(ConfigError::TlsOff);
            }
            return Ok(None);
        }
        let ca = self
            .tls_ca_cert_file
            .clone()
            .ok_or(ConfigError::TlsFlag("tls", "tls-ca-cert-file"))?;
        let own = Self::pair(
            &self.tls_cert_file,
            &self.tls_key_file,
            ("tls-cert-file", "tls-key-file"),
        )?;
        let client = Self::pair(
            &self.tls_client_cert_file,
            &self.tls_client_key_file,
            ("tls-client-cert-file", "tls-client-key-file"),
        )?;
        Ok(Some(ClientTls::load(ClientFiles {
            ca,
            identity: client.or(own),
            server_name: self.tls_server_name.clone(),
        })?))
    }

    /// The server side of `serve`, loaded; `None` without --tls.
    pub fn server(&self, auth: ClientAuth) -> Result<Option<ServerTls>, ConfigError> {
        if !self.tls {
            return Ok(None);
        }
        let identity = Self::pair(
            &self.tls_cert_file,
            &self.tls_key_file,
            ("tls-cert-file", "tls-key-file"),
        )?
        .ok_or(ConfigError::TlsFlag("tls", "tls-cert-file"))?;
        Ok(Some(ServerTls::load(ServerFiles {
            identity,
            ca: self.tls_ca_cert_file.clone(),
            auth,
        })?))
    }
}

/// `--tls-auth-clients`, as Valkey's `tls-auth-clients`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TlsAuthClients {
    /// A client certificate chaining to the CA is required.
    Yes,
    /// A client certificate is verified when one is presented.
    Optional,
    /// No client certificate is asked for.
    No,
}

impl From<TlsAuthClients> for ClientAuth {
    fn from(value: TlsAuthClients) -> Self {
        match value {
            TlsAuthClients::Yes => ClientAuth::Required,
            TlsAuthClients::Optional => ClientAuth::Optional,
            TlsAuthClients::No => ClientAuth::Off,
        }
    }
}

/// The credentials an action may need, as `serve` takes them.
#[derive(Debug, Clone, Args)]
pub struct CredentialArgs {
    /// The user to authenticate as to the sentinels (the `default` user when absent).
    #[arg(long, value_name = "NAME", env = "VALKEY_COORDINATOR_SENTINEL_USER")]
    pub sentinel_user: Option<String>,

    /// A file holding the sentinels' password (or VALKEY_COORDINATOR_SENTINEL_PASSWORD).
    #[arg(
        long,
        value_name = "PATH",
        env = "VALKEY_COORDINATOR_SENTINEL_PASSWORD_FILE"
    )]
    pub sentinel_password_file: Option<PathBuf>,

    /// The ACL user to authenticate as to the data pods (the `default` user when absent).
    #[arg(long, value_name = "NAME", env = "VALKEY_COORDINATOR_DATA_USER")]
    pub data_user: Option<String>,

    /// A file holding the data pods' password (or VALKEY_COORDINATOR_DATA_PASSWORD).
    #[arg(
        long,
        value_name = "PATH",
        env = "VALKEY_COORDINATOR_DATA_PASSWORD_FILE"
    )]
    pub data_password_file: Option<PathBuf>,

    /// The user to authenticate as to the coordinators (the `default` user when absent).
    #[arg(long, value_name = "NAME", env = "VALKEY_COORDINATOR_COORDINATOR_USER")]
    pub coordinator_user: Option<String>,

    /// A file holding the coordinators' password (or VALKEY_COORDINATOR_COORDINATOR_PASSWORD).
    #[arg(
        long,
        value_name = "PATH",
        env = "VALKEY_COORDINATOR_COORDINATOR_PASSWORD_FILE"
    )]
    pub coordinator_password_file: Option<PathBuf>,
}

/// The `startup` flags.
#[derive(Debug, Clone, Args)]
pub struct StartupArgs {
    #[command(flatten)]
    pub action: ActionArgs,

    /// Where the decision is written (atomically) as valkey.conf directives; the server starts
    /// with `include PATH`.
    #[arg(long, value_name = "PATH", env = "VALKEY_COORDINATOR_WRITE_CONFIG")]
    pub write_config: PathBuf,

    /// The pod's own replica-priority once it has synced (it starts at 0, never promotable
    /// before its first sync).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 100,
        env = "VALKEY_COORDINATOR_REPLICA_PRIORITY"
    )]
    pub replica_priority: u64,
}

/// The `role-probe` flags.
#[derive(Debug, Clone, Args)]
pub struct RoleProbeArgs {
    #[command(flatten)]
    pub action: ActionArgs,

    /// The file `startup` wrote for this pod: while it still holds the unsynced replica's
    /// priority 0, the probe raises the pod to --replica-priority once it has synced.
    #[arg(long, value_name = "PATH", env = "VALKEY_COORDINATOR_STARTUP_CONFIG")]
    pub startup_config: Option<PathBuf>,

    /// The pod's configured replica-priority (0: never promote, and never raised).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 100,
        env = "VALKEY_COORDINATOR_REPLICA_PRIORITY"
    )]
    pub replica_priority: u64,
}

/// The `switchover` flags.
#[derive(Debug, Clone, Args)]
pub struct SwitchoverArgs {
    #[command(flatten)]
    pub action: ActionArgs,

    /// The pod to promote, HOST[:PORT] (port 6379 when absent); any eligible replica when absent.
    #[arg(value_parser = data_pod_addr, long, value_name = "HOST[:PORT]", env = "VALKEY_COORDINATOR_CANDIDATE")]
    pub candidate: Option<Addr>,

    /// Where captured replica priorities are kept, so a run killed mid-way and run again
    /// restores them.
    #[arg(long, value_name = "PATH", env = "VALKEY_COORDINATOR_STATE_FILE")]
    pub state_file: Option<PathBuf>,
}

/// The `status` flags.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub action: ActionArgs,

    /// Print JSON instead of a table.
    #[arg(long, env = "VALKEY_COORDINATOR_STATUS_JSON")]
    pub json: bool,
}

/// The `account-provision` flags (KubeBlocks passes KB_ACCOUNT_NAME, KB_ACCOUNT_PASSWORD and
/// KB_ACCOUNT_STATEMENT; the addon's script hands them over as these).
#[derive(Debug, Clone, Args)]
pub struct AccountArgs {
    #[command(flatten)]
    pub action: ActionArgs,

    /// The ACL user to set or delete.
    #[arg(
        long = "account-name",
        value_name = "NAME",
        env = "VALKEY_COORDINATOR_ACCOUNT_NAME"
    )]
    pub name: String,

    /// The account's ACL rules (what follows `ACL SETUSER <name>`, without a password), or the
    /// single word `delete`.
    #[arg(
        long = "account-statement",
        value_name = "RULES",
        env = "VALKEY_COORDINATOR_ACCOUNT_STATEMENT"
    )]
    pub statement: String,

    /// A file holding the account's password (or VALKEY_COORDINATOR_ACCOUNT_PASSWORD).
    #[arg(
        long = "account-password-file",
        value_name = "PATH",
        env = "VALKEY_COORDINATOR_ACCOUNT_PASSWORD_FILE"
    )]
    pub password_file: Option<PathBuf>,
}

impl AccountArgs {
    /// The account, its password loaded.
    pub fn account(&self) -> Result<lifecycle::account::Account, ConfigError> {
        let password = env_or_file(
            "the account password",
            "VALKEY_COORDINATOR_ACCOUNT_PASSWORD",
            self.password_file.as_deref(),
        )?;
        let change = lifecycle::account::plan(&self.statement)
            .map_err(|error| ConfigError::Account(error.to_string()))?;
        Ok(lifecycle::account::Account {
            name: self.name.clone(),
            password,
            change,
        })
    }
}

/// The `reconfigure` flags.
#[derive(Debug, Clone, Args)]
pub struct ReconfigureArgs {
    #[command(flatten)]
    pub action: ActionArgs,

    /// An updated config file to apply (repeat).
    #[arg(
        long = "config-file",
        value_name = "PATH",
        env = "VALKEY_COORDINATOR_CONFIG_FILE",
        value_delimiter = ','
    )]
    pub config_files: Vec<PathBuf>,

    /// The updated files as KubeBlocks names them in KB_CONFIG_FILES_UPDATED
    /// (`path:sha256,...`).
    #[arg(
        long = "updated-files",
        value_name = "LIST",
        env = "VALKEY_COORDINATOR_UPDATED_FILES"
    )]
    pub updated_files: Option<String>,
}

impl ReconfigureArgs {
    /// Every file named either way.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = self.config_files.clone();
        if let Some(updated) = &self.updated_files {
            files.extend(lifecycle::reconfigure::updated_files(updated));
        }
        files
    }
}

impl ActionArgs {
    /// Loads the secrets and describes the group.
    pub fn into_target(self) -> Result<(Target, Budget), ConfigError> {
        if self.timeout_ms == 0 {
            return Err(ConfigError::Zero("timeout-ms"));
        }
        let credentials = self.credentials;
        let load = env_or_file;
        let sentinel = load(
            "the sentinel password",
            "VALKEY_COORDINATOR_SENTINEL_PASSWORD",
            credentials.sentinel_password_file.as_deref(),
        )?;
        let data = load(
            "the data pods' password",
            "VALKEY_COORDINATOR_DATA_PASSWORD",
            credentials.data_password_file.as_deref(),
        )?;
        let coordinator = load(
            "the coordinators' password",
            "VALKEY_COORDINATOR_COORDINATOR_PASSWORD",
            credentials.coordinator_password_file.as_deref(),
        )?;
        let with_user = |user: Option<String>, password: Option<Secret>| {
            password.map(|password| Credentials { user, password })
        };
        let tls = self.tls.client()?;
        let access = |credentials| Access {
            credentials,
            tls: tls.clone(),
        };
        let mut target = Target::new(self.master_name, self.sentinels, self.data_pods);
        target.pod = self.pod;
        target.coordinators = self.coordinators;
        target.sentinel_access = access(with_user(credentials.sentinel_user, sentinel));
        target.data_access = access(with_user(credentials.data_user, data));
        target.coordinator_access = access(with_user(credentials.coordinator_user, coordinator));
        Ok((target, Budget::new(Duration::from_millis(self.timeout_ms))))
    }
}

/// A password from its environment variable or its file (never from the command line, which
/// every local user can read); an empty variable counts as unset.
fn env_or_file(
    what: &'static str,
    env: &str,
    file: Option<&std::path::Path>,
) -> Result<Option<Secret>, SecretError> {
    let inline = std::env::var(env).ok().filter(|value| !value.is_empty());
    secret::inline_or_file(what, inline.as_deref(), file)
}

/// The `demo` flags.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The Valkey build the lab runs, as installed by tests/install-valkey.sh.
    #[arg(
        long = "valkey-version",
        value_name = "VERSION",
        default_value = "9.1.2",
        value_parser = ["8.0.1", "8.1.8", "9.1.2"],
        env = "VALKEY_COORDINATOR_DEMO_VALKEY_VERSION"
    )]
    pub valkey_version: String,

    /// Where the demo's coordinator listens for sentinel-aware clients; by default
    /// 127.0.0.1:26379, or the first free port after it when a sentinel already has it.
    #[arg(long, value_name = "ADDR", env = "VALKEY_COORDINATOR_DEMO_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Move the master with the `switchover` action once the group has settled, to show a
    /// planned hand-over.
    #[arg(long, env = "VALKEY_COORDINATOR_DEMO_FAILOVER")]
    pub failover: bool,

    /// Show every verdict in full and every event of the tap, not only changes.
    #[arg(long, short, env = "VALKEY_COORDINATOR_DEMO_VERBOSE")]
    pub verbose: bool,

    /// Stop by itself after this many seconds (for scripted runs); runs until Ctrl-C otherwise.
    #[arg(
        long = "for",
        value_name = "SECONDS",
        env = "VALKEY_COORDINATOR_DEMO_FOR"
    )]
    pub run_for: Option<u64>,
}

/// How log lines are written (to stderr). The level comes from `VALKEY_COORDINATOR_LOG`, else
/// `RUST_LOG` (a tracing env-filter such as `debug` or `valkey_coordinator=debug`; `info` by
/// default for `serve`, `warn` for the lifecycle actions).
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

    /// A sentinel to follow, HOST[:PORT] (port 26379 when absent; repeat, or comma-separate in
    /// the environment). Majorities are of this list's length, so list every sentinel,
    /// reachable or not.
    #[arg(
        value_parser = sentinel_addr,
        long = "sentinel",
        value_name = "HOST[:PORT]",
        required = true,
        value_delimiter = ',',
        env = "VALKEY_COORDINATOR_SENTINEL"
    )]
    pub sentinels: Vec<Addr>,

    /// Where sentinel-aware clients connect, IP[:PORT] (port 26379 when absent, so a pod can
    /// pass its bare pod IP). Loopback unless an address is given.
    #[arg(
        long,
        value_name = "IP[:PORT]",
        default_value = DEFAULT_LISTEN,
        value_parser = client_listen,
        env = "VALKEY_COORDINATOR_LISTEN"
    )]
    pub listen: SocketAddr,

    /// Another coordinator instance, HOST[:PORT] (port 26379 when absent; repeat): what
    /// `SENTINEL SENTINELS` lists, so clients that refresh their sentinel list keep talking to
    /// coordinators.
    #[arg(
        value_parser = coordinator_addr,
        long = "peer",
        value_name = "HOST[:PORT]",
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

    /// A file holding the default user's password, for clients (or VALKEY_COORDINATOR_REQUIREPASS;
    /// never on the command line; one trailing newline is ignored).
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

    /// A file holding the sentinels' password (or VALKEY_COORDINATOR_SENTINEL_PASSWORD).
    #[arg(
        long,
        value_name = "PATH",
        env = "VALKEY_COORDINATOR_SENTINEL_PASSWORD_FILE"
    )]
    pub sentinel_password_file: Option<PathBuf>,

    #[command(flatten)]
    pub tls: TlsArgs,

    /// With --tls: whether clients must present a certificate chaining to
    /// --tls-ca-cert-file (Valkey's `tls-auth-clients`).
    #[arg(
        long,
        value_enum,
        default_value_t = TlsAuthClients::Yes,
        env = "VALKEY_COORDINATOR_TLS_AUTH_CLIENTS",
        help_heading = "TLS"
    )]
    pub tls_auth_clients: TlsAuthClients,

    /// With --tls: a second client port speaking plaintext, IP[:PORT], only when asked for
    /// (clients that cannot speak TLS, on a trusted network).
    #[arg(
        long,
        value_name = "IP[:PORT]",
        value_parser = client_listen,
        env = "VALKEY_COORDINATOR_PLAINTEXT_LISTEN",
        help_heading = "TLS"
    )]
    pub plaintext_listen: Option<SocketAddr>,

    /// How often the TLS files are checked for a rotation, in milliseconds (SIGHUP checks at
    /// once); new connections use a rotated certificate, established ones keep theirs.
    #[arg(long, value_name = "MS", default_value_t = duration_ms(service::DEFAULT_TLS_RELOAD), env = "VALKEY_COORDINATOR_TLS_RELOAD_MS", help_heading = "TLS")]
    pub tls_reload_ms: u64,

    /// Where Prometheus scrapes `GET /metrics` (and probes `/healthz`, `/readyz`), IP[:PORT]
    /// (port 9121 when absent); no metrics endpoint when absent.
    #[arg(
        long,
        value_name = "IP[:PORT]",
        value_parser = metrics_listen,
        env = "VALKEY_COORDINATOR_METRICS_LISTEN"
    )]
    pub metrics_listen: Option<SocketAddr>,

    /// How long a sentinel's answer counts towards a majority, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = duration_ms(verdict::DEFAULT_FRESHNESS), env = "VALKEY_COORDINATOR_FRESHNESS_MS")]
    pub freshness_ms: u64,

    /// How often each sentinel is polled, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = duration_ms(links::DEFAULT_POLL_INTERVAL), env = "VALKEY_COORDINATOR_POLL_INTERVAL_MS")]
    pub poll_interval_ms: u64,

    /// The deadline of one poll round against one sentinel, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = duration_ms(links::DEFAULT_QUERY_TIMEOUT), env = "VALKEY_COORDINATOR_QUERY_TIMEOUT_MS")]
    pub query_timeout_ms: u64,

    /// Clients served at once; one more is told so and closed.
    #[arg(long, value_name = "N", default_value_t = server::DEFAULT_MAX_CLIENTS, env = "VALKEY_COORDINATOR_MAX_CLIENTS")]
    pub max_clients: usize,

    /// Threads the client connections run on, each single-threaded, a connection kept on one
    /// for its life; 0 runs them on the service's own runtime. One, the default, spends per
    /// request what a sentinel does (a request never wakes a second thread); more deliver a
    /// tap message to many subscribers on as many cores at once, at some CPU per request when
    /// the cores are busy anyway (bench/run.sh measures both).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        env = "VALKEY_COORDINATOR_CLIENT_THREADS"
    )]
    pub client_threads: usize,

    /// How long an established, unsubscribed client may stay silent, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = duration_ms(server::DEFAULT_IDLE_TIMEOUT), env = "VALKEY_COORDINATOR_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: u64,

    /// How long a graceful shutdown may take, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = duration_ms(service::DEFAULT_SHUTDOWN_GRACE), env = "VALKEY_COORDINATOR_SHUTDOWN_GRACE_MS")]
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

    /// A data pod, HOST[:PORT] (port 6379 when absent; repeat): asked for its replication
    /// state when every sentinel lost its monitor, so the monitors can be rebuilt on the
    /// master the pods prove.
    #[arg(
        value_parser = data_pod_addr,
        long = "data-pod",
        value_name = "HOST[:PORT]",
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

    /// A file holding the password sentinels use for the data pods, `auth-pass` (or
    /// VALKEY_COORDINATOR_DATA_PASSWORD).
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

/// A listening address: `IP:PORT`, `[v6]:PORT`, or a bare IP (v4 or v6) with `default_port`.
fn listen_addr(raw: &str, default_port: u16) -> Result<SocketAddr, String> {
    let raw = raw.trim();
    if let Ok(socket) = raw.parse::<SocketAddr>() {
        return Ok(socket);
    }
    let bare = raw.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, default_port))
        .map_err(|_| format!("{raw:?} is neither IP:PORT nor an IP"))
}

/// `--listen`: port 26379 when absent.
fn client_listen(raw: &str) -> Result<SocketAddr, String> {
    listen_addr(raw, 26379)
}

/// `--metrics-listen`: port 9121 when absent.
fn metrics_listen(raw: &str) -> Result<SocketAddr, String> {
    listen_addr(raw, 9121)
}

/// A sentinel's address; a bare host (as Kubernetes lists pod FQDNs) means port 26379.
fn sentinel_addr(raw: &str) -> Result<Addr, crate::addr::AddrError> {
    Addr::parse_with_default_port(raw, 26379)
}

/// A coordinator's address; a bare host means port 26379, the port it serves clients on.
fn coordinator_addr(raw: &str) -> Result<Addr, crate::addr::AddrError> {
    Addr::parse_with_default_port(raw, 26379)
}

/// A data pod's address; a bare host means port 6379.
fn data_pod_addr(raw: &str) -> Result<Addr, crate::addr::AddrError> {
    Addr::parse_with_default_port(raw, 6379)
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
            return Err("the default user's password is --requirepass-file".to_owned());
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
    #[error("the data pods' password must be UTF-8")]
    DataPasswordNotUtf8,
    #[error("--{0} must be greater than zero")]
    Zero(&'static str),
    #[error("{0}")]
    Account(String),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("--{0} needs --{1}")]
    TlsFlag(&'static str, &'static str),
    #[error("TLS files are given but --tls is not: refusing to run in plaintext")]
    TlsOff,
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
            ("tls-reload-ms", self.tls_reload_ms),
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
            None => RunId::random().as_str().to_owned(),
        };

        let mut users = Users::default();
        if let Some(password) = env_or_file(
            "the clients' password",
            "VALKEY_COORDINATOR_REQUIREPASS",
            self.requirepass_file.as_deref(),
        )? {
            users.requirepass = Some(server::Password::new(password.expose()));
        }
        for user in self.users {
            let password = Secret::from_file(&user.password_file)?;
            users = users.with_user(user.name, password.expose(), user.permissions);
        }

        let sentinel_password = env_or_file(
            "the sentinel password",
            "VALKEY_COORDINATOR_SENTINEL_PASSWORD",
            self.sentinel_password_file.as_deref(),
        )?;
        let credentials = sentinel_password.map(|password| Credentials {
            user: self.sentinel_user,
            password,
        });

        let client_tls = self.tls.client()?;
        let listen_tls = self.tls.server(self.tls_auth_clients.into())?;
        if self.plaintext_listen.is_some() && listen_tls.is_none() {
            return Err(ConfigError::TlsFlag("plaintext-listen", "tls"));
        }
        let mut upstream = UpstreamConfig::new(self.sentinels, self.master_names);
        upstream.access = Access {
            credentials,
            tls: client_tls.clone(),
        };
        upstream.freshness = Duration::from_millis(self.freshness_ms);
        upstream.poll_interval = Duration::from_millis(self.poll_interval_ms);
        upstream.query_timeout = Duration::from_millis(self.query_timeout_ms);

        let heal = if self.no_heal {
            None
        } else {
            let data_password = env_or_file(
                "the data pods' password",
                "VALKEY_COORDINATOR_DATA_PASSWORD",
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
        server.client_threads = self.client_threads;
        server.idle_timeout = Duration::from_millis(self.idle_timeout_ms);
        server.master_access = Access {
            credentials: None,
            tls: client_tls,
        };

        Ok(ServiceConfig {
            listen: self.listen,
            metrics_listen: self.metrics_listen,
            listen_tls,
            plaintext_listen: self.plaintext_listen,
            tls_reload: Duration::from_millis(self.tls_reload_ms),
            upstream,
            server,
            heal,
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_documents_every_flag_with_its_environment_variable() {
        use clap::CommandFactory;
        let mut command = Cli::command();
        for subcommand in [
            "serve",
            "demo",
            "startup",
            "role-probe",
            "member-leave",
            "switchover",
            "status",
        ] {
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

    fn serve_config(extra: &[&str]) -> Result<ServiceConfig, ConfigError> {
        let mut argv = vec![
            "valkey-coordinator",
            "serve",
            "--master-name",
            "mymaster",
            "--sentinel",
            "127.0.0.1",
        ];
        argv.extend_from_slice(extra);
        let cli = Cli::try_parse_from(argv).expect("the flags parse");
        let Command::Serve(serve) = cli.command else {
            panic!("serve")
        };
        serve.into_config()
    }

    #[test]
    fn tls_flags_without_tls_or_without_their_partner_are_refused_rather_than_run_in_plaintext() {
        let refused = |extra: &[&str], expected: &str| {
            let error = serve_config(extra).expect_err("refused");
            assert!(error.to_string().contains(expected), "{error}");
        };
        refused(
            &["--tls-ca-cert-file", "/ca.crt"],
            "refusing to run in plaintext",
        );
        refused(
            &["--tls-server-name", "valkey"],
            "refusing to run in plaintext",
        );
        refused(&["--tls"], "--tls needs --tls-ca-cert-file");
        refused(
            &[
                "--tls",
                "--tls-ca-cert-file",
                "/ca.crt",
                "--tls-cert-file",
                "/tls.crt",
            ],
            "--tls-cert-file needs --tls-key-file",
        );
        refused(
            &["--plaintext-listen", "127.0.0.1:26380"],
            "--plaintext-listen needs --tls",
        );
        // Every flag parsed: what remains is the file that is not there, named.
        refused(
            &["--tls", "--tls-ca-cert-file", "/nonexistent/ca.crt"],
            "/nonexistent/ca.crt",
        );
        assert!(serve_config(&[]).is_ok(), "plaintext stays the default");
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
}
