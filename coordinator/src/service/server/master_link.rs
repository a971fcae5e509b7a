//! The server's own link to each agreed master, so a served master record says `disconnected`
//! the moment that link drops, as a sentinel's record does for its own link.
//!
//! Why: a sentinel learns that a killed master's connection closed at once and flags its record
//! `disconnected` from then on; the coordinator learns it from the sentinels only on its next
//! poll (every 250 ms) and would serve the dead master as plainly `master` in between.
//! node-redis's sentinel client re-reads `SENTINEL MASTER` within milliseconds of its own
//! connection dropping, takes a plain `master` record as the master, and its reconnect-forever
//! connection to the dead address then blocks every later topology refresh. With the server's
//! own link, the window closes as a sentinel's does.
//!
//! Who writes, who reads: one task per master name (started by [`super::run`]) follows the
//! registry's published verdict, keeps one TCP connection to the agreed master and writes the
//! address of a master whose link is down into [`MasterLinks`]; the dispatcher reads it when it
//! builds a master record. Nobody waits on it.
//!
//! The link sends `PING` once a second and reads whatever comes back: `+PONG`, or `-NOAUTH` on
//! a master with a password, are both proof of life, so it needs no credentials. Only certain
//! evidence marks a link down: a refused or failed connect, an end of stream or a socket error
//! (a silent master, partitioned or stopped, is left to the sentinels' `s_down`). Cost: one
//! client connection on the master per coordinator, and a `PING` a second.
//! The link connects through [`crate::sentinel::conn`], like every other link to a server.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::addr::Addr;
use crate::sentinel::conn::{self, Access};
use crate::service::registry::{NameState, Registry};

/// How often a live link says `PING`.
const PING_EVERY: Duration = Duration::from_secs(1);
/// How long a connect may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The pause before reconnecting a link that went down, and its ceiling.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// The masters whose link from this server is down, by master name.
#[derive(Debug, Default)]
pub struct MasterLinks {
    down: DashMap<String, Addr>,
}

impl MasterLinks {
    /// Whether this server's link to `master`, the agreed master of `name`, is down.
    pub fn is_down(&self, name: &str, master: &Addr) -> bool {
        self.down.get(name).is_some_and(|down| *down == *master)
    }

    fn set_down(&self, name: &str, master: &Addr) {
        if !self.is_down(name, master) {
            tracing::info!(name, %master, "link to the agreed master is down");
            self.down.insert(name.to_owned(), master.clone());
        }
    }

    fn set_up(&self, name: &str) {
        if let Some((_, master)) = self.down.remove(name) {
            tracing::info!(name, %master, "link to the master is up");
        }
    }
}

/// Keeps a link to the agreed master of `name` until `shutdown`.
pub async fn run(
    name: String,
    registry: Arc<Registry>,
    links: Arc<MasterLinks>,
    access: Access,
    shutdown: CancellationToken,
) {
    let Some(mut watcher) = registry.watch(&name) else {
        return;
    };
    let mut master = agreed_master(&mut watcher);
    let mut retry = RETRY_MIN;
    'target: loop {
        let Some(target) = master.clone() else {
            links.set_up(&name);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = watcher.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    master = agreed_master(&mut watcher);
                    continue 'target;
                }
            }
        };
        let link = hold(&target, &name, &links, &access);
        tokio::pin!(link);
        let lost = loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = watcher.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // A publication that keeps the master keeps the link.
                    let now = agreed_master(&mut watcher);
                    if now != master {
                        master = now;
                        retry = RETRY_MIN;
                        continue 'target;
                    }
                }
                lost = &mut link => break lost,
            }
        };
        if lost.was_up {
            retry = RETRY_MIN;
        }
        links.set_down(&name, &target);
        tracing::debug!(name, %target, reason = %lost.reason, "master link lost; retrying");
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = watcher.changed() => {
                if changed.is_err() {
                    return;
                }
                master = agreed_master(&mut watcher);
                retry = RETRY_MIN;
            }
            () = tokio::time::sleep(retry) => {
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}

fn agreed_master(watcher: &mut watch::Receiver<Arc<NameState>>) -> Option<Addr> {
    let state = Arc::clone(&watcher.borrow_and_update());
    state
        .verdict
        .agreement()
        .map(|agreement| agreement.master.clone())
}

/// Why a link went down, and whether it had been up.
struct Lost {
    reason: String,
    was_up: bool,
}

/// Connects to `master` and keeps the link alive until it goes down. Marks the link up once
/// connected. The connection is the client layer's, so TLS reaches this link with the others.
async fn hold(master: &Addr, name: &str, links: &MasterLinks, access: &Access) -> Lost {
    let mut connection = match conn::connect_within(master, access, CONNECT_TIMEOUT).await {
        Ok(connection) => connection,
        Err(error) => {
            return Lost {
                reason: error.to_string(),
                was_up: false,
            };
        }
    };
    links.set_up(name);
    let mut ping = tokio::time::interval(PING_EVERY);
    loop {
        tokio::select! {
            _ = ping.tick() => {
                connection.queue(&["PING"]);
                if let Err(error) = connection.flush().await {
                    return Lost { reason: error.to_string(), was_up: true };
                }
            }
            // `+PONG` and `-NOAUTH` alike are proof of life; only the stream's end or an error
            // is not.
            frame = connection.next_frame() => if let Err(error) = frame {
                return Lost { reason: error.to_string(), was_up: true };
            },
        }
    }
}
