//! A model directory, written and read only through [`ModelDir`]: `weights.safetensors`,
//! `model.json` (everything a later command needs to cut particles exactly as training did,
//! the typed training record, and the weights' SHA-256, so a swapped or truncated weights file
//! is caught before it classifies anything), `history.csv`, `validation.csv` (the held-out picks
//! with their probabilities, which prune's threshold advisor reads), and `curves.png`.

use std::fs;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use cryoprune_formats::atomic::write_atomic;
use cryoprune_model::classifier::{load_safetensors, to_safetensors};
use cryoprune_model::exposure_context::ExposureContext;
use cryoprune_model::{Classifier, ClassifierConfig, PickContext};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dataset::Dataset;
use crate::metrics::Report;
use crate::multilabel::MultiReport;
use crate::prep::Preprocessing;
use crate::trainer::{EpochStats, Scored, TrainConfig};

pub const WEIGHTS_FILE: &str = "weights.safetensors";
pub const SPEC_FILE: &str = "model.json";
const HISTORY_FILE: &str = "history.csv";
const VALIDATION_FILE: &str = "validation.csv";
const CURVES_FILE: &str = "curves.png";
/// Bumped when model.json changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;
/// model.json of an ensemble ([`ModelSpec::members`]): a version that reads only
/// [`FORMAT_VERSION`] would use the first network alone, so it must refuse the folder instead.
pub const ENSEMBLE_FORMAT_VERSION: u32 = 2;

/// How the model was trained and how it did, as model.json's `training` records it. Every
/// field has a default, so records of older versions load.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainingRecord {
    /// The trainer's settings; `None` only for a record that never had them.
    pub config: Option<TrainConfig>,
    /// Labelled picks per class drawn for training; `None` when a fraction was held out.
    pub shots: Option<usize>,
    pub train_picks: usize,
    /// Training picks per class, in the order of the model's classes (empty in older records).
    pub class_counts: Vec<usize>,
    pub validation_picks: usize,
    /// Cross-validated in this many folds: every labelled pick was also a validation pick,
    /// scored by the network trained on the other folds; the model itself learnt from all of
    /// them and is its last epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folds: Option<usize>,
    /// An ensemble of this many networks, each held out its own random share of the images
    /// (the first is the one whose curves, epoch and seconds the other fields record; the
    /// seconds are all of theirs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ensemble: Option<usize>,
    /// 1-based.
    pub best_epoch: usize,
    pub seconds: f64,
    pub device: String,
    /// The scores on every held-out pick, the pick context combined.
    pub validation: Option<Report>,
    /// A multi-label model's scores on the held-out images at its thresholds (which were
    /// chosen on those images).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_validation: Option<MultiReport>,
    /// The plain-words diagnosis of the curves.
    pub diagnosis: Vec<String>,
    /// The label files trained on.
    pub labels: Vec<PathBuf>,
    /// The adaptation to the dataset on its unlabelled picks, when there was one.
    pub adaptation: Option<AdaptationRecord>,
    /// Unlabelled picks per class that the first model was surest of and the model then
    /// learnt as labels of that class (`train --pseudo-labels`), in the model's class order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pseudo_labels: Option<Vec<usize>>,
}

/// The backbone's adaptation to the dataset before the labels: it learnt to tell the
/// unlabelled picks from random places on the same micrographs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdaptationRecord {
    /// The unlabelled pick files.
    pub picks: Vec<PathBuf>,
    /// Picks and random places trained on (the validation ones not counted).
    pub picked: usize,
    pub elsewhere: usize,
    pub epochs: usize,
    /// Accuracy of telling picks from random places, held-out ones, at the epoch kept.
    pub accuracy: f64,
    pub seconds: f64,
}

impl TrainingRecord {
    /// The class shares the network learnt as its prior: the training picks per class, each
    /// weighted by its class's loss weight. Older records without counts assumed balanced,
    /// which is what `--shots` trains on.
    pub fn prior(&self, classes: usize) -> Vec<f64> {
        let weights = self.config.as_ref().and_then(|c| c.class_weights.as_ref());
        let mass: Vec<f64> = (0..classes)
            .map(|c| {
                let n = self.class_counts.get(c).map_or(1.0, |&n| n as f64);
                n * weights
                    .and_then(|w| w.get(c))
                    .map_or(1.0, |&w| f64::from(w))
            })
            .collect();
        let total: f64 = mass.iter().sum();
        if self.class_counts.len() != classes || total <= 0.0 || total.is_nan() {
            return vec![1.0 / classes as f64; classes];
        }
        mass.iter().map(|m| m / total).collect()
    }
}

