//! The deep picker end to end on simulated micrographs: trained on three micrographs' particles
//! (one more validating), either network finds the particles of a micrograph it never saw; its
//! picks come out in a folder or one file, `--skip-existing` leaves finished micrographs, and
//! evaluate-picks scores them.

use std::path::{Path, PathBuf};

use cryoprune_formats::{PickFormat, PickSet};
use cryoprune_jobs::picker::evaluate::{self, EvaluatePicksConfig};
use cryoprune_jobs::picker::pick::{self, PickConfig};
use cryoprune_jobs::picker::{self as picker, PickerTrainConfig};
use cryoprune_jobs::simulate::{self, SimulateConfig};
use cryoprune_jobs::{ComputeConfig, Silent};
use cryoprune_model::picker::PickerArch;
use cryoprune_train::pickerdir::PickerDir;

/// Five simulated micrographs (the easy preset: a few micrographs' particles teach a picker only
/// where the particles are visible); returns their folder and the CSV of every particle placed.
fn dataset(dir: &Path) -> (PathBuf, PathBuf) {
    let sim = dir.join("sim");
    simulate::run(
        &SimulateConfig {
            out: sim.clone(),
            count: 5,
            size: 512,
            format: PickFormat::Csv,
            no_previews: true,
            preset: "easy".into(),
            seed: 21,
            ..SimulateConfig::default()
        },
        &Silent,
    )
    .unwrap();
    let csv = sim.join("particles.csv");
    (sim.join("micrographs"), csv)
}

fn mics(folder: &Path, ids: &[u32]) -> Vec<String> {
    ids.iter()
        .map(|i| folder.join(format!("sim_{i:04}.mrc")).display().to_string())
        .collect()
}

/// Training on sim_0001-0004 (one validating), the particle 32 px across, into `model`.
fn train_config(folder: &Path, particles: &Path, model: &Path) -> PickerTrainConfig {
    PickerTrainConfig {
        compute: ComputeConfig {
            threads: 2,
            ..ComputeConfig::default()
        },
        micrographs: mics(folder, &[1, 2, 3, 4]),
        picks: vec![particles.to_path_buf()],
        box_size: Some(48),
        validation: Some(1),
        out: model.to_path_buf(),
        ..PickerTrainConfig::default()
    }
}

/// F1 of `picks` against every particle placed on sim_0005 (radius 16 px, half the diameter).
fn f1_on_micrograph_5(dir: &Path, particles: &Path, picks: &[PathBuf]) -> f64 {
    let truth = dir.join("truth5.csv");
    let rows: String = std::fs::read_to_string(particles)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("micrograph") || l.starts_with("sim_0005"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&truth, rows).unwrap();
    let report = evaluate::run(
        &EvaluatePicksConfig {
            picks: picks.to_vec(),
            truth: vec![truth],
            radius: 16.0,
            ..EvaluatePicksConfig::default()
        },
        &Silent,
    )
    .unwrap();
    report.total.f1
}

