//! Benchmarks of the coordinator against a real sentinel, measured in the same run.
