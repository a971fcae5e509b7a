//! Failovers with kill -9, watched from three sides at once: the sentinels' own `+switch-master`
//! (the lab's event log), the coordinator's tap and its `GET-MASTER-ADDR-BY-NAME`, each stamped
//! on this process's clock when it arrived here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use sentinel_protocol::event::{Channel, InstanceKind, Payload, PubSubFrame};
use sentinel_protocol::sentinel::Value;
use serde_json::Value as Json;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use valkey_lab::{Client, EventLog, Lab, PodId, StartRole};

use crate::coordinator::{self, Process};

/// A `+switch-master` as the coordinator's tap delivered it.
#[derive(Debug, Clone)]
struct Tapped {
    at: Instant,
    old: SocketAddr,
    new: SocketAddr,
}

/// One RESP subscription to the coordinator's `+switch-master`, as a client would hold it.
pub struct Tap {
    messages: mpsc::UnboundedReceiver<Tapped>,
    task: tokio::task::JoinHandle<()>,
}

impl Tap {
    pub async fn start(addr: SocketAddr) -> anyhow::Result<Self> {
        let mut client = Client::connect(addr, None).await?;
        client.send(&["SUBSCRIBE", "+switch-master"]).await?;
        let confirmation = client.next().await?.context("closed before confirming")?;
        if !matches!(
            PubSubFrame::from_value(&Value::from(&confirmation)),
            Ok(PubSubFrame::Confirmation { .. })
        ) {
            bail!("SUBSCRIBE +switch-master was not confirmed");
        }
        let (tx, messages) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok(Some(frame)) = client.next().await {
                let at = Instant::now();
                let event = PubSubFrame::from_value(&Value::from(&frame))
                    .ok()
                    .and_then(|f| f.event());
                if let Some(event) = event
                    && let Some((old, new)) = switch_addrs(&event.payload)
                    && tx.send(Tapped { at, old, new }).is_err()
                {
                    return;
                }
            }
        });
        Ok(Self { messages, task })
    }

    fn drain(&mut self) {
        while self.messages.try_recv().is_ok() {}
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn switch_addrs(payload: &Payload) -> Option<(SocketAddr, SocketAddr)> {
    let Payload::SwitchMaster {
        old_ip,
        old_port,
        new_ip,
        new_port,
        ..
    } = payload
    else {
        return None;
    };
    Some((
        format!("{old_ip}:{old_port}").parse().ok()?,
        format!("{new_ip}:{new_port}").parse().ok()?,
    ))
}

/// What one failover looked like from here.
#[derive(Debug, Clone)]
pub struct Observed {
    pub old: SocketAddr,
    pub new: SocketAddr,
    /// When the first sentinel's `+switch-master` arrived.
    pub first_switch: Instant,
    /// When the last sentinel of the majority's `+switch-master` arrived: the moment the
    /// sentinels, as a group, have decided.
    pub majority_switch: Instant,
    /// When the coordinator's tap delivered `+switch-master`.
    pub tapped: Instant,
    /// When `GET-MASTER-ADDR-BY-NAME` on the coordinator first named the new master.
    pub answered: Instant,
}

/// `later - earlier` in milliseconds, negative when `later` came first.
pub fn signed_ms(later: Instant, earlier: Instant) -> f64 {
    if later >= earlier {
        (later - earlier).as_secs_f64() * 1e3
    } else {
        -((earlier - later).as_secs_f64() * 1e3)
    }
}

/// Kills the master (data pod `index`) with SIGKILL and watches the failover. The tight poll of
/// `GET-MASTER-ADDR-BY-NAME` starts at the first `+sdown` of the master, so the seconds of
/// `down-after-milliseconds` before it are not spent hammering the coordinator.
pub async fn kill_and_observe(
    lab: &mut Lab,
    events: &EventLog,
    tap: &mut Tap,
    process: &Process,
    index: usize,
    timeout: Duration,
) -> anyhow::Result<Observed> {
    let name = lab.master_name().to_owned();
    let majority = lab.majority();
    let old = lab.data_addr(index);
    let mut stream = events.subscribe();
    tap.drain();

    let mut poll_client = Client::connect(process.addr, None).await?;
    let (start_polling, polling_allowed) = oneshot::channel::<()>();
    let poller = {
        let name = name.clone();
        tokio::spawn(async move {
            let _ = polling_allowed.await;
            loop {
                if let Some(addr) = coordinator::master_of(&mut poll_client, &name).await?
                    && addr != old
                {
                    return anyhow::Ok((Instant::now(), addr));
                }
            }
        })
    };
    let mut start_polling = Some(start_polling);

    lab.kill(PodId::Data(index));
    let deadline = Instant::now() + timeout;
    let mut switched: Vec<(usize, Instant, SocketAddr)> = Vec::new();
    let mut tapped: Option<Tapped> = None;
    while switched.len() < majority || tapped.is_none() {
        tokio::select! {
            received = stream.recv() => {
                let event = match received {
                    Ok(event) => event,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => bail!("the event log stopped"),
                };
                match &event.event.payload {
                    Payload::Instance { instance, .. }
                        if event.event.channel == Channel::SDown
                            && instance.kind == InstanceKind::Master
                            && instance.master_name() == name =>
                    {
                        if let Some(start) = start_polling.take() {
                            let _ = start.send(());
                        }
                    }
                    payload => {
                        if let Some((from, to)) = switch_addrs(payload)
                            && from == old
                            && !switched.iter().any(|(j, _, _)| *j == event.sentinel)
                        {
                            switched.push((event.sentinel, event.at, to));
                        }
                    }
                }
            }
            message = tap.messages.recv() => {
                let message = message.context("the tap subscription ended")?;
                if message.old == old {
                    tapped = Some(message);
                }
            }
            () = tokio::time::sleep_until(deadline) => bail!(
                "failover of {old}: {} of {majority} sentinels switched, tap {}, within {timeout:?}",
                switched.len(),
                if tapped.is_some() { "delivered" } else { "silent" },
            ),
        }
    }
    if let Some(start) = start_polling.take() {
        let _ = start.send(());
    }
    let (answered, answered_addr) = tokio::time::timeout_at(deadline, poller)
        .await
        .context("GET-MASTER-ADDR-BY-NAME never named a new master")?
        .context("the poller panicked")??;
    let new = switched[0].2;
    let tapped = tapped.expect("loop ends with a tap message");
    if switched.iter().any(|(_, _, to)| *to != new) || tapped.new != new || answered_addr != new {
        bail!(
            "failover of {old}: sentinels {switched:?}, tap {}, GET-MASTER-ADDR-BY-NAME \
             {answered_addr} disagree",
            tapped.new
        );
    }
    let mut arrivals: Vec<Instant> = switched.iter().map(|(_, at, _)| *at).collect();
    arrivals.sort();
    Ok(Observed {
        old,
        new,
        first_switch: arrivals[0],
        majority_switch: arrivals[majority - 1],
        tapped: tapped.at,
        answered,
    })
}

/// Brings the killed master back as a replica of the new one and waits until the sentinels see
/// the whole group again and the coordinator has every vote with no failover in progress.
pub async fn restore(
    lab: &mut Lab,
    process: &Process,
    killed: usize,
    new: SocketAddr,
    timeout: Duration,
) -> anyhow::Result<()> {
    lab.start_data(killed, StartRole::ReplicaOf(new)).await?;
    lab.wait_sentinels_see(lab.data_count() - 1, lab.sentinel_count() - 1, timeout)
        .await?;
    coordinator::wait_settled(process, lab.master_name(), new, timeout).await
}

/// A redis-py writer process (`bench/clients/writer.py`) and its reports.
pub struct Writer {
    pub label: String,
    _child: Child,
    lines: mpsc::UnboundedReceiver<Json>,
}

impl Writer {
    pub fn spawn(
        python: &Path,
        script: &Path,
        label: &str,
        sentinels: &[SocketAddr],
        name: &str,
        stderr_log: PathBuf,
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(python);
        command.arg(script).args(["--label", label, "--name", name]);
        for sentinel in sentinels {
            command.args(["--sentinel", &sentinel.to_string()]);
        }
        let stderr = std::fs::File::create(&stderr_log)
            .with_context(|| format!("creating {}", stderr_log.display()))?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (run tests/install-clients.sh)",
                    python.display()
                )
            })?;
        let stdout = child.stdout.take().context("piped stdout")?;
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if let Ok(json) = serde_json::from_str::<Json>(&line)
                    && tx.send(json).is_err()
                {
                    return;
                }
            }
        });
        Ok(Self {
            label: label.to_owned(),
            _child: child,
            lines,
        })
    }

    /// The next report whose `event` is `event`.
    pub async fn next_event(&mut self, event: &str, timeout: Duration) -> anyhow::Result<Json> {
        let deadline = Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) if line["event"] == event => return Ok(line),
                Ok(Some(_)) => {}
                Ok(None) => bail!("writer {} exited before `{event}`", self.label),
                Err(_) => bail!("writer {}: no `{event}` within {timeout:?}", self.label),
            }
        }
    }
}
