//! Multi-label training from the command line on a generic image task: PNG images listed with
//! their label sets in an `image,labels` CSV (the Human Protein Atlas layout) train a model
//! with a sigmoid per label and a threshold per label, which `evaluate` scores on other images
//! and `prune` refuses.

mod common;

use std::path::Path;

use common::{cryoprune, s, text};
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// `n` noisy 28-px PNGs under `dir/name/`, each with a bright disc, a dark bar across the
/// middle, both or neither (every combination in turn), listed in `dir/name.csv`.
fn image_set(dir: &Path, name: &str, n: usize, seed: u64) -> String {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    std::fs::create_dir_all(dir.join(name)).unwrap();
    let mut csv = String::from("image,labels\n");
    for i in 0..n {
        let (disc, bar) = (i % 2 == 1, (i / 2) % 2 == 1);
        let r0 = rng.random_range(4.0..6.0f32);
        let mut pixels = Vec::new();
        for y in 0..28 {
            for x in 0..28 {
                let r = ((x as f32 - 14.0).powi(2) + (y as f32 - 14.0).powi(2)).sqrt();
                let mut v = 128.0 + rng.random_range(-40.0..40.0f32);
                if disc && r < r0 {
                    v += 70.0;
                }
                if bar && (13..16).contains(&y) && (4..24).contains(&x) {
                    v -= 70.0;
                }
                pixels.push(v.clamp(0.0, 255.0) as u8);
            }
        }
        let file = format!("{name}/{i:03}.png");
        image::GrayImage::from_raw(28, 28, pixels)
            .unwrap()
            .save(dir.join(&file))
            .unwrap();
        let labels: Vec<&str> = [(disc, "disc"), (bar, "bar")]
            .into_iter()
            .filter_map(|(on, l)| on.then_some(l))
            .collect();
        csv += &format!("{file},{}\n", labels.join(";"));
    }
    let path = dir.join(format!("{name}.csv"));
    std::fs::write(&path, csv).unwrap();
    path.display().to_string()
}

#[test]
fn images_with_label_sets_train_evaluate_and_are_refused_by_prune() {
    let tmp = tempfile::tempdir().unwrap();
    let train_csv = image_set(tmp.path(), "train", 48, 1);
    let test_csv = image_set(tmp.path(), "test", 40, 2);
    let model = tmp.path().join("model");
    let out = cryoprune(&[
        "train",
        "--labels",
        &train_csv,
        "--input-size",
        "32",
        "--pretrained",
        "none",
        "--epochs",
        "20",
        "--schedule",
        "onecycle",
        "--lr",
        "0.05",
        "--class-weights",
        "balanced",
        "--val-fraction",
        "0.3",
        "--out",
        s(&model),
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("48 images with 2 labels (carried by: 24 bar, 24 disc)"),
        "{t}"
    );
    assert!(
        t.contains("validating on 14 held out") && t.contains("exact match"),
        "{t}"
    );

    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("model.json")).unwrap()).unwrap();
    assert_eq!(spec["classes"], serde_json::json!(["bar", "disc"]));
    assert_eq!(spec["network"]["head"]["multi_label"], true);
    let thresholds = spec["thresholds"].as_array().unwrap();
    assert!(thresholds
        .iter()
        .all(|t| (0.0..=1.0).contains(&t.as_f64().unwrap())));
    // `balanced`: each label's positives weighed by its negatives among the training images.
    let weights = spec["training"]["config"]["class_weights"]
        .as_array()
        .unwrap();
    assert_eq!(weights.len(), 2);
    let validation = std::fs::read_to_string(model.join("validation.csv")).unwrap();
    assert!(
        validation.starts_with("image,labels,predicted,p_bar,p_disc\n"),
        "{validation}"
    );
    assert_eq!(validation.lines().count(), 15);

    // Other images: the labels and thresholds learnt hold.
    let json = tmp.path().join("eval.json");
    let predictions = tmp.path().join("predictions.csv");
    let out = cryoprune(&[
        "evaluate",
        "--model",
        s(&model),
        "--labels",
        &test_csv,
        "--json",
        s(&json),
        "--predictions",
        s(&predictions),
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let macro_f1 = report["macro_f1"].as_f64().unwrap();
    assert!(macro_f1 > 0.9, "macro-F1 {macro_f1}: {t}");
    assert!(report["exact_match"].as_f64().unwrap() > 0.8, "{t}");
    assert_eq!(report["per_label"][1]["support"], 20);
    let rows = std::fs::read_to_string(&predictions).unwrap();
    assert!(
        rows.lines().any(|l| l.contains("003.png,bar;disc,")),
        "{rows}"
    );

    // A label the model does not know is an error naming the line.
    let odd = tmp.path().join("odd.csv");
    std::fs::write(&odd, "image,labels\ntest/000.png,\ntest/001.png,ice\n").unwrap();
    let out = cryoprune(&["evaluate", "--model", s(&model), "--labels", s(&odd)]);
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("line 3") && t.contains("`ice`"),
        "{t}"
    );

    // prune classifies picks into one class each; a multi-label model is refused.
    let out = cryoprune(&[
        "prune",
        "--model",
        s(&model),
        "--micrographs",
        "none.mrc",
        "--picks",
        &train_csv,
        "--out",
        s(&tmp.path().join("pruned")),
    ]);
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("multi-label model"),
        "{t}"
    );
}

