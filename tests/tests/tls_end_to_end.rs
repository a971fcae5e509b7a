//! The coordinator and its lifecycle actions TLS-only, end to end, on every TLS-capable build:
//! `valkey-coordinator serve` (the binary, configured by flags as a container runs it) follows
//! TLS sentinels, serves TLS clients with client certificates required, heals a wiped sentinel,
//! follows a kill -9 failover, and every action (`status`, `role-probe`, `startup`,
//! `switchover`, `member-leave`, `account-provision`, `reconfigure`) reaches the coordinator, the
//! sentinels and the data pods over TLS; no plaintext
//! port is open anywhere; with every sentinel wiped it rebuilds the monitors from what the data
//! pods prove over TLS; a rotated coordinator certificate is served to new clients while
//! established ones keep working; and a wrong CA, an expired client certificate or a missing
//! one is refused with the peer and the cause named, never retried in plaintext.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use valkey_coordinator::addr::Addr;
use valkey_coordinator::secret::Secret;
use valkey_coordinator::sentinel::conn::{self, Access, Credentials};
use valkey_coordinator::tls::{ClientFiles, ClientTls, KeyPair};
use valkey_lab::tls::{CertFiles, TlsFiles};
use valkey_lab::wait::{POLL_EVERY, Probe, poll_until};
use valkey_lab::{AuthSpec, Lab, LabSpec, PodId, SentinelStart, ValkeyVersion};

const WAIT: Duration = Duration::from_secs(20);
const COORDINATOR: &str = "coordinator";
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The TLS flags every invocation gets: the lab's CA, and `identity` as the certificate.
fn tls_flags(ca: &std::path::Path, identity: &CertFiles) -> Vec<String> {
    vec![
        "--tls".into(),
        "--tls-ca-cert-file".into(),
        ca.display().to_string(),
        "--tls-cert-file".into(),
        identity.cert.display().to_string(),
        "--tls-key-file".into(),
        identity.key.display().to_string(),
    ]
}

/// The group and the secrets, as flags and environment for every invocation.
struct Group {
    sentinels: Vec<SocketAddr>,
    data_pods: Vec<SocketAddr>,
    master_name: String,
    auth: AuthSpec,
}

impl Group {
    fn of(lab: &Lab, auth: &AuthSpec) -> Self {
        Self {
            sentinels: lab.sentinel_addrs(),
            data_pods: lab.data_addrs(),
            master_name: lab.master_name().to_owned(),
            auth: auth.clone(),
        }
    }

    /// An action's command: the group, its data-pod credentials (the `default` user), TLS.
    fn action(&self, action: &str, tls: &[String]) -> Command {
        let mut command = Command::new(valkey_lab::coordinator_binary());
        command
            .arg(action)
            .args(["--master-name", &self.master_name, "--timeout-ms", "15000"])
            .args(tls)
            .env(
                "VALKEY_COORDINATOR_DATA_PASSWORD",
                &self.auth.default_password,
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for sentinel in &self.sentinels {
            command.args(["--sentinel", &sentinel.to_string()]);
        }
        for pod in &self.data_pods {
            command.args(["--data-pod", &pod.to_string()]);
        }
        command
    }
}

/// What an action printed and how it ended.
struct Outcome {
    success: bool,
    stdout: String,
    stderr: String,
}

async fn run(mut command: Command) -> Outcome {
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("the action ends within its budget")
        .expect("the action runs");
    Outcome {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    }
}

/// `serve` with TLS on both sides, on 127.0.0.1 with a port of its choosing; returns the child
/// and the port it logged.
async fn serve(group: &Group, tls: &[String]) -> (Child, SocketAddr) {
    let mut command = Command::new(valkey_lab::coordinator_binary());
    command
        .args([
            "--log-format",
            "json",
            "serve",
            "--master-name",
            &group.master_name,
        ])
        .args(["--listen", "127.0.0.1:0", "--tls-reload-ms", "300"])
        .args(tls)
        .args(["--data-user", &group.auth.sentinel_user])
        .env(
            "VALKEY_COORDINATOR_DATA_PASSWORD",
            &group.auth.sentinel_user_password,
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for sentinel in &group.sentinels {
        command.args(["--sentinel", &sentinel.to_string()]);
    }
    for pod in &group.data_pods {
        command.args(["--data-pod", &pod.to_string()]);
    }
    let mut child = command.spawn().expect("serve starts");
    let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
    let mut seen = Vec::new();
    let listen = tokio::time::timeout(WAIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push(line.clone());
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let fields = &entry;
            if fields["message"] == "serving sentinel-compatible clients" {
                assert_eq!(fields["tls"], true, "the client port speaks TLS: {line}");
                return fields["listen"]
                    .as_str()
                    .and_then(|listen| listen.parse::<SocketAddr>().ok())
                    .expect("a listen address");
            }
        }
        panic!("serve ended before listening: {}", seen.join("\n"));
    })
    .await
    .expect("serve listens within 20 s");
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, listen)
}

