//! The data pods' own word on who the master is, for when the sentinels lost their monitors
//! (rule H6 of the healer's planner): a pure choice over what each configured data pod
//! answered to `INFO replication`.
//!
//! # Rules
//!
//! - Only a master with at least one *attached* replica (listed `online` in its own
//!   `INFO replication`) is a candidate. A master without replicas proves nothing: it may be a
//!   pod that elected itself during a bootstrap race, or a deposed master that restarted from its
//!   own stale configuration, and the sentinels would then follow a dead lineage.
//! - One candidate: that one. Several: the one with the strictly newest replication offset;
//!   a tie registers nothing. Never the first in the list.
//! - If sentinels still monitor the name, the candidate must be the master they name;
//!   otherwise nothing is registered (the two kinds of evidence disagree).
//! - Every refusal says why, with what was seen.

use std::fmt;

use sentinel_protocol::info::InfoReplication;

use crate::addr::{Addr, PodAliases};

/// What one data pod said about its replication role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodProbe {
    /// No answer within the deadline, or an error.
    Unreachable,
    /// `role:master`.
    Master {
        /// Replicas listed with `state=online`.
        attached: Vec<Addr>,
        /// `master_repl_offset`.
        offset: i64,
    },
    /// `role:slave`.
    Replica { master: Option<Addr>, link_up: bool },
}

/// What an `INFO replication` says, as the data-plane choice reads it.
pub fn probe_of(info: &InfoReplication) -> PodProbe {
    if info.is_master() {
        let attached = info
            .slaves
            .iter()
            .filter(|replica| replica.state == "online")
            .filter_map(|replica| Addr::from_parts(&replica.ip, &replica.port.to_string()).ok())
            .collect();
        PodProbe::Master {
            attached,
            offset: info.master_repl_offset.unwrap_or(0),
        }
    } else {
        let master = match (&info.master_host, info.master_port) {
            (Some(host), Some(port)) => Addr::from_parts(host, &port.to_string()).ok(),
            _ => None,
        };
        PodProbe::Replica {
            master,
            link_up: info.master_link_status.as_deref() == Some("up"),
        }
    }
}

impl fmt::Display for PodProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PodProbe::Unreachable => f.write_str("unreachable"),
            PodProbe::Master { attached, offset } => write!(
                f,
                "master with {} attached replicas at offset {offset}",
                attached.len()
            ),
            PodProbe::Replica { master, link_up } => write!(
                f,
                "replica of {} (link {})",
                master
                    .as_ref()
                    .map_or_else(|| "?".to_owned(), ToString::to_string),
                if *link_up { "up" } else { "down" }
            ),
        }
    }
}

/// Why the data pods prove no master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No data pod is configured (`--data-pod`), so there is nothing to ask.
    NoDataPods,
    /// No reachable master has an attached replica.
    NoMasterWithReplicas { masters: Vec<Addr> },
    /// Several masters with replicas share the newest offset.
    Tie { masters: Vec<Addr>, offset: i64 },
    /// The data pods prove one master, the still-monitoring sentinels name another.
    Conflict { proven: Addr, named: Addr },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |addrs: &[Addr]| {
            addrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Refusal::NoDataPods => f.write_str("no data pod is configured (--data-pod)"),
            Refusal::NoMasterWithReplicas { masters } if masters.is_empty() => {
                f.write_str("no reachable data pod is a master")
            }
            Refusal::NoMasterWithReplicas { masters } => write!(
                f,
                "no master has an attached replica (masters without replicas: {})",
                list(masters)
            ),
            Refusal::Tie { masters, offset } => write!(
                f,
                "several masters with replicas share the newest offset {offset}: {}",
                list(masters)
            ),
            Refusal::Conflict { proven, named } => write!(
                f,
                "the data pods prove {proven} but the monitoring sentinels name {named}"
            ),
        }
    }
}

/// The master the data pods prove, given what the still-monitoring sentinels name.
pub fn choose_master(
    probes: &[(Addr, PodProbe)],
    named: Option<&Addr>,
    aliases: &PodAliases,
) -> Result<Addr, Refusal> {
    if probes.is_empty() {
        return Err(Refusal::NoDataPods);
    }
    let mut masters = Vec::new();
    let mut candidates: Vec<(&Addr, i64)> = Vec::new();
    for (addr, probe) in probes {
        if let PodProbe::Master { attached, offset } = probe {
            masters.push(addr.clone());
            if !attached.is_empty() {
                candidates.push((addr, *offset));
            }
        }
    }
    let Some(newest) = candidates.iter().map(|(_, offset)| *offset).max() else {
        masters.sort();
        return Err(Refusal::NoMasterWithReplicas { masters });
    };
    let mut newest_masters: Vec<Addr> = candidates
        .iter()
        .filter(|(_, offset)| *offset == newest)
        .map(|(addr, _)| (*addr).clone())
        .collect();
    if newest_masters.len() > 1 {
        newest_masters.sort();
        return Err(Refusal::Tie {
            masters: newest_masters,
            offset: newest,
        });
    }
    let proven = newest_masters.remove(0);
    match named {
        Some(named) if aliases.identify(named) != aliases.identify(&proven) => {
            Err(Refusal::Conflict {
                proven,
                named: named.clone(),
            })
        }
        _ => Ok(proven),
    }
}
