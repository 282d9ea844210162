//! Output files stay byte for byte what they were for a fixed seed and a fixed model, across
//! refactors: simulate, convert, extract and prune are run on small generated data and a
//! committed model directory (written by cryoprune 0.1.0 before the jobs layer existed, so
//! this also proves older model directories still load), and each output's SHA-256 is compared
//! with `tests/fixtures/golden.sha256`.
//!
//! Every command runs in the test's folder with relative paths, so the outputs (which record the
//! paths they were given) are the same wherever the checkout is. When a change is meant to
//! alter an output, rerun with `CRYOPRUNE_BLESS=1` and say why in the commit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::process::Command;

use sha2::{Digest, Sha256};

mod common;
use common::text;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Runs cryoprune in `dir`.
fn run(dir: &Path, args: &[&str]) {
    let o = Command::new(env!("CARGO_BIN_EXE_cryoprune"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run cryoprune");
    assert!(o.status.success(), "cryoprune {args:?}\n{}", text(&o));
}

/// Copies the files of folder `from` into `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Every file under `dir` (relative path → SHA-256), with prune's summary stripped of what
/// changes from run to run (timings, device, the output folder).
fn hashes(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let mut bytes = std::fs::read(&p).unwrap();
            if rel.ends_with("summary.json") {
                let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                let m = v.as_object_mut().unwrap();
                for k in [
                    "seconds",
                    "particles_per_second",
                    "device",
                    "model",
                    "files_written",
                    "files_skipped",
                ] {
                    m.remove(k);
                }
                bytes = serde_json::to_vec_pretty(&v).unwrap();
            }
            out.insert(rel, format!("{:x}", Sha256::digest(&bytes)));
        }
    }
    out
}

#[test]
fn outputs_are_byte_identical_for_a_fixed_seed_and_model() {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("golden");
    let _ = std::fs::remove_dir_all(&root);
    let out = root.join("out");
    std::fs::create_dir_all(&out).unwrap();
    copy_dir(&fixtures().join("model-v0.1.0"), &root.join("model-v0.1.0"));
    let model = "../model-v0.1.0";
    let mics = "sim/micrographs/*.mrc";
    let picks = "sim/picks.star";
    let run = |args: &[&str]| run(&out, args);
    run(&[
        "simulate",
        "--out",
        "sim",
        "--count",
        "3",
        "--size",
        "320",
        "--seed",
        "21",
        "--preview-size",
        "128",
        "--threads",
        "2",
    ]);

    for (to, dest, more) in [
        ("csv", "convert/csv/", vec![]),
        ("box", "convert/box/", vec!["--box", "48"]),
        ("topaz", "convert/picks.txt", vec![]),
        ("cbox", "convert/cbox/", vec!["--box", "48"]),
        ("cs", "convert/picks.cs", vec!["--micrographs", mics]),
        ("star", "convert/scaled/", vec!["--scale", "0.5"]),
    ] {
        let mut a = vec!["convert", "--in", picks, "--to", to, "--out", dest];
        a.extend(more);
        run(&a);
    }

    run(&[
        "extract",
        "--micrographs",
        mics,
        "--picks",
        picks,
        "--box",
        "48",
        "--size",
        "32",
        "--edge",
        "noise",
        "--normalize",
        "robust",
        "--invert",
        "--threads",
        "2",
        "--out",
        "extract/particles.mrcs",
    ]);
    run(&[
        "extract",
        "--micrographs",
        mics,
        "--picks",
        "convert/csv",
        "--box",
        "48",
        "--lowpass-nyquist",
        "0.5",
        "--edge",
        "mean",
        "--threads",
        "1",
        "--out",
        "extract/lowpass.mrcs",
    ]);

    run(&[
        "prune",
        "--model",
        model,
        "--micrographs",
        mics,
        "--picks",
        picks,
        "--out",
        "prune/star",
        "--scores",
        "prune/scores.csv",
        "--write-rejected",
        "--prior",
        "training",
        "--threads",
        "2",
    ]);
    run(&[
        "prune",
        "--model",
        model,
        "--micrographs",
        mics,
        "--picks",
        "convert/box",
        "--out",
        "prune/box",
        "--image-only",
        "--threshold",
        "0.3",
        "--prior",
        "training",
        "--threads",
        "1",
    ]);
    // The default decision: the probabilities moved to the kept-class share estimated on these
    // picks.
    run(&[
        "prune",
        "--model",
        model,
        "--micrographs",
        mics,
        "--picks",
        picks,
        "--out",
        "prune/dataset",
        "--threads",
        "2",
    ]);

    let found = hashes(&out);
    let golden = fixtures().join("golden.sha256");
    let listing: String = found
        .iter()
        .map(|(path, h)| format!("{h}  {path}\n"))
        .collect();
    if std::env::var_os("CRYOPRUNE_BLESS").is_some() {
        std::fs::write(&golden, listing).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&golden).unwrap();
    let expected: BTreeMap<String, String> = expected
        .lines()
        .filter_map(|l| l.split_once("  "))
        .map(|(h, p)| (p.to_string(), h.to_string()))
        .collect();
    let mut differ = Vec::new();
    for (path, h) in &expected {
        match found.get(path) {
            Some(f) if f == h => {}
            Some(_) => differ.push(format!("changed: {path}")),
            None => differ.push(format!("missing: {path}")),
        }
    }
    for path in found.keys().filter(|p| !expected.contains_key(*p)) {
        differ.push(format!("new: {path}"));
    }
    assert!(
        differ.is_empty(),
        "outputs differ from tests/fixtures/golden.sha256 (kept under {}):\n{}",
        out.display(),
        differ.join("\n")
    );
    assert!(expected.len() > 30, "{} files", expected.len());
}
