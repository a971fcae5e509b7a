//! Sentinel healing (DESIGN section 4): sentinels keep their configuration on emptyDir, so a
//! restarted sentinel monitors nothing until someone sends it `SENTINEL MONITOR`. One healer
//! task per master name watches the published [`NameState`], asks the pure [`plan::Planner`]
//! what to do, and carries it out through the one registration routine in [`register`].
//!
//! The healer never decides a master itself: it registers the master the verdict agreed on by a
//! majority of the configured sentinels, or, when every monitor that could make such a majority
//! was lost, the master the data pods prove ([`bootstrap`]). It never sends `SENTINEL RESET`.
//! Each heal is logged with its reason and outcome, counted in the metrics
//! (`valkey_coordinator_heals_total`), and idempotent: the routine completes and verifies a
//! registration that already exists instead of failing on it.

pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use sentinel_protocol::sentinel::{MasterRecord, MonitorSettings};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::addr::{Addr, PodAliases};
use crate::secret::Secret;
use crate::sentinel::conn::{self, Access, Credentials};
use crate::sentinel::dataplane;
use crate::sentinel::register::{self, HealError, MonitorSpec};
use crate::verdict::dataplane::{self as bootstrap, PodProbe, Refusal};
use crate::verdict::{MonotonicTime, majority_of};

use super::registry::{NameState, Registry};

use plan::{ExplicitSettings, HealAction, HealReason, Plan, Planner, PlannerConfig, Snapshot};

/// How long a sentinel may name a wrong master before it is corrected (rule H3).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// How long a sentinel is left alone after it was acted on.
pub const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(1);
/// The deadline of one registration (or one data pod probe).
pub const DEFAULT_ACTION_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the healer looks again without news.
pub const DEFAULT_TICK: Duration = Duration::from_millis(250);

/// Valkey's own defaults for a monitor, used only when neither the operator nor any sentinel
/// says otherwise (every sentinel wiped and no flag given).
pub const ENGINE_DOWN_AFTER_MS: u64 = 30_000;
pub const ENGINE_FAILOVER_TIMEOUT_MS: u64 = 180_000;
pub const ENGINE_PARALLEL_SYNCS: u64 = 1;

/// How the healer registers monitors.
#[derive(Clone)]
pub struct HealConfig {
    /// Settings the operator gave; the rest are copied from the agreed master's record.
    pub explicit: ExplicitSettings,
    /// The ACL user sentinels authenticate as to the data pods (also used to probe them).
    pub data_user: Option<String>,
    /// The password sentinels (and the data-plane probe) use for the data pods.
    pub data_password: Option<Secret>,
    /// `SENTINEL CONFIG SET resolve-hostnames yes` before registering.
    pub resolve_hostnames: bool,
    /// `SENTINEL CONFIG SET announce-hostnames yes` before registering.
    pub announce_hostnames: bool,
    /// The data pods, for rebuilding monitors when every sentinel lost them (rule H6).
    pub data_pods: Vec<Addr>,
    pub grace: Duration,
    pub cool_down: Duration,
    pub action_timeout: Duration,
    pub tick: Duration,
}

impl Default for HealConfig {
    fn default() -> Self {
        Self {
            explicit: ExplicitSettings::default(),
            data_user: None,
            data_password: None,
            resolve_hostnames: false,
            announce_hostnames: false,
            data_pods: Vec::new(),
            grace: DEFAULT_GRACE,
            cool_down: DEFAULT_COOL_DOWN,
            action_timeout: DEFAULT_ACTION_TIMEOUT,
            tick: DEFAULT_TICK,
        }
    }
}

impl HealConfig {
    /// Who the data-plane probe authenticates as: the sentinels' own data-pod user (what
    /// `auth-user`/`auth-pass` register).
    pub fn data_credentials(&self) -> Option<Credentials> {
        self.data_password.clone().map(|password| Credentials {
            user: self.data_user.clone(),
            password,
        })
    }
}

/// Written by hand so the password never reaches a log line.
impl std::fmt::Debug for HealConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealConfig")
            .field("explicit", &self.explicit)
            .field("data_user", &self.data_user)
            .field(
                "data_password",
                &self.data_password.as_ref().map(|_| "<redacted>"),
            )
            .field("resolve_hostnames", &self.resolve_hostnames)
            .field("announce_hostnames", &self.announce_hostnames)
            .field("data_pods", &self.data_pods)
            .field("grace", &self.grace)
            .field("cool_down", &self.cool_down)
            .field("action_timeout", &self.action_timeout)
            .finish_non_exhaustive()
    }
}

