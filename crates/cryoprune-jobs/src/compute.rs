//! The device and the thread pool a job runs on. The pool belongs to the job, not to rayon's
//! global pool, so two jobs in one process (a server training while it prunes) each get the
//! threads they asked for.

use serde::{Deserialize, Serialize};

use crate::events::{Event, Events};
use crate::{Error, Result};

/// `--device` and `--threads`, the same for every command that runs a network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct ComputeConfig {
    /// Compute device: `cpu`, `cuda` (`cuda:N` for the N-th GPU) or `wgpu`.
    #[arg(long, default_value_t = ComputeConfig::default().device)]
    pub device: String,
    /// Threads for extraction and the CPU backend; 0 = all cores.
    #[arg(long, default_value_t = ComputeConfig::default().threads)]
    pub threads: usize,
}

impl Default for ComputeConfig {
    fn default() -> Self {
        Self {
            device: "cpu".into(),
            threads: 0,
        }
    }
}

/// A started device with the job's own thread pool.
pub struct Compute {
    pub device: cryoprune_model::Compute,
    pub threads: usize,
    pool: rayon::ThreadPool,
}

/// More threads than any node has cores: a typo, and starting them would take minutes.
const MAX_THREADS: usize = 1024;

/// The `--threads` convention: 0 means all cores.
pub fn thread_count(requested: usize) -> Result<usize> {
    match requested {
        0 => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
        n if n > MAX_THREADS => Err(Error::Invalid(format!(
            "--threads {n}: at most {MAX_THREADS} (0 uses every core)"
        ))),
        n => Ok(n),
    }
}

impl ComputeConfig {
    /// Builds the job's pool, then selects the device from inside it and announces it (every
    /// job says which device it really uses).
    pub fn start(&self, events: &dyn Events) -> Result<Compute> {
        let threads = thread_count(self.threads)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("cryoprune-{i}"))
            .build()
            .map_err(|e| Error::Invalid(format!("cannot start {threads} threads: {e}")))?;
        let device = pool.install(|| cryoprune_model::select_device(&self.device))?;
        events.note(format!("device: {}", device.description));
        Ok(Compute {
            device,
            threads,
            pool,
        })
    }
}

impl Compute {
    /// Runs `work` on the job's pool: rayon's parallel loops inside it (the CPU backend, the
    /// fused inference, the simulator) use the job's threads.
    pub fn install<R: Send>(&self, events: &dyn Events, work: impl FnOnce() -> R + Send) -> R {
        self.pool.install(|| {
            events.emit(Event::Threads(rayon::current_num_threads()));
            work()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Collect;

    #[test]
    fn a_typo_in_the_thread_count_is_refused_before_any_thread_starts() {
        let err = ComputeConfig {
            device: "cpu".into(),
            threads: 100_000,
        }
        .start(&Collect::default())
        .err()
        .unwrap();
        assert!(
            err.to_string().contains("--threads 100000: at most 1024"),
            "{err}"
        );
        assert_eq!(thread_count(MAX_THREADS).unwrap(), MAX_THREADS);
    }

    #[test]
    fn each_job_runs_on_the_threads_it_asked_for() {
        for threads in [1, 3, 2] {
            let events = Collect::default();
            let compute = ComputeConfig {
                device: "cpu".into(),
                threads,
            }
            .start(&events)
            .unwrap();
            let seen = compute.install(&events, || {
                use rayon::prelude::*;
                let names: std::collections::BTreeSet<String> = (0..64)
                    .into_par_iter()
                    .map(|_| {
                        std::thread::sleep(std::time::Duration::from_millis(2));
                        std::thread::current()
                            .name()
                            .unwrap_or_default()
                            .to_string()
                    })
                    .collect();
                names
            });
            assert!(seen.len() <= threads && seen.iter().all(|n| n.starts_with("cryoprune-")));
            assert!(events
                .events()
                .iter()
                .any(|e| matches!(e, Event::Threads(n) if *n == threads)));
        }
    }
}
