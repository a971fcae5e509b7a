//! A `ROLE` sampler over every data pod, and the question that matters most for safety: was there
//! ever a moment when two pods answered "master"?
//!
//! One task per pod keeps a connection and asks `ROLE` every period (default 50 ms, 20 Hz),
//! reconnecting after errors (a killed or restarting pod shows up as `Unreachable`). Each sample
//! is stamped with the time its reply arrived.
//!
//! Limit: a probe times out after four periods, so a stalled pod (SIGSTOP, a long fork) is
//! recorded as `Unreachable`, not as whatever it would claim once it wakes up; the check can miss
//! a claim nobody could have seen, never report one that was not answered.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use sentinel_protocol::role::Role;
use tokio::{task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    client::{Client, Credentials, Transport},
    lab::Lab,
};

/// Default sampling period (20 Hz).
pub const DEFAULT_PERIOD: Duration = Duration::from_millis(50);

/// What one sample saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SampledRole {
    /// `ROLE` said master.
    Master,
    /// `ROLE` said replica of `master` (`ip:port`), link state as reported.
    Replica {
        /// The master followed.
        master: String,
        /// `connect`, `connecting`, `sync`, `connected`.
        state: String,
    },
    /// No answer (connection refused or reset, timeout, error reply).
    Unreachable(String),
}

/// One sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSample {
    /// Index of the data pod.
    pub pod: usize,
    /// When the reply arrived.
    pub at: Instant,
    /// What it said.
    pub role: SampledRole,
}

/// A moment when more than one pod answered master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DualMaster {
    /// When it was seen (the later of the two answers).
    pub at: Instant,
    /// Time since the sampler started.
    pub since_start: Duration,
    /// The pods (indices) that answered master within the freshness window.
    pub pods: Vec<usize>,
}

/// The samples of every pod, in time order.
#[derive(Debug, Clone)]
pub struct RoleTimeline {
    /// When sampling started.
    pub started: Instant,
    /// The period asked for.
    pub period: Duration,
    /// The samples, in arrival order.
    pub samples: Vec<RoleSample>,
}

impl RoleTimeline {
    /// Every moment when two or more pods answered master with answers no older than two
    /// periods: a pod counts as master at a sample's instant if its latest sample said master
    /// and that sample is that fresh. (A killed master's last "master" answer goes stale after
    /// two periods rather than counting forever.)
    pub fn dual_masters(&self) -> Vec<DualMaster> {
        let window = self.period * 2;
        let mut latest: Vec<Option<&RoleSample>> = Vec::new();
        let mut found = Vec::new();
        for sample in self.in_time_order() {
            if latest.len() <= sample.pod {
                latest.resize(sample.pod + 1, None);
            }
            latest[sample.pod] = Some(sample);
            let masters: Vec<usize> = latest
                .iter()
                .flatten()
                .filter(|s| {
                    s.role == SampledRole::Master && sample.at.duration_since(s.at) <= window
                })
                .map(|s| s.pod)
                .collect();
            if masters.len() > 1 {
                found.push(DualMaster {
                    at: sample.at,
                    since_start: sample.at.duration_since(self.started),
                    pods: masters,
                });
            }
        }
        found
    }

    /// The samples sorted by arrival time (tasks push them concurrently, so the stored order can
    /// be off by a few microseconds).
    fn in_time_order(&self) -> Vec<&RoleSample> {
        let mut samples: Vec<&RoleSample> = self.samples.iter().collect();
        samples.sort_by_key(|s| s.at);
        samples
    }

    /// A compact rendering: one line per role change per pod.
    pub fn changes(&self) -> String {
        let mut last: Vec<Option<&SampledRole>> = Vec::new();
        let mut out = String::new();
        for s in self.in_time_order() {
            if last.len() <= s.pod {
                last.resize(s.pod + 1, None);
            }
            if last[s.pod] != Some(&s.role) {
                let t = s.at.duration_since(self.started);
                out.push_str(&format!(
                    "{:>8.3}s valkey-{} {:?}\n",
                    t.as_secs_f64(),
                    s.pod,
                    s.role
                ));
                last[s.pod] = Some(&s.role);
            }
        }
        out
    }
}

