//! `valkey-coordinator serve` as a container runs it: configured by flags and secret files,
//! against password-protected sentinels and ACL-protected data pods. It heals a wiped sentinel
//! (registering the data pods' credentials on it), and no password ever reaches its output or
//! its command line, even with debug logging.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use valkey_lab::{AuthSpec, LabSpec, SentinelStart, ValkeyVersion};

const WAIT: Duration = Duration::from_secs(20);

fn write_secret(dir: &Path, name: &str, secret: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).expect("write the secret file");
    path.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_heals_with_secrets_from_files_and_never_prints_them() {
    let auth = AuthSpec {
        sentinel_password: Some("marker-sentinel-secret".into()),
        sentinel_user_password: "marker-data-secret".into(),
        ..AuthSpec::simple()
    };
    let client_password = "marker-client-secret";
    let secrets = [
        "marker-sentinel-secret",
        "marker-data-secret",
        client_password,
    ];
    let mut lab = LabSpec::new(ValkeyVersion::V9_1_2)
        .auth(auth.clone())
        .start()
        .await
        .expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    let dir = lab.dir().to_path_buf();
    let sentinel_secret = write_secret(&dir, "sentinel.pass", "marker-sentinel-secret");
    let data_secret = write_secret(&dir, "data.pass", &auth.sentinel_user_password);
    let client_secret = write_secret(&dir, "client.pass", client_password);

    let mut command = Command::new(env!("CARGO_BIN_EXE_valkey-coordinator"));
    command
        .args(["--log-format", "json", "serve", "--master-name", "mymaster"])
        .args(["--listen", "127.0.0.1:0"])
        .args(["--requirepass-file", &client_secret])
        .args(["--sentinel-password-file", &sentinel_secret])
        .args(["--data-user", &auth.sentinel_user])
        .args(["--data-password-file", &data_secret])
        .args(["--quorum", "2", "--down-after-ms", "2000"])
        .args(["--failover-timeout-ms", "5000", "--parallel-syncs", "1"]);
    for sentinel in lab.sentinel_addrs() {
        command.args(["--sentinel", &sentinel.to_string()]);
    }
    for pod in lab.data_addrs() {
        command.args(["--data-pod", &pod.to_string()]);
    }
    let mut child = command
        .env("VALKEY_COORDINATOR_LOG", "debug")
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("serve starts");
    let pid = child.id().expect("running");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("its command line");
    let mut stderr = BufReader::new(child.stderr.take().expect("piped")).lines();
    let logs = tokio::spawn(async move {
        let mut lines = Vec::new();
        while let Ok(Some(line)) = stderr.next_line().await {
            lines.push(line);
        }
        lines
    });

    // Give the coordinator its agreement, then wipe a sentinel: only the healer brings it back.
    lab.wait_sentinels_agree(WAIT, |_, _| true)
        .await
        .expect("sentinels agree");
    tokio::time::sleep(Duration::from_secs(1)).await;
    lab.restart_sentinel(2, SentinelStart::Wiped)
        .await
        .expect("sentinel-2 restarts wiped");
    let master = lab.data_addr(0);
    valkey_lab::wait::poll_until(
        "sentinel-2 to monitor the master again",
        WAIT,
        valkey_lab::wait::POLL_EVERY,
        || async {
            match lab.sentinel_master_addr(2).await {
                Ok(Some(addr)) if addr == master => valkey_lab::wait::Probe::Ready(()),
                other => valkey_lab::wait::Probe::Pending(format!("{other:?}")),
            }
        },
    )
    .await
    .expect("healed");
    // The healed sentinel reaches the data pods with the registered credentials.
    lab.wait_sentinels_see(2, 2, WAIT)
        .await
        .expect("the healed sentinel authenticates to every data pod");

    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .expect("kill -TERM");
    assert!(status.success());
    let exit = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("stops on SIGTERM")
        .expect("wait");
    assert!(exit.success(), "{exit:?}");
    let logs = logs.await.expect("log reader").join("\n");

    assert!(
        logs.contains("healed sentinel"),
        "the heal is logged:\n{logs}"
    );
    let cmdline = String::from_utf8_lossy(&cmdline);
    for secret in secrets {
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
        assert!(!cmdline.contains(secret), "{secret} is on the command line");
    }
}
