//! Sentinel administration for the lifecycle actions. This is the single place that sends
//! `SENTINEL FAILOVER`.
