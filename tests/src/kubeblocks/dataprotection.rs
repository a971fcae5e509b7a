//! Data protection as KubeBlocks 1.x runs it: a Backup of the data component through the addon's
//! ActionSet, and a Cluster created from that Backup (`Cluster.spec.restore`).
//!
//! The facts this follows, read in apecloud/kubeblocks at 13138f4639 (the commit of the CRDs):
//!
//! Backup (`pkg/dataprotection/backup/request.go`, `controllers/dataprotection/backup_controller.go`)
//! - The BackupPolicy KubeBlocks makes from the template is `<cluster>-<component>-backup-policy`
//!   with `pathPrefix` `/<cluster>-<cluster UID>/<component>`; its target selects the pods of the
//!   component labelled with the template's `role` (only with more than one replica) and, when
//!   none is available, `fallbackRole`; strategy Any takes the first available pod by name; the
//!   method's env resolves `versionMapping` by the component's serviceVersion, exact match first,
//!   then prefix or regular expression (`controllers/dataprotection/backuppolicydriver_controller.go`,
//!   `controllers/dataprotection/utils.go` `GetTargetPods`, `pkg/controller/component/utils.go`).
//! - Per target pod the actions run in order, each only once the one before completed, and a
//!   failed one fails the backup (`backup_controller.go`, the `targetPodBackupActions` loop):
//!   preBackup, backupData, postBackup. `onError` is not read by the controller.
//! - An exec action is a Job running `kubectl -n NS exec POD -c CONTAINER -- COMMAND...`
//!   (`pkg/dataprotection/action/action_exec.go`): the command runs as given (no `$(VAR)`
//!   expansion, no shell) in the running container, with that container's environment and mounts.
//!   Its `timeout` is carried but never applied; the Job's backoffLimit is the default 2
//!   (`pkg/dataprotection/types/types.go`), so a failed command runs up to three times.
//! - backupData is a Job (`BuildJobActionPodSpec`): image `$(VAR)`-expanded with its env; env =
//!   the target pod's first container's env (the component vars are injected at its front,
//!   `pkg/controller/component/vars.go`), then `DP_BACKUP_NAME`, `DP_TARGET_POD_NAME`,
//!   `DP_TARGET_POD_ROLE`, `DP_BACKUP_BASE_PATH` (`/<repo prefix>/<namespace>/<policy
//!   pathPrefix>/<backup>` plus the target's relative path, empty for one unnamed target,
//!   `pkg/dataprotection/backup/utils.go`), `DP_BACKUP_INFO_FILE` (`/dp-manager/backup.info`),
//!   `DP_TTL`, `DP_DB_HOST` (the pod's DNS name, else its IP) and `DP_DB_PORT` (the first port of
//!   the first container) with no connection credential, the ActionSet's env, the Backup's
//!   parameters, `KB_CLUSTER_UID`, `KB_CLUSTER_NAME`, `KB_COMP_NAME`, `KB_NAMESPACE`; the backup
//!   method's env replaces same-named entries. With `runOnTargetPodNode` the method's
//!   `targetVolumes.volumeMounts` of the target pod are mounted. A `manager` sidecar waits for
//!   `DP_BACKUP_INFO_FILE` (or its `.exit` twin, which fails the pod), patches the Backup's
//!   status from it and pushes the Backup object as `/kubeblocks-backup.json` with datasafed.
//!   backoffLimit: the policy's, else 2.
//! - datasafed (`pkg/dataprotection/utils/backuprepo.go` `InjectDatasafed`): an init container
//!   copies the binary into an emptyDir at `/bin/datasafed` and `DP_DATASAFED_BIN_PATH` names that
//!   directory (scripts put it on PATH); a BackupRepo of access method Mount is its PVC at
//!   `/backupdata` with `DATASAFED_LOCAL_BACKEND_PATH=/backupdata` (Tool mounts the config at
//!   `/etc/datasafed` instead). Scripts set `DATASAFED_BACKEND_BASE_PATH` from
//!   `DP_BACKUP_BASE_PATH` themselves, as the manager's script does.
//! - The Backup records the cluster's system account Secrets, per component, in the annotation
//!   `kubeblocks.io/encrypted-system-accounts` (`backup_controller.go`
//!   `setEncryptedSystemAccountsAnnotation`); `status.path` is the base path without the target's
//!   part.
//!
//! Restore (`controllers/apps/cluster/restore_intent.go`,
//! `controllers/dataprotection/volumepopulator_controller.go`, `pkg/dataprotection/restore/`)
//! - `Cluster.spec.restore` puts a `dataSourceRef` to the Backup on every volume claim template;
//!   the volume populator handles each PVC the workload creates for a pod: a claim the backup's
//!   `targetVolumes` names gets prepareData, any other is provisioned empty. The pod stays Pending
//!   until its PVC is bound, so with OrderedReady pod N's volume is prepared when pod N is created,
//!   after pod N-1 is Ready. Volume restore policy (parameter
//!   `dataprotection.kubeblocks.io/volume-restore-policy`, default Parallel): Serial makes a PVC
//!   wait for the ones before it by name. Before that the data component's account Secrets are
//!   recreated from the Backup's annotation (`restoreSystemAccountSecrets`), marked provisioned.
//! - prepareData is one Job per PVC (`BuildPrepareDataJobs`, `builder.go`): the fresh volume at
//!   the mount path the backup's `targetVolumes.volumeMounts` gives its claim; env
//!   `DP_BACKUP_NAME`, `DP_TARGET_RELATIVE_PATH`, `DP_BACKUP_ROOT_PATH` (status.path/..),
//!   `DP_BACKUP_BASE_PATH` (status.path plus the relative path), `DP_BACKUP_STOP_TIME` (RFC 3339
//!   unless the ActionSet sets `DP_TIME_FORMAT`), the restore's parameters, the ActionSet's env,
//!   the backup method's env from the Backup's status, the restore's env, then datasafed's as for
//!   a backup; no target pod env; image `$(VAR)`-expanded; run as root; backoffLimit 1
//!   (`restore/types.go`), so two attempts.
//! - postReady, once every restore PVC of the component is bound, the component is Running and its
//!   postProvision has run (`ensurePostReadyRestoreCompleted`): one Restore per component whose
//!   exec steps run, in order, in every pod of the component (`BuildPostReadyActionJobs`), each a
//!   `kubectl exec` Job with backoffLimit 1; a failure fails the restore.
//!
//! What the stand-in does differently: the BackupRepo is a directory (access method Mount) that
//! outlives the cluster; the datasafed binary is the project's test double
//! (`tests/addon/datasafed`, over real rclone, which goes beside it in the bin directory as the
//! real datasafed carries rclone inside); a Job's pod gets 127.0.0.1 as its IP; an exec's and a
//! Job's time is capped (KubeBlocks sets none) so a hang fails the test; the manager sidecar's
//! status patch is the returned [`Backup`]; postReady runs its pods one after another.

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::KubeError;
use super::cluster::{ClusterSpec, KubeCluster, append_log};
use super::pod::{self, Exec, Outcome, PathMap};

