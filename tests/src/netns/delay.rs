//! The moving part of [`Fault::Delay`](super::Fault::Delay): a thread of the test process, inside
//! the delayed member's namespace, that holds each packet the member sends until its release time.
//!
//! The kernel half is one iptables rule in the member's namespace (see [`rule`]): every IPv4
//! packet the member sends on `eth0` is handed to netlink queue `<i>` (the member's index) and
//! waits in the kernel for a verdict. The userspace half is a [`Holder`]: its thread binds that
//! queue, gives each packet it is handed a release time (now, plus the delay, plus a uniform extra
//! in `0..=jitter`), and issues `NF_ACCEPT` when that time comes. Each verdict is issued at its
//! own packet's time, so with jitter packets leave in the order of their release times: real
//! reordering, which the kernel's qdiscs here cannot do (there is no netem).
//!
//! Who writes, who reads: the holder's thread alone owns the queue's socket and the held packets.
//! The [`Holder`] handle only tells it to stop, through a channel, and joins it.
//!
//! Nothing wedges. The rule has `--queue-bypass`: while no socket is bound to the queue (the
//! holder has stopped, or the test process died and the kernel closed its socket) packets pass at
//! once. Stopping releases every packet still held, those the kernel queued but the thread had not
//! yet read included; the undo removes the rule first, so nothing is queued after that.
//!
//! Costs. The `nfq` crate gives no descriptor to wait on, so the thread looks for new packets
//! every [`TICK`]: a packet waits up to that much beyond its delay, and a delay in place costs
//! about a thousand wake-ups a second. Packets the kernel queues faster than the thread reads
//! them overflow the socket's receive buffer and are dropped (the queue's `user_dropped` in
//! `/proc/net/netfilter/nfnetlink_queue`, read inside the namespace).

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    fs::File,
    io,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    sync::mpsc,
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use nfq::{Message, Queue, Verdict};

use super::{NetError, Result, block::NETNS_DIR};
use crate::faults::Rng;

/// The iptables `tests/install-netfilter.sh` installs: Debian's, with its legacy (x_tables)
/// backend, under `<deps>/<version>/bin/iptables-legacy`, a wrapper that finds its libraries.
const IPTABLES_VERSION: &str = "1.8.9";
/// How often the holder looks for newly queued packets.
const TICK: Duration = Duration::from_millis(1);
/// Packets the kernel holds for one queue at most (its default is 1024); beyond it, new packets
/// are dropped. Not fail-open: a packet let through undelayed would misreport the fault.
const QUEUE_LEN: u32 = 16 * 1024;
/// How long iptables waits for the host-wide xtables lock, which parallel runs share.
const LOCK_WAIT_SECS: &str = "10";

/// The installed `iptables-legacy`, or why the delay fault cannot run.
pub(super) fn iptables() -> std::result::Result<PathBuf, String> {
    let deps = match std::env::var_os("IPTABLES_DEPS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.deps/iptables"),
    };
    let path = deps.join(IPTABLES_VERSION).join("bin/iptables-legacy");
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "iptables {IPTABLES_VERSION} is not installed at {}: \
             run `bash tests/install-netfilter.sh`",
            path.display()
        ))
    }
}

/// The iptables arguments that add (`verb` `-A`) or delete (`-D`) the rule handing what the
/// member sends on `eth0` to `queue`. `-w` waits for the xtables lock rather than failing when
/// another run holds it.
pub(super) fn rule(verb: &str, queue: u16) -> String {
    format!(
        "-w {LOCK_WAIT_SECS} {verb} OUTPUT -o eth0 -j NFQUEUE --queue-num {queue} --queue-bypass"
    )
}

/// What every packet of one delay waits: `delay` plus a uniform extra in `0..=jitter`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Hold {
    pub(super) delay: Duration,
    pub(super) jitter: Duration,
    /// Seeds the extras.
    pub(super) seed: u64,
}

/// The thread holding one member's packets; dropping it stops the thread as [`Holder::stop`]
/// does.
#[derive(Debug)]
pub(super) struct Holder {
    stop: mpsc::Sender<()>,
    thread: Option<JoinHandle<Tally>>,
}

/// What a holder did.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Tally {
    /// Packets it held.
    pub(super) held: u64,
    /// Of those, the ones still held when it was stopped, released at once then.
    pub(super) released_early: u64,
}

