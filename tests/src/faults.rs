//! Seeded fault injection over a lab on namespaces (issue #14): a [`Schedule`] is a seed
//! expanded into a bounded list of faults with hold times ([`schedule`]), the samplers a run
//! keeps going at 10 Hz ([`sample`]), and the invariants checked over their samples
//! ([`check`]). The runner that applies a schedule to a lab, with the coordinator, two writers
//! and the samplers, is `tests/tests/faults/runner.rs` (it calls the coordinator's lifecycle
//! actions as a library, which this crate cannot depend on).

pub mod check;
pub mod sample;
pub mod schedule;

pub use check::Window;
pub use sample::{Answer, Sample, Sampler};
pub use schedule::{Action, NetFault, Rng, Role, Schedule, Step};
