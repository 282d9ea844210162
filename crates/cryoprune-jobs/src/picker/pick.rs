//! The pick job: a trained picker over whole micrographs. Each micrograph is binned,
//! low-passed and normalised as in training, scored by the fully convolutional network in
//! tiles, and its score map's peaks above the threshold (none closer than the suppression
//! distance) become picks with their log-odds as the score. Micrographs run in parallel; into
//! a folder, each micrograph's file is written as soon as it is picked.

use std::collections::HashMap;
use std::path::PathBuf;

use cryoprune_formats::names::relative_to;
use cryoprune_formats::picks::{coordinate_file, write_relion_index, Pick, WriteOptions};
use cryoprune_formats::{PickFormat, PickSet};
use cryoprune_model::picker::FusedPicker;
use cryoprune_train::picker::{candidates, score, Preparation, Prepared};
use cryoprune_train::pickerdir::PickerDir;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::load;
use crate::compute::ComputeConfig;
use crate::events::{Event, Events};
use crate::inputs::{check_outputs, micrograph_inputs, MicrographInputs};
use crate::{check_interrupted, invalid, Listening, Result};

/// The index of a folder of STAR picks, named as RELION's AutoPick names its own.
const RELION_INDEX: &str = "autopick.star";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PickConfig {
    pub compute: ComputeConfig,
    /// Picker directory written by `picker train`.
    pub model: PathBuf,
    pub micrographs: Vec<String>,
    /// A folder (one file per micrograph) or, for STAR, .cs and CSV, one file.
    pub out: PathBuf,
    /// The format written; the one `out`'s extension names, else STAR, if None.
    pub format: Option<PickFormat>,
    /// Log-odds a peak needs; the picker's own (best F1 on its training and validation
    /// micrographs together) if None.
    pub threshold: Option<f64>,
    /// Peaks closer than this (pixels) are one particle; the picker's own if None.
    pub min_distance: Option<f64>,
    /// Box size written into `.box`/`.cbox` files; 1.5 particle diameters if None.
    pub box_size: Option<usize>,
    /// Å per pixel of these micrographs, instead of their headers: micrographs of another
    /// pixel size than the picker's training micrographs are binned to the scale it learnt.
    pub angpix: Option<f64>,
    /// Leave micrographs whose output file exists (a folder `--out` only).
    pub skip_existing: bool,
}

impl Default for PickConfig {
    fn default() -> Self {
        Self {
            compute: ComputeConfig::default(),
            model: PathBuf::new(),
            micrographs: Vec::new(),
            out: PathBuf::new(),
            format: None,
            threshold: None,
            min_distance: None,
            box_size: None,
            angpix: None,
            skip_existing: false,
        }
    }
}

/// What the job did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PickSummary {
    pub micrographs: usize,
    pub skipped: usize,
    pub picks: usize,
    pub threshold: f64,
    /// Micrographs binned to the training micrographs' pixel size.
    pub rescaled: usize,
    pub files: Vec<PathBuf>,
}

/// A micrograph's pixel size (if known) and how much more it was binned than the picker's
/// training micrographs.
type Rescaled = (Option<f64>, f64);

/// How much more than the training micrographs a micrograph of `here` Å/px is binned so that
/// the network sees the pixel it learnt: 1 where either pixel size is unknown or they agree
/// to 1% (headers round).
fn rescale(trained: Option<f64>, here: Option<f64>) -> f64 {
    match (trained, here) {
        (Some(t), Some(h)) if ((t / h) - 1.0).abs() > 0.01 => t / h,
        _ => 1.0,
    }
}

