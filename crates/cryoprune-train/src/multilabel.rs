//! Multi-label scores: per label precision, recall and F1 at that label's threshold, macro- and
//! micro-F1 and the exact-match ratio, and the choice of each label's threshold on validation
//! data (the one with the best F1: a rare label's best threshold is rarely 0.5).

use serde::{Deserialize, Serialize};

/// Scores of one label.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LabelScores {
    pub label: String,
    /// An image carries the label when its probability is at least this.
    pub threshold: f32,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Images that carry the label in the truth.
    pub support: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MultiReport {
    pub n: usize,
    /// The mean of the labels' F1: every label counts the same, however rare.
    pub macro_f1: f64,
    /// F1 of every (image, label) decision pooled: common labels weigh more.
    pub micro_f1: f64,
    /// Images whose every label was decided right.
    pub exact_match: f64,
    pub per_label: Vec<LabelScores>,
}

/// How far a label's F1 must stand above that of calling every image positive for the label to
/// count as learnt: about what one image of a hundred moves it.
pub const LEARNT_MARGIN: f64 = 0.02;

impl MultiReport {
    /// The labels whose F1 is within [`LEARNT_MARGIN`] of what calling every image positive
    /// scores (2s / (s + n) for s of n images carrying it), with that score. The best threshold
    /// of such a label found nothing in its probabilities to cut by, so the model calls it by
    /// its share of the images (mostly everywhere), not by what an image shows. A label that
    /// every image, or none, carries tells nothing either way and is left out.
    pub fn unlearnt(&self) -> Vec<(&LabelScores, f64)> {
        self.per_label
            .iter()
            .filter(|l| l.support > 0 && l.support < self.n)
            .filter_map(|l| {
                let everywhere = 2.0 * l.support as f64 / (l.support + self.n) as f64;
                (l.f1 < everywhere + LEARNT_MARGIN).then_some((l, everywhere))
            })
            .collect()
    }
}

/// Counts of one label's decisions.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    tp: usize,
    fp: usize,
    fn_: usize,
}

impl Counts {
    /// F1 = 2TP / (2TP + FP + FN), 0 when nothing was predicted or present (scikit-learn's
    /// `zero_division=0`).
    fn f1(&self) -> f64 {
        let d = 2 * self.tp + self.fp + self.fn_;
        if d == 0 {
            0.0
        } else {
            2.0 * self.tp as f64 / d as f64
        }
    }

    fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Scores probabilities (`probs[i][c]`) against the truth (`truth[i][c]`: image `i` carries
/// label `c`), deciding label `c` at `thresholds[c]`.
pub fn evaluate(
    truth: &[Vec<bool>],
    probs: &[Vec<f32>],
    thresholds: &[f32],
    labels: &[String],
) -> MultiReport {
    assert_eq!(truth.len(), probs.len(), "one probability row per image");
    let k = labels.len();
    let mut counts = vec![Counts::default(); k];
    let mut exact = 0;
    for (t, p) in truth.iter().zip(probs) {
        let mut all_right = true;
        for c in 0..k {
            let called = p[c] >= thresholds[c];
            match (t[c], called) {
                (true, true) => counts[c].tp += 1,
                (false, true) => counts[c].fp += 1,
                (true, false) => counts[c].fn_ += 1,
                (false, false) => {}
            }
            all_right &= t[c] == called;
        }
        exact += all_right as usize;
    }
    let per_label: Vec<LabelScores> = counts
        .iter()
        .enumerate()
        .map(|(c, n)| LabelScores {
            label: labels[c].clone(),
            threshold: thresholds[c],
            precision: n.precision(),
            recall: n.recall(),
            f1: n.f1(),
            support: n.tp + n.fn_,
        })
        .collect();
    let pooled = counts.iter().fold(Counts::default(), |a, n| Counts {
        tp: a.tp + n.tp,
        fp: a.fp + n.fp,
        fn_: a.fn_ + n.fn_,
    });
    MultiReport {
        n: truth.len(),
        macro_f1: per_label.iter().map(|l| l.f1).sum::<f64>() / k.max(1) as f64,
        micro_f1: pooled.f1(),
        exact_match: ratio(exact, truth.len()),
        per_label,
    }
}

/// A label's threshold where no validation image chooses one: even odds.
pub const UNCHOSEN_THRESHOLD: f32 = 0.5;

/// One label's best F1 over every threshold, and that threshold: halfway between the lowest
/// probability called positive and the highest called negative, so a probability a little off
/// the validation images' still falls on the side they fell. A label no image carries gets
/// [`UNCHOSEN_THRESHOLD`] (nothing to choose by) and F1 0.
fn best_threshold(
    truth: impl Iterator<Item = bool>,
    probs: impl Iterator<Item = f32>,
) -> (f64, f32) {
    let mut pairs: Vec<(f32, bool)> = probs.zip(truth).collect();
    let positives = pairs.iter().filter(|(_, t)| *t).count();
    if positives == 0 {
        return (0.0, UNCHOSEN_THRESHOLD);
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    // Calling the m most probable images positive: F1 = 2TP / (m + positives). Only a cut
    // between two different probabilities is a threshold.
    let (mut best, mut best_m, mut tp) = (-1.0, 0, 0);
    for m in 1..=pairs.len() {
        tp += pairs[m - 1].1 as usize;
        if m < pairs.len() && pairs[m].0 == pairs[m - 1].0 {
            continue;
        }
        let f1 = 2.0 * tp as f64 / (m + positives) as f64;
        if f1 > best {
            (best, best_m) = (f1, m);
        }
    }
    let lowest_in = pairs[best_m - 1].0;
    let threshold = match pairs.get(best_m) {
        Some(&(highest_out, _)) => (lowest_in + highest_out) / 2.0,
        None => lowest_in / 2.0,
    };
    (best, threshold)
}

/// Each label's threshold with the best F1 on these images.
pub fn choose_thresholds(truth: &[Vec<bool>], probs: &[Vec<f32>]) -> Vec<f32> {
    let k = probs.first().map_or(0, |p| p.len());
    (0..k)
        .map(|c| best_threshold(truth.iter().map(|t| t[c]), probs.iter().map(|p| p[c])).1)
        .collect()
}

/// A training epoch's validation figures of a multi-label model: the mean binary cross-entropy,
/// the share of label decisions at 0.5 that are right, and the mean over labels of each
/// label's best F1 (the thresholds are chosen after training, so an epoch is judged by how
/// well its probabilities can separate each label, not by a threshold of 0.5).
pub fn validation_figures(truth: &[Vec<bool>], probs: &[Vec<f32>]) -> (f64, f64, f64) {
    let k = probs.first().map_or(0, |p| p.len());
    let decisions = (truth.len() * k).max(1) as f64;
    let (mut bce, mut right) = (0.0, 0usize);
    for (t, p) in truth.iter().zip(probs) {
        for (&t, &p) in t.iter().zip(p) {
            let p = (p as f64).clamp(1e-7, 1.0 - 1e-7);
            bce -= if t { p.ln() } else { (1.0 - p).ln() };
            right += ((p >= 0.5) == t) as usize;
        }
    }
    let macro_best = (0..k)
        .map(|c| best_threshold(truth.iter().map(|t| t[c]), probs.iter().map(|p| p[c])).0)
        .sum::<f64>()
        / k.max(1) as f64;
    (bce / decisions, right as f64 / decisions, macro_best)
}

/// Per label, the weight of its positives that balances them against its negatives
/// (negatives / positives; 1 for a label no image, or every image, carries).
pub fn balanced_pos_weights(truth: &[Vec<bool>], labels: usize) -> Vec<f32> {
    (0..labels)
        .map(|c| {
            let pos = truth.iter().filter(|t| t[c]).count();
            let neg = truth.len() - pos;
            if pos == 0 || neg == 0 {
                1.0
            } else {
                neg as f32 / pos as f32
            }
        })
        .collect()
}

impl MultiReport {
    /// The report as a terminal table.
    pub fn to_text(&self) -> String {
        let width = self
            .per_label
            .iter()
            .map(|l| l.label.len())
            .max()
            .unwrap_or(5)
            .max(9);
        let mut s = format!(
            "{} images: macro-F1 {:.3}, micro-F1 {:.3}, exact match {:.3}\n\n\
             {:width$}  threshold  precision  recall     F1  support\n",
            self.n, self.macro_f1, self.micro_f1, self.exact_match, "label"
        );
        for l in &self.per_label {
            s += &format!(
                "{:width$}  {:9.3}  {:9.3}  {:6.3}  {:5.3}  {:7}\n",
                l.label, l.threshold, l.precision, l.recall, l.f1, l.support
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["carbon".into(), "ice".into(), "drift".into()]
    }

    fn rows(v: &[[u8; 3]]) -> Vec<Vec<bool>> {
        v.iter()
            .map(|r| r.iter().map(|&b| b == 1).collect())
            .collect()
    }

    #[test]
    fn a_label_no_better_than_calling_every_image_is_unlearnt() {
        // carbon is told apart; ice sits on 3 of 4 images and its probabilities are the wrong
        // way round, so its best threshold calls every image; drift is on none.
        let truth = rows(&[[1, 1, 0], [0, 1, 0], [0, 1, 0], [0, 0, 0]]);
        let probs = vec![
            vec![0.9, 0.1, 0.1],
            vec![0.1, 0.2, 0.1],
            vec![0.2, 0.3, 0.1],
            vec![0.1, 0.9, 0.1],
        ];
        let thresholds = choose_thresholds(&truth, &probs);
        let r = evaluate(&truth, &probs, &thresholds, &names());
        let unlearnt = r.unlearnt();
        assert_eq!(unlearnt.len(), 1);
        let (ice, everywhere) = unlearnt[0];
        assert_eq!(ice.label, "ice");
        assert!((everywhere - 6.0 / 7.0).abs() < 1e-12);
        assert!((ice.f1 - everywhere).abs() < 1e-12);
    }

    #[test]
    fn scores_match_hand_computed_ones() {
        let truth = rows(&[[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]]);
        let probs = vec![
            vec![0.9, 0.2, 0.1],
            vec![0.4, 0.8, 0.6],
            vec![0.7, 0.9, 0.1],
            vec![0.1, 0.1, 0.2],
        ];
        let r = evaluate(&truth, &probs, &[0.5, 0.5, 0.5], &names());
        // carbon: TP 1 (image 0), FN 1 (image 1), FP 1 (image 2).
        let carbon = &r.per_label[0];
        assert_eq!(
            (carbon.precision, carbon.recall, carbon.f1),
            (0.5, 0.5, 0.5)
        );
        assert_eq!(carbon.support, 2);
        // ice: TP 2, nothing else.
        assert_eq!(r.per_label[1].f1, 1.0);
        // drift: absent from the truth, one FP: F1 0.
        assert_eq!(r.per_label[2].f1, 0.0);
        assert!((r.macro_f1 - 0.5).abs() < 1e-12);
        // Pooled: TP 3, FP 2, FN 1 → 6 / 9.
        assert!((r.micro_f1 - 6.0 / 9.0).abs() < 1e-12);
        // Images 0 and 3 are right on every label.
        assert_eq!(r.exact_match, 0.5);
        assert!(r.to_text().contains("micro-F1 0.667"));
    }

    #[test]
    fn the_threshold_with_the_best_f1_is_chosen_between_the_probabilities() {
        // Positives at 0.3 and 0.25, negatives at 0.2 and 0.1: every positive, and no
        // negative, lies above 0.225; 0.5 would call nothing.
        let truth = rows(&[[1, 0, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0]]);
        let probs = vec![
            vec![0.3, 0.5, 0.5],
            vec![0.25, 0.5, 0.4],
            vec![0.2, 0.5, 0.6],
            vec![0.1, 0.5, 0.1],
        ];
        let t = choose_thresholds(&truth, &probs);
        assert!((t[0] - 0.225).abs() < 1e-6, "{t:?}");
        let r = evaluate(&truth, &probs, &t, &names());
        assert_eq!(r.per_label[0].f1, 1.0);
        // Equal probabilities cannot be cut apart: every image is called, F1 = 2/5.
        assert!(t[1] <= 0.5);
        assert!((r.per_label[1].f1 - 0.4).abs() < 1e-12);
        // The only positive has the highest probability.
        assert!(t[2] > 0.5 && t[2] < 0.6, "{t:?}");
        // A label no validation image carries keeps 0.5.
        let none = rows(&[[0, 0, 0], [0, 0, 0]]);
        assert_eq!(choose_thresholds(&none, &probs[..2])[0], 0.5);
    }

    #[test]
    fn validation_figures_and_balanced_weights() {
        let truth = rows(&[[1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 1, 0]]);
        let probs = vec![vec![0.6, 0.5, 0.5]; 4];
        let (bce, accuracy, best) = validation_figures(&truth, &probs);
        let want =
            -(4.0 * 0.5f64.ln() + 0.6f64.ln() + 3.0 * 0.4f64.ln() + 4.0 * 0.5f64.ln()) / 12.0;
        // The probabilities are f32: 0.6 is 0.6 to about 1e-8.
        assert!((bce - want).abs() < 1e-6, "{bce} vs {want}");
        // At 0.5 every label is called for every image: right where the truth has it, and for
        // labels 1 and 2 (0.5 ≥ 0.5) on images that carry it.
        assert!((accuracy - 2.0 / 12.0).abs() < 1e-12);
        // Carbon and ice: one positive among four equal probabilities, F1 2/5; drift none.
        assert!((best - 0.8 / 3.0).abs() < 1e-12);
        assert_eq!(balanced_pos_weights(&truth, 3), vec![3.0, 3.0, 1.0]);
    }
}
