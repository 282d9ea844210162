//! Does the labelling page's order choose better labels than chance? On simulated micrographs
//! with truth (particle vs junk), for each seed, as a user would label on the page: the picks
//! in the page's first order (before any model: a typical pick of each kind of pick in turn)
//! are labelled on the page from the truth until every class has 5 labels, when the page first
//! trains; that model scores the picks, but it learnt from fewer labels than the typical order
//! has kinds, so that order holds and its next picks are labelled up to 20 labels; a model
//! trained on those orders the page by its doubts and its first picks are labelled up to 40.
//! Against 20 and 40 labels drawn at random (10 and 20 per class). Every set trains with the
//! page's recipe (`train`'s defaults: the shipped backbone, image alone; the classes weighted
//! as balanced, [`page_net`]; cross-validated in the folds the page uses for so few labels,
//! [`folds_for`]) [`FITS`] times with different seeds, scored by the mean macro-F1 on the
//! picks of 4 other micrographs.
//!
//! `cargo bench -p cryoprune --bench label_active` writes `target/bench/label_active.json`;
//! `PRESET=hard` simulates the hard preset instead of the realistic one; `HELD_OUT=1` trains
//! as the page did before it cross-validated (a fifth of the labels held out); `FIRST_SEED=n`
//! simulates seeds from n instead of 0.
//!
//! `EMPIAR=deepPicker` (or `topaz`, `crYOLO`) runs on real picks instead: that picker's
//! labelled picks of EMPIAR-10017's 14_33_35 and 15_17_31 are the pool, its picks of 15_30_21
//! and 15_33_42 the test, box 180 (`../shared/data` beside the checkout); `SWAP=1` exchanges
//! the two pairs, a second pool. The page's order is then the same for every seed; the seed
//! draws the random labels and the fits. `SEEDS=n` runs n seeds instead of 5.
//!
//! `ASPIRE=1` simulates with another simulator than cryoprune's (`aspire_sim.py`: ASPIRE's
//! projections of RELION's `ref_model`, SNR 0.05, junk added in NumPy; 10 micrographs of 1024²
//! a seed, the pool on 6, the test on 4), with `ASPIRE_PYTHON` a Python that has `aspire`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cryoprune_formats::PickFormat;
use cryoprune_jobs::evaluate::{self, EvaluateConfig};
use cryoprune_jobs::label::{folds_for, page_net, LabelConfig, PickView, Session};
use cryoprune_jobs::labels::LabelsConfig;
use cryoprune_jobs::recipe::{NetConfig, PrepConfig};
use cryoprune_jobs::simulate::{self, SimulateConfig};
use cryoprune_jobs::train::{self, TrainJobConfig};
use cryoprune_jobs::Silent;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// Seeds run (`SEEDS` overrides).
const SEEDS: u64 = 5;
/// Fits per label set (`FITS` overrides).
const FITS: u64 = 2;
/// The box of the simulated particles (32 px across).
const SIM_BOX: usize = 48;
/// The box of ASPIRE's particles (RELION's `ref_model`, 50 px across).
const ASPIRE_BOX: usize = 76;

/// A pick with its true class: micrograph, x, y, particle or junk.
type Truth = (String, String, String, &'static str);

fn read_truth(path: &Path) -> Vec<Truth> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let label = r
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "label")
        .unwrap();
    r.records()
        .map(|row| {
            let row = row.unwrap();
            let class = if &row[label] == "particle" {
                "particle"
            } else {
                "junk"
            };
            (
                row[0].to_string(),
                row[1].to_string(),
                row[2].to_string(),
                class,
            )
        })
        .collect()
}

fn write_labels(path: &Path, rows: &[&Truth]) {
    let mut w = csv::Writer::from_path(path).unwrap();
    w.write_record(["micrograph", "x", "y", "label"]).unwrap();
    for (m, x, y, c) in rows {
        w.write_record([m.as_str(), x.as_str(), y.as_str(), c])
            .unwrap();
    }
    w.flush().unwrap();
}