/// Where KubeBlocks mounts the pieces of a data protection Job.
const MANAGER_MOUNT: &str = "/dp-manager";
const REPO_MOUNT: &str = "/backupdata";
const DATASAFED_BIN_MOUNT: &str = "/bin/datasafed";
const BACKUP_INFO_FILE: &str = "backup.info";
/// Job backoff limits: a backup Job's default, a restore Job's default.
const BACKUP_JOB_BACKOFF: u32 = 2;
const RESTORE_JOB_BACKOFF: u32 = 1;
/// The stand-in's cap on a Job (KubeBlocks sets no deadline).
const JOB_CAP: Duration = Duration::from_secs(900);
/// The volume restore policy parameter of `Cluster.spec.restore`.
const VOLUME_RESTORE_POLICY: &str = "dataprotection.kubeblocks.io/volume-restore-policy";

/// A BackupRepo with access method Mount: a directory outside any cluster's, removed when the
/// last [`Backup`] in it is dropped (kept with `VALKEY_LAB_KEEP`).
#[derive(Debug)]
struct Repo {
    dir: PathBuf,
}

impl Drop for Repo {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("VALKEY_LAB_KEEP").is_some() {
            eprintln!("backup repo kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A completed Backup: what its status and annotations hold, and the repository it is in.
#[derive(Debug)]
pub struct Backup {
    /// `metadata.name`, `metadata.namespace`.
    pub name: String,
    pub namespace: String,
    /// The backed-up cluster and component (the Backup's labels).
    pub cluster: String,
    pub component: String,
    /// `status.path`.
    pub path: String,
    /// `DP_BACKUP_BASE_PATH` of the target (status.path plus the target's relative path).
    pub base_path: String,
    /// The target pod and its role label when it was picked.
    pub target_pod: String,
    pub target_role: String,
    /// `status.backupMethod`: its name, its ActionSet, its resolved env and target volume mounts.
    pub method: String,
    pub action_set: String,
    pub method_env: Vec<(String, String)>,
    pub target_volume_mounts: Vec<(String, String)>,
    /// `status.totalSize`, as the backup Job wrote it.
    pub total_size: String,
    /// `status.completionTimestamp`, RFC 3339.
    pub completed: String,
    /// The system account passwords per component (`kubeblocks.io/encrypted-system-accounts`).
    pub accounts: BTreeMap<String, BTreeMap<String, String>>,
    /// Every object under the base path, as `datasafed list -r -f /` prints them.
    pub pushed: Vec<String>,
    /// Each step that ran, with its output (for a report).
    pub log: Vec<String>,
    repo: Repo,
}

impl Backup {
    /// The repository directory (`DATASAFED_LOCAL_BACKEND_PATH`).
    pub fn repo_dir(&self) -> &Path {
        &self.repo.dir
    }
}

/// What a cluster left on this machine: its directory, its volumes and its processes.
#[derive(Debug, Clone)]
pub struct Footprint {
    pub root: PathBuf,
    pub volumes: Vec<PathBuf>,
    pub pids: Vec<u32>,
}

impl Footprint {
    /// Whatever is still there: existing paths and live processes.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left: Vec<String> = std::iter::once(&self.root)
            .chain(&self.volumes)
            .filter(|path| path.exists())
            .map(|path| path.display().to_string())
            .collect();
        left.extend(
            self.pids
                .iter()
                .filter(|&&pid| pid_alive(pid))
                .map(|pid| format!("process {pid}")),
        );
        left
    }
}

/// A pod's process still runs: /proc has it and it is no zombie.
fn pid_alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z")
        })
        .unwrap_or(false)
}

/// The BackupPolicyTemplate's choices for one component.
#[derive(Debug)]
struct Policy {
    component: String,
    role: Option<String>,
    fallback_role: Option<String>,
    method: String,
    action_set: Value,
    method_env: Vec<(String, String)>,
    target_volume_mounts: Vec<(String, String)>,
    backoff: u32,
}

impl KubeCluster {
    /// What this cluster leaves behind: its directory, every volume of every pod, every
    /// container's pid. Read it before dropping the cluster, check it after.
    pub fn footprint(&self) -> Footprint {
        let mut volumes = Vec::new();
        let mut pids = Vec::new();
        for (name, c) in &self.components {
            for pod in c.pods.values() {
                pids.extend(pod.containers.iter().map(|running| running.child.id()));
                if let Ok(dirs) = self.volume_dirs(name, &pod.name) {
                    volumes.extend(dirs.into_values());
                }
            }
        }
        Footprint {
            root: self.root.clone(),
            volumes,
            pids,
        }
    }

    /// The directory of a pod's PVC of claim template `claim` (it exists once the PVC does).
    pub fn claim_dir(&self, component: &str, ordinal: usize, claim: &str) -> PathBuf {
        self.root
            .join("pvc")
            .join(format!("{claim}-{}", self.pod_name(component, ordinal)))
    }

