//! Does the labelling page's order choose better labels than chance? On simulated micrographs
//! with truth (particle vs junk), for each seed, as a user would label on the page: the picks
//! in the page's first order (before any model: a typical pick of each kind of pick in turn)
//! are labelled from the truth until every class has 5 labels, when the page first trains; a
//! model trained on those orders the page (most uncertain first, classes and kinds in turn) and
//! its first picks are labelled up to 20 labels; a model trained on those orders it again and
//! its first are labelled up to 40. The same two rounds from a start of 5 random labels per
//! class (as if the user had found them) show what the first order adds. Against 20 and 40
//! labels drawn at random (10 and 20 per class). Every set trains with the page's recipe
//! (`train`'s defaults: the shipped backbone, image alone); macro-F1 on the picks of 4 other
//! micrographs.
//!
//! `cargo bench -p cryoprune --bench label_active` writes `target/bench/label_active.json`;
//! `PRESET=hard` simulates the hard preset instead of the realistic one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cryoprune_formats::PickFormat;
use cryoprune_jobs::evaluate::{self, EvaluateConfig};
use cryoprune_jobs::label::{LabelConfig, Session};
use cryoprune_jobs::labels::LabelsConfig;
use cryoprune_jobs::recipe::PrepConfig;
use cryoprune_jobs::simulate::{self, SimulateConfig};
use cryoprune_jobs::train::{self, TrainJobConfig};
use cryoprune_jobs::Silent;
use rand::seq::SliceRandom;
use rand::SeedableRng;

const SEEDS: u64 = 5;
const BOX: usize = 48;

