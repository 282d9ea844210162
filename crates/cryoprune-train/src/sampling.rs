//! Few-shot draws: K labelled examples per class for training, the rest held out. Seeded, and
//! stratified so every class is represented however rare.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::Error;

/// Indices for training and held-out examples.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub train: Vec<usize>,
    pub rest: Vec<usize>,
}

/// Draws `shots` examples of each class among `pool` (indices into `labels`) for training; the
/// rest of the pool is held out. A class with fewer than `shots + 1` examples is an error: it
/// would leave nothing of that class to validate on.
pub fn draw_shots(
    labels: &[usize],
    classes: &[String],
    pool: &[usize],
    shots: usize,
    seed: u64,
) -> Result<Split, Error> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut train = Vec::new();
    for (c, name) in classes.iter().enumerate() {
        let mut members: Vec<usize> = pool.iter().copied().filter(|&i| labels[i] == c).collect();
        if members.len() < shots {
            return Err(Error::Labels(format!(
                "class `{name}` has {} labelled examples; {shots} shots need at least that many",
                members.len()
            )));
        }
        members.shuffle(&mut rng);
        train.extend_from_slice(&members[..shots]);
    }
    train.sort_unstable();
    let rest = pool
        .iter()
        .copied()
        .filter(|i| train.binary_search(i).is_err())
        .collect();
    Ok(Split { train, rest })
}

/// The few-shot draw for examples with label sets (`sets[i][c]`: example `i` carries label
/// `c`): for each label in turn, random examples of `pool` are added until the drawn ones
/// include `shots` that carry it and `shots` that do not, so every label, however common or
/// rare, is learnt from at least K of each; the rest of the pool is held out. A label carried
/// (or missed) by no more than `shots` examples of the pool is an error: nothing of it would be
/// left to test on.
pub fn draw_label_shots(
    sets: &[Vec<bool>],
    labels: &[String],
    pool: &[usize],
    shots: usize,
    seed: u64,
) -> Result<Split, Error> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut drawn = vec![false; sets.len()];
    for (c, name) in labels.iter().enumerate() {
        for carried in [true, false] {
            let mut members: Vec<usize> = pool
                .iter()
                .copied()
                .filter(|&i| sets[i][c] == carried)
                .collect();
            if members.len() <= shots {
                return Err(Error::Labels(format!(
                    "{} examples {} label `{name}`; {shots} shots need more than that",
                    members.len(),
                    if carried { "carry" } else { "lack" }
                )));
            }
            let have = members.iter().filter(|&&i| drawn[i]).count();
            members.retain(|&i| !drawn[i]);
            members.shuffle(&mut rng);
            for &i in members.iter().take(shots.saturating_sub(have)) {
                drawn[i] = true;
            }
        }
    }
    let (train, rest) = pool.iter().partition(|&&i| drawn[i]);
    Ok(Split { train, rest })
}

/// How many of a class's `n` examples [`split_fraction`] holds out for `fraction`: the nearest
/// whole number, and at least one where the class has two or more to spare one.
pub fn held_out_count(n: usize, fraction: f64) -> usize {
    let count = (n as f64 * fraction).round() as usize;
    if count == 0 && n >= 2 && fraction > 0.0 {
        1
    } else {
        count
    }
}

/// Holds out `fraction` of each class for validation ([`held_out_count`] of each).
pub fn split_fraction(
    labels: &[usize],
    classes: &[String],
    pool: &[usize],
    fraction: f64,
    seed: u64,
) -> Split {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut train, mut rest) = (Vec::new(), Vec::new());
    for c in 0..classes.len() {
        let mut members: Vec<usize> = pool.iter().copied().filter(|&i| labels[i] == c).collect();
        members.shuffle(&mut rng);
        let n_val = held_out_count(members.len(), fraction);
        rest.extend_from_slice(&members[..n_val]);
        train.extend_from_slice(&members[n_val..]);
    }
    train.sort_unstable();
    rest.sort_unstable();
    Split { train, rest }
}

/// `pool` dealt into `k` folds for cross-validation, each class shuffled (seeded) and dealt in
/// turn from the fold after the last one it filled, so every fold holds its share of every class
/// (at least one of each when the class has `k` examples) and the folds differ in size by at
/// most one. Each fold is in ascending order.
pub fn folds(
    labels: &[usize],
    classes: usize,
    pool: &[usize],
    k: usize,
    seed: u64,
) -> Vec<Vec<usize>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = vec![Vec::new(); k.max(1)];
    let mut next = 0;
    for c in 0..classes {
        let mut members: Vec<usize> = pool.iter().copied().filter(|&i| labels[i] == c).collect();
        members.shuffle(&mut rng);
        for i in members {
            out[next].push(i);
            next = (next + 1) % out.len();
        }
    }
    for fold in &mut out {
        fold.sort_unstable();
    }
    out
}

