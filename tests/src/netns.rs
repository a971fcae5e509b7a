//! An isolated network of Linux network namespaces, for fault injection: real processes each in a
//! namespace of their own on a private /24, and network faults that a seeded schedule can expand,
//! print, apply and undo.
//!
//! One [`Network`] per test run, on the block `N` it claims (10.213.N.0/24, N in 1..=254):
//!
//! ```text
//!  root namespace (the test)        vkn<N>-hub                       vkn<N>-m<i>
//!  vkn<N> 10.213.N.1/24 ── veth ── harness ─┐
//!                                          br0 ─ m<i> ── veth ── eth0 10.213.N.(10+i)/24, lo
//! ```
//!
//! **Names.** Every name a run creates carries its block (`vkn<N>-hub`, `vkn<N>-m<i>`, the root
//! interface `vkn<N>`: 6 characters at most), and the block is held by a lock for the run's
//! lifetime, so parallel runs never collide. Whatever exists under the prefix of a block nobody
//! holds is a crashed run's, and creating a network removes it (see `netns/block.rs`). Interfaces
//! inside the namespaces need no unique names (`eth0`, `br0`, `m<i>`): each namespace has its own.
//!
//! **The harness** reaches the members through the one interface the run adds to the root
//! namespace, `vkn<N>`, a veth whose peer is a port of the hub's bridge; the lab's
//! [`crate::Client`], and any process the test starts in the root namespace, work unchanged.
//! (Dialling from inside a namespace would need a thread moved there with `setns(2)`, as the delay
//! fault's is; [`Network::dial`] runs a dial inside a member instead.) Members have no
//! default route and the root namespace's forwarding is left as it is (off here), so a member's
//! packets cannot leave the run's namespaces. The one lasting change to the host is a guard
//! route, `unreachable 10.213.0.0/16 metric 4213`, added once and never removed: a live run's own
//! /24 is more specific and wins, and once its interface is gone a socket the test process still
//! opens to the range (a client reconnecting after the network was dropped) fails at once with
//! `EHOSTUNREACH` instead of leaving by the host's default route.
//!
//! **What this kernel offers** (6.18 here; see `/proc/config.gz`), and what follows:
//! * No netem (`CONFIG_NET_SCH_NETEM` unset) and no act_bpf: no qdisc here delays or reorders
//!   packets (a TBF rate limit, [`Fault::slow`], delays only what queues behind it), and nothing
//!   duplicates them. Delay, jitter and reordering come from netfilter instead: the NFQUEUE target
//!   (`CONFIG_NETFILTER_XT_TARGET_NFQUEUE`) hands each packet to a thread of the test process,
//!   which issues its verdict at the packet's own release time ([`Fault::delay`]).
//! * No gact (`CONFIG_NET_ACT_GACT` unset): `tc ... action drop` does not exist. Packets are
//!   dropped by classifying them into an HTB class whose leaf is `pfifo limit 0`, which drops
//!   everything it is given. Every member's `eth0` carries that HTB from the start: class `1:1`
//!   (the default, 10 Gbit/s: unlimited in practice) for traffic, class `1:2` for drops.
//! * No SFQ, FQ, PIE, RED, prio or skbedit; there are HTB, TBF, ingress/clsact, u32, cls_bpf and
//!   mirred. iptables (the legacy x_tables, `CONFIG_IP_NF_IPTABLES`) and nftables are in the
//!   kernel, but nftables has no `queue` expression (`CONFIG_NFT_QUEUE` unset) and neither tool is
//!   installed: the delay fault runs Debian's `iptables-legacy`, which
//!   `tests/install-netfilter.sh` unpacks under `.deps/iptables`.
//! * A `blackhole` route is *not* silent for locally generated traffic: `connect(2)` fails at once
//!   with `EINVAL` (`unreachable`: `EHOSTUNREACH`, `prohibit`: `EACCES`). Only forwarded packets
//!   vanish silently. So silent cuts use tc, and routes serve only where a fast error is meant.
//!
//! **How each [`Fault`] is realised** (each undone by the exact inverse command):
//!
//! | fault | realised as |
//! |-------|-------------|
//! | [`Fault::partition`], [`Fault::partition_one_way`] ([`Cut::Blackhole`]) | in each sender's namespace, a u32 filter on `eth0` egress per receiver IP into the drop class: packets vanish, TCP retransmits, connects time out |
//! | [`Fault::refuse`], [`Fault::refuse_one_way`] ([`Cut::Refuse`]) | in each sender's namespace, `ip route add unreachable <receiver>/32 metric <id>`: the sender's new connects fail at once with `EHOSTUNREACH`; its established connections stall (sends succeed, nothing leaves, no error is reported) |
//! | [`Fault::isolate`] | the hub end of the member's veth set down: the cable pulled at the switch. The member's `eth0` loses carrier; nothing reaches it or leaves it, the harness's packets included |
//! | [`Fault::slow`] | a TBF (`latency 1s`) as the leaf of class `1:1` on the member's `eth0`: its egress at that rate, queued up to 1 s, dropped beyond |
//! | [`Fault::lossy`] | a classic-BPF `cls_bpf` filter (`ld rand`, compare) on the member's `eth0` egress into the drop class: each IPv4 packet the member sends is lost with that probability |
//! | [`Fault::delay`] | in the member's namespace, `iptables -A OUTPUT -o eth0 -j NFQUEUE --queue-num <i> --queue-bypass` (`<i>`: the member's index); a thread of the test process, moved into the namespace with `setns(2)`, binds queue `<i>` and accepts each packet at its release time, `delay` plus a uniform extra in `0..=jitter`, so with jitter packets leave out of order. The undo deletes the rule, then releases every packet still held at once and stops the thread; with no thread bound (the test process died), `--queue-bypass` lets packets pass. See `netns/delay.rs` |
//!
//! Cuts, loss and delay act on IPv4 only (ARP still flows, as through a real switch), on what a
//! member sends, and per packet as the kernel hands it to the qdisc: with GSO one "packet" can be
//! a 64 KiB TCP burst, so loss comes in bursts. (The delay's queue splits such a burst into its
//! packets, and each draws its own jitter.) TCP takes a jittered delay's reordering for loss, as
//! on a real network: duplicate ACKs, spurious fast retransmits, a smaller window. A one-way cut
//! is one-way for packets, not for TCP: the side whose packets still arrive never sees them
//! acknowledged (`tests/tests/netns.rs` shows what Valkey replication makes of it).

