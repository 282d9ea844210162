//! `cryoprune pretrain`: pretrain a backbone on simulated cryo-EM particles and junk (many
//! structure families and any real maps or models given, carbon, ice, aggregates, empty ice; sizes, samplings, defocus, SNR and
//! looks as varied as real data), for `train --pretrained PATH/backbone.safetensors`. Long runs
//! checkpoint every few minutes; `--resume` continues a stopped one where it stopped, and
//! `--time-limit` stops cleanly before a batch job's wall time. `--from` continues from a
//! backbone (the shipped one, `cryo`) at a lower learning rate instead of starting afresh.
//!
//! ```text
//! cryoprune pretrain --out backbone/ --structures maps/*.mrc models/*.cif --threads 8
//! cryoprune pretrain --out backbone/ --chunks 1000 --time-limit 230 --threads 8
//! cryoprune pretrain --out backbone/ --chunks 1000 --resume
//! cryoprune pretrain --out mine/ --from cryo --lr 0.005 --chunks 400 --structures my_map.mrc
//! ```

use anyhow::Result;
use cryoprune_jobs::pretrain::{self, PretrainConfig};

use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Pretrain a backbone on simulated cryo-EM particles and junk (checkpointed, resumable)",
    after_help = super::examples(include_str!("pretrain.rs"))
)]
pub struct Args {
    #[command(flatten)]
    cfg: PretrainConfig,
}

pub fn run(args: Args) -> Result<()> {
    pretrain::run(&args.cfg, &Printer::default())?;
    Ok(())
}
