//! The lab: a replication group of real data pods and sentinels on one loopback block.

use std::{
    fmt,
    fs::{self, OpenOptions},
    io::Write as _,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use sentinel_protocol::{
    info::InfoReplication,
    role::Role,
    sentinel::{MasterRecord, ReplicaRecord, SentinelRecord, Value, master_addr},
};

use crate::{
    client::{Client, Credentials, DEFAULT_TIMEOUT, Transport},
    config::{self, AuthSpec, DataConfig, Monitor, SentinelConfig, SentinelTimings, StartRole},
    error::{LabError, Result},
    layout::{AddressBlock, MAX_DATA_PODS, MAX_SENTINELS, SPARE_IPS},
    netlab,
    netns::Network,
    process::{self, Signal},
    tls::{self, LabTls, TlsFiles},
    version::ValkeyVersion,
    wait::POLL_EVERY,
};

/// How long a freshly spawned process has to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a SIGTERMed process has to exit before it gets SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);

/// What to build. Defaults: 3 data pods, 3 sentinels, master name `mymaster`, quorum 2, short
/// sentinel timings, no auth, no RDB, plaintext.
#[derive(Debug, Clone)]
pub struct LabSpec {
    /// Valkey build for every process.
    pub version: ValkeyVersion,
    /// Number of data pods; pod 0 starts as master, the others as its replicas.
    pub data_pods: usize,
    /// Number of sentinels; each starts monitoring pod 0.
    pub sentinels: usize,
    /// The monitored master name.
    pub master_name: String,
    /// Sentinel quorum.
    pub quorum: usize,
    /// Sentinel timings.
    pub timings: SentinelTimings,
    /// Users and passwords; `None` runs everything open.
    pub auth: Option<AuthSpec>,
    /// Keep RDB snapshots on (`save` rules) instead of `save ""`.
    pub rdb: bool,
    /// TLS only: every pod and sentinel listens with TLS on its standard port and nothing else,
    /// links between them are TLS, and every client needs a certificate of the lab's CA (see
    /// [`crate::tls`] for the certificates and [`crate::config`] for the lines).
    pub tls: bool,
    /// Extra lines appended to every data pod's config.
    pub data_config: Vec<String>,
    /// Extra lines appended to every sentinel's initial config.
    pub sentinel_config: Vec<String>,
    /// A group as KubeBlocks creates it: [`LabSpec::start`] starts no data pod and the sentinels
    /// monitor nothing; the test starts each data pod ([`Lab::start_data`], typically with
    /// [`StartRole::Included`] after running the startup action).
    pub fresh: bool,
    /// Every data pod and sentinel in a member of its own [`Network`] (a network namespace on a
    /// private /24) instead of on the loopback block, so links can be cut one by one (see
    /// [`crate::netlab`]).
    pub netns: bool,
}

impl LabSpec {
    /// The default group on `version`.
    pub fn new(version: ValkeyVersion) -> Self {
        LabSpec {
            version,
            data_pods: 3,
            sentinels: 3,
            master_name: "mymaster".into(),
            quorum: 2,
            timings: SentinelTimings::default(),
            auth: None,
            rdb: false,
            tls: false,
            data_config: Vec::new(),
            sentinel_config: Vec::new(),
            fresh: false,
            netns: false,
        }
    }

    /// Makes it a fresh group (see [`LabSpec::fresh`]).
    pub fn fresh(mut self) -> Self {
        self.fresh = true;
        self
    }

    /// Sets the number of data pods.
    pub fn data_pods(mut self, n: usize) -> Self {
        self.data_pods = n;
        self
    }

    /// Sets the number of sentinels (and the quorum to a majority of them).
    pub fn sentinels(mut self, n: usize) -> Self {
        self.sentinels = n;
        self.quorum = n / 2 + 1;
        self
    }

    /// Sets the sentinel timings.
    pub fn timings(mut self, timings: SentinelTimings) -> Self {
        self.timings = timings;
        self
    }

    /// Turns authentication on.
    pub fn auth(mut self, auth: AuthSpec) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Turns RDB snapshots on.
    pub fn rdb(mut self, on: bool) -> Self {
        self.rdb = on;
        self
    }

    /// Puts every pod in a network namespace of its own (see [`LabSpec::netns`]); not with TLS.
    pub fn netns(mut self, on: bool) -> Self {
        self.netns = on;
        self
    }

    /// Turns TLS-only mode on (see [`LabSpec::tls`]); the version must be one of
    /// [`ValkeyVersion::TLS`].
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    /// Starts the processes and returns once each answers `PING`. Replication and sentinel
    /// discovery take a moment more: call [`Lab::wait_formed`] before relying on them.
    pub async fn start(self) -> Result<Lab> {
        assert!(self.data_pods >= 1 && self.data_pods <= MAX_DATA_PODS);
        assert!(self.sentinels <= MAX_SENTINELS);
        let binary = self.version.server_binary()?;
        if self.tls && !self.version.has_tls() {
            return Err(LabError::NoTlsSupport {
                version: self.version,
            });
        }
        let block = AddressBlock::claim(self.data_pods, self.sentinels)?;
        let root = std::env::temp_dir().join(format!(
            "valkey-lab-{}-{}",
            std::process::id(),
            block.number()
        ));
        if root.exists() {
            fs::remove_dir_all(&root)
                .map_err(|e| LabError::io(format!("clearing {}", root.display()), e))?;
        }
        let net = if self.netns {
            assert!(!self.tls, "a lab on namespaces is plaintext only");
            Some(netlab::create_network(self.data_pods, self.sentinels)?)
        } else {
            None
        };
        let data_addr = |i| netlab::pod_addr(net.as_ref(), &block, self.data_pods, PodId::Data(i));
        let sentinel_addr =
            |j| netlab::pod_addr(net.as_ref(), &block, self.data_pods, PodId::Sentinel(j));
        let master = data_addr(0);
        let data: Vec<Pod> = (0..self.data_pods)
            .map(|i| {
                let id = PodId::Data(i);
                let role = if self.fresh {
                    StartRole::Included
                } else if i == 0 {
                    StartRole::Master
                } else {
                    StartRole::ReplicaOf(master)
                };
                Pod::new(id, data_addr(i), &root, role)
            })
            .collect();
        // Every data directory exists from the start, so a test can write a pod's include
        // file before its first start.
        for pod in &data {
            fs::create_dir_all(&pod.dir)
                .map_err(|e| LabError::io(format!("creating {}", pod.dir.display()), e))?;
        }
        let sentinels: Vec<Pod> = (0..self.sentinels)
            .map(|j| {
                let id = PodId::Sentinel(j);
                Pod::new(id, sentinel_addr(j), &root, StartRole::Master)
            })
            .collect();
        let tls = if self.tls {
            Some(issue_tls(&root, &block, data.iter().chain(&sentinels))?)
        } else {
            None
        };
        let transport = match tls.as_ref().and_then(|t| t.volume(tls::CLIENT)) {
            Some(client) => {
                Transport::Tls(tls::client_config(&client.ca, Some(&client.identity()))?)
            }
            None => Transport::Plain,
        };
        let mut lab = Lab {
            spec: self,
            block,
            root,
            binary,
            data,
            sentinels,
            tls,
            transport,
            aux: Vec::new(),
            failed: AtomicBool::new(false),
            net,
        };
        let started = lab.start_initial().await;
        lab.note(started)?;
        Ok(lab)
    }
}

/// The lab's PKI in `<root>/tls`: a volume per pod carrying its IP, one for the client, and the
/// negative material for every address of the block (pods and spares).
fn issue_tls<'a>(
    root: &Path,
    block: &AddressBlock,
    pods: impl Iterator<Item = &'a Pod>,
) -> Result<LabTls> {
    let pods: Vec<&Pod> = pods.collect();
    let spares = (0..SPARE_IPS).map(|k| IpAddr::V4(block.spare_ip(k)));
    let every_ip: Vec<IpAddr> = pods.iter().map(|p| p.addr.ip()).chain(spares).collect();
    let mut tls = LabTls::generate(&root.join("tls"), &every_ip)?;
    for pod in pods {
        tls.issue(&pod.id.to_string(), &[pod.addr.ip()])?;
    }
    tls.issue(tls::CLIENT, &[])?;
    Ok(tls)
}

