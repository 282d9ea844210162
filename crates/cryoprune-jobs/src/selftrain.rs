//! Self-training on the unlabelled picks (`train --unlabelled`). A user labels a few dozen
//! picks and holds thousands more from the same micrographs. The model trained on the labels
//! classifies a sample of those; the picks it is surest of join the labels as pseudo-labels,
//! and a second model trains from the same starting weights on both. A model that is wrong
//! with confidence teaches its own errors, so the held-out true labels decide which of the two
//! is kept, and the pseudo-labels never come from a labelled pick (nor validate anything).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use cryoprune_formats::names::micrograph_key;
use cryoprune_formats::{PickFormat, PickSet};
use cryoprune_train::dataset;
use cryoprune_train::prep::Preprocessing;
use cryoprune_train::trainer::argmax;
use cryoprune_train::Dataset;
use serde::{Deserialize, Serialize};

use crate::events::Events;
use crate::inputs::{expand_globs, pair_with_micrographs};
use crate::prune::prior::sample_jobs;
use crate::Result;

/// `--unlabelled` and its limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UnlabelledConfig {
    /// Pick files without labels (any format `prune` reads) on the labelled micrographs or
    /// others among `--micrographs`; none means no self-training.
    pub picks: Vec<PathBuf>,
    /// Their format when the extension does not tell.
    pub format: Option<PickFormat>,
    /// At most about this many are cut and classified: whole micrographs spread over the
    /// files, so that the round stays within seconds on a CPU.
    pub max_picks: usize,
    /// Only a pick whose predicted class has at least this probability becomes a pseudo-label.
    pub confidence: f64,
}

impl Default for UnlabelledConfig {
    fn default() -> Self {
        Self {
            picks: Vec::new(),
            format: None,
            max_picks: 2000,
            confidence: 0.8,
        }
    }
}

impl UnlabelledConfig {
    pub fn is_on(&self) -> bool {
        !self.picks.is_empty()
    }

    /// The unlabelled picks to classify, cut as `pre` says from `micrographs` (globs), with
    /// every pick within a quarter box of a `labelled` one left out. Labels are placeholders.
    /// Picks on micrographs not among `micrographs` are not used, and their groups are named
    /// as `prune` names them.
    pub fn pool(
        &self,
        micrographs: &[String],
        pre: &Preprocessing,
        labelled: &Dataset,
        threads: usize,
        events: &dyn Events,
    ) -> Result<Dataset> {
        let mut set = PickSet::read(&self.picks, self.format)?;
        // Only picks on the given micrographs can be cut, so only they are sampled.
        let micrographs = expand_globs(micrographs)?;
        let report = pair_with_micrographs(
            &set,
            &micrographs,
            "they are not used for self-training",
            events,
        );
        let matched: HashSet<usize> = report.pairs.iter().map(|&(g, _)| g).collect();
        set.micrographs = std::mem::take(&mut set.micrographs)
            .into_iter()
            .enumerate()
            .filter_map(|(g, group)| matched.contains(&g).then_some(group))
            .collect();
        let mut taken: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
        for o in &labelled.origins {
            taken
                .entry(micrograph_key(&o.micrograph))
                .or_default()
                .push((o.x, o.y));
        }
        let near = 0.25 * pre.box_size as f64;
        let mut left_out = 0;
        for group in &mut set.micrographs {
            let Some(labels) = taken.get(&micrograph_key(&group.micrograph)) else {
                continue;
            };
            let before = group.picks.len();
            group.picks.retain(|p| {
                labels
                    .iter()
                    .all(|&(x, y)| (p.x - x).hypot(p.y - y) >= near)
            });
            left_out += before - group.picks.len();
        }
        set.micrographs.retain(|g| !g.picks.is_empty());
        let total: usize = set.micrographs.iter().map(|g| g.picks.len()).sum();
        let counts: Vec<usize> = set.micrographs.iter().map(|g| g.picks.len()).collect();
        let chosen = sample_jobs(&counts, self.max_picks);
        set.micrographs = chosen
            .into_iter()
            .map(|i| set.micrographs[i].clone())
            .collect();
        if set.micrographs.is_empty() {
            return Ok(Dataset::empty(pre.input_size, labelled.classes.clone()));
        }
        let pipeline = cryoprune_train::prep::pipeline(pre, threads, 1);
        let (pool, coverage) =
            dataset::from_unlabelled_picks(&set, &micrographs, &labelled.classes, &pipeline)?;
        events.note(format!(
            "self-training: {} of {total} unlabelled picks cut from {} micrographs ({left_out} \
             at labelled positions left out)",
            pool.len(),
            coverage.micrographs
        ));
        Ok(pool)
    }

