//! A cryoSPARC job folder as cryoSPARC leaves it (`P3/J42/`). Its `job.json` names the `.cs`
//! files of each output. A job writes to an output's main `.cs` only the fields it made; the
//! fields it passed on from its inputs (for extracted or selected particles, often the pick
//! locations; for a CTF job's exposures, the micrograph) go to a passthrough `.cs` beside it,
//! matched record to record by `uid`. Reading the main file alone would miss them, so the two
//! are read as one table.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{read_utf8, FormatError, Location, Result};
use crate::npy::StructArray;

/// The file a cryoSPARC job describes itself in.
const JOB_JSON: &str = "job.json";

/// Outputs a user does not mean when naming the job: the picks a job set aside.
const SET_ASIDE: [&str; 5] = [
    "rejected",
    "excluded",
    "remainder",
    "incomplete",
    "uncategorized",
];

/// One output's files: the main `.cs` (its name is the output's) and the files whose fields are
/// joined to it by `uid` (the output's other main files, then its passthrough).
#[derive(Debug, Clone, PartialEq)]
pub struct OutputFiles {
    pub main: PathBuf,
    pub joined: Vec<PathBuf>,
}

impl OutputFiles {
    /// The output as one table.
    pub fn read(&self) -> Result<StructArray> {
        read_joined(&self.main, &self.joined)
    }
}

/// The kind of output a reader wants from a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Picks or particles (`location/*`).
    Particles,
    /// Exposures: micrographs (`micrograph_blob/*`).
    Exposures,
}

impl Output {
    /// The type of its results in `job.json` (`particle.location`), before the dot.
    fn kind(self) -> &'static str {
        match self {
            Output::Particles => "particle",
            Output::Exposures => "exposure",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Output::Particles => "give the job that picked or extracted the particles",
            Output::Exposures => {
                "give the job that motion-corrected the micrographs or estimated their CTF"
            }
        }
    }
}

/// One output group of `job.json` (`particles`, `micrographs`, ...).
struct Group {
    name: String,
    /// `particle`, `exposure`, ...: the part of its results' types before the dot.
    kind: String,
    /// The newest file of each result, as `job.json` names it.
    main: Vec<String>,
    passthrough: Vec<String>,
}

impl Group {
    fn listed(&self) -> Vec<&String> {
        self.main.iter().chain(&self.passthrough).collect()
    }

    /// The group's files, main first, but `skip`; found only now, so that a file of an output
    /// not read may be missing.
    fn files(&self, job: &Path, json: &Path, skip: Option<&OsStr>) -> Result<Vec<PathBuf>> {
        self.listed()
            .into_iter()
            .filter(|l| skip.is_none() || Path::new(l).file_name() != skip)
            .map(|l| {
                metafile(l, job).ok_or_else(|| {
                    FormatError::invalid(
                        json,
                        Location::Whole,
                        format!(
                            "output `{}` names `{l}`, found neither in the project folder above \
                             the job nor in the job folder",
                            self.name
                        ),
                    )
                })
            })
            .collect()
    }
}

