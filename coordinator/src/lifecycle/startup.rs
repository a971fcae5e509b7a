//! `startup`: master, or replica of whom? (DESIGN section 5.)
//!
//! The action runs before the pod's server exists and writes its answer to `--write-config` as
//! valkey.conf directives, atomically (a temporary file in the same directory, then a rename),
//! for the server to start with `include PATH`: so the server never runs a moment in a role
//! nobody proved. It prints one line, `master` or `replica HOST PORT`.
//!
//! The decision is [`plan`], a pure function over what the group agrees on ([`Group`], learnt
//! through [`knowledge::learn`]: a coordinator first, else the sentinels under the verdict
//! function) and what the data pods say ([`Peer`]); [`run`] gathers those facts, applies the plan
//! and retries within the budget.
//!
//! # Rules
//!
//! With a verdict:
//! - **S1.** A majority agrees but a failover is running: retry (the answer is about to change).
//! - **S2.** The agreed master is this pod: master.
//! - **S3.** The agreed master is another pod. It answers as master: replica of it. It answers
//!   as a replica (the verdict is mid-failover): retry, never chain. It does not answer: replica
//!   of it all the same. Under KubeBlocks' ordered start the agreed master may be a higher
//!   ordinal that is not created until this pod is Ready (after a failover to pod-1, pod-0 starts
//!   first), and a replica takes no writes, so following it read-only is safe where waiting would
//!   never end and electing itself would fork the data.
//! - **S4.** No verdict for any other reason than "every sentinel monitors nothing" (a split,
//!   fewer than a majority reachable, a few monitors lost): retry; at the end of the budget,
//!   exit non-zero. Never a guess.
//!
//! Bootstrap (every sentinel reachable and monitoring nothing: a fresh cluster or a full
//! stop/start), from the other data pods' `INFO replication` and this pod's persisted offset:
//! - **B1.** A reachable pod is master with an attached replica: follow the one
//!   [`choose_master`] proves (strictly newest offset; a tie retries).
//! - **B2.** A reachable pod is master with no attached replica: retry (a pod just promoted by
//!   B4 gets its replicas within a second; anything else proves nothing).
//! - **B3.** A reachable replica that waits for nobody who can still come is an orphan: its
//!   master is gone and nothing proves another. Refuse, naming it. A replica "waits" when its
//!   master is this pod, a data pod that is running (an undecided peer, B5), or a data pod above
//!   this one that is not running (not created yet under the ordered start).
//! - **B4.** Every other data pod answers (this pod is the last to start): the pod with the
//!   highest replication offset in its persisted state becomes master, ties to the lowest
//!   ordinal. If that is another pod, this action points the undecided pods at it first, then
//!   promotes it (`REPLICAOF NO ONE`), and starts this pod as its replica; a failure part way
//!   leaves only undecided replicas, and the next run reaches the same choice again.
//! - **B5.** Otherwise this pod cannot decide: it starts as a read-only replica of the
//!   highest-ordinal other pod (not created yet under the ordered start, so nothing is synced from
//!   it; a running one, being an undecided replica itself, refuses to serve a sync) and is told
//!   its master by the last pod (B4). Never master on a guess.
//!
//! Every pod reaches the same B4 answer whichever pod starts last; the property tests simulate
//! every start order.
//!
//! # What happens after the decision
//! - A replica start writes `replica-priority 0`, so the sentinels never promote a pod that has
//!   not synced yet (an unsynced replica's empty or stale data would win an election: its
//!   `master_link_down_since_seconds` is -1, which passes the sentinels' staleness check). The
//!   configured `--replica-priority` is restored once the replica has synced. Startup cannot do
//!   it (the server does not exist yet and the action spawns nothing), so the role probe, which
//!   runs on every pod every few seconds, does it when given `--startup-config`
//!   ([`raise_priority_after_sync`]): only while the file still holds the 0 this action wrote,
//!   and it then writes the configured priority into the file, so it happens once per start and
//!   never undoes a switchover's temporary priorities. A promoted pod (B4) gets the configured
//!   priority back at once; a master start writes it.
//! - The monitors are registered by the coordinator's healer, not here: its rule H6 registers
//!   the master the data pods prove (a master with an attached replica) on sentinels that lost
//!   theirs, with every configured option and a read-back, through the one registration routine.
//!   Startup is not given the monitor options and runs before the master has replicas.
//!
//! # Own persisted state
//! This pod's offset is the `repl-offset` field of the RDB file `dump.rdb` in the directory of
//! `--write-config` (the decision is written onto the data volume, next to the data); no file
//! means no data (offset 0). A running pod reports the same number (`master_repl_offset`, restored
//! from its RDB at load). Data kept only in an AOF carries no offset and counts as 0.

use std::cmp::Reverse;
use std::fmt;
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::Duration;

use sentinel_protocol::info::InfoReplication;
use sentinel_protocol::sentinel::Value;

use crate::addr::Addr;
use crate::sentinel::conn::{self, Access, ConnError};
use crate::sentinel::dataplane;
use crate::verdict::NoQuorumReason;
use crate::verdict::dataplane::{PodProbe, choose_master, probe_of};

use super::knowledge::{self, Knowledge};
use super::{ActionError, Budget, Target};

/// How long one data pod has to answer.
const PEER_TIMEOUT: Duration = Duration::from_millis(1_000);
/// The pause between two attempts.
const RETRY_EVERY: Duration = Duration::from_millis(250);
/// The RDB file next to the decision.
const RDB_FILE: &str = "dump.rdb";

/// How the pod starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Master,
    Replica(Addr),
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Master => f.write_str("master"),
            Decision::Replica(master) => write!(f, "replica {} {}", master.host(), master.port()),
        }
    }
}

/// What the group agrees on, as the plan reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Group {
    /// A majority agrees on `master`.
    Agreed {
        master: Addr,
        failover_in_progress: bool,
    },
    /// Every sentinel is reachable and monitors nothing: bootstrap.
    Unmonitored,
    /// No verdict, for this reason.
    NoQuorum(String),
}