/// Everything in model.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelSpec {
    pub format_version: u32,
    /// The software that wrote it ("cryoprune 0.1.0").
    pub software: String,
    /// Class names; output index i is `classes[i]`.
    pub classes: Vec<String>,
    pub network: ClassifierConfig,
    pub preprocessing: Preprocessing,
    /// Where the backbone started from.
    pub pretrained: String,
    /// SHA-256 of the starting weights' file, so a model names exactly which backbone it was
    /// fine-tuned from; absent when it started from random weights (or in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrained_sha256: Option<String>,
    pub training: TrainingRecord,
    /// What the box does not show (the picker's score, the distance from the edge), combined
    /// with the network's probabilities; absent when training was told to use the image alone or
    /// the labelled picks had neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pick_context: Option<PickContext>,
    /// A multi-label model's thresholds, one per label (in `classes`' order): an image carries
    /// a label when its probability is at least the label's threshold. Absent for a model that
    /// chooses one class per image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<Vec<f32>>,
    /// A micrograph model's measured statistics combined with the network per label; absent
    /// for other models and when training was told to use the image alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposure_context: Option<ExposureContext>,
    pub weights_file: String,
    pub weights_sha256: String,
    /// The ensemble's other networks, beside the one above: the model's probabilities are the
    /// mean of all of theirs (each combined with its own measured statistics) and `thresholds`
    /// the mean of theirs. Empty for a single network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<Member>,
}

/// One more network of an ensemble: the same architecture and preprocessing as the model's,
/// trained on another share of the images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub weights_file: String,
    pub weights_sha256: String,
    /// Its measured statistics' regression and weights, fitted on its own training and
    /// held-out images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposure_context: Option<ExposureContext>,
}

/// The largest network input side a model may ask for: far above any particle box a network
/// classifies, far below what would exhaust memory when a batch of them is allocated.
const MAX_INPUT_SIZE: usize = 2048;

