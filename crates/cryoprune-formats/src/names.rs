//! Matching pick files to micrographs by name.
//!
//! Pickers rename: RELION writes `mic_autopick.star` for `mic.mrc`, motion correction adds `_DW`,
//! cryoSPARC prefixes a job UID path, Topaz drops the extension. A key made by removing folders,
//! extensions and these suffixes lets `mic_DW.mrc` meet `Movies/mic_autopick.star`. Exact base
//! names win over keys, so a dataset holding both `a.mrc` and `a_DW.mrc` still pairs exactly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

const EXTENSIONS: &[&str] = &[
    "gz", "bz2", "mrc", "mrcs", "map", "tif", "tiff", "jpg", "jpeg", "png", "star", "box", "cbox",
    "txt", "cs", "csv", "coord", "eer",
];

const SUFFIXES: &[&str] = &[
    "_autopick",
    "_manualpick",
    "_pick",
    "_picks",
    "_coords",
    "_coordinates",
    "_particles",
    "_cryolo",
    "_topaz",
    "_DW",
    "_dw",
    "_noDW",
    "_doseweighted",
    "_aligned",
    // cryoSPARC's motion correction (`_patch_aligned_doseweighted`, `_rigid_aligned`) and the
    // movie names EPU and Falcon/EER cameras write (`_fractions.tiff`, `_Fractions.mrc`), so that
    // picks named after a movie meet its corrected micrograph.
    "_patch",
    "_rigid",
    "_fractions",
    "_Fractions",
    "_EER",
    "_frames_sum",
    "_sum",
];

/// Base name without folders or extensions: `a/b/mic_DW.mrc` -> `mic_DW`.
pub fn stem(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    // cryoSPARC prefixes imported files with a 21-digit UID and an underscore.
    let base = match base.split_once('_') {
        Some((uid, rest)) if uid.len() >= 15 && uid.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => base,
    };
    let mut s = base.to_string();
    while let Some((head, ext)) = s.rsplit_once('.') {
        if EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(ext)) && !head.is_empty() {
            s = head.to_string();
        } else {
            break;
        }
    }
    s
}

/// Where RELION looks for a micrograph's coordinate file, relative to its coordinate folder and
/// without the suffix: the micrograph's path with a pipeline job prefix (`MotionCorr/job002/`)
/// and the extension removed (`relion_preprocess`'s `getCoordinateFileName`). A path that would
/// leave the folder (`..`) gives the bare stem instead.
pub fn relion_coordinate_stem(micrograph: &str) -> PathBuf {
    let parts: Vec<&str> = micrograph.split('/').filter(|p| !p.is_empty()).collect();
    let is_job = |p: &str| {
        p.len() >= 6 && p.starts_with("job") && p.as_bytes()[3..6].iter().all(u8::is_ascii_digit)
    };
    // RELION takes the first `job` folder that follows another folder.
    let start = (1..parts.len().saturating_sub(1))
        .find(|&i| is_job(parts[i]))
        .map_or(0, |i| i + 1);
    let rest = &parts[start..];
    if rest.is_empty() || rest.iter().any(|p| *p == ".." || *p == ".") {
        return PathBuf::from(stem(micrograph));
    }
    let mut path: PathBuf = rest.iter().collect();
    let last = rest[rest.len() - 1];
    match last.rsplit_once('.') {
        Some((head, _)) if !head.is_empty() => path.set_file_name(head),
        _ => {}
    }
    path
}

