//! What the group agrees on, as an action learns it: a coordinator's answer when one gives it
//! in time, else every sentinel surveyed directly and decided by [`crate::verdict::decide`],
//! the function the service runs, so an action and a coordinator never disagree on the rules.
//!
//! A coordinator is asked `SENTINEL MASTER <name>`, which it answers only for an agreed master
//! (a record whose `ip`/`port` are the agreed master, `config-epoch` the agreed epoch, `flags`
//! carrying `failover_in_progress` when the verdict does, `num-other-sentinels` votes - 1).
//! Anything else (no quorum, unreachable, out of its share of the budget) sends the action to
//! the sentinels: a coordinator's "I don't know" is not evidence of a split.

use std::time::Duration;

use sentinel_protocol::sentinel::{Flag, Value};

use crate::addr::{Addr, RunId};
use crate::sentinel::conn::{self, ConnError};
use crate::sentinel::query::{self, Survey};
use crate::verdict::{Agreement, NoQuorum, Verdict};

use super::{Budget, Target};

/// How much of the budget the coordinators get before the sentinels are asked.
pub const COORDINATOR_SHARE: Duration = Duration::from_millis(1_000);
/// The longest one survey of the sentinels may take: a sentinel answers a poll in
/// milliseconds, so one silent for a second is hung or cut off, and an action that surveys
/// again while it waits (switchover, member-leave) pays this for every look.
pub const SURVEY_CAP: Duration = Duration::from_millis(1_000);

/// The agreed master, as an action needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgreedMaster {
    pub master: Addr,
    /// Its run id, when the voters report one (the role probe's proof of identity).
    pub run_id: Option<RunId>,
    pub config_epoch: u64,
    /// A counting sentinel runs a failover: wait, do not act.
    pub failover_in_progress: bool,
    /// How many sentinels agree.
    pub votes: usize,
}

impl From<&Agreement> for AgreedMaster {
    fn from(agreement: &Agreement) -> Self {
        Self {
            master: agreement.master.clone(),
            run_id: agreement.run_id.clone(),
            config_epoch: agreement.config_epoch,
            failover_in_progress: agreement.failover_in_progress,
            votes: agreement.votes,
        }
    }
}

/// Where an agreement was learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Coordinator(Addr),
    Sentinels,
}

/// What the action learnt.
#[derive(Debug)]
pub enum Knowledge {
    /// A majority agrees on a master.
    Agreed {
        master: AgreedMaster,
        source: Source,
    },
    /// No master is agreed; the survey says why.
    NoQuorum { verdict: NoQuorum, survey: Survey },
}

impl Knowledge {
    /// The agreed master, if any.
    pub fn agreed(&self) -> Option<&AgreedMaster> {
        match self {
            Knowledge::Agreed { master, .. } => Some(master),
            Knowledge::NoQuorum { .. } => None,
        }
    }
}

/// Asks the coordinators (within [`COORDINATOR_SHARE`]), then the sentinels.
pub async fn learn(target: &Target, budget: &Budget) -> Knowledge {
    if !target.coordinators.is_empty()
        && let Some((master, source)) = ask_coordinators(target, budget).await
    {
        return Knowledge::Agreed { master, source };
    }
    let survey = survey(target, budget).await;
    match survey.verdict(&target.aliases) {
        Verdict::Agreed(agreement) => Knowledge::Agreed {
            master: AgreedMaster::from(&agreement),
            source: Source::Sentinels,
        },
        Verdict::NoQuorum(verdict) => Knowledge::NoQuorum { verdict, survey },
    }
}

/// Every sentinel's answer, in parallel, within what is left of the budget (at most
/// [`SURVEY_CAP`], so a retrying action can survey again).
pub async fn survey(target: &Target, budget: &Budget) -> Survey {
    query::survey(
        &target.sentinels,
        &target.master_name,
        &target.sentinel_access,
        budget.share(SURVEY_CAP),
    )
    .await
}

/// The first coordinator that names an agreed master within the share, asked all at once.
async fn ask_coordinators(target: &Target, budget: &Budget) -> Option<(AgreedMaster, Source)> {
    let share = budget.share(COORDINATOR_SHARE);
    let mut asking = tokio::task::JoinSet::new();
    for coordinator in &target.coordinators {
        let coordinator = coordinator.clone();
        let access = target.coordinator_access.clone();
        let name = target.master_name.clone();
        asking.spawn(async move {
            let asked = async {
                let mut connection = conn::connect(&coordinator, &access).await?;
                let reply = connection
                    .call(&["SENTINEL", "MASTER", name.as_str()])
                    .await?;
                agreed_from_record(&reply)
            };
            match tokio::time::timeout(share, asked).await {
                Ok(Ok(Some(master))) => Some((master, Source::Coordinator(coordinator))),
                Ok(Ok(None)) => None,
                Ok(Err(error)) => {
                    tracing::debug!(%coordinator, %error, "coordinator gave no verdict");
                    None
                }
                Err(_) => None,
            }
        });
    }
    while let Some(answer) = asking.join_next().await {
        if let Ok(Some(found)) = answer {
            return Some(found);
        }
    }
    None
}

/// A coordinator's `SENTINEL MASTER` answer: the agreed master, or `None` when it has none.
fn agreed_from_record(reply: &Value) -> Result<Option<AgreedMaster>, ConnError> {
    let Some(record) = query::read_master_record(reply)? else {
        return Ok(None);
    };
    let master = Addr::from_parts(&record.instance.ip, &record.instance.port.to_string()).map_err(
        |error| ConnError::Address {
            command: "SENTINEL MASTER",
            error,
        },
    )?;
    Ok(Some(AgreedMaster {
        master,
        run_id: RunId::parse(&record.instance.runid).ok().flatten(),
        config_epoch: record.config_epoch,
        failover_in_progress: record.instance.flags.contains(Flag::FailoverInProgress),
        votes: usize::try_from(record.num_other_sentinels)
            .unwrap_or(usize::MAX)
            .saturating_add(1),
    }))
}
