#!/usr/bin/env bash
# End-to-end pruning throughput against PickerOptimizer's pipeline, side by side in one run: the
# Topaz picks of the four EMPIAR-10017 micrographs that have them (micrographs and picks in,
# pruned picks out). Each side is a separate process timed from outside, model loading included;
# training is not timed.
#
#   CRYOPRUNE_TORCH_PYTHON=/path/to/python crates/cryoprune/benches/prune_peer.sh [OUT_DIR]
#
# cryoprune runs twice: with the default network, and with ResNet-18 at 224 px, the network the
# peer runs (random weights after one epoch; speed does not depend on them). The peer is
# prune_peer.py (PyTorch, torchvision, mrcfile; BENCHMARKS.md shows how to install them).
# Needs a release build (cargo build --release), GNU time and ../shared/data beside the checkout.
# Writes OUT_DIR/prune_peer.csv.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
data="$root/../shared/data/empiar-10017"
out="${1:-prune_peer}"
python="${CRYOPRUNE_TORCH_PYTHON:?set CRYOPRUNE_TORCH_PYTHON to a Python with torch, torchvision and mrcfile}"
bin="$root/target/release/cryoprune"
mkdir -p "$out"
picks=("$data"/picks/topaz/*.box)
{ head -1 "$data/labels/topaz.csv"
  grep -E '^Falcon_2012_06_12-(14_33_35|15_17_31)_0,' "$data/labels/topaz.csv"; } > "$out/train_labels.csv"
"$bin" train --micrographs "$data/micrographs/*.jpg" --labels "$out/train_labels.csv" \
    --box 180 --shots 30 --seed 0 --out "$out/model_default" > /dev/null 2>&1
"$bin" train --micrographs "$data/micrographs/*.jpg" --labels "$out/train_labels.csv" \
    --box 180 --shots 10 --seed 0 --arch resnet18 --input-size 224 --pretrained none --epochs 1 \
    --out "$out/model_resnet18" > /dev/null 2>&1

echo "side,network,particles,seconds,particles_per_second,peak_rss_mib" > "$out/prune_peer.csv"
for net in default resnet18; do
    rm -rf "$out/pruned_$net"
    /usr/bin/time -f "%e %M" -o "$out/time_$net.txt" "$bin" prune --model "$out/model_$net" \
        --micrographs "$data/micrographs/*.jpg" --picks "${picks[@]}" --out "$out/pruned_$net" \
        > /dev/null 2> "$out/prune_$net.log"
    read -r secs kib < "$out/time_$net.txt"
    n=$(python3 -c "import json; print(json.load(open('$out/pruned_$net/prune_summary.json'))['scored'])")
    arch=$(python3 -c "import json; s=json.load(open('$out/model_$net/model.json')); print(f\"{s['network']['arch']} {s['preprocessing']['input_size']}px\")")
    echo "cryoprune,$arch,$n,$secs,$(python3 -c "print(round($n / $secs, 1))"),$((kib / 1024))" >> "$out/prune_peer.csv"
done

rm -rf "$out/peer"
/usr/bin/time -f "%e %M" -o "$out/time_peer.txt" "$python" "$root/crates/cryoprune/benches/prune_peer.py" \
    "$out/peer" 180 "$data/micrographs" "${picks[@]}" > "$out/peer.json"
read -r secs kib < "$out/time_peer.txt"
n=$(python3 -c "import json; print(json.load(open('$out/peer.json'))['particles'])")
echo "PickerOptimizer-style (PyTorch),resnet18 224px batch 1,$n,$secs,$(python3 -c "print(round($n / $secs, 1))"),$((kib / 1024))" >> "$out/prune_peer.csv"
cat "$out/prune_peer.csv"
