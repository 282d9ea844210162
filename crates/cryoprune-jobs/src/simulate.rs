//! The simulate job: realistic micrographs with the truth known. Particles are projections of
//! a map, an atomic model or a built-in shape in random orientations, with carbon film, ice
//! contamination, aggregates and empty ice, a CTF and noise at a set SNR; the picks are those a
//! real picker would make (most particles, plus false picks on the junk), each with its truth.

use std::path::PathBuf;
use std::time::Instant;

use cryoprune_formats::mrc::{write_mrc, Mode, WriteKind};
use cryoprune_formats::{Pick, PickFormat, PickSet, WriteOptions};
use cryoprune_sim::volume::{atoms_extent, read_atoms, render_atoms, Atom};
use cryoprune_sim::{preview, Builtin, Defects, MicrographTags, Preset, Volume};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::compute::thread_count;
use crate::events::{Event, Events};
use crate::{invalid, Error, Result};

/// The largest micrograph side: twice a K3's super-resolution frame's long side, and 1 GiB a
/// float image.
const MAX_SIZE: usize = 16384;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct SimulateConfig {
    /// Output folder: micrographs/, picks, truth.csv (every pick's label), particles.csv (every
    /// particle placed, the truth for a picker), micrograph_tags.csv (each micrograph's tags,
    /// the truth for curation), previews/.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of micrographs.
    #[arg(long, default_value_t = SimulateConfig::default().count)]
    pub count: usize,
    /// Micrograph width and height in pixels.
    #[arg(long, default_value_t = SimulateConfig::default().size)]
    pub size: usize,
    /// Pixel size in Å.
    #[arg(long, default_value_t = SimulateConfig::default().pixel)]
    pub pixel: f64,
    /// easy, realistic or hard: SNR, junk and how well the picker does.
    #[arg(long, default_value_t = SimulateConfig::default().preset, value_parser = ["easy", "realistic", "hard"])]
    pub preset: String,
    /// A 3D map (MRC) to project.
    #[arg(long, conflicts_with_all = ["model", "builtin"])]
    pub map: Option<PathBuf>,
    /// An atomic model (PDB or mmCIF) to render as Gaussian atoms and project.
    #[arg(long, conflicts_with = "builtin")]
    pub model: Option<PathBuf>,
    /// A built-in shape: globular, elongated or ring.
    #[arg(long, default_value_t = SimulateConfig::default().builtin, value_parser = ["globular", "elongated", "ring"])]
    pub builtin: String,
    /// Signal-to-noise ratio, instead of the preset's.
    #[arg(long)]
    pub snr: Option<f64>,
    /// Accelerating voltage in kV, instead of the preset's.
    #[arg(long)]
    pub voltage: Option<f64>,
    /// Spherical aberration in mm, instead of the preset's.
    #[arg(long)]
    pub cs: Option<f64>,
    /// Amplitude contrast (a fraction below 1), instead of the preset's.
    #[arg(long)]
    pub amplitude_contrast: Option<f64>,
    /// Defocus range in µm, underfocus, as MIN,MAX (e.g. 0.8,2.5), instead of the preset's.
    #[arg(long, value_parser = parse_range)]
    pub defocus: Option<(f64, f64)>,
    /// Astigmatism: the largest difference between the two defoci, in Å, instead of the
    /// preset's.
    #[arg(long)]
    pub astigmatism: Option<f64>,
    /// B-factor in Å² (the envelope's fall-off), instead of the preset's.
    #[arg(long)]
    pub b_factor: Option<f64>,
    /// Ice thickness variation across a micrograph, relative to its mean, instead of the
    /// preset's.
    #[arg(long)]
    pub ice_variation: Option<f64>,
    /// Share of the noise that is the ice's own scattering (0-1; 0, white noise, by default):
    /// imaged through the CTF, it gives empty ice its Thon rings, and drift and thick ice then
    /// show on micrographs without particles, as on real ones.
    #[arg(long)]
    pub ice_structure: Option<f64>,
    /// Picker behaviour, overriding the preset, as key=value,...: miss (rate), jitter (px), carbon,
    /// edge, empty (false picks per micrograph), ice (per blob), aggregate (probability picked),
    /// separation (of the scores, logits). Example: miss=0.2,jitter=3,empty=30
    #[arg(long, value_parser = |s: &str| parse_picker(s).map(|_| s.to_string()))]
    pub picker: Option<String>,
    /// Flaws to reject micrographs for, as key=probability per micrograph,...: empty (no
    /// particles), thick-ice, crystalline-ice, drift, or all. Example: all=0.25,empty=0.1
    #[arg(long, value_parser = |s: &str| parse_defects(s).map(|_| s.to_string()))]
    pub defects: Option<String>,
    /// Pick file format: star, cs, box, cbox, topaz or csv.
    #[arg(long, default_value_t = SimulateConfig::default().format)]
    pub format: PickFormat,
    /// Box size written with corner formats; default 2.2 particle radii, rounded to even.
    #[arg(long = "box", value_parser = crate::positive)]
    pub box_size: Option<f64>,
    /// Seed; the same seed gives byte-identical files.
    #[arg(long, default_value_t = SimulateConfig::default().seed)]
    pub seed: u64,
    /// Worker threads; 0 = all cores.
    #[arg(long, default_value_t = SimulateConfig::default().threads)]
    pub threads: usize,
    /// Skip the PNG previews.
    #[arg(long)]
    pub no_previews: bool,
    /// Largest side of the previews in pixels.
    #[arg(long, default_value_t = SimulateConfig::default().preview_size)]
    pub preview_size: usize,
    /// Previews without the pick circles (the micrograph alone).
    #[arg(long)]
    pub clean_previews: bool,
}

