#!/usr/bin/env bash
# Checks the cluster chart's observability resources with the real tools:
#   - renders the PrometheusRule with Helm (release mycluster, namespace demo), and runs
#     `promtool check rules` and the unit tests in alerts.test.yaml (`promtool test rules`);
#   - checks the Grafana dashboard is valid JSON and the same file the chart's ConfigMap carries.
# The metric names both reference are checked against a live coordinator by
# coordinator/tests/observability.rs.
# HELM and PROMTOOL name the binaries (default: helm and promtool from PATH; Debian's
# `prometheus` package ships promtool).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
chart=$(dirname "$here")
helm=${HELM:-helm}
promtool=${PROMTOOL:-promtool}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

rendered=$work/rendered.yaml
"$helm" template mycluster "$chart" --namespace demo --set monitoring.enabled=true \
    --show-only templates/prometheusrule.yaml >"$rendered"
# A PrometheusRule's spec is a Prometheus rule file: keep what follows `spec:`, one level out.
sed -n '/^spec:/,$p' "$rendered" | tail -n +2 | sed 's/^  //' >"$work/rules.yaml"
cp "$here/alerts.test.yaml" "$work/"
"$promtool" check rules "$work/rules.yaml"
"$promtool" test rules "$work/alerts.test.yaml"

"$helm" template mycluster "$chart" --namespace demo --set monitoring.enabled=true \
    --show-only templates/dashboard-configmap.yaml >"$work/dashboard.yaml"
python3 - "$work/dashboard.yaml" "$chart/dashboards/valkey-coordinator.json" <<'EOF'
import json, sys
rendered, source = sys.argv[1], sys.argv[2]
lines = open(rendered).read().splitlines()
start = next(i for i, line in enumerate(lines) if line.strip().startswith("valkey-coordinator.json:"))
body = "\n".join(line[4:] for line in lines[start + 1:])
carried = json.loads(body)
original = json.load(open(source))
assert carried == original, "the ConfigMap's dashboard differs from dashboards/valkey-coordinator.json"
assert original["uid"] and original["title"] and original["panels"], "dashboard lacks uid, title or panels"
print(f"dashboard: {len(original['panels'])} panels, carried unchanged by the ConfigMap")
EOF

# Every dashboard query must be valid PromQL: each becomes a recording rule for promtool, with
# Grafana's variables given values (label_values(SELECTOR, LABEL) checks its SELECTOR).
python3 - "$chart/dashboards/valkey-coordinator.json" >"$work/dashboard-rules.yaml" <<'EOF'
import json, re, sys
dash = json.load(open(sys.argv[1]))
exprs = []
def walk(node):
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str):
            exprs.append(node["expr"])
        for value in node.values():
            walk(value)
    elif isinstance(node, list):
        for value in node:
            walk(value)
walk(dash["panels"])
for variable in dash["templating"]["list"]:
    if variable.get("type") != "query":
        continue
    query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
    match = re.fullmatch(r"label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)", query)
    assert match, f"unexpected variable query {query!r}"
    exprs.append(match.group(1))
def concrete(expr):
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
    return re.sub(r"\$\{?([a-zA-Z_]+)\}?", lambda m: "value_of_" + m.group(1), expr)
print("groups:\n  - name: dashboard\n    rules:")
for i, expr in enumerate(exprs):
    print(f"      - record: dashboard:query_{i}\n        expr: {json.dumps(concrete(expr))}")
EOF
"$promtool" check rules "$work/dashboard-rules.yaml"
