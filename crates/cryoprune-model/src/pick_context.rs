//! What a pick's box does not show, as evidence beside the image: the picker's own score and how
//! close the pick sits to the micrograph's edge.
//!
//! Every picker scores its picks (Topaz's log-likelihood ratio, crYOLO's confidence, RELION's
//! figure of merit, cryoSPARC's NCC), and that score comes from the picker's own model, trained
//! or tuned on far more of the data than a few labels. The edge is where motion correction,
//! gain references and denoisers leave their artefacts and where boxes are cut short, so picks
//! there are junk more often than picks inside; the network sees only the part of that which
//! falls inside its box. On EMPIAR-10017 the network's log-odds and Topaz's score correlate only
//! weakly (r ≈ 0.3), and a pick within a box of the edge is junk four times in five against one
//! in five inside, so together they separate particles from junk better than any one alone
//! (BENCHMARKS.md).
//!
//! The combination is naive Bayes: a logistic regression of the class on the standardised facts,
//! fitted on the training picks, gives the facts' likelihood ratio for each class, and that
//! multiplies the network's probabilities. Fitting on the training picks is sound because the
//! network never sees the facts as numbers, so the fit is not flattered by the network's
//! overfitting, and dividing by the training class shares keeps the prior from being counted
//! twice. A fact the labels do not vary (no pick near an edge) gets no term, so it cannot matter.
//!
//! The network's probabilities are not sound on the training picks, though: a network trained to
//! near-zero loss on 10 picks per class is far more confident than it is right, and would drown
//! the facts; and where it has learnt to see the edge itself, the edge would count twice. So its
//! log-probabilities are weighted (a temperature) by the weight that best predicts the held-out
//! validation picks with the facts combined.

use serde::{Deserialize, Serialize};

/// Ridge on the slopes, in units of one pick's loss: a slope of 1 per standard deviation costs
/// half a pick, so a few labelled picks cannot make a fact overrule the image.
const RIDGE: f64 = 1.0;

/// What is known of one pick besides its box.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PickFacts {
    /// The picker's score.
    pub score: Option<f64>,
    /// Distance to the nearest micrograph edge in box sizes, at most 1 (see [`edge_distance`]).
    pub edge: Option<f64>,
}

/// The distance from a pick centre to the nearest edge of a `shape` (columns, rows) micrograph,
/// in units of the box, capped at one box: further in, neither the box nor its surroundings
/// reach the edge, so distances beyond say nothing more.
pub fn edge_distance(x: f64, y: f64, shape: (usize, usize), box_size: usize) -> f64 {
    let (w, h) = (shape.0 as f64, shape.1 as f64);
    let d = x.min(y).min(w - x).min(h - y);
    (d / box_size.max(1) as f64).clamp(0.0, 1.0)
}

/// A fact the context can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fact {
    Score,
    Edge,
}

impl Fact {
    const ALL: [Fact; 2] = [Fact::Score, Fact::Edge];

    pub fn of(self, facts: &PickFacts) -> Option<f64> {
        match self {
            Fact::Score => facts.score,
            Fact::Edge => facts.edge,
        }
    }

    /// In words, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Fact::Score => "the picker's score",
            Fact::Edge => "the distance from the micrograph edge",
        }
    }
}

/// One fact's share of the regression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Term {
    pub fact: Fact,
    /// Mean and standard deviation over the training picks; the fact is standardised with them.
    pub mean: f64,
    pub sd: f64,
    /// Per class: slope of the class log-odds on the standardised fact.
    pub slope: Vec<f64>,
}

impl Term {
    /// How far, in training standard deviations, a mean value lies from the training mean: for
    /// the score, a large shift means the picks were scored by another picker or another run.
    pub fn shift(&self, mean: f64) -> f64 {
        (mean - self.mean).abs() / self.sd
    }
}

