//! Our preprocessing against NumPy/SciPy (float64) on a real micrograph. The reference files
//! under `tests/fixtures/` were made once by `tests/fixtures/make_reference.py`; this test needs
//! the micrograph from ../shared/data and skips with a reason when it is absent.

use std::path::PathBuf;

use cryoprune_formats::{read_micrograph, MrcFile};
use cryoprune_image::augment::rotate;
use cryoprune_image::extract::{ExtractConfig, Extractor, ParticleNorm};
use cryoprune_image::fourier::{self, Cutoff, LowPass};
use cryoprune_image::normalize::{self, MicrographNorm};
use cryoprune_image::Image;
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn micrograph() -> Option<(Image, f64)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/sources/mrcfile/epu2.9_example.mrc");
    if !path.exists() {
        eprintln!(
            "skipping: {} not found (shared test data is not beside this checkout)",
            path.display()
        );
        return None;
    }
    let m = read_micrograph(&path).unwrap();
    let px = m.pixel_size.unwrap() as f64;
    Some((Image::from(m), px))
}

fn reference() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("reference.json")).unwrap())
        .unwrap()
}

fn images(name: &str) -> Vec<Image> {
    let f = MrcFile::open(fixtures().join(name)).unwrap();
    let (nx, ny) = (f.header().nx, f.header().ny);
    (0..f.n_sections())
        .map(|i| Image::new(nx, ny, f.read_section(i).unwrap()))
        .collect()
}

/// Largest difference relative to the spread of the reference (its standard deviation).
fn rel_err(ours: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(ours.len(), reference.len());
    let scale = normalize::stats(reference).std.max(1e-12);
    ours.iter()
        .zip(reference)
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .fold(0.0, f64::max)
        / scale
}

fn crop(img: &Image, x0: usize, y0: usize, n: usize, step: usize) -> Vec<f32> {
    let mut out = Vec::new();
    for y in 0..n {
        for x in 0..n {
            out.push(img.get(x0 + x * step, y0 + y * step));
        }
    }
    out
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

#[test]
fn statistics_and_robust_normalisation_match_numpy() {
    let Some((mic, px)) = micrograph() else {
        return;
    };
    let r = reference();
    assert!(close(px, r["pixel_size"].as_f64().unwrap(), 1e-6));
    let s = normalize::stats(&mic.data);
    assert!(close(s.mean, r["mean"].as_f64().unwrap(), 1e-12), "{s:?}");
    assert!(close(s.std, r["std"].as_f64().unwrap(), 1e-9), "{s:?}");
    let p = normalize::percentiles(&mic.data, &[0.5, 99.5]);
    assert_eq!(p[0], r["percentiles"]["0.5"].as_f64().unwrap());
    assert_eq!(p[1], r["percentiles"]["99.5"].as_f64().unwrap());
    let mut robust = mic.clone();
    MicrographNorm::Robust {
        low: 0.5,
        high: 99.5,
    }
    .apply(&mut robust);
    for s in r["robust_samples"].as_array().unwrap() {
        let (x, y, want) = (
            s[0].as_u64().unwrap() as usize,
            s[1].as_u64().unwrap() as usize,
            s[2].as_f64().unwrap(),
        );
        assert!((robust.get(x, y) as f64 - want).abs() < 1e-5, "({x},{y})");
    }
}

#[test]
fn lowpass_in_angstrom_matches_numpy() {
    let Some((mic, px)) = micrograph() else {
        return;
    };
    let r = reference();
    let f = Cutoff::Angstrom(r["lowpass_angstrom"].as_f64().unwrap())
        .nyquist_fraction(Some(px))
        .unwrap();
    let filt = LowPass {
        cutoff: f,
        width: r["lowpass_width"].as_f64().unwrap(),
    };
    let out = fourier::lowpass(&mic, &filt);
    let ours = crop(&out, 1000, 3000, 64, 1);
    let e = rel_err(&ours, &images("lowpass_crop.mrc")[0].data);
    assert!(e < 1e-4, "crop: {e}");
    let e = rel_err(
        &crop(&out, 0, 0, 64, 64),
        &images("lowpass_grid.mrc")[0].data,
    );
    assert!(e < 1e-4, "grid: {e}");
}

#[test]
fn binning_by_integer_and_fractional_factors_matches_numpy() {
    let Some((mic, _)) = micrograph() else { return };
    for (factor, name) in [(32.0, "bin32.mrc"), (51.2, "bin51.2.mrc")] {
        let b = fourier::bin(&mic, factor).unwrap();
        let want = &images(name)[0];
        assert_eq!((b.image.nx, b.image.ny), (want.nx, want.ny));
        let e = rel_err(&b.image.data, &want.data);
        assert!(e < 1e-4, "bin {factor}: {e}");
    }
}

#[test]
fn extracted_particles_and_rotation_match_numpy_and_scipy() {
    let Some((mic, _)) = micrograph() else { return };
    let r = reference();
    let picks: Vec<(f64, f64)> = r["picks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
        .collect();
    let size = r["size"].as_u64().unwrap() as usize;
    let cfg = ExtractConfig {
        out_size: size,
        norm: ParticleNorm::Relion {
            radius: r["bg_radius"].as_f64().unwrap(),
            ramp: true,
        },
        ..ExtractConfig::new(r["box"].as_u64().unwrap() as usize)
    };
    let got = Extractor::new(cfg).unwrap().extract(&mic, &picks, 0);
    let want = images("particles.mrcs");
    assert_eq!(got.kept.len(), want.len());
    for (k, w) in want.iter().enumerate() {
        let e = rel_err(&got.data[k * size * size..(k + 1) * size * size], &w.data);
        assert!(e < 1e-5, "particle {k}: {e}");
    }
    let rotated = rotate(&want[0], r["rotation_degrees"].as_f64().unwrap(), 0.0);
    let e = rel_err(&rotated.data, &images("rotated.mrc")[0].data);
    assert!(e < 1e-5, "rotation: {e}");
}
