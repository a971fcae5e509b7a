//! A KubeBlocks stand-in: the addon's charts as Helm renders them, run on this machine the way
//! KubeBlocks and the kubelet would run them, against real Valkey.
//!
//! What it does as KubeBlocks does (kubeblocks-runtime.md has the facts, read in KubeBlocks'
//! code): resolves a ComponentDefinition's `vars` per component ([`vars`]), starts components
//! in the ClusterDefinition's provision order and pods in the pod management policy's order,
//! runs init containers, containers, probes and `preStop` hooks by their chart commands
//! ([`pod`]), runs lifecycle actions as kbagent does (no shell, the action's environment and
//! parameters, its timeout on the whole process group) and keeps role labels from the role
//! probe's output as the controller parses and accepts it ([`roles`]), and turns OpsRequests
//! into the calls KubeBlocks makes ([`cluster`]).
//!
//! What it stands in for, and how: each pod is a set of processes on its own loopback address
//! (the lab's address block) with the standard ports; cluster DNS resolves a pod FQDN to that
//! address, so `podFQDNs` lists addresses; a Service is its first pod's address; a volume is a
//! directory (a PVC outlives its pod, an emptyDir does not) and every mount path is rewritten to
//! it in commands and environment values; the Valkey image is the lab's build of the service
//! version, and the coordinator image is the binary built here. Config templates are copied as
//! they are (the addon's are plain valkey.conf, computed values come from its start script).

pub mod cluster;
pub mod dataprotection;
pub mod manifest;
pub mod pod;
pub mod roles;
pub mod vars;

use std::path::{Path, PathBuf};

pub use cluster::{ClusterSpec, KubeCluster};
pub use manifest::Manifests;
pub use pod::Outcome;

/// What can go wrong in the stand-in.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The charts did not render, or lack what the Cluster refers to.
    #[error("{0}")]
    Manifest(String),
    /// A var could not be resolved.
    #[error("var {0}")]
    Var(String),
    /// A pod could not be created, started or probed.
    #[error("{0}")]
    Pod(String),
    /// A lifecycle action that had to succeed failed.
    #[error("{action} on {pod} failed (exit {:?}): {}{}", outcome.code, outcome.stdout.trim(), outcome.stderr.trim())]
    Action {
        pod: String,
        action: String,
        outcome: Outcome,
    },
    /// A file operation.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl KubeError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// The newest Helm that tests/install-addon-tools.sh installed under `.deps/helm/<version>/`.
pub fn helm_binary() -> Result<PathBuf, KubeError> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.deps/helm");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| {
            KubeError::Manifest(format!(
                "{}: {e}; run tests/install-addon-tools.sh",
                dir.display()
            ))
        })?
        .flatten()
        .map(|entry| entry.path().join("helm"))
        .filter(|path| path.is_file())
        .collect();
    found.sort();
    found.pop().ok_or_else(|| {
        KubeError::Manifest(format!(
            "no helm under {}; run tests/install-addon-tools.sh",
            dir.display()
        ))
    })
}