/// What one data pod says of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// No answer in time.
    Unreachable,
    /// `role:master`, with the replicas it lists as `online`.
    Master { attached: Vec<Addr>, offset: i64 },
    /// `role:slave`; `offset` is `master_repl_offset` (restored from its RDB at load).
    Replica {
        master: Option<Addr>,
        link_up: bool,
        offset: i64,
    },
}

impl Peer {
    /// What an `INFO replication` says, read through the data-plane proof's [`probe_of`].
    pub fn of(info: &InfoReplication) -> Self {
        match probe_of(info) {
            PodProbe::Unreachable => Peer::Unreachable,
            PodProbe::Master { attached, offset } => Peer::Master { attached, offset },
            PodProbe::Replica { master, link_up } => Peer::Replica {
                master,
                link_up,
                offset: info.master_repl_offset.unwrap_or(0),
            },
        }
    }

    fn probe(&self) -> PodProbe {
        match self {
            Peer::Unreachable => PodProbe::Unreachable,
            Peer::Master { attached, offset } => PodProbe::Master {
                attached: attached.clone(),
                offset: *offset,
            },
            Peer::Replica {
                master, link_up, ..
            } => PodProbe::Replica {
                master: master.clone(),
                link_up: *link_up,
            },
        }
    }

    fn offset(&self) -> i64 {
        match self {
            Peer::Unreachable => 0,
            Peer::Master { offset, .. } | Peer::Replica { offset, .. } => *offset,
        }
    }
}

/// Everything the plan decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// This pod's ordinal in [`Target::data_pods`].
    pub me: usize,
    pub group: Group,
    /// S3: what the agreed master says, when it is another pod.
    pub agreed_master: Peer,
    /// Bootstrap: every data pod by ordinal (this pod's own entry is not read).
    pub pods: Vec<Peer>,
    /// Bootstrap: the offset of this pod's persisted data; `None` when it cannot be read.
    pub own_offset: Option<i64>,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Start(Decision),
    /// B4: `master` (an ordinal) becomes master; `repoint` are the running pods to point at it.
    Bootstrap {
        master: usize,
        repoint: Vec<usize>,
    },
    Retry(String),
    Refuse(String),
}

/// The pure decision (rules in the module doc).
pub fn plan(target: &Target, facts: &Facts) -> Plan {
    match &facts.group {
        // S1.
        Group::Agreed {
            master,
            failover_in_progress: true,
        } => Plan::Retry(format!(
            "the sentinels agree on {master} but a failover is in progress"
        )),
        // S2.
        Group::Agreed { master, .. } if is_me(target, facts.me, master) => {
            Plan::Start(Decision::Master)
        }
        // S3.
        Group::Agreed { master, .. } => match &facts.agreed_master {
            Peer::Master { .. } | Peer::Unreachable => {
                Plan::Start(Decision::Replica(master.clone()))
            }
            Peer::Replica { .. } => Plan::Retry(format!(
                "the sentinels agree on {master}, which answers as a replica (mid-failover)"
            )),
        },
        // S4.
        Group::NoQuorum(reason) => Plan::Retry(format!("no master is agreed: {reason}")),
        Group::Unmonitored => bootstrap(target, facts),
    }
}

fn is_me(target: &Target, me: usize, addr: &Addr) -> bool {
    target.ordinal_of(addr) == Some(me)
}

fn bootstrap(target: &Target, facts: &Facts) -> Plan {
    let me = facts.me;
    let pods = &target.data_pods;
    let peer = |i: usize| facts.pods.get(i).unwrap_or(&Peer::Unreachable);
    let others: Vec<usize> = (0..pods.len()).filter(|&i| i != me).collect();

    // B1.
    let with_replicas = others
        .iter()
        .any(|&i| matches!(peer(i), Peer::Master { attached, .. } if !attached.is_empty()));
    if with_replicas {
        let probes: Vec<(Addr, PodProbe)> = others
            .iter()
            .map(|&i| (pods[i].clone(), peer(i).probe()))
            .collect();
        return match choose_master(&probes, None, &target.aliases) {
            Ok(master) => Plan::Start(Decision::Replica(master)),
            Err(refusal) => Plan::Retry(format!("the data pods prove no master: {refusal}")),
        };
    }
    // B2.
    if let Some(&lone) = others
        .iter()
        .find(|&&i| matches!(peer(i), Peer::Master { .. }))
    {
        return Plan::Retry(format!(
            "{} is master with no attached replica yet",
            pods[lone]
        ));
    }
    // B3.
    for &i in &others {
        let Peer::Replica { master, .. } = peer(i) else {
            continue;
        };
        let waits = master
            .as_ref()
            .and_then(|master| target.ordinal_of(master))
            // This pod (k == me), one above it not created yet (k > me), or a running peer.
            .is_some_and(|k| k >= me || !matches!(peer(k), Peer::Unreachable));
        if !waits {
            let of = master
                .as_ref()
                .map_or_else(|| "no master".to_owned(), ToString::to_string);
            return Plan::Refuse(format!(
                "{} is a running replica of {of}, and neither a sentinel nor a data pod proves a \
                 master: refusing to guess",
                pods[i]
            ));
        }
    }
    // B4.
    if others
        .iter()
        .all(|&i| !matches!(peer(i), Peer::Unreachable))
    {
        let Some(own) = facts.own_offset else {
            return Plan::Refuse(
                "every data pod answers but this pod's persisted state cannot be read".into(),
            );
        };
        let offset = |i: usize| if i == me { own } else { peer(i).offset() };
        let master = newest(pods.len(), offset);
        let repoint = others
            .iter()
            .copied()
            .filter(|&i| i != master)
            .filter(|&i| {
                !matches!(peer(i), Peer::Replica { master: Some(at), .. }
                    if target.ordinal_of(at) == Some(master))
            })
            .collect();
        return Plan::Bootstrap { master, repoint };
    }
    // B5.
    match others.last() {
        Some(&highest) => Plan::Start(Decision::Replica(pods[highest].clone())),
        None => Plan::Start(Decision::Master),
    }
}

