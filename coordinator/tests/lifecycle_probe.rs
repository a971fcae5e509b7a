//! `valkey-coordinator role-probe` and `status` as KubeBlocks' kbagent runs them: the binary,
//! configured by flags, environment and secret files, against real sentinels and data pods.
//! The contract: on success exactly one line on stdout and exit 0; otherwise nothing on stdout,
//! one line on stderr, exit 1, within the budget.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use tokio::process::Command;
use tokio::time::Instant;
use valkey_lab::wait::{POLL_EVERY, Probe, poll_until};
use valkey_lab::{AuthSpec, Lab, LabSpec, PodId, ValkeyVersion, on_every_version};

const WAIT: Duration = Duration::from_secs(20);

/// Runs one action against `lab` about `pod`, with `extra` flags; `env` adds variables.
async fn action(
    lab: &Lab,
    name: &str,
    pod: SocketAddr,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_valkey-coordinator"));
    command
        .arg(name)
        .args(["--master-name", lab.master_name()])
        .args(["--pod", &pod.to_string()])
        .args(extra)
        .envs(env.iter().copied());
    for sentinel in lab.sentinel_addrs() {
        command.args(["--sentinel", &sentinel.to_string()]);
    }
    for data in lab.data_addrs() {
        command.args(["--data-pod", &data.to_string()]);
    }
    command.output().await.expect("the binary runs")
}

async fn role_probe(lab: &Lab, pod: SocketAddr) -> Output {
    action(lab, "role-probe", pod, &["--timeout-ms", "3000"], &[]).await
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A success: exit 0 and exactly one line, returned without its newline.
fn one_line(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}, stderr: {}",
        output.status,
        stderr(output)
    );
    let out = stdout(output);
    assert!(
        out.ends_with('\n') && out.matches('\n').count() == 1,
        "one line: {out:?}"
    );
    out.trim_end().to_owned()
}

/// A failure: exit 1, empty stdout, one line on stderr naming the reason.
fn refusal(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1), "stdout: {}", stdout(output));
    assert!(
        output.stdout.is_empty(),
        "nothing on stdout: {:?}",
        stdout(output)
    );
    let err = stderr(output);
    let last = err.lines().last().unwrap_or_default().to_owned();
    assert!(last.starts_with("valkey-coordinator role-probe: "), "{err}");
    last
}

async fn epoch(lab: &Lab) -> u64 {
    lab.sentinel_master(0)
        .await
        .expect("SENTINEL MASTER")
        .expect("monitored")
        .config_epoch
}

/// Scenario: one primary at the agreed epoch, every other pod a secondary at the same epoch;
/// after a failover the deposed master, still `role:master` for a moment, is never `primary`
/// at the new epoch, and the new master becomes `primary` at it once the sentinels know its
/// run id.
async fn one_primary_at_the_agreed_epoch_and_a_deposed_master_is_never_primary(
    version: ValkeyVersion,
) {
    let lab = LabSpec::new(version).start().await.expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    // The run id reaches every sentinel's record with its first INFO of the master.
    let first = poll_until("the master to be proven", WAIT, POLL_EVERY, || async {
        let line = stdout(&role_probe(&lab, lab.data_addr(0)).await);
        if line.starts_with("primary ") {
            Probe::Ready(line)
        } else {
            Probe::Pending(line)
        }
    })
    .await
    .expect("pod 0 is primary");
    let epoch0 = epoch(&lab).await;
    assert_eq!(first.trim_end(), format!("primary {epoch0}"));
    for i in 1..lab.data_count() {
        let line = one_line(&role_probe(&lab, lab.data_addr(i)).await);
        assert_eq!(line, format!("secondary {epoch0}"), "pod {i}");
    }

    let mut sentinel = lab
        .client(PodId::Sentinel(0))
        .await
        .expect("sentinel client");
    sentinel
        .call(&["SENTINEL", "FAILOVER", lab.master_name()])
        .await
        .expect("failover accepted");
    let started = Instant::now();
    let mut old_master_lines = Vec::new();
    let new = loop {
        assert!(
            started.elapsed() < WAIT,
            "no new primary: {old_master_lines:?}"
        );
        old_master_lines.push(stdout(&role_probe(&lab, lab.data_addr(0)).await));
        let mut primaries = Vec::new();
        for i in 1..lab.data_count() {
            let line = stdout(&role_probe(&lab, lab.data_addr(i)).await);
            if line.starts_with("primary ") {
                primaries.push((i, line));
            }
        }
        assert!(primaries.len() <= 1, "two primaries: {primaries:?}");
        if let Some(found) = primaries.pop() {
            break found;
        }
        tokio::time::sleep(POLL_EVERY).await;
    };
    let (new_index, new_line) = new;
    let new_epoch: u64 = new_line.trim_end()["primary ".len()..]
        .parse()
        .expect("a number");
    assert!(new_epoch > epoch0, "{new_line}");
    for line in &old_master_lines {
        assert!(
            !line.starts_with("primary") || line.trim_end() == format!("primary {epoch0}"),
            "the deposed master claimed a newer primary: {old_master_lines:?}"
        );
    }
    let old = poll_until(
        "the old master to report secondary",
        WAIT,
        POLL_EVERY,
        || async {
            let out = role_probe(&lab, lab.data_addr(0)).await;
            let line = stdout(&out);
            if line.trim_end() == format!("secondary {new_epoch}") {
                Probe::Ready(line)
            } else {
                Probe::Pending(line)
            }
        },
    )
    .await;
    assert!(
        old.is_ok(),
        "pod 0 after the failover to pod {new_index}: {old:?}"
    );
}

