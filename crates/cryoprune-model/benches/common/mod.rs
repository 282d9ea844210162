//! What the network benchmarks share: picking cases from the command line, running the PyTorch
//! side of a benchmark, and writing the report.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use cryoprune_model::{Arch, Backbone, Classifier, ClassifierConfig, HeadConfig};
use serde_json::{json, Value};

const WARMUP: usize = 2;
const TIMED: usize = 9;

/// glibc's malloc thresholds both sides run with: blocks up to 32 MiB from the heap, and up to
/// 256 MiB of freed heap kept. By default glibc hands freed blocks of a few MiB (feature maps)
/// back to the kernel and faults them in again on the next step; a fresh benchmark process
/// paid that on every step (a third of the small network's, on either side), where `train`
/// does not: its earlier large allocations have raised the thresholds already (measured: its
/// steps run no faster on an allocator that never gives memory back).
const MMAP_THRESHOLD: i32 = 32 << 20;
const TRIM_THRESHOLD: i32 = 256 << 20;

/// Puts this process's allocator in the steady state `train` runs in (see [`MMAP_THRESHOLD`]).
pub fn steady_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets the allocator's tuning parameters; called before any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

/// Classes of every benchmarked network; the PyTorch side builds the same.
pub const CLASSES: usize = 2;

/// `arch` on `channels`-channel input with a one-branch head, fresh random weights (speed does
/// not depend on the values).
pub fn network(arch: Arch, channels: usize, device: &Device) -> Classifier {
    let config = ClassifierConfig {
        in_channels: channels,
        arch,
        classes: CLASSES,
        head: HeadConfig::new(1),
    };
    config.init_with(Backbone::new(arch, channels, device), device)
}

/// A batch of normal noise, as a tensor and as its pixels.
pub fn noise(batch: usize, channels: usize, size: usize, device: &Device) -> (Tensor<4>, Vec<f32>) {
    let x = Tensor::<4>::random(
        [batch, channels, size, size],
        Distribution::Normal(0.0, 1.0),
        device,
    );
    let pixels = x.clone().into_data().try_into_vec().expect("f32 input");
    (x, pixels)
}

/// Median seconds of `run` over the timed repeats after warm-up.
pub fn seconds(mut run: impl FnMut()) -> f64 {
    let mut times = Vec::new();
    for i in 0..WARMUP + TIMED {
        let start = Instant::now();
        run();
        if i >= WARMUP {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// The cases whose network is named after `--` (`cargo bench ... -- small`; cargo adds
/// `--bench` itself), or all of them, with their JSON form for the PyTorch side.
pub fn selected<const N: usize>(
    cases: [(Arch, usize, usize, usize); N],
) -> (Vec<(Arch, usize, usize, usize)>, Value) {
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let selected: Vec<_> = cases
        .into_iter()
        .filter(|(arch, ..)| only.is_empty() || only.iter().any(|o| o == arch.name()))
        .collect();
    let json = selected
        .iter()
        .map(|&(arch, c, s, b)| json!({"arch": arch.name(), "channels": c, "size": s, "batch": b}))
        .collect();
    (selected, Value::Array(json))
}

/// Runs `benches/<script>` with the Python named by `CRYOPRUNE_TORCH_PYTHON` on `cases`; its
/// JSON answer, or {"error"} saying why there is none.
pub fn torch(script: &str, cases: &Value) -> Value {
    let Ok(python) = std::env::var("CRYOPRUNE_TORCH_PYTHON") else {
        return json!({"error": "CRYOPRUNE_TORCH_PYTHON not set"});
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches")
        .join(script);
    let out = Command::new(&python)
        .env("MALLOC_MMAP_THRESHOLD_", MMAP_THRESHOLD.to_string())
        .env("MALLOC_TRIM_THRESHOLD_", TRIM_THRESHOLD.to_string())
        .arg(script)
        .arg(cases.to_string())
        .arg(WARMUP.to_string())
        .arg(TIMED.to_string())
        .output()
        .expect("start the PyTorch side");
    if !out.status.success() {
        return json!({"error": String::from_utf8_lossy(&out.stderr).trim().to_string()});
    }
    serde_json::from_slice(&out.stdout).expect("the PyTorch side prints JSON")
}

/// Says why the PyTorch side was not measured, if it was not, and writes `report` to
/// `target/bench/<file>`.
pub fn finish(peer: &Value, report: Value, file: &str) {
    if let Some(e) = peer.get("error") {
        println!("PyTorch side not measured: {e}");
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    std::fs::create_dir_all(&dir).expect("create target/bench");
    let path = dir.join(file);
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).expect("write report");
    println!("wrote {}", path.display());
}
