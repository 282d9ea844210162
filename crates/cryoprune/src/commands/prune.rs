//! `cryoprune prune`: classify every pick with a trained model and write the kept picks back in
//! the picker's own format, each input file to a file of the same name under OUT, with the
//! predicted class and each class's probability added. What each format gets:
//! STAR (RELION, crYOLO `.cbox`) new columns `_cryopruneClass` and `_cryopruneP_<class>`;
//! cryoSPARC `.cs` new fields `cryoprune/class` and `cryoprune/p_<class>`; CSV, Topaz `.txt` and
//! old-style `.cbox` new columns `cryoprune_class` and `cryoprune_p_<class>`; EMAN `.box`, whose
//! readers take five columns at most, gets the probability of the kept classes as its 5th
//! column. Every other column of the input is kept as it was.
//!
//! Each output file is written under a temporary name and renamed when complete, as soon as all
//! its micrographs are done, so a run stopped at any moment leaves whole files; with
//! `--skip-existing` a rerun then does only what is missing.
//!
//! ```text
//! cryoprune prune --model model/ --micrographs 'Micrographs/*.mrc' --picks autopick/ --out pruned/ --report report.html
//! cryoprune prune --model model/ --micrographs 'J5/motioncorrected/*.mrc' --picks picked_particles.cs --out pruned/ --threshold 0.7 --scores scores.csv
//! cryoprune prune --model model/ --micrographs 'Micrographs/*.mrc' --picks CBOX/ --out pruned/ --keep particle --write-rejected --skip-existing
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use cryoprune_formats::atomic::write_atomic;
use cryoprune_formats::picks::check::{coordinate_warnings, Placed};
use cryoprune_formats::picks::Content;
use cryoprune_formats::{micrograph_shape, Pick, PickFormat, PickSet};
use cryoprune_image::pipeline::Job;
use cryoprune_model::modeldir::{self, ModelSpec};
use cryoprune_model::pick_context::edge_distance;
use cryoprune_model::{Classifier, PickContext, PickFacts};
use cryoprune_train::classify::{classify_jobs, Unscored};
use cryoprune_train::threshold::{self, Advice};
use cryoprune_train::trainer::argmax;
use serde::Serialize;

use super::learning::{self, ComputeArgs, LabelArgs};
use crate::report;

#[derive(clap::Args)]
#[command(
    about = "Classify every pick and write the kept ones in the picker's own format",
    after_help = super::examples(include_str!("prune.rs"))
)]
pub struct Args {
    #[command(flatten)]
    compute: ComputeArgs,
    /// Model directory written by `cryoprune train`.
    #[arg(long)]
    model: PathBuf,
    /// Micrographs the picks were made on (globs, quoted).
    #[arg(long, required = true, num_args = 1..)]
    micrographs: Vec<String>,
    /// Pick files or folders of them, in one format (STAR, .cs, .box, .cbox, Topaz .txt, CSV).
    #[arg(long, required = true, num_args = 1..)]
    picks: Vec<PathBuf>,
    /// Pick format when the extension does not tell.
    #[arg(long, value_parser = super::convert::parse_format)]
    format: Option<PickFormat>,
    /// Multiply pick coordinates by this factor (picks made on binned micrographs).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Output folder; each input file gives a file of the same name here. A single input file
    /// may also be pruned to a file path with the same extension.
    #[arg(long)]
    out: PathBuf,
    /// Classes to keep (default: the class named particle, particles or good).
    #[arg(long, num_args = 1..)]
    keep: Vec<String>,
    /// Keep a pick when the probability of the kept classes is at least this; without it, a
    /// pick is kept when its most probable class is a kept one.
    #[arg(long)]
    threshold: Option<f64>,
    /// Also write the rejected picks, in the same format, under OUT/rejected/.
    #[arg(long)]
    write_rejected: bool,
    /// Write every pick with its class and probabilities as CSV here.
    #[arg(long)]
    scores: Option<PathBuf>,
    /// Write a self-contained HTML report here (PNG overlays go in a folder beside it).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Labelled picks for the threshold advisor (default: the model's validation picks).
    #[arg(long, num_args = 1..)]
    labels: Vec<PathBuf>,
    /// Precision the threshold advisor aims for.
    #[arg(long, default_value_t = 0.95)]
    target_precision: f64,
    /// Leave input files whose output already exists alone (reruns, new micrographs only).
    #[arg(long)]
    skip_existing: bool,
    /// Particles per network batch.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Classify on the image alone, ignoring the pick context (picker score, distance from the
    /// edge) the model was trained to combine with it: for picks from another picker, or with
    /// no scores.
    #[arg(long)]
    image_only: bool,
}

