//! `cryoprune extract`: cut particles around picks into an MRCS stack with a RELION 3.1
//! particle STAR beside it (optics block, `_rlnImageName` as index@stack, coordinates,
//! micrograph names). Boxes are centred on the pick's nearest pixel as RELION does, resampled
//! to `--size` by Fourier cropping, and normalised RELION-style (zero mean, unit variance of the
//! background outside a circle). Micrographs run in parallel; memory stays bounded.
//!
//! ```text
//! cryoprune extract --micrographs 'Micrographs/*.mrc' --picks autopick/ --box 180 --size 64 --out particles.mrcs
//! cryoprune extract --micrographs 'mics/*.jpg' --picks topaz/ --box 180 --angpix 1.77 --lowpass 20 --invert --out stack.mrcs
//! cryoprune extract --micrographs 'Micrographs/*.mrc' --picks picks.cs --box 256 --size 128 --edge noise --normalize robust --out clean.mrcs
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use cryoprune_formats::atomic::{ensure_not_input, temp_beside};
use cryoprune_formats::mrc::{Mode, WriteKind};
use cryoprune_formats::star::quote;
use cryoprune_formats::{MrcWriter, PickFormat, PickSet};
use cryoprune_image::extract::{EdgePolicy, ExtractConfig, ParticleNorm};
use cryoprune_image::fourier::Cutoff;
use cryoprune_image::normalize::MicrographNorm;
use cryoprune_image::pipeline::{Job, Pipeline};

#[derive(clap::Args)]
#[command(
    about = "Cut particles around picks into an MRCS stack and a RELION 3.1 particle STAR",
    after_help = super::examples(include_str!("extract.rs"))
)]
pub struct Args {
    /// Micrographs (globs, quoted): MRC, TIFF, PNG or JPEG.
    #[arg(long, required = true, num_args = 1..)]
    micrographs: Vec<String>,
    /// Pick files or folders of them, any supported format.
    #[arg(long, required = true, num_args = 1..)]
    picks: Vec<PathBuf>,
    /// Pick format when the extension does not tell.
    #[arg(long, value_parser = super::convert::parse_format)]
    format: Option<PickFormat>,
    /// Box size in micrograph pixels.
    #[arg(long = "box")]
    box_size: usize,
    /// Size of the written particles in pixels (resampled by Fourier cropping); default: --box.
    #[arg(long)]
    size: Option<usize>,
    /// Low-pass the micrographs to this resolution in Å (needs a pixel size).
    #[arg(long, conflicts_with = "lowpass_nyquist")]
    lowpass: Option<f64>,
    /// Low-pass the micrographs at this fraction of Nyquist (1.0 = 2 pixels).
    #[arg(long)]
    lowpass_nyquist: Option<f64>,
    /// Pixel size of the micrographs in Å, instead of their headers.
    #[arg(long)]
    angpix: Option<f64>,
    /// Micrograph normalisation before cutting: none, meanstd or robust (clipped to --clip
    /// percentiles first).
    #[arg(long, default_value = "none", value_parser = ["none", "meanstd", "robust"])]
    normalize: String,
    /// Percentiles for --normalize robust.
    #[arg(long, default_value = "0.5,99.5", value_parser = parse_pair)]
    clip: (f64, f64),
    /// Background radius of the per-particle normalisation, in output pixels; default 75% of
    /// half the output size (RELION's).
    #[arg(long)]
    bg_radius: Option<f64>,
    /// Write particles without per-particle normalisation.
    #[arg(long, conflicts_with = "bg_radius")]
    no_norm: bool,
    /// Invert contrast (white particles on black, as most networks are trained).
    #[arg(long)]
    invert: bool,
    /// Boxes that reach past the micrograph edge: skip, mean (pad with the micrograph mean) or
    /// noise (pad with matching Gaussian noise).
    #[arg(long, default_value = "skip", value_parser = ["skip", "mean", "noise"])]
    edge: String,
    /// Multiply pick coordinates by this factor (picks made on binned micrographs).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Worker threads; 0 = all cores.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Seed for --edge noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Voltage (kV), spherical aberration (mm) and amplitude contrast written to the optics
    /// block for RELION; cryoprune itself does not use them.
    #[arg(long, default_value_t = 300.0)]
    voltage: f64,
    #[arg(long, default_value_t = 2.7)]
    cs: f64,
    #[arg(long, default_value_t = 0.1)]
    amplitude_contrast: f64,
    /// Output particle stack (.mrcs).
    #[arg(long)]
    out: PathBuf,
    /// Output particle STAR; default: --out with the extension .star.
    #[arg(long)]
    star: Option<PathBuf>,
}

