//! The clusters view: picks grouped by k-means on what the network sees of them (the pooled
//! features of the newest model's backbone; before any model, of the cryo-EM backbone built into
//! the binary), each group shown as its average and its members closest to the centre first,
//! the way users read 2D class averages. One key labels a group. The same kinds of pick order
//! the gallery: typical picks of every kind before any model, doubtful ones after.

use std::path::Path;

use cryoprune_image::display;
use cryoprune_image::pipeline::{Job, Pipeline};
use cryoprune_model::infer::batch_tensor;
use cryoprune_model::pretrained::{load_backbone, Pretrained};
use cryoprune_model::{Arch, Classifier, ClassifierConfig, Compute, HeadConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::{class_counts, in_turn, round_robin, Session};
use crate::labels::LabelSource;
use crate::{invalid, Result};

/// Picks clustered at most: spread over the micrographs, enough for groups of hundreds.
pub const CLUSTER_PICKS: usize = 4000;
/// Kinds of pick the gallery's order takes in turn: about the labels a user gives before the
/// page trains again, so each round's labels span every kind.
const KINDS: usize = 20;
/// Kinds the typical order makes at most, however many labels there are: k-means' cost grows
/// with the kinds, and past this many, kinds are finer than a label teaches.
const MAX_KINDS: usize = 100;
const ITERATIONS: usize = 30;

/// The groups as the page shows them.
pub(super) struct Clustering {
    pub how: String,
    /// Members of each group, closest to its centre first.
    pub groups: Vec<Vec<usize>>,
    /// The PNG of each group's average image.
    pub averages: Vec<Vec<u8>>,
}

/// One group in the page's list.
#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    pub group: usize,
    pub size: usize,
    /// Its members, closest to the centre first.
    pub members: Vec<usize>,
    /// Members labelled with each class (page order).
    pub labelled: Vec<usize>,
}

/// The clusters and how they were made.
#[derive(Debug, Clone, Serialize)]
pub struct ClustersView {
    pub how: String,
    pub groups: Vec<GroupView>,
}

impl Session {
    /// Groups up to [`CLUSTER_PICKS`] picks into `k` clusters and keeps them for the page.
    pub fn cluster(&self, k: usize) -> Result<ClustersView> {
        if !(2..=100).contains(&k) {
            invalid!("give 2 to 100 groups, not {k}");
        }
        let chosen = spread_sample(&in_turn(&self.mics));
        let seen = self.features(
            self.newest_model().as_deref(),
            &chosen_jobs(self, &chosen),
            true,
        )?;
        if seen.ids.len() < k {
            invalid!("{} picks cannot make {k} groups", seen.ids.len());
        }
        // The averages are of the images the features came from: what the network sees.
        let s2 = seen.side * seen.side;
        let mut averages = Vec::new();
        let mut members = Vec::new();
        for g in groups(&standardise(seen.features), k) {
            let mut mean = vec![0f32; s2];
            for &i in &g {
                for (m, v) in mean.iter_mut().zip(&seen.images[i * s2..(i + 1) * s2]) {
                    *m += v / g.len() as f32;
                }
            }
            averages.push(display::grey_png(&mean, seen.side)?);
            members.push(g.iter().map(|&i| seen.ids[i]).collect());
        }
        *self.clusters.lock().unwrap_or_else(|e| e.into_inner()) = Some(Clustering {
            how: seen.how,
            groups: members,
            averages,
        });
        self.clusters_view()
    }

    /// The gallery's first order, before any model has scored the picks: up to
    /// [`CLUSTER_PICKS`] picks, spread over the micrographs, and every pick labelled so far,
    /// grouped by k-means on the cryo-EM backbone's features into `KINDS` kinds more than
    /// there are labels; then the kinds in turn, those with the fewest labelled members first
    /// (largest first among equals), each giving its most typical unlabelled pick (closest to
    /// its centre) not shown yet. The other picks follow, micrographs in turn.
    ///
    /// The first labels are all the first model learns from. Picks in file order are mostly
    /// of the commonest kind, and doubt needs a model to doubt with; with a handful of labels,
    /// a typical pick of each kind teaches most (the low-budget regime of active learning,
    /// where the typical beats the uncertain). Labels from a session before count, so a
    /// continued session shows the kinds they left uncovered first.
    pub fn rank_typical(&self) -> Result<()> {
        let spread = in_turn(&self.mics);
        let labelled: Vec<bool> = {
            let labels = self.labels.lock().unwrap_or_else(|e| e.into_inner());
            labels.of.iter().map(Option::is_some).collect()
        };
        let mut sample = spread_sample(&spread);
        sample.extend((0..self.items.len()).filter(|&id| labelled[id]));
        sample.sort_unstable();
        sample.dedup();
        let seen = self.features(None, &chosen_jobs(self, &sample), false)?;
        let covered = seen.ids.iter().filter(|&&id| labelled[id]).count();
        let k = (covered + KINDS).min(MAX_KINDS).min(seen.ids.len());
        let mut first = Vec::new();
        let mut typical_kinds = None;
        if k >= 2 {
            let kinds: Vec<Vec<usize>> = groups(&standardise(seen.features), k)
                .into_iter()
                .map(|g| g.into_iter().map(|i| seen.ids[i]).collect())
                .collect();
            typical_kinds = Some(kinds.len());
            first = least_covered_first(kinds, &labelled);
        }
        self.set_order(
            &format!("typical picks of each kind in turn, grouped {}", seen.how),
            then_the_rest(first, spread, self.items.len()),
            typical_kinds,
        );
        Ok(())
    }

