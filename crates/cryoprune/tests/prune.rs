//! `cryoprune prune` end to end on simulated micrographs and a small trained model: every input
//! format is pruned, read back by our reader (and, under CI, by starfile / numpy) with its unknown
//! columns intact; inputs are never written over; a run killed with SIGKILL leaves whole files or
//! none; `--skip-existing` redoes only what is missing; coordinate mistakes are warned about.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cryoprune_formats::npy::{NewField, StructArray};
use cryoprune_formats::picks::Content;
use cryoprune_formats::{Pick, PickFormat, PickSet, WriteOptions};
use cryoprune_model::pick_context::{edge_distance, Fact};
use cryoprune_model::{PickContext, PickFacts};
use serde_json::json;

mod common;
use common::{
    cryoprune, cs_entry, model_json, python_ready, run_python_check, s, star_entry, text,
    tiny_train_args,
};

/// A simulated dataset and a model trained on it, built once per test run.
struct Fixture {
    dir: PathBuf,
    model: PathBuf,
    mics: String,
    /// The simulated picks: micrograph, x, y, score.
    picks: Vec<(String, f64, f64, f64)>,
    /// The median p(particle) of a first run: a threshold that keeps about half the picks
    /// whatever a two-epoch model learned.
    threshold: String,
}

const BOX: f64 = 48.0;
const SIZE: usize = 384;

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("prune_fixture");
        let _ = std::fs::remove_dir_all(&dir);
        let sim = dir.join("sim");
        let o = cryoprune(&[
            "simulate",
            "--out",
            s(&sim),
            "--count",
            "4",
            "--size",
            &SIZE.to_string(),
            "--seed",
            "5",
            "--format",
            "csv",
            "--no-previews",
        ]);
        assert!(o.status.success(), "{}", text(&o));
        let model = dir.join("model");
        let mics = s(&sim.join("micrographs/*.mrc")).to_string();
        // Some formats below carry no score column, and every format must prune alike.
        let o = train_on_truth(&sim, &mics, &model, &["--image-only"]);
        assert!(o.status.success(), "{}", text(&o));
        let set = PickSet::read(&[sim.join("picks.csv")], None).unwrap();
        let picks = set
            .iter()
            .map(|(m, p)| (m.to_string(), p.x, p.y, p.score.unwrap()))
            .collect();
        let probe = dir.join("probe");
        let o = cryoprune(
            &[
                prune_args(s(&model), &mics, s(&sim.join("picks.csv")), s(&probe)),
                vec!["--scores", s(&probe.join("scores.csv"))],
            ]
            .concat(),
        );
        assert!(o.status.success(), "{}", text(&o));
        let mut p: Vec<f64> = read_scores(&probe.join("scores.csv"))
            .values()
            .map(|v| v.1.parse().unwrap())
            .collect();
        p.sort_by(f64::total_cmp);
        let threshold = format!("{:.4}", p[p.len() / 2]);
        Fixture {
            dir,
            model,
            mics,
            picks,
            threshold,
        }
    })
}

/// Trains the small two-epoch model on the simulation's truth (its labels carry the simulated
/// picker's score), with further arguments.
fn train_on_truth(sim: &Path, mics: &str, out: &Path, more: &[&str]) -> std::process::Output {
    let truth = sim.join("truth.csv");
    let mut a = tiny_train_args(mics, s(&truth), s(out));
    a.extend(more);
    cryoprune(&a)
}

/// `prune` with a model, micrographs, picks and `--out`; callers add the flags they test.
fn prune_args<'a>(model: &'a str, mics: &'a str, picks: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "prune",
        "--model",
        model,
        "--micrographs",
        mics,
        "--picks",
        picks,
        "--out",
        out,
    ]
}

/// A note per pick that names its centre, so a row carrying the wrong note is caught.
fn note(x: f64, y: f64) -> String {
    format!("n{x:.2}_{y:.2}")
}

/// Writes the fixture's picks as `format` under `dir`, each with an unknown `note` column (the
/// 5th column of `.box` instead, which prune replaces). Returns the files.
fn write_input(f: &Fixture, format: &str, dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let by_mic: BTreeMap<&str, Vec<&(String, f64, f64, f64)>> =
        f.picks.iter().fold(BTreeMap::new(), |mut m, p| {
            m.entry(p.0.as_str()).or_default().push(p);
            m
        });
    let mut files = Vec::new();
    let mut put = |name: String, body: String| {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        files.push(p);
    };
    match format {
        "star30" => {
            for (mic, picks) in &by_mic {
                let mut b = String::from(
                    "\ndata_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n\
                     _rlnAutopickFigureOfMerit #3\n_rlnNote #4\n",
                );
                for (_, x, y, sc) in picks {
                    b.push_str(&format!("{x:.2} {y:.2} {sc} {}\n", note(*x, *y)));
                }
                put(format!("{mic}.star"), b);
            }
        }
        "star31" => {
            let mut b = String::from(
                "\n# version 30001\n\ndata_optics\n\nloop_\n_rlnOpticsGroupName #1\n\
                 _rlnOpticsGroup #2\n_rlnMicrographPixelSize #3\n_rlnVoltage #4\n\
                 opticsGroup1 1 2.500000 300.000000\n\n# version 30001\n\ndata_particles\n\n\
                 loop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnMicrographName #3\n\
                 _rlnOpticsGroup #4\n_rlnNote #5\n",
            );
            for (mic, picks) in &by_mic {
                for (_, x, y, _) in picks {
                    b.push_str(&format!(
                        "{x:.2} {y:.2} MotionCorr/job002/{mic}.mrc 1 {}\n",
                        note(*x, *y)
                    ));
                }
            }
            put("particles.star".into(), b);
        }
        "box" => {
            for (mic, picks) in &by_mic {
                let b: String = picks
                    .iter()
                    .map(|(_, x, y, sc)| {
                        format!("{:.2}\t{:.2}\t48\t48\t{sc}\n", x - BOX / 2.0, y - BOX / 2.0)
                    })
                    .collect();
                put(format!("{mic}.box"), b);
            }
        }
        "topaz" => {
            let mut b = String::from("image_name\tx_coord\ty_coord\tscore\tnote\n");
            for (mic, x, y, sc) in &f.picks {
                b.push_str(&format!("{mic}\t{x:.2}\t{y:.2}\t{sc}\t{}\n", note(*x, *y)));
            }
            put("picks.txt".into(), b);
        }
        "csv" => {
            let mut b = String::from("micrograph,x,y,score,note\n");
            for (mic, x, y, sc) in &f.picks {
                b.push_str(&format!("{mic},{x:.2},{y:.2},{sc},{}\n", note(*x, *y)));
            }
            put("picks.csv".into(), b);
        }
        "cbox" | "cs" => {
            // Written by our own writer (crYOLO's STAR dialect, cryoSPARC's fields), with the
            // note as a column crYOLO / cryoSPARC do not know.
            let mut set = PickSet::empty(PickFormat::Csv);
            let mut index = HashMap::new();
            for (mic, x, y, sc) in &f.picks {
                let mut p = Pick::new((x * 100.0).round() / 100.0, (y * 100.0).round() / 100.0);
                p.score = Some(*sc);
                set.push(mic, p, &mut index);
            }
            let opts = WriteOptions {
                box_size: Some(BOX),
                micrograph_shapes: by_mic
                    .keys()
                    .map(|m| (m.to_string(), (SIZE, SIZE)))
                    .collect(),
            };
            if format == "cbox" {
                set.add_column("Note", |_, p| note(p.x, p.y));
                files.extend(set.write(PickFormat::Cbox, dir, &opts).unwrap());
            } else {
                let path = dir.join("picks.cs");
                set.write(PickFormat::Cs, &path, &opts).unwrap();
                let arr = StructArray::read(&path).unwrap();
                let idx = NewField::f32("blob/idx", |i| i as f32);
                arr.write_selected(&path, 0..arr.nrows, &[idx]).unwrap();
                files.push(path);
            }
        }
        _ => unreachable!(),
    }
    files
}