/// The master a TLS client reads from the coordinator.
async fn master_from(coordinator: SocketAddr, access: &Access, name: &str) -> Option<Addr> {
    let mut connection = conn::connect(&Addr::from(coordinator), access).await.ok()?;
    let reply = connection
        .call(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", name])
        .await
        .ok()?;
    let valkey_lab::sentinel_protocol::sentinel::Value::Array(parts) = reply else {
        return None;
    };
    let text = |value: &valkey_lab::sentinel_protocol::sentinel::Value| match value {
        valkey_lab::sentinel_protocol::sentinel::Value::Str(bytes) => {
            Some(String::from_utf8_lossy(bytes).into_owned())
        }
        _ => None,
    };
    let host: IpAddr = text(parts.first()?)?.parse().ok()?;
    let port = text(parts.get(1)?)?.parse().ok()?;
    Some(Addr::from(SocketAddr::new(host, port)))
}

/// Whether a plaintext `PING` to `addr` gets a RESP answer (it must not, anywhere).
async fn answers_plaintext(addr: SocketAddr) -> bool {
    let Ok(Ok(mut stream)) =
        tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await
    else {
        return false;
    };
    if stream.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut answer = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), stream.read(&mut answer)).await,
        Ok(Ok(n)) if n > 0 && matches!(answer[0], b'+' | b'-' | b'$' | b'*' | b':')
    )
}

fn client_access(ca: &std::path::Path, identity: &TlsFiles) -> Access {
    Access {
        credentials: None,
        tls: Some(
            ClientTls::load(ClientFiles {
                ca: ca.to_owned(),
                identity: Some(KeyPair {
                    cert: identity.cert.clone(),
                    key: identity.key.clone(),
                }),
                server_name: None,
            })
            .expect("the client's files load"),
        ),
    }
}

/// The leaf certificate a new TLS client of `addr` is shown.
async fn leaf_of(addr: SocketAddr, access: &Access) -> Vec<u8> {
    let tcp = TcpStream::connect(addr).await.expect("TCP connects");
    let tls = access.tls.as_ref().expect("TLS access");
    let stream = tls
        .connect(tcp, &addr.ip().to_string(), addr.port())
        .await
        .expect("handshake");
    stream.get_ref().1.peer_certificates().expect("a chain")[0].to_vec()
}