/// The fitted context, recorded in model.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PickContext {
    pub terms: Vec<Term>,
    /// Per class: the intercept of the class log-odds.
    pub intercept: Vec<f64>,
    /// Natural log of each class's share of the training picks.
    pub log_prior: Vec<f64>,
    /// Weight of the network's log-probabilities against the facts: fitted on validation picks;
    /// 1 (plain naive Bayes) without them.
    pub image_weight: f64,
    /// Weight of the facts' log-likelihood, fitted with `image_weight`: 0 when the facts, fitted
    /// on few training picks, would mislead the held-out picks. Models from before it existed
    /// weigh the facts 1.
    #[serde(default = "full_weight")]
    pub context_weight: f64,
}

fn full_weight() -> f64 {
    1.0
}

/// Image weights tried, log-spaced from 1/20 to 3: below, the network would hardly count; above,
/// it would be trusted more than its own training made it.
pub(crate) fn weight_grid() -> impl Iterator<Item = f64> {
    (0..=120).map(|i| (-3.0 + 4.1 * f64::from(i) / 120.0).exp())
}

impl PickContext {
    /// Checks that every per-class vector has one entry per class and every number is usable.
    pub fn validate(&self, classes: usize) -> Result<(), String> {
        let per_class = |what: &str, v: &[f64]| {
            if v.len() != classes || v.iter().any(|x| !x.is_finite()) {
                Err(format!(
                    "pick_context.{what} needs {classes} finite numbers, one per class; has {:?}",
                    v
                ))
            } else {
                Ok(())
            }
        };
        per_class("intercept", &self.intercept)?;
        per_class("log_prior", &self.log_prior)?;
        for t in &self.terms {
            per_class("terms.slope", &t.slope)?;
            if !(t.mean.is_finite() && t.sd.is_finite() && t.sd > 0.0) {
                return Err(format!(
                    "pick_context term {:?}: mean {} and sd {} must be finite, sd above 0",
                    t.fact, t.mean, t.sd
                ));
            }
        }
        for (name, w) in [
            ("image_weight", self.image_weight),
            ("context_weight", self.context_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return Err(format!(
                    "pick_context.{name} {w} must be finite and not negative"
                ));
            }
        }
        Ok(())
    }

    /// Fits the context on labelled picks' facts, using each fact every pick has and the labels
    /// vary. `Err` says why none can serve (too few picks, a class missing, no fact known for
    /// every pick, or every value the same).
    pub fn fit(
        facts: &[PickFacts],
        labels: &[usize],
        classes: usize,
    ) -> Result<PickContext, String> {
        let n = facts.len();
        if n != labels.len() {
            return Err(format!("{n} picks for {} labels", labels.len()));
        }
        let mut counts = vec![0usize; classes];
        for &l in labels {
            if l >= classes {
                return Err(format!("label index {l} for {classes} classes"));
            }
            counts[l] += 1;
        }
        if let Some(c) = counts.iter().position(|&c| c == 0) {
            return Err(format!("no labelled pick of class {c}"));
        }
        let mut columns = Vec::new();
        let mut unused = Vec::new();
        for fact in Fact::ALL {
            let Some(values) = facts
                .iter()
                .map(|f| fact.of(f))
                .collect::<Option<Vec<f64>>>()
            else {
                let missing = facts.iter().filter(|f| fact.of(f).is_none()).count();
                if missing < n {
                    unused.push(format!(
                        "{}: {missing} of {n} picks have none",
                        fact.describe()
                    ));
                }
                continue;
            };
            if let Some(v) = values.iter().find(|v| !v.is_finite()) {
                return Err(format!("{} of a pick is {v}", fact.describe()));
            }
            let mean = values.iter().sum::<f64>() / n as f64;
            let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
            if sd <= 1e-12 * mean.abs().max(1.0) {
                unused.push(format!(
                    "{}: the same ({mean}) for every pick",
                    fact.describe()
                ));
                continue;
            }
            let z: Vec<f64> = values.iter().map(|v| (v - mean) / sd).collect();
            columns.push((fact, mean, sd, z));
        }
        if columns.is_empty() {
            return Err(if unused.is_empty() {
                "the picks carry neither a score nor a micrograph position".into()
            } else {
                unused.join("; ")
            });
        }
        let features: Vec<Vec<f64>> = (0..n)
            .map(|i| columns.iter().map(|c| c.3[i]).collect())
            .collect();
        let (intercept, slopes) = fit_softmax(&features, labels, classes);
        Ok(PickContext {
            terms: columns
                .into_iter()
                .zip(slopes)
                .map(|((fact, mean, sd, _), slope)| Term {
                    fact,
                    mean,
                    sd,
                    slope,
                })
                .collect(),
            intercept,
            log_prior: counts.iter().map(|&c| (c as f64 / n as f64).ln()).collect(),
            image_weight: 1.0,
            context_weight: 1.0,
        })
    }

