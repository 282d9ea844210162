//! The deep picker's data and training: micrographs binned so a particle spans a fixed number
//! of pixels, low-passed and normalised; a blob of target pixels around every training pick;
//! patches with their targets turned and flipped together; a per-pixel cross-entropy with the
//! particle pixels weighted up (they are a few percent of a micrograph); and, after every
//! epoch, whole validation micrographs picked and matched to their picks, so the epoch kept and
//! the score threshold are the ones that pick best, not the ones with the lowest loss.

use std::time::Instant;

use cryoprune_image::fourier::{bin, lowpass, LowPass};
use cryoprune_image::normalize::MicrographNorm;
use cryoprune_image::Image;
use cryoprune_model::backprop::{PickerTrainer, SgdStep};
use cryoprune_model::picker::{FusedPicker, PickerNet, ScoreMap};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::matching::{match_greedy, Candidate, Curve, Point, PointGrid};
use crate::trainer::EpochStats;

/// How a micrograph is prepared for the picker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preparation {
    /// Binning factor (≥ 1).
    pub bin: f64,
    /// Low-pass cutoff as a fraction of the *binned* micrograph's Nyquist, if any.
    pub lowpass: Option<f64>,
    pub normalize: MicrographNorm,
}

/// A micrograph as the picker sees it.
pub struct Prepared {
    pub image: Image,
    /// Micrograph pixels per binned pixel, per axis.
    pub factor: (f64, f64),
    /// Binned pixels per score-map pixel: the network's stride.
    pub stride: usize,
}

impl Prepared {
    /// Bins, low-passes and normalises `image` for a network of stride `stride`.
    pub fn new(
        image: &Image,
        prep: &Preparation,
        stride: usize,
    ) -> Result<Prepared, cryoprune_image::Error> {
        let binned = bin(image, prep.bin)?;
        let mut image = binned.image;
        if let Some(f) = prep.lowpass.filter(|&f| f < 1.0) {
            image = lowpass(&image, &LowPass::new(f));
        }
        prep.normalize.apply(&mut image);
        Ok(Prepared {
            image,
            factor: (binned.factor_x, binned.factor_y),
            stride: stride.max(1),
        })
    }

    /// The binned pixel (centres at integers) at the centre of map pixel 0.
    fn offset(&self) -> f64 {
        (self.stride as f64 - 1.0) / 2.0
    }

    /// A micrograph position (pixel centres at integers) in score-map coordinates.
    pub fn to_map(&self, x: f64, y: f64) -> (f64, f64) {
        let s = self.stride as f64;
        (
            (x / self.factor.0 - self.offset()) / s,
            (y / self.factor.1 - self.offset()) / s,
        )
    }

    /// A score-map position in micrograph pixels.
    pub fn from_map(&self, u: f64, v: f64) -> (f64, f64) {
        let s = self.stride as f64;
        (
            (u * s + self.offset()) * self.factor.0,
            (v * s + self.offset()) * self.factor.1,
        )
    }

    /// Micrograph pixels per score-map pixel (the mean of the axes).
    pub fn map_pixel(&self) -> f64 {
        self.stride as f64 * (self.factor.0 + self.factor.1) / 2.0
    }

    /// 1 at every score-map pixel within `radius` map pixels of a pick (at least the nearest
    /// pixel), else 0, over the whole map ([`Prepared::map_size`]).
    pub fn targets(&self, picks: &[(f64, f64)], radius: f64) -> Vec<f32> {
        let (w, h) = self.map_size();
        let r = radius.max(std::f64::consts::FRAC_1_SQRT_2);
        let mut t = vec![0f32; w * h];
        for &(x, y) in picks {
            let (u, v) = self.to_map(x, y);
            let (y0, y1) = (
                (v - r).ceil().max(0.0) as usize,
                (v + r).floor().min(h as f64 - 1.0),
            );
            let (x0, x1) = (
                (u - r).ceil().max(0.0) as usize,
                (u + r).floor().min(w as f64 - 1.0),
            );
            if y1 < 0.0 || x1 < 0.0 {
                continue;
            }
            for j in y0..=y1 as usize {
                for i in x0..=x1 as usize {
                    if (i as f64 - u).hypot(j as f64 - v) <= r {
                        t[j * w + i] = 1.0;
                    }
                }
            }
        }
        t
    }

    pub fn map_size(&self) -> (usize, usize) {
        (
            self.image.nx.div_ceil(self.stride),
            self.image.ny.div_ceil(self.stride),
        )
    }
}

/// Local maxima of `map` at or above `floor`, strongest first, none within `min_distance` map
/// pixels of a stronger one (non-maximum suppression), each moved to the centroid of its 3×3
/// neighbourhood's probabilities. (u, v, log-odds) in map pixels.
pub fn peaks(map: &ScoreMap, floor: f32, min_distance: f64) -> Vec<(f64, f64, f32)> {
    let (w, h) = (map.w, map.h);
    let mut maxima: Vec<(usize, usize, f32)> = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let s = map.at(x, y);
            if s < floor || !s.is_finite() {
                continue;
            }
            let is_max = (y.saturating_sub(1)..(y + 2).min(h)).all(|j| {
                (x.saturating_sub(1)..(x + 2).min(w)).all(|i| {
                    let o = map.at(i, j);
                    // Plateaus: the first pixel in reading order wins.
                    o < s || (o == s && (j, i) >= (y, x))
                })
            });
            if is_max {
                maxima.push((x, y, s));
            }
        }
    }
    maxima.sort_by(|a, b| b.2.total_cmp(&a.2));
    let mut kept = PointGrid::new(min_distance.max(1.0));
    let mut out = Vec::new();
    for (x, y, s) in maxima {
        let (u, v) = centroid(map, x, y);
        if !kept.around(u, v).any(|(d, _)| d < min_distance) {
            kept.insert(u, v, out.len());
            out.push((u, v, s));
        }
    }
    out
}

