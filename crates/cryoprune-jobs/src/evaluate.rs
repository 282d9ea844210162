//! The evaluate job: a trained model's scores on labelled picks, or a multi-label model's on
//! images with label sets.

use std::path::PathBuf;

use cryoprune_model::Classifier;
use cryoprune_train::metrics::Report;
use cryoprune_train::modeldir::{write_label_predictions, write_predictions, ModelDir, ModelSpec};
use cryoprune_train::multilabel::{self, MultiReport};
use cryoprune_train::trainer::predict;
use cryoprune_train::Dataset;
use serde::{Deserialize, Serialize};

use crate::compute::{Compute, ComputeConfig};
use crate::events::Events;
use crate::inputs::{check_outputs, micrograph_paths};
use crate::labels::LabelsConfig;
use crate::recipe::score_labels;
use crate::{invalid, Result};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct EvaluateConfig {
    #[command(flatten)]
    pub compute: ComputeConfig,
    /// Model directory written by `cryoprune train`.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub labels: LabelsConfig,
    /// Write every labelled particle with its prediction and class probabilities as CSV here.
    #[arg(long)]
    pub predictions: Option<PathBuf>,
    /// Write the scores as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Classify on the image alone, ignoring the pick context (picker score, distance from the
    /// edge) or the measured micrograph statistics the model was trained to combine with it.
    #[arg(long)]
    pub image_only: bool,
}

/// What `evaluate` measured.
#[derive(Debug, Clone)]
pub enum Evaluation {
    /// A model that chooses one class per particle.
    Classes(Report),
    /// A multi-label model, at its thresholds.
    Labels(MultiReport),
}

impl Evaluation {
    pub fn macro_f1(&self) -> f64 {
        match self {
            Evaluation::Classes(r) => r.macro_f1,
            Evaluation::Labels(r) => r.macro_f1,
        }
    }
}

pub fn run(cfg: &EvaluateConfig, events: &dyn Events) -> Result<Evaluation> {
    let mut inputs = micrograph_paths(&cfg.labels.micrographs)?;
    inputs.extend(cfg.labels.labels.iter().cloned());
    inputs.push(cfg.model.clone());
    let files = [
        ("--predictions", cfg.predictions.as_deref()),
        ("--json", cfg.json.as_deref()),
    ];
    check_outputs(&files, None, &inputs)?;
    let compute = cfg.compute.start(events)?;
    compute.install(events, || {
        let (networks, spec) = ModelDir::new(&cfg.model).load_ensemble(&compute.device.device)?;
        if let Some(thresholds) = &spec.thresholds {
            return evaluate_label_sets(cfg, &networks, &spec, thresholds, &compute, events)
                .map(Evaluation::Labels);
        }
        // Only models of label sets are ensembles.
        let model = &networks[0];
        let context = spec.pick_context.as_ref().filter(|_| !cfg.image_only);
        let (data, scored) = score_labels(&cfg.labels, model, &spec, context, &compute, events)?;
        events.output(scored.report.to_text());
        if let Some(path) = &cfg.predictions {
            write_predictions(path, &data, &scored)?;
            events.note(format!(
                "per-particle predictions written to {}",
                path.display()
            ));
        }
        if let Some(path) = &cfg.json {
            crate::write_json(path, &scored.report)?;
            events.note(format!("scores written to {}", path.display()));
        }
        Ok(Evaluation::Classes(scored.report))
    })
}

/// A multi-label model's per-label probabilities for `data` (cut with its preprocessing), the
/// measured statistics combined with the network's unless `image_only`; an ensemble's are the
/// mean of its networks' (`networks` in the order of [`ModelSpec::exposure_contexts`]).
pub(crate) fn predict_label_sets(
    networks: &[Classifier],
    spec: &ModelSpec,
    data: &Dataset,
    batch: usize,
    image_only: bool,
    compute: &Compute,
) -> Result<Vec<Vec<f32>>> {
    let readout = spec.network.head.readout();
    let contexts = spec.exposure_contexts();
    if !image_only && spec.exposure_context.is_some() && data.exposure.len() != data.len() {
        invalid!(
            "the model combines the network with measured statistics of whole micrographs, \
             and these images were not measured as micrographs"
        );
    }
    let mut mean = vec![vec![0.0f32; spec.classes.len()]; data.len()];
    for (model, ctx) in networks.iter().zip(&contexts) {
        let mut probs = predict(model, data, batch, readout, &compute.device.device);
        if let Some(ctx) = ctx.filter(|_| !image_only) {
            for (p, f) in probs.iter_mut().zip(&data.exposure) {
                ctx.combine(p, f);
            }
        }
        for (m, p) in mean.iter_mut().zip(&probs) {
            m.iter_mut().zip(p).for_each(|(m, p)| *m += p);
        }
    }
    let n = networks.len().max(1) as f32;
    mean.iter_mut().flatten().for_each(|m| *m /= n);
    Ok(mean)
}

fn evaluate_label_sets(
    cfg: &EvaluateConfig,
    networks: &[Classifier],
    spec: &ModelSpec,
    thresholds: &[f32],
    compute: &Compute,
    events: &dyn Events,
) -> Result<MultiReport> {
    let data =
        cfg.labels
            .label_sets(&spec.classes, &spec.preprocessing, compute.threads, events)?;
    let Some(truth) = &data.multi else {
        invalid!(
            "{} is a multi-label model: give --labels images or picks with label sets (a CSV \
             image,labels, or picks with a labels column)",
            cfg.model.display()
        );
    };
    let probs = predict_label_sets(networks, spec, &data, 64, cfg.image_only, compute)?;
    let report = multilabel::evaluate(truth, &probs, thresholds, &spec.classes);
    events.output(report.to_text());
    if let Some(path) = &cfg.predictions {
        write_label_predictions(path, &data, &probs, thresholds)?;
        events.note(format!(
            "per-image predictions written to {}",
            path.display()
        ));
    }
    if let Some(path) = &cfg.json {
        crate::write_json(path, &report)?;
        events.note(format!("scores written to {}", path.display()));
    }
    Ok(report)
}
