//! The curate job: a multi-label model trained on whole micrographs tags every micrograph, and
//! those carrying a rejected tag are left out. A RELION micrographs STAR is written back with
//! every block and column it had, only the rejected rows gone; a cryoSPARC exposures `.cs`
//! likewise with every field; a glob gives a plain list and a fresh STAR. Beside them: every
//! micrograph's probabilities and measured statistics (tags.csv) and an HTML report.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use cryoprune_formats::atomic::write_atomic;
use cryoprune_formats::read_micrograph;
use cryoprune_formats::star::{Loop, StarFile};
use cryoprune_image::display;
use cryoprune_image::Image;
use cryoprune_model::exposure_context::ExposureContext;
use cryoprune_train::dataset;
use cryoprune_train::modeldir::ModelDir;
use serde::{Deserialize, Serialize};

use crate::compute::ComputeConfig;
use crate::evaluate::predict_label_sets;
use crate::events::{Event, Events};
use crate::inputs::{check_outputs, micrograph_inputs, MicrographList};
use crate::{invalid, Context, Error, Result};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct CurateConfig {
    #[command(flatten)]
    pub compute: ComputeConfig,
    /// Model directory of a multi-label model trained on micrographs with tags.
    #[arg(long)]
    pub model: PathBuf,
    /// Micrographs (globs, quoted), one RELION micrographs STAR file, or one cryoSPARC
    /// exposures .cs (micrograph_blob/path; paths found as the project folder would).
    #[arg(long, required = true, num_args = 1..)]
    pub micrographs: Vec<String>,
    /// Tags that reject a micrograph, comma-separated (default: every tag of the model).
    #[arg(long, value_delimiter = ',')]
    pub reject: Vec<String>,
    /// One probability threshold for every tag instead of the model's own per tag.
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Output folder: micrographs.star and rejected.star (exposures.cs and
    /// rejected_exposures.cs for a .cs; micrographs.txt and micrographs.star for a glob),
    /// tags.csv, report.html.
    #[arg(long)]
    pub out: PathBuf,
}

/// What curate decided.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Curated {
    pub micrographs: usize,
    pub kept: usize,
    /// Micrographs rejected for each rejecting tag (one may carry several).
    pub rejected_for: Vec<(String, usize)>,
}

/// Micrographs cut and classified together: a network batch, and a progress step.
const CURATE_GROUP: usize = 32;

/// A measured statistic this many training standard deviations from the training micrographs'
/// mean says the micrograph is unlike any the model learnt from. Within a dataset the farthest
/// statistic of a micrograph stayed within 8 (simulated test sets against 150 training
/// micrographs) and 11 (against 7); denoised JPEGs against a model of raw simulated
/// micrographs reached 44.
const FAR_OUTSIDE: f64 = 20.0;

