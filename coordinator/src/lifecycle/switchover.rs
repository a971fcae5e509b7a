//! `switchover`: moves the master without losing an acknowledged write (DESIGN section 5).

use std::path::Path;

use crate::addr::Addr;

use super::{ActionError, Budget, Target};

/// Moves the master; returns the line to print.
pub async fn run(
    _target: &Target,
    _budget: &Budget,
    _candidate: Option<&Addr>,
    _state_file: Option<&Path>,
) -> Result<String, ActionError> {
    Err(ActionError::refused("switchover: in progress"))
}
