//! Config files for data pods and sentinels, rendered fresh at every start.
//!
//! A managed pod gets its config from a template at each start (only its data directory
//! persists), so the lab does the same: a data pod's `valkey.conf` is rewritten from the lab's
//! spec plus its start role; a sentinel's `sentinel.conf` lives in its own directory (the
//! "emptyDir"), rendered once and then owned by the sentinel, which rewrites it.
//!
//! A TLS lab is TLS-only: `port 0` closes the plaintext listener and the standard port becomes
//! `tls-port`; `tls-replication yes` makes every outgoing link TLS (a replica's link to its
//! master; a sentinel's links to data pods and to other sentinels), and `tls-auth-clients yes`
//! requires a certificate from every client, peers included.

use std::{fmt::Write as _, net::SocketAddr, path::Path, time::Duration};

use crate::{
    acl::{self, AclUser},
    tls::TlsFiles,
    version::ValkeyVersion,
};

/// Sentinel timings per master; short by default so failovers take seconds.
///
/// Why `down-after-milliseconds` is 2000 and not 1000: a sentinel reconnects an instance link at
/// most once per second (`SENTINEL_PING_PERIOD`), and after `+switch-master` it resets the link
/// to the new master and starts its ping clock at once. With 1000 ms the first PONG can arrive
/// after the deadline; the new master is then `+sdown`, and because the peers' last
/// `is-master-down` answers (about the old master) are still cached, immediately `+odown`: a
/// second failover promotes another replica while the first new master keeps answering master
/// until converted about 8 s later. Measured in this lab: 2 of 5 full-suite runs on a loaded
/// 2-core machine. 2000 ms leaves the reconnect a second of slack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelTimings {
    /// `down-after-milliseconds`.
    pub down_after: Duration,
    /// `failover-timeout`.
    pub failover_timeout: Duration,
    /// `parallel-syncs`.
    pub parallel_syncs: u32,
}

impl Default for SentinelTimings {
    fn default() -> Self {
        SentinelTimings {
            down_after: Duration::from_millis(2000),
            failover_timeout: Duration::from_millis(5000),
            parallel_syncs: 1,
        }
    }
}

/// Users and passwords of a lab with authentication.
///
/// * Data pods: `requirepass` for the `default` user, and a dedicated sentinel ACL user.
///   Replicas authenticate to their master as `default` (`masterauth`), or as
///   [`Self::replication_user`] if set.
/// * Sentinels: `sentinel auth-user/auth-pass` with the sentinel user; if
///   [`Self::sentinel_password`] is set, the sentinels themselves require it (`requirepass`) and
///   use it towards each other (`sentinel sentinel-pass`), unless [`Self::sentinel_peer_user`]
///   names one of [`Self::sentinel_acl_users`] for that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSpec {
    /// Password of the data pods' `default` user.
    pub default_password: String,
    /// ACL user the sentinels log in to the data pods with.
    pub sentinel_user: String,
    /// Its password.
    pub sentinel_user_password: String,
    /// Its ACL rules (after `on >password`), e.g. `allchannels +@all`.
    pub sentinel_user_rules: String,
    /// Optional replication user `(name, password)`, created with `+@all`-free replication rules
    /// (`+psync +replconf +ping`); `None` replicates as `default`.
    pub replication_user: Option<(String, String)>,
    /// Password clients and peers need to talk to the sentinels; `None` leaves them open.
    pub sentinel_password: Option<String>,
    /// ACL users every sentinel defines (`user` lines of its config), e.g. the coordinator's.
    pub sentinel_acl_users: Vec<AclUser>,
    /// The one of [`Self::sentinel_acl_users`] the sentinels log in to each other as (`sentinel
    /// sentinel-user`/`sentinel-pass`); `None`: the `default` user with
    /// [`Self::sentinel_password`].
    pub sentinel_peer_user: Option<String>,
}