/// What a healer shares with the upstream half: how to reach the sentinels and read their
/// views.
#[derive(Clone)]
pub struct HealContext {
    pub sentinel_access: Access,
    /// How the healer's own probes reach the data pods (rule H6).
    pub data_access: Access,
    pub freshness: Duration,
    pub aliases: PodAliases,
    /// The origin of the monotonic clock the views are stamped against.
    pub origin: Instant,
}

/// Runs the healer of `name` until `shutdown` is cancelled.
pub async fn run(
    name: String,
    config: Arc<HealConfig>,
    context: HealContext,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) {
    let Some(mut states) = registry.watch(&name) else {
        return;
    };
    let planner_config = PlannerConfig {
        grace: config.grace,
        cool_down: config.cool_down,
        explicit: config.explicit,
        aliases: context.aliases.clone(),
    };
    let mut healer = Healer {
        name,
        config,
        context,
        registry,
        planner: Planner::default(),
        last_refusal: None,
    };
    let mut tick = tokio::time::interval(planner_config.cool_down.min(healer.config.tick));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = states.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
        }
        let state = Arc::clone(&states.borrow_and_update());
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = healer.step(&state, &planner_config) => {}
        }
    }
}

struct Healer {
    name: String,
    config: Arc<HealConfig>,
    context: HealContext,
    registry: Arc<Registry>,
    planner: Planner,
    /// The last data-plane refusal, so it is logged once per change rather than every tick.
    last_refusal: Option<String>,
}

impl Healer {
    fn now(&self) -> MonotonicTime {
        MonotonicTime::between(self.context.origin.into_std(), Instant::now().into_std())
    }

    async fn step(&mut self, state: &NameState, planner_config: &PlannerConfig) {
        let snapshot = Snapshot {
            configured_sentinels: self.registry.configured_sentinels(),
            verdict: &state.verdict,
            views: &state.views,
            monitors: &state.monitors,
            now: self.now(),
            freshness: self.context.freshness,
        };
        match self.planner.plan(&snapshot, planner_config) {
            Plan::Idle(why) => tracing::trace!(name = %self.name, why, "nothing to heal"),
            Plan::Heal(actions) => {
                let settings = self.settings_for(state);
                self.carry_out(actions, settings).await;
            }
            Plan::ProbeDataPods { targets, named } => {
                let probes = self.probe_data_pods().await;
                match bootstrap::choose_master(&probes, named.as_ref(), &self.context.aliases) {
                    Ok(master) => {
                        self.last_refusal = None;
                        let actions = targets
                            .into_iter()
                            .map(|sentinel| HealAction {
                                sentinel,
                                master: master.clone(),
                                reason: HealReason::DataPlane,
                            })
                            .collect();
                        let settings = self.settings_for(state);
                        self.carry_out(actions, settings).await;
                    }
                    Err(refusal) => self.refuse(&refusal, &probes),
                }
            }
        }
    }

    /// The settings a registration uses: explicit ones, else the agreed master's record, else
    /// what a still-monitoring sentinel has, else Valkey's defaults with a majority quorum.
    fn settings_for(&self, state: &NameState) -> MonitorSettings {
        let configured = self.registry.configured_sentinels();
        let copied = state
            .master_record
            .as_ref()
            .map(MasterRecord::monitor_settings)
            .or_else(|| state.monitors.values().next().copied())
            .unwrap_or(MonitorSettings {
                quorum: majority_of(configured) as u64,
                down_after_ms: ENGINE_DOWN_AFTER_MS,
                failover_timeout_ms: ENGINE_FAILOVER_TIMEOUT_MS,
                parallel_syncs: ENGINE_PARALLEL_SYNCS,
            });
        let explicit = &self.config.explicit;
        MonitorSettings {
            quorum: explicit.quorum.unwrap_or(copied.quorum),
            down_after_ms: explicit.down_after_ms.unwrap_or(copied.down_after_ms),
            failover_timeout_ms: explicit
                .failover_timeout_ms
                .unwrap_or(copied.failover_timeout_ms),
            parallel_syncs: explicit.parallel_syncs.unwrap_or(copied.parallel_syncs),
        }
    }

