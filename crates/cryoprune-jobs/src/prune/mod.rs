//! The prune job: classify every pick with a trained model and write the kept picks back in the
//! picker's own format, each input file as soon as all its micrographs are done.

mod advisor;
pub mod decide;
mod plan;
pub mod prior;
pub mod report;
mod shard;
mod write;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use cryoprune_formats::PickFormat;
use cryoprune_image::pipeline::Job;
use cryoprune_image::pipeline::Pipeline;
use cryoprune_model::pick_context::edge_distance;
use cryoprune_model::PickFacts;
use cryoprune_model::{Classifier, PickContext};
use cryoprune_train::classify::{classify_jobs, MicrographResult, Unscored};
use cryoprune_train::modeldir::{ModelDir, ModelSpec};
use cryoprune_train::threshold::{self, adjusted_count};
use serde::{Deserialize, Serialize};

use cryoprune_formats::atomic::clear_stale_partials;
pub use decide::{Outcome, Rule, Summary, UNSCORED};
use plan::Plan;
pub use prior::{Prior, Shift};
use write::{write_scores, Writer};

use crate::compute::ComputeConfig;
use crate::events::{Event, Events};
use crate::shard::{MergeConfig, Record, Shard};
use crate::{invalid, Context, Result};

/// Everything a prune run needs; see `cryoprune prune --help` for each setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct PruneConfig {
    #[command(flatten)]
    pub compute: ComputeConfig,
    /// Model directory written by `cryoprune train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Micrographs the picks were made on (globs, quoted): MRC, TIFF, PNG or JPEG; or one list
    /// of them, a RELION micrographs STAR or cryoSPARC exposures .cs.
    #[arg(long, required = true, num_args = 1..)]
    pub micrographs: Vec<String>,
    /// Pick files or folders of them, in one format (STAR, .cs, .box, .cbox, Topaz .txt, CSV);
    /// a RELION picking job's folder (or its autopick.star) reads as its coordinate files.
    #[arg(long, required = true, num_args = 1..)]
    pub picks: Vec<PathBuf>,
    /// Pick format when the extension does not tell.
    #[arg(long)]
    pub format: Option<PickFormat>,
    /// Multiply pick coordinates by this factor (picks made on binned micrographs).
    #[arg(long, default_value_t = PruneConfig::default().scale)]
    pub scale: f64,
    /// Output folder; each input file gives a file of the same name here (picks read through
    /// a RELION index, `autopick.star`, get one of their own here). A single input file may
    /// also be pruned to a file path with the same extension.
    #[arg(long)]
    pub out: PathBuf,
    /// Classes to keep (default: the class named particle, particles or good).
    #[arg(long, num_args = 1..)]
    pub keep: Vec<String>,
    /// Keep a pick when the probability of the kept classes is at least this; without it, a
    /// pick is kept when its most probable class is a kept one.
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Also write the rejected picks, in the same format, under OUT/rejected/.
    #[arg(long)]
    pub write_rejected: bool,
    /// STAR outputs get only columns RELION knows (the kept probability as
    /// _rlnAutopickFigureOfMerit), not the _cryoprune* class and probability columns.
    #[arg(long)]
    pub relion_columns: bool,
    /// STAR picks: write one coordinate STAR per micrograph under --out, where
    /// relion_preprocess --coord_dir OUT/ --coord_suffix .star finds them, and an index of
    /// them (coordinates.star) for RELION 4/5's Extract.
    #[arg(long)]
    pub per_micrograph: bool,
    /// Write every pick with its class and probabilities as CSV here.
    #[arg(long)]
    pub scores: Option<PathBuf>,
    /// Write a self-contained HTML report here (PNG overlays go in a folder beside it).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Labelled picks for the threshold advisor (default: the model's validation picks).
    #[arg(long, num_args = 1..)]
    pub labels: Vec<PathBuf>,
    /// Precision the threshold advisor aims for.
    #[arg(long, default_value_t = PruneConfig::default().target_precision)]
    pub target_precision: f64,
    /// Leave input files whose output already exists alone (reruns, new micrographs only).
    #[arg(long)]
    pub skip_existing: bool,
    /// Particles per network batch.
    #[arg(long, default_value_t = PruneConfig::default().batch)]
    pub batch: usize,
    /// Classify on the image alone, ignoring the pick context (picker score, distance from the
    /// edge) the model was trained to combine with it: for picks from another picker, or with
    /// no scores.
    #[arg(long)]
    pub image_only: bool,
    /// How common the kept classes are assumed to be when each pick is decided: `dataset`
    /// estimates it on a sample of these picks (with the error rates of the labelled picks the
    /// advisor uses), `training` keeps the mix of the training picks (half and half after
    /// `--shots`), or a share such as 0.85. A model trained on balanced labels otherwise assumes
    /// half of a good picker's picks are junk and rejects real particles whenever unsure.
    #[arg(long, default_value_t = PruneConfig::default().prior)]
    pub prior: Prior,
    /// Only the I-th of every N micrographs (sorted, from 0), for array task I; see `merge`.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
}