mod block;
mod delay;
mod fault;
mod step;

use std::{
    ffi::OsStr,
    fmt, io,
    io::Read,
    net::{Ipv4Addr, SocketAddr},
    process::{Child, Command, ExitStatus, Stdio},
    sync::Mutex,
    time::Duration,
};

use block::Block;
use fault::DirectedCut;
pub use fault::{Cut, Fault, Member, Rate};
use step::{IP, Step};

use crate::process::{self, Signal};

/// Prefix of every name a run creates: `vkn<N>`, `vkn<N>-hub`, `vkn<N>-m<i>`.
const PREFIX: &str = "vkn";
/// The private range every block lies in: 10.213.N.0/24.
const RANGE: [u8; 2] = [10, 213];
/// The guard route's metric: any high number, since it only has to lose to nothing.
const GUARD_METRIC: u32 = 4213;
/// Host part of the harness's address in every block.
const HARNESS_HOST: u8 = 1;
/// Host part of member 0's address; member `i` is at `10 + i`.
const FIRST_MEMBER_HOST: u8 = 10;
/// Most members a network can hold (host parts 10..=209).
pub const MAX_MEMBERS: usize = 200;
/// TBF's queue in time at the limited rate: how long [`Fault::slow`] can hold a packet.
const SLOW_LATENCY: &str = "1s";

// ============================================================================================
// Errors
// ============================================================================================

/// What can go wrong building a network, running in it or applying a fault.
///
/// `Debug` prints the same sentence as `Display`, as [`crate::LabError`] does.
#[derive(thiserror::Error)]
pub enum NetError {
    /// An `ip` or `tc` command failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },

    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// Every block 10.213.1-254.0/24 is held by another run or already routed on this host.
    #[error("no free network block (10.213.1-254.0/24 are all held or routed)")]
    NoFreeBlock,

    /// A network was asked for a size a block cannot hold.
    #[error("a network holds 1 to {MAX_MEMBERS} members, not {0}")]
    Size(usize),

