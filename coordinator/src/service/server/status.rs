//! `COORDINATOR VERDICT <name> [JSON]` and `COORDINATOR STATUS [JSON]`: the verdict with every
//! sentinel's view behind it, for operators (text) and scripts (JSON with stable field names).
//!
//! The JSON is written by hand: the shape is small and fixed, and the field names are part of
//! the interface, so they are spelled out here rather than derived from struct names that may be
//! renamed.
//!
//! Ages: observations are stamped on the owner's monotonic clock, whose origin the server does
//! not know, so a view's age is estimated as the time since publication plus how far its
//! observation trails the newest one in the same publication.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::service::registry::{LinkStatus, NameState, Registry};
use crate::verdict::{SentinelId, SentinelView, Verdict, majority_of};

/// One name's verdict, as text.
pub fn verdict_text(state: &NameState, registry: &Registry) -> String {
    let mut out = String::new();
    let configured = registry.configured_sentinels();
    let _ = writeln!(out, "name: {}", state.name);
    match &state.verdict {
        Verdict::Agreed(agreement) => {
            let _ = writeln!(out, "verdict: agreed");
            let _ = writeln!(out, "master: {}", agreement.master);
            if let Some(pod) = &agreement.pod {
                let _ = writeln!(out, "pod: {pod}");
            }
            if let Some(run_id) = &agreement.run_id {
                let _ = writeln!(out, "run_id: {run_id}");
            }
            let _ = writeln!(out, "config_epoch: {}", agreement.config_epoch);
            let _ = write!(
                out,
                "votes: {} of {} configured ({} needed for a majority)",
                agreement.votes,
                configured,
                majority_of(configured)
            );
            if agreement.votes < majority_of(configured) {
                // Rule 2: only a leader a majority elected raises an epoch.
                out.push_str(", agreed because no counting sentinel reports a newer config epoch");
            }
            out.push('\n');
            let voters: Vec<String> = agreement.voters.iter().map(|v| v.to_string()).collect();
            let _ = writeln!(out, "voters: {}", voters.join(", "));
            let _ = writeln!(
                out,
                "failover_in_progress: {}",
                yes_no(agreement.failover_in_progress)
            );
            let _ = writeln!(
                out,
                "master_reported_down: {}",
                yes_no(agreement.master_reported_down)
            );
        }
        Verdict::NoQuorum(no_quorum) => {
            let _ = writeln!(out, "verdict: no_quorum");
            let _ = writeln!(out, "reason: {}", no_quorum.reason);
            for candidate in &no_quorum.candidates {
                let _ = write!(
                    out,
                    "candidate: {} at config epoch {}, {} vote(s)",
                    candidate.master, candidate.config_epoch, candidate.votes
                );
                if let Some(pod) = &candidate.pod {
                    let _ = write!(out, ", pod {pod}");
                }
                out.push('\n');
            }
        }
    }
    let _ = writeln!(out, "replicas: {}", state.replicas.len());
    let _ = writeln!(
        out,
        "generation: {}, changes: {}, published {} ms ago",
        state.generation,
        state.changes,
        since(state.published_at).as_millis()
    );
    let links = registry.links();
    for (sentinel, view) in views_of_every_sentinel(state) {
        let _ = write!(out, "sentinel {sentinel}: ");
        let link_up = links
            .iter()
            .any(|(id, link)| id == sentinel && link.connected);
        match view {
            // Connected but not polled yet (the first seconds after start-up).
            None | Some(SentinelView::Unreachable) if link_up => out.push_str("no answer yet"),
            None | Some(SentinelView::Unreachable) => out.push_str("unreachable"),
            Some(SentinelView::Unmonitored { observed_at }) => {
                let _ = write!(
                    out,
                    "does not monitor this name, age {} ms",
                    view_age(state, observed_at.elapsed()).as_millis()
                );
            }
            Some(SentinelView::Reports(report)) => {
                let _ = write!(
                    out,
                    "reports {} at config epoch {}",
                    report.master, report.config_epoch
                );
                if report.failover_in_progress() {
                    out.push_str(", failover in progress");
                }
                if report.master_down() {
                    out.push_str(", master flagged down");
                }
                let _ = write!(
                    out,
                    ", {} replicas, {} other sentinels, age {} ms",
                    report.num_replicas,
                    report.num_other_sentinels,
                    view_age(state, report.observed_at.elapsed()).as_millis()
                );
            }
        }
        if let Some((_, link)) = links.iter().find(|(id, _)| id == sentinel) {
            let _ = write!(
                out,
                "; link {}, {} reconnects",
                if link.connected { "up" } else { "down" },
                link.reconnects
            );
            if let Some(error) = &link.last_error {
                let _ = write!(out, ", last error: {error}");
            }
        }
        out.push('\n');
    }
    out
}

