//! The micrograph simulator: realistic micrographs with the truth known, for tests, benchmarks,
//! the demo and pretraining. Particles are projections of a 3D density (a map, an atomic model
//! or a built-in shape) in uniformly random orientations; junk is carbon film, ice
//! contamination, aggregates and empty ice; imaging adds a CTF and noise at a set SNR. Picks
//! are made the way a real picker makes them, each with its truth label.

pub mod atoms;
pub mod ctf;
pub mod pretrain;
pub mod preview;
pub mod project;
pub mod scene;
pub mod volume;

pub use scene::{Defects, Label, MicrographTags, PickerModel, Scene, SceneConfig, TruthPick};
pub use volume::{Builtin, Volume};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Format(#[from] cryoprune_formats::FormatError),
}

pub type Result<T> = std::result::Result<T, Error>;

/// The presets: how hard the data are. `realistic` is tuned to look and behave like a
/// typical single-particle dataset at ~2 Å/px with a picker of Topaz/crYOLO quality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Easy,
    Realistic,
    Hard,
}

impl Preset {
    pub fn from_name(name: &str) -> Option<Preset> {
        match name {
            "easy" => Some(Preset::Easy),
            "realistic" => Some(Preset::Realistic),
            "hard" => Some(Preset::Hard),
            _ => None,
        }
    }

    pub fn config(self, nx: usize, ny: usize, pixel: f64) -> SceneConfig {
        let base = SceneConfig {
            nx,
            ny,
            pixel,
            particle_density: 0.25,
            snr: 0.05,
            voltage: 300.0,
            cs: 2.7,
            amplitude_contrast: 0.1,
            defocus: (8_000.0, 25_000.0),
            astigmatism: 800.0,
            b_factor: 80.0,
            ice_variation: 0.25,
            ice_structure: 0.0,
            carbon_probability: 0.35,
            ice_blobs: 0.8,
            aggregates: 2.5,
            picker: PickerModel {
                miss_rate: 0.1,
                jitter: 2.0,
                carbon: 10.0,
                carbon_edge: 8.0,
                ice_per_blob: 5.0,
                empty: 15.0,
                aggregate: 0.9,
                score_separation: 2.0,
            },
            defects: Defects::default(),
        };
        match self {
            Preset::Realistic => base,
            Preset::Easy => SceneConfig {
                snr: 0.2,
                defocus: (10_000.0, 20_000.0),
                carbon_probability: 0.3,
                ice_blobs: 0.5,
                aggregates: 0.8,
                picker: PickerModel {
                    jitter: 1.0,
                    empty: 6.0,
                    score_separation: 3.0,
                    ..base.picker
                },
                ..base
            },
            Preset::Hard => SceneConfig {
                snr: 0.02,
                defocus: (5_000.0, 30_000.0),
                astigmatism: 1500.0,
                ice_variation: 0.8,
                carbon_probability: 0.5,
                ice_blobs: 1.5,
                aggregates: 3.5,
                picker: PickerModel {
                    miss_rate: 0.15,
                    jitter: 3.0,
                    empty: 25.0,
                    score_separation: 1.2,
                    ..base.picker
                },
                ..base
            },
        }
    }
}