impl ModelSpec {
    /// Checks that the record agrees with itself, so a hand-edited or damaged model.json is one
    /// clear error on load instead of an index out of bounds (or wrong probabilities) later.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.classes.len();
        let multi_label = self.network.head.multi_label;
        if n < 2 && !(multi_label && n == 1) {
            return Err(format!(
                "{n} classes; a classifier needs at least 2 (a multi-label one at least 1 label)"
            ));
        }
        match &self.thresholds {
            None if multi_label => {
                return Err("a multi-label network without thresholds".into());
            }
            Some(_) if !multi_label => {
                return Err("thresholds given for a network that chooses one class".into());
            }
            Some(t) if t.len() != n || t.iter().any(|t| !(0.0..=1.0).contains(t)) => {
                return Err(format!(
                    "thresholds {t:?}: expected one probability per label for {n} labels"
                ));
            }
            _ => {}
        }
        for (i, c) in self.classes.iter().enumerate() {
            if c.trim().is_empty() || self.classes[..i].contains(c) {
                return Err(format!(
                    "class names must be distinct and not empty: {:?}",
                    self.classes
                ));
            }
        }
        if self.network.classes != n {
            return Err(format!(
                "network.classes is {} but {n} classes are named",
                self.network.classes
            ));
        }
        let head = &self.network.head;
        if !(1..=3).contains(&head.branches) || head.branch_weights.len() != head.branches {
            return Err(format!(
                "the head has {} branches and {} branch weights; expected 1 to 3 branches, one weight each",
                head.branches,
                head.branch_weights.len()
            ));
        }
        if head
            .branch_weights
            .iter()
            .any(|w| !(w.is_finite() && *w >= 0.0))
        {
            return Err(format!(
                "branch weights {:?} must be finite and not negative",
                head.branch_weights
            ));
        }
        let pre = &self.preprocessing;
        if self.network.in_channels != pre.planes() {
            return Err(format!(
                "the network takes {} input planes but the preprocessing makes {}",
                self.network.in_channels,
                pre.planes()
            ));
        }
        if pre.box_size < 2 || !(2..=MAX_INPUT_SIZE).contains(&pre.input_size) {
            return Err(format!(
                "box {} px and input {} px; expected a box of at least 2 px and an input of 2 to {MAX_INPUT_SIZE} px",
                pre.box_size, pre.input_size
            ));
        }
        if let Some(r) = pre.particle_radius {
            if !(r.is_finite() && r >= 0.0) {
                return Err(format!(
                    "particle_radius {r} must be a finite radius in pixels"
                ));
            }
        }
        let counts = &self.training.class_counts;
        if !counts.is_empty() && counts.len() != n {
            return Err(format!(
                "training.class_counts has {} entries for {n} classes",
                counts.len()
            ));
        }
        if let Some(ctx) = &self.pick_context {
            ctx.validate(n)?;
        }
        if let Some(ctx) = &self.exposure_context {
            if !pre.spectrum {
                return Err("exposure_context belongs to models of whole micrographs \
                            (preprocessing.spectrum true)"
                    .into());
            }
            ctx.validate(n, &cryoprune_image::exposure::FACTS)?;
        }
        if !self.members.is_empty() && !multi_label {
            return Err("an ensemble (members) of networks that choose one class".into());
        }
        let mut files = vec![&self.weights_file];
        for m in &self.members {
            if let Some(ctx) = &m.exposure_context {
                if self.exposure_context.is_none() {
                    return Err("a member weighs measured statistics the model does not".into());
                }
                ctx.validate(n, &cryoprune_image::exposure::FACTS)?;
            }
            files.push(&m.weights_file);
        }
        for (i, file) in files.iter().enumerate() {
            check_weights_file(file)?;
            if files[..i].contains(file) {
                return Err(format!("weights_file `{file}` is named twice"));
            }
        }
        Ok(())
    }

    /// Each network's measured statistics, the model's first: what
    /// [`ModelDir::load_ensemble`]'s networks pair with.
    pub fn exposure_contexts(&self) -> Vec<Option<&ExposureContext>> {
        std::iter::once(self.exposure_context.as_ref())
            .chain(self.members.iter().map(|m| m.exposure_context.as_ref()))
            .collect()
    }

    /// A spec for a network trained by this version; the weights' fields are filled on save.
    pub fn new(
        classes: Vec<String>,
        network: ClassifierConfig,
        preprocessing: Preprocessing,
        pretrained: String,
        training: TrainingRecord,
        pick_context: Option<PickContext>,
    ) -> ModelSpec {
        ModelSpec {
            format_version: FORMAT_VERSION,
            software: format!("cryoprune {}", env!("CARGO_PKG_VERSION")),
            classes,
            network,
            preprocessing,
            pretrained,
            pretrained_sha256: None,
            training,
            pick_context,
            thresholds: None,
            exposure_context: None,
            weights_file: WEIGHTS_FILE.into(),
            weights_sha256: String::new(),
            members: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelDirError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}: not a valid cryoprune model file: {1}")]
    Spec(PathBuf, String),
    #[error(
        "{0}: written by format version {1}; this cryoprune reads versions {FORMAT_VERSION} and {ENSEMBLE_FORMAT_VERSION}. Retrain or upgrade"
    )]
    Version(PathBuf, u32),
    #[error("{path}: SHA-256 is {found}, model.json says {expected}: the weights file was changed or damaged")]
    Hash {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("{0}: {1}")]
    Weights(PathBuf, String),
    #[error("{path}: line {line}: {what}")]
    Validation {
        path: PathBuf,
        line: usize,
        what: String,
    },
    #[error(transparent)]
    Write(#[from] cryoprune_formats::FormatError),
    #[error(transparent)]
    Plot(#[from] crate::Error),
}

/// One held-out pick of validation.csv: its label and the model's probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationPick {
    pub label: usize,
    pub probs: Vec<f32>,
}

/// What training leaves beside the weights.
pub struct TrainingFiles<'a> {
    pub history: &'a [EpochStats],
    pub validation: HeldOut<'a>,
}

/// The held-out examples and what the model made of them.
pub enum HeldOut<'a> {
    /// Picks and their scores (the pick context combined).
    Classes(&'a Dataset, &'a Scored),
    /// Images with label sets, their probabilities and the labels' thresholds.
    Labels(&'a Dataset, &'a [Vec<f32>], &'a [f32]),
}

/// A model directory on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDir {
    pub path: PathBuf,
}