/// The ordinal with the highest offset, ties to the lowest ordinal.
fn newest(pods: usize, offset: impl Fn(usize) -> i64) -> usize {
    (0..pods)
        .max_by_key(|&i| (offset(i), Reverse(i)))
        .unwrap_or(0)
}

/// The valkey.conf directives for `decision`.
pub fn config_text(decision: &Decision, replica_priority: u64) -> String {
    match decision {
        Decision::Master => format!(
            "# written by valkey-coordinator startup: master\n\
             replicaof no one\n\
             replica-priority {replica_priority}\n"
        ),
        Decision::Replica(master) => format!(
            "# written by valkey-coordinator startup: replica of {master}; priority 0 until \
             synced (then {replica_priority})\n\
             replicaof {} {}\n\
             replica-priority 0\n",
            master.host(),
            master.port()
        ),
    }
}

/// Decides, writes `write_config`, and returns the decision.
pub async fn run(
    target: &Target,
    budget: &Budget,
    write_config: &Path,
    replica_priority: u64,
) -> Result<Decision, ActionError> {
    let pod = target.pod()?;
    let me = target.ordinal_of(pod).ok_or(ActionError::Usage(
        "--pod must be one of the --data-pod addresses",
    ))?;
    let data_dir = write_config.parent().unwrap_or(Path::new("."));
    let mut last = String::from("nothing learnt");
    while !budget.spent() {
        let facts = gather(target, budget, me, data_dir).await;
        let decision = match plan(target, &facts) {
            Plan::Start(decision) => decision,
            Plan::Bootstrap { master, repoint } => {
                execute_bootstrap(target, budget, me, master, &repoint, replica_priority).await?
            }
            Plan::Retry(reason) => {
                tracing::debug!(%reason, "startup: retrying");
                last = reason;
                budget.pause(RETRY_EVERY).await;
                continue;
            }
            Plan::Refuse(reason) => return Err(ActionError::refused(reason)),
        };
        write_atomically(write_config, &config_text(&decision, replica_priority))?;
        return Ok(decision);
    }
    Err(ActionError::refused(format!(
        "no decision within {} ms: {last}",
        budget.elapsed().as_millis()
    )))
}

/// What the plan needs, asked within the budget.
async fn gather(target: &Target, budget: &Budget, me: usize, data_dir: &Path) -> Facts {
    let group = match knowledge::learn(target, budget).await {
        Knowledge::Agreed { master, .. } => Group::Agreed {
            master: master.master,
            failover_in_progress: master.failover_in_progress,
        },
        Knowledge::NoQuorum { verdict, survey } => match verdict.reason {
            NoQuorumReason::AllUnmonitored { .. } => Group::Unmonitored,
            reason => Group::NoQuorum(survey.explain(reason)),
        },
    };
    let mut facts = Facts {
        me,
        group,
        agreed_master: Peer::Unreachable,
        pods: Vec::new(),
        own_offset: None,
    };
    match &facts.group {
        Group::Agreed {
            master,
            failover_in_progress: false,
        } if !is_me(target, me, master) => {
            facts.agreed_master = ask(master, &target.data_access, budget).await;
        }
        Group::Unmonitored => {
            facts.pods = ask_all(target, budget, me).await;
            facts.own_offset = match persisted_offset(&data_dir.join(RDB_FILE)) {
                Ok(offset) => Some(offset),
                Err(error) => {
                    tracing::warn!(%error, "startup: cannot read this pod's persisted offset");
                    None
                }
            };
        }
        Group::Agreed { .. } | Group::NoQuorum(_) => {}
    }
    facts
}

/// One data pod's `INFO replication`, within [`PEER_TIMEOUT`] of the budget.
async fn ask(pod: &Addr, access: &Access, budget: &Budget) -> Peer {
    let asked = async {
        let mut connection = conn::connect(pod, access).await?;
        Ok::<_, ConnError>(Peer::of(&dataplane::replication(&mut connection).await?))
    };
    match tokio::time::timeout(budget.share(PEER_TIMEOUT), asked).await {
        Ok(Ok(peer)) => peer,
        Ok(Err(error)) => {
            tracing::debug!(%pod, %error, "startup: data pod gave no answer");
            Peer::Unreachable
        }
        Err(_) => Peer::Unreachable,
    }
}

/// Every other data pod, in parallel, by ordinal (this pod's entry stays `Unreachable`).
async fn ask_all(target: &Target, budget: &Budget, me: usize) -> Vec<Peer> {
    let mut pods = vec![Peer::Unreachable; target.data_pods.len()];
    let mut asking = tokio::task::JoinSet::new();
    for (i, pod) in target
        .data_pods
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != me)
    {
        let pod = pod.clone();
        let access = target.data_access.clone();
        let budget = *budget;
        asking.spawn(async move { (i, ask(&pod, &access, &budget).await) });
    }
    while let Some(answer) = asking.join_next().await {
        if let Ok((i, peer)) = answer {
            pods[i] = peer;
        }
    }
    pods
}

/// B4's changes to the running pods: point every undecided pod at the chosen master, then
/// promote it (in that order, so a failure part way leaves no master the next run does not
/// choose again), and say how this pod starts.
async fn execute_bootstrap(
    target: &Target,
    budget: &Budget,
    me: usize,
    master: usize,
    repoint: &[usize],
    replica_priority: u64,
) -> Result<Decision, ActionError> {
    let master_addr = &target.data_pods[master];
    let host = master_addr.host().to_string();
    let port = master_addr.port().to_string();
    for &i in repoint {
        command(target, budget, i, &["REPLICAOF", &host, &port]).await?;
    }
    if master == me {
        return Ok(Decision::Master);
    }
    command(target, budget, master, &["REPLICAOF", "NO", "ONE"]).await?;
    let priority = replica_priority.to_string();
    command(
        target,
        budget,
        master,
        &["CONFIG", "SET", "replica-priority", &priority],
    )
    .await?;
    tracing::info!(master = %master_addr, "startup: bootstrap promoted the pod with the newest data");
    Ok(Decision::Replica(master_addr.clone()))
}

