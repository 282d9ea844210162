//! Particle coordinates from every picker, in one model.
//!
//! A [`PickSet`] holds, per micrograph, pick centres in pixels of the micrograph as stored
//! (x = column, y = row), an optional score and label, and a link back to the row each pick came
//! from. Writers use that link: writing a subset in the input's own format re-emits the original
//! rows (every column kept, optics and header blocks unchanged) with any new columns appended.
//! Writing to another format builds fresh rows from the centres.

pub mod check;
mod cs;
mod star;
mod text;

pub use star::write_relion_index;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::cryosparc::{self, Output};
use crate::error::{FormatError, Location, Result};
use crate::npy::StructArray;
use crate::star::StarFile;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum PickFormat {
    /// RELION STAR: per-micrograph coordinate files or one particle file with micrograph names.
    Star,
    /// cryoSPARC `.cs` (NumPy structured array) with `location/*` fields.
    Cs,
    /// EMAN `.box`: lower-left corner, width, height, optional score.
    Box,
    /// crYOLO `.cbox`: STAR dialect (crYOLO >= 1.8) or the older whitespace table.
    Cbox,
    /// Topaz: tab-separated `image_name x_coord y_coord [score]`, centres.
    Topaz,
    /// CSV with a header: `micrograph,x,y[,score][,label]`, centres.
    Csv,
}

impl std::str::FromStr for PickFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        PickFormat::from_name(s).ok_or_else(|| {
            format!("unknown format `{s}`; expected star, cs, box, cbox, topaz or csv")
        })
    }
}

impl std::fmt::Display for PickFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            PickFormat::Star => "star",
            PickFormat::Cs => "cs",
            PickFormat::Box => "box",
            PickFormat::Cbox => "cbox",
            PickFormat::Topaz => "topaz",
            PickFormat::Csv => "csv",
        })
    }
}

impl PickFormat {
    pub fn from_path(path: &Path) -> Option<PickFormat> {
        let ext = path.extension()?.to_string_lossy().to_ascii_lowercase();
        Some(match ext.as_str() {
            "star" => PickFormat::Star,
            "cs" => PickFormat::Cs,
            "box" => PickFormat::Box,
            "cbox" => PickFormat::Cbox,
            "txt" | "tsv" => PickFormat::Topaz,
            "csv" => PickFormat::Csv,
            _ => return None,
        })
    }

    pub fn from_name(name: &str) -> Option<PickFormat> {
        Some(match name.to_ascii_lowercase().as_str() {
            "star" | "relion" => PickFormat::Star,
            "cs" | "cryosparc" => PickFormat::Cs,
            "box" | "eman" => PickFormat::Box,
            "cbox" | "cryolo" => PickFormat::Cbox,
            "topaz" | "txt" => PickFormat::Topaz,
            "csv" => PickFormat::Csv,
            _ => return None,
        })
    }

    pub fn extension(self) -> &'static str {
        match self {
            PickFormat::Star => "star",
            PickFormat::Cs => "cs",
            PickFormat::Box => "box",
            PickFormat::Cbox => "cbox",
            PickFormat::Topaz => "txt",
            PickFormat::Csv => "csv",
        }
    }

    /// Whether `out` names one file of this format (its extension, and no trailing separator)
    /// rather than a folder of them.
    pub fn names_one_file(self, out: &Path) -> bool {
        !crate::names::names_a_folder(out)
            && out
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case(self.extension()))
    }

    /// The format picks are written to `out` in: `given`, else the one `out`'s extension names,
    /// else STAR (a folder). An `out` whose extension names another pick format than `given` is
    /// refused: it would become a folder of that name, which no reader takes for picks.
    pub fn for_output(out: &Path, given: Option<PickFormat>) -> Result<PickFormat> {
        let named = if crate::names::names_a_folder(out) {
            None
        } else {
            PickFormat::from_path(out)
        };
        match (given, named) {
            (Some(g), Some(n)) if g != n => Err(FormatError::invalid(
                out,
                Location::Whole,
                format!(
                    "the name says {n} but the format asked for is {g}: name the file .{} or \
                     give a folder (ending in /) for one file per micrograph",
                    g.extension()
                ),
            )),
            (Some(g), _) => Ok(g),
            (None, n) => Ok(n.unwrap_or(PickFormat::Star)),
        }
    }

    /// Formats that hold one micrograph per file.
    pub fn per_micrograph_only(self) -> bool {
        matches!(self, PickFormat::Box | PickFormat::Cbox)
    }
}

/// Which row of which source file a pick came from. (32 bits each: a project has millions of
/// picks, and every byte of a pick is ten megabytes of them.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowRef {
    file: u32,
    row: u32,
}

impl RowRef {
    pub fn new(file: usize, row: usize) -> RowRef {
        let narrow = |v: usize| u32::try_from(v).expect("under 4 billion files and rows");
        RowRef {
            file: narrow(file),
            row: narrow(row),
        }
    }

    pub fn file(self) -> usize {
        self.file as usize
    }

    pub fn row(self) -> usize {
        self.row as usize
    }
}

/// One pick, kept small (80 bytes): a project's ten million picks are all in memory at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    /// Centre, pixels of the micrograph as stored: x = column, y = row.
    pub x: f64,
    pub y: f64,
    pub score: Option<f64>,
    pub label: Option<Box<str>>,
    pub source: Option<RowRef>,
    /// Values of [`PickSet::extra_columns`], one per column.
    pub extra: Box<[String]>,
}

