//! A real Kubernetes API server on loopback, to judge manifests the way a cluster does.
//!
//! [`ApiServer::start`] runs `etcd` and `kube-apiserver` (built from their Go modules by
//! `tests/install-addon-tools.sh` into `.deps/etcd/<v>` and `.deps/kubernetes/<v>`) on free
//! loopback ports with their data in a scratch folder: a CA, a serving certificate and a
//! service-account key made with the `openssl` CLI for this run only, a static admin token,
//! `AlwaysAllow` authorization. It installs the CustomResourceDefinitions asked for (by default
//! every KubeBlocks CRD from `tests/kubeblocks-crds/` and the prometheus-operator ServiceMonitor,
//! PodMonitor and PrometheusRule CRDs) and waits until each is Established.
//!
//! [`ApiServer::validate`] applies objects with a server-side dry run and strict field validation
//! (`kubectl apply --server-side --dry-run=server --validate=strict`): unknown and duplicate
//! fields, types, formats, the CRDs' CEL rules and the core kinds' own validation, with one verdict
//! per object. Nothing is stored, so one server judges any number of manifests; namespaces that
//! objects name are created first. Both processes are killed when the server is dropped (and by
//! the kernel if the test process dies, see [`crate::process`]).
//!
//! Starting takes a few seconds (about 3 s to ready, then the CRDs), so a test suite starts one
//! and validates everything with it.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt, fs, io,
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{process::Command, sync::Semaphore, task::JoinSet};

use crate::{
    helm::{ScratchDir, ToolError, deps_dir},
    process,
};

/// The Kubernetes release of `kube-apiserver` (and the kubectl beside it).
pub const KUBERNETES_VERSION: &str = "1.35.4";
/// The etcd release.
pub const ETCD_VERSION: &str = "3.6.16";
/// The kubectl release used to talk to the server (from the Helm 4 wheel).
pub const KUBECTL_VERSION: &str = "1.35.2";
/// The prometheus-operator release the monitoring CRDs come from.
pub const PROMETHEUS_OPERATOR_VERSION: &str = "0.85.0";

/// How long the server has to become ready, and the CRDs to be Established.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// The static admin token of every run's token file (the server listens on loopback only).
const ADMIN_TOKEN: &str = "valkey-lab-admin";
/// How many objects are judged at once when a batch has to be judged one by one.
const PARALLEL_KUBECTL: usize = 3;

/// Where the KubeBlocks CRDs the addon is written against are kept (`tests/kubeblocks-crds`).
pub fn kubeblocks_crds_dir() -> PathBuf {
    match std::env::var_os("KUBEBLOCKS_CRDS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => crate::helm::project_root().join("tests/kubeblocks-crds"),
    }
}

/// Where the installer puts the prometheus-operator CRDs.
pub fn prometheus_operator_crds_dir() -> PathBuf {
    deps_dir()
        .join("prometheus-operator-crds")
        .join(PROMETHEUS_OPERATOR_VERSION)
}

/// The `.yaml` files of a folder, sorted.
pub fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, ToolError> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| ToolError::io(format!("reading {}", dir.display()), e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    files.sort();
    Ok(files)
}

/// What to start.
#[derive(Debug, Clone)]
pub struct ApiServerSpec {
    /// CRD manifests installed before [`ApiServer::start`] returns.
    pub crds: Vec<PathBuf>,
}

impl ApiServerSpec {
    /// Every KubeBlocks CRD and the prometheus-operator monitoring CRDs.
    pub fn all_crds() -> Result<ApiServerSpec, ToolError> {
        let kubeblocks = kubeblocks_crds_dir();
        let monitoring = prometheus_operator_crds_dir();
        let mut crds = yaml_files(&kubeblocks)?;
        if crds.is_empty() {
            return Err(ToolError::io(
                format!("reading {}", kubeblocks.display()),
                io::Error::new(io::ErrorKind::NotFound, "no KubeBlocks CRDs there"),
            ));
        }
        let monitoring_crds = yaml_files(&monitoring).map_err(|_| ToolError::NotInstalled {
            tool: format!("the prometheus-operator {PROMETHEUS_OPERATOR_VERSION} CRDs"),
            path: monitoring.clone(),
        })?;
        crds.extend(monitoring_crds);
        Ok(ApiServerSpec { crds })
    }