/// Kept picks and p(particle) by centre (two decimals), from `--scores`.
fn read_scores(path: &Path) -> HashMap<(String, String, String), (bool, String)> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let h = r.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|c| c == n).unwrap();
    let (kept, p) = (col("kept"), col("p_particle"));
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            let c = |j: usize| format!("{:.2}", rec[j].parse::<f64>().unwrap());
            (
                (
                    cryoprune_formats::names::micrograph_key(&rec[0]),
                    c(1),
                    c(2),
                ),
                (&rec[kept] == "1", rec[p].to_string()),
            )
        })
        .collect()
}

/// Every class's probability by centre (two decimals), from `--scores`.
fn class_probabilities(path: &Path) -> HashMap<(String, String, String), Vec<f32>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let h = r.headers().unwrap().clone();
    let cols: Vec<usize> = (0..h.len()).filter(|&j| h[j].starts_with("p_")).collect();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            (
                key(&rec[0], rec[1].parse().unwrap(), rec[2].parse().unwrap()),
                cols.iter().map(|&j| rec[j].parse().unwrap()).collect(),
            )
        })
        .collect()
}

fn key(mic: &str, x: f64, y: f64) -> (String, String, String) {
    let stem = cryoprune_formats::names::micrograph_key(mic);
    (stem, format!("{x:.2}"), format!("{y:.2}"))
}

#[test]
fn every_format_is_pruned_in_its_own_format_with_its_columns_kept() {
    let f = fixture();
    let python = python_ready();
    let (mut stars, mut css, mut tables) = (Vec::new(), Vec::new(), Vec::new());
    for format in ["star30", "star31", "box", "cbox", "topaz", "csv", "cs"] {
        let root = f.dir.join(format);
        let _ = std::fs::remove_dir_all(&root);
        let inputs = write_input(f, format, &root.join("in"));
        let before: Vec<Vec<u8>> = inputs.iter().map(|p| std::fs::read(p).unwrap()).collect();
        let out = root.join("out");
        let scores = root.join("scores.csv");
        let mut args = vec![
            "prune",
            "--model",
            s(&f.model),
            "--micrographs",
            &f.mics,
            "--picks",
        ];
        args.extend(inputs.iter().map(|p| s(p)));
        args.extend([
            "--out",
            s(&out),
            "--scores",
            s(&scores),
            "--write-rejected",
            "--threshold",
            &f.threshold,
        ]);
        let o = cryoprune(&args);
        let t = text(&o);
        assert!(o.status.success(), "{format}: {t}");
        for (p, b) in inputs.iter().zip(&before) {
            assert_eq!(&std::fs::read(p).unwrap(), b, "{format}: input changed");
        }
        let scored = read_scores(&scores);
        assert_eq!(scored.len(), f.picks.len(), "{format}");
        let n_kept = scored.values().filter(|v| v.0).count();
        assert!(
            n_kept > 0 && n_kept < scored.len(),
            "{format}: the model kept {n_kept} of {}",
            scored.len()
        );

        for (sub, want_kept) in [("", true), ("rejected", false)] {
            let outs: Vec<PathBuf> = inputs
                .iter()
                .map(|p| out.join(sub).join(p.file_name().unwrap()))
                .collect();
            let fmt = PickFormat::from_path(&outs[0]);
            let back = PickSet::read(&outs, fmt).unwrap();
            let expected = scored.values().filter(|v| v.0 == want_kept).count();
            assert_eq!(back.len(), expected, "{format} {sub}");
            for (mic, p) in back.iter() {
                let k = key(mic, p.x, p.y);
                let (kept, prob) = scored
                    .get(&k)
                    .unwrap_or_else(|| panic!("{format}: {k:?} not among the scores"));
                assert_eq!(*kept, want_kept, "{format}: {k:?}");
                if format == "box" {
                    let diff = p.score.unwrap() - prob.parse::<f64>().unwrap();
                    assert!(
                        diff.abs() < 2e-4,
                        "{format}: 5th column {:?} for {prob}",
                        p.score
                    );
                }
            }
            check_columns(format, &back, python, &mut stars, &mut css, &mut tables);
        }
    }
    if python {
        let manifest = f.dir.join("prune_manifest.json");
        std::fs::write(
            &manifest,
            json!({ "star": stars, "cs": css, "tables": tables }).to_string(),
        )
        .unwrap();
        run_python_check(&manifest);
    }
}

/// The unknown column survives row by row, the added ones are there, and the files go into the
/// manifest for the Python readers.
fn check_columns(
    format: &str,
    back: &PickSet,
    python: bool,
    stars: &mut Vec<serde_json::Value>,
    css: &mut Vec<serde_json::Value>,
    tables: &mut Vec<serde_json::Value>,
) {
    for file in &back.files {
        match &file.content {
            Content::Star { star, block } => {
                let l = star.blocks[*block].first_loop().unwrap();
                let col = |n: &str| {
                    l.column(n)
                        .unwrap_or_else(|| panic!("{format}: no {n} in {:?}", l.columns))
                };
                let (x, y, n) = if format == "cbox" {
                    (col("CoordinateX"), col("CoordinateY"), col("Note"))
                } else {
                    (col("rlnCoordinateX"), col("rlnCoordinateY"), col("rlnNote"))
                };
                col("cryopruneClass");
                col("cryopruneP_particle");
                for r in &l.rows {
                    let (mut cx, mut cy) =
                        (r[x].parse::<f64>().unwrap(), r[y].parse::<f64>().unwrap());
                    if format == "cbox" {
                        cx += BOX / 2.0;
                        cy += BOX / 2.0;
                    }
                    assert_eq!(r[n], note(cx, cy), "{format}");
                }
                if format == "star31" {
                    assert!(
                        star.block("optics").is_some(),
                        "{format}: optics block lost"
                    );
                }
                if python {
                    stars.push(star_entry(&file.path));
                }
            }
            Content::Cs(arr) => {
                for field in ["blob/idx", "cryoprune/class", "cryoprune/p_particle"] {
                    assert!(arr.field(field).is_some(), "{format}: no {field}");
                }
                if python {
                    css.push(cs_entry(&file.path, &["blob/idx", "cryoprune/class"]));
                }
            }
            Content::Table { header, rows } => {
                if let Some(h) = header {
                    let n = h.iter().position(|c| c == "note").unwrap();
                    assert!(h.iter().any(|c| c == "cryoprune_class"), "{format}: {h:?}");
                    let (x, y) = (
                        h.iter().position(|c| c == "x" || c == "x_coord").unwrap(),
                        h.iter().position(|c| c == "y" || c == "y_coord").unwrap(),
                    );
                    for r in rows {
                        let (cx, cy) = (r[x].parse::<f64>().unwrap(), r[y].parse::<f64>().unwrap());
                        assert_eq!(r[n], note(cx, cy), "{format}");
                    }
                } else {
                    assert!(
                        rows.iter().all(|r| r.len() == 5 && r[2] == "48"),
                        "{format}"
                    );
                }
                if python {
                    let kind = match format {
                        "box" => "box",
                        "topaz" => "topaz",
                        _ => "csv",
                    };
                    let all: Vec<&Vec<String>> = header.iter().chain(rows).collect();
                    tables.push(json!({ "path": file.path, "kind": kind, "rows": all }));
                }
            }
        }
    }
}

