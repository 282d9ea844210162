//! Finding the inputs: micrographs (globs, or a list of them), and pick groups paired with
//! micrographs by name.

use std::path::{Path, PathBuf};

use cryoprune_formats::cryosparc::{self, Output};
use cryoprune_formats::error::Location;
use cryoprune_formats::names::{
    find_listed, listed_base, match_micrographs, names_a_folder, MatchReport,
};
use cryoprune_formats::npy::StructArray;
use cryoprune_formats::star::{Loop, StarFile};
use cryoprune_formats::{PickFormat, PickSet};

use crate::events::Events;
use crate::{invalid, Error, Result};

/// Reads pick files, their coordinates multiplied by `scale` (picks made on binned
/// micrographs). A scale of 0, below or NaN would put every pick in a corner or nowhere.
pub fn read_scaled(picks: &[PathBuf], format: Option<PickFormat>, scale: f64) -> Result<PickSet> {
    if !(scale > 0.0 && scale.is_finite()) {
        invalid!("--scale must be a positive number");
    }
    let mut set = PickSet::read(picks, format)?;
    if scale != 1.0 {
        set.scale(scale);
    }
    Ok(set)
}

/// Expands shell-style globs (quoted so the shell leaves them to us, since a dataset can hold
/// more micrographs than a command line may) and plain paths, in sorted order.
fn expand_globs(patterns: &[String]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for pat in patterns {
        let p = Path::new(pat);
        if p.exists() {
            out.push(p.to_path_buf());
            continue;
        }
        let mut matched: Vec<_> = match glob::glob(pat) {
            Ok(paths) => paths.filter_map(|r| r.ok()).collect(),
            Err(e) => invalid!("bad pattern `{pat}`: {e}"),
        };
        if matched.is_empty() {
            invalid!("`{pat}` matches no file");
        }
        matched.sort();
        out.extend(matched);
    }
    Ok(out)
}

/// The micrographs to read, and the file that listed them, if any.
pub(crate) struct MicrographInputs {
    pub paths: Vec<PathBuf>,
    /// Each micrograph's name: as the list names it (RELION's project-relative path), else its
    /// path as given.
    pub names: Vec<String>,
    /// The folder the names are relative to (a list's project folder; empty: the working
    /// folder), None where they are absolute.
    pub project: Option<PathBuf>,
    pub listed: MicrographList,
}

pub(crate) enum MicrographList {
    Glob,
    /// A STAR file and the index of its micrographs block.
    Star(StarFile, usize),
    /// A cryoSPARC exposures array.
    Exposures(StructArray),
}

/// The field of a cryoSPARC exposure that names its micrograph.
pub(crate) const EXPOSURE_PATH: &str = "micrograph_blob/path";
pub(crate) const MICROGRAPH: &str = "rlnMicrographName";

/// The micrographs `--micrographs` gives: globs and paths, or one RELION micrographs STAR or
/// cryoSPARC exposures `.cs` listing them.
pub fn micrograph_paths(micrographs: &[String]) -> Result<Vec<PathBuf>> {
    Ok(micrograph_inputs(micrographs)?.paths)
}

/// The loop of STAR block `block` when it has `column`, else the first loop that has it (RELION
/// names its blocks, other tools may not): the block's index, the loop and the column.
pub(crate) fn loop_with<'a>(
    star: &'a StarFile,
    block: &str,
    column: &str,
) -> Option<(usize, &'a Loop, usize)> {
    let named = star.block_index(block);
    named.into_iter().chain(0..star.blocks.len()).find_map(|b| {
        let l = star.blocks[b].first_loop()?;
        Some((b, l, l.column(column)?))
    })
}

/// `names` (as the file at `listed_in` gives them, `what` naming each row) found on disk.
fn found(
    names: &[String],
    listed_in: &Path,
    what: impl Fn(usize) -> String,
) -> Result<Vec<PathBuf>> {
    names
        .iter()
        .enumerate()
        .map(|(row, name)| {
            find_listed(name, listed_in).ok_or_else(|| {
                Error::Invalid(format!(
                    "{}: {}micrograph {name} not found (tried the working folder, the file's \
                     folder and its ancestors)",
                    listed_in.display(),
                    what(row)
                ))
            })
        })
        .collect()
}