/// A pod of the lab: data pod `i` or sentinel `j`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PodId {
    /// Data pod (`valkey-i`).
    Data(usize),
    /// Sentinel (`sentinel-j`).
    Sentinel(usize),
}

impl fmt::Display for PodId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PodId::Data(i) => write!(f, "valkey-{i}"),
            PodId::Sentinel(j) => write!(f, "sentinel-{j}"),
        }
    }
}

/// How a sentinel comes back from a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentinelStart {
    /// Its directory is wiped (emptyDir) and it starts with a fresh config that monitors nothing.
    Wiped,
    /// It starts from the config file it last rewrote.
    KeepConfig,
}

#[derive(Debug)]
pub(crate) struct Pod {
    pub(crate) id: PodId,
    pub(crate) addr: SocketAddr,
    /// Data directory (data pod) or config directory (sentinel, the "emptyDir").
    pub(crate) dir: PathBuf,
    /// stdout+stderr of every start, appended; outside `dir` so a wipe keeps it.
    pub(crate) log: PathBuf,
    pub(crate) child: Option<Child>,
    /// Data pods: the role of the last start (a plain restart reuses it).
    pub(crate) role: StartRole,
    pub(crate) starts: u32,
    pub(crate) paused: bool,
}

impl Pod {
    fn new(id: PodId, addr: SocketAddr, root: &Path, role: StartRole) -> Self {
        Pod {
            id,
            addr,
            dir: root.join(id.to_string()),
            log: root.join(format!("{id}.log")),
            child: None,
            role,
            starts: 0,
            paused: false,
        }
    }