    /// Only these CRD files (faster to start: each CRD costs a little).
    pub fn crds(crds: impl IntoIterator<Item = PathBuf>) -> ApiServerSpec {
        ApiServerSpec {
            crds: crds.into_iter().collect(),
        }
    }
}

/// One object of a manifest, as [`split_documents`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// Where it came from: the caller's label, and Helm's `# Source:` line when there is one.
    pub source: String,
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, when the object names one.
    pub namespace: Option<String>,
    /// The document's text, as written (so duplicate keys reach the judge).
    pub text: String,
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(
                f,
                "{} {namespace}/{} ({})",
                self.kind, self.name, self.source
            ),
            None => write!(f, "{} {} ({})", self.kind, self.name, self.source),
        }
    }
}

/// A document that is no Kubernetes object (bad YAML, no kind, ...), with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// Where it came from.
    pub source: String,
    /// Why it is not an object.
    pub reason: String,
}

/// Splits a multi-document YAML text (Helm output, an example file) into objects. Empty
/// documents (a template that rendered nothing, comments only) are skipped; a document that does
/// not parse, or lacks `apiVersion`, `kind` or `metadata.name`, is returned as [`Unreadable`], so
/// it fails like a rejected object.
pub fn split_documents(label: &str, text: &str) -> Vec<Result<Object, Unreadable>> {
    let mut documents = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line == "---" || line.starts_with("--- ") || line == "..." {
            documents.push(std::mem::take(&mut current));
            if let Some(rest) = line.strip_prefix("--- ") {
                current.push_str(rest);
                current.push('\n');
            }
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    documents.push(current);
    documents
        .into_iter()
        .enumerate()
        .filter_map(|(index, document)| read_object(label, index, document))
        .collect()
}

fn read_object(label: &str, index: usize, text: String) -> Option<Result<Object, Unreadable>> {
    let helm_source = text
        .lines()
        .find_map(|line| line.strip_prefix("# Source: "))
        .map(str::to_string);
    let source = match helm_source {
        Some(template) => format!("{label}: {template}"),
        None => format!("{label} (document {})", index + 1),
    };
    let value: serde_yaml_ng::Value = match serde_yaml_ng::from_str(&text) {
        Ok(value) => value,
        Err(error) => {
            return Some(Err(Unreadable {
                source,
                reason: format!("not valid YAML: {error}"),
            }));
        }
    };
    if value.is_null() {
        return None;
    }
    let field = |path: &[&str]| -> Option<String> {
        let mut at = &value;
        for key in path {
            at = at.get(key)?;
        }
        at.as_str().map(str::to_string)
    };
    let (Some(api_version), Some(kind), Some(name)) = (
        field(&["apiVersion"]),
        field(&["kind"]),
        field(&["metadata", "name"]),
    ) else {
        return Some(Err(Unreadable {
            source,
            reason: "not a Kubernetes object: apiVersion, kind and metadata.name are required"
                .into(),
        }));
    };
    Some(Ok(Object {
        source,
        api_version,
        kind,
        name,
        namespace: field(&["metadata", "namespace"]),
        text,
    }))
}

/// The verdict on one object.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The object judged.
    pub object: Object,
    /// `None` when the server accepted it, else its error.
    pub error: Option<String>,
}

/// The verdicts of one [`ApiServer::validate`] call, in the objects' order.
#[derive(Debug, Clone, Default)]
pub struct Validation {
    /// One per object.
    pub verdicts: Vec<Verdict>,
    /// Documents that were not objects at all.
    pub unreadable: Vec<Unreadable>,
}