pub fn run(cfg: &PickConfig, events: &dyn Events) -> Result<PickSummary> {
    // Named as a micrographs STAR names them, so the files and index are RELION's wherever
    // the micrographs were found.
    let MicrographInputs {
        paths: mics,
        names,
        project,
        ..
    } = micrograph_inputs(&cfg.micrographs)?;
    let mut inputs = mics.clone();
    inputs.push(cfg.model.clone());
    let format = PickFormat::for_output(&cfg.out, cfg.format)?;
    let one_file = format.names_one_file(&cfg.out);
    if one_file && format.per_micrograph_only() {
        invalid!(
            "--format {} holds one micrograph per file: give a folder as --out",
            format.extension()
        );
    }
    if one_file && cfg.skip_existing {
        invalid!("--skip-existing works with a folder --out, one file per micrograph");
    }
    if one_file {
        check_outputs(&[("--out", Some(&cfg.out))], None, &inputs)?;
    } else {
        check_outputs(&[], Some(("--out", &cfg.out)), &inputs)?;
    }
    let compute = cfg.compute.start(events)?;
    let (net, spec) = PickerDir::new(&cfg.model).load()?;
    let prep = spec.preparation();
    let threshold = cfg.threshold.unwrap_or(spec.threshold);
    if let Some(px) = cfg.angpix.filter(|px| !(*px > 0.0 && px.is_finite())) {
        invalid!("--angpix must be a positive number of Å per pixel, not {px}");
    }
    // Sizes in the training micrographs' pixels, scaled to each micrograph's; what the user
    // gives is in these micrographs' pixels already.
    let min_distance = |scale: f64| cfg.min_distance.unwrap_or(spec.min_distance * scale);
    let box_size = |scale: f64| {
        cfg.box_size
            .map_or((1.5 * spec.particle_diameter * scale).round(), |b| b as f64)
    };
    let opts = |box_size: f64, shapes: HashMap<String, (usize, usize)>| WriteOptions {
        box_size: Some(box_size),
        micrograph_shapes: shapes,
    };
    events.note(format!(
        "picking at score >= {threshold:.3} (log-odds), peaks at least {:.0} px apart",
        min_distance(1.0)
    ));
    let fused = FusedPicker::new(&net);
    let todo: Vec<(PathBuf, String)> = mics
        .iter()
        .cloned()
        .zip(names.iter().cloned())
        .filter(|(_, name)| {
            !(cfg.skip_existing && coordinate_file(&cfg.out, name, format).exists())
        })
        .collect();
    let mut summary = PickSummary {
        micrographs: todo.len(),
        skipped: mics.len() - todo.len(),
        threshold,
        ..Default::default()
    };
    if summary.skipped > 0 {
        events.note(format!(
            "{} micrographs already have picks in {}; left as they are",
            summary.skipped,
            cfg.out.display()
        ));
    }
    let _listening = Listening::start();
    let mut all = PickSet::empty(format);
    let mut shapes = HashMap::new();
    let mut index = HashMap::new();
    let mut rescaled_first: Option<Rescaled> = None;
    events.emit(Event::Started {
        total: todo.len() as u64,
        unit: "micrographs",
    });
    compute.install(events, || -> Result<()> {
        // As many micrographs at once as threads, each parallel inside: the network's
        // products use every core either way, and the reading of the next overlaps.
        for chunk in todo.chunks(compute.threads.max(1)) {
            check_interrupted()?;
            let picked: Vec<(Vec<Pick>, (usize, usize), Rescaled)> = chunk
                .par_iter()
                .map(|(path, _)| {
                    let (image, header) = load(path)?;
                    let here = cfg.angpix.or(header);
                    let scale = rescale(spec.angpix, here);
                    let prep = Preparation {
                        bin: prep.bin * scale,
                        ..prep
                    };
                    if prep.bin < 1.0 {
                        invalid!(
                            "{}: its pixels ({:.3} Å) are coarser than those the picker's network \
                             sees ({:.3} Å: the training micrographs' {:.3} Å binned by {:.2}); \
                             pick on micrographs of at most that pixel size, or give --angpix if \
                             the header is wrong",
                            path.display(),
                            here.unwrap_or(f64::NAN),
                            spec.angpix.unwrap_or(f64::NAN) * spec.bin,
                            spec.angpix.unwrap_or(f64::NAN),
                            spec.bin
                        );
                    }
                    let prepared = Prepared::new(&image, &prep, fused.stride())?;
                    let map = score(&fused, &prepared, spec.views);
                    let picks = candidates(&prepared, &map, min_distance(scale), threshold as f32)
                        .into_iter()
                        .filter(|c| {
                            c.x >= 0.0
                                && c.y >= 0.0
                                && c.x < image.nx as f64
                                && c.y < image.ny as f64
                        })
                        .map(|c| Pick {
                            score: c.score,
                            ..Pick::new(c.x.round(), c.y.round())
                        })
                        .collect();
                    Ok((picks, (image.nx, image.ny), (here, scale)))
                })
                .collect::<Result<_>>()?;
            for ((_, name), (picks, shape, rescaled)) in chunk.iter().zip(picked) {
                if rescaled.1 != 1.0 {
                    rescaled_first.get_or_insert(rescaled);
                    summary.rescaled += 1;
                }
                let name = name.clone();
                summary.picks += picks.len();
                shapes.insert(name.clone(), shape);
                if one_file {
                    let mut added = false;
                    for p in picks {
                        all.push(&name, p, &mut index);
                        added = true;
                    }
                    if !added {
                        events.note(format!("no picks on {name}"));
                    }
                } else {
                    let mut one = PickSet::empty(format);
                    one.micrographs
                        .push(cryoprune_formats::picks::MicrographPicks {
                            micrograph: name.clone(),
                            picks,
                        });
                    let shape = HashMap::from([(name.clone(), shape)]);
                    summary.files.extend(one.write(
                        format,
                        &cfg.out,
                        &opts(box_size(rescaled.1), shape),
                    )?);
                }
                events.emit(Event::Advanced(1));
            }
        }
        Ok(())
    })?;
    events.emit(Event::Finished);
    if let (Some((here, scale)), Some(trained)) = (rescaled_first, spec.angpix) {
        events.note(format!(
            "{} of {} micrographs (the first at {:.3} Å/px) were binned by {:.2} instead of {:.2}, \
             so that particles have the size in pixels the picker learnt on its {trained:.3} Å/px \
             micrographs; --angpix gives their pixel size where a header is wrong",
            summary.rescaled,
            summary.micrographs,
            here.unwrap_or(f64::NAN),
            spec.bin * scale,
            spec.bin
        ));
    }
    if one_file {
        summary
            .files
            .extend(all.write(format, &cfg.out, &opts(box_size(1.0), shapes))?);
    } else if format == PickFormat::Star {
        // RELION 4/5's Extract takes its coordinates as an index, as AutoPick writes one.
        let listed: Vec<(String, PathBuf)> = names
            .into_iter()
            .map(|name| {
                let file = coordinate_file(&cfg.out, &name, format);
                (name, file)
            })
            .filter(|(_, f)| f.exists())
            .map(|(name, f)| (name, relative_to(project.as_deref(), &f)))
            .collect();
        let index = cfg.out.join(RELION_INDEX);
        write_relion_index(&index, &listed)?;
        summary.files.push(index);
    }
    events.output(format!(
        "{} picks on {} written to {}",
        summary.picks,
        crate::count(summary.micrographs, "micrograph"),
        cfg.out.display()
    ));
    Ok(summary)
}
