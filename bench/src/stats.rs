//! Percentiles of small samples (tens to tens of thousands of values), by sorting: exact, and no
//! histogram crate needed.

use serde_json::{Value, json};

/// A sorted sample of milliseconds (or any unit the caller keeps track of).
#[derive(Debug, Clone, Default)]
pub struct Sample {
    sorted: Vec<f64>,
}

impl Sample {
    pub fn new(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        Self { sorted: values }
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Nearest-rank percentile, `p` in 0..=100; NaN for an empty sample.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.sorted.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.sorted.len() as f64).ceil() as usize;
        self.sorted[rank.clamp(1, self.sorted.len()) - 1]
    }

    pub fn min(&self) -> f64 {
        self.sorted.first().copied().unwrap_or(f64::NAN)
    }

    pub fn max(&self) -> f64 {
        self.sorted.last().copied().unwrap_or(f64::NAN)
    }

    pub fn median(&self) -> f64 {
        self.percentile(50.0)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "n": self.len(),
            "min": self.min(),
            "p50": self.percentile(50.0),
            "p99": self.percentile(99.0),
            "max": self.max(),
            "values": self.sorted,
        })
    }
}

/// The median of a few repeated measurements.
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    Sample::new(values.into_iter().collect()).median()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s = Sample::new((1..=100).rev().map(f64::from).collect());
        assert_eq!(s.percentile(50.0), 50.0);
        assert_eq!(s.percentile(99.0), 99.0);
        assert_eq!(s.percentile(100.0), 100.0);
        assert_eq!(s.percentile(0.0), 1.0);
        assert_eq!(Sample::new(vec![3.0]).percentile(99.0), 3.0);
        assert!(Sample::default().median().is_nan());
    }
}