fn parse_pair(s: &str) -> Result<(f64, f64), String> {
    let (a, b) = s
        .split_once(',')
        .ok_or_else(|| format!("`{s}`: expected two numbers like 0.5,99.5"))?;
    let p = |t: &str| {
        t.trim()
            .parse::<f64>()
            .map_err(|_| format!("`{t}` is not a number"))
    };
    let (a, b) = (p(a)?, p(b)?);
    if !(0.0..=100.0).contains(&a) || !(0.0..=100.0).contains(&b) || a >= b {
        return Err(format!("`{s}`: need 0 <= low < high <= 100"));
    }
    Ok((a, b))
}

pub fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let star_path = args
        .star
        .clone()
        .unwrap_or_else(|| args.out.with_extension("star"));
    if star_path == args.out {
        bail!("--star and --out name the same file");
    }
    let mics = super::expand_globs(&args.micrographs)?;
    let mut inputs = mics.clone();
    inputs.extend(args.picks.iter().cloned());
    ensure_not_input(&args.out, &inputs)?;
    ensure_not_input(&star_path, &inputs)?;

    let mut set = PickSet::read(&args.picks, args.format)?;
    if args.scale != 1.0 {
        set.scale(args.scale);
    }
    let report = super::pair_with_micrographs(&set, &mics, "skipped");
    if !report.unmatched_micrographs.is_empty() {
        tracing::info!(
            "{} micrographs have no picks",
            report.unmatched_micrographs.len()
        );
    }
    let pairs: Vec<(usize, usize)> = report
        .pairs
        .iter()
        .copied()
        .filter(|&(p, _)| !set.micrographs[p].picks.is_empty())
        .collect();
    if pairs.is_empty() {
        bail!("no pick file matches any of the {} micrographs", mics.len());
    }
    let jobs: Vec<Job> = pairs
        .iter()
        .map(|&(p, m)| Job {
            path: mics[m].clone(),
            picks: set.micrographs[p]
                .picks
                .iter()
                .map(|k| (k.x, k.y))
                .collect(),
        })
        .collect();

    let out_size = args.size.unwrap_or(args.box_size);
    let cfg = ExtractConfig {
        box_size: args.box_size,
        out_size,
        edge: match args.edge.as_str() {
            "skip" => EdgePolicy::Skip,
            "mean" => EdgePolicy::PadMean,
            _ => EdgePolicy::PadNoise,
        },
        norm: match (args.no_norm, args.bg_radius) {
            (true, _) => ParticleNorm::None,
            (false, Some(radius)) => ParticleNorm::Relion { radius },
            (false, None) => ParticleNorm::relion_default(out_size),
        },
        invert: args.invert,
        seed: args.seed,
    };
    let threads = super::thread_count(args.threads);
    let mut pipeline = Pipeline::new(cfg, threads);
    pipeline.angpix = args.angpix;
    pipeline.lowpass = match (args.lowpass, args.lowpass_nyquist) {
        (Some(a), _) => Some(Cutoff::Angstrom(a)),
        (None, Some(f)) => Some(Cutoff::Nyquist(f)),
        (None, None) => None,
    };
    pipeline.norm = match args.normalize.as_str() {
        "none" => MicrographNorm::None,
        "meanstd" => MicrographNorm::MeanStd,
        _ => MicrographNorm::Robust {
            low: args.clip.0,
            high: args.clip.1,
        },
    };

    let mut stack = MrcWriter::create(
        &args.out,
        out_size,
        out_size,
        Mode::Float32,
        WriteKind::ImageOrStack,
        None,
    )?;
    let mut star = StarStream::create(&star_path)?;
    let has_scores = set.iter().any(|(_, p)| p.score.is_some());
    let has_labels = set.iter().any(|(_, p)| p.label.is_some());
    let image_name = args.out.to_string_lossy().into_owned();
    let mut tally = Tally::default();
    let mut mic_pixel: Option<f64> = None;
    let bar = super::progress_bar(jobs.len() as u64, "micrographs");

    pipeline.run(&jobs, |out| {
        let (p, m) = pairs[out.index];
        let mic_name = mics[m].to_string_lossy();
        let picks = &set.micrographs[p].picks;
        let ex = &out.particles;
        tally.add(ex, picks.len(), &mic_name, out.shape);
        match (mic_pixel, out.pixel_size) {
            (None, Some(px)) => mic_pixel = Some(px),
            (Some(a), Some(b)) if (a - b).abs() > 1e-3 * a => tracing::warn!(
                "{mic_name}: pixel size {b} Å differs from the first micrograph's {a} Å; the STAR records {a}"
            ),
            _ => {}
        }
        let s2 = out_size * out_size;
        for (k, &i) in ex.kept.iter().enumerate() {
            stack
                .push_section(&ex.data[k * s2..(k + 1) * s2])
                .map_err(cryoprune_image::Error::Format)?;
            tally.written += 1;
            let pick = &picks[i];
            let mut row = vec![
                format!("{:.6}", pick.x),
                format!("{:.6}", pick.y),
                format!("{:06}@{}", tally.written, image_name),
                mic_name.to_string(),
                "1".to_string(),
            ];
            if has_scores {
                row.push(pick.score.map_or("0".into(), |s| s.to_string()));
            }
            if has_labels {
                row.push(pick.label.clone().unwrap_or_default());
            }
            star.row(&row).map_err(cryoprune_image::Error::Format)?;
        }
        bar.set_message(format!("{} particles", tally.written));
        bar.inc(1);
        Ok(())
    })?;
    bar.finish_and_clear();

    if tally.written == 0 {
        bail!(
            "no particle extracted from {} picks: {} too close to the edge for a {} px box (try --edge mean), {} outside their micrograph",
            tally.picks,
            tally.skipped_edge,
            args.box_size,
            tally.outside
        );
    }
    let pixel = match mic_pixel {
        Some(px) => px,
        None => {
            tracing::warn!(
                "no pixel size in the micrographs and no --angpix; the STAR and MRCS record 1 Å per micrograph pixel"
            );
            1.0
        }
    };
    let out_pixel = pixel * args.box_size as f64 / out_size as f64;
    stack.set_pixel_size(out_pixel as f32);
    stack.finish()?;
    let optics = Optics {
        mic_pixel: pixel,
        out_pixel,
        size: out_size,
        voltage: args.voltage,
        cs: args.cs,
        amplitude_contrast: args.amplitude_contrast,
    };
    star.finish(&optics, has_scores, has_labels)?;

    eprintln!(
        "extracted {} particles from {} micrographs ({} picks): box {} px -> {} px, {:.4} Å/px, in {:.1} s",
        tally.written,
        jobs.len(),
        tally.picks,
        args.box_size,
        out_size,
        out_pixel,
        started.elapsed().as_secs_f64()
    );
    if tally.padded > 0 {
        eprintln!(
            "  {} boxes reached past the micrograph edge and were padded ({})",
            tally.padded, args.edge
        );
    }
    if tally.skipped_edge > 0 {
        eprintln!(
            "  {} picks skipped: their box reaches past the micrograph edge (--edge mean or noise keeps them)",
            tally.skipped_edge
        );
    }
    if tally.outside > 0 {
        eprintln!(
            "  {} picks skipped: centre outside the micrograph (wrong --scale, or y flipped?)",
            tally.outside
        );
    }
    eprintln!("wrote {} and {}", args.out.display(), star_path.display());
    Ok(())
}

