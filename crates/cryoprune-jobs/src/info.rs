//! The info job: what a file holds (MRC header, image size, STAR blocks, `.cs` fields, picks per
//! micrograph) for any file cryoprune reads, and what a model or picker folder was trained as.

use std::path::Path;

use cryoprune_formats::micrograph::ImageFormat;
use cryoprune_formats::npy::StructArray;
use cryoprune_formats::star::Item;
use cryoprune_formats::{read_micrograph, MrcFile, PickFormat, PickSet, StarFile};
use cryoprune_train::modeldir::ModelDir;
use cryoprune_train::pickerdir::{self, PickerDir};
use serde_json::{json, Value};

use crate::{invalid, Error, Result};

/// What `path` holds, as JSON.
pub fn describe(path: &Path) -> Result<Value> {
    let file = path.display().to_string();
    if path.is_dir() {
        return describe_folder(path);
    }
    if let Some(fmt) = ImageFormat::from_path(path) {
        if fmt == ImageFormat::Mrc {
            let m = MrcFile::open(path)?;
            let h = m.header();
            return Ok(json!({
                "file": file, "type": "mrc",
                "kind": format!("{:?}", h.kind(path)),
                "nx": h.nx, "ny": h.ny, "nz": h.nz,
                "mode": h.mode.describe(),
                "voxel_size_A": h.voxel_size(),
                "byte_order": format!("{:?}", h.byte_order),
                "extended_header_bytes": h.nsymbt,
                "extended_header_type": h.exttyp,
                "space_group": h.ispg,
                "axis_order": h.axis_order,
                "min_max_mean_rms": [h.dmin, h.dmax, h.dmean, h.rms],
                "map_id": h.has_map_id,
                "labels": h.labels,
            }));
        }
        let img = read_micrograph(path)?;
        // Statistics of the finite pixels; dead ones (NaN, infinities) are counted apart, as
        // every other command replaces them.
        let finite = || img.data.iter().copied().filter(|v| v.is_finite());
        let (lo, hi) = finite().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        let n = finite().count();
        let mean = finite().map(f64::from).sum::<f64>() / n.max(1) as f64;
        return Ok(json!({
            "file": file, "type": format!("{fmt:?}").to_lowercase(),
            "nx": img.nx, "ny": img.ny, "min": lo, "max": hi, "mean": mean,
            "non_finite_pixels": img.data.len() - n,
        }));
    }
    let Some(format) = PickFormat::from_path(path) else {
        invalid!("{file}: unknown file type; expected an MRC, image or pick file");
    };
    let mut v = match format {
        PickFormat::Star => star_summary(path)?,
        PickFormat::Cs => cs_summary(path)?,
        _ => json!({ "file": file, "type": format!("{format:?}").to_lowercase() }),
    };
    // Only files that hold coordinates get pick counts; model or optics STARs are still described.
    let picks = PickSet::read(&[path.to_path_buf()], Some(format));
    match picks {
        Ok(set) => add_picks(&mut v, &set),
        Err(e) if matches!(format, PickFormat::Star | PickFormat::Cs) => {
            match micrographs_listed(path, format) {
                Some(n) => {
                    v["micrographs_listed"] = json!(format!(
                        "{}: a list of micrographs, as --micrographs takes one",
                        crate::count(n, "micrograph")
                    ))
                }
                None => v["picks_note"] = json!(e.to_string()),
            }
        }
        Err(e) => return Err(e.into()),
    }
    Ok(v)
}

/// How many micrographs a file that holds no picks lists, where it is a RELION micrographs STAR
/// (CtfFind's `micrographs_ctf.star`) or cryoSPARC exposures: what such a file is for.
fn micrographs_listed(path: &Path, format: PickFormat) -> Option<usize> {
    use crate::inputs::{loop_with, EXPOSURE_PATH, MICROGRAPH};
    match format {
        PickFormat::Star => {
            let star = StarFile::read(path).ok()?;
            loop_with(&star, "micrographs", MICROGRAPH).map(|(_, l, _)| l.rows.len())
        }
        _ => {
            let arr = StructArray::read(path).ok()?;
            arr.field(EXPOSURE_PATH).map(|_| arr.nrows)
        }
    }
}

