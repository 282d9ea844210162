//! `cryoprune simulate`: realistic micrographs with the truth known. Particles are projections
//! of a map, an atomic model or a built-in shape in random orientations, with carbon film, ice
//! contamination, aggregates and empty ice, a CTF and noise at a set SNR; the picks are those a
//! real picker would make (most particles, plus false picks on the junk), each with its truth,
//! and every particle's centre (particles.csv) for scoring pickers. micrograph_tags.csv gives
//! each micrograph's tags (carbon, ice, aggregate, empty, thick-ice, crystalline-ice, drift) as
//! labels `train` reads, the truth for curating micrographs; `--defects` adds the last four.
//!
//! ```text
//! cryoprune simulate --out sim/ --count 20 --preset realistic --seed 1
//! cryoprune simulate --out sim/ --map ref_model.mrc --pixel 3.54 --format cs --count 50
//! cryoprune simulate --out sim/ --model 6NY1.pdb --size 2048 --preset hard --format box
//! cryoprune simulate --out curation/ --count 100 --defects all=0.25 --no-previews
//! ```

use std::path::PathBuf;

use anyhow::Result;
use cryoprune_formats::PickFormat;
use cryoprune_jobs::simulate::{self, parse_defects, parse_picker, parse_range, SimulateConfig};

use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Simulate micrographs with particles, junk, CTF and noise, and picker-like picks with truth",
    after_help = super::examples(include_str!("simulate.rs"))
)]
pub struct Args {
    /// Output folder: micrographs/, picks, truth.csv, particles.csv, previews/.
    #[arg(long)]
    out: PathBuf,
    /// Number of micrographs.
    #[arg(long, default_value_t = SimulateConfig::default().count)]
    count: usize,
    /// Micrograph width and height in pixels.
    #[arg(long, default_value_t = SimulateConfig::default().size)]
    size: usize,
    /// Pixel size in Å.
    #[arg(long, default_value_t = SimulateConfig::default().pixel)]
    pixel: f64,
    /// easy, realistic or hard: SNR, junk and how well the picker does.
    #[arg(long, default_value_t = SimulateConfig::default().preset, value_parser = ["easy", "realistic", "hard"])]
    preset: String,
    /// A 3D map (MRC) to project.
    #[arg(long, conflicts_with_all = ["model", "builtin"])]
    map: Option<PathBuf>,
    /// An atomic model (PDB or mmCIF) to render as Gaussian atoms and project.
    #[arg(long, conflicts_with = "builtin")]
    model: Option<PathBuf>,
    /// A built-in shape: globular, elongated or ring.
    #[arg(long, default_value_t = SimulateConfig::default().builtin, value_parser = ["globular", "elongated", "ring"])]
    builtin: String,
    /// Signal-to-noise ratio, instead of the preset's.
    #[arg(long)]
    snr: Option<f64>,
    /// Imaging, overriding the preset: voltage (kV), spherical aberration (mm), amplitude
    /// contrast, defocus range in µm (underfocus, e.g. 0.8,2.5), astigmatism (largest defocus
    /// difference, Å), B-factor (Å²), relative ice thickness variation.
    #[arg(long)]
    voltage: Option<f64>,
    #[arg(long)]
    cs: Option<f64>,
    #[arg(long)]
    amplitude_contrast: Option<f64>,
    #[arg(long, value_parser = parse_range)]
    defocus: Option<(f64, f64)>,
    #[arg(long)]
    astigmatism: Option<f64>,
    #[arg(long)]
    b_factor: Option<f64>,
    #[arg(long)]
    ice_variation: Option<f64>,
    /// Picker behaviour, overriding the preset, as key=value,...: miss (rate), jitter (px), carbon,
    /// edge, empty (false picks per micrograph), ice (per blob), aggregate (probability picked),
    /// separation (of the scores, logits). Example: miss=0.2,jitter=3,empty=30
    #[arg(long, value_parser = |s: &str| parse_picker(s).map(|_| s.to_string()))]
    picker: Option<String>,
    /// Flaws to reject micrographs for, as key=probability per micrograph,...: empty (no
    /// particles), thick-ice, crystalline-ice, drift, or all. Example: all=0.25,empty=0.1
    #[arg(long, value_parser = |s: &str| parse_defects(s).map(|_| s.to_string()))]
    defects: Option<String>,
    /// Pick file format: star, cs, box, cbox, topaz or csv.
    #[arg(long, default_value_t = SimulateConfig::default().format)]
    format: PickFormat,
    /// Box size written with corner formats; default 2.2 particle radii, rounded to even.
    #[arg(long = "box")]
    box_size: Option<f64>,
    /// Seed; the same seed gives byte-identical files.
    #[arg(long, default_value_t = SimulateConfig::default().seed)]
    seed: u64,
    /// Worker threads; 0 = all cores.
    #[arg(long, default_value_t = SimulateConfig::default().threads)]
    threads: usize,
    /// Skip the PNG previews.
    #[arg(long)]
    no_previews: bool,
    /// Largest side of the previews in pixels.
    #[arg(long, default_value_t = SimulateConfig::default().preview_size)]
    preview_size: usize,
    /// Previews without the pick circles (the micrograph alone).
    #[arg(long)]
    clean_previews: bool,
}

pub fn run(args: Args) -> Result<()> {
    let cfg = SimulateConfig {
        out: args.out,
        count: args.count,
        size: args.size,
        pixel: args.pixel,
        preset: args.preset,
        map: args.map,
        model: args.model,
        builtin: args.builtin,
        snr: args.snr,
        voltage: args.voltage,
        cs: args.cs,
        amplitude_contrast: args.amplitude_contrast,
        defocus: args.defocus,
        astigmatism: args.astigmatism,
        b_factor: args.b_factor,
        ice_variation: args.ice_variation,
        picker: args.picker,
        defects: args.defects,
        format: args.format,
        box_size: args.box_size,
        seed: args.seed,
        threads: args.threads,
        no_previews: args.no_previews,
        preview_size: args.preview_size,
        clean_previews: args.clean_previews,
    };
    simulate::run(&cfg, &Printer::default())?;
    Ok(())
}