    /// The gallery's order from the model in `dir`, each pick's uncertainty `key` (small is
    /// uncertain) and its `predicted` class (of `classes`): up to [`CLUSTER_PICKS`] picks,
    /// spread over the micrographs, split by predicted class, each class's unlabelled picks
    /// grouped into kinds by k-means on the network's features (about [`KINDS`] kinds in all);
    /// then the classes in turn, the one with the fewest labels (given and shown) next, within
    /// each its kinds in turn (largest first), each giving its most uncertain pick not shown
    /// yet. The other picks follow, most uncertain first, micrographs in turn.
    ///
    /// Uncertainty alone fills the first screens with one kind of borderline pick, mostly of
    /// one class, and a model trained on a few labels learns little from ten near-duplicates:
    /// on simulated data those labels trained worse than a random draw (BENCHMARKS.md, the
    /// labelling page's order against chance). Taking classes and kinds in turn keeps the doubt
    /// and adds the spread; the class with the fewest labels first evens out the labels where
    /// the first ones, found before any model, are mostly of the commonest class.
    pub(super) fn diverse_order(
        &self,
        dir: &Path,
        key: &[f32],
        predicted: &[Option<(u16, f32)>],
        classes: &[String],
    ) -> Result<Vec<usize>> {
        let (labelled, given) = {
            let labels = self.labels.lock().unwrap_or_else(|e| e.into_inner());
            let counts = class_counts(&labels.of, self.cfg.classes.len());
            let given: Vec<usize> = classes
                .iter()
                .map(|name| {
                    let page = self.cfg.classes.iter().position(|c| c == name);
                    page.map_or(0, |i| counts[i])
                })
                .collect();
            let labelled: Vec<bool> = labels.of.iter().map(Option::is_some).collect();
            (labelled, given)
        };
        let most_uncertain_first = |ids: &mut Vec<usize>| {
            ids.sort_by(|&a, &b| key[a].total_cmp(&key[b]));
        };
        let by_mic: Vec<Vec<usize>> = self
            .mics
            .iter()
            .map(|m| {
                let mut items = m.items.clone();
                most_uncertain_first(&mut items);
                items
            })
            .collect();
        let spread = round_robin(&by_mic);
        let seen = self.embed(dir, &chosen_jobs(self, &spread_sample(&spread)), false)?;
        let features = standardise(seen.features);
        let k = (KINDS / classes.len().max(1)).max(1);
        let per_class: Vec<Vec<usize>> = (0..classes.len())
            .map(|c| {
                let of: Vec<usize> = (0..seen.ids.len())
                    .filter(|&i| !labelled[seen.ids[i]])
                    .filter(|&i| predicted[seen.ids[i]].map(|p| p.0 as usize) == Some(c))
                    .collect();
                let mut kinds: Vec<Vec<usize>> = vec![Vec::new(); k];
                if of.len() > k {
                    let rows: Vec<Vec<f32>> = of.iter().map(|&i| features[i].clone()).collect();
                    for (&i, (g, _)) in of.iter().zip(kmeans(&rows, k, 0)) {
                        kinds[g].push(seen.ids[i]);
                    }
                } else {
                    kinds[0] = of.iter().map(|&i| seen.ids[i]).collect();
                }
                kinds.sort_by_key(|g| std::cmp::Reverse(g.len()));
                kinds.iter_mut().for_each(most_uncertain_first);
                round_robin(&kinds)
            })
            .collect();
        let first = fewest_first(per_class, given);
        Ok(then_the_rest(first, spread, self.items.len()))
    }