    fn config_path(&self) -> PathBuf {
        match self.id {
            PodId::Data(_) => self.dir.join("valkey.conf"),
            PodId::Sentinel(_) => self.dir.join("sentinel.conf"),
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }
}

/// A process the test runs next to the group, owned by the lab: killed with it, and its log in the
/// failure report.
#[derive(Debug)]
pub(crate) struct AuxProcess {
    pub(crate) name: String,
    pub(crate) log: PathBuf,
    pub(crate) child: Option<Child>,
}

/// A running lab. Dropping it kills and reaps every process; if the test is panicking (or a wait
/// failed) it first prints [`Lab::report`] and keeps the lab directory for inspection.
#[derive(Debug)]
pub struct Lab {
    pub(crate) spec: LabSpec,
    pub(crate) block: AddressBlock,
    pub(crate) root: PathBuf,
    binary: PathBuf,
    pub(crate) data: Vec<Pod>,
    pub(crate) sentinels: Vec<Pod>,
    /// The PKI of a TLS lab.
    tls: Option<LabTls>,
    /// How the lab's own clients connect: TLS with the `client` volume's certificate, as it was
    /// when the lab started (rotating that volume changes the files, not this).
    transport: Transport,
    /// Other processes the test started through the lab (a coordinator, a client script).
    pub(crate) aux: Vec<AuxProcess>,
    pub(crate) failed: AtomicBool,
    /// The network of a lab on namespaces; dropped after every process is killed.
    pub(crate) net: Option<Network>,
}

// === impl Lab: layout ===

impl Lab {
    /// The spec the lab was built from.
    pub fn spec(&self) -> &LabSpec {
        &self.spec
    }

    /// The Valkey version.
    pub fn version(&self) -> ValkeyVersion {
        self.spec.version
    }

    /// The monitored master name.
    pub fn master_name(&self) -> &str {
        &self.spec.master_name
    }

    /// The claimed address block (for spare addresses: [`AddressBlock::spare_ip`]).
    pub fn block(&self) -> &AddressBlock {
        &self.block
    }

