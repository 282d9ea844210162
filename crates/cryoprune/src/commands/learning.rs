//! Options and steps shared by `train`, `evaluate` and `fewshot`: reading labels, cutting the
//! labelled particles once, building the network, and the device.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cryoprune_formats::atomic::write_atomic;
use cryoprune_formats::{PickFormat, PickSet};
use cryoprune_image::augment::Augment;
use cryoprune_model::{Arch, Classifier, Compute, HeadConfig, PickContext, Preprocessing};
use cryoprune_train::dataset::{self, Coverage};
use cryoprune_train::schedule::Schedule;
use cryoprune_train::stack;
use cryoprune_train::trainer::{score, Scored};
use cryoprune_train::{Dataset, TrainConfig};

/// How particles are cut for the network (recorded in model.json).
#[derive(clap::Args, Debug, Clone)]
pub struct PrepArgs {
    /// Box size in micrograph pixels (about 1.5× the particle diameter).
    #[arg(long = "box")]
    pub box_size: Option<usize>,
    /// Network input size; boxes are Fourier-resampled to it.
    #[arg(long, default_value_t = 64)]
    pub input_size: usize,
    /// Micrograph normalisation: none, meanstd or robust[:LOW,HIGH] (percentile clip first).
    #[arg(long, default_value = "robust")]
    pub normalize: String,
    /// Micrograph low-pass: a resolution (20A) or a fraction of Nyquist (0.5nyquist).
    #[arg(long)]
    pub lowpass: Option<String>,
    /// Pixel size in Å for an Å low-pass, instead of the micrographs' headers.
    #[arg(long)]
    pub angpix: Option<f64>,
    /// Invert contrast before the network.
    #[arg(long)]
    pub invert: bool,
    /// Boxes past the micrograph edge: skip, pad-mean or pad-noise.
    #[arg(long, default_value = "pad-noise")]
    pub edge: String,
}

impl PrepArgs {
    /// The preprocessing to record. Particle images (a class folder or a particle STAR) are
    /// already boxes, so they need no --box.
    pub fn preprocessing(&self, source: &LabelSource) -> Result<Preprocessing> {
        let box_size = match (self.box_size, source.is_images()) {
            (Some(b), _) => b,
            (None, true) => self.input_size,
            (None, false) => bail!(
                "--box is required with micrographs and picks (the box size in micrograph pixels)"
            ),
        };
        let pre = Preprocessing {
            box_size,
            input_size: self.input_size,
            normalize: self.normalize.clone(),
            lowpass: self.lowpass.clone(),
            angpix: self.angpix,
            particle_radius: Some(0.375 * self.input_size as f64),
            invert: self.invert,
            edge: self.edge.clone(),
        };
        // Fail on a bad spelling now, not after minutes of extraction.
        cryoprune_train::prep::pipeline(&pre, 1, 0)?;
        Ok(pre)
    }
}

/// How many augmented passes over the training picks make an epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Repeats {
    Fixed(usize),
    /// Enough passes for [`Repeats::AUTO_BATCHES`] batches.
    Auto,
}

impl Repeats {
    pub const AUTO_BATCHES: usize = 5;

    pub fn passes(self, picks: usize, batch: usize) -> usize {
        match self {
            Repeats::Fixed(n) => n.max(1),
            Repeats::Auto => (Self::AUTO_BATCHES * batch).div_ceil(picks.max(1)).max(1),
        }
    }
}

fn parse_repeats(s: &str) -> Result<Repeats, String> {
    if s == "auto" {
        return Ok(Repeats::Auto);
    }
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(Repeats::Fixed(n)),
        _ => Err(format!("`{s}`: expected a count of at least 1, or auto")),
    }
}

