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
use cryoprune_train::picker::{candidates, score, Prepared};
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
    pub files: Vec<PathBuf>,
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
    let min_distance = cfg.min_distance.unwrap_or(spec.min_distance);
    let box_size = cfg
        .box_size
        .map_or((1.5 * spec.particle_diameter).round(), |b| b as f64);
    let opts = |shapes: HashMap<String, (usize, usize)>| WriteOptions {
        box_size: Some(box_size),
        micrograph_shapes: shapes,
    };
    events.note(format!(
        "picking at score >= {threshold:.3} (log-odds), peaks at least {min_distance:.0} px apart"
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
    events.emit(Event::Started {
        total: todo.len() as u64,
        unit: "micrographs",
    });
    compute.install(events, || -> Result<()> {
        // As many micrographs at once as threads, each parallel inside: the network's
        // products use every core either way, and the reading of the next overlaps.
        for chunk in todo.chunks(compute.threads.max(1)) {
            check_interrupted()?;
            let picked: Vec<(Vec<Pick>, (usize, usize))> = chunk
                .par_iter()
                .map(|(path, _)| {
                    let (image, _) = load(path)?;
                    let prepared = Prepared::new(&image, &prep, fused.stride())?;
                    let map = score(&fused, &prepared, spec.views);
                    let picks = candidates(&prepared, &map, min_distance, threshold as f32)
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
                    Ok((picks, (image.nx, image.ny)))
                })
                .collect::<Result<_>>()?;
            for ((_, name), (picks, shape)) in chunk.iter().zip(picked) {
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
                    summary
                        .files
                        .extend(one.write(format, &cfg.out, &opts(shape))?);
                }
                events.emit(Event::Advanced(1));
            }
        }
        Ok(())
    })?;
    events.emit(Event::Finished);
    if one_file {
        summary
            .files
            .extend(all.write(format, &cfg.out, &opts(shapes))?);
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