fn centroid(map: &ScoreMap, x: usize, y: usize) -> (f64, f64) {
    let (mut sw, mut su, mut sv) = (0.0, 0.0, 0.0);
    for j in y.saturating_sub(1)..(y + 2).min(map.h) {
        for i in x.saturating_sub(1)..(x + 2).min(map.w) {
            let p = sigmoid(f64::from(map.at(i, j)));
            sw += p;
            su += p * i as f64;
            sv += p * j as f64;
        }
    }
    if sw > 0.0 {
        (su / sw, sv / sw)
    } else {
        (x as f64, y as f64)
    }
}

/// A micrograph with its picks, for training or validation.
pub struct Example {
    pub name: String,
    pub prepared: Prepared,
    /// Pick centres in micrograph pixels.
    pub picks: Vec<(f64, f64)>,
}

/// The training settings (the cryoSPARC guide's knobs).
#[derive(Debug, Clone, Copy)]
pub struct PickerTraining {
    pub epochs: usize,
    /// Learning rate at the first step, decaying exponentially to `final_lr` at the last.
    pub lr: f64,
    pub final_lr: f64,
    /// Patches per step.
    pub batch: usize,
    /// Patch side in binned pixels; at least three receptive fields of the network are used.
    pub patch: usize,
    /// Weight the particle pixels so they count as much as the rest together.
    pub class_weights: bool,
    pub loss: PixelLoss,
    /// Target blob radius in micrograph pixels.
    pub target_radius: f64,
    /// Picks closer than this (micrograph pixels) are one particle.
    pub min_distance: f64,
    /// Matching radius (micrograph pixels) for the validation scores.
    pub match_radius: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub seed: u64,
    /// Views of each micrograph whose scores `pick` averages (see [`score`]).
    pub views: u8,
    /// The network's first stages that keep their (pretrained) weights.
    pub frozen_stages: usize,
}

/// What the network is trained to minimise over the pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PixelLoss {
    /// Binary cross-entropy: every pixel without a target is background. Right when the
    /// training picks hold every particle of their micrographs.
    CrossEntropy,
    /// Positive-unlabelled (the non-negative risk of Kiryo et al. 2017): the pixels without a
    /// target are unlabelled, so particles the picks missed are not taught as background. The
    /// picks hold `completeness` (0-1] of the particles, which sets the prior: the share of
    /// pixels that are particle is the target pixels' share divided by it.
    PositiveUnlabelled { completeness: f64 },
}

/// The weighted binary cross-entropy (`weights` per pixel, 0 leaves one out) and its gradient.
pub fn cross_entropy(z: &[f32], targets: &[f32], weights: &[f32]) -> (f32, Vec<f32>) {
    let total: f64 = weights
        .iter()
        .map(|&w| f64::from(w))
        .sum::<f64>()
        .max(f64::MIN_POSITIVE);
    let mut loss = 0f64;
    let grad = z
        .iter()
        .zip(targets)
        .zip(weights)
        .map(|((&z, &y), &w)| {
            if w == 0.0 {
                return 0.0;
            }
            let (z, y, w) = (f64::from(z), f64::from(y), f64::from(w));
            loss += w * (softplus(z) - y * z);
            (w * (sigmoid(z) - y) / total) as f32
        })
        .collect();
    ((loss / total) as f32, grad)
}

