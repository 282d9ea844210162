//! Particle extraction throughput and memory: `cryoprune extract` against a straightforward
//! NumPy + mrcfile script (`benches/extract_numpy.py`), side by side on the same files.
//!
//! `cargo bench -p cryoprune --bench extract` writes `target/bench/extract.json`. The data are
//! 4096 x 4096 float32 micrographs of noise with 800 picks each, box 180 -> 64 px. Throughput is
//! measured on 10 micrographs (median of 3 runs); peak RSS on 10 and on 100 (the 100 are hard links to the 10 files,
//! so the disk holds only 10). Each run is a separate process timed from outside; peak RSS is the
//! kernel's `ru_maxrss` for that process. Needs python3 with numpy and mrcfile.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use cryoprune_formats::mrc::{write_mrc, Mode, WriteKind};

const N: usize = 4096;
const PICKS: usize = 800;
const BOX: usize = 180;
const SIZE: usize = 64;
const DISTINCT: usize = 10;
/// Throughput runs per side; the median is reported (the machine is shared and noisy).
const REPEATS: usize = 3;

struct Run {
    seconds: f64,
    /// User + system CPU time: steadier than wall time on a shared machine.
    cpu_seconds: f64,
    peak_rss_mib: f64,
    particles: usize,
}

/// Runs a command to completion and returns its wall time, CPU time and peak resident memory.
// The child is reaped by `wait4` (which std's `wait` cannot replace: it drops the rusage).
#[allow(clippy::zombie_processes)]
fn measure(cmd: &mut Command) -> (f64, f64, f64) {
    let start = Instant::now();
    let child = cmd.spawn().expect("start benchmark command");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in; the pid is our own child, reaped once here.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(r, pid, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "benchmark command failed: {cmd:?}"
    );
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    let cpu = secs(usage.ru_utime) + secs(usage.ru_stime);
    // Linux reports ru_maxrss in KiB.
    (seconds, cpu, usage.ru_maxrss as f64 / 1024.0)
}

fn make_data(dir: &Path) -> Vec<PathBuf> {
    fs::create_dir_all(dir).unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut picks = String::from("micrograph,x,y\n");
    let mut files = Vec::new();
    for i in 0..DISTINCT {
        let path = dir.join(format!("mic_{i:03}.mrc"));
        if !path.exists() {
            let img: Vec<f32> = (0..N * N)
                .map(|_| (next() >> 40) as f32 / (1u64 << 24) as f32)
                .collect();
            write_mrc(
                &path,
                (N, N, 1),
                &img,
                Mode::Float32,
                WriteKind::ImageOrStack,
                Some(1.0),
            )
            .unwrap();
        }
        files.push(path);
    }
    let mut all = Vec::new();
    for i in 0..100 {
        let path = dir.join(format!("many/mic_{i:03}.mrc"));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        if !path.exists() {
            fs::hard_link(&files[i % DISTINCT], &path).unwrap();
        }
        all.push(path);
    }
    // Picks well inside the micrograph so both sides keep every one.
    let span = (N - BOX - 2) as u64;
    for i in 0..100 {
        for _ in 0..PICKS {
            let x = (BOX / 2 + 1) as u64 + next() % span;
            let y = (BOX / 2 + 1) as u64 + next() % span;
            picks.push_str(&format!("mic_{i:03},{x},{y}\n"));
        }
    }
    fs::write(dir.join("picks.csv"), picks).unwrap();
    all
}

fn picks_for(dir: &Path, mics: &[PathBuf]) -> PathBuf {
    dir.join(if mics.len() == 10 {
        "picks10.csv"
    } else {
        "picks.csv"
    })
}

fn ours(dir: &Path, mics: &[PathBuf], threads: usize) -> Run {
    let out = dir.join("ours.mrcs");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cryoprune"));
    cmd.arg("extract").arg("--micrographs").args(mics);
    cmd.arg("--picks").arg(picks_for(dir, mics));
    cmd.args(["--box", &BOX.to_string(), "--size", &SIZE.to_string()]);
    cmd.args(["--threads", &threads.to_string(), "--out"])
        .arg(&out);
    run(&mut cmd, &out)
}

/// Runs one side and counts the particles in the stack it wrote.
fn run(cmd: &mut Command, out: &Path) -> Run {
    let (seconds, cpu_seconds, peak_rss_mib) = measure(cmd);
    let particles = cryoprune_formats::MrcFile::open(out).unwrap().n_sections();
    Run {
        seconds,
        cpu_seconds,
        peak_rss_mib,
        particles,
    }
}

fn numpy(dir: &Path, mics: &[PathBuf]) -> Run {
    let out = dir.join("numpy.mrcs");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/extract_numpy.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(picks_for(dir, mics));
    cmd.args([BOX.to_string(), SIZE.to_string()])
        .arg(&out)
        .args(mics);
    cmd.env("OMP_NUM_THREADS", "1")
        .stdout(std::process::Stdio::null());
    run(&mut cmd, &out)
}

fn rate(r: &Run) -> f64 {
    r.particles as f64 / r.seconds
}

fn median_of(mut f: impl FnMut() -> Run) -> Run {
    let mut runs: Vec<Run> = (0..REPEATS).map(|_| f()).collect();
    runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    runs.swap_remove(REPEATS / 2)
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    let dir = root.join("extract");
    let all = make_data(&dir);
    let ten = &all[..10];
    // Only the picks of the micrographs given, so neither side reads or reports the other 90.
    let picks = fs::read_to_string(dir.join("picks.csv")).unwrap();
    let head: String = picks
        .lines()
        .take(1 + 10 * PICKS)
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(dir.join("picks10.csv"), head).unwrap();
    // Warm the page cache so both sides read from memory.
    ours(&dir, ten, 2);

    let ours2 = median_of(|| ours(&dir, ten, 2));
    let ours1 = median_of(|| ours(&dir, ten, 1));
    let py = median_of(|| numpy(&dir, ten));
    assert_eq!(ours2.particles, py.particles);
    let ours_many = ours(&dir, &all, 2);
    let py_many = numpy(&dir, &all);

    let report = serde_json::json!({
        "micrograph": format!("{N}x{N} float32"),
        "picks_per_micrograph": PICKS,
        "box": BOX,
        "size": SIZE,
        "throughput_10_micrographs": {
            "cryoprune_2_threads": { "seconds": ours2.seconds, "cpu_seconds": ours2.cpu_seconds, "particles_per_s": rate(&ours2) },
            "cryoprune_1_thread": { "seconds": ours1.seconds, "cpu_seconds": ours1.cpu_seconds, "particles_per_s": rate(&ours1) },
            "numpy_mrcfile": { "seconds": py.seconds, "cpu_seconds": py.cpu_seconds, "particles_per_s": rate(&py) },
            "cpu_time_ratio_1_thread": py.cpu_seconds / ours1.cpu_seconds,
            "ratio_2_threads": rate(&ours2) / rate(&py),
            "ratio_1_thread": rate(&ours1) / rate(&py),
        },
        "peak_rss_mib": {
            "cryoprune_10": ours2.peak_rss_mib,
            "cryoprune_100": ours_many.peak_rss_mib,
            "numpy_10": py.peak_rss_mib,
            "numpy_100": py_many.peak_rss_mib,
        },
        "seconds_100_micrographs": { "cryoprune": ours_many.seconds, "numpy_mrcfile": py_many.seconds },
    });
    let text = serde_json::to_string_pretty(&report).unwrap();
    fs::write(root.join("extract.json"), &text).unwrap();
    println!("{text}");
}