/// Sends one command to data pod `i` and expects no error reply.
async fn command(
    target: &Target,
    budget: &Budget,
    i: usize,
    args: &[&str],
) -> Result<(), ActionError> {
    let pod = &target.data_pods[i];
    let what = || format!("{} on {pod}", args.join(" "));
    let sent = async {
        let mut connection = conn::connect(pod, &target.data_access).await?;
        connection.call(args).await
    };
    // The rest of the budget, and a timeout that names the pod that did not answer.
    match tokio::time::timeout_at(budget.deadline(), sent).await {
        Ok(Ok(Value::Error(error))) => Err(ActionError::refused(format!("{}: {error}", what()))),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(ActionError::conn(what(), error)),
        Err(_) => Err(ActionError::refused(format!(
            "{}: no answer within the budget",
            what()
        ))),
    }
}

/// Writes `text` to `path` through a temporary file in the same directory and a rename, so the
/// server never reads half a decision.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), ActionError> {
    let failed = |source| ActionError::Write {
        path: path.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .ok_or_else(|| failed(std::io::Error::other("not a file path")))?;
    let mut temporary = name.to_os_string();
    temporary.push(format!(".tmp-{}", std::process::id()));
    let temporary = path.with_file_name(temporary);
    let written = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            // The rename is durable once the directory is: best effort.
            let _ = std::fs::File::open(dir).and_then(|dir| dir.sync_all());
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.map_err(failed)
}

/// The `repl-offset` of the RDB file at `path`: 0 when there is no file or it has none.
pub fn persisted_offset(path: &Path) -> Result<i64, String> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(format!("{}: {error}", path.display())),
    };
    // The auxiliary fields come first and are small.
    let mut head = Vec::new();
    file.take(64 * 1024)
        .read_to_end(&mut head)
        .map_err(|error| format!("{}: {error}", path.display()))?;
    rdb_repl_offset(&head)
        .map(|offset| offset.unwrap_or(0))
        .map_err(|error| format!("{}: {error}", path.display()))
}

/// The `repl-offset` auxiliary field at the start of an RDB file (`REDIS0011`, `VALKEY080`, ...),
/// `None` when the file has none.
pub fn rdb_repl_offset(head: &[u8]) -> Result<Option<i64>, String> {
    const AUX: u8 = 0xFA;
    // `REDIS` or `VALKEY` and the format version: nine bytes either way.
    const MAGIC: usize = 9;
    if !(head.starts_with(b"REDIS") || head.starts_with(b"VALKEY")) {
        return Err("not an RDB file".into());
    }
    let mut at = MAGIC;
    while head.get(at) == Some(&AUX) {
        at += 1;
        let key = rdb_string(head, &mut at)?;
        let value = rdb_string(head, &mut at)?;
        if key == b"repl-offset" {
            return std::str::from_utf8(&value)
                .ok()
                .and_then(|text| text.parse().ok())
                .map(Some)
                .ok_or_else(|| "an unreadable repl-offset".to_owned());
        }
    }
    Ok(None)
}

/// One RDB string at `at`: length-prefixed, or an integer encoding rendered as decimal text.
fn rdb_string(head: &[u8], at: &mut usize) -> Result<Vec<u8>, String> {
    let truncated = || "a truncated auxiliary field".to_owned();
    let mut take = |n: usize| -> Result<&[u8], String> {
        let bytes = head.get(*at..*at + n).ok_or_else(truncated)?;
        *at += n;
        Ok(bytes)
    };
    let first = take(1)?[0];
    let len = match first >> 6 {
        0 => usize::from(first & 0x3F),
        1 => (usize::from(first & 0x3F) << 8) | usize::from(take(1)?[0]),
        2 if first == 0x80 => {
            let bytes: [u8; 4] = take(4)?.try_into().map_err(|_| truncated())?;
            usize::try_from(u32::from_be_bytes(bytes)).map_err(|_| truncated())?
        }
        2 if first == 0x81 => {
            let bytes: [u8; 8] = take(8)?.try_into().map_err(|_| truncated())?;
            usize::try_from(u64::from_be_bytes(bytes)).map_err(|_| truncated())?
        }
        3 => {
            let number = match first & 0x3F {
                0 => i64::from(i8::from_le_bytes([take(1)?[0]])),
                1 => {
                    let bytes: [u8; 2] = take(2)?.try_into().map_err(|_| truncated())?;
                    i64::from(i16::from_le_bytes(bytes))
                }
                2 => {
                    let bytes: [u8; 4] = take(4)?.try_into().map_err(|_| truncated())?;
                    i64::from(i32::from_le_bytes(bytes))
                }
                _ => return Err("a compressed auxiliary field".into()),
            };
            return Ok(number.to_string().into_bytes());
        }
        _ => return Err(format!("an unknown length encoding {first:#04x}")),
    };
    Ok(take(len)?.to_vec())
}

/// The priority a replica started by this action should get now: the configured one once it is
/// a replica with its link up and no sync running whose priority is still the 0 startup wrote.
pub fn priority_to_restore(info: &InfoReplication, configured: u64) -> Option<u64> {
    let synced = info.role == "slave"
        && info.master_link_status.as_deref() == Some("up")
        && info.master_sync_in_progress != Some(true);
    (synced && configured > 0 && info.slave_priority == Some(0)).then_some(configured)
}

/// The line a replica start writes and [`raise_priority_after_sync`] looks for.
const UNSYNCED_PRIORITY: &str = "replica-priority 0\n";

