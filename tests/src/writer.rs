//! A writer that records every acknowledged write, for loss checks after a failover.
//!
//! It sends `SET <prefix>:<n> <n>` one at a time to the current master, records each `OK` with its
//! target and latency and each failure with its error, and follows the master: either a fixed pod,
//! or whichever address a majority of the sentinels name (re-resolved after any error, a
//! `READONLY` included). [`WriteLog::check_lost`] then reads every acknowledged key back from a
//! pod.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use sentinel_protocol::sentinel::{Value, master_addr};
use tokio::{task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    client::{Client, Credentials, DEFAULT_TIMEOUT, Frame, Transport},
    error::{LabError, Result},
    lab::{Lab, PodId},
    replies::text,
    wait::{POLL_EVERY, Probe, poll_until},
};

/// Where writes go.
#[derive(Debug, Clone)]
pub enum WriteTarget {
    /// Always this pod (a client pinned to an address).
    Pod(SocketAddr),
    /// The address a majority of these sentinels give for `name` (a sentinel-aware client).
    SentinelMaster {
        /// The sentinels asked.
        sentinels: Vec<SocketAddr>,
        /// Their credentials.
        credentials: Option<Credentials>,
        /// The master name.
        name: String,
    },
}

/// One acknowledged write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckedWrite {
    /// The key written.
    pub key: String,
    /// The value written.
    pub value: String,
    /// The pod that acknowledged it.
    pub to: SocketAddr,
    /// When the acknowledgement arrived, since the writer started.
    pub at: Duration,
    /// Round-trip time.
    pub latency: Duration,
}

/// One failed write (it may or may not have been applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedWrite {
    /// The key tried.
    pub key: String,
    /// The pod tried, if one was resolved.
    pub to: Option<SocketAddr>,
    /// When, since the writer started.
    pub at: Duration,
    /// The error.
    pub error: String,
}

/// Everything the writer did.
#[derive(Debug, Clone, Default)]
pub struct WriteLog {
    /// Acknowledged writes, in order.
    pub acked: Vec<AckedWrite>,
    /// Failed writes, in order.
    pub failed: Vec<FailedWrite>,
}

/// Result of a loss check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LossReport {
    /// The pod read back.
    pub pod: SocketAddr,
    /// Acknowledged writes checked.
    pub checked: usize,
    /// Acknowledged keys absent from the pod.
    pub missing: Vec<String>,
    /// Acknowledged keys holding another value: `(key, expected, found)`.
    pub wrong: Vec<(String, String, String)>,
}

impl LossReport {
    /// No acknowledged write is missing or different.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.wrong.is_empty()
    }
}

impl WriteLog {
    /// Acknowledgements per target pod.
    pub fn acked_by_target(&self) -> HashMap<SocketAddr, usize> {
        let mut counts = HashMap::new();
        for w in &self.acked {
            *counts.entry(w.to).or_insert(0) += 1;
        }
        counts
    }

    /// Reads every acknowledged key back from `pod` (MGET in batches) and reports what is lost.
    pub async fn check_lost(
        &self,
        pod: SocketAddr,
        credentials: Option<&Credentials>,
    ) -> Result<LossReport> {
        self.check_lost_over(pod, &Transport::Plain, credentials)
            .await
    }