/// The non-negative positive-unlabelled risk over the pixels with a non-zero weight: with P the
/// target pixels and U all of them (the marginal), π the prior and c the weight of the particle
/// class, R = c·π·E_P[ℓ(z, 1)] + max(0, E_U[ℓ(z, 0)] − π·E_P[ℓ(z, 0)]), ℓ the cross-entropy. The
/// second term estimates the background's risk from the unlabelled pixels by removing what the
/// particles among them contribute; where that estimate goes negative (overfitting the few
/// labelled pixels) it is clipped and passes no gradient, as in nnPU.
pub fn positive_unlabelled(
    z: &[f32],
    targets: &[f32],
    weights: &[f32],
    prior: f64,
    class_weight: f64,
) -> (f32, Vec<f32>) {
    let (mut n_p, mut n_u) = (0f64, 0f64);
    let (mut pos, mut neg_p, mut neg_u) = (0f64, 0f64, 0f64);
    for ((&z, &y), &w) in z.iter().zip(targets).zip(weights) {
        if w == 0.0 {
            continue;
        }
        let z = f64::from(z);
        n_u += 1.0;
        neg_u += softplus(z);
        if y > 0.5 {
            n_p += 1.0;
            pos += softplus(-z);
            neg_p += softplus(z);
        }
    }
    let n_u = n_u.max(1.0);
    let (p_term, neg_p_term) = if n_p > 0.0 {
        (pos / n_p, neg_p / n_p)
    } else {
        (0.0, 0.0)
    };
    let negative = neg_u / n_u - prior * neg_p_term;
    let risk = class_weight * prior * p_term + negative.max(0.0);
    let on = f64::from(u8::from(negative >= 0.0));
    let grad = z
        .iter()
        .zip(targets)
        .zip(weights)
        .map(|((&z, &y), &w)| {
            if w == 0.0 {
                return 0.0;
            }
            let s = sigmoid(f64::from(z));
            let mut g = on * s / n_u;
            if y > 0.5 {
                g += class_weight * prior * (s - 1.0) / n_p - on * prior * s / n_p;
            }
            g as f32
        })
        .collect();
    (risk as f32, grad)
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// log(1 + e^z), without overflow for either sign of z.
fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

/// What training gives.
pub struct Trained {
    pub net: PickerNet,
    pub history: Vec<EpochStats>,
    pub best_epoch: usize,
    /// Log-odds with the best F1 over the training and validation micrographs together (0,
    /// even odds, when no peak matched a pick).
    pub threshold: f64,
    /// The validation micrographs' picks at `threshold` (None without validation).
    pub validation: Option<Point>,
    pub validation_ap: Option<f64>,
    /// The training micrographs' picks at `threshold`.
    pub training: Point,
    /// Each labelled micrograph (validation first) at `threshold`.
    pub micrographs: Vec<MicrographFit>,
    /// The share of the training micrographs' map pixels that are targets.
    pub positive_fraction: f64,
}

/// Lowest log-odds a peak may have to enter the precision-recall curve: far below any useful
/// threshold, so the curve reaches the recall the network can give.
const PEAK_FLOOR: f32 = -8.0;

/// Trains `net` on `train`, keeping the epoch whose picks on `val` have the best F1 (the last
/// epoch without validation micrographs). `on_epoch` sees each epoch and may stop training.
pub fn train(
    net: PickerNet,
    train: &[Example],
    val: &[Example],
    s: &PickerTraining,
    mut on_epoch: impl FnMut(&EpochStats) -> std::ops::ControlFlow<()>,
) -> Trained {
    let mut trainer =
        PickerTrainer::new(&net, s.frozen_stages).expect("the picker's layers train on the CPU");
    let mut rng = StdRng::seed_from_u64(s.seed);
    let stride = net.stride();
    let rf = net.receptive_field();
    // At least three receptive fields, so the scored centre (less half a field each side) is
    // two fields wide.
    let patch = s.patch.max(3 * rf).next_multiple_of(stride);
    let margin = (rf / 2).div_ceil(stride);
    let out = patch / stride;
    let inner = (out - 2 * margin) * stride;
    let targets: Vec<Vec<f32>> = train
        .iter()
        .map(|e| {
            e.prepared
                .targets(&e.picks, s.target_radius / e.prepared.map_pixel())
        })
        .collect();
    let positives: f64 = targets.iter().flatten().map(|&t| f64::from(t)).sum();
    let pixels: usize = targets.iter().map(Vec::len).sum();
    let positive_fraction = positives / pixels.max(1) as f64;
    let pos_weight = if s.class_weights && positives > 0.0 {
        ((pixels as f64 - positives) / positives) as f32
    } else {
        1.0
    };
    // The positive-unlabelled risk weighs the particle class by its prior instead: balanced,
    // the particles' share of the risk is the background's.
    let prior = match s.loss {
        PixelLoss::PositiveUnlabelled { completeness } => {
            (positive_fraction / completeness.clamp(f64::MIN_POSITIVE, 1.0)).min(0.5)
        }
        PixelLoss::CrossEntropy => positive_fraction,
    };
    let pu_weight = if s.class_weights && prior > 0.0 {
        (1.0 - prior) / prior
    } else {
        1.0
    };
    // Enough patches that their scored centres cover every micrograph about once an epoch.
    let per_epoch: usize = train
        .iter()
        .map(|e| (e.prepared.image.nx.div_ceil(inner)) * (e.prepared.image.ny.div_ceil(inner)))
        .sum::<usize>()
        .max(s.batch);
    let steps_per_epoch = per_epoch.div_ceil(s.batch.max(1));
    let total_steps = (steps_per_epoch * s.epochs).max(1);
    let mut step = 0usize;
    let mut history = Vec::new();
    let mut best: Option<Best> = None;
    let mut net = net;
    for epoch in 1..=s.epochs {
        let start = Instant::now();
        let (mut loss_sum, mut correct) = (0.0, [0.0f64; 2]);
        let mut counted = [0.0f64; 2];
        let mut lr = s.lr;
        for _ in 0..steps_per_epoch {
            let mut images = Vec::with_capacity(s.batch);
            let mut t = Vec::with_capacity(s.batch * out * out);
            let mut w = Vec::with_capacity(s.batch * out * out);
            for _ in 0..s.batch.max(1) {
                let k = rng.random_range(0..train.len());
                let (img, tg, wt) = cut_patch(
                    &train[k].prepared,
                    &targets[k],
                    patch,
                    margin,
                    pos_weight,
                    &mut rng,
                );
                images.push(img);
                t.extend(tg);
                w.extend(wt);
            }
            lr = s.lr * (s.final_lr / s.lr).powf(step as f64 / total_steps as f64);
            step += 1;
            let refs: Vec<&[f32]> = images.iter().map(Vec::as_slice).collect();
            let sgd = SgdStep {
                lr,
                momentum: s.momentum,
                weight_decay: s.weight_decay,
            };
            let loss = |z: &[f32]| match s.loss {
                PixelLoss::CrossEntropy => cross_entropy(z, &t, &w),
                PixelLoss::PositiveUnlabelled { .. } => {
                    positive_unlabelled(z, &t, &w, prior, pu_weight)
                }
            };
            let out = trainer.step(&refs, patch, loss, &sgd);
            loss_sum += f64::from(out.loss);
            tally(&out.logits, &t, &w, &mut correct, &mut counted);
        }
        net = trainer.write(net);
        let fused = FusedPicker::new(&net);
        let mut stats = EpochStats {
            epoch,
            lr,
            train_loss: loss_sum / steps_per_epoch as f64,
            train_accuracy: balanced(&correct, &counted),
            val_loss: None,
            val_accuracy: None,
            val_macro_f1: None,
            seconds: 0.0,
        };
        if !val.is_empty() {
            let v = validate(&fused, val, s, pos_weight);
            stats.val_loss = Some(v.loss);
            stats.val_accuracy = Some(v.accuracy);
            stats.val_macro_f1 = Some(v.best.map_or(0.0, |p| p.f1));
        }
        stats.seconds = start.elapsed().as_secs_f64();
        let score = stats.val_macro_f1.unwrap_or(epoch as f64);
        // Ties go to the later epoch, as in the classifier's training: a few validation picks
        // often score the same F1 from the first epoch on, and the first epoch's threshold,
        // fitted to a barely trained network, carries worst to other micrographs.
        if best.as_ref().is_none_or(|b| score >= b.score) {
            best = Some(Best {
                score,
                epoch,
                net: net.clone(),
            });
        }
        history.push(stats.clone());
        let stop = on_epoch(&stats).is_break() || !stats.train_loss.is_finite();
        if stop {
            break;
        }
    }
    let best = best.expect("at least one epoch");
    // The threshold is the best F1 over every micrograph with picks, the training ones too, in
    // the views `pick` will average. The validation micrographs alone are few (two by default),
    // and where their annotation is sparser or their ice odder than the rest, their best
    // threshold lands far from the one that picks best elsewhere; the training micrographs,
    // seen under random patches and turns rather than learnt pick by pick, triple the evidence
    // (BENCHMARKS.md, "Where the threshold comes from").
    let fused = FusedPicker::new(&best.net);
    let val_curves = picks_curves(&fused, val, s);
    let train_curves = picks_curves(&fused, train, s);
    let (val_curve, train_curve) = (merged(&val_curves), merged(&train_curves));
    let threshold = best_threshold(&merged([&val_curve, &train_curve]));
    let has_val = !val.is_empty();
    let micrographs = val
        .iter()
        .zip(&val_curves)
        .chain(train.iter().zip(&train_curves))
        .map(|(e, c)| MicrographFit {
            name: e.name.clone(),
            picks: e.picks.len(),
            point: c.at(Some(threshold)),
        })
        .collect();
    Trained {
        net: best.net,
        history,
        best_epoch: best.epoch,
        threshold,
        validation: has_val.then(|| val_curve.at(Some(threshold))),
        validation_ap: if has_val {
            val_curve.average_precision()
        } else {
            None
        },
        training: train_curve.at(Some(threshold)),
        micrographs,
        positive_fraction,
    }
}

/// One labelled micrograph's peaks at the chosen threshold against its picks.
#[derive(Debug, Clone)]
pub struct MicrographFit {
    pub name: String,
    pub picks: usize,
    pub point: Point,
}

impl MicrographFit {
    /// Peaks at the threshold per pick.
    fn found_per_pick(&self) -> f64 {
        self.point.picks as f64 / self.picks.max(1) as f64
    }
}

/// The micrographs where the network finds at least half as many particles again per pick as on
/// the median labelled micrograph (and at least ten more than their picks, so a few stray peaks
/// on a sparsely populated micrograph do not count). Either their picks are incomplete (a
/// micrograph picked more sparsely than the rest teaches its missed particles as background
/// and, as validation, pulls the threshold towards precision), or something on them looks like
/// particles to the network; the counts cannot tell which, so the user should look. Needs three
/// micrographs for a median to mean anything; picks missing particles everywhere alike cannot
/// be seen this way.
pub fn outlying_micrographs(fits: &[MicrographFit]) -> Vec<&MicrographFit> {
    if fits.len() < 3 {
        return Vec::new();
    }
    let mut ratios: Vec<f64> = fits.iter().map(MicrographFit::found_per_pick).collect();
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    fits.iter()
        .filter(|f| f.found_per_pick() >= 1.5 * median && f.point.picks >= f.picks + 10)
        .collect()
}

/// The log-odds with the best F1 on `curve`; 0 (even odds) when no peak matched a pick.
fn best_threshold(curve: &Curve) -> f64 {
    curve.best().and_then(|p| p.threshold).unwrap_or(0.0)
}

/// The peaks of each micrograph of `examples` (down to [`PEAK_FLOOR`], under `s.views` as
/// `pick` scores them) matched to its picks.
fn picks_curves(fused: &FusedPicker, examples: &[Example], s: &PickerTraining) -> Vec<Curve> {
    examples
        .iter()
        .map(|e| {
            let mut curve = Curve::default();
            add_peaks(&mut curve, e, &score(fused, &e.prepared, s.views), s);
            curve
        })
        .collect()
}

fn merged<'a>(curves: impl IntoIterator<Item = &'a Curve>) -> Curve {
    let mut all = Curve::default();
    for c in curves {
        all.merge(c);
    }
    all
}

