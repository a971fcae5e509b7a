//! The addon's observability resources against the binary: every metric the cluster chart's
//! PrometheusRule and the Grafana dashboard query is one a live `valkey-coordinator serve`
//! exports on `/metrics`, with the labels it gives it. Renaming a metric or a label without
//! updating `addon/valkey-cluster/` fails here.
//!
//! The rule is read from its Helm template (`templates/prometheusrule.yaml`): each `expr`, with
//! its one template action (the cluster selector) replaced by the labels the chart renders.
//! The dashboard is the plain JSON file the chart's ConfigMap carries.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;
use valkey_coordinator::addr::Addr;
use valkey_coordinator::service::metrics;
use valkey_coordinator::service::registry::{NameState, ObservedRole, Registry};
use valkey_coordinator::verdict::{
    Agreement, MonotonicTime, SentinelId, SentinelReport, SentinelView, Verdict,
};

/// What the chart's metric selector renders to for release `mycluster` in namespace `demo`.
const SELECTOR: &str = r#"namespace="demo",cluster="mycluster""#;
/// Labels Prometheus (the PodMonitor's target labels and relabelings) adds to every series.
const TARGET_LABELS: &[&str] = &[
    "namespace",
    "cluster",
    "component",
    "pod",
    "container",
    "endpoint",
    "instance",
    "job",
    "service",
];
/// The alerts the addon must have, one per failure it is asked to page on.
const REQUIRED_ALERTS: &[&str] = &[
    "ValkeyNoQuorum",
    "ValkeySentinelViewsSplit",
    "ValkeySentinelHealFailed",
    "ValkeySentinelUnreachable",
    "ValkeyCoordinatorsDisagree",
    "ValkeyTwoMasters",
];
const WAIT: Duration = Duration::from_secs(10);

fn chart_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../addon/valkey-cluster")
}

// ---------------------------------------------------------------------------------------------
// What the binary exports.

/// The metric families of an exposition and the label names their samples carry.
#[derive(Debug, Default)]
struct Exposition {
    /// Family name -> its type (`gauge`, `counter`, `histogram`).
    families: BTreeMap<String, String>,
    /// Series name (`..._bucket` for a histogram) -> every label name seen on its samples.
    labels: BTreeMap<String, BTreeSet<String>>,
}

impl Exposition {
    fn parse(text: &str) -> Self {
        let mut exposition = Self::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                    exposition.families.insert(name.to_owned(), kind.to_owned());
                }
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let name = &line[..name_end];
            let names = exposition.labels.entry(name.to_owned()).or_default();
            if line[name_end..].starts_with('{') {
                for (label, _) in parse_matchers(&line[name_end + 1..]).0 {
                    names.insert(label);
                }
            }
        }
        exposition
    }

    /// Adds the label names another exposition's samples show (same families).
    fn merge_labels(&mut self, other: &Self) {
        for (series, names) in &other.labels {
            self.labels
                .entry(series.clone())
                .or_default()
                .extend(names.iter().cloned());
        }
    }

    /// The family a series name belongs to, if exported (`x_bucket` of histogram `x` is `x`).
    fn family_of(&self, series: &str) -> Option<&str> {
        if let Some((name, _)) = self.families.get_key_value(series) {
            return Some(name);
        }
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let base = series.strip_suffix(suffix)?;
            let (name, kind) = self.families.get_key_value(base)?;
            (kind == "histogram").then_some(name.as_str())
        })
    }

    /// The label names a series may carry: its samples' (a histogram's `le` on `_bucket` only)
    /// and the target labels.
    fn allowed_labels(&self, series: &str) -> BTreeSet<String> {
        let mut allowed: BTreeSet<String> = TARGET_LABELS.iter().map(|l| (*l).to_owned()).collect();
        if let Some(names) = self.labels.get(series) {
            allowed.extend(names.iter().cloned());
        }
        allowed
    }
}

