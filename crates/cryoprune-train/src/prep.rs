//! How particles are cut for a model ([`Preprocessing`], recorded in model.json) and the
//! extraction pipeline it gives, so every command cuts particles the way the model was trained
//! on them.

use cryoprune_image::extract::{EdgePolicy, ExtractConfig, ParticleNorm};
use cryoprune_image::fourier::Cutoff;
use cryoprune_image::normalize::MicrographNorm;
use cryoprune_image::pipeline::Pipeline;
use serde::{Deserialize, Serialize};

/// How particles are cut and prepared before the network sees them. The settings are typed;
/// in model.json they keep the spellings of the command line (`robust`, `20A`, `pad-noise`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// Box cut from the micrograph, in micrograph pixels.
    pub box_size: usize,
    /// Side of the network input; boxes are Fourier-resampled to it.
    pub input_size: usize,
    pub normalize: MicrographNorm,
    pub lowpass: Option<Cutoff>,
    /// Pixel size (Å) the Å low-pass was computed with, when known.
    pub angpix: Option<f64>,
    /// Particle background normalisation radius in input pixels (RELION style), null for none.
    pub particle_radius: Option<f64>,
    /// Contrast inversion.
    pub invert: bool,
    pub edge: EdgePolicy,
    /// Whole micrographs only: the micrograph's power spectrum (see
    /// [`cryoprune_image::power`]) as a second plane beside the binned micrograph.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub spectrum: bool,
}

impl Preprocessing {
    /// Planes per network input.
    pub fn planes(&self) -> usize {
        1 + usize::from(self.spectrum)
    }
}

/// The extraction pipeline `pre` describes, with `threads` workers and edge noise from `seed`.
pub fn pipeline(pre: &Preprocessing, threads: usize, seed: u64) -> Pipeline {
    let cfg = ExtractConfig {
        box_size: pre.box_size,
        out_size: pre.input_size,
        edge: pre.edge,
        norm: match pre.particle_radius {
            Some(radius) => ParticleNorm::Relion {
                radius,
                ramp: false,
            },
            None => ParticleNorm::None,
        },
        invert: pre.invert,
        seed,
    };
    let mut p = Pipeline::new(cfg, threads);
    p.norm = pre.normalize;
    p.lowpass = pre.lowpass;
    p.angpix = pre.angpix;
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_json_keeps_the_command_line_spellings() {
        let text = r#"{"box_size": 180, "input_size": 64, "normalize": "robust",
            "lowpass": "20A", "angpix": 1.77, "particle_radius": 24.0, "invert": false,
            "edge": "pad-noise"}"#;
        let pre: Preprocessing = serde_json::from_str(text).unwrap();
        assert_eq!(pre.normalize, MicrographNorm::ROBUST);
        assert_eq!(pre.lowpass, Some(Cutoff::Angstrom(20.0)));
        assert_eq!(pre.edge, EdgePolicy::PadNoise);
        let back = serde_json::to_value(&pre).unwrap();
        assert_eq!(back["normalize"], "robust");
        assert_eq!(back["lowpass"], "20A");
        assert_eq!(back["edge"], "pad-noise");
        let p = pipeline(&pre, 2, 0);
        assert_eq!((p.extract.box_size, p.extract.out_size), (180, 64));
        assert!(serde_json::from_str::<Preprocessing>(&text.replace("robust", "zscore")).is_err());
    }
}
