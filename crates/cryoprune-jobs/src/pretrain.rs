//! The pretrain job: a backbone pretrained on the cryo-EM pretraining set (simulated particles
//! of many structure families and the junk pickers pick), as the paper pretrains on its cryo-EM
//! image set, with the head's main branch only; the head is discarded at fine-tuning.
//!
//! Training runs in chunks: each chunk is fresh data (a few dozen simulated micrographs, cut)
//! seen for a few augmented passes at the chunk's learning rate (a cosine over the run), with
//! the optimiser's momentum starting afresh. Everything a chunk does depends only on the seed,
//! the chunk's index and the weights it starts from, so a checkpoint between chunks is the whole
//! state: `resume` continues a stopped run as if it had never stopped. (To rounding, not bit for
//! bit: burn's autodiff sums gradients in an order that varies from run to run.)

use std::f64::consts::PI;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use cryoprune_formats::atomic::write_atomic;
use cryoprune_image::augment::Augment;
use cryoprune_model::classifier::{load_safetensors, to_safetensors};
use cryoprune_model::pretrained::{backbone_safetensors, load_backbone};
use cryoprune_model::{Arch, ClassifierConfig, HeadConfig};
pub use cryoprune_sim::pretrain::Classes;
use cryoprune_sim::pretrain::{PretrainSet, Structure};
use cryoprune_train::modeldir::sha256_hex;
use cryoprune_train::schedule::Schedule;
use cryoprune_train::{Dataset, Origin, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::compute::ComputeConfig;
use crate::events::{Event, Events};
use crate::recipe::StartingWeights;
use crate::{invalid, Error, Result};

pub const STATE_FILE: &str = "pretrain.json";
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
pub const BACKBONE_FILE: &str = "backbone.safetensors";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct PretrainConfig {
    #[command(flatten)]
    pub compute: ComputeConfig,
    /// Output folder: backbone.safetensors, pretrain.json, and checkpoint.safetensors.
    #[arg(long)]
    pub out: PathBuf,
    /// Network: small, small-wide, efficientnet-lite0, resnet18, resnet34 or resnet50.
    #[arg(long, default_value_t = PretrainConfig::default().arch)]
    pub arch: Arch,
    /// Particle image size (the network input); fine-tune with the same --input-size.
    #[arg(long, default_value_t = PretrainConfig::default().input_size)]
    pub input_size: usize,
    /// Real maps (.mrc, .map) and atomic models (.pdb, .cif): each becomes a particle class of
    /// its own beside the procedural families. Leave out what you will evaluate on.
    #[arg(long, num_args = 1..)]
    pub structures: Vec<PathBuf>,
    /// fine: a class per structure family and real structure; coarse: every centred particle
    /// one class. Both have the junk kinds and off-centre picks.
    #[arg(long, default_value_t = PretrainConfig::default().classes)]
    pub classes: Classes,
    /// Chunks of fresh simulated data in the whole run.
    #[arg(long, default_value_t = PretrainConfig::default().chunks)]
    pub chunks: usize,
    /// Micrographs simulated per chunk.
    #[arg(long, default_value_t = PretrainConfig::default().micrographs_per_chunk)]
    pub micrographs_per_chunk: usize,
    /// At most this many particles of each class per chunk.
    #[arg(long, default_value_t = PretrainConfig::default().per_class)]
    pub per_class: usize,
    /// Augmented passes over each chunk.
    #[arg(long, default_value_t = PretrainConfig::default().passes)]
    pub passes: usize,
    #[arg(long, default_value_t = PretrainConfig::default().batch)]
    pub batch: usize,
    /// Peak learning rate; a cosine brings it to a hundredth by the end.
    #[arg(long, default_value_t = PretrainConfig::default().lr)]
    pub lr: f64,
    #[arg(long, default_value_t = PretrainConfig::default().weight_decay)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = PretrainConfig::default().seed)]
    pub seed: u64,
    /// Minutes between checkpoints.
    #[arg(long, default_value_t = PretrainConfig::default().checkpoint_minutes)]
    pub checkpoint_minutes: f64,
    /// Stop, with a checkpoint, after this many minutes (then --resume).
    #[arg(long = "time-limit", value_name = "MINUTES")]
    pub time_limit_minutes: Option<f64>,
    /// Continue the run in --out from its checkpoint (same settings).
    #[arg(long)]
    pub resume: bool,
    /// Start from these backbone weights instead of random ones: `cryo` (the shipped backbone),
    /// `imagenet`, a backbone file (another run's backbone.safetensors) or a model folder from
    /// `train` (its backbone). The head starts afresh; the recipe records the file's SHA-256.
    #[arg(long, value_name = "WEIGHTS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The largest share of each micrograph's noise that is the ice's own scattering, imaged
    /// through the CTF as on real micrographs (`simulate --ice-structure`); each micrograph
    /// draws its share between 0 and this. 0 keeps the noise white.
    #[arg(long, value_name = "SHARE", default_value_t = 0.0)]
    #[serde(skip_serializing_if = "is_zero")]
    pub ice_structure: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl Default for PretrainConfig {
    fn default() -> Self {
        Self {
            compute: ComputeConfig::default(),
            out: PathBuf::new(),
            arch: Arch::Small,
            input_size: 64,
            structures: Vec::new(),
            classes: Classes::Fine,
            chunks: 400,
            micrographs_per_chunk: 24,
            per_class: 40,
            passes: 2,
            batch: 32,
            lr: 0.05,
            weight_decay: 5e-4,
            seed: 0,
            checkpoint_minutes: 5.0,
            time_limit_minutes: None,
            resume: false,
            from: None,
            ice_structure: 0.0,
        }
    }
}

impl PretrainConfig {
    /// What a resumed run must share with the run it continues: the settings, and the
    /// structure files' and starting weights' contents by SHA-256 (a file changed in between
    /// would change the run).
    fn recipe(&self, structure_sha256: &[String], from_sha256: Option<&str>) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("a config serialises");
        let m = v.as_object_mut().expect("an object");
        if !structure_sha256.is_empty() {
            m.insert("structure_sha256".into(), structure_sha256.into());
        }
        if let Some(sha) = from_sha256 {
            m.insert("from_sha256".into(), sha.into());
        }
        for k in [
            "compute",
            "out",
            "checkpoint_minutes",
            "time_limit_minutes",
            "resume",
        ] {
            m.remove(k);
        }
        v
    }

    /// The learning rate of chunk `c`: a short warm-up, then a cosine to lr/100.
    fn rate(&self, c: usize) -> f64 {
        let warm = (self.chunks / 50).max(1);
        if c < warm {
            return self.lr * (c + 1) as f64 / warm as f64;
        }
        let t = (c - warm) as f64 / (self.chunks - warm).max(1) as f64;
        self.lr * (0.01 + 0.99 * 0.5 * (1.0 + (PI * t).cos()))
    }
}

/// One chunk's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkStats {
    pub chunk: usize,
    pub lr: f64,
    pub particles: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub seconds: f64,
}

