//! The community's own readers accept what cryoprune writes: `mrcfile.validate` for MRC,
//! `starfile.read` for STAR (same table as ours), `numpy.load` and cryosparc-tools'
//! `Dataset.load` for `.cs`, and the cryosparc-tools calls of `examples/cryosparc` exist. Needs
//! python3 with mrcfile, starfile, numpy and cryosparc-tools; `.ci/run` installs them. Elsewhere the test skips with a reason,
//! except under CI (CI=true), where a missing reader is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use cryoprune_formats::mrc::{write_mrc, Mode, WriteKind};
use cryoprune_formats::{Pick, PickFormat, PickSet, WriteOptions};
use serde_json::json;

mod common;
use common::{cs_entry, python_ready, run_python_check, star_entry};

fn synthetic_picks() -> PickSet {
    let mut set = PickSet::empty(PickFormat::Csv);
    let mut index = Default::default();
    for i in 0..25 {
        let mut p = Pick::new(10.0 + 37.5 * i as f64, 400.0 - 11.25 * i as f64);
        p.score = Some(i as f64 / 25.0);
        p.label = Some(if i % 3 == 0 { "junk" } else { "particle" }.into());
        set.push(if i < 12 { "mic_a" } else { "mic_b" }, p, &mut index);
    }
    set.add_column("p_particle", |_, p| {
        format!("{:.4}", 1.0 - p.score.unwrap())
    });
    set
}

/// Runs `cryoprune extract` on a small synthetic micrograph; returns the particle STAR.
fn extracted_stack(t: &Path) -> PathBuf {
    let img: Vec<f32> = (0..300 * 200).map(|i| ((i * 31) % 97) as f32).collect();
    let mic = t.join("mic_a.mrc");
    write_mrc(
        &mic,
        (300, 200, 1),
        &img,
        Mode::Float32,
        WriteKind::ImageOrStack,
        Some(1.1),
    )
    .unwrap();
    let picks = t.join("mic_a.csv");
    std::fs::write(
        &picks,
        "micrograph,x,y,score,label\nmic_a,50,60,0.9,particle\nmic_a,150.4,100.6,0.2,junk\nmic_a,250,140,0.5,particle\n",
    )
    .unwrap();
    let out = t.join("particles.mrcs");
    let o = Command::new(env!("CARGO_BIN_EXE_cryoprune"))
        .args(["extract", "--micrographs"])
        .arg(&mic)
        .arg("--picks")
        .arg(&picks)
        .args(["--box", "64", "--size", "40", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out.with_extension("star")
}

#[test]
fn community_readers_accept_our_files() {
    if !python_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let mut mrcs = Vec::new();
    let img: Vec<f32> = (0..64 * 48)
        .map(|i| ((i * 7919) % 1000) as f32 / 10.0 - 50.0)
        .collect();
    for (name, dims, mode, kind) in [
        (
            "image_f32.mrc",
            (64, 48, 1),
            Mode::Float32,
            WriteKind::ImageOrStack,
        ),
        (
            "image_f16.mrc",
            (64, 48, 1),
            Mode::Float16,
            WriteKind::ImageOrStack,
        ),
        (
            "image_i16.mrc",
            (64, 48, 1),
            Mode::Int16,
            WriteKind::ImageOrStack,
        ),
        (
            "image_u16.mrc",
            (64, 48, 1),
            Mode::Uint16,
            WriteKind::ImageOrStack,
        ),
        (
            "image_i8.mrc",
            (64, 48, 1),
            Mode::Int8,
            WriteKind::ImageOrStack,
        ),
        (
            "stack.mrcs",
            (16, 16, 12),
            Mode::Float32,
            WriteKind::ImageOrStack,
        ),
        ("volume.mrc", (16, 16, 12), Mode::Float32, WriteKind::Volume),
    ] {
        let n = dims.0 * dims.1 * dims.2;
        // mrcfile's validator sums float16 data in float16, which overflows past ~65504, so the
        // float16 case holds normalised values as particle stacks do.
        let data: Vec<f32> = img
            .iter()
            .cycle()
            .take(n)
            .map(|v| match mode {
                Mode::Uint16 => v + 50.0,
                Mode::Float16 => v / 50.0,
                _ => *v,
            })
            .collect();
        let p = t.join(name);
        write_mrc(&p, dims, &data, mode, kind, Some(1.34)).unwrap();
        mrcs.push(p);
    }

    let set = synthetic_picks();
    let shapes = [
        ("mic_a".to_string(), (1024, 1024)),
        ("mic_b".to_string(), (1024, 1024)),
    ]
    .into();
    let opts = WriteOptions {
        box_size: Some(64.0),
        micrograph_shapes: shapes,
    };
    let fresh_star = t.join("fresh.star");
    set.write(PickFormat::Star, &fresh_star, &opts).unwrap();
    let cbox = t.join("mic_a.cbox");
    let mut one = set.clone();
    one.retain(|m, _| m == "mic_a");
    one.micrographs.retain(|m| m.micrograph == "mic_a");
    one.write(PickFormat::Cbox, &cbox, &opts).unwrap();
    let fresh_cs = t.join("fresh.cs");
    set.write(PickFormat::Cs, &fresh_cs, &opts).unwrap();
    let mut stars = vec![star_entry(&fresh_star), star_entry(&cbox)];
    let mut css = vec![cs_entry(
        &fresh_cs,
        &[
            "location/center_x_frac",
            "location/micrograph_path",
            "cryoprune/label",
            "cryoprune/p_particle",
        ],
    )];

    // Files written in the input's own format: optics kept, new columns appended.
    if let Some(d) =
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/sources"))
            .filter(|p| p.is_dir())
    {
        for (i, f) in [
            "cryodrgn/relion31.star",
            "cryodrgn/relion5.star",
            "aspire/sample_particles_relion31.star",
            "micrograph_cleaner_em/inCoords/relion/Ucsf_stack_1142_DW_autopick.star",
        ]
        .iter()
        .enumerate()
        {
            let mut s = PickSet::read(&[d.join(f)], None).unwrap();
            s.add_column("cryopruneClass", |_, _| "particle".into());
            let out = t.join(format!("kept{i}.star"));
            s.write(PickFormat::Star, &out, &WriteOptions::default())
                .unwrap();
            stars.push(star_entry(&out));
        }
        let mut k4 =
            PickSet::read(&[d.join("cryosparc-tools/tests/data/4k_dataset.cs")], None).unwrap();
        k4.add_column("class", |_, _| "x".into());
        let out = t.join("k4.cs");
        k4.write(PickFormat::Cs, &out, &WriteOptions::default())
            .unwrap();
        css.push(cs_entry(&out, &[]));
    } else {
        eprintln!("note: shared data absent; checking only synthetic files");
    }
    let particles = extracted_stack(t);
    mrcs.push(particles.with_extension("mrcs"));
    stars.push(star_entry(&particles));
    let manifest = t.join("manifest.json");
    std::fs::write(
        &manifest,
        serde_json::to_string(&json!({
            "mrc": mrcs,
            "star": stars,
            "cs": css,
            "particles": [particles],
            "cryosparc_example": PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../examples/cryosparc/cryoprune_cryosparc.py"),
        }))
        .unwrap(),
    )
    .unwrap();
    run_python_check(&manifest);
}