impl Default for PruneConfig {
    fn default() -> Self {
        Self {
            compute: ComputeConfig::default(),
            model: PathBuf::new(),
            micrographs: Vec::new(),
            picks: Vec::new(),
            format: None,
            scale: 1.0,
            out: PathBuf::new(),
            keep: Vec::new(),
            threshold: None,
            write_rejected: false,
            relion_columns: false,
            per_micrograph: false,
            scores: None,
            report: None,
            labels: Vec::new(),
            target_precision: 0.95,
            skip_existing: false,
            batch: 64,
            image_only: false,
            prior: Prior::Dataset,
            shard: None,
        }
    }
}

/// Runs a prune job; the summary is also written beside the outputs and reported as output.
pub fn run(cfg: &PruneConfig, events: &dyn Events) -> Result<Summary> {
    run_job(cfg, None, events)
}

/// Joins the outputs of `prune --shard` runs into what one run would have written: every file,
/// the scores and the summary (whose seconds are the shards' added up) are those of one run;
/// only the report's timings differ. Run it where the shards ran: their settings name the
/// model, micrographs and picks as they were given.
pub fn merge(m: &MergeConfig, events: &dyn Events) -> Result<Summary> {
    let records: Vec<shard::PruneRecord> =
        crate::shard::read_records(&m.inputs, shard::JOB, shard::record_path, shard::same_run)?;
    let first = &records[0];
    if let Some(r) = records.iter().find(|r| r.done.shift != first.done.shift) {
        invalid!(
            "shards {} and {} decided with different priors; were they run with different models or labels?",
            first.shard,
            r.shard
        );
    }
    let done = shard::Done {
        network_seconds: records.iter().map(|r| r.done.network_seconds).sum(),
        seconds: records.iter().map(|r| r.done.seconds).sum(),
        ..first.done.clone()
    };
    let cfg = PruneConfig {
        out: m.out.clone(),
        scores: m.scores.clone(),
        report: m.report.clone(),
        shard: None,
        skip_existing: false,
        ..first.config.clone()
    };
    events.note(format!(
        "joining the {} shards of a prune run",
        records.len()
    ));
    let outcomes = shard::read_journals(&m.inputs)?;
    run_job(&cfg, Some(Joined { outcomes, done }), events)
}

/// The shards' work, for a merge: every classified micrograph's outcomes (before the shift) and
/// what they decided once for all.
struct Joined {
    outcomes: HashMap<String, Vec<Outcome>>,
    done: shard::Done,
}

