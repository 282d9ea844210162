//! Classification metrics: confusion matrix, accuracy, per-class precision/recall/F1 and
//! macro-F1 (the headline number: with 70% particles, accuracy rewards keeping everything).

use serde::{Deserialize, Serialize};

/// Scores of one class.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClassScores {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Examples of this class in the truth.
    pub support: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub n: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub per_class: Vec<ClassScores>,
    /// `confusion[truth][predicted]`.
    pub confusion: Vec<Vec<usize>>,
    pub classes: Vec<String>,
}

/// Scores predictions against truth. Precision of a class never predicted is 0, as is recall of
/// a class absent from the truth, and then its F1 is 0: scikit-learn's `zero_division=0`. The
/// macro-F1 averages the classes in the truth or the predictions, as scikit-learn's does: a
/// class of the model that these picks neither hold nor are called cannot be got wrong.
pub fn evaluate(truth: &[usize], predicted: &[usize], classes: &[String]) -> Report {
    assert_eq!(truth.len(), predicted.len());
    let k = classes.len();
    let mut confusion = vec![vec![0usize; k]; k];
    for (&t, &p) in truth.iter().zip(predicted) {
        confusion[t][p] += 1;
    }
    let n = truth.len();
    let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
    let called: Vec<usize> = (0..k)
        .map(|c| (0..k).map(|t| confusion[t][c]).sum())
        .collect();
    let per_class: Vec<ClassScores> = (0..k)
        .map(|c| {
            let tp = confusion[c][c] as f64;
            let predicted_c = called[c];
            let support: usize = confusion[c].iter().sum();
            let precision = if predicted_c > 0 {
                tp / predicted_c as f64
            } else {
                0.0
            };
            let recall = if support > 0 {
                tp / support as f64
            } else {
                0.0
            };
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            ClassScores {
                class: classes[c].clone(),
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect();
    let present: Vec<&ClassScores> = (0..k)
        .filter(|&c| per_class[c].support > 0 || called[c] > 0)
        .map(|c| &per_class[c])
        .collect();
    let macro_f1 = present.iter().map(|c| c.f1).sum::<f64>() / present.len().max(1) as f64;
    Report {
        n,
        accuracy: if n > 0 {
            correct as f64 / n as f64
        } else {
            0.0
        },
        macro_f1,
        per_class,
        confusion,
        classes: classes.to_vec(),
    }
}

impl Report {
    /// The report as a terminal table.
    pub fn to_text(&self) -> String {
        let width = self
            .classes
            .iter()
            .map(|c| c.len())
            .max()
            .unwrap_or(5)
            .max(9);
        let mut s = format!(
            "{} picks: accuracy {:.3}, macro-F1 {:.3}\n\n{:width$}  precision  recall     F1  support\n",
            self.n, self.accuracy, self.macro_f1, "class"
        );
        for c in &self.per_class {
            s += &format!(
                "{:width$}  {:9.3}  {:6.3}  {:5.3}  {:7}\n",
                c.class, c.precision, c.recall, c.f1, c.support
            );
        }
        s += &format!(
            "\nconfusion (rows: truth, columns: predicted)\n{:width$}",
            ""
        );
        for c in &self.classes {
            s += &format!("  {c:>9}");
        }
        s.push('\n');
        for (t, row) in self.confusion.iter().enumerate() {
            s += &format!("{:width$}", self.classes[t]);
            for v in row {
                s += &format!("  {v:>9}");
            }
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["junk".into(), "particle".into()]
    }

    #[test]
    fn matches_hand_computed_scores() {
        // truth: 3 junk, 5 particles; 2 junk called particle, 1 particle called junk.
        let truth = [0, 0, 0, 1, 1, 1, 1, 1];
        let pred = [0, 1, 1, 1, 1, 1, 1, 0];
        let r = evaluate(&truth, &pred, &names());
        assert_eq!(r.confusion, vec![vec![1, 2], vec![1, 4]]);
        assert!((r.accuracy - 5.0 / 8.0).abs() < 1e-12);
        let junk = &r.per_class[0];
        assert!((junk.precision - 0.5).abs() < 1e-12 && (junk.recall - 1.0 / 3.0).abs() < 1e-12);
        assert!((junk.f1 - 0.4).abs() < 1e-12);
        let part = &r.per_class[1];
        assert!((part.precision - 4.0 / 6.0).abs() < 1e-12 && (part.recall - 0.8).abs() < 1e-12);
        let f1p = 2.0 * (4.0 / 6.0) * 0.8 / (4.0 / 6.0 + 0.8);
        assert!((r.macro_f1 - (0.4 + f1p) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn a_class_neither_held_nor_predicted_does_not_count() {
        let classes: Vec<String> = vec!["carbon".into(), "ice".into(), "particle".into()];
        let r = evaluate(&[0, 2, 2], &[0, 2, 2], &classes);
        assert_eq!(r.macro_f1, 1.0);
        // Predicted but absent from the truth: a wrong call, and it counts.
        let r = evaluate(&[0, 2, 2], &[1, 2, 2], &classes);
        assert!((r.macro_f1 - 1.0 / 3.0).abs() < 1e-12, "{}", r.macro_f1);
    }

    #[test]
    fn one_class_predictor_scores_half_macro_f1_at_most() {
        let truth = [0, 1, 1, 1];
        let r = evaluate(&truth, &[1, 1, 1, 1], &names());
        assert_eq!(r.per_class[0].f1, 0.0);
        assert!(r.macro_f1 < 0.5 && r.accuracy == 0.75);
        assert!(r.to_text().contains("macro-F1"));
    }
}
