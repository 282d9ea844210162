//! `cryoprune extract`: cut particles around picks into an MRCS stack with a RELION 3.1
//! particle STAR beside it (optics block, `_rlnImageName` as index@stack, coordinates,
//! micrograph names; a particle STAR's own columns and optics groups are kept). Boxes are cut
//! as `relion_preprocess` cuts them: centred on the truncated coordinates, resampled to `--size`
//! by Fourier cropping, and normalised with RELION's defaults (background ramp subtracted, zero
//! mean and unit variance outside a circle). Micrographs run in parallel; memory stays bounded.
//! The preprocessing flags are spelled as `train`'s.
//!
//! ```text
//! cryoprune extract --micrographs 'Micrographs/*.mrc' --picks autopick/ --box 180 --size 64 --out particles.mrcs
//! cryoprune extract --micrographs 'mics/*.jpg' --picks topaz/ --box 180 --angpix 1.77 --lowpass 20A --invert --out stack.mrcs
//! cryoprune extract --micrographs 'Micrographs/*.mrc' --picks picks.cs --box 256 --size 128 --edge pad-noise --normalize robust:1,99 --out clean.mrcs
//! ```

use std::path::PathBuf;

use anyhow::{bail, Result};
use cryoprune_image::extract::EdgePolicy;
use cryoprune_image::fourier::Cutoff;
use cryoprune_image::normalize::MicrographNorm;
use cryoprune_jobs::extract::{self, ExtractJobConfig};
use cryoprune_jobs::shard::Shard;

use super::args::PickArgs;
use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Cut particles around picks into an MRCS stack and a RELION 3.1 particle STAR",
    after_help = super::examples(include_str!("extract.rs"))
)]
pub struct Args {
    #[command(flatten)]
    input: PickArgs,
    /// Box size in micrograph pixels.
    #[arg(long = "box")]
    box_size: usize,
    /// Size of the written particles in pixels (resampled by Fourier cropping); default: --box.
    #[arg(long)]
    size: Option<usize>,
    /// Micrograph low-pass: a resolution (20A; a bare number is Å, needs a pixel size) or a
    /// fraction of Nyquist (0.5nyquist).
    #[arg(long, conflicts_with = "lowpass_nyquist")]
    lowpass: Option<Cutoff>,
    /// Deprecated: use --lowpass Fnyquist.
    #[arg(long, value_parser = |s: &str| format!("{s}nyquist").parse::<Cutoff>())]
    lowpass_nyquist: Option<Cutoff>,
    /// Pixel size of the micrographs in Å, instead of their headers.
    #[arg(long, value_parser = cryoprune_jobs::positive)]
    angpix: Option<f64>,
    /// Micrograph normalisation before cutting: none, meanstd or `robust[:LOW,HIGH]` (clipped to
    /// the percentiles first, 0.5 and 99.5 by default).
    #[arg(long, default_value_t = ExtractJobConfig::default().normalize)]
    normalize: MicrographNorm,
    /// Deprecated: use --normalize robust:LOW,HIGH.
    #[arg(long, value_parser = |s: &str| format!("robust:{s}").parse::<MicrographNorm>())]
    clip: Option<MicrographNorm>,
    /// Background radius of the per-particle normalisation, in whole output pixels; default
    /// RELION's (75% of half the box, rescaled, truncated).
    #[arg(long)]
    bg_radius: Option<u32>,
    /// Write particles without per-particle normalisation.
    #[arg(long, conflicts_with_all = ["bg_radius", "no_ramp"])]
    no_norm: bool,
    /// Normalise without subtracting a plane fitted to the background first (RELION's
    /// --no_ramp).
    #[arg(long)]
    no_ramp: bool,
    /// Refuse what RELION would refuse (odd box sizes) instead of warning.
    #[arg(long)]
    relion_strict: bool,
    /// Invert contrast (white particles on black, as most networks are trained).
    #[arg(long)]
    invert: bool,
    /// Boxes that reach past the micrograph edge: skip, pad-mean (the micrograph mean),
    /// pad-noise (matching Gaussian noise) or pad-edge (the nearest micrograph pixel repeated,
    /// as relion_preprocess does). The old spellings mean and noise still work.
    #[arg(long, default_value_t = ExtractJobConfig::default().edge)]
    edge: EdgePolicy,
    /// Multiply pick coordinates by this factor (picks made on binned micrographs).
    #[arg(long, default_value_t = ExtractJobConfig::default().scale)]
    scale: f64,
    /// Worker threads; 0 = all cores.
    #[arg(long, default_value_t = ExtractJobConfig::default().threads)]
    threads: usize,
    /// Seed for --edge pad-noise.
    #[arg(long, default_value_t = ExtractJobConfig::default().seed)]
    seed: u64,
    /// Voltage (kV), spherical aberration (mm) and amplitude contrast written to the optics
    /// block for RELION; cryoprune itself does not use them.
    #[arg(long, default_value_t = ExtractJobConfig::default().voltage, value_parser = cryoprune_jobs::positive)]
    voltage: f64,
    #[arg(long, default_value_t = ExtractJobConfig::default().cs)]
    cs: f64,
    #[arg(long, default_value_t = ExtractJobConfig::default().amplitude_contrast)]
    amplitude_contrast: f64,
    /// Output particle stack (.mrcs).
    #[arg(long)]
    out: PathBuf,
    /// Output particle STAR; default: --out with the extension .star.
    #[arg(long)]
    star: Option<PathBuf>,
    /// Only the I-th of every N micrographs (sorted, from 0), for array task I; see `merge`.
    #[arg(long, value_name = "I/N")]
    shard: Option<Shard>,
}

pub fn run(args: Args) -> Result<()> {
    let normalize = match (args.clip, args.normalize) {
        (None, n) => n,
        (Some(clip), MicrographNorm::Robust { .. }) => clip,
        (Some(_), _) => bail!("--clip applies to --normalize robust only"),
    };
    let cfg = ExtractJobConfig {
        micrographs: args.input.micrographs,
        picks: args.input.picks,
        format: args.input.format,
        box_size: args.box_size,
        size: args.size,
        lowpass: args.lowpass.or(args.lowpass_nyquist),
        angpix: args.angpix,
        normalize,
        bg_radius: args.bg_radius,
        no_norm: args.no_norm,
        no_ramp: args.no_ramp,
        relion_strict: args.relion_strict,
        invert: args.invert,
        edge: args.edge,
        scale: args.scale,
        threads: args.threads,
        seed: args.seed,
        voltage: args.voltage,
        cs: args.cs,
        amplitude_contrast: args.amplitude_contrast,
        out: args.out,
        star: args.star,
        shard: args.shard,
    };
    extract::run(&cfg, &Printer::default())?;
    Ok(())
}
