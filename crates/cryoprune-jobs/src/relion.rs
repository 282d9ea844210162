//! RELION's External job around `prune`: RELION runs the program in the project folder with
//! `--o External/jobNNN/`, its input nodes (`--in_mics`, `--in_coords`, `--in_parts`), `--j`
//! and the job's own parameters, and then waits for `RELION_JOB_EXIT_SUCCESS` or
//! `RELION_JOB_EXIT_FAILURE` in the job folder, reading the outputs it may use from
//! `RELION_OUTPUT_NODES.star`.
//!
//! RELION 3.1 and RELION 4/5 lay out picks differently, and this follows the input's layout:
//! 3.1 names a coordinate folder and suffix by a `coords_suffix_<name>.star` node and writes
//! node types as numbers; 4 and 5 list each micrograph's coordinate file in a STAR
//! (`autopick.star`, `manualpick.star`) and write node types as labels.

use std::path::{Path, PathBuf};

use cryoprune_formats::atomic::write_atomic;
use cryoprune_formats::names::{distinct_names, relion_coordinate_stem};
use cryoprune_formats::picks::{coordinate_file, write_relion_index, COORDINATES_INDEX};
use cryoprune_formats::star::{Block, Item, Loop, StarFile};
use cryoprune_formats::PickFormat;
use serde::{Deserialize, Serialize};

use crate::events::Events;
use crate::picker::pick::{self, PickConfig, PickSummary};
use crate::prune::{self, PruneConfig, Summary};
use crate::{invalid, Error, Result};

/// What RELION looks for when the job ends.
pub const SUCCESS: &str = "RELION_JOB_EXIT_SUCCESS";
pub const FAILURE: &str = "RELION_JOB_EXIT_FAILURE";
pub const OUTPUT_NODES: &str = "RELION_OUTPUT_NODES.star";
/// Written by 3.1 beside the pruned coordinate files: they end in `_cryoprune.star`.
const SUFFIX_NODE: &str = "coords_suffix_cryoprune.star";
const SUFFIX: &str = "_cryoprune.star";
const PARTICLES_NODE: &str = "particles.star";
const LOG_NODE: &str = "logfile.pdf";

/// When RELION's arguments themselves cannot be read (`args` as the process got them), the job
/// still ends as RELION expects: a failure file where it waits for one (`--pipeline_control`,
/// else `--o`), or RELION would show the job running for ever.
pub fn arguments_failed(args: &[String]) {
    if args.get(1).map(String::as_str) != Some("relion") {
        return;
    }
    let value = |flag: &str| args.windows(2).find(|w| w[0] == flag).map(|w| &w[1]);
    if let Some(dir) = value("--pipeline_control").or(value("--o")) {
        let dir = PathBuf::from(dir);
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(FAILURE), "");
    }
}

/// A yes/no parameter: RELION's GUI writes Yes/No, scripts true/false.
pub fn yes_no(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "y" | "true" | "1" => Ok(true),
        "no" | "n" | "false" | "0" => Ok(false),
        _ => Err(format!("`{v}`: expected yes or no")),
    }
}

/// Which RELION the job speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Version {
    /// 3.1: coordinate folder and suffix, numbered node types.
    V3,
    /// 4 and 5: coordinate-file index STARs, labelled node types.
    V4,
}

impl std::str::FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim() {
            "3" | "3.1" => Ok(Version::V3),
            "4" | "4.0" | "5" | "5.0" => Ok(Version::V4),
            _ => Err(format!("`{s}`: expected 3.1, 4 or 5")),
        }
    }
}

/// An External job's settings: RELION's own arguments, and prune's (its `micrographs`,
/// `picks` and `out` are set here from the input nodes).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RelionPruneConfig {
    /// The job folder (`--o`), relative to the project folder RELION runs the job in.
    pub job: PathBuf,
    /// Where RELION waits for the exit files (`--pipeline_control`); None: the job folder.
    pub control: Option<PathBuf>,
    pub in_mics: Option<PathBuf>,
    pub in_coords: Option<PathBuf>,
    pub in_parts: Option<PathBuf>,
    /// None: told by `default_pipeline.star` in the project folder, else by the coordinates.
    pub version: Option<Version>,
    pub prune: PruneConfig,
}