fn run_job(cfg: &PruneConfig, joined: Option<Joined>, events: &dyn Events) -> Result<Summary> {
    let started = Instant::now();
    if !(cfg.target_precision > 0.0 && cfg.target_precision <= 1.0) {
        invalid!("--target-precision must be in (0, 1]");
    }
    crate::check_counts(&[("--batch", cfg.batch)])?;
    let compute = cfg.compute.start(events)?;
    compute.install(events, || {
        let (model, spec) = ModelDir::new(&cfg.model)
            .load(&compute.device.device)
            .context_with(|| format!("loading the model in {}", cfg.model.display()))?;
        if spec.thresholds.is_some() {
            invalid!(
                "{}: a multi-label model (labels: {}) says which labels an image carries; \
                 prune keeps or drops each pick by one class, so it needs a model trained on \
                 labelled picks",
                cfg.model.display(),
                spec.classes.join(", ")
            );
        }
        let rule = Rule::new(&spec.classes, &cfg.keep, cfg.threshold)?;
        let context = spec.pick_context.as_ref().filter(|_| !cfg.image_only);
        let plan = Plan::new(cfg, context, events)?;
        let _lock = if plan.out_is_file {
            None
        } else {
            cryoprune_formats::atomic::lock_folder(&cfg.out)?
        };
        for w in &plan.warnings {
            events.warn(w.clone());
        }
        let set = &plan.set;
        let judged = advisor::Judged {
            model: &model,
            spec: &spec,
            context,
            rule: &rule,
        };
        let (mut stored, done) = match joined {
            Some(j) => (j.outcomes, Some(j.done)),
            None => (HashMap::new(), None),
        };
        let labelled = match &done {
            Some(d) => d.labelled.clone(),
            None => advisor::labelled(cfg, &judged, &compute, events)?,
        };
        let pipeline = cryoprune_train::prep::pipeline(&spec.preprocessing, compute.threads, 0);
        let scorer = Scorer {
            model: &model,
            spec: &spec,
            plan: &plan,
            context,
            pipeline: &pipeline,
            batch: cfg.batch,
            compute: &compute.device,
        };
        let (shift, sample) = match &done {
            Some(d) => (d.shift.clone(), Sample::default()),
            None => choose_shift(cfg, &scorer, &rule, labelled.as_ref(), events)?,
        };
        let mut journal = match cfg.shard {
            Some(_) => {
                let (journal, previous) = shard::Journal::open(&cfg.out, cfg.skip_existing)?;
                if !previous.is_empty() {
                    events.note(format!(
                        "--skip-existing: {} this shard classified before {} taken from its journal",
                        crate::count(previous.len(), "micrograph"),
                        if previous.len() == 1 { "is" } else { "are" }
                    ));
                }
                stored = previous;
                Some(journal)
            }
            None => None,
        };
        if let Some(s) = &shift {
            events.note(s.to_text());
        }

        let mut outcomes: Vec<Vec<Outcome>> = set
            .micrographs
            .iter()
            .map(|m| vec![Outcome::Unscored(UNSCORED[0]); m.picks.len()])
            .collect();
        let jobs = &plan.jobs;
        let todo = plan.todo();
        let mut has_job = vec![false; set.micrographs.len()];
        for &i in &todo {
            has_job[plan.pairs[i].0] = true;
        }
        // Files wait for their groups; unmatched and empty groups are done from the start.
        let mut waiting_on: Vec<usize> = plan
            .file_groups
            .iter()
            .map(|gs| gs.iter().filter(|&&g| has_job[g]).count())
            .collect();
        let writer = Writer {
            set,
            classes: &spec.classes,
            rule: &rule,
            dests: &plan.dests,
            names: &plan.names,
            rejected_dir: cfg.write_rejected.then(|| plan.rejected_dir(&cfg.out)),
            relion_columns: cfg.relion_columns,
            per_micrograph: cfg.per_micrograph.then(|| cfg.out.clone()),
        };
        clear_stale_partials(&plan.dests, writer.rejected_dir.as_deref());
        let mut files_written = Vec::new();
        for (f, &n) in waiting_on.iter().enumerate() {
            if n == 0 && plan.writes[f] {
                files_written.extend(writer.write(f, &outcomes)?);
            }
        }

        let total: usize = todo.iter().map(|&i| jobs[i].picks.len()).sum();
        events.note(format!(
            "classifying {total} picks on {} ({} per batch)",
            crate::count(todo.len(), "micrograph"),
            cfg.batch
        ));
        events.emit(Event::Started {
            total: total as u64,
            unit: "picks",
        });
        let classified = Instant::now();
        let _listening = crate::Listening::start();
        // `fresh`: classified now, not taken from a journal.
        let mut finish = |index: usize, mut scored: Vec<Outcome>, fresh: bool| -> Result<()> {
            crate::check_interrupted()?;
            let (g, _) = plan.pairs[index];
            if let (Some(j), true) = (&mut journal, fresh) {
                j.record(&set.micrographs[g].micrograph, &scored)?;
            }
            if let Some(s) = &shift {
                s.apply_all(&mut scored, &rule.keep);
            }
            outcomes[g] = scored;
            events.emit(Event::Advanced(outcomes[g].len() as u64));
            for &f in &plan.group_files[g] {
                waiting_on[f] -= 1;
                if waiting_on[f] == 0 && plan.writes[f] {
                    files_written.extend(writer.write(f, &outcomes)?);
                }
            }
            Ok(())
        };
        // The micrographs the estimate classified are not classified again.
        let mut classified_already = vec![false; jobs.len()];
        let name = |index: usize| &set.micrographs[plan.pairs[index].0].micrograph;
        for (index, scored) in sample.outcomes {
            classified_already[index] = true;
            if plan.active[plan.pairs[index].0] {
                let fresh = stored.remove(name(index)).is_none();
                finish(index, scored, fresh)?;
            }
        }
        // Micrographs a journal holds: a resumed shard's own, or every one for a merge.
        for &index in &todo {
            if classified_already[index] {
                continue;
            }
            match stored.remove(name(index)) {
                Some(scored) => finish(index, scored, false)?,
                None if done.is_some() => invalid!(
                    "no shard classified micrograph `{}`: rerun the shard that takes it (with \
                     --skip-existing, it does only what is missing), then merge again",
                    name(index)
                ),
                None => continue,
            }
            classified_already[index] = true;
        }
        let rest: Vec<usize> = todo
            .iter()
            .copied()
            .filter(|&i| !classified_already[i])
            .collect();
        match rest.len() {
            0 => {}
            n if n == jobs.len() => scorer.classify(None, |i, s| finish(i, s, true))?,
            _ => scorer.classify(Some(&rest), |i, s| finish(i, s, true))?,
        }
        events.emit(Event::Finished);
        // A shard's outputs are partial; the merge writes the nodes of them all.
        if !plan.out_is_file && cfg.shard.is_none() {
            let nodes = writer.write_relion_nodes(&cfg.out, &files_written)?;
            files_written.extend(nodes);
        }
        let network_seconds = match &done {
            Some(d) => d.network_seconds,
            None => classified.elapsed().as_secs_f64() + sample.seconds,
        };

        let mut summary = Summary::of(set, &spec.classes, &rule, &outcomes, &plan.active);
        summary.model = cfg.model.clone();
        // Sorted: the order micrographs finish in differs between one run and its shards.
        files_written.sort();
        summary.files_written = files_written;
        summary.files_skipped = plan.files_skipped();
        summary.warnings = plan.warnings.clone();
        summary.device = match &done {
            Some(d) => d.device.clone(),
            None => compute.device.description.clone(),
        };
        summary.particles_per_second = summary.scored as f64 / network_seconds.max(1e-9);
        summary.context = context
            .map(|c| c.facts().map(|f| f.describe().to_string()).collect())
            .unwrap_or_default();

        if let Some(path) = &cfg.scores {
            write_scores(path, set, &spec.classes, &rule, &outcomes, &plan.active)?;
            events.note(format!(
                "scores of every pick written to {}",
                path.display()
            ));
        }
        let dataset_p: Vec<f64> = rule.p_keeps(outcomes.iter().flatten()).collect();
        summary.threshold_advice = labelled
            .as_ref()
            .map(|l| advisor::advise(cfg, l, shift.as_ref(), &dataset_p));
        summary.prior = shift.clone();
        summary.seconds = match &done {
            Some(d) => d.seconds,
            None => started.elapsed().as_secs_f64(),
        };

        events.output(summary.to_text());
        if let Some(a) = &summary.threshold_advice {
            events.output(a.to_text());
        }
        let summary_path = plan.summary_path(&cfg.out);
        crate::write_json(&summary_path, &summary)?;
        events.note(format!("summary written to {}", summary_path.display()));

        if let Some(path) = &cfg.report {
            let todo_pairs: Vec<(usize, usize)> = todo.iter().map(|&i| plan.pairs[i]).collect();
            let input = report::Input {
                model_dir: &ModelDir::new(&cfg.model),
                spec: &spec,
                summary: &summary,
                picks: report::picks(set, &outcomes, &rule, &todo_pairs, &plan.micrographs),
                keep: &rule.keep,
            };
            report::write(path, &input, &pipeline)?;
            events.note(format!("report written to {}", path.display()));
        }
        if let Some(place) = cfg.shard {
            let record = Record {
                job: shard::JOB.into(),
                shard: place,
                config: cfg.clone(),
                done: shard::Done {
                    shift,
                    labelled,
                    device: summary.device.clone(),
                    network_seconds,
                    seconds: summary.seconds,
                },
            };
            crate::write_json(&shard::record_path(&cfg.out), &record)?;
        }
        Ok(summary)
    })
}