    /// The kept clusters with their members' labels now.
    pub fn clusters_view(&self) -> Result<ClustersView> {
        let clusters = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        let Some(c) = clusters.as_ref() else {
            invalid!("no clusters yet");
        };
        let labels = self.labels.lock().unwrap_or_else(|e| e.into_inner());
        Ok(ClustersView {
            how: c.how.clone(),
            groups: c
                .groups
                .iter()
                .enumerate()
                .map(|(g, members)| {
                    let mut labelled = vec![0; self.cfg.classes.len()];
                    for l in members.iter().filter_map(|&id| labels.of[id]) {
                        labelled[l as usize] += 1;
                    }
                    GroupView {
                        group: g,
                        size: members.len(),
                        members: members.clone(),
                        labelled,
                    }
                })
                .collect(),
        })
    }

    /// Group `g`'s average image as PNG.
    pub fn cluster_average(&self, g: usize) -> Result<Vec<u8>> {
        let clusters = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        match clusters.as_ref().and_then(|c| c.averages.get(g)) {
            Some(png) => Ok(png.clone()),
            None => invalid!("no group {g}"),
        }
    }

    /// Labels every member of group `g` that has no label yet with `class`, as one change
    /// (one undo); returns how many.
    pub fn label_group(&self, g: usize, class: usize) -> Result<usize> {
        let members = {
            let clusters = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
            match clusters.as_ref().and_then(|c| c.groups.get(g)) {
                Some(m) => m.clone(),
                None => invalid!("no group {g}"),
            }
        };
        let labels = self.labels.lock().unwrap_or_else(|e| e.into_inner());
        let unlabelled: Vec<usize> = members
            .into_iter()
            .filter(|&id| labels.of[id].is_none())
            .collect();
        drop(labels);
        self.set_labels(&unlabelled, Some(class))?;
        Ok(unlabelled.len())
    }

    /// What the model in `dir` sees of the picks of `jobs` (their images too with
    /// `keep_images`).
    fn embed(&self, dir: &Path, jobs: &Chosen, keep_images: bool) -> Result<Seen> {
        let how = format!("by the network's features ({})", dir.display());
        self.with_model(dir, |model, _, pipeline, compute| {
            pooled_features(model, pipeline, &compute.device, jobs, keep_images, how)
        })
    }

    /// What groups and orders the picks: the backbone of the model in `dir`, or without one
    /// the cryo-EM backbone built into the binary, which saw particles, carbon, ice and
    /// aggregates in pretraining.
    fn features(&self, dir: Option<&Path>, jobs: &Chosen, keep_images: bool) -> Result<Seen> {
        if let Some(dir) = dir {
            return self.embed(dir, jobs, keep_images);
        }
        let compute = self.cfg.compute.start(&crate::Silent)?;
        compute.install(&crate::Silent, || {
            let device = &compute.device.device;
            let Some(path) = Pretrained::Cryo.path(Arch::Small)? else {
                invalid!("no cryo-EM backbone ships for the small network");
            };
            let (backbone, _) = load_backbone(Arch::Small, &path, device)?;
            let model = ClassifierConfig {
                in_channels: 1,
                arch: Arch::Small,
                classes: 2,
                head: HeadConfig::new(2),
            }
            .init_with(backbone, device);
            let pre = self.cfg.prep.preprocessing(&LabelSource::Picks)?;
            let pipeline = cryoprune_train::prep::pipeline(&pre, compute.threads, 0);
            let how = "by the cryo-EM backbone's features (no model yet)".to_string();
            pooled_features(&model, pipeline, &compute.device, jobs, keep_images, how)
        })
    }
}

/// What a network sees of some picks.
struct Seen {
    /// The picks it could cut (off the micrograph there is nothing to cut), in `jobs`' order.
    ids: Vec<usize>,
    /// Each one's backbone features, averaged over the image.
    features: Vec<Vec<f32>>,
    /// Their `side`² images one after another, where asked for (else empty): one cut serves
    /// both the features and the clusters' averages.
    images: Vec<f32>,
    side: usize,
    /// In words, which network.
    how: String,
}

