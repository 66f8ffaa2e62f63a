//! Order statistics over samples: median, p90, p99, min, max.

use serde::Serialize;

/// Summary of one step's samples, in the step's unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub p90: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
}

/// The nearest-rank percentile `p` (0 < p <= 100) of sorted samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Summary {
    /// None for no samples.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let median = if s.len() % 2 == 1 {
            s[s.len() / 2]
        } else {
            (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
        };
        Some(Summary {
            n: s.len(),
            median,
            p90: percentile(&s, 90.0),
            p99: percentile(&s, 99.0),
            min: s[0],
            max: s[s.len() - 1],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_one_to_hundred() {
        let v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = Summary::of(&v).unwrap();
        assert_eq!((s.n, s.min, s.max), (100, 1.0, 100.0));
        assert_eq!(s.median, 50.5);
        assert_eq!(s.p90, 90.0);
        assert_eq!(s.p99, 99.0);
    }

    #[test]
    fn small_samples() {
        let s = Summary::of(&[3.0]).unwrap();
        assert_eq!(
            (s.median, s.p90, s.p99, s.min, s.max),
            (3.0, 3.0, 3.0, 3.0, 3.0)
        );
        let s = Summary::of(&[1.0, 2.0, 10.0]).unwrap();
        assert_eq!((s.median, s.p90), (2.0, 10.0));
        assert!(Summary::of(&[]).is_none());
    }
}