impl Validation {
    /// Whether every document was an object and every object was accepted.
    pub fn all_accepted(&self) -> bool {
        self.unreadable.is_empty() && self.verdicts.iter().all(|v| v.error.is_none())
    }

    /// The rejected objects.
    pub fn rejected(&self) -> impl Iterator<Item = &Verdict> {
        self.verdicts.iter().filter(|v| v.error.is_some())
    }

    /// The verdict on the object of this kind and name, if it was judged.
    pub fn verdict(&self, kind: &str, name: &str) -> Option<&Verdict> {
        self.verdicts
            .iter()
            .find(|v| v.object.kind == kind && v.object.name == name)
    }

    /// Every rejection and unreadable document, one paragraph each (empty when all passed).
    pub fn report(&self) -> String {
        let mut out = String::new();
        for unreadable in &self.unreadable {
            out.push_str(&format!("{}: {}\n", unreadable.source, unreadable.reason));
        }
        for verdict in self.rejected() {
            let error = verdict.error.as_deref().unwrap_or_default();
            out.push_str(&format!("{}: {}\n", verdict.object, error.trim_end()));
        }
        out
    }
}

/// A running etcd + kube-apiserver pair.
pub struct ApiServer {
    dir: ScratchDir,
    etcd: Option<Child>,
    apiserver: Option<Child>,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
    cache_dir: PathBuf,
    url: String,
    namespaces: Mutex<HashSet<String>>,
    /// Verdicts already given, by namespace and text: Helm 3 and 4 mostly render the same text.
    judged: Mutex<HashMap<(String, String), Option<String>>>,
    batches: Mutex<usize>,
    ready_in: Duration,
    started_in: Duration,
}

impl fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiServer")
            .field("url", &self.url)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

fn binary(tool: &str, path: PathBuf) -> Result<PathBuf, ToolError> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(ToolError::NotInstalled {
            tool: tool.into(),
            path,
        })
    }
}

/// `n` distinct free loopback ports (bound together, then released for the servers to take).
fn free_ports(n: usize) -> Result<Vec<u16>, ToolError> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()
        .map_err(|e| ToolError::io("binding a free loopback port", e))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<io::Result<Vec<_>>>()
        .map_err(|e| ToolError::io("reading a bound port", e))
}

/// The last `lines` lines of a log file, for an error message.
fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs a short command to completion: stdout on exit 0, else everything it printed.
async fn run(mut command: Command, line: &str) -> Result<String, ToolError> {
    command.kill_on_drop(true).stdin(Stdio::null());
    let output = command
        .output()
        .await
        .map_err(|e| ToolError::io(format!("running {line}"), e))?;
    crate::helm::captured(line, output)
}

async fn openssl(dir: &Path, args: &[&str]) -> Result<String, ToolError> {
    let mut command = Command::new("openssl");
    command.args(args).current_dir(dir);
    run(command, &format!("openssl {}", args.join(" "))).await
}

/// A CA, a serving certificate for 127.0.0.1/localhost signed by it, and a service-account key,
/// all P-256, made for this run in `dir`.
async fn make_keys(dir: &Path) -> Result<(), ToolError> {
    let ec = [
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
    ];
    for key in ["ca.key", "server.key", "sa.key"] {
        let mut args = ec.to_vec();
        args.push(key);
        openssl(dir, &args).await?;
    }
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-subj",
            "/CN=valkey-lab-ca",
            "-days",
            "2",
            "-out",
            "ca.crt",
        ],
    )
    .await?;
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            "server.key",
            "-subj",
            "/CN=kube-apiserver",
            "-out",
            "server.csr",
        ],
    )
    .await?;
    fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .map_err(|e| ToolError::io("writing server.ext", e))?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    )
    .await?;
    openssl(dir, &["ec", "-in", "sa.key", "-pubout", "-out", "sa.pub"]).await?;
    Ok(())
}

