//! The few-shot job: the PickerOptimizer evaluation protocol. For every cell (network × variant ×
//! shots), models are trained on independent random draws of K labelled picks per class and
//! scored on the labelled picks not drawn (or on separate test labels). Resumable: trials
//! already in results.json are not redone.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

use cryoprune_formats::atomic::write_atomic;
use cryoprune_model::{Arch, Backbone, PickContext, PickFacts, Pretrained};
use cryoprune_train::multilabel::{self, MultiReport};
use cryoprune_train::sampling::{draw_label_shots, draw_shots, subsample};
use cryoprune_train::trainer::{predict, Scored};
use cryoprune_train::Dataset;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::adapt::{adapt, UnlabelledConfig};
use crate::compute::ComputeConfig;
use crate::events::Events;
use crate::labels::LabelsConfig;
use crate::recipe::{fit, fit_context, Fitted, NetConfig, PrepConfig, Start};
use crate::{invalid, Error, Result};

/// A row of the table: how the network starts and which head it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    pub pretrained: bool,
    /// Adapted to the dataset on the unlabelled picks before the shots (see [`crate::adapt`]).
    pub adapted: bool,
    pub single_loss: bool,
}

impl FromStr for Variant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (rest, single_loss) = match s.strip_suffix("-single-loss") {
            Some(rest) => (rest, true),
            None => (s, false),
        };
        let (start, adapted) = match rest.strip_suffix("-adapted") {
            Some(start) => (start, true),
            None => (rest, false),
        };
        let pretrained = match start {
            "scratch" => false,
            "pretrained" => true,
            _ => {
                return Err(format!(
                    "variant `{s}`: expected scratch or pretrained, then optionally -adapted \
                     (adapted to --unlabelled first), then optionally -single-loss"
                ))
            }
        };
        Ok(Variant {
            pretrained,
            adapted,
            single_loss,
        })
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(if self.pretrained {
            "pretrained"
        } else {
            "scratch"
        })?;
        f.write_str(if self.adapted { "-adapted" } else { "" })?;
        f.write_str(if self.single_loss { "-single-loss" } else { "" })
    }
}

cryoprune_image::serde_as_text!(Variant);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct FewshotConfig {
    #[command(flatten)]
    pub compute: ComputeConfig,
    #[command(flatten)]
    pub labels: LabelsConfig,
    /// Separate test labels; default: the labelled picks not drawn.
    #[arg(long, num_args = 1..)]
    pub test_labels: Vec<PathBuf>,
    /// Micrographs of --test-labels; default: --micrographs.
    #[arg(long, num_args = 1..)]
    pub test_micrographs: Vec<String>,
    /// Shots per class, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = FewshotConfig::default().shots)]
    pub shots: Vec<usize>,
    /// Draws per cell.
    #[arg(long, default_value_t = FewshotConfig::default().trials)]
    pub trials: usize,
    /// Variants: scratch or pretrained, then optionally -adapted (adapted to --unlabelled
    /// first), then optionally -single-loss (a one-branch head).
    #[arg(long, value_delimiter = ',', default_values_t = FewshotConfig::default().variants)]
    pub variants: Vec<Variant>,
    /// Networks to compare, comma-separated (overrides --arch).
    #[arg(long, value_delimiter = ',')]
    pub archs: Vec<Arch>,
    /// Pretrained weights per network: ARCH=PATH or ARCH=HUB-NAME (repeatable), or one for --arch;
    /// a network without any gets its ImageNet weights (downloaded once, then cached).
    #[arg(long, num_args = 1..)]
    pub weights: Vec<String>,
    #[command(flatten)]
    pub prep: PrepConfig,
    #[command(flatten)]
    pub net: NetConfig,
    /// Per-epoch validation uses at most this many held-out picks.
    #[arg(long, default_value_t = FewshotConfig::default().val_max)]
    pub val_max: usize,
    /// Unlabelled picks on the training labels' micrographs, for the `-adapted` variants: each
    /// starting point is adapted once, and every draw starts from that.
    #[command(flatten)]
    pub unlabelled: UnlabelledConfig,
    /// Base seed; trial t uses seed + t, so every variant of a trial sees the same draw.
    #[arg(long, default_value_t = FewshotConfig::default().seed)]
    pub seed: u64,
    /// Output folder for results.json and results.md.
    #[arg(long)]
    pub out: PathBuf,
}

