//! Plain-words reading of the training curves, in the spirit of cryoSPARC's guide: say what went
//! wrong and what to change.

use crate::multilabel::MultiReport;
use crate::trainer::EpochStats;

/// The validation loss's best and last values and how far the training loss fell over the last
/// third of the epochs: what overfitting is read from.
pub struct LossTail {
    pub best_val: f64,
    pub val_end: f64,
    pub train_drop: f64,
}

/// The [`LossTail`] of `history`, once at least 6 epochs have a validation loss.
pub fn loss_tail(history: &[EpochStats]) -> Option<LossTail> {
    let with_val: Vec<(&EpochStats, f64)> = history
        .iter()
        .filter_map(|h| h.val_loss.map(|v| (h, v)))
        .collect();
    if with_val.len() < 6 {
        return None;
    }
    let tail = &with_val[with_val.len() - with_val.len() / 3..];
    let ((first, _), (last, val_end)) = (tail[0], tail[tail.len() - 1]);
    Some(LossTail {
        best_val: with_val
            .iter()
            .map(|&(_, v)| v)
            .fold(f64::INFINITY, f64::min),
        val_end,
        train_drop: first.train_loss - last.train_loss,
    })
}

/// What the network was trained to say, for the words of the diagnosis.
#[derive(Debug, Clone, Copy)]
pub enum Task<'a> {
    /// One class per image; with how many held-out examples it called each class, when any
    /// were held out.
    Classes(Option<&'a [usize]>),
    /// Any number of labels per image: chance is a binary cross-entropy of ln 2 per label, and
    /// a label's accuracy says little where the label is rare, so the validation macro-F1
    /// (each label at its best threshold) is read instead.
    LabelSets,
}

/// Findings, most serious first; empty when the curves look healthy.
pub fn diagnose(history: &[EpochStats], task: Task, classes: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let Some(last) = history.last() else {
        return out;
    };
    if history.iter().any(|h| !h.train_loss.is_finite()) {
        out.push(
            "Training diverged (the loss became NaN or infinite). Lower the learning rate \
             (--lr, e.g. by 10x) or check the particles for NaN pixels."
                .into(),
        );
        return out;
    }
    let first = &history[0];
    let chance_loss = match task {
        Task::Classes(_) => (classes.len().max(2) as f64).ln(),
        Task::LabelSets => 2f64.ln(),
    };
    let stuck = history.len() >= 3
        && last.train_loss > 0.9 * first.train_loss
        && last.train_loss > 0.5 * chance_loss;
    let (measure, value) = match task {
        Task::Classes(_) => ("accuracy", last.val_accuracy.unwrap_or(last.train_accuracy)),
        Task::LabelSets => (
            "the validation macro-F1",
            last.val_macro_f1.unwrap_or(last.train_accuracy),
        ),
    };
    if stuck || value <= 0.6 {
        let (what, check) = match task {
            Task::Classes(_) => (
                "classes",
                "that --box covers the particle and the labels are right",
            ),
            Task::LabelSets => (
                "labels",
                "that --input-size shows what the labels are about and the labels are right",
            ),
        };
        out.push(format!(
            "Underfitting: the training loss went from {:.3} to {:.3} and {measure} is {:.0}%. \
             The network is not learning these {what}: train longer (--epochs), raise the \
             learning rate, use a pretrained backbone (--pretrained) or more labels, and check \
             {check}.",
            first.train_loss,
            last.train_loss,
            100.0 * value
        ));
    }
    if let Some(LossTail {
        best_val,
        val_end,
        train_drop,
    }) = loss_tail(history)
    {
        if val_end > 1.25 * best_val && val_end - best_val > 0.05 && train_drop > 0.0 {
            out.push(format!(
                "Overfitting: validation loss rose from its best {best_val:.3} to {val_end:.3} \
                 while the training loss kept falling. The best epoch was kept; more labels help \
                 most, fewer epochs or weight decay (--weight-decay) may."
            ));
        }
    }
    if let Task::Classes(Some(counts)) = task {
        let total: usize = counts.iter().sum();
        if let Some((c, &n)) = counts.iter().enumerate().max_by_key(|(_, &n)| n) {
            if total > 0 && n == total && counts.len() > 1 {
                out.push(format!(
                    "The model predicts only `{}` on the validation picks. It has learned the \
                     class balance, not the classes: use --class-weights to weight the rare \
                     class up, give more labels of the other classes, or train longer.",
                    classes[c]
                ));
            }
        }
    }
    out
}

