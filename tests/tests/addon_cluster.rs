//! The addon exercised, not only rendered: the charts as Helm renders them, run by the KubeBlocks
//! stand-in (`valkey_lab::kubeblocks`) against real Valkey, through each operation an
//! OpsRequest turns into. Every scenario runs the chart's own commands, scripts and lifecycle
//! actions; clients find the master through the coordinator component, as the addon README
//! tells users to.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use valkey_lab::kubeblocks::{ClusterSpec, KubeCluster};
use valkey_lab::{Client, Credentials, ValkeyVersion, WriteTarget, Writer};

/// Budget for any single wait; scenarios finish far sooner.
const WAIT: Duration = Duration::from_secs(60);
const DATA: &str = "valkey";
const SENTINEL: &str = "valkey-sentinel";
const COORDINATOR: &str = "valkey-coord";

async fn provision(version: ValkeyVersion) -> KubeCluster {
    let spec = ClusterSpec::project(version).expect("charts, helm and the binary are there");
    KubeCluster::provision(spec)
        .await
        .expect("the cluster provisions")
}

fn master_name(cluster: &KubeCluster) -> String {
    format!("{}-{DATA}", cluster.name())
}

fn data_credentials(cluster: &KubeCluster) -> Credentials {
    Credentials::password(cluster.password(DATA, "default").expect("a data account"))
}

fn coordinator_credentials(cluster: &KubeCluster) -> Option<Credentials> {
    cluster
        .password(COORDINATOR, "default")
        .map(Credentials::password)
}

/// What the coordinator answers for the master name.
async fn coordinator_master(cluster: &KubeCluster) -> Option<SocketAddr> {
    let addr = cluster.pod_addr(COORDINATOR, 0).expect("a coordinator");
    let mut client = Client::connect(addr, coordinator_credentials(cluster).as_ref())
        .await
        .ok()?;
    let reply = client
        .call(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &master_name(cluster)])
        .await
        .ok()?;
    let valkey_lab::Frame::Array(items) = reply else {
        return None;
    };
    let host = valkey_lab::replies::text(items.first()?)?;
    let port = valkey_lab::replies::text(items.get(1)?)?;
    format!("{host}:{port}").parse().ok()
}

