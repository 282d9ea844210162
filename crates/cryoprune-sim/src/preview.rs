//! PNG previews: the micrograph binned for display, contrast-stretched as a cryo-EM viewer
//! does, with a circle at each pick coloured by its truth label.

use std::path::Path;

use cryoprune_image::display::{self, Mark};
use cryoprune_image::Image;

use crate::scene::{Label, TruthPick};
use crate::{Error, Result};

pub fn colour(label: Label) -> [u8; 3] {
    match label {
        Label::Particle => [40, 220, 60],
        Label::Carbon => [240, 60, 40],
        Label::Ice => [60, 140, 255],
        Label::Aggregate => [250, 200, 30],
        Label::Empty => [220, 60, 220],
    }
}

/// Renders the preview: binned to at most `max_size` pixels with a circle of `radius`
/// micrograph pixels at each pick, coloured by its truth label (no circles when `picks` is empty).
pub fn render(image: &Image, picks: &[TruthPick], radius: f64, max_size: usize) -> image::RgbImage {
    let marks: Vec<Mark> = picks
        .iter()
        .map(|p| Mark {
            x: p.x,
            y: p.y,
            colour: colour(p.label),
        })
        .collect();
    display::render(image, &marks, radius, max_size)
}

/// Writes a preview PNG atomically.
pub fn write(path: &Path, img: &image::RgbImage) -> Result<()> {
    display::write_png(path, img).map_err(|e| Error::Input(format!("{}: {e}", path.display())))
}