/// Runs the job and leaves RELION's exit file where it waits for it: on failure
/// `RELION_JOB_EXIT_FAILURE` (the reason goes to stderr, which RELION shows as run.err).
pub fn run(cfg: &RelionPruneConfig, events: &dyn Events) -> Result<Summary> {
    as_job(&cfg.job, cfg.control.as_deref(), || run_job(cfg, events))
}

/// `relion pick`'s settings: RELION's arguments, and pick's (its micrographs, output and
/// format are set here from the input node and the job folder).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RelionPickConfig {
    /// The job folder (`--o`), relative to the project folder RELION runs the job in.
    pub job: PathBuf,
    /// Where RELION waits for the exit files (`--pipeline_control`); None: the job folder.
    pub control: Option<PathBuf>,
    /// The micrographs STAR to pick.
    pub in_mics: PathBuf,
    /// None: told by `default_pipeline.star` in the project folder, else 4/5.
    pub version: Option<Version>,
    pub pick: PickConfig,
}

/// Picks the input micrographs with a picker from `picker train` as an External job: the
/// coordinate files where RELION looks for them, the coordinates node of that RELION version,
/// a PDF log and the exit file.
pub fn run_pick(cfg: &RelionPickConfig, events: &dyn Events) -> Result<PickSummary> {
    as_job(&cfg.job, cfg.control.as_deref(), || pick_job(cfg, events))
}

fn pick_job(cfg: &RelionPickConfig, events: &dyn Events) -> Result<PickSummary> {
    let job = &cfg.job;
    let staging = job.join("cryoprune").join("picks");
    let pick = PickConfig {
        micrographs: vec![cfg.in_mics.display().to_string()],
        out: staging.clone(),
        format: Some(PickFormat::Star),
        ..cfg.pick.clone()
    };
    let mut summary = pick::run(&pick, events)?;
    let picked: Vec<Coordinates> = micrograph_names(&cfg.in_mics)?
        .into_iter()
        .map(|m| {
            let file = coordinate_file(&staging, &m, PickFormat::Star);
            (m, file)
        })
        .collect();
    // pick writes a file for every micrograph, even one without picks.
    if let Some((m, file)) = picked.iter().find(|(_, f)| !f.is_file()) {
        invalid!(
            "pick wrote no {} for micrograph {m}: was it read from another path than {} names?",
            file.display(),
            cfg.in_mics.display()
        );
    }
    let written = place_coordinates(job, &picked)?;
    // What is left is pick's own index of the files just moved.
    let _ = std::fs::remove_dir_all(&staging);
    let _ = std::fs::remove_dir(job.join("cryoprune"));
    let version = cfg.version.unwrap_or_else(|| detect_version(None));
    let node = coordinates_node(job, version, Some(cfg.in_mics.clone()), &written)?;
    summary.files = written.into_iter().map(|(_, f)| f).collect();
    summary.files.push(job.join(node));
    events.note(format!(
        "coordinate files placed in {} as RELION looks for them; its coordinates node: {}",
        job.display(),
        job.join(node).display()
    ));
    let log = format!(
        "cryoprune relion pick\npicker: {}\n{} picks on {} (score >= {:.3} log-odds)\n",
        cfg.pick.model.display(),
        summary.picks,
        crate::count(summary.micrographs, "micrograph"),
        summary.threshold
    );
    write_pdf(&job.join(LOG_NODE), &log)?;
    let nodes = [(node, Node::Coordinates), (LOG_NODE, Node::Log)];
    write_output_nodes(job, version, &nodes)?;
    Ok(summary)
}

/// Creates the job folders, clears the last run's exit files, runs `job` and leaves the exit
/// file of its outcome.
fn as_job<T>(job: &Path, control: Option<&Path>, run: impl FnOnce() -> Result<T>) -> Result<T> {
    let control = control.unwrap_or(job);
    for dir in [job, control] {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io(dir.to_path_buf(), e))?;
    }
    for f in [SUCCESS, FAILURE] {
        let _ = std::fs::remove_file(control.join(f));
    }
    let result = run();
    let exit = control.join(if result.is_ok() { SUCCESS } else { FAILURE });
    std::fs::write(&exit, "").map_err(|e| Error::Io(exit, e))?;
    result
}

