//! Adapting the backbone to the dataset on its unlabelled picks (`train --unlabelled`). A user
//! labels a few dozen picks and holds thousands more from the same micrographs. Before the
//! labels are used, the network learns to tell a pick from a random place on the same
//! micrograph: no labels are needed, and to do it the backbone must learn what an object
//! centred in a box looks like in *these* micrographs (their particle size, contrast, noise
//! and filtering), which no pretraining set can anticipate. The labels then steer features
//! that fit the data. Junk picks are picks too, so this does not say what is junk: it gives
//! the labels something to work with.

use std::path::{Path, PathBuf};
use std::time::Instant;

use cryoprune_formats::picks::MicrographPicks;
use cryoprune_formats::{Pick, PickFormat, PickSet};
use cryoprune_model::Backbone;
use cryoprune_train::dataset;
use cryoprune_train::modeldir::AdaptationRecord;
use cryoprune_train::prep::Preprocessing;
use cryoprune_train::sampling::{split_fraction, subsample};
use cryoprune_train::Dataset;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::compute::Compute;
use crate::events::Events;
use crate::inputs::{micrograph_paths, pair_with_micrographs};
use crate::prune::prior::sample_jobs;
use crate::recipe::{fit, NetConfig, Start};
use crate::{invalid, Result};

/// The two classes of the adaptation task.
pub const CLASSES: [&str; 2] = ["picked", "elsewhere"];

/// `--unlabelled` and its limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct UnlabelledConfig {
    /// Pick files or folders without labels on these micrographs (any format prune reads):
    /// before the labels, the network learns to tell them from random places on the same
    /// micrographs, which adapts it to this dataset's particles and noise.
    #[arg(id = "unlabelled", long = "unlabelled", value_name = "UNLABELLED", num_args = 1..)]
    pub picks: Vec<PathBuf>,
    /// Their format when the extension does not tell.
    #[arg(skip)]
    pub format: Option<PickFormat>,
    /// With --unlabelled: use about this many of them (from micrographs spread over the set,
    /// each thinned to an even share), and as many random places beside them.
    #[arg(id = "unlabelled_max", long = "unlabelled-max", value_name = "N", default_value_t = UnlabelledConfig::default().max_picks)]
    pub max_picks: usize,
    /// With --unlabelled: epochs of the adaptation (0: none; the picks then serve
    /// --pseudo-labels only).
    #[arg(id = "unlabelled_epochs", long = "unlabelled-epochs", value_name = "N", default_value_t = UnlabelledConfig::default().epochs)]
    pub epochs: usize,
    /// With --unlabelled: after training, the N unlabelled picks of each class the model is
    /// surest of become labels of that class and the model trains again on both (validation
    /// stays on your labels). 0: off.
    #[arg(id = "pseudo_labels", long = "pseudo-labels", value_name = "N", default_value_t = UnlabelledConfig::default().pseudo_labels)]
    #[serde(default)]
    pub pseudo_labels: usize,
}

impl Default for UnlabelledConfig {
    fn default() -> Self {
        // Measured on EMPIAR-10017 from scratch (BENCHMARKS): 1,000 picks for 5 epochs gave
        // little, 1,400 for 8 as much as 1,200 for 15. From the shipped backbone, and from
        // scratch on simulated sets, 4 epochs of 1,500 give what 8 do (BENCHMARKS, "How long
        // to adapt") at half the cost, which keeps `train` within a minute on slower 2-core
        // machines too.
        Self {
            picks: Vec::new(),
            format: None,
            max_picks: 1500,
            epochs: 4,
            pseudo_labels: 0,
        }
    }
}

impl UnlabelledConfig {
    pub fn is_on(&self) -> bool {
        !self.picks.is_empty()
    }

    /// The picks on `micrographs` (globs), at most `max_picks` of them from micrographs
    /// spread over the set, each thinned to an even share; with the micrographs' paths and the
    /// chosen micrographs' picks before thinning. `purpose` says what they are for, in errors.
    fn spread(
        &self,
        micrographs: &[String],
        purpose: &str,
        events: &dyn Events,
    ) -> Result<(PickSet, Vec<PathBuf>, Vec<MicrographPicks>)> {
        if self.max_picks == 0 {
            invalid!(
                "--unlabelled-max 0: no unlabelled pick left to {purpose} on; give at least 1"
            );
        }
        let mut set = PickSet::read(&self.picks, self.format)?;
        let micrographs = micrograph_paths(micrographs)?;
        let report = pair_with_micrographs(
            &set,
            &micrographs,
            &format!("they are not used to {purpose}"),
            events,
        );
        let mut matched: Vec<MicrographPicks> = report
            .pairs
            .iter()
            .map(|&(g, _)| set.micrographs[g].clone())
            .filter(|g| !g.picks.is_empty())
            .collect();
        if matched.is_empty() {
            invalid!(
                "--unlabelled: no pick lies on a micrograph given with --micrographs: nothing to \
                 {purpose} on"
            );
        }
        let counts: Vec<usize> = matched.iter().map(|g| g.picks.len()).collect();
        let chosen = sample_jobs(&counts, self.max_picks);
        matched = chosen.into_iter().map(|i| matched[i].clone()).collect();
        // Random places keep clear of every pick, also of those the thinning leaves out.
        let all_picks = matched.clone();
        thin(&mut matched, self.max_picks);
        set.micrographs = matched;
        Ok((set, micrographs, all_picks))
    }