/// Adds the peaks of `map`, `e`'s score map, matched to `e`'s picks, to `curve`.
fn add_peaks(curve: &mut Curve, e: &Example, map: &ScoreMap, s: &PickerTraining) {
    let candidates = candidates(&e.prepared, map, s.min_distance, PEAK_FLOOR);
    let matched = match_greedy(&candidates, &e.picks, s.match_radius);
    curve.add(&candidates, &matched, e.picks.len());
}

/// The epoch kept so far.
struct Best {
    score: f64,
    epoch: usize,
    net: PickerNet,
}

/// Counts correct pixels per class (logit ≥ 0 for a particle) among the weighted ones.
fn tally(logits: &[f32], t: &[f32], w: &[f32], correct: &mut [f64; 2], counted: &mut [f64; 2]) {
    for ((&z, &y), &w) in logits.iter().zip(t).zip(w) {
        if w == 0.0 {
            continue;
        }
        let c = usize::from(y > 0.5);
        counted[c] += 1.0;
        if (z >= 0.0) == (c == 1) {
            correct[c] += 1.0;
        }
    }
}

/// The mean of the two classes' accuracies (a micrograph is mostly background, so plain
/// accuracy would be near 1 for a network that finds nothing).
fn balanced(correct: &[f64; 2], counted: &[f64; 2]) -> f64 {
    let rate = |c: usize| {
        if counted[c] > 0.0 {
            correct[c] / counted[c]
        } else {
            0.0
        }
    };
    (rate(0) + rate(1)) / 2.0
}