/// Waits until the coordinator serves data pod `ordinal` as master.
async fn wait_coordinator_serves(cluster: &KubeCluster, ordinal: usize) {
    let expected = cluster.pod_addr(DATA, ordinal).expect("a data pod");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let served = coordinator_master(cluster).await;
        if served == Some(expected) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the coordinator serves {served:?}, not {expected}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn writer(cluster: &KubeCluster, prefix: &str) -> Writer {
    let target = WriteTarget::SentinelMaster {
        sentinels: vec![cluster.pod_addr(COORDINATOR, 0).expect("a coordinator")],
        credentials: coordinator_credentials(cluster),
        name: master_name(cluster),
    };
    Writer::start_with(target, Some(data_credentials(cluster)), None, prefix)
}

/// Every sentinel monitors the master name at `ordinal`.
async fn wait_sentinels_monitor(cluster: &KubeCluster, ordinal: usize) {
    let expected = cluster.pod_addr(DATA, ordinal).expect("a data pod");
    let credentials = cluster
        .password(SENTINEL, "default")
        .map(Credentials::password);
    let deadline = tokio::time::Instant::now() + WAIT;
    for j in cluster.ordinals(SENTINEL) {
        let addr = cluster.pod_addr(SENTINEL, j).expect("a sentinel");
        loop {
            let named = async {
                let mut client = Client::connect(addr, credentials.as_ref()).await.ok()?;
                let reply = client
                    .call(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &master_name(cluster)])
                    .await
                    .ok()?;
                let valkey_lab::Frame::Array(items) = reply else {
                    return None;
                };
                let host = valkey_lab::replies::text(items.first()?)?;
                let port = valkey_lab::replies::text(items.get(1)?)?;
                format!("{host}:{port}").parse::<SocketAddr>().ok()
            }
            .await;
            if named == Some(expected) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "sentinel-{j} names {named:?}, not {expected}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test]
async fn provisioning_bootstraps_one_primary_that_every_sentinel_and_the_coordinator_name() {
    let mut cluster = provision(ValkeyVersion::V9_1_2).await;
    let primary = cluster
        .wait_roles(DATA, WAIT)
        .await
        .expect("one primary, the rest secondaries");
    assert_eq!(primary, 0, "a fresh cluster bootstraps on pod 0");
    wait_sentinels_monitor(&cluster, 0).await;
    wait_coordinator_serves(&cluster, 0).await;
}

#[tokio::test]
async fn switchover_to_a_named_candidate_then_to_any_loses_no_acknowledged_write() {
    let mut cluster = provision(ValkeyVersion::V9_1_2).await;
    let primary = cluster.wait_roles(DATA, WAIT).await.expect("one primary");
    wait_coordinator_serves(&cluster, primary).await;
    let writes = writer(&cluster, "switchover");

    let named = cluster
        .switchover(DATA, primary, Some(2))
        .await
        .expect("the action runs");
    assert!(named.success(), "switchover to pod 2: {named:?}");
    assert_eq!(cluster.wait_roles(DATA, WAIT).await.expect("roles"), 2);
    wait_coordinator_serves(&cluster, 2).await;

    let any = cluster
        .switchover(DATA, 2, None)
        .await
        .expect("the action runs");
    assert!(any.success(), "untargeted switchover: {any:?}");
    let now = cluster.wait_roles(DATA, WAIT).await.expect("roles");
    assert_ne!(now, 2, "the primary moved off pod 2");
    wait_coordinator_serves(&cluster, now).await;

    let log = writes.stop().await;
    let master = cluster.pod_addr(DATA, now).expect("the primary");
    let lost = log
        .check_lost(master, Some(&data_credentials(&cluster)))
        .await
        .expect("reads back");
    assert!(lost.is_clean(), "acknowledged writes lost: {lost:?}");
}

#[tokio::test]
async fn scaling_out_to_four_and_back_to_three_keeps_one_primary() {
    let mut cluster = provision(ValkeyVersion::V9_1_2).await;
    let primary = cluster.wait_roles(DATA, WAIT).await.expect("one primary");
    cluster.scale_out(DATA, 4).await.expect("pod 3 joins");
    assert_eq!(
        cluster.wait_roles(DATA, WAIT).await.expect("roles"),
        primary
    );
    assert_eq!(cluster.label(DATA, 3).as_deref(), Some("secondary"));

    cluster.scale_in(DATA, 3).await.expect("pod 3 leaves");
    assert_eq!(cluster.ordinals(DATA), vec![0, 1, 2]);
    assert_eq!(
        cluster.wait_roles(DATA, WAIT).await.expect("roles"),
        primary
    );
}

#[tokio::test]
async fn scaling_in_the_primary_pod_fails_over_first() {
    let mut cluster = provision(ValkeyVersion::V9_1_2).await;
    let primary = cluster.wait_roles(DATA, WAIT).await.expect("one primary");
    cluster
        .switchover(DATA, primary, Some(2))
        .await
        .expect("the action runs");
    assert_eq!(cluster.wait_roles(DATA, WAIT).await.expect("roles"), 2);
    let writes = writer(&cluster, "scale-in");
    cluster.scale_in(DATA, 2).await.expect("pod 2 leaves");
    let now = cluster.wait_roles(DATA, WAIT).await.expect("roles");
    assert!(now < 2, "the primary is one of the remaining pods");
    wait_coordinator_serves(&cluster, now).await;
    let log = writes.stop().await;
    let lost = log
        .check_lost(
            cluster.pod_addr(DATA, now).expect("the primary"),
            Some(&data_credentials(&cluster)),
        )
        .await
        .expect("reads back");
    assert!(lost.is_clean(), "acknowledged writes lost: {lost:?}");
}

#[tokio::test]
async fn a_rolling_restart_moves_the_primary_off_each_pod_first_and_loses_nothing() {
    let mut cluster = provision(ValkeyVersion::V9_1_2).await;
    let primary = cluster.wait_roles(DATA, WAIT).await.expect("one primary");
    wait_coordinator_serves(&cluster, primary).await;
    let writes = writer(&cluster, "restart");
    let steps = cluster
        .rolling_restart(DATA)
        .await
        .expect("every pod restarts");
    eprintln!("{}", steps.join("\n"));
    let now = cluster.wait_roles(DATA, WAIT).await.expect("roles");
    wait_coordinator_serves(&cluster, now).await;
    let log = writes.stop().await;
    let lost = log
        .check_lost(
            cluster.pod_addr(DATA, now).expect("the primary"),
            Some(&data_credentials(&cluster)),
        )
        .await
        .expect("reads back");
    assert!(lost.is_clean(), "acknowledged writes lost: {lost:?}");
}

#[tokio::test]
async fn stop_and_start_keep_every_key_and_one_primary() {
    let mut cluster = provision(ValkeyVersion::V9_1_2).await;
    let primary = cluster.wait_roles(DATA, WAIT).await.expect("one primary");
    let credentials = data_credentials(&cluster);
    let mut client = Client::connect(cluster.pod_addr(DATA, primary).unwrap(), Some(&credentials))
        .await
        .expect("client");
    for i in 0..100 {
        client
            .call(&["SET", &format!("kept:{i}"), &i.to_string()])
            .await
            .expect("SET");
    }
    client.call(&["WAIT", "2", "5000"]).await.expect("WAIT");
    drop(client);

    cluster.stop().await.expect("stops");
    cluster.start().await.expect("starts");
    let primary = cluster.wait_roles(DATA, WAIT).await.expect("one primary");
    wait_coordinator_serves(&cluster, primary).await;
    let mut client = Client::connect(cluster.pod_addr(DATA, primary).unwrap(), Some(&credentials))
        .await
        .expect("client");
    let reply = client.call(&["DBSIZE"]).await.expect("DBSIZE");
    assert_eq!(reply, valkey_lab::Frame::Integer(100), "every key is back");
}

#[tokio::test]
async fn an_account_and_a_dynamic_parameter_reach_every_data_pod() {
    let mut cluster = provision(ValkeyVersion::V9_1_2).await;
    cluster.wait_roles(DATA, WAIT).await.expect("one primary");
    let mut parameters = BTreeMap::new();
    parameters.insert("KB_ACCOUNT_NAME".to_owned(), "app".to_owned());
    parameters.insert("KB_ACCOUNT_PASSWORD".to_owned(), "app-pw-7c1d".to_owned());
    parameters.insert("KB_ACCOUNT_STATEMENT".to_owned(), "~app:* +@all".to_owned());
    cluster
        .call_with_retries(DATA, "accountProvision", parameters)
        .await
        .expect("accountProvision succeeds");
    for i in cluster.ordinals(DATA) {
        let addr = cluster.pod_addr(DATA, i).unwrap();
        Client::connect(addr, Some(&Credentials::user("app", "app-pw-7c1d")))
            .await
            .unwrap_or_else(|e| panic!("data-{i}: app cannot log in: {e}"));
    }
}