/// The matching key: the stem without picker and motion-correction suffixes.
pub fn micrograph_key(name: &str) -> String {
    let mut s = stem(name);
    loop {
        let before = s.len();
        for suf in SUFFIXES {
            if s.len() > suf.len() && s.ends_with(suf) {
                s.truncate(s.len() - suf.len());
            }
        }
        if s.len() == before {
            return s;
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct MatchReport {
    /// (index into the pick names, index into the micrographs)
    pub pairs: Vec<(usize, usize)>,
    /// Pick names that match no micrograph.
    pub unmatched_picks: Vec<String>,
    /// Micrographs that no pick name matches.
    pub unmatched_micrographs: Vec<PathBuf>,
}

pub fn match_micrographs(pick_names: &[String], micrographs: &[PathBuf]) -> MatchReport {
    let mut by_stem: HashMap<String, Vec<usize>> = HashMap::new();
    let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, m) in micrographs.iter().enumerate() {
        let name = m.to_string_lossy();
        by_stem.entry(stem(&name)).or_default().push(i);
        by_key.entry(micrograph_key(&name)).or_default().push(i);
    }
    let mut report = MatchReport::default();
    let mut used = vec![false; micrographs.len()];
    for (p, name) in pick_names.iter().enumerate() {
        let one = |found: Option<&Vec<usize>>| match found?.as_slice() {
            [m] => Some(*m),
            several => by_folders(name, several, micrographs),
        };
        let found =
            one(by_stem.get(&stem(name))).or_else(|| one(by_key.get(&micrograph_key(name))));
        match found {
            Some(m) => {
                used[m] = true;
                report.pairs.push((p, m));
            }
            None => report.unmatched_picks.push(name.clone()),
        }
    }
    report.unmatched_micrographs = micrographs
        .iter()
        .zip(&used)
        .filter(|(_, &u)| !u)
        .map(|(m, _)| m.clone())
        .collect();
    report
}

/// The micrographs a pick name could mean by its stem (else its key): two or more where
/// [`match_micrographs`] left the name unmatched because their folders did not tell them apart.
pub fn alike<'a>(name: &str, micrographs: &'a [PathBuf]) -> Vec<&'a PathBuf> {
    let same = |f: &dyn Fn(&str) -> String| -> Vec<&'a PathBuf> {
        let want = f(name);
        micrographs
            .iter()
            .filter(|m| f(&m.to_string_lossy()) == want)
            .collect()
    };
    let by_stem = same(&stem);
    if by_stem.is_empty() {
        same(&micrograph_key)
    } else {
        by_stem
    }
}

/// Of several micrographs of one name, the one whose folders end as the pick name's do
/// (`sim_b/micrographs/x.mrc` names `/data/sim_b/micrographs/x.mrc`, not
/// `/data/sim/micrographs/x.mrc`): the longest run of shared folders, when one alone has it.
fn by_folders(name: &str, candidates: &[usize], micrographs: &[PathBuf]) -> Option<usize> {
    let folders = |path: &str| -> Vec<String> {
        let mut parts: Vec<String> = path
            .split(['/', '\\'])
            .filter(|p| !p.is_empty() && *p != ".")
            .map(str::to_string)
            .collect();
        parts.pop();
        parts
    };
    let mine = folders(name);
    let shared = |m: usize| {
        let theirs = folders(&micrographs[m].to_string_lossy());
        (mine.iter().rev().zip(theirs.iter().rev()))
            .take_while(|(a, b)| a == b)
            .count()
    };
    let scored: Vec<(usize, usize)> = candidates.iter().map(|&m| (shared(m), m)).collect();
    let best = scored.iter().map(|&(n, _)| n).max()?;
    let mut with_best = scored.iter().filter(|&&(n, _)| n == best);
    match (best, with_best.next(), with_best.next()) {
        (1.., Some(&(_, m)), None) => Some(m),
        _ => None,
    }
}

/// A file named in a list (a STAR or `.cs` file, an index of coordinate files). RELION and
/// cryoSPARC write paths relative to the project folder, which is where the user runs them, or
/// an ancestor of the list's folder (a list copied elsewhere with its job folders); so try the
/// working directory, then the list's folder and its ancestors.
pub fn find_listed(name: &str, list: &Path) -> Option<PathBuf> {
    let given = Path::new(name);
    if given.is_absolute() || given.is_file() {
        return given.is_file().then(|| given.to_path_buf());
    }
    list.parent()
        .into_iter()
        .flat_map(Path::ancestors)
        .map(|dir| dir.join(given))
        .find(|p| p.is_file())
}

/// The folder a listed path was relative to, given where [`find_listed`] found it (RELION's
/// project folder): empty for the working folder, None for an absolute path.
pub fn listed_base(listed: &str, found: &Path) -> Option<PathBuf> {
    let listed = Path::new(listed);
    if listed.is_absolute() {
        return None;
    }
    found
        .ancestors()
        .nth(listed.components().count())
        .map(Path::to_path_buf)
}