/// `n` picks of each class, at random.
fn stratified<'a>(pool: &[&'a Truth], n: usize, rng: &mut rand::rngs::StdRng) -> Vec<&'a Truth> {
    let mut out = Vec::new();
    for class in ["particle", "junk"] {
        let mut of: Vec<&Truth> = pool.iter().copied().filter(|t| t.3 == class).collect();
        of.shuffle(rng);
        out.extend(of.into_iter().take(n));
    }
    out
}

/// Where the labels come from and are scored: the micrographs (a glob), the test picks with
/// their truth, and the box.
struct Set {
    mics: String,
    test_csv: PathBuf,
    box_size: usize,
}

/// A pick labelled on the page: its id there and its truth.
type Labelled<'a> = (usize, &'a Truth);

fn particles_in(rows: &[&Truth]) -> usize {
    rows.iter().filter(|t| t.3 == "particle").count()
}

fn class(t: &Truth) -> usize {
    usize::from(t.3 != "particle")
}

/// The user labels the page's unlabelled picks from the truth, in the order shown, on the page
/// (whose order counts the labels it has) and in `active` (pick, truth), until `done`.
fn label_on<'a>(
    page: &Session,
    active: &mut Vec<Labelled<'a>>,
    truth_of: &dyn Fn(&PickView) -> &'a Truth,
    done: &dyn Fn(&[Labelled<'a>]) -> bool,
) {
    for v in page.gallery(0, usize::MAX, false, None) {
        if done(active) {
            break;
        }
        let t = truth_of(&v);
        page.set_label(v.id, Some(class(t))).unwrap();
        active.push((v.id, t));
    }
}

fn truths<'a>(set: &[Labelled<'a>]) -> Vec<&'a Truth> {
    set.iter().map(|p| p.1).collect()
}

/// Trains on `rows` [`FITS`] times (seeds `seed`, `seed + 1000`, ...): the first model and
/// the mean macro-F1 on the set's test picks, so that a label set is judged by what it
/// teaches, not by one fit's luck.
fn fit(set: &Set, dir: &Path, name: &str, rows: &[&Truth], seed: u64) -> (PathBuf, f64) {
    let fits = std::env::var("FITS").map_or(FITS, |v| v.parse().unwrap());
    let models: Vec<PathBuf> = (0..fits)
        .map(|k| train_on(dir, &format!("{name}_fit{k}"), set, rows, seed + 1000 * k))
        .collect();
    let f1 = models.iter().map(|m| macro_f1(m, set)).sum::<f64>() / fits as f64;
    (models[0].clone(), f1)
}

fn train_on(dir: &Path, name: &str, set: &Set, rows: &[&Truth], seed: u64) -> PathBuf {
    let labels = dir.join(format!("{name}.csv"));
    write_labels(&labels, rows);
    let model = dir.join(name);
    let cfg = TrainJobConfig {
        labels: LabelsConfig {
            micrographs: vec![set.mics.clone()],
            labels: vec![labels],
            ..LabelsConfig::default()
        },
        prep: PrepConfig {
            box_size: Some(set.box_size),
            ..PrepConfig::default()
        },
        image_only: true,
        net: page_net(&NetConfig::default()),
        seed,
        folds: if std::env::var("HELD_OUT").is_ok() {
            0
        } else {
            folds_for(&[particles_in(rows), rows.len() - particles_in(rows)])
        },
        out: model.clone(),
        ..TrainJobConfig::default()
    };
    train::run(&cfg, &Silent).unwrap();
    model
}

/// `model`'s macro-F1 on the set's test picks, image alone.
fn macro_f1(model: &Path, set: &Set) -> f64 {
    let cfg = EvaluateConfig {
        model: model.to_path_buf(),
        labels: LabelsConfig {
            micrographs: vec![set.mics.clone()],
            labels: vec![set.test_csv.clone()],
            ..LabelsConfig::default()
        },
        image_only: true,
        ..EvaluateConfig::default()
    };
    evaluate::run(&cfg, &Silent).unwrap().macro_f1()
}

