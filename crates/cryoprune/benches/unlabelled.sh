#!/usr/bin/env bash
# What `train --unlabelled` (adapting the network to the dataset on its unlabelled picks first)
# does, measured as a user would meet it: a few labels per class and every pick of the dataset
# unlabelled. For each set and seed, draws K + 10 labels per class from the training micrographs
# (K train, 10 validate), trains the default network without and with --unlabelled ALL_PICKS,
# prunes the test micrographs' picks (default prior) and scores the kept picks against the labels:
#   EMPIAR-10017 Topaz and crYOLO picks (K = 30; labels from 14_33_35 and 15_17_31, test
#   15_30_21 and 15_33_42), and RELION's ref_model simulated under the realistic and hard
#   presets (K = 15; labels from sim_0001-0005, test sim_0006-0010).
#
#   crates/cryoprune/benches/unlabelled.sh [OUT_DIR]     # writes OUT_DIR/unlabelled.csv
#
# SEEDS (default "0 1 2") chooses the draws; PRETRAINED (default none, as the table in
# BENCHMARKS.md was first measured; cryo for the shipped backbone) the network's start. Needs a release build (cargo build --release) and
# ../shared/data beside the checkout.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
out="${1:-unlabelled}"
bin="${CRYOPRUNE:-$root/target/release/cryoprune}"
data="$root/../shared/data"
e="$data/empiar-10017"
mkdir -p "$out"
table="$out/unlabelled.csv"
echo "set,seed,model,macro_f1,particles_kept,junk_removed,train_seconds" > "$table"

# run NAME LABELS SHOTS BOX TRAIN_MICS(regex) TEST_PICKS ALL_PICKS MICS...
run() {
    local name=$1 labels=$2 shots=$3 box=$4 train_mics=$5 test_picks=$6 all_picks=$7
    shift 7
    for seed in ${SEEDS:-0 1 2}; do
        local base="$out/$name-$seed"
        python3 - "$labels" "$base-labels.csv" "$train_mics" "$((shots + 10))" "$seed" <<'PY'
import csv, random, re, sys
src, dst, mics, n, seed = sys.argv[1], sys.argv[2], re.compile(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rows = [r for r in csv.DictReader(open(src)) if mics.search(r["micrograph"])]
rng = random.Random(seed)
with open(dst, "w") as f:
    f.write("micrograph,x,y,label,score\n")
    for label in sorted({r["label"] for r in rows}):
        of = [r for r in rows if r["label"] == label]
        for r in rng.sample(of, min(n, len(of))):
            f.write(f"{r['micrograph']},{r['x']},{r['y']},{label},{r['score']}\n")
PY
        for model in labels-only adapted; do
            local extra=()
            [ "$model" = adapted ] && extra=(--unlabelled "$all_picks")
            local start=$SECONDS
            "$bin" train --micrographs "$@" --labels "$base-labels.csv" --box "$box" \
                --shots "$shots" --seed "$seed" --pretrained "${PRETRAINED:-none}" --out "$base-$model" \
                "${extra[@]}" > "$base-$model.log" 2>&1
            local took=$((SECONDS - start))
            "$bin" prune --model "$base-$model" --micrographs "$@" --picks "$test_picks" \
                --out "$base-$model-pruned" --scores "$base-$model.csv" > "$base-$model-prune.log" 2>&1
            echo "$(python3 "$root/crates/cryoprune/benches/score_kept.py" "$labels" \
                "$base-$model.csv" "" "$name,$seed,$model"),$took" >> "$table"
        done
    done
}

for picker in topaz crYOLO; do
    test_picks="$out/test_picks_$picker"
    mkdir -p "$test_picks"
    cp "$e/picks/$picker/"*15_30_21* "$e/picks/$picker/"*15_33_42* "$test_picks/"
    run "empiar_$picker" "$e/labels/$picker.csv" 30 180 '14_33_35|15_17_31' "$test_picks" \
        "$e/picks/$picker" "$e/micrographs/*.jpg"
done

for preset in realistic hard; do
    sim="$out/sim_$preset"
    "$root/crates/cryoprune/benches/sim_ref_model.sh" "$preset" "$sim"
    # The test picks: those of sim_0006-0010, in the picker's STAR.
    python3 - "$sim/picks.star" "$sim/test_picks.star" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
keep = [l for l in lines if not re.search(r"sim_000[1-5]\b", l)]
open(sys.argv[2], "w").write("\n".join(keep) + "\n")
PY
    run "sim_$preset" "$sim/labels.csv" 15 76 'sim_000[1-5]$' "$sim/test_picks.star" \
        "$sim/picks.star" "$sim/micrographs/*.mrc"
done
column -s, -t "$table"
