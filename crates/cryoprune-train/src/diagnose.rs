//! Plain-words reading of the training curves, in the spirit of cryoSPARC's guide: say what went
//! wrong and what to change.

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

/// Findings, most serious first; empty when the curves look healthy.
pub fn diagnose(
    history: &[EpochStats],
    predicted_counts: Option<&[usize]>,
    classes: &[String],
) -> Vec<String> {
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
    let k = classes.len().max(2) as f64;
    let chance_loss = k.ln();
    let stuck = history.len() >= 3
        && last.train_loss > 0.9 * first.train_loss
        && last.train_loss > 0.5 * chance_loss;
    let acc = last.val_accuracy.unwrap_or(last.train_accuracy);
    if stuck || acc <= 0.6 {
        out.push(format!(
            "Underfitting: the training loss went from {:.3} to {:.3} and accuracy is {:.0}%. \
             The network is not learning these classes: train longer (--epochs), raise the \
             learning rate, use a pretrained backbone (--pretrained) or more labels, and check \
             that --box covers the particle and the labels are right.",
            first.train_loss,
            last.train_loss,
            100.0 * acc
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
                 while the training loss kept falling. The best epoch was kept; fewer epochs, \
                 stronger augmentation (--augment flip,rotate), weight decay (--weight-decay) or \
                 more labels would help."
            ));
        }
    }
    if let Some(counts) = predicted_counts {
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
        assert!(diagnose(&h, Some(&[30, 70]), &classes()).is_empty());
    }

    #[test]
    fn names_underfitting_overfitting_and_one_class() {
        let flat: Vec<_> = (0..10).map(|e| epoch(e, 0.69, 0.69, 0.55)).collect();
        assert!(diagnose(&flat, None, &classes())[0].starts_with("Underfitting"));
        let over: Vec<_> = (0..12)
            .map(|e| epoch(e, 0.6 / (1.0 + e as f64), 0.3 + 0.05 * e as f64, 0.85))
            .collect();
        assert!(diagnose(&over, None, &classes())
            .iter()
            .any(|s| s.starts_with("Overfitting")));
        let one = diagnose(&over, Some(&[0, 50]), &classes());
        assert!(one.iter().any(|s| s.contains("only `particle`")));
        let nan = vec![epoch(0, f64::NAN, 1.0, 0.5)];
        assert!(diagnose(&nan, None, &classes())[0].starts_with("Training diverged"));
    }
}
