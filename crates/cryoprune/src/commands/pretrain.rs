//! `cryoprune pretrain`: pretrain a backbone on simulated cryo-EM particles and junk (many
//! structure families and any real maps or models given, carbon, ice, aggregates, empty ice; sizes, samplings, defocus, SNR and
//! looks as varied as real data), for `train --pretrained PATH/backbone.safetensors`. Long runs
//! checkpoint every few minutes; `--resume` continues a stopped one where it stopped, and
//! `--time-limit` stops cleanly before a batch job's wall time.
//!
//! ```text
//! cryoprune pretrain --out backbone/
//! cryoprune pretrain --out backbone/ --chunks 1000 --time-limit 230 --threads 8
//! cryoprune pretrain --out backbone/ --chunks 1000 --resume
//! cryoprune pretrain --out backbone/ --structures maps/*.mrc models/*.cif --threads 8
//! ```

use std::path::PathBuf;

use anyhow::Result;
use cryoprune_jobs::pretrain::{self, Classes, PretrainConfig};
use cryoprune_model::Arch;

use super::args::ComputeArgs;
use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Pretrain a backbone on simulated cryo-EM particles and junk (checkpointed, resumable)",
    after_help = super::examples(include_str!("pretrain.rs"))
)]
pub struct Args {
    #[command(flatten)]
    compute: ComputeArgs,
    /// Output folder: backbone.safetensors, pretrain.json, and checkpoint.safetensors.
    #[arg(long)]
    out: PathBuf,
    /// Network: small, efficientnet-lite0, resnet18, resnet34 or resnet50.
    #[arg(long, default_value_t = PretrainConfig::default().arch)]
    arch: Arch,
    /// Particle image size (the network input); fine-tune with the same --input-size.
    #[arg(long, default_value_t = PretrainConfig::default().input_size)]
    input_size: usize,
    /// Real maps (.mrc, .map) and atomic models (.pdb, .cif): each becomes a particle class of
    /// its own beside the procedural families. Leave out what you will evaluate on.
    #[arg(long, num_args = 1..)]
    structures: Vec<PathBuf>,
    /// fine: a class per structure family and real structure; coarse: every centred particle
    /// one class. Both have the junk kinds and off-centre picks.
    #[arg(long, default_value_t = PretrainConfig::default().classes)]
    classes: Classes,
    /// Chunks of fresh simulated data in the whole run.
    #[arg(long, default_value_t = PretrainConfig::default().chunks)]
    chunks: usize,
    /// Micrographs simulated per chunk.
    #[arg(long, default_value_t = PretrainConfig::default().micrographs_per_chunk)]
    micrographs_per_chunk: usize,
    /// At most this many particles of each class per chunk.
    #[arg(long, default_value_t = PretrainConfig::default().per_class)]
    per_class: usize,
    /// Augmented passes over each chunk.
    #[arg(long, default_value_t = PretrainConfig::default().passes)]
    passes: usize,
    #[arg(long, default_value_t = PretrainConfig::default().batch)]
    batch: usize,
    /// Peak learning rate; a cosine brings it to a hundredth by the end.
    #[arg(long, default_value_t = PretrainConfig::default().lr)]
    lr: f64,
    #[arg(long, default_value_t = PretrainConfig::default().weight_decay)]
    weight_decay: f64,
    #[arg(long, default_value_t = PretrainConfig::default().seed)]
    seed: u64,
    /// Minutes between checkpoints.
    #[arg(long, default_value_t = PretrainConfig::default().checkpoint_minutes)]
    checkpoint_minutes: f64,
    /// Stop, with a checkpoint, after this many minutes (then --resume).
    #[arg(long)]
    time_limit: Option<f64>,
    /// Continue the run in --out from its checkpoint (same settings).
    #[arg(long)]
    resume: bool,
}

pub fn run(args: Args) -> Result<()> {
    let cfg = PretrainConfig {
        compute: args.compute.into(),
        out: args.out,
        arch: args.arch,
        input_size: args.input_size,
        structures: args.structures,
        classes: args.classes,
        chunks: args.chunks,
        micrographs_per_chunk: args.micrographs_per_chunk,
        per_class: args.per_class,
        passes: args.passes,
        batch: args.batch,
        lr: args.lr,
        weight_decay: args.weight_decay,
        seed: args.seed,
        checkpoint_minutes: args.checkpoint_minutes,
        time_limit_minutes: args.time_limit,
        resume: args.resume,
    };
    pretrain::run(&cfg, &Printer::default())?;
    Ok(())
}