/// The SHA-256 of `bytes` in lower-case hex, as model.json records weights.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl ModelDir {
    pub fn new(path: impl Into<PathBuf>) -> ModelDir {
        ModelDir { path: path.into() }
    }

    /// The first of `inputs` that saving into this folder would replace: a file in it named
    /// as one the model directory writes (an earlier model's validation.csv given as labels).
    pub fn first_replaced<'a>(&self, inputs: &'a [PathBuf]) -> Option<&'a PathBuf> {
        let canon = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let folder = canon(&self.path);
        inputs.iter().find(|input| {
            let name = input.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let written = [
                WEIGHTS_FILE,
                SPEC_FILE,
                HISTORY_FILE,
                VALIDATION_FILE,
                CURVES_FILE,
            ]
            .contains(&name)
                || (name.starts_with("weights_") && name.ends_with(".safetensors"));
            let parent = input
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            written && canon(parent) == folder
        })
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes everything into the folder (created if needed). Each file appears complete or
    /// not at all; model.json is written last, so a folder with a model.json is whole.
    pub fn save(
        &self,
        model: &Classifier,
        spec: &mut ModelSpec,
        files: &TrainingFiles,
    ) -> Result<(), ModelDirError> {
        fs::create_dir_all(&self.path).map_err(|e| ModelDirError::Io(self.path.clone(), e))?;
        write_history(&self.file(HISTORY_FILE), files.history)?;
        crate::plot::training_curves(
            files.history,
            spec.training.best_epoch,
            "validation macro-F1",
            &self.file(CURVES_FILE),
        )?;
        let path = self.file(VALIDATION_FILE);
        match files.validation {
            HeldOut::Classes(data, scored) => write_predictions(&path, data, scored)?,
            HeldOut::Labels(data, probs, thresholds) => {
                write_label_predictions(&path, data, probs, thresholds)?
            }
        }
        self.save_weights(model, spec)
    }

    /// The weights and model.json alone.
    pub fn save_weights(
        &self,
        model: &Classifier,
        spec: &mut ModelSpec,
    ) -> Result<(), ModelDirError> {
        let (weights, bytes, sha256) = self.serialise(model, WEIGHTS_FILE)?;
        spec.format_version = if spec.members.is_empty() {
            FORMAT_VERSION
        } else {
            ENSEMBLE_FORMAT_VERSION
        };
        spec.weights_file = WEIGHTS_FILE.into();
        spec.weights_sha256 = sha256;
        write_weights_and_spec(&weights, &bytes, &self.file(SPEC_FILE), spec)
    }

    /// `model`'s weights as the bytes of `file` in the folder (created if need be), with that
    /// file's path and the bytes' SHA-256.
    fn serialise(
        &self,
        model: &Classifier,
        file: &str,
    ) -> Result<(PathBuf, Vec<u8>, String), ModelDirError> {
        fs::create_dir_all(&self.path).map_err(|e| ModelDirError::Io(self.path.clone(), e))?;
        let path = self.file(file);
        let bytes = to_safetensors(model).map_err(|e| ModelDirError::Weights(path.clone(), e))?;
        let sha256 = sha256_hex(&bytes);
        Ok((path, bytes, sha256))
    }

    /// The `index`-th (from 2) network of an ensemble, written beside the first before
    /// model.json names it; returns its record for [`ModelSpec::members`].
    pub fn save_member(
        &self,
        model: &Classifier,
        index: usize,
        exposure_context: Option<ExposureContext>,
    ) -> Result<Member, ModelDirError> {
        let name = format!("weights_{index}.safetensors");
        let (path, bytes, sha256) = self.serialise(model, &name)?;
        write_atomic(&path, |w| w.write_all(&bytes))?;
        Ok(Member {
            weights_file: name,
            weights_sha256: sha256,
            exposure_context,
        })
    }

    /// model.json alone (for what needs only the preprocessing or the classes).
    pub fn spec(&self) -> Result<ModelSpec, ModelDirError> {
        let path = self.file(SPEC_FILE);
        if path.exists() {
            cryoprune_formats::error::ensure_regular(&path)?;
        } else if self.file(crate::pickerdir::SPEC_FILE).exists() {
            return Err(ModelDirError::Spec(
                path,
                "missing; this folder holds a particle picker (picker.json) for `pick`, not a \
                 classifier"
                    .into(),
            ));
        }
        let text = fs::read_to_string(&path).map_err(|e| ModelDirError::Io(path.clone(), e))?;
        let version: Option<u32> = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("format_version").and_then(|v| v.as_u64()))
            .map(|v| v as u32);
        if let Some(v) = version.filter(|&v| v != FORMAT_VERSION && v != ENSEMBLE_FORMAT_VERSION) {
            return Err(ModelDirError::Version(path, v));
        }
        let mut spec: ModelSpec = serde_json::from_str(&text)
            .map_err(|e| ModelDirError::Spec(path.clone(), e.to_string()))?;
        let members = spec.members.iter_mut().map(|m| &mut m.exposure_context);
        for ctx in std::iter::once(&mut spec.exposure_context)
            .chain(members)
            .flatten()
        {
            ctx.align_to(&cryoprune_image::exposure::FACTS)
                .map_err(|e| ModelDirError::Spec(path.clone(), e))?;
        }
        spec.validate().map_err(|e| ModelDirError::Spec(path, e))?;
        Ok(spec)
    }

    /// The network with its weights (their hash checked) and model.json.
    pub fn load(&self, device: &Device) -> Result<(Classifier, ModelSpec), ModelDirError> {
        let spec = self.spec()?;
        let model = self.network(&spec, &spec.weights_file, &spec.weights_sha256, device)?;
        Ok((model, spec))
    }

    /// Every network of the model (one unless it is an ensemble), the first the one
    /// [`Self::load`] gives, each file's hash checked; in the order of
    /// [`ModelSpec::exposure_contexts`].
    pub fn load_ensemble(
        &self,
        device: &Device,
    ) -> Result<(Vec<Classifier>, ModelSpec), ModelDirError> {
        let (first, spec) = self.load(device)?;
        let mut networks = vec![first];
        for m in &spec.members {
            networks.push(self.network(&spec, &m.weights_file, &m.weights_sha256, device)?);
        }
        Ok((networks, spec))
    }

    /// `spec`'s network with the weights of `file`, refused unless their SHA-256 is `sha256`.
    fn network(
        &self,
        spec: &ModelSpec,
        file: &str,
        sha256: &str,
        device: &Device,
    ) -> Result<Classifier, ModelDirError> {
        let path = self.file(file);
        let bytes = read_weights(&path, sha256)?;
        let mut model = spec.network.init(device);
        load_safetensors(&mut model, bytes).map_err(|e| ModelDirError::Weights(path, e))?;
        Ok(model)
    }

    /// The training curves as PNG bytes, when the folder has them.
    pub fn curves_png(&self) -> Option<Vec<u8>> {
        fs::read(self.file(CURVES_FILE)).ok()
    }

    /// The held-out picks of validation.csv in `classes`' order; `None` when there is none.
    pub fn validation(
        &self,
        classes: &[String],
    ) -> Result<Option<Vec<ValidationPick>>, ModelDirError> {
        let path = self.file(VALIDATION_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let bad = |line: usize, what: String| ModelDirError::Validation {
            path: path.clone(),
            line,
            what,
        };
        let mut r = csv::Reader::from_path(&path).map_err(|e| bad(1, e.to_string()))?;
        let header = r.headers().map_err(|e| bad(1, e.to_string()))?.clone();
        let col = |name: &str| {
            header
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| bad(1, format!("no `{name}` column")))
        };
        let label = col("label")?;
        let probs: Vec<usize> = classes
            .iter()
            .map(|c| col(&format!("p_{c}")))
            .collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        for (i, rec) in r.records().enumerate() {
            let line = i + 2;
            let rec = rec.map_err(|e| bad(line, e.to_string()))?;
            let p: Vec<f32> = probs
                .iter()
                .map(|&j| rec.get(j).and_then(|v| v.parse().ok()))
                .collect::<Option<_>>()
                .ok_or_else(|| bad(line, "a probability is not a number".into()))?;
            let l = rec.get(label).unwrap_or_default();
            let li = classes
                .iter()
                .position(|c| c == l)
                .ok_or_else(|| bad(line, format!("unknown class `{l}`")))?;
            out.push(ValidationPick {
                label: li,
                probs: p,
            });
        }
        Ok(Some(out))
    }
}

