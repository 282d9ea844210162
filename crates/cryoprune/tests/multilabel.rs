//! Multi-label training from the command line on a generic image task: PNG images listed with
//! their label sets in an `image,labels` CSV (the Human Protein Atlas layout) train a model
//! with a sigmoid per label and a threshold per label, which `evaluate` scores on other images
//! and `prune` refuses.

mod common;

use std::path::Path;

use common::{cryoprune, model_json, s, text};
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

/// `train` on an [`image_set`] CSV as both image-set tests train, validated as `validation`
/// says, into `model`.
fn train_image_set(csv: &str, model: &Path, validation: &[&str]) -> std::process::Output {
    let mut args = vec![
        "train",
        "--labels",
        csv,
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
    ];
    args.extend(validation);
    args.extend(["--out", s(model)]);
    cryoprune(&args)
}

/// `evaluate`'s macro-F1 for `model` on an [`image_set`] CSV, its report written to `json`.
fn evaluate_image_set(model: &Path, csv: &str, json: &Path) -> f64 {
    let out = cryoprune(&[
        "evaluate",
        "--model",
        s(model),
        "--labels",
        csv,
        "--json",
        s(json),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    report["macro_f1"].as_f64().unwrap()
}

#[test]
fn images_with_label_sets_train_evaluate_and_are_refused_by_prune() {
    let tmp = tempfile::tempdir().unwrap();
    let train_csv = image_set(tmp.path(), "train", 48, 1);
    let test_csv = image_set(tmp.path(), "test", 40, 2);
    let model = tmp.path().join("model");
    let out = train_image_set(&train_csv, &model, &["--val-fraction", "0.3"]);
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

    let spec = model_json(&model);
    assert_eq!(spec["classes"], serde_json::json!(["bar", "disc"]));
    assert_eq!(spec["network"]["head"]["multi_label"], true);
    // Images named `image` are not micrographs: no power spectrum unless asked for.
    assert!(spec["preprocessing"].get("spectrum").is_none());
    assert_eq!(spec["network"]["in_channels"], 1);
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

    // The few-shot protocol on label sets: K images with and K without each label train, the
    // rest test, scored per label at thresholds chosen on held-out images.
    let fewshot = tmp.path().join("fewshot");
    let run = |shots: &str| {
        cryoprune(&[
            "fewshot",
            "--labels",
            &train_csv,
            "--input-size",
            "32",
            "--shots",
            shots,
            "--trials",
            "2",
            "--variants",
            "scratch",
            "--epochs",
            "30",
            "--schedule",
            "onecycle",
            "--lr",
            "0.05",
            "--out",
            s(&fewshot),
        ])
    };
    let out = run("8");
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let table = std::fs::read_to_string(fewshot.join("results.md")).unwrap();
    assert!(
        table.contains("K = 8: macro-F1 | micro-F1 | exact match |"),
        "{table}"
    );
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(fewshot.join("results.json")).unwrap())
            .unwrap();
    for trial in results["trials"].as_array().unwrap() {
        // Calling every label on every image would score macro-F1 0.67 and exact match 0.25.
        let (f1, exact) = (
            trial["macro_f1"].as_f64().unwrap(),
            trial["accuracy"].as_f64().unwrap(),
        );
        assert!(f1 > 0.9 && exact > 0.8, "{trial}");
        assert!(trial["test_picks"].as_u64().unwrap() >= 20, "{trial}");
    }
    let out = run("24");
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("24 examples carry label `bar`"),
        "{t}"
    );
}

/// Cross-validated, every image validates, scored by the network of the fold that did not learn
/// it, and each label's threshold is chosen on all of them; the model then learns from all.
#[test]
fn label_sets_cross_validate_in_folds() {
    let tmp = tempfile::tempdir().unwrap();
    let train_csv = image_set(tmp.path(), "train", 48, 1);
    let test_csv = image_set(tmp.path(), "test", 40, 2);
    let model = tmp.path().join("model");
    let train = |folds: &str| train_image_set(&train_csv, &model, &["--folds", folds]);
    // Two images a fold at least: refused before anything trains.
    let out = train("30");
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("--folds 30 needs at least 60 images"),
        "{t}"
    );
    assert!(!model.exists());

    let out = train("3");
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("48 images (carried by: 24 bar, 24 disc) in 3 folds")
            && t.contains(
                "all 48 images, each scored by the network of the 3 that did not learn it"
            ),
        "{t}"
    );
    let spec = model_json(&model);
    assert_eq!(spec["training"]["folds"], 3);
    assert_eq!(spec["training"]["validation_picks"], 48);
    assert_eq!(spec["training"]["train_picks"], 48);
    let validation = std::fs::read_to_string(model.join("validation.csv")).unwrap();
    assert_eq!(validation.lines().count(), 49, "{validation}");
    // Thresholds chosen on the folds' scores hold on other images.
    let macro_f1 = evaluate_image_set(&model, &test_csv, &tmp.path().join("eval.json"));
    assert!(macro_f1 > 0.9, "macro-F1 {macro_f1}");
}