/// What became of one pick.
#[derive(Debug, Clone)]
enum Outcome {
    Scored(Box<[f32]>),
    Unscored(&'static str),
}

/// The decision rule: which classes are kept and how.
struct Rule {
    keep: Vec<usize>,
    threshold: Option<f64>,
}

impl Rule {
    fn p_keep(&self, p: &[f32]) -> f64 {
        self.keep.iter().map(|&c| f64::from(p[c])).sum()
    }

    fn kept(&self, p: &[f32]) -> bool {
        match self.threshold {
            Some(t) => self.p_keep(p) >= t,
            None => self.keep.contains(&argmax(p)),
        }
    }
}

#[derive(Serialize, Default, Clone)]
pub struct MicrographSummary {
    pub micrograph: String,
    pub picks: usize,
    pub kept: usize,
    pub per_class: BTreeMap<String, usize>,
    pub unscored: usize,
}

/// The run's summary, printed and written as JSON.
#[derive(Serialize)]
pub struct Summary {
    pub model: PathBuf,
    pub classes: Vec<String>,
    pub keep: Vec<String>,
    pub threshold: Option<f64>,
    pub picks: usize,
    pub scored: usize,
    pub kept: usize,
    pub rejected: usize,
    /// Picks with no probabilities, by reason (outside the micrograph, edge, no micrograph).
    pub unscored: BTreeMap<String, usize>,
    /// Scored picks by predicted class.
    pub per_class: BTreeMap<String, usize>,
    pub per_micrograph: Vec<MicrographSummary>,
    pub files_written: Vec<PathBuf>,
    pub files_skipped: Vec<PathBuf>,
    pub warnings: Vec<String>,
    pub device: String,
    pub seconds: f64,
    pub particles_per_second: f64,
    pub threshold_advice: Option<Advice>,
    /// What was combined with the image besides it, in words (empty: the image alone).
    pub context: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    if let Some(t) = args.threshold {
        if !(t > 0.0 && t < 1.0) {
            bail!("--threshold {t}: expected a probability between 0 and 1");
        }
    }
    if !(args.target_precision > 0.0 && args.target_precision <= 1.0) {
        bail!("--target-precision must be in (0, 1]");
    }
    if !(args.scale.is_finite() && args.scale > 0.0) {
        bail!("--scale must be a positive number");
    }
    let (compute, threads) = args.compute.start()?;
    let (model, spec) = modeldir::load(&args.model, &compute.device)
        .with_context(|| format!("loading the model in {}", args.model.display()))?;
    let rule = Rule {
        keep: kept_classes(&spec.classes, &args.keep)?,
        threshold: args.threshold,
    };
    let mut set = PickSet::read(&args.picks, args.format)?;
    if args.scale != 1.0 {
        set.scale(args.scale);
    }
    let micrographs = super::expand_globs(&args.micrographs)?;
    let out_is_file = set.files.len() == 1
        && args.out.extension().is_some_and(|e| {
            set.files[0]
                .path
                .extension()
                .map(|x| x.to_ascii_lowercase())
                == Some(e.to_ascii_lowercase())
        });
    refuse_inputs_as_output(&set, &args.out, &micrographs)?;
    let dests: Vec<PathBuf> = set
        .files
        .iter()
        .map(|f| {
            if out_is_file {
                args.out.clone()
            } else {
                args.out.join(f.path.file_name().unwrap_or_default())
            }
        })
        .collect();
    let skipped: Vec<bool> = dests
        .iter()
        .map(|d| args.skip_existing && d.exists())
        .collect();
    let files_skipped: Vec<PathBuf> = dests
        .iter()
        .zip(&skipped)
        .filter(|(_, &s)| s)
        .map(|(d, _)| d.clone())
        .collect();
    if !files_skipped.is_empty() {
        eprintln!(
            "--skip-existing: {} of {} output files exist and are left alone",
            files_skipped.len(),
            dests.len()
        );
    }

