#!/usr/bin/env bash
# An experiment for the unlabelled picks (issue 17), not yet a feature: one round of
# self-training. For each simulated preset and seed that prune_prior.sh trained (K = 15 on
# sim_0001-0005), the model labels every pick of all ten micrographs; its 60 most confident
# particles (p >= 0.8) and 60 most confident junk (p <= 0.2) outside its own training and
# validation picks join the 30 true labels, a second model trains on them (20% held out), and
# both prune sim_0006-0010, scored against the truth.
#
#   crates/cryoprune/benches/self_training_sim.sh PRUNE_PRIOR_DIR [OUT_DIR]
#
# PRUNE_PRIOR_DIR is the folder prune_prior.sh wrote. Needs a release build.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
pp="$1"
out="${2:-self_training}"
bin="${CRYOPRUNE:-$root/target/release/cryoprune}"
skip=sim_0001,sim_0002,sim_0003,sim_0004,sim_0005
mkdir -p "$out"
table="$out/self_training.csv"
echo "preset,seed,model,macro_f1,particles_kept,junk_removed" > "$table"
for preset in realistic hard; do
    sim="$pp/sim_$preset"
    for seed in 0 1 2; do
        a="$pp/sim_$preset-$seed"
        b="$out/$preset-$seed"
        "$bin" prune --model "$a" --micrographs "$sim/micrographs/*.mrc" --picks "$sim/picks.star" \
            --out "$b-all" --scores "$b-all.csv" > "$b-all.log" 2>&1
        python3 - "$sim/labels.csv" "$a/validation.csv" "$b-all.csv" "$b-pseudo.csv" "$skip" <<'PY'
import csv, sys
labels, val, scores, out, skip = sys.argv[1:]
key = lambda r: (r["micrograph"], round(float(r["x"])), round(float(r["y"])))
held = {key(r) for r in csv.DictReader(open(val))}
rows = list(csv.DictReader(open(labels)))
score = {key(r): r["score"] for r in rows}


def score_of(r):
    # The labels keep two decimals, the scores all of them: a half may round either way.
    m, x, y = key(r)
    near = (score.get((m, x + dx, y + dy)) for dx in (0, -1, 1) for dy in (0, -1, 1))
    return next(s for s in near if s is not None)


train = [r for r in rows if r["micrograph"] in skip.split(",") and key(r) not in held]
known = held | {key(r) for r in train}
free = [r for r in csv.DictReader(open(scores)) if r["class"] != "unscored" and key(r) not in known]
by_p = sorted(free, key=lambda r: float(r["p_particle"]))
junk = [r for r in by_p[:60] if float(r["p_particle"]) <= 0.2]
particles = [r for r in by_p[::-1][:60] if float(r["p_particle"]) >= 0.8]
with open(out, "w") as f:
    f.write("micrograph,x,y,label,score\n")
    for r in train:
        f.write(f"{r['micrograph']},{r['x']},{r['y']},{r['label']},{r['score']}\n")
    for label, chosen in (("particle", particles), ("junk", junk)):
        for r in chosen:
            f.write(f"{r['micrograph']},{r['x']},{r['y']},{label},{score_of(r)}\n")
PY
        "$bin" train --micrographs "$sim/micrographs/*.mrc" --labels "$b-pseudo.csv" --box 76 \
            --val-fraction 0.2 --seed "$seed" --pretrained none --out "$b-model" > "$b-train.log" 2>&1
        "$bin" prune --model "$b-model" --micrographs "$sim/micrographs/sim_000[6-9].mrc" \
            "$sim/micrographs/sim_0010.mrc" --picks "$sim/picks.star" --out "$b-pruned" \
            --scores "$b.csv" > "$b-prune.log" 2>&1
        for m in first:"$a-dataset.csv" self-trained:"$b.csv"; do
            python3 "$root/crates/cryoprune/benches/score_kept.py" "$sim/labels.csv" "${m#*:}" \
                "$skip" "$preset,$seed,${m%%:*}" >> "$table"
        done
    done
done
column -s, -t "$table"