/// Writes the weights, then the spec that names their hash (each atomically): a folder whose
/// spec exists is whole.
pub(crate) fn write_weights_and_spec<S: Serialize>(
    weights: &Path,
    bytes: &[u8],
    spec_path: &Path,
    spec: &S,
) -> Result<(), ModelDirError> {
    write_atomic(weights, |w| w.write_all(bytes))?;
    let json = serde_json::to_vec_pretty(spec)
        .map_err(|e| ModelDirError::Spec(spec_path.to_path_buf(), e.to_string()))?;
    write_atomic(spec_path, |w| {
        w.write_all(&json)?;
        w.write_all(b"\n")
    })?;
    Ok(())
}

/// The weights file's bytes, refused unless their SHA-256 is `expected`.
/// A weights file named in a spec stays inside its folder: a spec naming `../x` would read
/// (or, saved again, write) outside it.
pub(crate) fn check_weights_file(file: &str) -> Result<(), String> {
    let weights = Path::new(file);
    if weights.components().count() != 1 || weights.file_name().is_none() {
        return Err(format!(
            "weights_file `{file}` must be a file name inside the model folder"
        ));
    }
    Ok(())
}

pub(crate) fn read_weights(path: &Path, expected: &str) -> Result<Vec<u8>, ModelDirError> {
    if path.exists() {
        cryoprune_formats::error::ensure_regular(path)?;
    }
    let bytes = fs::read(path).map_err(|e| ModelDirError::Io(path.to_path_buf(), e))?;
    let found = sha256_hex(&bytes);
    if found != expected {
        return Err(ModelDirError::Hash {
            path: path.to_path_buf(),
            expected: expected.to_string(),
            found,
        });
    }
    Ok(bytes)
}