    /// [`Self::check_lost`] over `transport`.
    pub async fn check_lost_over(
        &self,
        pod: SocketAddr,
        transport: &Transport,
        credentials: Option<&Credentials>,
    ) -> Result<LossReport> {
        let mut client = Client::connect_over(pod, transport, credentials, DEFAULT_TIMEOUT).await?;
        let mut report = LossReport {
            pod,
            checked: self.acked.len(),
            missing: Vec::new(),
            wrong: Vec::new(),
        };
        for batch in self.acked.chunks(500) {
            let mut args = vec!["MGET".to_string()];
            args.extend(batch.iter().map(|w| w.key.clone()));
            let frame = client.call(&args).await?;
            let Frame::Array(values) = &frame else {
                return Err(client.unexpected("MGET", &frame));
            };
            for (w, v) in batch.iter().zip(values) {
                match text(v) {
                    None => report.missing.push(w.key.clone()),
                    Some(found) if found != w.value => {
                        report.wrong.push((w.key.clone(), w.value.clone(), found))
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(report)
    }
}

impl Lab {
    /// Checks `log` against what data pod `i` holds.
    pub async fn check_lost_writes(&self, log: &WriteLog, i: usize) -> Result<LossReport> {
        let credentials = self.data_credentials();
        let result = log
            .check_lost_over(
                self.addr(PodId::Data(i)),
                self.transport(),
                credentials.as_ref(),
            )
            .await;
        self.note(result)
    }
}

/// The running writer.
#[derive(Debug)]
pub struct Writer {
    log: Arc<Mutex<WriteLog>>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Writer {
    /// Writes to whatever master a majority of `lab`'s sentinels name, one write every
    /// `interval` (`None`: back to back).
    pub fn start(lab: &Lab, interval: Option<Duration>) -> Self {
        let target = WriteTarget::SentinelMaster {
            sentinels: lab.sentinel_addrs(),
            credentials: lab.sentinel_credentials(),
            name: lab.master_name().to_string(),
        };
        let transport = lab.transport().clone();
        Self::start_over(target, transport, lab.data_credentials(), interval, "lab:w")
    }

    /// Writes `SET <prefix>:<n> <n>` to `target` over plaintext TCP.
    pub fn start_with(
        target: WriteTarget,
        credentials: Option<Credentials>,
        interval: Option<Duration>,
        prefix: &str,
    ) -> Self {
        Self::start_over(target, Transport::Plain, credentials, interval, prefix)
    }

    /// Writes `SET <prefix>:<n> <n>` to `target` over `transport`, which also carries the
    /// questions to the sentinels of a [`WriteTarget::SentinelMaster`].
    pub fn start_over(
        target: WriteTarget,
        transport: Transport,
        credentials: Option<Credentials>,
        interval: Option<Duration>,
        prefix: &str,
    ) -> Self {
        let log = Arc::new(Mutex::new(WriteLog::default()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(write_loop(
            target,
            transport,
            credentials,
            interval,
            prefix.to_string(),
            log.clone(),
            stop.clone(),
        ));
        Writer {
            log,
            stop,
            task: Some(task),
        }
    }

    /// A copy of the log so far.
    pub fn log(&self) -> WriteLog {
        self.log.lock().expect("writer log poisoned").clone()
    }

    /// Waits until at least `n` writes were acknowledged by `pod`.
    pub async fn wait_acked_by(&self, pod: SocketAddr, n: usize, timeout: Duration) -> Result<()> {
        poll_until(
            format!("{n} writes acknowledged by {pod}"),
            timeout,
            POLL_EVERY,
            || async move {
                let log = self.log.lock().expect("writer log poisoned");
                let got = log.acked.iter().filter(|w| w.to == pod).count();
                if got >= n {
                    Probe::Ready(())
                } else {
                    let last_error = log
                        .failed
                        .last()
                        .map(|f| f.error.as_str())
                        .unwrap_or("none");
                    Probe::Pending(format!(
                        "{got} acknowledged by it; last error: {last_error}"
                    ))
                }
            },
        )
        .await
    }

    /// Stops the writer and returns its log.
    pub async fn stop(mut self) -> WriteLog {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.log()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn write_loop(
    target: WriteTarget,
    transport: Transport,
    credentials: Option<Credentials>,
    interval: Option<Duration>,
    prefix: String,
    log: Arc<Mutex<WriteLog>>,
    stop: CancellationToken,
) {
    let started = Instant::now();
    let mut conn: Option<Client> = None;
    let mut n: u64 = 0;
    loop {
        if stop.is_cancelled() {
            return;
        }
        let key = format!("{prefix}:{n}");
        let value = n.to_string();
        let attempt = async {
            if conn.is_none() {
                let addr = resolve(&target, &transport).await?;
                conn = Some(
                    Client::connect_over(addr, &transport, credentials.as_ref(), DEFAULT_TIMEOUT)
                        .await?,
                );
            }
            let client = conn.as_mut().expect("connected above");
            let sent = Instant::now();
            client.call(&["SET", &key, &value]).await?;
            Ok::<_, LabError>((client.addr(), sent.elapsed()))
        };
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            r = attempt => r,
        };
        let at = started.elapsed();
        match result {
            Ok((to, latency)) => log
                .lock()
                .expect("writer log poisoned")
                .acked
                .push(AckedWrite {
                    key,
                    value,
                    to,
                    at,
                    latency,
                }),
            Err(e) => {
                let to = conn.take().map(|c| c.addr());
                log.lock()
                    .expect("writer log poisoned")
                    .failed
                    .push(FailedWrite {
                        key,
                        to,
                        at,
                        error: e.to_string(),
                    });
                // Do not spin on a dead target.
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(POLL_EVERY) => {}
                }
            }
        }
        n += 1;
        if let Some(interval) = interval {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}

/// The address to write to: the fixed pod, or the one a majority of sentinels name.
async fn resolve(target: &WriteTarget, transport: &Transport) -> Result<SocketAddr> {
    match target {
        WriteTarget::Pod(addr) => Ok(*addr),
        WriteTarget::SentinelMaster {
            sentinels,
            credentials,
            name,
        } => {
            let mut votes: HashMap<SocketAddr, usize> = HashMap::new();
            let mut seen = Vec::new();
            for &s in sentinels {
                let answer = async {
                    let mut c =
                        Client::connect_over(s, transport, credentials.as_ref(), DEFAULT_TIMEOUT)
                            .await?;
                    let frame = c
                        .call(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", name])
                        .await?;
                    match master_addr(&Value::from(&frame)) {
                        Ok(Some((ip, port))) => {
                            Ok(format!("{ip}:{port}").parse::<SocketAddr>().ok())
                        }
                        Ok(None) => Ok(None),
                        Err(_) => Err(c.unexpected("GET-MASTER-ADDR-BY-NAME", &frame)),
                    }
                }
                .await;
                match answer {
                    Ok(Some(addr)) => *votes.entry(addr).or_insert(0) += 1,
                    Ok(None) => seen.push(format!("{s}: unknown name")),
                    Err(e) => seen.push(e.to_string()),
                }
            }
            let majority = sentinels.len() / 2 + 1;
            votes
                .iter()
                .find(|(_, v)| **v >= majority)
                .map(|(a, _)| *a)
                .ok_or_else(|| LabError::Timeout {
                    what: format!("a master for {name} named by a majority of sentinels"),
                    waited: Duration::ZERO,
                    last_seen: format!("votes {votes:?}; {}", seen.join("; ")),
                })
        }
    }
}
