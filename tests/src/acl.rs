//! Least-privilege ACL users, and the one place their rules are written.
//!
//! Three users, each given only what its holder sends, derived from the code that sends it
//! (Valkey's `src/sentinel.c` for the sentinels, `coordinator/src/sentinel/*.rs` and the
//! lifecycle actions for the coordinator) and proven against real servers, permission by
//! permission, in `tests/tests/acl_least_privilege.rs`: with the full list everything works,
//! and without any one permission the operation that needs it breaks in the way that file names.
//!
//! * [`sentinel_user`]: on every data pod, the user the sentinels log in as (`sentinel
//!   auth-user`). The coordinator reads the data pods with it too (`--data-user`: the healer's
//!   `INFO replication`, the role watch's `ROLE`), and so may `role-probe` and `status`.
//! * [`coordinator_user`]: on every sentinel, the user the coordinator (`serve`: links, poller,
//!   healer) and the lifecycle actions log in as.
//! * [`peer_user`]: on every sentinel, the user the other sentinels log in as (`sentinel
//!   sentinel-user`).
//!
//! A user is created with `ACL SETUSER` (see [`Lab::set_acl_user`]) or a `user` line of the
//! rendered config, never by loading a copied ACL file (`ACL LOAD` on a replica crashes some 8.0
//! releases). Every list starts from `resetchannels -@all` (what `ACL SETUSER ... reset`
//! leaves): a user gets no channel and no command it is not listed with.
//!
//! The lists live here rather than in the coordinator crate because the lab creates the users
//! and proves the lists, the coordinator's binary never needs them, and the lab cannot depend on
//! the coordinator (it is a dependency of the coordinator's `demo` feature); the README cites
//! this file.

use std::net::SocketAddr;

use crate::{
    client::Frame,
    error::{LabError, Result},
    lab::{Lab, PodId},
    replies,
    version::ValkeyVersion,
};

/// The user the sentinels log in to the data pods with.
pub const SENTINEL_USER: &str = "sentinel";
/// The user the coordinator and its lifecycle actions log in to the sentinels with.
pub const COORDINATOR_USER: &str = "coordinator";
/// The user the sentinels log in to each other with.
pub const PEER_USER: &str = "sentinel-peer";

/// What a sentinel sends a data pod (Valkey's `src/sentinel.c`, 8.0.1, 8.1 and 9.1.2), and the
/// coordinator's `ROLE`.
///
/// Not granted, although the sentinels send them, because refusing them breaks nothing (each was
/// removed from Valkey's documented sentinel ACL and the group still formed, failed over,
/// switched over and rediscovered itself): see [`sentinel_user::REFUSED`].
pub mod sentinel_user {
    use crate::version::ValkeyVersion;