/// What a set of picks holds: picks per micrograph, box size, score range and labels.
fn add_picks(v: &mut Value, set: &PickSet) {
    let per_mic: Vec<Value> = set
        .micrographs
        .iter()
        .map(|m| json!({ "micrograph": m.micrograph, "picks": m.picks.len() }))
        .collect();
    let scores: Vec<f64> = set.iter().filter_map(|(_, p)| p.score).collect();
    let labels: std::collections::BTreeMap<String, usize> = set
        .iter()
        .filter_map(|(_, p)| p.label.as_deref().map(str::to_string))
        .fold(Default::default(), |mut m, l| {
            *m.entry(l).or_default() += 1;
            m
        });
    v["picks"] = json!(set.len());
    v["micrographs"] = json!(per_mic);
    if !set.indexes.is_empty() {
        // RELION 4/5's coordinate-file index: where the micrograph names come from.
        let indexes: Vec<String> = set
            .indexes
            .iter()
            .map(|i| i.path.display().to_string())
            .collect();
        v["relion_index"] = json!(indexes);
    }
    if !set.joined.is_empty() {
        // A cryoSPARC job's passthrough: where the locations the main .cs lacks come from.
        let joined: Vec<String> = set.joined.iter().map(|p| p.display().to_string()).collect();
        v["joined_by_uid"] = json!(joined);
    }
    if let Some(b) = set.box_size {
        v["box_size"] = json!(b);
    }
    if !scores.is_empty() {
        let lo = scores.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        v["score_range"] = json!([lo, hi]);
    }
    if !labels.is_empty() {
        v["labels"] = json!(labels);
    }
}

/// A model folder from `train` or a picker folder from `picker train`: which data it learnt
/// from, how it scored and what it expects, the questions a folder found months later raises.
fn describe_folder(path: &Path) -> Result<Value> {
    let file = path.display().to_string();
    if path.join(pickerdir::SPEC_FILE).exists() {
        let s = PickerDir::new(path).spec()?;
        let t = &s.training;
        let validation = t.validation.as_ref().map(|p| {
            format!(
                "precision {:.3}, recall {:.3}, F1 {:.3} on {}",
                p.precision,
                p.recall,
                p.f1,
                crate::count(t.validation_micrographs.len(), "micrograph")
            )
        });
        return Ok(json!({
            "file": file, "type": "cryoprune picker",
            "network": s.network, "pretrained": s.pretrained,
            "particle_diameter_px": s.particle_diameter, "angpix": s.angpix, "bin": s.bin,
            "threshold": s.threshold, "views": s.views,
            "trained_on": format!(
                "{} on {}",
                crate::count(t.train_picks, "pick"),
                crate::count(t.train_micrographs.len(), "micrograph")
            ),
            "validation": validation,
            "average_precision": t.validation_average_precision,
        }));
    }
    if !path.join(cryoprune_train::modeldir::SPEC_FILE).exists() {
        // A folder of pick files, or a RELION picking job's, reads as the commands read it.
        let set = PickSet::read(&[path.to_path_buf()], None).map_err(|e| {
            Error::Invalid(format!(
                "{file} is no model or picker folder (no model.json or picker.json), nor does it \
                 read as picks: {e}"
            ))
        })?;
        let mut v = json!({
            "file": file,
            "type": format!("{:?} picks", set.format).to_lowercase(),
            "files": set.files.len(),
        });
        add_picks(&mut v, &set);
        return Ok(v);
    }
    let spec = ModelDir::new(path).spec()?;
    let t = &spec.training;
    let pre = &spec.preprocessing;
    let mut v = json!({
        "file": file, "type": "cryoprune model", "software": spec.software,
        "classes": spec.classes,
        "multi_label": spec.network.head.multi_label,
        "network": spec.network.arch.name(),
        "pretrained": spec.pretrained,
        "box_size": pre.box_size, "input_size": pre.input_size,
        "trained_on": spec.classes.iter().zip(&t.class_counts)
            .map(|(c, n)| format!("{n} {c}"))
            .collect::<Vec<_>>()
            .join(", "),
        "best_epoch": t.best_epoch,
    });
    if let Some(r) = &t.validation {
        v["validation"] = json!(format!(
            "macro-F1 {:.3}, accuracy {:.3} on {}",
            r.macro_f1,
            r.accuracy,
            crate::count(r.n, "held-out pick")
        ));
    }
    if let Some(r) = &t.label_validation {
        v["validation"] = json!(format!(
            "macro-F1 {:.3}, exact match {:.3} on {}",
            r.macro_f1,
            r.exact_match,
            crate::count(r.n, "held-out image")
        ));
    }
    if let Some(ctx) = &spec.pick_context {
        let facts: Vec<&str> = ctx.terms.iter().map(|t| t.fact.describe()).collect();
        v["pick_context"] = json!(facts.join(", "));
    }
    if !spec.members.is_empty() {
        v["networks"] = json!(spec.members.len() + 1);
    }
    Ok(v)
}