    /// Runs every action at once, each under its own deadline, and waits for all of them.
    async fn carry_out(&mut self, actions: Vec<HealAction>, settings: MonitorSettings) {
        let mut running = JoinSet::new();
        for action in actions {
            let spec = MonitorSpec {
                name: self.name.clone(),
                master: action.master.clone(),
                settings,
                auth_user: self.config.data_user.clone(),
                auth_pass: self.config.data_password.clone(),
                sentinel_config: self.sentinel_config(),
            };
            let access = self.context.sentinel_access.clone();
            let timeout = self.config.action_timeout;
            running.spawn(async move {
                let started = Instant::now();
                let outcome = tokio::time::timeout(timeout, apply(&action, &spec, &access))
                    .await
                    .unwrap_or(Err(HealError::Timeout(timeout)));
                (action, outcome, started.elapsed())
            });
        }
        while let Some(joined) = running.join_next().await {
            let Ok((action, outcome, took)) = joined else {
                continue;
            };
            self.planner.acted(&action.sentinel, self.now());
            let reason = action.reason.label();
            match outcome {
                Ok(found) => {
                    self.registry.stats().count_heal(reason, "ok");
                    tracing::info!(
                        name = %self.name,
                        sentinel = %action.sentinel,
                        master = %action.master,
                        reason,
                        detail = %action.reason,
                        quorum = found.quorum,
                        down_after_ms = found.down_after_ms,
                        failover_timeout_ms = found.failover_timeout_ms,
                        parallel_syncs = found.parallel_syncs,
                        took_ms = took.as_millis() as u64,
                        "healed sentinel: monitor registered and read back"
                    );
                }
                Err(error) => {
                    self.registry.stats().count_heal(reason, "failed");
                    tracing::warn!(
                        name = %self.name,
                        sentinel = %action.sentinel,
                        master = %action.master,
                        reason,
                        %error,
                        "sentinel heal failed; retrying after the cool-down"
                    );
                }
            }
        }
    }

    fn sentinel_config(&self) -> Vec<(&'static str, &'static str)> {
        let mut settings = Vec::new();
        if self.config.resolve_hostnames {
            settings.push(("resolve-hostnames", "yes"));
        }
        if self.config.announce_hostnames {
            settings.push(("announce-hostnames", "yes"));
        }
        settings
    }

    fn refuse(&mut self, refusal: &Refusal, probes: &[(Addr, PodProbe)]) {
        let text = refusal.to_string();
        if self.last_refusal.as_deref() != Some(text.as_str()) {
            self.registry.stats().count_heal("data_plane", "refused");
            tracing::warn!(
                name = %self.name,
                reason = %text,
                probes = %crate::service::joined(
                    probes.iter().map(|(pod, probe)| format!("{pod} {probe}"))
                ),
                "monitors lost, but the data pods prove no master: registering nothing"
            );
            self.last_refusal = Some(text);
        }
    }

    /// Every configured data pod's `INFO replication`, concurrently, each under the deadline.
    async fn probe_data_pods(&self) -> Vec<(Addr, PodProbe)> {
        let mut probes = JoinSet::new();
        for (index, pod) in self.config.data_pods.iter().enumerate() {
            let pod = pod.clone();
            let access = self.context.data_access.clone();
            let timeout = self.config.action_timeout;
            probes.spawn(async move {
                let probe = tokio::time::timeout(timeout, dataplane::probe(&pod, &access))
                    .await
                    .unwrap_or(Ok(PodProbe::Unreachable))
                    .unwrap_or_else(|error| {
                        tracing::debug!(%pod, %error, "data pod probe failed");
                        PodProbe::Unreachable
                    });
                (index, pod, probe)
            });
        }
        let mut answered = probes.join_all().await;
        answered.sort_by_key(|(index, _, _)| *index);
        answered
            .into_iter()
            .map(|(_, pod, probe)| (pod, probe))
            .collect()
    }
}

/// One action against one sentinel, on a connection of its own.
async fn apply(
    action: &HealAction,
    spec: &MonitorSpec,
    access: &Access,
) -> Result<MonitorSettings, HealError> {
    let mut connection = conn::connect(action.sentinel.addr(), access).await?;
    match &action.reason {
        HealReason::Unmonitored | HealReason::DataPlane => {
            register::register(&mut connection, spec, false).await
        }
        HealReason::WrongMaster { .. } => register::register(&mut connection, spec, true).await,
        HealReason::Settings { differences } => {
            register::reconfigure(&mut connection, spec, differences).await
        }
    }
}