    /// The lab's directory.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Number of data pods.
    pub fn data_count(&self) -> usize {
        self.data.len()
    }

    /// Number of sentinels.
    pub fn sentinel_count(&self) -> usize {
        self.sentinels.len()
    }

    /// A majority of the configured sentinels.
    pub fn majority(&self) -> usize {
        self.sentinels.len() / 2 + 1
    }

    /// Address of a pod.
    pub fn addr(&self, id: PodId) -> SocketAddr {
        self.pod(id).addr
    }

    /// `ip:6379` of data pod `i`.
    pub fn data_addr(&self, i: usize) -> SocketAddr {
        self.data[i].addr
    }

    /// `ip:26379` of sentinel `j`.
    pub fn sentinel_addr(&self, j: usize) -> SocketAddr {
        self.sentinels[j].addr
    }

    /// Every data pod's address, by index.
    pub fn data_addrs(&self) -> Vec<SocketAddr> {
        self.data.iter().map(|p| p.addr).collect()
    }

    /// Every sentinel's address, by index.
    pub fn sentinel_addrs(&self) -> Vec<SocketAddr> {
        self.sentinels.iter().map(|p| p.addr).collect()
    }

    /// Index of the data pod at `addr`.
    pub fn data_index(&self, addr: SocketAddr) -> Option<usize> {
        self.data.iter().position(|p| p.addr == addr)
    }

    /// The pid of a running pod.
    pub fn pid(&self, id: PodId) -> Option<u32> {
        self.pod(id).child.as_ref().map(Child::id)
    }

    /// Whether the pod's process is running (paused counts as running).
    pub fn is_running(&self, id: PodId) -> bool {
        self.pod(id).child.is_some()
    }

    /// Log file of a pod (stdout and stderr of every start).
    pub fn log_path(&self, id: PodId) -> &Path {
        &self.pod(id).log
    }

    /// Credentials for the data pods (`default` user), if auth is on.
    pub fn data_credentials(&self) -> Option<Credentials> {
        self.spec
            .auth
            .as_ref()
            .map(|a| Credentials::password(a.default_password.clone()))
    }

    /// Credentials for the sentinels, if they require a password.
    pub fn sentinel_credentials(&self) -> Option<Credentials> {
        self.spec
            .auth
            .as_ref()
            .and_then(|a| a.sentinel_password.clone())
            .map(Credentials::password)
    }

    /// Credentials for a pod.
    pub fn credentials(&self, id: PodId) -> Option<Credentials> {
        match id {
            PodId::Data(_) => self.data_credentials(),
            PodId::Sentinel(_) => self.sentinel_credentials(),
        }
    }

    /// A new authenticated connection to a pod, over TLS in a TLS lab.
    pub async fn client(&self, id: PodId) -> Result<Client> {
        let credentials = self.credentials(id);
        Client::connect_over(
            self.addr(id),
            &self.transport,
            credentials.as_ref(),
            DEFAULT_TIMEOUT,
        )
        .await
    }

    /// How the lab's own clients connect (plaintext, or TLS with the client certificate): for a
    /// test's own [`Client::connect_over`], [`crate::EventLog::start_on`] and the like.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Whether the lab is TLS-only.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The lab's PKI (CA, volumes, negative material), in a TLS lab.
    pub fn tls(&self) -> Option<&LabTls> {
        self.tls.as_ref()
    }

    /// The PKI, to issue more volumes (a coordinator's server certificate on a spare IP) or to
    /// rotate one ([`LabTls::rotate`]). A running data pod reads rotated files only when told
    /// (`CONFIG SET tls-cert-file <same path> ...`; Valkey 9 also has `tls-auto-reload-interval`);
    /// a sentinel has no `CONFIG` and `SENTINEL CONFIG SET` refuses `tls-*` (8.0.1, 8.1.1 and
    /// 9.1.2 alike), so a sentinel picks up new files only when restarted.
    pub fn tls_mut(&mut self) -> Option<&mut LabTls> {
        self.tls.as_mut()
    }

