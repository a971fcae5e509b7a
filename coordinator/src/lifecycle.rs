//! The lifecycle actions KubeBlocks calls through the addon's scripts (DESIGN section 5): each a
//! one-shot subcommand that answers one question about one pod, or makes one change, and exits.
//!
//! Every action is a pure plan over what the sentinels and data pods say (testable without a
//! server in sight) with a thin executor over [`crate::sentinel`]; none depends on the
//! long-running service. They share what this module holds:
//!
//! - [`Target`]: the replication group as the caller describes it (master name, every sentinel,
//!   every data pod in ordinal order, the pod the action is about, coordinators to ask first,
//!   credentials), with the one table that maps address forms to pods.
//! - [`Budget`]: the action's whole time budget. KubeBlocks kills an action's process group at
//!   its timeout, so every wait is cut to what is left, and every action ends by its deadline
//!   whatever the sentinels do (hang, black-hole, lie).
//! - [`knowledge`]: what the group agrees on, asked of a coordinator first and of the sentinels
//!   directly when none answers, through the same verdict function the service runs.
//!
//! The contract with the scripts is fixed: on success exactly the documented line on stdout and
//! exit 0; on failure nothing on stdout, one line on stderr naming the reason, exit 1.

pub mod account;
pub mod knowledge;
pub mod member_leave;
pub mod reconfigure;
pub mod role_probe;
pub mod startup;
pub mod status;
pub mod switchover;

use std::time::Duration;

use tokio::time::Instant;

use crate::addr::{Addr, PodAliases, PodId};
use crate::sentinel::conn::Access;

/// An action's budget when `--timeout-ms` is not given: below kbagent's 30 s default timeout,
/// with room for the process to start and print.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(25);

/// The longest one question to one data pod may take (`INFO`, `ROLE`): a black-holed pod costs
/// its own answer, not the action's budget.
pub const POD_CAP: Duration = Duration::from_millis(1_000);

/// The replication group one action runs against.
#[derive(Debug, Clone)]
pub struct Target {
    /// The master name the sentinels monitor.
    pub master_name: String,
    /// Every configured sentinel: majorities are of this list's length.
    pub sentinels: Vec<Addr>,
    /// Every data pod, in ordinal order.
    pub data_pods: Vec<Addr>,
    /// The pod the action is about (see each action).
    pub pod: Option<Addr>,
    /// Coordinators asked before the sentinels.
    pub coordinators: Vec<Addr>,
    pub sentinel_access: Access,
    pub data_access: Access,
    pub coordinator_access: Access,
    /// Address forms that stand for the same pod; every data pod stands for itself.
    pub aliases: PodAliases,
}

impl Target {
    /// A group with no credentials and no aliases but the data pods' own addresses.
    pub fn new(master_name: impl Into<String>, sentinels: Vec<Addr>, data_pods: Vec<Addr>) -> Self {
        let mut target = Self {
            master_name: master_name.into(),
            sentinels,
            data_pods: Vec::new(),
            pod: None,
            coordinators: Vec::new(),
            sentinel_access: Access::default(),
            data_access: Access::default(),
            coordinator_access: Access::default(),
            aliases: PodAliases::new(),
        };
        target.set_data_pods(data_pods);
        target
    }

    /// Sets the data pods, each its own pod in the alias table (`pod-<ordinal>`).
    pub fn set_data_pods(&mut self, data_pods: Vec<Addr>) {
        for (ordinal, addr) in data_pods.iter().enumerate() {
            // A data pod listed twice is the same pod twice, never two pods: keep the first.
            let _ = self
                .aliases
                .insert(addr.clone(), PodId::new(format!("pod-{ordinal}")));
        }
        self.data_pods = data_pods;
    }

    /// Whether two address forms reach the same pod.
    pub fn same_pod(&self, a: &Addr, b: &Addr) -> bool {
        self.aliases.identify(a) == self.aliases.identify(b)
    }

    /// The ordinal of the data pod `addr` reaches, if it is one of them.
    pub fn ordinal_of(&self, addr: &Addr) -> Option<usize> {
        self.data_pods
            .iter()
            .position(|pod| self.same_pod(pod, addr))
    }

    /// The pod this action is about, or the reason it is missing.
    pub fn pod(&self) -> Result<&Addr, ActionError> {
        self.pod
            .as_ref()
            .ok_or(ActionError::Usage("--pod is required"))
    }
}

/// An action's deadline.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    started: Instant,
    deadline: Instant,
}

impl Budget {
    /// A budget of `total` from now.
    pub fn new(total: Duration) -> Self {
        let started = Instant::now();
        Self {
            started,
            deadline: started + total,
        }
    }

    /// When it runs out.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// What is left (zero once spent).
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Whether nothing is left.
    pub fn spent(&self) -> bool {
        self.remaining().is_zero()
    }

    /// How long the action has run.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// At most `cap` of what is left: the share one step may take.
    pub fn share(&self, cap: Duration) -> Duration {
        self.remaining().min(cap)
    }

    /// Runs `step` with what is left; `Err(ActionError::OutOfTime)` naming `what` if it is not
    /// done by the deadline.
    pub async fn run<T>(
        &self,
        what: &'static str,
        step: impl std::future::Future<Output = T>,
    ) -> Result<T, ActionError> {
        tokio::time::timeout_at(self.deadline, step)
            .await
            .map_err(|_| ActionError::OutOfTime(what))
    }

    /// Sleeps `delay`, or until the deadline if that comes first.
    pub async fn pause(&self, delay: Duration) {
        tokio::time::sleep(self.share(delay)).await;
    }
}

/// Why an action could not prove success. Printed as the one stderr line: it never carries a
/// secret (connection errors hold the servers' words only).
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{0}")]
    Usage(&'static str),
    #[error("out of time while {0}")]
    OutOfTime(&'static str),
    #[error("{0}")]
    Refused(String),
    #[error("{what}: {source}")]
    Conn {
        what: String,
        #[source]
        source: crate::sentinel::conn::ConnError,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ActionError {
    /// A refusal with its reason.
    pub fn refused(reason: impl Into<String>) -> Self {
        Self::Refused(reason.into())
    }

    /// A failed conversation with a server, saying which.
    pub fn conn(what: impl Into<String>, source: crate::sentinel::conn::ConnError) -> Self {
        Self::Conn {
            what: what.into(),
            source,
        }
    }
}