    /// A member this network does not have.
    #[error("{member} is not one of the network's {members} members")]
    NoSuchMember {
        /// The member asked for.
        member: Member,
        /// How many the network has.
        members: usize,
    },

    /// A fault that cannot be applied (or undone) as asked.
    #[error("fault `{fault}`: {reason}")]
    Fault {
        /// The fault, as printed.
        fault: String,
        /// Why not.
        reason: String,
    },

    /// A signal asked of a process that has been reaped.
    #[error("{member}: pid {pid} has exited and been reaped")]
    Exited {
        /// Where it ran.
        member: Member,
        /// Its pid.
        pid: u32,
    },
}

impl fmt::Debug for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl NetError {
    fn io(context: impl Into<String>, source: io::Error) -> Self {
        NetError::Io {
            context: context.into(),
            source,
        }
    }

    fn fault(fault: &Fault, reason: impl Into<String>) -> Self {
        NetError::Fault {
            fault: fault.to_string(),
            reason: reason.into(),
        }
    }
}

/// This module's result.
pub type Result<T, E = NetError> = std::result::Result<T, E>;

// ============================================================================================
// The network
// ============================================================================================

/// A part of a fault put in place, and taken away, as a unit.
struct Change {
    apply: Vec<Step>,
    undo: Vec<Step>,
}

/// A fault in place, with the commands that take it away, in the order to run them.
struct Applied {
    fault: Fault,
    /// Its tc filter priority and route metric: unique among the faults in place, so that the
    /// rules of overlapping faults never collide and each undo removes only its own.
    id: u16,
    undo: Vec<Step>,
    /// A delay's thread, holding the member's packets: stopped once `undo` has removed the rule
    /// that queues them.
    holder: Option<delay::Holder>,
}

/// An isolated network of namespaces for one test run; everything it made is removed on drop.
/// See the module documentation for its layout and what each fault does.
///
/// Shared state: the list of faults in place, behind a mutex held for the whole of an apply or
/// undo (their commands included), so that concurrent schedules see each fault whole.
pub struct Network {
    block: Block,
    members: usize,
    /// The faults in place, in the order they were applied.
    applied: Mutex<Vec<Applied>>,
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Network")
            .field("block", &self.block.n)
            .field("members", &self.members)
            .field("faults", &self.active_faults())
            .finish()
    }
}

impl Network {
    /// Builds a network of `members` members on a block of its own, after removing what crashed
    /// runs left. Blocking: about forty short `ip`/`tc` commands for three members (~0.1 s).
    pub fn create(members: usize) -> Result<Network> {
        if members == 0 || members > MAX_MEMBERS {
            return Err(NetError::Size(members));
        }
        block::sweep_stale()?;
        // From here on, dropping `net` removes whatever part was built.
        let net = Network {
            block: Block::claim()?,
            members,
            applied: Mutex::new(Vec::new()),
        };
        net.build()?;
        Ok(net)
    }

    fn build(&self) -> Result<()> {
        let [a, b] = RANGE;
        let hub = self.hub_namespace();
        let root = self.root_interface();
        let harness = self.harness_ip();
        let mut steps = vec![
            Step::ip(&format!(
                "route replace unreachable {a}.{b}.0.0/16 metric {GUARD_METRIC}"
            )),
            Step::ip(&format!("netns add {hub}")),
            Step::ip_in(&hub, "link set dev lo up"),
            Step::ip_in(&hub, "link add name br0 type bridge"),
            Step::ip_in(&hub, "link set dev br0 up"),
            Step::ip(&format!(
                "link add name {root} type veth peer name harness netns {hub}"
            )),
            Step::ip_in(&hub, "link set dev harness master br0 up"),
            Step::ip(&format!("addr add {harness}/24 dev {root}")),
            Step::ip(&format!("link set dev {root} up")),
        ];
        for member in self.members() {
            let ns = self.namespace(member);
            let ip = self.ip(member);
            steps.extend([
                Step::ip(&format!("netns add {ns}")),
                Step::ip(&format!(
                    "link add name eth0 netns {ns} type veth peer name {member} netns {hub}"
                )),
                Step::ip_in(&hub, &format!("link set dev {member} master br0 up")),
                Step::ip_in(&ns, "link set dev lo up"),
                Step::ip_in(&ns, &format!("addr add {ip}/24 dev eth0")),
                Step::ip_in(&ns, "link set dev eth0 up"),
                // The classes every tc fault relies on: 1:1 passes (the default), 1:2 drops.
                // (Quantum given, or HTB warns that 10 Gbit/s makes it large.)
                Step::tc_in(&ns, "qdisc add dev eth0 root handle 1: htb default 1"),
                Step::tc_in(
                    &ns,
                    "class add dev eth0 parent 1: classid 1:1 htb rate 10gbit quantum 60000",
                ),
                Step::tc_in(
                    &ns,
                    "class add dev eth0 parent 1: classid 1:2 htb rate 10gbit quantum 60000",
                ),
                Step::tc_in(&ns, "qdisc add dev eth0 parent 1:2 handle 2: pfifo limit 0"),
            ]);
        }
        steps.iter().try_for_each(|step| step.run().map(drop))
    }

