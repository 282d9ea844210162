//! Plain tables: EMAN `.box`, crYOLO's older whitespace `.cbox`, Topaz `.txt` and CSV.

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::path::Path;

use super::{
    num, parse_num, Added, Content, MicrographPicks, Pick, PickFormat, PickSet, RowRef, SourceFile,
    LABEL_COLUMNS,
};
use crate::error::{FormatError, Location, Result};
use crate::names::stem;

fn read_text(path: &Path) -> Result<String> {
    crate::error::read_utf8(path, "expected a text table of coordinates")
}

/// Whether a `.cbox` is the STAR dialect (crYOLO >= 1.8) rather than a whitespace table.
pub(super) fn is_star_text(path: &Path) -> Result<bool> {
    let f = crate::error::open_regular(path)?;
    let mut head = Vec::new();
    f.take(64 * 1024)
        .read_to_end(&mut head)
        .map_err(|e| FormatError::io(path, e))?;
    Ok(head
        .lines()
        .map_while(|l| l.ok())
        .any(|l| l.trim_start().starts_with("data_")))
}

/// EMAN `.box`: `x y width height [score] ...` per line, (x, y) the lower-left corner, so the
/// centre is corner + size/2. Files with width = height = 0 (centre-only exports) read as centres.
/// An empty file is a micrograph where the picker found nothing.
pub(super) fn read_box(
    path: &Path,
    file_index: usize,
    set: &mut PickSet,
    index: &mut HashMap<String, usize>,
) -> Result<()> {
    read_corner_table(path, file_index, set, index, "x y width height [score]")
}

/// crYOLO before 1.8 wrote `.cbox` as a `.box` with confidence and estimated size columns.
pub(super) fn read_legacy_cbox(
    path: &Path,
    file_index: usize,
    set: &mut PickSet,
    index: &mut HashMap<String, usize>,
) -> Result<()> {
    read_corner_table(
        path,
        file_index,
        set,
        index,
        "x y width height confidence [est_width est_height]",
    )
}

fn read_corner_table(
    path: &Path,
    file_index: usize,
    set: &mut PickSet,
    index: &mut HashMap<String, usize>,
    expected: &str,
) -> Result<()> {
    let text = read_text(path)?;
    let mic = stem(&path.to_string_lossy());
    set.group_of(&mic, index);
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let loc = Location::Line(i + 1);
        let tokens: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        if tokens.is_empty() {
            continue;
        }
        if tokens.len() < 4 {
            return Err(FormatError::invalid(
                path,
                loc,
                format!("row has {} columns; expected {expected}", tokens.len()),
            ));
        }
        let v: Vec<f64> = (0..4)
            .map(|c| parse_num(path, loc, ["x", "y", "width", "height"][c], &tokens[c]))
            .collect::<Result<_>>()?;
        if v[2] < 0.0 || v[3] < 0.0 {
            return Err(FormatError::invalid(
                path,
                loc,
                format!("negative box size {}x{}; expected {expected}", v[2], v[3]),
            ));
        }
        let mut p = Pick::new(v[0] + v[2] / 2.0, v[1] + v[3] / 2.0);
        if let Some(s) = tokens.get(4) {
            p.score = Some(parse_num(path, loc, "score", s)?);
        }
        p.source = Some(RowRef::new(file_index, rows.len()));
        if v[2] > 0.0 {
            set.box_size.get_or_insert(v[2]);
        }
        set.push(&mic, p, index);
        rows.push(tokens);
    }
    set.files.push(SourceFile {
        path: path.to_path_buf(),
        content: Content::Table { header: None, rows },
    });
    Ok(())
}

fn find(header: &[String], names: &[&str]) -> Option<usize> {
    header
        .iter()
        .position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)))
}

