//! The extract job: cut particles around picks into an MRCS stack with a RELION 3.1 particle
//! STAR beside it (optics block, `_rlnImageName` as index@stack, coordinates, micrograph
//! names, and every column and optics group of a particle STAR that went in). Boxes are cut as
//! `relion_preprocess` cuts them: centred on the truncated coordinates, resampled by Fourier
//! cropping, normalised with RELION's defaults (background plane subtracted, then zero mean and
//! unit variance outside a circle). Micrographs run in parallel; memory stays bounded.

mod star;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cryoprune_formats::atomic::{clear_stale_partials, ensure_not_input};
use cryoprune_formats::mrc::{Mode, WriteKind};
use cryoprune_formats::{MrcFile, MrcWriter, PickFormat};
use cryoprune_image::extract::{EdgePolicy, ExtractConfig, ParticleNorm};
use cryoprune_image::fourier::Cutoff;
use cryoprune_image::normalize::MicrographNorm;
use cryoprune_image::pipeline::{Output, Pipeline};
use serde::{Deserialize, Serialize};

use crate::compute::thread_count;
use crate::events::{Event, Events};
use crate::inputs::{jobs, micrograph_paths, pair_with_micrographs};
use crate::shard::{MergeConfig, Record, Shard};
use crate::{invalid, Result};
use star::{Layout, Optics, StarStream};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExtractJobConfig {
    /// Micrograph globs, or one list of them (a RELION micrographs STAR or cryoSPARC
    /// exposures .cs).
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
    /// Background radius of the per-particle normalisation in whole output pixels, as RELION
    /// takes it; `None`: RELION's default (75% of half the box, rescaled, truncated).
    pub bg_radius: Option<u32>,
    /// No per-particle normalisation.
    pub no_norm: bool,
    /// Refuse what RELION would refuse (odd sizes) instead of warning.
    pub relion_strict: bool,
    /// Normalise without first subtracting a plane fitted to the background (RELION's
    /// `--no_ramp`).
    pub no_ramp: bool,
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
    /// Extract only this shard's micrographs, for `merge` to join (`cryoprune merge`).
    pub shard: Option<Shard>,
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
            no_ramp: false,
            relion_strict: false,
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
            shard: None,
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
    run_job(cfg, None, events)
}

const JOB: &str = "extract";

/// Where a shard's record lies: beside its stack.
fn record_path(stack: &Path) -> PathBuf {
    stack.with_extension("shard.json")
}

/// What a shard did with one micrograph, so a merge can write it as one run would have.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Done {
    /// The pick group's micrograph name.
    micrograph: String,
    pixel_size: Option<f64>,
    shape: (usize, usize),
    kept: Vec<usize>,
    padded: Vec<usize>,
    skipped_edge: Vec<usize>,
    outside: Vec<usize>,
}

/// Joins the stacks and STARs of `extract --shard` runs into the stack and STAR one run would
/// have written, byte for byte. Run it where the shards ran: their settings name the
/// micrographs and picks as they were given.
pub fn merge(m: &MergeConfig, events: &dyn Events) -> Result<Extracted> {
    let same = |a: &ExtractJobConfig, b: &ExtractJobConfig| {
        let plain = |c: &ExtractJobConfig| ExtractJobConfig {
            out: PathBuf::new(),
            star: None,
            shard: None,
            threads: 0,
            ..c.clone()
        };
        plain(a) == plain(b)
    };
    let records: Vec<Record<ExtractJobConfig, Vec<Done>>> =
        crate::shard::read_records(&m.inputs, JOB, record_path, same)?;
    let mut replay = Replay::default();
    for (r, input) in records.iter().zip(&m.inputs) {
        let stack = MrcFile::open(input)?;
        let mut first = 0;
        for done in &r.done {
            let at = (replay.stacks.len(), first, done.clone());
            first += done.kept.len();
            if replay.jobs.insert(done.micrograph.clone(), at).is_some() {
                invalid!(
                    "micrograph `{}` was extracted by two shards ({} is one)",
                    done.micrograph,
                    input.display()
                );
            }
        }
        replay.stacks.push(stack);
    }
    let cfg = ExtractJobConfig {
        out: m.out.clone(),
        star: m.star.clone(),
        shard: None,
        ..records[0].config.clone()
    };
    events.note(format!(
        "joining the {} shards of an extract run",
        records.len()
    ));
    run_job(&cfg, Some(replay), events)
}

/// The shards' stacks, and where each micrograph's particles are in them.
#[derive(Default)]
struct Replay {
    stacks: Vec<MrcFile>,
    /// By micrograph: (stack, first section, what the shard did).
    jobs: HashMap<String, (usize, usize, Done)>,
}

impl Replay {
    /// Job `index` on `micrograph` as the pipeline would have handed it over.
    fn output(&mut self, index: usize, micrograph: &str, size: usize) -> Result<Output> {
        let Some((stack, first, done)) = self.jobs.remove(micrograph) else {
            invalid!(
                "no shard extracted micrograph `{micrograph}`: rerun the shard that takes it, then merge again"
            );
        };
        let s2 = size * size;
        let mut data = vec![0.0; done.kept.len() * s2];
        for (k, section) in data.chunks_exact_mut(s2).enumerate() {
            self.stacks[stack].read_section_into(first + k, section)?;
        }
        Ok(Output {
            index,
            pixel_size: done.pixel_size,
            shape: done.shape,
            particles: cryoprune_image::extract::Extracted {
                data,
                kept: done.kept,
                padded: done.padded,
                skipped_edge: done.skipped_edge,
                outside: done.outside,
            },
        })
    }
}

