//! Pretraining in process on tiny sizes: a run stopped by its time limit and resumed goes on as
//! a run that never stopped, and runs refuse to mix settings or overwrite.

use std::path::Path;
use std::sync::Mutex;

use cryoprune_jobs::pretrain::{self, PretrainConfig, BACKBONE_FILE, CHECKPOINT_FILE};
use cryoprune_jobs::recipe::StartingWeights;
use cryoprune_jobs::{ComputeConfig, Silent};
use cryoprune_model::Arch;

/// burn draws initial weights from one process-wide generator, which each run seeds: two runs
/// at once in this binary's test threads would draw from each other's sequence.
static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());

fn tiny(out: &Path) -> PretrainConfig {
    PretrainConfig {
        compute: ComputeConfig {
            device: "cpu".into(),
            threads: 1,
        },
        out: out.to_path_buf(),
        input_size: 16,
        chunks: 3,
        micrographs_per_chunk: 3,
        per_class: 3,
        passes: 1,
        batch: 8,
        ..PretrainConfig::default()
    }
}

#[test]
fn a_resumed_run_goes_on_as_an_unbroken_one() {
    let _one = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    let state = pretrain::run(&tiny(&whole), &Silent).unwrap();
    assert_eq!(state.chunks_done, 3);
    assert_eq!(state.history.len(), 3);
    assert_eq!(state.classes.len(), 13);
    assert!(whole.join(BACKBONE_FILE).exists());
    assert_eq!(
        state.backbone_sha256.as_deref().map(str::len),
        Some(64),
        "the record names the backbone's hash"
    );
    // Training from it records the same hash in model.json.
    let start = StartingWeights::resolve(
        whole.join(BACKBONE_FILE).to_str().unwrap(),
        Arch::Small,
        &Silent,
    )
    .unwrap();
    assert_eq!(start.sha256, state.backbone_sha256);
    let unbroken = state.history;

    // A zero time limit stops after the first chunk, with a checkpoint and no backbone.
    let broken = tmp.path().join("broken");
    let first = PretrainConfig {
        time_limit_minutes: Some(0.0),
        ..tiny(&broken)
    };
    let state = pretrain::run(&first, &Silent).unwrap();
    assert_eq!(state.chunks_done, 1);
    assert!(broken.join(CHECKPOINT_FILE).exists() && !broken.join(BACKBONE_FILE).exists());

    // Starting again without --resume would lose that run: refused.
    let err = pretrain::run(&tiny(&broken), &Silent)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--resume"), "{err}");
    // Resuming with another recipe would mix two runs: refused.
    let other = PretrainConfig {
        resume: true,
        lr: 0.01,
        ..tiny(&broken)
    };
    let err = pretrain::run(&other, &Silent).unwrap_err().to_string();
    assert!(
        err.contains("other settings (lr 0.05 there, 0.01 here)"),
        "{err}"
    );

    let resumed = PretrainConfig {
        resume: true,
        ..tiny(&broken)
    };
    let state = pretrain::run(&resumed, &Silent).unwrap();
    assert_eq!(state.chunks_done, 3);
    assert!(broken.join(BACKBONE_FILE).exists());
    // The same data, learning rates and starting weights chunk by chunk, and the small
    // network trains on the CPU path, whose sums run in a fixed order: the resumed run is the
    // unbroken one bit for bit.
    let numbers = |h: &[pretrain::ChunkStats]| {
        h.iter()
            .map(|c| (c.chunk, c.lr, c.particles, c.loss, c.accuracy))
            .collect::<Vec<_>>()
    };
    assert_eq!(numbers(&state.history), numbers(&unbroken));
}

/// The convolutions' weights of a backbone file, by name.
fn convolutions(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .filter(|(_, t)| t.shape().len() == 4)
        .map(|(name, t)| (name, t.data().to_vec()))
        .collect();
    out.sort();
    out
}

