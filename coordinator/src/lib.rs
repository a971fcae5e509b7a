//! The coordinator: reconciles every sentinel's view into one verdict per master name.

pub mod addr;
pub mod owner;
pub mod registry;
pub mod server;
pub mod upstream;
pub mod verdict;
