//! Pretraining in process on tiny sizes: a run stopped by its time limit and resumed goes on as
//! a run that never stopped, and runs refuse to mix settings or overwrite.

use std::path::Path;

use cryoprune_jobs::pretrain::{self, PretrainConfig, BACKBONE_FILE, CHECKPOINT_FILE};
use cryoprune_jobs::recipe::StartingWeights;
use cryoprune_jobs::{ComputeConfig, Silent};
use cryoprune_model::Arch;

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
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    let state = pretrain::run(&tiny(&whole), &Silent).unwrap();
    assert_eq!(state.chunks_done, 3);
    assert_eq!(state.history.len(), 3);
    assert_eq!(state.classes.len(), 12);
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
    assert!(err.contains("other settings"), "{err}");

    let resumed = PretrainConfig {
        resume: true,
        ..tiny(&broken)
    };
    let state = pretrain::run(&resumed, &Silent).unwrap();
    assert_eq!(state.chunks_done, 3);
    assert!(broken.join(BACKBONE_FILE).exists());
    // The same data, learning rates and starting weights chunk by chunk. burn's autodiff sums
    // gradients in an order that varies from run to run (last bits only), so the resumed run
    // matches the unbroken one to rounding, not bit for bit.
    let lrs =
        |h: &[pretrain::ChunkStats]| h.iter().map(|c| (c.lr, c.particles)).collect::<Vec<_>>();
    assert_eq!(lrs(&state.history), lrs(&unbroken));
    assert_eq!(
        state.history[0].loss, unbroken[0].loss,
        "seeded start, same first chunk"
    );
    for (a, b) in state.history.iter().zip(&unbroken) {
        assert!((a.loss - b.loss).abs() < 1e-3, "{} vs {}", a.loss, b.loss);
    }
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
