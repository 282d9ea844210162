//! A model directory: `weights.safetensors` plus `model.json`, which records everything a later
//! command needs to preprocess particles exactly as training did, and the weights' SHA-256 so a
//! swapped or truncated weights file is caught before it classifies anything.

use std::fs;
use std::path::{Path, PathBuf};

use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use cryoprune_formats::atomic::write_atomic;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::classifier::{Classifier, ClassifierConfig};
use crate::pick_context::PickContext;

pub const WEIGHTS_FILE: &str = "weights.safetensors";
pub const SPEC_FILE: &str = "model.json";
/// Bumped when model.json changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;

/// How particles are cut and prepared before the network sees them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// Box cut from the micrograph, in micrograph pixels.
    pub box_size: usize,
    /// Side of the network input; boxes are Fourier-resampled to it.
    pub input_size: usize,
    /// Micrograph normalisation: "none", "meanstd" or "robust:LOW,HIGH" (percentiles).
    pub normalize: String,
    /// Micrograph low-pass: null, "<Å>A" or "<fraction>nyquist".
    pub lowpass: Option<String>,
    /// Pixel size (Å) the Å low-pass was computed with, when known.
    pub angpix: Option<f64>,
    /// Particle background normalisation radius in input pixels (RELION style), null for none.
    pub particle_radius: Option<f64>,
    /// Contrast inversion.
    pub invert: bool,
    /// Edge boxes: "skip", "pad-mean" or "pad-noise".
    pub edge: String,
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
    /// Training settings and results, as the trainer recorded them.
    pub training: serde_json::Value,
    /// What the box does not show (the picker's score, the distance from the edge), combined
    /// with the network's probabilities; absent when training was told to use the image alone or
    /// the labelled picks had neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pick_context: Option<PickContext>,
    pub weights_file: String,
    pub weights_sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelDirError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}: not a cryoprune model.json: {1}")]
    Spec(PathBuf, String),
    #[error(
        "{0}: written by format version {1}; this cryoprune reads version {FORMAT_VERSION}. Retrain or upgrade"
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
    #[error(transparent)]
    Write(#[from] cryoprune_formats::FormatError),
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes the weights and model.json into `dir` (created if needed). Both files appear complete
/// or not at all; model.json is written last, so a directory with a model.json is whole.
pub fn save(dir: &Path, model: &Classifier, spec: &mut ModelSpec) -> Result<(), ModelDirError> {
    fs::create_dir_all(dir).map_err(|e| ModelDirError::Io(dir.to_owned(), e))?;
    let mut store = SafetensorsStore::from_bytes(None);
    model
        .save_into(&mut store)
        .map_err(|e| ModelDirError::Weights(dir.join(WEIGHTS_FILE), e.to_string()))?;
    let bytes = store
        .get_bytes()
        .map_err(|e| ModelDirError::Weights(dir.join(WEIGHTS_FILE), e.to_string()))?;
    spec.format_version = FORMAT_VERSION;
    spec.weights_file = WEIGHTS_FILE.into();
    spec.weights_sha256 = sha256_hex(&bytes);
    write_atomic(&dir.join(WEIGHTS_FILE), |w| w.write_all(&bytes))?;
    let json = serde_json::to_vec_pretty(spec)
        .map_err(|e| ModelDirError::Spec(dir.join(SPEC_FILE), e.to_string()))?;
    write_atomic(&dir.join(SPEC_FILE), |w| {
        w.write_all(&json)?;
        w.write_all(b"\n")
    })?;
    Ok(())
}

/// Reads model.json alone (for commands that only need the preprocessing or the classes).
pub fn read_spec(dir: &Path) -> Result<ModelSpec, ModelDirError> {
    let path = dir.join(SPEC_FILE);
    let text = fs::read_to_string(&path).map_err(|e| ModelDirError::Io(path.clone(), e))?;
    let version: Option<u32> = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("format_version").and_then(|v| v.as_u64()))
        .map(|v| v as u32);
    if let Some(v) = version.filter(|&v| v != FORMAT_VERSION) {
        return Err(ModelDirError::Version(path, v));
    }
    serde_json::from_str(&text).map_err(|e| ModelDirError::Spec(path, e.to_string()))
}

/// Loads a model directory: checks the weights' hash, builds the network and fills it.
pub fn load(dir: &Path, device: &Device) -> Result<(Classifier, ModelSpec), ModelDirError> {
    let spec = read_spec(dir)?;
    let path = dir.join(&spec.weights_file);
    let bytes = fs::read(&path).map_err(|e| ModelDirError::Io(path.clone(), e))?;
    let found = sha256_hex(&bytes);
    if found != spec.weights_sha256 {
        return Err(ModelDirError::Hash {
            path,
            expected: spec.weights_sha256.clone(),
            found,
        });
    }
    let mut model = spec.network.init(device);
    let mut store = SafetensorsStore::from_bytes(Some(bytes));
    let result = model
        .load_from(&mut store)
        .map_err(|e| ModelDirError::Weights(path.clone(), e.to_string()))?;
    if !result.errors.is_empty() || !result.missing.is_empty() {
        return Err(ModelDirError::Weights(
            path,
            format!(
                "does not fit the network in model.json ({} missing, {} errors)",
                result.missing.len(),
                result.errors.len()
            ),
        ));
    }
    Ok((model, spec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Arch, HeadConfig};
    use burn::tensor::{Distribution, Tensor};

    fn spec(network: ClassifierConfig) -> ModelSpec {
        ModelSpec {
            format_version: FORMAT_VERSION,
            software: "test".into(),
            classes: vec!["junk".into(), "particle".into()],
            network,
            preprocessing: Preprocessing {
                box_size: 180,
                input_size: 32,
                normalize: "robust".into(),
                lowpass: Some("20A".into()),
                angpix: Some(1.77),
                particle_radius: Some(12.0),
                invert: false,
                edge: "skip".into(),
            },
            pretrained: "none".into(),
            training: serde_json::json!({"epochs": 1}),
            pick_context: None,
            weights_file: String::new(),
            weights_sha256: String::new(),
        }
    }

    #[test]
    fn saved_model_loads_back_identical_and_a_changed_file_is_refused() {
        let device = Device::flex();
        let network = ClassifierConfig {
            arch: Arch::Small,
            classes: 2,
            head: HeadConfig::new(3),
        };
        let model = network.init(&device);
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec(network);
        save(dir.path(), &model, &mut s).unwrap();
        assert_eq!(s.weights_sha256.len(), 64);
        let (back, spec_back) = load(dir.path(), &device).unwrap();
        assert_eq!(spec_back.preprocessing, s.preprocessing);
        assert_eq!(spec_back.network, s.network);
        let x = Tensor::<4>::random([2, 1, 32, 32], Distribution::Normal(0.0, 1.0), &device);
        let a = model.probabilities(x.clone(), true).into_data();
        let b = back.probabilities(x, true).into_data();
        assert_eq!(a, b);

        let weights = dir.path().join(WEIGHTS_FILE);
        let mut bytes = fs::read(&weights).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&weights, bytes).unwrap();
        assert!(matches!(
            load(dir.path(), &device),
            Err(ModelDirError::Hash { .. })
        ));
        assert!(matches!(
            read_spec(&dir.path().join("nowhere")),
            Err(ModelDirError::Io(..))
        ));
    }
}
