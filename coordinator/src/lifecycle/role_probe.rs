//! `role-probe`: this pod's role, versioned by the agreed config epoch (DESIGN section 5).
//!
//! KubeBlocks orders role events by the version, rejects a versioned event that is not newer
//! than the last one, and once a pod has reported a versioned role ignores its unversioned ones;
//! a non-zero exit keeps the last label. So the rules are:
//!
//! 1. `primary E` only when a majority agrees, at epoch E, on a master that is this pod by
//!    address *and* by run id, and this pod says `role:master` itself. A deposed master that
//!    still says `role:master` has the wrong address or an old run id: never primary.
//! 2. The agreed master is this pod but its run id is not known to the voters yet (the moment
//!    after a failover), or differs from this pod's (it restarted and the sentinels have not
//!    seen it since): exit non-zero, so the label stays as it was until the proof arrives.
//! 3. Any other pod under an agreement: `secondary E` (demotion is always safe to report),
//!    whatever the pod says locally, also when it is unreachable.
//! 4. No agreement: a local replica is `secondary` (unversioned); a local master, or a pod
//!    that cannot be asked, exits non-zero with empty stdout (an unversioned `primary` would
//!    make the controller strip a sibling's versioned label). Every sentinel wiped with several
//!    pods claiming master is a case of this rule: never `primary`.

use std::fmt;

use crate::addr::RunId;
use crate::sentinel::conn;
use crate::sentinel::dataplane;

use super::knowledge::{self, AgreedMaster};
use super::{ActionError, Budget, Target};

/// What the pod says of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    /// `role:master`, with its `run_id`.
    Master { run_id: RunId },
    /// `role:slave`.
    Replica,
    /// It did not answer, or answered something else; why.
    Unknown(String),
}

/// The line the probe prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Primary(u64),
    Secondary(Option<u64>),
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Primary(epoch) => write!(f, "primary {epoch}"),
            Probe::Secondary(Some(epoch)) => write!(f, "secondary {epoch}"),
            Probe::Secondary(None) => f.write_str("secondary"),
        }
    }
}

/// The pure decision: `agreed` is the majority's master when there is one, `names_me` whether
/// it is this pod by address. `Err` is the reason no role can be proven.
pub fn decide(
    agreed: Option<&AgreedMaster>,
    names_me: bool,
    local: &Local,
) -> Result<Probe, String> {
    match agreed {
        // Rule 3.
        Some(agreed) if !names_me => Ok(Probe::Secondary(Some(agreed.config_epoch))),
        Some(agreed) => match local {
            Local::Master { run_id } => match &agreed.run_id {
                // Rule 1.
                Some(known) if known == run_id => Ok(Probe::Primary(agreed.config_epoch)),
                // Rule 2.
                Some(known) => Err(format!(
                    "the sentinels agree on this pod at epoch {} but know run id {known}, and \
                     it runs {run_id}: not proven yet",
                    agreed.config_epoch
                )),
                None => Err(format!(
                    "the sentinels agree on this pod at epoch {} but report no run id yet",
                    agreed.config_epoch
                )),
            },
            Local::Replica => Ok(Probe::Secondary(Some(agreed.config_epoch))),
            Local::Unknown(why) => Err(format!(
                "the sentinels agree on this pod, which does not say it is a master: {why}"
            )),
        },
        // Rule 4.
        None => match local {
            Local::Replica => Ok(Probe::Secondary(None)),
            Local::Master { .. } => Err(
                "no master is agreed and this pod says it is master: not claiming primary".into(),
            ),
            Local::Unknown(why) => Err(format!(
                "no master is agreed and this pod's role is unknown: {why}"
            )),
        },
    }
}

/// The start a replica may still have to finish: the file `startup` wrote, and the priority to
/// raise it to after its first sync.
#[derive(Debug, Clone, Copy)]
pub struct StartupFile<'a> {
    pub path: &'a std::path::Path,
    pub replica_priority: u64,
}

/// Asks the pod and the group at once, under the budget, and decides. A replica whose
/// `startup` file still holds the unsynced priority gets its configured one once it has synced
/// (see [`super::startup::raise_priority_after_sync`]); a failure there is logged, never the
/// probe's answer.
pub async fn run(
    target: &Target,
    budget: &Budget,
    startup: Option<StartupFile<'_>>,
) -> Result<Probe, ActionError> {
    let pod = target.pod()?.clone();
    let (local, knowledge) = tokio::join!(
        tokio::time::timeout(budget.share(super::POD_CAP), local_role(target, &pod)),
        knowledge::learn(target, budget),
    );
    let local = local.unwrap_or_else(|_| {
        Local::Unknown(format!("{pod} did not answer within {:?}", super::POD_CAP))
    });
    if let (Local::Replica, Some(file)) = (&local, startup) {
        let raise = super::startup::raise_priority_after_sync(
            file.path,
            &pod,
            &target.data_access,
            file.replica_priority,
        );
        match budget.run("raising the replica's priority", raise).await {
            Ok(Ok(true)) => {
                tracing::info!(%pod, priority = file.replica_priority, "first sync done: replica-priority raised")
            }
            Ok(Ok(false)) => {}
            Ok(Err(error)) => {
                tracing::warn!(%pod, %error, "cannot raise the replica's priority yet")
            }
            Err(error) => tracing::warn!(%pod, %error, "cannot raise the replica's priority yet"),
        }
    }
    let agreed = knowledge.agreed();
    let names_me = agreed.is_some_and(|agreed| target.same_pod(&agreed.master, &pod));
    decide(agreed, names_me, &local).map_err(|reason| match &knowledge {
        knowledge::Knowledge::NoQuorum { verdict, survey } => {
            ActionError::refused(format!("{reason} ({})", survey.explain(&verdict.reason)))
        }
        knowledge::Knowledge::Agreed { .. } => ActionError::refused(reason),
    })
}