fn run_job(cfg: &RelionPruneConfig, events: &dyn Events) -> Result<Summary> {
    let job = &cfg.job;
    let staging = job.join("cryoprune");
    let mut prune = cfg.prune.clone();
    prune.relion_columns = true;
    prune.per_micrograph = false;
    prune.scores = Some(staging.join("scores.csv"));
    prune.report = Some(staging.join("report.html"));
    let version = cfg
        .version
        .unwrap_or_else(|| detect_version(cfg.in_coords.as_deref()));
    let (outputs, summary) = match (&cfg.in_coords, &cfg.in_parts) {
        (Some(coords), None) => {
            let mics = micrographs_of(cfg, coords)?;
            let (files, missing) = coordinate_files(coords, &mics)?;
            if files.is_empty() {
                invalid!("no coordinate file of {} exists", coords.display());
            }
            if let Some(first) = missing.first() {
                let have = if missing.len() == 1 { "has" } else { "have" };
                events.warn(format!(
                    "{} of the micrographs {} names {have} no coordinate file (e.g. {first}); \
                     left out",
                    missing.len(),
                    coords.display()
                ));
            }
            prune.micrographs = files.iter().map(|(m, _)| m.clone()).collect();
            prune.picks = files.iter().map(|(_, c)| c.clone()).collect();
            prune.out = staging.join("pruned");
            let summary = prune::run(&prune, events)?;
            // Where prune wrote each: named as it names its outputs, so coordinate files of one
            // name in two micrograph folders do not meet.
            let inputs: Vec<&Path> = files.iter().map(|(_, c)| c.as_path()).collect();
            let pruned: Vec<Coordinates> = (files.iter().zip(distinct_names(&inputs)))
                .map(|((m, _), name)| (m.clone(), prune.out.join(name)))
                .collect();
            let written = place_coordinates(job, &pruned)?;
            let mics_star = cfg.in_mics.clone().or_else(|| suffix_target(coords));
            let node = coordinates_node(job, version, mics_star, &written)?;
            (vec![(node, Node::Coordinates)], summary)
        }
        (None, Some(parts)) => {
            // prune reads the particles itself; here they are read only for their micrographs.
            let names = match &cfg.in_mics {
                Some(m) => micrograph_names(m)?,
                None => column_values(
                    &StarFile::read(parts)?,
                    parts,
                    "particles",
                    "rlnMicrographName",
                )?,
            };
            prune.micrographs = unique(names);
            prune.picks = vec![parts.clone()];
            prune.out = job.join(PARTICLES_NODE);
            let summary = prune::run(&prune, events)?;
            (vec![(PARTICLES_NODE, Node::Particles)], summary)
        }
        _ => invalid!("give RELION's input coordinates (--in_coords) or particles (--in_parts)"),
    };
    let mut nodes = outputs;
    write_pdf(&job.join(LOG_NODE), &summary.to_text())?;
    nodes.push((LOG_NODE, Node::Log));
    write_output_nodes(job, version, &nodes)?;
    Ok(summary)
}

/// What an output node holds.
#[derive(Debug, Clone, Copy)]
enum Node {
    Coordinates,
    Particles,
    Log,
}

impl Node {
    /// RELION 3.1's node type numbers (pipeline_jobs.h).
    fn number(self) -> u32 {
        match self {
            Node::Coordinates => 2,
            Node::Particles => 3,
            Node::Log => 13,
        }
    }

    /// RELION 4 and 5's node type labels.
    fn label(self) -> &'static str {
        match self {
            Node::Coordinates => "MicrographsCoords.star.relion",
            Node::Particles => "ParticlesData.star.relion",
            Node::Log => "LogFile.pdf.relion",
        }
    }
}

fn write_output_nodes(job: &Path, version: Version, nodes: &[(&str, Node)]) -> Result<()> {
    let column = match version {
        Version::V3 => "rlnPipeLineNodeType",
        Version::V4 => "rlnPipeLineNodeTypeLabel",
    };
    let mut l = Loop::new(vec!["rlnPipeLineNodeName".into(), column.into()]);
    for (name, node) in nodes {
        let kind = match version {
            Version::V3 => node.number().to_string(),
            Version::V4 => node.label().to_string(),
        };
        l.rows
            .push(vec![job.join(name).display().to_string(), kind]);
    }
    write_loop(&job.join(OUTPUT_NODES), "output_nodes", l)
}