impl ApiServer {
    /// Starts etcd and kube-apiserver, waits until the server is ready, installs `spec`'s CRDs
    /// and waits until they are Established.
    pub async fn start(spec: &ApiServerSpec) -> Result<ApiServer, ToolError> {
        let started = Instant::now();
        let deps = deps_dir();
        let etcd_bin = binary(
            &format!("etcd {ETCD_VERSION}"),
            deps.join("etcd").join(ETCD_VERSION).join("etcd"),
        )?;
        let apiserver_bin = binary(
            &format!("kube-apiserver {KUBERNETES_VERSION}"),
            deps.join("kubernetes")
                .join(KUBERNETES_VERSION)
                .join("kube-apiserver"),
        )?;
        let kubectl = binary(
            &format!("kubectl {KUBECTL_VERSION}"),
            deps.join("kubectl").join(KUBECTL_VERSION).join("kubectl"),
        )?;

        let dir = ScratchDir::new("apiserver")?;
        let root = dir.path().to_path_buf();
        make_keys(&root).await?;
        fs::write(
            root.join("tokens.csv"),
            format!("{ADMIN_TOKEN},admin,admin,\"system:masters\"\n"),
        )
        .map_err(|e| ToolError::io("writing tokens.csv", e))?;

        let ports = free_ports(3)?;
        let (client, peer, secure) = (ports[0], ports[1], ports[2]);
        let url = format!("https://127.0.0.1:{secure}");
        let kubeconfig = root.join("kubeconfig");
        fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: {url}\n    certificate-authority: {ca}\nusers:\n- name: admin\n  user:\n    token: {ADMIN_TOKEN}\ncontexts:\n- name: lab\n  context:\n    cluster: lab\n    user: admin\n    namespace: default\ncurrent-context: lab\n",
                ca = root.join("ca.crt").display()
            ),
        )
        .map_err(|e| ToolError::io("writing the kubeconfig", e))?;

        let mut server = ApiServer {
            cache_dir: root.join("kubectl-cache"),
            dir,
            etcd: None,
            apiserver: None,
            kubectl,
            kubeconfig,
            url,
            namespaces: Mutex::new(HashSet::from(["default".to_string()])),
            judged: Mutex::new(HashMap::new()),
            batches: Mutex::new(0),
            ready_in: Duration::ZERO,
            started_in: Duration::ZERO,
        };

        let etcd_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut etcd = std::process::Command::new(etcd_bin);
        etcd.args(["--name", "lab", "--data-dir"])
            .arg(root.join("etcd"))
            .args([
                "--listen-client-urls",
                &etcd_url,
                "--advertise-client-urls",
                &etcd_url,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("lab={peer_url}")])
            .args(["--unsafe-no-fsync", "--log-level", "warn"]);
        server.etcd = Some(server.spawn("etcd", etcd).await?);

        let mut apiserver = std::process::Command::new(apiserver_bin);
        apiserver
            .args(["--etcd-servers", &etcd_url])
            .args([
                "--bind-address",
                "127.0.0.1",
                "--advertise-address",
                "127.0.0.1",
            ])
            .args(["--secure-port", &secure.to_string()])
            .arg("--cert-dir")
            .arg(root.join("certs"))
            .arg("--tls-cert-file")
            .arg(root.join("server.crt"))
            .arg("--tls-private-key-file")
            .arg(root.join("server.key"))
            .arg("--token-auth-file")
            .arg(root.join("tokens.csv"))
            .args(["--authorization-mode", "AlwaysAllow"])
            .args([
                "--service-account-issuer",
                "https://kubernetes.default.svc.cluster.local",
            ])
            .arg("--service-account-key-file")
            .arg(root.join("sa.pub"))
            .arg("--service-account-signing-key-file")
            .arg(root.join("sa.key"))
            .args(["--service-cluster-ip-range", "10.96.0.0/16"])
            // No controller-manager creates the `default` ServiceAccounts this plugin looks up.
            .args(["--disable-admission-plugins", "ServiceAccount"])
            .args(["--endpoint-reconciler-type", "none", "--profiling=false"]);
        server.apiserver = Some(server.spawn("kube-apiserver", apiserver).await?);

        server.wait_ready(started + START_TIMEOUT).await?;
        server.ready_in = started.elapsed();
        server
            .install_crds(&spec.crds, started + START_TIMEOUT)
            .await?;
        server.started_in = started.elapsed();
        Ok(server)
    }

    async fn spawn(
        &self,
        name: &str,
        mut command: std::process::Command,
    ) -> Result<Child, ToolError> {
        let log = self.dir.path().join(format!("{name}.log"));
        let file = fs::File::create(&log)
            .map_err(|e| ToolError::io(format!("creating {}", log.display()), e))?;
        let err = file
            .try_clone()
            .map_err(|e| ToolError::io(format!("opening {}", log.display()), e))?;
        command.stdin(Stdio::null()).stdout(file).stderr(err);
        process::spawn(command)
            .await
            .map_err(|e| ToolError::io(format!("starting {name}"), e))
    }

    /// Fails with the log's tail if etcd or the apiserver has exited.
    fn check_alive(&mut self) -> Result<(), ToolError> {
        for (name, child) in [
            ("etcd", &mut self.etcd),
            ("kube-apiserver", &mut self.apiserver),
        ] {
            if let Some(process) = child
                && let Ok(Some(status)) = process.try_wait()
            {
                let log = self.dir.path().join(format!("{name}.log"));
                *child = None;
                return Err(ToolError::Failed {
                    command: name.into(),
                    status: format!("exited while starting ({status})"),
                    output: format!("{} ends with:\n{}", log.display(), tail(&log, 30)),
                });
            }
        }
        Ok(())
    }

    async fn wait_ready(&mut self, deadline: Instant) -> Result<(), ToolError> {
        let addr: SocketAddr = self
            .url
            .trim_start_matches("https://")
            .parse()
            .expect("the url is an address");
        let mut last = String::from("not listening yet");
        loop {
            self.check_alive()?;
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                match self.kubectl(&["get", "--raw", "/readyz"]).await {
                    Ok(_) => return Ok(()),
                    Err(error) => last = error.to_string(),
                }
            }
            if Instant::now() > deadline {
                let log = self.dir.path().join("kube-apiserver.log");
                return Err(ToolError::Failed {
                    command: "kube-apiserver".into(),
                    status: format!("not ready within {START_TIMEOUT:?}"),
                    output: format!(
                        "last: {last}\n{} ends with:\n{}",
                        log.display(),
                        tail(&log, 30)
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn install_crds(&mut self, crds: &[PathBuf], deadline: Instant) -> Result<(), ToolError> {
        if crds.is_empty() {
            return Ok(());
        }
        // `create`, not client-side `apply`: the CRDs' schemas are larger than the annotation
        // client-side apply keeps.
        let mut args = vec!["create".to_string(), "-o".into(), "name".into()];
        for crd in crds {
            args.push("-f".into());
            args.push(crd.display().to_string());
        }
        let created = self.kubectl(&args).await?;
        let names: Vec<String> = created
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_string)
            .collect();
        loop {
            self.check_alive()?;
            let mut wait = vec![
                "wait".to_string(),
                "--for=condition=Established".into(),
                "--timeout=5s".into(),
            ];
            wait.extend(names.iter().cloned());
            match self.kubectl(&wait).await {
                Ok(_) => return Ok(()),
                Err(error) if Instant::now() > deadline => return Err(error),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Runs kubectl against this server; its stdout on success.
    pub async fn kubectl<S: AsRef<str>>(&self, args: &[S]) -> Result<String, ToolError> {
        let mut command = Command::new(&self.kubectl);
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache_dir)
            .args(args.iter().map(AsRef::as_ref))
            .env_remove("KUBECONFIG");
        let line = format!(
            "kubectl {}",
            args.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(" ")
        );
        run(command, &line).await
    }

    /// The kubeconfig that reaches this server as an admin (for other tools: Helm, a controller).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The server's URL (`https://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How long the server took to answer `/readyz` (keys and certificates included).
    pub fn ready_in(&self) -> Duration {
        self.ready_in
    }

    /// How long [`ApiServer::start`] took, CRDs included.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// How many kubectl batches [`ApiServer::validate`] has sent (for timing reports).
    pub fn batches(&self) -> usize {
        *self.batches.lock().expect("batches lock")
    }

    /// Creates `namespace` (for real, not a dry run) unless it exists.
    pub async fn ensure_namespace(&self, namespace: &str) -> Result<(), ToolError> {
        if self
            .namespaces
            .lock()
            .expect("namespaces lock")
            .contains(namespace)
        {
            return Ok(());
        }
        match self.kubectl(&["create", "namespace", namespace]).await {
            Ok(_) => {}
            Err(ToolError::Failed { output, .. }) if output.contains("AlreadyExists") => {}
            Err(error) => return Err(error),
        }
        self.namespaces
            .lock()
            .expect("namespaces lock")
            .insert(namespace.to_string());
        Ok(())
    }

    /// [`split_documents`] and [`ApiServer::validate`] in one: every document of `text`.
    pub async fn validate_yaml(&self, label: &str, text: &str) -> Result<Validation, ToolError> {
        let mut objects = Vec::new();
        let mut unreadable = Vec::new();
        for document in split_documents(label, text) {
            match document {
                Ok(object) => objects.push(object),
                Err(bad) => unreadable.push(bad),
            }
        }
        let mut validation = self.validate(&objects, "default").await?;
        validation.unreadable.extend(unreadable);
        Ok(validation)
    }

    /// Judges `objects` with a server-side dry run and strict field validation; objects that name
    /// no namespace are judged in `default_namespace`. One kubectl call per namespace judges a
    /// whole batch; when a batch fails, its objects are judged one by one for their own errors.
    /// An `Err` means the judge itself failed, not an object.
    pub async fn validate(
        &self,
        objects: &[Object],
        default_namespace: &str,
    ) -> Result<Validation, ToolError> {
        let mut verdicts: Vec<Option<Option<String>>> = vec![None; objects.len()];
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (index, object) in objects.iter().enumerate() {
            let namespace = object
                .namespace
                .clone()
                .unwrap_or_else(|| default_namespace.to_string());
            let known = self
                .judged
                .lock()
                .expect("judged lock")
                .get(&(namespace.clone(), object.text.clone()))
                .cloned();
            match known {
                Some(verdict) => verdicts[index] = Some(verdict),
                None => groups.entry(namespace).or_default().push(index),
            }
        }
        for (namespace, indexes) in groups {
            self.ensure_namespace(&namespace).await?;
            let batch: Vec<&Object> = indexes.iter().map(|&i| &objects[i]).collect();
            let results = self.judge_batch(&namespace, &batch).await?;
            let mut judged = self.judged.lock().expect("judged lock");
            for (&index, result) in indexes.iter().zip(results) {
                judged.insert(
                    (namespace.clone(), objects[index].text.clone()),
                    result.clone(),
                );
                verdicts[index] = Some(result);
            }
        }
        Ok(Validation {
            verdicts: objects
                .iter()
                .cloned()
                .zip(verdicts)
                .map(|(object, error)| Verdict {
                    object,
                    error: error.expect("every object judged"),
                })
                .collect(),
            unreadable: Vec::new(),
        })
    }

    fn dry_run_args(namespace: &str, file: &Path) -> Vec<String> {
        vec![
            "apply".into(),
            "--server-side".into(),
            "--dry-run=server".into(),
            "--validate=strict".into(),
            "--field-manager=valkey-lab".into(),
            "--namespace".into(),
            namespace.into(),
            "-o".into(),
            "name".into(),
            "-f".into(),
            file.display().to_string(),
        ]
    }

    async fn judge_batch(
        &self,
        namespace: &str,
        batch: &[&Object],
    ) -> Result<Vec<Option<String>>, ToolError> {
        let id = {
            let mut batches = self.batches.lock().expect("batches lock");
            *batches += 1;
            *batches
        };
        let dir = self.dir.path().join(format!("validate-{id}"));
        fs::create_dir_all(&dir)
            .map_err(|e| ToolError::io(format!("creating {}", dir.display()), e))?;
        let mut files = Vec::new();
        for (index, object) in batch.iter().enumerate() {
            let file = dir.join(format!("{index:04}.yaml"));
            fs::write(&file, &object.text)
                .map_err(|e| ToolError::io(format!("writing {}", file.display()), e))?;
            files.push(file);
        }
        match self.kubectl(&Self::dry_run_args(namespace, &dir)).await {
            Ok(_) => return Ok(vec![None; batch.len()]),
            Err(ToolError::Failed { .. }) => {}
            Err(error) => return Err(error),
        }
        // Someone was rejected: judge each alone, a few at a time, for its own error.
        let limit = Arc::new(Semaphore::new(PARALLEL_KUBECTL));
        let mut tasks = JoinSet::new();
        for (index, file) in files.into_iter().enumerate() {
            let limit = Arc::clone(&limit);
            let mut command = Command::new(&self.kubectl);
            command
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .arg("--cache-dir")
                .arg(&self.cache_dir)
                .args(Self::dry_run_args(namespace, &file))
                .env_remove("KUBECONFIG");
            let line = format!(
                "kubectl apply --server-side --dry-run=server -f {}",
                file.display()
            );
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await.expect("semaphore open");
                (index, run(command, &line).await)
            });
        }
        let mut results = vec![None; batch.len()];
        while let Some(joined) = tasks.join_next().await {
            let (index, result) =
                joined.map_err(|e| ToolError::io("joining a kubectl task", io::Error::other(e)))?;
            results[index] = match result {
                Ok(_) => None,
                Err(ToolError::Failed { output, .. }) => Some(output),
                Err(error) => return Err(error),
            };
        }
        Ok(results)
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        for child in [self.apiserver.take(), self.etcd.take()]
            .into_iter()
            .flatten()
        {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            // The logs and the judged files, not etcd's data (over 100 MB of preallocated WAL).
            let _ = fs::remove_dir_all(self.dir.path().join("etcd"));
            self.dir.keep();
            eprintln!(
                "api server logs kept in {} (kube-apiserver.log, etcd.log, validate-*/)",
                self.dir.path().display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_split_with_their_helm_source_and_empty_ones_skipped() {
        let text = "---\n# Source: valkey/templates/a.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: ns\n---\n# Source: valkey/templates/empty.yaml\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: b\n";
        let objects: Vec<Object> = split_documents("chart", text)
            .into_iter()
            .map(|d| d.expect("an object"))
            .collect();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0].source, "chart: valkey/templates/a.yaml");
        assert_eq!(objects[0].namespace.as_deref(), Some("ns"));
        assert_eq!(
            (objects[1].kind.as_str(), objects[1].name.as_str()),
            ("Secret", "b")
        );
        assert_eq!(objects[1].namespace, None);
        assert!(objects[1].text.starts_with("apiVersion: v1\n"));
    }

    #[test]
    fn a_document_that_is_no_object_is_unreadable() {
        let docs = split_documents("x", "kind: ConfigMap\n---\na: [\n");
        assert_eq!(docs.len(), 2);
        assert!(docs.iter().all(Result::is_err), "{docs:?}");
    }

    #[test]
    fn duplicate_keys_are_unreadable() {
        let docs = split_documents(
            "x",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: 1\n  k: 2\n",
        );
        assert!(
            matches!(&docs[..], [Err(bad)] if bad.reason.contains("duplicate")),
            "{docs:?}"
        );
    }
}
