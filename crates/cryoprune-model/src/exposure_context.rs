//! A multi-label micrograph model's measured evidence beside its network: each label's
//! log-odds from the micrograph's measured statistics (drift in the spectrum's anisotropy,
//! crystalline ice in its spots, particles in its particle band, ...), combined with the
//! network's as [`crate::pick_context`] combines a pick's facts with the image.
//!
//! Per label, a ridge logistic regression on the standardised facts, fitted on the training
//! micrographs, gives the facts' likelihood ratio (the label's training prior divided out), and
//! that adds to the network's log-odds weighted, per label, by the weight that best predicts the
//! held-out micrographs. A network trained on a hundred micrographs is overconfident on its own
//! training set, which is why its weights are fitted on held-out ones; the facts are never seen
//! by the network, so fitting their regression on the training set is not flattered by its
//! overfitting.

use serde::{Deserialize, Serialize};

use crate::pick_context::{fit_softmax, weight_grid};

/// One label's regression: log-odds = intercept + Σ slope · standardised fact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelTerms {
    pub intercept: f64,
    pub slope: Vec<f64>,
    /// ln(present / absent) over the training micrographs.
    pub log_prior_odds: f64,
    /// Weight of the network's log-odds for this label against the facts: fitted on held-out
    /// micrographs; 1 without them. Per label, because the network sees some labels well (carbon
    /// in the binned micrograph) and others hardly at all.
    pub image_weight: f64,
}

/// The fitted context, recorded in model.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExposureContext {
    /// The facts' names, in the order the slopes are; a model whose names differ from what
    /// this version measures is refused rather than fed other numbers.
    pub facts: Vec<String>,
    /// Mean and standard deviation of each fact over the training micrographs.
    pub mean: Vec<f64>,
    pub sd: Vec<f64>,
    /// Per label, in the model's label order.
    pub labels: Vec<LabelTerms>,
}

