//! The extract job: cut particles around picks into an MRCS stack with a RELION 3.1 particle
//! STAR beside it (optics block, `_rlnImageName` as index@stack, coordinates, micrograph
//! names). Boxes are centred on the pick's nearest pixel, resampled by Fourier cropping, and
//! normalised RELION-style (zero mean, unit variance of the background outside a circle).
//! Micrographs run in parallel; memory stays bounded.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cryoprune_formats::atomic::{ensure_not_input, temp_beside};
use cryoprune_formats::mrc::{Mode, WriteKind};
use cryoprune_formats::star::quote;
use cryoprune_formats::{MrcWriter, PickFormat, PickSet};
use cryoprune_image::extract::{EdgePolicy, ExtractConfig, ParticleNorm};
use cryoprune_image::fourier::Cutoff;
use cryoprune_image::normalize::MicrographNorm;
use cryoprune_image::pipeline::Pipeline;
use serde::{Deserialize, Serialize};

use crate::compute::thread_count;
use crate::events::{Event, Events};
use crate::inputs::{expand_globs, jobs, pair_with_micrographs};
use crate::{invalid, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExtractJobConfig {
    /// Micrograph globs.
    pub micrographs: Vec<String>,
    /// Pick files or folders of them.
    pub picks: Vec<PathBuf>,
    pub format: Option<PickFormat>,
    /// Box size in micrograph pixels.
    pub box_size: usize,
    /// Size of the written particles; `None`: the box size.
    pub size: Option<usize>,
    pub lowpass: Option<Cutoff>,
    /// Pixel size in Å, instead of the micrographs' headers.
    pub angpix: Option<f64>,
    pub normalize: MicrographNorm,
    /// Background radius of the per-particle normalisation in output pixels; `None`: 75% of
    /// half the output size (RELION's).
    pub bg_radius: Option<f64>,
    /// No per-particle normalisation.
    pub no_norm: bool,
    pub invert: bool,
    pub edge: EdgePolicy,
    /// Coordinate factor for picks made on binned micrographs.
    pub scale: f64,
    /// Worker threads; 0 = all cores.
    pub threads: usize,
    /// Seed of the edge noise.
    pub seed: u64,
    /// Voltage (kV), spherical aberration (mm) and amplitude contrast of the optics block.
    pub voltage: f64,
    pub cs: f64,
    pub amplitude_contrast: f64,
    /// The particle stack (.mrcs).
    pub out: PathBuf,
    /// The particle STAR; `None`: `out` with the extension .star.
    pub star: Option<PathBuf>,
}

impl Default for ExtractJobConfig {
    fn default() -> Self {
        Self {
            micrographs: Vec::new(),
            picks: Vec::new(),
            format: None,
            box_size: 0,
            size: None,
            lowpass: None,
            angpix: None,
            normalize: MicrographNorm::None,
            bg_radius: None,
            no_norm: false,
            invert: false,
            edge: EdgePolicy::Skip,
            scale: 1.0,
            threads: 0,
            seed: 0,
            voltage: 300.0,
            cs: 2.7,
            amplitude_contrast: 0.1,
            out: PathBuf::new(),
            star: None,
        }
    }
}

/// What an extract run wrote.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Extracted {
    pub picks: usize,
    pub written: usize,
    pub padded: usize,
    pub skipped_edge: usize,
    pub outside: usize,
    pub micrographs: usize,
    pub stack: PathBuf,
    pub star: PathBuf,
    /// Å per pixel of the written particles.
    pub pixel_size: f64,
}

