//! RELION coordinate and particle STAR files, and crYOLO's STAR-dialect `.cbox`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{
    num, parse_num, Added, Content, MicrographPicks, Pick, PickSet, RowRef, SourceFile,
    LABEL_COLUMNS,
};
use crate::error::{FormatError, Location, Result};
use crate::names::{find_listed, listed_base, stem};
use crate::star::{Block, Item, Loop, LoopSource, Rows, StarFile};

const X: &str = "rlnCoordinateX";
const Y: &str = "rlnCoordinateY";
const MIC: &str = "rlnMicrographName";
const FOM: &str = "rlnAutopickFigureOfMerit";
const LABEL_OUT: &str = "cryopruneLabel";
/// The index column naming each micrograph's coordinate file (RELION 4/5 `autopick.star`).
const COORDINATE_FILE: &str = "rlnMicrographCoordinates";

fn label_column(l: &Loop) -> Option<usize> {
    LABEL_COLUMNS.iter().find_map(|c| l.column(c))
}

/// A coordinate file listed in a RELION 4/5 index (`autopick.star`): its micrograph, as the
/// index names it, and where the file was found.
pub(super) struct Listed {
    pub micrograph: String,
    pub file: PathBuf,
    /// The folder the listed path was relative to (RELION's project folder; empty for the
    /// working folder), None for an absolute path.
    pub project: Option<PathBuf>,
}

/// Reads picks from a coordinate STAR (one micrograph: `micrograph` when an index named it,
/// else the file's name) or a particle STAR (`_rlnMicrographName` per row; RELION 3.0, 3.1+
/// with optics, 5). A RELION 4/5 index of coordinate files (`autopick.star`) is not read as
/// picks: its entries come back for the caller to read.
pub(super) fn read(
    path: &Path,
    file_index: usize,
    set: &mut PickSet,
    index: &mut HashMap<String, usize>,
    micrograph: Option<&str>,
) -> Result<Option<Vec<Listed>>> {
    let star = StarFile::read(path)?;
    if star.blocks.is_empty() {
        return Err(FormatError::invalid(
            path,
            Location::Whole,
            "no `data_` block; expected a RELION coordinate or particle STAR file",
        ));
    }
    let has_coords = |b: &Block| {
        b.first_loop()
            .is_some_and(|l| l.column(X).is_some() && l.column(Y).is_some())
    };
    let block = star
        .blocks
        .iter()
        .position(|b| b.name == "particles" && has_coords(b))
        .or_else(|| star.blocks.iter().position(has_coords));
    let Some(block) = block else {
        let listing = star.blocks.iter().find_map(|b| {
            let l = b.first_loop()?;
            Some((l, l.column(MIC)?, l.column(COORDINATE_FILE)?))
        });
        return match (listing, micrograph) {
            (Some(columns), None) => listed_files(path, columns).map(Some),
            (Some(_), Some(_)) => Err(FormatError::invalid(
                path,
                Location::Whole,
                "an index of coordinate files listed in another index; expected a coordinate file",
            )),
            (None, _) => Err(FormatError::invalid(
                path,
                Location::Whole,
                "no loop with _rlnCoordinateX and _rlnCoordinateY (or _rlnMicrographName and \
                 _rlnMicrographCoordinates); expected a RELION coordinate or particle STAR file, \
                 or an index of coordinate files",
            )),
        };
    };
    let name = &star.blocks[block].name;
    if star.blocks.iter().filter(|b| &b.name == name).count() > 1 {
        return Err(FormatError::invalid(
            path,
            Location::Whole,
            format!(
                "a second `data_{name}` block; which one holds the picks is ambiguous (RELION reads the first, a pruned copy would keep the other whole)"
            ),
        ));
    }
    let l = star.blocks[block].first_loop().expect("checked above");
    let (cx, cy) = (l.column(X).unwrap(), l.column(Y).unwrap());
    let mic = l.column(MIC);
    let fom = l.column(FOM);
    let label = label_column(l);
    let file_mic = micrograph.map_or_else(|| stem(&path.to_string_lossy()), str::to_string);
    for (r, row) in l.rows.iter().enumerate() {
        let loc = l.line_of(r);
        let mut p = Pick::new(
            parse_num(path, loc, "_rlnCoordinateX", &row[cx])?,
            parse_num(path, loc, "_rlnCoordinateY", &row[cy])?,
        );
        if let Some(c) = fom {
            p.score = Some(parse_num(path, loc, "_rlnAutopickFigureOfMerit", &row[c])?);
        }
        p.label = label.map(|c| row[c].into());
        p.source = Some(RowRef::new(file_index, r));
        let name = mic.map_or(file_mic.as_str(), |c| row.get(c));
        set.push(name, p, index);
    }
    if mic.is_none() && l.rows.is_empty() {
        // An empty coordinate file still names its micrograph: "picked, nothing found".
        set.group_of(&file_mic, index);
    }
    set.files.push(SourceFile {
        path: path.to_path_buf(),
        content: Content::Star { star, block },
    });
    Ok(None)
}

