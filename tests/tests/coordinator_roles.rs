//! What the coordinator tells operators beyond the verdict: each data pod's own word on its
//! role, exported as `valkey_coordinator_data_pod_role`. The verdict follows the sentinels; a
//! second pod taking writes as a master (started by hand, or partitioned from the sentinels) is
//! visible only here, and the addon's two-masters alert reads it.

use std::time::Duration;

use valkey_coordinator::addr::Addr;
use valkey_coordinator::service::heal::HealConfig;
use valkey_coordinator::service::metrics;
use valkey_coordinator::service::registry::ObservedRole;
use valkey_coordinator::service::{self, ServiceConfig};
use valkey_lab::wait::{POLL_EVERY, Probe, poll_until};
use valkey_lab::{LabSpec, PodId, ValkeyVersion};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_second_master_shows_in_the_data_pod_roles_while_the_verdict_keeps_the_agreed_one() {
    let lab = LabSpec::new(ValkeyVersion::V9_1_2)
        .start()
        .await
        .expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    let sentinels: Vec<Addr> = lab.sentinel_addrs().into_iter().map(Addr::from).collect();
    let mut config = ServiceConfig::new(
        "127.0.0.1:0".parse().expect("literal"),
        sentinels,
        vec![lab.master_name().to_owned()],
    );
    config.heal = Some(HealConfig {
        data_pods: lab.data_addrs().into_iter().map(Addr::from).collect(),
        ..HealConfig::default()
    });
    let coordinator = service::start(config).await.expect("coordinator starts");
    let registry = &coordinator.registry;
    let pod = |i: usize| Addr::from(lab.data_addr(i));
    let roles_are = |expected: [ObservedRole; 3]| async move {
        let seen = registry.pod_roles();
        let now: Vec<ObservedRole> = (0..3)
            .map(|i| {
                seen.iter()
                    .find(|(addr, _)| *addr == pod(i))
                    .map_or(ObservedRole::Unreachable, |(_, role)| *role)
            })
            .collect();
        if now == expected {
            Probe::Ready(())
        } else {
            Probe::Pending(format!("{now:?}"))
        }
    };
    use ObservedRole::{Master, Replica};
    poll_until("pod 0 master, 1 and 2 replicas", WAIT, POLL_EVERY, || {
        roles_are([Master, Replica, Replica])
    })
    .await
    .expect("the roles as the lab formed them");

    // Pod 2 made a master by hand: the sentinels still agree on pod 0.
    let mut client = lab.client(PodId::Data(2)).await.expect("client");
    client
        .call(&["REPLICAOF", "NO", "ONE"])
        .await
        .expect("REPLICAOF NO ONE");
    poll_until("two pods answering master", WAIT, POLL_EVERY, || {
        roles_are([Master, Replica, Master])
    })
    .await
    .expect("the second master is seen");
    let verdict = registry
        .get(lab.master_name())
        .expect("followed")
        .verdict
        .clone();
    assert_eq!(
        verdict.agreement().map(|a| a.master.clone()),
        Some(pod(0)),
        "the verdict still follows the sentinels"
    );
    let text = metrics::render(registry);
    for i in [0, 2] {
        let line = format!(
            "valkey_coordinator_data_pod_role{{data_pod=\"{}\",role=\"master\"}} 1",
            pod(i)
        );
        assert!(text.contains(&line), "missing {line:?} in\n{text}");
    }
}