    /// `SUBSCRIBE __sentinel__:hello` and `PUBLISH __sentinel__:hello` on every data pod: the
    /// only channel a sentinel uses there, narrowed from Valkey's documented `allchannels`.
    /// Without it the sentinels stop announcing themselves through the data pods, and after a
    /// `SENTINEL RESET` (or on a fresh group) they never find each other.
    pub const HELLO_CHANNEL: &str = "&__sentinel__:hello";
    /// `SUBSCRIBE __sentinel__:hello`, on the sentinel's second (pub/sub) link: how it hears
    /// the other sentinels' hello messages, which carry their addresses and the master's config
    /// epoch. Without it a reset sentinel never rediscovers its peers.
    pub const SUBSCRIBE: &str = "+subscribe";
    /// `PUBLISH __sentinel__:hello` every 2 s: how a sentinel tells the others it exists.
    /// Without it nobody hears anybody through the data pods.
    pub const PUBLISH: &str = "+publish";
    /// `PING` once a second: the liveness check. A refused `PING` is no valid reply, so every
    /// data pod is flagged `s_down` after `down-after-milliseconds`, healthy or not.
    pub const PING: &str = "+ping";
    /// `INFO` every 10 s (every second during a failover): the role, the replicas of a master
    /// and their offsets, the run id. Without it a sentinel lists no replica after a reset and
    /// cannot see a promotion. The coordinator's data-plane probe (`INFO replication`) and
    /// `role-probe` (`INFO replication`, `INFO server`) use the same user and need it too.
    pub const INFO: &str = "+info";
    /// `SLAVEOF NO ONE` to the promoted replica and `SLAVEOF <new master>` to the others and to
    /// a returning old master. Without it no failover completes.
    pub const SLAVEOF: &str = "+slaveof";
    /// `CLIENT KILL TYPE normal` and `CLIENT KILL TYPE pubsub` right after every `SLAVEOF`:
    /// clients still connected to a pod whose role changed are closed, so they reconnect and ask
    /// where the master is instead of reading `READONLY` (or writing to a demoted master).
    pub const CLIENT_KILL: &str = "+client|kill";
    /// `SCRIPT KILL` to a pod that answers `PING` with `BUSY` once it is `s_down`: a runaway
    /// script is stopped instead of failing the master over.
    pub const SCRIPT_KILL: &str = "+script|kill";
    /// `ROLE`: no sentinel sends it, but the coordinator does with this user (`--data-user`):
    /// `serve` asks every data pod every 2 s (`valkey_coordinator_data_pod_role`, what a
    /// split-brain alert reads), and `status` and `member-leave` read the pods' roles. Without
    /// it every pod reads as unreachable there.
    pub const ROLE: &str = "+role";
    /// Valkey 9: `FAILOVER TO <replica> TIMEOUT <ms>` to the old master in a `SENTINEL FAILOVER
    /// ... COORDINATED` (it hands over itself), and `FAILOVER ABORT` to a pod stuck in one
    /// (valkey#2779). Without it the old master never hands over: the leader aborts.
    pub const FAILOVER: &str = "+failover";
    /// Valkey 9: `CLIENT PAUSE <ms> WRITE` to the old master before its `FAILOVER TO`, so writes
    /// block until the clients are closed instead of being refused `READONLY` once it is a
    /// replica.
    pub const CLIENT_PAUSE: &str = "+client|pause";
    /// Valkey 9: `CLIENT UNPAUSE` after a coordinated failover, with the `CLIENT KILL`s.
    /// Without it the old master keeps blocking writes until the pause times out.
    pub const CLIENT_UNPAUSE: &str = "+client|unpause";

    /// Every version's rules.
    pub const ALL_VERSIONS: &[&str] = &[
        HELLO_CHANNEL,
        SUBSCRIBE,
        PUBLISH,
        PING,
        INFO,
        SLAVEOF,
        CLIENT_KILL,
        SCRIPT_KILL,
        ROLE,
    ];
    /// What Valkey 9's coordinated failover adds.
    pub const VALKEY_9: &[&str] = &[FAILOVER, CLIENT_PAUSE, CLIENT_UNPAUSE];

    /// What a sentinel sends but is refused, as `ACL LOG` names them (`object`), and why that
    /// is harmless:
    /// * `multi` and `exec`: the sentinel wraps its reconfigurations in a transaction whose
    ///   replies it discards; refused, the commands in between run one by one, in the same order
    ///   on the same connection.
    /// * `config|rewrite`: persists the new role in the pod's config file, which the lab (like
    ///   a managed pod) renders from the template at every start; the start script decides the
    ///   role.
    /// * `client|setname`: names the sentinel's connections in `CLIENT LIST`; a dedicated user
    ///   already tells them apart (`user=sentinel`).
    ///
    /// The cost: each refusal is an `ACL LOG` entry (counted, not repeated), and without the
    /// transaction a reconfiguration is no longer all or nothing. With `+multi +exec` granted,
    /// one refused command inside (a missing `+config|rewrite`, say) aborts the whole
    /// transaction (`EXECABORT`), the `SLAVEOF` with it, and so the failover; without them the
    /// permitted commands run. On Valkey 9 that also means a missing `+failover` leaves the old
    /// master write-paused until the pause the sentinel set times out.
    pub const REFUSED: &[&str] = &["multi", "exec", "config|rewrite", "client|setname"];

