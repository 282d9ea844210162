//! The picker's own score as a second piece of evidence beside the image.
//!
//! Every picker scores its picks (Topaz's log-likelihood ratio, crYOLO's confidence, RELION's
//! figure of merit, cryoSPARC's NCC), and that score sees what a box does not: the picker's own
//! model, trained or tuned on far more of the data. On EMPIAR-10017 the network's log-odds and
//! Topaz's score correlate only weakly (r ≈ 0.3), so together they separate particles from junk
//! better than either does alone (BENCHMARKS.md).
//!
//! The combination is naive Bayes: a logistic regression of the class on the standardised score,
//! fitted on the training picks, gives the score's likelihood ratio for each class, and that
//! multiplies the network's probabilities. Fitting on the training picks is sound because the
//! network never sees the score, so its fit is not flattered by the network's overfitting, and
//! dividing by the training class shares keeps the prior from being counted twice.
//!
//! The network's probabilities are not sound on the training picks, though: a network trained to
//! near-zero loss on 10 picks per class is far more confident than it is right, and would drown
//! the score. So its log-probabilities are weighted (a temperature) by the weight that best
//! predicts the held-out validation picks with the score combined; on EMPIAR-10017 that lifts
//! K = 10 macro-F1 from 0.61 to 0.67 and leaves K = 30 within noise.

use serde::{Deserialize, Serialize};

/// Ridge on the slopes, in units of one pick's loss: a slope of 1 per standard deviation costs
/// half a pick, so a few labelled picks cannot make the score overrule the image.
const RIDGE: f64 = 1.0;

/// The fitted calibration, recorded in model.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PickerScore {
    /// Mean and standard deviation of the training picks' scores; scores are standardised with
    /// them before the regression.
    pub mean: f64,
    pub sd: f64,
    /// Per class: intercept and slope of the class log-odds on the standardised score.
    pub intercept: Vec<f64>,
    pub slope: Vec<f64>,
    /// Natural log of each class's share of the training picks.
    pub log_prior: Vec<f64>,
    /// Weight of the network's log-probabilities against the score: fitted on validation
    /// picks; 1 (plain naive Bayes) without them.
    #[serde(default = "unit_weight")]
    pub image_weight: f64,
}

fn unit_weight() -> f64 {
    1.0
}

/// Image weights tried, log-spaced from 1/20 to 3: below, the network would hardly count; above,
/// it would be trusted more than its own training made it.
fn weight_grid() -> impl Iterator<Item = f64> {
    (0..=120).map(|i| (-3.0 + 4.1 * f64::from(i) / 120.0).exp())
}

