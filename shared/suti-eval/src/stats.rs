//! The statistics the evaluation reports: the area under the ROC curve (how often a metric ranks a
//! positive above a negative) and a paired bootstrap over subjects for 95 % intervals of means
//! and of differences between methods rendered from the same seeds.

use serde::{Deserialize, Serialize};
use suti_rng::SplitMix64;

/// Bootstrap resamples behind every interval.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// The probability that a random positive scores above a random negative (ties count half): the
/// Mann–Whitney form of the area under the ROC curve. `None` when either side is empty.
pub fn auc(positives: &[f32], negatives: &[f32]) -> Option<f64> {
    if positives.is_empty() || negatives.is_empty() {
        return None;
    }
    let mut wins = 0f64;
    for p in positives {
        for n in negatives {
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    Some(wins / (positives.len() * negatives.len()) as f64)
}

/// A mean with its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The mean over subjects.
    pub mean: f64,
    /// 2.5th percentile of the bootstrap means.
    pub lo: f64,
    /// 97.5th percentile of the bootstrap means.
    pub hi: f64,
}

impl Estimate {
    /// Whether the interval holds zero: for a difference, "no difference".
    pub fn holds_zero(&self) -> bool {
        self.lo <= 0.0 && self.hi >= 0.0
    }

    /// `0.123 [0.101, 0.145]` with `digits` decimals.
    pub fn format(&self, digits: usize) -> String {
        format!(
            "{:.digits$} [{:.digits$}, {:.digits$}]",
            self.mean, self.lo, self.hi
        )
    }

    /// As [`Self::format`], in percent.
    pub fn format_percent(&self) -> String {
        format!(
            "{:.0} % [{:.0}, {:.0}]",
            self.mean * 100.0,
            self.lo * 100.0,
            self.hi * 100.0
        )
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let at = (q * (sorted.len() - 1) as f64).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

/// The resampled subject indices, the same for every quantity estimated from one seed: this is
/// what pairs the methods (each resample draws the same subjects for all of them).
pub fn resamples(subjects: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = SplitMix64::derive(seed, "eval/bootstrap");
    (0..BOOTSTRAP_RESAMPLES)
        .map(|_| (0..subjects).map(|_| rng.below(subjects)).collect())
        .collect()
}

/// The mean of per-subject values with a bootstrap interval over `resamples` (from
/// [`resamples`] with `values.len()` subjects). Values that are `None` (a method not run on that
/// subject) are left out of each resample's mean. `None` when no subject has a value.
pub fn bootstrap_mean(values: &[Option<f64>], resamples: &[Vec<usize>]) -> Option<Estimate> {
    let present: Vec<f64> = values.iter().flatten().copied().collect();
    if present.is_empty() {
        return None;
    }
    let mut means: Vec<f64> = resamples
        .iter()
        .filter_map(|draw| {
            let picked: Vec<f64> = draw.iter().filter_map(|&i| values[i]).collect();
            (!picked.is_empty()).then(|| mean(&picked))
        })
        .collect();
    if means.is_empty() {
        return None;
    }
    means.sort_by(f64::total_cmp);
    Some(Estimate {
        mean: mean(&present),
        lo: percentile(&means, 0.025),
        hi: percentile(&means, 0.975),
    })
}

/// The paired difference `a − b` of per-subject values: subjects where either is missing are
/// left out, so a method run on a subset is compared on that subset only.
pub fn bootstrap_difference(
    a: &[Option<f64>],
    b: &[Option<f64>],
    resamples: &[Vec<usize>],
) -> Option<Estimate> {
    let differences: Vec<Option<f64>> = a.iter().zip(b).map(|(x, y)| Some((*x)? - (*y)?)).collect();
    bootstrap_mean(&differences, resamples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_wins_and_half_ties() {
        assert_eq!(auc(&[2.0, 3.0], &[1.0, 0.0]), Some(1.0));
        assert_eq!(auc(&[0.0], &[1.0, 2.0]), Some(0.0));
        assert_eq!(auc(&[1.0], &[1.0]), Some(0.5));
        assert_eq!(auc(&[1.0, 3.0], &[2.0]), Some(0.5));
        assert_eq!(auc(&[], &[1.0]), None);
    }

    #[test]
    fn a_real_difference_excludes_zero_and_noise_does_not() {
        let draws = resamples(24, 7);
        let mut rng = SplitMix64::new(3);
        let base: Vec<Option<f64>> = (0..24).map(|_| Some(f64::from(rng.normal()))).collect();
        // The same subjects plus a clear shift and small per-subject noise.
        let better: Vec<Option<f64>> = base
            .iter()
            .map(|b| Some(b.unwrap() + 1.0 + 0.1 * f64::from(rng.normal())))
            .collect();
        let lead = bootstrap_difference(&better, &base, &draws).unwrap();
        assert!(!lead.holds_zero() && lead.lo > 0.8, "{lead:?}");
        // Independent noise of the same size: the interval holds zero.
        let other: Vec<Option<f64>> = (0..24)
            .map(|_| Some(f64::from(rng.normal()) * 0.1))
            .collect();
        let same: Vec<Option<f64>> = (0..24)
            .map(|_| Some(f64::from(rng.normal()) * 0.1))
            .collect();
        let none = bootstrap_difference(&other, &same, &draws).unwrap();
        assert!(none.holds_zero(), "{none:?}");
        let m = bootstrap_mean(&base, &draws).unwrap();
        assert!(m.lo < m.mean && m.mean < m.hi, "{m:?}");
    }

    #[test]
    fn missing_subjects_are_left_out_of_means_and_pairs() {
        let draws = resamples(4, 1);
        let a = [Some(1.0), Some(1.0), None, None];
        let b = [Some(0.0), Some(0.0), Some(9.0), Some(9.0)];
        let d = bootstrap_difference(&a, &b, &draws).unwrap();
        assert_eq!((d.mean, d.lo, d.hi), (1.0, 1.0, 1.0));
        assert_eq!(bootstrap_mean(&[None, None], &draws), None);
    }
}