/// `file` as a list whose paths are relative to `project` ([`listed_base`]) names it, so RELION
/// running there finds it wherever cryoprune ran: absolute where it lies outside that folder or
/// the list's paths are absolute. `file` must exist.
pub fn relative_to(project: Option<&Path>, file: &Path) -> PathBuf {
    let Ok(absolute) = std::fs::canonicalize(file) else {
        return file.to_path_buf();
    };
    let project = match project {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => return absolute,
    };
    match std::fs::canonicalize(project) {
        Ok(base) => absolute
            .strip_prefix(&base)
            .map_or(absolute.clone(), Path::to_path_buf),
        Err(_) => absolute,
    }
}

/// Each file's name in one folder of outputs: its own, but where files share a name (RELION's
/// `Movies/GridA/x.star` and `Movies/GridB/x.star`), their paths below the deepest folder they
/// have in common (`GridA/x.star`, `GridB/x.star`), so that none is written over another. Names
/// are relative whatever the paths were (no root, no `..`); one file given twice keeps one name.
pub fn distinct_names(paths: &[&Path]) -> Vec<PathBuf> {
    let name = |p: &Path| p.file_name().unwrap_or_default().to_os_string();
    let mut sharing: HashMap<std::ffi::OsString, Vec<&Path>> = HashMap::new();
    for p in paths {
        let group = sharing.entry(name(p)).or_default();
        if !group.contains(p) {
            group.push(p);
        }
    }
    paths
        .iter()
        .map(|p| {
            let group = &sharing[&name(p)];
            if group.len() == 1 {
                return PathBuf::from(name(p));
            }
            let parts = |q: &Path| q.parent().map_or(0, |d| d.components().count());
            let common = (0..group.iter().map(|q| parts(q)).min().unwrap_or(0))
                .take_while(|&i| {
                    let first = group[0].components().nth(i);
                    group.iter().all(|q| q.components().nth(i) == first)
                })
                .count();
            p.components()
                .skip(common)
                .filter(|c| matches!(c, std::path::Component::Normal(_)))
                .collect()
        })
        .collect()
}

/// Why no pick matched a micrograph, naming an example of each side: seen together, two names
/// show whether the wrong folder was given (other names) or a naming scheme is in the way
/// (names alike but for a prefix or suffix the matching does not strip).
pub fn no_match_message(pick_names: &[String], micrographs: &[PathBuf]) -> String {
    let example = |name: Option<String>| name.map_or("none".into(), |n| format!("`{n}`"));
    let given = match micrographs.len() {
        1 => "the micrograph given".to_string(),
        n => format!("any of the {n} micrographs given"),
    };
    format!(
        "no micrograph named in the picks (e.g. {}) matches {given} (e.g. {}); they are paired \
         by file name without folder, extension or a picker's suffix",
        example(pick_names.first().cloned()),
        example(micrographs.first().map(|m| stem(&m.to_string_lossy()))),
    )
}

