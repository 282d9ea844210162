//! The threshold advisor: how precise and how complete the kept set is at each threshold on the
//! probability of the kept classes, and which threshold reaches a target precision.
//!
//! The rates come from labelled picks the model did not train on (the validation picks of the
//! model directory, or labels given to `prune`). Recall depends on those rates alone; precision
//! also depends on how common the kept classes are, and labelled picks rarely have the class
//! mix of a whole dataset (a user labels 30 of each). So precision is worked out for the
//! prevalence of the dataset being pruned, estimated from the network's own output there and
//! corrected for its error rates (adjusted classify-and-count).

use serde::Serialize;

/// One row of the advisor's table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Row {
    pub threshold: f64,
    /// Share of kept-class picks above the threshold (recall).
    pub true_positive_rate: f64,
    /// Share of other picks above the threshold.
    pub false_positive_rate: f64,
    /// Expected precision of the kept set at `prevalence`.
    pub precision: f64,
    /// Expected share of all picks kept.
    pub kept_fraction: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Advice {
    pub rows: Vec<Row>,
    /// Share of picks of the kept classes assumed in the dataset.
    pub prevalence: f64,
    /// Where `prevalence` came from, in words.
    pub prevalence_source: String,
    /// Labelled picks of the kept classes and of the others behind the rates.
    pub positives: usize,
    pub negatives: usize,
    pub target_precision: f64,
    /// The lowest threshold (most picks kept) whose precision reaches the target.
    pub recommended: Option<Row>,
}

/// The thresholds of the table.
pub fn grid() -> Vec<f64> {
    // Written as hundredths so that 0.65 is the double nearest 0.65, as a user types it.
    let mut t: Vec<f64> = (1..20).map(|i| f64::from(5 * i) / 100.0).collect();
    t.extend([0.97, 0.99]);
    t
}

/// Recall and false-positive rate at threshold `t` from labelled picks: `p_keep` is the probability of the
/// kept classes, `is_kept` whether the label is one of them.
fn rates(p_keep: &[f64], is_kept: &[bool], t: f64) -> (f64, f64) {
    let (mut tp, mut fp, mut pos, mut neg) = (0usize, 0usize, 0usize, 0usize);
    for (&p, &k) in p_keep.iter().zip(is_kept) {
        if k {
            pos += 1;
            tp += usize::from(p >= t);
        } else {
            neg += 1;
            fp += usize::from(p >= t);
        }
    }
    (tp as f64 / pos.max(1) as f64, fp as f64 / neg.max(1) as f64)
}

/// The prevalence of the kept classes in a dataset whose picks have kept-class probabilities
/// `dataset_p`, corrected with the labelled rates at 0.5 (the raw share above 0.5 counts false
/// positives in and misses out), and whether it was corrected: a model too weak, or labelled
/// picks too few, to correct its own count firmly give the raw share.
pub fn estimate_prevalence(p_keep: &[f64], is_kept: &[bool], dataset_p: &[f64]) -> (f64, bool) {
    if dataset_p.is_empty() {
        return (0.5, false);
    }
    match adjusted_count(p_keep, is_kept, dataset_p) {
        Some(a) if a.is_firm() => (a.share, true),
        _ => (raw_share(dataset_p), false),
    }
}

fn raw_share(dataset_p: &[f64]) -> f64 {
    dataset_p.iter().filter(|&&p| p >= 0.5).count() as f64 / dataset_p.len().max(1) as f64
}

/// Standard error above which an adjusted count is too rough to decide with. Rates from 2 or 4
/// labelled picks of each side (what a fifth held out of 10 or 20 labels per class gives) put
/// simulated picks that were 71-79% particles at anything from 1% to 99%. With 2 a side the
/// standard error is never under 0.25; with 4, the wild estimates had 0.44-0.97 and the sound
/// ones 0.16-0.23; with 10, 0.08-0.17 (BENCHMARKS.md).
pub const MAX_SHARE_ERROR: f64 = 0.25;

/// An adjusted count: the share of the kept classes and its standard error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adjusted {
    pub share: f64,
    pub standard_error: f64,
}

impl Adjusted {
    /// Whether the share is known well enough to decide with ([`MAX_SHARE_ERROR`]).
    pub fn is_firm(&self) -> bool {
        self.standard_error <= MAX_SHARE_ERROR
    }
}