fn star_summary(path: &Path) -> Result<Value> {
    let star = StarFile::read(path)?;
    let blocks: Vec<Value> = star
        .blocks
        .iter()
        .map(|b| {
            let loops: Vec<Value> = b
                .items
                .iter()
                .filter_map(|i| match i {
                    Item::Loop(l) => Some(json!({ "rows": l.rows.len(), "columns": l.columns })),
                    Item::Pair { .. } => None,
                })
                .collect();
            json!({ "name": b.name, "key_values": b.pairs().count(), "loops": loops })
        })
        .collect();
    let version = star
        .blocks
        .iter()
        .flat_map(|b| &b.comments)
        .find_map(|c| c.strip_prefix("# version ").map(str::trim));
    Ok(
        json!({ "file": path.display().to_string(), "type": "star", "version": version, "blocks": blocks }),
    )
}

fn cs_summary(path: &Path) -> Result<Value> {
    let arr = StructArray::read(path)?;
    let fields: Vec<String> = arr
        .fields
        .iter()
        .map(|f| format!("{} {}", f.name, f.dtype))
        .collect();
    Ok(
        json!({ "file": path.display().to_string(), "type": "cs", "rows": arr.nrows, "record_bytes": arr.itemsize, "fields": fields }),
    )
}

/// The description as lines of text.
pub fn to_text(v: &Value) -> String {
    let Value::Object(map) = v else {
        return v.to_string();
    };
    let mut out = map["file"].as_str().unwrap_or("").to_string();
    for (k, val) in map {
        if k == "file" {
            continue;
        }
        let shown = match (k.as_str(), val) {
            ("micrographs", Value::Array(a)) if a.len() > 8 => {
                let total: Vec<String> = a
                    .iter()
                    .take(8)
                    .map(|m| {
                        format!(
                            "{} ({})",
                            m["micrograph"].as_str().unwrap_or(""),
                            m["picks"]
                        )
                    })
                    .collect();
                format!("{} micrographs: {}, ...", a.len(), total.join(", "))
            }
            ("micrographs", Value::Array(a)) => a
                .iter()
                .map(|m| {
                    format!(
                        "{} ({})",
                        m["micrograph"].as_str().unwrap_or(""),
                        m["picks"]
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
            ("blocks", Value::Array(a)) => a
                .iter()
                .map(star_block)
                .collect::<Vec<_>>()
                .join(&format!("\n  {:<22} ", "")),
            ("fields", Value::Array(a)) if a.len() > 12 => {
                let first: Vec<&str> = a.iter().take(12).filter_map(|f| f.as_str()).collect();
                format!("{} fields: {}, ...", a.len(), first.join(", "))
            }
            (_, Value::Array(a)) if a.iter().all(|x| !x.is_array() && !x.is_object()) => {
                a.iter().map(scalar).collect::<Vec<_>>().join(", ")
            }
            (_, Value::Object(m)) if m.values().all(|x| !x.is_array() && !x.is_object()) => m
                .iter()
                .map(|(name, x)| format!("{} {name}", scalar(x)))
                .collect::<Vec<_>>()
                .join(", "),
            (_, other) => scalar(other),
        };
        out.push_str(&format!("\n  {k:<22} {shown}"));
    }
    out
}

/// One STAR block on a line: its name, its key-value pairs and each loop's size and first
/// columns (the columns are what a user checks: is rlnAutopickFigureOfMerit there?).
fn star_block(b: &Value) -> String {
    let mut parts = vec![];
    if let Some(n) = b["key_values"].as_u64().filter(|&n| n > 0) {
        parts.push(crate::count(n as usize, "key-value pair"));
    }
    for l in b["loops"].as_array().into_iter().flatten() {
        let columns: Vec<&str> = l["columns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let shown = match columns.len() > 6 {
            true => format!("{}, ...", columns[..6].join(", ")),
            false => columns.join(", "),
        };
        parts.push(format!(
            "a loop of {} × {} ({shown})",
            crate::count(l["rows"].as_u64().unwrap_or(0) as usize, "row"),
            crate::count(columns.len(), "column"),
        ));
    }
    if parts.is_empty() {
        parts.push("empty".into());
    }
    format!(
        "data_{}: {}",
        b["name"].as_str().unwrap_or(""),
        parts.join("; ")
    )
}

/// A value as a person reads it: strings without quotes, and floats to six significant digits
/// (a mean pixel value or a voxel size in f32 has no meaning past that).
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) if s.is_empty() => "none".into(),
        Value::String(s) => s.clone(),
        Value::Null => "none".into(),
        Value::Number(n) if !n.is_f64() => n.to_string(),
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if x == 0.0 || !x.is_finite() {
                return x.to_string();
            }
            let decimals = (5 - x.abs().log10().floor() as i32).clamp(0, 12) as usize;
            let text = format!("{x:.decimals$}");
            match text.contains('.') {
                true => text.trim_end_matches('0').trim_end_matches('.').to_string(),
                false => text,
            }
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A float TIFF with dead pixels: its statistics are those of the finite pixels, and the
    /// dead ones are counted (every other command replaces them).
    #[test]
    fn image_statistics_leave_out_and_count_non_finite_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.tif");
        let vals = [1.0f32, f32::NAN, 3.0, f32::INFINITY, 5.0, 7.0];
        let f = std::fs::File::create(&path).unwrap();
        tiff::encoder::TiffEncoder::new(f)
            .unwrap()
            .write_image::<tiff::encoder::colortype::Gray32Float>(3, 2, &vals)
            .unwrap();
        let v = describe(&path).unwrap();
        assert_eq!(v["non_finite_pixels"], 2);
        assert_eq!(
            (v["min"].as_f64(), v["max"].as_f64()),
            (Some(1.0), Some(7.0))
        );
        assert_eq!(v["mean"].as_f64(), Some(4.0));
    }

    #[test]
    fn text_shows_floats_to_six_digits_and_lists_plainly() {
        let v = json!({
            "file": "m.mrc", "mean": 133.42094612121582, "max": 254.0, "nx": 4096,
            "voxel_size_A": [0.6665513515472412, 0.6665513515472412, 0.0],
            "classes": ["junk", "particle"], "threshold": 0.000012345678, "version": null,
            "labels": { "junk": 878, "particle": 2174 },
            "blocks": [
                { "name": "optics", "key_values": 0,
                  "loops": [{ "rows": 1, "columns": ["rlnOpticsGroup", "rlnVoltage"] }] },
                { "name": "", "key_values": 3, "loops": [] },
            ],
        });
        let text = to_text(&v);
        for line in [
            "mean                   133.421",
            "max                    254\n",
            "nx                     4096",
            "voxel_size_A           0.666551, 0.666551, 0",
            "classes                junk, particle",
            "threshold              0.0000123457",
            "version                none",
            "labels                 878 junk, 2174 particle",
            "blocks                 data_optics: a loop of 1 row × 2 columns (rlnOpticsGroup, \
             rlnVoltage)\n                         data_: 3 key-value pairs",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
    }
}
