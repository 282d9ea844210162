//! `cryoprune evaluate`: score a trained model on labelled picks: accuracy, macro-F1,
//! per-class precision/recall/F1 and the confusion matrix, printed and as JSON. Particles are cut
//! exactly as model.json says training cut them.
//!
//! ```text
//! cryoprune evaluate --model model/ --micrographs 'Micrographs/*.mrc' --labels test_labels.csv
//! cryoprune evaluate --model model/ --micrographs 'mics/*.jpg' --labels labels/topaz.csv --json eval.json
//! cryoprune evaluate --model model/ --labels held_out_by_class/ --device cuda
//! ```

use std::path::PathBuf;

use anyhow::Result;
use cryoprune_formats::atomic::write_atomic;
use cryoprune_formats::PickFormat;
use cryoprune_model::modeldir;
use cryoprune_train::metrics;
use cryoprune_train::trainer::{argmax, predict};

use super::learning;

#[derive(clap::Args)]
#[command(
    about = "Score a trained model on labelled picks (accuracy, macro-F1, per class, confusion)",
    after_help = super::examples(include_str!("evaluate.rs"))
)]
pub struct Args {
    /// Model directory written by `cryoprune train`.
    #[arg(long)]
    model: PathBuf,
    /// Micrographs (globs, quoted).
    #[arg(long, num_args = 1..)]
    micrographs: Vec<String>,
    /// Labelled picks (CSV micrograph,x,y,label or any pick file with labels), or a class folder.
    #[arg(long, required = true, num_args = 1..)]
    labels: Vec<PathBuf>,
    #[arg(long, value_parser = super::convert::parse_format)]
    format: Option<PickFormat>,
    /// Write the scores as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

pub fn run(args: Args) -> Result<()> {
    let threads = super::thread_count(args.threads);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .ok();
    let compute = learning::device(&args.device)?;
    let (model, spec) = modeldir::load(&args.model, &compute.device)?;
    let data = learning::labelled_dataset(
        &args.labels,
        args.format,
        &args.micrographs,
        Some(&spec.classes),
        &spec.preprocessing,
        threads,
    )?;
    let probs = predict(
        &model,
        &data,
        64,
        spec.network.head.mean_of_branches,
        &compute.device,
    );
    let pred: Vec<usize> = probs.iter().map(|p| argmax(p)).collect();
    let report = metrics::evaluate(&data.labels, &pred, &data.classes);
    println!("{}", report.to_text());
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report)?;
        write_atomic(path, |w| w.write_all(&json))?;
        eprintln!("scores written to {}", path.display());
    }
    Ok(())
}