#[test]
fn refuses_to_write_into_the_input_folder() {
    let f = fixture();
    let root = f.dir.join("refuse");
    let _ = std::fs::remove_dir_all(&root);
    let inputs = write_input(f, "box", &root);
    let before: Vec<Vec<u8>> = inputs.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let o = cryoprune(&prune_args(s(&f.model), &f.mics, s(&root), s(&root)));
    assert!(!o.status.success());
    assert!(
        text(&o).contains("where the input picks are"),
        "{}",
        text(&o)
    );
    for (p, b) in inputs.iter().zip(&before) {
        assert_eq!(&std::fs::read(p).unwrap(), b);
    }
}

/// --scores, --report and evaluate's --json and --predictions are outputs too: none may land
/// on a pick file, a micrograph or the model, and the refusal comes before any work.
#[test]
fn no_output_flag_writes_over_an_input() {
    let f = fixture();
    let root = f.dir.join("refuse_outputs");
    let _ = std::fs::remove_dir_all(&root);
    let inputs = write_input(f, "box", &root.join("picks"));
    let mic = glob::glob(&f.mics).unwrap().next().unwrap().unwrap();
    let model_json = f.model.join("model.json");
    let truth = f.dir.join("sim/truth.csv");
    let guarded: Vec<PathBuf> = inputs
        .iter()
        .cloned()
        .chain([mic.clone(), model_json.clone(), truth.clone()])
        .collect();
    let before: Vec<Vec<u8>> = guarded.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let out = root.join("out");
    for (flag, target) in [
        ("--scores", &inputs[0]),
        ("--report", &mic),
        ("--scores", &model_json),
        ("--out", &f.model),
    ] {
        let mut args = prune_args(
            s(&f.model),
            &f.mics,
            s(inputs[0].parent().unwrap()),
            s(&out),
        );
        if flag == "--out" {
            args.truncate(args.len() - 2);
        }
        args.extend([flag, s(target)]);
        let o = cryoprune(&args);
        let t = text(&o);
        assert!(!o.status.success(), "{flag} {}: {t}", target.display());
        assert!(t.contains("would write over an input"), "{t}");
        assert!(
            !t.contains("classifying"),
            "refused only after the work: {t}"
        );
    }
    for (flag, target) in [("--json", &model_json), ("--predictions", &truth)] {
        let o = cryoprune(&[
            "evaluate",
            "--model",
            s(&f.model),
            "--micrographs",
            &f.mics,
            "--labels",
            s(&truth),
            flag,
            s(target),
        ]);
        let t = text(&o);
        assert!(!o.status.success(), "{flag}: {t}");
        assert!(t.contains("would write over an input"), "{t}");
    }
    for (p, b) in guarded.iter().zip(&before) {
        assert_eq!(&std::fs::read(p).unwrap(), b, "{} changed", p.display());
    }
}

/// An output folder that cannot be made is refused before the work (not after training or
/// classifying everything), and a trailing slash makes `--out x.star/` a folder.
#[test]
fn output_folders_are_checked_before_the_work() {
    let f = fixture();
    let root = f.dir.join("out_checks");
    let _ = std::fs::remove_dir_all(&root);
    let inputs = write_input(f, "csv", &root.join("in"));
    assert_eq!(inputs.len(), 1);
    let a_file = root.join("a_file");
    std::fs::write(&a_file, "not a folder").unwrap();
    let prune = |out: &str| cryoprune(&prune_args(s(&f.model), &f.mics, s(&inputs[0]), out));
    let o = prune(s(&a_file.join("sub")));
    let t = text(&o);
    assert!(!o.status.success() && t.contains("a_file is a file"), "{t}");
    assert!(!t.contains("classifying"), "{t}");

    let folder = format!("{}/", root.join("pruned.csv").display());
    let o = prune(&folder);
    assert!(o.status.success(), "{}", text(&o));
    assert!(root
        .join("pruned.csv")
        .join(inputs[0].file_name().unwrap())
        .is_file());

    let o = train_on_truth(&f.dir.join("sim"), &f.mics, &a_file, &[]);
    let t = text(&o);
    assert!(!o.status.success() && t.contains("a_file is a file"), "{t}");
    assert!(!t.contains("training on"), "{t}");

    // Output files whose folder cannot be made, and other jobs' output folders, likewise.
    let json = a_file.join("eval.json");
    for args in [
        vec![
            "evaluate",
            "--model",
            s(&f.model),
            "--micrographs",
            &f.mics,
            "--labels",
            s(&inputs[0]),
            "--json",
            s(&json),
        ],
        vec!["simulate", "--out", s(&a_file), "--count", "1"],
    ] {
        let o = cryoprune(&args);
        let t = text(&o);
        assert!(
            !o.status.success() && t.contains("a_file is a file"),
            "{args:?}: {t}"
        );
    }
    assert_eq!(std::fs::read_to_string(&a_file).unwrap(), "not a folder");
}

/// RELION 4/5's AutoPick job given as its folder or its index (`autopick.star`) prunes the
/// coordinate files the index lists, each to a file of its own name, as they would prune given
/// one by one, and writes an index of the pruned files beside them; two inputs of one name from two folders are refused before any work.
#[test]
fn a_relion_autopick_job_prunes_through_its_index() {
    let f = fixture();
    let root = f.dir.join("relion_index");
    let _ = std::fs::remove_dir_all(&root);
    let plain = write_input(f, "star30", &root.join("plain"));
    let job = root.join("AutoPick/job006");
    std::fs::create_dir_all(job.join("Movies")).unwrap();
    let mut index = String::from(
        "data_coordinate_files\nloop_\n_rlnMicrographName #1\n_rlnMicrographCoordinates #2\n",
    );
    for p in &plain {
        let mic = p.file_stem().unwrap().to_str().unwrap();
        let listed = format!("AutoPick/job006/Movies/{mic}_autopick.star");
        std::fs::copy(p, root.join(&listed)).unwrap();
        index.push_str(&format!("MotionCorr/job002/Movies/{mic}.mrc {listed}\n"));
    }
    std::fs::write(job.join("autopick.star"), index).unwrap();
    std::fs::write(job.join("note.txt"), "++++ Executing new job on ...\n").unwrap();
    let prune = |picks: &[&Path], out: &Path| {
        let mut args = prune_args(s(&f.model), &f.mics, s(picks[0]), s(out));
        args.splice(7..7, picks[1..].iter().map(|p| s(p)));
        cryoprune(&args)
    };
    let o = prune(&[&root.join("plain")], &root.join("out_plain"));
    assert!(o.status.success(), "{}", text(&o));
    for given in [job.clone(), job.join("autopick.star")] {
        let out = root.join("out_index");
        let _ = std::fs::remove_dir_all(&out);
        let o = prune(&[&given], &out);
        assert!(o.status.success(), "{}: {}", given.display(), text(&o));
        for p in &plain {
            let mic = p.file_stem().unwrap().to_str().unwrap();
            let one = std::fs::read(root.join("out_plain").join(format!("{mic}.star"))).unwrap();
            let listed = std::fs::read(out.join(format!("{mic}_autopick.star"))).unwrap();
            assert_eq!(one, listed, "{mic}");
        }
        // The outputs' own index, for RELION's Extract: each micrograph as the input index
        // named it, with its pruned file.
        let written = std::fs::read_to_string(out.join("autopick.star")).unwrap();
        let rows: Vec<Vec<&str>> = written
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|w| w.len() == 2 && !w[0].starts_with('_'))
            .collect();
        assert_eq!(rows.len(), plain.len(), "{written}");
        for (row, p) in rows.iter().zip(&plain) {
            let mic = p.file_stem().unwrap().to_str().unwrap();
            assert_eq!(row[0], format!("MotionCorr/job002/Movies/{mic}.mrc"));
            let pruned = out.join(format!("{mic}_autopick.star"));
            // Relative to the project folder, as the read index's paths are, though prune
            // ran elsewhere.
            assert_eq!(root.join(row[1]), pruned);
        }
        let pruned: Vec<PathBuf> = rows.iter().map(|r| root.join(r[1])).collect();
        let again = PickSet::read(&[out.join("autopick.star")], None).unwrap();
        assert_eq!(again.len(), PickSet::read(&pruned, None).unwrap().len());
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), plain.len() + 2);
    }
    // Shards, each with part of the files, write no index; their merge writes the one run's.
    let shards: Vec<PathBuf> = (0..2).map(|i| root.join(format!("shard_{i}"))).collect();
    for (i, shard) in shards.iter().enumerate() {
        let _ = std::fs::remove_dir_all(shard);
        let mut args = prune_args(s(&f.model), &f.mics, s(&job), s(shard));
        let place = format!("{i}/2");
        args.extend(["--shard", &place]);
        let o = cryoprune(&args);
        assert!(o.status.success(), "{}", text(&o));
        assert!(!shard.join("autopick.star").exists());
    }
    let merged = root.join("merged");
    let _ = std::fs::remove_dir_all(&merged);
    let o = cryoprune(&[
        "merge",
        "--in",
        s(&shards[0]),
        s(&shards[1]),
        "--out",
        s(&merged),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let index = std::fs::read_to_string(merged.join("autopick.star")).unwrap();
    let from_one = std::fs::read_to_string(root.join("out_index/autopick.star")).unwrap();
    assert_eq!(index, from_one.replace("out_index", "merged"));
    // Into the job's own folder, the index written would replace the one read.
    let o = prune(&[&job], &job);
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("is where the input picks are"),
        "{t}"
    );

    let twins = [root.join("a"), root.join("b")].map(|d| {
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(&plain[0], d.join(plain[0].file_name().unwrap())).unwrap();
        d.join(plain[0].file_name().unwrap())
    });
    // Two files of one name keep the folders that tell them apart.
    let out = root.join("out_twins");
    let o = prune(&[&twins[0], &twins[1]], &out);
    assert!(o.status.success(), "{}", text(&o));
    let name = plain[0].file_name().unwrap();
    let written = [out.join("a").join(name), out.join("b").join(name)];
    let back = PickSet::read(&written, None).unwrap();
    assert_eq!(back.files.len(), 2);
    assert!(!out.join(name).exists());
    // One file given twice would still write one output twice.
    let out = root.join("out_twice");
    let o = prune(&[&twins[0], &twins[0]], &out);
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("share a file name"),
        "{t}"
    );
    assert!(!t.contains("classifying") && !out.exists(), "{t}");
}

