//! The simulator's statistics: pick counts follow the requested rates, the SNR is the one asked
//! for, and the picker's score alone does not separate particles from junk.

use std::collections::HashMap;

use cryoprune_sim::scene::simulate;
use cryoprune_sim::{Builtin, Label, Preset, SceneConfig, TruthPick};

fn run(cfg: &SceneConfig, count: u64, seed: u64) -> Vec<cryoprune_sim::Scene> {
    let vol = Builtin::Globular.volume(cfg.pixel);
    (0..count)
        .map(|i| simulate(cfg, &vol, seed * 1000 + i))
        .collect()
}

fn per_label(picks: &[TruthPick]) -> HashMap<Label, usize> {
    let mut m = HashMap::new();
    for p in picks {
        *m.entry(p.label).or_insert(0) += 1;
    }
    m
}

#[test]
fn pick_counts_follow_the_requested_rates() {
    let mut cfg = Preset::Realistic.config(768, 768, 2.5);
    cfg.carbon_probability = 1.0;
    cfg.ice_blobs = 2.0;
    cfg.aggregates = 3.0;
    cfg.particle_density = 0.15;
    cfg.picker.aggregate = 1.0;
    let n = 40;
    let scenes = run(&cfg, n, 1);
    let mut total: HashMap<Label, usize> = HashMap::new();
    let mut particles = 0;
    for s in &scenes {
        for (k, v) in per_label(&s.picks) {
            *total.entry(k).or_insert(0) += v;
        }
        particles += s.particles.len();
    }
    let mean = |l: Label| *total.get(&l).unwrap_or(&0) as f64 / n as f64;
    let close = |got: f64, want: f64, what: &str| {
        assert!(
            (got / want - 1.0).abs() < 0.25,
            "{what}: {got:.2} per micrograph, asked {want:.2}"
        );
    };
    close(
        mean(Label::Carbon),
        cfg.picker.carbon + cfg.picker.carbon_edge,
        "carbon",
    );
    close(mean(Label::Empty), cfg.picker.empty, "empty");
    close(
        mean(Label::Ice),
        cfg.ice_blobs * cfg.picker.ice_per_blob,
        "ice",
    );
    close(mean(Label::Aggregate), cfg.aggregates, "aggregates");
    let picked = *total.get(&Label::Particle).unwrap() as f64 / particles as f64;
    assert!(
        (picked - (1.0 - cfg.picker.miss_rate)).abs() < 0.03,
        "{picked} of the particles picked, miss rate {}",
        cfg.picker.miss_rate
    );
}

#[test]
fn measured_snr_is_the_requested_one() {
    // Only particles, so the clean image (infinite SNR, same draws otherwise) is the signal.
    let mut cfg = Preset::Realistic.config(512, 512, 2.5);
    cfg.carbon_probability = 0.0;
    cfg.ice_blobs = 0.0;
    cfg.aggregates = 0.0;
    cfg.ice_variation = 0.0;
    for snr in [0.05, 0.5] {
        cfg.snr = snr;
        let noisy = run(&cfg, 1, 7).remove(0);
        let clean = run(&SceneConfig { snr: 1e30, ..cfg }, 1, 7).remove(0);
        let vol = Builtin::Globular.volume(cfg.pixel);
        let r = vol.radius() * vol.voxel / cfg.pixel;
        let mut signal = Vec::new();
        for &(x, y) in &clean.particles {
            for yy in (y - r) as usize..=(y + r) as usize {
                for xx in (x - r) as usize..=(x + r) as usize {
                    if (xx as f64 - x).hypot(yy as f64 - y) <= r {
                        signal.push(clean.image.get(xx, yy));
                    }
                }
            }
        }
        let noise: Vec<f32> = noisy
            .image
            .data
            .iter()
            .zip(&clean.image.data)
            .map(|(a, b)| a - b)
            .collect();
        let sv = cryoprune_image::normalize::stats(&signal).std.powi(2);
        let nv = cryoprune_image::normalize::stats(&noise).std.powi(2);
        let measured = sv / nv;
        assert!(
            (measured / snr - 1.0).abs() < 0.2,
            "asked {snr}, measured {measured}"
        );
    }
}

