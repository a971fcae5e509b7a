//! The addon's backup and restore, exercised as KubeBlocks' dataprotection runs them
//! (`valkey_lab::kubeblocks::dataprotection`): the BackupPolicyTemplate's target, the ActionSet
//! `valkey-physical`'s preBackup exec, backupData Job and, for a Cluster created from the Backup,
//! its prepareData Job before each data pod and its postReady exec after, against real Valkey,
//! real sentinels and coordinators, with the datasafed double over real rclone.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use valkey_lab::kubeblocks::{ClusterSpec, KubeCluster, KubeError};
use valkey_lab::{Client, Credentials, Frame, ValkeyVersion};

const WAIT: Duration = Duration::from_secs(60);
const DATA: &str = "valkey";
const SENTINEL: &str = "valkey-sentinel";
const COORDINATOR: &str = "valkey-coord";
const KEYS: usize = 1000;

fn spec(name: &str) -> ClusterSpec {
    let mut spec =
        ClusterSpec::project(ValkeyVersion::V9_1_2).expect("charts, helm and the binary are there");
    spec.name = name.into();
    spec
}

fn master_name(cluster: &KubeCluster) -> String {
    format!("{}-{DATA}", cluster.name())
}

fn data_credentials(cluster: &KubeCluster) -> Credentials {
    Credentials::password(cluster.password(DATA, "default").expect("a data account"))
}

fn value_of(i: usize) -> String {
    format!("value-{i}-{}", i * 7919 % 1009)
}