/// Scenario: two of three sentinels stopped (SIGSTOP: they black-hole traffic): no majority,
/// so the master claims nothing (exit 1, empty stdout) and a replica says `secondary`, both
/// within the budget.
async fn without_a_majority_the_master_claims_nothing_and_replicas_stay_secondary(
    version: ValkeyVersion,
) {
    let mut lab = LabSpec::new(version).start().await.expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    lab.pause(PodId::Sentinel(0)).expect("SIGSTOP sentinel 0");
    lab.pause(PodId::Sentinel(1)).expect("SIGSTOP sentinel 1");
    let started = Instant::now();
    let master = role_probe(&lab, lab.data_addr(0)).await;
    let took = started.elapsed();
    let reason = refusal(&master);
    assert!(reason.contains("no master is agreed"), "{reason}");
    assert!(took < Duration::from_millis(3_500), "took {took:?}");
    let started = Instant::now();
    let replica = role_probe(&lab, lab.data_addr(1)).await;
    assert_eq!(one_line(&replica), "secondary");
    assert!(started.elapsed() < Duration::from_millis(3_500));
    lab.resume(PodId::Sentinel(0)).expect("SIGCONT");
    lab.resume(PodId::Sentinel(1)).expect("SIGCONT");
}

on_every_version!(
    one_primary_at_the_agreed_epoch_and_a_deposed_master_is_never_primary,
    without_a_majority_the_master_claims_nothing_and_replicas_stay_secondary,
);

fn write_secret(dir: &Path, name: &str, secret: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).expect("write the secret file");
    path.to_string_lossy().into_owned()
}

/// A formed 9.1.2 lab whose sentinels require `sentinel_secret` and whose sentinel ACL user on
/// the data pods has `data_secret`.
async fn protected_lab(sentinel_secret: &str, data_secret: &str) -> (Lab, AuthSpec) {
    let auth = AuthSpec {
        sentinel_password: Some(sentinel_secret.into()),
        sentinel_user_password: data_secret.into(),
        ..AuthSpec::simple()
    };
    let lab = LabSpec::new(ValkeyVersion::V9_1_2)
        .auth(auth.clone())
        .start()
        .await
        .expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    (lab, auth)
}

/// Scenario: with password-protected sentinels and an ACL user on the data pods, passwords
/// with spaces, quotes, `$`, `*` and `>`, from files and the environment; `status` prints the
/// table and exits 0; no password appears in any output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_from_files_and_the_environment_never_reach_any_output() {
    let sentinel_secret = r#"marker S$* >"q" 'one'"#;
    let data_secret = r#"marker D$* >"q" 'two'"#;
    let (lab, auth) = protected_lab(sentinel_secret, data_secret).await;
    let sentinel_file = write_secret(lab.dir(), "sentinel.pass", sentinel_secret);
    let user = ["--data-user", auth.sentinel_user.as_str()];
    let from_file = [user[0], user[1], "--sentinel-password-file", &sentinel_file];
    let env = [("VALKEY_COORDINATOR_DATA_PASSWORD", data_secret)];

    let probe = action(&lab, "role-probe", lab.data_addr(1), &from_file, &env).await;
    let line = one_line(&probe);
    assert!(line.starts_with("secondary "), "{line}");
    let status = action(&lab, "status", lab.data_addr(0), &from_file, &env).await;
    assert!(status.status.success(), "{}", stderr(&status));
    let table = stdout(&status);
    assert!(table.starts_with("verdict   agreed: master "), "{table}");
    assert_eq!(table.matches("master, offset").count(), 1, "{table}");
    assert_eq!(table.matches("replica of").count(), 2, "{table}");
    let json = action(
        &lab,
        "status",
        lab.data_addr(0),
        &[&from_file[..], &["--json"]].concat(),
        &env,
    )
    .await;
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(parsed["verdict"]["verdict"], "agreed");

    let wrong = action(
        &lab,
        "role-probe",
        lab.data_addr(0),
        &["--timeout-ms", "2000"],
        &[],
    )
    .await;
    let reason = refusal(&wrong);
    for output in [&probe, &status, &json, &wrong] {
        for secret in [sentinel_secret, data_secret] {
            assert!(!stdout(output).contains(secret) && !stderr(output).contains(secret));
        }
    }
    assert!(reason.contains("no master is agreed"), "{reason}");
}