impl Pick {
    pub fn new(x: f64, y: f64) -> Pick {
        Pick {
            x,
            y,
            score: None,
            label: None,
            source: None,
            extra: Box::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MicrographPicks {
    /// The micrograph as the pick file names it (file stem for per-micrograph files).
    pub micrograph: String,
    pub picks: Vec<Pick>,
}

/// The original content of one input file, kept for writing subsets back in the same format.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub content: Content,
}

#[derive(Debug, Clone)]
pub enum Content {
    Star {
        star: StarFile,
        block: usize,
    },
    Cs(StructArray),
    /// Whitespace/tab/comma tables: `.box`, legacy `.cbox`, Topaz, CSV.
    Table {
        header: Option<Vec<String>>,
        rows: Vec<Vec<String>>,
    },
}

#[derive(Debug, Clone)]
pub struct PickSet {
    pub format: PickFormat,
    pub micrographs: Vec<MicrographPicks>,
    pub files: Vec<SourceFile>,
    /// Names of columns added by cryoprune (class, probabilities), written after the originals.
    pub extra_columns: Vec<String>,
    /// Box size in pixels when the file states one (`.box`, `.cbox` widths).
    pub box_size: Option<f64>,
    /// The RELION 4/5 indexes (`autopick.star`) the files were read through, so that a folder
    /// of outputs can carry one too: RELION's Extract takes the index, not the files.
    pub indexes: Vec<RelionIndex>,
    /// The RELION 3.1 coordinates nodes the files were read through: outputs keep the layout
    /// below the job folder, and the node, for `relion_preprocess --coord_dir`.
    pub suffix_nodes: Vec<SuffixNode>,
    /// cryoSPARC passthrough files whose fields were joined to a main `.cs` by `uid`: inputs
    /// too, though no output is named after them.
    pub joined: Vec<PathBuf>,
}

/// A RELION 3.1 coordinates node (`coords_suffix_autopick.star`) as read: its job folder, below
/// which its coordinate files lie as RELION's Extract looks for them.
#[derive(Debug, Clone)]
pub struct SuffixNode {
    pub path: PathBuf,
    pub job: PathBuf,
}

/// An index to write, and the entries of the read indexes it lists, each with its index.
type IndexOutput<'a> = (PathBuf, Vec<(&'a RelionIndex, &'a (String, usize))>);
/// The indexes to write, and the 3.1 nodes with where each goes.
type NodeOutputs<'a> = (Vec<IndexOutput<'a>>, Vec<(&'a SuffixNode, PathBuf)>);

/// A RELION 4/5 index of coordinate files as read.
#[derive(Debug, Clone)]
pub struct RelionIndex {
    pub path: PathBuf,
    /// Each entry's micrograph, as the index names it, and the set's file holding its picks.
    pub entries: Vec<(String, usize)>,
    /// The folder its paths are relative to (RELION's project folder; empty: the working
    /// folder), None where they are absolute.
    pub project: Option<PathBuf>,
}

impl RelionIndex {
    /// `file` as an index beside this one lists it: relative to the same project folder, so
    /// RELION finds it wherever cryoprune ran; absolute where it lies outside that folder, or
    /// where this index's paths are absolute. `file` must exist.
    pub fn listing(&self, file: &Path) -> PathBuf {
        crate::names::relative_to(self.project.as_deref(), file)
    }
}

/// The name of the coordinate-file index cryoprune writes where no index was read: by its
/// External jobs (`relion prune`, `relion pick`) and `prune --per-micrograph`.
pub const COORDINATES_INDEX: &str = "coordinates.star";
/// The coordinate-file indexes RELION 4/5's AutoPick (Topaz's too) and ManualPick jobs write,
/// and cryoprune's own.
const RELION_INDEXES: [&str; 3] = ["autopick.star", "manualpick.star", COORDINATES_INDEX];
/// RELION 3.1's coordinates node, `coords_suffix_<suffix>.star`: each micrograph's picks are in
/// `<job>/<micrograph path without its job folder>_<suffix>.star`.
const RELION_SUFFIX_NODE: &str = "coords_suffix";

/// The pick files of a RELION picking job given as its folder or its coordinates node: the
/// index (4/5), or every `*_<suffix>.star` below the folder (3.1, with its node and folder).
/// The job folder's other files (job.star, note.txt, run.out) are no picks. `None` for anything
/// else.
fn relion_job_files(p: &Path) -> Result<Option<(Vec<PathBuf>, Option<SuffixNode>)>> {
    let is_node = |f: &Path| {
        f.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(RELION_SUFFIX_NODE)?.strip_suffix(".star"))
            .map(str::to_string)
    };
    let (job, node) = if p.is_dir() {
        // By content, not name alone: `coordinates.star` could as well be a file of picks.
        for index in RELION_INDEXES.iter().map(|n| p.join(n)) {
            if index.is_file() && star::is_index(&index)? {
                return Ok(Some((vec![index], None)));
            }
        }
        let mut nodes: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(|e| FormatError::io(p, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| f.is_file() && is_node(f).is_some())
            .collect();
        nodes.sort();
        match nodes.pop() {
            Some(node) => (p.to_path_buf(), node),
            None => return Ok(None),
        }
    } else if is_node(p).is_some() {
        (
            p.parent().unwrap_or(Path::new(".")).to_path_buf(),
            p.to_path_buf(),
        )
    } else {
        return Ok(None);
    };
    let ending = format!("{}.star", is_node(&node).unwrap_or_default());
    let mut found = Vec::new();
    let mut folders = vec![job.clone()];
    while let Some(dir) = folders.pop() {
        for e in std::fs::read_dir(&dir).map_err(|e| FormatError::io(&dir, e))? {
            let f = e.map_err(|e| FormatError::io(&dir, e))?.path();
            if f.is_dir() {
                folders.push(f);
            } else if is_node(&f).is_none() && f.to_string_lossy().ends_with(&ending) {
                found.push(f);
            }
        }
    }
    if found.is_empty() {
        return Err(FormatError::invalid(
            &node,
            Location::Whole,
            format!(
                "no coordinate files `*{ending}` below {}, where RELION 3.1 writes them",
                job.display()
            ),
        ));
    }
    found.sort();
    Ok(Some((found, Some(SuffixNode { path: node, job }))))
}

impl PickSet {
    pub fn empty(format: PickFormat) -> PickSet {
        PickSet {
            format,
            micrographs: Vec::new(),
            files: Vec::new(),
            extra_columns: Vec::new(),
            box_size: None,
            indexes: Vec::new(),
            suffix_nodes: Vec::new(),
            joined: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.micrographs.iter().map(|m| m.picks.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Pick)> {
        self.micrographs
            .iter()
            .flat_map(|m| m.picks.iter().map(move |p| (m.micrograph.as_str(), p)))
    }

    fn group_of(&mut self, name: &str, index: &mut HashMap<String, usize>) -> usize {
        *index.entry(name.to_string()).or_insert_with(|| {
            self.micrographs.push(MicrographPicks {
                micrograph: name.to_string(),
                picks: Vec::new(),
            });
            self.micrographs.len() - 1
        })
    }

    /// Adds picks, grouping by micrograph name in order of first appearance.
    pub fn push(&mut self, micrograph: &str, pick: Pick, index: &mut HashMap<String, usize>) {
        let g = self.group_of(micrograph, index);
        self.micrographs[g].picks.push(pick);
    }

    /// Keeps the picks for which `keep` is true; micrographs left with none stay listed, so a
    /// per-micrograph writer still produces their (empty) files.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &Pick) -> bool) {
        for m in &mut self.micrographs {
            let name = m.micrograph.clone();
            m.picks.retain(|p| keep(&name, p));
        }
    }

    /// Adds a column to every pick; `value` gives its text for each pick.
    pub fn add_column(&mut self, name: &str, mut value: impl FnMut(&str, &Pick) -> String) {
        self.extra_columns.push(name.to_string());
        for m in &mut self.micrographs {
            let mic = m.micrograph.clone();
            for p in &mut m.picks {
                let v = value(&mic, p);
                let mut extra = std::mem::take(&mut p.extra).into_vec();
                extra.push(v);
                p.extra = extra.into_boxed_slice();
            }
        }
    }

    /// Sets every pick's score. EMAN `.box` readers take at most five columns, so there a new
    /// column cannot be added: the score replaces the 5th column of the original rows (added
    /// where a row had four), and a preserving write carries it.
    pub fn set_scores(&mut self, mut value: impl FnMut(&str, &Pick) -> f64) {
        let is_box = self.format == PickFormat::Box;
        for m in &mut self.micrographs {
            for p in &mut m.picks {
                let v = value(&m.micrograph, p);
                p.score = Some(v);
                let Some(src) = p.source.filter(|_| is_box) else {
                    continue;
                };
                if let Some(SourceFile {
                    content: Content::Table { rows, .. },
                    ..
                }) = self.files.get_mut(src.file())
                {
                    if let Some(row) = rows.get_mut(src.row()) {
                        row.truncate(4);
                        row.push(num(v));
                    }
                }
            }
        }
    }

    /// Multiplies every centre by `factor` (picks made on binned micrographs).
    pub fn scale(&mut self, factor: f64) {
        for m in &mut self.micrographs {
            for p in &mut m.picks {
                p.x *= factor;
                p.y *= factor;
            }
        }
    }

    /// Reads one or more pick files or folders of them. All must be of one format.
    pub fn read(paths: &[PathBuf], format: Option<PickFormat>) -> Result<PickSet> {
        let mut files = Vec::new();
        let mut suffix_nodes: Vec<SuffixNode> = Vec::new();
        // A cryoSPARC output's main `.cs`, and the files whose fields are joined to it.
        let mut joins: HashMap<PathBuf, Vec<PathBuf>> = HashMap::new();
        for p in paths {
            if let Some(output) = cryosparc::job_output(p, Output::Particles)? {
                joins.insert(output.main.clone(), output.joined);
                files.push(output.main);
            } else if let Some((found, node)) = relion_job_files(p)? {
                files.extend(found);
                suffix_nodes.extend(node);
            } else if p.is_dir() {
                let mut inside: Vec<PathBuf> = std::fs::read_dir(p)
                    .map_err(|e| FormatError::io(p, e))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|f| f.is_file() && detect_format(f, format).is_some())
                    .collect();
                inside.sort();
                if inside.is_empty() {
                    // Coordinate files in RELION's layout sit below the folder named for them
                    // (`picks/Micrographs/x.star`): point there rather than only refuse.
                    let hint = nested_pick_folder(p, format, 4)
                        .map(|d| format!("; {} does: give that folder", d.display()))
                        .unwrap_or_default();
                    return Err(FormatError::invalid(
                        p,
                        Location::Whole,
                        format!(
                            "folder holds no pick files (.star, .cs, .box, .cbox, .txt, .csv){hint}"
                        ),
                    ));
                }
                files.extend(inside);
            } else {
                files.push(p.clone());
            }
        }
        let Some(first) = files.first() else {
            return Err(FormatError::invalid(
                Path::new("(no input)"),
                Location::Whole,
                "no pick files given",
            ));
        };
        let fmt = detect_format(first, format).ok_or_else(|| {
            FormatError::unsupported(first, "cannot tell the pick format from the extension; expected .star, .cs, .box, .cbox, .txt or .csv (or say --format)")
        })?;
        let mut set = PickSet::empty(fmt);
        let mut index = HashMap::new();
        for f in &files {
            let this = detect_format(f, format);
            if this != Some(fmt) {
                return Err(FormatError::invalid(
                    f,
                    Location::Whole,
                    format!(
                        "mixed pick formats: expected {fmt:?} like {}",
                        first.display()
                    ),
                ));
            }
            let file_index = set.files.len();
            match fmt {
                PickFormat::Star => {
                    let Some(listed) = star::read(f, file_index, &mut set, &mut index, None)?
                    else {
                        continue;
                    };
                    let mut entries = Vec::with_capacity(listed.len());
                    let project = listed.first().and_then(|l| l.project.clone());
                    for l in listed {
                        let file_index = set.files.len();
                        star::read(
                            &l.file,
                            file_index,
                            &mut set,
                            &mut index,
                            Some(&l.micrograph),
                        )?;
                        entries.push((l.micrograph, file_index));
                    }
                    set.indexes.push(RelionIndex {
                        path: f.clone(),
                        entries,
                        project,
                    });
                }
                PickFormat::Cs => {
                    let joined = joins.get(f).map_or(&[][..], Vec::as_slice);
                    cs::read(f, joined, file_index, &mut set, &mut index)?
                }
                PickFormat::Box => text::read_box(f, file_index, &mut set, &mut index)?,
                PickFormat::Cbox => {
                    if text::is_star_text(f)? {
                        star::read_cbox(f, file_index, &mut set, &mut index)?
                    } else {
                        text::read_legacy_cbox(f, file_index, &mut set, &mut index)?
                    }
                }
                PickFormat::Topaz => text::read_topaz(f, file_index, &mut set, &mut index)?,
                PickFormat::Csv => text::read_csv(f, file_index, &mut set, &mut index)?,
            }
        }
        set.suffix_nodes = suffix_nodes;
        set.joined = joins.into_values().flatten().collect();
        set.joined.sort();
        Ok(set)
    }

    /// Each file's name in a folder of outputs: for a file of a RELION 3.1 job, its path below
    /// the job folder (`Movies/x_autopick.star`), where `relion_preprocess --coord_dir` looks;
    /// else its own, or where files share one, the folders that tell them apart
    /// ([`crate::names::distinct_names`]).
    pub fn output_names(&self) -> Vec<PathBuf> {
        let below_node: Vec<Option<&Path>> = self
            .files
            .iter()
            .map(|f| {
                let mut nodes = self.suffix_nodes.iter();
                nodes.find_map(|n| f.path.strip_prefix(&n.job).ok())
            })
            .collect();
        let others: Vec<&Path> = (self.files.iter().zip(&below_node))
            .filter(|(_, below)| below.is_none())
            .map(|(f, _)| f.path.as_path())
            .collect();
        let mut distinct = crate::names::distinct_names(&others).into_iter();
        below_node
            .into_iter()
            .map(|below| match below {
                Some(b) => b.to_path_buf(),
                None => distinct.next().expect("one name per file not below a node"),
            })
            .collect()
    }

    /// Writes the picks as `format` to `out`.
    ///
    /// `out` ending in the target's extension is one file; anything else is a folder. Written in
    /// the input's own format, each input file gives one output file of the same name holding its
    /// remaining rows, except that STARs of several micrographs give coordinate files, one per
    /// micrograph, as RELION reads them; written in another format, a folder gets one file per
    /// micrograph. Per-micrograph STAR files follow RELION's coordinate layout
    /// (`relion_coordinate_stem`), the others are named by the micrograph's stem.
    /// Returns the files written.
    pub fn write(
        &self,
        format: PickFormat,
        out: &Path,
        opts: &WriteOptions,
    ) -> Result<Vec<PathBuf>> {
        PickFormat::for_output(out, Some(format))?;
        let inputs: Vec<PathBuf> = self.files.iter().map(|f| f.path.clone()).collect();
        let out_is_file = format.names_one_file(out);
        let many = |n: usize, what: &str| {
            FormatError::invalid(
                out,
                Location::Whole,
                format!(
                    "{n} {what} cannot go into one .{} file; give a folder instead",
                    format.extension()
                ),
            )
        };
        let mut written = Vec::new();
        // RELION reads one coordinate file per micrograph, and takes a file with optics groups
        // or CTF columns for a re-extraction: a folder of STARs from a STAR of several
        // micrographs gets fresh coordinate files.
        let split = format == PickFormat::Star && !out_is_file && self.mixes_micrographs();
        if format == self.format && !self.files.is_empty() && !split {
            if !out_is_file {
                self.relion_node_outputs(out)?;
            }
            if out_is_file {
                if self.files.len() > 1 {
                    return Err(many(self.files.len(), "input files"));
                }
                crate::atomic::ensure_not_input(out, &inputs)?;
                self.write_preserving(0, out)?;
                return Ok(vec![out.to_path_buf()]);
            }
            for (fi, name) in self.output_names().iter().enumerate() {
                let dest = out.join(name);
                crate::atomic::ensure_not_input(&dest, &inputs)?;
                self.write_preserving(fi, &dest)?;
                written.push(dest);
            }
            let dests = written.clone();
            written.extend(self.write_relion_nodes(out, &dests)?);
            return Ok(written);
        }
        if out_is_file {
            if format.per_micrograph_only() && self.micrographs.len() > 1 {
                return Err(many(self.micrographs.len(), "micrographs"));
            }
            crate::atomic::ensure_not_input(out, &inputs)?;
            self.write_fresh(
                format,
                &self.micrographs.iter().collect::<Vec<_>>(),
                out,
                opts,
            )?;
            return Ok(vec![out.to_path_buf()]);
        }
        self.write_per_micrograph(format, out, opts)
    }

    /// For each RELION index the set was read through, an index of the same name in `dir`
    /// listing `dests[file]` where the read one listed the file, each under the micrograph it
    /// named: what RELION's Extract takes as its coordinates. Two indexes of one name (two
    /// picking jobs) become one. For each RELION 3.1 node, a copy naming the same micrographs
    /// STAR (the files went to `dir` in the job's layout, [`PickSet::output_names`]). Returns
    /// the files written.
    pub fn write_relion_nodes(&self, dir: &Path, dests: &[PathBuf]) -> Result<Vec<PathBuf>> {
        let (indexes, nodes) = self.relion_node_outputs(dir)?;
        let mut written = Vec::new();
        for (node, dest) in nodes {
            let text = std::fs::read(&node.path).map_err(|e| FormatError::io(&node.path, e))?;
            crate::atomic::write_atomic(&dest, |w| w.write_all(&text))?;
            written.push(dest);
        }
        for (dest, entries) in indexes {
            let rows: Vec<(String, PathBuf)> = entries
                .into_iter()
                .map(|(index, (m, f))| (m.clone(), index.listing(&dests[*f])))
                .collect();
            star::write_relion_index(&dest, &rows)?;
            written.push(dest);
        }
        Ok(written)
    }

    /// Where [`PickSet::write_relion_nodes`] puts each index in `dir`, with the entries it
    /// lists, and each 3.1 node; refused where that is a node or index read.
    fn relion_node_outputs(&self, dir: &Path) -> Result<NodeOutputs<'_>> {
        let inputs: Vec<PathBuf> = (self.indexes.iter().map(|i| i.path.clone()))
            .chain(self.suffix_nodes.iter().map(|n| n.path.clone()))
            .collect();
        let mut nodes = Vec::new();
        for node in &self.suffix_nodes {
            let dest = dir.join(node.path.file_name().unwrap_or_default());
            crate::atomic::ensure_not_input(&dest, &inputs)?;
            if !nodes.iter().any(|(_, d)| *d == dest) {
                nodes.push((node, dest));
            }
        }
        let mut by_name: Vec<IndexOutput> = Vec::new();
        for index in &self.indexes {
            let dest = dir.join(index.path.file_name().unwrap_or_default());
            let entries = index.entries.iter().map(|e| (index, e));
            match by_name.iter_mut().find(|(d, _)| *d == dest) {
                Some((_, listed)) => listed.extend(entries),
                None => {
                    crate::atomic::ensure_not_input(&dest, &inputs)?;
                    by_name.push((dest, entries.collect()));
                }
            }
        }
        Ok((by_name, nodes))
    }

    /// Writes one RELION coordinate STAR per micrograph under `out`, where `relion_preprocess
    /// --coord_dir OUT/ --coord_suffix .star` looks for it; returns the files written.
    pub fn write_coordinate_files(&self, out: &Path) -> Result<Vec<PathBuf>> {
        self.write_per_micrograph(PickFormat::Star, out, &WriteOptions::default())
    }

    /// One fresh file of `format` per micrograph in folder `out` (`coordinate_file` names it).
    fn write_per_micrograph(
        &self,
        format: PickFormat,
        out: &Path,
        opts: &WriteOptions,
    ) -> Result<Vec<PathBuf>> {
        let inputs: Vec<PathBuf> = self.files.iter().map(|f| f.path.clone()).collect();
        let mut written = Vec::new();
        for m in &self.micrographs {
            let dest = coordinate_file(out, &m.micrograph, format);
            crate::atomic::ensure_not_input(&dest, &inputs)?;
            self.write_fresh(format, &[m], &dest, opts)?;
            written.push(dest);
        }
        Ok(written)
    }

    /// Writes the picks of this set that came from source file `fi` to `dest`, in that file's
    /// own format with every original column, and the added columns after them.
    pub fn write_source(&self, fi: usize, dest: &Path) -> Result<()> {
        self.write_preserving(fi, dest)
    }

    /// Whether some source file holds picks of more than one micrograph.
    fn mixes_micrographs(&self) -> bool {
        let mut first: HashMap<usize, &str> = HashMap::new();
        self.iter().any(|(m, p)| {
            p.source
                .is_some_and(|s| *first.entry(s.file()).or_insert(m) != m)
        })
    }

    /// Picks of this set that came from source file `fi`, in the file's row order.
    fn picks_of_file(&self, fi: usize) -> Vec<(&str, &Pick)> {
        let mut v: Vec<(&str, &Pick)> = self
            .iter()
            .filter(|(_, p)| p.source.is_some_and(|s| s.file() == fi))
            .collect();
        v.sort_by_key(|(_, p)| p.source.map(|s| s.row()));
        v
    }

    fn write_preserving(&self, fi: usize, dest: &Path) -> Result<()> {
        let picks = self.picks_of_file(fi);
        let rows: Vec<usize> = picks
            .iter()
            .map(|(_, p)| p.source.expect("read picks").row())
            .collect();
        let value = |k: usize, c: usize| picks[k].1.extra[c].clone();
        self.write_source_rows(fi, &rows, &self.extra_columns, &value, dest)
    }

    /// Writes rows `rows` (in that order) of source file `fi` to `dest` in the file's own format
    /// with every original column, and `columns` added after them (in a STAR or `.cs`, a column
    /// the file has takes the new values in its place). `value(k, c)` is column `c`'s value for
    /// the k-th row written: computed as the file is written, so a large file's subset costs no
    /// copy of its rows.
    pub fn write_source_rows(
        &self,
        fi: usize,
        rows: &[usize],
        columns: &[String],
        value: &dyn Fn(usize, usize) -> String,
        dest: &Path,
    ) -> Result<()> {
        let inputs: Vec<PathBuf> = self.files.iter().map(|f| f.path.clone()).collect();
        crate::atomic::ensure_not_input(dest, &inputs)?;
        let added = Added { columns, value };
        match &self.files[fi].content {
            Content::Star { star, block } => {
                star::write_preserving(star, *block, rows, &added, dest)
            }
            Content::Cs(arr) => cs::write_preserving(arr, rows, &added, dest),
            Content::Table { header, rows: all } => {
                text::write_preserving(self.format, header.as_deref(), all, rows, &added, dest)
            }
        }
    }

    fn write_fresh(
        &self,
        format: PickFormat,
        mics: &[&MicrographPicks],
        dest: &Path,
        opts: &WriteOptions,
    ) -> Result<()> {
        let box_size = opts.box_size.or(self.box_size);
        match format {
            PickFormat::Star => star::write_fresh(mics, &self.extra_columns, dest),
            PickFormat::Cs => cs::write_fresh(mics, &self.extra_columns, opts, dest),
            PickFormat::Cbox => star::write_fresh_cbox(
                mics,
                &self.extra_columns,
                need_box(box_size, format, dest)?,
                dest,
            ),
            PickFormat::Box => text::write_fresh_box(
                mics,
                &self.extra_columns,
                need_box(box_size, format, dest)?,
                dest,
            ),
            PickFormat::Topaz | PickFormat::Csv => {
                text::write_fresh_table(format, mics, &self.extra_columns, dest)
            }
        }
    }
}

/// The file in folder `out` for the picks of one micrograph: RELION's coordinate layout for
/// STAR (the micrograph's path less its job prefix), the micrograph's stem for the others.
pub fn coordinate_file(out: &Path, micrograph: &str, format: PickFormat) -> PathBuf {
    let stem = if format == PickFormat::Star {
        crate::names::relion_coordinate_stem(micrograph)
    } else {
        PathBuf::from(crate::names::stem(micrograph))
    };
    let mut name = stem.into_os_string();
    name.push(".");
    name.push(format.extension());
    out.join(name)
}

fn need_box(b: Option<f64>, format: PickFormat, dest: &Path) -> Result<f64> {
    b.filter(|b| *b > 0.0).ok_or_else(|| {
        FormatError::invalid(
            dest,
            Location::Whole,
            format!(
                ".{} stores box corners, so it needs the box size: give --box PIXELS",
                format.extension()
            ),
        )
    })
}

/// Columns added to the rows of a file written in its own format, and their values for the
/// k-th row written.
pub(crate) struct Added<'a> {
    pub columns: &'a [String],
    pub value: &'a dyn Fn(usize, usize) -> String,
}

#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Box size in pixels for formats that store corners (`.box`, `.cbox`).
    pub box_size: Option<f64>,
    /// Micrograph (nx, ny) by micrograph name, for `.cs` (which stores fractions of the size).
    pub micrograph_shapes: HashMap<String, (usize, usize)>,
}