    /// The client volume in a TLS lab: `ca`, `cert` and `key` are what a coordinator is handed
    /// as its CA and client certificate.
    pub fn tls_client(&self) -> Option<&TlsFiles> {
        self.tls.as_ref().and_then(|t| t.volume(tls::CLIENT))
    }

    /// A pod's volume in a TLS lab (what its config names).
    pub fn tls_files(&self, id: PodId) -> Option<&TlsFiles> {
        self.tls.as_ref().and_then(|t| t.volume(&id.to_string()))
    }

    pub(crate) fn pod(&self, id: PodId) -> &Pod {
        match id {
            PodId::Data(i) => &self.data[i],
            PodId::Sentinel(j) => &self.sentinels[j],
        }
    }

    fn pod_mut(&mut self, id: PodId) -> &mut Pod {
        match id {
            PodId::Data(i) => &mut self.data[i],
            PodId::Sentinel(j) => &mut self.sentinels[j],
        }
    }

    pub(crate) fn pods(&self) -> impl Iterator<Item = &Pod> {
        self.data.iter().chain(self.sentinels.iter())
    }

    /// Forgets earlier failed waits, for a test that expected one to fail (a negative check):
    /// `Drop` will then clean up quietly if nothing else fails.
    pub fn clear_failed(&self) {
        self.failed.store(false, Ordering::Relaxed);
    }

    /// Marks the lab failed when `result` is an error, so that `Drop` prints the report and keeps
    /// the directory even if the test handles the error without panicking.
    pub(crate) fn note<T>(&self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            self.failed.store(true, Ordering::Relaxed);
        }
        result
    }
}

// === impl Lab: processes ===

impl Lab {
    async fn start_initial(&mut self) -> Result<()> {
        let fresh = self.spec.fresh;
        if !fresh {
            for i in 0..self.data.len() {
                self.start_pod(PodId::Data(i)).await?;
            }
        }
        for j in 0..self.sentinels.len() {
            self.write_sentinel_config(j, !fresh)?;
            self.start_pod(PodId::Sentinel(j)).await?;
        }
        Ok(())
    }

    /// SIGKILLs a pod and reaps it (`kill -9`: no shutdown, no save).
    pub fn kill(&mut self, id: PodId) {
        self.pod_mut(id).kill();
    }

    /// SIGSTOPs a pod: it keeps its sockets and answers nothing.
    pub fn pause(&mut self, id: PodId) -> Result<()> {
        self.signal(id, Signal::Stop)?;
        self.pod_mut(id).paused = true;
        Ok(())
    }

    /// SIGCONTs a paused pod.
    pub fn resume(&mut self, id: PodId) -> Result<()> {
        self.signal(id, Signal::Cont)?;
        self.pod_mut(id).paused = false;
        Ok(())
    }

    fn signal(&self, id: PodId, signal: Signal) -> Result<()> {
        let pod = self.pod(id);
        let child = pod.child.as_ref().ok_or_else(|| LabError::NotRunning {
            pod: id.to_string(),
        })?;
        process::send_signal(child, signal)
            .map_err(|e| LabError::io(format!("sending {signal:?} to {id}"), e))
    }

