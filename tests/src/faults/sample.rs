//! The samplers a run keeps going for its whole length, each at 10 Hz with the time of every
//! sample: what the coordinator answers, what each sentinel answers, and what `role-probe`
//! (the library call the subcommand makes) says of each data pod.
//!
//! Shared state: each sampler appends to its own `Arc<Mutex<Vec<Sample>>>`; only its task
//! writes, the runner reads a copy when it checks.

use std::{
    fmt,
    future::Future,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use sentinel_protocol::sentinel::{FromReply, MasterRecord, Value, master_addr};
use tokio::{task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::client::{Client, Transport};

/// One sample every this often.
pub const PERIOD: Duration = Duration::from_millis(100);
/// The longest a sampled question may take: the coordinator's deadline.
pub const DEADLINE: Duration = Duration::from_millis(1000);

/// What one source answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `GET-MASTER-ADDR-BY-NAME`: the address, or null.
    Names(Option<SocketAddr>),
    /// `role-probe`: `primary <epoch>`.
    Primary(u64),
    /// `role-probe`: `secondary [<epoch>]`.
    Secondary,
    /// `role-probe` proved nothing (it would exit non-zero).
    NoProof,
    /// No answer within [`DEADLINE`].
    TimedOut,
    /// An error (refused, reset, an error reply).
    Failed(String),
}

/// One answer, with when it was asked (since the run started) and how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// When the question was sent, since the run started.
    pub at: Duration,
    /// The source: 0 for the coordinator, `j` for sentinel `j`, `i` for data pod `i`.
    pub source: usize,
    /// The sampling round (probes: all pods of a round are asked at once).
    pub round: u64,
    /// What it answered.
    pub answer: Answer,
    /// With [`Answer::Names`]: the config epoch of the same source's `SENTINEL MASTER`, asked
    /// in the same round trip (`None`: no record, or another kind of sample).
    pub epoch: Option<u64>,
    /// How long the answer took.
    pub latency: Duration,
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>8.3}s #{} {:?}{} ({} ms)",
            self.at.as_secs_f64(),
            self.source,
            self.answer,
            self.epoch
                .map(|e| format!(" epoch {e}"))
                .unwrap_or_default(),
            self.latency.as_millis()
        )
    }
}

/// A running sampler.
#[derive(Debug)]
pub struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Sampler {
    /// The samples so far, in the order they were taken.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().expect("samples poisoned").clone()
    }

    /// Stops the tasks and returns every sample.
    pub async fn stop(mut self) -> Vec<Sample> {
        self.stop.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        self.samples()
    }

    /// Asks `GET-MASTER-ADDR-BY-NAME <name>` of each of `endpoints` (source = index), over one
    /// kept connection per endpoint, reconnecting after any failure.
    pub fn master_addr(endpoints: Vec<SocketAddr>, name: &str, started: Instant) -> Sampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let tasks = endpoints
            .into_iter()
            .enumerate()
            .map(|(source, addr)| {
                let (samples, stop, name) = (samples.clone(), stop.clone(), name.to_string());
                tokio::spawn(async move {
                    let mut conn: Option<Client> = None;
                    let mut round = 0;
                    while !stop.is_cancelled() {
                        let asked = Instant::now();
                        let answer = tokio::time::timeout(DEADLINE, ask(&mut conn, addr, &name))
                            .await
                            .unwrap_or(Err(None));
                        let (answer, epoch) = match answer {
                            Ok((addr, epoch)) => (Answer::Names(addr), epoch),
                            Err(error) => {
                                conn = None;
                                (error.map_or(Answer::TimedOut, Answer::Failed), None)
                            }
                        };
                        push(&samples, started, asked, source, round, answer, epoch);
                        round += 1;
                        pace(&stop, asked).await;
                    }
                })
            })
            .collect();
        Sampler {
            samples,
            stop,
            tasks,
        }
    }

    /// Asks `round` every period: each round returns `(source, answer)` pairs, all stamped
    /// with the round's start (what the test's own samplers use, `role-probe` among them).
    pub fn rounds<F, Fut>(started: Instant, mut round: F) -> Sampler
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Vec<(usize, Answer)>> + Send,
    {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let task = {
            let (samples, stop) = (samples.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.is_cancelled() {
                    let asked = Instant::now();
                    let answers = tokio::select! {
                        _ = stop.cancelled() => break,
                        answers = round() => answers,
                    };
                    for (source, answer) in answers {
                        push(&samples, started, asked, source, n, answer, None);
                    }
                    n += 1;
                    pace(&stop, asked).await;
                }
            })
        };
        Sampler {
            samples,
            stop,
            tasks: vec![task],
        }
    }
}

fn push(
    samples: &Mutex<Vec<Sample>>,
    started: Instant,
    asked: Instant,
    source: usize,
    round: u64,
    answer: Answer,
    epoch: Option<u64>,
) {
    samples.lock().expect("samples poisoned").push(Sample {
        at: asked.duration_since(started),
        source,
        round,
        answer,
        epoch,
        latency: asked.elapsed(),
    });
}

/// Sleeps until the next round, or until stopped.
async fn pace(stop: &CancellationToken, asked: Instant) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep_until(asked + PERIOD) => {}
    }
}

/// One `GET-MASTER-ADDR-BY-NAME` and the `SENTINEL MASTER` record's config epoch, pipelined;
/// `Err(Some(why))` on a failure.
async fn ask(
    conn: &mut Option<Client>,
    addr: SocketAddr,
    name: &str,
) -> Result<(Option<SocketAddr>, Option<u64>), Option<String>> {
    if conn.is_none() {
        let client = Client::connect_over(addr, &Transport::Plain, None, DEADLINE)
            .await
            .map_err(|e| Some(e.to_string()))?;
        *conn = Some(client);
    }
    let client = conn.as_mut().expect("connected above");
    let frame = client
        .call(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", name])
        .await
        .map_err(|e| Some(e.to_string()))?;
    let named = match master_addr(&Value::from(&frame)) {
        Ok(None) => None,
        Ok(Some((ip, port))) => Some(
            format!("{ip}:{port}")
                .parse()
                .map_err(|_| Some(format!("unparsable address {ip}:{port}")))?,
        ),
        Err(e) => return Err(Some(format!("unexpected reply: {e:?}"))),
    };
    // An unknown name is an error reply here: no record, no epoch, not a failure.
    let epoch = match client.call_raw(&["SENTINEL", "MASTER", name]).await {
        Ok(frame) => MasterRecord::from_resp2(&frame)
            .ok()
            .map(|r| r.config_epoch),
        Err(e) => return Err(Some(e.to_string())),
    };
    Ok((named, epoch))
}