impl AuthSpec {
    /// A spec with generated passwords and a sentinel user allowed everything.
    pub fn simple() -> Self {
        AuthSpec {
            default_password: "lab-default-pw".into(),
            sentinel_user: "sentinel".into(),
            sentinel_user_password: "lab-sentinel-user-pw".into(),
            sentinel_user_rules: "allchannels +@all".into(),
            replication_user: None,
            sentinel_password: None,
            sentinel_acl_users: Vec::new(),
            sentinel_peer_user: None,
        }
    }

    /// Every link with only what it needs (see [`crate::acl`]): the data pods' sentinel user
    /// with [`acl::sentinel_user::rules`] for `version`; sentinels that require a password of
    /// their `default` user (the lab's own admin clients), log in to each other as
    /// [`acl::PEER_USER`] and define [`acl::COORDINATOR_USER`] for the coordinator.
    pub fn least_privilege(version: ValkeyVersion) -> Self {
        AuthSpec {
            sentinel_user: acl::SENTINEL_USER.into(),
            sentinel_user_rules: acl::sentinel_user_rules(version),
            sentinel_password: Some("lab-sentinel-admin-pw".into()),
            sentinel_acl_users: vec![
                AclUser::new(
                    acl::COORDINATOR_USER,
                    "lab-coordinator-pw",
                    acl::coordinator_user::RULES,
                ),
                AclUser::new(
                    acl::PEER_USER,
                    "lab-sentinel-peer-pw",
                    acl::peer_user::RULES,
                ),
            ],
            sentinel_peer_user: Some(acl::PEER_USER.into()),
            ..AuthSpec::simple()
        }
    }

    /// One of [`Self::sentinel_acl_users`], by name.
    pub fn sentinel_acl_user(&self, name: &str) -> Option<&AclUser> {
        self.sentinel_acl_users
            .iter()
            .find(|user| user.name == name)
    }
}

/// How a data pod starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartRole {
    /// No `replicaof`: the pod starts as a master.
    Master,
    /// `replicaof <addr>`: the pod starts as a replica of that master.
    ReplicaOf(SocketAddr),
    /// No `replicaof` of the lab's own: the config ends with `include` of the pod's
    /// [`INCLUDE_FILE`] (see `Lab::include_path`), which the test writes before the start, as a
    /// managed pod's start script has the startup action write its role.
    Included,
}

/// The file a data pod started with [`StartRole::Included`] includes, in its data directory.
pub const INCLUDE_FILE: &str = "startup.conf";

pub(crate) struct DataConfig<'a> {
    pub addr: SocketAddr,
    pub dir: &'a Path,
    pub role: StartRole,
    pub auth: Option<&'a AuthSpec>,
    pub rdb: bool,
    pub tls: Option<&'a TlsFiles>,
    pub extra: &'a [String],
}

pub(crate) fn render_data(c: &DataConfig<'_>) -> String {
    let ip = c.addr.ip();
    let mut s = String::new();
    let _ = writeln!(s, "# rendered by valkey-lab");
    let _ = writeln!(s, "bind {ip}");
    listen_lines(&mut s, c.addr.port(), c.tls);
    // Without these three every pod announces 127.0.0.1 and they all collide.
    let _ = writeln!(s, "replica-announce-ip {ip}");
    let _ = writeln!(s, "bind-source-addr {ip}");
    let _ = writeln!(s, "protected-mode no");
    let _ = writeln!(s, "daemonize no");
    let _ = writeln!(s, "logfile \"\"");
    let _ = writeln!(s, "dir {}", c.dir.display());
    let _ = writeln!(s, "dbfilename dump.rdb");
    if c.rdb {
        let _ = writeln!(s, "save 3600 1 300 100 60 10000");
    } else {
        let _ = writeln!(s, "save \"\"");
    }
    let _ = writeln!(s, "appendonly no");
    let _ = writeln!(s, "repl-diskless-sync yes");
    let _ = writeln!(s, "repl-diskless-sync-delay 0");
    if let Some(auth) = c.auth {
        let _ = writeln!(s, "requirepass {}", conf_arg(&auth.default_password));
        let _ = writeln!(
            s,
            "user {} on {} {}",
            auth.sentinel_user,
            conf_arg(&format!(">{}", auth.sentinel_user_password)),
            auth.sentinel_user_rules
        );
        match &auth.replication_user {
            Some((user, password)) => {
                let rule = conf_arg(&format!(">{password}"));
                let _ = writeln!(s, "user {user} on {rule} +psync +replconf +ping");
                let _ = writeln!(s, "masteruser {user}");
                let _ = writeln!(s, "masterauth {}", conf_arg(password));
            }
            None => {
                let _ = writeln!(s, "masterauth {}", conf_arg(&auth.default_password));
            }
        }
    }
    if let StartRole::ReplicaOf(master) = c.role {
        let _ = writeln!(s, "replicaof {} {}", master.ip(), master.port());
    }
    for line in c.extra {
        let _ = writeln!(s, "{line}");
    }
    if c.role == StartRole::Included {
        // Last, so the included decision wins over everything above.
        let _ = writeln!(s, "include {}", c.dir.join(INCLUDE_FILE).display());
    }
    s
}

