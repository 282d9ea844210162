//! Micrographs as the page shows them: a pyramid of binned, low-passed, contrast-stretched
//! levels cut into PNG tiles, made once per micrograph and low-pass and kept on disk in the
//! session's folder. A viewed micrograph then comes back from a few small files, and nothing
//! stays in memory, however many micrographs the session has.

use std::path::{Path, PathBuf};

use cryoprune_formats::atomic::write_atomic;
use cryoprune_formats::read_micrograph;
use cryoprune_image::display;
use cryoprune_image::fourier::{bin, binned_size, lowpass, LowPass};
use cryoprune_image::Image;
use serde::Serialize;

use super::Session;
use crate::{invalid, Context, Error, Result};

/// Side of a tile in pixels of its level.
pub const TILE: usize = 512;
/// The coarsest level fits in this many pixels.
const OVERVIEW: usize = 1024;
/// Finer levels halve the binning until full resolution or this many levels.
const LEVELS: usize = 4;

/// One level of a micrograph's pyramid: binned by `factor`, `nx` × `ny` pixels in tiles of
/// [`TILE`].
#[derive(Debug, Clone, Serialize)]
pub struct Level {
    pub factor: f64,
    pub nx: usize,
    pub ny: usize,
}

/// The levels of a micrograph of `nx` × `ny` pixels, coarsest first.
pub fn levels(nx: usize, ny: usize) -> Vec<Level> {
    let coarse = (nx.max(ny) as f64 / OVERVIEW as f64).max(1.0);
    let mut out = Vec::new();
    let mut factor = coarse;
    loop {
        out.push(Level {
            factor,
            nx: binned_size(nx, factor),
            ny: binned_size(ny, factor),
        });
        if factor <= 1.0 || out.len() == LEVELS {
            return out;
        }
        factor = (factor / 2.0).max(1.0);
    }
}

/// Which tile of micrograph `m` to show.
#[derive(Debug, Clone, Copy)]
pub struct TileRequest {
    pub micrograph: usize,
    pub level: usize,
    pub x: usize,
    pub y: usize,
    /// Low-pass resolution in Å; none shows the micrograph as binned.
    pub lowpass: Option<f64>,
}

impl Session {
    /// A tile as PNG: from the session's folder, made (with the rest of its level) the first
    /// time it is asked for.
    pub fn tile(&self, t: TileRequest) -> Result<Vec<u8>> {
        let Some(mic) = self.mics.get(t.micrograph) else {
            invalid!("no micrograph {}", t.micrograph);
        };
        if t.lowpass.is_some_and(|a| !(a > 0.0 && a.is_finite())) {
            invalid!("the low-pass must be a resolution in Å above 0");
        }
        let (nx, ny) = cryoprune_formats::micrograph_shape(&mic.path)?;
        let all = levels(nx, ny);
        let Some(level) = all.get(t.level) else {
            invalid!(
                "micrograph {} has levels 0 to {}",
                t.micrograph,
                all.len() - 1
            );
        };
        if t.x * TILE >= level.nx || t.y * TILE >= level.ny {
            invalid!("no tile {},{} at level {}", t.x, t.y, t.level);
        }
        let folder = self.tile_folder(t.micrograph, t.lowpass);
        let path = folder.join(format!("{}_{}_{}.png", t.level, t.x, t.y));
        if let Ok(bytes) = std::fs::read(&path) {
            return Ok(bytes);
        }
        let _one_at_a_time = self.tiling.lock().unwrap_or_else(|e| e.into_inner());
        // Made while this request waited its turn.
        if let Ok(bytes) = std::fs::read(&path) {
            return Ok(bytes);
        }
        let image = self.level_image(&mic.path, level, t.lowpass)?;
        std::fs::create_dir_all(&folder).map_err(|e| Error::Io(folder.clone(), e))?;
        let mut wanted = Vec::new();
        for ty in 0..level.ny.div_ceil(TILE) {
            for tx in 0..level.nx.div_ceil(TILE) {
                let png = tile_png(&image, level.nx, tx, ty)?;
                let p = folder.join(format!("{}_{tx}_{ty}.png", t.level));
                write_atomic(&p, |w| w.write_all(&png))?;
                if (tx, ty) == (t.x, t.y) {
                    wanted = png;
                }
            }
        }
        Ok(wanted)
    }

    /// One folder per micrograph and low-pass; the file name keeps the micrograph's own name
    /// readable for whoever looks inside.
    fn tile_folder(&self, m: usize, lowpass: Option<f64>) -> PathBuf {
        let stem = self.mics[m]
            .path
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        let lp = lowpass.map_or("raw".into(), |a| format!("lp{a}A"));
        self.workdir()
            .join("tiles")
            .join(format!("{m}_{stem}_{lp}"))
    }

    /// Micrograph `path` binned to `level`, low-passed to `lowpass` Å, and stretched to 0-255
    /// between its 1st and 99th percentiles: `level.nx` × `level.ny` grey pixels.
    fn level_image(&self, path: &Path, level: &Level, lowpass_a: Option<f64>) -> Result<Vec<u8>> {
        let mic = read_micrograph(path).context_with(|| format!("reading {}", path.display()))?;
        let angpix = self.cfg.prep.angpix.or(mic.pixel_size.map(f64::from));
        let mut image: Image = mic.into();
        cryoprune_image::pipeline::replace_nonfinite(&mut image.data);
        let mut small = bin(&image, level.factor)?.image;
        if let Some(a) = lowpass_a {
            let Some(px) = angpix else {
                invalid!(
                    "{} has no pixel size for a low-pass in Å: give --angpix",
                    path.display()
                );
            };
            // As a fraction of the binned image's Nyquist; past it there is nothing to remove.
            let f = 2.0 * px * level.factor / a;
            if f < 1.0 {
                small = lowpass(&small, &LowPass::new(f));
            }
        }
        debug_assert_eq!((small.nx, small.ny), (level.nx, level.ny));
        Ok(display::stretch(&small.data))
    }
}

/// Tile (`tx`, `ty`) of a level's grey pixels, `width` wide, as PNG.
fn tile_png(grey: &[u8], width: usize, tx: usize, ty: usize) -> Result<Vec<u8>> {
    let height = grey.len() / width;
    let (x0, y0) = (tx * TILE, ty * TILE);
    let (w, h) = (TILE.min(width - x0), TILE.min(height - y0));
    let mut out = Vec::with_capacity(w * h);
    for y in y0..y0 + h {
        out.extend_from_slice(&grey[y * width + x0..y * width + x0 + w]);
    }
    Ok(display::grey8_png(&out, w)?)
}
