//! What an operator reads in `kubectl logs`: the binary's log lines written to a pipe. Text
//! lines carry no colour codes there, JSON lines carry every field as a proper JSON value, the
//! level comes from `VALKEY_COORDINATOR_LOG` or `RUST_LOG`, and at debug level each client
//! command is logged without the arguments of `AUTH` and `HELLO`.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

const SECRET: &str = "marker-log-secret";

/// Runs `serve` on a free port with `env`, sends `AUTH SECRET`, `HELLO 3 AUTH default SECRET`
/// and `PING` as a client, stops it and returns what it wrote to stderr.
async fn serve_logs(format: &str, env: &[(&str, &str)]) -> String {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let listen = probe.local_addr().expect("bound");
    drop(probe);
    let mut child = Command::new(env!("CARGO_BIN_EXE_valkey-coordinator"))
        .args(["--log-format", format, "serve", "--master-name", "mymaster"])
        .args(["--sentinel", "127.0.0.1:1", "--no-heal"])
        .args(["--listen", &listen.to_string()])
        .env_remove("VALKEY_COORDINATOR_LOG")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("serve starts");
    let mut client = loop {
        match TcpStream::connect(listen).await {
            Ok(client) => break client,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let auth = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{SECRET}\r\n", SECRET.len());
    let hello = format!(
        "*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n${}\r\n{SECRET}\r\n",
        SECRET.len()
    );
    client
        .write_all(format!("{auth}{hello}*1\r\n$4\r\nPING\r\n").as_bytes())
        .await
        .expect("send");
    let mut reply = vec![0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(2), client.read(&mut reply)).await;
    drop(client);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = child.id().expect("running").to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .await
        .expect("read stderr");
    let _ = child.wait().await;
    stderr
}

#[tokio::test]
async fn text_logs_to_a_pipe_have_no_colour_and_rust_log_sets_the_level() {
    let logs = serve_logs("text", &[("RUST_LOG", "debug")]).await;
    assert!(logs.contains("coordinator starting"), "{logs}");
    assert!(!logs.contains('\u{1b}'), "colour codes in a pipe:\n{logs}");
    assert!(
        logs.contains("client command"),
        "debug level from RUST_LOG:\n{logs}"
    );
    assert!(logs.contains("command=PING"), "{logs}");
    assert!(
        !logs.contains(SECRET),
        "a password reached the logs:\n{logs}"
    );
}

#[tokio::test]
async fn json_logs_carry_proper_values_and_never_a_password() {
    let logs = serve_logs("json", &[("VALKEY_COORDINATOR_LOG", "debug")]).await;
    assert!(
        !logs.contains(SECRET),
        "a password reached the logs:\n{logs}"
    );
    let mut starting = None;
    let mut commands = Vec::new();
    for line in logs.lines() {
        let value: serde_json::Value = serde_json::from_str(line).expect("every line is JSON");
        for (key, field) in value.as_object().expect("an object") {
            if let Some(text) = field.as_str() {
                assert!(
                    !text.starts_with("Some(") && !text.starts_with('[') && text != "None",
                    "{key} carries a debug rendering: {line}"
                );
            }
        }
        match value["message"].as_str() {
            Some("coordinator starting") => starting = Some(value.clone()),
            Some("client command") => {
                commands.push(value["command"].as_str().unwrap_or_default().to_owned())
            }
            _ => {}
        }
    }
    let starting = starting.expect("the start-up line");
    assert_eq!(starting["names"], "mymaster");
    assert_eq!(starting["sentinels"], "127.0.0.1:1");
    assert_eq!(starting["metrics"], "off");
    assert_eq!(commands, ["AUTH", "HELLO", "PING"]);
}

/// A log reader that goes away (a closed `kubectl logs` pipe, a crashed sidecar) must not take
/// the service with it: with its stderr closed, `serve` keeps running, keeps answering, and
/// still stops gracefully on SIGTERM.
#[tokio::test]
async fn a_closed_log_pipe_neither_kills_the_service_nor_deafens_it_to_sigterm() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let listen = probe.local_addr().expect("bound");
    drop(probe);
    let mut child = Command::new(env!("CARGO_BIN_EXE_valkey-coordinator"))
        .args(["serve", "--master-name", "mymaster", "--no-heal"])
        .args(["--sentinel", "127.0.0.1:1", "--listen", &listen.to_string()])
        .env("VALKEY_COORDINATOR_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("serve starts");
    // Close the read end: every later log line meets EPIPE.
    drop(child.stderr.take());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut client = loop {
        match TcpStream::connect(listen).await {
            Ok(client) => break client,
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "serve never listened ({error}): {:?}",
                    child.try_wait()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    // Debug level logs each command and each failed sentinel connection.
    tokio::time::sleep(Duration::from_millis(500)).await;
    client
        .write_all(b"*1\r\n$4\r\nPING\r\n")
        .await
        .expect("send");
    let mut reply = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), client.read(&mut reply))
        .await
        .expect("an answer while its stderr is gone")
        .expect("read");
    assert_eq!(&reply[..n], b"+PONG\r\n");
    drop(client);
    let pid = child.id().expect("running").to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("SIGTERM stops it within its shutdown grace")
        .expect("wait");
    assert!(status.success(), "a graceful stop: {status:?}");
}
