//! Deadline-bound polling. Scenarios wait on observable state, never on fixed sleeps: a probe runs
//! every [`POLL_EVERY`] until it says ready or the deadline passes, and the timeout error says what
//! was waited for and the last thing seen.

use std::{future::Future, net::SocketAddr, time::Duration};

use sentinel_protocol::role::Role;
use sentinel_protocol::sentinel::MasterRecord;

use tokio::time::{Instant, sleep_until};

use crate::{
    error::{LabError, Result},
    lab::{Lab, PodId},
    replies::flags_down,
};

/// Default polling period: quick enough that a wait ends within a few tens of milliseconds of the
/// event, slow enough not to load a 2-core CI machine.
pub const POLL_EVERY: Duration = Duration::from_millis(25);

/// One observation of a probe.
#[derive(Debug)]
pub enum Probe<T> {
    /// The condition holds; the wait returns this value.
    Ready(T),
    /// Not yet; the text says what was seen (kept for the timeout message).
    Pending(String),
}

/// Runs `probe` every `every` until it is ready or `timeout` has passed.
pub async fn poll_until<T, F, Fut>(
    what: impl Into<String>,
    timeout: Duration,
    every: Duration,
    mut probe: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Probe<T>>,
{
    let what = what.into();
    let start = Instant::now();
    let deadline = start + timeout;
    let mut last_seen = String::from("(nothing yet)");
    loop {
        let next = Instant::now() + every;
        match tokio::time::timeout_at(deadline, probe()).await {
            Ok(Probe::Ready(value)) => return Ok(value),
            Ok(Probe::Pending(seen)) => last_seen = seen,
            Err(_) => {}
        }
        if next >= deadline {
            return Err(LabError::Timeout {
                what,
                waited: start.elapsed(),
                last_seen,
            });
        }
        sleep_until(next).await;
    }
}

// === impl Lab: waits ===

/// The master a majority of sentinels named, as seen by [`Lab::wait_sentinels_agree`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterAgreement {
    /// The agreed address (from `GET-MASTER-ADDR-BY-NAME`).
    pub addr: SocketAddr,
    /// The highest `config-epoch` among the agreeing sentinels' `SENTINEL MASTER` records.
    pub config_epoch: u64,
    /// How many sentinels named it.
    pub votes: usize,
}

impl Lab {
    /// Waits until sentinel `j` names `master` with every monitor option of the lab's spec,
    /// polling every `every` (a heal is over in milliseconds; a measurement wants it seen soon).
    pub async fn wait_monitors_as_spec(
        &self,
        j: usize,
        master: SocketAddr,
        timeout: Duration,
        every: Duration,
    ) -> Result<()> {
        let what = format!("sentinel-{j} to monitor {master} with every option");
        let result = poll_until(what, timeout, every, || async move {
            let record = self.sentinel_master(j).await;
            let named = self.sentinel_master_addr(j).await;
            match (record, named) {
                (Ok(Some(record)), Ok(Some(named))) if named == master => {
                    match self.monitor_mismatch(&record) {
                        None => Probe::Ready(()),
                        Some(mismatch) => Probe::Pending(mismatch),
                    }
                }
                (record, named) => Probe::Pending(format!(
                    "names {named:?}, record {:?}",
                    record.map(|r| r.map(|r| r.config_epoch))
                )),
            }
        })
        .await;
        self.note(result)
    }

    /// The first monitor option of `record` that differs from the lab's spec, if any.
    pub fn monitor_mismatch(&self, record: &MasterRecord) -> Option<String> {
        let spec = self.spec();
        let expected = [
            ("quorum", spec.quorum as i64, record.quorum as i64),
            (
                "down-after-milliseconds",
                spec.timings.down_after.as_millis() as i64,
                record.instance.down_after_milliseconds,
            ),
            (
                "failover-timeout",
                spec.timings.failover_timeout.as_millis() as i64,
                record.failover_timeout,
            ),
            (
                "parallel-syncs",
                i64::from(spec.timings.parallel_syncs),
                record.parallel_syncs,
            ),
        ];
        expected
            .iter()
            .find(|(_, want, got)| want != got)
            .map(|(option, want, got)| format!("{option} is {got}, expected {want}"))
    }

