//! The page's learning: a model scores every pick and the gallery shows first the picks it is
//! least sure of; once every class has a few labels, that model is trained in the background
//! with `train`'s own recipe, again whenever newer labels make the last one stale.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cryoprune_formats::PickFormat;
use cryoprune_image::pipeline::{Job, Pipeline};
use cryoprune_model::Classifier;
use cryoprune_train::modeldir::{ModelDir, ModelSpec};
use cryoprune_train::sampling::held_out_count;
use serde::{Deserialize, Serialize};

use super::{class_counts, Labels, Session};
use crate::compute::Compute;
use crate::events::{Event, Events};
use crate::labels::LabelsConfig;
use crate::recipe::{ClassWeights, NetConfig};
use crate::train::{TrainJobConfig, FEW_HELD_OUT};
use crate::{invalid, Context, Error, Result};

/// How uncertain the model is of a pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Uncertainty {
    /// The gap between the two most probable classes (small is uncertain).
    #[default]
    Margin,
    /// The entropy of all class probabilities (large is uncertain): with three or more classes
    /// it also weighs the classes the margin ignores.
    Entropy,
}

impl std::str::FromStr for Uncertainty {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "margin" => Ok(Uncertainty::Margin),
            "entropy" => Ok(Uncertainty::Entropy),
            _ => Err(format!("expected margin or entropy, not {s:?}")),
        }
    }
}

impl std::fmt::Display for Uncertainty {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            Uncertainty::Margin => "margin",
            Uncertainty::Entropy => "entropy",
        })
    }
}

impl Uncertainty {
    /// Sorting key of one pick's probabilities: smaller is more uncertain.
    pub fn key(self, p: &[f32]) -> f32 {
        match self {
            Uncertainty::Margin => {
                let (mut a, mut b) = (0.0f32, 0.0f32);
                for &v in p {
                    if v > a {
                        (a, b) = (v, a);
                    } else if v > b {
                        b = v;
                    }
                }
                a - b
            }
            Uncertainty::Entropy => p
                .iter()
                .filter(|&&v| v > 0.0)
                .map(|&v| v * v.ln())
                .sum::<f32>(),
        }
    }
}

/// The gallery's order and, once a model scored the picks, its prediction for each.
pub(super) struct Ranking {
    /// How the order was made, in words.
    pub how: String,
    pub order: Vec<usize>,
    /// The scoring model's classes.
    pub classes: Vec<String>,
    /// (class in `classes`, its probability) of each pick; empty before a model scored them.
    pub predicted: Vec<Option<(u16, f32)>>,
    /// The kinds of pick the order takes in turn when it is the typical order (made without a
    /// model); `None` for any other order.
    pub typical_kinds: Option<usize>,
    /// The young model whose predictions `predicted` holds while the typical order holds.
    pub scored_by: Option<PathBuf>,
}

impl Ranking {
    /// How the gallery is ordered, in words: `how`, and while a young model's predictions
    /// are shown beside the typical order, until when that order holds.
    pub fn words(&self) -> String {
        match (self.typical_kinds, &self.scored_by) {
            (Some(kinds), Some(dir)) => format!(
                "{}; held until the model learns from {kinds} labels, one a kind; predictions by {}",
                self.how,
                dir.display()
            ),
            _ => self.how.clone(),
        }
    }
}

/// What the background training is doing, as the page shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrainStatus {
    /// In words: waiting for labels, training (epoch), trained (validation) or what failed.
    pub text: String,
    pub running: bool,
    /// Fits finished so far.
    pub fits: usize,
    /// Labels per class (page order) the newest model was trained on.
    pub trained_on: Vec<usize>,
    /// The newest model's validation on the labels it held out, or, cross-validated, on
    /// every label scored by the fold that did not learn it.
    pub accuracy: Option<f64>,
    pub macro_f1: Option<f64>,
    pub held_out: usize,
    /// The folds the newest model was cross-validated in, if it was.
    pub folds: Option<usize>,
    /// The newest model's directory.
    pub model: Option<PathBuf>,
}

/// Folds the page cross-validates in while labels are few (see [`folds_for`]).
const FOLDS: usize = 5;

/// Fewer new labels than this share of a running fit's do not cancel it: with a fit per key,
/// a steady labeller would never see one finish.
const STALE_GROWTH: f64 = 0.25;
/// A burst of keys settles before a fit starts.
const SETTLE: Duration = Duration::from_millis(1500);

