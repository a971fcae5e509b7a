//! The configuration actions against real servers: `account-provision` (an ACL user the same on
//! every data pod, so a failover never promotes a pod without it) and `reconfigure` (what the
//! rendered valkey.conf changed, applied with CONFIG SET, and nothing the pod's own actions own).

use std::net::SocketAddr;
use std::time::Duration;

use valkey_coordinator::addr::Addr;
use valkey_coordinator::lifecycle::account::{self, Account, AccountChange};
use valkey_coordinator::lifecycle::{Budget, Target, reconfigure, switchover};
use valkey_coordinator::secret::Secret;
use valkey_coordinator::sentinel::conn::Credentials;
use valkey_lab::client::{Client, Credentials as LabCredentials};
use valkey_lab::{AuthSpec, Lab, LabSpec, PodId, SentinelTimings, ValkeyVersion};

const WAIT: Duration = Duration::from_secs(20);
const ACTION: Duration = Duration::from_secs(25);
const APP_PASSWORD: &str = "app-secret-9f2c";

fn addr(socket: SocketAddr) -> Addr {
    Addr::from(socket)
}

async fn lab(version: ValkeyVersion) -> Lab {
    let lab = LabSpec::new(version)
        .auth(AuthSpec::simple())
        .timings(SentinelTimings {
            down_after: Duration::from_millis(2000),
            failover_timeout: Duration::from_millis(6000),
            parallel_syncs: 1,
        })
        .start()
        .await
        .expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    lab
}

fn target(lab: &Lab, pod: Option<usize>) -> Target {
    let mut target = Target::new(
        lab.master_name(),
        lab.sentinel_addrs().into_iter().map(addr).collect(),
        lab.data_addrs().into_iter().map(addr).collect(),
    );
    target.pod = pod.map(|i| addr(lab.data_addr(i)));
    target.data_access.credentials = Some(Credentials::password(Secret::new(
        AuthSpec::simple().default_password,
    )));
    target
}

fn app(change: AccountChange) -> Account {
    Account {
        name: "app".into(),
        password: Some(Secret::new(APP_PASSWORD)),
        change,
    }
}

fn app_rules() -> AccountChange {
    account::plan("~app:* +@read +@write -@dangerous").expect("valid statement")
}

/// Logs in as `app` on data pod `i` and tries one allowed and one forbidden command.
async fn app_can(lab: &Lab, i: usize) -> Result<(), String> {
    let credentials = LabCredentials::user("app", APP_PASSWORD);
    let mut client = Client::connect(lab.data_addr(i), Some(&credentials))
        .await
        .map_err(|error| format!("data-{i}: {error}"))?;
    client
        .call(&["GET", "app:probe"])
        .await
        .map_err(|error| format!("data-{i}: GET: {error}"))?;
    match client.call(&["GET", "other:key"]).await {
        Err(error) if error.to_string().contains("NOPERM") => Ok(()),
        other => Err(format!("data-{i}: a key outside ~app:* gave {other:?}")),
    }
}

async fn run_on_every_version(scenario: impl AsyncFn(ValkeyVersion)) {
    for version in [ValkeyVersion::V8_1_8, ValkeyVersion::V9_1_2] {
        scenario(version).await;
    }
}

#[tokio::test]
async fn an_account_is_on_every_data_pod_and_survives_a_failover() {
    run_on_every_version(async |version| {
        let lab = lab(version).await;
        let line = account::run(&target(&lab, None), &Budget::new(ACTION), &app(app_rules()))
            .await
            .expect("account-provision succeeds");
        assert_eq!(line, "account app set on all 3 data pods");
        for i in 0..lab.data_count() {
            app_can(&lab, i)
                .await
                .expect("the account works on every pod");
        }

        // The master moves; the new master already has the account.
        let old = 0;
        switchover::run(&target(&lab, Some(old)), &Budget::new(ACTION), None, None)
            .await
            .expect("switchover succeeds");
        let agreed = lab
            .wait_sentinels_agree(WAIT, |master, _| master != lab.data_addr(old))
            .await
            .expect("the sentinels agree on the new master");
        let new = lab.data_index(agreed.addr).expect("a data pod");
        app_can(&lab, new)
            .await
            .expect("the promoted pod has the account");

        // A re-run with fewer rules takes the removed permission away (reset first).
        account::run(
            &target(&lab, None),
            &Budget::new(ACTION),
            &app(account::plan("~app:* +@read").expect("valid")),
        )
        .await
        .expect("a second provision succeeds");
        let credentials = LabCredentials::user("app", APP_PASSWORD);
        let mut client = Client::connect(lab.data_addr(new), Some(&credentials))
            .await
            .expect("app logs in");
        let write = client.call(&["SET", "app:k", "v"]).await;
        assert!(
            write
                .as_ref()
                .is_err_and(|e| e.to_string().contains("NOPERM")),
            "{version}: +@write was taken away, SET gave {write:?}"
        );

        account::run(
            &target(&lab, None),
            &Budget::new(ACTION),
            &app(AccountChange::Delete),
        )
        .await
        .expect("delete succeeds");
        for i in 0..lab.data_count() {
            assert!(app_can(&lab, i).await.is_err(), "data-{i} still has app");
        }
    })
    .await;
}