/// Scenario: a coordinator that agrees is asked first, so the probe proves the master even
/// when none of the sentinels it lists can be reached; a coordinator without a verdict sends
/// it to the sentinels, which then decide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_is_asked_first_and_the_sentinels_when_it_has_no_verdict() {
    use valkey_coordinator::addr::Addr;
    use valkey_coordinator::service::{self, ServiceConfig};

    let lab = LabSpec::new(ValkeyVersion::V9_1_2)
        .start()
        .await
        .expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    let sentinels: Vec<Addr> = lab.sentinel_addrs().into_iter().map(Addr::from).collect();
    let config = ServiceConfig::new(
        "127.0.0.1:0".parse().expect("literal"),
        sentinels,
        vec![lab.master_name().to_owned()],
    );
    let coordinator = service::start(config).await.expect("coordinator starts");
    let address = coordinator.listen_addr.to_string();
    let mut states = coordinator
        .registry
        .watch(lab.master_name())
        .expect("followed");
    tokio::time::timeout(
        WAIT,
        states.wait_for(|state| {
            state
                .verdict
                .agreement()
                .is_some_and(|a| a.run_id.is_some())
        }),
    )
    .await
    .expect("agreed in time")
    .expect("published");

    let mut command = Command::new(env!("CARGO_BIN_EXE_valkey-coordinator"));
    command
        .args(["role-probe", "--master-name", lab.master_name()])
        .args(["--pod", &lab.data_addr(0).to_string()])
        .args(["--coordinator", &address, "--timeout-ms", "3000"])
        .args([
            "--sentinel",
            "127.0.0.1:1",
            "--sentinel",
            "127.0.0.1:2",
            "--sentinel",
            "127.0.0.1:3",
        ]);
    let through_coordinator = command.output().await.expect("runs");
    let epoch0 = epoch(&lab).await;
    assert_eq!(one_line(&through_coordinator), format!("primary {epoch0}"));

    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_addr = silent.local_addr().expect("bound").to_string();
    let fallback = action(
        &lab,
        "role-probe",
        lab.data_addr(1),
        &["--coordinator", &silent_addr, "--timeout-ms", "4000"],
        &[],
    )
    .await;
    assert_eq!(one_line(&fallback), format!("secondary {epoch0}"));
    coordinator.stop().await.expect("stops");
}

/// Scenario: every action run through the binary on a lab whose passwords carry spaces, quotes,
/// `$`, `*` and `>`: `startup`, `member-leave` of a replica and a `switchover` succeed with the
/// passwords from files, and no password is in their output or, sampled while they run, in any
/// process's command line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_keeps_marker_passwords_out_of_output_and_argv() {
    let sentinel_secret = r#"marker S2$* >"q" 'three'"#;
    let data_secret = r#"marker D2$* >"q" 'four'"#;
    let (lab, auth) = protected_lab(sentinel_secret, data_secret).await;
    let sentinel_file = write_secret(lab.dir(), "sentinel.pass", sentinel_secret);
    let data_file = write_secret(lab.dir(), "data.pass", data_secret);
    let startup_file = lab.dir().join("startup-probe.conf");
    let startup_file = startup_file.to_string_lossy().into_owned();
    let secrets = [
        "--sentinel-password-file",
        sentinel_file.as_str(),
        "--data-user",
        auth.sentinel_user.as_str(),
        "--data-password-file",
        data_file.as_str(),
        "--timeout-ms",
        "20000",
    ];
    let leaked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&leaked);
    let sampling = tokio::spawn(async move {
        let mut samples = 0u32;
        loop {
            for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                    if cmdline.contains("marker S2") || cmdline.contains("marker D2") {
                        seen.lock().expect("not poisoned").push(cmdline);
                    }
                }
            }
            samples += 1;
            tokio::time::sleep(Duration::from_millis(25)).await;
            if samples > 2_000 {
                break;
            }
        }
    });
    let startup = action(
        &lab,
        "startup",
        lab.data_addr(1),
        &[&secrets[..], &["--write-config", &startup_file]].concat(),
        &[],
    )
    .await;
    let decided = one_line(&startup);
    assert_eq!(
        decided,
        format!(
            "replica {} {}",
            lab.data_addr(0).ip(),
            lab.data_addr(0).port()
        )
    );
    let leave = action(&lab, "member-leave", lab.data_addr(2), &secrets, &[]).await;
    one_line(&leave);
    let switchover = action(&lab, "switchover", lab.data_addr(0), &secrets, &[]).await;
    let moved = one_line(&switchover);
    assert!(moved.contains("is master at epoch"), "{moved}");
    for output in [&startup, &leave, &switchover] {
        for secret in [sentinel_secret, data_secret] {
            assert!(!stdout(output).contains(secret) && !stderr(output).contains(secret));
        }
    }
    sampling.abort();
    let leaked = leaked.lock().expect("not poisoned").clone();
    assert!(
        leaked.is_empty(),
        "a password on a command line: {leaked:?}"
    );
}
