//! Checks of the lab's own operations that later scenarios build on: authentication, sentinel
//! wipes and re-registration, pause/resume, full stop/start, and parallel labs.

use std::time::Duration;

use sentinel_protocol::{
    event::{Channel, Payload},
    role::Role,
};
use valkey_lab::{
    AuthSpec, Client, EventLog, LabError, LabSpec, PodId, SentinelStart, StartRole, ValkeyVersion,
    Writer,
};

const WAIT: Duration = Duration::from_secs(20);

/// Every link authenticated: `requirepass` and a sentinel ACL user on the data pods, a
/// replication user, a password on the sentinels. The group forms, unauthenticated clients are
/// refused, and a failover works through it all.
async fn auth_group_fails_over(version: ValkeyVersion) {
    let auth = AuthSpec {
        replication_user: Some(("replicator".into(), "lab-repl-pw".into())),
        sentinel_password: Some("lab-sentinel-pw".into()),
        ..AuthSpec::simple()
    };
    let mut lab = LabSpec::new(version)
        .auth(auth)
        .start()
        .await
        .expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms with auth");

    for id in [PodId::Data(0), PodId::Sentinel(0)] {
        let mut anonymous = Client::connect(lab.addr(id), None).await.expect("connect");
        match anonymous.call(&["ROLE"]).await {
            Err(LabError::Server { message, .. }) => {
                assert!(message.starts_with("NOAUTH"), "{id}: {message}")
            }
            other => panic!("{id} answered an unauthenticated ROLE: {other:?}"),
        }
    }

    let events = EventLog::start(&lab).await.expect("subscribe with auth");
    let writer = Writer::start(&lab, Some(Duration::from_millis(5)));
    let old = lab.data_addr(0);
    writer
        .wait_acked_by(old, 20, WAIT)
        .await
        .expect("authenticated writes");
    lab.kill(PodId::Data(0));
    events
        .wait_majority(Channel::SwitchMaster, |_| true, WAIT)
        .await
        .expect("failover with auth");
    let agreed = lab
        .wait_sentinels_agree(WAIT, |addr, _| addr != old)
        .await
        .expect("sentinels agree on a new master");
    writer
        .wait_acked_by(agreed.addr, 20, WAIT)
        .await
        .expect("writes follow the new master");
    let new_index = lab.data_index(agreed.addr).expect("a lab pod");
    lab.restart_data(0, StartRole::ReplicaOf(agreed.addr))
        .await
        .expect("restart old master");
    lab.wait_replication_up(new_index, WAIT)
        .await
        .expect("replication with the replication user");
    writer.stop().await;
}

/// A wiped sentinel (emptyDir) comes back monitoring nothing, learns nothing from its peers, and
/// rejoins once `SENTINEL MONITOR` and the `SET`s are sent to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_sentinel_is_unmonitored_until_registered() {
    let mut lab = LabSpec::new(ValkeyVersion::V9_1_2)
        .start()
        .await
        .expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");

    lab.restart_sentinel(1, SentinelStart::Wiped)
        .await
        .expect("restart wiped");
    assert_eq!(lab.sentinel_master(1).await.expect("SENTINEL MASTER"), None);
    assert_eq!(
        lab.sentinel_master_addr(1).await.expect("GET-MASTER-ADDR"),
        None
    );
    match lab.role(PodId::Sentinel(1)).await.expect("ROLE") {
        Role::Sentinel { masters } => assert!(masters.is_empty(), "{masters:?}"),
        other => panic!("{other:?}"),
    }

    let master = lab.data_addr(0);
    let agreed = lab
        .wait_sentinels_agree(WAIT, |addr, _| addr == master)
        .await
        .expect("the two monitoring sentinels still agree");
    assert_eq!(agreed.votes, 2);

    lab.monitor(1, lab.data_addr(0)).await.expect("register");
    lab.wait_sentinels_see(2, 2, WAIT)
        .await
        .expect("the re-registered sentinel rejoins");
    let record = lab
        .sentinel_master(1)
        .await
        .unwrap()
        .expect("monitored again");
    assert_eq!(record.instance.down_after_milliseconds, 2000);
    assert_eq!(record.failover_timeout, 5000);

    lab.restart_sentinel(2, SentinelStart::KeepConfig)
        .await
        .expect("restart keeping config");
    lab.wait_sentinels_see(2, 2, WAIT)
        .await
        .expect("a sentinel keeping its config rejoins");
}