    // Which files hold picks of which micrograph group, and the reverse.
    let mut group_files: Vec<Vec<usize>> = vec![Vec::new(); set.micrographs.len()];
    let mut file_groups: Vec<Vec<usize>> = vec![Vec::new(); set.files.len()];
    for (g, m) in set.micrographs.iter().enumerate() {
        for p in &m.picks {
            if let Some(src) = p.source {
                if !group_files[g].contains(&src.file) {
                    group_files[g].push(src.file);
                    file_groups[src.file].push(g);
                }
            }
        }
    }
    let active: Vec<bool> = group_files
        .iter()
        .map(|fs| fs.iter().any(|&f| !skipped[f]))
        .collect();

    let report_pairs = super::pair_with_micrographs(&set, &micrographs, "they are not kept");
    let mut warnings = Vec::new();
    let active_pairs: Vec<(usize, usize)> = report_pairs
        .pairs
        .iter()
        .copied()
        .filter(|&(g, _)| active[g] && !set.micrographs[g].picks.is_empty())
        .collect();
    if !report_pairs.unmatched_picks.is_empty() {
        warnings.push(format!(
            "picks of {} micrographs match none of the {} micrographs given; they are not kept",
            report_pairs.unmatched_picks.len(),
            micrographs.len()
        ));
    }
    if active_pairs.is_empty() && active.iter().any(|&a| a) {
        bail!(
            "no pick file matches any of the {} micrographs given (pick files name e.g. `{}`)",
            micrographs.len(),
            set.micrographs
                .first()
                .map_or("nothing", |m| m.micrograph.as_str())
        );
    }
    let mut shapes = Vec::with_capacity(active_pairs.len());
    let mut centres: Vec<Vec<(f64, f64)>> = Vec::with_capacity(active_pairs.len());
    for &(g, m) in &active_pairs {
        let shape = micrograph_shape(&micrographs[m])
            .with_context(|| format!("reading the size of {}", micrographs[m].display()))?;
        shapes.push(shape);
        centres.push(
            set.micrographs[g]
                .picks
                .iter()
                .map(|p| (p.x, p.y))
                .collect(),
        );
    }
    let placed: Vec<Placed> = centres
        .iter()
        .zip(&shapes)
        .map(|(c, &shape)| Placed { picks: c, shape })
        .collect();
    warnings.extend(coordinate_warnings(&placed));
    let context = spec.pick_context.as_ref().filter(|_| !args.image_only);
    if let Some(ctx) = context {
        warnings.extend(check_picker_scores(&set, &active_pairs, ctx, &args.model)?);
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }

    let mut outcomes: Vec<Vec<Outcome>> = set
        .micrographs
        .iter()
        .map(|m| vec![Outcome::Unscored("no micrograph"); m.picks.len()])
        .collect();
    let jobs: Vec<Job> = active_pairs
        .iter()
        .zip(centres)
        .map(|(&(_, m), picks)| Job {
            path: micrographs[m].clone(),
            picks,
        })
        .collect();
    let job_group: Vec<usize> = active_pairs.iter().map(|&(g, _)| g).collect();
    let mut has_job = vec![false; set.micrographs.len()];
    for &g in &job_group {
        has_job[g] = true;
    }
    // Files wait for their groups; unmatched and empty groups are done from the start.
    let mut waiting_on: Vec<usize> = file_groups
        .iter()
        .map(|gs| gs.iter().filter(|&&g| has_job[g]).count())
        .collect();
    let writer = Writer {
        set: &set,
        spec: &spec,
        rule: &rule,
        dests: &dests,
        rejected_dir: args
            .write_rejected
            .then(|| rejected_dir(&args.out, out_is_file)),
    };
    clear_stale_partials(&dests, writer.rejected_dir.as_deref());
    let mut files_written = Vec::new();
    for (f, &n) in waiting_on.iter().enumerate() {
        if n == 0 && !skipped[f] {
            files_written.extend(writer.write(f, &outcomes)?);
        }
    }

