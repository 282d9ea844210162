//! Helpers shared by the end-to-end tests: running the binary, finding the shared data, and
//! asking the community's Python readers (tests/interop/check.py) about our files.
#![allow(dead_code)] // each test binary uses its own share of these

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cryoprune_formats::npy::StructArray;
use cryoprune_formats::StarFile;
use serde_json::{json, Value};

pub fn cryoprune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cryoprune"))
        .args(args)
        .output()
        .expect("run cryoprune")
}

/// The smallest useful network: 32 px inputs from 48 px boxes, 2 epochs, no pretrained weights.
pub const TINY_NET: [&str; 10] = [
    "--box",
    "48",
    "--input-size",
    "32",
    "--arch",
    "small",
    "--pretrained",
    "none",
    "--epochs",
    "2",
];

/// `train` of the [`TINY_NET`] on `labels`: the model the prune and RELION tests prune with.
pub fn tiny_train_args<'a>(mics: &'a str, labels: &'a str, out: &'a str) -> Vec<&'a str> {
    let mut args = vec!["train", "--micrographs", mics, "--labels", labels];
    args.extend(TINY_NET);
    args.extend(["--val-fraction", "0.3", "--out", out]);
    args
}

/// A model folder's model.json.
pub fn model_json(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("model.json")).unwrap()).unwrap()
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn data() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!(
            "skipping: {} not found (shared test data is not beside this checkout)",
            p.display()
        );
        None
    }
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import mrcfile, starfile, numpy, cryosparc.dataset"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let msg = "python3 with mrcfile, starfile, numpy and cryosparc-tools is not available";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{msg} (CI must install them: see .ci/run)"
        );
        eprintln!("skipping: {msg} (pip install mrcfile starfile numpy cryosparc-tools)");
    }
    ok
}

pub fn star_entry(path: &Path) -> Value {
    let star = StarFile::read(path).unwrap();
    let mut blocks = serde_json::Map::new();
    for b in &star.blocks {
        if let Some(l) = b.first_loop() {
            blocks.insert(
                b.name.clone(),
                json!({ "columns": l.columns, "rows": l.rows.iter().map(|r| r.to_vec()).collect::<Vec<_>>() }),
            );
        }
    }
    json!({ "path": path, "blocks": blocks })
}

pub fn cs_entry(path: &Path, value_fields: &[&str]) -> Value {
    let a = StructArray::read(path).unwrap();
    let mut values = serde_json::Map::new();
    for name in value_fields {
        let f = a.field(name).unwrap();
        let v: Vec<Value> = (0..a.nrows.min(50))
            .map(|r| {
                a.text(r, f)
                    .map(Value::from)
                    .unwrap_or_else(|| json!(a.number(r, f, 0).unwrap()))
            })
            .collect();
        values.insert(name.to_string(), Value::Array(v));
    }
    let fields: Vec<&str> = a.fields.iter().map(|f| f.name.as_str()).collect();
    json!({ "path": path, "fields": fields, "nrows": a.nrows, "values": values })
}

/// Runs check.py on a manifest (see its docstring) and fails with its findings.
pub fn run_python_check(manifest: &Path) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/check.py");
    let o = Command::new("python3")
        .arg(&script)
        .arg(manifest)
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{out}");
    println!("{out}");
}