/// Scores the picks of extraction jobs: the network, then the pick context. The prior's shift
/// comes after, once it is known.
struct Scorer<'a> {
    model: &'a Classifier,
    spec: &'a ModelSpec,
    plan: &'a Plan,
    context: Option<&'a PickContext>,
    pipeline: &'a Pipeline,
    batch: usize,
    compute: &'a cryoprune_model::Compute,
}

impl Scorer<'_> {
    /// Classifies the plan's jobs, or those `chosen` (indices, ascending), handing each
    /// micrograph's outcomes to `done` with the index of its job in the plan.
    fn classify(
        &self,
        chosen: Option<&[usize]>,
        mut done: impl FnMut(usize, Vec<Outcome>) -> Result<()>,
    ) -> Result<()> {
        let subset: Vec<Job>;
        let jobs = match chosen {
            Some(c) => {
                subset = c.iter().map(|&i| self.plan.jobs[i].clone()).collect();
                &subset
            }
            None => &self.plan.jobs,
        };
        classify_jobs(
            self.model,
            self.spec.classes.len(),
            self.spec.network.head.readout(),
            self.pipeline,
            jobs,
            self.batch,
            &self.compute.device,
            |result| -> Result<()> {
                let index = chosen.map_or(result.index, |c| c[result.index]);
                let scored = self.outcomes(index, result);
                done(index, scored)
            },
        )
    }

    fn outcomes(&self, index: usize, result: MicrographResult) -> Vec<Outcome> {
        let (g, _) = self.plan.pairs[index];
        let set = &self.plan.set;
        result
            .probs
            .into_iter()
            .zip(&set.micrographs[g].picks)
            .zip(&self.plan.jobs[index].picks)
            .map(|((r, pick), centre)| match r {
                Ok(mut p) => {
                    if let Some(ctx) = self.context {
                        let facts = PickFacts {
                            score: pick.score,
                            edge: Some(edge_distance(
                                centre.0,
                                centre.1,
                                result.shape,
                                self.spec.preprocessing.box_size,
                            )),
                        };
                        ctx.combine(&mut p, &facts);
                    }
                    Outcome::Scored(p.into())
                }
                Err(Unscored::Outside) => Outcome::Unscored(UNSCORED[1]),
                Err(Unscored::Edge) => Outcome::Unscored(UNSCORED[2]),
            })
            .collect()
    }
}