fn logit(p: f32) -> f64 {
    let p = f64::from(p).clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

fn sigmoid(l: f64) -> f64 {
    1.0 / (1.0 + (-l).exp())
}

impl ExposureContext {
    /// Fits one regression per label on the training micrographs' `facts` (each in the order
    /// of `names`) and label sets `truth`. A fact every micrograph shares gets no slope; a
    /// label every micrograph carries (or none does) gets no terms at all, so it is left to the
    /// network. `Err` when there is nothing to fit.
    pub fn fit(
        names: &[&str],
        facts: &[Vec<f64>],
        truth: &[Vec<bool>],
    ) -> Result<ExposureContext, String> {
        let n = facts.len();
        if n != truth.len() || n < 2 {
            return Err(format!(
                "{n} micrographs' facts for {} label sets",
                truth.len()
            ));
        }
        let d = names.len();
        if let Some(f) = facts.iter().find(|f| f.len() != d) {
            return Err(format!("{} facts for {d} names", f.len()));
        }
        if let Some(v) = facts.iter().flatten().find(|v| !v.is_finite()) {
            return Err(format!("a micrograph's fact is {v}"));
        }
        let mut mean = vec![0.0; d];
        let mut sd = vec![1.0; d];
        let mut used = vec![false; d];
        for j in 0..d {
            let m = facts.iter().map(|f| f[j]).sum::<f64>() / n as f64;
            let s = (facts.iter().map(|f| (f[j] - m).powi(2)).sum::<f64>() / n as f64).sqrt();
            mean[j] = m;
            if s > 1e-12 * m.abs().max(1.0) {
                sd[j] = s;
                used[j] = true;
            }
        }
        if !used.contains(&true) {
            return Err("every micrograph has the same measured statistics".into());
        }
        let x: Vec<Vec<f64>> = facts
            .iter()
            .map(|f| {
                (0..d)
                    .map(|j| {
                        if used[j] {
                            (f[j] - mean[j]) / sd[j]
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect();
        let labels = truth.first().map_or(0, Vec::len);
        let labels = (0..labels)
            .map(|c| {
                let y: Vec<usize> = truth.iter().map(|t| usize::from(t[c])).collect();
                let present = y.iter().sum::<usize>();
                if present == 0 || present == n {
                    return LabelTerms {
                        intercept: 0.0,
                        slope: vec![0.0; d],
                        log_prior_odds: 0.0,
                        image_weight: 1.0,
                    };
                }
                let (a, b) = fit_softmax(&x, &y, 2);
                LabelTerms {
                    intercept: a[1] - a[0],
                    slope: b.iter().map(|s| s[1] - s[0]).collect(),
                    log_prior_odds: (present as f64 / (n - present) as f64).ln(),
                    image_weight: 1.0,
                }
            })
            .collect();
        Ok(ExposureContext {
            facts: names.iter().map(|s| s.to_string()).collect(),
            mean,
            sd,
            labels,
        })
    }

    /// Puts the facts in the order of this version's `names`, with facts the model was not
    /// fitted on given no slope: a model from a version that measured fewer facts keeps its
    /// decisions. `Err` names a fact this version no longer measures.
    pub fn align_to(&mut self, names: &[&str]) -> Result<(), String> {
        if self.facts == names {
            return Ok(());
        }
        if let Some(gone) = self.facts.iter().find(|f| !names.contains(&f.as_str())) {
            return Err(format!(
                "exposure_context uses the fact `{gone}`, which this version does not measure \
                 (it measures {names:?}; retrain the model)"
            ));
        }
        // Sound in its own facts' order first: the reordering indexes by it.
        let own: Vec<&str> = self.facts.iter().map(String::as_str).collect();
        self.validate(self.labels.len(), &own)?;
        let at: Vec<Option<usize>> = names
            .iter()
            .map(|n| self.facts.iter().position(|f| f == n))
            .collect();
        let pick = |v: &[f64], absent: f64| -> Vec<f64> {
            at.iter().map(|j| j.map_or(absent, |j| v[j])).collect()
        };
        self.mean = pick(&self.mean, 0.0);
        self.sd = pick(&self.sd, 1.0);
        for t in &mut self.labels {
            t.slope = pick(&t.slope, 0.0);
        }
        self.facts = names.iter().map(|s| s.to_string()).collect();
        Ok(())
    }

    /// Checks the shapes against a model of `labels` labels and this version's `names`.
    pub fn validate(&self, labels: usize, names: &[&str]) -> Result<(), String> {
        if self.facts != names {
            return Err(format!(
                "exposure_context measures {:?}; this version measures {:?} (retrain the model)",
                self.facts, names
            ));
        }
        let d = names.len();
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        if self.mean.len() != d || self.sd.len() != d || !finite(&self.mean) {
            return Err(format!("exposure_context needs {d} finite means and sds"));
        }
        if self.sd.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err("exposure_context.sd must be finite and above 0".into());
        }
        if self.labels.len() != labels {
            return Err(format!(
                "exposure_context has {} labels' terms for {labels} labels",
                self.labels.len()
            ));
        }
        for t in &self.labels {
            if t.slope.len() != d || !finite(&t.slope) || !finite(&[t.intercept, t.log_prior_odds])
            {
                return Err(format!(
                    "exposure_context label terms need {d} finite slopes and a finite intercept"
                ));
            }
            if !(t.image_weight.is_finite() && t.image_weight >= 0.0) {
                return Err(format!(
                    "exposure_context image_weight {} must be finite and not negative",
                    t.image_weight
                ));
            }
        }
        Ok(())
    }

    /// Per label, the facts' log-odds with the training prior divided out.
    pub fn evidence(&self, facts: &[f64]) -> Vec<f64> {
        self.labels
            .iter()
            .map(|t| {
                t.intercept - t.log_prior_odds
                    + t.slope
                        .iter()
                        .zip(facts)
                        .zip(self.mean.iter().zip(&self.sd))
                        .map(|((s, v), (m, sd))| s * (v - m) / sd)
                        .sum::<f64>()
            })
            .collect()
    }

    /// The fact of `facts` farthest from the training micrographs', among those some label
    /// weighs: its index and how many training standard deviations it lies from their mean.
    /// `None` when no label weighs any fact.
    pub fn farthest(&self, facts: &[f64]) -> Option<(usize, f64)> {
        (0..self.facts.len())
            .filter(|&j| self.labels.iter().any(|t| t.slope[j] != 0.0))
            .map(|j| (j, (facts[j] - self.mean[j]) / self.sd[j]))
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
    }

    /// Combines a network's per-label probabilities with a micrograph's facts, in place. The
    /// result stays within a millionth of 0 and 1: a regression on a hundred micrographs is
    /// never certain, and a threshold of 1 must still call nothing.
    pub fn combine(&self, probs: &mut [f32], facts: &[f64]) {
        self.combine_evidence(probs, &self.evidence(facts));
    }

    /// [`Self::combine`] with the facts' `evidence` already weighed, by this regression or
    /// (cross-validated) by the one of the folds that did not include the micrograph.
    pub fn combine_evidence(&self, probs: &mut [f32], evidence: &[f64]) {
        for ((p, e), t) in probs.iter_mut().zip(evidence).zip(&self.labels) {
            let c = sigmoid(t.image_weight * logit(*p) + e);
            *p = c.clamp(1e-6, 1.0 - 1e-6) as f32;
        }
    }

    /// Sets each label's image weight to the one whose combined probabilities give the held-out
    /// micrographs (`probs` the network's, `facts` theirs, `truth` their label sets) the lowest
    /// binary cross-entropy on that label. With fewer than 10 micrographs the weights stay.
    /// Returns the micrographs used.
    pub fn fit_image_weights(
        &mut self,
        probs: &[Vec<f32>],
        facts: &[Vec<f64>],
        truth: &[Vec<bool>],
    ) -> usize {
        let evidence: Vec<Vec<f64>> = facts.iter().map(|f| self.evidence(f)).collect();
        self.fit_image_weights_to(probs, &evidence, truth)
    }

    /// [`Self::fit_image_weights`] on the facts' `evidence` already weighed, where other
    /// regressions weighed it: cross-validated, each micrograph's by the regression of the
    /// folds that did not include it.
    pub fn fit_image_weights_to(
        &mut self,
        probs: &[Vec<f32>],
        evidence: &[Vec<f64>],
        truth: &[Vec<bool>],
    ) -> usize {
        let n = probs.len().min(evidence.len()).min(truth.len());
        if n < 10 {
            return 0;
        }
        for (c, t) in self.labels.iter_mut().enumerate() {
            let loss = |w: f64| -> f64 {
                (0..n)
                    .map(|i| {
                        let p = sigmoid(w * logit(probs[i][c]) + evidence[i][c]);
                        -(if truth[i][c] { p } else { 1.0 - p }).max(1e-12).ln()
                    })
                    .sum()
            };
            t.image_weight = weight_grid()
                .map(|w| (loss(w), w))
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .map_or(1.0, |(_, w)| w);
        }
        n
    }

    /// Each label's image weight, in label order.
    pub fn image_weights(&self) -> impl Iterator<Item = f64> + '_ {
        self.labels.iter().map(|t| t.image_weight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two facts; label 0 follows fact 0 with log-odds 2 per unit, label 1 ignores both and is
    /// present on a quarter, label 2 is on every micrograph.
    fn sample() -> (Vec<Vec<f64>>, Vec<Vec<bool>>) {
        let mut facts = Vec::new();
        let mut truth = Vec::new();
        for i in 0..200 {
            let z = -3.0 + 6.0 * (i as f64 + 0.5) / 200.0;
            let p0 = sigmoid(2.0 * z);
            for k in 0..20 {
                facts.push(vec![5.0 + 2.0 * z, ((i * 7 + k * 3) % 11) as f64]);
                truth.push(vec![(k as f64) < (20.0 * p0).round(), k % 4 == 0, true]);
            }
        }
        (facts, truth)
    }

    #[test]
    fn recovers_each_labels_relation_and_leaves_constant_labels_alone() {
        let (facts, truth) = sample();
        let ctx = ExposureContext::fit(&["a", "b"], &facts, &truth).unwrap();
        ctx.validate(3, &["a", "b"]).unwrap();
        // Fact 0 standardised: z = (v - 5) / 2 · (2 / sd); log-odds per unit of v is 1.
        let per_unit = ctx.labels[0].slope[0] / ctx.sd[0];
        assert!((per_unit - 1.0).abs() < 0.05, "{per_unit}");
        assert!(ctx.labels[0].slope[1].abs() < 0.05);
        assert!(ctx.labels[1].slope.iter().all(|s| s.abs() < 0.05));
        assert!((ctx.labels[1].log_prior_odds - (1.0f64 / 3.0).ln()).abs() < 1e-9);
        assert_eq!(ctx.labels[2].slope, [0.0, 0.0]);
        // A neutral network (p = prior) leaves the facts' posterior: label 1 stays at its
        // prior, label 0 follows its fact.
        let mut p = vec![0.5, 0.25, 0.9];
        ctx.combine(&mut p, &[9.0, 5.0]);
        assert!(p[0] > 0.95, "{p:?}");
        assert!((p[1] - 0.25).abs() < 0.02, "{p:?}");
        assert!((p[2] - 0.9).abs() < 1e-6, "{p:?}");
    }

    #[test]
    fn the_image_weight_follows_whichever_is_right() {
        let (facts, truth) = sample();
        let mut ctx = ExposureContext::fit(&["a", "b"], &facts, &truth).unwrap();
        // A network that says the truth of label 1 (which the facts cannot see) with 90%
        // confidence: it must be trusted there.
        let sure: Vec<Vec<f32>> = truth
            .iter()
            .map(|t| vec![0.5, if t[1] { 0.9 } else { 0.1 }, 0.5])
            .collect();
        ctx.fit_image_weights(&sure, &facts, &truth);
        assert!(ctx.labels[1].image_weight > 0.8, "{:?}", ctx.labels);
        // A network that says the opposite of the truth on label 0 and nothing (even odds, which
        // no weight changes) on the rest:
        // it counts for as little as the grid allows.
        let wrong: Vec<Vec<f32>> = truth
            .iter()
            .map(|t| vec![if t[0] { 0.2 } else { 0.8 }, 0.5, 0.5])
            .collect();
        ctx.fit_image_weights(&wrong, &facts, &truth);
        assert!(ctx.labels[0].image_weight < 0.06, "{:?}", ctx.labels);
        // Both at once: each label gets its own weight.
        let mixed: Vec<Vec<f32>> = sure
            .iter()
            .zip(&wrong)
            .map(|(s, w)| vec![w[0], s[1], 0.5])
            .collect();
        ctx.fit_image_weights(&mixed, &facts, &truth);
        assert!(ctx.labels[0].image_weight < 0.06 && ctx.labels[1].image_weight > 0.8);
    }

    #[test]
    fn a_model_of_fewer_facts_keeps_its_evidence_in_this_versions_order() {
        let (facts, truth) = sample();
        let old = ExposureContext::fit(&["a", "b"], &facts, &truth).unwrap();
        let mut new = old.clone();
        new.align_to(&["c", "b", "a"]).unwrap();
        new.validate(3, &["c", "b", "a"]).unwrap();
        for f in &facts {
            let wider = [123.0, f[1], f[0]];
            for (x, y) in old.evidence(f).iter().zip(new.evidence(&wider)) {
                assert!((x - y).abs() < 1e-12, "{x} vs {y}");
            }
        }
        let mut gone = old.clone();
        let err = gone.align_to(&["b", "c"]).unwrap_err();
        assert!(err.contains("`a`") && err.contains("retrain"), "{err}");
        // A hand-edited model.json with a slope missing is refused, not indexed past its end.
        let mut short = old.clone();
        short.labels[0].slope.pop();
        let err = short.align_to(&["c", "b", "a"]).unwrap_err();
        assert!(err.contains("slopes"), "{err}");
    }

    #[test]
    fn the_farthest_fact_is_among_those_a_label_weighs() {
        let (facts, truth) = sample();
        let mut ctx = ExposureContext::fit(&["a", "b"], &facts, &truth).unwrap();
        let far = [ctx.mean[0] + 3.0 * ctx.sd[0], ctx.mean[1] - 7.0 * ctx.sd[1]];
        let (j, z) = ctx.farthest(&far).unwrap();
        assert_eq!(j, 1);
        assert!((z + 7.0).abs() < 1e-9, "{z}");
        // A fact no label weighs (one a model was not fitted on) does not count.
        ctx.labels.iter_mut().for_each(|t| t.slope[1] = 0.0);
        assert_eq!(ctx.farthest(&far).unwrap().0, 0);
        ctx.labels.iter_mut().for_each(|t| t.slope[0] = 0.0);
        assert!(ctx.farthest(&far).is_none());
    }

    #[test]
    fn bad_inputs_and_records_are_refused() {
        let (facts, truth) = sample();
        assert!(ExposureContext::fit(&["a"], &facts, &truth).is_err());
        let flat = vec![vec![1.0, 2.0]; truth.len()];
        assert!(ExposureContext::fit(&["a", "b"], &flat, &truth)
            .unwrap_err()
            .contains("same"));
        let ctx = ExposureContext::fit(&["a", "b"], &facts, &truth).unwrap();
        assert!(ctx
            .validate(3, &["a", "c"])
            .unwrap_err()
            .contains("retrain"));
        assert!(ctx.validate(2, &["a", "b"]).is_err());
        let mut bad = ctx.clone();
        bad.sd[1] = 0.0;
        assert!(bad.validate(3, &["a", "b"]).is_err());
        let mut bad = ctx.clone();
        bad.labels[2].image_weight = f64::NAN;
        assert!(bad.validate(3, &["a", "b"]).is_err());
    }
}
