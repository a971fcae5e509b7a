//! A lab of real Valkey data pods and sentinels, each on its own loopback address.
//!
//! A [`Lab`] is one replication group (by default 3 data pods and 3 sentinels, master name
//! `mymaster`) on a loopback /24 of its own, every pod on the standard ports (see [`layout`]).
//! Everything is a real process; nothing is mocked. Processes die with the test, however it ends
//! (see [`process`]); a failing test prints the layout and every log's tail (see [`report`]).
//!
//! ```no_run
//! # async fn demo() -> valkey_lab::Result<()> {
//! use std::time::Duration;
//! use valkey_lab::{LabSpec, PodId, ValkeyVersion};
//!
//! let mut lab = LabSpec::new(ValkeyVersion::V9_1_2).start().await?;
//! lab.wait_formed(Duration::from_secs(15)).await?;
//! lab.kill(PodId::Data(0));
//! let old = lab.data_addr(0);
//! lab.wait_sentinels_agree(Duration::from_secs(15), |addr, _| addr != old).await?;
//! # Ok(()) }
//! ```
//!
//! Conventions every scenario can rely on:
//! * Pod `i` is `valkey-i` at `127.0.N.(10+i):6379`, sentinel `j` is `sentinel-j` at
//!   `127.0.N.(100+j):26379`, and `127.0.N.200..` are free for the test (see [`layout`]).
//! * A TLS lab ([`LabSpec::tls`]) keeps those ports but speaks only TLS on them, with
//!   certificates generated for the run; every helper here ([`Lab::client`], [`EventLog`],
//!   [`Writer`], [`RoleSampler`]) then connects with the lab's client certificate (see [`tls`]).
//! * Pod 0 starts as master, the others as its replicas; every sentinel monitors pod 0 as
//!   `mymaster` with quorum 2, `down-after-milliseconds` 2000 and `failover-timeout` 5000 (see
//!   [`config::SentinelTimings`] for why not 1000).
//! * Waits poll every 25 ms under a deadline and fail with what they waited for and the last
//!   thing seen; a failed wait or a panic prints the layout and every log's last 40 lines and
//!   keeps the lab directory (`$TMPDIR/valkey-lab-<pid>-<block>`); `VALKEY_LAB_KEEP=1` keeps it
//!   on success too.
//! * Replies and events are the protocol crate's typed ones (`sentinel_protocol::{role, info,
//!   sentinel, event}`), re-exported as [`sentinel_protocol`].
//!
//! Modules, one concern each: [`version`] (which binary), [`layout`] (addresses and the block
//! claim), [`config`] (config rendering), [`process`] (spawning and signals), [`client`] (a small
//! RESP client), [`replies`] (reading replies), [`wait`] (deadline-bound waits), [`events`]
//! (sentinel pub/sub), [`writer`] (acknowledged writes and loss checks), [`sampler`] (ROLE
//! timeline and dual-master detection), [`report`] (the failure report), [`tls`] (a TLS lab's
//! certificates, generated per run, and their rotation), [`acl`] (the least-privilege users'
//! rules, and setting users and reading `ACL LOG` on the pods). A lab on namespaces
//! ([`LabSpec::netns`]) puts every pod in a network namespace of its own ([`netns`] builds the
//! network and its faults, [`netlab`] places the pods in it), and [`faults`] expands a seed into a
//! schedule of faults and checks a run's samples.

pub mod acl;
pub mod apiserver;
pub mod client;
pub mod config;
pub mod error;
pub mod events;
pub mod faults;
pub mod helm;
pub mod kubeblocks;
pub mod lab;
pub mod layout;
pub mod netlab;
pub mod netns;
pub mod process;
pub mod replies;
pub mod report;
pub mod sampler;
pub mod tls;
pub mod version;
pub mod wait;
pub mod writer;

pub use acl::{AclDenial, AclUser};
pub use client::{Client, Credentials, Frame, Transport};
pub use config::{AuthSpec, SentinelTimings, StartRole};
pub use error::{LabError, Result};
pub use events::{EventLog, ReceivedEvent};
pub use lab::{Lab, LabSpec, PodId, SentinelStart};
pub use sampler::{DualMaster, RoleSampler, RoleTimeline, SampledRole};
/// The protocol crate, whose typed replies and events the lab returns.
pub use sentinel_protocol;
pub use tls::{CertFiles, LabTls, NegativeTls, TlsFiles};
pub use version::ValkeyVersion;
pub use wait::{MasterAgreement, Probe, poll_until};
pub use writer::{LossReport, WriteLog, WriteTarget, Writer};

/// Makes each named scenario, an `async fn(ValkeyVersion)` in the calling test file, one test
/// per Valkey version: a module named after the scenario with tests `v8_0_1`, `v8_1_8` and
/// `v9_1_2`, each on a 2-thread tokio runtime. The caller needs `tokio` (with its test macro).
///
/// ```ignore
/// valkey_lab::on_every_version!(group_forms, master_killed);
/// ```
#[macro_export]
macro_rules! on_every_version {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn v8_0_1() {
                    super::$scenario($crate::ValkeyVersion::V8_0_1).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn v8_1_8() {
                    super::$scenario($crate::ValkeyVersion::V8_1_8).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn v9_1_2() {
                    super::$scenario($crate::ValkeyVersion::V9_1_2).await;
                }
            }
        )*
    };
}

/// [`on_every_version!`] for the TLS-only suites: one test per build of
/// [`ValkeyVersion::TLS`], named `v8_0_1`, `v8_1_1` and `v9_1_2_tls`. A build that is not
/// installed fails its test with [`LabError::NotInstalled`]; nothing is skipped.
#[macro_export]
macro_rules! on_every_tls_version {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn v8_0_1() {
                    super::$scenario($crate::ValkeyVersion::V8_0_1).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn v8_1_1() {
                    super::$scenario($crate::ValkeyVersion::V8_1_1).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn v9_1_2_tls() {
                    super::$scenario($crate::ValkeyVersion::V9_1_2Tls).await;
                }
            }
        )*
    };
}

/// The coordinator binary cargo built next to the running test executable
/// (`target/<profile>/valkey-coordinator`): what the scenarios run as `serve` and as the
/// lifecycle actions. Panics, saying how to build it, when it is not there.
pub fn coordinator_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let binary = dir.join("valkey-coordinator");
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build -p valkey-coordinator` first",
        binary.display()
    );
    binary
}