/// Adjusted classify-and-count (Forman 2008): the share of `dataset_p` at or above 0.5, less the
/// labelled false-positive rate, over the labelled true-positive rate less it. Unlike the
/// network's mean probability it does not inherit the prior the network was trained with, and it
/// needs no calibration, only class-conditional rates, which do not change with the class mix.
/// `None` for no dataset picks or when recall and false-positive rate are within 0.2 of each
/// other: a model that weak cannot correct its own count.
///
/// The standard error is the delta method's over the three binomial counts behind the share
/// (the dataset's share above 0.5, recall, false-positive rate). Each variance uses its rate
/// with two hits and two misses added (Agresti and Coull's correction for small counts), so
/// that 2 of 2 right is not taken for certainty, nor a share of 0 from one pick being pruned.
pub fn adjusted_count(p_keep: &[f64], is_kept: &[bool], dataset_p: &[f64]) -> Option<Adjusted> {
    let (tpr, fpr) = rates(p_keep, is_kept, 0.5);
    let gap = tpr - fpr;
    if dataset_p.is_empty() || gap < 0.2 {
        return None;
    }
    let raw = raw_share(dataset_p);
    let share = ((raw - fpr) / gap).clamp(0.0, 1.0);
    let positives = is_kept.iter().filter(|&&k| k).count();
    let negatives = is_kept.len() - positives;
    let variance = |rate: f64, n: usize| rate * (1.0 - rate) / n.max(1) as f64;
    let smoothed = |rate: f64, n: usize| (rate * n as f64 + 2.0) / (n as f64 + 4.0);
    let var = (variance(smoothed(raw, dataset_p.len()), dataset_p.len())
        + (1.0 - share).powi(2) * variance(smoothed(fpr, negatives), negatives)
        + share.powi(2) * variance(smoothed(tpr, positives), positives))
        / (gap * gap);
    Some(Adjusted {
        share,
        standard_error: var.sqrt(),
    })
}

/// The table and recommendation for `target_precision` at `prevalence`.
pub fn advise(
    p_keep: &[f64],
    is_kept: &[bool],
    prevalence: f64,
    prevalence_source: String,
    target_precision: f64,
) -> Advice {
    let positives = is_kept.iter().filter(|&&k| k).count();
    let rows: Vec<Row> = grid()
        .into_iter()
        .map(|t| {
            let (tpr, fpr) = rates(p_keep, is_kept, t);
            let kept = prevalence * tpr + (1.0 - prevalence) * fpr;
            Row {
                threshold: t,
                true_positive_rate: tpr,
                false_positive_rate: fpr,
                precision: if kept > 0.0 {
                    prevalence * tpr / kept
                } else {
                    1.0
                },
                kept_fraction: kept,
            }
        })
        .collect();
    let recommended = rows
        .iter()
        .find(|r| r.precision >= target_precision && r.kept_fraction > 0.0)
        .copied();
    Advice {
        rows,
        prevalence,
        prevalence_source,
        positives,
        negatives: is_kept.len() - positives,
        target_precision,
        recommended,
    }
}

