//! Forward throughput of our networks against PyTorch on the same networks and input sizes, in
//! one run (`benches/forward_torch.py` is the PyTorch side). "cryoprune" is the CPU inference
//! path every command uses ([`FusedNet`]); "burn layers" is the same model run through burn's
//! flex layers, kept for comparison.
//!
//! `cargo bench -p cryoprune-model --bench forward` writes `target/bench/forward.json`. Set
//! `CRYOPRUNE_TORCH_PYTHON` to a Python that has torch and torchvision (BENCHMARKS.md shows how to
//! make one); without it the PyTorch side is reported as not measured. Both sides run in eval mode
//! on fresh random weights (speed does not depend on the values), use every core, warm up, and
//! report the median of several timed batches. Arguments after `--` pick networks by name.

mod common;

use burn::tensor::Device;
use cryoprune_model::{Arch, FusedNet, Readout};
use serde_json::json;

use common::{finish, network, noise, seconds, selected, steady_allocator, torch, CLASSES};

/// (network, input channels, input size, batch). The first is what PickerOptimizer runs
/// (ResNet-18 on a 224 px RGB copy of each particle); the last is cryoprune's default.
const CASES: [(Arch, usize, usize, usize); 4] = [
    (Arch::ResNet18, 3, 224, 32),
    (Arch::EfficientNetLite0, 3, 224, 32),
    (Arch::ResNet18, 1, 64, 128),
    (Arch::Small, 1, 64, 128),
];
/// Images per second of cryoprune's CPU inference ([`FusedNet`]) and of the same model run
/// through burn's layers on the flex backend.
fn ours(arch: Arch, channels: usize, size: usize, batch: usize) -> (f64, f64) {
    let device = Device::flex();
    let model = network(arch, channels, &device);
    let (x, pixels) = noise(batch, channels, size, &device);
    let images: Vec<&[f32]> = pixels.chunks_exact(channels * size * size).collect();
    let fused = FusedNet::new(&model);
    let fused_rate = rate(batch, || {
        fused.probabilities(&images, channels, size, Readout::single_label(false))
    });
    let burn_rate = rate(batch, || {
        // Reading the result back forces the whole computation to finish.
        let p = model.probabilities(x.clone(), Readout::single_label(false));
        p.into_data().try_to_vec::<f32>().expect("f32 output")
    });
    (fused_rate, burn_rate)
}

/// Images per second of `run` on a batch, the median of the timed repeats after warm-up.
fn rate(batch: usize, mut run: impl FnMut() -> Vec<f32>) -> f64 {
    batch as f64 / seconds(|| assert_eq!(run().len(), batch * CLASSES))
}

fn main() {
    steady_allocator();
    let threads = rayon::current_num_threads();
    let (selected, cases) = selected(CASES);
    let peer = torch("forward_torch.py", &cases);
    let mut rows = Vec::new();
    for (i, &(arch, c, s, b)) in selected.iter().enumerate() {
        let (ours, layers) = ours(arch, c, s, b);
        let theirs = peer["results"][i]["images_per_s"].as_f64();
        let ratio = theirs.map(|t| ours / t);
        println!(
            "{:<20} {c}x{s}x{s} batch {b:>3}: cryoprune {ours:7.1} img/s (burn layers {layers:7.1}), PyTorch {}, ratio {}",
            arch.name(),
            theirs.map_or("not measured".into(), |t| format!("{t:7.1} img/s")),
            ratio.map_or("-".into(), |r| format!("{r:.2}")),
        );
        rows.push(json!({
            "arch": arch.name(), "channels": c, "size": s, "batch": b,
            "cryoprune_images_per_s": ours, "burn_layers_images_per_s": layers,
            "torch_images_per_s": theirs, "ratio": ratio,
        }));
    }
    let report = json!({
        "threads": threads,
        "backend": "pure Rust: cryoprune's fused CPU inference on the gemm crate (burn layers: burn flex)",
        "torch": peer.get("torch"),
        "torch_threads": peer.get("threads"),
        "cases": rows,
    });
    finish(&peer, report, "forward.json");
}
