//! `member-leave`: makes the leaving pod safe to remove (DESIGN section 5).

use super::{ActionError, Budget, Target};

/// Makes the pod safe to remove; returns the line to print.
pub async fn run(_target: &Target, _budget: &Budget) -> Result<String, ActionError> {
    Err(ActionError::refused("member-leave: in progress"))
}