/// Whether `path` is a RELION 4/5 index of coordinate files rather than picks.
pub(super) fn is_index(path: &Path) -> Result<bool> {
    let star = StarFile::read(path)?;
    let has = |b: &Block, columns: [&str; 2]| {
        b.first_loop()
            .is_some_and(|l| columns.iter().all(|c| l.column(c).is_some()))
    };
    Ok(!star.blocks.iter().any(|b| has(b, [X, Y]))
        && star.blocks.iter().any(|b| has(b, [MIC, COORDINATE_FILE])))
}

/// The entries of a RELION 4/5 index of coordinate files, each path found as [`find_listed`]
/// finds it (`AutoPick/job006/autopick.star` lists `AutoPick/job006/Movies/x_autopick.star`,
/// relative to the project folder two folders up).
fn listed_files(path: &Path, (l, mic, file): (&Loop, usize, usize)) -> Result<Vec<Listed>> {
    if l.rows.is_empty() {
        return Err(FormatError::invalid(
            path,
            Location::Whole,
            "the index lists no coordinate files",
        ));
    }
    l.rows
        .iter()
        .enumerate()
        .map(|(r, row)| {
            let listed = row.get(file);
            match find_listed(listed, path) {
                Some(file) => Ok(Listed {
                    micrograph: row.get(mic).to_string(),
                    project: listed_base(listed, &file),
                    file,
                }),
                None => Err(FormatError::invalid(
                    path,
                    l.line_of(r),
                    format!(
                        "coordinate file `{listed}` not found here (RELION's project folder), \
                         beside the index or in a folder above it"
                    ),
                )),
            }
        })
        .collect()
}

/// Writes a RELION 4/5 index of coordinate files: each micrograph, as RELION names it, and its
/// coordinate file.
pub fn write_relion_index(path: &Path, entries: &[(String, PathBuf)]) -> Result<()> {
    let mut l = Loop::new(vec![MIC.into(), COORDINATE_FILE.into()]);
    for (mic, file) in entries {
        l.rows.push([mic.as_str(), &file.display().to_string()]);
    }
    let mut b = Block::new("coordinate_files");
    b.items.push(Item::Loop(l));
    StarFile {
        blocks: vec![b],
        ..Default::default()
    }
    .write(path)
}

/// crYOLO >= 1.8 `.cbox`: `data_cryolo` loop with lower-left `_CoordinateX/Y`, `_Width`,
/// `_Height`, `_Confidence`; `<NA>` marks missing values.
pub(super) fn read_cbox(
    path: &Path,
    file_index: usize,
    set: &mut PickSet,
    index: &mut HashMap<String, usize>,
) -> Result<()> {
    let star = StarFile::read(path)?;
    let block = star.block_index("cryolo").ok_or_else(|| {
        FormatError::invalid(
            path,
            Location::Whole,
            "no `data_cryolo` block; expected a crYOLO .cbox file",
        )
    })?;
    let l = star.blocks[block].first_loop().ok_or_else(|| {
        FormatError::invalid(path, Location::Whole, "`data_cryolo` has no loop of boxes")
    })?;
    let col = |n: &str| {
        l.column(n).ok_or_else(|| {
            FormatError::invalid(
                path,
                Location::Whole,
                format!("`data_cryolo` has no `_{n}` column"),
            )
        })
    };
    let (cx, cy, cw, ch) = (
        col("CoordinateX")?,
        col("CoordinateY")?,
        col("Width")?,
        col("Height")?,
    );
    let conf = l.column("Confidence");
    let label = label_column(l);
    let mic = stem(&path.to_string_lossy());
    set.group_of(&mic, index);
    for (r, row) in l.rows.iter().enumerate() {
        let loc = l.line_of(r);
        let w = parse_num(path, loc, "_Width", &row[cw])?;
        let h = parse_num(path, loc, "_Height", &row[ch])?;
        let mut p = Pick::new(
            parse_num(path, loc, "_CoordinateX", &row[cx])? + w / 2.0,
            parse_num(path, loc, "_CoordinateY", &row[cy])? + h / 2.0,
        );
        if let Some(c) = conf.filter(|&c| &row[c] != "<NA>") {
            p.score = Some(parse_num(path, loc, "_Confidence", &row[c])?);
        }
        p.label = label.map(|c| row[c].into());
        p.source = Some(RowRef::new(file_index, r));
        set.box_size.get_or_insert(w);
        set.push(&mic, p, index);
    }
    set.files.push(SourceFile {
        path: path.to_path_buf(),
        content: Content::Star { star, block },
    });
    Ok(())
}

pub(super) fn write_preserving(
    star: &StarFile,
    block: usize,
    rows: &[usize],
    added: &Added,
    dest: &Path,
) -> Result<()> {
    let l = star.blocks[block]
        .first_loop()
        .expect("pick block has a loop");
    // An added column of a name the file has (the figure of merit) takes that column's place.
    let mut columns = l.columns.clone();
    let mut replaced = vec![None; columns.len()];
    let mut appended = Vec::new();
    for (i, name) in added.columns.iter().enumerate() {
        let name = name.trim_start_matches('_');
        match columns.iter().position(|c| c == name) {
            Some(c) => replaced[c] = Some(i),
            None => {
                columns.push(name.to_string());
                appended.push(i);
            }
        }
    }
    let subset = Subset {
        all: &l.rows,
        rows,
        added,
        columns,
        replaced,
        appended,
    };
    crate::atomic::write_atomic(dest, |w| star.write_replacing(w, Some((block, &subset))))
}