/// A random patch (partly outside the micrograph is allowed, zero there), its targets and the
/// pixel weights: 0 in the margin a padded convolution distorts and outside the micrograph.
fn cut_patch(
    p: &Prepared,
    targets: &[f32],
    patch: usize,
    margin: usize,
    pos_weight: f32,
    rng: &mut StdRng,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let img = &p.image;
    let (mw, mh) = p.map_size();
    let stride = p.stride as i64;
    let out = patch / p.stride;
    let m = margin as i64 * stride;
    // Origins keep at least one scored pixel inside the micrograph, on the stride's grid so
    // each map pixel sees the blocks it sees in `pick`.
    let on_grid = |v: i64| v.div_euclid(stride) * stride;
    let x0 = on_grid(rng.random_range(-m..=(img.nx as i64 - patch as i64 + m).max(-m)));
    let y0 = on_grid(rng.random_range(-m..=(img.ny as i64 - patch as i64 + m).max(-m)));
    let mut data = vec![0f32; patch * patch];
    for sy in 0..patch {
        let y = y0 + sy as i64;
        if y < 0 || y >= img.ny as i64 {
            continue;
        }
        for sx in 0..patch {
            let x = x0 + sx as i64;
            if x >= 0 && x < img.nx as i64 {
                data[sy * patch + sx] = img.get(x as usize, y as usize);
            }
        }
    }
    let (u0, v0) = (x0 / stride, y0 / stride);
    let mut t = vec![0f32; out * out];
    let mut w = vec![0f32; out * out];
    for j in margin..out - margin {
        let v = v0 + j as i64;
        if v < 0 || v >= mh as i64 {
            continue;
        }
        for i in margin..out - margin {
            let u = u0 + i as i64;
            if u < 0 || u >= mw as i64 {
                continue;
            }
            let y = targets[v as usize * mw + u as usize];
            t[j * out + i] = y;
            w[j * out + i] = if y > 0.5 { pos_weight } else { 1.0 };
        }
    }
    // One of the 8 symmetries of the square, the same for the patch and its maps.
    let turn = rng.random_range(0..8u8);
    (
        dihedral(&data, patch, turn),
        dihedral(&t, out, turn),
        dihedral(&w, out, turn),
    )
}

/// `a` (n × n) under symmetry `k`: bit 0 flips x, bit 1 flips y, bit 2 transposes. With patch
/// sides a multiple of the stride s this maps each s × s block of the patch onto the block of
/// the map pixel it feeds.
fn dihedral(a: &[f32], n: usize, k: u8) -> Vec<f32> {
    dihedral_sources(n, n, k)
        .into_iter()
        .map(|i| a[i])
        .collect()
}

/// The sides of a `w` × `h` image under symmetry `k`.
fn turned(w: usize, h: usize, k: u8) -> (usize, usize) {
    if k & 4 != 0 {
        (h, w)
    } else {
        (w, h)
    }
}

/// For each pixel of a `w` × `h` image under symmetry `k` (row-major, sides [`turned`]), the
/// index of the pixel of the image it shows.
fn dihedral_sources(w: usize, h: usize, k: u8) -> Vec<usize> {
    let (tw, th) = turned(w, h, k);
    let mut sources = Vec::with_capacity(tw * th);
    for y in 0..th {
        for x in 0..tw {
            let (mut sx, mut sy) = if k & 4 != 0 { (y, x) } else { (x, y) };
            if k & 1 != 0 {
                sx = w - 1 - sx;
            }
            if k & 2 != 0 {
                sy = h - 1 - sy;
            }
            sources.push(sy * w + sx);
        }
    }
    sources
}

struct Validation {
    loss: f64,
    accuracy: f64,
    best: Option<Point>,
}