fn write_loop(path: &Path, block: &str, l: Loop) -> Result<()> {
    let mut b = Block::new(block);
    b.items.push(Item::Loop(l));
    let star = StarFile {
        blocks: vec![b],
        ..Default::default()
    };
    star.write(path)?;
    Ok(())
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    write_atomic(path, |w| w.write_all(text.as_bytes()))?;
    Ok(())
}

/// 3.1 when the project's pipeline numbers its node types (or the coordinates come as a
/// `coords_suffix` node), else 4/5.
fn detect_version(coords: Option<&Path>) -> Version {
    if let Ok(text) = std::fs::read_to_string("default_pipeline.star") {
        if text.contains("_rlnPipeLineNodeTypeLabel") {
            return Version::V4;
        }
        if text.contains("_rlnPipeLineNodeType") {
            return Version::V3;
        }
    }
    match coords {
        Some(c) if is_suffix_node(c) => Version::V3,
        _ => Version::V4,
    }
}

/// Writes the coordinates node for `written` (micrograph, coordinate file): 3.1's suffix node
/// naming the micrographs STAR (its Extract finds the micrographs there), or 4/5's index.
/// Returns the node's name.
fn coordinates_node(
    job: &Path,
    version: Version,
    mics_star: Option<PathBuf>,
    written: &[Coordinates],
) -> Result<&'static str> {
    Ok(match version {
        Version::V3 => {
            let text = mics_star.map_or(String::new(), |p| p.display().to_string());
            write_text(&job.join(SUFFIX_NODE), &format!("{text}\n"))?;
            SUFFIX_NODE
        }
        Version::V4 => {
            write_relion_index(&job.join(COORDINATES_INDEX), written)?;
            COORDINATES_INDEX
        }
    })
}

fn is_suffix_node(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("coords_suffix") && n.ends_with(".star"))
}

/// The micrographs STAR a 3.1 `coords_suffix` node names (its one line).
fn suffix_target(node: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(node).ok()?;
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    Some(PathBuf::from(line))
}

/// The micrograph names of `--in_mics`, or of the micrographs STAR a 3.1 suffix node names.
fn micrographs_of(cfg: &RelionPruneConfig, coords: &Path) -> Result<Vec<String>> {
    if let Some(m) = &cfg.in_mics {
        return micrograph_names(m);
    }
    if is_suffix_node(coords) {
        if let Some(m) = suffix_target(coords) {
            return micrograph_names(&m);
        }
        invalid!(
            "{} names no micrographs STAR; give --in_mics",
            coords.display()
        );
    }
    Ok(Vec::new())
}

fn micrograph_names(star: &Path) -> Result<Vec<String>> {
    let file = StarFile::read(star)?;
    column_values(&file, star, "micrographs", "rlnMicrographName")
}

/// The values of `column` in block `block` (else in the first loop that has it).
fn column_values(star: &StarFile, path: &Path, block: &str, column: &str) -> Result<Vec<String>> {
    let Some((_, l, c)) = crate::inputs::loop_with(star, block, column) else {
        invalid!("{}: no loop with _{column}", path.display());
    };
    Ok(l.rows.iter().map(|r| r[c].to_string()).collect())
}

fn unique(names: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    names
        .into_iter()
        .filter(|n| seen.insert(n.clone()))
        .collect()
}

/// A micrograph and its coordinate file.
type Coordinates = (String, PathBuf);

/// (micrograph, its coordinate file) for every micrograph with one: 3.1 looks in the suffix
/// node's folder under the micrograph's path without its job folder; 4/5 list them. Second,
/// the micrographs whose coordinate file is missing (picking stopped before them, or files
/// moved).
fn coordinate_files(coords: &Path, mics: &[String]) -> Result<(Vec<Coordinates>, Vec<String>)> {
    let expected: Vec<Coordinates> = if is_suffix_node(coords) {
        let dir = coords.parent().unwrap_or(Path::new(""));
        let name = coords.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let suffix = &name["coords_suffix".len()..];
        mics.iter()
            .map(|m| {
                let mut file = dir.join(relion_coordinate_stem(m)).into_os_string();
                file.push(suffix);
                (m.clone(), PathBuf::from(file))
            })
            .collect()
    } else {
        let star = StarFile::read(coords)?;
        let names = column_values(&star, coords, "coordinate_files", "rlnMicrographName")?;
        let files = column_values(
            &star,
            coords,
            "coordinate_files",
            "rlnMicrographCoordinates",
        )?;
        let listed: Option<std::collections::HashSet<&String>> =
            (!mics.is_empty()).then(|| mics.iter().collect());
        names
            .into_iter()
            .zip(files)
            .filter(|(m, _)| listed.as_ref().is_none_or(|l| l.contains(m)))
            .map(|(m, f)| (m, PathBuf::from(f)))
            .collect()
    };
    let (found, missing): (Vec<_>, Vec<_>) = expected.into_iter().partition(|(_, f)| f.is_file());
    Ok((found, missing.into_iter().map(|(m, _)| m).collect()))
}

