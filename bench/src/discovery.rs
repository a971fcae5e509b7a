//! Discovery throughput and latency: `valkey-benchmark` against the sentinel and the coordinator,
//! alternating which goes first in each round so that neither always gets the warmer machine,
//! with each process's CPU time read from `/proc` around its own runs.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::procfs;
use crate::report::{Outcome, Row};
use crate::stats::median;

/// One command under load.
#[derive(Debug, Clone)]
pub struct Workload {
    pub label: String,
    pub command: Vec<String>,
    pub pipeline: u32,
    pub clients: u32,
    pub requests: u64,
    /// What `valkey-benchmark` needs to connect beyond the address (`--tls --cacert ...`).
    pub connection: Vec<String>,
}

/// One `valkey-benchmark` run.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// CPU time the server process used while the run lasted.
    pub cpu: Duration,
    pub requests: u64,
}

/// A server under test: where it listens and which process does the work.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub addr: SocketAddr,
    pub pid: u32,
}

pub async fn run_once(
    benchmark: &Path,
    target: Target,
    workload: &Workload,
) -> anyhow::Result<Run> {
    let before = procfs::cpu_time(target.pid)?;
    let output = Command::new(benchmark)
        .args(["-h", &target.addr.ip().to_string()])
        .args(["-p", &target.addr.port().to_string()])
        .args(["-c", &workload.clients.to_string()])
        .args(["-n", &workload.requests.to_string()])
        .args(["-P", &workload.pipeline.to_string()])
        .args(&workload.connection)
        .arg("--csv")
        .args(&workload.command)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {}", benchmark.display()))?;
    let after = procfs::cpu_time(target.pid)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "valkey-benchmark {} against {} failed ({}): {} {}",
            workload.label,
            target.addr,
            output.status,
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let (rps, p50_ms, p99_ms) = parse_csv(&stdout)
        .with_context(|| format!("reading valkey-benchmark's output: {stdout}"))?;
    Ok(Run {
        rps,
        p50_ms,
        p99_ms,
        cpu: after.saturating_sub(before),
        requests: workload.requests,
    })
}

/// `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",
/// "p99_latency_ms","max_latency_ms"` and one line of values.
fn parse_csv(text: &str) -> anyhow::Result<(f64, f64, f64)> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> = split_csv(lines.next().context("no header")?);
    let values: Vec<String> = split_csv(lines.next().context("no result line")?);
    let column = |name: &str| -> anyhow::Result<f64> {
        let at = header
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("no column {name}"))?;
        values
            .get(at)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no number in column {name}"))
    };
    Ok((
        column("rps")?,
        column("p50_latency_ms")?,
        column("p99_latency_ms")?,
    ))
}

/// Splits a line of valkey-benchmark's CSV. Only the first field (the command) can hold a comma
/// inside quotes; the rest are numbers.
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    fields.push(current);
    fields
}

/// Every round of one workload on both sides.
#[derive(Debug, Default, Clone)]
pub struct SideBySide {
    pub coordinator: Vec<Run>,
    pub sentinel: Vec<Run>,
}

impl SideBySide {
    /// Runs `rounds` rounds, alternating which side goes first.
    pub async fn measure(
        benchmark: &Path,
        workload: &Workload,
        coordinator: Target,
        sentinel: Target,
        rounds: usize,
    ) -> anyhow::Result<Self> {
        let mut result = Self::default();
        for round in 0..rounds {
            let coordinator_first = round % 2 == 1;
            for coordinator_turn in [coordinator_first, !coordinator_first] {
                if coordinator_turn {
                    result
                        .coordinator
                        .push(run_once(benchmark, coordinator, workload).await?);
                } else {
                    result
                        .sentinel
                        .push(run_once(benchmark, sentinel, workload).await?);
                }
            }
        }
        Ok(result)
    }

    /// The table rows: throughput, p50, p99 (medians over the rounds) and CPU time per million
    /// requests (total CPU over total requests).
    pub fn rows(&self, workload: &Workload, with_targets: bool) -> Vec<Row> {
        let summary = |runs: &[Run]| Summary {
            rps: median(runs.iter().map(|r| r.rps)),
            p50: median(runs.iter().map(|r| r.p50_ms)),
            p99: median(runs.iter().map(|r| r.p99_ms)),
            cpu_per_million: {
                let cpu: f64 = runs.iter().map(|r| r.cpu.as_secs_f64()).sum();
                let requests: u64 = runs.iter().map(|r| r.requests).sum();
                cpu / requests as f64 * 1e6
            },
        };
        let c = summary(&self.coordinator);
        let s = summary(&self.sentinel);
        let data = json!({
            "workload": {
                "command": workload.command,
                "clients": workload.clients,
                "pipeline": workload.pipeline,
                "requests_per_run": workload.requests,
            },
            "coordinator": runs_json(&self.coordinator),
            "sentinel": runs_json(&self.sentinel),
        });
        let target = |text: &str, met: bool| {
            if with_targets {
                (text.to_owned(), Outcome::of(met))
            } else {
                (String::new(), Outcome::Info)
            }
        };
        let label = &workload.label;
        let (t, o) = target("ratio >= 1.00", c.rps >= s.rps);
        let mut rows = vec![
            Row::new(format!(
                "{label}: requests/s (median of {})",
                self.sentinel.len()
            ))
            .coordinator(format!("{:.0}", c.rps))
            .sentinel(format!("{:.0}", s.rps))
            .comparison(format!("ratio {:.2}", c.rps / s.rps))
            .target(t, o)
            .data(data),
            Row::new(format!("{label}: p50 latency"))
                .coordinator(format!("{:.3} ms", c.p50))
                .sentinel(format!("{:.3} ms", s.p50))
                .comparison(format!("ratio {:.2}", c.p50 / s.p50)),
        ];
        let (t, o) = target("ratio <= 1.00", c.p99 <= s.p99);
        rows.push(
            Row::new(format!("{label}: p99 latency"))
                .coordinator(format!("{:.3} ms", c.p99))
                .sentinel(format!("{:.3} ms", s.p99))
                .comparison(format!("ratio {:.2}", c.p99 / s.p99))
                .target(t, o),
        );
        let (t, o) = target("ratio <= 1.00", c.cpu_per_million <= s.cpu_per_million);
        rows.push(
            Row::new(format!("{label}: CPU time per million requests"))
                .coordinator(format!("{:.2} s", c.cpu_per_million))
                .sentinel(format!("{:.2} s", s.cpu_per_million))
                .comparison(format!(
                    "ratio {:.2}",
                    c.cpu_per_million / s.cpu_per_million
                ))
                .target(t, o),
        );
        rows
    }
}

struct Summary {
    rps: f64,
    p50: f64,
    p99: f64,
    cpu_per_million: f64,
}

fn runs_json(runs: &[Run]) -> Value {
    runs.iter()
        .map(|r| {
            json!({
                "rps": r.rps,
                "p50_ms": r.p50_ms,
                "p99_ms": r.p99_ms,
                "cpu_s": r.cpu.as_secs_f64(),
                "requests": r.requests,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_valkey_benchmark_csv() {
        let text = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\
                    \"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                    \"SENTINEL get-master-addr-by-name mymaster\",\"70921.98\",\"0.393\",\"0.128\",\
                    \"0.351\",\"0.575\",\"0.967\",\"2.703\"\n";
        assert_eq!(parse_csv(text).unwrap(), (70921.98, 0.351, 0.967));
    }
}