/// What a sentinel monitors.
pub(crate) struct Monitor<'a> {
    pub name: &'a str,
    pub master: SocketAddr,
    pub quorum: usize,
    pub timings: &'a SentinelTimings,
}

pub(crate) struct SentinelConfig<'a> {
    pub addr: SocketAddr,
    pub dir: &'a Path,
    pub monitor: Option<Monitor<'a>>,
    pub auth: Option<&'a AuthSpec>,
    pub tls: Option<&'a TlsFiles>,
    pub extra: &'a [String],
}

pub(crate) fn render_sentinel(c: &SentinelConfig<'_>) -> String {
    let ip = c.addr.ip();
    let mut s = String::new();
    let _ = writeln!(s, "# rendered by valkey-lab");
    let _ = writeln!(s, "bind {ip}");
    listen_lines(&mut s, c.addr.port(), c.tls);
    let _ = writeln!(s, "bind-source-addr {ip}");
    let _ = writeln!(s, "sentinel announce-ip {ip}");
    let _ = writeln!(s, "protected-mode no");
    let _ = writeln!(s, "daemonize no");
    let _ = writeln!(s, "logfile \"\"");
    let _ = writeln!(s, "dir {}", c.dir.display());
    if let Some(auth) = c.auth {
        for user in &auth.sentinel_acl_users {
            let secret = conf_arg(&format!(">{}", user.password));
            let _ = writeln!(s, "user {} on {secret} {}", user.name, user.rules);
        }
        let peer = auth
            .sentinel_peer_user
            .as_deref()
            .and_then(|name| auth.sentinel_acl_user(name));
        if let Some(password) = &auth.sentinel_password {
            let _ = writeln!(s, "requirepass {}", conf_arg(password));
            if peer.is_none() {
                let _ = writeln!(s, "sentinel sentinel-pass {}", conf_arg(password));
            }
        }
        if let Some(peer) = peer {
            let _ = writeln!(s, "sentinel sentinel-user {}", conf_arg(&peer.name));
            let _ = writeln!(s, "sentinel sentinel-pass {}", conf_arg(&peer.password));
        }
    }
    if let Some(m) = &c.monitor {
        for line in monitor_lines(m, c.auth) {
            let line: Vec<String> = line.iter().map(|arg| conf_arg(arg)).collect();
            let _ = writeln!(s, "sentinel {}", line.join(" "));
        }
    }
    for line in c.extra {
        let _ = writeln!(s, "{line}");
    }
    s
}

/// The listener: plaintext on `port`, or TLS only on `port` with the pod's volume (data pods and
/// sentinels alike).
fn listen_lines(s: &mut String, port: u16, tls: Option<&TlsFiles>) {
    let Some(files) = tls else {
        let _ = writeln!(s, "port {port}");
        return;
    };
    let _ = writeln!(s, "port 0");
    let _ = writeln!(s, "tls-port {port}");
    let _ = writeln!(
        s,
        "tls-cert-file {}",
        conf_arg(&files.cert.display().to_string())
    );
    let _ = writeln!(
        s,
        "tls-key-file {}",
        conf_arg(&files.key.display().to_string())
    );
    let _ = writeln!(
        s,
        "tls-ca-cert-file {}",
        conf_arg(&files.ca.display().to_string())
    );
    let _ = writeln!(s, "tls-replication yes");
    let _ = writeln!(s, "tls-auth-clients yes");
}

