//! cryoSPARC `.cs` picks: `location/center_x_frac` and `location/center_y_frac` are fractions of
//! `location/micrograph_shape` = [ny, nx]; the micrograph is `location/micrograph_path`.

use std::collections::HashMap;
use std::path::Path;

use super::{
    Content, MicrographPicks, Pick, PickSet, RowRef, SourceFile, WriteOptions, LABEL_COLUMNS,
};
use crate::error::{FormatError, Location, Result};
use crate::names::micrograph_key;
use crate::npy::{StructArray, Value};

const CS_X: &str = "location/center_x_frac";
const CS_Y: &str = "location/center_y_frac";
const CS_SCORE: &str = "pick_stats/ncc_score";
const CS_SHAPE: &str = "location/micrograph_shape";
const CS_PATH: &str = "location/micrograph_path";
const CS_LABEL: &str = "cryoprune/label";

pub(super) fn read(
    path: &Path,
    file_index: usize,
    set: &mut PickSet,
    index: &mut HashMap<String, usize>,
) -> Result<()> {
    let arr = StructArray::read(path)?;
    let need = |n: &str| {
        arr.field(n).ok_or_else(|| {
            FormatError::invalid(path, Location::Whole, format!(
                "no `{n}` field: this .cs holds no pick locations (expected {CS_X}, {CS_Y}, {CS_SHAPE}, {CS_PATH}; export picks or extracted particles from cryoSPARC)"
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
        p.label = label.and_then(|f| arr.text(r, f));
        p.source = Some(RowRef {
            file: file_index,
            row: r,
        });
        let mic = arr.text(r, fpath).unwrap_or_default();
        set.push(&mic, p, index);
    }
    set.files.push(SourceFile {
        path: path.to_path_buf(),
        content: Content::Cs(arr),
    });
    Ok(())
}

/// New fields hold numbers as float32 when every value parses, text otherwise.
fn push_extra(arr: &mut StructArray, name: &str, values: Vec<String>) {
    let nums: Option<Vec<f32>> = values.iter().map(|v| v.parse::<f32>().ok()).collect();
    match nums {
        Some(n) => arr.push_field(
            name,
            "<f4",
            &n.into_iter().map(Value::F32).collect::<Vec<_>>(),
        ),
        None => push_text(arr, name, values),
    }
}

fn push_text(arr: &mut StructArray, name: &str, values: Vec<String>) {
    let width = values.iter().map(|v| v.len()).max().unwrap_or(1).max(1);
    let vals: Vec<Value> = values
        .into_iter()
        .map(|v| Value::Bytes(v.into_bytes()))
        .collect();
    arr.push_field(name, &format!("|S{width}"), &vals);
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
    picks: &[(&str, &Pick)],
    extra: &[String],
    dest: &Path,
) -> Result<()> {
    let rows: Vec<usize> = picks
        .iter()
        .map(|(_, p)| p.source.expect("read picks").row)
        .collect();
    let mut out = arr.select(&rows);
    for (i, name) in extra.iter().enumerate() {
        push_extra(
            &mut out,
            &cs_name(name),
            picks.iter().map(|(_, p)| p.extra[i].clone()).collect(),
        );
    }
    out.write(dest)
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
    let mut arr = StructArray::new();
    arr.push_field(
        "uid",
        "<u8",
        &(0..all.len() as u64).map(Value::U64).collect::<Vec<_>>(),
    );
    arr.push_field(
        "location/micrograph_uid",
        "<u8",
        &all.iter()
            .map(|(i, _)| Value::U64(*i as u64))
            .collect::<Vec<_>>(),
    );
    arr.push_field(
        "location/exp_group_id",
        "<u4",
        &all.iter().map(|_| Value::U32(0)).collect::<Vec<_>>(),
    );
    push_text(
        &mut arr,
        CS_PATH,
        all.iter()
            .map(|(i, _)| mics[*i].micrograph.clone())
            .collect(),
    );
    let shape_rows: Vec<Vec<u8>> = all
        .iter()
        .map(|(i, _)| {
            let (nx, ny) = shape_of[*i];
            [ny as u32, nx as u32]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        })
        .collect();
    arr.push_array_field(CS_SHAPE, "<u4", 2, &shape_rows);
    arr.push_field(
        CS_X,
        "<f4",
        &all.iter()
            .map(|(i, p)| Value::F32((p.x / shape_of[*i].0 as f64) as f32))
            .collect::<Vec<_>>(),
    );
    arr.push_field(
        CS_Y,
        "<f4",
        &all.iter()
            .map(|(i, p)| Value::F32((p.y / shape_of[*i].1 as f64) as f32))
            .collect::<Vec<_>>(),
    );
    if all.iter().any(|(_, p)| p.score.is_some()) {
        arr.push_field(
            CS_SCORE,
            "<f4",
            &all.iter()
                .map(|(_, p)| Value::F32(p.score.unwrap_or(0.0) as f32))
                .collect::<Vec<_>>(),
        );
    }
    if all.iter().any(|(_, p)| p.label.is_some()) {
        push_text(
            &mut arr,
            CS_LABEL,
            all.iter()
                .map(|(_, p)| p.label.clone().unwrap_or_default())
                .collect(),
        );
    }
    for (i, name) in extra.iter().enumerate() {
        push_extra(
            &mut arr,
            &cs_name(name),
            all.iter().map(|(_, p)| p.extra[i].clone()).collect(),
        );
    }
    arr.write(dest)
}