impl Default for SimulateConfig {
    fn default() -> Self {
        Self {
            out: PathBuf::new(),
            count: 10,
            size: 1024,
            pixel: 2.5,
            preset: "realistic".into(),
            map: None,
            model: None,
            builtin: "globular".into(),
            snr: None,
            voltage: None,
            cs: None,
            amplitude_contrast: None,
            defocus: None,
            astigmatism: None,
            b_factor: None,
            ice_variation: None,
            ice_structure: None,
            picker: None,
            defects: None,
            format: PickFormat::Star,
            box_size: None,
            seed: 0,
            threads: 0,
            no_previews: false,
            preview_size: 1024,
            clean_previews: false,
        }
    }
}

/// `MIN,MAX` defocus in µm.
pub fn parse_range(s: &str) -> Result<(f64, f64), String> {
    let (a, b) = s
        .split_once(',')
        .ok_or_else(|| format!("`{s}`: expected MIN,MAX in µm, e.g. 0.8,2.5"))?;
    let num = |t: &str| {
        t.trim()
            .parse::<f64>()
            .map_err(|_| format!("`{t}` is not a number"))
    };
    let (a, b) = (num(a)?, num(b)?);
    if a.is_nan() || b.is_nan() || a <= 0.0 || b < a {
        return Err(format!("`{s}`: need 0 < MIN <= MAX"));
    }
    Ok((a, b))
}

/// Comma-separated key=value with keys miss (rate of missed particles), jitter (px), carbon,
/// edge, empty (false picks per micrograph), ice (per blob), aggregate (probability an
/// aggregate is picked), separation (of the scores, logits).
pub fn parse_picker(s: &str) -> Result<Vec<(String, f64)>, String> {
    const KEYS: [&str; 8] = [
        "miss",
        "jitter",
        "carbon",
        "edge",
        "empty",
        "ice",
        "aggregate",
        "separation",
    ];
    key_values(s, "value")?
        .into_iter()
        .map(|(k, v)| {
            if !KEYS.contains(&k) {
                return Err(format!(
                    "unknown picker key `{k}`; expected one of {}",
                    KEYS.join(", ")
                ));
            }
            let probability = matches!(k, "miss" | "aggregate");
            if v.is_nan() || v < 0.0 || (probability && v > 1.0) {
                return Err(format!("{k}={v} is out of range"));
            }
            Ok((k.to_string(), v))
        })
        .collect()
}