/// Whole validation micrographs through the network, one view each (cheaper every epoch; the
/// threshold is chosen afterwards on the views `pick` averages): the weighted loss and balanced
/// accuracy over their pixels, and the best point of the picks' precision-recall curve.
fn validate(
    fused: &FusedPicker,
    val: &[Example],
    s: &PickerTraining,
    pos_weight: f32,
) -> Validation {
    let mut curve = Curve::default();
    let (mut loss, mut weight) = (0.0, 0.0);
    let (mut correct, mut counted) = ([0.0; 2], [0.0; 2]);
    for e in val {
        let p = &e.prepared;
        let map = score(fused, p, 1);
        let t = p.targets(&e.picks, s.target_radius / p.map_pixel());
        let w: Vec<f32> = t
            .iter()
            .map(|&y| if y > 0.5 { pos_weight } else { 1.0 })
            .collect();
        for ((&z, &y), &w) in map.data.iter().zip(&t).zip(&w) {
            let z = f64::from(z);
            loss += f64::from(w) * (z.max(0.0) + (-z.abs()).exp().ln_1p() - f64::from(y) * z);
            weight += f64::from(w);
        }
        tally(&map.data, &t, &w, &mut correct, &mut counted);
        add_peaks(&mut curve, e, &map, s);
    }
    Validation {
        loss: loss / weight.max(f64::MIN_POSITIVE),
        accuracy: balanced(&correct, &counted),
        best: curve.best(),
    }
}

/// The peaks of `map` at or above `floor` as picks in micrograph pixels.
pub fn candidates(p: &Prepared, map: &ScoreMap, min_distance: f64, floor: f32) -> Vec<Candidate> {
    peaks(map, floor, min_distance / p.map_pixel())
        .into_iter()
        .map(|(u, v, s)| {
            let (x, y) = p.from_map(u, v);
            Candidate {
                x,
                y,
                score: Some(f64::from(s)),
            }
        })
        .collect()
}