/// Moves each (micrograph, coordinate file) to where RELION looks for it (the micrograph's
/// path without its job folder, `_cryoprune.star`); returns (micrograph, file) of those there
/// were.
fn place_coordinates(job: &Path, files: &[Coordinates]) -> Result<Vec<Coordinates>> {
    let mut placed = Vec::new();
    for (mic, from) in files {
        if !from.is_file() {
            continue;
        }
        let mut to = job.join(relion_coordinate_stem(mic)).into_os_string();
        to.push(SUFFIX);
        let to = PathBuf::from(to);
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::Io(dir.to_path_buf(), e))?;
        }
        std::fs::rename(from, &to).map_err(|e| Error::Io(from.clone(), e))?;
        placed.push((mic.clone(), to));
    }
    Ok(placed)
}

/// A one-page PDF of `text` in Courier (RELION's log nodes are PDFs, shown by its viewer).
fn write_pdf(path: &Path, text: &str) -> Result<()> {
    let escape = |l: &str| {
        l.chars()
            .filter(|c| c.is_ascii() && !c.is_ascii_control())
            .flat_map(|c| match c {
                '(' | ')' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect::<String>()
    };
    let mut content = String::from("BT /F1 9 Tf 11 TL 40 800 Td\n");
    for line in text.lines().take(70) {
        content.push_str(&format!("({}) '\n", escape(line)));
    }
    content.push_str("ET\n");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] \
         /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>"
            .to_string(),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Courier >>".to_string(),
        format!(
            "<< /Length {} >>\nstream\n{content}endstream",
            content.len()
        ),
    ];
    let mut pdf = String::from("%PDF-1.4\n");
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.push_str(&format!("{} 0 obj\n{o}\nendobj\n", i + 1));
    }
    let xref = pdf.len();
    pdf.push_str(&format!(
        "xref\n0 {}\n0000000000 65535 f \n",
        objects.len() + 1
    ));
    for o in offsets {
        pdf.push_str(&format!("{o:010} 00000 n \n"));
    }
    pdf.push_str(&format!(
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    ));
    write_text(path, &pdf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pdf_log_lists_its_objects_at_their_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.pdf");
        write_pdf(&path, "kept 3 (50%)\nback\\slash (x)").unwrap();
        let pdf = std::fs::read_to_string(&path).unwrap();
        assert!(pdf.starts_with("%PDF-1.4") && pdf.ends_with("%%EOF\n"));
        assert!(pdf.contains("(kept 3 \\(50%\\)) '") && pdf.contains("back\\\\slash"));
        let xref: usize = pdf
            .rsplit("startxref\n")
            .next()
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(pdf[xref..].starts_with("xref\n0 6\n"));
        for (i, line) in pdf[xref..].lines().skip(3).take(5).enumerate() {
            let at: usize = line[..10].parse().unwrap();
            assert!(
                pdf[at..].starts_with(&format!("{} 0 obj", i + 1)),
                "object {}",
                i + 1
            );
        }
    }

    #[test]
    fn versions_read_as_relion_names_them() {
        assert_eq!("3.1".parse::<Version>().unwrap(), Version::V3);
        assert_eq!("5".parse::<Version>().unwrap(), Version::V4);
        assert!("2".parse::<Version>().is_err());
        assert!(is_suffix_node(Path::new(
            "AutoPick/job006/coords_suffix_autopick.star"
        )));
        assert!(!is_suffix_node(Path::new("AutoPick/job006/autopick.star")));
    }
}