/// Starts `serve` against a sentinel nobody listens at, sends one PING (so the command
/// counter has a sample) and returns its `/metrics`.
async fn live_metrics() -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_valkey-coordinator"))
        .args(["--log-format", "json", "serve"])
        .args([
            "--master-name",
            "mycluster-valkey",
            "--sentinel",
            "127.0.0.1:1",
        ])
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .env("VALKEY_COORDINATOR_LOG", "info")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("serve starts");
    let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
    let (mut clients, mut metrics_addr) = (None, None);
    tokio::time::timeout(WAIT, async {
        while clients.is_none() || metrics_addr.is_none() {
            let line = lines
                .next_line()
                .await
                .expect("read stderr")
                .expect("serve exited before listening");
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let listen = entry["listen"].as_str().map(str::to_owned);
            match entry["message"].as_str() {
                Some("serving metrics") => metrics_addr = listen,
                Some("serving sentinel-compatible clients") => clients = listen,
                _ => {}
            }
        }
    })
    .await
    .expect("serve reports both listening addresses");
    // Keep reading the log so the pipe never fills.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let mut client = TcpStream::connect(clients.expect("clients address"))
        .await
        .expect("connect to the coordinator");
    client
        .write_all(b"*1\r\n$4\r\nPING\r\n")
        .await
        .expect("send PING");
    let mut pong = [0u8; 7];
    tokio::time::timeout(WAIT, client.read_exact(&mut pong))
        .await
        .expect("PONG in time")
        .expect("read PONG");
    assert_eq!(&pong, b"+PONG\r\n");

    let mut http = TcpStream::connect(metrics_addr.expect("metrics address"))
        .await
        .expect("connect to /metrics");
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("send the request");
    let mut response = String::new();
    tokio::time::timeout(WAIT, http.read_to_string(&mut response))
        .await
        .expect("answered in time")
        .expect("read the response");
    child.kill().await.expect("stop serve");
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    body.to_owned()
}

/// The same renderer over a registry in the states a lone coordinator without sentinels never
/// reaches (an agreed master, sentinels that answer, heals, data pods asked their role): the
/// label names of families that have no sample live.
fn busy_exposition() -> Exposition {
    let registry = Registry::new(&["mycluster-valkey".to_owned()], 3);
    let voter = |n: u8| {
        SentinelId::new(
            format!("10.0.0.{n}:26379")
                .parse::<Addr>()
                .expect("literal"),
        )
    };
    let mut state = NameState::initial("mycluster-valkey", 3);
    state.verdict = Verdict::Agreed(Agreement {
        master: "10.1.0.2:6379".parse().expect("literal"),
        pod: None,
        run_id: None,
        config_epoch: 3,
        votes: 2,
        voters: vec![voter(1), voter(2)],
        failover_in_progress: false,
        master_reported_down: false,
    });
    // Each sentinel's view as the verdict saw it: two report the master, one is wiped (the
    // per-sentinel families have no sample live, where the one sentinel is unreachable).
    let now = MonotonicTime::from_elapsed(Duration::from_secs(1));
    for n in [1, 2] {
        state.views.insert(
            voter(n),
            SentinelView::Reports(SentinelReport::new(
                "10.1.0.2:6379".parse().expect("literal"),
                3,
                now,
            )),
        );
    }
    state
        .views
        .insert(voter(3), SentinelView::Unmonitored { observed_at: now });
    registry.publish(state);
    registry.update_link(&voter(1), |link| link.connected = true);
    // Each data pod's answer to ROLE (live, `serve` has no --data-pod, so the family has no
    // sample).
    for (pod, role) in [
        ("10.1.0.2:6379", ObservedRole::Master),
        ("10.1.0.3:6379", ObservedRole::Replica),
        ("10.1.0.4:6379", ObservedRole::Unreachable),
    ] {
        registry.set_pod_role(&pod.parse::<Addr>().expect("literal"), role);
    }
    let stats = registry.stats();
    stats.count_heal("unmonitored", "ok");
    stats.count_command("ping");
    Exposition::parse(&metrics::render(&registry))
}

