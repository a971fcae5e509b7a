//! The KubeBlocks addon under `addon/`, judged by the real tools `tests/install-addon-tools.sh`
//! installs: Helm 3 and Helm 4 (`lint --strict`, `template`, `package`), a real kube-apiserver
//! with every KubeBlocks and prometheus-operator CRD (server-side dry run, strict field
//! validation), shellcheck, bats and promtool.
//!
//! Every chart is a folder under `addon/` with a Chart.yaml. Each is rendered with its default
//! values, with every `enabled` switch of its values.yaml turned on, and with each
//! `ci/*-values.yaml` it has (the chart-testing convention), all in namespace `demo`. Failures
//! are collected, so one run names every problem. The API server is started once for everything
//! the addon renders, and once more (with one CRD) for the check that the judge rejects what it
//! must.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use valkey_lab::{
    apiserver::{ApiServer, ApiServerSpec, Object, kubeblocks_crds_dir, split_documents},
    helm::{Helm, HelmVersion, Values, deps_dir, project_root},
};

const NAMESPACE: &str = "demo";
const RELEASE: &str = "valkey-lab";

fn addon_dir() -> PathBuf {
    project_root().join("addon")
}

/// Every file under `dir` (recursively, sorted) whose name satisfies `keep`.
fn files_under(dir: &Path, keep: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        let Ok(entries) = fs::read_dir(&at) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if keep(&path) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.contains(&e))
}

/// The chart folders: `addon/*/Chart.yaml`.
fn charts() -> Vec<PathBuf> {
    let mut charts: Vec<PathBuf> = fs::read_dir(addon_dir())
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.join("Chart.yaml").is_file())
                .collect()
        })
        .unwrap_or_default();
    charts.sort();
    charts
}

