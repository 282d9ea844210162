//! `cryoprune fewshot`: the PickerOptimizer evaluation protocol. For every cell (network ×
//! variant × shots), N models are trained on independent random draws of K labelled picks per
//! class and scored on the labelled picks not drawn (or on --test-labels). Writes a markdown
//! table of mean ± sd macro-F1 and accuracy (the layout of the paper's Tables 2-3) and JSON with
//! every trial. Resumable: trials already in the JSON are not redone.
//!
//! ```text
//! cryoprune fewshot --micrographs 'mics/*.jpg' --labels labels.csv --box 180 --shots 10,20,30 --trials 5 --out fewshot/
//! cryoprune fewshot --micrographs mics/14_33_35.jpg mics/15_17_31.jpg --labels topaz.csv --test-micrographs mics/15_30_21.jpg mics/15_33_42.jpg --test-labels topaz.csv --box 180 --archs efficientnet-lite0,resnet18 --variants scratch,pretrained,pretrained-single-loss --weights efficientnet-lite0=efficientnet-lite0.pth --out bench/
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use cryoprune_formats::atomic::write_atomic;
use cryoprune_model::{load_backbone, Arch, ClassifierConfig, PickContext, PickFacts, Pretrained};
use cryoprune_train::sampling::{draw_shots, subsample};
use cryoprune_train::trainer::{score, Scored};
use cryoprune_train::Dataset;
use serde::{Deserialize, Serialize};

use super::learning::{self, ComputeArgs, LabelArgs, NetArgs, PrepArgs};

#[derive(clap::Args)]
#[command(
    about = "Few-shot protocol: mean ± sd macro-F1 over random draws of K labels per class",
    after_help = super::examples(include_str!("fewshot.rs"))
)]
pub struct Args {
    #[command(flatten)]
    compute: ComputeArgs,
    #[command(flatten)]
    labels: LabelArgs,
    /// Separate test labels; default: the labelled picks not drawn.
    #[arg(long, num_args = 1..)]
    test_labels: Vec<PathBuf>,
    /// Micrographs of --test-labels; default: --micrographs.
    #[arg(long, num_args = 1..)]
    test_micrographs: Vec<String>,
    /// Shots per class, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,20,30")]
    shots: Vec<usize>,
    /// Draws per cell.
    #[arg(long, default_value_t = 5)]
    trials: usize,
    /// Variants: scratch, pretrained, and either with -single-loss (a one-branch head).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "scratch,pretrained,pretrained-single-loss"
    )]
    variants: Vec<String>,
    /// Networks to compare, comma-separated (overrides --arch).
    #[arg(long, value_delimiter = ',')]
    archs: Vec<String>,
    /// Pretrained weights per network: ARCH=PATH or ARCH=HUB-NAME (repeatable), or one for --arch;
    /// a network without any gets its ImageNet weights (downloaded once, then cached).
    #[arg(long = "weights", num_args = 1..)]
    weights: Vec<String>,
    #[command(flatten)]
    prep: PrepArgs,
    #[command(flatten)]
    net: NetArgs,
    /// Per-epoch validation uses at most this many held-out picks.
    #[arg(long, default_value_t = 200)]
    val_max: usize,
    /// Base seed; trial t uses seed + t, so every variant of a trial sees the same draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder for results.json and results.md.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Trial {
    arch: String,
    variant: String,
    shots: usize,
    trial: usize,
    seed: u64,
    macro_f1: f64,
    accuracy: f64,
    train_seconds: f64,
    best_epoch: usize,
    test_picks: usize,
    /// The same model with the pick context combined (picker score, distance from the edge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    with_context: Option<Metrics>,
    /// The pick context alone, fitted on the same training picks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    context_alone: Option<Metrics>,
    /// The picker's score alone, calibrated on the same training picks: the picker as a user
    /// with these labels could threshold it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    picker_score_alone: Option<Metrics>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Metrics {
    macro_f1: f64,
    accuracy: f64,
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
struct Results {
    /// The settings the trials were run with; a rerun with other settings starts afresh.
    settings: serde_json::Value,
    trials: Vec<Trial>,
}

