//! A picker directory, written and read only through [`PickerDir`]: `weights.safetensors`,
//! `picker.json` (how micrographs are prepared, the blob and suppression radii, the threshold
//! chosen on the validation micrographs, how training went, the weights' SHA-256, checked on
//! load), `history.csv` and `curves.png`. picker.json is written last, so a folder that has
//! one is whole.

use std::fs;
use std::path::{Path, PathBuf};

use cryoprune_image::normalize::MicrographNorm;
use cryoprune_model::classifier::{load_safetensors, to_safetensors};
use cryoprune_model::picker::{PickerArch, PickerNet};
use cryoprune_model::Pretrained;
use serde::{Deserialize, Serialize};

use crate::matching::Point;
use crate::modeldir::{
    check_weights_file, read_weights, sha256_hex, write_history, write_weights_and_spec,
    ModelDirError, WEIGHTS_FILE,
};
use crate::picker::Preparation;
use crate::trainer::EpochStats;

pub const SPEC_FILE: &str = "picker.json";
const HISTORY_FILE: &str = "history.csv";
const CURVES_FILE: &str = "curves.png";
const KIND: &str = "cryoprune picker";
pub const FORMAT_VERSION: u32 = 1;

/// picker.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PickerSpec {
    pub format_version: u32,
    pub kind: String,
    /// The network: `picker-fcn-24` (the picker's own) or `small`.
    pub network: String,
    /// What the network started from: `none`, or the backbone file and its SHA-256.
    #[serde(default = "from_scratch")]
    pub pretrained: String,
    /// Particle diameter in micrograph pixels.
    pub particle_diameter: f64,
    /// Å per pixel of the training micrographs (`--angpix`, or the first one's header), so
    /// that `pick` bins micrographs of another pixel size to the scale the network learnt;
    /// None where unknown (JPEGs, pickers from before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub angpix: Option<f64>,
    /// Micrograph pixels per binned pixel.
    pub bin: f64,
    /// Low-pass as given (`20A`, `0.5nyquist`), and as the fraction of the binned micrograph's
    /// Nyquist it came to on the training micrographs (what `pick` applies).
    pub lowpass: Option<String>,
    pub lowpass_fraction: Option<f64>,
    pub normalize: MicrographNorm,
    /// Target blob radius, micrograph pixels.
    pub target_radius: f64,
    /// Non-maximum suppression distance, micrograph pixels.
    pub min_distance: f64,
    /// Default score threshold (log-odds) for `pick`: the best F1 on the training and validation
    /// micrographs together (on the validation micrographs alone before 2026-12-05).
    pub threshold: f64,
    /// Views of each micrograph whose score maps are averaged (`picker::score`); pickers from
    /// before it existed scored one.
    #[serde(default = "one_view")]
    pub views: u8,
    pub training: PickerRecord,
    pub weights_file: String,
    pub weights_sha256: String,
}

fn one_view() -> u8 {
    1
}

/// Pickers from before `--network small` all started from scratch.
fn from_scratch() -> String {
    Pretrained::None.describe(None)
}

/// How the picker was trained and how it did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PickerRecord {
    pub train_micrographs: Vec<String>,
    pub validation_micrographs: Vec<String>,
    pub train_picks: usize,
    pub epochs: usize,
    pub best_epoch: usize,
    pub lr: f64,
    pub final_lr: f64,
    pub batch: usize,
    pub patch: usize,
    pub class_weights: bool,
    /// `bce`, or `pu` with the share of particles the picks hold.
    pub loss: String,
    /// The network's first stages kept as they started (0 in pickers from before it existed).
    pub frozen_stages: usize,
    pub seed: u64,
    /// Matching radius of the validation scores, micrograph pixels.
    pub match_radius: f64,
    /// The validation micrographs' picks at `threshold`.
    pub validation: Option<Point>,
    pub validation_average_precision: Option<f64>,
    /// The training micrographs' picks at `threshold` (None in pickers from before it was kept).
    pub train_at_threshold: Option<Point>,
    pub seconds: f64,
}

