//! Talking to sentinels and data pods: the client layer every part of the coordinator shares.
//!
//! The long-running links ([`crate::service`]), the healer and the one-shot lifecycle actions
//! all reach Valkey through here, so a connection, a poll and a probe mean the same thing
//! everywhere:
//!
//! - [`conn`]: one RESP2 connection (plain TCP today; the one place a transport is chosen),
//!   authenticated with [`conn::Credentials`], its replies read through the protocol crate's
//!   limits.
//! - [`query`]: one poll of a master name on one sentinel, read into a verdict view, and a
//!   survey of every configured sentinel in parallel under one deadline.
//! - [`dataplane`]: what a data pod says of itself (`INFO replication`, `ROLE`, run id).
//! - [`register`]: the one registration routine (`MONITOR`, every `SET`, read back).
//! - [`admin`]: the single place that sends `SENTINEL FAILOVER`.
//!
//! Nothing here keeps state between calls or knows about the service's tasks.

pub mod admin;
pub mod conn;
pub mod dataplane;
pub mod query;
pub mod register;