pub fn run(cfg: &CurateConfig, events: &dyn Events) -> Result<Curated> {
    let input = micrograph_inputs(&cfg.micrographs)?;
    let mut taken = input.paths.clone();
    taken.push(cfg.model.clone());
    if let Some(list) = cfg
        .micrographs
        .first()
        .filter(|_| !matches!(input.listed, MicrographList::Glob))
    {
        taken.push(PathBuf::from(list));
    }
    check_outputs(&[], Some(("--out", &cfg.out)), &taken)?;
    if let Some(t) = cfg.threshold.filter(|t| !(0.0..=1.0).contains(t)) {
        invalid!("--threshold {t}: a probability between 0 and 1");
    }
    let compute = cfg.compute.start(events)?;
    compute.install(events, || {
        let (networks, spec) = ModelDir::new(&cfg.model)
            .load_ensemble(&compute.device.device)
            .context_with(|| format!("loading the model in {}", cfg.model.display()))?;
        let Some(thresholds) = spec.thresholds.clone() else {
            invalid!(
                "{} chooses one class per image; curate needs a model trained on micrographs \
                 with tags (train --labels micrograph_tags.csv)",
                cfg.model.display()
            );
        };
        let labels = &spec.classes;
        let reject: Vec<usize> = if cfg.reject.is_empty() {
            (0..labels.len()).collect()
        } else {
            cfg.reject
                .iter()
                .map(|r| {
                    labels.iter().position(|l| l == r).ok_or_else(|| {
                        Error::Invalid(format!(
                            "--reject {r}: not a tag of the model ({})",
                            labels.join(", ")
                        ))
                    })
                })
                .collect::<Result<_>>()?
        };
        let thresholds: Vec<f32> = match cfg.threshold {
            Some(t) => vec![t; labels.len()],
            None => thresholds,
        };
        events.emit(Event::Started {
            total: input.paths.len() as u64,
            unit: "micrographs",
        });
        let pre = &spec.preprocessing;
        // In groups: a whole micrograph is large and is held only while it is cut, its network
        // input small; a group shares its FFT plans and runs through the network as one batch.
        let mut probs = Vec::with_capacity(input.paths.len());
        // What the model measured of each micrograph (empty for a model without the spectrum):
        // in tags.csv, so that a user can sort and plot by them as in cryoSPARC's Curate
        // Exposures.
        let mut measured = Vec::with_capacity(input.paths.len());
        // Micrographs unlike the training ones: (path, statistic, standard deviations).
        let mut outside: Vec<(&PathBuf, String, f64)> = Vec::new();
        // Every network of an ensemble weighs its own statistics: a micrograph is outside if it
        // is outside for any of them.
        let contexts: Vec<&ExposureContext> =
            spec.exposure_contexts().into_iter().flatten().collect();
        for group in input.paths.chunks(CURATE_GROUP) {
            let data =
                dataset::from_images(group, pre.input_size, pre.invert, labels, pre.spectrum)?;
            for (path, facts) in group.iter().zip(&data.exposure) {
                let farthest = contexts
                    .iter()
                    .filter_map(|ctx| ctx.farthest(facts).map(|(j, z)| (ctx.facts[j].clone(), z)))
                    .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()));
                if let Some((fact, z)) = farthest.filter(|f| f.1.abs() > FAR_OUTSIDE) {
                    outside.push((path, fact, z));
                }
            }
            measured.extend(data.exposure.iter().cloned());
            probs.extend(predict_label_sets(
                &networks,
                &spec,
                &data,
                CURATE_GROUP,
                false,
                &compute,
            )?);
            events.emit(Event::Advanced(group.len() as u64));
        }
        events.emit(Event::Finished);
        let farthest = outside
            .iter()
            .max_by(|a, b| a.2.abs().total_cmp(&b.2.abs()));
        if let Some((path, fact, z)) = farthest {
            events.warn(format!(
                "{} of {} micrographs are unlike those the model was trained on (the farthest, \
                 {}: its {} lies {:.0} standard deviations from the training micrographs' \
                 mean): their tags are guesses outside what the model learnt; train a model on \
                 micrographs like these (the same detector, processing and pixel size)",
                outside.len(),
                input.paths.len(),
                path.display(),
                fact,
                z.abs()
            ));
        }
        let called: Vec<Vec<bool>> = probs
            .iter()
            .map(|p| p.iter().zip(&thresholds).map(|(p, t)| p >= t).collect())
            .collect();
        let kept: Vec<bool> = called
            .iter()
            .map(|c| reject.iter().all(|&r| !c[r]))
            .collect();
        // A tag called by its share, not by the micrograph, rejects at random: say so, with
        // what it cost.
        let unlearnt = spec
            .training
            .label_validation
            .as_ref()
            .map(|r| r.unlearnt())
            .unwrap_or_default();
        for (tag, everywhere) in unlearnt {
            let Some(r) = reject.iter().copied().find(|&r| labels[r] == tag.label) else {
                continue;
            };
            events.warn(format!(
                "`{}` rejects {} of {} micrographs, but the model has not learnt it (its \
                 validation F1 {:.3} is what calling every micrograph `{}` scores, {:.3}): \
                 it is called by its share, not by what a micrograph shows; leave it out of \
                 --reject, or retrain with more or clearer examples",
                tag.label,
                called.iter().filter(|c| c[r]).count(),
                called.len(),
                tag.f1,
                tag.label,
                everywhere
            ));
        }
        let tagged = Tagged {
            probs,
            called,
            kept,
            measured,
        };
        let (called, kept) = (&tagged.called, &tagged.kept);
        let _lock = cryoprune_formats::atomic::lock_folder(&cfg.out)?;
        write_tags(&cfg.out.join("tags.csv"), &input.paths, labels, &tagged)?;
        let n_kept = kept.iter().filter(|&&k| k).count();
        match &input.listed {
            MicrographList::Star(star, block) => {
                write_star_subset(&cfg.out.join("micrographs.star"), star, *block, kept, true)?;
                write_star_subset(&cfg.out.join("rejected.star"), star, *block, kept, false)?;
            }
            MicrographList::Exposures(exposures) => {
                for (name, keep) in [("exposures.cs", true), ("rejected_exposures.cs", false)] {
                    let rows: Vec<usize> = (0..kept.len()).filter(|&r| kept[r] == keep).collect();
                    exposures.write_selected(cfg.out.join(name), rows.into_iter(), &[])?;
                }
            }
            MicrographList::Glob => {
                let names: Vec<String> = input
                    .paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
                let list: String = names
                    .iter()
                    .zip(kept)
                    .filter(|(_, &k)| k)
                    .map(|(n, _)| format!("{n}\n"))
                    .collect();
                write_atomic(&cfg.out.join("micrographs.txt"), |w| {
                    w.write_all(list.as_bytes())
                })?;
                let star = fresh_star(&names);
                write_star_subset(&cfg.out.join("micrographs.star"), &star, 0, kept, true)?;
            }
        }
        let curated = Curated {
            micrographs: input.paths.len(),
            kept: n_kept,
            rejected_for: reject
                .iter()
                .map(|&r| (labels[r].clone(), called.iter().filter(|c| c[r]).count()))
                .collect(),
        };
        write_report(
            &cfg.out.join("report.html"),
            &input.paths,
            labels,
            &thresholds,
            &tagged,
            &curated,
        )?;
        let why: Vec<String> = curated
            .rejected_for
            .iter()
            .map(|(l, n)| format!("{n} {l}"))
            .collect();
        events.output(format!(
            "kept {} of {} micrographs (tagged: {}); written to {}",
            n_kept,
            curated.micrographs,
            why.join(", "),
            cfg.out.display()
        ));
        Ok(curated)
    })
}