/// For a cryoSPARC job folder, the files of its one output of `want`; for a `.cs` that is an
/// output's main file in such a folder, it and the files joined to it. `None` where `p` is
/// neither, or a main file with nothing to join.
pub fn job_output(p: &Path, want: Output) -> Result<Option<OutputFiles>> {
    let is_cs = p.extension().is_some_and(|e| e.eq_ignore_ascii_case("cs"));
    let job = match (p.is_dir(), is_cs && p.is_file()) {
        (true, _) => p,
        (false, true) => p.parent().unwrap_or(Path::new(".")),
        (false, false) => return Ok(None),
    };
    let json = job.join(JOB_JSON);
    if !json.is_file() {
        return Ok(None);
    }
    let Some(groups) = groups(&json)? else {
        return Ok(None);
    };
    if is_cs {
        let name = p.file_name();
        let Some(group) = groups
            .iter()
            .find(|g| g.main.iter().any(|m| Path::new(m).file_name() == name))
        else {
            return Ok(None);
        };
        let joined = group.files(job, &json, name)?;
        return Ok((!joined.is_empty()).then(|| OutputFiles {
            main: p.to_path_buf(),
            joined,
        }));
    }
    // A group may be all passthrough (a picker passes its micrographs on unchanged): its
    // passthrough file is then the main one.
    let (wanted, others): (Vec<Group>, Vec<Group>) = groups.into_iter().partition(|g| {
        g.kind == want.kind()
            && !(g.main.is_empty() && g.passthrough.is_empty())
            && !SET_ASIDE.iter().any(|s| g.name.contains(s))
    });
    match wanted.as_slice() {
        [one] => {
            // Not empty: a group read has a main or a passthrough file.
            let mut joined = one.files(job, &json, None)?;
            let main = joined.remove(0);
            Ok(Some(OutputFiles { main, joined }))
        }
        [] => {
            let names: Vec<&str> = others.iter().map(|g| g.name.as_str()).collect();
            Err(FormatError::invalid(
                &json,
                Location::Whole,
                format!(
                    "this cryoSPARC job has no {} output to read (its outputs: {}); {}",
                    want.kind(),
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    },
                    want.what()
                ),
            ))
        }
        several => {
            let listed: Vec<String> = several
                .iter()
                .map(|g| format!("{} ({})", g.name, g.listed()[0]))
                .collect();
            Err(FormatError::invalid(
                &json,
                Location::Whole,
                format!(
                    "this cryoSPARC job has {} {} outputs: {}; give the main .cs of the one to \
                     read (its passthrough is joined to it)",
                    several.len(),
                    want.kind(),
                    listed.join(", ")
                ),
            ))
        }
    }
}

/// The output groups `job.json` lists, each with the newest file of each of its results (an
/// iterative job lists one per iteration, the last one final). `None` for a `job.json` that is
/// not cryoSPARC's (no `output_results`): the folder is then read as any other.
fn groups(json: &Path) -> Result<Option<Vec<Group>>> {
    let bad = |message: String| FormatError::invalid(json, Location::Whole, message);
    let text = read_utf8(json, "expected cryoSPARC's job.json")?;
    let results = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("output_results").and_then(Value::as_array).cloned());
    let Some(results) = results else {
        return Ok(None);
    };
    let mut groups: Vec<Group> = Vec::new();
    for (i, r) in results.iter().enumerate() {
        let text = |key: &str| r.get(key).and_then(Value::as_str);
        let Some(name) = text("group_name") else {
            return Err(bad(format!("output_results[{i}] has no `group_name`")));
        };
        let newest = r
            .get("metafiles")
            .and_then(Value::as_array)
            .and_then(|m| m.last())
            .and_then(Value::as_str);
        let Some(newest) = newest else {
            continue; // an output the job has not written yet
        };
        let kind = text("type")
            .map(|t| t.split('.').next().unwrap_or(t))
            .unwrap_or("");
        let g = match groups.iter().position(|g| g.name == name) {
            Some(k) => &mut groups[k],
            None => {
                groups.push(Group {
                    name: name.to_string(),
                    kind: kind.to_string(),
                    main: Vec::new(),
                    passthrough: Vec::new(),
                });
                groups.last_mut().expect("just pushed")
            }
        };
        let list = match r.get("passthrough").and_then(Value::as_bool) {
            Some(true) => &mut g.passthrough,
            _ => &mut g.main,
        };
        if !list.iter().any(|l| l == newest) {
            list.push(newest.to_string());
        }
    }
    Ok(Some(groups))
}

/// A metafile as `job.json` names it, relative to the project folder (`J42/picked_particles.cs`),
/// or, for a job folder copied elsewhere, by its name in the job folder.
fn metafile(listed: &str, job: &Path) -> Option<PathBuf> {
    let in_project = job.parent().map(|p| p.join(listed));
    let in_job = Path::new(listed).file_name().map(|n| job.join(n));
    [in_project, in_job]
        .into_iter()
        .flatten()
        .find(|f| f.is_file())
}

