//! The labelling page on large data: how long a 4096² micrograph takes to show (its overview
//! tiles, made on the first view, read back from disk after), and whether the server's memory
//! stays flat while a user pages through 1,000 micrographs (every micrograph's overview tiles
//! and the particle images of its gallery); and how long the clusters view and the first order
//! take to cut, embed and group 4,000 picks spread over those micrographs.
//!
//! `cargo bench -p cryoprune --bench label_tiles` writes `target/bench/label_tiles.json`.

use std::path::Path;
use std::time::Instant;

use cryoprune_formats::PickFormat;
use cryoprune_jobs::label::{LabelConfig, Session, TileRequest, CLUSTER_PICKS, TILE};
use cryoprune_jobs::recipe::PrepConfig;
use cryoprune_jobs::simulate::{self, SimulateConfig};
use cryoprune_jobs::Silent;

const MICROGRAPHS: usize = 1000;

/// Resident memory of this process, in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .unwrap();
    kb / 1024.0
}

fn simulate(out: &Path, count: usize, size: usize) {
    let cfg = SimulateConfig {
        out: out.to_path_buf(),
        count,
        size,
        format: PickFormat::Csv,
        no_previews: true,
        seed: 3,
        ..SimulateConfig::default()
    };
    simulate::run(&cfg, &Silent).unwrap();
}

fn session(sim: &Path, out: &Path, micrographs: &str) -> Session {
    Session::open(
        &LabelConfig {
            micrographs: vec![sim.join(micrographs).to_string_lossy().into_owned()],
            picks: vec![sim.join("picks.csv")],
            prep: PrepConfig {
                box_size: Some(180),
                ..PrepConfig::default()
            },
            out: out.to_path_buf(),
            train_after: 0,
            ..LabelConfig::default()
        },
        &Silent,
    )
    .unwrap()
}

/// Every tile of level 0 (the overview) of micrograph `m`; seconds taken.
fn overview(s: &Session, m: usize) -> f64 {
    let t = Instant::now();
    let view = s.micrograph_picks(m).unwrap();
    let level = &view.levels[0];
    for y in 0..level.ny.div_ceil(TILE) {
        for x in 0..level.nx.div_ceil(TILE) {
            s.tile(TileRequest {
                micrograph: m,
                level: 0,
                x,
                y,
                lowpass: None,
            })
            .unwrap();
        }
    }
    t.elapsed().as_secs_f64()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    // One 4096² micrograph, as a K2/K3 or Falcon camera writes (float32, 64 MiB).
    let big = dir.path().join("big");
    simulate(&big, 1, 4096);
    let s = session(&big, &dir.path().join("big.csv"), "micrographs/*.mrc");
    let first = overview(&s, 0);
    let again = overview(&s, 0);
    let view = s.micrograph_picks(0).unwrap();
    let zoomed = Instant::now();
    let finest = view.levels.len() - 1;
    s.tile(TileRequest {
        micrograph: 0,
        level: finest,
        x: 0,
        y: 0,
        lowpass: Some(20.0),
    })
    .unwrap();
    let zoom_first = zoomed.elapsed().as_secs_f64();
    println!(
        "4096²: overview {first:.2} s on the first view, {again:.3} s after; full resolution \
         with a 20 Å low-pass {zoom_first:.2} s on the first view"
    );

    // 1,000 micrographs: the same small scenes repeated under new names (the simulation of
    // a thousand takes long and proves nothing more).
    let many = dir.path().join("many");
    simulate(&many, 20, 1024);
    let picks = std::fs::read_to_string(many.join("picks.csv")).unwrap();
    let mut lines = picks.lines();
    let mut all = String::from(lines.next().unwrap());
    all.push('\n');
    let body: Vec<&str> = lines.collect();
    let names: Vec<String> = std::fs::read_dir(many.join("micrographs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let copies = dir.path().join("copies");
    std::fs::create_dir_all(copies.join("micrographs")).unwrap();
    for k in 0..MICROGRAPHS {
        let name = &names[k % names.len()];
        let new = format!("{name}_{k:04}");
        std::fs::hard_link(
            many.join(format!("micrographs/{name}.mrc")),
            copies.join(format!("micrographs/{new}.mrc")),
        )
        .unwrap();
        for line in body.iter().filter(|l| l.starts_with(&format!("{name},"))) {
            all.push_str(&line.replacen(name.as_str(), &new, 1));
            all.push('\n');
        }
    }
    std::fs::write(copies.join("picks.csv"), all).unwrap();
    let before_open = rss_mib();
    let s = session(&copies, &dir.path().join("many.csv"), "micrographs/*.mrc");
    let opened = rss_mib();
    let state = s.state();
    let mut rss = Vec::new();
    let t = Instant::now();
    for m in 0..MICROGRAPHS {
        overview(&s, m);
        for p in s.micrograph_picks(m).unwrap().picks.iter().take(12) {
            s.particle_png(p.id).unwrap();
        }
        if (m + 1) % 100 == 0 {
            rss.push(rss_mib());
        }
    }
    let seconds = t.elapsed().as_secs_f64();
    println!(
        "{MICROGRAPHS} micrographs of 1024² ({} picks): resident memory {before_open:.0} MiB \
         before the session, {opened:.0} MiB open, then every 100 micrographs viewed: {}",
        state.picks,
        rss.iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // The clusters view and the first order on the same session: 4,000 picks spread over the
    // 1,000 micrographs (4 from each), cut, seen by the cryo-EM backbone and grouped.
    let t = Instant::now();
    let groups = s.cluster(20).unwrap().groups.len();
    let clusters = t.elapsed().as_secs_f64();
    let t = Instant::now();
    s.rank_typical().unwrap();
    let typical = t.elapsed().as_secs_f64();
    println!(
        "{groups} clusters of {CLUSTER_PICKS} picks: {clusters:.1} s; the typical first order: \
         {typical:.1} s"
    );
    let out = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    std::fs::create_dir_all(&out).unwrap();
    let json = serde_json::json!({
        "big_overview_first_s": first,
        "big_overview_cached_s": again,
        "big_full_resolution_lowpass_first_s": zoom_first,
        "many_micrographs": MICROGRAPHS,
        "many_picks": state.picks,
        "many_rss_before_mib": before_open,
        "many_rss_open_mib": opened,
        "many_rss_every_100_mib": rss,
        "many_seconds": seconds,
        "clusters_20_s": clusters,
        "rank_typical_s": typical,
    });
    std::fs::write(
        out.join("label_tiles.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
}
