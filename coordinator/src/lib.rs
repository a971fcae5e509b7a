//! The coordinator: reconciles every sentinel's view into one verdict per master name.
//!
//! Dependencies point one way: [`addr`] → [`verdict`] (pure: no I/O, no clock) → [`sentinel`]
//! (talking to sentinels and data pods) → [`service`] (the long-running part) and the lifecycle
//! actions → [`cli`].

pub mod addr;
pub mod cli;
pub mod lifecycle;
pub mod secret;
pub mod sentinel;
pub mod service;
pub mod tls;
pub mod verdict;