/// `main`, its records given the fields of each of `joined` by `uid`, in turn.
pub(crate) fn read_joined(main: &Path, joined: &[PathBuf]) -> Result<StructArray> {
    let mut array = StructArray::read(main)?;
    for j in joined {
        array = array.joined(&StructArray::read(j)?, "uid").map_err(|m| {
            FormatError::invalid(
                j,
                Location::Whole,
                format!("joining it to {}: {m}", main.display()),
            )
        })?;
    }
    Ok(array)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npy::NewField;

    fn job_json(job: &Path, results: &[(&str, &str, &str, bool)]) {
        let results: Vec<Value> = results
            .iter()
            .map(|(group, kind, file, passthrough)| {
                serde_json::json!({"group_name": group, "type": kind, "metafiles": [file],
                                   "passthrough": passthrough})
            })
            .collect();
        let json = serde_json::json!({ "output_results": results });
        std::fs::write(job.join(JOB_JSON), json.to_string()).unwrap();
    }

    fn write(path: &Path, uids: &[u64], field: NewField) {
        let uid = NewField::u64("uid", |i| uids[i]);
        StructArray::new()
            .write_selected(path, uids.iter().map(|_| 0), &[uid, field])
            .unwrap();
    }

    #[test]
    fn exposures_come_from_the_job_output_that_has_them() {
        let tmp = tempfile::tempdir().unwrap();
        let job = tmp.path().join("J13");
        std::fs::create_dir_all(&job).unwrap();
        // Patch CTF: the CTF in the main file, the micrograph passed on.
        write(
            &job.join("exposures_ctf.cs"),
            &[7, 3],
            NewField::f32("ctf/df1_A", |i| 10000.0 + i as f32),
        );
        let names = ["J12/motioncorrected/b.mrc", "J12/motioncorrected/a.mrc"];
        write(
            &job.join("J13_passthrough_exposures.cs"),
            &[3, 7],
            NewField::text("micrograph_blob/path", 30, |i| names[i]),
        );
        job_json(
            &job,
            &[
                ("exposures", "exposure.ctf", "J13/exposures_ctf.cs", false),
                (
                    "exposures",
                    "exposure.micrograph_blob",
                    "J13/J13_passthrough_exposures.cs",
                    true,
                ),
                (
                    "exposures_rejected",
                    "exposure.ctf",
                    "J13/rejected.cs",
                    false,
                ),
            ],
        );
        for given in [job.clone(), job.join("exposures_ctf.cs")] {
            let files = job_output(&given, Output::Exposures).unwrap().unwrap();
            assert_eq!(
                files,
                OutputFiles {
                    main: job.join("exposures_ctf.cs"),
                    joined: vec![job.join("J13_passthrough_exposures.cs")]
                }
            );
            let table = files.read().unwrap();
            let path = table.field("micrograph_blob/path").unwrap();
            assert_eq!(table.text(0, path).unwrap(), "J12/motioncorrected/a.mrc");
        }
        let e = job_output(&job, Output::Particles).unwrap_err().to_string();
        assert!(
            e.contains("no particle output") && e.contains("exposures, exposures_rejected"),
            "{e}"
        );

        // A picker passes its micrographs on: a passthrough-only output is the one read.
        job_json(
            &job,
            &[
                (
                    "particles",
                    "particle.location",
                    "J13/exposures_ctf.cs",
                    false,
                ),
                (
                    "micrographs",
                    "exposure.micrograph_blob",
                    "J13/J13_passthrough_exposures.cs",
                    true,
                ),
            ],
        );
        let files = job_output(&job, Output::Exposures).unwrap().unwrap();
        assert_eq!(
            (files.main, files.joined),
            (job.join("J13_passthrough_exposures.cs"), vec![])
        );
        // A folder whose job.json is not cryoSPARC's is no job.
        std::fs::write(job.join(JOB_JSON), "{\"jobs\": []}").unwrap();
        assert!(job_output(&job, Output::Exposures).unwrap().is_none());
    }
}