    /// The rules for `version`, in the order they are granted.
    pub fn rules(version: ValkeyVersion) -> Vec<&'static str> {
        let mut rules = ALL_VERSIONS.to_vec();
        if version.is_9() {
            rules.extend_from_slice(VALKEY_9);
        }
        rules
    }
}

/// What the coordinator (`serve`) and the lifecycle actions send a sentinel
/// (`coordinator/src/sentinel/{query,register,admin}.rs`, `service/links.rs`, `service/heal.rs`,
/// `lifecycle/*.rs`), the same on every version. The coordinator sends no `PING` and no
/// `PSUBSCRIBE`; `AUTH` needs no permission.
pub mod coordinator_user {
    /// `SENTINEL MASTER <name>`: every poll (links and surveys: the record, its epoch and
    /// flags), the healer's read-back, `member-leave`'s wait for the reset.
    pub const MASTER: &str = "+sentinel|master";
    /// `SENTINEL GET-MASTER-ADDR-BY-NAME <name>`: every poll (the master's address, verdict
    /// rule 8) and the healer's read-back.
    pub const GET_MASTER_ADDR: &str = "+sentinel|get-master-addr-by-name";
    /// `SENTINEL REPLICAS <name>`: every poll (`switchover`'s bias check and catch-up, the
    /// replicas served to clients).
    pub const REPLICAS: &str = "+sentinel|replicas";
    /// `SUBSCRIBE` to every event channel, on each link's second connection: events wake the
    /// poller and feed the event tap.
    pub const SUBSCRIBE: &str = "+subscribe";
    /// The event channels whose names start with `+` (`+switch-master`, `+sdown`, ...).
    pub const PLUS_CHANNELS: &str = "&+*";
    /// The event channels whose names start with `-` (`-sdown`, `-odown`, ...). With the
    /// previous pattern these are all the channels a sentinel publishes on but
    /// `__sentinel__:hello`.
    pub const MINUS_CHANNELS: &str = "&-*";
    /// `SENTINEL MONITOR`: the healer registers a wiped sentinel.
    pub const MONITOR: &str = "+sentinel|monitor";
    /// `SENTINEL SET`: the healer's every option (quorum, timings, `auth-user`, `auth-pass`).
    pub const SET: &str = "+sentinel|set";
    /// `SENTINEL REMOVE`: the healer's correction of a sentinel that names a wrong master.
    pub const REMOVE: &str = "+sentinel|remove";
    /// `SENTINEL CONFIG SET resolve-hostnames|announce-hostnames yes`: the healer, when the
    /// coordinator runs with `--resolve-hostnames` or `--announce-hostnames` (data pods by
    /// hostname, as in Kubernetes). Without those flags it is never sent.
    pub const CONFIG: &str = "+sentinel|config";
    /// `SENTINEL FAILOVER <name> [COORDINATED]`: `switchover` and `member-leave`, and the probe
    /// for `COORDINATED` (a failover of a name no sentinel monitors).
    pub const FAILOVER: &str = "+sentinel|failover";
    /// `INFO sentinel` before that failover: a sentinel in TILT takes it with `+OK` but runs
    /// nothing until TILT ends, so `switchover` and `member-leave` send it to one that is not.
    pub const INFO: &str = "+info";
    /// `SENTINEL RESET <name>`: `member-leave` of the master, so the sentinels forget the
    /// departed pod.
    pub const RESET: &str = "+sentinel|reset";

    /// The rules, in the order they are granted.
    pub const RULES: &[&str] = &[
        MASTER,
        GET_MASTER_ADDR,
        REPLICAS,
        SUBSCRIBE,
        PLUS_CHANNELS,
        MINUS_CHANNELS,
        MONITOR,
        SET,
        REMOVE,
        CONFIG,
        FAILOVER,
        INFO,
        RESET,
    ];
}