pub fn run(cfg: &ExtractJobConfig, events: &dyn Events) -> Result<Extracted> {
    let started = Instant::now();
    let star_path = cfg
        .star
        .clone()
        .unwrap_or_else(|| cfg.out.with_extension("star"));
    if star_path == cfg.out {
        invalid!("--star and --out name the same file");
    }
    let mics = expand_globs(&cfg.micrographs)?;
    let mut inputs = mics.clone();
    inputs.extend(cfg.picks.iter().cloned());
    ensure_not_input(&cfg.out, &inputs)?;
    ensure_not_input(&star_path, &inputs)?;

    let mut set = PickSet::read(&cfg.picks, cfg.format)?;
    if cfg.scale != 1.0 {
        set.scale(cfg.scale);
    }
    let report = pair_with_micrographs(&set, &mics, "skipped", events);
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
        invalid!("no pick file matches any of the {} micrographs", mics.len());
    }
    let jobs = jobs(&set, &pairs, &mics);

    let out_size = cfg.size.unwrap_or(cfg.box_size);
    let extract = ExtractConfig {
        box_size: cfg.box_size,
        out_size,
        edge: cfg.edge,
        norm: match (cfg.no_norm, cfg.bg_radius) {
            (true, _) => ParticleNorm::None,
            (false, Some(radius)) => ParticleNorm::Relion { radius },
            (false, None) => ParticleNorm::relion_default(out_size),
        },
        invert: cfg.invert,
        seed: cfg.seed,
    };
    let mut pipeline = Pipeline::new(extract, thread_count(cfg.threads));
    pipeline.angpix = cfg.angpix;
    pipeline.lowpass = cfg.lowpass;
    pipeline.norm = cfg.normalize;

    let mut stack = MrcWriter::create(
        &cfg.out,
        out_size,
        out_size,
        Mode::Float32,
        WriteKind::ImageOrStack,
        None,
    )?;
    let mut star = StarStream::create(&star_path)?;
    let has_scores = set.iter().any(|(_, p)| p.score.is_some());
    let has_labels = set.iter().any(|(_, p)| p.label.is_some());
    let image_name = cfg.out.to_string_lossy().into_owned();
    let mut tally = Tally::default();
    let mut mic_pixel: Option<f64> = None;
    events.emit(Event::Started {
        total: jobs.len() as u64,
        unit: "micrographs",
    });

    pipeline.run(&jobs, |out| -> Result<()> {
        let (p, m) = pairs[out.index];
        let mic_name = mics[m].to_string_lossy();
        let picks = &set.micrographs[p].picks;
        let ex = &out.particles;
        tally.add(ex, picks.len(), &mic_name, out.shape, events);
        match (mic_pixel, out.pixel_size) {
            (None, Some(px)) => mic_pixel = Some(px),
            (Some(a), Some(b)) if (a - b).abs() > 1e-3 * a => events.warn(format!(
                "{mic_name}: pixel size {b} Å differs from the first micrograph's {a} Å; the STAR records {a}"
            )),
            _ => {}
        }
        let s2 = out_size * out_size;
        for (k, &i) in ex.kept.iter().enumerate() {
            stack.push_section(&ex.data[k * s2..(k + 1) * s2])?;
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
            star.row(&row)?;
        }
        events.emit(Event::Status(format!("{} particles", tally.written)));
        events.emit(Event::Advanced(1));
        Ok(())
    })?;
    events.emit(Event::Finished);

    if tally.written == 0 {
        invalid!(
            "no particle extracted from {} picks: {} too close to the edge for a {} px box (try --edge pad-mean), {} outside their micrograph",
            tally.picks,
            tally.skipped_edge,
            cfg.box_size,
            tally.outside
        );
    }
    let pixel = match mic_pixel {
        Some(px) => px,
        None => {
            events.warn(
                "no pixel size in the micrographs and no --angpix; the STAR and MRCS record 1 Å per micrograph pixel".into()
            );
            1.0
        }
    };
    let out_pixel = pixel * cfg.box_size as f64 / out_size as f64;
    stack.set_pixel_size(out_pixel as f32);
    stack.finish()?;
    let optics = Optics {
        mic_pixel: pixel,
        out_pixel,
        size: out_size,
        voltage: cfg.voltage,
        cs: cfg.cs,
        amplitude_contrast: cfg.amplitude_contrast,
    };
    star.finish(&optics, has_scores, has_labels)?;

    events.note(format!(
        "extracted {} particles from {} micrographs ({} picks): box {} px -> {} px, {:.4} Å/px, in {:.1} s",
        tally.written,
        jobs.len(),
        tally.picks,
        cfg.box_size,
        out_size,
        out_pixel,
        started.elapsed().as_secs_f64()
    ));
    if tally.padded > 0 {
        events.note(format!(
            "  {} boxes reached past the micrograph edge and were padded ({})",
            tally.padded, cfg.edge
        ));
    }
    if tally.skipped_edge > 0 {
        events.note(format!(
            "  {} picks skipped: their box reaches past the micrograph edge (--edge pad-mean or pad-noise keeps them)",
            tally.skipped_edge
        ));
    }
    if tally.outside > 0 {
        events.note(format!(
            "  {} picks skipped: centre outside the micrograph (wrong --scale, or y flipped?)",
            tally.outside
        ));
    }
    events.note(format!(
        "wrote {} and {}",
        cfg.out.display(),
        star_path.display()
    ));
    Ok(Extracted {
        picks: tally.picks,
        written: tally.written,
        padded: tally.padded,
        skipped_edge: tally.skipped_edge,
        outside: tally.outside,
        micrographs: jobs.len(),
        stack: cfg.out.clone(),
        star: star_path,
        pixel_size: out_pixel,
    })
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
        events: &dyn Events,
    ) {
        self.picks += picks;
        self.padded += ex.padded.len();
        self.skipped_edge += ex.skipped_edge.len();
        self.outside += ex.outside.len();
        if !ex.outside.is_empty() {
            events.warn(format!(
                "{mic}: {} of {picks} picks lie outside its {}x{} pixels",
                ex.outside.len(),
                shape.0,
                shape.1
            ));
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
