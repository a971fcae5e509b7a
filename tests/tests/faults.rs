//! Seeded fault schedules over a lab on namespaces (issue #14): each seed expands into a
//! schedule of faults (printed, so a failing seed can be replayed), applied with the
//! coordinator, two writers (one through the coordinator, one straight through the sentinels)
//! and 10 Hz samplers running, then checked (see `runner.rs` and `valkey_lab::faults`).
//!
//! * CI: `seed_1` ..= `seed_20` on 9.1.2 and `v8_seed_21` ..= `v8_seed_26` on 8.1.8, one test
//!   each, so nextest runs them in parallel.
//! * `FAULT_VERSION=8.1.8` (any build's name) runs the modes below on that build.
//! * Many: `FAULT_SEEDS=1-500 cargo nextest run -p valkey-lab --all-features --test faults
//!   --run-ignored only many --no-capture` (a range `a-b` or a list `1,5,9`).
//! * Replay one: `FAULT_SEED=17 ... --run-ignored only replay --no-capture`.
//! * Soak: `FAULT_SOAK_SECS=3600 ... --run-ignored only soak --no-capture`: one lab and one
//!   coordinator cycling schedules (no coordinator restarts), printing its fd count and RSS.

#[path = "faults/runner.rs"]
mod runner;

use std::time::{Duration, Instant};

use valkey_lab::{
    ValkeyVersion,
    faults::{Action, Schedule},
};

/// The build `FAULT_VERSION` names (`8.1.8`, ...), else the schedules' default.
fn version() -> ValkeyVersion {
    match std::env::var("FAULT_VERSION") {
        Ok(name) => ValkeyVersion::named(&name).expect("FAULT_VERSION names a build, e.g. 8.1.8"),
        Err(_) => Schedule::DEFAULT_VERSION,
    }
}

async fn check_seed(version: ValkeyVersion, seed: u64) {
    let (outcome, _bench) = runner::run_seed(version, seed).await;
    eprintln!("{}{}", outcome.schedule, outcome.line());
    assert!(
        outcome.violations.is_empty(),
        "{}",
        runner::report(&outcome)
    );
}

macro_rules! seeds {
    ($version:expr; $($name:ident = $seed:literal),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                check_seed($version, $seed).await;
            }
        )*
    };
}

seeds!(
    Schedule::DEFAULT_VERSION;
    seed_1 = 1,
    seed_2 = 2,
    seed_3 = 3,
    seed_4 = 4,
    seed_5 = 5,
    seed_6 = 6,
    seed_7 = 7,
    seed_8 = 8,
    seed_9 = 9,
    seed_10 = 10,
    seed_11 = 11,
    seed_12 = 12,
    seed_13 = 13,
    seed_14 = 14,
    seed_15 = 15,
    seed_16 = 16,
    seed_17 = 17,
    seed_18 = 18,
    seed_19 = 19,
    seed_20 = 20,
);

// The same runner on 8.x, where a switchover pauses the old master itself (no `COORDINATED`).
seeds!(
    ValkeyVersion::V8_1_8;
    v8_seed_21 = 21,
    v8_seed_22 = 22,
    v8_seed_23 = 23,
    v8_seed_24 = 24,
    v8_seed_25 = 25,
    v8_seed_26 = 26,
);

/// `a-b` or `a,b,c`.
fn parse_seeds(text: &str) -> Vec<u64> {
    text.split(',')
        .flat_map(|part| match part.trim().split_once('-') {
            Some((a, b)) => {
                let (a, b): (u64, u64) = (a.parse().expect("a seed"), b.parse().expect("a seed"));
                (a..=b).collect::<Vec<_>>()
            }
            None => vec![part.trim().parse().expect("a seed")],
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "many seeds: FAULT_SEEDS=1-500"]
async fn many() {
    let seeds = parse_seeds(&std::env::var("FAULT_SEEDS").unwrap_or_else(|_| "1-100".into()));
    let mut failed = Vec::new();
    let mut lines = Vec::new();
    // A failing seed's bench is stopped and kept to the end: its block stays claimed, so no
    // later seed's lab reuses (and clears) its directory.
    let mut kept = Vec::new();
    for seed in seeds {
        let (outcome, mut bench) = runner::run_seed(version(), seed).await;
        eprintln!("{}", outcome.line());
        if !outcome.violations.is_empty() {
            eprintln!("{}", runner::report(&outcome));
            failed.push(seed);
            let _ = bench.lab.stop_all().await;
            bench.lab.kill_aux("coordinator");
            kept.push(bench);
        }
        lines.push(outcome.line());
    }
    eprintln!("===== summary =====\n{}", lines.join("\n"));
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "replays FAULT_SEED"]
async fn replay() {
    let seed = std::env::var("FAULT_SEED")
        .expect("FAULT_SEED=<n>")
        .parse()
        .expect("a seed");
    check_seed(version(), seed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: FAULT_SOAK_SECS=3600"]
async fn soak() {
    let secs: u64 = std::env::var("FAULT_SOAK_SECS")
        .unwrap_or_else(|_| "600".into())
        .parse()
        .expect("seconds");
    let until = Instant::now() + Duration::from_secs(secs);
    let began = Instant::now();
    let mut bench = runner::Bench::start(version()).await;
    let mut seed: u64 = std::env::var("FAULT_SOAK_FIRST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let usage = |bench: &runner::Bench, label: &str| match bench.coordinator_usage() {
        Some((pid, fds, rss)) => eprintln!(
            "soak {:>7.1}s {label}: coordinator pid {pid} fds {fds} rss {rss} kB",
            began.elapsed().as_secs_f64()
        ),
        None => eprintln!("soak: the coordinator is not running"),
    };
    usage(&bench, "start");
    while Instant::now() < until {
        let mut schedule = Schedule::from_seed(seed).on(version());
        // One coordinator for the whole soak: its fd count and memory are what is measured.
        schedule
            .steps
            .retain(|s| s.action != Action::RestartCoordinator);
        let outcome = runner::run_schedule(&mut bench, &schedule).await;
        eprintln!("{}", outcome.line());
        if !outcome.violations.is_empty() {
            bench.lab.mark_failed();
            panic!("{}", runner::report(&outcome));
        }
        usage(&bench, &format!("after seed {seed}"));
        seed += 1;
    }
}
