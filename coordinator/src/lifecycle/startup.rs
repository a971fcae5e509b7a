//! `startup`: master, or replica of whom? (DESIGN section 5.)

use std::fmt;
use std::path::Path;

use crate::addr::Addr;

use super::{ActionError, Budget, Target};

/// How the pod starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Master,
    Replica(Addr),
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Master => f.write_str("master"),
            Decision::Replica(master) => write!(f, "replica {} {}", master.host(), master.port()),
        }
    }
}

/// Decides, writes `write_config`, and returns the decision.
pub async fn run(
    _target: &Target,
    _budget: &Budget,
    _write_config: &Path,
    _replica_priority: u64,
) -> Result<Decision, ActionError> {
    Err(ActionError::refused("startup: in progress"))
}
