//! Reading a 4096 x 4096 float32 MRC against reading its raw bytes, in one run.
//!
//! `cargo bench -p cryoprune-formats --bench mrc_read` writes `target/bench/mrc_read.json`.
//! Both sides read the same file from the page cache (warm), and, where the process may drop the
//! cache (root on Linux), from disk (cold); the ratio is what BENCHMARKS.md reports.

use std::path::Path;
use std::time::Instant;

use cryoprune_formats::mrc::{write_mrc, Mode, WriteKind};
use cryoprune_formats::MrcFile;

const N: usize = 4096;
const REPEATS: usize = 15;

fn drop_caches() -> bool {
    // Needs root; without it the cold figures are skipped rather than faked.
    std::process::Command::new("sync").status().is_ok()
        && std::fs::write("/proc/sys/vm/drop_caches", "1").is_ok()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn time<F: FnMut() -> f64>(cold: bool, mut f: F) -> Option<f64> {
    let mut times = Vec::new();
    for _ in 0..REPEATS {
        if cold && !drop_caches() {
            return None;
        }
        let t = Instant::now();
        let checksum = f();
        times.push(t.elapsed().as_secs_f64());
        assert!(checksum.is_finite());
    }
    Some(median(times))
}

fn raw(path: &Path) -> f64 {
    let bytes = std::fs::read(path).unwrap();
    bytes[bytes.len() / 2] as f64
}

fn ours(path: &Path) -> f64 {
    let m = MrcFile::open(path).unwrap();
    let data = m.read_section(0).unwrap();
    data[data.len() / 2] as f64
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bench_4096_f32.mrc");
    let data: Vec<f32> = (0..N * N).map(|i| (i % 9973) as f32 * 0.01).collect();
    write_mrc(
        &path,
        (N, N, 1),
        &data,
        Mode::Float32,
        WriteKind::ImageOrStack,
        Some(1.0),
    )
    .unwrap();
    drop(data);
    let mut report = Vec::new();
    for cold in [false, true] {
        let label = if cold { "cold" } else { "warm" };
        let (Some(r), Some(o)) = (time(cold, || raw(&path)), time(cold, || ours(&path))) else {
            println!("{label}: skipped (cannot drop the page cache without root)");
            continue;
        };
        println!(
            "{label}: raw read {:.1} ms, MRC read to f32 {:.1} ms, ratio {:.2}",
            r * 1e3,
            o * 1e3,
            o / r
        );
        report.push(format!(
            "\"{label}\": {{\"raw_read_ms\": {:.2}, \"mrc_read_ms\": {:.2}, \"ratio\": {:.3}}}",
            r * 1e3,
            o * 1e3,
            o / r
        ));
    }
    let out = dir.join("mrc_read.json");
    std::fs::write(
        &out,
        format!(
            "{{\"file\": \"4096x4096 float32 MRC (64 MiB)\", \"repeats\": {REPEATS}, {}}}\n",
            report.join(", ")
        ),
    )
    .unwrap();
    std::fs::remove_file(&path).ok();
    println!("wrote {}", out.display());
}