impl Advice {
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "threshold advisor ({} labelled picks of the kept classes, {} others; {:.0}% of \
             picks assumed kept-class, {}):\n",
            self.positives,
            self.negatives,
            100.0 * self.prevalence,
            self.prevalence_source
        );
        s.push_str("  threshold  precision  recall  kept\n");
        // Neighbouring thresholds that change nothing share a line (a few labelled picks, or a
        // model sure of every pick, give runs of identical rows).
        let figures = |r: &Row| {
            format!(
                "{:9.3}  {:6.3}  {:4.0}%",
                r.precision,
                r.true_positive_rate,
                100.0 * r.kept_fraction
            )
        };
        for run in self.rows.chunk_by(|a, b| figures(a) == figures(b)) {
            let thresholds = match run {
                [one] => format!("{:.2}", one.threshold),
                [first, .., last] => format!("{:.2}-{:.2}", first.threshold, last.threshold),
                [] => continue,
            };
            let marked = run
                .iter()
                .any(|r| self.recommended.is_some_and(|x| x.threshold == r.threshold));
            let mark = if marked { "  <- recommended" } else { "" };
            s.push_str(&format!("  {thresholds:>9}  {}{mark}\n", figures(&run[0])));
        }
        match &self.recommended {
            Some(r) => s.push_str(&format!(
                "  for precision >= {:.2}: --threshold {:.2} (estimated recall {:.2})\n",
                self.target_precision, r.threshold, r.true_positive_rate
            )),
            None => s.push_str(&format!(
                "  no threshold reaches precision {:.2} on these labels\n",
                self.target_precision
            )),
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two labelled picks a side, far apart: every threshold from 0.15 to 0.85 keeps and
    /// rejects the same picks, and shows as one line.
    #[test]
    fn thresholds_that_change_nothing_share_a_line() {
        let p = [0.9, 0.85, 0.1, 0.12];
        let k = [true, true, false, false];
        let text = advise(&p, &k, 0.5, "given".into(), 0.95).to_text();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("  0.15-0.85      1.000   1.000")
                    && l.ends_with("<- recommended")),
            "{text}"
        );
        assert!(lines.len() < 10, "{text}");
        assert!(text.contains("--threshold 0.15"), "{text}");
    }

    #[test]
    fn a_perfect_separation_recommends_the_lowest_threshold_that_reaches_the_target() {
        // Positives at 0.8-0.95, negatives at 0.05-0.3.
        let mut p = Vec::new();
        let mut k = Vec::new();
        for i in 0..20 {
            p.push(0.8 + 0.0075 * i as f64);
            k.push(true);
            p.push(0.05 + 0.0125 * i as f64);
            k.push(false);
        }
        let a = advise(&p, &k, 0.7, "given".into(), 0.95);
        let r = a.recommended.unwrap();
        assert_eq!(r.threshold, 0.30, "{r:?}");
        assert_eq!(r.true_positive_rate, 1.0);
        assert_eq!(r.precision, 1.0);
        assert!((r.kept_fraction - 0.7).abs() < 1e-9);
        assert!(a.to_text().contains("--threshold 0.30"));
    }

    #[test]
    fn precision_follows_the_prevalence_not_the_labelling_mix() {
        // Half the negatives score 0.6: at 0.5, TPR 1 and FPR 0.5.
        let p = [0.9, 0.9, 0.6, 0.1];
        let k = [true, true, false, false];
        let rare = advise(&p, &k, 0.2, "given".into(), 0.9);
        let at_half = rare.rows.iter().find(|r| r.threshold == 0.5).unwrap();
        // 0.2 true / (0.2 + 0.8 * 0.5) = 1/3.
        assert!((at_half.precision - 1.0 / 3.0).abs() < 1e-9);
        let common = advise(&p, &k, 0.8, "given".into(), 0.9);
        let at_half = common.rows.iter().find(|r| r.threshold == 0.5).unwrap();
        assert!((at_half.precision - 0.8 / 0.9).abs() < 1e-9);
        // Above 0.6 the negatives are gone.
        assert_eq!(rare.recommended.unwrap().threshold, 0.65);
    }

    #[test]
    fn prevalence_is_corrected_for_the_models_errors() {
        // Labelled: TPR 0.8, FPR 0.1 at 0.5.
        let mut p = vec![0.9; 8];
        p.extend([0.2; 2]);
        p.extend([0.7]);
        p.extend([0.1; 9]);
        let k: Vec<bool> = (0..20).map(|i| i < 10).collect();
        // Dataset: 45% above 0.5 → (0.45 - 0.1) / 0.7 = 0.5.
        let mut d = vec![0.9; 45];
        d.extend([0.1; 55]);
        let (prev, corrected) = estimate_prevalence(&p, &k, &d);
        assert!(corrected && (prev - 0.5).abs() < 1e-9, "{prev}");
        // The delta method by hand: rates 10/14 and 3/14 from 10 picks each and the share
        // 47/104 from 100, two of each added.
        let a = adjusted_count(&p, &k, &d).unwrap();
        let (t, f, r) = (10.0 / 14.0, 3.0 / 14.0, 47.0 / 104.0);
        let var =
            (r * (1.0 - r) / 100.0 + 0.25 * f * (1.0 - f) / 10.0 + 0.25 * t * (1.0 - t) / 10.0)
                / (0.7f64 * 0.7);
        assert!((a.standard_error - var.sqrt()).abs() < 1e-12, "{a:?}");
        assert!(a.is_firm());
    }

    #[test]
    fn a_count_corrected_with_two_labelled_picks_a_side_is_too_rough() {
        // Both particles kept and both junk rejected: perfect rates, but from four picks.
        let (p, k) = ([0.9, 0.8, 0.2, 0.1], [true, true, false, false]);
        let d: Vec<f64> = (0..1000).map(|i| if i < 700 { 0.9 } else { 0.1 }).collect();
        let a = adjusted_count(&p, &k, &d).unwrap();
        assert!((a.share - 0.7).abs() < 1e-12);
        assert!(!a.is_firm(), "{a:?}");
        assert_eq!(estimate_prevalence(&p, &k, &d), (0.7, false));
        // The same rates from 40 picks a side are firm.
        let p40: Vec<f64> = p.iter().flat_map(|&v| [v; 20]).collect();
        let k40: Vec<bool> = k.iter().flat_map(|&v| [v; 20]).collect();
        assert!(adjusted_count(&p40, &k40, &d).unwrap().is_firm());
    }

    #[test]
    fn a_share_counted_on_a_few_picks_is_too_rough() {
        // Firm rates from 40 labelled picks a side, but one pick to prune: its share of 0 (or
        // 1) is no estimate of the dataset's.
        let p: Vec<f64> = [0.9, 0.8, 0.2, 0.1].iter().flat_map(|&v| [v; 20]).collect();
        let k: Vec<bool> = [true, true, false, false]
            .iter()
            .flat_map(|&v| [v; 20])
            .collect();
        for one in [0.1, 0.9] {
            assert!(!adjusted_count(&p, &k, &[one]).unwrap().is_firm());
        }
        let d: Vec<f64> = (0..100).map(|i| if i < 70 { 0.9 } else { 0.1 }).collect();
        assert!(adjusted_count(&p, &k, &d).unwrap().is_firm());
    }

    #[test]
    fn an_unreachable_target_says_so() {
        let p = [0.9, 0.9, 0.9, 0.9];
        let k = [true, false, true, false];
        let a = advise(&p, &k, 0.5, "given".into(), 0.99);
        assert!(a.recommended.is_none());
        assert!(a.to_text().contains("no threshold reaches"));
    }
}