    /// The network's block: its addresses are 10.213.N.0/24, its names start `vkn<N>`.
    pub fn block(&self) -> u8 {
        self.block.n
    }

    /// How many members it has.
    pub fn member_count(&self) -> usize {
        self.members
    }

    /// Member `i`. Panics if there is no such member.
    pub fn member(&self, i: usize) -> Member {
        assert!(i < self.members, "member {i} of {}", self.members);
        Member(i)
    }

    /// Every member, in order.
    pub fn members(&self) -> Vec<Member> {
        (0..self.members).map(Member).collect()
    }

    /// The member's address: 10.213.N.(10+i).
    pub fn ip(&self, member: Member) -> Ipv4Addr {
        let [a, b] = RANGE;
        Ipv4Addr::new(a, b, self.block.n, FIRST_MEMBER_HOST + member.0 as u8)
    }

    /// `ip:port` of a member.
    pub fn addr(&self, member: Member, port: u16) -> SocketAddr {
        SocketAddr::from((self.ip(member), port))
    }

    /// The test process's address on the network: 10.213.N.1, on [`Network::root_interface`].
    pub fn harness_ip(&self) -> Ipv4Addr {
        let [a, b] = RANGE;
        Ipv4Addr::new(a, b, self.block.n, HARNESS_HOST)
    }

    /// The member's namespace, as `ip netns` names it.
    pub fn namespace(&self, member: Member) -> String {
        format!("{}-{member}", self.root_interface())
    }

    /// The hub's namespace (the bridge).
    pub fn hub_namespace(&self) -> String {
        format!("{}-hub", self.root_interface())
    }

    /// Every namespace of the network: the hub's, then the members' in order.
    pub fn namespaces(&self) -> Vec<String> {
        let members = self.members().into_iter().map(|m| self.namespace(m));
        std::iter::once(self.hub_namespace())
            .chain(members)
            .collect()
    }

    /// The one interface the network adds to the root namespace, `vkn<N>`.
    pub fn root_interface(&self) -> String {
        format!("{PREFIX}{}", self.block.n)
    }

    // === processes ===

    /// Starts `command` inside the member's namespace with `ip netns exec`, which `exec`s it: the
    /// returned pid is the program's own, and signals reach it. Program, arguments, environment
    /// and working directory are taken from `command`; stdin is `/dev/null`, stdout and stderr
    /// are the test's (give a server a log file). Like every lab process it dies with the test
    /// process, however that ends (see [`crate::process`]).
    pub async fn spawn(&self, member: Member, command: Command) -> Result<NetProcess> {
        self.check_member(member)?;
        let mut wrapped = self.exec_in(member, command.get_program());
        wrapped.args(command.get_args()).stdin(Stdio::null());
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        if let Some(dir) = command.get_current_dir() {
            wrapped.current_dir(dir);
        }
        let what = format!("starting {:?} in {member}", command.get_program());
        let child = process::spawn(wrapped)
            .await
            .map_err(|e| NetError::io(what, e))?;
        Ok(NetProcess {
            member,
            child,
            reaped: None,
        })
    }