/// Picks for the estimate of the dataset's share: enough that its sampling error (about 1% at
/// 3,000) is small beside the labelled rates' own.
const PRIOR_SAMPLE: usize = 3000;

/// The micrographs classified for the prior's estimate, as the run would have classified them
/// (before the shift), so the run does not classify them again.
#[derive(Default)]
struct Sample {
    /// (index of the job in the plan, its outcomes).
    outcomes: Vec<(usize, Vec<Outcome>)>,
    /// Time spent in the network.
    seconds: f64,
}

/// The prior shift `cfg.prior` asks for; for `dataset`, estimated on a sample of the picks with
/// the rates of the `labelled` picks. `None` leaves the probabilities as the model gives them.
fn choose_shift(
    cfg: &PruneConfig,
    scorer: &Scorer,
    rule: &Rule,
    labelled: Option<&advisor::Labelled>,
    events: &dyn Events,
) -> Result<(Option<Shift>, Sample)> {
    let prior = scorer.spec.training.prior(scorer.spec.classes.len());
    let trained: f64 = rule.keep.iter().map(|&c| prior[c]).sum();
    let labelled = match (cfg.prior, labelled) {
        (Prior::Training, _) => return Ok((None, Sample::default())),
        (Prior::Share(v), _) => {
            let shift = Shift::new(trained, v, "given with --prior".into());
            return Ok((Some(shift), Sample::default()));
        }
        (Prior::Dataset, None) => {
            events.warn(format!(
                "--prior dataset: no labelled picks to estimate how common the kept classes \
                 are, so each pick is decided as if {:.0}% were, as in training; give \
                 --labels or --prior SHARE",
                100.0 * trained
            ));
            return Ok((None, Sample::default()));
        }
        (Prior::Dataset, Some(l)) => l,
    };
    let plan = scorer.plan;
    let counts: Vec<usize> = plan.jobs.iter().map(|j| j.picks.len()).collect();
    let chosen = prior::sample_jobs(&counts, PRIOR_SAMPLE);
    let started = Instant::now();
    let mut sample = Sample::default();
    scorer.classify(Some(&chosen), |index, scored| {
        sample.outcomes.push((index, scored));
        Ok(())
    })?;
    sample.seconds = started.elapsed().as_secs_f64();
    let sample_p: Vec<f64> = rule
        .p_keeps(sample.outcomes.iter().flat_map(|(_, o)| o))
        .collect();
    if sample_p.is_empty() {
        // Nothing to classify (or every pick past the edge): nothing to decide either.
        return Ok((None, sample));
    }
    let source = format!(
        "estimated on {} picks of {}, corrected with the rates of the {}",
        sample_p.len(),
        crate::count(chosen.len(), "micrograph"),
        labelled.from
    );
    match adjusted_count(&labelled.p_keep, &labelled.is_kept, &sample_p) {
        Some(a) if a.is_firm() => Ok((Some(Shift::new(trained, a.share, source)), sample)),
        Some(a) => {
            let kept = labelled.is_kept.iter().filter(|&&k| k).count();
            events.warn(format!(
                "--prior dataset: {:.0}% ± {:.0}% of picks would be kept-class, counted on {} \
                 picks and corrected with the rates of {kept} labelled picks of the kept \
                 classes and {} others in the {}; an estimate that rough (standard error over \
                 {:.0}%) could be almost anything, so each pick is decided as if {:.0}% were, \
                 as in training; give --labels with more labelled picks, train with --folds 5 \
                 (every label then validates), prune more picks at once, or give --prior SHARE",
                100.0 * a.share,
                100.0 * a.standard_error,
                sample_p.len(),
                labelled.is_kept.len() - kept,
                labelled.from,
                100.0 * threshold::MAX_SHARE_ERROR,
                100.0 * trained
            ));
            Ok((None, sample))
        }
        None => {
            events.warn(format!(
                "--prior dataset: the model tells the kept classes from the others too \
                 poorly on the {} to estimate how common they are, so each pick is \
                 decided as if {:.0}% were, as in training",
                labelled.from,
                100.0 * trained
            ));
            Ok((None, sample))
        }
    }
}