/// Every name and every link, as text.
pub fn status_text(registry: &Registry) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "configured_sentinels: {}",
        registry.configured_sentinels()
    );
    for name in registry.names() {
        if let Some(state) = registry.get(name) {
            let _ = writeln!(out, "{}: {}", name, state.verdict);
        }
    }
    for (sentinel, link) in registry.links() {
        let _ = write!(
            out,
            "link {sentinel}: {}, {} reconnects",
            if link.connected { "up" } else { "down" },
            link.reconnects
        );
        if let Some(error) = &link.last_error {
            let _ = write!(out, ", last error: {error}");
        }
        out.push('\n');
    }
    out
}

/// One name's verdict, as a JSON object.
pub fn verdict_json(state: &NameState, registry: &Registry) -> String {
    let mut out = String::with_capacity(1024);
    write_verdict_json(&mut out, state, registry);
    out
}

/// Every name's verdict and every link, as a JSON object.
pub fn status_json(registry: &Registry) -> String {
    let mut out = String::with_capacity(2048);
    let _ = write!(
        out,
        "{{\"configured_sentinels\":{},\"masters\":[",
        registry.configured_sentinels()
    );
    let mut first = true;
    for name in registry.names() {
        if let Some(state) = registry.get(name) {
            if !first {
                out.push(',');
            }
            first = false;
            write_verdict_json(&mut out, &state, registry);
        }
    }
    out.push_str("],\"links\":[");
    for (i, (sentinel, link)) in registry.links().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"sentinel\":");
        json_str(&mut out, &sentinel.to_string());
        out.push(',');
        write_link_fields(&mut out, link);
        out.push('}');
    }
    out.push_str("]}");
    out
}