    /// The unlabelled picks to choose pseudo-labels from, as `Self::spread` chooses them, cut
    /// as `pre` says; every example's label is a placeholder. The adaptation cuts the same
    /// picks ([`Adapted::picks`]); this is for a model trained without it.
    pub fn pool(
        &self,
        micrographs: &[String],
        pre: &Preprocessing,
        classes: &[String],
        threads: usize,
        events: &dyn Events,
    ) -> Result<Dataset> {
        let (set, micrographs, _) = self.spread(micrographs, "choose pseudo-labels", events)?;
        let pipeline = cryoprune_train::prep::pipeline(pre, threads, 1);
        Ok(dataset::from_unlabelled_picks(&set, &micrographs, classes, &pipeline)?.0)
    }

    /// The adaptation set, cut as `pre` says from `micrographs` (globs): the picks (class 0)
    /// and as many random places on the same micrographs (class 1), split into training and
    /// validation, and the picks alone. Picks on micrographs not among `micrographs` are not
    /// used, and their groups are named as `prune` names them.
    pub fn task(
        &self,
        micrographs: &[String],
        pre: &Preprocessing,
        seed: u64,
        threads: usize,
        events: &dyn Events,
    ) -> Result<(Dataset, Dataset, Dataset)> {
        let (set, micrographs, all_picks) =
            self.spread(micrographs, "adapt the network", events)?;
        let wanted: Vec<usize> = set.micrographs.iter().map(|g| g.picks.len()).collect();
        let classes: Vec<String> = CLASSES.iter().map(|c| c.to_string()).collect();
        let pipeline = cryoprune_train::prep::pipeline(pre, threads, 1);
        // Only the places are cut: the source files' content need not come along.
        let elsewhere = PickSet {
            micrographs: elsewhere(&all_picks, &wanted, 0.25 * pre.box_size as f64, seed),
            ..PickSet::empty(set.format)
        };
        let (picked, coverage) =
            dataset::from_unlabelled_picks(&set, &micrographs, &classes, &pipeline)?;
        let (mut random, _) =
            dataset::from_unlabelled_picks(&elsewhere, &micrographs, &classes, &pipeline)?;
        random.labels.iter_mut().for_each(|l| *l = 1);
        let all = picked.concat(&random);
        events.note(format!(
            "adapting the network to these micrographs: {} picks from {} against {} random \
             places on them",
            picked.len(),
            crate::count(coverage.micrographs, "micrograph"),
            random.len()
        ));
        let every: Vec<usize> = (0..all.len()).collect();
        let split = split_fraction(&all.labels, &all.classes, &every, 0.1, seed);
        // A few hundred validation places tell a working adaptation from a failed one.
        let val = subsample(&all.labels, 2, &split.rest, 200, seed);
        Ok((all.subset(&split.train), all.subset(&val), picked))
    }
}

/// What [`adapt`] gives: the adapted backbone, its record for model.json, and the unlabelled
/// picks it cut (all labelled 0), which pseudo-labels choose from without cutting them again.
pub struct Adapted {
    pub backbone: Backbone,
    pub record: AdaptationRecord,
    pub picks: Dataset,
}

/// The backbone of `net`, started from `weights`, adapted to the dataset: trained, all layers,
/// to tell `u`'s picks on `micrographs` from random places on them. The labels start from it.
#[allow(clippy::too_many_arguments)]
pub fn adapt(
    u: &UnlabelledConfig,
    micrographs: &[String],
    pre: &Preprocessing,
    net: &NetConfig,
    weights: Option<&Path>,
    seed: u64,
    compute: &Compute,
    events: &dyn Events,
) -> Result<Adapted> {
    let start = Instant::now();
    let (train, val, picks) = u.task(micrographs, pre, seed, compute.threads, events)?;
    let counts = train.counts();
    if counts.contains(&0) {
        invalid!(
            "--unlabelled: {} unlabelled picks and {} random places could be cut from \
             --micrographs; adapting needs both (are the picks on these micrographs?)",
            counts[0],
            counts[1]
        );
    }
    let net = NetConfig {
        epochs: u.epochs,
        freeze_epochs: 0,
        class_weights: None,
        ..net.clone()
    };
    let fitted = fit(
        &net,
        Start::Weights(weights),
        &train,
        &val,
        seed,
        compute,
        events,
    )?;
    let accuracy = fitted.history[fitted.best_epoch - 1]
        .val_accuracy
        .unwrap_or(f64::NAN);
    let record = AdaptationRecord {
        picks: u.picks.clone(),
        picked: counts[0],
        elsewhere: counts[1],
        epochs: u.epochs,
        accuracy,
        seconds: start.elapsed().as_secs_f64(),
    };
    events.output(format!(
        "adapted to these micrographs in {:.1} s: held-out picks told from random places with \
         accuracy {accuracy:.3}",
        record.seconds
    ));
    Ok(Adapted {
        backbone: fitted.model.backbone,
        record,
        picks,
    })
}