    let total: usize = jobs.iter().map(|j| j.picks.len()).sum();
    eprintln!(
        "classifying {total} picks on {} micrographs ({} per batch)",
        jobs.len(),
        args.batch
    );
    let bar = super::progress_bar(total as u64, "picks");
    let pipeline = cryoprune_train::prep::pipeline(&spec.preprocessing, threads, 0)?;
    let classified = Instant::now();
    classify_jobs(
        &model,
        spec.classes.len(),
        spec.network.head.mean_of_branches,
        &pipeline,
        &jobs,
        args.batch,
        &compute.device,
        |result| {
            let g = job_group[result.index];
            for (((o, r), pick), centre) in outcomes[g]
                .iter_mut()
                .zip(result.probs)
                .zip(&set.micrographs[g].picks)
                .zip(&jobs[result.index].picks)
            {
                *o = match r {
                    Ok(mut p) => {
                        if let Some(ctx) = context {
                            let facts = PickFacts {
                                score: pick.score,
                                edge: Some(edge_distance(
                                    centre.0,
                                    centre.1,
                                    result.shape,
                                    spec.preprocessing.box_size,
                                )),
                            };
                            ctx.combine(&mut p, &facts);
                        }
                        Outcome::Scored(p.into_boxed_slice())
                    }
                    Err(Unscored::Outside) => Outcome::Unscored("outside the micrograph"),
                    Err(Unscored::Edge) => Outcome::Unscored("box past the edge"),
                };
            }
            bar.inc(outcomes[g].len() as u64);
            for &f in &group_files[g] {
                waiting_on[f] -= 1;
                if waiting_on[f] == 0 && !skipped[f] {
                    let written = writer
                        .write(f, &outcomes)
                        .map_err(|e| cryoprune_train::Error::Config(format!("{e:#}")))?;
                    files_written.extend(written);
                }
            }
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    let network_seconds = classified.elapsed().as_secs_f64();

    let mut summary = summarise(&set, &spec, &rule, &outcomes, &active);
    summary.model = args.model.clone();
    summary.threshold = args.threshold;
    summary.files_written = files_written;
    summary.files_skipped = files_skipped;
    summary.warnings = warnings;
    summary.device = compute.description.clone();
    summary.seconds = started.elapsed().as_secs_f64();
    summary.particles_per_second = summary.scored as f64 / network_seconds.max(1e-9);
    summary.context = context
        .map(|c| c.facts().map(|f| f.describe().to_string()).collect())
        .unwrap_or_default();

    if let Some(path) = &args.scores {
        write_scores(path, &set, &spec.classes, &rule, &outcomes, &active)?;
        eprintln!("scores of every pick written to {}", path.display());
    }
    let dataset_p: Vec<f64> = outcomes
        .iter()
        .flatten()
        .filter_map(|o| match o {
            Outcome::Scored(p) => Some(rule.p_keep(p)),
            Outcome::Unscored(_) => None,
        })
        .collect();
    summary.threshold_advice = advise(
        &args, &model, &spec, context, &rule, &dataset_p, threads, &compute,
    )?;

    println!("{}", summary_text(&summary));
    if let Some(a) = &summary.threshold_advice {
        println!("{}", a.to_text());
    }
    let summary_path = if out_is_file {
        args.out.with_extension("summary.json")
    } else {
        args.out.join("prune_summary.json")
    };
    let json = serde_json::to_vec_pretty(&summary)?;
    write_atomic(&summary_path, |w| w.write_all(&json))?;
    eprintln!("summary written to {}", summary_path.display());

    if let Some(path) = &args.report {
        let input = report::Input {
            model_dir: &args.model,
            spec: &spec,
            summary: &summary,
            picks: collect_report_picks(&set, &outcomes, &rule, &active_pairs, &micrographs),
            keep: &rule.keep,
        };
        report::write(path, &input, &pipeline)?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}

/// Every pick to classify must carry a score when the model combines the score with the image:
/// one without is an error naming its file and record. A warning comes back when the scores sit
/// far from those the model was calibrated on, the sign of another picker or another run.
fn check_picker_scores(
    set: &PickSet,
    pairs: &[(usize, usize)],
    ctx: &PickContext,
    model: &Path,
) -> Result<Option<String>> {
    let Some(term) = ctx.score_term() else {
        return Ok(None);
    };
    let (mut sum, mut count) = (0.0, 0usize);
    for &(g, _) in pairs {
        for p in &set.micrographs[g].picks {
            match p.score {
                Some(s) if s.is_finite() => {
                    sum += s;
                    count += 1;
                }
                _ => {
                    let at = p.source.map_or_else(
                        || set.micrographs[g].micrograph.clone(),
                        |r| format!("{}, record {}", set.files[r.file].path.display(), r.row + 1),
                    );
                    bail!(
                        "{at}: the pick at ({}, {}) has no score, and the model in {} combines the \
                         picker's score with the image; pass --image-only to classify on the image \
                         alone",
                        p.x,
                        p.y,
                        model.display()
                    );
                }
            }
        }
    }
    let mean = sum / count.max(1) as f64;
    let shift = term.shift(mean);
    Ok((shift > 3.0).then(|| {
        format!(
            "the picks' scores average {mean:.4}, {shift:.1} standard deviations from the mean the \
             model was calibrated on ({:.4}): were they made by the same picker as the training \
             labels? (--image-only classifies on the image alone)",
            term.mean
        )
    }))
}

/// The classes kept: those named, or the one that is plainly the particle class.
fn kept_classes(classes: &[String], named: &[String]) -> Result<Vec<usize>> {
    if named.is_empty() {
        const PARTICLE: [&str; 4] = ["particle", "particles", "good", "true"];
        return match classes
            .iter()
            .position(|c| PARTICLE.contains(&c.to_ascii_lowercase().as_str()))
        {
            Some(i) => Ok(vec![i]),
            None => bail!(
                "say which classes to keep with --keep (the model's classes: {})",
                classes.join(", ")
            ),
        };
    }
    let mut keep = Vec::new();
    for name in named {
        match classes.iter().position(|c| c == name) {
            Some(i) if !keep.contains(&i) => keep.push(i),
            Some(_) => {}
            None => bail!(
                "--keep {name}: not one of the model's classes ({})",
                classes.join(", ")
            ),
        }
    }
    if keep.len() == classes.len() {
        bail!("--keep names every class, so nothing would be pruned");
    }
    Ok(keep)
}

/// Refuses an OUT that is an input: a pick file, the folder holding them, or a micrograph.
fn refuse_inputs_as_output(set: &PickSet, out: &Path, micrographs: &[PathBuf]) -> Result<()> {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let out_c = canon(out);
    for f in &set.files {
        let file = canon(&f.path);
        if file == out_c || file.parent() == Some(out_c.as_path()) {
            bail!(
                "--out {} is where the input picks are ({}); choose another folder so the \
                 picker's files stay as they were",
                out.display(),
                f.path.display()
            );
        }
    }
    if micrographs.iter().any(|m| canon(m) == out_c) {
        bail!("--out {} is one of the micrographs", out.display());
    }
    Ok(())
}

/// Removes the temporary files a killed run left beside our outputs (`.<name>.<random>.partial`):
/// they were never renamed into place, so nothing refers to them.
fn clear_stale_partials(dests: &[PathBuf], rejected: Option<&Path>) {
    let mut dirs: Vec<PathBuf> = dests
        .iter()
        .filter_map(|d| d.parent().map(Path::to_path_buf))
        .collect();
    dirs.extend(rejected.map(Path::to_path_buf));
    dirs.sort();
    dirs.dedup();
    let names: std::collections::HashSet<String> = dests
        .iter()
        .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let ours = name
                .strip_prefix('.')
                .and_then(|n| n.strip_suffix(".partial"))
                .and_then(|n| n.rsplit_once('.'))
                .is_some_and(|(base, _)| names.contains(base));
            if ours {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

fn rejected_dir(out: &Path, out_is_file: bool) -> PathBuf {
    match (out_is_file, out.parent()) {
        (true, Some(parent)) => parent.join("rejected"),
        (true, None) => PathBuf::from("rejected"),
        (false, _) => out.join("rejected"),
    }
}

/// Writes one input file's kept (and rejected) picks once all its micrographs are done.
struct Writer<'a> {
    set: &'a PickSet,
    spec: &'a ModelSpec,
    rule: &'a Rule,
    dests: &'a [PathBuf],
    rejected_dir: Option<PathBuf>,
}

impl Writer<'_> {
    fn write(&self, file: usize, outcomes: &[Vec<Outcome>]) -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        let kept = self.subset(file, outcomes, true);
        kept.write_source(0, &self.dests[file])?;
        written.push(self.dests[file].clone());
        if let Some(dir) = &self.rejected_dir {
            let name = self.dests[file].file_name().unwrap_or_default();
            let dest = dir.join(name);
            self.subset(file, outcomes, false).write_source(0, &dest)?;
            written.push(dest);
        }
        Ok(written)
    }

    /// The picks of source file `file` that are kept (or rejected), annotated, as a set of one
    /// file.
    fn subset(&self, file: usize, outcomes: &[Vec<Outcome>], kept: bool) -> PickSet {
        let set = self.set;
        let classes = &self.spec.classes;
        let mut out = PickSet::empty(set.format);
        out.box_size = set.box_size;
        out.files.push(set.files[file].clone());
        let is_box = set.format == PickFormat::Box;
        if !is_box {
            out.extra_columns = column_names(set, classes);
        }
        let mut index = Default::default();
        for (g, m) in set.micrographs.iter().enumerate() {
            for (pick, outcome) in m.picks.iter().zip(&outcomes[g]) {
                let Some(src) = pick.source.filter(|s| s.file == file) else {
                    continue;
                };
                let (is_kept, values, p_keep) = match outcome {
                    Outcome::Scored(p) => (
                        self.rule.kept(p),
                        std::iter::once(classes[argmax(p)].clone())
                            .chain(p.iter().map(|v| format!("{v:.4}")))
                            .collect(),
                        self.rule.p_keep(p),
                    ),
                    Outcome::Unscored(_) => (
                        false,
                        std::iter::once("unscored".to_string())
                            .chain(classes.iter().map(|_| String::new()))
                            .collect(),
                        0.0,
                    ),
                };
                if is_kept != kept {
                    continue;
                }
                let mut p: Pick = pick.clone();
                p.source = Some(cryoprune_formats::picks::RowRef {
                    file: 0,
                    row: src.row,
                });
                p.extra = if is_box { Vec::new() } else { values };
                p.score = Some((p_keep * 1e4).round() / 1e4);
                out.push(&m.micrograph, p, &mut index);
            }
        }
        if is_box {
            out.set_scores(|_, p| p.score.unwrap_or(0.0));
        }
        out
    }
}

/// The added columns' names in the conventions of the input's format.
fn column_names(set: &PickSet, classes: &[String]) -> Vec<String> {
    let star_text = matches!(
        set.files.first().map(|f| &f.content),
        Some(Content::Star { .. })
    );
    let (class, prob): (&str, fn(&str) -> String) = match set.format {
        _ if star_text => ("cryopruneClass", |c| format!("cryopruneP_{c}")),
        PickFormat::Cs => ("class", |c| format!("p_{c}")),
        _ => ("cryoprune_class", |c| format!("cryoprune_p_{c}")),
    };
    std::iter::once(class.to_string())
        .chain(classes.iter().map(|c| prob(&column_safe(c))))
        .collect()
}

/// Class names go into column names, which STAR and CSV readers split on whitespace or commas.
fn column_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn summarise(
    set: &PickSet,
    spec: &ModelSpec,
    rule: &Rule,
    outcomes: &[Vec<Outcome>],
    active: &[bool],
) -> Summary {
    let classes = &spec.classes;
    let mut s = Summary {
        model: PathBuf::new(),
        classes: classes.clone(),
        keep: rule.keep.iter().map(|&c| classes[c].clone()).collect(),
        threshold: rule.threshold,
        picks: 0,
        scored: 0,
        kept: 0,
        rejected: 0,
        unscored: BTreeMap::new(),
        per_class: classes.iter().map(|c| (c.clone(), 0)).collect(),
        per_micrograph: Vec::new(),
        files_written: Vec::new(),
        files_skipped: Vec::new(),
        warnings: Vec::new(),
        device: String::new(),
        seconds: 0.0,
        particles_per_second: 0.0,
        threshold_advice: None,
        context: Vec::new(),
    };
    for (g, m) in set.micrographs.iter().enumerate() {
        if !active[g] {
            continue;
        }
        let mut ms = MicrographSummary {
            micrograph: m.micrograph.clone(),
            picks: m.picks.len(),
            per_class: classes.iter().map(|c| (c.clone(), 0)).collect(),
            ..Default::default()
        };
        for o in &outcomes[g] {
            match o {
                Outcome::Scored(p) => {
                    s.scored += 1;
                    let c = &classes[argmax(p)];
                    *s.per_class.get_mut(c).expect("a class") += 1;
                    *ms.per_class.get_mut(c).expect("a class") += 1;
                    if rule.kept(p) {
                        ms.kept += 1;
                    }
                }
                Outcome::Unscored(why) => {
                    ms.unscored += 1;
                    *s.unscored.entry(why.to_string()).or_insert(0) += 1;
                }
            }
        }
        s.picks += ms.picks;
        s.kept += ms.kept;
        s.per_micrograph.push(ms);
    }
    s.rejected = s.picks - s.kept;
    s
}

fn summary_text(s: &Summary) -> String {
    let pct = |n: usize| 100.0 * n as f64 / s.picks.max(1) as f64;
    let mut t = format!(
        "{} picks on {} micrographs: kept {} ({:.1}%), rejected {} ({:.1}%)\n",
        s.picks,
        s.per_micrograph.len(),
        s.kept,
        pct(s.kept),
        s.rejected,
        pct(s.rejected)
    );
    if !s.context.is_empty() {
        t.push_str(&format!(
            "  evidence: the image, {}\n",
            s.context.join(" and ")
        ));
    }
    t.push_str(&format!(
        "  kept: {} by {}\n",
        s.keep.join(", "),
        match s.threshold {
            Some(th) => format!("p >= {th}"),
            None => "most probable class".into(),
        }
    ));
    for (c, n) in &s.per_class {
        t.push_str(&format!("  predicted {c}: {n} ({:.1}%)\n", pct(*n)));
    }
    for (why, n) in &s.unscored {
        t.push_str(&format!("  not classified ({why}): {n}\n"));
    }
    let per_mic_kept: Vec<f64> = s
        .per_micrograph
        .iter()
        .filter(|m| m.picks > 0)
        .map(|m| m.kept as f64 / m.picks as f64)
        .collect();
    if let (Some(lo), Some(hi)) = (
        per_mic_kept.iter().cloned().reduce(f64::min),
        per_mic_kept.iter().cloned().reduce(f64::max),
    ) {
        t.push_str(&format!(
            "  kept per micrograph: {:.0}% to {:.0}%\n",
            100.0 * lo,
            100.0 * hi
        ));
    }
    t.push_str(&format!(
        "  {} files written, {} left as they were; {:.1} s, {:.0} particles/s through the network",
        s.files_written.len(),
        s.files_skipped.len(),
        s.seconds,
        s.particles_per_second
    ));
    t
}

fn write_scores(
    path: &Path,
    set: &PickSet,
    classes: &[String],
    rule: &Rule,
    outcomes: &[Vec<Outcome>],
    active: &[bool],
) -> Result<()> {
    write_atomic(path, |w| {
        let mut c = csv::Writer::from_writer(w);
        let header = ["micrograph", "x", "y", "class"]
            .into_iter()
            .map(String::from)
            .chain(classes.iter().map(|c| format!("p_{}", column_safe(c))))
            .chain(["kept".to_string()]);
        c.write_record(header)?;
        for (g, m) in set.micrographs.iter().enumerate() {
            if !active[g] {
                continue;
            }
            for (p, o) in m.picks.iter().zip(&outcomes[g]) {
                let mut row = vec![m.micrograph.clone(), format!("{}", p.x), format!("{}", p.y)];
                match o {
                    Outcome::Scored(pr) => {
                        row.push(classes[argmax(pr)].clone());
                        row.extend(pr.iter().map(|v| format!("{v:.5}")));
                        row.push(u8::from(rule.kept(pr)).to_string());
                    }
                    Outcome::Unscored(_) => {
                        row.push("unscored".into());
                        row.extend(classes.iter().map(|_| String::new()));
                        row.push("0".into());
                    }
                }
                c.write_record(&row)?;
            }
        }
        c.flush()
    })?;
    Ok(())
}

/// The threshold table from labelled picks the model did not train on: `--labels` cut from the
/// micrographs, else the validation picks the model directory keeps.
#[allow(clippy::too_many_arguments)]
fn advise(
    args: &Args,
    model: &Classifier,
    spec: &ModelSpec,
    context: Option<&PickContext>,
    rule: &Rule,
    dataset_p: &[f64],
    threads: usize,
    compute: &cryoprune_model::Compute,
) -> Result<Option<Advice>> {
    let (p_keep, is_kept, from): (Vec<f64>, Vec<bool>, String) = if !args.labels.is_empty() {
        let labels = LabelArgs {
            micrographs: args.micrographs.clone(),
            labels: args.labels.clone(),
            format: None,
            images_inverted: false,
        };
        let data = labels.dataset(
            &labels.source(),
            Some(&spec.classes),
            &spec.preprocessing,
            threads,
        )?;
        let scored = learning::score_labelled(
            model,
            &data,
            spec.network.head.mean_of_branches,
            context,
            compute,
        )?;
        (
            scored.probs.iter().map(|p| rule.p_keep(p)).collect(),
            data.labels.iter().map(|l| rule.keep.contains(l)).collect(),
            "labels given with --labels".into(),
        )
    } else {
        let path = args.model.join("validation.csv");
        if !path.exists() {
            eprintln!(
                "threshold advisor: {} has no validation.csv; give --labels",
                args.model.display()
            );
            return Ok(None);
        }
        let (p, k) = read_validation(&path, &spec.classes, rule)?;
        (p, k, format!("validation picks in {}", path.display()))
    };
    let positives = is_kept.iter().filter(|&&k| k).count();
    if positives == 0 || positives == is_kept.len() {
        eprintln!(
            "threshold advisor: the labelled picks ({from}) need both kept and other classes"
        );
        return Ok(None);
    }
    let prevalence = threshold::estimate_prevalence(&p_keep, &is_kept, dataset_p);
    Ok(Some(threshold::advise(
        &p_keep,
        &is_kept,
        prevalence,
        format!(
            "estimated from these picks' probabilities, corrected with the rates of the {from}"
        ),
        args.target_precision,
    )))
}

/// Reads train's validation.csv: `micrograph,x,y,label,predicted,p_<class>...`.
fn read_validation(path: &Path, classes: &[String], rule: &Rule) -> Result<(Vec<f64>, Vec<bool>)> {
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let header = r.headers()?.clone();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("{}: no `{name}` column", path.display()))
    };
    let label = col("label")?;
    let probs: Vec<usize> = classes
        .iter()
        .map(|c| col(&format!("p_{c}")))
        .collect::<Result<_>>()?;
    let (mut p_keep, mut is_kept) = (Vec::new(), Vec::new());
    for (i, rec) in r.records().enumerate() {
        let rec = rec.with_context(|| format!("{}: line {}", path.display(), i + 2))?;
        let p: Vec<f32> = probs
            .iter()
            .map(|&j| rec.get(j).and_then(|v| v.parse().ok()))
            .collect::<Option<_>>()
            .with_context(|| {
                format!(
                    "{}: line {}: a probability is not a number",
                    path.display(),
                    i + 2
                )
            })?;
        let l = rec.get(label).unwrap_or_default();
        let li = classes
            .iter()
            .position(|c| c == l)
            .with_context(|| format!("{}: line {}: unknown class `{l}`", path.display(), i + 2))?;
        p_keep.push(rule.p_keep(&p));
        is_kept.push(rule.keep.contains(&li));
    }
    Ok((p_keep, is_kept))
}

/// Every scored pick with its micrograph file, for the report's galleries and overlays.
fn collect_report_picks(
    set: &PickSet,
    outcomes: &[Vec<Outcome>],
    rule: &Rule,
    pairs: &[(usize, usize)],
    micrographs: &[PathBuf],
) -> Vec<report::ReportMicrograph> {
    pairs
        .iter()
        .map(|&(g, m)| report::ReportMicrograph {
            name: set.micrographs[g].micrograph.clone(),
            path: micrographs[m].clone(),
            picks: set.micrographs[g]
                .picks
                .iter()
                .zip(&outcomes[g])
                .map(|(p, o)| report::ReportPick {
                    x: p.x,
                    y: p.y,
                    probs: match o {
                        Outcome::Scored(pr) => Some(pr.to_vec()),
                        Outcome::Unscored(_) => None,
                    },
                    kept: matches!(o, Outcome::Scored(pr) if rule.kept(pr)),
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_particle_class_is_kept_unless_named() {
        let classes: Vec<String> = ["carbon", "ice", "Particle"].map(String::from).to_vec();
        assert_eq!(kept_classes(&classes, &[]).unwrap(), vec![2]);
        assert_eq!(
            kept_classes(&classes, &["ice".into(), "Particle".into()]).unwrap(),
            vec![1, 2]
        );
        assert!(kept_classes(&classes, &["dirt".into()]).is_err());
        let all: Vec<String> = classes.clone();
        assert!(kept_classes(&classes, &all).is_err());
        let unnamed: Vec<String> = ["a", "b"].map(String::from).to_vec();
        let err = kept_classes(&unnamed, &[]).unwrap_err().to_string();
        assert!(err.contains("--keep") && err.contains("a, b"), "{err}");
    }

    #[test]
    fn the_rule_uses_the_threshold_on_the_kept_classes_together() {
        let p = [0.3f32, 0.3, 0.4];
        let by_class = Rule {
            keep: vec![0, 1],
            threshold: None,
        };
        assert!(!by_class.kept(&p));
        let by_p = Rule {
            keep: vec![0, 1],
            threshold: Some(0.55),
        };
        assert!(by_p.kept(&p));
        assert!((by_p.p_keep(&p) - 0.6).abs() < 1e-6);
    }

    #[test]
    fn class_names_become_safe_column_names() {
        assert_eq!(column_safe("ice contamination"), "ice_contamination");
        assert_eq!(column_safe("good,1"), "good_1");
    }
}