    /// Opens (and at once closes) a TCP connection from inside `from` to `to`, giving up after
    /// `limit`: how a member sees a cut. It is bash's `/dev/tcp`, run in the member.
    pub async fn dial(&self, from: Member, to: SocketAddr, limit: Duration) -> Result<Dial> {
        self.check_member(from)?;
        let mut command = self.exec_in(from, OsStr::new("/bin/bash"));
        command
            // `dial` is $0, the name bash puts before its messages.
            .args(["-c", "exec 3<>/dev/tcp/$1/$2", "dial"])
            .args([to.ip().to_string(), to.port().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let what = format!("dialling {to} from {from}");
        let mut child = process::spawn(command)
            .await
            .map_err(|e| NetError::io(what.clone(), e))?;
        // bash has no connect timeout of its own: poll for its exit under our deadline.
        let deadline = tokio::time::Instant::now() + limit;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(5)).await
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Ok(Dial::TimedOut);
                }
                Err(e) => return Err(NetError::io(what, e)),
            }
        };
        if status.success() {
            return Ok(Dial::Connected);
        }
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        // First `dial: connect: No route to host`, then a line naming the path.
        let first = stderr.lines().next().unwrap_or("").trim();
        Ok(Dial::Failed(first.trim_start_matches("dial: ").to_string()))
    }

    /// `ip netns exec <member's namespace> <program>`.
    fn exec_in(&self, member: Member, program: &OsStr) -> Command {
        let mut command = Command::new(IP);
        command
            .args(["netns", "exec"])
            .arg(self.namespace(member))
            .arg(program);
        command
    }

    fn check_member(&self, member: Member) -> Result<()> {
        if member.0 < self.members {
            Ok(())
        } else {
            Err(NetError::NoSuchMember {
                member,
                members: self.members,
            })
        }
    }

    // === faults ===

    /// The faults in place, in the order they were applied.
    pub fn active_faults(&self) -> Vec<Fault> {
        let applied = self.applied.lock().expect("fault list poisoned");
        applied.iter().map(|a| a.fault.clone()).collect()
    }

    /// Undoes every fault in place, the latest first. On an error the faults not yet undone stay
    /// in place (and in [`Network::active_faults`]).
    pub fn heal_all(&self) -> Result<()> {
        while let Some(last) = self.active_faults().pop() {
            self.undo(&last)?;
        }
        Ok(())
    }

    /// [`Fault::apply`].
    fn apply(&self, fault: &Fault) -> Result<()> {
        if let Some(reason) = fault.invalid_for(self.members) {
            return Err(NetError::fault(fault, reason));
        }
        let mut applied = self.applied.lock().expect("fault list poisoned");
        if let Some(other) = applied.iter().find(|a| fault.conflicts_with(&a.fault)) {
            return Err(NetError::fault(
                fault,
                format!("`{}` is in place", other.fault),
            ));
        }
        let id = (1..=u16::MAX)
            .find(|id| applied.iter().all(|a| a.id != *id))
            .expect("fewer than 65535 faults in place");
        let changes = self.changes(fault, id)?;
        // A delay's thread binds the member's queue before the rule sends packets there.
        let holder = match *fault {
            Fault::Delay {
                member,
                delay,
                jitter,
            } => {
                let seed = member.0 as u64;
                let hold = delay::Hold {
                    delay,
                    jitter,
                    seed,
                };
                let namespace = self.namespace(member);
                Some(delay::Holder::start(&namespace, delay_queue(member), hold)?)
            }
            _ => None,
        };
        let mut done: Vec<Change> = Vec::new();
        for change in changes {
            let result = change
                .apply
                .iter()
                .try_for_each(|step| step.run().map(drop));
            done.push(change);
            if let Err(e) = result {
                // Take back what was done, this change's partial steps included.
                let undo = done.iter().rev().flat_map(|change| &change.undo);
                undo.for_each(Step::run_quietly);
                return Err(e);
            }
        }
        tracing::info!(block = self.block.n, "fault applied: {fault}");
        let undo = done.into_iter().rev().flat_map(|change| change.undo);
        applied.push(Applied {
            fault: fault.clone(),
            id,
            undo: undo.collect(),
            holder,
        });
        Ok(())
    }

    /// [`Fault::undo`]. Every undo step runs even if one fails, to leave as little as possible;
    /// on a failure the fault stays listed.
    fn undo(&self, fault: &Fault) -> Result<()> {
        let mut applied = self.applied.lock().expect("fault list poisoned");
        let Some(at) = applied.iter().position(|a| &a.fault == fault) else {
            return Err(NetError::fault(fault, "it is not in place"));
        };
        let mut first_error = None;
        for step in &applied[at].undo {
            if let Err(e) = step.run() {
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let done = applied.remove(at);
        if let Some(holder) = done.holder {
            let tally = holder.stop();
            tracing::info!(
                block = self.block.n,
                "{fault}: held {} packets, released {} of them early",
                tally.held,
                tally.released_early
            );
        }
        tracing::info!(block = self.block.n, "fault undone: {fault}");
        Ok(())
    }

    /// The commands that realise `fault` (see the module table), in units to apply and undo.
    fn changes(&self, fault: &Fault, id: u16) -> Result<Vec<Change>> {
        Ok(match fault {
            Fault::Partition { .. } | Fault::OneWay { .. } => fault
                .directed_cuts()
                .iter()
                .flat_map(|cut| self.cut(cut, id))
                .collect(),
            Fault::Isolate { member } => {
                let hub = self.hub_namespace();
                let link = |state| Step::ip_in(&hub, &format!("link set dev {member} {state}"));
                vec![Change {
                    apply: vec![link("down")],
                    undo: vec![link("up")],
                }]
            }
            Fault::Slow { member, rate } => {
                let ns = self.namespace(*member);
                // The bucket holds two full frames at least, and 10 ms at the rate, so that fast
                // rates are not shaped below what was asked.
                let burst = (rate.bytes_per_sec() / 100).max(3028);
                let leaf = "dev eth0 parent 1:1 handle 10:";
                let tbf = format!("tbf rate {rate} burst {burst} latency {SLOW_LATENCY}");
                vec![Change {
                    apply: vec![Step::tc_in(&ns, &format!("qdisc add {leaf} {tbf}"))],
                    undo: vec![Step::tc_in(&ns, &format!("qdisc del {leaf}"))],
                }]
            }
            Fault::Lossy { member, percent } => {
                let ns = self.namespace(*member);
                let filter = format!(
                    "filter add dev eth0 parent 1: protocol ip pref {id} bpf flowid 1:2 bytecode"
                );
                vec![Change {
                    apply: vec![Step::tc_in(&ns, &filter).arg(loss_program(*percent))],
                    undo: vec![remove_filters(&ns, id)],
                }]
            }
            Fault::Delay { member, .. } => {
                let iptables =
                    delay::iptables().map_err(|reason| NetError::fault(fault, reason))?;
                let ns = self.namespace(*member);
                let rule = |verb: &str| {
                    let line = delay::rule(verb, delay_queue(*member));
                    Step::iptables_in(&ns, &iptables, &line)
                };
                vec![Change {
                    apply: vec![rule("-A")],
                    undo: vec![rule("-D")],
                }]
            }
        })
    }

    /// The changes that stop what `cut.from` sends to `cut.to`, one per sender.
    fn cut(&self, cut: &DirectedCut, id: u16) -> Vec<Change> {
        let receivers: Vec<Ipv4Addr> = cut.to.iter().map(|&m| self.ip(m)).collect();
        cut.from
            .iter()
            .map(|&sender| {
                let ns = self.namespace(sender);
                match cut.cut {
                    // A sender's filters share the fault's priority: one `del` takes them all.
                    Cut::Blackhole => Change {
                        apply: receivers
                            .iter()
                            .map(|ip| {
                                let filter = format!(
                                    "filter add dev eth0 parent 1: protocol ip pref {id} \
                                     u32 match ip dst {ip}/32 flowid 1:2"
                                );
                                Step::tc_in(&ns, &filter)
                            })
                            .collect(),
                        undo: vec![remove_filters(&ns, id)],
                    },
                    Cut::Refuse => {
                        let route = |verb: &str, ip: &Ipv4Addr| {
                            let line = format!("route {verb} unreachable {ip}/32 metric {id}");
                            Step::ip_in(&ns, &line)
                        };
                        Change {
                            apply: receivers.iter().map(|ip| route("add", ip)).collect(),
                            undo: receivers.iter().map(|ip| route("del", ip)).collect(),
                        }
                    }
                }
            })
            .collect()
    }
}

impl Drop for Network {
    /// Removes every namespace and the root interface; the block's lock is released after, once
    /// nothing of the block is left. A process still running in a member keeps that (now
    /// nameless) namespace alive until it exits.
    fn drop(&mut self) {
        // Delays' threads first: each releases what it holds and leaves its namespace.
        if let Ok(applied) = self.applied.get_mut() {
            applied.iter_mut().for_each(|a| drop(a.holder.take()));
        }
        block::remove(self.block.n);
    }
}

/// The netlink queue a delayed member's packets wait in: its index. Queues are per namespace, so
/// any number would do; the index names the member in a trace.
fn delay_queue(member: Member) -> u16 {
    member.0 as u16
}

/// Deletes every filter of priority `id` on `eth0`.
fn remove_filters(namespace: &str, id: u16) -> Step {
    Step::tc_in(
        namespace,
        &format!("filter del dev eth0 parent 1: pref {id}"),
    )
}

/// A classic BPF program, in tc's `bytecode` syntax, that matches a packet with probability
/// `percent` / 100: load the kernel's per-packet random number (`ld rand`, the ancillary load at
/// `SKF_AD_OFF + SKF_AD_RANDOM`) and match (return -1: the filter's flowid) when it is below the
/// threshold.
fn loss_program(percent: u8) -> String {
    const LD_RAND: u32 = 0xffff_f000 + 56;
    let threshold = u32::try_from((u64::from(percent) << 32) / 100).unwrap_or(u32::MAX);
    // ld rand; jge threshold (true: next, false: skip one); ret 0 (no match); ret -1 (match).
    format!(
        "4,32 0 0 {LD_RAND},53 0 1 {threshold},6 0 0 0,6 0 0 {}",
        u32::MAX
    )
}

/// What [`Network::dial`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dial {
    /// The TCP handshake completed.
    Connected,
    /// The connect failed before the limit, e.g. `connect: No route to host` or
    /// `connect: Connection refused`.
    Failed(String),
    /// No answer before the limit.
    TimedOut,
}