/// The micrographs `--micrographs` gives: globs and paths, or one list of them (a RELION
/// micrographs STAR such as CtfFind's `micrographs_ctf.star`, or cryoSPARC exposures `.cs`),
/// with the list kept for a job that writes a subset of it back.
pub(crate) fn micrograph_inputs(micrographs: &[String]) -> Result<MicrographInputs> {
    if let [single] = micrographs {
        let path = Path::new(single);
        // A cryoSPARC job folder, or an output's main .cs beside its job.json, with the
        // passthrough that names the micrographs joined to it; else a plain exposures .cs.
        let exposures = match cryosparc::job_output(path, Output::Exposures)? {
            Some(output) => Some((output.read()?, output.main)),
            None if PickFormat::from_path(path) == Some(PickFormat::Cs) && path.is_file() => {
                Some((StructArray::read(path)?, path.to_path_buf()))
            }
            None => None,
        };
        if let Some((exposures, listed_in)) = exposures {
            let path = listed_in.as_path();
            let Some(field) = exposures.field(EXPOSURE_PATH) else {
                invalid!(
                    "{}: no {EXPOSURE_PATH} field (expected cryoSPARC exposures, e.g. a Patch \
                     CTF job's folder or its exposures .cs beside job.json)",
                    path.display()
                );
            };
            let names: Vec<String> = (0..exposures.nrows)
                .map(|r| exposures.text(r, field).unwrap_or_default())
                .collect();
            // cryoSPARC marks a file it imported with a leading `>` before the path in the
            // project; the micrograph keeps its name as listed.
            let in_project: Vec<String> = names
                .iter()
                .map(|n| n.strip_prefix('>').unwrap_or(n).to_string())
                .collect();
            let paths = found(&in_project, path, |r| Location::Record(r + 1).to_string())?;
            return Ok(MicrographInputs {
                project: base(&in_project, &paths),
                paths,
                names,
                listed: MicrographList::Exposures(exposures),
            });
        }
        if PickFormat::from_path(path) == Some(PickFormat::Star) && path.is_file() {
            let star = StarFile::read(path)?;
            let Some((b, l, c)) = loop_with(&star, "micrographs", MICROGRAPH) else {
                invalid!(
                    "{single}: no loop with _rlnMicrographName (expected a RELION micrographs STAR)"
                );
            };
            let names: Vec<String> = l.rows.iter().map(|r| r.get(c).to_string()).collect();
            let paths = found(&names, path, |row| l.line_of(row).to_string())?;
            return Ok(MicrographInputs {
                project: base(&names, &paths),
                paths,
                names,
                listed: MicrographList::Star(star, b),
            });
        }
    }
    let paths = expand_globs(micrographs)?;
    Ok(MicrographInputs {
        names: paths.iter().map(|p| p.display().to_string()).collect(),
        paths,
        project: Some(PathBuf::new()),
        listed: MicrographList::Glob,
    })
}

/// The project folder of a list's names, from where the first was found.
fn base(names: &[String], paths: &[PathBuf]) -> Option<PathBuf> {
    match (names.first(), paths.first()) {
        (Some(n), Some(p)) => listed_base(n, p),
        _ => Some(PathBuf::new()),
    }
}

/// Pairs pick groups with micrographs by name. Groups that match none are reported: the first
/// few by name, then a count, so a mismatched dataset does not flood the terminal.
pub fn pair_with_micrographs(
    set: &PickSet,
    micrographs: &[PathBuf],
    consequence: &str,
    events: &dyn Events,
) -> MatchReport {
    const SHOWN: usize = 5;
    let names: Vec<String> = set
        .micrographs
        .iter()
        .map(|m| m.micrograph.clone())
        .collect();
    let report = match_micrographs(&names, micrographs);
    let unmatched = &report.unmatched_picks;
    for name in unmatched.iter().take(SHOWN) {
        let alike = cryoprune_formats::names::alike(name, micrographs);
        events.warn(match alike.as_slice() {
            [a, b, ..] => format!(
                "picks for `{name}` could be on {} micrographs of that name ({}, {}{}) and \
                 their folders do not say which; {consequence}",
                alike.len(),
                a.display(),
                b.display(),
                if alike.len() > 2 { ", ..." } else { "" }
            ),
            _ => format!(
                "picks for `{name}` match no micrograph given with --micrographs; {consequence}"
            ),
        });
    }
    if unmatched.len() > SHOWN {
        events.warn(format!(
            "... and {} more pick groups match no micrograph",
            unmatched.len() - SHOWN
        ));
    }
    report
}