/// A pick with its true class: micrograph, x, y, particle or junk.
type Truth = (String, String, String, &'static str);

fn read_truth(path: &Path) -> Vec<Truth> {
    let mut r = csv::Reader::from_path(path).unwrap();
    r.records()
        .map(|row| {
            let row = row.unwrap();
            let class = if &row[3] == "particle" {
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

/// The user labels the picks of `order` (the page's) not labelled yet until `active` holds `n`.
fn label_first<'a>(active: &mut Vec<&'a Truth>, order: Vec<&'a Truth>, n: usize) {
    for t in order {
        if active.len() >= n {
            break;
        }
        if !active.contains(&t) {
            active.push(t);
        }
    }
}

fn train_on(dir: &Path, name: &str, mics: &str, rows: &[&Truth], seed: u64) -> PathBuf {
    let labels = dir.join(format!("{name}.csv"));
    write_labels(&labels, rows);
    let model = dir.join(name);
    let cfg = TrainJobConfig {
        labels: LabelsConfig {
            micrographs: vec![mics.into()],
            labels: vec![labels],
            ..LabelsConfig::default()
        },
        prep: PrepConfig {
            box_size: Some(BOX),
            ..PrepConfig::default()
        },
        image_only: true,
        seed,
        out: model.clone(),
        ..TrainJobConfig::default()
    };
    train::run(&cfg, &Silent).unwrap();
    model
}

fn macro_f1(model: &Path, mics: &str, test: &Path) -> f64 {
    let cfg = EvaluateConfig {
        model: model.to_path_buf(),
        labels: LabelsConfig {
            micrographs: vec![mics.into()],
            labels: vec![test.to_path_buf()],
            ..LabelsConfig::default()
        },
        image_only: true,
        ..EvaluateConfig::default()
    };
    evaluate::run(&cfg, &Silent).unwrap().macro_f1()
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench/label_active");
    let _ = std::fs::remove_dir_all(&root);
    let mut rows = Vec::new();
    for seed in 0..SEEDS {
        let dir = root.join(format!("seed{seed}"));
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
        let mics = sim.join("micrographs/*.mrc").to_string_lossy().into_owned();
        let truth = read_truth(&sim.join("truth.csv"));
        let mut names: Vec<&String> = truth.iter().map(|t| &t.0).collect();
        names.sort();
        names.dedup();
        let pool_mics: Vec<&String> = names[..8].to_vec();
        let pool: Vec<&Truth> = truth.iter().filter(|t| pool_mics.contains(&&t.0)).collect();
        let test: Vec<&Truth> = truth
            .iter()
            .filter(|t| !pool_mics.contains(&&t.0))
            .collect();
        let test_csv = dir.join("test.csv");
        write_labels(&test_csv, &test);
        // The page's order from the start model, over the pool's picks.
        let pool_csv = dir.join("pool.csv");
        write_labels(&pool_csv, &pool);
        let session = Session::open(
            &LabelConfig {
                micrographs: vec![mics.clone()],
                picks: vec![pool_csv],
                prep: cryoprune_jobs::recipe::PrepConfig {
                    box_size: Some(BOX),
                    ..Default::default()
                },
                train_after: 0,
                out: dir.join("page_labels.csv"),
                ..LabelConfig::default()
            },
            &Silent,
        )
        .unwrap();
        let names_on_page: Vec<String> = session
            .state()
            .micrographs
            .into_iter()
            .map(|m| m.0)
            .collect();
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
        // The picks in the order the page shows them.
        let shown = || {
            session
                .gallery(0, usize::MAX, true, None)
                .into_iter()
                .map(|v| by_place[&place(&names_on_page[v.micrograph], v.x, v.y)])
                .collect::<Vec<_>>()
        };
        let page_order = |model: &Path| {
            session.rank_with(model).unwrap();
            shown()
        };
        let particles = |set: &[&Truth]| set.iter().filter(|t| t.3 == "particle").count();
        // Two rounds of the page's model order from `start`: F1 after the start, 20 and 40
        // labels, and the particles among the 20 and the 40.
        let rounds = |name: &str, start: Vec<&Truth>| {
            let start_model = train_on(&dir, &format!("{name}_start"), &mics, &start, seed);
            let mut active = start.clone();
            label_first(&mut active, page_order(&start_model), 20);
            let model20 = train_on(&dir, &format!("{name}20"), &mics, &active, seed);
            let particles20 = particles(&active);
            label_first(&mut active, page_order(&model20), 40);
            let model40 = train_on(&dir, &format!("{name}40"), &mics, &active, seed);
            serde_json::json!({
                "start_labels": start.len(),
                "start": macro_f1(&start_model, &mics, &test_csv),
                "20": macro_f1(&model20, &mics, &test_csv),
                "20_particles": particles20,
                "40": macro_f1(&model40, &mics, &test_csv),
                "40_particles": particles(&active),
            })
        };
        // The page's first order, labelled until every class has the labels the page trains at.
        session.rank_typical().unwrap();
        let mut typical = Vec::new();
        for t in shown() {
            let of = |class| typical.iter().filter(|u: &&&Truth| u.3 == class).count();
            if of("particle") >= 5 && of("junk") >= 5 {
                break;
            }
            typical.push(t);
        }
        let page = rounds("page", typical);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let from_random = rounds("random_start", stratified(&pool, 5, &mut rng));
        let random20 = stratified(&pool, 10, &mut rng);
        let random40 = stratified(&pool, 20, &mut rng);
        let r20 = train_on(&dir, "random20", &mics, &random20, seed);
        let r40 = train_on(&dir, "random40", &mics, &random40, seed);
        let row = serde_json::json!({
            "seed": seed,
            "pool_picks": pool.len(),
            "test_picks": test.len(),
            "page": page,
            "from_random_start": from_random,
            "random_20": macro_f1(&r20, &mics, &test_csv),
            "random_40": macro_f1(&r40, &mics, &test_csv),
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
            "page_start_labels": mean(&["page", "start_labels"]),
            "page_start": mean(&["page", "start"]),
            "page_20": mean(&["page", "20"]),
            "page_40": mean(&["page", "40"]),
            "random_start_20": mean(&["from_random_start", "20"]),
            "random_start_40": mean(&["from_random_start", "40"]),
            "random_20": mean(&["random_20"]),
            "random_40": mean(&["random_40"]),
        },
    });
    let out = root.with_extension("json");
    std::fs::write(&out, serde_json::to_string_pretty(&summary).unwrap()).unwrap();
    println!("{}\nwritten to {}", summary["mean"], out.display());
}