fn largest_difference(a: &[(String, Vec<u8>)], b: &[(String, Vec<u8>)]) -> f32 {
    assert_eq!(a.len(), b.len());
    let floats = |v: &[u8]| -> Vec<f32> {
        v.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    a.iter()
        .zip(b)
        .flat_map(|((na, va), (nb, vb))| {
            assert_eq!(na, nb);
            floats(va)
                .into_iter()
                .zip(floats(vb))
                .map(|(x, y)| (x - y).abs())
                .collect::<Vec<_>>()
        })
        .fold(0.0, f32::max)
}

#[test]
fn a_run_can_start_from_another_backbone() {
    let _one = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    let state = pretrain::run(&tiny(&first), &Silent).unwrap();
    let start = first.join(BACKBONE_FILE);
    // A learning rate too small to move a weight: what the run ends with is what it began from.
    let still = |out: &Path, from: Option<&Path>| PretrainConfig {
        lr: 1e-12,
        seed: 7,
        from: from.map(|p| p.to_str().unwrap().to_string()),
        ice_structure: 0.4,
        ..tiny(out)
    };
    let continued = pretrain::run(&still(&tmp.path().join("on"), Some(&start)), &Silent).unwrap();
    assert_eq!(
        continued.recipe["from_sha256"].as_str(),
        state.backbone_sha256.as_deref()
    );
    assert_eq!(continued.recipe["ice_structure"].as_f64(), Some(0.4));
    let fresh = pretrain::run(&still(&tmp.path().join("fresh"), None), &Silent).unwrap();
    assert!(fresh.recipe.get("from_sha256").is_none());
    let began = convolutions(&start);
    let on = convolutions(&tmp.path().join("on").join(BACKBONE_FILE));
    let other = convolutions(&tmp.path().join("fresh").join(BACKBONE_FILE));
    assert!(largest_difference(&began, &on) < 1e-6);
    assert!(largest_difference(&began, &other) > 1e-2);
    // The recipe of a run with white noise and no start is what it was before the options
    // existed, so the runs made then still resume.
    assert!(state.recipe.get("ice_structure").is_none());
    assert!(state.recipe.get("from").is_none());

    let out = tmp.path().join("refused");
    let refused = |cfg: PretrainConfig| pretrain::run(&cfg, &Silent).unwrap_err().to_string();
    let err = refused(PretrainConfig {
        ice_structure: 1.5,
        ..tiny(&out)
    });
    assert!(err.contains("--ice-structure"), "{err}");
    let absent = tmp.path().join("absent.safetensors");
    let err = refused(PretrainConfig {
        from: Some(absent.display().to_string()),
        ..tiny(&out)
    });
    assert!(err.contains("absent.safetensors"), "{err}");
    // The small network has no ImageNet weights: said, not silently random.
    let err = refused(PretrainConfig {
        from: Some("imagenet".into()),
        ..tiny(&out)
    });
    assert!(err.contains("no such weights"), "{err}");
    assert!(!out.exists(), "a refused run leaves nothing behind");
}

#[test]
fn resume_needs_a_run_to_continue() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = PretrainConfig {
        resume: true,
        ..tiny(tmp.path())
    };
    let err = pretrain::run(&cfg, &Silent).unwrap_err().to_string();
    assert!(err.contains("no pretraining run"), "{err}");
}

/// A rate or decay that would spend a run diverging is refused before the set is built.
#[test]
fn a_learning_rate_or_decay_that_cannot_train_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for (cfg, says) in [
        (
            PretrainConfig {
                lr: 0.0,
                ..tiny(tmp.path())
            },
            "--lr is a learning rate above 0",
        ),
        (
            PretrainConfig {
                weight_decay: -1.0,
                ..tiny(tmp.path())
            },
            "--weight-decay is 0 or more",
        ),
    ] {
        let err = pretrain::run(&cfg, &Silent).unwrap_err().to_string();
        assert!(err.contains(says), "{err}");
    }
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn real_structures_are_classes_and_part_of_the_recipe() {
    let sources =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/sources/cryodrgn");
    if !sources.is_dir() {
        eprintln!("skipped: ../shared/data not present");
        return;
    }
    let _one = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let spike = tmp.path().join("spike-vol.mrc");
    let mut bytes = std::fs::read(sources.join("spike-vol.mrc")).unwrap();
    std::fs::write(&spike, &bytes).unwrap();
    let with_spike = |out: &Path| PretrainConfig {
        structures: vec![spike.clone()],
        ..tiny(out)
    };
    let first = PretrainConfig {
        time_limit_minutes: Some(0.0),
        ..with_spike(&out)
    };
    let state = pretrain::run(&first, &Silent).unwrap();
    assert_eq!(state.classes.len(), 14);
    assert_eq!(state.classes[8], "particle:spike-vol");
    assert_eq!(
        state.recipe["structure_sha256"][0].as_str().map(str::len),
        Some(64)
    );
    // The file changed since: another set, so the run cannot go on.
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&spike, &bytes).unwrap();
    let resumed = PretrainConfig {
        resume: true,
        ..with_spike(&out)
    };
    let err = pretrain::run(&resumed, &Silent).unwrap_err().to_string();
    assert!(err.contains("other settings"), "{err}");
    // Two structures of one name would be one class twice.
    let twice = PretrainConfig {
        structures: vec![spike.clone(), sources.join("spike-vol.mrc")],
        ..tiny(&tmp.path().join("twice"))
    };
    let err = pretrain::run(&twice, &Silent).unwrap_err().to_string();
    assert!(err.contains("already named `spike-vol`"), "{err}");
}