/// The first folder below `dir` (at most `depth` levels, in name order) that holds pick files.
fn nested_pick_folder(dir: &Path, format: Option<PickFormat>, depth: usize) -> Option<PathBuf> {
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|d| d.is_dir())
        .collect();
    subdirs.sort();
    for d in subdirs {
        let holds = std::fs::read_dir(&d).ok()?.filter_map(|e| e.ok()).any(|e| {
            let f = e.path();
            f.is_file() && detect_format(&f, format).is_some()
        });
        if holds {
            return Some(d);
        }
        if depth > 1 {
            if let Some(found) = nested_pick_folder(&d, format, depth - 1) {
                return Some(found);
            }
        }
    }
    None
}

fn detect_format(p: &Path, forced: Option<PickFormat>) -> Option<PickFormat> {
    forced.or_else(|| PickFormat::from_path(p))
}

/// Formats a number so it reads back to the same f64 (shortest round-trip form).
pub(crate) fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

pub(crate) fn parse_num(path: &Path, loc: Location, what: &str, s: &str) -> Result<f64> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(FormatError::invalid(
            path,
            loc,
            format!("{what} is `{s}`; expected a number"),
        )),
    }
}

/// Column names accepted as a class label in pick files.
/// `labels`/`cryopruneLabels` hold label sets (`carbon;ice`) for multi-label training.
pub const LABEL_COLUMNS: &[&str] = &[
    "label",
    "class",
    "cryopruneLabel",
    "rlnClassName",
    "labels",
    "cryopruneLabels",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_format_follows_the_name_unless_given_and_a_clash_is_refused() {
        let p = |s: &str| PathBuf::from(s);
        let f = |s: &str, g| PickFormat::for_output(&p(s), g).map_err(|e| e.to_string());
        assert_eq!(f("picks.csv", None), Ok(PickFormat::Csv));
        assert_eq!(f("picks.cs", None), Ok(PickFormat::Cs));
        assert_eq!(f("picks/", None), Ok(PickFormat::Star));
        assert_eq!(f("picks", None), Ok(PickFormat::Star));
        assert_eq!(f("picks", Some(PickFormat::Box)), Ok(PickFormat::Box));
        assert_eq!(f("boxes.csv/", Some(PickFormat::Box)), Ok(PickFormat::Box));
        assert_eq!(
            f("picks.star", Some(PickFormat::Star)),
            Ok(PickFormat::Star)
        );
        let err = f("picks.csv", Some(PickFormat::Star)).unwrap_err();
        assert!(
            err.contains("picks.csv") && err.contains("says csv") && err.contains(".star"),
            "{err}"
        );
        // Writing refuses the clash too, before touching the disk.
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x.csv");
        let set = PickSet::empty(PickFormat::Star);
        assert!(set
            .write(PickFormat::Star, &out, &WriteOptions::default())
            .is_err());
        assert!(!out.exists());
    }

    #[test]
    fn a_folder_whose_picks_sit_deeper_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("Micrographs").join("set1");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(nested.join("a.csv"), "micrograph,x,y\na,1,2\n").unwrap();
        let err = PickSet::read(&[dir.path().to_path_buf()], None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("holds no pick files") && err.contains("set1 does"),
            "{err}"
        );
        assert_eq!(PickSet::read(&[nested], None).unwrap().len(), 1);
    }

    /// RELION 4/5's AutoPick job as it lies in a project: the index, the coordinate files under
    /// the job's folder (one with no picks), and the job's other files.
    #[test]
    fn a_relion_index_of_coordinate_files_reads_as_their_picks() {
        let project = tempfile::tempdir().unwrap();
        let job = project.path().join("AutoPick/job006");
        std::fs::create_dir_all(job.join("Movies")).unwrap();
        let coords = |picks: &str| {
            format!(
                "\n# version 50001\n\ndata_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n\
                 _rlnAutopickFigureOfMerit #3\n{picks}"
            )
        };
        let write = |name: &str, text: &str| std::fs::write(job.join(name), text).unwrap();
        write("Movies/a_autopick.star", &coords("10 20 1.5\n30 40 0.5\n"));
        write("Movies/b_autopick.star", &coords(""));
        let index = "data_coordinate_files\nloop_\n_rlnMicrographName #1\n\
                     _rlnMicrographCoordinates #2\n";
        let rows = "MotionCorr/job002/Movies/a.mrc AutoPick/job006/Movies/a_autopick.star\n\
                    MotionCorr/job002/Movies/b.mrc AutoPick/job006/Movies/b_autopick.star\n";
        write("autopick.star", &format!("{index}{rows}"));
        write("job.star", "data_job\n_rlnJobTypeLabel relion.autopick\n");
        write("note.txt", "++++ with the following command(s):\n");
        for given in [job.join("autopick.star"), job.clone()] {
            let set = PickSet::read(std::slice::from_ref(&given), None).unwrap();
            let names: Vec<(&str, usize)> = set
                .micrographs
                .iter()
                .map(|m| (m.micrograph.as_str(), m.picks.len()))
                .collect();
            assert_eq!(
                names,
                [
                    ("MotionCorr/job002/Movies/a.mrc", 2),
                    ("MotionCorr/job002/Movies/b.mrc", 0)
                ],
                "{}",
                given.display()
            );
            assert_eq!(set.files.len(), 2);
            assert!(set.files[0].path.ends_with("Movies/a_autopick.star"));
            assert_eq!(set.micrographs[0].picks[0].score, Some(1.5));
        }
        write(
            "autopick.star",
            &format!("{index}{rows}c.mrc Movies/c_autopick.star\n"),
        );
        let err = PickSet::read(&[job.join("autopick.star")], None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 7: coordinate file `Movies/c_autopick.star` not found"),
            "{err}"
        );
        write("Movies/c_autopick.star", &format!("{index}{rows}"));
        let err = PickSet::read(&[job.join("autopick.star")], None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("c_autopick.star: an index of coordinate files listed in another"),
            "{err}"
        );
    }

    /// Picks read through an index and written to a folder in their own format come with an
    /// index of the written files, each under the micrograph the read index named and relative
    /// to the project folder the read one's paths were relative to; two jobs' indexes of one
    /// name become one, and the index read is never overwritten.
    #[test]
    fn picks_read_through_an_index_are_written_with_one() {
        let project = tempfile::tempdir().unwrap();
        let p = project.path();
        let coords = "data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n10 20\n";
        let header = "data_coordinate_files\nloop_\n_rlnMicrographName #1\n\
                      _rlnMicrographCoordinates #2\n";
        for (job, mic) in [("job006", "a"), ("job007", "b")] {
            let dir = p.join("AutoPick").join(job);
            std::fs::create_dir_all(dir.join("Movies")).unwrap();
            std::fs::write(dir.join(format!("Movies/{mic}_autopick.star")), coords).unwrap();
            let row = format!("Movies/{mic}.mrc AutoPick/{job}/Movies/{mic}_autopick.star\n");
            std::fs::write(dir.join("autopick.star"), format!("{header}{row}")).unwrap();
        }
        let jobs = [p.join("AutoPick/job006"), p.join("AutoPick/job007")];
        let set = PickSet::read(&jobs, None).unwrap();
        assert_eq!(set.indexes.len(), 2);
        let out = p.join("pruned");
        let written = set
            .write(PickFormat::Star, &out, &WriteOptions::default())
            .unwrap();
        assert_eq!(
            written,
            ["a_autopick.star", "b_autopick.star", "autopick.star"].map(|f| out.join(f))
        );
        let again = StarFile::read(out.join("autopick.star")).unwrap();
        let l = again
            .block("coordinate_files")
            .unwrap()
            .first_loop()
            .unwrap();
        let rows: Vec<Vec<String>> = l.rows.iter().map(|r| r.to_vec()).collect();
        assert_eq!(
            rows,
            [
                ["Movies/a.mrc", "a_autopick.star"],
                ["Movies/b.mrc", "b_autopick.star"]
            ]
            .map(|[m, f]| vec![m.to_string(), format!("pruned/{f}")])
        );
        let err = set
            .write(PickFormat::Star, &jobs[0], &WriteOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("job006/autopick.star: refusing to write over an input"),
            "{err}"
        );
        assert!(
            !jobs[0].join("a_autopick.star").exists(),
            "nothing written first"
        );
    }

    /// A folder's `coordinates.star` is the index cryoprune's RELION jobs write only when it
    /// lists files; a coordinate file of that name is picks among the others.
    #[test]
    fn a_folder_file_named_like_an_index_is_read_by_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let coords = "data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n10 20\n";
        std::fs::write(dir.path().join("coordinates.star"), coords).unwrap();
        std::fs::write(dir.path().join("mic2.star"), coords).unwrap();
        let set = PickSet::read(&[dir.path().to_path_buf()], None).unwrap();
        assert_eq!((set.len(), set.indexes.len()), (2, 0));
        let index = "data_coordinate_files\nloop_\n_rlnMicrographName #1\n\
                     _rlnMicrographCoordinates #2\nmic2.mrc mic2.star\n";
        std::fs::write(dir.path().join("coordinates.star"), index).unwrap();
        let set = PickSet::read(&[dir.path().to_path_buf()], None).unwrap();
        assert_eq!((set.len(), set.indexes.len()), (1, 1));
        assert_eq!(set.micrographs[0].micrograph, "mic2.mrc");
    }

    /// RELION 3.1's AutoPick job: a `coords_suffix_autopick.star` node naming the micrographs
    /// STAR, the coordinate files below the job folder in the micrographs' own folders (one
    /// beside the node, for a micrograph given without a folder), and the job's other files;
    /// written back in the same layout.
    #[test]
    fn a_relion_31_picking_job_reads_as_the_coordinate_files_below_it() {
        let job_dir = tempfile::tempdir().unwrap();
        let job = job_dir.path();
        std::fs::create_dir_all(job.join("Movies/GridSquare_1")).unwrap();
        let coords = "data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n10 20\n";
        for f in [
            "Movies/a_autopick.star",
            "Movies/GridSquare_1/b_autopick.star",
            "c_autopick.star",
        ] {
            std::fs::write(job.join(f), coords).unwrap();
        }
        std::fs::write(job.join("Movies/a_other.star"), coords).unwrap();
        std::fs::write(
            job.join("coords_suffix_autopick.star"),
            "CtfFind/job003/micrographs_ctf.star\n",
        )
        .unwrap();
        std::fs::write(
            job.join("note.txt"),
            "++++ with the following command(s):\n",
        )
        .unwrap();
        std::fs::write(job.join("run.job"), "job_type == 3\n").unwrap();
        for given in [job.to_path_buf(), job.join("coords_suffix_autopick.star")] {
            let set = PickSet::read(std::slice::from_ref(&given), None).unwrap();
            let mut names: Vec<&str> = set
                .micrographs
                .iter()
                .map(|m| m.micrograph.as_str())
                .collect();
            names.sort_unstable();
            assert_eq!(
                names,
                ["a_autopick", "b_autopick", "c_autopick"],
                "{}",
                given.display()
            );
        }
        // Written to a folder, the files keep their layout below the job folder, with the
        // node, where `relion_preprocess --coord_dir OUT/ --coord_suffix _autopick.star` looks.
        let set = PickSet::read(&[job.to_path_buf()], None).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let out = elsewhere.path().join("pruned");
        let mut written = set
            .write(PickFormat::Star, &out, &WriteOptions::default())
            .unwrap();
        written.sort();
        let below = [
            "Movies/GridSquare_1/b_autopick.star",
            "Movies/a_autopick.star",
            "c_autopick.star",
            "coords_suffix_autopick.star",
        ];
        assert_eq!(written, below.map(|f| out.join(f)));
        let node = std::fs::read_to_string(out.join("coords_suffix_autopick.star")).unwrap();
        assert_eq!(node, "CtfFind/job003/micrographs_ctf.star\n");
        std::fs::write(job.join("coords_suffix_manualpick.star"), "x\n").unwrap();
        std::fs::remove_file(job.join("coords_suffix_autopick.star")).unwrap();
        let err = PickSet::read(&[job.to_path_buf()], None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no coordinate files `*_manualpick.star` below"),
            "{err}"
        );
    }

    #[test]
    fn a_tab_separated_label_table_reads_as_topaz_text() {
        let dir = tempfile::tempdir().unwrap();
        let tsv = dir.path().join("labels.tsv");
        std::fs::write(&tsv, "micrograph\tx\ty\tlabel\nmic_1\t10\t20.5\tjunk\n").unwrap();
        let set = PickSet::read(&[tsv], None).unwrap();
        let g = &set.micrographs[0];
        assert_eq!(g.micrograph, "mic_1");
        assert_eq!((g.picks[0].x, g.picks[0].y), (10.0, 20.5));
        assert_eq!(g.picks[0].label.as_deref(), Some("junk"));
        let bad = dir.path().join("bad.txt");
        std::fs::write(&bad, "name\tx\ty\n").unwrap();
        let err = PickSet::read(&[bad], None).unwrap_err().to_string();
        assert!(
            err.contains("bad.txt") && err.contains("image_name"),
            "{err}"
        );
    }

    #[test]
    fn one_file_is_named_by_the_formats_extension_without_a_trailing_separator() {
        let star = PickFormat::Star;
        assert!(star.names_one_file(Path::new("out/picks.star")));
        assert!(star.names_one_file(Path::new("picks.STAR")));
        assert!(!star.names_one_file(Path::new("picks.star/")));
        assert!(!star.names_one_file(Path::new("picks")));
        assert!(!star.names_one_file(Path::new("picks.csv")));
        assert!(PickFormat::Csv.names_one_file(Path::new("picks.csv")));
    }

    /// Ten million picks are in memory at once in a large project; each byte here is 10 MB.
    #[test]
    fn a_pick_stays_small() {
        assert!(
            std::mem::size_of::<Pick>() <= 80,
            "{}",
            std::mem::size_of::<Pick>()
        );
        let r = RowRef::new(3, 4_000_000_000);
        assert_eq!((r.file(), r.row()), (3, 4_000_000_000));
    }
}