/// Whole micrographs can hold more picks than `max` together (a few micrographs of many
/// picks): every micrograph then keeps an evenly spread share, so the adaptation's time stays
/// what `max` promises.
fn thin(groups: &mut [MicrographPicks], max: usize) {
    let total: usize = groups.iter().map(|g| g.picks.len()).sum();
    if total <= max {
        return;
    }
    for g in groups {
        let keep = (g.picks.len() * max).div_ceil(total);
        let n = g.picks.len();
        g.picks = (0..keep).map(|i| g.picks[i * n / keep].clone()).collect();
    }
}

/// For each micrograph, `wanted` random places, within the rectangle its picks span (where the
/// picker looked, without reading the micrograph) and at least `near` pixels from every pick,
/// so a random place is never a pick. Fewer when the picks leave no room.
pub fn elsewhere(
    groups: &[MicrographPicks],
    wanted: &[usize],
    near: f64,
    seed: u64,
) -> Vec<MicrographPicks> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xE15E_3E7E);
    groups
        .iter()
        .zip(wanted)
        .map(|(g, &wanted)| {
            let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
            for p in &g.picks {
                (x0, x1, y0, y1) = (x0.min(p.x), x1.max(p.x), y0.min(p.y), y1.max(p.y));
            }
            let mut picks = Vec::with_capacity(wanted);
            // Bounded: a micrograph packed with picks may have little room left.
            for _ in 0..20 * wanted {
                if picks.len() == wanted || x1 <= x0 || y1 <= y0 {
                    break;
                }
                let (x, y) = (rng.random_range(x0..x1), rng.random_range(y0..y1));
                if g.picks.iter().all(|p| (p.x - x).hypot(p.y - y) >= near) {
                    picks.push(Pick::new(x, y));
                }
            }
            MicrographPicks {
                micrograph: g.micrograph.clone(),
                picks,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_places_stay_where_the_picks_are_and_away_from_them() {
        let picks: Vec<Pick> = (0..40)
            .map(|i| Pick::new(100.0 + 20.0 * (i % 8) as f64, 300.0 + 25.0 * (i / 8) as f64))
            .collect();
        let groups = vec![MicrographPicks {
            micrograph: "a".into(),
            picks,
        }];
        let out = elsewhere(&groups, &[40], 8.0, 1);
        assert_eq!(out[0].micrograph, "a");
        assert_eq!(out[0].picks.len(), 40);
        for r in &out[0].picks {
            assert!((100.0..240.0).contains(&r.x) && (300.0..400.0).contains(&r.y));
            assert!(groups[0]
                .picks
                .iter()
                .all(|p| (p.x - r.x).hypot(p.y - r.y) >= 8.0));
        }
        assert_eq!(
            out,
            elsewhere(&groups, &[40], 8.0, 1),
            "a seed gives one set"
        );
        assert_ne!(out, elsewhere(&groups, &[40], 8.0, 2));
        assert_eq!(elsewhere(&groups, &[7], 8.0, 1)[0].picks.len(), 7);
        // Picks packed so densely that no place is far enough: fewer places, no endless loop.
        assert!(elsewhere(&groups, &[40], 60.0, 1)[0].picks.is_empty());
        // One pick spans no rectangle.
        let single = vec![MicrographPicks {
            micrograph: "b".into(),
            picks: vec![Pick::new(5.0, 5.0)],
        }];
        assert!(elsewhere(&single, &[1], 1.0, 1)[0].picks.is_empty());
    }

    #[test]
    fn thinning_keeps_an_even_share_of_every_micrograph() {
        let group = |name: &str, n: usize| MicrographPicks {
            micrograph: name.into(),
            picks: (0..n).map(|i| Pick::new(i as f64, 0.0)).collect(),
        };
        let mut groups = vec![group("a", 300), group("b", 100)];
        thin(&mut groups, 200);
        assert_eq!(groups[0].picks.len(), 150);
        assert_eq!(groups[1].picks.len(), 50);
        // Spread over each micrograph's list, not its head.
        assert_eq!(groups[0].picks[1].x, 2.0);
        assert_eq!(groups[0].picks[149].x, 298.0);
        let mut few = vec![group("c", 10)];
        thin(&mut few, 200);
        assert_eq!(few[0].picks.len(), 10);
    }
}