    /// The facts the context needs of every pick it combines.
    pub fn facts(&self) -> impl Iterator<Item = Fact> + '_ {
        self.terms.iter().map(|t| t.fact)
    }

    /// The first fact the context needs that `facts` lacks.
    pub fn missing(&self, facts: &PickFacts) -> Option<Fact> {
        self.facts().find(|f| f.of(facts).is_none())
    }

    /// Sets the image and context weights to the pair whose combined probabilities give the
    /// held-out picks (`probs` the network's, `facts` theirs, `labels` the truth) the highest
    /// likelihood; a context weight of 0 (the image alone) is among them, so facts fitted on a
    /// few training picks cannot make the held-out picks worse explained than the network alone
    /// does. Returns the picks used; with fewer than 10, or one class only, or a pick lacking a
    /// fact, the weights stay as they are.
    pub fn fit_weights(
        &mut self,
        probs: &[Vec<f32>],
        facts: &[PickFacts],
        labels: &[usize],
    ) -> usize {
        let n = probs.len().min(facts.len()).min(labels.len());
        if facts[..n].iter().any(|f| self.missing(f).is_some()) {
            return 0;
        }
        let likelihoods: Vec<Vec<f64>> =
            facts[..n].iter().map(|f| self.log_likelihood(f)).collect();
        self.fit_weights_with(&probs[..n], &likelihoods, &labels[..n])
    }

    /// [`Self::fit_weights`] with each pick's facts already turned into their log-likelihood
    /// ([`Self::log_likelihood`]) by whichever context should judge it: under cross-validation,
    /// the one fitted without that pick.
    pub fn fit_weights_with(
        &mut self,
        probs: &[Vec<f32>],
        likelihoods: &[Vec<f64>],
        labels: &[usize],
    ) -> usize {
        let n = probs.len().min(likelihoods.len()).min(labels.len());
        let classes: std::collections::BTreeSet<usize> = labels[..n].iter().copied().collect();
        if n < 10 || classes.len() < 2 {
            return 0;
        }
        // Per pick, computed once for the whole grid: the network's log-probabilities and the
        // facts' log-likelihood, per class.
        let parts: Vec<(Vec<f64>, &Vec<f64>)> = (0..n)
            .map(|i| (log_probs(&probs[i]), &likelihoods[i]))
            .collect();
        let nll = |w: f64, b: f64| -> f64 {
            parts
                .iter()
                .zip(labels)
                .map(|((log_p, ll), &y)| {
                    let logits = weighted(log_p, ll, w, b);
                    log_sum_exp(&logits) - logits[y]
                })
                .sum()
        };
        let pairs = std::iter::once(0.0)
            .chain(weight_grid())
            .flat_map(|b| weight_grid().map(move |w| (w, b)));
        if let Some((_, (w, b))) = pairs
            .map(|(w, b)| (nll(w, b), (w, b)))
            .min_by(|a, b| a.0.total_cmp(&b.0))
        {
            self.image_weight = w;
            self.context_weight = b;
        }
        n
    }

    /// Per class, the facts' log-odds with the training prior divided out. A fact the pick lacks
    /// counts as the training mean (no evidence); callers check [`PickContext::missing`] first.
    pub fn log_likelihood(&self, facts: &PickFacts) -> Vec<f64> {
        (0..self.intercept.len())
            .map(|c| {
                self.intercept[c] - self.log_prior[c]
                    + self
                        .terms
                        .iter()
                        .map(|t| {
                            t.fact
                                .of(facts)
                                .map_or(0.0, |v| t.slope[c] * (v - t.mean) / t.sd)
                        })
                        .sum::<f64>()
            })
            .collect()
    }

    /// Combines a network's class probabilities with the pick's facts, in place.
    pub fn combine(&self, probs: &mut [f32], facts: &PickFacts) {
        let logits = weighted(
            &log_probs(probs),
            &self.log_likelihood(facts),
            self.image_weight,
            self.context_weight,
        );
        let lse = log_sum_exp(&logits);
        for (p, l) in probs.iter_mut().zip(&logits) {
            *p = (l - lse).exp() as f32;
        }
    }

    /// The class probabilities from the facts alone, as if the network had no say.
    pub fn alone(&self, facts: &PickFacts) -> Vec<f32> {
        let l = self.log_likelihood(facts);
        let lse = log_sum_exp(&l);
        l.iter().map(|v| (v - lse).exp() as f32).collect()
    }

    /// The score's term, when the context uses the score.
    pub fn score_term(&self) -> Option<&Term> {
        self.terms.iter().find(|t| t.fact == Fact::Score)
    }
}

