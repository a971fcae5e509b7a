//! The cost of the verdict itself: `verdict::decide`, the pure function every sentinel answer
//! runs through, timed in a loop on inputs shaped like the ones the service builds.

use std::hint::black_box;
use std::time::{Duration, Instant};

use valkey_coordinator::addr::{Addr, PodAliases};
use valkey_coordinator::verdict::{
    self, MonotonicTime, SentinelId, SentinelReport, SentinelView, VerdictInput,
};

/// Which picture the sentinels paint.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// Every sentinel names the same master at the same epoch: the steady state.
    Steady,
    /// Mid-failover: a bare majority names the new master at a higher epoch, the rest still name
    /// the old one, and one sentinel does not answer.
    Failover,
}

impl Shape {
    pub fn label(self) -> &'static str {
        match self {
            Self::Steady => "all agree",
            Self::Failover => "mid-failover, one unreachable",
        }
    }
}

fn input(sentinels: usize, shape: Shape) -> VerdictInput {
    let now = MonotonicTime::from_elapsed(Duration::from_secs(100));
    let fresh = MonotonicTime::from_elapsed(Duration::from_millis(99_900));
    let old: Addr = "10.0.0.10:6379".parse().expect("literal");
    let new: Addr = "10.0.0.11:6379".parse().expect("literal");
    let majority = verdict::majority_of(sentinels);
    let mut input = VerdictInput::new(sentinels, now);
    for j in 0..sentinels {
        let id = SentinelId::new(format!("10.0.1.{j}:26379").parse().expect("literal"));
        let view = match shape {
            Shape::Steady => SentinelView::Reports(SentinelReport::new(old.clone(), 3, fresh)),
            Shape::Failover if j < majority => {
                SentinelView::Reports(SentinelReport::new(new.clone(), 4, fresh))
            }
            Shape::Failover if j + 1 == sentinels => SentinelView::Unreachable,
            Shape::Failover => SentinelView::Reports(SentinelReport::new(old.clone(), 3, fresh)),
        };
        input = input.with_view(id, view);
    }
    input
}

/// Median nanoseconds per `decide` call over several timed batches.
pub fn time_decide(sentinels: usize, shape: Shape) -> f64 {
    let input = input(sentinels, shape);
    let aliases = PodAliases::new();
    let agreed = verdict::decide(&input, &aliases).agreement().is_some();
    assert!(
        agreed,
        "the bench input for {sentinels} sentinels must agree"
    );
    let mut iterations = 1_000u32;
    // Grow the batch until it takes about 50 ms, so the clock's resolution does not matter.
    loop {
        let started = Instant::now();
        for _ in 0..iterations {
            black_box(verdict::decide(black_box(&input), &aliases));
        }
        if started.elapsed() >= Duration::from_millis(50) || iterations >= 1 << 24 {
            break;
        }
        iterations *= 2;
    }
    let batches: Vec<f64> = (0..7)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..iterations {
                black_box(verdict::decide(black_box(&input), &aliases));
            }
            started.elapsed().as_nanos() as f64 / f64::from(iterations)
        })
        .collect();
    crate::stats::median(batches)
}
