//! Discovery over TLS, side by side with a real sentinel speaking TLS, and what TLS costs: a
//! TLS-only lab on the TLS build of the same release, the coordinator with `--tls` (client
//! certificates required, as the sentinels require them) and a plaintext port on the same
//! process, so the plaintext figures come from the same run and the same process.
//!
//! Rows: GET-MASTER-ADDR-BY-NAME at pipeline 1 and 16, coordinator over TLS against the sentinel
//! over TLS (the same targets as in plaintext); the coordinator's TLS against its own plaintext
//! port; and resident memory per connected TLS client, coordinator and sentinel, next to the
//! coordinator's per plaintext client.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;
use valkey_lab::{LabSpec, PodId, ValkeyVersion, tls};

use crate::coordinator;
use crate::discovery::{SideBySide, Target, Workload, run_once};
use crate::fanout;
use crate::procfs;
use crate::report::{Outcome, Row};
use crate::stats::median;

const WAIT: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_millis(500);

/// What the phase needs from the command line.
pub struct Settings {
    pub rounds: usize,
    pub requests: u64,
    pub pipelined_requests: u64,
    /// Connections held open for the memory rows.
    pub clients: usize,
}

pub async fn rows(
    settings: &Settings,
    benchmark: &Path,
    coordinator_bin: &Path,
) -> anyhow::Result<Vec<Row>> {
    let version = ValkeyVersion::V9_1_2Tls;
    let mut lab = LabSpec::new(version).tls(true).start().await?;
    lab.wait_formed(WAIT).await?;
    let name = lab.master_name().to_owned();
    let ip = lab.block().spare_ip(1);
    let listen = SocketAddr::new(IpAddr::V4(ip), 26379);
    let plaintext = SocketAddr::new(IpAddr::V4(ip), 26380);
    let pki = lab.tls_mut().context("a TLS lab")?;
    let own = pki.issue("coordinator", &[IpAddr::V4(ip)])?;
    let ca = pki.ca_cert().to_owned();
    let client = lab.tls_client().context("the client volume")?.clone();
    let path = |p: &Path| p.display().to_string();
    let flags = [
        "--listen".to_owned(),
        listen.to_string(),
        "--plaintext-listen".to_owned(),
        plaintext.to_string(),
        "--tls".to_owned(),
        "--tls-ca-cert-file".to_owned(),
        path(&ca),
        "--tls-cert-file".to_owned(),
        path(&own.cert),
        "--tls-key-file".to_owned(),
        path(&own.key),
    ];
    let process = coordinator::spawn_with(
        &mut lab,
        coordinator_bin,
        "coordinator-tls",
        plaintext,
        std::slice::from_ref(&name),
        &flags,
    )
    .await?;
    let sentinel_pid = lab.pid(PodId::Sentinel(0)).context("sentinel-0 runs")?;
    let over_tls = |addr| Target {
        addr,
        pid: process.pid,
    };
    let coordinator_tls = over_tls(listen);
    let coordinator_plain = over_tls(plaintext);
    let sentinel_tls = Target {
        addr: lab.sentinel_addr(0),
        pid: sentinel_pid,
    };
    let tls_flags = vec![
        "--tls".to_owned(),
        "--cacert".to_owned(),
        path(&client.ca),
        "--cert".to_owned(),
        path(&client.cert),
        "--key".to_owned(),
        path(&client.key),
    ];
    let discovery = ["SENTINEL", "get-master-addr-by-name", name.as_str()];
    let workload = |label: &str, pipeline: u32, requests: u64, connection: &[String]| Workload {
        label: label.to_owned(),
        command: discovery.iter().map(|s| (*s).to_owned()).collect(),
        pipeline,
        clients: 50,
        requests,
        connection: connection.to_vec(),
    };

    let warm = workload("warm-up", 1, settings.requests / 10, &tls_flags);
    run_once(benchmark, coordinator_tls, &warm).await?;
    run_once(benchmark, sentinel_tls, &warm).await?;
    let mut rows = Vec::new();
    let p1 = workload(
        "GET-MASTER-ADDR-BY-NAME over TLS, P1",
        1,
        settings.requests,
        &tls_flags,
    );
    let p16 = workload(
        "GET-MASTER-ADDR-BY-NAME over TLS, P16",
        16,
        settings.pipelined_requests,
        &tls_flags,
    );
    for load in [&p1, &p16] {
        let measured = SideBySide::measure(
            benchmark,
            load,
            coordinator_tls,
            sentinel_tls,
            settings.rounds,
        )
        .await?;
        rows.extend(measured.rows(load, true));
    }

    // The coordinator's own cost of TLS: its TLS port against its plaintext port, same process.
    let plain_p1 = workload("plaintext port", 1, settings.requests, &[]);
    let mut tls_runs = Vec::new();
    let mut plain_runs = Vec::new();
    for round in 0..settings.rounds {
        for tls_turn in [round % 2 == 0, round % 2 == 1] {
            if tls_turn {
                tls_runs.push(run_once(benchmark, coordinator_tls, &p1).await?);
            } else {
                plain_runs.push(run_once(benchmark, coordinator_plain, &plain_p1).await?);
            }
        }
    }
    let rps = |runs: &[crate::discovery::Run]| median(runs.iter().map(|r| r.rps));
    let p99 = |runs: &[crate::discovery::Run]| median(runs.iter().map(|r| r.p99_ms));
    rows.push(
        Row::new("coordinator, TLS port against its plaintext port (P1): requests/s")
            .coordinator(format!(
                "{:.0} TLS / {:.0} plaintext",
                rps(&tls_runs),
                rps(&plain_runs)
            ))
            .comparison(format!("ratio {:.2}", rps(&tls_runs) / rps(&plain_runs)))
            .data(json!({
                "tls_rps": rps(&tls_runs),
                "plaintext_rps": rps(&plain_runs),
                "tls_p99_ms": p99(&tls_runs),
                "plaintext_p99_ms": p99(&plain_runs),
            })),
    );
    rows.push(
        Row::new("coordinator, TLS port against its plaintext port (P1): p99 latency")
            .coordinator(format!(
                "{:.3} ms TLS / {:.3} ms plaintext",
                p99(&tls_runs),
                p99(&plain_runs)
            ))
            .comparison(format!("ratio {:.2}", p99(&tls_runs) / p99(&plain_runs))),
    );

    // Memory per connected client: TLS sessions on both sides, plaintext on the coordinator.
    let config = tls::client_config(&client.ca, Some(&client.identity()))?;
    let per_client =
        |before: u64, after: u64| (after as f64 - before as f64) / settings.clients.max(1) as f64;
    tokio::time::sleep(SETTLE).await;
    let idle = procfs::rss_kib(process.pid)?;
    let plain = fanout::connect(plaintext, settings.clients).await?;
    tokio::time::sleep(SETTLE).await;
    let with_plain = procfs::rss_kib(process.pid)?;
    drop(plain);
    tokio::time::sleep(SETTLE).await;
    let before_tls = procfs::rss_kib(process.pid)?;
    let sessions = fanout::connect_tls(listen, config.clone(), settings.clients).await?;
    tokio::time::sleep(SETTLE).await;
    let with_tls = procfs::rss_kib(process.pid)?;
    drop(sessions);
    let sentinel_before = procfs::rss_kib(sentinel_pid)?;
    let sentinel_sessions =
        fanout::connect_tls(lab.sentinel_addr(0), config, settings.clients).await?;
    tokio::time::sleep(SETTLE).await;
    let sentinel_with = procfs::rss_kib(sentinel_pid)?;
    drop(sentinel_sessions);
    let coordinator_tls_kib = per_client(before_tls, with_tls);
    let coordinator_plain_kib = per_client(idle, with_plain);
    let sentinel_tls_kib = per_client(sentinel_before, sentinel_with);
    rows.push(
        Row::new(format!(
            "resident memory per connected TLS client ({} clients)",
            settings.clients
        ))
        .coordinator(format!(
            "{coordinator_tls_kib:.1} KiB ({coordinator_plain_kib:.1} KiB plaintext, so \
             {:.1} KiB for TLS)",
            coordinator_tls_kib - coordinator_plain_kib
        ))
        .sentinel(format!("{sentinel_tls_kib:.1} KiB"))
        .comparison(format!(
            "ratio {:.2}",
            coordinator_tls_kib / sentinel_tls_kib
        ))
        .target(
            "ratio <= 1.00",
            Outcome::of(coordinator_tls_kib <= sentinel_tls_kib),
        )
        .data(json!({
            "clients": settings.clients,
            "coordinator_tls_kib_per_client": coordinator_tls_kib,
            "coordinator_plaintext_kib_per_client": coordinator_plain_kib,
            "sentinel_tls_kib_per_client": sentinel_tls_kib,
        })),
    );
    drop(lab);
    Ok(rows)
}