/// Shared by Topaz and CSV once the header and rows are split: centres, optional score and label.
#[allow(clippy::too_many_arguments)]
fn read_named_table(
    path: &Path,
    file_index: usize,
    set: &mut PickSet,
    index: &mut HashMap<String, usize>,
    header: Vec<String>,
    rows: Vec<(usize, Vec<String>)>,
    mic_names: &[&str],
    expected: &str,
) -> Result<()> {
    for (i, h) in header.iter().enumerate() {
        if !h.is_empty() && header[..i].iter().any(|g| g.eq_ignore_ascii_case(h)) {
            return Err(FormatError::invalid(
                path,
                Location::Line(1),
                format!(
                    "column `{h}` appears twice in the header; which one is meant is ambiguous"
                ),
            ));
        }
    }
    let need = |names: &[&str]| {
        find(&header, names).ok_or_else(|| {
            FormatError::invalid(
                path,
                Location::Line(1),
                format!(
                    "header `{}` has no `{}` column; expected {expected}",
                    header.join(" "),
                    names[0]
                ),
            )
        })
    };
    let (cm, cx, cy) = (
        need(mic_names)?,
        need(&["x", "x_coord"])?,
        need(&["y", "y_coord"])?,
    );
    let cs = find(&header, &["score"]);
    let cl = find(&header, LABEL_COLUMNS);
    let mut kept = Vec::with_capacity(rows.len());
    for (line, row) in rows {
        let loc = Location::Line(line);
        if row.len() != header.len() {
            return Err(FormatError::invalid(
                path,
                loc,
                format!(
                    "row has {} values; expected {} ({})",
                    row.len(),
                    header.len(),
                    header.join(", ")
                ),
            ));
        }
        let mut p = Pick::new(
            parse_num(path, loc, &header[cx], &row[cx])?,
            parse_num(path, loc, &header[cy], &row[cy])?,
        );
        if let Some(c) = cs.filter(|&c| !row[c].trim().is_empty()) {
            p.score = Some(parse_num(path, loc, "score", &row[c])?);
        }
        p.label = cl.map(|c| row[c].as_str().into());
        p.source = Some(RowRef::new(file_index, kept.len()));
        set.push(&row[cm], p, index);
        kept.push(row);
    }
    set.files.push(SourceFile {
        path: path.to_path_buf(),
        content: Content::Table {
            header: Some(header),
            rows: kept,
        },
    });
    Ok(())
}

/// Topaz: a header `image_name x_coord y_coord [score]`, tab-separated, centres in pixels; the
/// column names of [`read_csv`] are read too.
pub(super) fn read_topaz(
    path: &Path,
    file_index: usize,
    set: &mut PickSet,
    index: &mut HashMap<String, usize>,
) -> Result<()> {
    let text = read_text(path)?;
    let split = |l: &str| -> Vec<String> {
        if l.contains('\t') {
            l.split('\t').map(|s| s.trim().to_string()).collect()
        } else {
            l.split_whitespace().map(str::to_string).collect()
        }
    };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, head)) = lines.next() else {
        return Err(FormatError::invalid(
            path,
            Location::Whole,
            "empty file; expected a Topaz header `image_name x_coord y_coord [score]`",
        ));
    };
    let rows = lines.map(|(i, l)| (i + 1, split(l))).collect();
    read_named_table(
        path,
        file_index,
        set,
        index,
        split(head),
        rows,
        // A tab-separated table of `micrograph x y label` (a spreadsheet's export) reads too.
        &["image_name", "micrograph", "micrograph_name"],
        "image_name (or micrograph), x_coord, y_coord [, score] [, label]",
    )
}

/// CSV with a header: `micrograph,x,y[,score][,label]`, centres in pixels; other columns kept.
pub(super) fn read_csv(
    path: &Path,
    file_index: usize,
    set: &mut PickSet,
    index: &mut HashMap<String, usize>,
) -> Result<()> {
    let text = read_text(path)?;
    if text.trim().is_empty() {
        return Err(FormatError::invalid(
            path,
            Location::Whole,
            "empty file; expected a CSV header `micrograph,x,y[,score][,label]`",
        ));
    }
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header: Vec<String> = rdr
        .headers()
        .map_err(|e| {
            FormatError::invalid(
                path,
                Location::Line(1),
                format!("cannot read the CSV header: {e}"),
            )
        })?
        .iter()
        .map(str::to_string)
        .collect();
    // A spreadsheet in a locale with decimal commas saves "CSV" with semicolons (or tabs):
    // the header is then one field, which would be reported as lacking every column.
    if let [only] = header.as_slice() {
        if let Some(sep) = [";", "\t"].into_iter().find(|s| only.contains(s)) {
            return Err(FormatError::invalid(
                path,
                Location::Line(1),
                format!(
                    "the header's columns are separated by {}, not commas; save the file as \
                     comma-separated CSV (`micrograph,x,y[,score][,label]`, a point before \
                     decimals)",
                    if sep == ";" { "semicolons" } else { "tabs" }
                ),
            ));
        }
    }
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            FormatError::invalid(path, Location::Line(line), format!("malformed CSV: {e}"))
        })?;
        let line = rec.position().map_or(0, |p| p.line() as usize);
        rows.push((line, rec.iter().map(str::to_string).collect()));
    }
    read_named_table(
        path,
        file_index,
        set,
        index,
        header,
        rows,
        &["micrograph", "micrograph_name", "image_name"],
        "micrograph, x, y [, score] [, label]",
    )
}