/// The run's record, `pretrain.json`: written with every checkpoint and at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainState {
    pub recipe: serde_json::Value,
    pub classes: Vec<String>,
    pub chunks_done: usize,
    pub seconds: f64,
    pub history: Vec<ChunkStats>,
    /// SHA-256 of the backbone file, once the run is complete.
    pub backbone_sha256: Option<String>,
}

/// The settings two recipes give differently, "lr 0.05 there, 0.01 here": a long run's flags
/// are easy to forget, and "other settings" alone leaves the user to compare JSON by eye.
fn differences(there: &serde_json::Value, here: &serde_json::Value) -> String {
    let show = |v: Option<&serde_json::Value>| v.map_or("unset".to_string(), |v| v.to_string());
    let mut keys: Vec<&String> = [there, here]
        .iter()
        .filter_map(|v| v.as_object())
        .flat_map(|m| m.keys())
        .collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| there.get(k.as_str()) != here.get(k.as_str()))
        .map(|k| {
            let name = k.replace('_', "-");
            format!(
                "{name} {} there, {} here",
                show(there.get(k.as_str())),
                show(here.get(k.as_str()))
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn read_state(dir: &Path) -> Result<Option<PretrainState>> {
    let path = dir.join(STATE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::Invalid(format!(
                "{}: not a pretraining record ({e})",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Io(path, e)),
    }
}

/// The structures and their files' SHA-256; two with one name would be one class twice.
fn read_structures(paths: &[PathBuf]) -> Result<(Vec<Structure>, Vec<String>)> {
    let mut structures: Vec<Structure> = Vec::new();
    let mut hashes = Vec::new();
    for path in paths {
        let s = Structure::read(path)?;
        if structures.iter().any(|t| t.name == s.name)
            || cryoprune_sim::pretrain::Family::ALL
                .iter()
                .any(|f| f.name() == s.name)
        {
            invalid!(
                "{}: another structure is already named `{}` (its class); rename one file",
                path.display(),
                s.name
            );
        }
        let bytes = std::fs::read(path).map_err(|e| Error::Io(path.clone(), e))?;
        hashes.push(sha256_hex(&bytes));
        structures.push(s);
    }
    Ok((structures, hashes))
}

/// Runs (or resumes) the pretraining; returns its record.
pub fn run(cfg: &PretrainConfig, events: &dyn Events) -> Result<PretrainState> {
    crate::inputs::ensure_folder_possible("--out", &cfg.out)?;
    crate::check_counts(&[
        ("--chunks", cfg.chunks),
        ("--passes", cfg.passes),
        ("--batch", cfg.batch),
        ("--per-class", cfg.per_class),
    ])?;
    if cfg.input_size < 16 {
        invalid!("--input-size must be at least 16 pixels");
    }
    crate::recipe::check_rates(&[("--lr", cfg.lr)], Some(cfg.weight_decay))?;
    if !(0.0..=1.0).contains(&cfg.ice_structure) {
        invalid!(
            "--ice-structure is a share of the noise, 0 to 1, not {}",
            cfg.ice_structure
        );
    }
    // Resolved as `train --pretrained` resolves its start, so both name and hash it alike.
    let from = match &cfg.from {
        None => None,
        Some(s) => match StartingWeights::resolve(s, cfg.arch, events)? {
            StartingWeights {
                path: Some(path),
                sha256: Some(sha),
                ..
            } => Some((path, sha)),
            _ => invalid!(
                "--from {s}: the {} network has no such weights; give cryo or a backbone file, \
                 or leave --from out to start from random weights",
                cfg.arch
            ),
        },
    };
    let (structures, hashes) = read_structures(&cfg.structures)?;
    let set = PretrainSet {
        input_size: cfg.input_size,
        seed: cfg.seed,
        micrographs: cfg.micrographs_per_chunk,
        structures: Arc::new(structures),
        classes: cfg.classes,
        ice_structure: cfg.ice_structure,
    };
    let classes = set.classes();
    let recipe = cfg.recipe(&hashes, from.as_ref().map(|(_, sha)| sha.as_str()));
    crate::create_dir(&cfg.out)?;
    let previous = read_state(&cfg.out)?;
    let mut state = match (previous, cfg.resume) {
        (Some(s), true) if s.recipe != recipe => invalid!(
            "{}: the run there was started with other settings ({}); resume it with the same ones",
            cfg.out.join(STATE_FILE).display(),
            differences(&s.recipe, &recipe)
        ),
        (Some(s), true) => s,
        (None, true) => invalid!(
            "--resume: {} holds no pretraining run to continue",
            cfg.out.display()
        ),
        (Some(_), false) => invalid!(
            "{} holds a pretraining run already: --resume continues it, or choose another --out",
            cfg.out.display()
        ),
        (None, false) => PretrainState {
            recipe,
            classes: classes.clone(),
            chunks_done: 0,
            seconds: 0.0,
            history: Vec::new(),
            backbone_sha256: None,
        },
    };
    let compute = cfg.compute.start(events)?;
    compute.install(events, || {
        let network = ClassifierConfig {
            in_channels: 1,
            arch: cfg.arch,
            classes: classes.len(),
            head: HeadConfig::new(1),
        };
        let device = compute.device.device.clone().autodiff();
        // burn draws initial weights from a process-wide generator; seeded, a run repeats.
        device.seed(cfg.seed);
        let mut model = network.init(&device);
        if let (Some((path, _)), 0) = (&from, state.chunks_done) {
            let (backbone, report) = load_backbone(cfg.arch, path, &device)?;
            events.note(format!(
                "starting from {} ({} tensors)",
                path.display(),
                report.applied
            ));
            model = network.init_with(backbone, &device);
        }
        if state.chunks_done > 0 {
            let path = cfg.out.join(CHECKPOINT_FILE);
            let bytes = std::fs::read(&path).map_err(|e| Error::Io(path.clone(), e))?;
            load_safetensors(&mut model, bytes)
                .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
            events.note(format!(
                "resuming after chunk {} of {} ({:.0} s so far)",
                state.chunks_done, cfg.chunks, state.seconds
            ));
        }
        events.note(format!(
            "pretraining {} on {} classes: {} chunks of {} simulated micrographs, at most {} particles per class each",
            cfg.arch,
            classes.len(),
            cfg.chunks,
            cfg.micrographs_per_chunk,
            cfg.per_class
        ));
        events.emit(Event::Started {
            total: cfg.chunks as u64,
            unit: "chunks",
        });
        events.emit(Event::Advanced(state.chunks_done as u64));
        let started = Instant::now();
        let base_seconds = state.seconds;
        let mut last_checkpoint = Instant::now();
        for c in state.chunks_done..cfg.chunks {
            let t0 = Instant::now();
            let chunk = set.chunk(c as u64, cfg.per_class);
            let data = Dataset {
                size: chunk.size,
                channels: 1,
                images: chunk.images,
                origins: chunk
                    .labels
                    .iter()
                    .map(|_| Origin {
                        micrograph: String::new(),
                        x: 0.0,
                        y: 0.0,
                        score: None,
                        edge: None,
                    })
                    .collect(),
                labels: chunk.labels,
                classes: classes.clone(),
                multi: None,
                exposure: Vec::new(),
            };
            let lr = cfg.rate(c);
            let train_cfg = TrainConfig {
                epochs: 1,
                batch: cfg.batch,
                repeats: cfg.passes,
                schedule: Schedule::Step {
                    initial: lr,
                    every: usize::MAX,
                    gamma: 1.0,
                },
                momentum: 0.9,
                weight_decay: cfg.weight_decay,
                class_weights: None,
                freeze_epochs: 0,
                unfrozen: None,
                head: network.head.clone(),
                augment: Augment {
                    flip: true,
                    rot90: true,
                    ..Augment::NONE
                },
                seed: cfg.seed ^ (c as u64).wrapping_mul(0x9E37_79B9),
                keep_last: false,
                label_smoothing: 0.0,
            };
            let trained = cryoprune_train::train(model, &data, None, &train_cfg, &device, |_| {
                std::ops::ControlFlow::Continue(())
            })?;
            let epoch = &trained.history[0];
            state.history.push(ChunkStats {
                chunk: c + 1,
                lr,
                particles: data.len(),
                loss: epoch.train_loss,
                accuracy: epoch.train_accuracy,
                seconds: t0.elapsed().as_secs_f64(),
            });
            // The trainer hands back an inference copy; training goes on from its weights.
            let bytes = to_safetensors(&trained.model).map_err(Error::Invalid)?;
            model = network.init(&device);
            load_safetensors(&mut model, bytes.clone()).map_err(Error::Invalid)?;
            state.chunks_done = c + 1;
            state.seconds = base_seconds + started.elapsed().as_secs_f64();
            events.emit(Event::Status(format!(
                "loss {:.3}, accuracy {:.3}",
                epoch.train_loss, epoch.train_accuracy
            )));
            events.emit(Event::Advanced(1));
            let done = c + 1 == cfg.chunks;
            let out_of_time = cfg
                .time_limit_minutes
                .is_some_and(|m| started.elapsed().as_secs_f64() >= 60.0 * m);
            if done
                || out_of_time
                || last_checkpoint.elapsed().as_secs_f64() >= 60.0 * cfg.checkpoint_minutes
            {
                write_atomic(&cfg.out.join(CHECKPOINT_FILE), |w| w.write_all(&bytes))?;
                crate::write_json(&cfg.out.join(STATE_FILE), &state)?;
                last_checkpoint = Instant::now();
            }
            if done {
                let backbone =
                    backbone_safetensors(&trained.model.backbone).map_err(Error::Invalid)?;
                write_atomic(&cfg.out.join(BACKBONE_FILE), |w| w.write_all(&backbone))?;
                state.backbone_sha256 = Some(sha256_hex(&backbone));
                crate::write_json(&cfg.out.join(STATE_FILE), &state)?;
            } else if out_of_time {
                events.emit(Event::Finished);
                events.note(format!(
                    "time limit reached after chunk {} of {}; checkpoint written, --resume continues",
                    c + 1,
                    cfg.chunks
                ));
                return Ok(state);
            }
        }
        events.emit(Event::Finished);
        let last = state.history.last();
        events.output(format!(
            "pretrained {} in {:.0} s over {} chunks; last chunk: loss {:.3}, accuracy {:.3}; backbone {}",
            cfg.arch,
            state.seconds,
            cfg.chunks,
            last.map_or(f64::NAN, |h| h.loss),
            last.map_or(f64::NAN, |h| h.accuracy),
            cfg.out.join(BACKBONE_FILE).display()
        ));
        Ok(state)
    })
}