/// A copy of field `name` of `from`, record `rows[i]` as record `i`.
fn copy_field<'a>(from: &'a StructArray, name: &str, rows: &'a [usize]) -> NewField<'a> {
    let f = from.field(name).unwrap().clone();
    let (dtype, count) = (f.dtype.clone(), f.count());
    NewField::le(name, &dtype, count, move |i, b| {
        let start = rows[i] * from.itemsize + f.offset;
        b.copy_from_slice(&from.data[start..start + f.size()]);
    })
}

/// A cryoSPARC job folder as cryoSPARC lays it out: the main `.cs` holds what the job made
/// (here `blob/idx`), the passthrough `.cs` beside it the pick locations, in another order, and
/// `job.json` says which is which. Pruning the folder joins them by `uid`.
#[test]
fn a_cryosparc_job_folder_is_pruned_with_its_passthrough_joined() {
    let f = fixture();
    let root = f.dir.join("cs_job");
    let _ = std::fs::remove_dir_all(&root);
    let flat = write_input(f, "cs", &root.join("flat")).remove(0);
    let all = StructArray::read(&flat).unwrap();
    let job = root.join("P3/J42");
    std::fs::create_dir_all(&job).unwrap();
    let forward: Vec<usize> = (0..all.nrows).collect();
    let reversed: Vec<usize> = forward.iter().rev().copied().collect();
    let write = |name: &str, rows: &[usize], fields: &[&str]| {
        let copies: Vec<NewField> = fields.iter().map(|n| copy_field(&all, n, rows)).collect();
        let path = job.join(name);
        StructArray::new()
            .write_selected(&path, rows.iter().map(|_| 0), &copies)
            .unwrap();
        path
    };
    let main = write("extracted_particles.cs", &forward, &["uid", "blob/idx"]);
    let location: Vec<&str> = all
        .fields
        .iter()
        .map(|f| f.name.as_str())
        .filter(|n| n.starts_with("location/") || n.starts_with("pick_stats/"))
        .collect();
    let through = write(
        "J42_passthrough_particles.cs",
        &reversed,
        &[&["uid"][..], &location].concat(),
    );
    let result = |group: &str, kind: &str, file: &str, passthrough: bool| json!({"group_name": group, "type": kind, "metafiles": [file], "passthrough": passthrough});
    std::fs::write(
        job.join("job.json"),
        json!({"uid": "J42", "type": "extract_micrographs_multi", "output_results": [
            result("particles", "particle.blob", "J42/extracted_particles.cs", false),
            result("particles", "particle.location", "J42/J42_passthrough_particles.cs", true),
            result("micrographs", "exposure.micrograph_blob", "J42/J42_passthrough_micrographs.cs", true),
        ]})
        .to_string(),
    )
    .unwrap();
    let before = [
        std::fs::read(&main).unwrap(),
        std::fs::read(&through).unwrap(),
    ];
    let (out, scores) = (root.join("pruned"), root.join("scores.csv"));
    let mut args = prune_args(s(&f.model), &f.mics, s(&job), s(&out));
    args.extend(["--scores", s(&scores), "--threshold", &f.threshold]);
    let o = cryoprune(&args);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        [
            std::fs::read(&main).unwrap(),
            std::fs::read(&through).unwrap()
        ],
        before
    );

    // One self-contained file, named as the main one, every kept pick with the job's own field
    // beside the location it was joined to.
    let scored = read_scores(&scores);
    assert_eq!(scored.len(), f.picks.len());
    let pruned = StructArray::read(out.join("extracted_particles.cs")).unwrap();
    assert_eq!(pruned.nrows, scored.values().filter(|v| v.0).count());
    for name in [
        "uid",
        "blob/idx",
        "location/center_x_frac",
        "pick_stats/ncc_score",
        "cryoprune/class",
    ] {
        assert!(pruned.field(name).is_some(), "{name} missing");
    }
    let field = |a: &StructArray, r: usize, n: &str| a.number(r, a.field(n).unwrap(), 0).unwrap();
    let original: HashMap<String, f64> = (0..all.nrows)
        .map(|r| {
            (
                format!(
                    "{:.6}",
                    field(&all, r, "location/center_x_frac")
                        + 7.0 * field(&all, r, "location/center_y_frac")
                ),
                field(&all, r, "blob/idx"),
            )
        })
        .collect();
    for r in 0..pruned.nrows {
        let at = format!(
            "{:.6}",
            field(&pruned, r, "location/center_x_frac")
                + 7.0 * field(&pruned, r, "location/center_y_frac")
        );
        assert_eq!(field(&pruned, r, "blob/idx"), original[&at], "record {r}");
    }
    let back = PickSet::read(&[out.join("extracted_particles.cs")], None).unwrap();
    assert_eq!(back.len(), pruned.nrows);
    if python_ready() {
        // cryosparc-tools' Dataset.load reads the joined file with every field.
        let entry = cs_entry(
            &out.join("extracted_particles.cs"),
            &["blob/idx", "location/center_x_frac"],
        );
        let manifest = root.join("manifest.json");
        std::fs::write(&manifest, json!({ "cs": [entry] }).to_string()).unwrap();
        run_python_check(&manifest);
    }

    // The same job folder gives the micrographs too: a picker passes its micrographs on
    // unchanged, as a passthrough-only output whose paths are relative to the project folder.
    let motion = root.join("P3/J12/motioncorrected");
    std::fs::create_dir_all(&motion).unwrap();
    let mut names = Vec::new();
    for m in cryoprune_jobs::inputs::micrograph_paths(std::slice::from_ref(&f.mics)).unwrap() {
        let name = m.file_name().unwrap().to_string_lossy().to_string();
        std::fs::copy(&m, motion.join(&name)).unwrap();
        // cryoSPARC's mark of an imported file on one of them.
        let mark = if names.is_empty() { ">" } else { "" };
        names.push(format!("{mark}J12/motioncorrected/{name}"));
    }
    StructArray::new()
        .write_selected(
            job.join("J42_passthrough_micrographs.cs"),
            names.iter().map(|_| 0),
            &[
                NewField::u64("uid", |i| 1000 + i as u64),
                NewField::text("micrograph_blob/path", 40, |i| names[i].as_str()),
            ],
        )
        .unwrap();
    let again = root.join("again");
    let mut args = prune_args(s(&f.model), s(&job), s(&job), s(&again));
    args.extend(["--threshold", &f.threshold]);
    let o = cryoprune(&args);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read(again.join("extracted_particles.cs")).unwrap(),
        std::fs::read(out.join("extracted_particles.cs")).unwrap()
    );

    let o = cryoprune(&["info", s(&job)]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("joined_by_uid") && text(&o).contains("J42_passthrough_particles.cs"),
        "{}",
        text(&o)
    );

    // The passthrough is an input too: never an output.
    let mut args = prune_args(s(&f.model), &f.mics, s(&job), s(&through));
    args.extend(["--threshold", &f.threshold]);
    let o = cryoprune(&args);
    assert!(
        !o.status.success() && text(&o).contains("J42_passthrough_particles.cs"),
        "{}",
        text(&o)
    );
    assert_eq!(std::fs::read(&through).unwrap(), before[1]);
}