fn write_verdict_json(out: &mut String, state: &NameState, registry: &Registry) {
    let configured = registry.configured_sentinels();
    out.push_str("{\"name\":");
    json_str(out, &state.name);
    match &state.verdict {
        Verdict::Agreed(agreement) => {
            out.push_str(",\"verdict\":\"agreed\",\"master\":");
            json_str(out, &agreement.master.to_string());
            out.push_str(",\"pod\":");
            json_opt(out, agreement.pod.as_ref().map(|p| p.to_string()));
            out.push_str(",\"run_id\":");
            json_opt(out, agreement.run_id.as_ref().map(|r| r.to_string()));
            let _ = write!(
                out,
                ",\"config_epoch\":{},\"votes\":{},\"needed\":{},\"configured_sentinels\":{}",
                agreement.config_epoch,
                agreement.votes,
                majority_of(configured),
                configured
            );
            out.push_str(",\"voters\":[");
            for (i, voter) in agreement.voters.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_str(out, &voter.to_string());
            }
            let _ = write!(
                out,
                "],\"failover_in_progress\":{},\"master_reported_down\":{},\"reason\":null,\"candidates\":[]",
                agreement.failover_in_progress, agreement.master_reported_down
            );
        }
        Verdict::NoQuorum(no_quorum) => {
            let _ = write!(
                out,
                ",\"verdict\":\"no_quorum\",\"master\":null,\"pod\":null,\"run_id\":null,\
                 \"config_epoch\":null,\"votes\":0,\"needed\":{},\"configured_sentinels\":{},\
                 \"voters\":[],\"failover_in_progress\":false,\"master_reported_down\":false,\
                 \"reason\":",
                majority_of(configured),
                configured
            );
            json_str(out, &no_quorum.reason.to_string());
            out.push_str(",\"candidates\":[");
            for (i, candidate) in no_quorum.candidates.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"master\":");
                json_str(out, &candidate.master.to_string());
                out.push_str(",\"pod\":");
                json_opt(out, candidate.pod.as_ref().map(|p| p.to_string()));
                let _ = write!(
                    out,
                    ",\"config_epoch\":{},\"votes\":{}}}",
                    candidate.config_epoch, candidate.votes
                );
            }
            out.push(']');
        }
    }
    let published_ms = state
        .published_at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let _ = write!(
        out,
        ",\"replicas\":{},\"generation\":{},\"changes\":{},\"published_at_unix_ms\":{},\"sentinels\":[",
        state.replicas.len(),
        state.generation,
        state.changes,
        published_ms
    );
    let links = registry.links();
    for (i, (sentinel, view)) in views_of_every_sentinel(state).into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"sentinel\":");
        json_str(out, &sentinel.to_string());
        match view {
            None | Some(SentinelView::Unreachable) => {
                out.push_str(",\"view\":\"unreachable\"");
            }
            Some(SentinelView::Unmonitored { observed_at }) => {
                let _ = write!(
                    out,
                    ",\"view\":\"unmonitored\",\"age_ms\":{}",
                    view_age(state, observed_at.elapsed()).as_millis()
                );
            }
            Some(SentinelView::Reports(report)) => {
                out.push_str(",\"view\":\"reports\",\"master\":");
                json_str(out, &report.master.to_string());
                out.push_str(",\"run_id\":");
                json_opt(out, report.master_run_id.as_ref().map(|r| r.to_string()));
                let failover_state = match &report.failover_state {
                    crate::verdict::FailoverState::Idle => None,
                    crate::verdict::FailoverState::Running(phase) => Some(phase.clone()),
                };
                out.push_str(",\"failover_state\":");
                json_opt(out, failover_state);
                let _ = write!(
                    out,
                    ",\"config_epoch\":{},\"s_down\":{},\"o_down\":{},\"failover_in_progress\":{},\
                     \"num_replicas\":{},\"num_other_sentinels\":{},\"age_ms\":{}",
                    report.config_epoch,
                    report.flags.s_down,
                    report.flags.o_down,
                    report.failover_in_progress(),
                    report.num_replicas,
                    report.num_other_sentinels,
                    view_age(state, report.observed_at.elapsed()).as_millis()
                );
            }
        }
        if let Some((_, link)) = links.iter().find(|(id, _)| id == sentinel) {
            out.push_str(",\"link\":{");
            write_link_fields(out, link);
            out.push('}');
        } else {
            out.push_str(",\"link\":null");
        }
        out.push('}');
    }
    out.push_str("]}");
}

fn write_link_fields(out: &mut String, link: &LinkStatus) {
    let _ = write!(
        out,
        "\"connected\":{},\"reconnects\":{},\"last_error\":",
        link.connected, link.reconnects
    );
    json_opt(out, link.last_error.clone());
    out.push_str(",\"last_poll_ok_unix_ms\":");
    match link.last_poll_ok {
        Some(at) => {
            let _ = write!(
                out,
                "{}",
                at.duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis()
            );
        }
        None => out.push_str("null"),
    }
}

/// Every sentinel the state has a view of; the verdict treats a configured sentinel without a
/// view as unreachable, and so does this listing (it can only name the ones it has seen).
fn views_of_every_sentinel(state: &NameState) -> Vec<(&SentinelId, Option<&SentinelView>)> {
    state
        .views
        .iter()
        .map(|(sentinel, view)| (sentinel, Some(view)))
        .collect()
}

fn view_age(state: &NameState, observed: Duration) -> Duration {
    let newest = state
        .views
        .values()
        .filter_map(|view| match view {
            SentinelView::Reports(report) => Some(report.observed_at.elapsed()),
            SentinelView::Unmonitored { observed_at } => Some(observed_at.elapsed()),
            SentinelView::Unreachable => None,
        })
        .max()
        .unwrap_or(observed);
    since(state.published_at) + newest.saturating_sub(observed)
}

fn since(at: SystemTime) -> Duration {
    SystemTime::now().duration_since(at).unwrap_or_default()
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

fn json_opt(out: &mut String, value: Option<String>) {
    match value {
        Some(text) => json_str(out, &text),
        None => out.push_str("null"),
    }
}

/// A JSON string literal, escaped per RFC 8259.
fn json_str(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_what_json_requires() {
        let mut out = String::new();
        json_str(&mut out, "a\"b\\c\nd\u{1}");
        assert_eq!(out, "\"a\\\"b\\\\c\\nd\\u0001\"");
    }
}
