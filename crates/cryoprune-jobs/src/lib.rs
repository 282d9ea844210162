//! cryoprune's jobs as library functions: each takes a typed, serialisable config whose defaults
//! are stated once (its `Default`), reports progress through [`Events`], and returns what it
//! did. The command line, a web page or a RELION External job drive the same code; none of it
//! prints.

pub mod compute;
pub mod convert;
pub mod demo;
pub mod evaluate;
pub mod events;
pub mod extract;
pub mod fewshot;
pub mod info;
pub mod inputs;
pub mod labels;
pub mod pretrain;
pub mod prune;
pub mod recipe;
pub mod selftrain;
pub mod simulate;
pub mod train;

pub use compute::{Compute, ComputeConfig};
pub use events::{Event, Events, Silent};

use std::path::PathBuf;

/// Everything a job can fail with. Errors of the lower crates keep their types; `Invalid` is a
/// setting or input the job itself refuses, in words that name it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("{context}: {inner}")]
    Context { context: String, inner: Box<Error> },
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error(transparent)]
    Format(#[from] cryoprune_formats::FormatError),
    #[error(transparent)]
    Image(#[from] cryoprune_image::Error),
    #[error(transparent)]
    Sim(#[from] cryoprune_sim::Error),
    #[error(transparent)]
    Device(#[from] cryoprune_model::device::DeviceError),
    #[error(transparent)]
    Pretrained(#[from] cryoprune_model::pretrained::LoadError),
    #[error(transparent)]
    ModelDir(#[from] cryoprune_train::modeldir::ModelDirError),
    #[error(transparent)]
    Train(#[from] cryoprune_train::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Csv(#[from] csv::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `bail!` for [`Error::Invalid`].
#[macro_export]
macro_rules! invalid {
    ($($t:tt)*) => {
        return Err($crate::Error::Invalid(format!($($t)*)))
    };
}

/// Adds what was being done to an error, as anyhow's `with_context` does, keeping its type.
pub trait Context<T> {
    fn context_with(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context_with(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: what(),
            inner: Box::new(e.into()),
        })
    }
}

/// Creates a folder (and its parents), naming it on failure.
pub(crate) fn create_dir(path: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| Error::Io(path.to_path_buf(), e))
}

/// Writes `value` as pretty JSON to `path`, atomically.
pub(crate) fn write_json(path: &std::path::Path, value: &impl serde::Serialize) -> Result<()> {
    let json = serde_json::to_vec_pretty(value)?;
    cryoprune_formats::atomic::write_atomic(path, |w| w.write_all(&json))?;
    Ok(())
}
