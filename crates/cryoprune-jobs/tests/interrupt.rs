//! Ctrl-C during extract: the job stops at the next micrograph and leaves no half-written file.
//! Its own test binary, because the interrupt is process-wide.

use cryoprune_formats::mrc::{write_mrc, Mode, WriteKind};
use cryoprune_jobs::extract::{self, ExtractJobConfig};
use cryoprune_jobs::{Error, Silent};

#[test]
fn an_interrupted_extract_removes_its_partial_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let mics = dir.path().join("mics");
    std::fs::create_dir_all(&mics).unwrap();
    let mut csv = String::from("micrograph,x,y\n");
    for i in 0..3 {
        let img: Vec<f32> = (0..128 * 128).map(|p| ((p * 31 + i) % 17) as f32).collect();
        let path = mics.join(format!("m{i}.mrc"));
        write_mrc(
            &path,
            (128, 128, 1),
            &img,
            Mode::Float32,
            WriteKind::ImageOrStack,
            Some(1.0),
        )
        .unwrap();
        csv.push_str(&format!("m{i},64,64\nm{i},40,80\n"));
    }
    let picks = dir.path().join("picks.csv");
    std::fs::write(&picks, csv).unwrap();
    let out = dir.path().join("out");
    let cfg = ExtractJobConfig {
        micrographs: vec![mics.join("*.mrc").to_string_lossy().into_owned()],
        picks: vec![picks],
        box_size: 32,
        out: out.join("particles.mrcs"),
        ..ExtractJobConfig::default()
    };
    // No job listens yet, so the caller is told to end the process itself.
    assert!(!cryoprune_jobs::interrupt());
    let err = extract::run(&cfg, &Silent).unwrap_err();
    assert!(matches!(err, Error::Interrupted), "{err}");
    let left: Vec<_> = std::fs::read_dir(&out)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}