/// What a sentinel sends another sentinel (Valkey's `src/sentinel.c`): no `INFO` and no
/// `SUBSCRIBE` (those go to data pods only).
pub mod peer_user {
    /// `PING` once a second. Refused, the sentinels flag each other `s_down`.
    pub const PING: &str = "+ping";
    /// `PUBLISH __sentinel__:hello` straight to every known sentinel: how a sentinel that cannot
    /// hear a data pod's hello channel still learns a newer configuration (a failover) from its
    /// peers.
    pub const PUBLISH: &str = "+publish";
    /// The channel of those hello messages.
    pub const HELLO_CHANNEL: &str = "&__sentinel__:hello";
    /// `SENTINEL IS-MASTER-DOWN-BY-ADDR`: the `o_down` agreement and the leader election.
    /// Without it no sentinel ever reaches `o_down`, and a dead master is never failed over.
    pub const IS_MASTER_DOWN: &str = "+sentinel|is-master-down-by-addr";

    /// The rules, in the order they are granted.
    pub const RULES: &[&str] = &[PING, PUBLISH, HELLO_CHANNEL, IS_MASTER_DOWN];

    /// Sent and refused: `CLIENT SETNAME` (see [`super::sentinel_user::REFUSED`]).
    pub const REFUSED: &[&str] = &["client|setname"];
}

/// One ACL user with its password and rules (what follows `on >password`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclUser {
    /// The user name.
    pub name: String,
    /// Its password.
    pub password: String,
    /// Its rules, space separated, e.g. `+ping &__sentinel__:hello`.
    pub rules: String,
}

impl AclUser {
    /// A user with these rules.
    pub fn new(name: &str, password: &str, rules: &[&str]) -> Self {
        AclUser {
            name: name.into(),
            password: password.into(),
            rules: rules.join(" "),
        }
    }
}

/// The sentinel user's rules on the data pods for `version`, space separated.
pub fn sentinel_user_rules(version: ValkeyVersion) -> String {
    sentinel_user::rules(version).join(" ")
}

/// One entry of `ACL LOG`: a command, key or channel a user was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclDenial {
    /// `command`, `key`, `channel` or `auth`.
    pub reason: String,
    /// What was refused: `slaveof`, `client|kill`, a channel name, `AUTH`.
    pub object: String,
    /// Who asked.
    pub username: String,
    /// How many times (identical entries are counted, not repeated).
    pub count: u64,
}

impl std::fmt::Display for AclDenial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} refused {} {} (x{})",
            self.username, self.reason, self.object, self.count
        )
    }
}

// === impl Lab: ACL users ===