/// The micrographs (a glob), every pick's truth, the pool's micrographs and the box.
type Source = (String, Vec<Truth>, Vec<String>, usize);

/// `picker`'s labelled picks of EMPIAR-10017: the pool on one pair of micrographs, the test
/// on the other (`SWAP` exchanges them).
fn empiar_pool(picker: &str) -> Source {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/empiar-10017");
    let mics = data
        .join("micrographs/*.jpg")
        .to_string_lossy()
        .into_owned();
    let truth = read_truth(&data.join(format!("labels/{picker}.csv")));
    let mut pairs = [
        [
            "Falcon_2012_06_12-14_33_35_0",
            "Falcon_2012_06_12-15_17_31_0",
        ],
        [
            "Falcon_2012_06_12-15_30_21_0",
            "Falcon_2012_06_12-15_33_42_0",
        ],
    ];
    if std::env::var("SWAP").is_ok() {
        pairs.reverse();
    }
    (mics, truth, pairs[0].map(String::from).to_vec(), 180)
}

/// Twelve micrographs simulated for `seed` in `dir`: the pool on the first 8, the test on
/// the other 4.
fn simulated_pool(dir: &Path, seed: u64) -> Source {
    let sim = dir.join("sim");
    let cfg = SimulateConfig {
        out: sim.clone(),
        count: 12,
        size: 768,
        format: PickFormat::Csv,
        no_previews: true,
        seed: 100 + seed,
        preset: std::env::var("PRESET").unwrap_or_else(|_| "realistic".into()),
        ..SimulateConfig::default()
    };
    simulate::run(&cfg, &Silent).unwrap();
    split_first(&sim, &sim.join("truth.csv"), 8, SIM_BOX)
}

/// The micrographs under `sim` with the truth in `truth`: the pool on the first `pool` of
/// them by name, the test on the rest.
fn split_first(sim: &Path, truth: &Path, pool: usize, box_size: usize) -> Source {
    let mics = sim.join("micrographs/*.mrc").to_string_lossy().into_owned();
    let truth = read_truth(truth);
    let mut names: Vec<String> = truth.iter().map(|t| t.0.clone()).collect();
    names.sort();
    names.dedup();
    names.truncate(pool);
    (mics, truth, names, box_size)
}

