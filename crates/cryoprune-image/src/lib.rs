//! Micrograph preprocessing and particle extraction: everything between a micrograph file and
//! the pixels a network sees. Every later step (training, pruning, picking) reads particles only
//! through this crate, so its conventions are RELION's and are tested against closed forms and
//! NumPy.

pub mod augment;
pub mod display;
pub mod exposure;
pub mod extract;
pub mod fourier;
pub mod image;
pub mod normalize;
pub mod pipeline;
pub mod power;
mod settings;

pub use image::Image;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("a low-pass cutoff in Å needs the pixel size; the micrograph header has none (give it with --angpix, or the cutoff as a fraction of Nyquist)")]
    NoPixelSize,
    #[error("{0}")]
    Parameter(String),
    #[error(transparent)]
    Format(#[from] cryoprune_formats::FormatError),
}

pub type Result<T> = std::result::Result<T, Error>;