/// The `app` account as KubeBlocks provisions it: the generated password of its Secret and the
/// ComponentDefinition's statement, through the accountProvision action.
async fn provision_app_account(cluster: &mut KubeCluster) -> String {
    let password = cluster
        .password(DATA, "app")
        .expect("the app account's Secret")
        .to_owned();
    let definition = cluster
        .manifests()
        .component_definition("valkey-data")
        .expect("the data ComponentDefinition");
    let statement = definition["spec"]["systemAccounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["name"] == "app")
        .and_then(|a| a["statement"]["create"].as_str())
        .expect("app's create statement")
        .to_owned();
    let mut parameters = BTreeMap::new();
    parameters.insert("KB_ACCOUNT_NAME".to_owned(), "app".to_owned());
    parameters.insert("KB_ACCOUNT_PASSWORD".to_owned(), password.clone());
    parameters.insert("KB_ACCOUNT_STATEMENT".to_owned(), statement);
    cluster
        .call_with_retries(DATA, "accountProvision", parameters)
        .await
        .expect("accountProvision succeeds");
    password
}

/// Writes `count` keys on the primary and waits until every replica acknowledged them.
async fn write_keys(cluster: &KubeCluster, primary: usize, count: usize) {
    let mut client = Client::connect(
        cluster.pod_addr(DATA, primary).unwrap(),
        Some(&data_credentials(cluster)),
    )
    .await
    .expect("a client of the primary");
    for chunk in (0..count).collect::<Vec<_>>().chunks(100) {
        let mut args = vec!["MSET".to_owned()];
        for &i in chunk {
            args.push(format!("key:{i}"));
            args.push(value_of(i));
        }
        client.call(&args).await.expect("MSET");
    }
    let replicas = cluster.ordinals(DATA).len() - 1;
    let acked = client
        .call(&["WAIT", &replicas.to_string(), "10000"])
        .await
        .expect("WAIT");
    assert_eq!(
        acked,
        Frame::Integer(replicas as i64),
        "every replica has the keys before the backup"
    );
}

/// Whoever a sentinel-compatible endpoint names for `name`.
async fn master_addr_by_name(
    addr: SocketAddr,
    credentials: Option<&Credentials>,
    name: &str,
) -> Option<SocketAddr> {
    let mut client = Client::connect(addr, credentials).await.ok()?;
    let reply = client
        .call(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", name])
        .await
        .ok()?;
    let Frame::Array(items) = reply else {
        return None;
    };
    let host = valkey_lab::replies::text(items.first()?)?;
    let port = valkey_lab::replies::text(items.get(1)?)?;
    format!("{host}:{port}").parse().ok()
}

/// Waits until `addr` names `expected` for `name`.
async fn wait_names(
    what: &str,
    addr: SocketAddr,
    credentials: Option<&Credentials>,
    name: &str,
    expected: SocketAddr,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let named = master_addr_by_name(addr, credentials, name).await;
        if named == Some(expected) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} names {named:?} for {name}, not {expected}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn backup_then_restore_into_a_fresh_cluster_brings_every_key_back_and_the_sentinels_monitor_the_restored_master()
 {
    let started = Instant::now();
    let mut cluster = KubeCluster::provision(spec("kb"))
        .await
        .expect("the cluster provisions");
    let primary = cluster.wait_roles(DATA, WAIT).await.expect("one primary");
    let provisioned = started.elapsed();
    let app_password = provision_app_account(&mut cluster).await;
    write_keys(&cluster, primary, KEYS).await;
    let data_password = cluster.password(DATA, "default").unwrap().to_owned();

    let at = Instant::now();
    let backup = cluster
        .backup("kb-backup")
        .await
        .expect("the backup completes");
    let backed_up = at.elapsed();
    eprintln!("backup: {:#?}", backup.log);
    assert_eq!(
        backup.pushed,
        ["dump.rdb", "kubeblocks-backup.json", "users.acl"],
        "the snapshot, the ACL file and the manager's Backup object, nothing else"
    );
    assert_eq!(
        backup.target_role, "secondary",
        "a replica takes the BGSAVE"
    );
    assert_ne!(
        backup.target_pod,
        cluster.pod_name(DATA, primary),
        "not the primary"
    );
    assert!(
        backup.total_size.parse::<u64>().unwrap_or(0) > 0,
        "totalSize {:?}",
        backup.total_size
    );

    // The source cluster goes away entirely: processes, volumes, directories.
    let footprint = cluster.footprint();
    assert!(!footprint.pids.is_empty() && !footprint.volumes.is_empty());
    drop(cluster);
    if std::env::var_os("VALKEY_LAB_KEEP").is_none() {
        let left = footprint.leftovers();
        assert!(left.is_empty(), "the dropped cluster left {left:?}");
    }

    let at = Instant::now();
    let mut restored = KubeCluster::restore_into(spec("kb2"), &backup)
        .await
        .expect("the restore completes (prepareData, pods, postProvision, postReady)");
    let restore_took = at.elapsed();
    let primary = restored
        .wait_roles(DATA, WAIT)
        .await
        .expect("exactly one primary, the rest secondaries");

    // Exactly one master by the pods' own account too.
    let credentials = data_credentials(&restored);
    assert_eq!(
        restored.password(DATA, "default"),
        Some(data_password.as_str()),
        "the data pods keep the backed-up default password (their account Secrets are restored)"
    );
    let mut masters = Vec::new();
    for i in restored.ordinals(DATA) {
        let mut client = Client::connect(restored.pod_addr(DATA, i).unwrap(), Some(&credentials))
            .await
            .expect("a data pod answers");
        let role = client.role().await.expect("ROLE");
        if matches!(
            role,
            valkey_lab::sentinel_protocol::role::Role::Master { .. }
        ) {
            masters.push(i);
        }
    }
    assert_eq!(masters, [primary], "one master, the labelled primary");

    // Every key back with its value.
    let mut client = Client::connect(
        restored.pod_addr(DATA, primary).unwrap(),
        Some(&credentials),
    )
    .await
    .expect("a client of the restored primary");
    assert_eq!(
        client.call(&["DBSIZE"]).await.expect("DBSIZE"),
        Frame::Integer(KEYS as i64)
    );
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(100) {
        let mut args = vec!["MGET".to_owned()];
        args.extend(chunk.iter().map(|i| format!("key:{i}")));
        let Frame::Array(values) = client.call(&args).await.expect("MGET") else {
            panic!("MGET answers an array");
        };
        for (&i, value) in chunk.iter().zip(&values) {
            assert_eq!(
                valkey_lab::replies::text(value).as_deref(),
                Some(value_of(i).as_str()),
                "key:{i}"
            );
        }
    }

    // The ACL user comes back from users.acl, with the password of its restored Secret.
    assert_eq!(
        restored.password(DATA, "app"),
        Some(app_password.as_str()),
        "the app account's Secret is the backed-up one"
    );
    for i in restored.ordinals(DATA) {
        let addr = restored.pod_addr(DATA, i).unwrap();
        let mut app = Client::connect(addr, Some(&Credentials::user("app", &app_password)))
            .await
            .unwrap_or_else(|e| panic!("data-{i}: app cannot log in: {e}"));
        app.call(&["GET", "key:1"])
            .await
            .unwrap_or_else(|e| panic!("data-{i}: app cannot read: {e}"));
    }

    // Every sentinel monitors the restored master under the new cluster's name, and nothing of
    // the old one; the coordinator serves it.
    let master = restored.pod_addr(DATA, primary).unwrap();
    let sentinel_credentials = restored
        .password(SENTINEL, "default")
        .map(Credentials::password);
    for j in restored.ordinals(SENTINEL) {
        let addr = restored.pod_addr(SENTINEL, j).unwrap();
        wait_names(
            &format!("sentinel-{j}"),
            addr,
            sentinel_credentials.as_ref(),
            &master_name(&restored),
            master,
        )
        .await;
        assert_eq!(
            master_addr_by_name(addr, sentinel_credentials.as_ref(), "kb-valkey").await,
            None,
            "sentinel-{j} knows nothing of the backed-up cluster's name"
        );
    }
    let coordinator_credentials = restored
        .password(COORDINATOR, "default")
        .map(Credentials::password);
    for k in restored.ordinals(COORDINATOR) {
        wait_names(
            &format!("coordinator-{k}"),
            restored.pod_addr(COORDINATOR, k).unwrap(),
            coordinator_credentials.as_ref(),
            &master_name(&restored),
            master,
        )
        .await;
    }
    eprintln!(
        "timings: provision {provisioned:?}, backup {backed_up:?}, restore {restore_took:?}, total {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn restore_refuses_a_non_empty_data_directory() {
    let mut cluster = KubeCluster::provision(spec("kb"))
        .await
        .expect("the cluster provisions");
    let primary = cluster.wait_roles(DATA, WAIT).await.expect("one primary");
    write_keys(&cluster, primary, 10).await;
    let backup = cluster
        .backup("kb-backup")
        .await
        .expect("the backup completes");
    drop(cluster);

    let restored = KubeCluster::render_restore(spec("kb2"), &backup).expect("renders");
    // A volume that already holds a dump.rdb.
    let occupied = restored.claim_dir(DATA, 0, "data");
    std::fs::create_dir_all(&occupied).unwrap();
    let theirs = b"REDIS0011 someone else's data";
    std::fs::write(occupied.join("dump.rdb"), theirs).unwrap();
    let refused = restored.restore_prepare_data(DATA, 0, &backup).await;
    let Err(KubeError::Action { outcome, .. }) = &refused else {
        panic!("prepareData over a non-empty directory must fail: {refused:?}");
    };
    assert_eq!(outcome.code, Some(1));
    assert!(
        outcome
            .stderr
            .contains("the data directory is not empty (dump.rdb): refusing to restore over it"),
        "a clear reason: {:?}",
        outcome.stderr
    );
    assert_eq!(
        std::fs::read(occupied.join("dump.rdb")).unwrap(),
        theirs,
        "the file is untouched"
    );
    let entries: Vec<String> = std::fs::read_dir(&occupied)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, ["dump.rdb"], "nothing was added beside it");
    assert!(restored.ordinals(DATA).is_empty(), "no pod started");

    // lost+found, which an ext-formatted volume carries, is no data: that volume is restored.
    let fresh = restored.claim_dir(DATA, 1, "data");
    std::fs::create_dir_all(fresh.join("lost+found")).unwrap();
    restored
        .restore_prepare_data(DATA, 1, &backup)
        .await
        .expect("prepareData into a volume with only lost+found");
    let base = backup
        .repo_dir()
        .join(backup.base_path.trim_start_matches('/'));
    assert_eq!(
        std::fs::read(fresh.join("dump.rdb")).unwrap(),
        std::fs::read(base.join("dump.rdb")).unwrap(),
        "the snapshot, byte for byte"
    );
    assert!(fresh.join("users.acl").is_file());
    assert!(
        fresh
            .join("appendonlydir/appendonly.aof.manifest")
            .is_file()
    );
    assert!(!fresh.join(".valkey-restore").exists(), "no staging left");

    // An attempt interrupted while moving its files in (its staging directory still there) is
    // no one else's data: the Job's retry replaces what it left.
    let interrupted = restored.claim_dir(DATA, 2, "data");
    std::fs::create_dir_all(interrupted.join(".valkey-restore/appendonlydir")).unwrap();
    std::fs::create_dir_all(interrupted.join("appendonlydir")).unwrap();
    std::fs::write(interrupted.join("dump.rdb"), b"REDIS00").unwrap();
    restored
        .restore_prepare_data(DATA, 2, &backup)
        .await
        .expect("prepareData retried over its own interrupted attempt");
    assert_eq!(
        std::fs::read(interrupted.join("dump.rdb")).unwrap(),
        std::fs::read(base.join("dump.rdb")).unwrap(),
    );
    assert!(
        interrupted
            .join("appendonlydir/appendonly.aof.1.base.rdb")
            .is_file()
    );
    assert!(!interrupted.join("appendonlydir/appendonlydir").exists());
    assert!(!interrupted.join(".valkey-restore").exists());
}