/// Comma-separated `key=number` pairs, keys trimmed; `what` names the number in errors.
fn key_values<'a>(s: &'a str, what: &str) -> Result<Vec<(&'a str, f64)>, String> {
    s.split(',')
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("`{kv}`: expected key={what}"))?;
            let v: f64 = v
                .trim()
                .parse()
                .map_err(|_| format!("`{v}` is not a number"))?;
            Ok((k.trim(), v))
        })
        .collect()
}

/// Comma-separated key=probability per micrograph, keys empty (no particles), thick-ice,
/// crystalline-ice, drift, or all (every one).
pub fn parse_defects(s: &str) -> Result<Defects, String> {
    let mut d = Defects::default();
    for (k, p) in key_values(s, "probability")? {
        if !(0.0..=1.0).contains(&p) {
            return Err(format!("{k}={p}: a probability is between 0 and 1"));
        }
        match k {
            "empty" => d.empty = p,
            "thick-ice" => d.thick_ice = p,
            "crystalline-ice" => d.crystalline_ice = p,
            "drift" => d.drift = p,
            "all" => {
                d = Defects {
                    empty: p,
                    thick_ice: p,
                    crystalline_ice: p,
                    drift: p,
                }
            }
            other => {
                return Err(format!(
                    "unknown defect `{other}`; expected empty, thick-ice, crystalline-ice, drift or all"
                ))
            }
        }
    }
    Ok(d)
}