/// Raises a replica's priority once after its first sync: when `config` is the file this
/// action wrote for a replica start and still says `replica-priority 0`, and the pod reports a
/// finished sync, sets `configured` live and in the file. Whether it raised.
pub async fn raise_priority_after_sync(
    config: &Path,
    pod: &Addr,
    access: &Access,
    configured: u64,
) -> Result<bool, ActionError> {
    let text = std::fs::read_to_string(config).map_err(|source| ActionError::Write {
        path: config.to_path_buf(),
        source,
    })?;
    let written_for_replica = text.starts_with("# written by valkey-coordinator startup: replica");
    if !written_for_replica || !text.contains(UNSYNCED_PRIORITY) || configured == 0 {
        return Ok(false);
    }
    let raised = restore_priority(pod, access, configured)
        .await
        .map_err(|source| ActionError::conn(format!("raising {pod}'s replica-priority"), source))?;
    if raised {
        let text = text.replacen(
            UNSYNCED_PRIORITY,
            &format!("replica-priority {configured}\n"),
            1,
        );
        write_atomically(config, &text)?;
    }
    Ok(raised)
}

/// Raises `pod`'s `replica-priority` to `configured` once it has synced
/// ([`priority_to_restore`]); whether it did. For the caller that runs after the server is up.
pub async fn restore_priority(
    pod: &Addr,
    access: &Access,
    configured: u64,
) -> Result<bool, ConnError> {
    let mut connection = conn::connect(pod, access).await?;
    let info = dataplane::replication(&mut connection).await?;
    let Some(priority) = priority_to_restore(&info, configured) else {
        return Ok(false);
    };
    let priority = priority.to_string();
    match connection
        .call(&["CONFIG", "SET", "replica-priority", &priority])
        .await?
    {
        Value::Error(error) => Err(ConnError::Server {
            command: "CONFIG SET replica-priority",
            error,
        }),
        _ => Ok(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(i: usize) -> Addr {
        format!("10.0.0.{}:6379", 10 + i).parse().expect("addr")
    }

    fn target(n: usize) -> Target {
        Target::new("mymaster", Vec::new(), (0..n).map(pod).collect())
    }

    fn agreed(master: usize) -> Group {
        Group::Agreed {
            master: pod(master),
            failover_in_progress: false,
        }
    }

    fn facts(me: usize, group: Group) -> Facts {
        Facts {
            me,
            group,
            agreed_master: Peer::Unreachable,
            pods: Vec::new(),
            own_offset: Some(0),
        }
    }

    fn bootstrap_facts(me: usize, pods: Vec<Peer>, own: i64) -> Facts {
        Facts {
            pods,
            own_offset: Some(own),
            ..facts(me, Group::Unmonitored)
        }
    }

    fn master(attached: &[usize], offset: i64) -> Peer {
        Peer::Master {
            attached: attached.iter().map(|&i| pod(i)).collect(),
            offset,
        }
    }

    fn replica(of: usize, link_up: bool, offset: i64) -> Peer {
        Peer::Replica {
            master: Some(pod(of)),
            link_up,
            offset,
        }
    }

    #[test]
    fn the_agreed_master_restarting_starts_as_master() {
        assert_eq!(
            plan(&target(3), &facts(1, agreed(1))),
            Plan::Start(Decision::Master)
        );
    }

    #[test]
    fn another_agreed_master_that_answers_as_master_is_followed() {
        let mut facts = facts(1, agreed(0));
        facts.agreed_master = master(&[2], 10);
        assert_eq!(
            plan(&target(3), &facts),
            Plan::Start(Decision::Replica(pod(0)))
        );
    }

    #[test]
    fn an_agreed_master_the_ordered_start_has_not_created_is_followed_read_only() {
        // After a failover to pod-1, pod-0 starts first and pod-1 does not exist yet.
        let facts = facts(0, agreed(1));
        assert_eq!(
            plan(&target(3), &facts),
            Plan::Start(Decision::Replica(pod(1)))
        );
    }

    #[test]
    fn an_agreed_master_that_answers_as_a_replica_is_never_chained() {
        let mut facts = facts(1, agreed(0));
        facts.agreed_master = replica(2, true, 10);
        assert!(matches!(plan(&target(3), &facts), Plan::Retry(_)));
    }

    #[test]
    fn a_failover_in_progress_or_no_quorum_retries() {
        let running = Group::Agreed {
            master: pod(0),
            failover_in_progress: true,
        };
        assert!(matches!(
            plan(&target(3), &facts(0, running)),
            Plan::Retry(_)
        ));
        let split = Group::NoQuorum("split".into());
        assert!(matches!(plan(&target(3), &facts(1, split)), Plan::Retry(_)));
    }

    #[test]
    fn bootstrap_follows_a_running_master_with_replicas() {
        let pods = vec![Peer::Unreachable, master(&[2], 50), replica(1, true, 50)];
        assert_eq!(
            plan(&target(3), &bootstrap_facts(0, pods, 999)),
            Plan::Start(Decision::Replica(pod(1)))
        );
    }

    #[test]
    fn bootstrap_retries_on_two_masters_at_the_same_offset_or_a_lone_master() {
        let pods = vec![master(&[3], 5), Peer::Unreachable, master(&[4], 5)];
        assert!(matches!(
            plan(&target(3), &bootstrap_facts(1, pods, 0)),
            Plan::Retry(_)
        ));
        let pods = vec![master(&[], 5), Peer::Unreachable, Peer::Unreachable];
        assert!(matches!(
            plan(&target(3), &bootstrap_facts(1, pods, 0)),
            Plan::Retry(_)
        ));
    }

    #[test]
    fn a_running_replica_whose_master_is_gone_is_refused_by_name() {
        // Scenario 6: every sentinel wiped, pod-0 (master) killed, pod-1 still its replica,
        // pod-2 restarts.
        let pods = vec![Peer::Unreachable, replica(0, false, 40), Peer::Unreachable];
        match plan(&target(3), &bootstrap_facts(2, pods, 40)) {
            Plan::Refuse(reason) => assert!(reason.contains(&pod(1).to_string()), "{reason}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        let pods = vec![
            Peer::Unreachable,
            Peer::Replica {
                master: Some("10.9.9.9:6379".parse().expect("addr")),
                link_up: true,
                offset: 3,
            },
            Peer::Unreachable,
        ];
        assert!(matches!(
            plan(&target(3), &bootstrap_facts(0, pods, 0)),
            Plan::Refuse(_)
        ));
    }

    #[test]
    fn a_pod_that_cannot_see_every_peer_starts_undecided_as_a_replica_of_the_highest() {
        let pods = vec![Peer::Unreachable; 3];
        assert_eq!(
            plan(&target(3), &bootstrap_facts(0, pods.clone(), 100)),
            Plan::Start(Decision::Replica(pod(2)))
        );
        let pods = vec![replica(2, false, 0), Peer::Unreachable, Peer::Unreachable];
        assert_eq!(
            plan(&target(3), &bootstrap_facts(1, pods, 100)),
            Plan::Start(Decision::Replica(pod(2)))
        );
    }

    #[test]
    fn the_last_pod_chooses_the_newest_data_ties_to_the_lowest_ordinal() {
        let waiting = |offset| replica(2, false, offset);
        // pod-1 is newest: it is promoted, pod-0 pointed at it.
        let pods = vec![waiting(10), waiting(30), Peer::Unreachable];
        assert_eq!(
            plan(&target(3), &bootstrap_facts(2, pods, 20)),
            Plan::Bootstrap {
                master: 1,
                repoint: vec![0]
            }
        );
        // This pod is newest: master, nobody to repoint.
        let pods = vec![waiting(10), waiting(30), Peer::Unreachable];
        assert_eq!(
            plan(&target(3), &bootstrap_facts(2, pods, 31)),
            Plan::Bootstrap {
                master: 2,
                repoint: vec![]
            }
        );
        // A fresh cluster: everything at 0, pod-0 wins.
        let pods = vec![waiting(0), waiting(0), Peer::Unreachable];
        assert_eq!(
            plan(&target(3), &bootstrap_facts(2, pods, 0)),
            Plan::Bootstrap {
                master: 0,
                repoint: vec![1]
            }
        );
    }

    #[test]
    fn the_last_pod_refuses_when_its_own_state_is_unreadable() {
        let mut facts = bootstrap_facts(1, vec![replica(1, false, 0), Peer::Unreachable], 0);
        facts.own_offset = None;
        assert!(matches!(plan(&target(2), &facts), Plan::Refuse(_)));
    }

    /// What a row of the scenario 84 table expects.
    #[derive(Debug)]
    enum Expect {
        Plan(Plan),
        Retry,
        /// A refusal naming data pod `i`.
        RefuseNaming(usize),
    }

    /// Upstream-failures scenario 84, the start script's replica-of decision table, row by row
    /// as our rules answer it (three data pods; "no sentinels" is every sentinel monitoring
    /// nothing). Where upstream elects a master at once, the rules here wait for the last pod
    /// (B4, B5), and a running replica is refused only when it waits for nobody who can still
    /// come (B3).
    #[test]
    fn the_replica_of_decision_table() {
        let waiting_for_2 = |offset| replica(2, false, offset);
        let rows: Vec<(&str, Facts, Expect)> = vec![
            (
                "no sentinels, fresh data, the last pod: the lowest ordinal is master",
                bootstrap_facts(
                    2,
                    vec![waiting_for_2(0), waiting_for_2(0), Peer::Unreachable],
                    0,
                ),
                Expect::Plan(Plan::Bootstrap {
                    master: 0,
                    repoint: vec![1],
                }),
            ),
            (
                "no sentinels, fresh data, the last pod is pod 0: it is master, pod 1 repointed",
                bootstrap_facts(
                    0,
                    vec![Peer::Unreachable, waiting_for_2(0), replica(0, false, 0)],
                    0,
                ),
                Expect::Plan(Plan::Bootstrap {
                    master: 0,
                    repoint: vec![1],
                }),
            ),
            (
                "a majority agrees and its master answers as master: follow it",
                Facts {
                    agreed_master: master(&[2], 7),
                    ..facts(1, agreed(0))
                },
                Expect::Plan(Plan::Start(Decision::Replica(pod(0)))),
            ),
            (
                "a majority agrees, its master answers as a replica: retry, no chain",
                Facts {
                    agreed_master: replica(2, true, 7),
                    ..facts(1, agreed(0))
                },
                Expect::Retry,
            ),
            (
                "a majority agrees, its master not created yet: follow it read-only",
                facts(0, agreed(2)),
                Expect::Plan(Plan::Start(Decision::Replica(pod(2)))),
            ),
            (
                "nothing provable, a fresh dir, no running peer: undecided replica of the highest",
                bootstrap_facts(0, vec![Peer::Unreachable; 3], 0),
                Expect::Plan(Plan::Start(Decision::Replica(pod(2)))),
            ),
            (
                "nothing provable, existing data, no running peer (full restart): the same",
                bootstrap_facts(0, vec![Peer::Unreachable; 3], 5_000),
                Expect::Plan(Plan::Start(Decision::Replica(pod(2)))),
            ),
            (
                "the highest pod, nothing provable, no running peer: replica of pod 1",
                bootstrap_facts(2, vec![Peer::Unreachable; 3], 5_000),
                Expect::Plan(Plan::Start(Decision::Replica(pod(1)))),
            ),
            (
                "a running replica of a pod that is gone, this pod fresh: refuse, naming it",
                bootstrap_facts(
                    2,
                    vec![Peer::Unreachable, replica(0, false, 40), Peer::Unreachable],
                    0,
                ),
                Expect::RefuseNaming(1),
            ),
            (
                "a running replica of a pod that is gone, this pod with data: refuse, naming it",
                bootstrap_facts(
                    2,
                    vec![Peer::Unreachable, replica(0, false, 40), Peer::Unreachable],
                    90,
                ),
                Expect::RefuseNaming(1),
            ),
            (
                "a running replica with no master at all: refuse, naming it",
                bootstrap_facts(
                    0,
                    vec![
                        Peer::Unreachable,
                        Peer::Replica {
                            master: None,
                            link_up: false,
                            offset: 3,
                        },
                        Peer::Unreachable,
                    ],
                    0,
                ),
                Expect::RefuseNaming(1),
            ),
            (
                "a running replica waiting for a pod not created yet is no refusal",
                bootstrap_facts(
                    1,
                    vec![waiting_for_2(10), Peer::Unreachable, Peer::Unreachable],
                    0,
                ),
                Expect::Plan(Plan::Start(Decision::Replica(pod(2)))),
            ),
            (
                "a running replica waiting for this pod is no refusal",
                bootstrap_facts(
                    0,
                    vec![Peer::Unreachable, replica(0, false, 10), Peer::Unreachable],
                    0,
                ),
                Expect::Plan(Plan::Start(Decision::Replica(pod(2)))),
            ),
            (
                "sentinels reachable but split, or short of a majority: retry",
                facts(1, Group::NoQuorum("split".into())),
                Expect::Retry,
            ),
        ];
        for (case, facts, expect) in rows {
            let planned = plan(&target(3), &facts);
            match (&expect, &planned) {
                (Expect::Plan(want), got) => assert_eq!(got, want, "{case}"),
                (Expect::Retry, Plan::Retry(_)) => {}
                (Expect::RefuseNaming(i), Plan::Refuse(reason)) => {
                    assert!(reason.contains(&pod(*i).to_string()), "{case}: {reason}");
                }
                _ => panic!("{case}: expected {expect:?}, got {planned:?}"),
            }
        }
    }

    #[test]
    fn a_single_pod_group_bootstraps_as_master() {
        assert_eq!(
            plan(&target(1), &bootstrap_facts(0, vec![Peer::Unreachable], 0)),
            Plan::Bootstrap {
                master: 0,
                repoint: vec![]
            }
        );
    }

    #[tokio::test]
    async fn a_pod_missing_from_the_data_pod_list_is_a_usage_error_and_writes_nothing() {
        // Scenario 12: the pod's own address is required.
        let mut target = target(3);
        target.pod = Some("10.0.9.9:6379".parse().expect("addr"));
        let path = std::env::temp_dir().join(format!("startup-usage-{}", std::process::id()));
        let budget = Budget::new(Duration::from_millis(200));
        let error = run(&target, &budget, &path, 100)
            .await
            .expect_err("refused");
        assert!(matches!(error, ActionError::Usage(_)), "{error}");
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn a_bootstrap_command_to_a_black_holed_pod_ends_by_the_deadline_naming_it() {
        // Never accepted: the kernel completes the handshake into the backlog, nothing answers.
        let hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let holed = Addr::from(hole.local_addr().expect("addr"));
        let target = Target::new("mymaster", Vec::new(), vec![pod(0), holed.clone()]);
        let budget = Budget::new(Duration::from_millis(300));
        let error = command(&target, &budget, 1, &["REPLICAOF", "NO", "ONE"])
            .await
            .expect_err("no answer");
        assert!(budget.elapsed() < Duration::from_millis(800), "{error}");
        assert!(error.to_string().contains(&holed.to_string()), "{error}");
    }

    #[test]
    fn the_config_holds_only_directives_and_a_replica_starts_unpromotable() {
        let replica = config_text(&Decision::Replica(pod(1)), 100);
        let lines: Vec<&str> = replica.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines, ["replicaof 10.0.0.11 6379", "replica-priority 0"]);
        let master = config_text(&Decision::Master, 100);
        let lines: Vec<&str> = master.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines, ["replicaof no one", "replica-priority 100"]);
        assert_eq!(
            Decision::Replica(pod(1)).to_string(),
            "replica 10.0.0.11 6379"
        );
    }

    #[test]
    fn the_config_is_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("startup-write-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("startup.conf");
        write_atomically(&path, "replicaof no one\n").expect("first");
        write_atomically(&path, "replicaof h 1\n").expect("second");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "replicaof h 1\n"
        );
        let names: Vec<_> = std::fs::read_dir(&dir)
            .expect("list")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["startup.conf"]);
        std::fs::remove_dir_all(&dir).expect("clean");
    }

    /// The head of an RDB written by Valkey 9.1.2 (`VALKEY080`) and 8.0.1 (`REDIS0011`) at
    /// offset 1586 (an int16-encoded `repl-offset`), as dumped from real files.
    fn rdb_head(magic: &[u8]) -> Vec<u8> {
        let mut head = magic.to_vec();
        let aux = |head: &mut Vec<u8>, key: &[u8], value: &[u8]| {
            head.push(0xFA);
            head.push(u8::try_from(key.len()).expect("short"));
            head.extend_from_slice(key);
            head.extend_from_slice(value);
        };
        aux(&mut head, b"valkey-ver", b"\x059.1.2");
        aux(&mut head, b"redis-bits", b"\xc0\x40");
        aux(&mut head, b"ctime", b"\xc2\x44\x8f\x0e\x6b");
        aux(&mut head, b"repl-stream-db", b"\xc0\x00");
        let mut id = vec![40u8];
        id.extend_from_slice(b"ffa8572a3bc318b807036a093fec2b630e701000");
        aux(&mut head, b"repl-id", &id);
        aux(&mut head, b"repl-offset", b"\xc1\x32\x06");
        head.extend_from_slice(b"\xfe\x00\xfb");
        head
    }

    #[test]
    fn the_persisted_offset_is_read_from_the_rdb_header() {
        assert_eq!(rdb_repl_offset(&rdb_head(b"VALKEY080")), Ok(Some(1586)));
        assert_eq!(rdb_repl_offset(&rdb_head(b"REDIS0011")), Ok(Some(1586)));
        assert_eq!(rdb_repl_offset(b"REDIS0011\xfe\x00"), Ok(None));
        assert!(rdb_repl_offset(b"garbage").is_err());
        assert!(rdb_repl_offset(&rdb_head(b"REDIS0011")[..60]).is_err());
        assert_eq!(persisted_offset(Path::new("/nonexistent/dump.rdb")), Ok(0));
    }

    #[test]
    fn the_priority_is_restored_only_after_the_sync() {
        let info = |link: &str, syncing: u8, priority: u8| {
            InfoReplication::parse(&format!(
                "role:slave\r\nmaster_host:10.0.0.10\r\nmaster_port:6379\r\n\
                 master_link_status:{link}\r\nmaster_sync_in_progress:{syncing}\r\n\
                 slave_priority:{priority}\r\n"
            ))
            .expect("parse")
        };
        assert_eq!(priority_to_restore(&info("up", 0, 0), 100), Some(100));
        assert_eq!(priority_to_restore(&info("down", 0, 0), 100), None);
        assert_eq!(priority_to_restore(&info("up", 1, 0), 100), None);
        assert_eq!(priority_to_restore(&info("up", 0, 100), 100), None);
        assert_eq!(priority_to_restore(&info("up", 0, 0), 0), None);
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// One simulated data pod: not started, or running as master or replica of an ordinal.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Sim {
            Down,
            Master,
            Replica(Option<usize>),
        }

        /// What pod `i` answers in the simulation: a replica of a running master is attached.
        fn peer(state: &[Sim], offsets: &[i64], i: usize) -> Peer {
            let linked = |r: usize| matches!(state[r], Sim::Replica(Some(m)) if m == i);
            match state[i] {
                Sim::Down => Peer::Unreachable,
                Sim::Master => Peer::Master {
                    attached: (0..state.len()).filter(|&r| linked(r)).map(pod).collect(),
                    offset: offsets[i],
                },
                Sim::Replica(master) => Peer::Replica {
                    master: master.map(pod),
                    link_up: master.is_some_and(|m| state[m] == Sim::Master),
                    offset: offsets[i],
                },
            }
        }

        fn masters(state: &[Sim]) -> usize {
            state.iter().filter(|s| **s == Sim::Master).count()
        }

        /// Starts every pod once in `order` through the plan, with every sentinel wiped, and
        /// returns the end state and, per step, whether that pod decided (B4).
        fn start_in(
            order: &[usize],
            offsets: &[i64],
        ) -> Result<(Vec<Sim>, Vec<bool>), TestCaseError> {
            let n = offsets.len();
            let target = target(n);
            let mut state = vec![Sim::Down; n];
            let mut decided = Vec::new();
            for &me in order {
                let facts = bootstrap_facts(
                    me,
                    (0..n).map(|i| peer(&state, offsets, i)).collect(),
                    offsets[me],
                );
                let planned = plan(&target, &facts);
                decided.push(matches!(
                    planned,
                    Plan::Bootstrap { .. } | Plan::Start(Decision::Master)
                ));
                match planned {
                    Plan::Start(Decision::Master) => state[me] = Sim::Master,
                    Plan::Start(Decision::Replica(of)) => {
                        state[me] = Sim::Replica(target.ordinal_of(&of));
                    }
                    Plan::Bootstrap { master, repoint } => {
                        for i in repoint {
                            state[i] = Sim::Replica(Some(master));
                        }
                        state[master] = Sim::Master;
                        if master != me {
                            state[me] = Sim::Replica(Some(master));
                        }
                    }
                    other => {
                        return Err(TestCaseError::fail(format!(
                            "pod-{me} got {other:?} in {state:?}"
                        )));
                    }
                }
                prop_assert!(masters(&state) <= 1, "two masters: {state:?}");
            }
            Ok((state, decided))
        }

        fn case() -> impl Strategy<Value = (Vec<i64>, Vec<usize>)> {
            (1usize..=5).prop_flat_map(|n| {
                (
                    proptest::collection::vec(0i64..4, n),
                    Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
                )
            })
        }

        proptest! {
            /// Whatever order the pods start in (the ordered start is one of them), the pod
            /// with the newest data (ties to the lowest ordinal) ends up the one master and
            /// every other pod its replica; no moment has two masters; no pod refuses or
            /// waits.
            #[test]
            fn every_start_order_reaches_the_same_master((offsets, order) in case()) {
                let (state, _) = start_in(&order, &offsets)?;
                let newest = newest(offsets.len(), |i| offsets[i]);
                for (i, sim) in state.iter().enumerate() {
                    if i == newest {
                        prop_assert_eq!(*sim, Sim::Master);
                    } else {
                        prop_assert_eq!(*sim, Sim::Replica(Some(newest)));
                    }
                }
            }

            /// Only the last pod to start decides: no pod starts as master, or promotes one,
            /// before every other pod has answered.
            #[test]
            fn only_the_last_pod_to_start_decides((offsets, order) in case()) {
                let (_, decided) = start_in(&order, &offsets)?;
                let last = decided.len() - 1;
                for (step, decided) in decided.into_iter().enumerate() {
                    prop_assert_eq!(decided, step == last);
                }
            }

            /// Under an agreement every pod but the agreed master follows it, whatever the
            /// other pods say; the agreed master starts as master.
            #[test]
            fn an_agreement_is_followed_by_every_pod(
                n in 1usize..=5,
                agreed_at in 0usize..5,
                me in 0usize..5,
                answers_master in any::<bool>(),
            ) {
                let agreed_at = agreed_at % n;
                let me = me % n;
                let mut facts = facts(me, agreed(agreed_at));
                facts.agreed_master = if answers_master {
                    master(&[], 0)
                } else {
                    Peer::Unreachable
                };
                let expected = if me == agreed_at {
                    Decision::Master
                } else {
                    Decision::Replica(pod(agreed_at))
                };
                prop_assert_eq!(plan(&target(n), &facts), Plan::Start(expected));
            }
        }
    }
}