pub(crate) fn write_history(path: &Path, history: &[EpochStats]) -> Result<(), ModelDirError> {
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
    write_atomic(path, |w| {
        writeln!(
            w,
            "epoch,lr,train_loss,train_accuracy,val_loss,val_accuracy,val_macro_f1,seconds"
        )?;
        for h in history {
            writeln!(
                w,
                "{},{:.3e},{:.6},{:.6},{},{},{},{:.3}",
                h.epoch,
                h.lr,
                h.train_loss,
                h.train_accuracy,
                opt(h.val_loss),
                opt(h.val_accuracy),
                opt(h.val_macro_f1),
                h.seconds
            )?;
        }
        Ok(())
    })?;
    Ok(())
}

/// One row per labelled particle: where it is, its label, the prediction and each class's
/// probability (`micrograph,x,y,label,predicted,p_<class>...`): validation.csv, and
/// `evaluate --predictions`.
pub fn write_predictions(
    path: &Path,
    data: &Dataset,
    scored: &Scored,
) -> Result<(), cryoprune_formats::FormatError> {
    write_atomic(path, |w| {
        write!(w, "micrograph,x,y,label,predicted")?;
        for c in &data.classes {
            write!(w, ",p_{c}")?;
        }
        writeln!(w)?;
        for (i, p) in scored.probs.iter().enumerate() {
            let o = &data.origins[i];
            write!(
                w,
                "{},{},{},{},{}",
                o.micrograph,
                o.x,
                o.y,
                data.classes[data.labels[i]],
                data.classes[scored.predicted[i]]
            )?;
            for v in p {
                write!(w, ",{v:.5}")?;
            }
            writeln!(w)?;
        }
        Ok(())
    })
}

