//! `cryoprune picker train`: train a deep picker on a few micrographs' picks, as the cryoSPARC
//! guide to supervised picker training describes: micrographs binned so a particle spans a
//! fixed number of pixels, a fully convolutional network trained on patches to mark a blob at
//! every pick (the picker's own from scratch, or the small network from the cryo-EM backbone
//! with `--network small`), a validation split by micrograph that chooses the epoch, a score
//! threshold chosen on every micrograph with picks, curves and a diagnosis in plain words. Then `cryoprune pick` picks every
//! micrograph with it.
//!
//! ```text
//! cryoprune picker train --micrographs 'Micrographs/*.mrc' --picks manualpick/ --particle-diameter 120 --out picker/
//! cryoprune picker train --micrographs 'mics/*.jpg' --picks truth/ --box 162 --validation 2 --network small --out picker/
//! cryoprune picker train --micrographs 'mics/*.mrc' --picks cleaned.star --particle-diameter 150 --lowpass 20A --normalize off --lr 0.02 --out picker/
//! ```

use std::path::PathBuf;

use anyhow::Result;
use cryoprune_image::fourier::Cutoff;
use cryoprune_jobs::picker::{self, PickerTrainConfig};
use cryoprune_jobs::ComputeConfig;
use cryoprune_model::picker::PickerArch;

use super::args::PickArgs;
use crate::printer::Printer;

#[derive(clap::Args)]
#[command(about = "Train a deep particle picker (then use `cryoprune pick`)")]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    #[command(after_help = super::examples(include_str!("picker.rs")))]
    /// Train a picker on micrographs and their picks
    Train(TrainArgs),
}

/// `on` or `off`.
fn on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("`{s}`: expected on or off")),
    }
}

#[derive(clap::Args)]
struct TrainArgs {
    #[command(flatten)]
    input: PickArgs,
    /// Particle diameter in Å (needs the pixel size: header or --angpix).
    #[arg(long, required_unless_present = "box_size", value_parser = cryoprune_jobs::positive)]
    particle_diameter: Option<f64>,
    /// Or the box in pixels (about 1.5 particle diameters).
    #[arg(long = "box")]
    box_size: Option<usize>,
    /// Pixel size in Å, instead of the micrographs' headers.
    #[arg(long, value_parser = cryoprune_jobs::positive)]
    angpix: Option<f64>,
    /// Network: small (the classifier's small network, started from --pretrained) or fcn (the
    /// picker's own, from scratch: faster to train, picks a little worse).
    #[arg(long, default_value_t = PickerTrainConfig::default().network)]
    network: PickerArch,
    /// The small network's start: cryo (the shipped cryo-EM backbone), a backbone file from
    /// `cryoprune pretrain`, or none.
    #[arg(long)]
    pretrained: Option<String>,
    /// Keep the first N of the network's stages as pretrained (default: 1 of small's 4 when it
    /// starts from a backbone, 0 from scratch); fewer stages learn: faster, and less to
    /// overfit with few micrographs of faint particles.
    #[arg(long, value_name = "N")]
    freeze: Option<usize>,
    /// Binning factor; by default the particle spans 12 binned pixels (fcn) or 32 (small).
    #[arg(long)]
    bin: Option<f64>,
    /// Low-pass after binning: a resolution (20A) or a fraction of Nyquist (0.5nyquist).
    #[arg(long)]
    lowpass: Option<Cutoff>,
    /// Initial learning rate.
    #[arg(long, default_value_t = PickerTrainConfig::default().lr)]
    lr: f64,
    /// Final learning rate (decaying exponentially from --lr over the steps).
    #[arg(long, default_value_t = PickerTrainConfig::default().final_lr)]
    final_lr: f64,
    /// Patches per step.
    #[arg(long, default_value_t = PickerTrainConfig::default().batch)]
    batch: usize,
    /// Passes over the training micrographs (each sees about its area in patches).
    #[arg(long, default_value_t = PickerTrainConfig::default().epochs)]
    epochs: usize,
    /// Weight particle pixels up to balance the classes (essential when particles are sparse).
    #[arg(long, default_value = "on", value_parser = on_off, action = clap::ArgAction::Set)]
    class_weights: bool,
    /// bce: pixels without a pick are background (complete picks); pu: positive-unlabelled,
    /// they are unlabelled (picks that miss particles; needs --expected-particles).
    #[arg(long, default_value = "bce", value_parser = ["bce", "pu"])]
    loss: String,
    /// About how many particles a micrograph holds (for --loss pu).
    #[arg(long, value_parser = cryoprune_jobs::positive)]
    expected_particles: Option<f64>,
    /// Robust micrograph normalisation (percentile clip, helps with junk); off: mean and deviation.
    #[arg(long, default_value = "on", value_parser = on_off, action = clap::ArgAction::Set)]
    normalize: bool,
    /// Micrographs held out to choose the epoch, and to choose the threshold with the training
    /// ones (default: a fifth, at least 1).
    #[arg(long)]
    validation: Option<usize>,
    /// Target blob radius in pixels (default: a quarter of the diameter).
    #[arg(long, value_parser = cryoprune_jobs::positive)]
    target_radius: Option<f64>,
    /// Picks closer than this many pixels are one particle (default: half the diameter).
    #[arg(long, value_parser = cryoprune_jobs::positive)]
    min_distance: Option<f64>,
    /// Average the score maps of this many of each micrograph's 8 rotations and flips (1, 2, 4
    /// or 8): steadier peaks for as many times the picking time. Recorded in the picker, so
    /// `pick` does the same, and the threshold is chosen on it.
    /// Default: 1 for small, 4 for fcn.
    #[arg(long)]
    views: Option<u8>,
    /// Seed of the split, the initial weights and the patches.
    #[arg(long, default_value_t = PickerTrainConfig::default().seed)]
    seed: u64,
    /// Threads; 0 = all cores.
    #[arg(long, default_value_t = ComputeConfig::default().threads)]
    threads: usize,
    /// Picker directory to write.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let Command::Train(a) = args.command;
    let d = PickerTrainConfig::default();
    let cfg = PickerTrainConfig {
        compute: ComputeConfig {
            threads: a.threads,
            ..ComputeConfig::default()
        },
        micrographs: a.input.micrographs,
        picks: a.input.picks,
        format: a.input.format,
        particle_diameter: a.particle_diameter,
        box_size: a.box_size,
        angpix: a.angpix,
        network: a.network,
        pretrained: a.pretrained,
        freeze: a.freeze,
        bin: a.bin,
        lowpass: a.lowpass,
        normalize: a.normalize,
        lr: a.lr,
        final_lr: a.final_lr,
        batch: a.batch,
        epochs: a.epochs,
        class_weights: a.class_weights,
        positive_unlabelled: a.loss == "pu",
        expected_particles: a.expected_particles,
        validation: a.validation,
        target_radius: a.target_radius,
        min_distance: a.min_distance,
        views: a.views,
        seed: a.seed,
        out: a.out,
        ..d
    };
    picker::train(&cfg, &Printer::default())?;
    Ok(())
}