impl Session {
    /// Scores every pick with the model in `dir` and orders the gallery by it: the picks the
    /// model is least sure of first, but one kind of pick at a time (see
    /// `Session::diverse_order`). Runs while the page is in use; the gallery changes order
    /// when it is done.
    ///
    /// A model that learnt from fewer labels than the typical order has kinds only shows its
    /// predictions: the typical order holds until every kind could have a label. With a
    /// handful of labels, a typical pick of each kind teaches more than the picks a young
    /// model doubts (the low-budget regime of active learning): on simulated data, with the
    /// classes weighted ([`page_net`]), the 20 labels of the typical order trained 0.02-0.04
    /// macro-F1 better than those the first model's doubts chose (BENCHMARKS.md, the
    /// labelling page's order against chance).
    pub fn rank_with(&self, dir: &Path) -> Result<()> {
        use cryoprune_train::classify::classify_jobs;
        let (key, predicted, classes, learnt) =
            self.with_model(dir, |model, spec, pipeline, compute| {
                let jobs: Vec<Job> = self.mics.iter().map(|m| self.job(m)).collect();
                let mut key = vec![f32::INFINITY; self.items.len()];
                let mut predicted = vec![None; self.items.len()];
                classify_jobs(
                    model,
                    spec.classes.len(),
                    spec.network.head.readout(),
                    &pipeline,
                    &jobs,
                    64,
                    &compute.device.device,
                    |r| -> Result<()> {
                        for (k, p) in r.probs.iter().enumerate() {
                            let Ok(p) = p else { continue };
                            let id = self.mics[r.index].items[k];
                            key[id] = self.cfg.uncertainty.key(p);
                            let best = cryoprune_train::trainer::argmax(p);
                            predicted[id] = Some((best as u16, p[best]));
                        }
                        Ok(())
                    },
                )?;
                let learnt: usize = spec.training.class_counts.iter().sum();
                Ok((key, predicted, spec.classes.clone(), learnt))
            })?;
        let young = |r: &Ranking| r.typical_kinds.is_some_and(|k| learnt < k);
        // The doubts' order costs an embedding of every sampled pick: not made for a young model.
        // (An `if` drops the lock before its block; a `match` would hold it through.)
        let order = if young(&self.order.lock().unwrap_or_else(|e| e.into_inner())) {
            None
        } else {
            Some(self.diverse_order(dir, &key, &predicted, &classes)?)
        };
        let mut ranking = self.order.lock().unwrap_or_else(|e| e.into_inner());
        match order {
            // The typical order may have arrived meanwhile; it holds for a young model.
            Some(order) if !young(&ranking) => {
                *ranking = Ranking {
                    how: format!(
                        "most uncertain first, predicted classes and kinds in turn ({}, {})",
                        self.cfg.uncertainty,
                        dir.display()
                    ),
                    order,
                    classes,
                    predicted,
                    typical_kinds: None,
                    scored_by: None,
                }
            }
            _ => {
                ranking.classes = classes;
                ranking.predicted = predicted;
                ranking.scored_by = Some(dir.to_path_buf());
            }
        }
        Ok(())
    }

    /// Orders the gallery without a model's doubts (none scored the picks yet, or the model
    /// that did is young), unless a model has ordered it meanwhile: its order knows more.
    /// `typical_kinds`: the kinds the order takes in turn, if it is the typical order.
    pub(super) fn set_order(&self, how: &str, order: Vec<usize>, typical_kinds: Option<usize>) {
        let mut ranking = self.order.lock().unwrap_or_else(|e| e.into_inner());
        if ranking.predicted.is_empty() || ranking.typical_kinds.is_some() {
            *ranking = Ranking {
                how: how.into(),
                order,
                classes: std::mem::take(&mut ranking.classes),
                predicted: std::mem::take(&mut ranking.predicted),
                typical_kinds,
                scored_by: ranking.scored_by.take(),
            };
        }
    }

    /// Runs `f` with the model in `dir`, loaded on the session's device, inside the session's
    /// thread pool, and the pipeline that cuts particles as that model was trained on them.
    pub(super) fn with_model<T: Send>(
        &self,
        dir: &Path,
        f: impl FnOnce(&Classifier, &ModelSpec, Pipeline, &Compute) -> Result<T> + Send,
    ) -> Result<T> {
        let compute = self.cfg.compute.start(&crate::Silent)?;
        compute.install(&crate::Silent, || {
            let (model, spec) = ModelDir::new(dir)
                .load(&compute.device.device)
                .context_with(|| format!("loading the model in {}", dir.display()))?;
            if spec.thresholds.is_some() {
                invalid!(
                    "{}: a multi-label model; the page ranks picks by a model of one class each",
                    dir.display()
                );
            }
            let pipeline = cryoprune_train::prep::pipeline(&spec.preprocessing, compute.threads, 0);
            f(&model, &spec, pipeline, &compute)
        })
    }