#[tokio::test]
async fn an_account_that_one_pod_could_not_take_fails_naming_that_pod() {
    let version = ValkeyVersion::V9_1_2;
    let mut lab = lab(version).await;
    let master = 0;
    let down = 1;
    lab.terminate(PodId::Data(down))
        .await
        .expect("stop a replica");

    let error = account::run(&target(&lab, None), &Budget::new(ACTION), &app(app_rules()))
        .await
        .expect_err("one pod is down")
        .to_string();
    let down_addr = addr(lab.data_addr(down)).to_string();
    assert!(
        error.contains("applied on 2 of 3") && error.contains(&down_addr),
        "{error}"
    );
    assert!(
        !error.contains(APP_PASSWORD),
        "the password leaked: {error}"
    );
    app_can(&lab, master)
        .await
        .expect("the pods that were up took it");
}

#[tokio::test]
async fn reconfigure_sets_what_changed_and_leaves_what_the_pod_owns() {
    run_on_every_version(async |version| {
        let lab = lab(version).await;
        let replica = 1;
        let conf = lab.dir().join("reconfigured.conf");
        std::fs::write(
            &conf,
            "# rendered by KubeBlocks\n\
             maxmemory-policy allkeys-lru\n\
             maxmemory 64mb\n\
             save 900 1\nsave 300 10\n\
             replica-priority 77\n\
             port 7777\n\
             databases 32\n",
        )
        .expect("write the config");
        let kubeblocks_list = format!("{}:0123abcd", conf.display());

        let line = reconfigure::run(
            &target(&lab, Some(replica)),
            &Budget::new(ACTION),
            &reconfigure::updated_files(&kubeblocks_list),
        )
        .await
        .expect("reconfigure succeeds");
        assert!(
            line.contains("set maxmemory, maxmemory-policy, save")
                && line.contains("left for a restart: databases"),
            "{line}"
        );
        let get = |name: &'static str| {
            let lab = &lab;
            async move {
                let mut client = lab.client(PodId::Data(replica)).await.expect("client");
                let reply = client.call(&["CONFIG", "GET", name]).await.expect("GET");
                let valkey_lab::Frame::Array(items) = reply else {
                    panic!("CONFIG GET {name}: {reply:?}");
                };
                valkey_lab::replies::text(&items[1]).expect("text")
            }
        };
        assert_eq!(get("maxmemory-policy").await, "allkeys-lru");
        assert_eq!(get("maxmemory").await, "67108864");
        assert_eq!(get("save").await, "900 1 300 10");
        assert_ne!(
            get("replica-priority").await,
            "77",
            "{version}: replica-priority is owned by startup and switchover"
        );
        assert_ne!(get("port").await, "7777");

        // Run again: nothing differs any more.
        let again = reconfigure::run(
            &target(&lab, Some(replica)),
            &Budget::new(ACTION),
            &reconfigure::updated_files(&kubeblocks_list),
        )
        .await
        .expect("a second run succeeds");
        assert!(again.contains("nothing to change"), "{again}");
    })
    .await;
}

#[tokio::test]
async fn a_value_the_server_rejects_fails_reconfigure() {
    let version = ValkeyVersion::V9_1_2;
    let lab = lab(version).await;
    let conf = lab.dir().join("bad.conf");
    std::fs::write(&conf, "maxmemory-policy sometimes\n").expect("write the config");
    let error = reconfigure::run(&target(&lab, Some(0)), &Budget::new(ACTION), &[conf])
        .await
        .expect_err("an invalid value is refused")
        .to_string();
    assert!(
        error.contains("refused CONFIG SET maxmemory-policy"),
        "{error}"
    );
}
