//! The lab's one error type. Every variant names the pod or address involved and, for waits, what
//! was waited for and the last value seen, so a failing scenario reads as a sentence.

use std::{fmt, io, net::SocketAddr, path::PathBuf, time::Duration};

use crate::version::ValkeyVersion;

/// Everything that can go wrong while running a lab.
///
/// `Debug` prints the same sentence as `Display`: tests end in `.expect(..)`, which shows
/// `Debug`, and a struct dump of a timeout is much harder to read than the sentence.
#[derive(thiserror::Error)]
pub enum LabError {
    /// The Valkey build for a version is not on disk.
    #[error("valkey {version} is not installed: {} is missing; run tests/install-valkey.sh", path.display())]
    NotInstalled {
        /// The version asked for.
        version: ValkeyVersion,
        /// The binary that was looked for.
        path: PathBuf,
    },

    /// A TLS lab was asked of a build compiled without TLS.
    #[error("valkey {version} is built without TLS; a TLS lab needs one of ValkeyVersion::TLS")]
    NoTlsSupport {
        /// The version asked for.
        version: ValkeyVersion,
    },

    /// Generating, writing or loading TLS material failed.
    #[error("{context}: {reason}")]
    Tls {
        /// What the lab was doing.
        context: String,
        /// The TLS library's error.
        reason: String,
    },

    /// Every block 127.0.10.0/24 ..= 127.0.249.0/24 is locked by another lab or has bound ports.
    #[error("no free loopback address block (127.0.10-249.x are all locked or in use)")]
    NoFreeBlock,

    /// A file-system or process-spawning operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the lab was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A process exited (or never answered) while the lab was starting it.
    #[error("{pod} did not start: {reason}; its log is {}", log.display())]
    StartFailed {
        /// The pod's name.
        pod: String,
        /// Why (exit status or the last error seen).
        reason: String,
        /// Its log file.
        log: PathBuf,
    },

    /// An operation that needs a running process was asked of a stopped pod.
    #[error("{pod} is not running")]
    NotRunning {
        /// The pod's name.
        pod: String,
    },

    /// TCP connect (or, in a TLS lab, the TLS handshake) failed.
    #[error("{addr}: connect failed: {source}")]
    Connect {
        /// The address dialled.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The peer closed the connection or the socket failed mid-command.
    #[error("{addr}: connection lost: {reason}")]
    ConnectionLost {
        /// The peer.
        addr: SocketAddr,
        /// What happened.
        reason: String,
    },

    /// No reply within the client's timeout (a SIGSTOPped pod looks like this).
    #[error("{addr}: no reply to `{command}` within {after:?}")]
    CommandTimeout {
        /// The peer.
        addr: SocketAddr,
        /// The command sent.
        command: String,
        /// The timeout.
        after: Duration,
    },

    /// The server answered with an error reply.
    #[error("{addr}: `{command}` failed: {message}")]
    Server {
        /// The peer.
        addr: SocketAddr,
        /// The command sent.
        command: String,
        /// The error text, e.g. `READONLY You can't write against a read only replica.`
        message: String,
    },

    /// The server answered with a reply of a shape the lab does not expect.
    #[error("{addr}: unexpected reply to `{command}`: {reply}")]
    UnexpectedReply {
        /// The peer.
        addr: SocketAddr,
        /// The command sent.
        command: String,
        /// The reply, rendered for humans.
        reply: String,
    },

    /// A wait-for helper reached its deadline.
    #[error("timed out after {waited:?} waiting for {what}; last seen: {last_seen}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        waited: Duration,
        /// The last observation, rendered for humans.
        last_seen: String,
    },
}

impl fmt::Debug for LabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl LabError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        LabError::Io {
            context: context.into(),
            source,
        }
    }
}

/// The lab's result alias.
pub type Result<T, E = LabError> = std::result::Result<T, E>;
