//! `cryoprune train`: fine-tune a network on a few labelled picks per class and write a model
//! directory (weights, model.json with every preprocessing parameter, training curves, the
//! validation picks with their probabilities, and a plain-words diagnosis).
//!
//! ```text
//! cryoprune train --micrographs 'Micrographs/*.mrc' --labels labels.csv --box 180 --out model/
//! cryoprune train --micrographs 'mics/*.jpg' --labels labels.csv --box 180 --shots 30 --arch efficientnet-lite0 --pretrained efficientnet-lite0.pth --input-size 96 --out model/
//! cryoprune train --labels Select/job012/particles.star --images-inverted --val-fraction 0.3 --out model/
//! ```

use std::path::PathBuf;

use anyhow::{bail, Result};
use cryoprune_formats::atomic::write_atomic;
use cryoprune_model::modeldir::{self, ModelSpec};
use cryoprune_model::{load_backbone, ClassifierConfig, Pretrained};
use cryoprune_train::diagnose::diagnose;
use cryoprune_train::sampling::{draw_shots, split_fraction, subsample};
use cryoprune_train::trainer::score;
use cryoprune_train::{plot, Dataset};

use super::learning::{self, ComputeArgs, LabelArgs, NetArgs, PrepArgs};

#[derive(clap::Args)]
#[command(
    about = "Fine-tune a classifier on labelled picks and write a model directory",
    after_help = super::examples(include_str!("train.rs"))
)]
pub struct Args {
    #[command(flatten)]
    compute: ComputeArgs,
    #[command(flatten)]
    labels: LabelArgs,
    /// Train on K labelled picks per class (drawn with --seed); the rest validate.
    #[arg(long, conflicts_with = "val_fraction")]
    shots: Option<usize>,
    /// Without --shots: the share of each class held out for validation.
    #[arg(long, default_value_t = 0.2)]
    val_fraction: f64,
    /// Per-epoch validation uses at most this many held-out picks (all are scored at the end).
    #[arg(long, default_value_t = 400)]
    val_max: usize,
    #[command(flatten)]
    prep: PrepArgs,
    #[command(flatten)]
    net: NetArgs,
    /// Classify on the image alone. By default what the box does not show is combined with the
    /// network's evidence: the picker's score, when the labelled picks carry one, and the pick's
    /// distance from the micrograph edge.
    #[arg(long)]
    image_only: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output model directory.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let (compute, threads) = args.compute.start()?;
    let arch = args.net.arch()?;
    // Fetched before the particles are cut, so a failed download fails fast.
    let pretrained = Pretrained::parse(&args.net.pretrained)?;
    let weights = pretrained.path(arch)?;
    if weights.is_none() && pretrained == Pretrained::ImageNet {
        eprintln!("starting weights: none ({arch} has no ImageNet weights)");
    }
    let source = args.labels.source();
    let pre = args.prep.preprocessing(&source)?;
    let data = args.labels.dataset(&source, None, &pre, threads)?;
    let all: Vec<usize> = (0..data.len()).collect();
    let split = match args.shots {
        Some(k) => draw_shots(&data.labels, &data.classes, &all, k, args.seed)?,
        None => split_fraction(
            &data.labels,
            &data.classes,
            &all,
            args.val_fraction,
            args.seed,
        ),
    };
    if split.train.is_empty() {
        bail!("no labelled picks left for training");
    }
    let train_set = data.subset(&split.train);
    let val_all = data.subset(&split.rest);
    let epoch_picks = subsample(
        &val_all.labels,
        data.classes.len(),
        &(0..val_all.len()).collect::<Vec<_>>(),
        args.val_max,
        args.seed,
    );
    let val_epoch = val_all.subset(&epoch_picks);
    eprintln!(
        "training on {} picks ({}), validating on {} held out",
        train_set.len(),
        counts_text(&train_set),
        val_all.len()
    );