/// One argument of a config line, quoted the way Valkey's config parser reads it back when it
/// holds anything but plain characters: test passwords carry spaces, quotes, `$`, `*` and `>`.
pub(crate) fn conf_arg(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/,@+".contains(&b));
    if plain {
        return value.to_owned();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for byte in value.bytes() {
        match byte {
            b'"' => quoted.push_str("\\\""),
            b'\\' => quoted.push_str("\\\\"),
            b' '..=b'~' => quoted.push(char::from(byte)),
            other => quoted.push_str(&format!("\\x{other:02x}")),
        }
    }
    quoted.push('"');
    quoted
}

/// The `SENTINEL ...` arguments that register a monitor: `MONITOR` first, then every `SET`. The
/// same list renders the config file and is sent at runtime to a wiped sentinel.
pub(crate) fn monitor_lines(m: &Monitor<'_>, auth: Option<&AuthSpec>) -> Vec<Vec<String>> {
    let name = m.name.to_string();
    let mut lines = vec![
        vec![
            "monitor".into(),
            name.clone(),
            m.master.ip().to_string(),
            m.master.port().to_string(),
            m.quorum.to_string(),
        ],
        vec![
            "down-after-milliseconds".into(),
            name.clone(),
            m.timings.down_after.as_millis().to_string(),
        ],
        vec![
            "failover-timeout".into(),
            name.clone(),
            m.timings.failover_timeout.as_millis().to_string(),
        ],
        vec![
            "parallel-syncs".into(),
            name.clone(),
            m.timings.parallel_syncs.to_string(),
        ],
    ];
    if let Some(auth) = auth {
        lines.push(vec![
            "auth-user".into(),
            name.clone(),
            auth.sentinel_user.clone(),
        ]);
        lines.push(vec![
            "auth-pass".into(),
            name,
            auth.sentinel_user_password.clone(),
        ]);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_announces_and_binds_its_own_address() {
        let addr: SocketAddr = "127.0.42.11:6379".parse().unwrap();
        let master: SocketAddr = "127.0.42.10:6379".parse().unwrap();
        let text = render_data(&DataConfig {
            addr,
            dir: Path::new("/tmp/x"),
            role: StartRole::ReplicaOf(master),
            auth: None,
            rdb: false,
            tls: None,
            extra: &[],
        });
        for line in [
            "bind 127.0.42.11",
            "port 6379",
            "replica-announce-ip 127.0.42.11",
            "bind-source-addr 127.0.42.11",
            "repl-diskless-sync-delay 0",
            "daemonize no",
            "save \"\"",
            "replicaof 127.0.42.10 6379",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("requirepass"));
    }

    #[test]
    fn an_included_role_ends_the_config_with_the_include_and_no_replicaof() {
        let text = render_data(&DataConfig {
            addr: "127.0.42.11:6379".parse().unwrap(),
            dir: Path::new("/tmp/x"),
            role: StartRole::Included,
            auth: None,
            rdb: false,
            tls: None,
            extra: &["maxmemory 1mb".to_string()],
        });
        assert_eq!(text.lines().last(), Some("include /tmp/x/startup.conf"));
        assert!(!text.contains("replicaof"), "{text}");
    }

    #[test]
    fn a_sentinel_monitors_with_auth_and_short_timings() {
        let auth = AuthSpec::simple();
        let timings = SentinelTimings::default();
        let text = render_sentinel(&SentinelConfig {
            addr: "127.0.42.100:26379".parse().unwrap(),
            dir: Path::new("/tmp/s"),
            monitor: Some(Monitor {
                name: "mymaster",
                master: "127.0.42.10:6379".parse().unwrap(),
                quorum: 2,
                timings: &timings,
            }),
            auth: Some(&auth),
            tls: None,
            extra: &[],
        });
        for line in [
            "sentinel announce-ip 127.0.42.100",
            "sentinel monitor mymaster 127.0.42.10 6379 2",
            "sentinel down-after-milliseconds mymaster 2000",
            "sentinel failover-timeout mymaster 5000",
            "sentinel auth-user mymaster sentinel",
            "sentinel auth-pass mymaster lab-sentinel-user-pw",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // The monitor must come before the options that name it.
        let monitor = text.find("sentinel monitor").unwrap();
        assert!(text.find("sentinel down-after").unwrap() > monitor);
    }

    #[test]
    fn a_least_privilege_sentinel_defines_its_users_and_logs_in_to_peers_as_one() {
        let auth = AuthSpec::least_privilege(ValkeyVersion::V9_1_2);
        let text = render_sentinel(&SentinelConfig {
            addr: "127.0.42.100:26379".parse().unwrap(),
            dir: Path::new("/tmp/s"),
            monitor: None,
            auth: Some(&auth),
            tls: None,
            extra: &[],
        });
        let coordinator = format!(
            "user coordinator on \">lab-coordinator-pw\" {}",
            acl::coordinator_user::RULES.join(" ")
        );
        for line in [
            coordinator.as_str(),
            "requirepass lab-sentinel-admin-pw",
            "sentinel sentinel-user sentinel-peer",
            "sentinel sentinel-pass lab-sentinel-peer-pw",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert_eq!(text.matches("sentinel-pass").count(), 1, "{text}");
        let data = render_data(&DataConfig {
            addr: "127.0.42.10:6379".parse().unwrap(),
            dir: Path::new("/tmp/x"),
            role: StartRole::Master,
            auth: Some(&auth),
            rdb: false,
            tls: None,
            extra: &[],
        });
        let user = format!(
            "user sentinel on \">lab-sentinel-user-pw\" {}",
            acl::sentinel_user::rules(ValkeyVersion::V9_1_2).join(" ")
        );
        assert!(data.lines().any(|l| l == user), "{data}");
        assert!(data.contains("+failover"), "{data}");
    }

    #[test]
    fn passwords_with_spaces_quotes_and_symbols_are_quoted_for_the_config_parser() {
        assert_eq!(conf_arg("lab-default-pw"), "lab-default-pw");
        assert_eq!(conf_arg(r#"a b"c\d$*>'"#), r#""a b\"c\\d$*>'""#);
        assert_eq!(conf_arg(""), r#""""#);
        assert_eq!(conf_arg("tab\there"), r#""tab\x09here""#);
    }

    #[test]
    fn a_wiped_sentinel_monitors_nothing() {
        let text = render_sentinel(&SentinelConfig {
            addr: "127.0.42.100:26379".parse().unwrap(),
            dir: Path::new("/tmp/s"),
            monitor: None,
            auth: None,
            tls: None,
            extra: &[],
        });
        assert!(!text.contains("monitor"), "{text}");
    }

    #[test]
    fn a_tls_pod_listens_on_the_standard_port_with_tls_only() {
        let files = TlsFiles {
            dir: "/lab/tls/valkey-0".into(),
            ca: "/lab/tls/valkey-0/ca.crt".into(),
            cert: "/lab/tls/valkey-0/tls.crt".into(),
            key: "/lab/tls/valkey-0/tls.key".into(),
        };
        let text = render_data(&DataConfig {
            addr: "127.0.42.10:6379".parse().unwrap(),
            dir: Path::new("/tmp/x"),
            role: StartRole::Master,
            auth: None,
            rdb: false,
            tls: Some(&files),
            extra: &[],
        });
        for line in [
            "port 0",
            "tls-port 6379",
            "tls-cert-file /lab/tls/valkey-0/tls.crt",
            "tls-key-file /lab/tls/valkey-0/tls.key",
            "tls-ca-cert-file /lab/tls/valkey-0/ca.crt",
            "tls-replication yes",
            "tls-auth-clients yes",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(!text.lines().any(|l| l == "port 6379"), "{text}");
    }
}