    /// SIGTERMs a pod (a graceful shutdown, as Kubernetes does) and waits for it to exit, with
    /// SIGKILL after a grace period.
    pub async fn terminate(&mut self, id: PodId) -> Result<()> {
        if self.pod(id).paused {
            self.resume(id)?;
        }
        if self.pod(id).child.is_none() {
            return Ok(());
        }
        self.signal(id, Signal::Term)?;
        let deadline = tokio::time::Instant::now() + TERM_GRACE;
        let pod = self.pod_mut(id);
        while let Some(child) = pod.child.as_mut() {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => pod.child = None,
                Ok(None) if tokio::time::Instant::now() >= deadline => pod.kill(),
                Ok(None) => tokio::time::sleep(POLL_EVERY).await,
            }
        }
        Ok(())
    }

    /// Starts a stopped data pod with `role`, keeping its data directory. Returns once it answers
    /// `PING`.
    pub async fn start_data(&mut self, i: usize, role: StartRole) -> Result<()> {
        self.data[i].role = role;
        let started = self.start_pod(PodId::Data(i)).await;
        self.note(started)
    }

    /// Kills data pod `i` if running and starts it again with `role`, keeping its data directory
    /// (a pod restart on a PVC). A managed pod gets its role from its start script, hence the
    /// explicit role; [`Lab::restart`] reuses the last one.
    pub async fn restart_data(&mut self, i: usize, role: StartRole) -> Result<()> {
        self.kill(PodId::Data(i));
        self.start_data(i, role).await
    }

    /// Kills sentinel `j` if running and starts it again, wiped or from its own config.
    pub async fn restart_sentinel(&mut self, j: usize, how: SentinelStart) -> Result<()> {
        self.kill(PodId::Sentinel(j));
        self.start_sentinel(j, how).await
    }

    /// Starts a stopped sentinel, wiped or from its own config.
    pub async fn start_sentinel(&mut self, j: usize, how: SentinelStart) -> Result<()> {
        let result = async {
            if how == SentinelStart::Wiped || !self.sentinels[j].config_path().exists() {
                self.write_sentinel_config(j, false)?;
            }
            self.start_pod(PodId::Sentinel(j)).await
        }
        .await;
        self.note(result)
    }

    /// Restarts any pod: a data pod with its last role, a sentinel wiped (emptyDir semantics).
    pub async fn restart(&mut self, id: PodId) -> Result<()> {
        match id {
            PodId::Data(i) => {
                let role = self.data[i].role;
                self.restart_data(i, role).await
            }
            PodId::Sentinel(j) => self.restart_sentinel(j, SentinelStart::Wiped).await,
        }
    }

    /// Stops everything gracefully (SIGTERM, SIGKILL after a grace period): sentinels first, so
    /// they do not fail over a master that is merely being stopped.
    pub async fn stop_all(&mut self) -> Result<()> {
        for j in 0..self.sentinels.len() {
            self.terminate(PodId::Sentinel(j)).await?;
        }
        for i in 0..self.data.len() {
            self.terminate(PodId::Data(i)).await?;
        }
        Ok(())
    }

    /// Starts every stopped pod: data pods with their last role, sentinels as `sentinels` says.
    pub async fn start_all(&mut self, sentinels: SentinelStart) -> Result<()> {
        for i in 0..self.data.len() {
            if !self.is_running(PodId::Data(i)) {
                let role = self.data[i].role;
                self.start_data(i, role).await?;
            }
        }
        for j in 0..self.sentinels.len() {
            if !self.is_running(PodId::Sentinel(j)) {
                self.start_sentinel(j, sentinels).await?;
            }
        }
        Ok(())
    }

    /// Registers the master on sentinel `j` at runtime: `SENTINEL MONITOR` and then every
    /// `SENTINEL SET` the lab's config would have had (timings, auth).
    pub async fn monitor(&self, j: usize, master: SocketAddr) -> Result<()> {
        let timings = self.spec.timings.clone();
        let monitor = Monitor {
            name: &self.spec.master_name,
            master,
            quorum: self.spec.quorum,
            timings: &timings,
        };
        let mut client = self.client(PodId::Sentinel(j)).await?;
        for (k, line) in config::monitor_lines(&monitor, self.spec.auth.as_ref())
            .into_iter()
            .enumerate()
        {
            let mut args = vec!["SENTINEL".to_string()];
            if k > 0 {
                // Every line but MONITOR is a `SENTINEL SET <name> <option> <value>`.
                args.push("SET".into());
                let (option, rest) = line.split_at(1);
                args.push(rest[0].clone());
                args.push(option[0].clone());
                args.extend(rest[1..].iter().cloned());
            } else {
                args.extend(line);
            }
            client.call(&args).await?;
        }
        Ok(())
    }

    /// Spawns another process under the lab (through the same spawner, so it dies with the test),
    /// with stdout and stderr appended to `<lab dir>/<name>.log`. The lab kills it on drop and
    /// shows its log in the failure report. Returns its pid.
    pub async fn spawn_aux(&mut self, name: &str, mut command: Command) -> Result<u32> {
        self.kill_aux(name);
        fs::create_dir_all(&self.root)
            .map_err(|e| LabError::io(format!("creating {}", self.root.display()), e))?;
        let log = self.root.join(format!("{name}.log"));
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| LabError::io(format!("opening {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| LabError::io("cloning a log handle", e))?;
        command.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = process::spawn(command)
            .await
            .map_err(|e| LabError::io(format!("spawning {name}"), e))?;
        let pid = child.id();
        self.aux.retain(|a| a.name != name);
        self.aux.push(AuxProcess {
            name: name.to_string(),
            log,
            child: Some(child),
        });
        Ok(pid)
    }

    /// SIGKILLs and reaps an auxiliary process, if running.
    pub fn kill_aux(&mut self, name: &str) {
        for aux in self.aux.iter_mut().filter(|a| a.name == name) {
            if let Some(mut child) = aux.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Log file of an auxiliary process.
    pub fn aux_log(&self, name: &str) -> Option<&Path> {
        self.aux
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.log.as_path())
    }

    /// The file data pod `i` includes when started with [`StartRole::Included`] (in its data
    /// directory, which exists from the lab's start): where a test has the startup action write
    /// the pod's role.
    pub fn include_path(&self, i: usize) -> PathBuf {
        self.data[i].dir.join(config::INCLUDE_FILE)
    }

    /// The role data pod `i` was last started with (what a plain [`Lab::restart`] reuses).
    pub fn start_role(&self, i: usize) -> StartRole {
        self.data[i].role
    }

    fn write_sentinel_config(&mut self, j: usize, with_monitor: bool) -> Result<()> {
        let master = self.data[0].addr;
        let pod = &self.sentinels[j];
        if pod.dir.exists() {
            fs::remove_dir_all(&pod.dir)
                .map_err(|e| LabError::io(format!("wiping {}", pod.dir.display()), e))?;
        }
        fs::create_dir_all(&pod.dir)
            .map_err(|e| LabError::io(format!("creating {}", pod.dir.display()), e))?;
        let monitor = with_monitor.then(|| Monitor {
            name: &self.spec.master_name,
            master,
            quorum: self.spec.quorum,
            timings: &self.spec.timings,
        });
        let text = config::render_sentinel(&SentinelConfig {
            addr: pod.addr,
            dir: &pod.dir,
            monitor,
            auth: self.spec.auth.as_ref(),
            tls: self.tls_files(pod.id),
            extra: &self.spec.sentinel_config,
        });
        let path = pod.config_path();
        fs::write(&path, text).map_err(|e| LabError::io(format!("writing {}", path.display()), e))
    }

    fn write_data_config(&self, i: usize) -> Result<()> {
        let pod = &self.data[i];
        fs::create_dir_all(&pod.dir)
            .map_err(|e| LabError::io(format!("creating {}", pod.dir.display()), e))?;
        let text = config::render_data(&DataConfig {
            addr: pod.addr,
            dir: &pod.dir,
            role: pod.role,
            auth: self.spec.auth.as_ref(),
            rdb: self.spec.rdb,
            tls: self.tls_files(pod.id),
            extra: &self.spec.data_config,
        });
        let path = pod.config_path();
        fs::write(&path, text).map_err(|e| LabError::io(format!("writing {}", path.display()), e))
    }

    /// Spawns a pod's process and waits until it answers `PING`.
    async fn start_pod(&mut self, id: PodId) -> Result<()> {
        if self.is_running(id) {
            return Ok(());
        }
        if let PodId::Data(i) = id {
            self.write_data_config(i)?;
        }
        let credentials = self.credentials(id);
        let transport = self.transport.clone();
        let binary = self.binary.clone();
        let pod = self.pod_mut(id);
        pod.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&pod.log)
            .map_err(|e| LabError::io(format!("opening {}", pod.log.display()), e))?;
        let _ = writeln!(log, "===== valkey-lab: start #{} of {id} =====", pod.starts);
        let stderr = log
            .try_clone()
            .map_err(|e| LabError::io("cloning a log handle", e))?;
        let mut command = match &self.net {
            Some(net) => {
                netlab::command_in(net, netlab::pod_member(net, self.data.len(), id), &binary)
            }
            None => Command::new(&binary),
        };
        let pod = self.pod_mut(id);
        command
            .arg(pod.config_path())
            .current_dir(&pod.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr);
        if let PodId::Sentinel(_) = id {
            command.arg("--sentinel");
        }
        let child = process::spawn(command)
            .await
            .map_err(|e| LabError::io(format!("spawning {} for {id}", binary.display()), e))?;
        pod.child = Some(child);
        pod.paused = false;
        let addr = pod.addr;

        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            let pod = self.pod_mut(id);
            if let Some(child) = pod.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                pod.child = None;
                return Err(LabError::StartFailed {
                    pod: id.to_string(),
                    reason: format!("exited with {status}"),
                    log: pod.log.clone(),
                });
            }
            let attempt = async {
                let mut client =
                    Client::connect_over(addr, &transport, credentials.as_ref(), DEFAULT_TIMEOUT)
                        .await?;
                client.ping().await
            };
            let last = match attempt.await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(LabError::StartFailed {
                    pod: id.to_string(),
                    reason: format!("no PONG within {START_TIMEOUT:?}: {last}"),
                    log: self.pod(id).log.clone(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

// === impl Lab: observations ===

impl Lab {
    /// `ROLE` of a pod.
    pub async fn role(&self, id: PodId) -> Result<Role> {
        self.client(id).await?.role().await
    }

    /// `INFO replication` of data pod `i`.
    pub async fn replication_info(&self, i: usize) -> Result<InfoReplication> {
        self.client(PodId::Data(i)).await?.info_replication().await
    }

    /// What sentinel `j` answers to `SENTINEL GET-MASTER-ADDR-BY-NAME`.
    pub async fn sentinel_master_addr(&self, j: usize) -> Result<Option<SocketAddr>> {
        let mut client = self.client(PodId::Sentinel(j)).await?;
        let command = ["SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name()];
        let frame = client.call(&command).await?;
        match master_addr(&Value::from(&frame)) {
            Ok(None) => Ok(None),
            Ok(Some((ip, port))) => format!("{ip}:{port}")
                .parse()
                .map(Some)
                .map_err(|_| client.unexpected("SENTINEL GET-MASTER-ADDR-BY-NAME", &frame)),
            Err(_) => Err(client.unexpected("SENTINEL GET-MASTER-ADDR-BY-NAME", &frame)),
        }
    }

    /// Sentinel `j`'s `SENTINEL MASTER <name>` record; `None` when it does not monitor the name.
    pub async fn sentinel_master(&self, j: usize) -> Result<Option<MasterRecord>> {
        let mut client = self.client(PodId::Sentinel(j)).await?;
        match client
            .call_typed(&["SENTINEL", "MASTER", self.master_name()])
            .await
        {
            Ok(record) => Ok(Some(record)),
            Err(LabError::Server { message, .. }) if message.contains("No such master") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sentinel `j`'s `SENTINEL REPLICAS <name>` records.
    pub async fn sentinel_replicas(&self, j: usize) -> Result<Vec<ReplicaRecord>> {
        let mut client = self.client(PodId::Sentinel(j)).await?;
        client
            .call_typed(&["SENTINEL", "REPLICAS", self.master_name()])
            .await
    }

    /// Sentinel `j`'s `SENTINEL SENTINELS <name>` records.
    pub async fn sentinel_sentinels(&self, j: usize) -> Result<Vec<SentinelRecord>> {
        let mut client = self.client(PodId::Sentinel(j)).await?;
        client
            .call_typed(&["SENTINEL", "SENTINELS", self.master_name()])
            .await
    }
}