/// Chosen rows of a loop with the added columns: written straight from the file's rows, never
/// copied.
struct Subset<'a> {
    all: &'a Rows,
    rows: &'a [usize],
    added: &'a Added<'a>,
    columns: Vec<String>,
    /// For each original column, the added value that replaces it.
    replaced: Vec<Option<usize>>,
    appended: Vec<usize>,
}

impl LoopSource for Subset<'_> {
    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn for_each_row(&self, f: &mut dyn FnMut(&mut dyn Iterator<Item = &str>)) {
        for (k, &r) in self.rows.iter().enumerate() {
            let value = |c| (self.added.value)(k, c);
            let new: Vec<_> = (0..self.added.columns.len()).map(value).collect();
            let mut values = self
                .all
                .get(r)
                .iter()
                .zip(&self.replaced)
                .map(|(v, rep)| match rep {
                    Some(i) => new[*i].as_str(),
                    None => v,
                })
                .chain(self.appended.iter().map(|&i| new[i].as_str()));
            f(&mut values);
        }
    }
}

fn extra_loop(mut l: Loop, mics: &[&MicrographPicks], extra: &[String]) -> Loop {
    for (i, name) in extra.iter().enumerate() {
        let values = mics
            .iter()
            .flat_map(|m| m.picks.iter().map(move |p| p.extra[i].clone()))
            .collect();
        l.set_column(name, values);
    }
    l
}

pub(super) fn write_fresh(mics: &[&MicrographPicks], extra: &[String], dest: &Path) -> Result<()> {
    let all = || {
        mics.iter()
            .flat_map(|m| m.picks.iter().map(move |p| (m.micrograph.as_str(), p)))
    };
    let with_names = mics.len() != 1 || stem(&mics[0].micrograph) != stem(&dest.to_string_lossy());
    let with_score = all().any(|(_, p)| p.score.is_some());
    let with_label = all().any(|(_, p)| p.label.is_some());
    let mut cols: Vec<String> = Vec::new();
    if with_names {
        cols.push(MIC.into());
    }
    cols.extend([X.to_string(), Y.to_string()]);
    if with_score {
        cols.push(FOM.into());
    }
    if with_label {
        cols.push(LABEL_OUT.into());
    }
    let mut l = Loop::new(cols);
    for (mic, p) in all() {
        let mut row = Vec::new();
        if with_names {
            row.push(mic.to_string());
        }
        row.extend([num(p.x), num(p.y)]);
        if with_score {
            row.push(p.score.map_or_else(|| "0".into(), num));
        }
        if with_label {
            row.push(p.label.as_deref().unwrap_or_default().to_string());
        }
        l.rows.push(row);
    }
    let l = extra_loop(l, mics, extra);
    let mut block = Block::new(if with_names { "particles" } else { "" });
    block.comments.push("# version 30001".into());
    block.items.push(Item::Loop(l));
    StarFile {
        blocks: vec![block],
        trailing_comments: Vec::new(),
    }
    .write(dest)
}

pub(super) fn write_fresh_cbox(
    mics: &[&MicrographPicks],
    extra: &[String],
    box_size: f64,
    dest: &Path,
) -> Result<()> {
    let mut global = Block::new("global");
    global.items.push(Item::Pair {
        key: "cbox_format_version".into(),
        value: "1.0".into(),
    });
    let cols = [
        "CoordinateX",
        "CoordinateY",
        "CoordinateZ",
        "Width",
        "Height",
        "Depth",
        "EstWidth",
        "EstHeight",
        "Confidence",
        "NumBoxes",
        "Angle",
    ];
    let mut l = Loop::new(cols.iter().map(|c| c.to_string()).collect());
    let na = || "<NA>".to_string();
    for m in mics {
        for p in &m.picks {
            l.rows.push(vec![
                num(p.x - box_size / 2.0),
                num(p.y - box_size / 2.0),
                na(),
                num(box_size),
                num(box_size),
                na(),
                na(),
                na(),
                p.score.map_or_else(na, num),
                na(),
                na(),
            ]);
        }
    }
    let with_label = mics
        .iter()
        .any(|m| m.picks.iter().any(|p| p.label.is_some()));
    if with_label {
        let labels = mics
            .iter()
            .flat_map(|m| m.picks.iter().map(|p| p.label.clone().unwrap_or_default()))
            .collect();
        l.set_column(LABEL_OUT, labels);
    }
    let mut cryolo = Block::new("cryolo");
    cryolo.items.push(Item::Loop(extra_loop(l, mics, extra)));
    StarFile {
        blocks: vec![global, cryolo],
        trailing_comments: Vec::new(),
    }
    .write(dest)
}
