//! Each data pod's own word on its role, for operators: every [`ROLE_PERIOD`] one task asks every
//! configured data pod `ROLE` (all at once, each capped at [`ASK_CAP`]) and records the answer in
//! the registry, which the metrics export as `valkey_coordinator_data_pod_role`.
//!
//! Why it exists: the verdict comes from the sentinels and says which master clients are sent
//! to; it cannot show a second pod that still takes writes as a master (a partitioned old master
//! the sentinels no longer reach, a pod started by hand). Two pods answering `master` at once is
//! the split brain an alert must name. Nothing in the service decides from these answers.
//!
//! Cost: one short connection per data pod every two seconds.

use std::sync::Arc;
use std::time::Duration;

use sentinel_protocol::role::Role;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::addr::Addr;
use crate::sentinel::conn::{self, Access};
use crate::sentinel::dataplane;

use super::registry::{ObservedRole, Registry};

/// How often every data pod is asked.
pub const ROLE_PERIOD: Duration = Duration::from_secs(2);
/// The longest one pod's answer may take: a hung pod is `unreachable`, not a stalled round.
pub const ASK_CAP: Duration = Duration::from_secs(1);

/// Asks every pod, every period, until `shutdown`.
pub async fn run(
    pods: Vec<Addr>,
    access: Access,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) {
    if pods.is_empty() {
        return;
    }
    loop {
        let mut asking = JoinSet::new();
        for pod in pods.iter().cloned() {
            let access = access.clone();
            asking.spawn(async move {
                let role = tokio::time::timeout(ASK_CAP, async {
                    let mut connection = conn::connect(&pod, &access).await?;
                    dataplane::role(&mut connection).await
                })
                .await;
                let observed = match role {
                    Ok(Ok(Role::Master { .. })) => ObservedRole::Master,
                    Ok(Ok(Role::Slave { .. })) => ObservedRole::Replica,
                    _ => ObservedRole::Unreachable,
                };
                (pod, observed)
            });
        }
        for (pod, role) in asking.join_all().await {
            registry.set_pod_role(&pod, role);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(ROLE_PERIOD) => {}
        }
    }
}
