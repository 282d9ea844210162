//! `cryoprune fewshot`: the PickerOptimizer evaluation protocol. For every cell (network ×
//! variant × shots), N models are trained on independent random draws of K labelled picks per
//! class and scored on the labelled picks not drawn (or on --test-labels). Writes a markdown
//! table of mean ± sd macro-F1 and accuracy (the layout of the paper's Tables 2-3) and JSON with
//! every trial. Resumable: trials already in the JSON are not redone. Images with label sets
//! (`image,labels`, `micrograph,labels`) draw K images with and K without each label, and are
//! scored by macro-F1, micro-F1 and exact match at thresholds chosen on held-out images.
//!
//! ```text
//! cryoprune fewshot --micrographs 'mics/*.jpg' --labels labels.csv --box 180 --shots 10,20,30 --trials 5 --out fewshot/
//! cryoprune fewshot --micrographs mics/14_33_35.jpg mics/15_17_31.jpg --labels topaz.csv --test-micrographs mics/15_30_21.jpg mics/15_33_42.jpg --test-labels topaz.csv --box 180 --archs efficientnet-lite0,resnet18 --variants scratch,pretrained,pretrained-single-loss --weights efficientnet-lite0=efficientnet-lite0.pth --out bench/
//! cryoprune fewshot --micrographs 'mics/*.jpg' --labels labels.csv --box 180 --variants scratch,scratch-adapted --unlabelled picks/ --out fewshot/
//! cryoprune fewshot --labels curation/micrograph_tags.csv --input-size 128 --shots 10,30 --variants scratch,pretrained --out fewshot_tags/
//! ```

use anyhow::Result;
use cryoprune_jobs::fewshot::{self, FewshotConfig};

use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Few-shot protocol: mean ± sd macro-F1 over random draws of K labels per class",
    after_help = super::examples(include_str!("fewshot.rs"))
)]
pub struct Args {
    #[command(flatten)]
    cfg: FewshotConfig,
}

pub fn run(args: Args) -> Result<()> {
    fewshot::run(&args.cfg, &Printer::default())?;
    Ok(())
}
