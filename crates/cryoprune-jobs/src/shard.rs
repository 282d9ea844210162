//! Splitting a job over a cluster's array tasks. `--shard I/N` gives task I every N-th micrograph
//! of the sorted list (so `--shard $SLURM_ARRAY_TASK_ID/N` in an array job covers them all once),
//! each task writes its own output set plus a record of what it did, and [`merge`] joins the
//! records into exactly the outputs one run would have written.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::events::Events;
use crate::{invalid, Context, Error, Result};

/// Task `index` of `count`, counted from 0 as SLURM's `--array=0-(N-1)` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || {
            format!("`{s}`: expected I/N with 0 <= I < N, e.g. --shard $SLURM_ARRAY_TASK_ID/8 with --array=0-7")
        };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Which of `micrographs` this shard takes: every N-th of them in sorted order, whatever
    /// order the globs listed them in.
    pub fn takes(&self, micrographs: &[PathBuf]) -> Vec<bool> {
        let mut order: Vec<usize> = (0..micrographs.len()).collect();
        order.sort_by(|&a, &b| micrographs[a].cmp(&micrographs[b]));
        let mut takes = vec![false; micrographs.len()];
        for (rank, &m) in order.iter().enumerate() {
            takes[m] = rank % self.count == self.index;
        }
        takes
    }
}

/// What a shard writes beside its outputs when it finishes: its place, the job's settings, and
/// what the merge needs that the outputs do not hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record<C, D> {
    pub job: String,
    pub shard: Shard,
    pub config: C,
    pub done: D,
}

/// Reads the shards' records of job `job` (from `record_path` of each input), checks that they
/// are one job cut into N pieces (the same settings by `same`, each index once), and returns
/// them in shard order.
pub fn read_records<C: DeserializeOwned, D: DeserializeOwned>(
    inputs: &[PathBuf],
    job: &str,
    record_path: impl Fn(&Path) -> PathBuf,
    same: impl Fn(&C, &C) -> bool,
) -> Result<Vec<Record<C, D>>> {
    let mut records: Vec<Record<C, D>> = Vec::new();
    for input in inputs {
        let path = record_path(input);
        let text = std::fs::read(&path).map_err(|e| {
            Error::Invalid(format!(
                "{}: {e}; {} is not the output of a finished `{job} --shard` run (rerun that shard)",
                path.display(),
                input.display()
            ))
        })?;
        let record: Record<C, D> = serde_json::from_slice(&text)
            .context_with(|| format!("reading the shard record {}", path.display()))?;
        if record.job != job {
            invalid!(
                "{} records a `{}` shard, not a `{job}` one",
                path.display(),
                record.job
            );
        }
        if let Some(first) = records.first() {
            if record.shard.count != first.shard.count || !same(&record.config, &first.config) {
                invalid!(
                    "{} and {} are not shards of one run: their settings or shard counts differ",
                    inputs[0].display(),
                    input.display()
                );
            }
        }
        if records.iter().any(|r| r.shard == record.shard) {
            invalid!(
                "shard {} is given twice ({})",
                record.shard,
                input.display()
            );
        }
        records.push(record);
    }
    let Some(count) = records.first().map(|r| r.shard.count) else {
        invalid!("merge needs at least one shard's output");
    };
    if records.len() != count {
        let missing: Vec<String> = (0..count)
            .filter(|i| !records.iter().any(|r| r.shard.index == *i))
            .map(|i| format!("{i}/{count}"))
            .collect();
        invalid!("shards {} are missing", missing.join(", "));
    }
    records.sort_by_key(|r| r.shard.index);
    Ok(records)
}

/// The settings of `merge`: the shards' outputs and where the joined ones go.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct MergeConfig {
    /// Each shard's --out: prune folders, or extract stacks (.mrcs).
    #[arg(long = "in", required = true, num_args = 1..)]
    pub inputs: Vec<PathBuf>,
    /// Where one run's --out would be: a prune folder (or file), or an extract stack.
    #[arg(long)]
    pub out: PathBuf,
    /// Prune: every pick's class and probabilities as CSV, as `prune --scores`.
    #[arg(long)]
    pub scores: Option<PathBuf>,
    /// Prune: the HTML report, as `prune --report`.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Extract: the particle STAR; default: --out with the extension .star.
    #[arg(long)]
    pub star: Option<PathBuf>,
}

/// What a merge joined.
pub enum Merged {
    Prune(Box<crate::prune::Summary>),
    Extract(crate::extract::Extracted),
}

/// Joins the shards' outputs, prune's or extract's (told apart by their records).
pub fn merge(cfg: &MergeConfig, events: &dyn Events) -> Result<Merged> {
    let Some(first) = cfg.inputs.first() else {
        invalid!("merge needs the shards' outputs (--in)");
    };
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    if cfg.inputs.iter().any(|i| canon(i) == canon(&cfg.out)) {
        invalid!(
            "--out {} is one of the shards' outputs; choose another path",
            cfg.out.display()
        );
    }
    if first.is_dir() {
        if cfg.star.is_some() {
            invalid!("--star is for merging extract shards; these are prune shards");
        }
        crate::prune::merge(cfg, events).map(|s| Merged::Prune(Box::new(s)))
    } else {
        if cfg.scores.is_some() || cfg.report.is_some() {
            invalid!(
                "--scores and --report are for merging prune shards; these are extract shards"
            );
        }
        crate::extract::merge(cfg, events).map(Merged::Extract)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_cover_every_micrograph_once() {
        assert_eq!("2/3".parse::<Shard>(), Ok(Shard { index: 2, count: 3 }));
        for bad in ["3/3", "1", "a/2", "0/0", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        let mics: Vec<PathBuf> = ["c.mrc", "a.mrc", "e.mrc", "b.mrc", "d.mrc"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let takes: Vec<Vec<bool>> = (0..2)
            .map(|i| Shard { index: i, count: 2 }.takes(&mics))
            .collect();
        // Sorted: a b c d e; shard 0 takes a c e.
        assert_eq!(takes[0], vec![true, true, true, false, false]);
        for m in 0..mics.len() {
            assert_eq!(takes.iter().filter(|t| t[m]).count(), 1);
        }
    }
}
