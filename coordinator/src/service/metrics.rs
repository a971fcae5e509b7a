//! Prometheus metrics and the pod's health over a minimal HTTP/1.1 responder, one request per
//! connection: `GET /metrics` answers the text exposition format; `GET /healthz` 200 while the
//! process serves (Kubernetes' liveness probe); `GET /readyz` 200 once some master name is
//! agreed by a majority of the configured sentinels, 503 with each name's reason otherwise (the
//! readiness probe); anything else a 404 (405 for other methods).
//!
//! Everything is read from the registry at scrape time, so nothing on a client's path does any
//! work for metrics beyond the atomic counters the registry already keeps. A full HTTP stack
//! would be the bigger attack surface for one fixed endpoint.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::service::registry::{LATENCY_BUCKETS_SECONDS, ObservedRole, Registry};
use crate::verdict::{SentinelView, Verdict};

/// The most a request head may be; scrapers send a few hundred bytes.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long a scraper has to send its request and read the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The content type of the Prometheus text format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves scrapes until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>, shutdown: CancellationToken) {
    let connections = TaskTracker::new();
    if let Ok(listen) = listener.local_addr() {
        tracing::info!(%listen, "serving metrics");
    }
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let registry = Arc::clone(&registry);
                connections.spawn(async move {
                    let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &registry)).await;
                });
            }
            Err(error) => {
                tracing::warn!(%error, "metrics accept failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
    connections.close();
    connections.wait().await;
}

async fn answer(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_REQUEST_HEAD {
            respond(&mut stream, "431 Request Header Fields Too Large", "").await?;
            // Read what the client is still sending before closing: closing a socket with
            // unread data resets it, and the client would lose the answer.
            let mut drained = 0;
            while drained < 16 * MAX_REQUEST_HEAD {
                match stream.read(&mut buffer).await? {
                    0 => break,
                    read => drained += read,
                }
            }
            return Ok(());
        }
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let request_line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut parts = request_line.split(|b| *b == b' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next());
    let path = target.map(|t| t.split(|b| *b == b'?').next().unwrap_or_default());
    match (method, path) {
        (b"GET", Some(b"/metrics")) => respond(&mut stream, "200 OK", &render(registry)).await,
        (b"GET", Some(b"/healthz")) => respond(&mut stream, "200 OK", "ok\n").await,
        (b"GET", Some(b"/readyz")) => {
            let (ready, body) = readiness(registry);
            let status = if ready {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            respond(&mut stream, status, &body).await
        }
        (b"GET", _) => respond(&mut stream, "404 Not Found", "not found\n").await,
        _ => respond(&mut stream, "405 Method Not Allowed", "").await,
    }
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Whether some master name is agreed, with one line per name saying what each verdict is.
pub fn readiness(registry: &Registry) -> (bool, String) {
    let mut ready = false;
    let mut body = String::new();
    for name in registry.names() {
        let Some(state) = registry.get(name) else {
            continue;
        };
        match &state.verdict {
            Verdict::Agreed(agreement) => {
                ready = true;
                let _ = writeln!(
                    body,
                    "{name}: agreed on {} at epoch {} by {} sentinels",
                    agreement.master, agreement.config_epoch, agreement.votes
                );
            }
            Verdict::NoQuorum(no_quorum) => {
                let _ = writeln!(body, "{name}: no quorum: {}", no_quorum.reason);
            }
        }
    }
    (ready, body)
}

/// Every heal reason (`HealReason::label`) and outcome the healer counts.
const HEAL_REASONS: [&str; 4] = ["unmonitored", "wrong_master", "settings", "data_plane"];
const HEAL_OUTCOMES: [&str; 3] = ["ok", "failed", "refused"];

/// The whole exposition, in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(4096);
    let stats = registry.stats();

    family(
        &mut out,
        "valkey_coordinator_verdict_agreed",
        "gauge",
        "1 when a majority of the configured sentinels agree on a master for the name, 0 otherwise.",
    );
    let states: Vec<_> = registry
        .names()
        .iter()
        .filter_map(|name| registry.get(name))
        .collect();
    for state in &states {
        let agreed = u8::from(state.verdict.agreement().is_some());
        sample(
            &mut out,
            "valkey_coordinator_verdict_agreed",
            &[("name", &state.name)],
            agreed,
        );
    }
    family(
        &mut out,
        "valkey_coordinator_verdict_master",
        "gauge",
        "The agreed master of the name, as a label; absent without agreement.",
    );
    for state in &states {
        if let Some(agreement) = state.verdict.agreement() {
            let master = agreement.master.to_string();
            sample(
                &mut out,
                "valkey_coordinator_verdict_master",
                &[("name", &state.name), ("master", &master)],
                1,
            );
        }
    }
    family(
        &mut out,
        "valkey_coordinator_verdict_config_epoch",
        "gauge",
        "The config epoch of the agreed master.",
    );
    for state in &states {
        if let Some(agreement) = state.verdict.agreement() {
            sample(
                &mut out,
                "valkey_coordinator_verdict_config_epoch",
                &[("name", &state.name)],
                agreement.config_epoch,
            );
        }
    }
    family(
        &mut out,
        "valkey_coordinator_verdict_votes",
        "gauge",
        "How many sentinels name the agreed master (0 without agreement).",
    );
    for state in &states {
        let votes = match &state.verdict {
            Verdict::Agreed(agreement) => agreement.votes,
            Verdict::NoQuorum(_) => 0,
        };
        sample(
            &mut out,
            "valkey_coordinator_verdict_votes",
            &[("name", &state.name)],
            votes,
        );
    }
    family(
        &mut out,
        "valkey_coordinator_verdict_changes_total",
        "counter",
        "Verdict changes of the name since start.",
    );
    for state in &states {
        sample(
            &mut out,
            "valkey_coordinator_verdict_changes_total",
            &[("name", &state.name)],
            state.changes,
        );
    }

    family(
        &mut out,
        "valkey_coordinator_configured_sentinels",
        "gauge",
        "The configured sentinel count; majorities are of this.",
    );
    sample(
        &mut out,
        "valkey_coordinator_configured_sentinels",
        &[],
        registry.configured_sentinels(),
    );
    let links = registry.links();
    family(
        &mut out,
        "valkey_coordinator_sentinel_up",
        "gauge",
        "1 while the link to the sentinel is connected.",
    );
    for (sentinel, link) in &links {
        let sentinel = sentinel.to_string();
        sample(
            &mut out,
            "valkey_coordinator_sentinel_up",
            &[("sentinel", &sentinel)],
            u8::from(link.connected),
        );
    }
    family(
        &mut out,
        "valkey_coordinator_sentinel_reconnects_total",
        "counter",
        "Reconnections to the sentinel since start.",
    );
    for (sentinel, link) in &links {
        let sentinel = sentinel.to_string();
        sample(
            &mut out,
            "valkey_coordinator_sentinel_reconnects_total",
            &[("sentinel", &sentinel)],
            link.reconnects,
        );
    }

    family(
        &mut out,
        "valkey_coordinator_sentinel_master",
        "gauge",
        "1 for the master each configured sentinel reports for the name (as a label), as the \
         verdict last saw it; absent for a sentinel that is unreachable or monitors nothing. \
         Two masters of one name across sentinels is a split view.",
    );
    for state in &states {
        for (sentinel, view) in &state.views {
            if let SentinelView::Reports(report) = view {
                let sentinel = sentinel.to_string();
                let master = report.master.to_string();
                sample(
                    &mut out,
                    "valkey_coordinator_sentinel_master",
                    &[
                        ("name", &state.name),
                        ("sentinel", &sentinel),
                        ("master", &master),
                    ],
                    1,
                );
            }
        }
    }
    family(
        &mut out,
        "valkey_coordinator_sentinel_config_epoch",
        "gauge",
        "The config epoch each reporting sentinel gives the name's master.",
    );
    for state in &states {
        for (sentinel, view) in &state.views {
            if let SentinelView::Reports(report) = view {
                let sentinel = sentinel.to_string();
                sample(
                    &mut out,
                    "valkey_coordinator_sentinel_config_epoch",
                    &[("name", &state.name), ("sentinel", &sentinel)],
                    report.config_epoch,
                );
            }
        }
    }
    family(
        &mut out,
        "valkey_coordinator_sentinel_monitoring",
        "gauge",
        "1 when the sentinel answered and monitors the name, 0 when it answered and monitors \
         nothing (wiped: the healer registers it); absent while unreachable.",
    );
    for state in &states {
        for (sentinel, view) in &state.views {
            let monitoring = match view {
                SentinelView::Reports(_) => 1u8,
                SentinelView::Unmonitored { .. } => 0,
                SentinelView::Unreachable => continue,
            };
            let sentinel = sentinel.to_string();
            sample(
                &mut out,
                "valkey_coordinator_sentinel_monitoring",
                &[("name", &state.name), ("sentinel", &sentinel)],
                monitoring,
            );
        }
    }

    family(
        &mut out,
        "valkey_coordinator_data_pod_role",
        "gauge",
        "1 for the role each configured data pod gave itself at the last ROLE (asked every 2 s; \
         role master, replica or unreachable), 0 for the others. Two pods at master is a split \
         brain, whatever the sentinels say.",
    );
    for (pod, role) in registry.pod_roles() {
        let pod = pod.to_string();
        for candidate in ObservedRole::ALL {
            sample(
                &mut out,
                "valkey_coordinator_data_pod_role",
                &[("data_pod", &pod), ("role", candidate.label())],
                u8::from(candidate == role),
            );
        }
    }

    family(
        &mut out,
        "valkey_coordinator_clients_connected",
        "gauge",
        "Clients connected now.",
    );
    sample(
        &mut out,
        "valkey_coordinator_clients_connected",
        &[],
        stats.clients_connected.load(Ordering::Relaxed),
    );
    family(
        &mut out,
        "valkey_coordinator_clients_accepted_total",
        "counter",
        "Clients accepted since start.",
    );
    sample(
        &mut out,
        "valkey_coordinator_clients_accepted_total",
        &[],
        stats.clients_accepted.load(Ordering::Relaxed),
    );
    family(
        &mut out,
        "valkey_coordinator_clients_refused_total",
        "counter",
        "Clients refused at the client limit since start.",
    );
    sample(
        &mut out,
        "valkey_coordinator_clients_refused_total",
        &[],
        stats.clients_refused.load(Ordering::Relaxed),
    );
    family(
        &mut out,
        "valkey_coordinator_tls_reloads_total",
        "counter",
        "TLS certificate reloads that found changed files, by outcome (failed: the old ones kept).",
    );
    for outcome in ["ok", "failed"] {
        let count = stats
            .tls_reloads
            .get(outcome)
            .map_or(0, |counter| counter.load(Ordering::Relaxed));
        sample(
            &mut out,
            "valkey_coordinator_tls_reloads_total",
            &[("outcome", outcome)],
            count,
        );
    }
    family(
        &mut out,
        "valkey_coordinator_tap_messages_total",
        "counter",
        "Messages published to event subscribers since start.",
    );
    sample(
        &mut out,
        "valkey_coordinator_tap_messages_total",
        &[],
        stats.tap_messages.load(Ordering::Relaxed),
    );
    family(
        &mut out,
        "valkey_coordinator_heals_total",
        "counter",
        "Sentinel heals since start, by reason (unmonitored, wrong_master, settings, data_plane) and outcome (ok, failed, refused).",
    );
    // Every reason and outcome from the start, at 0 until it happens: a series that appears
    // only at its first heal is invisible to `increase()`, so an alert on it would miss the
    // first failure.
    let mut heals: std::collections::BTreeMap<(&'static str, &'static str), u64> = HEAL_REASONS
        .iter()
        .flat_map(|reason| {
            HEAL_OUTCOMES
                .iter()
                .map(move |outcome| ((*reason, *outcome), 0))
        })
        .collect();
    for entry in stats.heals.iter() {
        heals.insert(*entry.key(), entry.value().load(Ordering::Relaxed));
    }
    for ((reason, outcome), count) in heals {
        sample(
            &mut out,
            "valkey_coordinator_heals_total",
            &[("reason", reason), ("outcome", outcome)],
            count,
        );
    }

    family(
        &mut out,
        "valkey_coordinator_commands_total",
        "counter",
        "Commands served, by command.",
    );
    let mut commands: Vec<(&'static str, u64)> = stats
        .commands
        .iter()
        .map(|entry| (*entry.key(), entry.value().load(Ordering::Relaxed)))
        .collect();
    commands.sort_unstable();
    for (command, count) in commands {
        sample(
            &mut out,
            "valkey_coordinator_commands_total",
            &[("command", command)],
            count,
        );
    }

    let name = "valkey_coordinator_command_duration_seconds";
    family(
        &mut out,
        name,
        "histogram",
        "Time from a request's decode to its reply's encode.",
    );
    let (counts, sum) = stats.command_latency.snapshot();
    let mut cumulative = 0u64;
    for (bound, count) in LATENCY_BUCKETS_SECONDS.iter().zip(&counts) {
        cumulative += count;
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    cumulative += counts
        .get(LATENCY_BUCKETS_SECONDS.len())
        .copied()
        .unwrap_or(0);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "{name}_sum {sum}");
    let _ = writeln!(out, "{name}_count {cumulative}");
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{key}=\"");
            escape_label(out, value);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Label values escape backslash, double quote and newline; a master name is operator input.
fn escape_label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}
