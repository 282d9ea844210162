//! A prune shard's record for the merge: every classified micrograph's outcomes in a journal
//! (one JSON line each, appended as it finishes, so a killed shard rerun with `--skip-existing`
//! classifies only what it had not), and, when the shard finishes, what the run decided once for
//! all micrographs (the prior's shift, the labelled picks' rates) in `cryoprune_shard.json`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::advisor::Labelled;
use super::decide::{Outcome, UNSCORED};
use super::{PruneConfig, Shift};
use crate::shard::Record;
use crate::{Error, Result};

pub const JOB: &str = "prune";
const RECORD: &str = "cryoprune_shard.json";
const JOURNAL: &str = "cryoprune_shard_outcomes.jsonl";

pub fn record_path(dir: &Path) -> PathBuf {
    dir.join(RECORD)
}

/// What the shards decided for the whole run, and what they spent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Done {
    pub shift: Option<Shift>,
    pub labelled: Option<Labelled>,
    pub device: String,
    pub network_seconds: f64,
    pub seconds: f64,
}

pub type PruneRecord = Record<PruneConfig, Done>;

/// Shards of one run differ only in their place, their outputs and how they were computed.
pub fn same_run(a: &PruneConfig, b: &PruneConfig) -> bool {
    let plain = |c: &PruneConfig| PruneConfig {
        compute: Default::default(),
        out: PathBuf::new(),
        scores: None,
        report: None,
        shard: None,
        skip_existing: false,
        batch: 0,
        ..c.clone()
    };
    plain(a) == plain(b)
}

#[derive(Serialize, Deserialize)]
struct Line {
    micrograph: String,
    outcomes: Vec<Stored>,
}

/// An outcome as the journal keeps it: the probabilities (f32 survives JSON exactly) or why
/// there are none.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Stored {
    Probabilities(Vec<f32>),
    Unscored(String),
}

/// The journal of a running shard.
pub struct Journal {
    file: File,
    path: PathBuf,
}

impl Journal {
    /// Opens the journal in `dir`; with `resume`, the outcomes it already holds come back and
    /// new ones are appended, otherwise it starts empty.
    pub fn open(dir: &Path, resume: bool) -> Result<(Journal, HashMap<String, Vec<Outcome>>)> {
        let path = dir.join(JOURNAL);
        let io = |e| Error::Io(path.clone(), e);
        let previous = match resume && path.exists() {
            true => read_journal(&path)?,
            false => HashMap::new(),
        };
        crate::create_dir(dir)?;
        // The record says the shard finished; until it does again, it has not.
        let record = record_path(dir);
        if record.exists() {
            std::fs::remove_file(&record).map_err(|e| Error::Io(record.clone(), e))?;
        }
        // Rewritten whole: a killed shard may have left half a line at the end.
        let mut file = File::create(&path).map_err(io)?;
        for (m, o) in &previous {
            file.write_all(&line(m, o)?).map_err(io)?;
        }
        Ok((Journal { file, path }, previous))
    }

    /// Appends one micrograph's outcomes (before the prior's shift).
    pub fn record(&mut self, micrograph: &str, outcomes: &[Outcome]) -> Result<()> {
        let bytes = line(micrograph, outcomes)?;
        self.file
            .write_all(&bytes)
            .map_err(|e| Error::Io(self.path.clone(), e))
    }
}

fn line(micrograph: &str, outcomes: &[Outcome]) -> Result<Vec<u8>> {
    let line = Line {
        micrograph: micrograph.to_string(),
        outcomes: outcomes
            .iter()
            .map(|o| match o {
                Outcome::Scored(p) => Stored::Probabilities(p.to_vec()),
                Outcome::Unscored(why) => Stored::Unscored(why.to_string()),
            })
            .collect(),
    };
    let mut bytes = serde_json::to_vec(&line)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// A shard's journal; the last line may be cut short by a kill and is then left out.
fn read_journal(path: &Path) -> Result<HashMap<String, Vec<Outcome>>> {
    let file = File::open(path).map_err(|e| Error::Io(path.to_path_buf(), e))?;
    let mut out = HashMap::new();
    for (i, text) in BufReader::new(file).lines().enumerate() {
        let text = text.map_err(|e| Error::Io(path.to_path_buf(), e))?;
        let Ok(line) = serde_json::from_str::<Line>(&text) else {
            tracing::warn!("{}: line {} is incomplete; left out", path.display(), i + 1);
            continue;
        };
        let mut outcomes = Vec::with_capacity(line.outcomes.len());
        for o in line.outcomes {
            outcomes.push(match o {
                Stored::Probabilities(p) => Outcome::Scored(p.into()),
                Stored::Unscored(why) => match UNSCORED.iter().find(|&&u| u == why) {
                    Some(&u) => Outcome::Unscored(u),
                    None => {
                        return Err(Error::Invalid(format!(
                            "{}, line {}: unknown reason `{why}` for an unscored pick",
                            path.display(),
                            i + 1
                        )))
                    }
                },
            });
        }
        out.insert(line.micrograph, outcomes);
    }
    Ok(out)
}

/// The outcomes of every shard's journal, by micrograph.
pub fn read_journals(dirs: &[PathBuf]) -> Result<HashMap<String, Vec<Outcome>>> {
    let mut all = HashMap::new();
    for dir in dirs {
        for (m, o) in read_journal(&dir.join(JOURNAL))? {
            if all.insert(m.clone(), o).is_some() {
                return Err(Error::Invalid(format!(
                    "micrograph `{m}` was classified by two shards ({} is one)",
                    dir.display()
                )));
            }
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_keeps_outcomes_exactly_and_survives_a_cut_line() {
        let dir = tempfile::tempdir().unwrap();
        let a = vec![
            Outcome::Scored(vec![0.1f32, 0.9].into()),
            Outcome::Scored(vec![1.0 / 3.0f32, 2.0 / 3.0, 0.0, 0.0, 0.0].into()),
            Outcome::Unscored(UNSCORED[1]),
        ];
        {
            let (mut j, previous) = Journal::open(dir.path(), false).unwrap();
            assert!(previous.is_empty());
            j.record("mic_a", &a).unwrap();
            j.record("mic_b", &a[..1]).unwrap();
        }
        let path = dir.path().join(JOURNAL);
        let mut text = std::fs::read(&path).unwrap();
        text.truncate(text.len() - 5);
        std::fs::write(&path, &text).unwrap();
        let (mut j, previous) = Journal::open(dir.path(), true).unwrap();
        assert_eq!(previous.len(), 1);
        assert_eq!(previous["mic_a"], a);
        j.record("mic_b", &a[..2]).unwrap();
        let all = read_journals(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(all["mic_b"], a[..2].to_vec());
        assert_eq!(all["mic_a"], a);
    }
}