    /// The pool's picks the model is surest of, labelled with its prediction: per class those
    /// predicted with at least `confidence`, the most confident first. Each class gets as many
    /// as it has training picks (`train_counts`), or its share of topping the training picks up
    /// to `fill` when that is more: the second model then trains about as many steps as the
    /// first, which keeps the round within a minute on 2 cores.
    pub fn pseudo_labelled(
        &self,
        pool: &Dataset,
        probs: &[Vec<f32>],
        train_counts: &[usize],
        fill: usize,
    ) -> Dataset {
        let trained: usize = train_counts.iter().sum();
        let share = fill
            .saturating_sub(trained)
            .div_ceil(train_counts.len().max(1));
        let mut by_class: Vec<Vec<(f32, usize)>> = vec![Vec::new(); train_counts.len()];
        for (i, p) in probs.iter().enumerate() {
            let c = argmax(p);
            if f64::from(p[c]) >= self.confidence {
                by_class[c].push((p[c], i));
            }
        }
        let mut chosen = Vec::new();
        let mut labels = Vec::new();
        for (c, mut picks) in by_class.into_iter().enumerate() {
            // Ties broken by position, so a seed gives one set on any machine.
            picks.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let most = train_counts[c].max(share);
            for &(_, i) in picks.iter().take(most) {
                chosen.push(i);
                labels.push(c);
            }
        }
        let mut pseudo = pool.subset(&chosen);
        pseudo.labels = labels;
        pseudo
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryoprune_train::dataset::Origin;

    fn pool(n: usize) -> Dataset {
        let mut d = Dataset::empty(2, vec!["junk".into(), "particle".into()]);
        for i in 0..n {
            d.images.extend([i as f32; 4]);
            d.labels.push(0);
            d.origins.push(Origin {
                micrograph: "m".into(),
                x: i as f64,
                y: 0.0,
                score: None,
                edge: None,
            });
        }
        d
    }

    #[test]
    fn pseudo_labels_are_the_surest_picks_per_class_within_their_share() {
        let cfg = UnlabelledConfig::default();
        let probs: Vec<Vec<f32>> = [0.95, 0.5, 0.1, 0.85, 0.99, 0.15, 0.02, 0.9, 0.79]
            .iter()
            .map(|&p| vec![1.0 - p, p])
            .collect();
        // Topping 5 training picks up to 9 allows 2 per class; the 4 particles allow 4.
        let pseudo = cfg.pseudo_labelled(&pool(probs.len()), &probs, &[1, 4], 9);
        let picked: Vec<(f64, usize)> = pseudo
            .origins
            .iter()
            .zip(&pseudo.labels)
            .map(|(o, &l)| (o.x, l))
            .collect();
        assert_eq!(
            picked,
            vec![(6.0, 0), (2.0, 0), (4.0, 1), (0.0, 1), (7.0, 1), (3.0, 1)]
        );
        assert_eq!(pseudo.image(0), &[6.0; 4]);
    }

    #[test]
    fn nothing_confident_enough_means_no_pseudo_labels() {
        let cfg = UnlabelledConfig::default();
        let probs = vec![vec![0.5, 0.5]; 3];
        assert!(cfg
            .pseudo_labelled(&pool(3), &probs, &[5, 5], 120)
            .is_empty());
    }
}