/// Ten micrographs from another simulator (ASPIRE's, `aspire_sim.py` at SNR 0.05) for `seed`
/// in `dir`: the pool on the first 6, the test on the other 4. `ASPIRE_PYTHON` is a Python with
/// `aspire` installed.
fn aspire_pool(dir: &Path, seed: u64) -> Source {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/aspire_sim.py");
    let python = std::env::var("ASPIRE_PYTHON").unwrap_or_else(|_| "python3".into());
    std::fs::create_dir_all(dir).unwrap();
    // From inside `dir`, where ASPIRE writes its logs/ folder.
    let status = std::process::Command::new(python)
        .current_dir(dir)
        .args([
            script.to_str().unwrap(),
            "aspire",
            "0.05",
            &(200 + seed).to_string(),
        ])
        .status()
        .unwrap();
    assert!(status.success(), "aspire_sim.py failed");
    let sim = dir.join("aspire");
    split_first(&sim, &sim.join("labels.csv"), 6, ASPIRE_BOX)
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench/label_active");
    let _ = std::fs::remove_dir_all(&root);
    let mut rows = Vec::new();
    let first: u64 = std::env::var("FIRST_SEED").map_or(0, |v| v.parse().unwrap());
    let empiar = std::env::var("EMPIAR").ok();
    let seeds: u64 = std::env::var("SEEDS").map_or(SEEDS, |v| v.parse().unwrap());
    for seed in first..first + seeds {
        let dir = root.join(format!("seed{seed}"));
        let (mics, truth, pool_mics, box_size) = match &empiar {
            Some(picker) => empiar_pool(picker),
            None if std::env::var("ASPIRE").is_ok() => aspire_pool(&dir, seed),
            None => simulated_pool(&dir, seed),
        };
        let pool: Vec<&Truth> = truth.iter().filter(|t| pool_mics.contains(&t.0)).collect();
        let test: Vec<&Truth> = truth.iter().filter(|t| !pool_mics.contains(&t.0)).collect();
        let set = Set {
            mics,
            test_csv: dir.join("test.csv"),
            box_size,
        };
        std::fs::create_dir_all(&dir).unwrap();
        write_labels(&set.test_csv, &test);
        let pool_csv = dir.join("pool.csv");
        write_labels(&pool_csv, &pool);
        let page = Session::open(
            &LabelConfig {
                micrographs: vec![set.mics.clone()],
                picks: vec![pool_csv],
                prep: cryoprune_jobs::recipe::PrepConfig {
                    box_size: Some(set.box_size),
                    ..Default::default()
                },
                train_after: 0,
                out: dir.join("page_labels.csv"),
                ..LabelConfig::default()
            },
            &Silent,
        )
        .unwrap();
        let names_on_page: Vec<String> =
            page.state().micrographs.into_iter().map(|m| m.0).collect();
        let place = |m: &str, x: f64, y: f64| {
            (
                m.to_string(),
                (x * 1e3).round() as i64,
                (y * 1e3).round() as i64,
            )
        };
        let by_place: HashMap<(String, i64, i64), &Truth> = pool
            .iter()
            .map(|t| (place(&t.0, t.1.parse().unwrap(), t.2.parse().unwrap()), *t))
            .collect();
        let truth_of = |v: &PickView| by_place[&place(&names_on_page[v.micrograph], v.x, v.y)];
        // The page's first order, labelled until every class has the labels the page trains
        // at; then two rounds of the model's order: the page's F1 after 20 and 40 labels, and
        // the particles among them.
        page.rank_typical().unwrap();
        let mut active = Vec::new();
        label_on(&page, &mut active, &truth_of, &|a| {
            let particles = particles_in(&truths(a));
            particles >= 5 && a.len() - particles >= 5
        });
        let start_labels = active.len();
        let (start_model, start) = fit(&set, &dir, "start", &truths(&active), seed);
        page.rank_with(&start_model).unwrap();
        label_on(&page, &mut active, &truth_of, &|a| a.len() >= 20);
        let (model20, page20) = fit(&set, &dir, "page20", &truths(&active), seed);
        let particles20 = particles_in(&truths(&active));
        page.rank_with(&model20).unwrap();
        label_on(&page, &mut active, &truth_of, &|a| a.len() >= 40);
        let page40 = fit(&set, &dir, "page40", &truths(&active), seed).1;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let random20 = stratified(&pool, 10, &mut rng);
        let random40 = stratified(&pool, 20, &mut rng);
        let row = serde_json::json!({
            "seed": seed,
            "pool_picks": pool.len(),
            "test_picks": test.len(),
            "start_labels": start_labels,
            "start": start,
            "page": {
                "20": page20,
                "20_particles": particles20,
                "40": page40,
                "40_particles": particles_in(&truths(&active)),
            },
            "random_20": fit(&set, &dir, "random20", &random20, seed).1,
            "random_40": fit(&set, &dir, "random40", &random40, seed).1,
        });
        println!("{row}");
        rows.push(row);
    }
    let mean = |path: &[&str]| {
        let value = |r: &serde_json::Value| path.iter().fold(r, |v, k| &v[*k]).as_f64().unwrap();
        rows.iter().map(value).sum::<f64>() / rows.len() as f64
    };
    let summary = serde_json::json!({
        "runs": rows,
        "mean": {
            "start_labels": mean(&["start_labels"]),
            "start": mean(&["start"]),
            "page_20": mean(&["page", "20"]),
            "page_40": mean(&["page", "40"]),
            "random_20": mean(&["random_20"]),
            "random_40": mean(&["random_40"]),
        },
    });
    let out = root.with_extension("json");
    std::fs::write(&out, serde_json::to_string_pretty(&summary).unwrap()).unwrap();
    println!("{}\nwritten to {}", summary["mean"], out.display());
}
