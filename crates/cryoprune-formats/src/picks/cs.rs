//! cryoSPARC `.cs` picks: `location/center_x_frac` and `location/center_y_frac` are fractions of
//! `location/micrograph_shape` = [ny, nx]; the micrograph is `location/micrograph_path`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{
    Added, Content, MicrographPicks, Pick, PickSet, RowRef, SourceFile, WriteOptions, LABEL_COLUMNS,
};
use crate::error::{FormatError, Location, Result};
use crate::names::micrograph_key;
use crate::npy::{NewField, StructArray};

const CS_X: &str = "location/center_x_frac";
const CS_Y: &str = "location/center_y_frac";
const CS_SCORE: &str = "pick_stats/ncc_score";
const CS_SHAPE: &str = "location/micrograph_shape";
const CS_PATH: &str = "location/micrograph_path";
const CS_LABEL: &str = "cryoprune/label";

/// Reads the picks of `path`, its records given the fields of `joined` (a cryoSPARC job's
/// passthrough) by `uid` first.
pub(super) fn read(
    path: &Path,
    joined: &[PathBuf],
    file_index: usize,
    set: &mut PickSet,
    index: &mut HashMap<String, usize>,
) -> Result<()> {
    let arr = crate::cryosparc::read_joined(path, joined)?;
    let need = |n: &str| {
        arr.field(n).ok_or_else(|| {
            FormatError::invalid(path, Location::Whole, format!(
                "no `{n}` field: this .cs holds no pick locations (expected {CS_X}, {CS_Y}, {CS_SHAPE}, {CS_PATH}; a job's passthrough .cs may hold them: give the job folder, or its main .cs beside job.json, and the two are read as one; or export picks or extracted particles from cryoSPARC)"
            ))
        })
    };
    let (fx, fy, fshape, fpath) = (need(CS_X)?, need(CS_Y)?, need(CS_SHAPE)?, need(CS_PATH)?);
    if fshape.count() != 2 {
        return Err(FormatError::invalid(
            path,
            Location::Whole,
            format!(
                "`{CS_SHAPE}` has {} values per row; expected 2 ([ny, nx])",
                fshape.count()
            ),
        ));
    }
    let score = arr.field(CS_SCORE);
    let label = LABEL_COLUMNS
        .iter()
        .find_map(|c| arr.field(&format!("cryoprune/{c}")));
    for r in 0..arr.nrows {
        let loc = Location::Record(r + 1);
        let num = |f, e| {
            arr.number(r, f, e)
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    FormatError::invalid(path, loc, "location field is not a finite number")
                })
        };
        let (ny, nx) = (num(fshape, 0)?, num(fshape, 1)?);
        if nx <= 0.0 || ny <= 0.0 {
            return Err(FormatError::invalid(
                path,
                loc,
                format!("{CS_SHAPE} is [{ny}, {nx}]; expected the micrograph's positive [ny, nx]"),
            ));
        }
        let mut p = Pick::new(num(fx, 0)? * nx, num(fy, 0)? * ny);
        if let Some(f) = score {
            p.score = arr.number(r, f, 0);
        }
        p.label = label.and_then(|f| arr.text(r, f)).map(Into::into);
        p.source = Some(RowRef::new(file_index, r));
        let mic = arr.text(r, fpath).unwrap_or_default();
        set.push(&mic, p, index);
    }
    set.files.push(SourceFile {
        path: path.to_path_buf(),
        content: Content::Cs(arr),
    });
    Ok(())
}

/// The added columns as new fields of `n` records: numbers as float32 when every value parses,
/// text otherwise.
fn added_fields<'a, 'b: 'a>(n: usize, added: &'a Added<'b>) -> Vec<NewField<'a>> {
    (0..added.columns.len())
        .map(|c| {
            let name = cs_name(&added.columns[c]);
            let value = move |k: usize| (added.value)(k, c);
            match (0..n).all(|k| value(k).parse::<f32>().is_ok()) {
                true => NewField::f32(&name, move |k| value(k).parse().expect("checked")),
                false => {
                    let width = (0..n).map(|k| value(k).len()).max();
                    NewField::text(&name, width.unwrap_or(1), value)
                }
            }
        })
        .collect()
}

fn cs_name(column: &str) -> String {
    if column.contains('/') {
        column.to_string()
    } else {
        format!("cryoprune/{column}")
    }
}

pub(super) fn write_preserving(
    arr: &StructArray,
    rows: &[usize],
    added: &Added,
    dest: &Path,
) -> Result<()> {
    let fields = added_fields(rows.len(), added);
    arr.write_selected(dest, rows.iter().copied(), &fields)
}

pub(super) fn write_fresh(
    mics: &[&MicrographPicks],
    extra: &[String],
    opts: &WriteOptions,
    dest: &Path,
) -> Result<()> {
    let shapes: HashMap<String, (usize, usize)> = opts
        .micrograph_shapes
        .iter()
        .map(|(k, v)| (micrograph_key(k), *v))
        .collect();
    let mut shape_of = Vec::new();
    for m in mics {
        let s = opts
            .micrograph_shapes
            .get(&m.micrograph)
            .or_else(|| shapes.get(&micrograph_key(&m.micrograph)));
        match s {
            Some(&s) => shape_of.push(s),
            None => {
                return Err(FormatError::invalid(dest, Location::Whole, format!(
                    "cryoSPARC .cs stores centres as fractions of the micrograph size, and the size of `{}` is unknown; give --micrographs",
                    m.micrograph
                )))
            }
        }
    }
    let all: Vec<(usize, &Pick)> = mics
        .iter()
        .enumerate()
        .flat_map(|(i, m)| m.picks.iter().map(move |p| (i, p)))
        .collect();
    let all = &all;
    let shape_of = &shape_of;
    let path_width = mics.iter().map(|m| m.micrograph.len()).max().unwrap_or(1);
    let value = |k: usize, c: usize| all[k].1.extra[c].clone();
    let added = Added {
        columns: extra,
        value: &value,
    };
    let mut fields = vec![
        NewField::u64("uid", |r| r as u64),
        NewField::u64("location/micrograph_uid", |r| all[r].0 as u64),
        NewField::u32("location/exp_group_id", |_| 0),
        NewField::text(CS_PATH, path_width, |r| mics[all[r].0].micrograph.as_str()),
        NewField::le(CS_SHAPE, "<u4", 2, |r, b| {
            let (nx, ny) = shape_of[all[r].0];
            b[..4].copy_from_slice(&(ny as u32).to_le_bytes());
            b[4..].copy_from_slice(&(nx as u32).to_le_bytes());
        }),
        NewField::f32(CS_X, |r| (all[r].1.x / shape_of[all[r].0].0 as f64) as f32),
        NewField::f32(CS_Y, |r| (all[r].1.y / shape_of[all[r].0].1 as f64) as f32),
    ];
    if all.iter().any(|(_, p)| p.score.is_some()) {
        fields.push(NewField::f32(CS_SCORE, |r| {
            all[r].1.score.unwrap_or(0.0) as f32
        }));
    }
    if all.iter().any(|(_, p)| p.label.is_some()) {
        let width = all
            .iter()
            .filter_map(|(_, p)| p.label.as_ref().map(|l| l.len()))
            .max();
        fields.push(NewField::text(CS_LABEL, width.unwrap_or(1), |r| {
            all[r].1.label.as_deref().unwrap_or_default()
        }));
    }
    fields.extend(added_fields(all.len(), &added));
    StructArray::new().write_selected(dest, (0..all.len()).map(|_| 0), &fields)
}
