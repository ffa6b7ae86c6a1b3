//! Medians and percentiles of samples.

use std::time::Duration;

/// Median and 95th percentile (nearest rank) of a set of samples, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub median: f64,
    pub p95: f64,
    pub samples: usize,
}

impl Summary {
    pub fn of_durations(samples: &[Duration]) -> Summary {
        let millis: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        Summary::of(&millis)
    }

    pub fn of(samples: &[f64]) -> Summary {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Summary {
            median: percentile(&sorted, 50.0),
            p95: percentile(&sorted, 95.0),
            samples: sorted.len(),
        }
    }
}

/// Nearest-rank percentile of sorted samples; 0 for none. The median of an even count is the
/// mean of the two middle samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if p == 50.0 && n % 2 == 0 => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        n => {
            let rank = ((p / 100.0) * n as f64).ceil() as usize;
            sorted[rank.clamp(1, n) - 1]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p95() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of(&samples);
        assert_eq!(s.median, 50.5);
        assert_eq!(s.p95, 95.0);
        let odd = Summary::of(&[3.0, 1.0, 2.0]);
        assert_eq!(odd.median, 2.0);
        assert_eq!(odd.p95, 3.0);
        assert_eq!(Summary::of(&[]).median, 0.0);
    }
}