fn chart_name(chart: &Path) -> String {
    chart
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// One way of rendering a chart: a name for reports and the values.
struct Variant {
    name: String,
    values: Values,
}

/// Every `enabled` key of a values.yaml, as dotted paths (`tls.enabled`, `monitoring.podMonitor.enabled`).
fn enabled_switches(values: &serde_yaml_ng::Value, prefix: &str, out: &mut Vec<String>) {
    if let serde_yaml_ng::Value::Mapping(map) = values {
        for (key, value) in map {
            let Some(key) = key.as_str() else { continue };
            let path = if prefix.is_empty() {
                key.to_string()
            } else {
                format!("{prefix}.{key}")
            };
            if key == "enabled" && value.is_bool() {
                out.push(path);
            } else {
                enabled_switches(value, &path, out);
            }
        }
    }
}

/// The renderings of a chart: defaults, every switch on, and each `ci/*-values.yaml`.
fn variants(chart: &Path) -> Vec<Variant> {
    let base = Values::default().namespace(NAMESPACE);
    let mut variants = vec![Variant {
        name: "default values".into(),
        values: base.clone(),
    }];
    let values_text = fs::read_to_string(chart.join("values.yaml")).unwrap_or_default();
    let values: serde_yaml_ng::Value = serde_yaml_ng::from_str(&values_text).unwrap_or_default();
    let mut switches = Vec::new();
    enabled_switches(&values, "", &mut switches);
    if !switches.is_empty() {
        let mut on = base.clone();
        for switch in &switches {
            on = on.set(switch.clone(), "true");
        }
        variants.push(Variant {
            name: format!("every switch on ({})", switches.join(", ")),
            values: on,
        });
    }
    for file in files_under(&chart.join("ci"), &|p| has_extension(p, &["yaml", "yml"])) {
        variants.push(Variant {
            name: format!("values {}", file.display()),
            values: base.clone().file(file),
        });
    }
    variants
}

/// Renders every chart in every variant with `helm`: (label, YAML) per rendering; failures
/// are pushed onto `failures`.
fn render_all(helm: &Helm, failures: &mut Vec<String>) -> Vec<(String, String)> {
    let mut rendered = Vec::new();
    for chart in charts() {
        let staged = match helm.stage(&chart) {
            Ok(staged) => staged,
            Err(error) => {
                failures.push(format!(
                    "{} with {}: {error}",
                    chart.display(),
                    helm.version()
                ));
                continue;
            }
        };
        for variant in variants(&chart) {
            let label = format!(
                "{} ({}, {})",
                chart_name(&chart),
                helm.version(),
                variant.name
            );
            match helm.template(staged.path(), RELEASE, &variant.values) {
                Ok(yaml) => rendered.push((label, yaml)),
                Err(error) => failures.push(format!("helm template of {label}: {error}")),
            }
        }
    }
    rendered
}

fn assert_no_failures(what: &str, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{what}: {} failure(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_chart_passes_helm_lint_strict_with_helm_3_and_helm_4() {
    let mut failures = Vec::new();
    let mut linted = 0;
    for version in HelmVersion::ALL {
        let helm = Helm::new(version).expect("Helm is installed");
        for chart in charts() {
            let staged = match helm.stage(&chart) {
                Ok(staged) => staged,
                Err(error) => {
                    failures.push(format!("{} with {version}: {error}", chart.display()));
                    continue;
                }
            };
            for variant in variants(&chart) {
                match helm.lint_strict(staged.path(), &variant.values) {
                    Ok(_) => linted += 1,
                    Err(error) => failures.push(format!(
                        "{} with {version}, {}: {error}",
                        chart_name(&chart),
                        variant.name
                    )),
                }
            }
        }
    }
    assert_no_failures("helm lint --strict", &failures);
    eprintln!(
        "addon charts: helm lint --strict passed {linted} time(s) (charts x variants x 2 Helm versions)"
    );
}

/// The (kind, name) pairs of a rendering, to compare Helm 3's with Helm 4's.
fn identities(yaml: &str) -> BTreeSet<(String, String)> {
    split_documents("", yaml)
        .into_iter()
        .flatten()
        .map(|o| (o.kind, o.name))
        .collect()
}

#[test]
fn every_chart_renders_the_same_objects_with_helm_3_and_helm_4() {
    let mut failures = Vec::new();
    let helm3 = Helm::new(HelmVersion::V3).expect("Helm 3 is installed");
    let helm4 = Helm::new(HelmVersion::V4).expect("Helm 4 is installed");
    let with3 = render_all(&helm3, &mut failures);
    let with4 = render_all(&helm4, &mut failures);
    for ((label3, yaml3), (label4, yaml4)) in with3.iter().zip(&with4) {
        let (objects3, objects4) = (identities(yaml3), identities(yaml4));
        if objects3 != objects4 {
            failures.push(format!(
                "{label3} and {label4} render different objects: only Helm 3: {:?}; only Helm 4: {:?}",
                objects3.difference(&objects4).collect::<Vec<_>>(),
                objects4.difference(&objects3).collect::<Vec<_>>()
            ));
        }
    }
    assert_no_failures("helm template", &failures);
}

#[test]
fn every_chart_packages_with_helm_3_and_helm_4() {
    let mut failures = Vec::new();
    for version in HelmVersion::ALL {
        let helm = Helm::new(version).expect("Helm is installed");
        for chart in charts() {
            let packaged = helm
                .stage(&chart)
                .and_then(|staged| helm.package(staged.path()));
            match packaged {
                Ok(archive) => {
                    let listing = Command::new("tar").arg("-tzf").arg(&archive).output();
                    let chart_yaml = format!("{}/Chart.yaml", chart_name(&chart));
                    match listing {
                        Ok(out)
                            if String::from_utf8_lossy(&out.stdout)
                                .lines()
                                .any(|l| l == chart_yaml) => {}
                        Ok(out) => failures.push(format!(
                            "{} from {version} has no {chart_yaml}: {}",
                            archive.display(),
                            String::from_utf8_lossy(&out.stderr)
                        )),
                        Err(error) => {
                            failures.push(format!("tar -tzf {}: {error}", archive.display()))
                        }
                    }
                }
                Err(error) => {
                    failures.push(format!("{} with {version}: {error}", chart_name(&chart)))
                }
            }
        }
    }
    assert_no_failures("helm package", &failures);
}

/// Every YAML file under `addon/examples/`: (label, text).
fn examples() -> Vec<(String, String)> {
    files_under(&addon_dir().join("examples"), &|p| {
        has_extension(p, &["yaml", "yml"])
    })
    .into_iter()
    .map(|file| {
        let text =
            fs::read_to_string(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let label = file
            .strip_prefix(project_root())
            .unwrap_or(&file)
            .display()
            .to_string();
        (label, text)
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rendered_resource_and_example_is_accepted_by_the_api_server_with_strict_validation()
{
    let started = Instant::now();
    let spec = ApiServerSpec::all_crds().expect("the CRDs are there");
    let server = ApiServer::start(&spec)
        .await
        .expect("the API server starts");
    let start_time = server.started_in();

    let mut failures = Vec::new();
    let mut objects: Vec<Object> = Vec::new();
    for version in HelmVersion::ALL {
        let helm = Helm::new(version).expect("Helm is installed");
        for (label, yaml) in render_all(&helm, &mut failures) {
            for document in split_documents(&label, &yaml) {
                match document {
                    Ok(object) => objects.push(object),
                    Err(bad) => failures.push(format!("{}: {}", bad.source, bad.reason)),
                }
            }
        }
    }
    let rendered = objects.len();
    for (label, text) in examples() {
        for document in split_documents(&label, &text) {
            match document {
                Ok(object) => objects.push(object),
                Err(bad) => failures.push(format!("{}: {}", bad.source, bad.reason)),
            }
        }
    }
    let validating = Instant::now();
    let validation = server
        .validate(&objects, NAMESPACE)
        .await
        .expect("the API server judges the objects");
    let validate_time = validating.elapsed();
    if !validation.all_accepted() {
        failures.push(validation.report());
    }
    eprintln!(
        "addon charts: API server (kube-apiserver {}) ready in {:.1} s, its {} CRDs Established by {:.1} s; {} rendered objects and {} from examples judged in {:.1} s ({} kubectl batches); {:.1} s in all",
        valkey_lab::apiserver::KUBERNETES_VERSION,
        server.ready_in().as_secs_f64(),
        spec.crds.len(),
        start_time.as_secs_f64(),
        rendered,
        objects.len() - rendered,
        validate_time.as_secs_f64(),
        server.batches(),
        started.elapsed().as_secs_f64()
    );
    assert_no_failures("strict server-side validation", &failures);
}

/// A ComponentDefinition as the addon writes one, with `extra` spliced into its spec.
fn component_definition(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: apps.kubeblocks.io/v1\nkind: ComponentDefinition\nmetadata:\n  name: {name}\nspec:\n  serviceKind: valkey\n{extra}  runtime:\n    containers:\n      - name: valkey\n        image: docker.io/valkey/valkey:9.1.2\n        ports:\n          - name: valkey\n            containerPort: 6379\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_validation_rejects_an_unknown_field_and_a_cel_violation_that_helm_lint_lets_through()
 {
    // Only the CRD these objects need, so this second server starts quickly.
    let spec = ApiServerSpec::crds([
        kubeblocks_crds_dir().join("apps.kubeblocks.io_componentdefinitions.yaml")
    ]);
    let server = ApiServer::start(&spec)
        .await
        .expect("the API server starts");

    // The upstream trap: `passwordGenerationPolicy` is not in the v1 CRD (it is `passwordConfig`).
    let unknown = component_definition(
        "unknown-field",
        "  systemAccounts:\n    - name: default\n      initAccount: true\n      passwordGenerationPolicy:\n        length: 16\n",
    );
    // replicasLimit's CEL rule: the minimum replicas limit should be no greater than the maximum.
    let cel = component_definition(
        "cel-violation",
        "  replicasLimit:\n    minReplicas: 5\n    maxReplicas: 3\n",
    );
    let valid = component_definition(
        "valid",
        "  systemAccounts:\n    - name: default\n      initAccount: true\n      passwordConfig:\n        length: 16\n  replicasLimit:\n    minReplicas: 1\n    maxReplicas: 16\n",
    );
    let bad_service = "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad-port\nspec:\n  ports:\n    - name: valkey\n      port: 70000\n";

    // The unknown field, in a throwaway chart: real `helm lint --strict` passes it.
    let chart_dir =
        std::env::temp_dir().join(format!("valkey-lab-bad-chart-{}", std::process::id()));
    let chart = chart_dir.join("bad-addon");
    fs::create_dir_all(chart.join("templates")).expect("creating the throwaway chart");
    fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: bad-addon\ndescription: a chart with a field the CRD does not have\nversion: 0.1.0\nicon: https://valkey.io/img/valkey-horizontal.svg\n",
    )
    .expect("writing Chart.yaml");
    fs::write(chart.join("values.yaml"), "{}\n").expect("writing values.yaml");
    fs::write(chart.join("templates/cmpd.yaml"), &unknown).expect("writing the template");
    let mut rendered = Vec::new();
    for version in HelmVersion::ALL {
        let helm = Helm::new(version).expect("Helm is installed");
        helm.lint_strict(&chart, &Values::default())
            .unwrap_or_else(|e| panic!("{version} lints the throwaway chart: {e}"));
        rendered.push(
            helm.template(&chart, "bad", &Values::default())
                .unwrap_or_else(|e| panic!("{version} renders the throwaway chart: {e}")),
        );
    }
    let _ = fs::remove_dir_all(&chart_dir);

    for yaml in &rendered {
        let validation = server
            .validate_yaml("throwaway chart", yaml)
            .await
            .expect("judged");
        let verdict = validation
            .verdict("ComponentDefinition", "unknown-field")
            .expect("the rendered ComponentDefinition was judged");
        let error = verdict
            .error
            .as_deref()
            .expect("the unknown field is rejected");
        assert!(
            error.contains(".spec.systemAccounts[0].passwordGenerationPolicy")
                && error.contains("field not declared in schema"),
            "the rejection names the field: {error}"
        );
    }

    let inline = format!("{valid}---\n{cel}---\n{bad_service}");
    let validation = server
        .validate_yaml("inline", &inline)
        .await
        .expect("judged");
    let error = |kind: &str, name: &str| {
        validation
            .verdict(kind, name)
            .unwrap_or_else(|| panic!("{kind} {name} was judged"))
            .error
            .clone()
    };
    assert_eq!(
        error("ComponentDefinition", "valid"),
        None,
        "a valid ComponentDefinition is accepted"
    );
    let cel_error =
        error("ComponentDefinition", "cel-violation").expect("the CEL violation is rejected");
    assert!(
        cel_error.contains("the minimum replicas limit should be no greater than the maximum"),
        "the rejection quotes the CEL rule's message: {cel_error}"
    );
    let port_error =
        error("Service", "bad-port").expect("a core kind's own validation rejects port 70000");
    assert!(port_error.contains("70000"), "{port_error}");
    eprintln!(
        "addon charts: the judge's own check server started in {:.1} s",
        server.started_in().as_secs_f64()
    );
}

fn tool(path: &[&str]) -> PathBuf {
    let mut binary = deps_dir();
    for part in path {
        binary.push(part);
    }
    assert!(
        binary.is_file(),
        "{} is missing; run tests/install-addon-tools.sh",
        binary.display()
    );
    binary
}

fn shellcheck() -> PathBuf {
    tool(&["shellcheck", "0.11.0", "shellcheck"])
}

fn bats() -> PathBuf {
    tool(&["bats", "1.14.0", "bin", "bats"])
}

fn rclone() -> PathBuf {
    tool(&["rclone", "1.60.1", "rclone"])
}

fn promtool() -> PathBuf {
    tool(&["promtool", "0.316.0", "promtool"])
}

/// Runs a checker; `None` when it passed, else what it printed.
fn check(mut command: Command) -> Option<String> {
    match command.output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(error) => Some(format!("could not run {command:?}: {error}")),
    }
}

/// The scripts the charts embed: ConfigMap entries named `*.sh` or starting with `#!`, from
/// every rendering (deduplicated), as (label, script).
/// Every script a rendered ConfigMap carries: (label, ConfigMap name, key, body), once per
/// ConfigMap and key.
fn embedded_scripts(failures: &mut Vec<String>) -> Vec<(String, String, String, String)> {
    let mut seen = BTreeSet::new();
    let mut scripts = Vec::new();
    for version in HelmVersion::ALL {
        let helm = Helm::new(version).expect("Helm is installed");
        for (label, yaml) in render_all(&helm, failures) {
            for object in split_documents(&label, &yaml).into_iter().flatten() {
                if object.kind != "ConfigMap" {
                    continue;
                }
                let Ok(value) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&object.text)
                else {
                    continue;
                };
                let Some(serde_yaml_ng::Value::Mapping(data)) = value.get("data") else {
                    continue;
                };
                for (key, body) in data {
                    let (Some(key), Some(body)) = (key.as_str(), body.as_str()) else {
                        continue;
                    };
                    if (key.ends_with(".sh") || body.starts_with("#!"))
                        && seen.insert((object.name.clone(), key.to_string()))
                    {
                        scripts.push((
                            format!("{}: ConfigMap {} key {key}", object.source, object.name),
                            object.name.clone(),
                            key.to_string(),
                            body.to_string(),
                        ));
                    }
                }
            }
        }
    }
    scripts
}

#[test]
fn every_shell_script_of_the_addon_and_every_script_the_charts_embed_is_shellcheck_clean() {
    let shellcheck = shellcheck();
    let mut failures = Vec::new();
    let mut checked = 0;
    for script in files_under(&addon_dir(), &|p| has_extension(p, &["sh", "bash"])) {
        let text = fs::read_to_string(&script).unwrap_or_default();
        if text.contains("{{") {
            // A template, checked below as the charts render it.
            continue;
        }
        checked += 1;
        let mut command = Command::new(&shellcheck);
        // Sourced helpers are followed from the script's own folder (`# shellcheck source=x.sh`).
        command
            .args(["--external-sources", "--source-path=SCRIPTDIR"])
            .arg(&script);
        if let Some(report) = check(command) {
            failures.push(format!("{}:\n{report}", script.display()));
        }
    }
    let dir = std::env::temp_dir().join(format!(
        "valkey-lab-embedded-scripts-{}",
        std::process::id()
    ));
    fs::create_dir_all(&dir).expect("creating a scratch folder");
    // Each ConfigMap's scripts side by side under their own names, as the pod mounts them, so
    // a script sourcing a sibling (`. "${0%/*}/common.sh"`) is followed.
    let embedded = embedded_scripts(&mut failures);
    for (_, config_map, key, body) in &embedded {
        let folder = dir.join(config_map);
        fs::create_dir_all(&folder).expect("creating a scratch folder");
        fs::write(folder.join(key), body).expect("writing an embedded script");
    }
    for (label, config_map, key, _) in &embedded {
        checked += 1;
        let mut command = Command::new(&shellcheck);
        command
            .args(["--external-sources", "--source-path=SCRIPTDIR"])
            .arg(dir.join(config_map).join(key));
        if let Some(report) = check(command) {
            failures.push(format!("{label}:\n{report}"));
        }
    }
    let _ = fs::remove_dir_all(&dir);
    assert_no_failures("shellcheck", &failures);
    eprintln!("addon charts: shellcheck passed on {checked} script(s)");
}

#[test]
fn every_bats_suite_under_the_addon_passes() {
    let bats = bats();
    let mut failures = Vec::new();
    for suite in files_under(&addon_dir(), &|p| has_extension(p, &["bats"])) {
        let mut command = Command::new(&bats);
        command.arg(&suite).env("DATASAFED_RCLONE", rclone());
        if let Some(report) = check(command) {
            failures.push(format!("{}:\n{report}", suite.display()));
        }
    }
    assert_no_failures("bats", &failures);
}

#[test]
fn the_datasafed_double_is_shellcheck_clean_and_keeps_datasafeds_contract() {
    let double = project_root().join("tests/addon/datasafed");
    let suite = project_root().join("tests/addon/datasafed.bats");
    let mut command = Command::new(shellcheck());
    command.arg(&double).arg(&suite);
    if let Some(report) = check(command) {
        panic!("shellcheck of the datasafed double:\n{report}");
    }
    let mut command = Command::new(bats());
    command.arg(&suite).env("DATASAFED_RCLONE", rclone());
    if let Some(report) = check(command) {
        panic!(
            "the datasafed double's contract ({}):\n{report}",
            suite.display()
        );
    }
}

#[test]
fn every_rendered_prometheus_rule_passes_promtool_check_rules() {
    let promtool = promtool();
    let mut failures = Vec::new();
    let mut seen = BTreeSet::new();
    let dir = std::env::temp_dir().join(format!("valkey-lab-promtool-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("creating a scratch folder");
    for version in HelmVersion::ALL {
        let helm = Helm::new(version).expect("Helm is installed");
        for (label, yaml) in render_all(&helm, &mut failures) {
            for object in split_documents(&label, &yaml).into_iter().flatten() {
                if object.kind != "PrometheusRule" || !seen.insert(object.text.clone()) {
                    continue;
                }
                // A PrometheusRule's spec is a Prometheus rule file (`groups:`).
                let value: serde_yaml_ng::Value =
                    serde_yaml_ng::from_str(&object.text).expect("parsed before");
                let spec = value.get("spec").cloned().unwrap_or_default();
                let file = dir.join(format!("rules-{}.yaml", seen.len()));
                fs::write(&file, serde_yaml_ng::to_string(&spec).expect("YAML"))
                    .expect("writing the rules");
                let mut command = Command::new(&promtool);
                command.args(["check", "rules"]).arg(&file);
                if let Some(report) = check(command) {
                    failures.push(format!("{object}:\n{report}"));
                }
            }
        }
    }
    let _ = fs::remove_dir_all(&dir);
    assert_no_failures("promtool check rules", &failures);
    eprintln!(
        "addon charts: promtool check rules passed on {} PrometheusRule(s)",
        seen.len()
    );
}

#[test]
fn every_charts_own_check_script_passes_with_the_real_tools() {
    // `addon/<chart>/tests/check-*.sh`, given the installed Helm 4 and promtool.
    let helm = HelmVersion::V4.binary_path();
    let mut failures = Vec::new();
    for chart in charts() {
        for script in files_under(&chart.join("tests"), &|p| {
            has_extension(p, &["sh"])
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("check-"))
        }) {
            let mut command = Command::new("bash");
            command
                .arg(&script)
                .env("HELM", &helm)
                .env("PROMTOOL", promtool());
            if let Some(report) = check(command) {
                failures.push(format!("{}:\n{report}", script.display()));
            }
        }
    }
    assert_no_failures("the charts' check scripts", &failures);
}

/// The least-privilege users the addon creates are exactly those the ACL scenarios prove
/// (`tests/src/acl.rs`): the sentinel user on the data pods with Valkey 9's list (8.x
/// sentinels never send its last three), the coordinator user on the sentinels.
#[test]
fn the_addons_acl_users_are_the_rules_the_acl_scenarios_prove() {
    let values: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(addon_dir().join("valkey/values.yaml")).expect("values.yaml"),
    )
    .expect("YAML");
    let rules = |key: &str| {
        values["acl"][key]
            .as_str()
            .unwrap_or_else(|| panic!("acl.{key} in values.yaml"))
            .to_owned()
    };
    assert_eq!(
        rules("sentinelUser"),
        valkey_lab::acl::sentinel_user_rules(valkey_lab::ValkeyVersion::V9_1_2)
    );
    assert_eq!(
        rules("coordinatorUser"),
        valkey_lab::acl::coordinator_user::RULES.join(" ")
    );
}
