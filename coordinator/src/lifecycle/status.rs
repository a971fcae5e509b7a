//! `status`: one look at everything, for an operator at a pod's shell. Every sentinel and every
//! data pod is asked at once under the budget; the table shows each sentinel's view, each pod's
//! own `ROLE` and offset, and the verdict with its reason. Exit 0 only when a master is agreed.

use std::fmt::Write as _;

use sentinel_protocol::role::Role;
use serde_json::json;
use tokio::task::JoinSet;

use crate::addr::Addr;
use crate::sentinel::conn;
use crate::sentinel::dataplane;
use crate::sentinel::query::{Answer, Survey};
use crate::verdict::{SentinelView, Verdict, majority_of};

use super::knowledge;
use super::{ActionError, Budget, Target};

/// What one data pod answered.
#[derive(Debug)]
pub struct PodStatus {
    pub addr: Addr,
    pub role: Result<Role, String>,
}

/// Everything `status` saw.
#[derive(Debug)]
pub struct Status {
    pub survey: Survey,
    pub verdict: Verdict,
    pub pods: Vec<PodStatus>,
}

/// Surveys the sentinels and asks every data pod at once.
pub async fn run(target: &Target, budget: &Budget) -> Status {
    let mut asking = JoinSet::new();
    for (index, pod) in target.data_pods.iter().cloned().enumerate() {
        let access = target.data_access.clone();
        let budget = *budget;
        asking.spawn(async move {
            let asked = async {
                let mut connection = conn::connect(&pod, &access).await?;
                dataplane::role(&mut connection).await
            };
            let role = match tokio::time::timeout(budget.share(super::POD_CAP), asked).await {
                Ok(Ok(role)) => Ok(role),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err(format!("no answer within {:?}", super::POD_CAP)),
            };
            (index, PodStatus { addr: pod, role })
        });
    }
    let survey = knowledge::survey(target, budget).await;
    let mut pods = asking.join_all().await;
    pods.sort_by_key(|(index, _)| *index);
    Status {
        verdict: survey.verdict(&target.aliases),
        survey,
        pods: pods.into_iter().map(|(_, pod)| pod).collect(),
    }
}

impl Status {
    /// Exit 0 only with an agreed master.
    pub fn outcome(&self) -> Result<(), ActionError> {
        match &self.verdict {
            Verdict::Agreed(_) => Ok(()),
            Verdict::NoQuorum(no_quorum) => Err(ActionError::refused(format!(
                "no master is agreed: {}",
                self.survey.explain(&no_quorum.reason)
            ))),
        }
    }

    /// The operator's table.
    pub fn table(&self) -> String {
        let configured = self.survey.configured();
        let mut out = String::new();
        match &self.verdict {
            Verdict::Agreed(agreement) => {
                let _ = writeln!(
                    out,
                    "verdict   agreed: master {} at epoch {}, {} of {} sentinels ({} needed){}",
                    agreement.master,
                    agreement.config_epoch,
                    agreement.votes,
                    configured,
                    majority_of(configured),
                    if agreement.failover_in_progress {
                        ", failover in progress"
                    } else {
                        ""
                    }
                );
            }
            Verdict::NoQuorum(no_quorum) => {
                let _ = writeln!(out, "verdict   no quorum: {}", no_quorum.reason);
            }
        }
        let _ = writeln!(out, "\nSENTINEL                 VIEW");
        for (id, answer) in &self.survey.answers {
            let _ = writeln!(out, "{:<24} {}", id.to_string(), sentinel_view(answer));
        }
        let _ = writeln!(out, "\nDATA POD                 ROLE");
        for pod in &self.pods {
            let _ = writeln!(out, "{:<24} {}", pod.addr.to_string(), pod_role(&pod.role));
        }
        out
    }

    /// The same, as one JSON object.
    pub fn json(&self) -> String {
        let verdict = match &self.verdict {
            Verdict::Agreed(agreement) => json!({
                "verdict": "agreed",
                "master": agreement.master.to_string(),
                "run_id": agreement.run_id.as_ref().map(ToString::to_string),
                "config_epoch": agreement.config_epoch,
                "votes": agreement.votes,
                "failover_in_progress": agreement.failover_in_progress,
            }),
            Verdict::NoQuorum(no_quorum) => json!({
                "verdict": "no_quorum",
                "reason": no_quorum.reason.to_string(),
            }),
        };
        let sentinels: Vec<_> = self
            .survey
            .answers
            .iter()
            .map(|(id, answer)| json!({"sentinel": id.to_string(), "view": sentinel_view(answer)}))
            .collect();
        let pods: Vec<_> = self
            .pods
            .iter()
            .map(|pod| json!({"pod": pod.addr.to_string(), "role": pod_role(&pod.role)}))
            .collect();
        json!({
            "name": self.survey.name,
            "configured_sentinels": self.survey.configured(),
            "verdict": verdict,
            "sentinels": sentinels,
            "data_pods": pods,
        })
        .to_string()
    }
}

fn sentinel_view(answer: &Answer) -> String {
    match answer {
        Answer::Failed(error) => format!("unreachable: {error}"),
        Answer::Polled(polled) => match &polled.view {
            SentinelView::Unreachable => "unreachable".into(),
            SentinelView::Unmonitored { .. } => "monitors nothing of this name".into(),
            SentinelView::Reports(report) => {
                let mut line = format!(
                    "master {} at epoch {}, {} replicas, {} other sentinels",
                    report.master,
                    report.config_epoch,
                    report.num_replicas,
                    report.num_other_sentinels
                );
                if report.failover_in_progress() {
                    line.push_str(", failover in progress");
                }
                if report.master_down() {
                    line.push_str(", master flagged down");
                }
                line
            }
        },
    }
}

fn pod_role(role: &Result<Role, String>) -> String {
    match role {
        Ok(Role::Master { offset, replicas }) => {
            format!("master, offset {offset}, {} replicas", replicas.len())
        }
        Ok(Role::Slave {
            master_ip,
            master_port,
            state,
            offset,
        }) => format!(
            "replica of {master_ip}:{master_port} ({}), offset {offset}",
            state.as_str()
        ),
        Ok(Role::Sentinel { .. }) => "a sentinel, not a data pod".into(),
        Err(error) => format!("unreachable: {error}"),
    }
}