    /// A Backup named `name` with the default BackupPolicy of the component the addon's
    /// BackupPolicyTemplate covers, run as KubeBlocks' dataprotection runs the method's
    /// ActionSet: the target pod by role, then preBackup, backupData and postBackup in order.
    pub async fn backup(&mut self, name: &str) -> Result<Backup, KubeError> {
        let policy = self.backup_policy()?;
        let component = policy.component.clone();
        let (ordinal, role) = self.backup_target(&policy).await?;
        let target_pod = self.pod_name(&component, ordinal);
        let repo = Repo {
            dir: new_repo_dir()?,
        };
        let uid = cluster_uid(&self.spec.name, &self.root);
        // BuildBaseBackupPath: /<repo prefix>/<namespace>/<policy pathPrefix>/<backup>, the
        // policy's pathPrefix being /<cluster>-<uid>/<component>; one unnamed target with
        // strategy Any adds nothing.
        let path = format!(
            "/{}/{}-{uid}/{component}/{name}",
            self.spec.namespace, self.spec.name
        );
        let base_path = path.clone();
        let mut log = vec![format!(
            "target {target_pod} (role {role:?}), path {path}, repo {}",
            repo.dir.display()
        )];
        let spec = &policy.action_set["spec"];
        let job_root = self.root.join("dp").join(name);

        for (i, action) in spec["backup"]["preBackup"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let outcome = self
                .backup_action(&policy, ordinal, action, &format!("dp-prebackup-{i}-0"))
                .await?;
            log.push(format!("preBackup {i}: {}", outcome.stdout.trim()));
        }

        let backup_data = &spec["backup"]["backupData"];
        let mut total_size = String::new();
        if !backup_data.is_null() {
            let job = BackupJob {
                backup: name,
                path: &base_path,
                role: &role,
                uid: &uid,
                repo: &repo.dir,
                job_root: &job_root,
            };
            let (outcome, info) = self
                .run_backup_data(&policy, ordinal, backup_data, &job)
                .await?;
            total_size = info["totalSize"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| info["totalSize"].as_u64().map(|n| n.to_string()))
                .unwrap_or_default();
            log.push(format!("backupData: {}", outcome.stdout.trim()));
        }

        for (i, action) in spec["backup"]["postBackup"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let outcome = self
                .backup_action(&policy, ordinal, action, &format!("dp-postbackup-{i}-0"))
                .await?;
            log.push(format!("postBackup {i}: {}", outcome.stdout.trim()));
        }

        let mut accounts: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for ((comp, account), password) in &self.passwords {
            accounts
                .entry(comp.clone())
                .or_default()
                .insert(account.clone(), password.clone());
        }
        let datasafed_bin = self.datasafed_bin()?;
        let pushed = datasafed_list(&datasafed_bin, &repo.dir, &base_path).await?;
        Ok(Backup {
            name: name.to_owned(),
            namespace: self.spec.namespace.clone(),
            cluster: self.spec.name.clone(),
            component,
            path,
            base_path,
            target_pod,
            target_role: role,
            method: policy.method.clone(),
            action_set: policy.action_set["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            method_env: policy.method_env.clone(),
            target_volume_mounts: policy.target_volume_mounts.clone(),
            total_size,
            completed: rfc3339(SystemTime::now()),
            accounts,
            pushed,
            log,
            repo,
        })
    }

    /// Renders the charts for a cluster created from `backup` (the cluster chart's
    /// `restore.backupName`, so the Cluster carries `spec.restore`), checks that the Cluster
    /// refers to that Backup, and recreates the restored components' account Secrets from the
    /// Backup as the volume populator does. Nothing runs yet.
    pub fn render_restore(spec: ClusterSpec, backup: &Backup) -> Result<Self, KubeError> {
        let spec = spec
            .set("restore.backupName", &backup.name)
            .set("restore.backupNamespace", &backup.namespace);
        let mut cluster = Self::render(spec)?;
        let restore = cluster.restore_spec()?;
        let source = &restore["source"];
        if source["kind"].as_str() != Some("Backup")
            || source["apiGroup"].as_str() != Some("dataprotection.kubeblocks.io")
            || source["name"].as_str() != Some(backup.name.as_str())
            || source["namespace"]
                .as_str()
                .unwrap_or(&cluster.spec.namespace)
                != backup.namespace
        {
            return Err(KubeError::Manifest(format!(
                "Cluster {}: spec.restore.source {source} is not Backup {}/{}",
                cluster.spec.name, backup.namespace, backup.name
            )));
        }
        volume_restore_policy(&restore)?;
        for component in cluster.restored_components(backup) {
            // restoreSystemAccountSecrets: the component's account Secrets as the Backup
            // recorded them (and marked provisioned, so accountProvision does not run again).
            for (account, password) in backup.accounts.get(&component).into_iter().flatten() {
                let key = (component.clone(), account.clone());
                if cluster.passwords.contains_key(&key) {
                    cluster.passwords.insert(key, password.clone());
                }
            }
        }
        Ok(cluster)
    }

    /// A fresh cluster created from `backup` as KubeBlocks creates one for `spec.restore`:
    /// components in the ClusterDefinition's provision order; each pod of a restored component
    /// has its data volume prepared by the ActionSet's prepareData Job before the pod is created
    /// (in the pod management policy's order); then every component's postProvision; then the
    /// ActionSet's postReady steps in every pod of the restored component.
    pub async fn restore_into(spec: ClusterSpec, backup: &Backup) -> Result<Self, KubeError> {
        let mut cluster = Self::render_restore(spec, backup)?;
        let restored = cluster.restored_components(backup);
        for component in cluster.provision_order.clone() {
            let replicas = cluster.component(&component)?.replicas;
            if !restored.contains(&component) {
                cluster.create_pods(&component, 0..replicas).await?;
                continue;
            }
            let parallel = cluster.component(&component)?.definition["spec"]["podManagementPolicy"]
                .as_str()
                == Some("Parallel");
            if parallel {
                // Every pod is created at once; each stays Pending until its volume is
                // prepared (one after the other here, as Serial would; Parallel only overlaps).
                for ordinal in 0..replicas {
                    cluster
                        .restore_prepare_data(&component, ordinal, backup)
                        .await?;
                }
                cluster.create_pods(&component, 0..replicas).await?;
            } else {
                for ordinal in 0..replicas {
                    cluster
                        .restore_prepare_data(&component, ordinal, backup)
                        .await?;
                    cluster
                        .create_pods(&component, ordinal..ordinal + 1)
                        .await?;
                }
            }
        }
        cluster.post_provision().await?;
        for component in &restored {
            cluster.restore_post_ready(component, backup).await?;
        }
        Ok(cluster)
    }

    /// The prepareData Job of the backup's ActionSet for pod `ordinal`'s volumes of `component`
    /// (the PVCs created if they do not exist, each claim the backup holds mounted where the
    /// backup mounted it). Its last attempt's outcome; an error when every attempt failed.
    pub async fn restore_prepare_data(
        &self,
        component: &str,
        ordinal: usize,
        backup: &Backup,
    ) -> Result<Outcome, KubeError> {
        let action_set = self.manifests.get("ActionSet", &backup.action_set)?.clone();
        let spec = &action_set["spec"];
        let prepare = &spec["restore"]["prepareData"];
        if prepare.is_null() {
            return Err(KubeError::Manifest(format!(
                "ActionSet {} has no restore.prepareData",
                backup.action_set
            )));
        }
        let pod_name = self.pod_name(component, ordinal);
        let job = format!("restore-preparedata-{}-{ordinal}", backup.name);
        let c = self.component(component)?;
        let mut mounts = Vec::new();
        for claim in c.spec["volumeClaimTemplates"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let claim = claim["name"].as_str().unwrap_or_default();
            let Some((_, mount_path)) = backup
                .target_volume_mounts
                .iter()
                .find(|(volume, _)| volume == claim)
            else {
                continue;
            };
            let dir = self.claim_dir(component, ordinal, claim);
            fs::create_dir_all(&dir).map_err(|e| KubeError::io(&dir, e))?;
            mounts.push((mount_path.clone(), dir));
        }
        // addCommonEnv, then the datasafed injection.
        let mut entries = vec![
            env_value("DP_BACKUP_NAME", &backup.name),
            env_value("DP_TARGET_RELATIVE_PATH", ""),
            env_value("DP_BACKUP_ROOT_PATH", &parent_path(&backup.path)),
            env_value("DP_BACKUP_BASE_PATH", &backup.base_path),
            env_value("DP_BACKUP_STOP_TIME", &backup.completed),
        ];
        entries.extend(spec["env"].as_array().into_iter().flatten().cloned());
        merge_env(&mut entries, &backup.method_env);
        let datasafed_bin = self.datasafed_bin()?;
        entries.push(env_value("DATASAFED_LOCAL_BACKEND_PATH", REPO_MOUNT));
        entries.push(env_value("DP_DATASAFED_BIN_PATH", DATASAFED_BIN_MOUNT));
        mounts.push((REPO_MOUNT.to_owned(), backup.repo.dir.clone()));
        mounts.push((DATASAFED_BIN_MOUNT.to_owned(), datasafed_bin));

        let facts = self.facts(component, &format!("{job}-pod"), Ipv4Addr::LOCALHOST)?;
        let secrets = |name: &str, key: &str| self.secret(name, key);
        let env = pod::container_env(&BTreeMap::new(), &Value::Array(entries), &facts, &secrets)?;
        let paths = PathMap::new(mounts);
        let argv = pod::argv(prepare, &env, &paths);
        let image = pod::expand(prepare["image"].as_str().unwrap_or_default(), &env);
        let env = keep_storage_paths(pod::map_env(env.clone(), &paths), &env);
        let path = path_for_image(&image);
        let log = self.log_path(&job, "restore");
        let outcome = run_attempts(
            &Exec { argv, env },
            &path,
            &log,
            RESTORE_JOB_BACKOFF + 1,
            JOB_CAP,
            "prepareData",
        )
        .await?;
        if outcome.success() {
            Ok(outcome)
        } else {
            Err(KubeError::Action {
                pod: format!("{job} (the volumes of {pod_name})"),
                action: "prepareData".into(),
                outcome,
            })
        }
    }

    /// The backup ActionSet's postReady steps, each in every pod of `component` in turn: an
    /// exec in the step's container (a Job step is not something this addon has).
    pub async fn restore_post_ready(
        &self,
        component: &str,
        backup: &Backup,
    ) -> Result<Vec<Outcome>, KubeError> {
        let action_set = self.manifests.get("ActionSet", &backup.action_set)?.clone();
        let mut outcomes = Vec::new();
        for (step, action) in action_set["spec"]["restore"]["postReady"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            if action.get("exec").is_none() {
                return Err(KubeError::Manifest(format!(
                    "ActionSet {}: postReady step {step} is not an exec; the stand-in runs exec steps only",
                    backup.action_set
                )));
            }
            for ordinal in self.ordinals(component) {
                let outcome = self
                    .exec_in_pod(
                        component,
                        ordinal,
                        &action["exec"],
                        &format!("restore-post-ready-{}-{step}-{ordinal}", backup.name),
                        RESTORE_JOB_BACKOFF + 1,
                    )
                    .await?;
                if !outcome.success() {
                    return Err(KubeError::Action {
                        pod: self.pod_name(component, ordinal),
                        action: format!("postReady step {step}"),
                        outcome,
                    });
                }
                outcomes.push(outcome);
            }
        }
        Ok(outcomes)
    }

    /// `Cluster.spec.restore` of the rendered Cluster.
    fn restore_spec(&self) -> Result<Value, KubeError> {
        let cluster = self.manifests.get("Cluster", &self.spec.name)?;
        let restore = &cluster["spec"]["restore"];
        if restore.is_null() {
            return Err(KubeError::Manifest(format!(
                "Cluster {} has no spec.restore",
                self.spec.name
            )));
        }
        Ok(restore.clone())
    }

    /// The components with a volume claim template the backup's target volumes name.
    fn restored_components(&self, backup: &Backup) -> Vec<String> {
        self.components
            .iter()
            .filter(|(_, c)| {
                c.spec["volumeClaimTemplates"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|claim| {
                        backup
                            .target_volume_mounts
                            .iter()
                            .any(|(volume, _)| claim["name"].as_str() == Some(volume.as_str()))
                    })
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The default BackupPolicy KubeBlocks builds from the addon's template for the component
    /// whose definition the template names, and its first method with an ActionSet.
    fn backup_policy(&self) -> Result<Policy, KubeError> {
        for template in self.manifests.of_kind("BackupPolicyTemplate") {
            let spec = &template["spec"];
            let patterns: Vec<&str> = spec["compDefs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let Some((component, c)) = self.components.iter().find(|(_, c)| {
                let def = c.definition["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default();
                patterns.iter().any(|p| version_matches(def, p))
            }) else {
                continue;
            };
            let Some(method) = spec["backupMethods"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["actionSetName"].as_str().is_some())
            else {
                continue;
            };
            let action_set = self
                .manifests
                .get(
                    "ActionSet",
                    method["actionSetName"].as_str().unwrap_or_default(),
                )?
                .clone();
            // resolveBackupMethodEnv: a value, or the versionMapping's value for the
            // component's serviceVersion (an entry that maps nothing is left out).
            let mut method_env = Vec::new();
            for entry in method["env"].as_array().into_iter().flatten() {
                let name = entry["name"].as_str().unwrap_or_default().to_owned();
                if let Some(value) = entry["value"].as_str() {
                    method_env.push((name, value.to_owned()));
                } else if let Some(mapping) = entry["valueFrom"]["versionMapping"].as_array()
                    && let Some(value) = best_mapping(mapping, &c.service_version)
                {
                    method_env.push((name, value));
                }
            }
            let target_volume_mounts = method["targetVolumes"]["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| {
                    (
                        m["name"].as_str().unwrap_or_default().to_owned(),
                        m["mountPath"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            let target = method.get("target").unwrap_or(&spec["target"]);
            return Ok(Policy {
                component: component.clone(),
                role: target["role"].as_str().map(str::to_owned),
                fallback_role: target["fallbackRole"].as_str().map(str::to_owned),
                method: method["name"].as_str().unwrap_or_default().to_owned(),
                action_set,
                method_env,
                target_volume_mounts,
                backoff: spec["backoffLimit"]
                    .as_u64()
                    .map_or(BACKUP_JOB_BACKOFF, |n| n as u32),
            });
        }
        Err(KubeError::Manifest(
            "no BackupPolicyTemplate with an ActionSet method covers a component of the Cluster"
                .into(),
        ))
    }

    /// `GetTargetPods` with strategy Any: the first pod by name that carries the role label
    /// (the role only counts with more than one replica), else the same with the fallback role.
    async fn backup_target(&mut self, policy: &Policy) -> Result<(usize, String), KubeError> {
        let component = policy.component.clone();
        self.probe_roles(&component).await?;
        let c = self.component(&component)?;
        let mut ordinals = self.ordinals(&component);
        ordinals.sort_by_key(|&o| self.pod_name(&component, o));
        let pick = |role: Option<&String>| -> Option<usize> {
            ordinals.iter().copied().find(|&o| match role {
                Some(role) if c.replicas > 1 => {
                    c.labels.get(&self.pod_name(&component, o)).role.as_ref() == Some(role)
                }
                _ => true,
            })
        };
        let ordinal = pick(policy.role.as_ref())
            .or_else(|| {
                policy
                    .role
                    .as_ref()
                    .and(policy.fallback_role.as_ref())
                    .and_then(|fallback| pick(Some(fallback)))
            })
            .ok_or_else(|| {
                KubeError::Pod(format!(
                    "no pod of {component} is labelled {:?} or {:?}: no backup target",
                    policy.role, policy.fallback_role
                ))
            })?;
        let role = c
            .labels
            .get(&self.pod_name(&component, ordinal))
            .role
            .unwrap_or_default();
        Ok((ordinal, role))
    }

    /// A preBackup or postBackup action on the target pod: an exec, or a Job.
    async fn backup_action(
        &self,
        policy: &Policy,
        ordinal: usize,
        action: &Value,
        name: &str,
    ) -> Result<Outcome, KubeError> {
        let component = &policy.component;
        let outcome = if let Some(exec) = action.get("exec") {
            self.exec_in_pod(component, ordinal, exec, name, policy.backoff + 1)
                .await?
        } else {
            return Err(KubeError::Manifest(format!(
                "{name}: a Job pre- or postBackup action is not something this addon has"
            )));
        };
        if outcome.success() {
            Ok(outcome)
        } else {
            Err(KubeError::Action {
                pod: self.pod_name(component, ordinal),
                action: name.to_owned(),
                outcome,
            })
        }
    }

    /// `kubectl exec POD -c CONTAINER -- COMMAND...`: the command as written (no `$(VAR)`
    /// expansion), in the running container's environment, mounts and image PATH; run as a Job
    /// of `attempts` tries, capped at the action's `timeout`.
    async fn exec_in_pod(
        &self,
        component: &str,
        ordinal: usize,
        exec: &Value,
        job: &str,
        attempts: u32,
    ) -> Result<Outcome, KubeError> {
        let c = self.component(component)?;
        let pod = c.pods.get(&ordinal).ok_or_else(|| {
            KubeError::Pod(format!(
                "{}: no such pod to exec in",
                self.pod_name(component, ordinal)
            ))
        })?;
        let container = match exec["container"].as_str() {
            Some(name) => name.to_owned(),
            None => c.definition["spec"]["runtime"]["containers"][0]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        };
        let env = pod
            .env
            .get(&container)
            .cloned()
            .ok_or_else(|| KubeError::Pod(format!("{}: no container {container}", pod.name)))?;
        let spec = self.container_spec(component, &container)?;
        let volumes = self.volume_dirs(component, &pod.name)?;
        let paths = self.paths_of(component, &spec, &volumes);
        let argv: Vec<String> = exec["command"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|word| paths.apply(word))
            .collect();
        let timeout = exec["timeout"]
            .as_str()
            .and_then(go_duration)
            .filter(|d| !d.is_zero())
            .unwrap_or(JOB_CAP);
        let log = self.log_path(&pod.name, job);
        run_attempts(
            &Exec { argv, env },
            &self.path_for(c)?,
            &log,
            attempts,
            timeout,
            job,
        )
        .await
    }

    /// The backupData Job on the target pod's node, then its manager sidecar's part: the info
    /// file read (or the `.exit` marker seen) and the Backup object pushed as
    /// `/kubeblocks-backup.json`.
    async fn run_backup_data(
        &self,
        policy: &Policy,
        ordinal: usize,
        job_spec: &Value,
        job: &BackupJob<'_>,
    ) -> Result<(Outcome, Value), KubeError> {
        let component = &policy.component;
        let c = self.component(component)?;
        let target = self.pod_name(component, ordinal);
        let container = &c.definition["spec"]["runtime"]["containers"][0];
        let port = container["ports"][0]["containerPort"]
            .as_u64()
            .unwrap_or(0)
            .to_string();
        let manager = job.job_root.join("manager");
        let _ = fs::remove_dir_all(&manager);
        fs::create_dir_all(&manager).map_err(|e| KubeError::io(&manager, e))?;
        let datasafed_bin = self.datasafed_bin()?;

        // The target pod's first container's env, vars first; then the DP_* variables, the
        // ActionSet's env, the KubeBlocks cluster variables; the method's env merged last.
        let mut entries: Vec<Value> = container["env"].as_array().cloned().unwrap_or_default();
        entries.extend([
            env_value("DP_BACKUP_NAME", job.backup),
            env_value("DP_TARGET_POD_NAME", &target),
            env_value("DP_TARGET_POD_ROLE", job.role),
            env_value("DP_BACKUP_BASE_PATH", job.path),
            env_value(
                "DP_BACKUP_INFO_FILE",
                &format!("{MANAGER_MOUNT}/{BACKUP_INFO_FILE}"),
            ),
            env_value("DP_TTL", ""),
            env_value("DP_DB_HOST", &self.fqdn(component, ordinal)?),
            env_value("DP_DB_PORT", &port),
        ]);
        entries.extend(
            policy.action_set["spec"]["env"]
                .as_array()
                .into_iter()
                .flatten()
                .cloned(),
        );
        entries.extend([
            env_value("KB_CLUSTER_UID", job.uid),
            env_value("KB_CLUSTER_NAME", &self.spec.name),
            env_value("KB_COMP_NAME", component),
            env_value("KB_NAMESPACE", &self.spec.namespace),
        ]);
        merge_env(&mut entries, &policy.method_env);
        entries.push(env_value("DATASAFED_LOCAL_BACKEND_PATH", REPO_MOUNT));
        entries.push(env_value("DP_DATASAFED_BIN_PATH", DATASAFED_BIN_MOUNT));

        let job_pod = format!("dp-backup-0-{}", job.backup);
        let facts = self.facts(component, &job_pod, Ipv4Addr::LOCALHOST)?;
        let secrets = |name: &str, key: &str| self.secret(name, key);
        let vars = self.vars(component)?;
        let env = pod::container_env(&vars, &Value::Array(entries), &facts, &secrets)?;

        // Mounts: the manager's emptyDir, the target pod's volumes the method names (with
        // runOnTargetPodNode), the repository and datasafed's directory.
        let mut mounts = vec![(MANAGER_MOUNT.to_owned(), manager.clone())];
        if job_spec["runOnTargetPodNode"].as_bool() == Some(true) {
            let volumes = self.volume_dirs(component, &target)?;
            for (volume, mount_path) in &policy.target_volume_mounts {
                if let Some(dir) = volumes.get(volume) {
                    mounts.push((mount_path.clone(), dir.clone()));
                }
            }
        }
        mounts.push((REPO_MOUNT.to_owned(), job.repo.to_owned()));
        mounts.push((DATASAFED_BIN_MOUNT.to_owned(), datasafed_bin.clone()));
        let paths = PathMap::new(mounts);
        let argv = pod::argv(job_spec, &env, &paths);
        let image = pod::expand(job_spec["image"].as_str().unwrap_or_default(), &env);
        let env = keep_storage_paths(pod::map_env(env.clone(), &paths), &env);
        let path = path_for_image(&image);
        let log = self.log_path(&job_pod, "backupdata");
        let info_file = manager.join(BACKUP_INFO_FILE);
        let exit_file = manager.join(format!("{BACKUP_INFO_FILE}.exit"));

        let mut last = None;
        for _ in 0..=policy.backoff {
            let _ = fs::remove_file(&info_file);
            let _ = fs::remove_file(&exit_file);
            let command = pod::command(
                &Exec {
                    argv: argv.clone(),
                    env: env.clone(),
                },
                &path,
                &log,
            )?;
            let outcome = pod::run(command, JOB_CAP).await?;
            append_log(&log, "backupData", &outcome);
            // The manager: done once the info file exists, failed on the exit marker (or when
            // the container ended without either, where it would wait forever).
            if outcome.success() && info_file.is_file() && !exit_file.exists() {
                let info: Value = fs::read_to_string(&info_file)
                    .ok()
                    .and_then(|text| serde_json::from_str(&text).ok())
                    .ok_or_else(|| {
                        KubeError::Pod(format!(
                            "{job_pod}: {} is not the JSON status the manager patches",
                            info_file.display()
                        ))
                    })?;
                self.manager_push(job, policy, &target, &info, &datasafed_bin)
                    .await?;
                return Ok((outcome, info));
            }
            last = Some(outcome);
        }
        let outcome = last.expect("at least one attempt");
        Err(KubeError::Action {
            pod: format!("{job_pod} (target {target})"),
            action: format!(
                "backupData{}",
                if exit_file.exists() {
                    " (exit marker written)"
                } else {
                    ""
                }
            ),
            outcome,
        })
    }

    /// The manager sidecar's push of the Backup object to `/kubeblocks-backup.json` under the
    /// base path (`kubectl get backup -o json | datasafed push - /kubeblocks-backup.json`).
    async fn manager_push(
        &self,
        job: &BackupJob<'_>,
        policy: &Policy,
        target: &str,
        info: &Value,
        datasafed_bin: &Path,
    ) -> Result<(), KubeError> {
        let object = json!({
            "apiVersion": "dataprotection.kubeblocks.io/v1alpha1",
            "kind": "Backup",
            "metadata": {
                "name": job.backup,
                "namespace": self.spec.namespace,
                "labels": {
                    "app.kubernetes.io/instance": self.spec.name,
                    "apps.kubeblocks.io/component-name": policy.component,
                    "dataprotection.kubeblocks.io/cluster-uid": job.uid,
                    "dataprotection.kubeblocks.io/backup-policy":
                        format!("{}-{}-backup-policy", self.spec.name, policy.component),
                },
            },
            "spec": {
                "backupPolicyName": format!("{}-{}-backup-policy", self.spec.name, policy.component),
                "backupMethod": policy.method,
            },
            "status": {
                "phase": "Running",
                "path": job.path,
                "totalSize": info["totalSize"],
                "target": { "selectedTargetPods": [target] },
                "backupMethod": {
                    "name": policy.method,
                    "actionSetName": policy.action_set["metadata"]["name"],
                },
            },
        });
        let file = job.job_root.join("kubeblocks-backup.json");
        fs::write(&file, object.to_string()).map_err(|e| KubeError::io(&file, e))?;
        let env: BTreeMap<String, String> = [
            (
                "DATASAFED_LOCAL_BACKEND_PATH",
                job.repo.to_string_lossy().into_owned(),
            ),
            ("DATASAFED_BACKEND_BASE_PATH", job.path.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let argv = vec![
            "datasafed".to_owned(),
            "push".to_owned(),
            file.to_string_lossy().into_owned(),
            "/kubeblocks-backup.json".to_owned(),
        ];
        let path = format!("{}:/usr/bin:/bin", datasafed_bin.display());
        let log = self.log_path(&format!("dp-backup-0-{}", job.backup), "manager");
        let command = pod::command(&Exec { argv, env }, &path, &log)?;
        let outcome = pod::run(command, JOB_CAP).await?;
        append_log(&log, "manager push", &outcome);
        if outcome.success() {
            Ok(())
        } else {
            Err(KubeError::Action {
                pod: format!("dp-backup-0-{}", job.backup),
                action: "manager push of kubeblocks-backup.json".into(),
                outcome,
            })
        }
    }

    /// The directory the `dp-copy-datasafed` init container fills (mounted at
    /// `/bin/datasafed`): the datasafed double and the rclone it runs.
    fn datasafed_bin(&self) -> Result<PathBuf, KubeError> {
        let dir = self.root.join("dp").join("datasafed-bin");
        let binary = dir.join("datasafed");
        if binary.is_file() {
            return Ok(dir);
        }
        fs::create_dir_all(&dir).map_err(|e| KubeError::io(&dir, e))?;
        let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let double = here.join("addon/datasafed");
        fs::copy(&double, &binary).map_err(|e| KubeError::io(&double, e))?;
        let rclone_root = here.join("../.deps/rclone");
        let mut found: Vec<PathBuf> = fs::read_dir(&rclone_root)
            .map_err(|e| {
                KubeError::Manifest(format!(
                    "{}: {e}; run tests/install-addon-tools.sh",
                    rclone_root.display()
                ))
            })?
            .flatten()
            .map(|entry| entry.path().join("rclone"))
            .filter(|path| path.is_file())
            .collect();
        found.sort();
        let rclone = found.pop().ok_or_else(|| {
            KubeError::Manifest(format!(
                "no rclone under {}; run tests/install-addon-tools.sh",
                rclone_root.display()
            ))
        })?;
        let link = dir.join("rclone");
        std::os::unix::fs::symlink(&rclone, &link).map_err(|e| KubeError::io(&link, e))?;
        Ok(dir)
    }
}

/// What a backupData Job needs to know of its Backup.
struct BackupJob<'a> {
    backup: &'a str,
    path: &'a str,
    role: &'a str,
    uid: &'a str,
    repo: &'a Path,
    job_root: &'a Path,
}

/// `volume-restore-policy` of a `spec.restore`: Parallel (the default) or Serial.
fn volume_restore_policy(restore: &Value) -> Result<String, KubeError> {
    match restore["parameters"][VOLUME_RESTORE_POLICY].as_str() {
        None | Some("") => Ok("Parallel".into()),
        Some(policy @ ("Parallel" | "Serial")) => Ok(policy.to_owned()),
        Some(other) => Err(KubeError::Manifest(format!(
            "invalid volume restore policy {other:?}"
        ))),
    }
}

/// Runs a Job's (or an exec's) command up to `attempts` times until one succeeds; the last
/// outcome.
async fn run_attempts(
    exec: &Exec,
    path: &str,
    log: &Path,
    attempts: u32,
    timeout: Duration,
    what: &str,
) -> Result<Outcome, KubeError> {
    let mut last = None;
    for attempt in 1..=attempts.max(1) {
        let command = pod::command(exec, path, log)?;
        let outcome = pod::run(command, timeout).await?;
        append_log(log, &format!("{what} (attempt {attempt})"), &outcome);
        if outcome.success() {
            return Ok(outcome);
        }
        last = Some(outcome);
    }
    Ok(last.expect("at least one attempt"))
}

/// `datasafed list -r -f /` under the base path: every object the backup holds.
async fn datasafed_list(bin: &Path, repo: &Path, base: &str) -> Result<Vec<String>, KubeError> {
    let env: BTreeMap<String, String> = [
        (
            "DATASAFED_LOCAL_BACKEND_PATH",
            repo.to_string_lossy().into_owned(),
        ),
        ("DATASAFED_BACKEND_BASE_PATH", base.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let argv = ["datasafed", "list", "-r", "-f", "/"]
        .map(str::to_owned)
        .to_vec();
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let log = repo.with_extension("list.log");
    let command = pod::command(&Exec { argv, env }, &path, &log)?;
    let outcome = pod::run(command, Duration::from_secs(60)).await?;
    let _ = fs::remove_file(&log);
    if !outcome.success() {
        return Err(KubeError::Action {
            pod: "datasafed".into(),
            action: "list".into(),
            outcome,
        });
    }
    let mut files: Vec<String> = outcome.stdout.lines().map(str::to_owned).collect();
    files.sort();
    Ok(files)
}

/// A fresh BackupRepo directory, outside every cluster's.
fn new_repo_dir() -> Result<PathBuf, KubeError> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "valkey-kb-repo-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| KubeError::io(&dir, e))?;
    Ok(dir)
}

/// A UID-shaped identifier for the cluster (the stand-in's objects have no UID).
fn cluster_uid(name: &str, root: &Path) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes().chain(root.to_string_lossy().bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let hex = format!(
        "{hash:016x}{:016x}",
        hash.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15
    );
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `filepath.Join("/", path, "../")`.
fn parent_path(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rfind('/') {
        Some(0) | None => "/".to_owned(),
        Some(at) => trimmed[..at].to_owned(),
    }
}

fn env_value(name: &str, value: &str) -> Value {
    json!({ "name": name, "value": value })
}

/// `MergeEnv`: each of `extra` replaces the entry of its name in place, or is appended.
fn merge_env(entries: &mut Vec<Value>, extra: &[(String, String)]) {
    for (name, value) in extra {
        let entry = env_value(name, value);
        match entries
            .iter_mut()
            .find(|e| e["name"].as_str() == Some(name.as_str()))
        {
            Some(existing) => *existing = entry,
            None => entries.push(entry),
        }
    }
}

/// The storage paths name places in the repository, not in the Job's filesystem: they keep
/// their values when the mounts are mapped.
fn keep_storage_paths(
    mut mapped: BTreeMap<String, String>,
    raw: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    for name in [
        "DP_BACKUP_BASE_PATH",
        "DP_BACKUP_ROOT_PATH",
        "DP_TARGET_RELATIVE_PATH",
    ] {
        if let Some(value) = raw.get(name) {
            mapped.insert(name.to_owned(), value.clone());
        }
    }
    mapped
}

/// `findBestMatchingValue`: an exact serviceVersion first, then a prefix or a regular
/// expression (the `^x\.y\.z$` form the addon writes).
fn best_mapping(mappings: &[Value], service_version: &str) -> Option<String> {
    let versions = |m: &Value| -> Vec<String> {
        m["serviceVersions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    let value = |m: &Value| m["mappedValue"].as_str().map(str::to_owned);
    mappings
        .iter()
        .find(|m| versions(m).iter().any(|v| v == service_version))
        .and_then(value)
        .or_else(|| {
            mappings
                .iter()
                .find(|m| {
                    versions(m)
                        .iter()
                        .any(|v| version_matches(service_version, v))
                })
                .and_then(value)
        })
}

/// `PrefixOrRegexMatched` for the patterns this addon writes: a prefix, or an anchored
/// expression whose only special characters are `^`, `$` and escaped dots.
fn version_matches(name: &str, pattern: &str) -> bool {
    if name.starts_with(pattern) {
        return true;
    }
    let Some(inner) = pattern.strip_prefix('^') else {
        return false;
    };
    let (inner, anchored) = match inner.strip_suffix('$') {
        Some(inner) => (inner, true),
        None => (inner, false),
    };
    let literal = inner.replace("\\.", ".");
    if literal.contains(['\\', '*', '+', '?', '[', '(', '|', '{']) {
        return false;
    }
    if anchored {
        name == literal
    } else {
        name.starts_with(&literal)
    }
}

/// PATH of an image the Job names: the Valkey build of the image's tag (plus a build that has
/// `valkey-cli`), then the system's; the system's only for an image the lab has no build of.
fn path_for_image(image: &str) -> String {
    let tag = image.rsplit_once(':').map_or("", |(_, tag)| tag);
    super::cluster::valkey_path(tag.parse().ok())
}

/// A Go duration as the CRDs write it: `1260s`, `11m`, `1h30m`, `500ms`.
fn go_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        total += Duration::from_secs_f64(number * seconds);
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// RFC 3339 in UTC, as Go's `time.RFC3339` prints a UTC time.
fn rfc3339(at: SystemTime) -> String {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // civil_from_days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_addons_version_patterns_match_as_kubeblocks_matches_them() {
        assert!(version_matches("9.1.2", "^9\\.1\\.2$"));
        assert!(!version_matches("9.1.20", "^9\\.1\\.2$"));
        assert!(version_matches("valkey-data-1.0", "valkey-data"));
        let mappings = vec![
            json!({"serviceVersions": ["^8\\.1\\.8$"], "mappedValue": "img:8.1.8"}),
            json!({"serviceVersions": ["^9\\.1\\.2$"], "mappedValue": "img:9.1.2"}),
        ];
        assert_eq!(
            best_mapping(&mappings, "9.1.2").as_deref(),
            Some("img:9.1.2")
        );
        assert_eq!(best_mapping(&mappings, "7.2.0"), None);
    }

    #[test]
    fn go_durations_and_paths_read_as_kubeblocks_writes_them() {
        assert_eq!(go_duration("1260s"), Some(Duration::from_secs(1260)));
        assert_eq!(go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(go_duration("10x"), None);
        assert_eq!(parent_path("/demo/kb-u/valkey/b1"), "/demo/kb-u/valkey");
        assert_eq!(parent_path("/b1"), "/");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }
}
