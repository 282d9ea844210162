#!/usr/bin/env bash
# The GPU path checked (issue 22): builds cryoprune with a GPU backend, runs the demo's data through
# `train` and `prune` on the CPU and on the GPU, and compares them. Same model on both devices:
# the largest difference of any pick's probability (tolerance 1e-3) and the kept picks; the same
# training on both devices: wall time and macro-F1 (not bit-identical: burn's GPU autodiff sums
# in another order). Writes OUT/gpu_check.json. Never part of the tests: CI has no GPU.
#
#   crates/cryoprune/benches/gpu_check.sh [wgpu|cuda|tch] [OUT]
#
# `cpu` in place of a backend runs the same comparison CPU against CPU, a check of this script on
# any machine.
# wgpu builds offline from crates.io alone (Vulkan on NVIDIA and AMD, Metal on macOS); cuda's build
# downloads an LLVM bundle once; tch links the libtorch of a PyTorch install (LIBTORCH_USE_PYTORCH=1
# with CUDA PyTorch from PyPI) and runs on its CUDA as --device cuda (README: "GPU builds").
set -euo pipefail
backend=${1:-wgpu}
out=${2:-target/gpu_check}
device=$backend
[ "$backend" = tch ] && device=cuda
cd "$(dirname "$0")/../../.."
if [ "$backend" = cpu ]; then
  cargo build --release -p cryoprune
else
  cargo build --release -p cryoprune --features "$backend"
fi
bin=target/release/cryoprune
rm -rf "$out" && mkdir -p "$out"

# The demo's data, labels and CPU-trained model (its commands print what it ran).
$bin demo --out "$out/demo" > "$out/demo.log" 2>&1
data="$out/demo/data"
mics="$data/micrographs/*.mrc"

seconds() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null 2>&1; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
# "reference" runs on the CPU, "device" on the backend's device.
for run in "reference cpu" "device $device"; do
  set -- $run
  train_s=$(seconds $bin train --micrographs "$mics" --labels "$out/demo/labels.csv" --box 48 \
    --seed 7 --device "$2" --out "$out/model_$1")
  prune_s=$(seconds $bin prune --model "$out/demo/model" --micrographs "$mics" \
    --picks "$data/picks.star" --device "$2" --out "$out/pruned_$1" --scores "$out/scores_$1.csv")
  echo "$1 $2 $train_s $prune_s" >> "$out/times.txt"
done

python3 - "$out" "$device" <<'PY'
import csv, json, sys
out, device = sys.argv[1], sys.argv[2]
def rows(run):
    with open(f"{out}/scores_{run}.csv") as f:
        return list(csv.DictReader(f))
cpu, gpu = rows("reference"), rows("device")
assert len(cpu) == len(gpu), f"{len(cpu)} picks scored on the CPU, {len(gpu)} on {device}"
ps = [c for c in cpu[0] if c.startswith("p_")]
worst = max(abs(float(a[c]) - float(b[c])) for a, b in zip(cpu, gpu) for c in ps if a[c] and b[c])
differ = sum(a["kept"] != b["kept"] for a, b in zip(cpu, gpu))
times = {}
for line in open(f"{out}/times.txt"):
    run, dev, train_s, prune_s = line.split()
    model = json.load(open(f"{out}/model_{run}/model.json"))
    f1 = model["training"]["validation"]["macro_f1"]
    times[run] = {"device": dev, "train_s": float(train_s), "prune_s": float(prune_s),
                  "validation_macro_f1": f1}
result = {"device": device, "picks": len(cpu), "largest_probability_difference": worst,
          "kept_decisions_that_differ": differ, "within_tolerance": worst <= 1e-3, "runs": times}
json.dump(result, open(f"{out}/gpu_check.json", "w"), indent=2)
print(json.dumps(result, indent=2))
sys.exit(0 if worst <= 1e-3 else 1)
PY
