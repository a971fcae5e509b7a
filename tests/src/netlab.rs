//! A lab on namespaces ([`LabSpec::netns`](crate::LabSpec::netns)): every data pod and sentinel
//! in a member of its own [`Network`], so that links can be cut one by one with [`Fault`]s.
//!
//! Members, in order: data pod `i` is member `i`, sentinel `j` is member `data_pods + j`, and
//! [`SPARE_MEMBERS`] more follow for whatever else the test runs (a coordinator:
//! [`Lab::spawn_aux_in`]). Every pod keeps its standard port on its member's IP
//! (10.213.N.(10+m)); the harness reaches them through the network's root interface, so
//! everything else in the lab (waits, clients, the writer and samplers, kill, pause, restart,
//! a wiped sentinel's restart) works unchanged.
//!
//! Pods run under `ip netns exec`, which execs the server: the pid the lab keeps is the server's
//! own, as [`Network::spawn`] does, but owned as a plain [`Child`](std::process::Child) so that
//! the lab's kill, pause and graceful stop paths are the same on both kinds of lab.

use std::{ffi::OsStr, io, net::SocketAddr, path::Path, process::Command};

use crate::{
    error::{LabError, Result},
    lab::{Lab, PodId},
    layout::{AddressBlock, DATA_PORT, SENTINEL_PORT},
    netns::{Fault, Member, NetError, Network},
};

/// Members a lab on namespaces has beyond its pods, for the test's own processes.
pub const SPARE_MEMBERS: usize = 2;

/// iproute2's `ip`, which runs a program in a namespace.
const IP: &str = "/usr/sbin/ip";

fn net_error(context: &str, e: NetError) -> LabError {
    LabError::io(context.to_string(), io::Error::other(e.to_string()))
}

/// The network for `data_pods` pods and `sentinels` sentinels, and the spares.
pub(crate) fn create_network(data_pods: usize, sentinels: usize) -> Result<Network> {
    Network::create(data_pods + sentinels + SPARE_MEMBERS)
        .map_err(|e| net_error("creating the lab's network", e))
}

/// A pod's address in a lab of `data_pods` data pods: on its member with a network, else on
/// the loopback block.
pub(crate) fn pod_addr(
    net: Option<&Network>,
    block: &AddressBlock,
    data_pods: usize,
    id: PodId,
) -> SocketAddr {
    match (net, id) {
        (Some(net), PodId::Data(_)) => net.addr(pod_member(net, data_pods, id), DATA_PORT),
        (Some(net), PodId::Sentinel(_)) => net.addr(pod_member(net, data_pods, id), SENTINEL_PORT),
        (None, PodId::Data(i)) => block.data_addr(i),
        (None, PodId::Sentinel(j)) => block.sentinel_addr(j),
    }
}

/// The member a pod lives in, in a lab of `data_pods` data pods.
pub(crate) fn pod_member(net: &Network, data_pods: usize, id: PodId) -> Member {
    match id {
        PodId::Data(i) => net.member(i),
        PodId::Sentinel(j) => net.member(data_pods + j),
    }
}

/// `ip netns exec <member's namespace> <program>`: add the arguments, directory and stdio.
pub(crate) fn command_in(net: &Network, member: Member, program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(IP);
    command
        .args(["netns", "exec"])
        .arg(net.namespace(member))
        .arg(program);
    command
}

// === impl Lab: the network ===

impl Lab {
    /// The network of a lab on namespaces.
    pub fn network(&self) -> Option<&Network> {
        self.net.as_ref()
    }

    fn net(&self) -> &Network {
        self.net
            .as_ref()
            .expect("a lab on namespaces (LabSpec::netns)")
    }

    /// The member a pod lives in. Panics unless the lab is on namespaces.
    pub fn member(&self, id: PodId) -> Member {
        pod_member(self.net(), self.data.len(), id)
    }

    /// Spare member `k` (< [`SPARE_MEMBERS`]), for the test's own processes.
    pub fn spare_member(&self, k: usize) -> Member {
        assert!(k < SPARE_MEMBERS, "spare member {k} of {SPARE_MEMBERS}");
        self.net()
            .member(self.data.len() + self.sentinels.len() + k)
    }

    /// `ip:port` of a member.
    pub fn member_addr(&self, member: Member, port: u16) -> SocketAddr {
        self.net().addr(member, port)
    }

    /// Puts `fault` in place on the lab's network.
    pub fn apply_fault(&self, fault: &Fault) -> Result<()> {
        fault
            .apply(self.net())
            .map_err(|e| net_error(&format!("applying `{fault}`"), e))
    }

    /// Takes `fault` away.
    pub fn undo_fault(&self, fault: &Fault) -> Result<()> {
        fault
            .undo(self.net())
            .map_err(|e| net_error(&format!("undoing `{fault}`"), e))
    }

    /// Undoes every fault in place on the lab's network.
    pub fn heal_network(&self) -> Result<()> {
        self.net()
            .heal_all()
            .map_err(|e| net_error("healing the lab's network", e))
    }

    /// [`Lab::spawn_aux`] inside `member`: the program, arguments, environment and directory
    /// are taken from `command`. Returns the program's own pid.
    pub async fn spawn_aux_in(
        &mut self,
        member: Member,
        name: &str,
        command: Command,
    ) -> Result<u32> {
        let mut wrapped = command_in(self.net(), member, command.get_program());
        wrapped.args(command.get_args());
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        if let Some(dir) = command.get_current_dir().map(Path::to_path_buf) {
            wrapped.current_dir(dir);
        }
        self.spawn_aux(name, wrapped).await
    }

    /// The pid of a running auxiliary process.
    pub fn aux_pid(&self, name: &str) -> Option<u32> {
        self.aux
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| a.child.as_ref().map(std::process::Child::id))
    }
}