    /// Waits until data pod `i` answers `ROLE` as master.
    pub async fn wait_master(&self, i: usize, timeout: Duration) -> Result<()> {
        let what = format!("valkey-{i} to answer ROLE master");
        let result = poll_until(what, timeout, POLL_EVERY, || async move {
            match self.role(PodId::Data(i)).await {
                Ok(Role::Master { .. }) => Probe::Ready(()),
                Ok(role) => Probe::Pending(format!("{role:?}")),
                Err(e) => Probe::Pending(e.to_string()),
            }
        })
        .await;
        self.note(result)
    }

    /// Waits until data pod `i` answers `ROLE` as a replica of `master` and its
    /// `master_link_status` is `up`.
    pub async fn wait_replica_of(
        &self,
        i: usize,
        master: SocketAddr,
        timeout: Duration,
    ) -> Result<()> {
        let what = format!("valkey-{i} to be a linked replica of {master}");
        let result = poll_until(what, timeout, POLL_EVERY, || async move {
            match self.replica_link(i, master).await {
                Ok(None) => Probe::Ready(()),
                Ok(Some(seen)) => Probe::Pending(seen),
                Err(e) => Probe::Pending(e.to_string()),
            }
        })
        .await;
        self.note(result)
    }

    /// `None` when pod `i` is a replica of `master` with the link up, else what it is.
    async fn replica_link(&self, i: usize, master: SocketAddr) -> crate::Result<Option<String>> {
        let role = self.role(PodId::Data(i)).await?;
        let Role::Slave {
            master_ip,
            master_port,
            ..
        } = &role
        else {
            return Ok(Some(format!("{role:?}")));
        };
        if master_ip.parse() != Ok(master.ip()) || *master_port != master.port() {
            return Ok(Some(format!("{role:?}")));
        }
        let info = self.replication_info(i).await?;
        let link = info.master_link_status.as_deref();
        Ok((link != Some("up"))
            .then(|| format!("replica of {master}, master_link_status {link:?}")))
    }

    /// Waits until every other running data pod is a linked replica of data pod `master`
    /// (`master_link_status:up`). Do this before any failover: one asked before the replicas'
    /// first sync aborts with `-failover-abort-slave-timeout`.
    pub async fn wait_replication_up(&self, master: usize, timeout: Duration) -> Result<()> {
        let master_addr = self.data_addr(master);
        let replicas: Vec<usize> = (0..self.data_count())
            .filter(|&i| i != master && self.is_running(PodId::Data(i)))
            .collect();
        let what = format!("every replica of valkey-{master} ({master_addr}) to have its link up");
        let result = poll_until(what, timeout, POLL_EVERY, || {
            let replicas = &replicas;
            async move {
                let mut pending = Vec::new();
                for &i in replicas {
                    match self.replica_link(i, master_addr).await {
                        Ok(None) => {}
                        Ok(Some(seen)) => pending.push(format!("valkey-{i}: {seen}")),
                        Err(e) => pending.push(format!("valkey-{i}: {e}")),
                    }
                }
                if pending.is_empty() {
                    Probe::Ready(())
                } else {
                    Probe::Pending(pending.join("; "))
                }
            }
        })
        .await;
        self.note(result)
    }