#[derive(Default)]
struct Tally {
    picks: usize,
    written: usize,
    padded: usize,
    skipped_edge: usize,
    outside: usize,
}

impl Tally {
    fn add(
        &mut self,
        ex: &cryoprune_image::extract::Extracted,
        picks: usize,
        mic: &str,
        shape: (usize, usize),
    ) {
        self.picks += picks;
        self.padded += ex.padded.len();
        self.skipped_edge += ex.skipped_edge.len();
        self.outside += ex.outside.len();
        if !ex.outside.is_empty() {
            tracing::warn!(
                "{mic}: {} of {picks} picks lie outside its {}x{} pixels",
                ex.outside.len(),
                shape.0,
                shape.1
            );
        }
    }
}

struct Optics {
    mic_pixel: f64,
    out_pixel: f64,
    size: usize,
    voltage: f64,
    cs: f64,
    amplitude_contrast: f64,
}

/// The particle STAR, written as the particles come: rows go to a temporary file, and the
/// optics block (which needs the pixel size, known only once every micrograph is read) is
/// written in front of them on `finish`, when the whole file is renamed into place.
struct StarStream {
    path: PathBuf,
    rows: std::io::BufWriter<tempfile::NamedTempFile>,
}

impl StarStream {
    fn create(path: &Path) -> cryoprune_formats::Result<StarStream> {
        let rows = temp_beside(path)?;
        Ok(StarStream {
            path: path.to_path_buf(),
            rows: std::io::BufWriter::with_capacity(1 << 20, rows),
        })
    }