async fn the_coordinator_and_every_action_run_tls_only(version: ValkeyVersion) {
    let auth = AuthSpec::simple();
    let mut lab = LabSpec::new(version)
        .tls(true)
        .auth(auth.clone())
        .start()
        .await
        .expect("lab starts");
    lab.wait_formed(WAIT)
        .await
        .expect("the group forms over TLS");
    let pki = lab.tls_mut().expect("a TLS lab");
    let own = pki
        .issue(COORDINATOR, &[LOOPBACK])
        .expect("the coordinator's pair");
    let ca = pki.ca_cert().to_owned();
    let negative = pki.negative().clone();
    let client_files = lab.tls_client().expect("the client volume").clone();
    let group = Group::of(&lab, &auth);
    let tls = tls_flags(&ca, &own.identity());

    let (mut coordinator, listen) = serve(&group, &tls).await;
    let access = client_access(&ca, &client_files);
    let name = lab.master_name().to_owned();
    let first = Addr::from(lab.data_addr(0));
    poll_until(
        "the coordinator to serve the master over TLS",
        WAIT,
        POLL_EVERY,
        || async {
            match master_from(listen, &access, &name).await {
                Some(master) if master == first => Probe::Ready(()),
                other => Probe::Pending(format!("{other:?}")),
            }
        },
    )
    .await
    .expect("served");

    // No plaintext port anywhere: not on a data pod, a sentinel, nor the coordinator.
    for addr in lab
        .data_addrs()
        .into_iter()
        .chain(lab.sentinel_addrs())
        .chain([listen])
    {
        assert!(!answers_plaintext(addr).await, "{addr} answers plaintext");
    }

    // The actions, over TLS to the coordinator, the sentinels and the data pods.
    let mut status = group.action("status", &tls);
    status.args(["--coordinator", &listen.to_string()]);
    let status = run(status).await;
    assert!(status.success, "status: {}", status.stderr);
    let mut probe = group.action("role-probe", &tls);
    probe.args(["--pod", &lab.data_addr(0).to_string()]);
    let probe = run(probe).await;
    assert!(probe.success, "role-probe: {}", probe.stderr);
    assert!(probe.stdout.starts_with("primary "), "{}", probe.stdout);

    // Healing over TLS: a sentinel restarted with an empty config monitors the master again.
    lab.restart_sentinel(2, SentinelStart::Wiped)
        .await
        .expect("sentinel-2 restarts wiped");
    let master = lab.data_addr(0);
    poll_until("sentinel-2 to be healed", WAIT, POLL_EVERY, || async {
        match lab.sentinel_master_addr(2).await {
            Ok(Some(addr)) if addr == master => Probe::Ready(()),
            other => Probe::Pending(format!("{other:?}")),
        }
    })
    .await
    .expect("healed over TLS");
    lab.wait_sentinels_see(2, 2, WAIT)
        .await
        .expect("the healed sentinel reaches the data pods over TLS with the registered user");

    // A kill -9 of the master: the coordinator serves the new one.
    lab.kill(PodId::Data(0));
    let agreed = lab
        .wait_sentinels_agree(WAIT, |addr, _| addr != master)
        .await
        .expect("the sentinels fail over");
    let promoted = Addr::from(agreed.addr);
    poll_until(
        "the coordinator to serve the new master",
        WAIT,
        POLL_EVERY,
        || async {
            match master_from(listen, &access, &name).await {
                Some(master) if master == promoted => Probe::Ready(()),
                other => Probe::Pending(format!("{other:?}")),
            }
        },
    )
    .await
    .expect("the verdict follows the failover");
    // The old master comes back through `startup`, which asks over TLS whom to follow.
    let mut startup = group.action("startup", &tls);
    startup
        .args(["--pod", &lab.data_addr(0).to_string()])
        .args(["--coordinator", &listen.to_string()])
        .args(["--write-config", &lab.include_path(0).display().to_string()]);
    let decided = run(startup).await;
    assert!(decided.success, "startup: {}", decided.stderr);
    assert_eq!(
        decided.stdout,
        format!("replica {} {}", agreed.addr.ip(), agreed.addr.port()),
        "the old master follows the new one"
    );
    lab.start_data(0, valkey_lab::StartRole::Included)
        .await
        .expect("the old master comes back as a replica");
    let new_index = lab.data_index(agreed.addr).expect("a lab pod");
    lab.wait_replication_up(new_index, WAIT)
        .await
        .expect("both replicas attached");

    // A planned switchover and a replica's member-leave, through the coordinator.
    let mut switchover = group.action("switchover", &tls);
    switchover
        .args(["--pod", &agreed.addr.to_string()])
        .args(["--coordinator", &listen.to_string()]);
    let moved = run(switchover).await;
    assert!(moved.success, "switchover: {}", moved.stderr);
    let after = lab
        .wait_sentinels_agree(WAIT, |addr, _| addr != agreed.addr)
        .await
        .expect("the switchover moved the master");
    let replica = lab
        .data_addrs()
        .into_iter()
        .find(|addr| *addr != after.addr)
        .expect("a replica");
    let mut leave = group.action("member-leave", &tls);
    leave.args(["--pod", &replica.to_string()]);
    let left = run(leave).await;
    assert!(left.success, "member-leave: {}", left.stderr);

    // An ACL account on every data pod, and a dynamic parameter applied, both over TLS.
    let mut account = group.action("account-provision", &tls);
    account
        .args([
            "--account-name",
            "app",
            "--account-statement",
            "~app:* +get +set",
        ])
        .env("VALKEY_COORDINATOR_ACCOUNT_PASSWORD", "app-pw");
    let provisioned = run(account).await;
    assert!(
        provisioned.success,
        "account-provision: {}",
        provisioned.stderr
    );
    assert_eq!(provisioned.stdout, "account app set on all 3 data pods");
    let conf = lab.dir().join("updated.conf");
    std::fs::write(&conf, "maxmemory-policy allkeys-lru\n").expect("an updated file");
    let mut reconfigure = group.action("reconfigure", &tls);
    reconfigure
        .args(["--pod", &replica.to_string()])
        .args(["--config-file", &conf.display().to_string()]);
    let reconfigured = run(reconfigure).await;
    assert!(reconfigured.success, "reconfigure: {}", reconfigured.stderr);
    assert!(
        reconfigured.stdout.contains("maxmemory-policy"),
        "{}",
        reconfigured.stdout
    );

    // Rotation: the coordinator's certificate swapped on disk, as the kubelet does. New clients
    // are shown the new one within seconds; an established client keeps its link.
    let mut established = conn::connect(&Addr::from(listen), &access)
        .await
        .expect("an established client");
    let before = leaf_of(listen, &access).await;
    lab.tls_mut()
        .expect("a TLS lab")
        .rotate(COORDINATOR)
        .expect("rotated");
    poll_until(
        "new clients to see the rotated certificate",
        WAIT,
        POLL_EVERY,
        || async {
            if leaf_of(listen, &access).await == before {
                Probe::Pending("the old certificate".to_owned())
            } else {
                Probe::Ready(())
            }
        },
    )
    .await
    .expect("the rotated certificate is served");
    let pong = established
        .call(&["PING"])
        .await
        .expect("the old link still works");
    assert!(format!("{pong:?}").contains("PONG"), "{pong:?}");

    // Every sentinel wiped at once: too few monitors for a majority, so the coordinator asks the
    // data pods (over TLS) which master they prove, and registers it on every sentinel.
    for j in 0..lab.sentinel_count() {
        lab.restart_sentinel(j, SentinelStart::Wiped)
            .await
            .expect("a sentinel restarts wiped");
    }
    for j in 0..lab.sentinel_count() {
        poll_until(
            "every wiped sentinel to be healed",
            WAIT,
            POLL_EVERY,
            || async {
                match lab.sentinel_master_addr(j).await {
                    Ok(Some(addr)) if addr == after.addr => Probe::Ready(()),
                    other => Probe::Pending(format!("sentinel-{j}: {other:?}")),
                }
            },
        )
        .await
        .expect("healed from the data pods over TLS");
    }

    // Refusals name the peer and the cause; nothing is retried in plaintext.
    let sentinel = lab.sentinel_addr(0).to_string();
    let wrong_ca = tls_flags(&negative.other_ca, &client_files.identity());
    let mut status = group.action("status", &wrong_ca);
    status.args(["--json"]);
    let refused = run(status).await;
    assert!(!refused.success, "a wrong CA must fail the action");
    assert!(
        refused.stderr.contains(&sentinel) && refused.stderr.contains("UnknownIssuer"),
        "names the sentinel and the cause: {}",
        refused.stderr
    );
    let mut probe = group.action("role-probe", &tls_flags(&ca, &negative.expired));
    probe.args(["--pod", &after.addr.to_string()]);
    let expired = run(probe).await;
    assert!(
        !expired.success,
        "an expired client certificate must be refused"
    );
    assert!(expired.stdout.is_empty(), "{}", expired.stdout);

    let anonymous = Access {
        credentials: Some(Credentials::password(Secret::new(
            auth.default_password.clone(),
        ))),
        tls: Some(
            ClientTls::load(ClientFiles {
                ca: ca.clone(),
                identity: None,
                server_name: None,
            })
            .expect("loads"),
        ),
    };
    let error = conn::connect(&Addr::from(after.addr), &anonymous)
        .await
        .err()
        .expect("a data pod requires a client certificate");
    let text = error.to_string();
    assert!(
        text.contains(&after.addr.to_string()),
        "names the pod: {text}"
    );
    eprintln!("{version}: a client without a certificate: {text}");
    eprintln!("{version}: a wrong CA: {}", refused.stderr);
    eprintln!(
        "{version}: an expired client certificate: {}",
        expired.stderr
    );

    coordinator.start_kill().expect("stop serve");
    let _ = coordinator.wait().await;
}

valkey_lab::on_every_tls_version!(the_coordinator_and_every_action_run_tls_only);