/// Runs a whole prepared micrograph through `fused`, under the first `views` of the 8
/// symmetries of the square (1: as it is; 2 adds the x flip; 4 every flip; 8 the transposes
/// too), and averages their log-odds in the micrograph's own orientation: the network was
/// trained on all 8, so each view is an equally good guess whose noise the others average out.
pub fn score(fused: &FusedPicker, p: &Prepared, views: u8) -> ScoreMap {
    let (w, h) = (p.image.nx, p.image.ny);
    let views = views.clamp(1, 8);
    if views == 1 {
        return fused.score_map(&p.image.data, w, h, 256, 4);
    }
    // Sides a multiple of the stride (the mean, zero, beyond), so that every view maps each
    // block of pixels onto the map pixel it feeds, as in training.
    let stride = fused.stride();
    let (ew, eh) = (w.next_multiple_of(stride), h.next_multiple_of(stride));
    let mut even = vec![0f32; ew * eh];
    for (row, src) in even.chunks_mut(ew).zip(p.image.data.chunks(w)) {
        row[..w].copy_from_slice(src);
    }
    let (mw, mh) = (ew / stride, eh / stride);
    let mut sum = vec![0f32; mw * mh];
    for k in 0..views {
        let (tw, th) = turned(ew, eh, k);
        let view: Vec<f32> = dihedral_sources(ew, eh, k)
            .into_iter()
            .map(|i| even[i])
            .collect();
        let map = fused.score_map(&view, tw, th, 256, 4);
        for (i, z) in dihedral_sources(mw, mh, k).into_iter().zip(map.data) {
            sum[i] += z;
        }
    }
    let n = f32::from(views);
    ScoreMap {
        w: mw,
        h: mh,
        data: sum.into_iter().map(|z| z / n).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryoprune_model::picker::PickerArch;

    /// The gradient of `f` at `z` by central differences, in f64 through the f32 interface.
    fn numeric(f: &dyn Fn(&[f32]) -> f32, z: &[f32]) -> Vec<f64> {
        (0..z.len())
            .map(|i| {
                let h = 1e-2f32;
                let (mut a, mut b) = (z.to_vec(), z.to_vec());
                a[i] += h;
                b[i] -= h;
                f64::from(f(&a) - f(&b)) / f64::from(2.0 * h)
            })
            .collect()
    }

    #[test]
    fn the_losses_gradients_match_finite_differences() {
        let z = [0.3f32, -1.2, 2.0, -0.4, 0.9, -2.5];
        let t = [1.0f32, 0.0, 1.0, 0.0, 0.0, 0.0];
        let w = [3.0f32, 1.0, 3.0, 0.0, 1.0, 1.0];
        let (_, g) = cross_entropy(&z, &t, &w);
        let n = numeric(&|z| cross_entropy(z, &t, &w).0, &z);
        for (a, b) in g.iter().zip(&n) {
            assert!((f64::from(*a) - b).abs() < 2e-3, "{g:?} vs {n:?}");
        }
        assert_eq!(g[3], 0.0, "a pixel of weight 0 gets no gradient");
        for prior in [0.05, 0.3] {
            let (_, g) = positive_unlabelled(&z, &t, &w, prior, 2.0);
            let n = numeric(&|z| positive_unlabelled(z, &t, &w, prior, 2.0).0, &z);
            for (a, b) in g.iter().zip(&n) {
                assert!(
                    (f64::from(*a) - b).abs() < 2e-3,
                    "prior {prior}: {g:?} vs {n:?}"
                );
            }
        }
    }

    #[test]
    fn the_unlabelled_risk_is_clipped_at_zero_and_a_zero_prior_is_plain_background() {
        // One particle pixel said particle, three unlabelled ones said background, and a prior
        // above the particles' share: the background estimate E_U − π·E_P goes negative, is
        // clipped, and only the particle term pushes (the unlabelled pixels get nothing).
        let (z, t, w) = (
            [6.0f32, -8.0, -8.0, -8.0],
            [1.0f32, 0.0, 0.0, 0.0],
            [1.0f32; 4],
        );
        let (risk, g) = positive_unlabelled(&z, &t, &w, 0.5, 1.0);
        assert!(
            risk > 0.0 && g[0] < 0.0 && g[1..] == [0.0; 3],
            "{risk} {g:?}"
        );
        // π = 0: every pixel is background, the cross-entropy against 0.
        let (z, t, w) = ([0.5f32, -1.0, 2.0], [1.0f32, 0.0, 0.0], [1.0f32, 1.0, 1.0]);
        let (a, _) = positive_unlabelled(&z, &t, &w, 0.0, 1.0);
        let (b, _) = cross_entropy(&z, &[0.0; 3], &w);
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }

    #[test]
    fn the_symmetries_keep_each_pixel_block_over_its_map_pixel() {
        // A 4×4 patch whose 2×2 blocks hold their map pixel's index, and the 2×2 map.
        let patch: Vec<f32> = (0..16)
            .map(|i| ((i / 4 / 2) * 2 + (i % 4) / 2) as f32)
            .collect();
        let map: Vec<f32> = (0..4).map(|i| i as f32).collect();
        for k in 0..8 {
            let (p, m) = (dihedral(&patch, 4, k), dihedral(&map, 2, k));
            for y in 0..4 {
                for x in 0..4 {
                    assert_eq!(p[y * 4 + x], m[(y / 2) * 2 + x / 2], "symmetry {k}");
                }
            }
        }
    }

    #[test]
    fn peaks_are_suppressed_within_the_distance_and_refined_between_pixels() {
        let mut map = ScoreMap {
            w: 20,
            h: 10,
            data: vec![-10.0; 200],
        };
        // A strong peak at (5, 5) shared with (6, 5), a weaker one 2 px away, one far away.
        map.data[5 * 20 + 5] = 4.0;
        map.data[5 * 20 + 6] = 4.0;
        map.data[5 * 20 + 8] = 2.0;
        map.data[2 * 20 + 15] = 1.0;
        let p = peaks(&map, -1.0, 3.0);
        assert_eq!(p.len(), 2, "{p:?}");
        // The background's tiny probabilities pull the centroids by under 1e-3 px.
        let near = |a: f64, b: f64| (a - b).abs() < 1e-3;
        assert!(
            near(p[0].0, 5.5) && near(p[0].1, 5.0) && p[0].2 == 4.0,
            "{p:?}"
        );
        assert!(
            near(p[1].0, 15.0) && near(p[1].1, 2.0) && p[1].2 == 1.0,
            "{p:?}"
        );
        assert_eq!(peaks(&map, 3.0, 3.0).len(), 1);
    }

    #[test]
    fn blobs_give_their_exact_centres_above_the_floor_and_outside_the_distance() {
        // Gaussian blobs of log-odds (σ = 1 px) on a background of −8, peaks 4, 2, 1 and −3;
        // the third 6 px from the second. Each one's 3×3 neighbourhood is symmetric but for
        // the others' far tails, so its centroid is its centre (to within 1e-4 px).
        let blobs = [
            (8.0, 7.0, 12.0),
            (20.0, 15.0, 10.0),
            (26.0, 15.0, 9.0),
            (33.0, 24.0, 5.0),
        ];
        let (w, h) = (40, 30);
        let mut map = ScoreMap {
            w,
            h,
            data: vec![-8.0; w * h],
        };
        for y in 0..h {
            for x in 0..w {
                for &(cx, cy, a) in &blobs {
                    let d2 = (x as f64 - cx).powi(2) + (y as f64 - cy).powi(2);
                    map.data[y * w + x] += (a * (-d2 / 2.0).exp()) as f32;
                }
            }
        }
        let centres = |floor: f32, min_distance: f64| -> Vec<(f64, f64, f32)> {
            let p = peaks(&map, floor, min_distance);
            for &(u, v, _) in &p {
                assert!(
                    blobs
                        .iter()
                        .any(|&(cx, cy, _)| (u - cx).abs() < 1e-4 && (v - cy).abs() < 1e-4),
                    "({u}, {v}) is no blob's centre"
                );
            }
            p
        };
        let at = |p: &[(f64, f64, f32)]| -> Vec<(f64, f64)> {
            p.iter().map(|&(u, v, _)| (u.round(), v.round())).collect()
        };
        let kept = centres(0.0, 5.0);
        assert_eq!(at(&kept), [(8.0, 7.0), (20.0, 15.0), (26.0, 15.0)]);
        assert!((kept[0].2 - 4.0).abs() < 1e-5 && (kept[2].2 - 1.0).abs() < 1e-5);
        // 6 px apart: one particle when the distance is 7, the stronger kept.
        assert_eq!(at(&centres(0.0, 7.0)), [(8.0, 7.0), (20.0, 15.0)]);
        // The weak blob (log-odds −3) once the floor is below it.
        assert_eq!(at(&centres(-5.0, 5.0))[3], (33.0, 24.0));
        assert!(centres(5.0, 5.0).is_empty());
    }

    #[test]
    fn averaged_views_turn_with_the_micrograph_and_keep_its_map_size() {
        let fused = FusedPicker::new(&PickerNet::seeded(PickerArch::Fcn, 3));
        let at = |image: Image| {
            let p = Prepared {
                image,
                factor: (1.0, 1.0),
                stride: 2,
            };
            score(&fused, &p, 8)
        };
        let (w, h) = (36, 28);
        let mut image = Image::zeros(w, h);
        for (i, v) in image.data.iter_mut().enumerate() {
            *v = (i * 7919 % 211) as f32 / 105.0 - 1.0;
        }
        let base = at(image.clone());
        assert_eq!((base.w, base.h), (18, 14));
        // Averaged over the whole group, the map of a flipped or transposed micrograph is the
        // map of the micrograph, flipped or transposed.
        for k in [1u8, 2, 4, 7] {
            let (tw, th) = turned(w, h, k);
            let mut turned_image = Image::zeros(tw, th);
            turned_image.data = dihedral_sources(w, h, k)
                .into_iter()
                .map(|i| image.data[i])
                .collect();
            let map = at(turned_image);
            let expected = dihedral_sources(base.w, base.h, k)
                .into_iter()
                .map(|i| base.data[i]);
            for (a, b) in map.data.iter().zip(expected) {
                assert!((a - b).abs() < 1e-4, "symmetry {k}: {a} vs {b}");
            }
        }
        // Odd sides: the map of one view, one pixel per two, rounded up.
        let odd = at(Image::zeros(35, 27));
        assert_eq!((odd.w, odd.h, odd.data.len()), (18, 14, 18 * 14));
    }

    #[test]
    fn the_threshold_is_the_best_over_training_and_validation_micrographs_together() {
        let c = |s: f64| Candidate {
            x: 0.0,
            y: 0.0,
            score: Some(s),
        };
        // Validation alone: its best threshold is 5 (F1 0.8; 0.57 at 2). The training
        // micrographs' particles just above 2 make 2.2 the best of both (F1 0.86 against 0.6
        // at 5).
        let mut val = Curve::default();
        val.add(
            &[c(6.0), c(5.0), c(3.0), c(2.0)],
            &[true, true, false, false],
            3,
        );
        let mut train = Curve::default();
        train.add(
            &[c(7.0), c(2.5), c(2.4), c(2.2), c(1.0)],
            &[true, true, true, true, false],
            4,
        );
        assert_eq!(val.best().and_then(|p| p.threshold), Some(5.0));
        assert_eq!(best_threshold(&merged([&val, &train])), 2.2);
        assert_eq!(best_threshold(&Curve::default()), 0.0);
    }

    #[test]
    fn a_micrograph_picked_more_sparsely_than_the_rest_is_named() {
        // Only the picks and the peaks found count here.
        let fit = |name: &str, picks: usize, found: usize| MicrographFit {
            name: name.into(),
            picks,
            point: Point {
                threshold: Some(1.92),
                picks: found,
                true_positives: 0,
                precision: 0.0,
                recall: 0.0,
                f1: 0.0,
            },
        };
        // EMPIAR-10017's six labelled micrographs at the default picker's threshold: 15_07_41
        // has 392 picks where the network finds 689 particles (1.76 per pick; median 1.12).
        let six = [
            fit("14_57_34", 695, 775),
            fit("15_07_41", 392, 689),
            fit("15_14_01", 639, 739),
            fit("15_27_22", 616, 609),
            fit("16_48_06", 648, 722),
            fit("16_55_40", 666, 744),
        ];
        let named: Vec<&str> = outlying_micrographs(&six)
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(named, ["15_07_41"]);
        // Too few micrographs to tell, a few stray peaks, and evenly sparse picks.
        assert!(outlying_micrographs(&six[..2]).is_empty());
        let mut stray = six.clone();
        stray[1] = fit("15_07_41", 4, 12);
        assert!(outlying_micrographs(&stray).is_empty());
        let even: Vec<MicrographFit> = (0..4).map(|i| fit(&i.to_string(), 300, 600)).collect();
        assert!(outlying_micrographs(&even).is_empty());
    }

    #[test]
    fn targets_and_coordinates_agree_both_ways() {
        let image = Image::zeros(64, 40);
        let prepared = Prepared::new(
            &image,
            &Preparation {
                bin: 2.0,
                lowpass: None,
                normalize: MicrographNorm::None,
            },
            2,
        )
        .unwrap();
        assert_eq!(prepared.map_size(), (16, 10));
        let (u, v) = prepared.to_map(21.0, 9.0);
        let (x, y) = prepared.from_map(u, v);
        assert!((x - 21.0).abs() < 1e-9 && (y - 9.0).abs() < 1e-9);
        let t = prepared.targets(&[(21.0, 9.0)], 1.0);
        // (21/2 − 0.5)/2 = 5, (9/2 − 0.5)/2 = 2: the pixel and its four neighbours.
        let on: Vec<usize> = (0..t.len()).filter(|&i| t[i] > 0.0).collect();
        assert_eq!(on, [16 + 5, 2 * 16 + 4, 2 * 16 + 5, 2 * 16 + 6, 3 * 16 + 5]);
        // Stride 8: map pixel u covers binned pixels 8u..8u+8, centred at 8u + 3.5.
        let eight = Prepared {
            stride: 8,
            ..prepared
        };
        assert_eq!(eight.map_size(), (4, 3));
        assert_eq!(eight.to_map(2.0 * 11.5, 2.0 * 3.5), (1.0, 0.0));
        let (x, y) = eight.from_map(0.25, 2.0);
        assert!((x - 2.0 * 5.5).abs() < 1e-9 && (y - 2.0 * 19.5).abs() < 1e-9);
    }
}