/// Best macro-F1 (particle vs junk) over every threshold of the score.
fn best_threshold_f1(picks: &[TruthPick]) -> f64 {
    let mut sorted: Vec<(f64, bool)> = picks
        .iter()
        .map(|p| (p.score, p.label == Label::Particle))
        .collect();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let pos = sorted.iter().filter(|p| p.1).count() as f64;
    let neg = sorted.len() as f64 - pos;
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut best: f64 = 0.0;
    for (_, is_particle) in &sorted {
        if *is_particle {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        // Kept = predicted particle; the rest predicted junk.
        let f1_particle = 2.0 * tp / (tp + fp + pos);
        let tn = neg - fp;
        let f1_junk = 2.0 * tn / (2.0 * tn + fp + (pos - tp));
        best = best.max((f1_particle + f1_junk) / 2.0);
    }
    best
}

#[test]
fn the_score_alone_does_not_separate_particles_from_junk() {
    let cfg = Preset::Realistic.config(1024, 1024, 2.5);
    let scenes = run(&cfg, 8, 3);
    let picks: Vec<TruthPick> = scenes.iter().flat_map(|s| s.picks.clone()).collect();
    let junk =
        picks.iter().filter(|p| p.label != Label::Particle).count() as f64 / picks.len() as f64;
    assert!(junk > 0.1 && junk < 0.35, "junk fraction {junk}");
    let f1 = best_threshold_f1(&picks);
    println!(
        "realistic preset: {} picks, {:.1}% junk, best score-threshold macro-F1 {f1:.3}",
        picks.len(),
        100.0 * junk
    );
    assert!(f1 <= 0.85 && f1 > 0.5, "{f1}");
}

/// Mean squared difference of horizontally and of vertically neighbouring pixels.
fn roughness(img: &cryoprune_image::Image) -> f64 {
    let mut sum = 0.0;
    for y in 1..img.ny {
        for x in 1..img.nx {
            let v = img.get(x, y) as f64;
            sum += (v - img.get(x - 1, y) as f64).powi(2) + (v - img.get(x, y - 1) as f64).powi(2);
        }
    }
    sum / ((img.nx - 1) * (img.ny - 1)) as f64
}

#[test]
fn each_flaw_is_tagged_and_changes_only_its_own_part() {
    let mut cfg = Preset::Realistic.config(384, 384, 1.0);
    cfg.carbon_probability = 0.0;
    cfg.ice_blobs = 0.0;
    let plain = run(&cfg, 1, 3).remove(0);
    assert_eq!(plain.tags.names(), ["aggregate"]);
    let with = |set: fn(&mut cryoprune_sim::Defects), snr: f64| {
        let mut c = SceneConfig { snr, ..cfg };
        set(&mut c.defects);
        run(&c, 1, 3).remove(0)
    };

    // Empty: no particle and no particle pick; the noise is what a particle would have set.
    let empty = with(|d| d.empty = 1.0, cfg.snr);
    assert!(empty.tags.empty && empty.particles.is_empty());
    assert!(empty.picks.iter().all(|p| p.label != Label::Particle));
    assert!(
        (empty.noise_std / plain.noise_std - 1.0).abs() < 0.5,
        "{} vs {}",
        empty.noise_std,
        plain.noise_std
    );

    // Thick ice: the same particles, a third of their signal, half again the noise.
    let thick = with(|d| d.thick_ice = 1.0, cfg.snr);
    assert!(thick.tags.thick_ice && thick.particles == plain.particles);
    assert!((thick.noise_std / plain.noise_std - 1.5).abs() < 1e-9);

    // Crystalline ice adds the lattice alone: the same noise is drawn, so the difference is
    // three plane waves of amplitude 0.6 σ / 3 each (standard deviation 0.6 σ / √6).
    let crystal = with(|d| d.crystalline_ice = 1.0, cfg.snr);
    assert_eq!(crystal.tags.names(), ["aggregate", "crystalline-ice"]);
    let diff: Vec<f32> = crystal
        .image
        .data
        .iter()
        .zip(&plain.image.data)
        .map(|(a, b)| a - b)
        .collect();
    let sd = cryoprune_image::normalize::stats(&diff).std;
    let want = 0.6 * plain.noise_std / 6f64.sqrt();
    assert!(
        (sd / want - 1.0).abs() < 0.1,
        "lattice sd {sd}, expected {want}"
    );

    // Drift smears the image: without noise, neighbouring pixels differ far less.
    let (still, drifted) = (with(|_| {}, 1e30), with(|d| d.drift = 1.0, 1e30));
    assert!(drifted.tags.drift && drifted.particles == still.particles);
    let (r0, r1) = (roughness(&still.image), roughness(&drifted.image));
    assert!(r1 < 0.7 * r0, "roughness {r1} drifted, {r0} still");
}

#[test]
fn the_ice_s_own_scattering_shows_drift_and_thick_ice_without_particles() {
    use cryoprune_image::exposure::measure;
    let mut cfg = Preset::Realistic.config(1024, 1024, 2.5);
    cfg.carbon_probability = 0.0;
    cfg.ice_blobs = 0.0;
    cfg.aggregates = 0.0;
    cfg.defects.empty = 1.0;
    let facts = |share: f64, set: fn(&mut cryoprune_sim::Defects)| {
        let mut c = SceneConfig {
            ice_structure: share,
            ..cfg
        };
        set(&mut c.defects);
        measure(&run(&c, 1, 4).remove(0).image)
    };
    // White noise alone: an empty micrograph holds nothing for drift to smear.
    let (still, drifted) = (facts(0.0, |_| {}), facts(0.0, |d| d.drift = 1.0));
    for (a, b) in still.iter().zip(&drifted) {
        assert!((a - b).abs() < 1e-3, "{still:?} still, {drifted:?} drifted");
    }
    // The ice's rings fade across the drift, and fade sooner in thick ice.
    let (still, drifted) = (facts(0.1, |_| {}), facts(0.1, |d| d.drift = 1.0));
    assert!(
        drifted[1] > 2.0 * still[1],
        "anisotropy {} drifted, {} still",
        drifted[1],
        still[1]
    );
    let thick = facts(0.1, |d| d.thick_ice = 1.0);
    assert!(
        thick[0] > still[0] + 0.05,
        "particle band {} thick, {} thin",
        thick[0],
        still[0]
    );
}

/// The measured statistic curation relies on to find aggregates answers to the simulator's
/// aggregates on micrographs otherwise alike (no contamination, the realistic SNR), and not
/// to carbon's edges.
#[test]
fn aggregates_raise_the_clump_statistic_and_carbon_does_not() {
    let mut cfg = Preset::Easy.config(1024, 1024, 2.5);
    cfg.snr = 0.05;
    cfg.ice_blobs = 0.0;
    let clumps = |aggregates: f64, carbon_probability: f64, seed: u64| -> Vec<f64> {
        let cfg = SceneConfig {
            aggregates,
            carbon_probability,
            ..cfg
        };
        run(&cfg, 10, seed)
            .iter()
            .filter(|s| {
                s.tags.aggregate == (aggregates > 0.0)
                    && s.tags.carbon == (carbon_probability > 0.0)
            })
            .map(|s| cryoprune_image::exposure::measure(&s.image)[11])
            .collect()
    };
    let (with, without, carbon) = (
        clumps(2.0, 0.0, 7),
        clumps(0.0, 0.0, 8),
        clumps(0.0, 1.0, 9),
    );
    // The share of pairs in which the first set's value is the higher: the AUC.
    let above = |a: &[f64], b: &[f64]| {
        a.iter()
            .map(|w| b.iter().filter(|o| w > *o).count())
            .sum::<usize>() as f64
            / (a.len() * b.len()) as f64
    };
    assert!(
        above(&with, &without) > 0.8 && above(&with, &carbon) > 0.8,
        "{with:?} with aggregates, {without:?} without, {carbon:?} with carbon"
    );
}