/// A RELION 4/5 project whose micrographs share a file name in two folders
/// (`MotionCorr/job002/A/sim_0001.mrc`, `.../B/sim_0001.mrc`, two different images): each
/// micrograph's picks are paired with it by the folders its name ends with, and the pruned
/// coordinate files keep those folders. The same picks and images under distinct names give the
/// same probabilities.
#[test]
fn micrographs_of_one_name_in_two_folders_are_kept_apart() {
    let f = fixture();
    let root = f.dir.join("namesakes");
    let _ = std::fs::remove_dir_all(&root);
    let stars = write_input(f, "star30", &root.join("stars"));
    let star = |m: &str| {
        stars
            .iter()
            .find(|p| p.ends_with(format!("{m}.star")))
            .unwrap()
    };
    let mic = |m: &str| f.dir.join(format!("sim/micrographs/{m}.mrc"));
    // (project folder, the two micrographs' names in it, the images and picks they hold)
    let run = |project: &str, names: [&str; 2]| {
        let proj = root.join(project);
        let mut index = String::from(
            "\ndata_coordinate_files\n\nloop_\n_rlnMicrographName #1\n_rlnMicrographCoordinates #2\n",
        );
        for (name, source) in names.iter().zip(["sim_0001", "sim_0002"]) {
            let image = proj.join(format!("MotionCorr/job002/{name}.mrc"));
            let coords = proj.join(format!("AutoPick/job006/{name}_autopick.star"));
            for (to, from) in [(&image, mic(source)), (&coords, star(source).clone())] {
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::copy(from, to).unwrap();
            }
            index.push_str(&format!(
                "MotionCorr/job002/{name}.mrc AutoPick/job006/{name}_autopick.star\n"
            ));
        }
        std::fs::write(proj.join("AutoPick/job006/autopick.star"), index).unwrap();
        let mics = s(&proj.join("MotionCorr/job002")).to_string() + "/*/*.mrc";
        let (job, out, scores) = (
            proj.join("AutoPick/job006"),
            proj.join("pruned"),
            proj.join("scores.csv"),
        );
        let mut args = prune_args(s(&f.model), &mics, s(&job), s(&out));
        args.extend(["--scores", s(&scores), "--threshold", &f.threshold]);
        let o = cryoprune(&args);
        assert!(o.status.success(), "{project}: {}", text(&o));
        assert!(!text(&o).contains("match no micrograph"), "{}", text(&o));
        // Namesakes keep their folders; distinct names need none.
        let shared = names[0][2..] == names[1][2..];
        for name in names {
            let kept = if shared { name } else { &name[2..] };
            let written = out.join(format!("{kept}_autopick.star"));
            assert!(written.is_file(), "{project}: {}", written.display());
        }
        // p(particle) by (the picks' source image, x, y).
        let mut r = csv::Reader::from_path(&scores).unwrap();
        let h = r.headers().unwrap().clone();
        let col = |n: &str| h.iter().position(|c| c == n).unwrap();
        let (m, x, y, p) = (col("micrograph"), col("x"), col("y"), col("p_particle"));
        // Boxes over the edge are padded with noise drawn for the micrograph's name, which
        // differs between the runs; boxes inside the micrograph are the same pixels.
        let inside = |v: &str| (BOX / 2.0..=SIZE as f64 - BOX / 2.0).contains(&v.parse().unwrap());
        r.records()
            .map(|rec| rec.unwrap())
            .filter(|rec| inside(&rec[x]) && inside(&rec[y]))
            .map(|rec| {
                let source = if rec[m].contains(names[0]) { 1 } else { 2 };
                (
                    (source, rec[x].to_string(), rec[y].to_string()),
                    rec[p].to_string(),
                )
            })
            .collect::<BTreeMap<_, _>>()
    };
    let namesakes = run("shared", ["A/sim_0001", "B/sim_0001"]);
    let distinct = run("distinct", ["A/sim_0001", "B/sim_0002"]);
    assert!(namesakes.keys().any(|k| k.0 == 1) && namesakes.keys().any(|k| k.0 == 2));
    assert_eq!(namesakes, distinct);

    // Picks named by the bare micrograph name cannot say which of the two they are on.
    let mics = s(&root.join("shared/MotionCorr/job002")).to_string() + "/*/*.mrc";
    let bare = star("sim_0001");
    let o = cryoprune(&prune_args(
        s(&f.model),
        &mics,
        s(bare),
        s(&root.join("bare")),
    ));
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("could be on 2 micrographs of that name"),
        "{t}"
    );
}

/// A model whose validation.csv is damaged fails before anything is written, not after the
/// outputs (the threshold advisor reads it first).
#[test]
fn a_damaged_validation_file_fails_before_any_output() {
    let f = fixture();
    let root = f.dir.join("bad_validation");
    let _ = std::fs::remove_dir_all(&root);
    let model = root.join("model");
    std::fs::create_dir_all(&model).unwrap();
    for e in std::fs::read_dir(&f.model).unwrap().flatten() {
        std::fs::copy(e.path(), model.join(e.file_name())).unwrap();
    }
    let validation = model.join("validation.csv");
    let mut csv = std::fs::read_to_string(&validation).unwrap();
    csv.push_str("damaged,row\n");
    std::fs::write(&validation, csv).unwrap();
    let inputs = write_input(f, "csv", &root.join("in"));
    let out = root.join("out");
    let o = cryoprune(&prune_args(s(&model), &f.mics, s(&inputs[0]), s(&out)));
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("validation.csv"), "{t}");
    assert!(
        files_in(&out).is_empty(),
        "written before failing: {:?}",
        files_in(&out).keys()
    );
}