/// What `model` sees of the picks of `jobs`, cut by `pipeline`.
fn pooled_features(
    model: &Classifier,
    mut pipeline: Pipeline,
    compute: &Compute,
    jobs: &Chosen,
    keep_images: bool,
    how: String,
) -> Result<Seen> {
    let device = &compute.device;
    // Every pick the gallery could cut has an image here too.
    pipeline.extract.edge = cryoprune_image::extract::EdgePolicy::PadMean;
    let side = pipeline.extract.out_size;
    let mut seen = Seen {
        ids: Vec::new(),
        features: Vec::new(),
        images: Vec::new(),
        side,
        how,
    };
    pipeline.run(&jobs.jobs, |o| -> Result<()> {
        seen.ids
            .extend(o.particles.kept.iter().map(|&i| jobs.ids[o.index][i]));
        if keep_images {
            seen.images.extend_from_slice(&o.particles.data);
        }
        let images: Vec<&[f32]> = o.particles.data.chunks_exact(side * side).collect();
        for batch in images.chunks(64) {
            let f = model.embedding(batch_tensor(batch, side, device));
            let c = f.dims()[1];
            let values = f
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("converted to f32");
            seen.features
                .extend(values.chunks_exact(c).map(<[f32]>::to_vec));
        }
        Ok(())
    })?;
    Ok(seen)
}

/// `rows` in `k` groups by k-means, as indices into `rows`: largest group first, as 2D classes
/// are read, each closest to its centre first; empty groups left out.
fn groups(rows: &[Vec<f32>], k: usize) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<(f32, usize)>> = vec![Vec::new(); k];
    for (i, (g, d)) in kmeans(rows, k, 0).into_iter().enumerate() {
        groups[g].push((d, i));
    }
    groups.retain(|g| !g.is_empty());
    groups.sort_by_key(|g| std::cmp::Reverse(g.len()));
    groups
        .into_iter()
        .map(|mut g| {
            g.sort_by(|a, b| a.0.total_cmp(&b.0));
            g.into_iter().map(|(_, i)| i).collect()
        })
        .collect()
}

/// The unlabelled picks of `kinds` (each closest to its centre first, largest kind first), the
/// kinds in turn, those with the fewest `labelled` members first.
fn least_covered_first(kinds: Vec<Vec<usize>>, labelled: &[bool]) -> Vec<usize> {
    let mut kinds: Vec<(usize, Vec<usize>)> = kinds
        .into_iter()
        .map(|g| {
            let (done, open): (Vec<usize>, Vec<usize>) =
                g.into_iter().partition(|&id| labelled[id]);
            (done.len(), open)
        })
        .collect();
    // Stable: the largest kind first among those equally covered.
    kinds.sort_by_key(|(done, _)| *done);
    round_robin(&kinds.into_iter().map(|(_, open)| open).collect::<Vec<_>>())
}

/// The picks of `per_class` (each class's in its order), each next one from the class with the
/// fewest labels, `given` and taken here so far (the first of equals).
fn fewest_first(per_class: Vec<Vec<usize>>, mut given: Vec<usize>) -> Vec<usize> {
    let mut left: Vec<std::vec::IntoIter<usize>> =
        per_class.into_iter().map(Vec::into_iter).collect();
    let mut order = Vec::new();
    while let Some(c) = (0..left.len())
        .filter(|&c| left[c].len() > 0)
        .min_by_key(|&c| given[c])
    {
        order.extend(left[c].next());
        given[c] += 1;
    }
    order
}

/// The gallery's order: `first`, then the picks of `spread` not in it, of `n` picks in all.
fn then_the_rest(mut first: Vec<usize>, spread: Vec<usize>, n: usize) -> Vec<usize> {
    let mut shown = vec![false; n];
    first.iter().for_each(|&id| shown[id] = true);
    first.extend(spread.into_iter().filter(|&id| !shown[id]));
    first
}

/// The first [`CLUSTER_PICKS`] of `spread` (picks with micrographs in turn), sorted by id as
/// [`chosen_jobs`] needs them.
fn spread_sample(spread: &[usize]) -> Vec<usize> {
    let mut sample = spread[..spread.len().min(CLUSTER_PICKS)].to_vec();
    sample.sort_unstable();
    sample
}

/// Jobs for picks `ids` (sorted), one per micrograph that has any, with the picks' ids.
struct Chosen {
    jobs: Vec<Job>,
    ids: Vec<Vec<usize>>,
}

fn chosen_jobs(s: &Session, ids: &[usize]) -> Chosen {
    let mut jobs: Vec<Job> = Vec::new();
    let mut of: Vec<Vec<usize>> = Vec::new();
    let mut last = usize::MAX;
    for &id in ids {
        let mic = s.items[id].mic;
        if mic != last {
            jobs.push(Job {
                path: s.mics[mic].path.clone(),
                picks: Vec::new(),
            });
            of.push(Vec::new());
            last = mic;
        }
        let p = s.pick(id);
        jobs.last_mut().expect("pushed").picks.push((p.x, p.y));
        of.last_mut().expect("pushed").push(id);
    }
    Chosen { jobs, ids: of }
}