/// At most `max` of `indices`, stratified by class in proportion, seeded. Used to keep
/// per-epoch validation cheap when thousands of picks are held out.
pub fn subsample(
    labels: &[usize],
    classes: usize,
    indices: &[usize],
    max: usize,
    seed: u64,
) -> Vec<usize> {
    if indices.len() <= max {
        return indices.to_vec();
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(max);
    for c in 0..classes {
        let mut members: Vec<usize> = indices
            .iter()
            .copied()
            .filter(|&i| labels[i] == c)
            .collect();
        let n = ((members.len() * max) as f64 / indices.len() as f64)
            .round()
            .max(1.0) as usize;
        members.shuffle(&mut rng);
        out.extend_from_slice(&members[..n.min(members.len())]);
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Vec<usize>, Vec<String>) {
        let labels: Vec<usize> = (0..100).map(|i| usize::from(i % 4 != 0)).collect();
        (labels, vec!["junk".into(), "particle".into()])
    }

    #[test]
    fn shots_are_per_class_seeded_and_disjoint_from_the_rest() {
        let (labels, classes) = setup();
        let pool: Vec<usize> = (0..100).collect();
        let a = draw_shots(&labels, &classes, &pool, 10, 7).unwrap();
        assert_eq!(a, draw_shots(&labels, &classes, &pool, 10, 7).unwrap());
        assert_ne!(
            a.train,
            draw_shots(&labels, &classes, &pool, 10, 8).unwrap().train
        );
        assert_eq!(a.train.iter().filter(|&&i| labels[i] == 0).count(), 10);
        assert_eq!(a.train.len() + a.rest.len(), 100);
        assert!(a.train.iter().all(|i| !a.rest.contains(i)));
        assert!(
            draw_shots(&labels, &classes, &pool, 26, 0).is_err(),
            "only 25 junk"
        );
    }

    #[test]
    fn fractions_and_subsamples_keep_every_class() {
        let (labels, classes) = setup();
        let pool: Vec<usize> = (0..100).collect();
        let s = split_fraction(&labels, &classes, &pool, 0.2, 1);
        assert_eq!(s.rest.len(), 20);
        assert_eq!(s.rest.iter().filter(|&&i| labels[i] == 0).count(), 5);
        let sub = subsample(&labels, 2, &pool, 40, 3);
        assert_eq!(sub.len(), 40);
        assert_eq!(sub.iter().filter(|&&i| labels[i] == 0).count(), 10);
    }

    #[test]
    fn a_held_out_share_rounds_and_spares_one_of_two() {
        assert_eq!(held_out_count(47, 0.2), 9);
        assert_eq!(held_out_count(48, 0.2), 10);
        assert_eq!(held_out_count(2, 0.2), 1);
        assert_eq!(held_out_count(1, 0.2), 0);
        assert_eq!(held_out_count(30, 0.0), 0);
    }

    #[test]
    fn folds_cover_the_pool_once_with_every_class_in_each() {
        let (labels, _) = setup();
        let pool: Vec<usize> = (0..100).filter(|i| i % 7 != 0).collect();
        let folds = folds(&labels, 2, &pool, 5, 4);
        assert_eq!(folds.len(), 5);
        let mut all: Vec<usize> = folds.concat();
        all.sort_unstable();
        assert_eq!(all, pool, "every pick in exactly one fold");
        let sizes: Vec<usize> = folds.iter().map(Vec::len).collect();
        assert!(
            sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
            "{sizes:?}"
        );
        for fold in &folds {
            let junk = fold.iter().filter(|&&i| labels[i] == 0).count();
            // 21 junk picks in the pool: 4 or 5 per fold.
            assert!((4..=5).contains(&junk), "{junk} junk in {fold:?}");
            assert!(fold.windows(2).all(|w| w[0] < w[1]));
        }
        assert_eq!(folds, super::folds(&labels, 2, &pool, 5, 4));
        assert_ne!(folds, super::folds(&labels, 2, &pool, 5, 5));
    }

    #[test]
    fn label_set_draws_have_k_with_and_k_without_each_label() {
        let labels: Vec<String> = ["common", "rare", "none"].map(String::from).to_vec();
        // `common` on 3 of 4 images, `rare` on 1 of 10, `none` on no image past the first 90.
        let sets: Vec<Vec<bool>> = (0..120)
            .map(|i| vec![i % 4 != 0, i % 10 == 0, i < 90 && i % 3 == 0])
            .collect();
        let pool: Vec<usize> = (0..120).collect();
        let split = draw_label_shots(&sets, &labels, &pool, 5, 3).unwrap();
        for (c, name) in labels.iter().enumerate() {
            let with = split.train.iter().filter(|&&i| sets[i][c]).count();
            assert!(with >= 5 && split.train.len() - with >= 5, "{name}: {with}");
        }
        assert_eq!(split.train.len() + split.rest.len(), 120);
        assert!(split.train.iter().all(|i| !split.rest.contains(i)));
        assert_eq!(
            split,
            draw_label_shots(&sets, &labels, &pool, 5, 3).unwrap()
        );
        assert_ne!(
            split,
            draw_label_shots(&sets, &labels, &pool, 5, 4).unwrap()
        );
        let err = draw_label_shots(&sets, &labels, &pool, 12, 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("12 examples carry label `rare`"), "{err}");
    }
}