    /// The newest model: the page's own once it has trained one, else `--model`.
    pub(super) fn newest_model(&self) -> Option<PathBuf> {
        self.train_status().model.or_else(|| self.cfg.model.clone())
    }

    /// The background trainer, until the process ends: waits for label changes, and once
    /// every class has `train_after` labels fits a model on them, saves it in the session's
    /// folder and orders the gallery with it.
    pub fn learn(self: &Arc<Self>) {
        let mut seen = 0;
        loop {
            let version = {
                let mut labels = self.labels.lock().unwrap_or_else(|e| e.into_inner());
                while labels.version == seen {
                    labels = self.changed.wait(labels).unwrap_or_else(|e| e.into_inner());
                }
                labels.version
            };
            seen = version;
            if let Some(short) = self.short_of_labels() {
                self.set_status(|s| s.text = short);
                continue;
            }
            std::thread::sleep(SETTLE);
            let snapshot = {
                let labels = self.labels.lock().unwrap_or_else(|e| e.into_inner());
                seen = labels.version;
                labels.of.clone()
            };
            if let Err(e) = self.fit_and_rank(&snapshot) {
                let text = match e {
                    Error::Train(cryoprune_train::Error::Stopped) => {
                        "newer labels: training again".to_string()
                    }
                    e => format!("training failed: {e}"),
                };
                self.set_status(|s| {
                    s.text = text;
                    s.running = false;
                });
            }
        }
    }

    /// Why the page cannot train yet, in words, or `None` when every class has enough labels.
    pub(super) fn short_of_labels(&self) -> Option<String> {
        let counts = self.counts();
        let need = self.cfg.train_after;
        if need == 0 {
            return Some("background training is off".into());
        }
        let short: Vec<String> = self
            .cfg
            .classes
            .iter()
            .zip(&counts)
            .filter(|(_, &n)| n < need)
            .map(|(c, n)| format!("{} more {c}", need - n))
            .collect();
        (!short.is_empty()).then(|| format!("training starts after {}", short.join(", ")))
    }