/// The network and training knobs. The defaults of --arch, --input-size, --epochs and --repeats
/// are the best found within about a minute of training on 2 CPU cores on the EMPIAR-10017
/// benchmark (BENCHMARKS.md); the optimiser, schedule, batch and augmentation are the paper's.
#[derive(clap::Args, Debug, Clone)]
pub struct NetArgs {
    /// Network: small, efficientnet-lite0, resnet18, resnet34 or resnet50.
    #[arg(long, default_value = "small")]
    pub arch: String,
    /// Starting weights: imagenet (the network's ImageNet weights; the small network has none),
    /// a .pth/.pt/.safetensors checkpoint, a Hugging Face hub name (resnet18.tv_in1k or timm/...),
    /// or none. Downloads happen once, into ~/.cache/cryoprune.
    #[arg(long, default_value = "imagenet")]
    pub pretrained: String,
    /// Branches of the multi-loss head (1-3).
    #[arg(long, default_value_t = 2)]
    pub branches: usize,
    /// Loss weight per branch, comma-separated (default 1 for the main branch, 0.5 others).
    #[arg(long, value_delimiter = ',')]
    pub branch_weights: Option<Vec<f32>>,
    /// Predict with the mean of the branches instead of the main branch.
    #[arg(long)]
    pub mean_of_branches: bool,
    /// Epochs (the paper's recipe: 30 with --repeats 1).
    #[arg(long, default_value_t = 15)]
    pub epochs: usize,
    #[arg(long, default_value_t = 24)]
    pub batch: usize,
    /// Passes over the labelled picks per epoch, each freshly augmented; `auto` repeats them
    /// until an epoch has at least 5 batches, so few shots still get optimiser steps.
    #[arg(long, default_value = "auto", value_parser = parse_repeats)]
    pub repeats: Repeats,
    /// Learning-rate schedule: step (×gamma every --step-every epochs), onecycle or exp.
    #[arg(long, default_value = "step", value_parser = ["step", "onecycle", "exp"])]
    pub schedule: String,
    /// Initial (peak, for onecycle) learning rate.
    #[arg(long, default_value_t = 0.01)]
    pub lr: f64,
    /// Final learning rate of onecycle and exp.
    #[arg(long, default_value_t = 1e-4)]
    pub final_lr: f64,
    #[arg(long, default_value_t = 7)]
    pub step_every: usize,
    #[arg(long, default_value_t = 0.1)]
    pub gamma: f64,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Loss weight per class (in the sorted class order), comma-separated, or `balanced`.
    #[arg(long)]
    pub class_weights: Option<String>,
    /// Epochs with the backbone frozen (head only); the rest train everything at lr/10.
    #[arg(long, default_value_t = 0)]
    pub freeze_epochs: usize,
    /// Augmentations: any of flip, rot90, rotate (comma-separated), or none.
    #[arg(long, default_value = "flip,rot90")]
    pub augment: String,
}

impl NetArgs {
    pub fn arch(&self) -> Result<Arch> {
        self.arch.parse::<Arch>().map_err(anyhow::Error::msg)
    }

    pub fn head(&self) -> Result<HeadConfig> {
        let mut head = HeadConfig::new(self.branches);
        if let Some(w) = &self.branch_weights {
            head.branch_weights = w.clone();
        }
        head.mean_of_branches = self.mean_of_branches;
        head.validate().map_err(anyhow::Error::msg)?;
        Ok(head)
    }

    pub fn train_config(
        &self,
        classes: &[String],
        counts: &[usize],
        seed: u64,
    ) -> Result<TrainConfig> {
        let schedule = match self.schedule.as_str() {
            "step" => Schedule::Step {
                initial: self.lr,
                every: self.step_every,
                gamma: self.gamma,
            },
            "onecycle" => Schedule::OneCycle {
                initial: self.lr,
                final_lr: self.final_lr,
            },
            _ => Schedule::Exp {
                initial: self.lr,
                final_lr: self.final_lr,
            },
        };
        let class_weights = match self.class_weights.as_deref() {
            None => None,
            Some("balanced") => {
                // n / (k · n_c), scikit-learn's "balanced".
                let n: usize = counts.iter().sum();
                Some(
                    counts
                        .iter()
                        .map(|&c| n as f32 / (classes.len() * c.max(1)) as f32)
                        .collect(),
                )
            }
            Some(list) => {
                let w: Result<Vec<f32>, _> =
                    list.split(',').map(|s| s.trim().parse::<f32>()).collect();
                let w = w.with_context(|| {
                    format!("--class-weights `{list}`: expected numbers or `balanced`")
                })?;
                if w.len() != classes.len() {
                    bail!(
                        "--class-weights has {} values for {} classes ({})",
                        w.len(),
                        classes.len(),
                        classes.join(", ")
                    );
                }
                Some(w)
            }
        };
        Ok(TrainConfig {
            epochs: self.epochs,
            batch: self.batch,
            repeats: self.repeats.passes(counts.iter().sum(), self.batch),
            schedule,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            class_weights,
            freeze_epochs: self.freeze_epochs,
            head: self.head()?,
            augment: parse_augment(&self.augment)?,
            seed,
        })
    }
}