/// The error of a run whose picks match none of its micrographs, with an example of each.
pub fn no_match(set: &PickSet, micrographs: &[PathBuf]) -> crate::Error {
    let names: Vec<String> = set
        .micrographs
        .iter()
        .map(|m| m.micrograph.clone())
        .collect();
    crate::Error::Invalid(cryoprune_formats::names::no_match_message(
        &names,
        micrographs,
    ))
}

/// The picks of `set` on each paired micrograph, as extraction jobs.
pub fn jobs(
    set: &PickSet,
    pairs: &[(usize, usize)],
    micrographs: &[PathBuf],
) -> Vec<cryoprune_image::pipeline::Job> {
    pairs
        .iter()
        .map(|&(g, m)| cryoprune_image::pipeline::Job {
            path: micrographs[m].clone(),
            picks: set.micrographs[g]
                .picks
                .iter()
                .map(|p| (p.x, p.y))
                .collect(),
        })
        .collect()
}

/// Refuses output `files` (given or not, by flag) that cannot be written, an output `folder`
/// that cannot be made, and any of them that names one of `inputs`, a file in one of the input
/// folders, or an input folder itself (a model folder: its model.json and weights). Checked
/// before any work, so a slip costs an error message, not the picker's files, the model or a
/// finished run.
pub fn check_outputs(
    files: &[(&str, Option<&Path>)],
    folder: Option<(&str, &Path)>,
    inputs: &[PathBuf],
) -> Result<()> {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let mut taken: Vec<(PathBuf, &Path)> = Vec::new();
    for input in inputs {
        taken.push((canon(input), input));
        if let Ok(entries) = std::fs::read_dir(input) {
            for e in entries.flatten() {
                taken.push((canon(&e.path()), input));
            }
        }
    }
    let files = files.iter().filter_map(|&(flag, p)| p.map(|p| (flag, p)));
    for (flag, out) in files.clone() {
        ensure_file_possible(flag, out)?;
    }
    if let Some((flag, out)) = folder {
        ensure_folder_possible(flag, out)?;
    }
    for (flag, out) in files.chain(folder) {
        let c = canon(out);
        if let Some((_, input)) = taken.iter().find(|(t, _)| *t == c) {
            let what = if canon(input) == c {
                String::new()
            } else {
                format!(" (in {})", input.display())
            };
            invalid!(
                "{flag} {} would write over an input{what}; choose another path",
                out.display()
            );
        }
    }
    Ok(())
}

/// Refuses an output folder that cannot be made: the path, or the nearest part of it that
/// exists, is a file. Checked before the work, so a long training run does not end in
/// "Not a directory".
pub fn ensure_folder_possible(flag: &str, folder: &Path) -> Result<()> {
    if folder.exists() && !folder.is_dir() {
        invalid!(
            "{flag} {} is a file, and a folder is needed here; choose another path",
            folder.display()
        );
    }
    folder_can_be_made(flag, folder, folder)
}

/// Refuses an output file that cannot be written: it names a folder, or its folder cannot be
/// made. Checked before the work, like [`ensure_folder_possible`].
pub fn ensure_file_possible(flag: &str, file: &Path) -> Result<()> {
    if file.is_dir() || names_a_folder(file) {
        invalid!("{flag} {} names a folder; give a file name", file.display());
    }
    file.parent()
        .map_or(Ok(()), |parent| folder_can_be_made(flag, file, parent))
}

/// Refuses `folder` (the output `given` with `flag`, or the folder it lies in) when the nearest
/// part of it that exists is a file.
fn folder_can_be_made(flag: &str, given: &Path, folder: &Path) -> Result<()> {
    let in_the_way = folder
        .ancestors()
        .filter(|a| !a.as_os_str().is_empty())
        .find(|a| a.exists())
        .filter(|a| !a.is_dir());
    match in_the_way {
        Some(file) => invalid!(
            "{flag} {}: {} is a file, so the folder cannot be made; choose another path",
            given.display(),
            file.display()
        ),
        None => Ok(()),
    }
}