/// The pod's `INFO replication` role and, for a master, its run id.
async fn local_role(target: &Target, pod: &crate::addr::Addr) -> Local {
    let asked = async {
        let mut connection = conn::connect(pod, &target.data_access).await?;
        let replication = dataplane::replication(&mut connection).await?;
        if replication.is_master() {
            let run_id = dataplane::run_id(&mut connection).await?;
            Ok(Local::Master { run_id })
        } else if replication.role == "slave" {
            Ok(Local::Replica)
        } else {
            Ok(Local::Unknown(format!("role:{}", replication.role)))
        }
    };
    asked
        .await
        .unwrap_or_else(|error: conn::ConnError| Local::Unknown(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agreed(epoch: u64, run_id: Option<&str>) -> AgreedMaster {
        AgreedMaster {
            master: "10.0.0.1:6379".parse().expect("addr"),
            run_id: run_id.map(|id| RunId::parse(id).expect("hex").expect("some")),
            config_epoch: epoch,
            failover_in_progress: false,
            votes: 2,
        }
    }

    fn master(run_id: &str) -> Local {
        Local::Master {
            run_id: RunId::parse(run_id).expect("hex").expect("some"),
        }
    }

    #[test]
    fn the_agreed_master_proven_by_run_id_is_primary_at_the_epoch() {
        let probe = decide(Some(&agreed(16, Some("aa"))), true, &master("AA"));
        assert_eq!(probe, Ok(Probe::Primary(16)));
        assert_eq!(probe.expect("primary").to_string(), "primary 16");
    }

    #[test]
    fn a_deposed_master_that_still_says_master_is_secondary() {
        let probe = decide(Some(&agreed(17, Some("bb"))), false, &master("aa"));
        assert_eq!(probe, Ok(Probe::Secondary(Some(17))));
        assert_eq!(probe.expect("secondary").to_string(), "secondary 17");
    }

    #[test]
    fn the_agreed_master_without_a_known_or_matching_run_id_proves_nothing() {
        assert!(decide(Some(&agreed(17, None)), true, &master("aa")).is_err());
        assert!(decide(Some(&agreed(17, Some("bb"))), true, &master("aa")).is_err());
        assert!(
            decide(
                Some(&agreed(17, Some("aa"))),
                true,
                &Local::Unknown("down".into())
            )
            .is_err()
        );
    }

    #[test]
    fn without_agreement_only_a_replica_has_a_role() {
        assert_eq!(
            decide(None, false, &Local::Replica),
            Ok(Probe::Secondary(None))
        );
        assert_eq!(Probe::Secondary(None).to_string(), "secondary");
        assert!(decide(None, false, &master("aa")).is_err());
        assert!(decide(None, false, &Local::Unknown("timeout".into())).is_err());
    }

    #[test]
    fn any_pod_other_than_the_agreed_master_is_a_versioned_secondary() {
        for local in [
            master("aa"),
            Local::Replica,
            Local::Unknown("refused".into()),
        ] {
            assert_eq!(
                decide(Some(&agreed(3, Some("cc"))), false, &local),
                Ok(Probe::Secondary(Some(3)))
            );
        }
    }

    #[test]
    fn a_replica_named_by_the_agreement_reports_secondary_not_primary() {
        assert_eq!(
            decide(Some(&agreed(5, Some("aa"))), true, &Local::Replica),
            Ok(Probe::Secondary(Some(5)))
        );
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn local() -> impl Strategy<Value = Local> {
            prop_oneof![
                (0u8..3).prop_map(|id| Local::Master {
                    run_id: RunId::parse(&format!("{id:02x}"))
                        .expect("hex")
                        .expect("some"),
                }),
                Just(Local::Replica),
                Just(Local::Unknown("timeout".into())),
            ]
        }

        fn agreement() -> impl Strategy<Value = Option<AgreedMaster>> {
            proptest::option::of(
                (0u64..5, proptest::option::of(0u8..3)).prop_map(|(epoch, id)| {
                    let id = id.map(|id| format!("{id:02x}"));
                    agreed(epoch, id.as_deref())
                }),
            )
        }

        proptest! {
            /// `primary` is printed only for the agreed master, proven by run id, that says
            /// it is master itself, and always at the agreed epoch; without an agreement no
            /// line is ever versioned and no pod is ever primary.
            #[test]
            fn primary_needs_agreement_address_and_run_id(
                agreed in agreement(),
                names_me in any::<bool>(),
                local in local(),
            ) {
                match decide(agreed.as_ref(), names_me, &local) {
                    Ok(Probe::Primary(epoch)) => {
                        let agreed = agreed.expect("primary only under an agreement");
                        prop_assert!(names_me);
                        prop_assert_eq!(epoch, agreed.config_epoch);
                        let Local::Master { run_id } = &local else {
                            return Err(TestCaseError::fail("primary of a non-master"));
                        };
                        prop_assert_eq!(agreed.run_id.as_ref(), Some(run_id));
                    }
                    Ok(Probe::Secondary(version)) => {
                        prop_assert_eq!(version, agreed.as_ref().map(|a| a.config_epoch));
                        if agreed.is_none() {
                            prop_assert_eq!(&local, &Local::Replica);
                        }
                    }
                    Err(_) => prop_assert!(
                        agreed.is_none() || names_me,
                        "a pod the agreement does not name always has a role"
                    ),
                }
            }
        }
    }
}