pub fn parse_augment(s: &str) -> Result<Augment> {
    let mut a = Augment::NONE;
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "none" => {}
            "flip" => a.flip = true,
            "rot90" => a.rot90 = true,
            "rotate" => a.rotate = true,
            _ => bail!("--augment `{part}`: expected flip, rot90, rotate or none"),
        }
    }
    Ok(a)
}

/// `--device` and `--threads`, the same for every command that runs a network.
#[derive(clap::Args, Debug, Clone)]
pub struct ComputeArgs {
    /// Compute device: cpu, cuda[:N] or wgpu.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Threads for extraction and the CPU backend; 0 = all cores.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

impl ComputeArgs {
    /// Sizes the thread pool, then selects and announces the device (every command says which one
    /// it really uses). Returns the device and the thread count.
    pub fn start(&self) -> Result<(Compute, usize)> {
        let threads = super::thread_count(self.threads);
        // The CPU backend runs on rayon's global pool.
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .ok();
        let compute = cryoprune_model::select_device(&self.device)?;
        eprintln!("device: {}", compute.description);
        Ok((compute, threads))
    }
}

/// A folder of class sub-folders (particle images), as opposed to a folder of pick files.
fn is_class_folder(path: &Path) -> bool {
    path.is_dir()
        && std::fs::read_dir(path).is_ok_and(|entries| {
            let mut dirs = 0;
            let mut picks = 0;
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs += 1;
                } else if PickFormat::from_path(&p).is_some() {
                    picks += 1;
                }
            }
            dirs >= 2 && picks == 0
        })
}

/// What `--labels` names.
pub enum LabelSource {
    /// One sub-folder of particle images per class.
    ClassFolder(PathBuf),
    /// A particle STAR (`index@stack` images) with a label column.
    Stack(PathBuf),
    /// Labelled picks, cut from `--micrographs`.
    Picks,
}

impl LabelSource {
    /// A particle STAR is read from its stacks when it has no coordinates or no micrographs
    /// are given; with both, the picks are cut from the micrographs like any other label file.
    pub fn of(labels: &[PathBuf], micrographs: &[String]) -> LabelSource {
        match labels {
            [single] if is_class_folder(single) => LabelSource::ClassFolder(single.clone()),
            [single]
                if PickFormat::from_path(single) == Some(PickFormat::Star)
                    && stack::lists_images(single)
                        .is_some_and(|coords| !coords || micrographs.is_empty()) =>
            {
                LabelSource::Stack(single.clone())
            }
            _ => LabelSource::Picks,
        }
    }

    /// Particle images are already boxes, so they need no `--box`.
    pub fn is_images(&self) -> bool {
        !matches!(self, LabelSource::Picks)
    }
}