/// An ensemble: each network holds out its own quarter and chooses thresholds on it; the model
/// keeps every network and decides by the mean of their probabilities and thresholds.
#[test]
fn label_sets_train_an_ensemble() {
    let tmp = tempfile::tempdir().unwrap();
    let train_csv = image_set(tmp.path(), "train", 48, 1);
    let test_csv = image_set(tmp.path(), "test", 40, 2);
    let model = tmp.path().join("model");
    let train = |more: &[&str]| train_image_set(&train_csv, &model, more);
    let out = train(&["--ensemble", "2", "--folds", "3"]);
    assert!(!out.status.success() && text(&out).contains("--folds"));
    let out = train(&["--ensemble", "3", "--val-fraction", "0.25"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("48 images (carried by: 24 bar, 24 disc): 3 networks")
            && t.contains("network 3 of 3"),
        "{t}"
    );
    // Three quarters of 12 overlap at random: between 12 and 36 distinct images, each once.
    let held: usize = t
        .split("validation (")
        .nth(1)
        .and_then(|rest| rest.split(" of the 48 images").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no validation count in {t}"));
    assert!((12..=36).contains(&held), "{held} held out");
    let spec = model_json(&model);
    assert_eq!(spec["training"]["ensemble"], 3);
    let members = spec["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    for m in members {
        assert!(model.join(m["weights_file"].as_str().unwrap()).is_file());
    }
    let validation = std::fs::read_to_string(model.join("validation.csv")).unwrap();
    let images: std::collections::HashSet<&str> = validation
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(validation.lines().count(), held + 1, "{validation}");
    assert_eq!(images.len(), held, "{validation}");
    let macro_f1 = evaluate_image_set(&model, &test_csv, &tmp.path().join("eval.json"));
    assert!(macro_f1 > 0.9, "macro-F1 {macro_f1}");

    // A classifier of one class per image cross-validates instead.
    let folder = tmp.path().join("classes");
    for (class, image) in [("a", "000"), ("b", "001")] {
        std::fs::create_dir_all(folder.join(class)).unwrap();
        let from = tmp.path().join(format!("train/{image}.png"));
        std::fs::copy(from, folder.join(class).join("x.png")).unwrap();
    }
    let single = tmp.path().join("single");
    let out = cryoprune(&[
        "train",
        "--labels",
        s(&folder),
        "--ensemble",
        "2",
        "--out",
        s(&single),
    ]);
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("ensembles are of models of images with label sets"),
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
    let spec = model_json(&model);
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

/// A RELION micrographs STAR: an optics block, and one row per micrograph with more columns
/// than the name, paths relative to the STAR file's folder (the project).
fn micrographs_star(dir: &Path, count: usize) -> std::path::PathBuf {
    let mut star = String::from(
        "\n# version 30001\n\ndata_optics\n\nloop_\n_rlnOpticsGroupName #1\n_rlnOpticsGroup #2\n\
         _rlnMicrographPixelSize #3\n_rlnVoltage #4\nopticsGroup1 1 2.500000 300.000000\n\n\
         # version 30001\n\ndata_micrographs\n\nloop_\n_rlnMicrographName #1\n_rlnOpticsGroup #2\n\
         _rlnCtfMaxResolution #3\n",
    );
    for i in 1..=count {
        star += &format!(
            "sim/micrographs/sim_{i:04}.mrc 1 {:.2}\n",
            3.0 + i as f64 / 10.0
        );
    }
    let path = dir.join("micrographs_ctf.star");
    std::fs::write(&path, star).unwrap();
    path
}

#[test]
fn curate_tags_micrographs_and_writes_the_star_back_as_relion_reads_it() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = tmp.path().join("sim");
    let out = cryoprune(&[
        "simulate",
        "--out",
        s(&sim),
        "--count",
        "10",
        "--size",
        "256",
        "--pixel",
        "4",
        "--no-previews",
        "--defects",
        "all=0.5",
        "--seed",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let model = tmp.path().join("curator");
    let tags = sim.join("micrograph_tags.csv");
    // Two epochs: what is tested is what the model folder holds and what curate does with it.
    let train = |out: &Path, more: &[&str]| {
        let mut args = vec![
            "train",
            "--labels",
            s(&tags),
            "--input-size",
            "32",
            "--pretrained",
            "none",
            "--epochs",
            "2",
        ];
        args.extend(more);
        args.extend(["--out", s(out)]);
        cryoprune(&args)
    };
    let out = train(&model, &["--val-fraction", "0.3"]);
    assert!(out.status.success(), "{}", text(&out));
    // A table of micrographs gives the network each micrograph's power spectrum beside it.
    let spec = model_json(&model);
    assert_eq!(spec["preprocessing"]["spectrum"], true);
    assert_eq!(spec["network"]["in_channels"], 2);
    // ...and each micrograph's measured statistics, one regression per tag.
    let ctx = &spec["exposure_context"];
    let facts: Vec<&str> = ctx["facts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(facts, cryoprune_image::exposure::FACTS, "{ctx}");
    assert_eq!(
        ctx["labels"].as_array().unwrap().len(),
        spec["classes"].as_array().unwrap().len()
    );

    // Cross-validated, the statistics' weights and the thresholds come from the folds' scores
    // of every micrograph.
    let folded = tmp.path().join("curator_folds");
    let out = train(&folded, &["--folds", "2"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("to fit the folds' scores of 10 micrographs best"),
        "{t}"
    );
    let spec = model_json(&folded);
    assert_eq!(spec["training"]["folds"], 2);
    assert_eq!(
        spec["exposure_context"]["facts"].as_array().unwrap().len(),
        cryoprune_image::exposure::FACTS.len()
    );

    let star = micrographs_star(tmp.path(), 10);
    // An ensemble: each network weighs the statistics with its own regression, and curate
    // decides by the mean of the networks'.
    let ensemble = tmp.path().join("curator_ensemble");
    let out = train(&ensemble, &["--val-fraction", "0.3", "--ensemble", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    let spec = model_json(&ensemble);
    assert_ne!(
        spec["members"][0]["exposure_context"],
        spec["exposure_context"]
    );
    let from_ensemble = tmp.path().join("FromEnsemble");
    let out = cryoprune(&[
        "curate",
        "--model",
        s(&ensemble),
        "--micrographs",
        s(&star),
        "--out",
        s(&from_ensemble),
    ]);
    assert!(
        out.status.success() && text(&out).contains("of 10 micrographs"),
        "{}",
        text(&out)
    );
    let table = std::fs::read_to_string(from_ensemble.join("tags.csv")).unwrap();
    assert_eq!(table.lines().count(), 11);
    let curate = |out: &Path, list: &Path, more: &[&str]| {
        let mut args = vec!["curate", "--model", s(&model), "--micrographs", s(list)];
        args.extend(more);
        args.extend(["--out", s(out)]);
        let o = cryoprune(&args);
        // Micrographs simulated like the training ones are not called unlike them.
        assert!(
            o.status.success()
                && text(&o).contains("of 10 micrographs")
                && !text(&o).contains("unlike"),
            "{}",
            text(&o)
        );
        text(&o)
    };
    let read = |dir: &Path, name: &str| cryoprune_formats::StarFile::read(dir.join(name)).unwrap();
    let rows = |f: &cryoprune_formats::StarFile| {
        let l = f.block("micrographs").unwrap().first_loop().unwrap();
        assert_eq!(
            l.columns,
            ["rlnMicrographName", "rlnOpticsGroup", "rlnCtfMaxResolution"]
        );
        assert!(f.block("optics").is_some(), "the optics block is kept");
        l.rows
            .iter()
            .map(|r| r.get(0).to_string())
            .collect::<Vec<_>>()
    };
    let kept_in = |table: &str| {
        table
            .lines()
            .skip(1)
            .filter(|l| l.split(',').nth(1) == Some("1"))
            .count()
    };
    // With the model's own thresholds any split is possible after two epochs of training.
    let mine = tmp.path().join("Mine");
    curate(&mine, &star, &[]);
    let (k, r) = (
        rows(&read(&mine, "micrographs.star")),
        rows(&read(&mine, "rejected.star")),
    );
    assert_eq!(k.len() + r.len(), 10);
    let table = std::fs::read_to_string(mine.join("tags.csv")).unwrap();
    assert_eq!((table.lines().count(), kept_in(&table)), (11, k.len()));
    // Each micrograph's measured statistics follow its probabilities.
    let header: Vec<&str> = table.lines().next().unwrap().split(',').collect();
    assert!(
        header.ends_with(&cryoprune_image::exposure::FACTS),
        "{header:?}"
    );
    assert!(table
        .lines()
        .skip(1)
        .all(|l| l.split(',').count() == header.len()));
    // A threshold of 1 calls no tag (a sigmoid stays below it): every micrograph is kept and
    // the whole STAR goes through.
    let curated = tmp.path().join("Curate");
    assert!(curate(&curated, &star, &["--threshold", "1"]).contains("kept 10 of 10"));
    let (k, r) = (
        rows(&read(&curated, "micrographs.star")),
        rows(&read(&curated, "rejected.star")),
    );
    assert_eq!((k.len(), r.len()), (10, 0));
    assert_eq!(k[3], "sim/micrographs/sim_0004.mrc");
    let report = std::fs::read_to_string(curated.join("report.html")).unwrap();
    assert!(report.contains("Micrograph curation") && report.contains("data:image/jpeg"));

    // A cryoSPARC exposures .cs comes back with every field, the rejected records left out.
    let cs = tmp.path().join("exposures.cs");
    let names: Vec<String> = (1..=10)
        .map(|i| format!("sim/micrographs/sim_{i:04}.mrc"))
        .collect();
    cryoprune_formats::npy::StructArray::new()
        .write_selected(
            &cs,
            [0; 10].into_iter(),
            &[
                cryoprune_formats::npy::NewField::u64("uid", |i| 1000 + i as u64),
                cryoprune_formats::npy::NewField::text("micrograph_blob/path", 40, |i| {
                    names[i].clone()
                }),
                cryoprune_formats::npy::NewField::f32("micrograph_blob/psize_A", |_| 4.0),
            ],
        )
        .unwrap();
    // `info` names it for what it is, not for the picks it lacks.
    let o = cryoprune(&["info", "--json", s(&cs)]);
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        info["micrographs_listed"],
        "10 micrographs: a list of micrographs, as --micrographs takes one",
        "{info}"
    );
    let from_cs = tmp.path().join("FromCs");
    assert!(curate(&from_cs, &cs, &["--threshold", "1"]).contains("kept 10 of 10"));
    let kept_cs = cryoprune_formats::npy::StructArray::read(from_cs.join("exposures.cs")).unwrap();
    let field_names = |a: &cryoprune_formats::npy::StructArray| {
        a.fields.iter().map(|f| f.name.clone()).collect::<Vec<_>>()
    };
    assert_eq!(kept_cs.nrows, 10);
    assert_eq!(
        field_names(&kept_cs),
        ["uid", "micrograph_blob/path", "micrograph_blob/psize_A"]
    );
    let uid = kept_cs.field("uid").unwrap();
    assert_eq!(kept_cs.number(9, uid, 0), Some(1009.0));
    let rejected_cs =
        cryoprune_formats::npy::StructArray::read(from_cs.join("rejected_exposures.cs")).unwrap();
    assert_eq!(
        (rejected_cs.nrows, field_names(&rejected_cs)),
        (0, field_names(&kept_cs))
    );

    // RELION itself reads the kept micrographs back, and starfile sees the same columns.
    let printed = std::process::Command::new("relion_star_printtable")
        .args([
            s(&curated.join("micrographs.star")),
            "data_micrographs",
            "_rlnMicrographName",
        ])
        .output();
    match printed {
        Ok(o) => {
            let names: Vec<String> = String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(String::from)
                .collect();
            assert_eq!(names, k, "{}", text(&o));
        }
        Err(_) => assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "relion_star_printtable (RELION 3.1) must be installed in CI: see .ci/run"
        ),
    }
    if common::python_ready() {
        let o = std::process::Command::new("python3")
            .args([
                "-c",
                "import starfile,sys; d=starfile.read(sys.argv[1], always_dict=True); \
                 print(','.join(d['micrographs'].columns), len(d['micrographs']), 'optics' in d)",
                s(&curated.join("micrographs.star")),
            ])
            .output()
            .unwrap();
        let line = String::from_utf8_lossy(&o.stdout).trim().to_string();
        assert_eq!(
            line,
            format!(
                "rlnMicrographName,rlnOpticsGroup,rlnCtfMaxResolution {} True",
                k.len()
            ),
            "{}",
            text(&o)
        );
        // cryosparc-tools loads the kept exposures with their fields.
        let o = std::process::Command::new("python3")
            .args([
                "-c",
                "from cryosparc.dataset import Dataset; import sys; d=Dataset.load(sys.argv[1]); \
                 print(len(d), d['micrograph_blob/path'][3])",
                s(&from_cs.join("exposures.cs")),
            ])
            .output()
            .unwrap();
        let line = String::from_utf8_lossy(&o.stdout).trim().to_string();
        assert_eq!(line, "10 sim/micrographs/sim_0004.mrc", "{}", text(&o));
    }

    // A tag the model does not know is refused before any work.
    let out = cryoprune(&[
        "curate",
        "--model",
        s(&model),
        "--micrographs",
        s(&star),
        "--reject",
        "fog",
        "--out",
        s(&tmp.path().join("x")),
    ]);
    assert!(
        !out.status.success() && text(&out).contains("--reject fog"),
        "{}",
        text(&out)
    );

    // A movie among the micrographs is one micrograph (its first frame, with a warning), so
    // each file keeps its own row of tags.
    let movie = tmp.path().join("movie.mrcs");
    let frame = cryoprune_formats::read_micrograph(sim.join("micrographs/sim_0002.mrc")).unwrap();
    let frames: Vec<f32> = (0..3).flat_map(|_| frame.data.iter().copied()).collect();
    cryoprune_formats::mrc::write_mrc(
        &movie,
        (frame.nx, frame.ny, 3),
        &frames,
        cryoprune_formats::mrc::Mode::Float32,
        cryoprune_formats::mrc::WriteKind::ImageOrStack,
        Some(4.0),
    )
    .unwrap();
    let listed = tmp.path().join("with_movie");
    let out = cryoprune(&[
        "curate",
        "--model",
        s(&model),
        "--micrographs",
        s(&movie),
        s(&sim.join("micrographs/sim_0001.mrc")),
        "--out",
        s(&listed),
    ]);
    assert!(
        out.status.success() && text(&out).contains("holds more than one image"),
        "{}",
        text(&out)
    );
    let table = std::fs::read_to_string(listed.join("tags.csv")).unwrap();
    let names: Vec<&str> = table
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{table}");
    assert!(
        names[0].ends_with("movie.mrcs") && names[1].ends_with("sim_0001.mrc"),
        "{table}"
    );

    // Another kind of micrograph (a real, denoised 4096² JPEG) is still tagged, with a warning
    // that the model never saw its like.
    if let Some(data) = common::data() {
        let jpeg = data.join("empiar-10017/micrographs/Falcon_2012_06_12-14_33_35_0.jpg");
        let out = cryoprune(&[
            "curate",
            "--model",
            s(&model),
            "--micrographs",
            s(&jpeg),
            "--out",
            s(&tmp.path().join("Other")),
        ]);
        let said = text(&out);
        assert!(out.status.success(), "{said}");
        assert!(
            said.contains("1 of 1 micrographs are unlike those the model was trained on")
                && said.contains("Falcon_2012_06_12-14_33_35_0.jpg"),
            "{said}"
        );
    }
}

/// A label on every image gives the model nothing to tell it from: the label is named.
#[test]
fn a_label_on_every_image_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = image_set(tmp.path(), "train", 8, 3);
    let text_of = std::fs::read_to_string(&csv).unwrap();
    let everywhere: String = text_of
        .lines()
        .enumerate()
        .map(|(i, l)| match (i, l.ends_with(',')) {
            (0, _) => format!("{l}\n"),
            (_, true) => format!("{l}dust\n"),
            _ => format!("{l};dust\n"),
        })
        .collect();
    std::fs::write(&csv, everywhere).unwrap();
    let model = tmp.path().join("model");
    let o = train_image_set(&csv, &model, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("`dust` is on every one of the 8 images"),
        "{}",
        text(&o)
    );
}
