//! The evaluate job: a trained model's scores on labelled picks.

use std::path::PathBuf;

use cryoprune_train::metrics::Report;
use cryoprune_train::modeldir::{write_predictions, ModelDir};
use serde::{Deserialize, Serialize};

use crate::compute::ComputeConfig;
use crate::events::Events;
use crate::inputs::{check_outputs, expand_globs};
use crate::labels::LabelsConfig;
use crate::recipe::score_labels;
use crate::Result;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvaluateConfig {
    pub compute: ComputeConfig,
    /// Model directory written by `train`.
    pub model: PathBuf,
    pub labels: LabelsConfig,
    /// Every labelled particle with its prediction and class probabilities, as CSV.
    pub predictions: Option<PathBuf>,
    /// The scores as JSON.
    pub json: Option<PathBuf>,
    /// Classify on the image alone, ignoring the pick context.
    pub image_only: bool,
}

pub fn run(cfg: &EvaluateConfig, events: &dyn Events) -> Result<Report> {
    let mut inputs = expand_globs(&cfg.labels.micrographs)?;
    inputs.extend(cfg.labels.labels.iter().cloned());
    inputs.push(cfg.model.clone());
    let files = [
        ("--predictions", cfg.predictions.as_deref()),
        ("--json", cfg.json.as_deref()),
    ];
    check_outputs(&files, None, &inputs)?;
    let compute = cfg.compute.start(events)?;
    compute.install(events, || {
        let (model, spec) = ModelDir::new(&cfg.model).load(&compute.device.device)?;
        let context = spec.pick_context.as_ref().filter(|_| !cfg.image_only);
        let (data, scored) = score_labels(&cfg.labels, &model, &spec, context, &compute, events)?;
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
        Ok(scored.report)
    })
}