/// One row per image of a multi-label set: the image, the labels it carries, those called at
/// `thresholds`, and each label's probability (`image,labels,predicted,p_<label>...`, label sets
/// `;`-separated): a multi-label model's validation.csv, and its `evaluate --predictions`.
pub fn write_label_predictions(
    path: &Path,
    data: &Dataset,
    probs: &[Vec<f32>],
    thresholds: &[f32],
) -> Result<(), cryoprune_formats::FormatError> {
    let names = |on: &mut dyn Iterator<Item = bool>| -> String {
        on.zip(&data.classes)
            .filter(|(on, _)| *on)
            .map(|(_, c)| c.as_str())
            .collect::<Vec<_>>()
            .join(";")
    };
    let truth = data.label_sets();
    write_atomic(path, |w| {
        write!(w, "image,labels,predicted")?;
        for c in &data.classes {
            write!(w, ",p_{c}")?;
        }
        writeln!(w)?;
        for (i, p) in probs.iter().enumerate() {
            let carried = names(&mut truth[i].iter().copied());
            let called = names(&mut p.iter().zip(thresholds).map(|(p, t)| p >= t));
            write!(w, "{},{carried},{called}", data.origins[i].micrograph)?;
            for v in p {
                write!(w, ",{v:.5}")?;
            }
            writeln!(w)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tensor};
    use cryoprune_image::extract::EdgePolicy;
    use cryoprune_image::fourier::Cutoff;
    use cryoprune_image::normalize::MicrographNorm;
    use cryoprune_model::pick_context::PickFacts;
    use cryoprune_model::Readout;
    use cryoprune_model::{Arch, HeadConfig};

    fn spec(network: ClassifierConfig) -> ModelSpec {
        let pre = Preprocessing {
            box_size: 180,
            input_size: 32,
            normalize: MicrographNorm::ROBUST,
            lowpass: Some(Cutoff::Angstrom(20.0)),
            angpix: Some(1.77),
            particle_radius: Some(12.0),
            invert: false,
            edge: EdgePolicy::Skip,
            spectrum: false,
        };
        let classes = vec!["junk".into(), "particle".into()];
        let training = TrainingRecord {
            best_epoch: 1,
            ..TrainingRecord::default()
        };
        ModelSpec::new(classes, network, pre, "none".into(), training, None)
    }

    #[test]
    fn an_input_the_model_would_replace_is_found() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ModelDir::new(tmp.path().join("model"));
        fs::create_dir(&dir.path).unwrap();
        let kept = dir.path.join("labels.csv");
        let replaced = dir.path.join("./validation.csv");
        let elsewhere = tmp.path().join("validation.csv");
        for p in [&kept, &replaced, &elsewhere] {
            fs::write(p, "micrograph,x,y,label\n").unwrap();
        }
        assert_eq!(dir.first_replaced(&[kept.clone(), elsewhere.clone()]), None);
        assert_eq!(
            dir.first_replaced(&[kept, replaced.clone(), elsewhere]),
            Some(&replaced)
        );
        let member = dir.path.join("weights_2.safetensors");
        assert_eq!(
            dir.first_replaced(std::slice::from_ref(&member)),
            Some(&member)
        );
    }

    #[test]
    fn the_learnt_prior_is_the_training_mix_with_its_loss_weights() {
        let mut r = TrainingRecord {
            class_counts: vec![30, 90],
            ..TrainingRecord::default()
        };
        assert_eq!(r.prior(2), vec![0.25, 0.75]);
        // Weighting junk 3x makes the loss see the classes as balanced.
        let mut config: TrainConfig = serde_json::from_str(
            r#"{"epochs": 15, "batch": 24, "repeats": 2,
                "schedule": {"kind": "step", "initial": 0.01, "every": 7, "gamma": 0.1},
                "momentum": 0.9, "weight_decay": 0.0, "class_weights": null, "freeze_epochs": 0,
                "head": {"branches": 2, "branch_weights": [1.0, 0.5], "mean_of_branches": false},
                "augment": {"flip": true, "rot90": true, "rotate": false, "mask_radius": null},
                "seed": 0}"#,
        )
        .unwrap();
        config.class_weights = Some(vec![3.0, 1.0]);
        r.config = Some(config);
        assert_eq!(r.prior(2), vec![0.5, 0.5]);
        // Records from before the counts were kept assume balanced shots.
        assert_eq!(TrainingRecord::default().prior(3), vec![1.0 / 3.0; 3]);
    }

    #[test]
    fn saved_model_loads_back_identical_and_a_changed_file_is_refused() {
        let device = Device::flex();
        let network = ClassifierConfig {
            in_channels: 1,
            arch: Arch::Small,
            classes: 2,
            head: HeadConfig::new(3),
        };
        let model = network.init(&device);
        let tmp = tempfile::tempdir().unwrap();
        let dir = ModelDir::new(tmp.path());
        let mut s = spec(network);
        dir.save_weights(&model, &mut s).unwrap();
        assert_eq!(s.weights_sha256.len(), 64);
        let (back, spec_back) = dir.load(&device).unwrap();
        assert_eq!(spec_back.preprocessing, s.preprocessing);
        assert_eq!(spec_back.network, s.network);
        assert_eq!(spec_back.training.best_epoch, 1);
        let x = Tensor::<4>::random([2, 1, 32, 32], Distribution::Normal(0.0, 1.0), &device);
        let a = model
            .probabilities(x.clone(), Readout::single_label(true))
            .into_data();
        let b = back
            .probabilities(x, Readout::single_label(true))
            .into_data();
        assert_eq!(a, b);
        assert_eq!(dir.validation(&s.classes).unwrap(), None);
        assert!(dir.curves_png().is_none());

        let weights = tmp.path().join(WEIGHTS_FILE);
        let mut bytes = fs::read(&weights).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&weights, bytes).unwrap();
        assert!(matches!(dir.load(&device), Err(ModelDirError::Hash { .. })));
        assert!(matches!(
            ModelDir::new(tmp.path().join("nowhere")).spec(),
            Err(ModelDirError::Io(..))
        ));
    }

    /// Each edit a hand or a damaged disk could make to model.json is one clear error on load
    /// that names the file, never a panic later.
    #[test]
    fn a_model_json_that_disagrees_with_itself_is_refused_on_load() {
        let network = ClassifierConfig {
            in_channels: 1,
            arch: Arch::Small,
            classes: 2,
            head: HeadConfig::new(2),
        };
        let tmp = tempfile::tempdir().unwrap();
        let dir = ModelDir::new(tmp.path());
        let mut good = spec(network);
        good.weights_file = WEIGHTS_FILE.into();
        good.pick_context = Some(
            PickContext::fit(
                &(0..40)
                    .map(|i| PickFacts {
                        score: Some(f64::from(i % 7)),
                        edge: Some(f64::from(i)),
                    })
                    .collect::<Vec<_>>(),
                &(0..40).map(|i| usize::from(i % 7 > 2)).collect::<Vec<_>>(),
                2,
            )
            .unwrap(),
        );
        let good = serde_json::to_value(&good).unwrap();
        use serde_json::json;
        let edits = [
            ("/classes", json!(["a", "b", "c"])),
            ("/classes", json!(["a", "a"])),
            ("/network/head/branches", json!(0)),
            ("/preprocessing/input_size", json!(65536)),
            ("/pick_context/intercept", json!([0.1])),
            ("/pick_context/terms/0/sd", json!(0)),
            ("/pick_context/terms/0/slope", json!([1, 2, 3])),
            ("/weights_file", json!("../../etc/passwd")),
        ];
        let path = tmp.path().join(SPEC_FILE);
        fs::write(&path, good.to_string()).unwrap();
        dir.spec().expect("the unedited record loads");
        for (what, value) in edits {
            let mut v = good.clone();
            *v.pointer_mut(what).expect(what) = value;
            fs::write(&path, v.to_string()).unwrap();
            match dir.spec() {
                Err(ModelDirError::Spec(p, msg)) => assert_eq!(p, path, "{what}: {msg}"),
                other => panic!("{what}: {other:?}"),
            }
        }
        // A picker's folder given where a classifier belongs says what it holds.
        fs::remove_file(&path).unwrap();
        fs::write(tmp.path().join(crate::pickerdir::SPEC_FILE), "{}").unwrap();
        let err = dir.spec().unwrap_err().to_string();
        assert!(
            err.contains("holds a particle picker (picker.json)"),
            "{err}"
        );
    }

    /// An ensemble's networks load back in order, each file's hash checked; its model.json
    /// carries the version an older cryoprune refuses, and a member that is no file of the
    /// folder, or the first network's file again, is refused.
    #[test]
    fn an_ensemble_loads_every_network_and_refuses_a_changed_or_misnamed_member() {
        let device = Device::flex();
        let network = ClassifierConfig {
            in_channels: 1,
            arch: Arch::Small,
            classes: 2,
            head: HeadConfig {
                multi_label: true,
                ..HeadConfig::new(2)
            },
        };
        let tmp = tempfile::tempdir().unwrap();
        let dir = ModelDir::new(tmp.path());
        let models: Vec<Classifier> = (0..3).map(|_| network.init(&device)).collect();
        let mut s = spec(network);
        s.thresholds = Some(vec![0.5, 0.4]);
        s.members = (1..3)
            .map(|i| dir.save_member(&models[i], i + 1, None).unwrap())
            .collect();
        dir.save_weights(&models[0], &mut s).unwrap();
        assert_eq!(s.format_version, ENSEMBLE_FORMAT_VERSION);
        assert_eq!(s.members[1].weights_file, "weights_3.safetensors");
        let (back, spec_back) = dir.load_ensemble(&device).unwrap();
        assert_eq!((back.len(), spec_back.exposure_contexts().len()), (3, 3));
        let x = Tensor::<4>::random([2, 1, 32, 32], Distribution::Normal(0.0, 1.0), &device);
        let readout = s.network.head.readout();
        for (a, b) in models.iter().zip(&back) {
            assert_eq!(
                a.probabilities(x.clone(), readout).into_data(),
                b.probabilities(x.clone(), readout).into_data()
            );
        }

        let path = tmp.path().join(SPEC_FILE);
        let good = fs::read_to_string(&path).unwrap();
        for (file, expected) in [
            ("../weights_2.safetensors", "inside"),
            (WEIGHTS_FILE, "twice"),
        ] {
            let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
            v["members"][1]["weights_file"] = serde_json::json!(file);
            fs::write(&path, v.to_string()).unwrap();
            let err = dir.spec().unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
        fs::write(&path, &good).unwrap();
        let member = tmp.path().join("weights_3.safetensors");
        let mut bytes = fs::read(&member).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&member, bytes).unwrap();
        assert!(
            dir.load(&device).is_ok(),
            "the first network alone is intact"
        );
        assert!(matches!(
            dir.load_ensemble(&device),
            Err(ModelDirError::Hash { path, .. }) if path == member
        ));
    }

    #[test]
    fn validation_picks_are_read_in_the_model_class_order_and_bad_rows_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ModelDir::new(tmp.path());
        let path = tmp.path().join(VALIDATION_FILE);
        fs::write(
            &path,
            "micrograph,x,y,label,predicted,p_junk,p_particle\nm,1,2,particle,junk,0.60000,0.40000\n",
        )
        .unwrap();
        let classes: Vec<String> = vec!["junk".into(), "particle".into()];
        let picks = dir.validation(&classes).unwrap().unwrap();
        assert_eq!(
            picks,
            vec![ValidationPick {
                label: 1,
                probs: vec![0.6, 0.4]
            }]
        );
        fs::write(
            &path,
            "micrograph,x,y,label,predicted,p_junk,p_particle\nm,1,2,dirt,junk,0.6,0.4\n",
        )
        .unwrap();
        let err = dir.validation(&classes).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("dirt"), "{err}");
    }
}
