//! Asking sentinels about a master name: one poll on one connection ([`poll`]), and a survey
//! of every configured sentinel at once under one deadline ([`survey`]).
//!
//! A poll pipelines `SENTINEL MASTER`, `SENTINEL GET-MASTER-ADDR-BY-NAME` and `SENTINEL
//! REPLICAS` in one write and reads them into a [`SentinelView`], taking the master address from
//! `GET-MASTER-ADDR-BY-NAME` (verdict rule 8). The long-running links poll on their own
//! connection forever; a lifecycle action surveys once and hands the views to the same
//! [`verdict::decide`] the service runs, so both reach the same answer from the same words.

use std::time::Duration;

use sentinel_protocol::event::{Channel, PubSubFrame};
use sentinel_protocol::sentinel::{FromReply, MasterRecord, ReplicaRecord, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::addr::{Addr, PodAliases, RunId};
use crate::verdict::{
    self, FailoverState, MasterFlags, MonotonicTime, ReportError, SentinelId, SentinelView,
    Verdict, VerdictInput,
};

use super::conn::{self, Access, ConnError, Connection};

/// What one poll of one name found.
#[derive(Debug, Clone)]
pub struct Polled {
    /// The sentinel's view, for the verdict.
    pub view: SentinelView,
    /// Its full `SENTINEL MASTER` record, when it monitors the name.
    pub record: Option<MasterRecord>,
    /// Its `SENTINEL REPLICAS` list (empty when it does not monitor the name).
    pub replicas: Vec<ReplicaRecord>,
}

/// One poll round for one name: the three queries in one write, then the three replies.
/// `Ok(None)` when the answers contradict each other (a monitor came or went between them):
/// the caller asks again.
pub async fn poll<S: AsyncRead + AsyncWrite + Unpin>(
    connection: &mut Connection<S>,
    name: &str,
    origin: Instant,
) -> Result<Option<Polled>, ConnError> {
    connection.queue(&["SENTINEL", "MASTER", name]);
    connection.queue(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", name]);
    connection.queue(&["SENTINEL", "REPLICAS", name]);
    connection.flush().await?;
    let master = Value::from(&connection.next_frame().await?);
    let address = Value::from(&connection.next_frame().await?);
    let replicas = Value::from(&connection.next_frame().await?);
    let observed_at = MonotonicTime::between(origin.into_std(), Instant::now().into_std());

    let record = read_master_record(&master)?;
    let addr = read_master_addr(&address)?;
    let verdict_record = record.as_ref().map(verdict_record).transpose()?;
    let view = match SentinelView::from_answers(verdict_record.as_ref(), addr.as_ref(), observed_at)
    {
        Ok(view) => view,
        Err(error @ (ReportError::RecordWithoutAddress | ReportError::AddressWithoutRecord)) => {
            tracing::debug!(name, %error, "contradicting answers, asking again");
            return Ok(None);
        }
    };
    let replicas = if record.is_some() {
        Vec::<ReplicaRecord>::from_value(&replicas).map_err(|error| ConnError::Reply {
            command: "SENTINEL REPLICAS",
            error,
        })?
    } else {
        Vec::new()
    };
    Ok(Some(Polled {
        view,
        record,
        replicas,
    }))
}

/// Sends `SUBSCRIBE` to every channel a sentinel publishes on and waits for every
/// confirmation: after this the connection only carries events.
pub async fn subscribe<S: AsyncRead + AsyncWrite + Unpin>(
    connection: &mut Connection<S>,
) -> Result<(), ConnError> {
    let mut command = vec!["SUBSCRIBE"];
    command.extend(Channel::published());
    connection.queue(&command);
    connection.flush().await?;
    for _ in 1..command.len() {
        let frame = connection.next_frame().await?;
        match PubSubFrame::from_value(&Value::from(&frame)) {
            Ok(PubSubFrame::Confirmation { kind, .. }) if kind == "subscribe" => {}
            _ => {
                return Err(ConnError::Subscribe(match Value::from(&frame) {
                    Value::Error(error) => error,
                    other => format!("{other:?}"),
                }));
            }
        }
    }
    Ok(())
}

/// `SENTINEL MASTER`: the record, or `None` for "No such master with that name".
pub fn read_master_record(value: &Value) -> Result<Option<MasterRecord>, ConnError> {
    match value {
        Value::Error(error) if error.contains("No such master") => Ok(None),
        Value::Error(error) => Err(ConnError::Server {
            command: "SENTINEL MASTER",
            error: error.clone(),
        }),
        value => MasterRecord::from_value(value)
            .map(Some)
            .map_err(|error| ConnError::Reply {
                command: "SENTINEL MASTER",
                error,
            }),
    }
}

/// `SENTINEL GET-MASTER-ADDR-BY-NAME`: the address, or `None` for null.
pub fn read_master_addr(value: &Value) -> Result<Option<Addr>, ConnError> {
    const COMMAND: &str = "SENTINEL GET-MASTER-ADDR-BY-NAME";
    if let Value::Error(error) = value {
        return Err(ConnError::Server {
            command: COMMAND,
            error: error.clone(),
        });
    }
    let pair =
        sentinel_protocol::sentinel::master_addr(value).map_err(|error| ConnError::Reply {
            command: COMMAND,
            error,
        })?;
    pair.map(|(host, port)| {
        Addr::from_parts(&host, &port.to_string()).map_err(|error| ConnError::Address {
            command: COMMAND,
            error,
        })
    })
    .transpose()
}

/// The fields of a protocol record the verdict reads.
pub fn verdict_record(record: &MasterRecord) -> Result<verdict::MasterRecord, ConnError> {
    const COMMAND: &str = "SENTINEL MASTER";
    let instance = &record.instance;
    let addr = Addr::from_parts(&instance.ip, &instance.port.to_string()).map_err(|error| {
        ConnError::Address {
            command: COMMAND,
            error,
        }
    })?;
    // A malformed run id is treated as unknown rather than failing the poll: the address and
    // epoch are what the verdict is built on, and an unknown run id is compatible with any.
    let run_id = RunId::parse(&instance.runid).unwrap_or(None);
    Ok(verdict::MasterRecord {
        addr,
        run_id,
        config_epoch: record.config_epoch,
        flags: MasterFlags::from_flag_list(&instance.flags.to_string()),
        failover_state: FailoverState::from_record_field(record.failover_state.as_deref()),
        num_replicas: u32::try_from(record.num_slaves).unwrap_or(u32::MAX),
        num_other_sentinels: u32::try_from(record.num_other_sentinels).unwrap_or(u32::MAX),
    })
}

/// What one sentinel gave a survey.
#[derive(Debug)]
pub enum Answer {
    /// It answered the poll.
    Polled(Box<Polled>),
    /// It did not, and why (unreachable, hung past the deadline, refused the password, ...).
    Failed(ConnError),
}

/// Every configured sentinel's answer to one poll of one name, taken at once.
#[derive(Debug)]
pub struct Survey {
    /// The master name asked about.
    pub name: String,
    /// One answer per configured sentinel (duplicates dropped), in configured order.
    pub answers: Vec<(SentinelId, Answer)>,
    /// The moment the verdict is judged at, on the clock every view is stamped against: the
    /// last answer's arrival, not the deadline, so answers that came at once are not aged by
    /// the wait for a sentinel that never answered.
    pub finished: MonotonicTime,
}

impl Survey {
    /// How many sentinels are configured: N of every majority.
    pub fn configured(&self) -> usize {
        self.answers.len()
    }

    /// The verdict input: every answered view, the rest unreachable.
    pub fn input(&self) -> VerdictInput {
        self.answers.iter().fold(
            VerdictInput::new(self.configured(), self.finished),
            |input, (id, answer)| match answer {
                Answer::Polled(polled) => input.with_view(id.clone(), polled.view.clone()),
                Answer::Failed(_) => input,
            },
        )
    }

    /// The verdict the service would reach from these answers.
    pub fn verdict(&self, aliases: &PodAliases) -> Verdict {
        verdict::decide(&self.input(), aliases)
    }

    /// `reason` followed by why each silent sentinel did not answer (refused TLS, wrong
    /// password, timed out), so an action's error line names the peers and the causes.
    pub fn explain(&self, reason: impl std::fmt::Display) -> String {
        let silent: Vec<String> = self
            .answers
            .iter()
            .filter_map(|(id, answer)| match answer {
                Answer::Failed(error) => Some(format!("{id} ({error})")),
                Answer::Polled(_) => None,
            })
            .collect();
        if silent.is_empty() {
            reason.to_string()
        } else {
            format!("{reason}; no answer from {}", silent.join(", "))
        }
    }

    /// The answers that were polled, with their sentinel.
    pub fn polled(&self) -> impl Iterator<Item = (&SentinelId, &Polled)> {
        self.answers.iter().filter_map(|(id, answer)| match answer {
            Answer::Polled(polled) => Some((id, &**polled)),
            Answer::Failed(_) => None,
        })
    }
}

/// Polls `name` on every sentinel in parallel, each on a fresh connection, all under one
/// deadline: a sentinel that hangs or black-holes traffic costs its own answer only, and the
/// survey ends by `deadline` whatever the sentinels do.
pub async fn survey(sentinels: &[Addr], name: &str, access: &Access, deadline: Duration) -> Survey {
    let origin = Instant::now();
    let until = origin + deadline;
    let mut unique: Vec<Addr> = Vec::with_capacity(sentinels.len());
    for addr in sentinels {
        if !unique.contains(addr) {
            unique.push(addr.clone());
        }
    }
    let mut running = JoinSet::new();
    for (index, addr) in unique.iter().cloned().enumerate() {
        let name = name.to_owned();
        let access = access.clone();
        running.spawn(async move {
            let asked = tokio::time::timeout_at(until, ask(&addr, &name, &access, origin));
            let answer = match asked.await {
                Ok(Ok(polled)) => Answer::Polled(Box::new(polled)),
                Ok(Err(error)) => Answer::Failed(error),
                Err(_) => Answer::Failed(ConnError::Timeout(deadline, "surveying")),
            };
            (index, answer)
        });
    }
    let mut answers: Vec<(usize, Answer)> = running.join_all().await;
    answers.sort_by_key(|(index, _)| *index);
    let finished = answers
        .iter()
        .filter_map(|(_, answer)| match answer {
            Answer::Polled(polled) => observed_at(&polled.view),
            Answer::Failed(_) => None,
        })
        .max()
        .unwrap_or_else(|| MonotonicTime::between(origin.into_std(), Instant::now().into_std()));
    Survey {
        name: name.to_owned(),
        answers: unique
            .into_iter()
            .map(SentinelId::new)
            .zip(answers.into_iter().map(|(_, answer)| answer))
            .collect(),
        finished,
    }
}

/// When a view was observed (an unreachable one never was).
fn observed_at(view: &SentinelView) -> Option<MonotonicTime> {
    match view {
        SentinelView::Unreachable => None,
        SentinelView::Unmonitored { observed_at } => Some(*observed_at),
        SentinelView::Reports(report) => Some(report.observed_at),
    }
}

/// Connects and polls until the answers agree with each other (a monitor added or removed
/// between two of the three queries is asked again, a few times at most).
async fn ask(
    addr: &Addr,
    name: &str,
    access: &Access,
    origin: Instant,
) -> Result<Polled, ConnError> {
    let mut connection = conn::connect(addr, access).await?;
    for _ in 0..3 {
        if let Some(polled) = poll(&mut connection, name, origin).await? {
            return Ok(polled);
        }
    }
    Err(ConnError::Server {
        command: "SENTINEL MASTER",
        error: "the monitor kept changing between queries".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_name_is_unmonitored_and_other_errors_are_failures() {
        let unknown = Value::Error("ERR No such master with that name".into());
        assert_eq!(read_master_record(&unknown).expect("not an error"), None);
        let noauth = Value::Error("NOAUTH Authentication required.".into());
        assert!(matches!(
            read_master_record(&noauth),
            Err(ConnError::Server { .. })
        ));
        assert!(matches!(
            read_master_addr(&noauth),
            Err(ConnError::Server { .. })
        ));
        assert_eq!(read_master_addr(&Value::Null).expect("null"), None);
        let lying = Value::Array(vec![Value::Str("10.0.0.1".into())]);
        assert!(matches!(
            read_master_addr(&lying),
            Err(ConnError::Reply { .. })
        ));
    }
}