// ============================================================================================
// Processes
// ============================================================================================

/// A process running in a member's namespace. Dropping the handle SIGKILLs and reaps it.
#[derive(Debug)]
pub struct NetProcess {
    member: Member,
    child: Child,
    /// Set once the process is reaped: its pid may then be someone else's, so no signal is sent
    /// after that.
    reaped: Option<ExitStatus>,
}

impl NetProcess {
    /// The program's pid (not a wrapper's: `ip netns exec` execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where it runs.
    pub fn member(&self) -> Member {
        self.member
    }

    /// SIGSTOP: the process freezes; its kernel still completes TCP handshakes on its sockets.
    pub fn stop(&self) -> Result<()> {
        self.signal(Signal::Stop)
    }

    /// SIGCONT: a stopped process runs again.
    pub fn cont(&self) -> Result<()> {
        self.signal(Signal::Cont)
    }

    /// SIGKILL (`kill -9`), then reaps it; returns its exit status (or the one already reaped).
    pub fn kill(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.reaped {
            return Ok(status);
        }
        let what = format!("killing pid {} in {}", self.pid(), self.member);
        self.child
            .kill()
            .map_err(|e| NetError::io(what.clone(), e))?;
        let status = self.child.wait().map_err(|e| NetError::io(what, e))?;
        self.reaped = Some(status);
        Ok(status)
    }

    /// Its exit status if it has exited (reaping it), else `None`.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.reaped.is_none() {
            let what = format!("waiting for pid {} in {}", self.pid(), self.member);
            self.reaped = self.child.try_wait().map_err(|e| NetError::io(what, e))?;
        }
        Ok(self.reaped)
    }

    fn signal(&self, signal: Signal) -> Result<()> {
        if self.reaped.is_some() {
            return Err(NetError::Exited {
                member: self.member,
                pid: self.pid(),
            });
        }
        process::send_signal(&self.child, signal)
            .map_err(|e| NetError::io(format!("{signal:?} to pid {}", self.pid()), e))
    }
}

impl Drop for NetProcess {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loss_program_matches_below_its_threshold() {
        assert_eq!(
            loss_program(50),
            "4,32 0 0 4294963256,53 0 1 2147483648,6 0 0 0,6 0 0 4294967295"
        );
        assert!(loss_program(100).contains(&format!("53 0 1 {}", u32::MAX)));
    }
}
