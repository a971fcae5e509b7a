//! The lifecycle actions as kbagent runs them: a fresh process per call, timed from spawn to
//! exit. `startup` is timed for a replica pod of a formed group, asking a coordinator first and
//! asking the sentinels directly; `role-probe` directly against the sentinels, side by side
//! with what the bash probe it replaces does (one `valkey-cli` process per sentinel's
//! `SENTINEL MASTERS`, one for the pod's `INFO replication`, one for its `INFO server`, in
//! sequence).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::json;
use tokio::time::Instant;
use valkey_lab::{Lab, ValkeyVersion};

use crate::report::Row;
use crate::stats::Sample;

/// Calls per measured figure.
const CALLS: usize = 20;

/// Runs `command` to completion and returns its wall time, failing on a non-zero exit.
fn timed(command: &mut Command) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let output = command.output().context("running the action")?;
    let took = started.elapsed();
    if !output.status.success() {
        bail!(
            "{:?} failed: {}",
            command,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(took)
}

fn action(binary: &Path, lab: &Lab, name: &str, pod: SocketAddr) -> Command {
    let mut command = Command::new(binary);
    command
        .arg(name)
        .args(["--master-name", lab.master_name()])
        .args(["--pod", &pod.to_string()])
        .args(["--timeout-ms", "5000"]);
    for sentinel in lab.sentinel_addrs() {
        command.args(["--sentinel", &sentinel.to_string()]);
    }
    for data in lab.data_addrs() {
        command.args(["--data-pod", &data.to_string()]);
    }
    command
}

fn sample(times: &[Duration]) -> Sample {
    Sample::new(times.iter().map(|t| t.as_secs_f64() * 1e3).collect())
}

fn shown(sample: &Sample) -> String {
    format!(
        "p50 {:.1} ms, p99 {:.1} ms",
        sample.median(),
        sample.percentile(99.0)
    )
}

/// The rows of the lifecycle section. `coordinator` is a running coordinator of the same lab.
pub async fn rows(binary: &Path, lab: &Lab, coordinator: SocketAddr) -> anyhow::Result<Vec<Row>> {
    let dir = lab.dir().join("bench-startup");
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("startup.conf");
    let config = config.to_string_lossy().into_owned();
    // Earlier phases fail the master over: time a pod that is a replica now.
    let master = lab.sentinel_master_addr(0).await?;
    let replica = lab
        .data_addrs()
        .into_iter()
        .find(|pod| Some(*pod) != master)
        .context("a replica")?;

    let mut via_coordinator = Vec::with_capacity(CALLS);
    let mut direct = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        via_coordinator.push(timed(
            action(binary, lab, "startup", replica)
                .args(["--write-config", &config])
                .args(["--coordinator", &coordinator.to_string()]),
        )?);
        direct.push(timed(
            action(binary, lab, "startup", replica).args(["--write-config", &config]),
        )?);
    }
    let (via_coordinator, direct) = (sample(&via_coordinator), sample(&direct));

    let cli = ValkeyVersion::V8_0_1
        .binary("valkey-cli")
        .context("valkey-cli comes with 8.0.1")?;
    let mut probe = Vec::with_capacity(CALLS);
    let mut bash = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        probe.push(timed(&mut action(binary, lab, "role-probe", replica))?);
        let started = Instant::now();
        for sentinel in lab.sentinel_addrs() {
            cli_call(&cli, sentinel, &["SENTINEL", "MASTERS"])?;
        }
        cli_call(&cli, replica, &["INFO", "replication"])?;
        cli_call(&cli, replica, &["INFO", "server"])?;
        bash.push(started.elapsed());
    }
    let (probe, bash) = (sample(&probe), sample(&bash));
    Ok(vec![
        Row::new(format!(
            "`startup` decision of a replica, wall time per call ({CALLS} calls)"
        ))
        .coordinator(format!(
            "through a coordinator: {}; sentinels directly: {}",
            shown(&via_coordinator),
            shown(&direct)
        ))
        .data(json!({
            "via_coordinator_ms": via_coordinator.to_json(),
            "direct_ms": direct.to_json(),
        })),
        Row::new(format!(
            "`role-probe` of a replica, wall time per call ({CALLS} calls)"
        ))
        .coordinator(shown(&probe))
        .sentinel(format!("bash probe's valkey-cli calls: {}", shown(&bash)))
        .comparison(format!(
            "ratio of medians {:.2}",
            probe.median() / bash.median()
        ))
        .data(json!({ "probe_ms": probe.to_json(), "bash_ms": bash.to_json() })),
    ])
}

fn cli_call(cli: &Path, addr: SocketAddr, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(cli)
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .context("running valkey-cli")?;
    if !status.success() {
        bail!("valkey-cli {args:?} against {addr} failed");
    }
    Ok(())
}