    fn row(&mut self, values: &[String]) -> cryoprune_formats::Result<()> {
        let line: Vec<String> = values.iter().map(|v| quote(v)).collect();
        writeln!(self.rows, "{}", line.join(" "))
            .map_err(|e| cryoprune_formats::FormatError::io(&self.path, e))
    }

    fn finish(self, optics: &Optics, scores: bool, labels: bool) -> Result<()> {
        let io = |e| cryoprune_formats::FormatError::io(&self.path, e);
        let rows = self.rows.into_inner().map_err(|e| io(e.into_error()))?;
        let mut out = std::io::BufWriter::new(temp_beside(&self.path)?);
        let mut columns = vec![
            "rlnCoordinateX",
            "rlnCoordinateY",
            "rlnImageName",
            "rlnMicrographName",
            "rlnOpticsGroup",
        ];
        if scores {
            columns.push("rlnAutopickFigureOfMerit");
        }
        if labels {
            columns.push("cryopruneLabel");
        }
        let mut head = String::from("\n# version 30001\n\ndata_optics\n\nloop_\n");
        for (i, c) in [
            "rlnOpticsGroupName",
            "rlnOpticsGroup",
            "rlnMicrographOriginalPixelSize",
            "rlnVoltage",
            "rlnSphericalAberration",
            "rlnAmplitudeContrast",
            "rlnImagePixelSize",
            "rlnImageSize",
            "rlnImageDimensionality",
        ]
        .iter()
        .enumerate()
        {
            head.push_str(&format!("_{c} #{}\n", i + 1));
        }
        head.push_str(&format!(
            "opticsGroup1 1 {:.6} {} {} {} {:.6} {} 2\n\n\n# version 30001\n\ndata_particles\n\nloop_\n",
            optics.mic_pixel,
            optics.voltage,
            optics.cs,
            optics.amplitude_contrast,
            optics.out_pixel,
            optics.size
        ));
        for (i, c) in columns.iter().enumerate() {
            head.push_str(&format!("_{c} #{}\n", i + 1));
        }
        out.write_all(head.as_bytes()).map_err(io)?;
        let mut reader = rows.reopen().map_err(io)?;
        std::io::copy(&mut reader, &mut out).map_err(io)?;
        out.write_all(b"\n").map_err(io)?;
        let out = out.into_inner().map_err(|e| io(e.into_error()))?;
        out.as_file().sync_all().map_err(io)?;
        out.persist(&self.path)
            .map_err(|e| cryoprune_formats::FormatError::io(&self.path, e.error))?;
        Ok(())
    }
}