fn write_rows(
    format: PickFormat,
    header: Option<&[String]>,
    rows: &[Vec<String>],
    dest: &Path,
) -> Result<()> {
    crate::atomic::write_atomic(dest, |w| {
        if format == PickFormat::Csv {
            let mut c = csv::Writer::from_writer(w);
            if let Some(h) = header {
                c.write_record(h)?;
            }
            for r in rows {
                c.write_record(r)?;
            }
            c.flush()
        } else {
            if let Some(h) = header {
                writeln!(w, "{}", h.join("\t"))?;
            }
            for r in rows {
                writeln!(w, "{}", r.join("\t"))?;
            }
            Ok(())
        }
    })
}

pub(super) fn write_preserving(
    format: PickFormat,
    header: Option<&[String]>,
    all: &[Vec<String>],
    rows: &[usize],
    added: &Added,
    dest: &Path,
) -> Result<()> {
    let header = header.map(|h| h.iter().chain(added.columns).cloned().collect::<Vec<_>>());
    let out: Vec<Vec<String>> = rows
        .iter()
        .enumerate()
        .map(|(k, &r)| {
            let new = (0..added.columns.len()).map(|c| (added.value)(k, c));
            all[r].iter().cloned().chain(new).collect()
        })
        .collect();
    write_rows(format, header.as_deref(), &out, dest)
}

pub(super) fn write_fresh_box(
    mics: &[&MicrographPicks],
    extra: &[String],
    box_size: f64,
    dest: &Path,
) -> Result<()> {
    let _ = extra;
    let rows: Vec<Vec<String>> = mics
        .iter()
        .flat_map(|m| m.picks.iter())
        .map(|p| {
            let mut r = vec![
                num(p.x - box_size / 2.0),
                num(p.y - box_size / 2.0),
                num(box_size),
                num(box_size),
            ];
            if let Some(s) = p.score {
                r.push(num(s));
            }
            r.extend(p.extra.iter().cloned());
            r
        })
        .collect();
    write_rows(PickFormat::Box, None, &rows, dest)
}

pub(super) fn write_fresh_table(
    format: PickFormat,
    mics: &[&MicrographPicks],
    extra: &[String],
    dest: &Path,
) -> Result<()> {
    let picks = || {
        mics.iter()
            .flat_map(|m| m.picks.iter().map(move |p| (m.micrograph.as_str(), p)))
    };
    let with_score = picks().any(|(_, p)| p.score.is_some());
    let with_label = picks().any(|(_, p)| p.label.is_some());
    let mut header: Vec<String> = match format {
        PickFormat::Topaz => vec!["image_name".into(), "x_coord".into(), "y_coord".into()],
        _ => vec!["micrograph".into(), "x".into(), "y".into()],
    };
    if with_score {
        header.push("score".into());
    }
    if with_label {
        header.push("label".into());
    }
    header.extend(extra.iter().cloned());
    let rows: Vec<Vec<String>> = picks()
        .map(|(mic, p)| {
            let name = if format == PickFormat::Topaz {
                stem(mic)
            } else {
                mic.to_string()
            };
            let mut r = vec![name, num(p.x), num(p.y)];
            if with_score {
                r.push(p.score.map(num).unwrap_or_default());
            }
            if with_label {
                r.push(p.label.as_deref().unwrap_or_default().to_string());
            }
            r.extend(p.extra.iter().cloned());
            r
        })
        .collect();
    write_rows(format, Some(&header), &rows, dest)
}