/// The running sampler.
#[derive(Debug)]
pub struct RoleSampler {
    samples: Arc<Mutex<Vec<RoleSample>>>,
    started: Instant,
    period: Duration,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl RoleSampler {
    /// Samples every data pod of `lab` every [`DEFAULT_PERIOD`].
    pub fn start(lab: &Lab) -> Self {
        Self::start_on(
            lab.data_addrs(),
            lab.transport().clone(),
            lab.data_credentials(),
            DEFAULT_PERIOD,
        )
    }

    /// Samples the given pods over `transport` every `period`.
    pub fn start_on(
        pods: Vec<SocketAddr>,
        transport: Transport,
        credentials: Option<Credentials>,
        period: Duration,
    ) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let tasks = pods
            .into_iter()
            .enumerate()
            .map(|(pod, addr)| {
                tokio::spawn(sample_pod(
                    pod,
                    addr,
                    transport.clone(),
                    credentials.clone(),
                    period,
                    samples.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        RoleSampler {
            samples,
            started: Instant::now(),
            period,
            stop,
            tasks,
        }
    }

    /// The timeline so far.
    pub fn timeline(&self) -> RoleTimeline {
        RoleTimeline {
            started: self.started,
            period: self.period,
            samples: self.samples.lock().expect("sampler poisoned").clone(),
        }
    }

    /// Stops sampling and returns the timeline.
    pub async fn stop(mut self) -> RoleTimeline {
        self.stop.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        self.timeline()
    }
}

impl Drop for RoleSampler {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn sample_pod(
    pod: usize,
    addr: SocketAddr,
    transport: Transport,
    credentials: Option<Credentials>,
    period: Duration,
    samples: Arc<Mutex<Vec<RoleSample>>>,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn: Option<Client> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let probe = async {
            if conn.is_none() {
                conn = Some(
                    Client::connect_over(addr, &transport, credentials.as_ref(), period * 4)
                        .await?,
                );
            }
            conn.as_mut().expect("connected above").role().await
        };
        let role = tokio::select! {
            _ = stop.cancelled() => return,
            r = probe => r,
        };
        let role = match role {
            Ok(Role::Master { .. }) => SampledRole::Master,
            Ok(Role::Slave {
                master_ip,
                master_port,
                state,
                ..
            }) => SampledRole::Replica {
                master: format!("{master_ip}:{master_port}"),
                state: state.to_string(),
            },
            Ok(other) => SampledRole::Unreachable(format!("unexpected ROLE {other:?}")),
            Err(e) => {
                conn = None;
                SampledRole::Unreachable(e.to_string())
            }
        };
        samples.lock().expect("sampler poisoned").push(RoleSample {
            pod,
            at: Instant::now(),
            role,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(samples: &[(usize, u64, SampledRole)]) -> RoleTimeline {
        let started = Instant::now();
        RoleTimeline {
            started,
            period: Duration::from_millis(50),
            samples: samples
                .iter()
                .map(|(pod, ms, role)| RoleSample {
                    pod: *pod,
                    at: started + Duration::from_millis(*ms),
                    role: role.clone(),
                })
                .collect(),
        }
    }

    fn replica() -> SampledRole {
        SampledRole::Replica {
            master: "127.0.0.1:6379".into(),
            state: "connected".into(),
        }
    }

    #[test]
    fn a_clean_handover_has_no_dual_master() {
        let down = SampledRole::Unreachable("refused".into());
        let t = timeline(&[
            (0, 0, SampledRole::Master),
            (1, 1, replica()),
            (0, 50, down.clone()),
            (1, 51, replica()),
            (0, 100, down),
            (1, 101, SampledRole::Master),
        ]);
        assert!(t.dual_masters().is_empty());
    }

    #[test]
    fn two_fresh_master_answers_are_reported() {
        let t = timeline(&[
            (0, 0, SampledRole::Master),
            (1, 10, SampledRole::Master),
            (2, 20, replica()),
        ]);
        let dual = t.dual_masters();
        assert_eq!(dual.len(), 2, "{dual:?}");
        assert_eq!(dual[0].pods, vec![0, 1]);
        assert_eq!(dual[0].since_start, Duration::from_millis(10));
    }

    #[test]
    fn a_stale_master_answer_does_not_count() {
        // Pod 0's last answer is older than two periods when pod 1 answers master.
        let t = timeline(&[(0, 0, SampledRole::Master), (1, 150, SampledRole::Master)]);
        assert!(t.dual_masters().is_empty());
    }

    #[test]
    fn samples_are_ordered_by_time_before_checking() {
        let t = timeline(&[
            (1, 40, SampledRole::Master),
            (0, 0, SampledRole::Master),
            (0, 30, replica()),
        ]);
        assert!(t.dual_masters().is_empty(), "{:?}", t.dual_masters());
    }
}