/// Whether a path was typed with a trailing separator, which says "a folder" whatever its
/// extension (`--out pruned.star/`).
pub fn names_a_folder(path: &Path) -> bool {
    path.as_os_str()
        .as_encoded_bytes()
        .last()
        .is_some_and(|&b| std::path::is_separator(b as char))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_sharing_a_name_keep_the_folders_that_tell_them_apart() {
        let names = |paths: &[&str]| -> Vec<String> {
            let paths: Vec<&Path> = paths.iter().map(Path::new).collect();
            distinct_names(&paths)
                .iter()
                .map(|n| n.display().to_string())
                .collect()
        };
        assert_eq!(
            names(&[
                "AutoPick/job006/Movies/GridA/x.star",
                "AutoPick/job006/Movies/GridB/x.star",
                "other/y.star"
            ]),
            ["GridA/x.star", "GridB/x.star", "y.star"]
        );
        assert_eq!(names(&["a/x.star", "a/b/x.star"]), ["x.star", "b/x.star"]);
        assert_eq!(
            names(&["/data/a/x.star", "/data/b/x.star"]),
            ["a/x.star", "b/x.star"]
        );
        assert_eq!(
            names(&["../a/x.star", "../b/x.star"]),
            ["a/x.star", "b/x.star"]
        );
        // Nothing escapes the output folder, and a file given twice keeps one name.
        assert_eq!(names(&["x.star", "../x.star"]), ["x.star", "x.star"]);
        assert_eq!(names(&["a/x.star", "a/x.star"]), ["x.star", "x.star"]);
    }

    #[test]
    fn a_failed_match_names_one_of_each_side() {
        let picks = vec!["mic_0001_autopick".to_string()];
        let mics = vec![PathBuf::from("Movies/FoilHole_1_fractions.mrc"); 3];
        let text = no_match_message(&picks, &mics);
        assert!(
            text.starts_with(
                "no micrograph named in the picks (e.g. `mic_0001_autopick`) matches any of the 3 \
                 micrographs given (e.g. `FoilHole_1_fractions`)"
            ),
            "{text}"
        );
        assert!(no_match_message(&[], &[]).contains("(e.g. none)"));
    }

    #[test]
    fn relion_coordinate_stems_follow_relion_preprocess() {
        for (mic, want) in [
            ("MotionCorr/job002/Movies/mic_001.mrc", "Movies/mic_001"),
            ("Micrographs/mic.1.mrc", "Micrographs/mic.1"),
            ("mic.mrc", "mic"),
            ("/data/run/mic.mrc", "data/run/mic"),
            ("a/job12/b.mrc", "a/job12/b"),
            ("CtfFind/job004/job005/x.mrc", "job005/x"),
            ("../elsewhere/mic.mrc", "mic"),
        ] {
            assert_eq!(relion_coordinate_stem(mic), PathBuf::from(want), "{mic}");
        }
    }

    #[test]
    fn keys_strip_folders_extensions_and_suffixes() {
        assert_eq!(
            micrograph_key("MotionCorr/job002/Movies/mic_001_DW.mrc"),
            "mic_001"
        );
        assert_eq!(
            micrograph_key("AutoPick/job010/Movies/mic_001_autopick.star"),
            "mic_001"
        );
        assert_eq!(
            micrograph_key("J12/imported/012345678901234567890_mic_001.mrc"),
            "mic_001"
        );
        assert_eq!(
            micrograph_key("Falcon_2012_06_12-14_33_35_0"),
            "Falcon_2012_06_12-14_33_35_0"
        );
        assert_eq!(micrograph_key("TcdA1-0018_frames_sum.cbox"), "TcdA1-0018");
        assert_eq!(stem("emd_3001.map.gz"), "emd_3001");
    }

    #[test]
    fn movies_meet_their_motion_corrected_micrographs() {
        let movie = "Movies/FoilHole_1_Data_2_fractions.tiff";
        for corrected in [
            "J3/motioncorrected/012345678901234567890_FoilHole_1_Data_2_fractions_patch_aligned_doseweighted.mrc",
            "J4/motioncorrected/FoilHole_1_Data_2_fractions_rigid_aligned.mrc",
            "MotionCorr/job002/Movies/FoilHole_1_Data_2_fractions.mrc",
            "FoilHole_1_Data_2_Fractions_DW.mrc",
        ] {
            assert_eq!(micrograph_key(corrected), micrograph_key(movie), "{corrected}");
        }
        assert_eq!(micrograph_key(movie), "FoilHole_1_Data_2");
    }

    #[test]
    fn micrographs_of_one_name_are_told_apart_by_their_folders() {
        let mics: Vec<PathBuf> = ["proj/sim/micrographs/a.mrc", "proj/sim_b/micrographs/a.mrc"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let picks: Vec<String> = [
            "sim_b/micrographs/a.mrc",
            "sim/micrographs/a_autopick.star",
            "a.mrc",
            "x/a.mrc",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let r = match_micrographs(&picks, &mics);
        assert_eq!(r.pairs, vec![(0, 1), (1, 0)]);
        assert_eq!(r.unmatched_picks, ["a.mrc", "x/a.mrc"]);
        assert_eq!(alike("x/a.mrc", &mics), [&mics[0], &mics[1]]);
        assert!(alike("b.mrc", &mics).is_empty());
    }

    #[test]
    fn exact_stems_win_and_unmatched_are_reported() {
        let mics: Vec<PathBuf> = ["m/a.mrc", "m/a_DW.mrc", "m/b_DW.mrc", "m/c.mrc"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let picks: Vec<String> = ["a_DW", "b_autopick.star", "zzz.box"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let r = match_micrographs(&picks, &mics);
        assert_eq!(r.pairs, vec![(0, 1), (1, 2)]);
        assert_eq!(r.unmatched_picks, vec!["zzz.box"]);
        assert_eq!(
            r.unmatched_micrographs,
            vec![PathBuf::from("m/a.mrc"), PathBuf::from("m/c.mrc")]
        );
    }
}