/// Picks on micrographs with a `labels` column of label sets train a multi-label model too, and
/// `evaluate` reads picks with one label or none as sets for it.
#[test]
fn picks_with_label_sets_train_a_multi_label_model() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = tmp.path().join("sim");
    let out = cryoprune(&[
        "simulate",
        "--out",
        s(&sim),
        "--count",
        "3",
        "--size",
        "384",
        "--no-previews",
        "--seed",
        "4",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // Every junk pick is `junk` and its kind; particles are `particle` alone.
    let truth = std::fs::read_to_string(sim.join("truth.csv")).unwrap();
    let mut sets = String::from("micrograph,x,y,labels\n");
    let mut single = String::from("micrograph,x,y,labels\n");
    for row in truth.lines().skip(1) {
        let f: Vec<&str> = row.split(',').collect();
        let labels = match f[3] {
            "particle" => "particle".to_string(),
            kind => format!("{kind};junk"),
        };
        sets += &format!("{},{},{},{labels}\n", f[0], f[1], f[2]);
        single += &format!(
            "{},{},{},{}\n",
            f[0],
            f[1],
            f[2],
            if f[3] == "particle" { "particle" } else { "" }
        );
    }
    let (sets_csv, single_csv) = (tmp.path().join("sets.csv"), tmp.path().join("single.csv"));
    std::fs::write(&sets_csv, sets).unwrap();
    std::fs::write(&single_csv, single).unwrap();
    let mics = format!("{}/micrographs/*.mrc", sim.display());
    let model = tmp.path().join("model");
    let mut args = common::tiny_train_args(&mics, s(&sets_csv), s(&model));
    args.retain(|a| *a != "--val-fraction" && *a != "0.3");
    let out = cryoprune(&args);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("model.json")).unwrap()).unwrap();
    let classes = spec["classes"].as_array().unwrap();
    assert!(
        classes.contains(&"junk".into()) && classes.contains(&"particle".into()),
        "{classes:?}"
    );
    assert_eq!(spec["thresholds"].as_array().unwrap().len(), classes.len());

    let json = tmp.path().join("eval.json");
    let out = cryoprune(&[
        "evaluate",
        "--model",
        s(&model),
        "--micrographs",
        &mics,
        "--labels",
        s(&single_csv),
        "--json",
        s(&json),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let particle = report["per_label"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["label"] == "particle")
        .unwrap();
    assert!(particle["support"].as_u64().unwrap() > 10, "{report}");
}