/// Many micrographs, one box file each, so the kill lands between and during file writes.
fn many_micrographs(f: &Fixture, root: &Path, copies: usize) -> (String, PathBuf) {
    let mics = root.join("mics");
    let picks = root.join("picks");
    std::fs::create_dir_all(&mics).unwrap();
    let boxes = write_input(f, "box", &root.join("one"));
    std::fs::create_dir_all(&picks).unwrap();
    let originals: Vec<PathBuf> = glob::glob(&f.mics).unwrap().map(|p| p.unwrap()).collect();
    for c in 0..copies {
        for (m, b) in originals.iter().zip(&boxes) {
            let name = format!("c{c:03}_{}", m.file_stem().unwrap().to_string_lossy());
            std::fs::copy(m, mics.join(format!("{name}.mrc"))).unwrap();
            std::fs::copy(b, picks.join(format!("{name}.box"))).unwrap();
        }
    }
    (s(&mics.join("*.mrc")).to_string(), picks)
}

fn files_in(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_file())
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(unix)]
#[test]
fn a_killed_run_leaves_whole_files_and_a_rerun_finishes_the_rest() {
    let f = fixture();
    let root = f.dir.join("kill");
    let _ = std::fs::remove_dir_all(&root);
    let (mics, picks) = many_micrographs(f, &root, 15);
    let full = root.join("full");
    let args = |out: &Path| -> Vec<String> {
        [
            "prune",
            "--model",
            s(&f.model),
            "--micrographs",
            &mics,
            "--picks",
            s(&picks),
            "--threads",
            "1",
            "--out",
            s(out),
        ]
        .map(String::from)
        .to_vec()
    };
    let a: Vec<String> = args(&full);
    let o = cryoprune(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", text(&o));
    let reference = files_in(&full);
    assert_eq!(reference.keys().filter(|k| k.ends_with(".box")).count(), 60);

    let killed = root.join("killed");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cryoprune"))
        .args(args(&killed))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill as soon as some files are written, while others are still to come.
    let started = std::time::Instant::now();
    loop {
        // Names only: a `.partial` file read here could be renamed between the listing and the read.
        let n = std::fs::read_dir(&killed)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .count()
            })
            .unwrap_or(0);
        if n >= 3 || started.elapsed().as_secs() > 60 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let left = files_in(&killed);
    let whole: Vec<&String> = left.keys().filter(|k| !k.starts_with('.')).collect();
    assert!(
        !whole.is_empty() && whole.len() < 60,
        "killed after {} of 60 files",
        whole.len()
    );
    for name in &whole {
        assert_eq!(
            left[*name], reference[*name],
            "{name} differs from a complete run's"
        );
    }
    for name in left.keys().filter(|k| k.starts_with('.')) {
        assert!(name.ends_with(".partial"), "unexpected {name}");
    }

    let mut again = args(&killed);
    again.push("--skip-existing".into());
    let o = cryoprune(&again.iter().map(String::as_str).collect::<Vec<_>>());
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains(&format!("{} of 60 output files exist", whole.len())),
        "{t}"
    );
    let finished = files_in(&killed);
    for (name, bytes) in &reference {
        if name.ends_with(".box") {
            assert_eq!(finished.get(name), Some(bytes), "{name}");
        }
    }
    assert!(
        finished.keys().all(|k| !k.ends_with(".partial")),
        "a rerun clears what a killed run left: {:?}",
        finished.keys().collect::<Vec<_>>()
    );
}

#[test]
fn warns_when_picks_look_binned() {
    let f = fixture();
    let root = f.dir.join("binned");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let mut b = String::from("micrograph,x,y\n");
    for (mic, x, y, _) in &f.picks {
        b.push_str(&format!("{mic},{},{}\n", x / 2.0, y / 2.0));
    }
    let picks = root.join("half.csv");
    std::fs::write(&picks, b).unwrap();
    let o = cryoprune(&prune_args(
        s(&f.model),
        &f.mics,
        s(&picks),
        s(&root.join("out")),
    ));
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("try --scale 2"), "{}", text(&o));
}

/// A model trained on scored labels combines each pick's score and distance from the edge with
/// the image: prune's probabilities are the image-only ones times the context's likelihood
/// ratio, picks without a score are refused (naming file and record) unless --image-only, and
/// scores from elsewhere are warned about.
#[test]
fn the_pick_context_is_combined_with_the_image() {
    let f = fixture();
    let root = f.dir.join("pick_context");
    let _ = std::fs::remove_dir_all(&root);
    let model = root.join("model");
    let sim = f.dir.join("sim");
    let o = train_on_truth(&sim, &f.mics, &model, &[]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("pick context: the picker's score"), "{t}");
    assert!(t.contains("with the pick context"), "{t}");
    let spec = model_json(&model);
    let ctx: PickContext = serde_json::from_value(spec["pick_context"].clone()).unwrap();
    // The simulated picks reach the micrograph edges, so both facts have a term.
    assert_eq!(ctx.facts().collect::<Vec<_>>(), [Fact::Score, Fact::Edge]);

    let prune = |picks: &Path, out: &str, more: &[&str]| {
        let scores = root.join(format!("{out}_scores.csv"));
        let mut a = vec![
            "prune",
            "--model",
            s(&model),
            "--micrographs",
            &f.mics,
            "--picks",
            s(picks),
            "--out",
        ];
        let out = root.join(out);
        a.push(s(&out));
        // The probabilities as the model gives them: the prior's shift has its own test.
        a.extend(["--scores", s(&scores), "--prior", "training"]);
        a.extend(more);
        (cryoprune(&a), scores, out)
    };
    let picks = sim.join("picks.csv");
    let report = root.join("report.html");
    let (o, combined, _) = prune(&picks, "combined", &["--report", s(&report)]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("evidence: the image, the picker's score"),
        "{}",
        text(&o)
    );
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(
        html.contains("small with the picker's score"),
        "report says nothing of the score"
    );
    let (o, image, _) = prune(&picks, "image", &["--image-only"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("evidence:"), "{}", text(&o));
    let (combined, image) = (class_probabilities(&combined), class_probabilities(&image));
    let mut moved = 0;
    for (mic, x, y, sc) in &f.picks {
        let k = key(mic, *x, *y);
        let mut expected = image[&k].clone();
        let facts = PickFacts {
            score: Some(*sc),
            edge: Some(edge_distance(*x, *y, (SIZE, SIZE), BOX as usize)),
        };
        ctx.combine(&mut expected, &facts);
        let got = &combined[&k];
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() < 2e-4, "{k:?}: {got:?} against {expected:?}");
        }
        moved += usize::from((got[0] - image[&k][0]).abs() > 0.01);
    }
    assert!(
        moved > f.picks.len() / 4,
        "the context moved only {moved} picks"
    );

    // Picks without a score: refused, with the file and record named, and nothing written.
    let bare = root.join("bare.csv");
    let mut b = String::from("micrograph,x,y\n");
    for (mic, x, y, _) in &f.picks {
        b.push_str(&format!("{mic},{x},{y}\n"));
    }
    std::fs::write(&bare, b).unwrap();
    let (o, _, out) = prune(&bare, "bare", &[]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("bare.csv, record 1") && t.contains("--image-only"),
        "{t}"
    );
    assert!(!out.join("bare.csv").exists());
    let (o, _, _) = prune(&bare, "bare_image", &["--image-only"]);
    assert!(o.status.success(), "{}", text(&o));

    // Scores on another scale (another picker): pruned, with a warning.
    let shifted = root.join("shifted.csv");
    let mut b = String::from("micrograph,x,y,score\n");
    for (mic, x, y, sc) in &f.picks {
        b.push_str(&format!("{mic},{x},{y},{}\n", 100.0 * sc + 50.0));
    }
    std::fs::write(&shifted, b).unwrap();
    let (o, _, _) = prune(&shifted, "shifted", &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("same picker as the training labels"),
        "{}",
        text(&o)
    );
}