impl PickerSpec {
    /// What `pick` relies on: an edited or damaged picker.json would otherwise pick silently
    /// wrong (no picks at a negative low-pass, every peak kept at a negative distance).
    fn validate(&self) -> Result<(), String> {
        let positive = |v: f64| v > 0.0 && v.is_finite();
        let checks = [
            (
                positive(self.particle_diameter),
                "particle_diameter",
                self.particle_diameter,
                "a positive number of pixels",
            ),
            (
                self.bin >= 1.0 && self.bin.is_finite(),
                "bin",
                self.bin,
                "at least 1",
            ),
            (
                positive(self.target_radius),
                "target_radius",
                self.target_radius,
                "a positive number of pixels",
            ),
            (
                positive(self.min_distance),
                "min_distance",
                self.min_distance,
                "a positive number of pixels",
            ),
            (
                self.lowpass_fraction.is_none_or(positive),
                "lowpass_fraction",
                self.lowpass_fraction.unwrap_or(0.0),
                "a positive fraction of Nyquist",
            ),
        ];
        if let Some((_, field, value, expected)) = checks.into_iter().find(|c| !c.0) {
            return Err(format!("{field} is {value}; expected {expected}"));
        }
        check_weights_file(&self.weights_file)?;
        self.arch()?;
        if !(1..=8).contains(&self.views) {
            return Err(format!(
                "views is {}; expected 1 to 8 (a micrograph's rotations and flips)",
                self.views
            ));
        }
        Ok(())
    }

    /// The network picker.json names.
    fn arch(&self) -> Result<PickerArch, String> {
        self.network.parse()
    }

    /// How `pick` prepares a micrograph.
    pub fn preparation(&self) -> Preparation {
        Preparation {
            bin: self.bin,
            lowpass: self.lowpass_fraction,
            normalize: self.normalize,
        }
    }
}

pub struct PickerDir {
    path: PathBuf,
}