/// Every feature scaled to mean 0 and unit variance over the picks, so none dominates the
/// distances by its units alone.
fn standardise(mut rows: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
    let Some(dims) = rows.first().map(Vec::len) else {
        return rows;
    };
    let n = rows.len() as f64;
    for d in 0..dims {
        let mean = rows.iter().map(|r| r[d] as f64).sum::<f64>() / n;
        let var = rows
            .iter()
            .map(|r| (r[d] as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        let sd = var.sqrt().max(1e-6);
        for r in &mut rows {
            r[d] = ((r[d] as f64 - mean) / sd) as f32;
        }
    }
    rows
}

fn distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// k-means with k-means++ seeding: each row's group and its squared distance to the centre.
fn kmeans(rows: &[Vec<f32>], k: usize, seed: u64) -> Vec<(usize, f32)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut centres: Vec<Vec<f32>> = vec![rows[rng.random_range(0..rows.len())].clone()];
    let mut nearest: Vec<f32> = rows.iter().map(|r| distance(r, &centres[0])).collect();
    while centres.len() < k {
        let total: f64 = nearest.iter().map(|&d| d as f64).sum();
        let mut pick = rng.random::<f64>() * total;
        let mut next = rows.len() - 1;
        for (i, &d) in nearest.iter().enumerate() {
            pick -= d as f64;
            if pick <= 0.0 {
                next = i;
                break;
            }
        }
        centres.push(rows[next].clone());
        for (d, r) in nearest.iter_mut().zip(rows) {
            *d = d.min(distance(r, &centres[centres.len() - 1]));
        }
    }
    let mut assignment = vec![(0usize, 0f32); rows.len()];
    for _ in 0..ITERATIONS {
        let mut moved = false;
        for (a, r) in assignment.iter_mut().zip(rows) {
            let best = centres
                .iter()
                .enumerate()
                .map(|(g, c)| (g, distance(r, c)))
                .min_by(|x, y| x.1.total_cmp(&y.1))
                .expect("k >= 1");
            moved |= best.0 != a.0;
            *a = best;
        }
        let dims = rows[0].len();
        let mut sums = vec![vec![0f64; dims]; k];
        let mut counts = vec![0usize; k];
        for (&(g, _), r) in assignment.iter().zip(rows) {
            counts[g] += 1;
            for (s, v) in sums[g].iter_mut().zip(r) {
                *s += *v as f64;
            }
        }
        for g in 0..k {
            if counts[g] > 0 {
                centres[g] = sums[g]
                    .iter()
                    .map(|s| (s / counts[g] as f64) as f32)
                    .collect();
            }
        }
        if !moved {
            break;
        }
    }
    assignment
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kinds_no_label_covers_come_first() {
        // Kinds as `groups` gives them: largest first, members closest to the centre first.
        let kinds = vec![vec![0, 1, 2, 3], vec![4, 5, 6], vec![7, 8], vec![9]];
        let mut labelled = vec![false; 10];
        assert_eq!(
            least_covered_first(kinds.clone(), &labelled),
            [0, 4, 7, 9, 1, 5, 8, 2, 6, 3]
        );
        // Two labels in the largest kind, one in the second: the unlabelled kinds come first,
        // and no labelled pick is shown again.
        for id in [0, 1, 5] {
            labelled[id] = true;
        }
        assert_eq!(least_covered_first(kinds, &labelled), [7, 9, 4, 2, 8, 6, 3]);
    }

    #[test]
    fn the_class_with_the_fewest_labels_goes_next() {
        let per_class = vec![vec![0, 1, 2, 3], vec![4, 5]];
        assert_eq!(
            fewest_first(per_class.clone(), vec![0, 0]),
            [0, 4, 1, 5, 2, 3]
        );
        // Three labels of the first class already: the second catches up first.
        assert_eq!(fewest_first(per_class, vec![3, 0]), [4, 5, 0, 1, 2, 3]);
    }

    #[test]
    fn kmeans_finds_separated_groups() {
        let mut rng = StdRng::seed_from_u64(1);
        let centres = [[0.0f32, 0.0], [10.0, 0.0], [0.0, 10.0]];
        let rows: Vec<Vec<f32>> = (0..300)
            .map(|i| {
                let c = centres[i % 3];
                vec![c[0] + rng.random::<f32>(), c[1] + rng.random::<f32>()]
            })
            .collect();
        let groups = kmeans(&rows, 3, 0);
        for i in 0..300 {
            // Rows of one true group share a cluster, and other true groups do not.
            assert_eq!(groups[i].0, groups[i % 3].0);
        }
        let distinct: std::collections::BTreeSet<usize> = groups.iter().map(|g| g.0).collect();
        assert_eq!(distinct.len(), 3);
    }
}