#[test]
fn the_report_holds_every_section_and_overlays_beside_it() {
    let f = fixture();
    let root = f.dir.join("report");
    let _ = std::fs::remove_dir_all(&root);
    let inputs = write_input(f, "csv", &root.join("in"));
    let report = root.join("qc.html");
    let o = cryoprune(
        &[
            prune_args(s(&f.model), &f.mics, s(&inputs[0]), s(&root.join("out"))),
            vec!["--threshold", "0.5", "--report", s(&report)],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let html = std::fs::read_to_string(&report).unwrap();
    for section in [
        "Training",
        "Probabilities",
        "Particles by predicted class",
        "Micrographs",
        "Threshold advisor",
        "Per micrograph",
        "truth \\ predicted",
    ] {
        assert!(html.contains(section), "no {section}");
    }
    assert!(
        !html.contains("src=\"http"),
        "the report must not load anything"
    );
    // Curves, histograms, galleries and 4 overlays, all inline.
    assert!(html.matches("src=\"data:image/").count() > 8);
    let overlays = files_in(&root.join("qc_overlays"));
    assert_eq!(overlays.len(), 4, "{:?}", overlays.keys());
    assert!(overlays.values().all(|b| b.starts_with(b"\x89PNG")));
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("out/prune_summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["picks"], f.picks.len());
    assert_eq!(
        summary["kept"].as_u64().unwrap() + summary["rejected"].as_u64().unwrap(),
        f.picks.len() as u64
    );
}

#[test]
fn each_pick_is_decided_at_the_share_of_particles_assumed() {
    let f = fixture();
    let root = f.dir.join("prior");
    let _ = std::fs::remove_dir_all(&root);
    let picks = f.dir.join("sim/picks.csv");
    let run = |name: &str, prior: &str| {
        let out = root.join(name);
        let scores = root.join(format!("{name}.csv"));
        let o = cryoprune(
            &[
                prune_args(s(&f.model), &f.mics, s(&picks), s(&out)),
                vec!["--scores", s(&scores), "--prior", prior],
            ]
            .concat(),
        );
        (o, out, scores)
    };
    let prune = |name: &str, prior: &str| {
        let (o, out, scores) = run(name, prior);
        assert!(o.status.success(), "{}", text(&o));
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("prune_summary.json")).unwrap())
                .unwrap();
        (text(&o), read_scores(&scores), summary)
    };
    let (_, trained, summary) = prune("training", "training");
    assert!(summary["prior"].is_null());
    let kept = |s: &HashMap<_, (bool, String)>| s.values().filter(|v| v.0).count();

    // Bayes' rule on every pick: the odds of the particle class times the same factor.
    let check = |shifted: &HashMap<_, (bool, String)>, summary: &serde_json::Value| {
        let (from, to) = (
            summary["prior"]["trained"].as_f64().unwrap(),
            summary["prior"]["assumed"].as_f64().unwrap(),
        );
        let factor = to / (1.0 - to) * (1.0 - from) / from;
        for (k, (_, p)) in &trained {
            let p: f64 = p.parse().unwrap();
            let expected = p * factor / (p * factor + 1.0 - p);
            let got: f64 = shifted[k].1.parse().unwrap();
            assert!(
                (got - expected).abs() < 2e-4,
                "{k:?}: {got} against {expected}"
            );
        }
    };
    let (t, given, summary) = prune("given", "0.9");
    assert!(t.contains("prior: 90% of picks assumed kept-class"), "{t}");
    assert_eq!(summary["prior"]["assumed"], json!(0.9));
    check(&given, &summary);
    assert!(kept(&given) >= kept(&trained));
    let (_, rare, summary) = prune("rare", "0.05");
    check(&rare, &summary);
    assert!(kept(&rare) <= kept(&trained));
    assert!(
        kept(&rare) < kept(&given),
        "the share assumed changed nothing"
    );

    // Estimated from the picks: either a share with its source, or a warning that the model is
    // too weak (this one trained for two epochs), or the estimate too rough, and the
    // probabilities as trained.
    let (t, estimated, summary) = prune("dataset", "dataset");
    if summary["prior"].is_null() {
        assert!(
            t.contains("too poorly") || t.contains("an estimate that rough"),
            "{t}"
        );
        assert_eq!(estimated, trained);
    } else {
        let source = summary["prior"]["source"].as_str().unwrap();
        assert!(
            source.contains(&format!("estimated on {} picks", f.picks.len())),
            "{source}"
        );
        check(&estimated, &summary);
    }

    let (o, _, _) = run("bad", "1.5");
    assert!(!o.status.success());
    assert!(text(&o).contains("between 0 and 1"), "{}", text(&o));
}

/// Runs cryoprune with owned arguments and asserts it succeeded; returns its output text.
fn run_ok(args: &[String]) -> String {
    let o = cryoprune(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let t = text(&o);
    assert!(o.status.success(), "{args:?}: {t}");
    t
}

/// A summary without its timings, the one thing shards cannot share with one run.
fn summary_without_timings(path: &Path) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for timing in ["seconds", "particles_per_second"] {
        assert!(v[timing].as_f64().unwrap() > 0.0, "{timing}");
        v.as_object_mut().unwrap().remove(timing);
    }
    v
}

#[test]
fn three_shards_and_a_merge_write_what_one_run_writes() {
    let f = fixture();
    let root = f.dir.join("shards");
    let _ = std::fs::remove_dir_all(&root);
    // Twelve micrographs with a .box file each (files a shard writes itself) and one CSV of
    // them all (a file only the merge can write).
    let (mics, boxes) = many_micrographs(f, &root, 3);
    let csv = root.join("all.csv");
    let mut all = String::from("micrograph,x,y,score\n");
    for (b, m) in std::fs::read_dir(&boxes).unwrap().flatten().map(|e| {
        let name = e.path().file_stem().unwrap().to_string_lossy().into_owned();
        (e.path(), name)
    }) {
        for line in std::fs::read_to_string(&b).unwrap().lines() {
            let v: Vec<f64> = line
                .split_whitespace()
                .map(|x| x.parse().unwrap())
                .collect();
            let (x, y) = (v[0] + v[2] / 2.0, v[1] + v[3] / 2.0);
            all.push_str(&format!("{m},{x},{y},{}\n", v[4]));
        }
    }
    std::fs::write(&csv, all).unwrap();
    let one = root.join("one");
    let (scores, report) = (root.join("scores.csv"), root.join("report.html"));
    // A given prior classifies each micrograph once; the dataset's is estimated on a sample
    // of every shard's micrographs, which each shard classifies.
    for (picks, prior) in [(boxes.as_path(), "0.8"), (csv.as_path(), "dataset")] {
        let args = |out: &Path, more: &[&str]| -> Vec<String> {
            let mut a: Vec<&str> = prune_args(s(&f.model), &mics, s(picks), s(out));
            a.extend(["--write-rejected", "--threads", "1", "--prior", prior]);
            a.extend(["--threshold", &f.threshold]);
            a.extend(more);
            a.into_iter().map(String::from).collect()
        };
        let _ = std::fs::remove_dir_all(&one);
        run_ok(&args(
            &one,
            &["--scores", s(&scores), "--report", s(&report)],
        ));
        let single = root.join("single");
        let _ = std::fs::remove_dir_all(&single);
        std::fs::rename(&one, &single).unwrap();
        let single_scores = std::fs::read(&scores).unwrap();
        std::fs::remove_file(&scores).unwrap();

        let shard = |i: usize| root.join(format!("shard_{i}"));
        for i in 0..3 {
            let _ = std::fs::remove_dir_all(shard(i));
            run_ok(&args(&shard(i), &["--shard", &format!("{i}/3")]));
        }
        let shard_files: Vec<usize> = (0..3)
            .map(|i| {
                files_in(&shard(i))
                    .keys()
                    .filter(|k| k.ends_with(".box"))
                    .count()
            })
            .collect();
        if picks == boxes {
            // Twelve micrographs sorted, every third to each shard.
            assert_eq!(shard_files, [4, 4, 4]);
        } else {
            assert_eq!(shard_files, [0, 0, 0]);
            assert!(
                !shard(0).join("all.csv").exists(),
                "no shard has every micrograph"
            );
        }
        // A shard killed part way: its journal cut short, no record. A rerun with
        // --skip-existing classifies only what the journal lacks.
        let journal = shard(1).join("cryoprune_shard_outcomes.jsonl");
        let lines = std::fs::read_to_string(&journal).unwrap();
        let first = lines.lines().next().unwrap();
        std::fs::write(
            &journal,
            format!("{first}\n{}", &lines[first.len() + 1..][..20]),
        )
        .unwrap();
        std::fs::remove_file(shard(1).join("cryoprune_shard.json")).unwrap();
        let merge = |out: &Path| -> Vec<String> {
            let mut a = vec!["merge".to_string(), "--in".into()];
            a.extend((0..3).map(|i| s(&shard(i)).to_string()));
            a.extend(
                [
                    "--out",
                    s(out),
                    "--scores",
                    s(&scores),
                    "--report",
                    s(&report),
                ]
                .map(String::from),
            );
            a
        };
        let o = cryoprune(&merge(&one).iter().map(String::as_str).collect::<Vec<_>>());
        assert!(!o.status.success());
        assert!(
            text(&o).contains("not the output of a finished `prune --shard` run"),
            "{}",
            text(&o)
        );
        let t = run_ok(&args(&shard(1), &["--shard", "1/3", "--skip-existing"]));
        assert!(
            t.contains("1 micrograph this shard classified before is taken from its journal"),
            "{t}"
        );
        let resumed = std::fs::read_to_string(&journal).unwrap();
        assert_eq!(resumed.lines().count(), lines.lines().count());

        let t = run_ok(&merge(&one));
        assert!(t.contains("joining the 3 shards"), "{t}");
        assert_eq!(std::fs::read(&scores).unwrap(), single_scores, "scores");
        for dir in ["", "rejected"] {
            let (a, b) = (files_in(&single.join(dir)), files_in(&one.join(dir)));
            assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
            assert!(!a.is_empty() && (dir.is_empty() || a.values().any(|b| !b.is_empty())));
            for (name, bytes) in &a {
                if name == "prune_summary.json" {
                    assert_eq!(
                        summary_without_timings(&single.join(name)),
                        summary_without_timings(&one.join(name))
                    );
                } else {
                    assert!(&b[name] == bytes, "{dir}/{name} differs from one run's");
                }
            }
        }
    }
    // Shards of one run only, each once, and a shard that exists.
    let (x, s0, s2) = (root.join("x"), root.join("shard_0"), root.join("shard_2"));
    let refused: [(Vec<&str>, &str); 3] = [
        (
            vec!["merge", "--in", s(&s0), s(&s0), "--out", s(&x)],
            "shard 0/3 is given twice",
        ),
        (
            vec!["merge", "--in", s(&s2), "--out", s(&x)],
            "shards 0/3, 1/3 are missing",
        ),
        (
            [
                prune_args(s(&f.model), &mics, s(&boxes), s(&x)),
                vec!["--shard", "3/3"],
            ]
            .concat(),
            "expected I/N with 0 <= I < N",
        ),
    ];
    for (args, error) in refused {
        let o = cryoprune(&args);
        assert!(
            !o.status.success() && text(&o).contains(error),
            "{}",
            text(&o)
        );
    }
}

#[test]
fn three_extract_shards_and_a_merge_write_one_runs_stack_and_star() {
    let f = fixture();
    let root = f.dir.join("extract_shards");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let picks = f.dir.join("sim/picks.csv");
    let args = |out: &Path, more: &[&str]| -> Vec<String> {
        let mut a = vec![
            "extract",
            "--micrographs",
            &f.mics,
            "--picks",
            s(&picks),
            "--box",
            "48",
            "--size",
            "32",
            "--edge",
            "pad-noise",
            "--out",
            s(out),
        ];
        a.extend(more);
        a.into_iter().map(String::from).collect()
    };
    let one = root.join("particles.mrcs");
    run_ok(&args(&one, &[]));
    let single: Vec<Vec<u8>> = ["mrcs", "star"]
        .iter()
        .map(|e| std::fs::read(one.with_extension(e)).unwrap())
        .collect();
    std::fs::remove_file(&one).unwrap();
    let shards: Vec<PathBuf> = (0..3)
        .map(|i| root.join(format!("part_{i}.mrcs")))
        .collect();
    for (i, shard) in shards.iter().enumerate() {
        run_ok(&args(shard, &["--shard", &format!("{i}/3")]));
    }
    let mut merge = vec!["merge".to_string(), "--in".into()];
    merge.extend(shards.iter().map(|p| s(p).to_string()));
    merge.extend(["--out".to_string(), s(&one).to_string()]);
    run_ok(&merge);
    for (e, bytes) in ["mrcs", "star"].iter().zip(&single) {
        assert!(
            &std::fs::read(one.with_extension(e)).unwrap() == bytes,
            "{e} differs from one run's"
        );
    }
}

#[cfg(unix)]
#[test]
fn the_slurm_scripts_prune_as_an_array_and_merge() {
    let f = fixture();
    let root = f.dir.join("slurm");
    let _ = std::fs::remove_dir_all(&root);
    let (mics, boxes) = many_micrographs(f, &root, 2);
    let one = root.join("single");
    run_ok(
        &prune_args(s(&f.model), &mics, s(&boxes), s(&one))
            .into_iter()
            .chain(["--scores", s(&root.join("single.scores.csv"))])
            .map(String::from)
            .collect::<Vec<_>>(),
    );
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/slurm");
    let script = |name: &str, task: Option<usize>| {
        let mut c = std::process::Command::new("bash");
        c.arg(scripts.join(name))
            .current_dir(&root)
            .env("CRYOPRUNE", env!("CARGO_BIN_EXE_cryoprune"))
            .env("MODEL", &f.model)
            .env("MICROGRAPHS", &mics)
            .env("PICKS", &boxes)
            .env("SHARDS_DIR", "shards")
            .env("OUT", "merged");
        if let Some(t) = task {
            c.env("SLURM_ARRAY_TASK_ID", t.to_string())
                .env("SLURM_ARRAY_TASK_COUNT", "3");
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{name} {task:?}: {}", text(&o));
    };
    // What SLURM does with `--array=0-2`, then the merge that waits for it.
    for task in 0..3 {
        script("prune_array.sh", Some(task));
    }
    script("merge.sh", None);
    let (a, b) = (files_in(&one), files_in(&root.join("merged")));
    let boxes_of = |m: &BTreeMap<String, Vec<u8>>| {
        m.iter()
            .filter(|(k, _)| k.ends_with(".box"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(boxes_of(&a).len(), 8);
    assert!(
        boxes_of(&a) == boxes_of(&b),
        "the merged files differ from one run's"
    );
    assert_eq!(
        std::fs::read(root.join("single.scores.csv")).unwrap(),
        std::fs::read(root.join("merged.scores.csv")).unwrap()
    );
    assert!(root.join("merged.report.html").exists());
}
