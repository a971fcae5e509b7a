//! The lifecycle actions as kbagent runs them: a fresh process per call, timed from spawn to
//! exit, with the CPU the children used. `startup` is timed for a replica pod of a formed group,
//! asking a coordinator first and asking the sentinels directly; `role-probe` directly against
//! the sentinels and through a coordinator, side by side with what the bash probe it replaces
//! does (one `valkey-cli` process per sentinel's `SENTINEL MASTERS`, one for the pod's `INFO
//! replication`, one for its `INFO server`, in sequence), also with one sentinel black-holed.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::json;
use tokio::time::Instant;
use valkey_lab::{Lab, PodId, ValkeyVersion};

use crate::procfs;
use crate::report::Row;
use crate::stats::Sample;

/// Calls per measured startup figure.
const CALLS: usize = 20;
/// Role probes per figure: KubeBlocks probes every pod every few seconds, so this is the hot path.
const PROBES: usize = 200;
/// Role probes per figure while a sentinel is black-holed (each waits out its bound).
const HUNG_PROBES: usize = 20;

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

/// Runs `call` `n` times; the wall times and the CPU the children used, per call.
fn batch(
    n: usize,
    mut call: impl FnMut() -> anyhow::Result<Duration>,
) -> anyhow::Result<(Sample, Duration)> {
    let cpu_before = procfs::children_cpu_time()?;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        times.push(call()?);
    }
    let cpu = procfs::children_cpu_time()?.saturating_sub(cpu_before);
    Ok((
        sample(&times),
        cpu / u32::try_from(n).unwrap_or(u32::MAX).max(1),
    ))
}

/// What the bash probe does: one `valkey-cli` per sentinel's `SENTINEL MASTERS` (each under
/// `timeout 1`, upstream's per-sentinel bound), then the pod's `INFO replication` and
/// `INFO server`, in sequence. A timed-out sentinel is what the bash probe tolerates too.
fn bash_probe(cli: &Path, lab: &Lab, pod: SocketAddr) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for sentinel in lab.sentinel_addrs() {
        let _ = Command::new("timeout")
            .arg("1")
            .arg(cli)
            .args([
                "-h",
                &sentinel.ip().to_string(),
                "-p",
                &sentinel.port().to_string(),
            ])
            .args(["SENTINEL", "MASTERS"])
            .stdout(std::process::Stdio::null())
            .status()
            .context("running valkey-cli")?;
    }
    cli_call(cli, pod, &["INFO", "replication"])?;
    cli_call(cli, pod, &["INFO", "server"])?;
    Ok(started.elapsed())
}

fn with_cpu(sample: &Sample, cpu: Duration) -> String {
    format!(
        "{}, CPU {:.1} ms per probe",
        shown(sample),
        cpu.as_secs_f64() * 1e3
    )
}

/// The rows of the lifecycle section. `coordinator` is a running coordinator of the same lab.
pub async fn rows(
    binary: &Path,
    lab: &mut Lab,
    coordinator: SocketAddr,
) -> anyhow::Result<Vec<Row>> {
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
    let (via_coordinator, direct_startup) = (sample(&via_coordinator), sample(&direct));

    let cli = ValkeyVersion::V8_0_1
        .binary("valkey-cli")
        .context("valkey-cli comes with 8.0.1")?;
    let via = coordinator.to_string();
    let probe = |extra: &[&str]| timed(action(binary, lab, "role-probe", replica).args(extra));
    let (direct, direct_cpu) = batch(PROBES, || probe(&[]))?;
    let (through, through_cpu) = batch(PROBES, || probe(&["--coordinator", &via]))?;
    let (bash, bash_cpu) = batch(PROBES, || bash_probe(&cli, lab, replica))?;
    let mut rows = vec![
        Row::new(format!(
            "`startup` decision of a replica, wall time per call ({CALLS} calls)"
        ))
        .coordinator(format!(
            "through a coordinator: {}; sentinels directly: {}",
            shown(&via_coordinator),
            shown(&direct_startup)
        ))
        .data(json!({
            "via_coordinator_ms": via_coordinator.to_json(),
            "direct_ms": direct_startup.to_json(),
        })),
        Row::new(format!(
            "`role-probe` of a replica, per call ({PROBES} calls)"
        ))
        .coordinator(format!(
            "sentinels directly: {}; through a coordinator: {}",
            with_cpu(&direct, direct_cpu),
            with_cpu(&through, through_cpu)
        ))
        .sentinel(format!("bash probe: {}", with_cpu(&bash, bash_cpu)))
        .comparison(format!(
            "wall ratio of medians {:.2}, CPU ratio {:.2}",
            direct.median() / bash.median(),
            direct_cpu.as_secs_f64() / bash_cpu.as_secs_f64()
        ))
        .data(json!({
            "direct_ms": direct.to_json(), "through_coordinator_ms": through.to_json(),
            "bash_ms": bash.to_json(),
            "cpu_us_per_probe": {
                "direct": direct_cpu.as_micros() as u64,
                "through_coordinator": through_cpu.as_micros() as u64,
                "bash": bash_cpu.as_micros() as u64,
            },
        })),
    ];

    // One sentinel black-holed: SIGSTOPped, the kernel still accepts its connections.
    lab.pause(PodId::Sentinel(2))?;
    let hung = async {
        let probe = |extra: &[&str]| timed(action(binary, lab, "role-probe", replica).args(extra));
        let (direct, _) = batch(HUNG_PROBES, || probe(&[]))?;
        let (through, _) = batch(PROBES, || probe(&["--coordinator", &via]))?;
        let (bash, _) = batch(HUNG_PROBES, || bash_probe(&cli, lab, replica))?;
        anyhow::Ok((direct, through, bash))
    }
    .await;
    lab.resume(PodId::Sentinel(2))?;
    let (direct, through, bash) = hung?;
    rows.push(
        Row::new("`role-probe` with one of three sentinels black-holed, wall time per call")
            .coordinator(format!(
                "sentinels directly ({HUNG_PROBES} calls): {}; through a coordinator ({PROBES} calls): {}",
                shown(&direct),
                shown(&through)
            ))
            .sentinel(format!("bash probe ({HUNG_PROBES} calls): {}", shown(&bash)))
            .comparison(format!(
                "through a coordinator / bash: ratio of medians {:.3}",
                through.median() / bash.median()
            ))
            .data(json!({
                "direct_ms": direct.to_json(), "through_coordinator_ms": through.to_json(),
                "bash_ms": bash.to_json(),
            })),
    );
    Ok(rows)
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