impl PickerDir {
    pub fn new(path: impl Into<PathBuf>) -> PickerDir {
        PickerDir { path: path.into() }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the folder (created if needed); picker.json last.
    pub fn save(
        &self,
        net: &PickerNet,
        spec: &mut PickerSpec,
        history: &[EpochStats],
    ) -> Result<(), ModelDirError> {
        fs::create_dir_all(&self.path).map_err(|e| ModelDirError::Io(self.path.clone(), e))?;
        write_history(&self.file(HISTORY_FILE), history)?;
        crate::plot::training_curves(
            history,
            spec.training.best_epoch,
            "validation picks' F1",
            &self.file(CURVES_FILE),
        )?;
        let weights = self.file(WEIGHTS_FILE);
        let bytes = to_safetensors(net).map_err(|e| ModelDirError::Weights(weights.clone(), e))?;
        spec.format_version = FORMAT_VERSION;
        spec.kind = KIND.into();
        spec.weights_file = WEIGHTS_FILE.into();
        spec.weights_sha256 = sha256_hex(&bytes);
        write_weights_and_spec(&weights, &bytes, &self.file(SPEC_FILE), spec)
    }

    /// The network (its weights' hash checked) and picker.json.
    pub fn load(&self) -> Result<(PickerNet, PickerSpec), ModelDirError> {
        let spec = self.spec()?;
        let arch = spec
            .arch()
            .map_err(|e| ModelDirError::Spec(self.file(SPEC_FILE), e))?;
        let weights = self.file(&spec.weights_file);
        let bytes = read_weights(&weights, &spec.weights_sha256)?;
        let mut net = PickerNet::seeded(arch, 0);
        load_safetensors(&mut net, bytes).map_err(|e| ModelDirError::Weights(weights, e))?;
        Ok((net, spec))
    }

    /// picker.json alone, checked (for what describes the picker without picking).
    pub fn spec(&self) -> Result<PickerSpec, ModelDirError> {
        let path = self.file(SPEC_FILE);
        if path.exists() {
            cryoprune_formats::error::ensure_regular(&path)?;
        } else if self.file(crate::modeldir::SPEC_FILE).exists() {
            return Err(ModelDirError::Spec(
                path,
                "missing; this folder holds a classifier (model.json) for `prune`, not a picker"
                    .into(),
            ));
        }
        let text = fs::read_to_string(&path).map_err(|e| ModelDirError::Io(path.clone(), e))?;
        let spec: PickerSpec = serde_json::from_str(&text)
            .map_err(|e| ModelDirError::Spec(path.clone(), e.to_string()))?;
        if spec.kind != KIND || spec.format_version != FORMAT_VERSION {
            return Err(ModelDirError::Spec(
                path,
                format!(
                    "kind `{}` version {}; expected `{KIND}` version {FORMAT_VERSION}",
                    spec.kind, spec.format_version
                ),
            ));
        }
        spec.validate().map_err(|e| ModelDirError::Spec(path, e))?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(network: PickerArch) -> PickerSpec {
        PickerSpec {
            format_version: 0,
            kind: String::new(),
            network: network.name().into(),
            pretrained: from_scratch(),
            particle_diameter: 32.0,
            angpix: None,
            bin: 1.0,
            lowpass: None,
            lowpass_fraction: None,
            normalize: MicrographNorm::MeanStd,
            target_radius: 8.0,
            min_distance: 16.0,
            threshold: 0.5,
            views: network.default_views(),
            training: PickerRecord::default(),
            weights_file: String::new(),
            weights_sha256: String::new(),
        }
    }

    fn history() -> Vec<EpochStats> {
        vec![EpochStats {
            epoch: 1,
            lr: 0.05,
            train_loss: 0.3,
            train_accuracy: 0.8,
            val_loss: Some(0.3),
            val_accuracy: Some(0.8),
            val_macro_f1: Some(0.7),
            seconds: 1.0,
        }]
    }

    #[test]
    fn each_network_loads_as_saved_and_a_folder_from_before_the_small_one_loads_as_fcn() {
        let dir = tempfile::tempdir().unwrap();
        for arch in [PickerArch::Fcn, PickerArch::Small] {
            let folder = PickerDir::new(dir.path().join(arch.to_string()));
            let net = PickerNet::seeded(arch, 4);
            folder.save(&net, &mut spec(arch), &history()).unwrap();
            let (loaded, s) = folder.load().unwrap();
            assert_eq!(s.network, arch.name());
            assert_eq!(
                (loaded.stride(), loaded.receptive_field()),
                (net.stride(), net.receptive_field())
            );
        }
        // The first pickers' picker.json had no `pretrained`; their weights are the fcn's.
        let fcn = dir.path().join("fcn").join(SPEC_FILE);
        let mut json: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&fcn).unwrap()).unwrap();
        json.as_object_mut().unwrap().remove("pretrained");
        fs::write(&fcn, json.to_string()).unwrap();
        let (net, s) = PickerDir::new(dir.path().join("fcn")).load().unwrap();
        assert_eq!(
            (net.stride(), s.pretrained.as_str()),
            (2, "none (random initialisation)")
        );
        // A network cryoprune does not know is refused in words.
        json["network"] = "resnet".into();
        fs::write(&fcn, json.to_string()).unwrap();
        let err = PickerDir::new(dir.path().join("fcn"))
            .load()
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected fcn or small"), "{err}");
    }

    #[test]
    fn an_edited_picker_json_is_refused_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let folder = PickerDir::new(dir.path());
        let net = PickerNet::seeded(PickerArch::Small, 1);
        folder
            .save(&net, &mut spec(PickerArch::Small), &history())
            .unwrap();
        let path = dir.path().join(SPEC_FILE);
        let saved: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        for (field, value, expected) in [
            ("views", json!(0), "views is 0; expected 1 to 8"),
            ("views", json!(9), "views is 9"),
            (
                "min_distance",
                json!(-1.0),
                "min_distance is -1; expected a positive",
            ),
            ("lowpass_fraction", json!(0.0), "lowpass_fraction is 0"),
            ("particle_diameter", json!(-3.0), "particle_diameter is -3"),
            ("target_radius", json!(0.0), "target_radius is 0"),
            ("bin", json!(0.5), "bin is 0.5; expected at least 1"),
            (
                "weights_file",
                json!("../weights.safetensors"),
                "inside the model folder",
            ),
        ] {
            let mut edited = saved.clone();
            edited[field] = value;
            fs::write(&path, edited.to_string()).unwrap();
            let err = folder.load().unwrap_err().to_string();
            assert!(
                err.contains(expected) && err.contains(SPEC_FILE),
                "{field}: {err}"
            );
        }
        fs::write(&path, saved.to_string()).unwrap();
        folder.load().unwrap();
    }
}
