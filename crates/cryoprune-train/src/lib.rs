//! Training cryoprune's classifiers: labelled particle datasets, few-shot sampling, the training
//! loop with its schedules, metrics, plain-words diagnostics and the few-shot protocol.

mod boxes;
pub mod classify;
pub mod dataset;
pub mod diagnose;
mod folder;
pub mod matching;
pub mod metrics;
pub mod modeldir;
pub mod multilabel;
pub mod picker;
pub mod pickerdir;
pub mod plot;
pub mod prep;
pub mod sampling;
pub mod schedule;
pub mod stack;
pub mod threshold;
pub mod trainer;

pub use dataset::{Dataset, Origin};
pub use trainer::{train, EpochStats, TrainConfig, Trained};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error("labels: {0}")]
    Labels(String),
    #[error("plot: {0}")]
    Plot(String),
    #[error(transparent)]
    Image(#[from] cryoprune_image::Error),
    #[error(transparent)]
    Format(#[from] cryoprune_formats::FormatError),
    #[error(
        "training diverged in epoch {epoch} (loss NaN or infinite at learning rate {lr:.2e}); \
         lower the learning rate"
    )]
    Diverged { epoch: usize, lr: f64 },
    /// The caller stopped the training between epochs (its result was no longer wanted).
    #[error("training was stopped")]
    Stopped,
}
