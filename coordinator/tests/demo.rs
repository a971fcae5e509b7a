//! `valkey-coordinator demo`, run as a user runs it: the binary starts a real 3 data + 3
//! sentinel lab with a coordinator on top, `--failover` makes the switch visible on the tap, the
//! coordinator then answers the new master, and Ctrl-C (SIGINT) leaves no process behind.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{ChildStdout, Command};

/// Budget for the group to form, agree and fail over once (about 10 s on a quiet machine).
const BUDGET: Duration = Duration::from_secs(90);

struct Output {
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<String>,
}

impl Output {
    /// The first line from now on that contains `needle`.
    async fn line_with(&mut self, needle: &str) -> String {
        let found = tokio::time::timeout(BUDGET, async {
            while let Some(line) = self.lines.next_line().await.expect("read stdout") {
                self.seen.push(line.clone());
                if line.contains(needle) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            Ok(None) => panic!(
                "the demo ended before {needle:?}:\n{}",
                self.seen.join("\n")
            ),
            Err(_) => panic!("no {needle:?} in time:\n{}", self.seen.join("\n")),
        }
    }
}

/// `GET-MASTER-ADDR-BY-NAME` over a raw connection, answered as `ip:port`.
async fn master_by_name(coordinator: &str) -> String {
    let mut stream = TcpStream::connect(coordinator).await.expect("connect");
    stream
        .write_all(b"*3\r\n$8\r\nSENTINEL\r\n$23\r\nGET-MASTER-ADDR-BY-NAME\r\n$8\r\nmymaster\r\n")
        .await
        .expect("send");
    let mut reply = Vec::new();
    let mut buffer = [0u8; 256];
    while reply.iter().filter(|&&b| b == b'\n').count() < 5 {
        let read = stream.read(&mut buffer).await.expect("read");
        assert!(read > 0, "closed after {reply:?}");
        reply.extend_from_slice(&buffer[..read]);
    }
    let text = String::from_utf8(reply).expect("utf-8");
    let fields: Vec<&str> = text.split("\r\n").collect();
    format!("{}:{}", fields[2], fields[4])
}

/// Processes whose working directory lies in `dir`: Valkey servers chdir into their data
/// directory and rewrite their command line, so the working directory is what gives them away.
fn processes_in(dir: &Path) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(cwd) = std::fs::read_link(entry.path().join("cwd"))
            && cwd.starts_with(dir)
        {
            found.push(pid);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_a_failover_on_the_tap_and_ctrl_c_leaves_no_process_behind() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_valkey-coordinator"))
        .args([
            "demo",
            "--failover",
            "--listen",
            "127.0.0.1:0",
            "--for",
            "120",
        ])
        .env("VALKEY_COORDINATOR_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the demo starts");
    let mut output = Output {
        lines: BufReader::new(child.stdout.take().expect("piped")).lines(),
        seen: Vec::new(),
    };

    let header = output.line_with(" lab in ").await;
    let lab_dir = PathBuf::from(
        header
            .split(" lab in ")
            .nth(1)
            .and_then(|rest| rest.split(" (").next())
            .expect("the lab's directory"),
    );
    let listening = output.line_with("coordinator listening on ").await;
    let coordinator = listening
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .expect("the coordinator's address")
        .to_owned();
    let first = output.line_with("verdict  master ").await;
    assert!(
        first.contains("3 vote(s)") || first.contains("2 vote(s)"),
        "{first}"
    );

    let switch = output.line_with("tap      +switch-master mymaster ").await;
    let fields: Vec<&str> = switch.split_whitespace().collect();
    let (old, new) = (
        format!("{}:{}", fields[3], fields[4]),
        format!("{}:{}", fields[5], fields[6]),
    );
    assert_ne!(old, new, "{switch}");
    assert_eq!(master_by_name(&coordinator).await, new);
    assert!(
        !processes_in(&lab_dir).is_empty(),
        "the lab's servers run in {}",
        lab_dir.display()
    );

    let pid = child.id().expect("running").to_string();
    let status = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .expect("kill -INT");
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the demo stops after Ctrl-C")
        .expect("wait");
    output.line_with("stopping every process of the lab").await;
    assert!(exit.success(), "{exit:?}:\n{}", output.seen.join("\n"));
    assert_eq!(processes_in(&lab_dir), Vec::<u32>::new(), "left behind");
}