    /// Waits until every running sentinel lists exactly `replicas` healthy replicas and `sentinels`
    /// healthy other sentinels (none flagged `s_down`, `o_down` or `disconnected`).
    pub async fn wait_sentinels_see(
        &self,
        replicas: usize,
        sentinels: usize,
        timeout: Duration,
    ) -> Result<()> {
        let what =
            format!("every sentinel to see {replicas} replicas and {sentinels} other sentinels");
        let result = poll_until(what, timeout, POLL_EVERY, || async move {
            let mut pending = Vec::new();
            for j in self.running_sentinels() {
                let seen = async {
                    let r = self.sentinel_replicas(j).await?;
                    let s = self.sentinel_sentinels(j).await?;
                    let healthy_r = r.iter().filter(|x| !flags_down(&x.instance.flags)).count();
                    let healthy_s = s.iter().filter(|x| !flags_down(&x.instance.flags)).count();
                    Ok::<_, LabError>((healthy_r, r.len(), healthy_s, s.len()))
                }
                .await;
                match seen {
                    Ok((hr, _, hs, _)) if hr == replicas && hs == sentinels => {}
                    Ok((hr, r, hs, s)) => pending.push(format!(
                        "sentinel-{j}: replicas {hr} healthy of {r}, sentinels {hs} healthy of {s}"
                    )),
                    Err(e) => pending.push(format!("sentinel-{j}: {e}")),
                }
            }
            if pending.is_empty() {
                Probe::Ready(())
            } else {
                Probe::Pending(pending.join("; "))
            }
        })
        .await;
        self.note(result)
    }

    /// Waits until a majority of the configured sentinels name the same master with
    /// `GET-MASTER-ADDR-BY-NAME`, no running sentinel names another one, and
    /// `accept(addr, config_epoch)` holds (`config_epoch`: the highest among those naming it).
    /// A sentinel that monitors nothing (wiped), is paused, stopped or unreachable neither votes
    /// nor objects, so this also works while one sentinel is being healed.
    pub async fn wait_sentinels_agree(
        &self,
        timeout: Duration,
        accept: impl Fn(SocketAddr, u64) -> bool,
    ) -> Result<MasterAgreement> {
        let accept = &accept;
        let result = poll_until(
            "a majority of sentinels to agree on a master",
            timeout,
            POLL_EVERY,
            || async move {
                let mut named: Vec<(SocketAddr, u64)> = Vec::new();
                let mut seen = Vec::new();
                for j in self.running_sentinels() {
                    let view = async {
                        let addr = self.sentinel_master_addr(j).await?;
                        let epoch = self.sentinel_master(j).await?.map(|r| r.config_epoch);
                        Ok::<_, LabError>((addr, epoch))
                    }
                    .await;
                    match view {
                        Ok((addr, epoch)) => {
                            seen.push(format!("sentinel-{j}: {addr:?} epoch {epoch:?}"));
                            if let Some(addr) = addr {
                                named.push((addr, epoch.unwrap_or(0)));
                            }
                        }
                        Err(e) => seen.push(format!("sentinel-{j}: {e}")),
                    }
                }
                let seen = seen.join("; ");
                let Some(&(first, _)) = named.first() else {
                    return Probe::Pending(seen);
                };
                let unanimous = named.iter().all(|(a, _)| *a == first);
                let epoch = named.iter().map(|(_, e)| *e).max().unwrap_or(0);
                if unanimous && named.len() >= self.majority() && accept(first, epoch) {
                    Probe::Ready(MasterAgreement {
                        addr: first,
                        config_epoch: epoch,
                        votes: named.len(),
                    })
                } else {
                    Probe::Pending(seen)
                }
            },
        )
        .await;
        self.note(result)
    }

    /// Waits until the group has formed as started: every replica linked to pod 0, every sentinel
    /// seeing all replicas and all other sentinels, and all sentinels naming pod 0.
    pub async fn wait_formed(&self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
        self.wait_replication_up(0, left()).await?;
        if self.sentinel_count() == 0 {
            return Ok(());
        }
        self.wait_sentinels_see(self.data_count() - 1, self.sentinel_count() - 1, left())
            .await?;
        let master = self.data_addr(0);
        self.wait_sentinels_agree(left(), |addr, _| addr == master)
            .await?;
        Ok(())
    }

    fn running_sentinels(&self) -> Vec<usize> {
        (0..self.sentinel_count())
            .filter(|&j| {
                self.is_running(PodId::Sentinel(j)) && !self.pod(PodId::Sentinel(j)).paused
            })
            .collect()
    }
}