/// Where a command's labelled particles come from.
#[derive(clap::Args, Debug, Clone)]
pub struct LabelArgs {
    /// Micrographs the labels were picked on (globs, quoted).
    #[arg(long, num_args = 1..)]
    pub micrographs: Vec<String>,
    /// Labels: a CSV (micrograph,x,y,label), any pick file with a label column, a particle STAR
    /// (index@stack images, label column; no micrographs needed), or a folder with one
    /// sub-folder of particle images per class.
    #[arg(long, required = true, num_args = 1..)]
    pub labels: Vec<PathBuf>,
    /// Label file format when the extension does not tell.
    #[arg(long, value_parser = super::convert::parse_format)]
    pub format: Option<PickFormat>,
    /// Particle images given as --labels (class folder or particle STAR) have the opposite
    /// contrast to the micrographs, as RELION's Extract writes them by default.
    #[arg(long)]
    pub images_inverted: bool,
}

impl LabelArgs {
    pub fn source(&self) -> LabelSource {
        LabelSource::of(&self.labels, &self.micrographs)
    }

    /// Labelled particles from label files (with micrographs), a class folder or a particle
    /// STAR, as `source` (from [`LabelArgs::source`]) says. `classes` fixes the class order (a
    /// trained model's); otherwise it comes from the labels.
    pub fn dataset(
        &self,
        source: &LabelSource,
        classes: Option<&[String]>,
        pre: &Preprocessing,
        threads: usize,
    ) -> Result<Dataset> {
        let (labels, format, micrograph_globs) = (&self.labels, self.format, &self.micrographs);
        let invert = pre.invert != self.images_inverted;
        let (data, what) = match source {
            LabelSource::ClassFolder(dir) => {
                let data = dataset::from_folder(dir, pre.input_size, invert)?;
                if let Some(c) = classes {
                    if c != data.classes.as_slice() {
                        bail!(
                            "{}: class folders ({}) differ from the model's classes ({})",
                            dir.display(),
                            data.classes.join(", "),
                            c.join(", ")
                        );
                    }
                }
                (data, dir.clone())
            }
            LabelSource::Stack(star) => (
                stack::read(star, pre.input_size, invert, classes)?,
                star.clone(),
            ),
            LabelSource::Picks => {
                if micrograph_globs.is_empty() {
                    bail!(
                        "--micrographs is needed to cut labelled picks (or give --labels a folder \
                         with one sub-folder of particle images per class, or a particle STAR file)"
                    );
                }
                let micrographs = super::expand_globs(micrograph_globs)?;
                let set = PickSet::read(labels, format)?;
                let classes = match classes {
                    Some(c) => c.to_vec(),
                    None => dataset::classes_of(&set)?,
                };
                let pipeline = cryoprune_train::prep::pipeline(pre, threads, 0)?;
                let (data, coverage) =
                    dataset::from_picks(&set, &micrographs, &classes, &pipeline)?;
                report_coverage(&coverage, &data);
                return Ok(data);
            }
        };
        eprintln!(
            "{}: {} particle images in {} classes ({})",
            what.display(),
            data.len(),
            data.classes.len(),
            class_counts(&data).join(", ")
        );
        Ok(data)
    }
}