// ---------------------------------------------------------------------------------------------
// What the queries reference.

/// A metric selector in a query: the name and the label names its matchers use.
#[derive(Debug)]
struct Selector {
    metric: String,
    labels: Vec<String>,
}

/// Every selector of a PromQL expression and the label names of its `by`, `without`, `on`,
/// `ignoring`, `group_left` and `group_right` clauses. Function and keyword names, numbers,
/// durations, ranges and string literals are skipped.
#[derive(Debug, Default)]
struct Query {
    selectors: Vec<Selector>,
    grouping: Vec<String>,
}

/// Operator keywords, and the aggregation operators (which a `by` or `without` clause may
/// separate from their parenthesis).
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
    "start",
    "end",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Skips a string literal starting at `chars[i]` (a quote); returns the index after it.
fn skip_string(chars: &[char], i: usize) -> usize {
    let quote = chars[i];
    let mut j = i + 1;
    while j < chars.len() && chars[j] != quote {
        if chars[j] == '\\' && quote != '`' {
            j += 1;
        }
        j += 1;
    }
    j + 1
}

/// Parses the label matchers after a `{`: returns (label, value) pairs and how many bytes of
/// `rest` they took, through the closing `}`.
fn parse_matchers(rest: &str) -> (Vec<(String, String)>, usize) {
    let chars: Vec<char> = rest.chars().collect();
    let mut matchers = Vec::new();
    let mut i = 0;
    let mut label: Option<String> = None;
    while i < chars.len() {
        let c = chars[i];
        if c == '}' {
            i += 1;
            break;
        }
        if c == '"' || c == '\'' || c == '`' {
            // `end` is one past the closing quote (or past the end, unterminated).
            let end = skip_string(&chars, i);
            let value: String = chars[i + 1..(end - 1).min(chars.len())].iter().collect();
            if let Some(name) = label.take() {
                matchers.push((name, value));
            }
            i = end;
        } else if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            label = Some(chars[start..i].iter().collect());
        } else {
            i += 1;
        }
    }
    let consumed = chars[..i.min(chars.len())]
        .iter()
        .map(|c| c.len_utf8())
        .sum();
    (matchers, consumed)
}

fn scan_query(expr: &str) -> Query {
    let chars: Vec<char> = expr.chars().collect();
    let mut query = Query::default();
    let next_non_space = |from: usize| {
        (from..chars.len())
            .find(|&k| !chars[k].is_whitespace())
            .map(|k| (k, chars[k]))
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '[' {
            // A range or a subquery: durations only.
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c == '$' {
            // A Grafana variable ($__rate_interval, ${datasource}).
            i += 1;
            while i < chars.len() && (is_ident(chars[i]) || chars[i] == '{' || chars[i] == '}') {
                i += 1;
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // A number or a duration (0.99, 15m, 1e3).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c == '{' {
            // Matchers without a metric name.
            let rest: String = chars[i + 1..].iter().collect();
            let (matchers, consumed) = parse_matchers(&rest);
            query.selectors.push(Selector {
                metric: String::new(),
                labels: matchers.into_iter().map(|(l, _)| l).collect(),
            });
            i += 1 + rest[..consumed].chars().count();
        } else if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = next_non_space(i);
            if GROUPING.contains(&word.as_str()) {
                if let Some((open, '(')) = next {
                    let close = (open..chars.len())
                        .find(|&k| chars[k] == ')')
                        .expect("a grouping clause closes");
                    let inner: String = chars[open + 1..close].iter().collect();
                    query.grouping.extend(
                        inner
                            .split(',')
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(str::to_owned),
                    );
                    i = close + 1;
                }
            } else if KEYWORDS.contains(&word.as_str()) || matches!(next, Some((_, '('))) {
                // An operator keyword, or a function or aggregation name.
            } else {
                let mut labels = Vec::new();
                if let Some((open, '{')) = next {
                    let rest: String = chars[open + 1..].iter().collect();
                    let (matchers, consumed) = parse_matchers(&rest);
                    labels = matchers.into_iter().map(|(l, _)| l).collect();
                    i = open + 1 + rest[..consumed].chars().count();
                }
                query.selectors.push(Selector {
                    metric: word,
                    labels,
                });
            }
        } else {
            i += 1;
        }
    }
    query
}

/// The alerts of the PrometheusRule template: (alert name, expression with the selector
/// substituted), in file order.
fn rule_expressions() -> Vec<(String, String)> {
    let path = chart_dir().join("templates/prometheusrule.yaml");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    let mut alerts = Vec::new();
    let mut current: Option<String> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(name) = trimmed.strip_prefix("- alert:") {
            current = Some(name.trim().to_owned());
        } else if let Some(value) = trimmed.strip_prefix("expr:") {
            let value = value.trim();
            let expr = if value.starts_with('|') || value.starts_with('>') {
                let mut block = Vec::new();
                while let Some(next) = lines.get(i + 1) {
                    let next_indent = next.len() - next.trim_start().len();
                    if !next.trim().is_empty() && next_indent <= indent {
                        break;
                    }
                    block.push(next.trim());
                    i += 1;
                }
                block.join("\n")
            } else {
                value.trim_matches(['\'', '"']).to_owned()
            };
            let alert = current.take().expect("an expr belongs to an alert");
            alerts.push((alert, substitute_template_actions(&expr)));
        }
        i += 1;
    }
    alerts
}