/// Every micrograph's probabilities, the tags they call at the thresholds, and whether the
/// micrograph is kept.
struct Tagged {
    probs: Vec<Vec<f32>>,
    called: Vec<Vec<bool>>,
    kept: Vec<bool>,
    /// Per micrograph, [`cryoprune_image::exposure::measure`]'s statistics; empty when the
    /// model does not measure them.
    measured: Vec<Vec<f64>>,
}

/// `micrograph,kept,tags,p_<tag>...`, then the measured statistics where there are any, one
/// row per micrograph.
fn write_tags(path: &Path, paths: &[PathBuf], labels: &[String], tagged: &Tagged) -> Result<()> {
    let Tagged {
        probs,
        called,
        kept,
        measured,
    } = tagged;
    let mut text = String::from("micrograph,kept,tags");
    for l in labels {
        write!(text, ",p_{l}").expect("to a string");
    }
    if !measured.is_empty() {
        for f in cryoprune_image::exposure::FACTS {
            write!(text, ",{f}").expect("to a string");
        }
    }
    text.push('\n');
    for (i, (((p, probs), called), kept)) in
        paths.iter().zip(probs).zip(called).zip(kept).enumerate()
    {
        let tags: Vec<&str> = labels
            .iter()
            .zip(called)
            .filter(|(_, &c)| c)
            .map(|(l, _)| l.as_str())
            .collect();
        write!(text, "{},{},{}", p.display(), *kept as u8, tags.join(";")).expect("to a string");
        for v in probs {
            write!(text, ",{v:.5}").expect("to a string");
        }
        for v in measured.get(i).into_iter().flatten() {
            write!(text, ",{v:.5}").expect("to a string");
        }
        text.push('\n');
    }
    write_atomic(path, |w| w.write_all(text.as_bytes()))?;
    Ok(())
}

