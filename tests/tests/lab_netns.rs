//! The lab on namespaces (`LabSpec::netns`): every pod in a network namespace of its own, with
//! the lab's waits, clients, kills and restarts unchanged, and faults that cut one link.

use std::{fs, time::Duration};

use valkey_lab::{
    LabSpec, PodId, SentinelStart, StartRole, ValkeyVersion,
    netns::{Fault, Member},
};

const WAIT: Duration = Duration::from_secs(20);

fn net_namespace(pid: u32) -> String {
    let link = fs::read_link(format!("/proc/{pid}/ns/net")).expect("a process's namespace");
    link.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pod_runs_in_its_own_namespace_and_the_group_forms() {
    let lab = LabSpec::new(ValkeyVersion::V9_1_2)
        .netns(true)
        .start()
        .await
        .expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    let ours = net_namespace(std::process::id());
    let mut seen = vec![ours];
    for id in (0..3).map(PodId::Data).chain((0..3).map(PodId::Sentinel)) {
        let pid = lab.pid(id).expect("running");
        let ns = net_namespace(pid);
        assert!(!seen.contains(&ns), "{id} shares a namespace: {ns}");
        seen.push(ns);
        let net = lab.network().expect("a network");
        assert_eq!(lab.addr(id).ip(), net.ip(lab.member(id)), "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_cut_from_the_sentinels_only_is_replaced_and_rejoins_after_the_heal() {
    let lab = LabSpec::new(ValkeyVersion::V9_1_2)
        .netns(true)
        .start()
        .await
        .expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    let sentinels: Vec<Member> = (0..3).map(|j| lab.member(PodId::Sentinel(j))).collect();
    let cut = Fault::partition(&[lab.member(PodId::Data(0))], &sentinels);
    lab.apply_fault(&cut).expect("cut");
    let old = lab.data_addr(0);
    let agreed = lab
        .wait_sentinels_agree(WAIT, |addr, _| addr != old)
        .await
        .expect("a new master");
    // The harness still reaches the old master: the cut is between members only.
    let role = lab
        .role(PodId::Data(0))
        .await
        .expect("ROLE of the old master");
    eprintln!("old master during the cut: {role:?}");
    lab.heal_network().expect("heal");
    lab.wait_replica_of(0, agreed.addr, WAIT)
        .await
        .expect("the old master rejoins as a replica");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_restart_and_a_wiped_sentinel_work_as_on_loopback() {
    let mut lab = LabSpec::new(ValkeyVersion::V9_1_2)
        .netns(true)
        .start()
        .await
        .expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    lab.restart_sentinel(1, SentinelStart::Wiped)
        .await
        .expect("wiped restart");
    assert!(lab.sentinel_master(1).await.expect("asks").is_none());
    lab.monitor(1, lab.data_addr(0)).await.expect("monitor");
    lab.kill(PodId::Data(0));
    let old = lab.data_addr(0);
    let agreed = lab
        .wait_sentinels_agree(WAIT, |addr, _| addr != old)
        .await
        .expect("a failover");
    lab.restart_data(0, StartRole::ReplicaOf(agreed.addr))
        .await
        .expect("restart");
    lab.wait_replica_of(0, agreed.addr, WAIT)
        .await
        .expect("rejoins");
}