/// Replaces every `{{ ... }}` with what the chart's selector renders to.
fn substitute_template_actions(expr: &str) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("a template action closes") + start + 2;
        assert!(
            rest[start..end].contains("$sel"),
            "an expression may only use the cluster selector: {}",
            &rest[start..end]
        );
        out.push_str(SELECTOR);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The dashboard's queries: (where, expression); a variable's `label_values(SELECTOR, LABEL)`
/// contributes its SELECTOR and LABEL (as a grouping label).
fn dashboard_queries() -> (serde_json::Value, Vec<(String, String)>) {
    let path = chart_dir().join("dashboards/valkey-coordinator.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or_default();
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().expect("a panel has targets");
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        for target in targets {
            let expr = target["expr"].as_str().expect("a target has an expr");
            queries.push((format!("panel {title:?}"), expr.to_owned()));
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        if variable["type"] != "query" {
            continue;
        }
        let name = variable["name"].as_str().unwrap_or_default();
        let query = variable["query"]["query"]
            .as_str()
            .or_else(|| variable["query"].as_str())
            .expect("a query variable has a query");
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {name}: not label_values(...): {query}"));
        let (selector, label) = inner
            .rsplit_once(',')
            .expect("label_values(SELECTOR, LABEL)");
        queries.push((
            format!("variable {name}"),
            format!("sum by ({}) ({})", label.trim(), selector.trim()),
        ));
    }
    (dashboard, queries)
}

/// Checks one query against the exposition; returns its problems.
fn problems(place: &str, expr: &str, exposition: &Exposition) -> Vec<String> {
    let query = scan_query(expr);
    let mut problems = Vec::new();
    if query.selectors.is_empty() {
        problems.push(format!("{place}: no metric found in {expr:?}"));
    }
    let mut labels_in_scope: BTreeSet<String> =
        TARGET_LABELS.iter().map(|l| (*l).to_owned()).collect();
    for selector in &query.selectors {
        if selector.metric.is_empty() {
            problems.push(format!(
                "{place}: a selector without a metric name in {expr:?}"
            ));
            continue;
        }
        if exposition.family_of(&selector.metric).is_none() {
            problems.push(format!(
                "{place}: {} is not exported by valkey-coordinator",
                selector.metric
            ));
            continue;
        }
        let allowed = exposition.allowed_labels(&selector.metric);
        for label in &selector.labels {
            if !allowed.contains(label) {
                problems.push(format!(
                    "{place}: {} has no label {label:?} (it has {allowed:?})",
                    selector.metric
                ));
            }
        }
        labels_in_scope.extend(allowed);
    }
    for label in &query.grouping {
        if !labels_in_scope.contains(label) {
            problems.push(format!(
                "{place}: groups by {label:?}, which none of its metrics carries"
            ));
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------

#[test]
fn the_scanner_finds_metrics_and_labels_and_skips_the_rest() {
    let query = scan_query(
        r#"sum by (namespace, reason) (increase(valkey_x_total{namespace="a{b}",outcome=~"f.*"}[15m]) > 0)
           or (valkey_x_total unless valkey_x_total offset 15m) and on (pod) group_left (le) histogram_quantile(0.99, y_bucket{le!="+Inf"}[$__rate_interval])"#,
    );
    let metrics: Vec<&str> = query.selectors.iter().map(|s| s.metric.as_str()).collect();
    assert_eq!(
        metrics,
        [
            "valkey_x_total",
            "valkey_x_total",
            "valkey_x_total",
            "y_bucket"
        ]
    );
    assert_eq!(query.selectors[0].labels, ["namespace", "outcome"]);
    assert_eq!(query.selectors[3].labels, ["le"]);
    assert_eq!(query.grouping, ["namespace", "reason", "pod", "le"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_and_dashboard_query_names_only_exported_metrics_and_labels() {
    let live = live_metrics().await;
    let mut exposition = Exposition::parse(&live);
    assert!(
        exposition.families.len() >= 10,
        "a live scrape declares the coordinator's families:\n{live}"
    );
    // Label names from the same renderer in states a lone coordinator does not reach; the
    // families themselves must be the live ones.
    let busy = busy_exposition();
    for family in busy.families.keys() {
        assert!(
            exposition.families.contains_key(family),
            "{family} is rendered but not served live"
        );
    }
    exposition.merge_labels(&busy);

    let alerts = rule_expressions();
    let names: Vec<&str> = alerts.iter().map(|(name, _)| name.as_str()).collect();
    for required in REQUIRED_ALERTS {
        assert!(names.contains(required), "no alert {required} in {names:?}");
    }
    let template = std::fs::read_to_string(chart_dir().join("templates/prometheusrule.yaml"))
        .expect("the rule template");
    assert_eq!(
        template.matches("- alert:").count(),
        alerts.len(),
        "every alert has exactly one expr"
    );

    let mut found = Vec::new();
    let mut used = BTreeSet::new();
    for (alert, expr) in &alerts {
        let place = format!("alert {alert}");
        found.extend(problems(&place, expr, &exposition));
        for selector in scan_query(expr).selectors {
            // Each selector is confined to this cluster's series.
            for label in ["namespace", "cluster"] {
                if !selector.labels.iter().any(|l| l == label) {
                    found.push(format!(
                        "{place}: {} does not select on {label}",
                        selector.metric
                    ));
                }
            }
            used.insert(selector.metric);
        }
    }

    let (dashboard, queries) = dashboard_queries();
    assert!(dashboard["uid"].is_string() && dashboard["title"].is_string());
    assert!(
        queries.len() >= 10,
        "the dashboard has its queries: {queries:?}"
    );
    for (place, expr) in &queries {
        found.extend(problems(place, expr, &exposition));
        for selector in scan_query(expr).selectors {
            used.insert(selector.metric);
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));

    // Between them, the alerts and the dashboard show every family the binary exports.
    let unused: Vec<&String> = exposition
        .families
        .keys()
        .filter(|family| {
            !used
                .iter()
                .any(|metric| exposition.family_of(metric) == Some(family.as_str()))
        })
        .collect();
    assert!(
        unused.is_empty(),
        "exported but neither alerted on nor charted: {unused:?}"
    );
}