fn run_job(
    cfg: &ExtractJobConfig,
    mut replay: Option<Replay>,
    events: &dyn Events,
) -> Result<Extracted> {
    let started = Instant::now();
    let star_path = cfg
        .star
        .clone()
        .unwrap_or_else(|| cfg.out.with_extension("star"));
    if cfg.star.is_some() && star_path == cfg.out {
        invalid!("--star and --out name the same file");
    }
    let mics = micrograph_paths(&cfg.micrographs)?;
    let mut inputs = mics.clone();
    inputs.extend(cfg.picks.iter().cloned());
    ensure_not_input(&cfg.out, &inputs)?;
    ensure_not_input(&star_path, &inputs)?;
    crate::inputs::ensure_file_possible("--out", &cfg.out)?;
    // RELION takes the format of `000001@stack` from its extension and reads MRC stacks only
    // from `.mrcs` (a `.mrc` is a 3D map to it), so a stack by another name is a STAR file no
    // RELION program can follow.
    let is_mrcs = cfg
        .out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("mrcs"));
    if !is_mrcs {
        invalid!(
            "--out {} is the particle stack; give it the extension .mrcs, the only one RELION \
             reads a stack of particles from (the STAR file is written beside it, or where \
             --star says)",
            cfg.out.display()
        );
    }
    crate::inputs::ensure_file_possible("--star", &star_path)?;

    let set = crate::inputs::read_scaled(&cfg.picks, cfg.format, cfg.scale)?;
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
        return Err(crate::inputs::no_match(&set, &mics));
    }
    let pairs = match cfg.shard {
        Some(shard) => {
            let takes = shard.takes(&mics);
            pairs.into_iter().filter(|&(_, m)| takes[m]).collect()
        }
        None => pairs,
    };
    let jobs = jobs(&set, &pairs, &mics);

    let out_size = cfg.size.unwrap_or(cfg.box_size);
    for (what, size) in [("--box", cfg.box_size), ("--size", out_size)] {
        if size % 2 == 1 {
            let why = format!("{what} {size} is odd, and RELION extracts and rescales to even sizes only; its programs refuse such a stack");
            if cfg.relion_strict {
                invalid!("{why} (--relion-strict)");
            }
            events.warn(why);
        }
    }
    let extract = ExtractConfig {
        box_size: cfg.box_size,
        out_size,
        edge: cfg.edge,
        norm: match (cfg.no_norm, cfg.bg_radius) {
            (true, _) => ParticleNorm::None,
            (false, radius) => ParticleNorm::Relion {
                radius: radius.map_or_else(
                    || ParticleNorm::relion_radius(cfg.box_size, out_size),
                    f64::from,
                ),
                ramp: !cfg.no_ramp,
            },
        },
        invert: cfg.invert,
        seed: cfg.seed,
    };
    extract.validate()?;
    let mut pipeline = Pipeline::new(extract, thread_count(cfg.threads)?);
    pipeline.angpix = cfg.angpix;
    pipeline.lowpass = cfg.lowpass;
    pipeline.norm = cfg.normalize;

    // A killed run left its stack and STAR half-written under temporary names; they are ours.
    clear_stale_partials(&[cfg.out.clone(), star_path.clone()], None);
    // The record says the shard finished; until it does again, it has not.
    let record = record_path(&cfg.out);
    if cfg.shard.is_some() && record.exists() {
        std::fs::remove_file(&record).map_err(|e| crate::Error::Io(record.clone(), e))?;
    }
    let mut stack = MrcWriter::create(
        &cfg.out,
        out_size,
        out_size,
        Mode::Float32,
        WriteKind::ImageOrStack,
        None,
    )?;
    let layout = Layout::new(&set)?;
    let mut star = StarStream::create(&star_path)?;
    let image_name = cfg.out.to_string_lossy().into_owned();
    let mut tally = Tally::default();
    let mut mic_pixel: Option<f64> = None;
    events.emit(Event::Started {
        total: jobs.len() as u64,
        unit: "micrographs",
    });

    let _listening = crate::Listening::start();
    let mut done: Vec<Done> = Vec::new();
    let mut handle = |out: Output| -> Result<()> {
        crate::check_interrupted()?;
        let (p, m) = pairs[out.index];
        if cfg.shard.is_some() {
            done.push(Done {
                micrograph: set.micrographs[p].micrograph.clone(),
                pixel_size: out.pixel_size,
                shape: out.shape,
                kept: out.particles.kept.clone(),
                padded: out.particles.padded.clone(),
                skipped_edge: out.particles.skipped_edge.clone(),
                outside: out.particles.outside.clone(),
            });
        }
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
            let image = format!("{:06}@{}", tally.written, image_name);
            let row = layout.row(&set, &picks[i], &image, &mic_name);
            star.row(&row)?;
        }
        events.emit(Event::Status(format!("{} particles", tally.written)));
        events.emit(Event::Advanced(1));
        Ok(())
    };
    match &mut replay {
        None => pipeline.run(&jobs, &mut handle)?,
        Some(r) => {
            for (index, &(p, _)) in pairs.iter().enumerate() {
                handle(r.output(index, &set.micrographs[p].micrograph, out_size)?)?;
            }
        }
    }
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
    star.finish(&layout, &optics)?;

    events.note(format!(
        "extracted {} particles from {} ({} picks): box {} px -> {} px, {:.4} Å/px, in {:.1} s",
        tally.written,
        crate::count(jobs.len(), "micrograph"),
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
    if let Some(place) = cfg.shard {
        let record = Record {
            job: JOB.into(),
            shard: place,
            config: cfg.clone(),
            done,
        };
        crate::write_json(&record_path(&cfg.out), &record)?;
    }
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