/// The pretrained checkpoint for `arch`: from `--weights` (ARCH=SOURCE, or one SOURCE for the
/// default network), else its ImageNet weights. `Err` carries why there are none.
fn weights_for(
    weights: &[String],
    arch: Arch,
    default_arch: Arch,
) -> Result<Result<PathBuf, String>> {
    let mut source = Pretrained::ImageNet;
    for w in weights {
        match w.split_once('=') {
            Some((a, p)) if a.parse::<Arch>().map_err(anyhow::Error::msg)? == arch => {
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

pub fn run(args: Args) -> Result<()> {
    let (compute, threads) = args.compute.start()?;
    let default_arch = args.net.arch()?;
    let archs: Vec<Arch> = if args.archs.is_empty() {
        vec![default_arch]
    } else {
        args.archs
            .iter()
            .map(|a| a.parse::<Arch>().map_err(anyhow::Error::msg))
            .collect::<Result<_>>()?
    };
    for v in &args.variants {
        if !matches!(
            v.as_str(),
            "scratch" | "scratch-single-loss" | "pretrained" | "pretrained-single-loss"
        ) {
            bail!("--variants `{v}`: expected scratch, scratch-single-loss, pretrained or pretrained-single-loss");
        }
    }
    let source = args.labels.source();
    let pre = args.prep.preprocessing(&source)?;
    let data = args.labels.dataset(&source, None, &pre, threads)?;
    let test: Option<Dataset> = if args.test_labels.is_empty() {
        None
    } else {
        let test = LabelArgs {
            labels: args.test_labels.clone(),
            micrographs: if args.test_micrographs.is_empty() {
                args.labels.micrographs.clone()
            } else {
                args.test_micrographs.clone()
            },
            ..args.labels.clone()
        };
        Some(test.dataset(&test.source(), Some(&data.classes), &pre, threads)?)
    };

    std::fs::create_dir_all(&args.out)?;
    let json_path = args.out.join("results.json");
    let settings = serde_json::json!({
        "labels": args.labels.labels, "test_labels": args.test_labels, "preprocessing": pre,
        "net": format!("{:?}", args.net), "val_max": args.val_max, "seed": args.seed,
    });
    let mut results: Results = match std::fs::read(&json_path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: not a fewshot results file", json_path.display()))?,
        Err(_) => Results::default(),
    };
    if results.settings != settings && !results.trials.is_empty() {
        eprintln!(
            "{}: settings changed, starting the trials afresh",
            json_path.display()
        );
        results.trials.clear();
    }
    results.settings = settings;

    let all: Vec<usize> = (0..data.len()).collect();
    for &arch in &archs {
        let needs_weights = args.variants.iter().any(|v| v.starts_with("pretrained"));
        let weights = if needs_weights {
            weights_for(&args.weights, arch, default_arch)?
        } else {
            Err(String::new())
        };
        for variant in &args.variants {
            let pretrained = variant.starts_with("pretrained");
            if let (true, Err(why)) = (pretrained, &weights) {
                eprintln!("{arch} {variant}: cell skipped: {why}");
                continue;
            }
            for &shots in &args.shots {
                for t in 0..args.trials {
                    if results.trials.iter().any(|r| {
                        r.arch == arch.name()
                            && &r.variant == variant
                            && r.shots == shots
                            && r.trial == t
                    }) {
                        continue;
                    }
                    let seed = args.seed + t as u64;
                    let split = draw_shots(&data.labels, &data.classes, &all, shots, seed)?;
                    let train_set = data.subset(&split.train);
                    let held_out = data.subset(&split.rest);
                    let val_idx = subsample(
                        &held_out.labels,
                        data.classes.len(),
                        &(0..held_out.len()).collect::<Vec<_>>(),
                        args.val_max,
                        seed,
                    );
                    let val = held_out.subset(&val_idx);
                    let test_set = test.as_ref().unwrap_or(&held_out);
                    let mut net_args = args.net.clone();
                    if variant.ends_with("single-loss") {
                        net_args.branches = 1;
                        net_args.branch_weights = None;
                    }
                    let cfg = net_args.train_config(&data.classes, &train_set.counts(), seed)?;
                    let net = ClassifierConfig {
                        arch,
                        classes: data.classes.len(),
                        head: cfg.head.clone(),
                    };
                    let device = compute.device.clone().autodiff();
                    let model = match (&weights, pretrained) {
                        (Ok(path), true) => {
                            net.init_with(load_backbone(arch, path, &device)?.0, &device)
                        }
                        _ => net.init(&device),
                    };
                    let started = Instant::now();
                    let trained = cryoprune_train::train(
                        model,
                        &train_set,
                        Some(&val),
                        &cfg,
                        &device,
                        |_| {},
                    )?;
                    let train_seconds = started.elapsed().as_secs_f64();
                    let scored = score(
                        &trained.model,
                        test_set,
                        cfg.head.mean_of_branches,
                        &compute.device,
                    );
                    let context = fit_context(&train_set, test_set, |f| f).map(|mut ctx| {
                        learning::weigh_image(
                            &mut ctx,
                            &trained.model,
                            &val,
                            cfg.head.mean_of_branches,
                            &compute,
                        );
                        ctx
                    });
                    let with_context = match &context {
                        Some(ctx) => Some(Metrics::of(&scored.with_context(test_set, ctx)?)),
                        None => None,
                    };
                    let context_alone = context.as_ref().map(|c| alone(c, test_set, |f| f));
                    let score_only = |f: PickFacts| PickFacts { edge: None, ..f };
                    let picker_score_alone = fit_context(&train_set, test_set, score_only)
                        .map(|c| alone(&c, test_set, score_only));
                    let report = scored.report;
                    eprintln!(
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
                        trained.best_epoch
                    );
                    results.trials.push(Trial {
                        arch: arch.name().into(),
                        variant: variant.clone(),
                        shots,
                        trial: t,
                        seed,
                        macro_f1: report.macro_f1,
                        accuracy: report.accuracy,
                        train_seconds,
                        best_epoch: trained.best_epoch,
                        test_picks: test_set.len(),
                        with_context,
                        context_alone,
                        picker_score_alone,
                    });
                    let json = serde_json::to_vec_pretty(&results)?;
                    write_atomic(&json_path, |w| w.write_all(&json))?;
                }
            }
        }
    }
    let table = markdown(&results.trials, &args.shots);
    write_atomic(&args.out.join("results.md"), |w| {
        w.write_all(table.as_bytes())
    })?;
    println!("{table}");
    Ok(())
}

/// Rows: network and variant; columns: shots; cells: mean ± sd of macro-F1 (and, when the picks
/// had a pick context, of macro-F1 with it combined, of the context alone and of the picker's
/// score alone), accuracy, training seconds per run.
fn markdown(trials: &[Trial], shots: &[usize]) -> String {
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
        ("+ pick context", |t| t.with_context),
        ("pick context alone", |t| t.context_alone),
        ("picker score alone", |t| t.picker_score_alone),
    ];
    let columns: Vec<&Column> = optional
        .iter()
        .filter(|(_, get)| trials.iter().any(|t| get(t).is_some()))
        .collect();
    let mut s = String::from("| network | variant |");
    for k in shots {
        s += &format!(" K = {k}: macro-F1 |");
        for (name, _) in &columns {
            s += &format!(" {name} |");
        }
        s += " accuracy | s/run |";
    }
    s += "\n|---|---|";
    for _ in shots {
        s += &"---|".repeat(3 + columns.len());
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
                s += &" – |".repeat(3 + columns.len());
                continue;
            };
            let f: Vec<f64> = ts.iter().map(|t| t.macro_f1).collect();
            s += &format!(" {} (n={}) |", cell(&f), ts.len());
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
fn fit_context(
    train: &Dataset,
    test: &Dataset,
    view: impl Fn(PickFacts) -> PickFacts,
) -> Option<PickContext> {
    let facts: Vec<PickFacts> = train.facts().into_iter().map(&view).collect();
    let ctx = PickContext::fit(&facts, &train.labels, train.classes.len()).ok()?;
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
