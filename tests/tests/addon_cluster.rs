//! The addon exercised, not only rendered: the charts as Helm renders them, run by the KubeBlocks
//! stand-in (`valkey_lab::kubeblocks`) against real Valkey, through each operation an
//! OpsRequest turns into. Every scenario runs the chart's own commands, scripts and lifecycle
//! actions; clients find the master through the coordinator component, as the addon README
//! tells users to.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use valkey_lab::kubeblocks::{ClusterSpec, KubeCluster};
use valkey_lab::{Client, Credentials, ValkeyVersion, WriteLog, WriteTarget, Writer};

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

/// What a sentinel (or a coordinator) at `addr` answers to `GET-MASTER-ADDR-BY-NAME` for the
/// cluster's master name; `None` for no answer or no master.
async fn master_named_by(
    cluster: &KubeCluster,
    addr: SocketAddr,
    credentials: Option<&Credentials>,
) -> Option<SocketAddr> {
    let mut client = Client::connect(addr, credentials).await.ok()?;
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

/// What the coordinator answers for the master name.
async fn coordinator_master(cluster: &KubeCluster) -> Option<SocketAddr> {
    let addr = cluster.pod_addr(COORDINATOR, 0).expect("a coordinator");
    master_named_by(cluster, addr, coordinator_credentials(cluster).as_ref()).await
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

/// Every write the writer saw acknowledged is on data pod `primary`, with its value.
async fn assert_nothing_lost(cluster: &KubeCluster, log: &WriteLog, primary: usize) {
    let lost = log
        .check_lost(
            cluster.pod_addr(DATA, primary).expect("the primary"),
            Some(&data_credentials(cluster)),
        )
        .await
        .expect("reads back");
    assert!(lost.is_clean(), "acknowledged writes lost: {lost:?}");
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
            let named = master_named_by(cluster, addr, credentials.as_ref()).await;
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

    // The least-privilege users are the ones in use: the sentinels reach the primary as
    // `sentinel` (registered by the coordinator as their auth-user), and the coordinator reaches
    // every sentinel as `coordinator`.
    let users_of = |addr, credentials: Option<Credentials>| async move {
        let mut client = Client::connect(addr, credentials.as_ref())
            .await
            .expect("connects");
        let listed = client.call(&["CLIENT", "LIST"]).await.expect("CLIENT LIST");
        valkey_lab::replies::text(&listed).unwrap_or_default()
    };
    let primary_addr = cluster.pod_addr(DATA, 0).expect("a data pod");
    let mut seen = String::new();
    for _ in 0..50 {
        seen = users_of(primary_addr, Some(data_credentials(&cluster))).await;
        if seen.matches("user=sentinel ").count() >= cluster.ordinals(SENTINEL).len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        seen.matches("user=sentinel ").count() >= cluster.ordinals(SENTINEL).len(),
        "every sentinel logs in to the primary as `sentinel`: {seen}"
    );
    let sentinel_credentials = cluster
        .password(SENTINEL, "default")
        .map(Credentials::password);
    for j in cluster.ordinals(SENTINEL) {
        let addr = cluster.pod_addr(SENTINEL, j).expect("a sentinel");
        let seen = users_of(addr, sentinel_credentials.clone()).await;
        assert!(
            seen.contains("user=coordinator "),
            "the coordinator logs in to sentinel-{j} as `coordinator`: {seen}"
        );
    }
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
    assert_nothing_lost(&cluster, &log, now).await;
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
    assert_nothing_lost(&cluster, &log, now).await;
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
    assert_nothing_lost(&cluster, &log, now).await;
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
async fn an_account_reaches_every_data_pod_and_outlives_a_failover_and_a_restart() {
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
    // After a failover the new primary has it too, and so does a pod that restarted.
    let primary = cluster.wait_roles(DATA, WAIT).await.expect("one primary");
    let candidate = (primary + 1) % 3;
    let moved = cluster
        .switchover(DATA, primary, Some(candidate))
        .await
        .expect("the action runs");
    assert!(moved.success(), "{moved:?}");
    assert_eq!(
        cluster.wait_roles(DATA, WAIT).await.expect("roles"),
        candidate
    );
    cluster
        .restart_pod(DATA, primary)
        .await
        .expect("the old primary restarts");
    for i in [candidate, primary] {
        let addr = cluster.pod_addr(DATA, i).unwrap();
        Client::connect(addr, Some(&Credentials::user("app", "app-pw-7c1d")))
            .await
            .unwrap_or_else(|e| panic!("data-{i}: app cannot log in after the failover: {e}"));
    }
}

/// CONFIG GET `name` on data pod `ordinal`.
async fn config_get(cluster: &KubeCluster, ordinal: usize, name: &str) -> String {
    let addr = cluster.pod_addr(DATA, ordinal).expect("a data pod");
    let mut client = Client::connect(addr, Some(&data_credentials(cluster)))
        .await
        .expect("client");
    let reply = client
        .call(&["CONFIG", "GET", name])
        .await
        .expect("CONFIG GET");
    let valkey_lab::Frame::Array(items) = reply else {
        panic!("CONFIG GET {name}: {reply:?}");
    };
    valkey_lab::replies::text(&items[1]).expect("a value")
}

/// The server's `valkey_version` of data pod `ordinal`.
async fn server_version(cluster: &KubeCluster, ordinal: usize) -> String {
    let addr = cluster.pod_addr(DATA, ordinal).expect("a data pod");
    let mut client = Client::connect(addr, Some(&data_credentials(cluster)))
        .await
        .expect("client");
    let reply = client.call(&["INFO", "server"]).await.expect("INFO");
    let text = valkey_lab::replies::text(&reply).expect("text");
    text.lines()
        .find_map(|line| line.strip_prefix("valkey_version:"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[tokio::test]
async fn an_upgrade_from_8_1_to_9_1_pod_by_pod_loses_no_acknowledged_write() {
    let spec = ClusterSpec::project(ValkeyVersion::V8_1_8).expect("charts and binary");
    let mut cluster = KubeCluster::provision(spec)
        .await
        .expect("provisions on 8.1.8");
    let primary = cluster.wait_roles(DATA, WAIT).await.expect("one primary");
    wait_coordinator_serves(&cluster, primary).await;
    assert_eq!(server_version(&cluster, 0).await, "8.1.8");
    let writes = writer(&cluster, "upgrade");
    let steps = cluster.upgrade("9.1.2").await.expect("every pod upgrades");
    eprintln!("{}", steps.join("\n"));
    let now = cluster.wait_roles(DATA, WAIT).await.expect("one primary");
    wait_coordinator_serves(&cluster, now).await;
    for i in cluster.ordinals(DATA) {
        assert_eq!(server_version(&cluster, i).await, "9.1.2", "data-{i}");
    }
    let log = writes.stop().await;
    assert_nothing_lost(&cluster, &log, now).await;
    eprintln!(
        "upgrade: {} writes acknowledged, none lost",
        log.acked.len()
    );
}

#[tokio::test]
async fn a_rebuilt_replica_syncs_from_scratch_and_rejoins_as_secondary() {
    let mut cluster = provision(ValkeyVersion::V9_1_2).await;
    let primary = cluster.wait_roles(DATA, WAIT).await.expect("one primary");
    let credentials = data_credentials(&cluster);
    let mut client = Client::connect(cluster.pod_addr(DATA, primary).unwrap(), Some(&credentials))
        .await
        .expect("client");
    for i in 0..200 {
        client
            .call(&["SET", &format!("rebuilt:{i}"), "x"])
            .await
            .expect("SET");
    }
    let replica = (primary + 1) % 3;
    cluster
        .rebuild(DATA, replica)
        .await
        .expect("the replica is rebuilt");
    assert_eq!(
        cluster.wait_roles(DATA, WAIT).await.expect("roles"),
        primary
    );
    assert_eq!(cluster.label(DATA, replica).as_deref(), Some("secondary"));
    let addr = cluster.pod_addr(DATA, replica).unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut client = Client::connect(addr, Some(&credentials))
            .await
            .expect("client");
        if client.call(&["DBSIZE"]).await.expect("DBSIZE") == valkey_lab::Frame::Integer(200) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rebuilt replica never synced"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_dynamic_parameter_applies_without_a_restart_and_a_static_one_with_one() {
    let mut cluster = provision(ValkeyVersion::V9_1_2).await;
    cluster.wait_roles(DATA, WAIT).await.expect("one primary");
    let run_id = |cluster: &KubeCluster, i: usize| {
        let addr = cluster.pod_addr(DATA, i).unwrap();
        let credentials = data_credentials(cluster);
        async move {
            let mut client = Client::connect(addr, Some(&credentials))
                .await
                .expect("client");
            let reply = client.call(&["INFO", "server"]).await.expect("INFO");
            let text = valkey_lab::replies::text(&reply).expect("text");
            text.lines()
                .find_map(|l| l.strip_prefix("run_id:"))
                .unwrap_or_default()
                .trim()
                .to_owned()
        }
    };
    let before: Vec<String> = {
        let mut ids = Vec::new();
        for i in cluster.ordinals(DATA) {
            ids.push(run_id(&cluster, i).await);
        }
        ids
    };
    let (restarted, outputs) = cluster
        .reconfigure(DATA, &[("maxmemory-policy", "allkeys-lru")])
        .await
        .expect("a dynamic reconfigure");
    assert!(!restarted, "maxmemory-policy is dynamic");
    eprintln!("{}", outputs.join("\n"));
    for i in cluster.ordinals(DATA) {
        assert_eq!(
            config_get(&cluster, i, "maxmemory-policy").await,
            "allkeys-lru"
        );
        assert_eq!(
            run_id(&cluster, i).await,
            before[i],
            "data-{i} was not restarted"
        );
    }

    let (restarted, _) = cluster
        .reconfigure(DATA, &[("databases", "32")])
        .await
        .expect("a static reconfigure");
    assert!(restarted, "databases is static");
    cluster.wait_roles(DATA, WAIT).await.expect("one primary");
    for i in cluster.ordinals(DATA) {
        assert_eq!(config_get(&cluster, i, "databases").await, "32", "data-{i}");
        assert_eq!(
            config_get(&cluster, i, "maxmemory-policy").await,
            "allkeys-lru",
            "the earlier dynamic change survives the restart"
        );
        assert_ne!(run_id(&cluster, i).await, before[i], "data-{i} restarted");
    }
}

#[tokio::test]
async fn vertical_scaling_restarts_each_pod_with_maxmemory_from_its_new_limit() {
    let mut cluster = provision(ValkeyVersion::V9_1_2).await;
    cluster.wait_roles(DATA, WAIT).await.expect("one primary");
    let writes = writer(&cluster, "vertical");
    cluster
        .vertical_scale(DATA, "1", "2Gi")
        .await
        .expect("every pod restarts");
    let now = cluster.wait_roles(DATA, WAIT).await.expect("one primary");
    for i in cluster.ordinals(DATA) {
        let expected = (2u64 << 30) * 4 / 5;
        assert_eq!(
            config_get(&cluster, i, "maxmemory").await,
            expected.to_string(),
            "data-{i}: 80 % of the new 2Gi limit"
        );
    }
    wait_coordinator_serves(&cluster, now).await;
    let log = writes.stop().await;
    assert_nothing_lost(&cluster, &log, now).await;
}

/// An example OpsRequest from addon/examples, aimed at this cluster.
fn example(cluster: &KubeCluster, file: &str) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../addon/examples")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("the example exists");
    let manifests = valkey_lab::kubeblocks::Manifests::from_yaml(&text).expect("YAML");
    let mut ops = manifests.objects()[0].clone();
    ops["spec"]["clusterName"] = serde_json::Value::String(cluster.name().to_owned());
    ops
}

#[tokio::test]
async fn an_exposed_primary_service_follows_the_primary_and_goes_when_disabled() {
    let mut cluster = provision(ValkeyVersion::V9_1_2).await;
    let primary = cluster.wait_roles(DATA, WAIT).await.expect("one primary");
    let services = cluster
        .expose(&example(&cluster, "expose-enable.yaml"))
        .expect("Expose enable");
    let service = services
        .iter()
        .find(|name| name.ends_with("-internet"))
        .expect("the exposed Service")
        .clone();
    assert_eq!(
        cluster.endpoints(&service).expect("endpoints"),
        vec![cluster.pod_addr(DATA, primary).unwrap()],
        "it selects the primary only"
    );
    let endpoint = cluster.endpoints(&service).unwrap()[0];
    let mut client = Client::connect(endpoint, Some(&data_credentials(&cluster)))
        .await
        .expect("a client through the Service");
    client
        .call(&["SET", "exposed", "yes"])
        .await
        .expect("a write through the Service lands on the primary");

    let candidate = (primary + 1) % 3;
    let moved = cluster
        .switchover(DATA, primary, Some(candidate))
        .await
        .expect("the action runs");
    assert!(moved.success(), "{moved:?}");
    assert_eq!(
        cluster.wait_roles(DATA, WAIT).await.expect("roles"),
        candidate
    );
    assert_eq!(
        cluster.endpoints(&service).expect("endpoints"),
        vec![cluster.pod_addr(DATA, candidate).unwrap()],
        "the Service follows the new primary"
    );

    let left = cluster
        .expose(&example(&cluster, "expose-disable.yaml"))
        .expect("Expose disable");
    assert!(!left.contains(&service), "the Service is gone: {left:?}");
}
