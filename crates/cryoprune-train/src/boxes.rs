//! Particle images that are already boxes (class folders, particle stacks): each is treated as a
//! micrograph with one pick at its centre, so it is resampled, normalised and inverted exactly as
//! boxes cut from micrographs are.

use std::path::Path;

use cryoprune_image::extract::{ExtractConfig, Extractor, ParticleNorm};
use cryoprune_image::image::Image;
use cryoprune_image::power::PowerSpectrum;

use crate::dataset::{Dataset, Origin};
use crate::Error;

/// Resamples boxes of any size to the network's input size; one extractor per box size seen.
pub(crate) struct BoxCutter {
    size: usize,
    invert: bool,
    extractors: Vec<(usize, Extractor)>,
    /// For whole micrographs: each image's power spectrum follows it as a second plane.
    spectrum: Option<PowerSpectrum>,
}

impl BoxCutter {
    pub fn new(size: usize, invert: bool) -> BoxCutter {
        BoxCutter {
            size,
            invert,
            extractors: Vec::new(),
            spectrum: None,
        }
    }

    /// A cutter that also gives each image its power spectrum, when `on`.
    pub fn with_spectrum(mut self, on: bool) -> BoxCutter {
        self.spectrum = on.then(|| PowerSpectrum::new(self.size));
        self
    }

    /// Planes per image this cutter makes.
    pub fn planes(&self) -> usize {
        1 + usize::from(self.spectrum.is_some())
    }

    /// Cuts `img` (image `index` of `file`) into `data` with class `label`.
    pub fn push(
        &mut self,
        data: &mut Dataset,
        img: &Image,
        file: &Path,
        index: usize,
        label: usize,
        origin: Origin,
    ) -> Result<(), Error> {
        let side = img.nx.min(img.ny);
        if side < 2 {
            return Err(Error::Labels(format!(
                "{}: image {index} is {}×{} pixels",
                file.display(),
                img.nx,
                img.ny
            )));
        }
        let pos = match self.extractors.iter().position(|(s, _)| *s == side) {
            Some(p) => p,
            None => {
                let cfg = ExtractConfig {
                    out_size: self.size,
                    norm: ParticleNorm::input_default(self.size),
                    invert: self.invert,
                    ..ExtractConfig::new(side)
                };
                let e = Extractor::new(cfg)?;
                self.extractors.push((side, e));
                self.extractors.len() - 1
            }
        };
        let centre = ((img.nx / 2) as f64, (img.ny / 2) as f64);
        let out = self.extractors[pos].1.extract(img, &[centre], 0);
        data.images.extend_from_slice(&out.data);
        if let Some(power) = &mut self.spectrum {
            data.images.extend_from_slice(&power.of(img).data);
        }
        data.labels.push(label);
        data.origins.push(origin);
        Ok(())
    }
}