/// Findings on a multi-label model's validation: each label it has not learnt
/// ([`MultiReport::unlearnt`]), which the curves cannot show (the other labels carry the loss).
pub fn unlearnt_labels(report: &MultiReport) -> Vec<String> {
    report
        .unlearnt()
        .into_iter()
        .map(|(l, everywhere)| {
            format!(
                "`{0}` is not learnt: its validation F1 {1:.3} is what calling every image \
                 `{0}` scores ({2:.3}), so its threshold {3:.2} calls it by its share of the \
                 images, not by what an image shows. Give more or clearer examples with and \
                 without it, or do not act on it (leave it out of `curate --reject`).",
                l.label, l.f1, everywhere, l.threshold
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(e: usize, train_loss: f64, val_loss: f64, acc: f64) -> EpochStats {
        EpochStats {
            epoch: e,
            lr: 0.01,
            train_loss,
            train_accuracy: acc,
            val_loss: Some(val_loss),
            val_accuracy: Some(acc),
            val_macro_f1: Some(acc),
            seconds: 1.0,
        }
    }

    fn classes() -> Vec<String> {
        vec!["junk".into(), "particle".into()]
    }

    #[test]
    fn healthy_curves_give_no_findings() {
        let h: Vec<_> = (0..10)
            .map(|e| epoch(e, 0.7 / (1.0 + e as f64), 0.4, 0.9))
            .collect();
        assert!(diagnose(&h, Task::Classes(Some(&[30, 70])), &classes()).is_empty());
        assert!(diagnose(&h, Task::LabelSets, &classes()).is_empty());
    }

    #[test]
    fn names_underfitting_overfitting_and_one_class() {
        let flat: Vec<_> = (0..10).map(|e| epoch(e, 0.69, 0.69, 0.55)).collect();
        assert!(diagnose(&flat, Task::Classes(None), &classes())[0].starts_with("Underfitting"));
        // Label sets: a BCE stuck near ln 2 per label, read by the macro-F1.
        let sets = diagnose(&flat, Task::LabelSets, &classes());
        assert!(
            sets[0].contains("the validation macro-F1 is 55%"),
            "{sets:?}"
        );
        let over: Vec<_> = (0..12)
            .map(|e| epoch(e, 0.6 / (1.0 + e as f64), 0.3 + 0.05 * e as f64, 0.85))
            .collect();
        assert!(diagnose(&over, Task::Classes(None), &classes())
            .iter()
            .any(|s| s.starts_with("Overfitting")));
        let one = diagnose(&over, Task::Classes(Some(&[0, 50])), &classes());
        assert!(one.iter().any(|s| s.contains("only `particle`")));
        let nan = vec![epoch(0, f64::NAN, 1.0, 0.5)];
        assert!(diagnose(&nan, Task::Classes(None), &classes())[0].starts_with("Training diverged"));
    }

    #[test]
    fn names_a_label_called_by_its_share() {
        use crate::multilabel::{choose_thresholds, evaluate};
        // `aggregate` on 3 of 4 images, its probabilities unrelated to it; `carbon` told apart.
        let truth = vec![
            vec![true, true],
            vec![true, false],
            vec![true, false],
            vec![false, false],
        ];
        let probs = vec![
            vec![0.2, 0.9],
            vec![0.6, 0.1],
            vec![0.3, 0.2],
            vec![0.5, 0.1],
        ];
        let names = vec!["aggregate".to_string(), "carbon".to_string()];
        let report = evaluate(&truth, &probs, &choose_thresholds(&truth, &probs), &names);
        let findings = unlearnt_labels(&report);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(
            findings[0].starts_with(
                "`aggregate` is not learnt: its validation F1 0.857 is what \
                 calling every image `aggregate` scores (0.857)"
            ),
            "{findings:?}"
        );
    }
}