/// A SIGSTOPped replica is flagged down by a majority of sentinels, and up again after SIGCONT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_replica_goes_down_and_comes_back() {
    let mut lab = LabSpec::new(ValkeyVersion::V9_1_2)
        .start()
        .await
        .expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    let events = EventLog::start(&lab).await.expect("subscribe");
    let replica = lab.data_addr(1);
    let is_replica = |p: &Payload| {
        matches!(p, Payload::Instance { instance, .. }
            if instance.instance.ip.parse() == Ok(replica.ip()))
    };

    lab.pause(PodId::Data(1)).expect("SIGSTOP");
    match lab.role(PodId::Data(1)).await {
        Err(LabError::CommandTimeout { .. }) => {}
        other => panic!("a paused pod should time out, got {other:?}"),
    }
    events
        .wait_majority(Channel::SDown, is_replica, WAIT)
        .await
        .expect("+sdown");
    lab.resume(PodId::Data(1)).expect("SIGCONT");
    events
        .wait_majority(Channel::SDownCleared, is_replica, WAIT)
        .await
        .expect("-sdown");
    lab.wait_replication_up(0, WAIT)
        .await
        .expect("replica linked again");
}

/// The "no `+reset-master`" check every scenario ends with can fail: a real `SENTINEL RESET`
/// shows up in the event log's resets, with the sentinel that published it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_reset_is_seen_by_the_event_log() {
    let lab = LabSpec::new(ValkeyVersion::V9_1_2)
        .start()
        .await
        .expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    let events = EventLog::start(&lab).await.expect("subscribe");
    assert_eq!(events.resets(), Vec::<String>::new());
    let mut sentinel = lab.client(PodId::Sentinel(1)).await.expect("connect");
    sentinel
        .call(&["SENTINEL", "RESET", "mymaster"])
        .await
        .expect("reset");
    events
        .wait_any(Channel::ResetMaster, |_| true, WAIT)
        .await
        .expect("+reset-master");
    let resets = events.resets();
    assert_eq!(resets.len(), 1, "{resets:?}");
    assert!(
        resets[0].starts_with("sentinel-1 master mymaster "),
        "{resets:?}"
    );
}

/// Stop everything (SIGTERM, RDB saved), start it again with wiped sentinels: the data survives
/// on the data dirs, the sentinels monitor nothing until registered, then the group re-forms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_stop_and_start_keeps_data() {
    let mut lab = LabSpec::new(ValkeyVersion::V9_1_2)
        .rdb(true)
        .start()
        .await
        .expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    let mut client = lab.client(PodId::Data(0)).await.expect("connect");
    client.call(&["SET", "survivor", "yes"]).await.expect("SET");
    drop(client);

    lab.stop_all().await.expect("stop all");
    for j in 0..lab.sentinel_count() {
        assert!(!lab.is_running(PodId::Sentinel(j)));
    }
    lab.start_all(SentinelStart::Wiped)
        .await
        .expect("start all");
    for j in 0..lab.sentinel_count() {
        assert_eq!(lab.sentinel_master(j).await.expect("SENTINEL MASTER"), None);
        lab.monitor(j, lab.data_addr(0)).await.expect("register");
    }
    lab.wait_formed(WAIT).await.expect("group re-forms");
    for i in 0..lab.data_count() {
        let mut client = lab.client(PodId::Data(i)).await.expect("connect");
        let value = client.call(&["GET", "survivor"]).await.expect("GET");
        assert_eq!(
            valkey_lab::replies::text(&value).as_deref(),
            Some("yes"),
            "valkey-{i}"
        );
    }
}

/// Labs in one process get distinct blocks, and a block is free again once its lab is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_labs_get_distinct_blocks() {
    let spec = LabSpec::new(ValkeyVersion::V8_1_8)
        .data_pods(1)
        .sentinels(0);
    let a = spec.clone().start().await.expect("lab a");
    let b = spec.clone().start().await.expect("lab b");
    assert_ne!(a.block().number(), b.block().number());
    assert_ne!(a.data_addr(0), b.data_addr(0));
    assert_eq!(a.data_addr(0).port(), 6379);
    a.wait_formed(WAIT).await.expect("a alone forms");
    let pid = a.pid(PodId::Data(0)).expect("running");
    let dir = a.dir().to_path_buf();
    drop(a);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "process reaped"
    );
    assert!(!dir.exists(), "lab dir removed after success");
    b.wait_master(0, WAIT).await.expect("b unaffected");
}

/// A process started through the lab (as a coordinator will be) dies with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aux_process_dies_with_the_lab() {
    let spec = LabSpec::new(ValkeyVersion::V9_1_2)
        .data_pods(1)
        .sentinels(0);
    let mut lab = spec.start().await.expect("lab starts");
    let mut command = std::process::Command::new("sleep");
    command.arg("300");
    let pid = lab.spawn_aux("sleeper", command).await.expect("spawn");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(lab.aux_log("sleeper").is_some());
    drop(lab);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "aux process reaped"
    );
}

valkey_lab::on_every_version!(auth_group_fails_over);