/// A network's class probabilities as logs, a zero as the smallest positive f32's.
fn log_probs(probs: &[f32]) -> Vec<f64> {
    probs
        .iter()
        .map(|&p| f64::from(p.max(f32::MIN_POSITIVE)).ln())
        .collect()
}

/// The combined class logits: the network's log-probabilities weighted `image_weight`, plus the
/// facts' log-likelihood weighted `context_weight`.
fn weighted(log_p: &[f64], ll: &[f64], image_weight: f64, context_weight: f64) -> Vec<f64> {
    log_p
        .iter()
        .zip(ll)
        .map(|(p, l)| image_weight * p + context_weight * l)
        .collect()
}

/// ln Σ exp(v), without overflow: the normaliser of a softmax over `v`.
fn log_sum_exp(v: &[f64]) -> f64 {
    let top = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    top + v.iter().map(|x| (x - top).exp()).sum::<f64>().ln()
}

/// Multinomial logistic regression of `labels` on standardised features (`x[i]`, one value per
/// feature), with the ridge on the slopes; returns the intercepts and, per feature, the slopes.
/// Gradient descent at the step 1/L, where L bounds the curvature: the softmax Hessian is at most
/// ½, and the second-moment matrix of the constant and d standardised features has the eigenvalue
/// 1 (the constant, uncorrelated with the rest) and those of the features' correlation matrix, at
/// most d; so L = d/2 + ridge/n. The problem is strictly convex, so this converges to the one optimum.
pub(crate) fn fit_softmax(
    x: &[Vec<f64>],
    labels: &[usize],
    classes: usize,
) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = x.len() as f64;
    let d = x.first().map_or(0, Vec::len);
    let ridge = RIDGE / n;
    let step = 1.0 / (0.5 * d.max(1) as f64 + ridge);
    let mut a = vec![0.0; classes];
    let mut b = vec![vec![0.0; classes]; d];
    let mut p = vec![0.0; classes];
    for _ in 0..20_000 {
        let mut ga = vec![0.0; classes];
        let mut gb = vec![vec![0.0; classes]; d];
        for (xi, &yi) in x.iter().zip(labels) {
            for c in 0..classes {
                p[c] = a[c] + (0..d).map(|j| b[j][c] * xi[j]).sum::<f64>();
            }
            let lse = log_sum_exp(&p);
            for c in 0..classes {
                let r = (p[c] - lse).exp() - f64::from(u8::from(c == yi));
                ga[c] += r / n;
                for j in 0..d {
                    gb[j][c] += r * xi[j] / n;
                }
            }
        }
        let mut norm = 0.0;
        for c in 0..classes {
            norm += ga[c] * ga[c];
            a[c] -= step * ga[c];
            for j in 0..d {
                gb[j][c] += ridge * b[j][c];
                norm += gb[j][c] * gb[j][c];
                b[j][c] -= step * gb[j][c];
            }
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

    fn scored(scores: &[f64]) -> Vec<PickFacts> {
        scores
            .iter()
            .map(|&s| PickFacts {
                score: Some(s),
                edge: None,
            })
            .collect()
    }

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

    /// The log-odds of class 1 against 0 from the facts alone.
    fn log_odds(ctx: &PickContext, facts: &PickFacts) -> f64 {
        let p = ctx.alone(facts);
        f64::from(p[1] / p[0]).ln()
    }

    #[test]
    fn recovers_a_known_logistic_relation() {
        let (scores, labels) = logistic_sample(200);
        let fit = PickContext::fit(&scored(&scores), &labels, 2).unwrap();
        assert_eq!(fit.facts().collect::<Vec<_>>(), [Fact::Score]);
        // Balanced classes: log-odds 2 per z, z = (s - 10) / 3.
        let at = |s: f64| log_odds(&fit, &scored(&[s])[0]);
        assert!(at(10.0).abs() < 0.05, "{}", at(10.0));
        let per_unit = (at(13.0) - at(7.0)) / 6.0;
        assert!((per_unit - 2.0 / 3.0).abs() < 0.03, "{per_unit}");
    }

    #[test]
    fn edge_distance_is_in_boxes_and_capped() {
        assert_eq!(edge_distance(50.0, 500.0, (1000, 800), 100), 0.5);
        assert_eq!(edge_distance(500.0, 780.0, (1000, 800), 100), 0.2);
        assert_eq!(edge_distance(500.0, 400.0, (1000, 800), 100), 1.0);
        assert_eq!(edge_distance(-5.0, 400.0, (1000, 800), 100), 0.0);
    }

    #[test]
    fn two_facts_each_count_and_a_constant_one_is_left_out() {
        // Class 1 is likelier at a high score and away from the edge, independently: four cells of
        // a 2 × 2 design with known log-odds ±1 from each fact.
        let mut facts = Vec::new();
        let mut labels = Vec::new();
        for (score, edge) in [(0.0f64, 0.0f64), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)] {
            let l = (2.0 * score - 1.0) + (2.0 * edge - 1.0);
            let ones = (200.0 / (1.0 + (-l).exp())).round() as usize;
            for k in 0..200 {
                facts.push(PickFacts {
                    score: Some(score),
                    edge: Some(edge),
                });
                labels.push(usize::from(k < ones));
            }
        }
        let fit = PickContext::fit(&facts, &labels, 2).unwrap();
        assert_eq!(fit.facts().collect::<Vec<_>>(), [Fact::Score, Fact::Edge]);
        let lo = |s: f64, e: f64| {
            log_odds(
                &fit,
                &PickFacts {
                    score: Some(s),
                    edge: Some(e),
                },
            )
        };
        for (s, e, want) in [(0.0, 0.0, -2.0), (1.0, 0.0, 0.0), (1.0, 1.0, 2.0)] {
            assert!((lo(s, e) - want).abs() < 0.1, "({s}, {e}): {}", lo(s, e));
        }
        // No pick near an edge: the edge cannot matter, and only the score is used.
        for f in &mut facts {
            f.edge = Some(1.0);
        }
        let fit = PickContext::fit(&facts, &labels, 2).unwrap();
        assert_eq!(fit.facts().collect::<Vec<_>>(), [Fact::Score]);
        assert_eq!(
            fit.missing(&PickFacts {
                score: None,
                edge: Some(0.0)
            }),
            Some(Fact::Score)
        );
    }

    #[test]
    fn combining_multiplies_by_the_likelihood_ratio() {
        let (scores, labels) = logistic_sample(50);
        let fit = PickContext::fit(&scored(&scores), &labels, 2).unwrap();
        let facts = |s: f64| scored(&[s])[0];
        // Where the classes are equally likely, the image decides alone.
        let neutral = (0..=2000)
            .map(|i| 4.0 + 12.0 * f64::from(i) / 2000.0)
            .min_by(|a, b| {
                log_odds(&fit, &facts(*a))
                    .abs()
                    .total_cmp(&log_odds(&fit, &facts(*b)).abs())
            })
            .unwrap();
        let mut p = [0.3f32, 0.7];
        fit.combine(&mut p, &facts(neutral));
        assert!((p[1] - 0.7).abs() < 1e-3, "{p:?}");
        // A high score raises the particle probability, a low one lowers it; both stay probabilities.
        let mut hi = [0.3f32, 0.7];
        fit.combine(&mut hi, &facts(16.0));
        let mut lo = [0.3f32, 0.7];
        fit.combine(&mut lo, &facts(4.0));
        assert!(hi[1] > 0.95 && lo[1] < 0.1, "{hi:?} {lo:?}");
        assert!((hi[0] + hi[1] - 1.0).abs() < 1e-6 && (lo[0] + lo[1] - 1.0).abs() < 1e-6);
        // Certainty from the network is not undone by the score, and zeros do not give NaN.
        let mut sure = [0.0f32, 1.0];
        fit.combine(&mut sure, &facts(4.0));
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
        let fit = PickContext::fit(&scored(&scores), &labels, 3).unwrap();
        let slope = &fit.terms[0].slope;
        assert!((slope[0] - slope[1]).abs() < 1e-6);
        assert!(slope[2] > slope[0] + 1.0);
        let mut p = [0.2f32, 0.5, 0.3];
        fit.combine(&mut p, &scored(&[1.2])[0]);
        assert!(p[2] < 0.1 && (p[1] / p[0] - 2.5).abs() < 1e-3, "{p:?}");
    }

    #[test]
    fn facts_that_cannot_serve_are_refused_with_the_reason() {
        let e = PickContext::fit(&scored(&[1.0, 1.0, 1.0, 1.0]), &[0, 1, 0, 1], 2).unwrap_err();
        assert!(e.contains("same"), "{e}");
        let e = PickContext::fit(&scored(&[1.0, 2.0]), &[0, 0], 2).unwrap_err();
        assert!(e.contains("class 1"), "{e}");
        let e = PickContext::fit(&scored(&[1.0, f64::NAN]), &[0, 1], 2).unwrap_err();
        assert!(e.contains("NaN"), "{e}");
        let e = PickContext::fit(&[PickFacts::default(); 2], &[0, 1], 2).unwrap_err();
        assert!(e.contains("neither"), "{e}");
        let mut half = scored(&[1.0, 2.0]);
        half[1].score = None;
        let e = PickContext::fit(&half, &[0, 1], 2).unwrap_err();
        assert!(e.contains("1 of 2 picks have none"), "{e}");
    }

    #[test]
    fn an_overconfident_network_is_weighted_down_on_held_out_picks() {
        // The truth: P(class 1) = σ(l). The network says σ(4 l), four times too sure; the score
        // carries nothing. The weight that predicts best undoes the overconfidence.
        let mut ctx = PickContext {
            terms: vec![Term {
                fact: Fact::Score,
                mean: 0.0,
                sd: 1.0,
                slope: vec![0.0, 0.0],
            }],
            intercept: vec![0.0, 0.0],
            log_prior: vec![0.5f64.ln(), 0.5f64.ln()],
            image_weight: 1.0,
            context_weight: 1.0,
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
        let facts = scored(&vec![0.0; labels.len()]);
        assert_eq!(ctx.fit_weights(&probs, &facts, &labels), 2000);
        assert!(
            (ctx.image_weight - 0.25).abs() < 0.02,
            "{}",
            ctx.image_weight
        );
        // Too few picks, one class, or a pick lacking a fact: the weight is left alone.
        let mut few = ctx.clone();
        few.image_weight = 1.0;
        assert_eq!(few.fit_weights(&probs[..9], &facts, &labels), 0);
        assert_eq!(few.fit_weights(&probs[..100], &facts, &[0; 100]), 0);
        let mut lacking = facts.clone();
        lacking[5].score = None;
        assert_eq!(few.fit_weights(&probs, &lacking, &labels), 0);
        assert_eq!(few.image_weight, 1.0);
    }

    #[test]
    fn facts_that_mislead_the_held_out_picks_are_weighted_out() {
        // On the training picks the score separated the classes; on the held-out picks it is
        // noise, and the network is right on every one.
        let train = scored(&[-2.0, -1.0, -1.5, 1.0, 2.0, 1.5]);
        let mut ctx = PickContext::fit(&train, &[0, 0, 0, 1, 1, 1], 2).unwrap();
        let (mut probs, mut labels, mut scores) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..200 {
            let y = i % 2;
            labels.push(y);
            probs.push(if y == 1 {
                vec![0.2f32, 0.8]
            } else {
                vec![0.8, 0.2]
            });
            scores.push(if (i / 2) % 2 == 0 { 2.0 } else { -2.0 });
        }
        let facts = scored(&scores);
        assert_eq!(ctx.fit_weights(&probs, &facts, &labels), 200);
        assert_eq!(ctx.context_weight, 0.0);
        for i in 0..4 {
            let mut p = probs[i].clone();
            ctx.combine(&mut p, &facts[i]);
            assert_eq!(usize::from(p[1] > 0.5), labels[i], "pick {i}: {p:?}");
        }
        // Where the facts do tell the held-out picks apart, they keep their say.
        let mut useful = PickContext::fit(&train, &[0, 0, 0, 1, 1, 1], 2).unwrap();
        let agree: Vec<f64> = labels
            .iter()
            .map(|&y| if y == 1 { 2.0 } else { -2.0 })
            .collect();
        let flat = vec![vec![0.5f32, 0.5]; labels.len()];
        useful.fit_weights(&flat, &scored(&agree), &labels);
        assert!(useful.context_weight > 0.0);
    }

    #[test]
    fn weights_fit_on_likelihoods_from_whichever_context_judged_each_pick() {
        let train = scored(&[-2.0, -1.0, -1.5, 1.0, 2.0, 1.5]);
        let fitted = PickContext::fit(&train, &[0, 0, 0, 1, 1, 1], 2).unwrap();
        let labels: Vec<usize> = (0..40).map(|i| i % 2).collect();
        let facts = scored(
            &labels
                .iter()
                .map(|&y| y as f64 * 3.0 - 1.5)
                .collect::<Vec<_>>(),
        );
        // A network that knows nothing: its junk probability cycles 0.4, 0.5, 0.6.
        let probs: Vec<Vec<f32>> = (0..40)
            .map(|i| {
                let junk = 0.4 + (i % 3) as f32 * 0.1;
                vec![junk, 1.0 - junk]
            })
            .collect();
        // Given its own likelihoods, the same fit as from the facts.
        let (mut a, mut b) = (fitted.clone(), fitted.clone());
        a.fit_weights(&probs, &facts, &labels);
        let own: Vec<Vec<f64>> = facts.iter().map(|f| fitted.log_likelihood(f)).collect();
        b.fit_weights_with(&probs, &own, &labels);
        assert_eq!(
            (a.image_weight, a.context_weight),
            (b.image_weight, b.context_weight)
        );
        assert!(a.context_weight > 0.0, "the facts tell these picks apart");
        // Judged by other contexts (fitted without each pick) that call every pick wrongly, the
        // facts lose their say, whatever this context would have made of them.
        let wrong: Vec<Vec<f64>> = own.iter().map(|l| vec![l[1], l[0]]).collect();
        b.fit_weights_with(&probs, &wrong, &labels);
        assert_eq!(b.context_weight, 0.0);
    }

    #[test]
    fn shift_is_in_training_standard_deviations() {
        let fit = PickContext::fit(&scored(&[0.0, 2.0, 0.0, 2.0]), &[0, 1, 0, 1], 2).unwrap();
        let term = fit.score_term().unwrap();
        assert!((term.shift(5.0) - 4.0).abs() < 1e-12);
        assert!(term.shift(1.0) < 1e-12);
    }
}