    let cfg = args
        .net
        .train_config(&data.classes, &train_set.counts(), args.seed)?;
    let net = ClassifierConfig {
        arch,
        classes: data.classes.len(),
        head: cfg.head.clone(),
    };
    let device = compute.device.clone().autodiff();
    let model = match &weights {
        None => net.init(&device),
        Some(path) => {
            let (backbone, report) = load_backbone(arch, path, &device)?;
            eprintln!(
                "loaded {} pretrained tensors from {}",
                report.applied,
                path.display()
            );
            net.init_with(backbone, &device)
        }
    };
    eprintln!("epoch      lr  train loss  train acc  val loss  val acc  val F1   time");
    let trained =
        cryoprune_train::train(model, &train_set, Some(&val_epoch), &cfg, &device, |s| {
            eprintln!(
                "{:5}  {:.0e}  {:10.4}  {:9.3}  {:8}  {:7}  {:6}  {:4.1}s",
                s.epoch,
                s.lr,
                s.train_loss,
                s.train_accuracy,
                s.val_loss.map_or("-".into(), |v| format!("{v:.4}")),
                s.val_accuracy.map_or("-".into(), |v| format!("{v:.3}")),
                s.val_macro_f1.map_or("-".into(), |v| format!("{v:.3}")),
                s.seconds
            );
        })?;
    eprintln!(
        "trained in {:.1} s; best epoch {} kept",
        trained.seconds, trained.best_epoch
    );

    let mut pick_context = if args.image_only {
        None
    } else {
        learning::fit_context(&train_set)
    };
    // The network scores every held-out pick once; the weight is fitted on the epoch-validation
    // picks among them.
    let image_only = score(
        &trained.model,
        &val_all,
        cfg.head.mean_of_branches,
        &compute.device,
    );
    if let Some(ctx) = &mut pick_context {
        let probs: Vec<Vec<f32>> = epoch_picks
            .iter()
            .map(|&i| image_only.probs[i].clone())
            .collect();
        let n = ctx.fit_image_weight(&probs, &val_epoch.facts(), &val_epoch.labels);
        if n > 0 {
            eprintln!(
                "pick context: the network's log-probabilities weighted {:.2} against it (best fit to {n} validation picks)",
                ctx.image_weight
            );
        }
    }
    let scored = learning::with_context(image_only, &val_all, pick_context.as_ref())?;
    let report = scored.report.clone();
    if !val_all.is_empty() {
        println!(
            "validation ({} held-out picks):\n{}",
            val_all.len(),
            report.to_text()
        );
    }
    let mut counts = vec![0; data.classes.len()];
    for &p in &scored.predicted {
        counts[p] += 1;
    }
    let findings = diagnose(
        &trained.history,
        (!val_all.is_empty()).then_some(counts.as_slice()),
        &data.classes,
    );
    if findings.is_empty() {
        println!("diagnosis: the curves look healthy.");
    }
    for f in &findings {
        println!("diagnosis: {f}");
    }

    std::fs::create_dir_all(&args.out)?;
    write_history(&args.out.join("history.csv"), &trained.history)?;
    plot::training_curves(
        &trained.history,
        trained.best_epoch,
        &args.out.join("curves.png"),
    )?;
    learning::write_predictions(&args.out.join("validation.csv"), &val_all, &scored)?;
    let mut spec = ModelSpec {
        format_version: modeldir::FORMAT_VERSION,
        software: format!("cryoprune {}", env!("CARGO_PKG_VERSION")),
        classes: data.classes.clone(),
        network: net,
        preprocessing: pre,
        pretrained: pretrained.describe(weights.as_deref()),
        training: serde_json::json!({
            "config": cfg,
            "shots": args.shots,
            "train_picks": train_set.len(),
            "validation_picks": val_all.len(),
            "best_epoch": trained.best_epoch,
            "seconds": trained.seconds,
            "device": compute.description,
            "validation": report,
            "diagnosis": findings,
            "labels": args.labels.labels,
        }),
        pick_context,
        weights_file: String::new(),
        weights_sha256: String::new(),
    };
    modeldir::save(&args.out, &trained.model, &mut spec)?;
    eprintln!("model written to {}", args.out.display());
    Ok(())
}

fn counts_text(d: &Dataset) -> String {
    d.classes
        .iter()
        .zip(d.counts())
        .map(|(c, n)| format!("{n} {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn write_history(path: &std::path::Path, history: &[cryoprune_train::EpochStats]) -> Result<()> {
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
    write_atomic(path, |w| {
        writeln!(
            w,
            "epoch,lr,train_loss,train_accuracy,val_loss,val_accuracy,val_macro_f1,seconds"
        )?;
        for h in history {
            writeln!(
                w,
                "{},{:.3e},{:.6},{:.6},{},{},{},{:.3}",
                h.epoch,
                h.lr,
                h.train_loss,
                h.train_accuracy,
                opt(h.val_loss),
                opt(h.val_accuracy),
                opt(h.val_macro_f1),
                h.seconds
            )?;
        }
        Ok(())
    })?;
    Ok(())
}