impl Default for FewshotConfig {
    fn default() -> Self {
        let v = |s: &str| s.parse().expect("a variant");
        Self {
            compute: ComputeConfig::default(),
            labels: LabelsConfig::default(),
            test_labels: Vec::new(),
            test_micrographs: Vec::new(),
            shots: vec![10, 20, 30],
            trials: 5,
            variants: vec![v("scratch"), v("pretrained"), v("pretrained-single-loss")],
            archs: Vec::new(),
            weights: Vec::new(),
            prep: PrepConfig::default(),
            net: NetConfig::default(),
            val_max: 200,
            unlabelled: UnlabelledConfig::default(),
            seed: 0,
            out: PathBuf::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trial {
    pub arch: String,
    pub variant: String,
    pub shots: usize,
    pub trial: usize,
    pub seed: u64,
    pub macro_f1: f64,
    /// Accuracy; for images with label sets, the share with every label right (exact match).
    pub accuracy: f64,
    /// For images with label sets: F1 of every (image, label) decision pooled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub micro_f1: Option<f64>,
    pub train_seconds: f64,
    pub best_epoch: usize,
    pub test_picks: usize,
    /// The same model with its context combined: a pick's (picker score, distance from the
    /// edge), or a whole micrograph's measured statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with_context: Option<Metrics>,
    /// The pick context alone, fitted on the same training picks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_alone: Option<Metrics>,
    /// The picker's score alone, calibrated on the same training picks: the picker as a user
    /// with these labels could threshold it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picker_score_alone: Option<Metrics>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Metrics {
    pub macro_f1: f64,
    pub accuracy: f64,
}

impl Metrics {
    fn of(s: &Scored) -> Metrics {
        Metrics {
            macro_f1: s.report.macro_f1,
            accuracy: s.report.accuracy,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Results {
    /// The settings the trials were run with; a rerun with other settings starts afresh.
    pub settings: serde_json::Value,
    pub trials: Vec<Trial>,
}

/// The pretrained checkpoint for `arch`: from `weights` (ARCH=SOURCE, or one SOURCE for the
/// default network), else its default (the shipped cryo-EM backbone for the small network,
/// ImageNet's weights for the others). `Err` carries why there are none.
fn weights_for(
    weights: &[String],
    arch: Arch,
    default_arch: Arch,
) -> Result<Result<PathBuf, String>> {
    let mut source = Pretrained::default_for(arch);
    for w in weights {
        match w.split_once('=') {
            Some((a, p)) if a.parse::<Arch>().map_err(Error::Invalid)? == arch => {
                source = Pretrained::parse(p)?;
                break;
            }
            Some(_) => {}
            None if arch == default_arch => {
                source = Pretrained::parse(w)?;
                break;
            }
            None => {}
        }
    }
    Ok(match source.path(arch) {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(format!("{arch} has no pretrained weights")),
        Err(e) => Err(e.to_string()),
    })
}

/// A multi-label fit scored on `test` at thresholds chosen (best F1 per label) on `val`, the
/// held-out images it chose its epoch on, as `train` chooses them.
fn label_set_scores(
    fitted: &Fitted,
    train: &Dataset,
    val: &Dataset,
    test: &Dataset,
    compute: &crate::compute::Compute,
) -> (MultiReport, Option<MultiReport>) {
    let mut val_probs = fitted.val_probs.clone().filter(|_| !val.is_empty());
    let probs = predict(
        &fitted.model,
        test,
        64,
        fitted.config.head.readout(),
        &compute.device.device,
    );
    // Each label's threshold is chosen on validation, as train chooses it.
    let score = |val_probs: &Option<Vec<Vec<f32>>>, probs: &[Vec<f32>]| {
        let thresholds = match val_probs {
            Some(p) => multilabel::choose_thresholds(val.label_sets(), p),
            None => vec![multilabel::UNCHOSEN_THRESHOLD; test.classes.len()],
        };
        multilabel::evaluate(test.label_sets(), probs, &thresholds, &test.classes)
    };
    let network = score(&val_probs, &probs);
    // Whole micrographs: their measured statistics combined as train combines them.
    let combined = match (&mut val_probs, test.exposure.len() == test.len()) {
        (Some(p), true) => crate::train::exposure_context(train, val, p, &crate::Silent),
        _ => None,
    }
    .map(|ctx| {
        let mut probs = probs.clone();
        probs
            .iter_mut()
            .zip(&test.exposure)
            .for_each(|(p, f)| ctx.combine(p, f));
        score(&val_probs, &probs)
    });
    (network, combined)
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, var.sqrt())
}

/// Runs every trial not yet in `out/results.json`; returns all trials and writes results.md.
pub fn run(cfg: &FewshotConfig, events: &dyn Events) -> Result<Results> {
    crate::inputs::ensure_folder_possible("--out", &cfg.out)?;
    // Checked before the labels are cut: no trial gave an empty table, a K of 0 an error
    // from deep inside training.
    let fewest_shots = cfg.shots.iter().copied().min().unwrap_or(0);
    crate::check_counts(&[("--trials", cfg.trials), ("--shots", fewest_shots)])?;
    let compute = cfg.compute.start(events)?;
    compute.install(events, || {
        let default_arch = cfg.net.arch;
        let archs = match cfg.archs.is_empty() {
            true => vec![default_arch],
            false => cfg.archs.clone(),
        };
        let pre = cfg.prep.preprocessing(&cfg.labels.source())?;
        let data = cfg.labels.dataset(None, &pre, compute.threads, events)?;
        let test: Option<Dataset> = if cfg.test_labels.is_empty() {
            None
        } else {
            let test = LabelsConfig {
                labels: cfg.test_labels.clone(),
                micrographs: if cfg.test_micrographs.is_empty() {
                    cfg.labels.micrographs.clone()
                } else {
                    cfg.test_micrographs.clone()
                },
                ..cfg.labels.clone()
            };
            let test = test.dataset(Some(&data.classes), &pre, compute.threads, events)?;
            // Test picks at the pool's places would score the very shots drawn from it.
            let place = |o: &cryoprune_train::Origin| {
                (o.micrograph.clone(), crate::labels::place(o.x, o.y))
            };
            let pool: std::collections::HashSet<_> = data.origins.iter().map(place).collect();
            let shared = test.origins.iter().filter(|o| pool.contains(&place(o))).count();
            if shared > 0 {
                invalid!(
                    "--test-labels: {shared} of its {} labelled picks are also in --labels (the \
                     same places on the same micrographs), so the shots drawn from them would be \
                     scored; give test picks of other micrographs (--test-micrographs), or leave \
                     --test-labels out to score the labelled picks not drawn",
                    test.len()
                );
            }
            Some(test)
        };

        crate::create_dir(&cfg.out)?;
        let json_path = cfg.out.join("results.json");
        let settings = serde_json::json!({
            "labels": cfg.labels.labels, "test_labels": cfg.test_labels, "preprocessing": pre,
            "net": cfg.net, "val_max": cfg.val_max, "seed": cfg.seed,
            "unlabelled": cfg.unlabelled,
        });
        let mut results: Results = match std::fs::read(&json_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::Invalid(format!(
                    "{}: not a fewshot results file ({e})",
                    json_path.display()
                ))
            })?,
            Err(_) => Results::default(),
        };
        if results.settings != settings && !results.trials.is_empty() {
            events.note(format!(
                "{}: settings changed, starting the trials afresh",
                json_path.display()
            ));
            results.trials.clear();
        }
        results.settings = settings;

        if cfg.variants.iter().any(|v| v.adapted) && !cfg.unlabelled.is_on() {
            return Err(Error::Invalid(
                "the -adapted variants need --unlabelled picks to adapt on".into(),
            ));
        }
        let all: Vec<usize> = (0..data.len()).collect();
        for &arch in &archs {
            // Per starting point (scratch, pretrained), adapted once when a variant asks.
            let mut adapted: [Option<Backbone>; 2] = [None, None];
            let needs_weights = cfg.variants.iter().any(|v| v.pretrained);
            let weights = match needs_weights {
                true => weights_for(&cfg.weights, arch, default_arch)?,
                false => Err(String::new()),
            };
            for variant in &cfg.variants {
                if let (true, Err(why)) = (variant.pretrained, &weights) {
                    events.note(format!("{arch} {variant}: cell skipped: {why}"));
                    continue;
                }
                let name = variant.to_string();
                for &shots in &cfg.shots {
                    for t in 0..cfg.trials {
                        if results.trials.iter().any(|r| {
                            r.arch == arch.name()
                                && r.variant == name
                                && r.shots == shots
                                && r.trial == t
                        }) {
                            continue;
                        }
                        let seed = cfg.seed + t as u64;
                        let split = match &data.multi {
                            Some(sets) => draw_label_shots(sets, &data.classes, &all, shots, seed)?,
                            None => draw_shots(&data.labels, &data.classes, &all, shots, seed)?,
                        };
                        let train_set = data.subset(&split.train);
                        let held_out = data.subset(&split.rest);
                        let mut val_idx: Vec<usize> = (0..held_out.len()).collect();
                        if held_out.is_multi_label() {
                            // No class to stratify by: the first of a seeded shuffle.
                            val_idx.shuffle(&mut StdRng::seed_from_u64(seed));
                            val_idx.truncate(cfg.val_max);
                        } else {
                            val_idx = subsample(
                                &held_out.labels,
                                data.classes.len(),
                                &val_idx,
                                cfg.val_max,
                                seed,
                            );
                        }
                        let val = held_out.subset(&val_idx);
                        let test_set = test.as_ref().unwrap_or(&held_out);
                        let mut net = cfg.net.clone();
                        net.arch = arch;
                        if variant.single_loss {
                            net.branches = 1;
                            net.branch_weights = None;
                        }
                        let start = match (&weights, variant.pretrained) {
                            (Ok(path), true) => Some(path.as_path()),
                            _ => None,
                        };
                        let slot = &mut adapted[usize::from(variant.pretrained)];
                        if variant.adapted && slot.is_none() {
                            let mut base = cfg.net.clone();
                            base.arch = arch;
                            let adapted = adapt(
                                &cfg.unlabelled,
                                &cfg.labels.micrographs,
                                &pre,
                                &base,
                                start,
                                cfg.seed,
                                &compute,
                                &crate::Silent,
                            )?;
                            *slot = Some(adapted.backbone);
                        }
                        let started = Instant::now();
                        let from = match slot {
                            Some(backbone) if variant.adapted => Start::Backbone(Box::new(backbone.clone())),
                            _ => Start::Weights(start),
                        };
                        let fitted =
                            fit(&net, from, &train_set, &val, seed, &compute, &crate::Silent)?;
                        // Without the adaptation, which every draw of a cell shares.
                        let train_seconds = started.elapsed().as_secs_f64();
                        let trial = |macro_f1, accuracy| Trial {
                            arch: arch.name().into(),
                            variant: name.clone(),
                            shots,
                            trial: t,
                            seed,
                            macro_f1,
                            accuracy,
                            micro_f1: None,
                            train_seconds,
                            best_epoch: fitted.best_epoch,
                            test_picks: test_set.len(),
                            with_context: None,
                            context_alone: None,
                            picker_score_alone: None,
                        };
                        if data.is_multi_label() {
                            let (report, combined) =
                                label_set_scores(&fitted, &train_set, &val, test_set, &compute);
                            events.note(format!(
                                "{arch} {variant} K={shots} trial {t}: macro-F1 {:.3}{}, micro-F1 {:.3}, exact match {:.3}, {train_seconds:.1} s (best epoch {})",
                                report.macro_f1,
                                combined.as_ref().map_or(String::new(), |c| format!(
                                    " ({:.3} with the measured statistics)",
                                    c.macro_f1
                                )),
                                report.micro_f1,
                                report.exact_match,
                                fitted.best_epoch
                            ));
                            results.trials.push(Trial {
                                micro_f1: Some(report.micro_f1),
                                with_context: combined.map(|c| Metrics {
                                    macro_f1: c.macro_f1,
                                    accuracy: c.exact_match,
                                }),
                                ..trial(report.macro_f1, report.exact_match)
                            });
                            crate::write_json(&json_path, &results)?;
                            continue;
                        }
                        let scored = fitted.score(test_set, &compute);
                        let context = usable_context(&train_set, test_set, |f| f).map(|mut ctx| {
                            let all: Vec<usize> = (0..val.len()).collect();
                            let probs = fitted.score_reusing_validation(&val, &all, &compute).probs;
                            ctx.fit_weights(&probs, &val.facts(), &val.labels);
                            ctx
                        });
                        let with_context = match &context {
                            Some(ctx) => Some(Metrics::of(&scored.with_context(test_set, ctx)?)),
                            None => None,
                        };
                        let context_alone = context.as_ref().map(|c| alone(c, test_set, |f| f));
                        let score_only = |f: PickFacts| PickFacts { edge: None, ..f };
                        let picker_score_alone = usable_context(&train_set, test_set, score_only)
                            .map(|c| alone(&c, test_set, score_only));
                        let report = scored.report;
                        events.note(format!(
                            "{arch} {variant} K={shots} trial {t}: macro-F1 {:.3}{}, accuracy {:.3}, {train_seconds:.1} s (best epoch {})",
                            report.macro_f1,
                            with_context.zip(context_alone).map_or(
                                String::new(),
                                |(with, alone)| format!(
                                    " ({:.3} with the pick context, {:.3} for the context alone{})",
                                    with.macro_f1,
                                    alone.macro_f1,
                                    picker_score_alone.map_or(String::new(), |m| format!(
                                        ", {:.3} for the picker's score alone",
                                        m.macro_f1
                                    ))
                                )
                            ),
                            report.accuracy,
                            fitted.best_epoch
                        ));
                        results.trials.push(Trial {
                            with_context,
                            context_alone,
                            picker_score_alone,
                            ..trial(report.macro_f1, report.accuracy)
                        });
                        crate::write_json(&json_path, &results)?;
                    }
                }
            }
        }
        let table = markdown(&results.trials, &cfg.shots);
        write_atomic(&cfg.out.join("results.md"), |w| {
            w.write_all(table.as_bytes())
        })?;
        events.output(table);
        Ok(results)
    })
}

/// Rows: network and variant; columns: shots; cells: mean ± sd of macro-F1 (and, when the picks
/// had a pick context, of macro-F1 with it combined, of the context alone and of the picker's
/// score alone; for label sets, of micro-F1), accuracy (for label sets, exact match), training
/// seconds per run.
pub fn markdown(trials: &[Trial], shots: &[usize]) -> String {
    let mut cells: BTreeMap<(String, String), BTreeMap<usize, Vec<&Trial>>> = BTreeMap::new();
    for t in trials {
        cells
            .entry((t.arch.clone(), t.variant.clone()))
            .or_default()
            .entry(t.shots)
            .or_default()
            .push(t);
    }
    type Column = (&'static str, fn(&Trial) -> Option<Metrics>);
    let optional: [Column; 3] = [
        ("+ context", |t| t.with_context),
        ("pick context alone", |t| t.context_alone),
        ("picker score alone", |t| t.picker_score_alone),
    ];
    let columns: Vec<&Column> = optional
        .iter()
        .filter(|(_, get)| trials.iter().any(|t| get(t).is_some()))
        .collect();
    let sets = trials.iter().any(|t| t.micro_f1.is_some());
    let width = 3 + columns.len() + usize::from(sets);
    let mut s = String::from("| network | variant |");
    for k in shots {
        s += &format!(" K = {k}: macro-F1 |");
        if sets {
            s += " micro-F1 |";
        }
        for (name, _) in &columns {
            s += &format!(" {name} |");
        }
        s += if sets {
            " exact match |"
        } else {
            " accuracy |"
        };
        s += " s/run |";
    }
    s += "\n|---|---|";
    for _ in shots {
        s += &"---|".repeat(width);
    }
    s.push('\n');
    let cell = |v: &[f64]| {
        if v.is_empty() {
            return "–".to_string();
        }
        let (m, sd) = mean_sd(v);
        format!("{m:.3} ± {sd:.3}")
    };
    for ((arch, variant), by_k) in &cells {
        s += &format!("| {arch} | {variant} |");
        for k in shots {
            let Some(ts) = by_k.get(k) else {
                s += &" – |".repeat(width);
                continue;
            };
            let f: Vec<f64> = ts.iter().map(|t| t.macro_f1).collect();
            s += &format!(" {} (n={}) |", cell(&f), ts.len());
            if sets {
                let m: Vec<f64> = ts.iter().filter_map(|t| t.micro_f1).collect();
                s += &format!(" {} |", cell(&m));
            }
            for (_, get) in &columns {
                let v: Vec<f64> = ts
                    .iter()
                    .filter_map(|t| get(t).map(|m| m.macro_f1))
                    .collect();
                s += &format!(" {} |", cell(&v));
            }
            let a: Vec<f64> = ts.iter().map(|t| t.accuracy).collect();
            let (sec, _) = mean_sd(&ts.iter().map(|t| t.train_seconds).collect::<Vec<_>>());
            s += &format!(" {} | {sec:.0} |", cell(&a));
        }
        s.push('\n');
    }
    s
}

/// The pick context fitted on the training picks' facts (as `view` sees them), when every test
/// pick has the facts it uses.
fn usable_context(
    train: &Dataset,
    test: &Dataset,
    view: impl Fn(PickFacts) -> PickFacts + Copy,
) -> Option<PickContext> {
    let ctx = fit_context(train, view).ok()?;
    test.facts()
        .into_iter()
        .all(|f| ctx.missing(&view(f)).is_none())
        .then_some(ctx)
}

/// The test picks scored by the context alone, as a user with only those facts could.
fn alone(ctx: &PickContext, test: &Dataset, view: impl Fn(PickFacts) -> PickFacts) -> Metrics {
    let probs = test
        .facts()
        .into_iter()
        .map(|f| ctx.alone(&view(f)))
        .collect();
    Metrics::of(&Scored::of(probs, test))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_have_one_spelling() {
        for s in [
            "scratch",
            "scratch-single-loss",
            "pretrained",
            "pretrained-single-loss",
            "scratch-adapted",
            "pretrained-adapted-single-loss",
        ] {
            assert_eq!(s.parse::<Variant>().unwrap().to_string(), s);
        }
        assert!("imagenet".parse::<Variant>().is_err());
        assert!("scratch-single-loss-adapted".parse::<Variant>().is_err());
    }

    #[test]
    fn the_table_gives_mean_and_sd_per_cell() {
        let trial = |variant: &str, shots, f1| Trial {
            arch: "small".into(),
            variant: variant.into(),
            shots,
            trial: 0,
            seed: 0,
            macro_f1: f1,
            accuracy: f1,
            micro_f1: None,
            train_seconds: 10.0,
            best_epoch: 1,
            test_picks: 100,
            with_context: None,
            context_alone: None,
            picker_score_alone: None,
        };
        let t = markdown(
            &[
                trial("scratch", 10, 0.6),
                trial("scratch", 10, 0.8),
                trial("pretrained", 30, 0.9),
            ],
            &[10, 30],
        );
        assert!(
            t.contains("| small | scratch | 0.700 ± 0.141 (n=2) |"),
            "{t}"
        );
        assert!(
            t.contains("| small | pretrained | – | – | – | 0.900 ± 0.000 (n=1) |"),
            "{t}"
        );
        // Label sets: micro-F1 beside macro-F1, exact match instead of accuracy.
        let sets = Trial {
            micro_f1: Some(0.75),
            ..trial("scratch", 10, 0.5)
        };
        let t = markdown(&[sets], &[10]);
        assert!(
            t.contains("micro-F1 | exact match |")
                && t.contains("| small | scratch | 0.500 ± 0.000 (n=1) | 0.750 ± 0.000 | 0.500"),
            "{t}"
        );
    }
}