/// One row per labelled particle: where it is, its label, the prediction and each class's
/// probability (`micrograph,x,y,label,predicted,p_<class>...`). Written as `validation.csv` by
/// `train`, it is what `prune`'s threshold advisor reads.
pub fn write_predictions(path: &Path, data: &Dataset, scored: &Scored) -> Result<()> {
    write_atomic(path, |w| {
        write!(w, "micrograph,x,y,label,predicted")?;
        for c in &data.classes {
            write!(w, ",p_{c}")?;
        }
        writeln!(w)?;
        for (i, p) in scored.probs.iter().enumerate() {
            let o = &data.origins[i];
            write!(
                w,
                "{},{},{},{},{}",
                o.micrograph,
                o.x,
                o.y,
                data.classes[data.labels[i]],
                data.classes[scored.predicted[i]]
            )?;
            for v in p {
                write!(w, ",{v:.5}")?;
            }
            writeln!(w)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// The pick context fitted on the training picks, or `None` (saying why on stderr) when no fact
/// can serve.
pub fn fit_context(train: &Dataset) -> Option<PickContext> {
    match PickContext::fit(&train.facts(), &train.labels, train.classes.len()) {
        Ok(ctx) => {
            let facts: Vec<&str> = ctx.facts().map(|f| f.describe()).collect();
            eprintln!(
                "pick context: {} combined with the image, calibrated on {} training picks",
                facts.join(" and "),
                train.len()
            );
            let scored = train.origins.iter().filter(|o| o.score.is_some()).count();
            if scored > 0 && scored < train.len() {
                eprintln!(
                    "pick context: the picker's score not used, {} of {} training picks have none",
                    train.len() - scored,
                    train.len()
                );
            }
            Some(ctx)
        }
        Err(why) => {
            eprintln!("pick context not used ({why}); classifying on the image alone");
            None
        }
    }
}

/// Weighs the network against the pick context by the validation picks `val` (see
/// [`PickContext::fit_image_weight`]); returns how many picks decided it (0: the weight stays 1).
pub fn weigh_image(
    ctx: &mut PickContext,
    model: &Classifier,
    val: &Dataset,
    mean_of_branches: bool,
    compute: &Compute,
) -> usize {
    let probs = score(model, val, mean_of_branches, &compute.device).probs;
    ctx.fit_image_weight(&probs, &val.facts(), &val.labels)
}

/// A model's scores on labelled `data`: the network's probabilities, with each pick's context
/// combined into them when `context` is given (then both macro-F1s are printed, so the
/// context's share of the result is plain).
pub fn score_labelled(
    model: &Classifier,
    data: &Dataset,
    mean_of_branches: bool,
    context: Option<&PickContext>,
    compute: &Compute,
) -> Result<Scored> {
    with_context(
        score(model, data, mean_of_branches, &compute.device),
        data,
        context,
    )
}

/// The network's scores `image_only` of labelled `data`, with each pick's context combined into
/// them when `context` is given (then both macro-F1s are printed).
pub fn with_context(
    image_only: Scored,
    data: &Dataset,
    context: Option<&PickContext>,
) -> Result<Scored> {
    let Some(ctx) = context else {
        return Ok(image_only);
    };
    let combined = image_only.with_context(data, ctx)?;
    if !data.is_empty() {
        eprintln!(
            "macro-F1 on {} labelled picks: {:.3} on the image alone, {:.3} with the pick context",
            data.len(),
            image_only.report.macro_f1,
            combined.report.macro_f1
        );
    }
    Ok(combined)
}

fn class_counts(data: &Dataset) -> Vec<String> {
    data.classes
        .iter()
        .zip(data.counts())
        .map(|(name, n)| format!("{n} {name}"))
        .collect()
}

fn report_coverage(c: &Coverage, data: &Dataset) {
    eprintln!(
        "cut {} labelled particles from {} micrographs ({})",
        data.len(),
        c.micrographs,
        class_counts(data).join(", ")
    );
    if c.skipped_edge + c.outside > 0 {
        eprintln!(
            "  {} picks too close to the edge and {} outside their micrograph were left out",
            c.skipped_edge, c.outside
        );
    }
    if !c.unmatched.is_empty() {
        let shown: Vec<&str> = c.unmatched.iter().take(3).map(String::as_str).collect();
        eprintln!(
            "  labels of {} micrographs not among --micrographs were not used ({}{})",
            c.unmatched.len(),
            shown.join(", "),
            if c.unmatched.len() > 3 { ", ..." } else { "" }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_repeats, Repeats};

    #[test]
    fn auto_repeats_give_five_batches() {
        assert_eq!(parse_repeats("auto"), Ok(Repeats::Auto));
        assert_eq!(parse_repeats("3"), Ok(Repeats::Fixed(3)));
        assert!(parse_repeats("0").is_err());
        // 10 shots × 2 classes: 6 passes = 120 picks = 5 batches of 24.
        assert_eq!(Repeats::Auto.passes(20, 24), 6);
        assert_eq!(Repeats::Auto.passes(60, 24), 2);
        assert_eq!(Repeats::Auto.passes(1000, 24), 1);
        assert_eq!(Repeats::Fixed(4).passes(1000, 24), 4);
    }
}
