//! Training step time of our networks against PyTorch on the same networks, batches and input
//! sizes, in one run (`benches/train_step_torch.py` is the PyTorch side). One step is what
//! `train` does per batch: forward in training mode (batch norms on the batch's statistics),
//! softmax cross-entropy, backward, SGD with momentum 0.9 and weight decay. "cryoprune" is the
//! path `train` takes on the CPU, [`CpuTrainer`] (every network); "burn autodiff" is the same
//! step through burn's autodiff on the flex backend, the path before it, for comparison.
//!
//! `cargo bench -p cryoprune-model --bench train_step` writes `target/bench/train_step.json`.
//! `CRYOPRUNE_TORCH_PYTHON` names a Python with torch and torchvision (BENCHMARKS.md shows how to
//! make one); without it the PyTorch side is not measured. Both sides use every core, warm up,
//! and report the median of several timed steps. Arguments after `--` pick networks by name.

mod common;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use cryoprune_model::backprop::{CpuTrainer, Loss, SgdStep, Targets};
use cryoprune_model::Arch;
use serde_json::json;

use common::{finish, network, noise, seconds, selected, steady_allocator, torch, CLASSES};

/// (network, input channels, input size, batch): the rows. The first is `train`'s
/// default; 3 × 224² is what PickerOptimizer feeds ResNet-18.
const CASES: [(Arch, usize, usize, usize); 10] = [
    (Arch::Small, 1, 64, 24),
    (Arch::Small, 1, 64, 64),
    (Arch::Small, 1, 128, 24),
    (Arch::ResNet18, 1, 64, 24),
    (Arch::ResNet18, 1, 64, 64),
    (Arch::ResNet18, 1, 128, 24),
    (Arch::ResNet18, 3, 224, 24),
    (Arch::ResNet50, 1, 64, 24),
    (Arch::EfficientNetLite0, 1, 64, 24),
    (Arch::TopazResNet16, 1, 96, 24),
];
const SGD: SgdStep = SgdStep {
    lr: 0.01,
    momentum: 0.9,
    weight_decay: 1e-4,
};

/// Seconds per step of cryoprune's CPU path (None where it does not build the network) and of
/// burn's autodiff.
fn ours(arch: Arch, channels: usize, size: usize, batch: usize) -> (Option<f64>, f64) {
    let device = Device::flex().autodiff();
    let (x, pixels) = noise(batch, channels, size, &device);
    let images: Vec<&[f32]> = pixels.chunks_exact(channels * size * size).collect();
    let labels: Vec<usize> = (0..batch).map(|i| i % CLASSES).collect();
    let mut net = network(arch, channels, &device);
    let fast = CpuTrainer::new(&net.valid()).map(|mut trainer| {
        let loss = Loss {
            class_weights: &[1.0; CLASSES],
            branch_weights: &[1.0],
            smoothing: 0.0,
        };
        seconds(|| {
            trainer.step(&images, size, Targets::Classes(&labels), loss, &SGD, true);
        })
    });
    let mut target = vec![0f32; batch * CLASSES];
    for (i, &l) in labels.iter().enumerate() {
        target[i * CLASSES + l] = 1.0 / batch as f32;
    }
    let target = Tensor::<2>::from_data(TensorData::new(target, [batch, CLASSES]), &device);
    let mut optim = SGD.burn().init();
    let burn = seconds(|| {
        let logits = net.forward(x.clone()).remove(0);
        let loss = (log_softmax(logits, 1) * target.clone()).sum().neg();
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        net = optim.step(SGD.lr, net.clone(), grads);
    });
    (fast, burn)
}

fn ms(s: Option<f64>) -> String {
    s.map_or("-".into(), |s| format!("{:.0} ms", s * 1e3))
}

fn main() {
    steady_allocator();
    let threads = rayon::current_num_threads();
    let (selected, cases) = selected(CASES);
    let mut peer = json!({});
    let mut rows = Vec::new();
    println!(
        "| network | input | batch | PyTorch | cryoprune | burn autodiff | PyTorch / cryoprune |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (i, &(arch, c, s, b)) in selected.iter().enumerate() {
        // Each case's two sides run one right after the other: this machine's speed drifts by
        // a third over minutes, and a ratio of measurements taken far apart carries the drift.
        peer = torch("train_step_torch.py", &json!([cases[i]]));
        let theirs = peer["results"][0]["seconds"].as_f64();
        let (fast, burn) = ours(arch, c, s, b);
        let cryoprune = fast.unwrap_or(burn);
        // Above 1 cryoprune is faster.
        let ratio = theirs.map(|t| t / cryoprune);
        println!(
            "| {} | {c} × {s}² | {b} | {} | {}{} | {} | {} |",
            arch.name(),
            ms(theirs),
            ms(Some(cryoprune)),
            if fast.is_some() { "" } else { " (burn)" },
            ms(Some(burn)),
            ratio.map_or("-".into(), |r| format!("{r:.2}")),
        );
        rows.push(json!({
            "arch": arch.name(), "channels": c, "size": s, "batch": b,
            "cryoprune_s": cryoprune, "cpu_path": fast.is_some(), "burn_autodiff_s": burn,
            "torch_s": theirs, "torch_over_cryoprune": ratio,
        }));
    }
    let report = json!({
        "threads": threads,
        "torch": peer.get("torch"),
        "torch_threads": peer.get("threads"),
        "cases": rows,
    });
    finish(&peer, report, "train_step.json");
}
