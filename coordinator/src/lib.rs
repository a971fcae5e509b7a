//! The coordinator: reconciles every sentinel's view into one verdict per master name.

pub mod addr;
pub mod cli;
pub mod heal;
pub mod metrics;
pub mod owner;
pub mod registry;
pub mod secret;
pub mod server;
pub mod service;
pub mod upstream;
pub mod verdict;
