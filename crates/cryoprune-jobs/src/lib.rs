//! cryoprune's jobs as library functions: each takes a typed, serialisable config whose defaults
//! are stated once (its `Default`), reports progress through [`Events`], and returns what it
//! did. The command line, a web page or a RELION External job drive the same code; none of it
//! prints.

pub mod adapt;
pub mod compute;
pub mod convert;
pub mod curate;
pub mod demo;
pub mod evaluate;
pub mod events;
pub mod extract;
pub mod fewshot;
pub mod info;
pub mod inputs;
pub mod label;
pub mod labels;
pub mod picker;
pub mod pretrain;
pub mod prune;
pub mod recipe;
pub mod relion;
pub mod shard;
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
    #[error("interrupted; partial outputs were removed")]
    Interrupted,
}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static LISTENING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Asks the running jobs to stop at their next micrograph (the CLI calls it on Ctrl-C): they
/// return [`Error::Interrupted`], and the temporary files of their unfinished outputs are removed
/// as the error unwinds. Returns false when no running job listens (or it was asked already):
/// then the caller should end the process itself.
pub fn interrupt() -> bool {
    use std::sync::atomic::Ordering::SeqCst;
    let first = !INTERRUPTED.swap(true, SeqCst);
    first && LISTENING.load(SeqCst) > 0
}

/// While held, the job checks [`check_interrupted`] often enough to stop on Ctrl-C by itself.
pub(crate) struct Listening;

impl Listening {
    pub(crate) fn start() -> Listening {
        LISTENING.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Listening
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        LISTENING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `Err(Interrupted)` once [`interrupt`] was called.
pub(crate) fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(Error::Interrupted);
    }
    Ok(())
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Refuses a count of 0 for any of `counts` (flag, value), naming the flag: an epoch, a batch
/// or a pass of nothing is a run that does nothing, or that something downstream reads as 1.
pub(crate) fn check_counts(counts: &[(&str, usize)]) -> Result<()> {
    if let Some((flag, _)) = counts.iter().find(|(_, n)| *n == 0) {
        invalid!("{flag} must be at least 1, not 0");
    }
    Ok(())
}

/// The value parser of a score threshold: any number but NaN or an infinity, which would keep
/// every pick or none without a word.
pub fn finite(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("`{s}`: expected a finite number")),
    }
}

/// The value parser of a size, a distance or a factor: a number above 0. Zero, a negative
/// number or NaN would otherwise run to the end and write coordinates at 0 or NaN.
pub fn positive(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("`{s}`: expected a number above 0")),
    }
}

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

/// "1 micrograph", "3 micrographs": runs on one micrograph are common first tries, and "1
/// micrographs" reads as a slip.
pub(crate) fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}
