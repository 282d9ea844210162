//! Projections of a real map (RELION's test reference, ../shared/data) against direct sums of
//! its voxels: along z for the identity, along y for a quarter turn about x.

use std::path::PathBuf;

use cryoprune_formats::MrcFile;
use cryoprune_sim::project::{project_within, IDENTITY};
use cryoprune_sim::Volume;

#[test]
fn projections_of_a_real_map_match_direct_sums() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/sources/relion/tests/ref_model.mrc");
    if !path.exists() {
        eprintln!(
            "skipping: {} not found (shared test data is not beside this checkout)",
            path.display()
        );
        return;
    }
    let vol = Volume::from_mrc(&path).unwrap();
    let raw = MrcFile::open(&path).unwrap().read_all();
    let n = vol.n;
    assert_eq!(n, 100);
    assert!((vol.voxel - 3.54).abs() < 1e-4);
    let at = |x: usize, y: usize, z: usize| raw[(z * n + y) * n + x] as f64;
    let reach = (n / 2) as f64 - 3.0;
    let peak = raw.iter().cloned().fold(0.0f32, f32::max) as f64;

    let p = project_within(&vol, &IDENTITY, reach);
    // A quarter turn about x: lab (u, v, w) samples the map at Rᵀ(u, v, w) = (u, w, -v).
    let quarter = [[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]];
    let q = project_within(&vol, &quarter, reach);
    let c = n / 2;
    let mut worst = 0.0f64;
    for v in (c - 30)..(c + 30) {
        for u in (c - 30)..(c + 30) {
            let along_z: f64 = (0..n).map(|z| at(u, v, z)).sum();
            worst = worst.max((p.get(u, v) as f64 - along_z).abs());
            // Row v of the projection sums the map's slice z = n - v (y runs along the ray).
            let along_y: f64 = (0..n).map(|y| at(u, y, 2 * c - v)).sum();
            worst = worst.max((q.get(u, v) as f64 - along_y).abs());
        }
    }
    assert!(worst < 1e-4 * peak * n as f64, "{worst} vs peak {peak}");
}