impl Holder {
    /// Starts a thread in `namespace` that binds `queue` and holds each packet handed to it as
    /// `hold` says. Returns once the queue is bound, so the rule added next finds it.
    pub(super) fn start(namespace: &str, queue: u16, hold: Hold) -> Result<Holder> {
        let netns = Path::new(NETNS_DIR).join(namespace);
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let (stop_tx, stop_rx) = mpsc::channel();
        let what = format!("binding netfilter queue {queue} in {namespace}");
        let thread = thread::Builder::new()
            .name(format!("delay {namespace}"))
            .spawn(move || match bind(&netns, queue) {
                Ok(socket) => {
                    let _ = ready_tx.send(Ok(()));
                    run(socket, hold, &stop_rx)
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    Tally::default()
                }
            })
            .map_err(|e| NetError::io(what.clone(), e))?;
        let bound = ready_rx
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("the delay thread died")));
        match bound {
            Ok(()) => Ok(Holder {
                stop: stop_tx,
                thread: Some(thread),
            }),
            Err(e) => {
                let _ = thread.join();
                Err(NetError::io(what, e))
            }
        }
    }

    /// Releases every packet still held, stops the thread and closes its socket. Call it once the
    /// rule is gone, so that nothing more is queued.
    pub(super) fn stop(mut self) -> Tally {
        self.finish()
    }

    fn finish(&mut self) -> Tally {
        let Some(thread) = self.thread.take() else {
            return Tally::default();
        };
        let _ = self.stop.send(());
        thread.join().unwrap_or_default()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Moves this thread into the namespace at `netns`, then opens and binds `queue` there (a netlink
/// socket belongs to the namespace it is created in). Only metadata is copied: a verdict needs
/// only the packet's id.
fn bind(netns: &Path, queue: u16) -> io::Result<Queue> {
    enter(netns)?;
    let mut socket = Queue::open()?;
    socket.bind(queue)?;
    socket.set_copy_range(queue, 0)?;
    socket.set_queue_max_len(queue, QUEUE_LEN)?;
    socket.set_nonblocking(true);
    Ok(socket)
}

/// `setns(2)` into the network namespace at `netns`, for the calling thread only.
#[allow(unsafe_code)]
fn enter(netns: &Path) -> io::Result<()> {
    let file = File::open(netns)?;
    // SAFETY: setns(2) reads no memory of ours: it takes a descriptor, which `file` keeps open
    // across the call, and a flag. It moves only the calling thread, a holder's own, which runs
    // nothing but the holder, into the namespace; the rest of the process stays where it is.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A packet waiting for its release time; `seq` keeps the order of equal times stable.
struct Held {
    at: Instant,
    seq: u64,
    message: Message,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Held {}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The holder's loop: take in what the kernel queued, release what is due, sleep until the next
/// release or [`TICK`], whichever is sooner; on `stop`, release everything.
fn run(mut socket: Queue, hold: Hold, stop: &mpsc::Receiver<()>) -> Tally {
    let mut rng = Rng::new(hold.seed);
    let jitter = u64::try_from(hold.jitter.as_nanos()).unwrap_or(u64::MAX);
    let mut held: BinaryHeap<Reverse<Held>> = BinaryHeap::new();
    let mut tally = Tally::default();
    loop {
        let taken = take_queued(&mut socket, |message| {
            let extra = Duration::from_nanos(rng.below(jitter.saturating_add(1)));
            held.push(Reverse(Held {
                at: Instant::now() + hold.delay + extra,
                seq: tally.held,
                message,
            }));
            tally.held += 1;
        });
        if let Err(e) = taken {
            // The socket is unusable: let everything go, and close it so that the rule's bypass
            // passes what comes next.
            tracing::warn!("delay: reading netfilter queue: {e}; releasing every packet");
            break;
        }
        let now = Instant::now();
        while held.peek().is_some_and(|p| p.0.at <= now) {
            let Some(Reverse(due)) = held.pop() else {
                break;
            };
            accept(&mut socket, due.message);
        }
        let next = held.peek().map(|p| p.0.at.saturating_duration_since(now));
        match stop.recv_timeout(next.unwrap_or(TICK).min(TICK)) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // The rule is gone (or the socket failed): what the kernel still queued is read and released
    // with the rest, in order of release time, before the socket closes and the kernel drops
    // whatever has no verdict.
    let _ = take_queued(&mut socket, |message| {
        held.push(Reverse(Held {
            at: Instant::now(),
            seq: tally.held,
            message,
        }));
        tally.held += 1;
    });
    tally.released_early = held.len() as u64;
    while let Some(Reverse(packet)) = held.pop() {
        accept(&mut socket, packet.message);
    }
    tally
}

/// Hands every packet the kernel has queued to `each`, until none is left to read.
fn take_queued(socket: &mut Queue, mut each: impl FnMut(Message)) -> io::Result<()> {
    loop {
        match socket.recv() {
            Ok(message) => each(message),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            // The kernel's answer to a verdict for a packet it no longer holds (flushed when a
            // device went down): nothing to do.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                tracing::debug!("delay: a verdict came too late: {e}")
            }
            Err(e) => return Err(e),
        }
    }
}

fn accept(socket: &mut Queue, mut message: Message) {
    message.set_verdict(Verdict::Accept);
    if let Err(e) = socket.verdict(message) {
        tracing::warn!("delay: a verdict was not sent: {e}");
    }
}
