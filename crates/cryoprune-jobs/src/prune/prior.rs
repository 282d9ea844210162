//! How common the kept classes are assumed to be when each pick is decided.
//!
//! A network learns the class mix of its training picks as its prior. `--shots 30` trains on
//! 30 junk and 30 particles, so its probabilities assume half of all picks are junk; a good
//! picker's picks are 85-95% particles, and a model that assumes half is junk throws away real
//! particles whenever it is unsure. Bayes' rule moves the probabilities to another prior
//! exactly: multiply each class's probability by its new share over its trained share and
//! renormalise (Saerens et al. 2002). The dataset's share is estimated before anything is
//! written, by adjusted classify-and-count on a sample of the picks being pruned, corrected with
//! the error rates of labelled picks the model did not train on (see
//! [`cryoprune_train::threshold::adjusted_count`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::decide::Outcome;

/// The share of picks of the kept classes the decision assumes.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Prior {
    /// Estimated on the picks being pruned (the default).
    #[default]
    Dataset,
    /// The training picks' class mix, as the network learnt it.
    Training,
    /// Given by the user, as a share in (0, 1).
    Share(f64),
}

impl FromStr for Prior {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "dataset" => Ok(Prior::Dataset),
            "training" => Ok(Prior::Training),
            other => match other.parse::<f64>() {
                Ok(v) if v > 0.0 && v < 1.0 => Ok(Prior::Share(v)),
                _ => Err(format!(
                    "prior '{s}': expected dataset, training or the share of picks of the kept \
                     classes, a number between 0 and 1 (0.85)"
                )),
            },
        }
    }
}

impl fmt::Display for Prior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Prior::Dataset => f.write_str("dataset"),
            Prior::Training => f.write_str("training"),
            Prior::Share(v) => write!(f, "{v}"),
        }
    }
}

cryoprune_image::serde_as_text!(Prior);

/// The shares are kept this far from 0 and 1, where the odds would be infinite and a single
/// class would take every pick.
const MIN_SHARE: f64 = 0.01;

/// A move of the kept classes' prior from the share the network was trained with to the one
/// assumed for the picks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shift {
    /// Share of the kept classes among the training picks (loss weights included).
    pub trained: f64,
    /// Share assumed for the picks being pruned.
    pub assumed: f64,
    /// Where `assumed` came from, in words.
    pub source: String,
}

impl Shift {
    pub fn new(trained: f64, assumed: f64, source: String) -> Shift {
        let clamp = |v: f64| v.clamp(MIN_SHARE, 1.0 - MIN_SHARE);
        Shift {
            trained: clamp(trained),
            assumed: clamp(assumed),
            source,
        }
    }

    /// Factors on the kept classes' and the other classes' probabilities.
    fn factors(&self) -> (f64, f64) {
        (
            self.assumed / self.trained,
            (1.0 - self.assumed) / (1.0 - self.trained),
        )
    }

    /// Moves one pick's class probabilities to the assumed prior.
    pub fn apply(&self, p: &mut [f32], keep: &[usize]) {
        let (kept, other) = self.factors();
        let mut total = 0.0;
        for (c, v) in p.iter_mut().enumerate() {
            let f = if keep.contains(&c) { kept } else { other };
            *v = (f64::from(*v) * f) as f32;
            total += f64::from(*v);
        }
        if total > 0.0 {
            p.iter_mut()
                .for_each(|v| *v = (f64::from(*v) / total) as f32);
        }
    }

    /// [`Self::apply`] to every scored pick of `outcomes`.
    pub fn apply_all(&self, outcomes: &mut [Outcome], keep: &[usize]) {
        for o in outcomes {
            if let Outcome::Scored(p) = o {
                self.apply(p, keep);
            }
        }
    }

    /// The same move for the kept classes' probability alone.
    pub fn apply_keep(&self, p_keep: f64) -> f64 {
        let (kept, other) = self.factors();
        let k = p_keep * kept;
        let total = k + (1.0 - p_keep) * other;
        if total > 0.0 {
            k / total
        } else {
            p_keep
        }
    }

    pub fn to_text(&self) -> String {
        format!(
            "{:.0}% of picks assumed kept-class ({}; the model learnt {:.0}%)",
            100.0 * self.assumed,
            self.source,
            100.0 * self.trained
        )
    }
}

/// Every `step`-th job so that the chosen hold about `target` picks (all jobs when there are
/// fewer): spread over the run, so a session's drift in ice or defocus is sampled throughout.
pub fn sample_jobs(picks_per_job: &[usize], target: usize) -> Vec<usize> {
    let total: usize = picks_per_job.iter().sum();
    let step = (total / target.max(1)).max(1);
    (0..picks_per_job.len()).step_by(step).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priors_parse_and_print_as_typed() {
        assert_eq!("dataset".parse::<Prior>().unwrap(), Prior::Dataset);
        assert_eq!("Training".parse::<Prior>().unwrap(), Prior::Training);
        assert_eq!("0.85".parse::<Prior>().unwrap(), Prior::Share(0.85));
        for bad in ["1", "0", "-0.2", "balanced"] {
            let err = bad.parse::<Prior>().unwrap_err();
            assert!(err.contains("between 0 and 1"), "{err}");
        }
        for p in [Prior::Dataset, Prior::Training, Prior::Share(0.3)] {
            assert_eq!(p.to_string().parse::<Prior>().unwrap(), p);
        }
    }

    #[test]
    fn a_shift_is_bayes_rule_on_the_kept_classes_together() {
        // Trained on a balanced set, applied where 80% are particles: odds times 4.
        let s = Shift::new(0.5, 0.8, "given".into());
        let mut p = [0.5f32, 0.5];
        s.apply(&mut p, &[1]);
        assert!((p[1] - 0.8).abs() < 1e-6, "{p:?}");
        let mut p = [0.8f32, 0.2];
        s.apply(&mut p, &[1]);
        assert!((p[1] - 0.5).abs() < 1e-6, "{p:?}");
        assert!((s.apply_keep(0.2) - 0.5).abs() < 1e-9);
        // Several kept classes move together; the others keep their ratio.
        let mut p = [0.2f32, 0.2, 0.3, 0.3];
        s.apply(&mut p, &[2, 3]);
        assert!((p[2] + p[3] - s.apply_keep(0.6) as f32).abs() < 1e-6);
        assert!((p[0] - p[1]).abs() < 1e-7 && (p[2] - p[3]).abs() < 1e-7);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        // No move when the shares agree; extreme shares are held off 0 and 1.
        let same = Shift::new(0.7, 0.7, "given".into());
        assert!((same.apply_keep(0.33) - 0.33).abs() < 1e-12);
        let all = Shift::new(0.5, 1.0, "estimated".into());
        assert!(all.apply_keep(0.001) < 0.5);
    }

    #[test]
    fn the_sample_is_spread_over_the_run() {
        assert_eq!(sample_jobs(&[10; 5], 100), vec![0, 1, 2, 3, 4]);
        assert_eq!(sample_jobs(&[100; 10], 300), vec![0, 3, 6, 9]);
        assert!(sample_jobs(&[], 100).is_empty());
    }
}