#[test]
fn a_picker_trained_on_three_micrographs_finds_the_particles_of_another() {
    let dir = tempfile::tempdir().unwrap();
    let (folder, particles) = dataset(dir.path());
    let model = dir.path().join("picker");
    let cfg = PickerTrainConfig {
        network: PickerArch::Fcn,
        epochs: 40,
        ..train_config(&folder, &particles, &model)
    };
    let spec = picker::train(&cfg, &Silent).unwrap();
    assert_eq!(spec.training.train_micrographs.len(), 3);
    assert_eq!(spec.training.validation_micrographs.len(), 1);
    assert!(spec.threshold.is_finite());
    // The threshold was chosen on all four micrographs, and the record says how each side did.
    let train = spec.training.train_at_threshold.unwrap();
    let val = spec.training.validation.unwrap();
    assert_eq!(train.threshold, Some(spec.threshold));
    assert_eq!(val.threshold, Some(spec.threshold));
    assert!(train.f1 > 0.7 && val.f1 > 0.5, "{train:?} {val:?}");
    let (_, loaded) = PickerDir::new(&model).load().unwrap();
    assert_eq!(loaded.weights_sha256, spec.weights_sha256);
    assert!(model.join("curves.png").exists() && model.join("history.csv").exists());

    let out = dir.path().join("picks");
    let pick_cfg = PickConfig {
        model: model.clone(),
        micrographs: mics(&folder, &[5]),
        out: PathBuf::from(format!("{}/", out.display())),
        ..PickConfig::default()
    };
    let summary = pick::run(&pick_cfg, &Silent).unwrap();
    // The coordinate file, and the index RELION 4/5 takes, as from its own AutoPick.
    assert_eq!((summary.micrographs, summary.files.len()), (1, 2));
    assert_eq!(summary.files[1], out.join("autopick.star"));
    assert!(summary.picks > 10, "{} picks", summary.picks);

    let f1 = f1_on_micrograph_5(dir.path(), &particles, &summary.files[..1]);
    assert!(f1 > 0.7, "F1 {f1}");

    // A second run leaves the micrograph that has its file; one file takes every micrograph.
    let again = pick::run(
        &PickConfig {
            skip_existing: true,
            ..pick_cfg.clone()
        },
        &Silent,
    )
    .unwrap();
    assert_eq!((again.micrographs, again.skipped), (0, 1));
    let one = dir.path().join("all.star");
    let both = pick::run(
        &PickConfig {
            micrographs: mics(&folder, &[4, 5]),
            out: one.clone(),
            threshold: Some(-2.0),
            ..pick_cfg.clone()
        },
        &Silent,
    )
    .unwrap();
    let read = PickSet::read(&[one], None).unwrap();
    assert_eq!(read.len(), both.picks);
    assert_eq!(read.micrographs.len(), 2);
    assert!(both.picks > summary.picks, "a lower threshold keeps more");

    // The name chooses the format when --format is not given; a name that says another
    // format than the one given is refused before any picking.
    let csv = dir.path().join("all.csv");
    let as_csv = PickConfig {
        out: csv.clone(),
        ..pick_cfg
    };
    pick::run(&as_csv, &Silent).unwrap();
    assert!(csv.is_file(), "one CSV file, not a folder");
    assert_eq!(PickSet::read(&[csv], None).unwrap().format, PickFormat::Csv);
    let clash = dir.path().join("clash.csv");
    let err = pick::run(
        &PickConfig {
            out: clash.clone(),
            format: Some(PickFormat::Star),
            ..as_csv
        },
        &Silent,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("clash.csv") && err.contains("says csv"),
        "{err}"
    );
    assert!(!clash.exists());
}

#[test]
fn a_classifier_folder_or_too_few_micrographs_is_refused_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let not_picker = dir.path().join("model");
    std::fs::create_dir_all(&not_picker).unwrap();
    std::fs::write(not_picker.join("model.json"), "{}").unwrap();
    let err = pick::run(
        &PickConfig {
            model: not_picker,
            micrographs: vec![dir.path().display().to_string()],
            out: dir.path().join("out/"),
            ..PickConfig::default()
        },
        &Silent,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("classifier") && err.contains("picker.json"),
        "{err}"
    );

    let (folder, particles) = dataset(dir.path());
    let err = picker::train(
        &PickerTrainConfig {
            micrographs: mics(&folder, &[1]),
            picks: vec![particles],
            box_size: Some(48),
            out: dir.path().join("p"),
            ..PickerTrainConfig::default()
        },
        &Silent,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("at least 2"), "{err}");
}

#[test]
fn the_small_network_starts_from_the_shipped_backbone_and_picks() {
    let dir = tempfile::tempdir().unwrap();
    let (folder, particles) = dataset(dir.path());
    let model = dir.path().join("picker");
    let cfg = PickerTrainConfig {
        epochs: 8,
        ..train_config(&folder, &particles, &model)
    };
    let spec = picker::train(&cfg, &Silent).unwrap();
    assert_eq!(
        (spec.network.as_str(), spec.views),
        ("small", 1),
        "the default network"
    );
    let shipped = cryoprune_model::hub::CRYO_SMALL.sha256;
    assert!(
        spec.pretrained.starts_with("cryo") && spec.pretrained.contains(shipped),
        "{}",
        spec.pretrained
    );
    // The particle (32 px across at 48 px a box) spans the small network's 32 binned pixels.
    assert_eq!(spec.bin, 1.0);
    let (net, loaded) = PickerDir::new(&model).load().unwrap();
    assert_eq!((net.stride(), loaded.network.as_str()), (8, "small"));

    let out = dir.path().join("picks.csv");
    let summary = pick::run(
        &PickConfig {
            model,
            micrographs: mics(&folder, &[5]),
            out: out.clone(),
            ..PickConfig::default()
        },
        &Silent,
    )
    .unwrap();
    let f1 = f1_on_micrograph_5(dir.path(), &particles, &summary.files);
    assert!(f1 > 0.7, "F1 {f1}");

    // The picker's own network has no pretrained weights to start from.
    let err = picker::train(
        &PickerTrainConfig {
            network: PickerArch::Fcn,
            pretrained: Some("cryo".into()),
            out: dir.path().join("p"),
            ..cfg
        },
        &Silent,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("--network small"), "{err}");
}