    pub(super) fn set_status(&self, f: impl FnOnce(&mut TrainStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub fn train_status(&self) -> TrainStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Where the page keeps what it makes: beside the labels file, named after it.
    pub fn workdir(&self) -> PathBuf {
        self.beside_out("cryoprune")
    }

    /// `<stem of --out>_<what>`, beside `--out`.
    fn beside_out(&self, what: &str) -> PathBuf {
        let out = &self.cfg.out;
        let stem = out
            .file_stem()
            .map_or("labels".into(), |s| s.to_string_lossy());
        out.with_file_name(format!("{stem}_{what}"))
    }

    /// Trains on the labels of `snapshot` with `train`'s recipe, replaces the session's model
    /// with the result and orders the gallery with it.
    fn fit_and_rank(&self, snapshot: &[Option<u8>]) -> Result<()> {
        let work = self.workdir();
        std::fs::create_dir_all(&work).map_err(|e| Error::Io(work.clone(), e))?;
        let counts = class_counts(snapshot, self.cfg.classes.len());
        let labels_csv = work.join("labels_fit.csv");
        self.write_labels(&labels_csv, &Labels::of(snapshot.to_vec()))?;
        let fitting = work.join("fit");
        let _ = std::fs::remove_dir_all(&fitting);
        let cfg = TrainJobConfig {
            compute: self.cfg.compute.clone(),
            labels: LabelsConfig {
                micrographs: self.cfg.micrographs.clone(),
                labels: vec![labels_csv],
                format: Some(PickFormat::Csv),
                images_inverted: false,
            },
            prep: self.cfg.prep.clone(),
            net: page_net(&self.cfg.net),
            out: fitting.clone(),
            folds: folds_for(&counts),
            ..TrainJobConfig::default()
        };
        let total: usize = counts.iter().sum();
        self.set_status(|s| {
            s.running = true;
            s.text = format!("training on {total} labels");
        });
        let events = FitEvents {
            session: self,
            snapshot,
            total,
            epochs: self.cfg.net.epochs,
            progress: Mutex::new((0, 0, "")),
        };
        let spec = crate::train::run(&cfg, &events)?;
        let model = work.join("model");
        let _ = std::fs::remove_dir_all(&model);
        std::fs::rename(&fitting, &model).map_err(|e| Error::Io(model.clone(), e))?;
        let validation = spec.training.validation.as_ref();
        self.set_status(|s| {
            s.fits += 1;
            s.trained_on = counts;
            s.accuracy = validation.map(|v| v.accuracy);
            s.macro_f1 = validation.map(|v| v.macro_f1);
            s.held_out = spec.training.validation_picks;
            s.folds = spec.training.folds;
            s.model = Some(model.clone());
            s.text = format!("trained on {total} labels; ordering the picks");
        });
        self.rank_with(&model)?;
        self.set_status(|s| {
            s.running = false;
            let whose = match spec.training.folds {
                Some(k) => format!("every label, cross-validated in {k} folds"),
                None => format!("{} held out", spec.training.validation_picks),
            };
            s.text = match validation {
                Some(v) => format!(
                    "trained on {total} labels: validation accuracy {:.2}, macro-F1 {:.2} ({whose})",
                    v.accuracy, v.macro_f1
                ),
                None => format!("trained on {total} labels (none held out)"),
            };
        });
        Ok(())
    }

    /// Copies the newest model to `dir` (default: beside the labels file, `<stem>_model`),
    /// whole or not at all; returns where it went.
    pub fn save_model(&self, dir: Option<PathBuf>) -> Result<PathBuf> {
        let Some(model) = self.newest_model() else {
            crate::invalid!("no model yet: label a few picks of every class first");
        };
        let dir = dir.unwrap_or_else(|| self.beside_out("model"));
        if dir == model {
            return Ok(dir);
        }
        static SAVES: AtomicU64 = AtomicU64::new(0);
        let name = dir
            .file_name()
            .map_or("model".into(), |n| n.to_string_lossy());
        let tmp = dir.with_file_name(format!(
            ".{name}.tmp{}",
            SAVES.fetch_add(1, Ordering::Relaxed)
        ));
        let copy = || -> std::io::Result<()> {
            std::fs::create_dir_all(&tmp)?;
            for entry in std::fs::read_dir(&model)? {
                let entry = entry?;
                if entry.file_type()?.is_file() {
                    std::fs::copy(entry.path(), tmp.join(entry.file_name()))?;
                }
            }
            if dir.exists() {
                std::fs::remove_dir_all(&dir)?;
            }
            std::fs::rename(&tmp, &dir)
        };
        copy().map_err(|e| {
            let _ = std::fs::remove_dir_all(&tmp);
            Error::Io(dir.clone(), e)
        })?;
        Ok(dir)
    }
}

/// A fit's events: epochs go to the page's status, and the fit stops when the labels moved on.
struct FitEvents<'a> {
    session: &'a Session,
    snapshot: &'a [Option<u8>],
    total: usize,
    epochs: usize,
    /// Work `train` announced (cross-validation's folds): done, in all, and of what.
    progress: Mutex<(u64, u64, &'static str)>,
}

impl Events for FitEvents<'_> {
    fn emit(&self, event: Event) {
        let text = {
            let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
            match event {
                Event::Started { total, unit } => {
                    *progress = (0, total, unit);
                    None
                }
                Event::Advanced(n) => {
                    progress.0 += n;
                    let (done, all, unit) = *progress;
                    Some(format!(
                        "training on {} labels: {done}/{all} {unit}",
                        self.total
                    ))
                }
                Event::Epoch(s) => Some(format!(
                    "training on {} labels: epoch {}/{}",
                    self.total, s.epoch, self.epochs
                )),
                _ => None,
            }
        };
        if let Some(text) = text {
            self.session.set_status(|st| st.text = text);
        }
    }

    fn cancelled(&self) -> bool {
        let labels = self
            .session
            .labels
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        stale(self.snapshot, &labels.of)
    }
}

/// The folds to cross-validate in with `counts` labels per class: while the rarest class has
/// too few for a held-out fifth to validate on, every label is scored by a network that did
/// not learn it, so the page's figures (and a saved model's `prune --prior dataset`) rest on
/// all of them, and the model learns from all of them. It costs a fit per fold.
pub fn folds_for(counts: &[usize]) -> usize {
    // What `train` would hold out of the rarest class, against the count it calls rough (a
    // fifth, rounded: under 48 labels).
    let held_out = |n: usize| held_out_count(n, TrainJobConfig::default().val_fraction);
    match counts.iter().min() {
        Some(&n) if n >= 2 && held_out(n) < FEW_HELD_OUT => FOLDS,
        _ => 0,
    }
}

/// The network recipe the page trains with: `net` (the `train` options given to `label`), the
/// classes weighted as if balanced unless `--class-weights` says otherwise. The page's labels
/// come in whatever shares the user met the classes in (the typical order finds mostly
/// particles), and a model fitted to those shares with a handful of labels calls the rarer
/// class too seldom; weighted, it assumes balanced classes as one trained on `--shots` does
/// (its record says so, for `prune --prior`). Weighted, and with the typical order held while
/// the model is young, the page's 20 labels trained 0.02-0.04 macro-F1 better on simulated data;
/// either alone was within noise (BENCHMARKS.md, the labelling page's order against chance).
pub fn page_net(net: &NetConfig) -> NetConfig {
    NetConfig {
        class_weights: Some(net.class_weights.clone().unwrap_or(ClassWeights::Balanced)),
        ..net.clone()
    }
}

/// A fit on `snapshot` is worth finishing unless a label it learns from has changed since or
/// the labels grew by more than [`STALE_GROWTH`].
fn stale(snapshot: &[Option<u8>], now: &[Option<u8>]) -> bool {
    let mut grown = 0usize;
    let mut had = 0usize;
    for (then, now) in snapshot.iter().zip(now) {
        match (then, now) {
            (Some(a), b) if Some(a) != b.as_ref() => return true,
            (Some(_), _) => had += 1,
            (None, Some(_)) => grown += 1,
            (None, None) => {}
        }
    }
    grown as f64 > STALE_GROWTH * had as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncertainty_orders_the_doubtful_first() {
        let sure = [0.9f32, 0.05, 0.05];
        let torn = [0.45f32, 0.45, 0.1];
        let spread = [0.4f32, 0.3, 0.3];
        for u in [Uncertainty::Margin, Uncertainty::Entropy] {
            assert!(u.key(&torn) < u.key(&sure), "{u}");
            assert!(u.key(&spread) < u.key(&sure), "{u}");
        }
        // The margin sees only the top two; the entropy sees the third class too.
        assert!(Uncertainty::Margin.key(&torn) < Uncertainty::Margin.key(&spread));
        assert!(Uncertainty::Entropy.key(&spread) < Uncertainty::Entropy.key(&torn));
        assert_eq!("entropy".parse(), Ok(Uncertainty::Entropy));
        assert!("max".parse::<Uncertainty>().is_err());
    }

    #[test]
    fn the_page_cross_validates_while_a_fifth_held_out_would_be_too_few() {
        assert_eq!(folds_for(&[5, 30]), FOLDS);
        assert_eq!(folds_for(&[120, 47]), FOLDS);
        // A fifth of 48 rounds to 10 held out, which `train` does not call rough.
        assert_eq!(folds_for(&[48, 400]), 0);
        // One label of a class cannot be scored by a network that did not learn it.
        assert_eq!(folds_for(&[1, 30]), 0);
    }

    #[test]
    fn the_page_weights_its_classes_as_balanced_unless_told_otherwise() {
        let net = page_net(&NetConfig::default());
        assert_eq!(net.class_weights, Some(ClassWeights::Balanced));
        assert_eq!(net.epochs, NetConfig::default().epochs);
        let given = NetConfig {
            class_weights: Some(ClassWeights::Given(vec![1.0, 1.0])),
            ..NetConfig::default()
        };
        assert_eq!(page_net(&given), given);
    }

    #[test]
    fn a_fit_goes_stale_on_a_changed_label_or_many_new_ones() {
        let snapshot: Vec<Option<u8>> = (0..20).map(|i| (i < 8).then_some(i as u8 % 2)).collect();
        assert!(!stale(&snapshot, &snapshot));
        // Two new labels on eight: finish the fit.
        let mut now = snapshot.clone();
        now[10] = Some(0);
        now[11] = Some(1);
        assert!(!stale(&snapshot, &now));
        // A third goes past a quarter.
        now[12] = Some(1);
        assert!(stale(&snapshot, &now));
        // A label it learns from, changed or undone.
        let mut changed = snapshot.clone();
        changed[3] = Some(0);
        assert!(stale(&snapshot, &changed));
        changed[3] = None;
        assert!(stale(&snapshot, &changed));
    }
}
