//! `valkey-coordinator demo`, run as a user runs it: the binary starts a real 3 data + 3
//! sentinel lab with a coordinator on top, `--failover` moves the master with the `switchover`
//! action and the calm view shows one new verdict line, the coordinator then answers the new
//! master, and Ctrl-C (SIGINT) leaves no process and no folder behind, also when stdout was a
//! pipe that closed first. A taken `--listen` and an unknown version are said at once.

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

/// One HTTP GET, the whole response as text.
async fn http_get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: demo\r\n\r\n").as_bytes())
        .await
        .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
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

/// Starts the demo with `args`, its stdout piped.
fn start(args: &[&str]) -> tokio::process::Child {
    Command::new(env!("CARGO_BIN_EXE_valkey-coordinator"))
        .arg("demo")
        .args(args)
        .env_remove("VALKEY_COORDINATOR_LOG")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the demo starts")
}

fn lab_dir_of(header: &str) -> PathBuf {
    PathBuf::from(
        header
            .split("files and logs")
            .nth(1)
            .expect("the lab's directory")
            .trim(),
    )
}

async fn interrupt(child: &mut tokio::process::Child) -> std::process::ExitStatus {
    let pid = child.id().expect("running").to_string();
    let status = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .expect("kill -INT");
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the demo stops after Ctrl-C")
        .expect("wait")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_a_switchover_calmly_and_ctrl_c_leaves_nothing_behind() {
    let mut child = start(&["--failover", "--listen", "127.0.0.1:0", "--for", "120"]);
    let mut output = Output {
        lines: BufReader::new(child.stdout.take().expect("piped")).lines(),
        seen: Vec::new(),
    };

    let lab_dir = lab_dir_of(&output.line_with("files and logs").await);
    let listening = output.line_with("coordinator listening on ").await;
    let coordinator = listening
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .expect("the coordinator's address")
        .to_owned();
    let cli = output.line_with("SENTINEL GET-MASTER-ADDR-BY-NAME").await;
    let cli_path = cli.split_whitespace().next().expect("a command");
    assert!(
        Path::new(cli_path).is_file(),
        "a ready-to-paste valkey-cli: {cli}"
    );
    let metrics = output.line_with("metrics and health: curl http://").await;
    let metrics = metrics
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("the metrics address")
        .to_owned();
    let first = output.line_with("  verdict master ").await;
    let ready = http_get(&metrics, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 200 "), "{ready}");
    assert!(first.contains("named by "), "{first}");
    let old = first
        .split_whitespace()
        .nth(3)
        .expect("an address")
        .to_owned();

    let switched = output.line_with("switchover: ").await;
    assert!(
        !switched.contains("failed"),
        "{switched}\n{}",
        output.seen.join("\n")
    );
    let next = output.line_with("  verdict master ").await;
    let new = next
        .split_whitespace()
        .nth(3)
        .expect("an address")
        .to_owned();
    assert_ne!(old, new, "{next}");
    assert_eq!(master_by_name(&coordinator).await, new);
    assert!(
        !processes_in(&lab_dir).is_empty(),
        "the lab's servers run in {}",
        lab_dir.display()
    );
    assert!(
        output.seen.iter().all(|line| !line.contains("  event   ")),
        "events only with --verbose:\n{}",
        output.seen.join("\n")
    );

    let exit = interrupt(&mut child).await;
    output.line_with("stopping every process of the lab").await;
    assert!(exit.success(), "{exit:?}:\n{}", output.seen.join("\n"));
    assert_eq!(processes_in(&lab_dir), Vec::<u32>::new(), "left behind");
    assert!(!lab_dir.exists(), "{} left behind", lab_dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_after_the_pipe_closed_still_stops_the_lab_and_removes_its_folder() {
    let mut child = start(&["--listen", "127.0.0.1:0", "--for", "120"]);
    let mut output = Output {
        lines: BufReader::new(child.stdout.take().expect("piped")).lines(),
        seen: Vec::new(),
    };
    let lab_dir = lab_dir_of(&output.line_with("files and logs").await);
    output.line_with("coordinator listening on ").await;
    // What `demo | tee` sees on Ctrl-C: tee is gone before the demo says goodbye.
    drop(output);
    let exit = interrupt(&mut child).await;
    assert!(exit.success(), "{exit:?}");
    assert_eq!(processes_in(&lab_dir), Vec::<u32>::new(), "left behind");
    assert!(!lab_dir.exists(), "{} left behind", lab_dir.display());
}

#[tokio::test]
async fn a_taken_port_and_an_unknown_version_are_said_before_any_lab_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("bound").to_string();
    let started = std::time::Instant::now();
    let busy = start(&["--listen", &addr])
        .wait_with_output()
        .await
        .expect("runs");
    assert_eq!(busy.status.code(), Some(1));
    let said = String::from_utf8_lossy(&busy.stderr);
    assert!(
        said.contains("already in use") && said.contains("--listen"),
        "{said}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no lab was built first"
    );

    let unknown = start(&["--valkey-version", "7.2.4"])
        .wait_with_output()
        .await
        .expect("runs");
    assert_eq!(unknown.status.code(), Some(2), "a usage error");
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(said.contains("8.0.1") && said.contains("9.1.2"), "{said}");
}
