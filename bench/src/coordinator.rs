//! The coordinator as clients meet it: the release binary in a process of its own (so its memory
//! and CPU time are its own, as a sentinel's are), owned by the lab so it dies with the bench, and
//! spoken to only over RESP.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use sentinel_protocol::sentinel::{Flag, MasterRecord, Value, master_addr};
use tokio::time::Instant;
use valkey_lab::{Client, Lab};

/// Enough for the large fan-out's fifty thousand subscribers plus the bench's own probes.
const MAX_CLIENTS: usize = 60_000;

/// A coordinator process started under a lab.
#[derive(Debug, Clone)]
pub struct Process {
    pub pid: u32,
    pub addr: SocketAddr,
    /// How many sentinels it follows (its votes when all agree).
    pub sentinels: usize,
}

/// Starts `binary serve` on `listen`, following every sentinel of `lab` for `names`, and returns
/// once it answers `GET-MASTER-ADDR-BY-NAME` for every name.
pub async fn spawn(
    lab: &mut Lab,
    binary: &Path,
    name: &str,
    listen: SocketAddr,
    names: &[String],
) -> anyhow::Result<Process> {
    spawn_with(lab, binary, name, listen, names, &[]).await
}

/// [`spawn`] with more flags; `listen` must answer plaintext (with `--tls`, it is the
/// `--plaintext-listen` port, and the flags name the TLS one).
pub async fn spawn_with(
    lab: &mut Lab,
    binary: &Path,
    name: &str,
    listen: SocketAddr,
    names: &[String],
    flags: &[String],
) -> anyhow::Result<Process> {
    let mut command = Command::new(binary);
    command.arg("serve").args(flags);
    if !flags.iter().any(|flag| flag == "--listen") {
        command.args(["--listen", &listen.to_string()]);
    }
    command
        .args(["--max-clients", &MAX_CLIENTS.to_string()])
        .env("VALKEY_COORDINATOR_LOG", "warn");
    for sentinel in lab.sentinel_addrs() {
        command.args(["--sentinel", &sentinel.to_string()]);
    }
    for master in names {
        command.args(["--master-name", master]);
    }
    let pid = lab
        .spawn_aux(name, command)
        .await
        .with_context(|| format!("starting {}", binary.display()))?;
    let process = Process {
        pid,
        addr: listen,
        sentinels: lab.sentinel_count(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut client = loop {
        match Client::connect(listen, None).await {
            Ok(client) => break client,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => return Err(error).context("the coordinator never accepted a client"),
        }
    };
    for master in names {
        loop {
            if master_of(&mut client, master).await?.is_some() {
                break;
            }
            if Instant::now() >= deadline {
                bail!("the coordinator agreed on no master for {master} within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(process)
}

/// What an endpoint answers to `SENTINEL GET-MASTER-ADDR-BY-NAME <name>`.
pub async fn master_of(client: &mut Client, name: &str) -> anyhow::Result<Option<SocketAddr>> {
    let frame = client
        .call(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", name])
        .await?;
    match master_addr(&Value::from(&frame)) {
        Ok(None) => Ok(None),
        Ok(Some((ip, port))) => Ok(Some(format!("{ip}:{port}").parse()?)),
        Err(error) => bail!("GET-MASTER-ADDR-BY-NAME: {error}"),
    }
}

/// Waits until the coordinator names `master` with every sentinel's vote and no failover in
/// progress: the group has settled and the next failover can start from a clean state.
pub async fn wait_settled(
    process: &Process,
    name: &str,
    master: SocketAddr,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut client = Client::connect(process.addr, None).await?;
    let mut last = String::from("nothing yet");
    while Instant::now() < deadline {
        match client
            .call_typed::<MasterRecord, _>(&["SENTINEL", "MASTER", name])
            .await
        {
            Ok(record) => {
                let at: Option<SocketAddr> =
                    format!("{}:{}", record.instance.ip, record.instance.port)
                        .parse()
                        .ok();
                let votes = record.num_other_sentinels as usize + 1;
                let busy = record.instance.flags.contains(Flag::FailoverInProgress);
                if at == Some(master) && votes == process.sentinels && !busy {
                    return Ok(());
                }
                last = format!("{at:?} with {votes} votes, failover in progress: {busy}");
            }
            Err(error) => {
                last = error.to_string();
                client = Client::connect(process.addr, None).await?;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("the coordinator did not settle on {master} within {timeout:?}; last: {last}")
}