impl Lab {
    /// Sets `user` on pod `id` to exactly `rules` with `password`, in one command (`ACL SETUSER
    /// <user> reset on` then the password and the rules), so no moment has a half-set user.
    /// Existing connections of the user keep their session under the new rules (a revoked
    /// channel closes its subscribers, as Valkey does).
    pub async fn set_acl_user(
        &self,
        id: PodId,
        user: &str,
        password: &str,
        rules: &[&str],
    ) -> Result<()> {
        let mut client = self.client(id).await?;
        let secret = format!(">{password}");
        let mut args = vec!["ACL", "SETUSER", user, "reset", "on", secret.as_str()];
        args.extend_from_slice(rules);
        match client.call_raw(&args).await? {
            Frame::Error(message) => Err(LabError::Server {
                addr: client.addr(),
                command: format!("ACL SETUSER {user} reset on >*** {}", rules.join(" ")),
                message: message.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// [`Lab::set_acl_user`] on every running data pod.
    pub async fn set_data_acl_user(
        &self,
        user: &str,
        password: &str,
        rules: &[&str],
    ) -> Result<()> {
        for i in 0..self.data_count() {
            if self.is_running(PodId::Data(i)) {
                self.set_acl_user(PodId::Data(i), user, password, rules)
                    .await?;
            }
        }
        Ok(())
    }

    /// [`Lab::set_acl_user`] on every running sentinel.
    pub async fn set_sentinel_acl_user(
        &self,
        user: &str,
        password: &str,
        rules: &[&str],
    ) -> Result<()> {
        for j in 0..self.sentinel_count() {
            if self.is_running(PodId::Sentinel(j)) {
                self.set_acl_user(PodId::Sentinel(j), user, password, rules)
                    .await?;
            }
        }
        Ok(())
    }

    /// Pod `id`'s `ACL LOG`, newest first.
    pub async fn acl_log(&self, id: PodId) -> Result<Vec<AclDenial>> {
        let mut client = self.client(id).await?;
        let reply = client.call(&["ACL", "LOG"]).await?;
        let Frame::Array(entries) = &reply else {
            return Err(client.unexpected("ACL LOG", &reply));
        };
        entries
            .iter()
            .map(|entry| read_denial(entry).ok_or_else(|| client.unexpected("ACL LOG", entry)))
            .collect()
    }

    /// Empties pod `id`'s `ACL LOG`.
    pub async fn reset_acl_log(&self, id: PodId) -> Result<()> {
        self.client(id)
            .await?
            .call(&["ACL", "LOG", "RESET"])
            .await?;
        Ok(())
    }

    /// Empties the `ACL LOG` of every running pod.
    pub async fn reset_acl_logs(&self) -> Result<()> {
        for id in self.running_pods() {
            self.reset_acl_log(id).await?;
        }
        Ok(())
    }

    /// Every running pod's `ACL LOG` entries for `user`, with the pod's address.
    pub async fn acl_denials_of(&self, user: &str) -> Result<Vec<(SocketAddr, AclDenial)>> {
        let mut found = Vec::new();
        for id in self.running_pods() {
            for denial in self.acl_log(id).await? {
                if denial.username == user {
                    found.push((self.addr(id), denial));
                }
            }
        }
        Ok(found)
    }

    fn running_pods(&self) -> Vec<PodId> {
        (0..self.data_count())
            .map(PodId::Data)
            .chain((0..self.sentinel_count()).map(PodId::Sentinel))
            .filter(|&id| self.is_running(id))
            .collect()
    }
}

/// One `ACL LOG` entry (a flat `field, value, ...` array in RESP2).
fn read_denial(entry: &Frame) -> Option<AclDenial> {
    let Frame::Array(items) = entry else {
        return None;
    };
    let field = |name: &str| {
        items
            .chunks(2)
            .find(|pair| replies::text(&pair[0]).as_deref() == Some(name))
            .and_then(|pair| pair.get(1))
            .and_then(replies::text)
    };
    Some(AclDenial {
        reason: field("reason")?,
        object: field("object")?,
        username: field("username")?,
        count: field("count")?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valkey_9_adds_only_what_the_coordinated_failover_sends() {
        let eight = sentinel_user::rules(ValkeyVersion::V8_1_8);
        let nine = sentinel_user::rules(ValkeyVersion::V9_1_2);
        assert_eq!(eight, sentinel_user::ALL_VERSIONS);
        assert_eq!(nine[..eight.len()], eight[..]);
        assert_eq!(nine[eight.len()..], *sentinel_user::VALKEY_9);
        assert!(!eight.contains(&"allchannels"), "{eight:?}");
    }

    #[test]
    fn an_acl_log_entry_is_read_by_field_name() {
        let bulk = |s: &str| Frame::BulkString(s.as_bytes().to_vec().into());
        let entry = Frame::Array(vec![
            bulk("count"),
            Frame::Integer(3),
            bulk("reason"),
            bulk("command"),
            bulk("context"),
            bulk("multi"),
            bulk("object"),
            bulk("client|kill"),
            bulk("username"),
            bulk("sentinel"),
        ]);
        assert_eq!(
            read_denial(&entry),
            Some(AclDenial {
                reason: "command".into(),
                object: "client|kill".into(),
                username: "sentinel".into(),
                count: 3,
            })
        );
        assert_eq!(read_denial(&Frame::Array(vec![bulk("count")])), None);
    }
}