impl PickerScore {
    /// Fits the calibration on labelled picks' scores. `Err` says why the scores cannot serve
    /// (too few picks, a class missing, or every score the same).
    pub fn fit(scores: &[f64], labels: &[usize], classes: usize) -> Result<PickerScore, String> {
        let n = scores.len();
        if n != labels.len() {
            return Err(format!("{n} scores for {} labels", labels.len()));
        }
        if let Some(s) = scores.iter().find(|s| !s.is_finite()) {
            return Err(format!("a pick's score is {s}"));
        }
        let mut counts = vec![0usize; classes];
        for &l in labels {
            if l >= classes {
                return Err(format!("label index {l} for {classes} classes"));
            }
            counts[l] += 1;
        }
        if let Some(c) = counts.iter().position(|&c| c == 0) {
            return Err(format!("no labelled pick of class {c} has a score"));
        }
        let mean = scores.iter().sum::<f64>() / n as f64;
        let sd = (scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
        if sd <= 1e-12 * mean.abs().max(1.0) {
            return Err(format!("every labelled pick has the same score ({mean})"));
        }
        let z: Vec<f64> = scores.iter().map(|s| (s - mean) / sd).collect();
        let (intercept, slope) = fit_softmax(&z, labels, classes);
        Ok(PickerScore {
            mean,
            sd,
            intercept,
            slope,
            log_prior: counts.iter().map(|&c| (c as f64 / n as f64).ln()).collect(),
            image_weight: 1.0,
        })
    }

    /// Sets the image weight to the one whose combined probabilities give the held-out picks
    /// (`probs` the network's, `scores` the picker's, `labels` the truth) the highest likelihood.
    /// Returns the picks used; with fewer than 10, or one class only, the weight stays as it is.
    pub fn fit_image_weight(
        &mut self,
        probs: &[Vec<f32>],
        scores: &[f64],
        labels: &[usize],
    ) -> usize {
        let n = probs.len().min(scores.len()).min(labels.len());
        let classes: std::collections::BTreeSet<usize> = labels[..n].iter().copied().collect();
        if n < 10 || classes.len() < 2 {
            return 0;
        }
        let nll = |w: f64| -> f64 {
            (0..n)
                .map(|i| {
                    let logits = self.logits(&probs[i], scores[i], w);
                    log_sum_exp(&logits) - logits[labels[i]]
                })
                .sum()
        };
        self.image_weight = weight_grid()
            .map(|w| (nll(w), w))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map_or(1.0, |(_, w)| w);
        n
    }

    fn logits(&self, probs: &[f32], score: f64, image_weight: f64) -> Vec<f64> {
        let z = (score - self.mean) / self.sd;
        probs
            .iter()
            .enumerate()
            .map(|(c, &p)| {
                image_weight * f64::from(p.max(f32::MIN_POSITIVE)).ln()
                    + self.intercept[c]
                    + self.slope[c] * z
                    - self.log_prior[c]
            })
            .collect()
    }

    /// Combines a network's class probabilities with the pick's score, in place.
    pub fn combine(&self, probs: &mut [f32], score: f64) {
        let logits = self.logits(probs, score, self.image_weight);
        let lse = log_sum_exp(&logits);
        for (p, l) in probs.iter_mut().zip(&logits) {
            *p = (l - lse).exp() as f32;
        }
    }

    /// How far, in training standard deviations, a mean score lies from the training mean: a
    /// large shift means the picks were scored by another picker or another run.
    pub fn shift(&self, mean: f64) -> f64 {
        (mean - self.mean).abs() / self.sd
    }
}

/// ln Σ exp(v), without overflow: the normaliser of a softmax over `v`.
fn log_sum_exp(v: &[f64]) -> f64 {
    let top = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    top + v.iter().map(|x| (x - top).exp()).sum::<f64>().ln()
}

/// Multinomial logistic regression of `labels` on one standardised feature, with the ridge on
/// the slopes. Gradient descent at the step 1/L, where L bounds the curvature: the softmax
/// Hessian is at most ½ and a standardised feature's second moment is 1, so L = ½ + ridge/n.
/// The problem is strictly convex, so this converges to the one optimum.
fn fit_softmax(z: &[f64], labels: &[usize], classes: usize) -> (Vec<f64>, Vec<f64>) {
    let n = z.len() as f64;
    let ridge = RIDGE / n;
    let step = 1.0 / (0.5 + ridge);
    let (mut a, mut b) = (vec![0.0; classes], vec![0.0; classes]);
    let mut p = vec![0.0; classes];
    for _ in 0..20_000 {
        let (mut ga, mut gb) = (vec![0.0; classes], vec![0.0; classes]);
        for (&zi, &yi) in z.iter().zip(labels) {
            for c in 0..classes {
                p[c] = a[c] + b[c] * zi;
            }
            let lse = log_sum_exp(&p);
            for c in 0..classes {
                let r = (p[c] - lse).exp() - f64::from(u8::from(c == yi));
                ga[c] += r / n;
                gb[c] += r * zi / n;
            }
        }
        let mut norm = 0.0;
        for c in 0..classes {
            gb[c] += ridge * b[c];
            norm += ga[c] * ga[c] + gb[c] * gb[c];
            a[c] -= step * ga[c];
            b[c] -= step * gb[c];
        }
        if norm < 1e-20 {
            break;
        }
    }
    (a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scores drawn so that P(class 1 | z) = σ(2z) exactly, by inverse sampling on a grid.
    fn logistic_sample(n: usize) -> (Vec<f64>, Vec<usize>) {
        let mut scores = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let z = -3.0 + 6.0 * (i as f64 + 0.5) / n as f64;
            let p1 = 1.0 / (1.0 + (-2.0 * z).exp());
            // 20 copies per grid point, split by the exact probability.
            let ones = (20.0 * p1).round() as usize;
            for k in 0..20 {
                scores.push(10.0 + 3.0 * z);
                labels.push(usize::from(k < ones));
            }
        }
        (scores, labels)
    }

    #[test]
    fn recovers_a_known_logistic_relation() {
        let (scores, labels) = logistic_sample(200);
        let fit = PickerScore::fit(&scores, &labels, 2).unwrap();
        // Log-odds of class 1 against 0 per raw score unit: 2 per z, z = (s - 10) / 3.
        let per_sd = (fit.slope[1] - fit.slope[0]) / fit.sd;
        assert!((per_sd - 2.0 / 3.0).abs() < 0.03, "{per_sd}");
        let at_mean = (fit.intercept[1] - fit.intercept[0])
            + (fit.slope[1] - fit.slope[0]) * (10.0 - fit.mean) / fit.sd;
        assert!(at_mean.abs() < 0.05, "{at_mean}");
    }

    #[test]
    fn combining_multiplies_by_the_likelihood_ratio() {
        let (scores, labels) = logistic_sample(50);
        let fit = PickerScore::fit(&scores, &labels, 2).unwrap();
        // At the score where the classes are equally likely the image decides alone.
        let neutral = fit.mean
            - fit.sd * (fit.intercept[1] - fit.intercept[0] - fit.log_prior[1] + fit.log_prior[0])
                / (fit.slope[1] - fit.slope[0]);
        let mut p = [0.3f32, 0.7];
        fit.combine(&mut p, neutral);
        assert!((p[1] - 0.7).abs() < 1e-5, "{p:?}");
        // A high score raises the particle probability, a low one lowers it; both stay probabilities.
        let mut hi = [0.3f32, 0.7];
        fit.combine(&mut hi, 16.0);
        let mut lo = [0.3f32, 0.7];
        fit.combine(&mut lo, 4.0);
        assert!(hi[1] > 0.95 && lo[1] < 0.1, "{hi:?} {lo:?}");
        assert!((hi[0] + hi[1] - 1.0).abs() < 1e-6 && (lo[0] + lo[1] - 1.0).abs() < 1e-6);
        // Certainty from the network is not undone by the score, and zeros do not give NaN.
        let mut sure = [0.0f32, 1.0];
        fit.combine(&mut sure, 4.0);
        assert!(
            sure[1] > 0.99 && sure.iter().all(|v| v.is_finite()),
            "{sure:?}"
        );
    }

    #[test]
    fn three_classes_and_an_uninformative_score() {
        // The score tells class 2 from the others and nothing between 0 and 1.
        let mut scores = Vec::new();
        let mut labels = Vec::new();
        for i in 0..90 {
            let c = i % 3;
            labels.push(c);
            scores.push(if c == 2 { 5.0 } else { 1.0 } + (i / 3 % 5) as f64 * 0.1);
        }
        let fit = PickerScore::fit(&scores, &labels, 3).unwrap();
        assert!((fit.slope[0] - fit.slope[1]).abs() < 1e-6);
        assert!(fit.slope[2] > fit.slope[0] + 1.0);
        let mut p = [0.2f32, 0.5, 0.3];
        fit.combine(&mut p, 1.2);
        assert!(p[2] < 0.1 && (p[1] / p[0] - 2.5).abs() < 1e-3, "{p:?}");
    }

    #[test]
    fn scores_that_cannot_serve_are_refused_with_the_reason() {
        let e = PickerScore::fit(&[1.0, 1.0, 1.0, 1.0], &[0, 1, 0, 1], 2).unwrap_err();
        assert!(e.contains("same score"), "{e}");
        let e = PickerScore::fit(&[1.0, 2.0], &[0, 0], 2).unwrap_err();
        assert!(e.contains("class 1"), "{e}");
        let e = PickerScore::fit(&[1.0, f64::NAN], &[0, 1], 2).unwrap_err();
        assert!(e.contains("NaN"), "{e}");
    }

    #[test]
    fn an_overconfident_network_is_weighted_down_on_held_out_picks() {
        // The truth: P(class 1) = σ(l). The network says σ(4 l), four times too sure; the score
        // carries nothing. The weight that predicts best undoes the overconfidence.
        let mut ps = PickerScore {
            mean: 0.0,
            sd: 1.0,
            intercept: vec![0.0, 0.0],
            slope: vec![0.0, 0.0],
            log_prior: vec![0.5f64.ln(), 0.5f64.ln()],
            image_weight: 1.0,
        };
        let (mut probs, mut labels) = (Vec::new(), Vec::new());
        for i in 0..100 {
            let l = -4.0 + 8.0 * (f64::from(i) + 0.5) / 100.0;
            let p_true = 1.0 / (1.0 + (-l).exp());
            let p_net = (1.0 / (1.0 + (-4.0 * l).exp())) as f32;
            let ones = (20.0 * p_true).round() as usize;
            for k in 0..20 {
                probs.push(vec![1.0 - p_net, p_net]);
                labels.push(usize::from(k < ones));
            }
        }
        let scores = vec![0.0; labels.len()];
        assert_eq!(ps.fit_image_weight(&probs, &scores, &labels), 2000);
        assert!((ps.image_weight - 0.25).abs() < 0.02, "{}", ps.image_weight);
        // Too few picks, or one class: the weight is left alone.
        let mut few = ps.clone();
        few.image_weight = 1.0;
        assert_eq!(few.fit_image_weight(&probs[..9], &scores, &labels), 0);
        assert_eq!(few.fit_image_weight(&probs[..100], &scores, &[0; 100]), 0);
        assert_eq!(few.image_weight, 1.0);
    }

    #[test]
    fn shift_is_in_training_standard_deviations() {
        let fit = PickerScore::fit(&[0.0, 2.0, 0.0, 2.0], &[0, 1, 0, 1], 2).unwrap();
        assert!((fit.shift(5.0) - 4.0).abs() < 1e-12);
        assert!(fit.shift(1.0) < 1e-12);
    }
}
