#!/usr/bin/env bash
# Peak memory of `cryoprune prune` for 10 and 100 simulated 1024² micrographs with 1000 picks
# each (a grid over the micrograph, as a greedy picker gives): the extraction workers may run
# only a few micrographs ahead of the network, so the peak should not grow with the dataset.
#
#   crates/cryoprune/benches/prune_memory.sh [OUT_DIR]
#
# Needs a release build (cargo build --release) and GNU time (/usr/bin/time).
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
bin="$root/target/release/cryoprune"
out="${1:-prune_memory}"
mkdir -p "$out"
"$bin" simulate --out "$out/sim" --count 100 --size 1024 --seed 11 --no-previews --format csv
"$bin" train --micrographs "$out/sim/micrographs/*.mrc" --labels "$out/sim/truth.csv" --box 48 \
    --input-size 48 --epochs 2 --shots 30 --pretrained none --out "$out/model" > /dev/null 2>&1
python3 - "$out" <<'PY'
import sys
out = sys.argv[1]
for n in (10, 100):
    with open(f"{out}/grid{n}.csv", "w") as f:
        f.write("micrograph,x,y\n")
        for m in range(1, n + 1):
            for i in range(1000):
                f.write(f"sim_{m:04d},{30 + (i % 32) * 30.6:.1f},{30 + (i // 32) * 30.6:.1f}\n")
PY
echo "micrographs,picks,seconds,peak_rss_mib,particles_per_second" > "$out/memory.csv"
for n in 10 100; do
    /usr/bin/time -f "%e %M" -o "$out/time$n.txt" "$bin" prune --model "$out/model" \
        --micrographs "$out/sim/micrographs/*.mrc" --picks "$out/grid$n.csv" \
        --out "$out/pruned$n" > /dev/null 2> "$out/prune$n.log"
    read -r secs kib < "$out/time$n.txt"
    pps=$(python3 -c "import json; print(round(json.load(open('$out/pruned$n/prune_summary.json'))['particles_per_second']))")
    echo "$n,$((n * 1000)),$secs,$((kib / 1024)),$pps" >> "$out/memory.csv"
done
cat "$out/memory.csv"