/// A micrographs STAR for micrographs that came as a glob: one `_rlnMicrographName` each.
fn fresh_star(names: &[String]) -> StarFile {
    let mut l = Loop::new(vec!["rlnMicrographName".into()]);
    for n in names {
        l.rows.push([n.as_str()]);
    }
    let mut star = StarFile::default();
    let mut block = cryoprune_formats::star::Block::new("micrographs");
    block.items.push(cryoprune_formats::star::Item::Loop(l));
    star.blocks.push(block);
    star
}

/// `star` with the micrographs loop of block `block` cut to the rows where `kept` is `keep`;
/// every other block, column and comment as it was.
fn write_star_subset(
    path: &Path,
    star: &StarFile,
    block: usize,
    kept: &[bool],
    keep: bool,
) -> Result<()> {
    let mut out = star.clone();
    let l = out.blocks[block]
        .first_loop_mut()
        .expect("the micrographs loop");
    let mut rows = cryoprune_formats::star::Rows::default();
    for (row, &k) in l.rows.iter().zip(kept) {
        if k == keep {
            rows.push(row.iter());
        }
    }
    l.rows = rows;
    l.lines.clear();
    out.write(path)?;
    Ok(())
}

/// Thumbnails per tag: the most confident micrographs and the borderline ones, and the counts.
fn write_report(
    path: &Path,
    paths: &[PathBuf],
    labels: &[String],
    thresholds: &[f32],
    tagged: &Tagged,
    curated: &Curated,
) -> Result<()> {
    const SHOWN: usize = 6;
    let Tagged {
        probs,
        called,
        kept,
        ..
    } = tagged;
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>cryoprune curate</title>\
         <style>body{font-family:sans-serif;margin:1.5em}img{width:160px;margin:2px}\
         figure{display:inline-block;margin:4px;font-size:11px;text-align:center}\
         table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ccc}</style>\
         </head><body><h1>Micrograph curation</h1>",
    );
    write!(
        html,
        "<p>Kept {} of {} micrographs.</p><table><tr><th>tag</th><th>threshold</th><th>micrographs tagged</th></tr>",
        curated.kept, curated.micrographs
    )
    .expect("to a string");
    for (c, l) in labels.iter().enumerate() {
        let n = called.iter().filter(|tags| tags[c]).count();
        write!(
            html,
            "<tr><td>{l}</td><td>{:.3}</td><td>{n}</td></tr>",
            thresholds[c]
        )
        .expect("to a string");
    }
    html.push_str("</table>");
    // A micrograph shown under several tags is read and encoded once.
    let mut thumbnails: HashMap<usize, String> = HashMap::new();
    let mut thumbnail = |i: usize| -> Result<String> {
        if let Some(t) = thumbnails.get(&i) {
            return Ok(t.clone());
        }
        let m = read_micrograph(&paths[i])?;
        let img = display::render(&Image::new(m.nx, m.ny, m.data), &[], 0.0, 320);
        let jpeg = display::jpeg_bytes(&img, 80)?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(jpeg);
        thumbnails.insert(i, encoded.clone());
        Ok(encoded)
    };
    for (c, l) in labels.iter().enumerate() {
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b][c].total_cmp(&probs[a][c]));
        let mut borderline = order.clone();
        borderline.sort_by(|&a, &b| {
            (probs[a][c] - thresholds[c])
                .abs()
                .total_cmp(&(probs[b][c] - thresholds[c]).abs())
        });
        write!(html, "<h2>{l}</h2>").expect("to a string");
        for (title, list) in [("most confident", &order), ("borderline", &borderline)] {
            write!(html, "<h3>{title}</h3>").expect("to a string");
            for &i in list.iter().take(SHOWN) {
                let name = paths[i].file_name().unwrap_or_default().to_string_lossy();
                write!(
                    html,
                    "<figure><img src=\"data:image/jpeg;base64,{}\"><figcaption>{name}<br>p = {:.3}{}</figcaption></figure>",
                    thumbnail(i)?,
                    probs[i][c],
                    if kept[i] { "" } else { ", rejected" }
                )
                .expect("to a string");
            }
        }
    }
    html.push_str("</body></html>\n");
    write_atomic(path, |w| w.write_all(html.as_bytes()))?;
    Ok(())
}