/// Simulates the dataset; returns the number of picks per truth label.
pub fn run(
    args: &SimulateConfig,
    events: &dyn Events,
) -> Result<std::collections::BTreeMap<&'static str, usize>> {
    let started = Instant::now();
    crate::inputs::ensure_folder_possible("--out", &args.out)?;
    if args.count == 0 || args.size < 64 {
        invalid!("--count must be at least 1 and --size at least 64 pixels");
    }
    if args.size > MAX_SIZE {
        invalid!(
            "--size {}: at most {MAX_SIZE} pixels (each thread holds several micrographs' worth \
             of float images)",
            args.size
        );
    }
    if args.pixel.is_nan() || args.pixel <= 0.0 {
        invalid!("--pixel must be a positive size in Å");
    }
    let Some(preset) = Preset::from_name(&args.preset) else {
        invalid!("preset `{}`: expected easy, realistic or hard", args.preset);
    };
    let mut cfg = preset.config(args.size, args.size, args.pixel);
    if let Some(snr) = args.snr {
        if snr.is_nan() || snr <= 0.0 {
            invalid!("--snr must be positive");
        }
        cfg.snr = snr;
    }
    let non_negative = |v: Option<f64>, name: &str| -> Result<Option<f64>> {
        match v {
            Some(x) if x.is_nan() || x < 0.0 => invalid!("--{name} must not be negative"),
            other => Ok(other),
        }
    };
    if let Some(v) = non_negative(args.voltage, "voltage")? {
        if v == 0.0 {
            invalid!("--voltage must be positive");
        }
        cfg.voltage = v;
    }
    if let Some(v) = non_negative(args.cs, "cs")? {
        cfg.cs = v;
    }
    if let Some(v) = non_negative(args.amplitude_contrast, "amplitude-contrast")? {
        if v >= 1.0 {
            invalid!("--amplitude-contrast is a fraction below 1");
        }
        cfg.amplitude_contrast = v;
    }
    if let Some((lo, hi)) = args.defocus {
        cfg.defocus = (lo * 1e4, hi * 1e4);
    }
    if let Some(v) = non_negative(args.astigmatism, "astigmatism")? {
        cfg.astigmatism = v;
    }
    if let Some(v) = non_negative(args.b_factor, "b-factor")? {
        cfg.b_factor = v;
    }
    if let Some(v) = non_negative(args.ice_variation, "ice-variation")? {
        cfg.ice_variation = v;
    }
    if let Some(v) = non_negative(args.ice_structure, "ice-structure")? {
        if v > 1.0 {
            invalid!("--ice-structure is a share of the noise, at most 1");
        }
        cfg.ice_structure = v;
    }
    let overrides = match &args.picker {
        Some(spec) => parse_picker(spec).map_err(|e| Error::Invalid(format!("--picker: {e}")))?,
        None => Vec::new(),
    };
    for (k, v) in &overrides {
        let p = &mut cfg.picker;
        match k.as_str() {
            "miss" => p.miss_rate = *v,
            "jitter" => p.jitter = *v,
            "carbon" => p.carbon = *v,
            "edge" => p.carbon_edge = *v,
            "empty" => p.empty = *v,
            "ice" => p.ice_per_blob = *v,
            "aggregate" => p.aggregate = *v,
            _ => p.score_separation = *v,
        }
    }
    if let Some(spec) = &args.defects {
        cfg.defects = parse_defects(spec).map_err(|e| Error::Invalid(format!("--defects: {e}")))?;
    }
    let vol = match (&args.map, &args.model) {
        (Some(map), _) if cryoprune_sim::atoms::is_atomic_model(map) => invalid!(
            "--map {}: an atomic model, not a map; give it with --model",
            map.display()
        ),
        (Some(map), _) => Volume::from_mrc(map)?,
        // Rendered at the micrograph's own sampling: projections then need no resampling, and
        // finer grids cost the cube of the ratio for detail the CTF and noise hide.
        (_, Some(model)) => render(read_atoms(model)?, args)?,
        _ => match Builtin::from_name(&args.builtin) {
            Some(shape) => render(shape.atoms(), args)?,
            None => invalid!(
                "built-in shape `{}`: expected globular, elongated or ring",
                args.builtin
            ),
        },
    };
    let radius = vol.radius() * vol.voxel / args.pixel;
    if radius < 3.0 || 4.0 * radius > args.size as f64 {
        return Err(wrong_size(2.0 * radius, args));
    }
    let box_size = args
        .box_size
        .unwrap_or_else(|| (2.0 * (1.1 * radius).round()).max(16.0));

    let mic_dir = args.out.join("micrographs");
    let preview_dir = args.out.join("previews");
    crate::create_dir(&mic_dir)?;
    if !args.no_previews {
        crate::create_dir(&preview_dir)?;
    }
    let threads = thread_count(args.threads)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Invalid(format!("cannot start {threads} threads: {e}")))?;
    events.emit(Event::Threads(threads));
    events.emit(Event::Started {
        total: args.count as u64,
        unit: "micrographs",
    });
    type Scenes = Vec<(
        String,
        Vec<cryoprune_sim::TruthPick>,
        Vec<(f64, f64)>,
        MicrographTags,
    )>;
    let scenes: Scenes = pool.install(|| {
        (0..args.count)
            .into_par_iter()
            .map(|i| -> Result<_> {
                let name = format!("sim_{:04}", i + 1);
                let seed = args.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i as u64 + 1);
                let scene = cryoprune_sim::scene::simulate(&cfg, &vol, seed);
                let img = &scene.image;
                write_mrc(
                    mic_dir.join(format!("{name}.mrc")),
                    (img.nx, img.ny, 1),
                    &img.data,
                    Mode::Float32,
                    WriteKind::ImageOrStack,
                    Some(args.pixel as f32),
                )?;
                if !args.no_previews {
                    let shown = if args.clean_previews {
                        &[][..]
                    } else {
                        &scene.picks[..]
                    };
                    let png = preview::render(img, shown, radius, args.preview_size.max(64));
                    preview::write(&preview_dir.join(format!("{name}.png")), &png)?;
                }
                events.emit(Event::Advanced(1));
                Ok((name, scene.picks, scene.particles, scene.tags))
            })
            .collect::<Result<Vec<_>>>()
    })?;
    events.emit(Event::Finished);

    let mut set = PickSet::empty(args.format);
    let mut index = Default::default();
    let mut truth = String::from("micrograph,x,y,label,score\n");
    // Every isolated particle placed, picked or not: what a picker should find.
    let mut particles = String::from("micrograph,x,y\n");
    let mut counts = std::collections::BTreeMap::new();
    // Micrograph-level truth in the form `train` reads as labels: images with label sets.
    let mut tags = String::from("micrograph,labels\n");
    for (name, picks, centres, tagged) in &scenes {
        tags.push_str(&format!(
            "micrographs/{name}.mrc,{}\n",
            tagged.names().join(";")
        ));
        for (x, y) in centres {
            particles.push_str(&format!("{name},{x:.2},{y:.2}\n"));
        }
        for p in picks {
            let mut pick = Pick::new(p.x, p.y);
            pick.score = Some((p.score * 1e4).round() / 1e4);
            set.push(name, pick, &mut index);
            truth.push_str(&format!(
                "{name},{:.2},{:.2},{},{:.4}\n",
                p.x,
                p.y,
                p.label.name(),
                p.score
            ));
            *counts.entry(p.label.name()).or_insert(0usize) += 1;
        }
    }
    let shapes = scenes
        .iter()
        .map(|(n, ..)| (n.clone(), (args.size, args.size)))
        .collect();
    let opts = WriteOptions {
        box_size: Some(box_size),
        micrograph_shapes: shapes,
    };
    let picks_out = if args.format.per_micrograph_only() {
        args.out.join("picks")
    } else {
        args.out.join(format!("picks.{}", args.format.extension()))
    };
    set.write(args.format, &picks_out, &opts)?;
    cryoprune_formats::atomic::write_atomic(&args.out.join("truth.csv"), |w| {
        w.write_all(truth.as_bytes())
    })?;
    cryoprune_formats::atomic::write_atomic(&args.out.join("particles.csv"), |w| {
        w.write_all(particles.as_bytes())
    })?;
    cryoprune_formats::atomic::write_atomic(&args.out.join("micrograph_tags.csv"), |w| {
        w.write_all(tags.as_bytes())
    })?;

    let total: usize = counts.values().sum();
    events.note(format!(
        "simulated {} of {}x{} px at {} Å/px ({} preset, particle {:.0} px across) in {:.1} s",
        crate::count(args.count, "micrograph"),
        args.size,
        args.size,
        args.pixel,
        args.preset,
        2.0 * radius,
        started.elapsed().as_secs_f64()
    ));
    let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    events.note(format!("  {total} picks: {}", parts.join(", ")));
    events.note(format!(
        "wrote {}, {}, {}, {}, {}{}",
        mic_dir.display(),
        picks_out.display(),
        args.out.join("truth.csv").display(),
        args.out.join("particles.csv").display(),
        args.out.join("micrograph_tags.csv").display(),
        if args.no_previews {
            String::new()
        } else {
            format!(", {}", preview_dir.display())
        }
    ));
    Ok(counts)
}

/// The particle does not fit the micrographs, or is a speck on them.
fn wrong_size(across: f64, args: &SimulateConfig) -> Error {
    Error::Invalid(format!(
        "the particle is {across:.1} px across at {} Å/px: too small or too large for {} px \
         micrographs (change --pixel)",
        args.pixel, args.size
    ))
}

/// Renders atoms at the micrographs' pixel size, after checking the size: the grid costs the
/// cube of the particle's size in pixels, which a pixel size far too fine would make too
/// large to allocate.
fn render(atoms: Vec<Atom>, args: &SimulateConfig) -> Result<Volume> {
    let across = atoms_extent(&atoms) / args.pixel;
    if across > args.size as f64 {
        return Err(wrong_size(across, args));
    }
    Ok(render_atoms(&atoms, args.pixel))
}
