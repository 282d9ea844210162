#!/usr/bin/env bash
# The README's pruning figure: train on 30 labels per class from EMPIAR-10017 micrographs
# 14_33_35 and 15_17_31 (Topaz picks, labels/topaz.csv), prune the Topaz picks of 15_30_21 and
# 15_33_42, and score the kept picks against the labels, next to the raw picker's precision.
#
#   crates/cryoprune/benches/prune_empiar10017.sh [OUT_DIR] [extra train args...]
#
# The table in BENCHMARKS.md was measured with the decision at the training mix, so the script
# passes --prior training; PRIOR=dataset gives today's default (prune_prior.sh compares them).
#
# Needs a release build (cargo build --release) and ../shared/data beside the checkout.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
data="$root/../shared/data/empiar-10017"
out="${1:-prune_empiar10017}"
shift || true
bin="$root/target/release/cryoprune"
mkdir -p "$out"
{ head -1 "$data/labels/topaz.csv"
  grep -E '^Falcon_2012_06_12-(14_33_35|15_17_31)_0,' "$data/labels/topaz.csv"; } > "$out/train_labels.csv"
"$bin" train --micrographs "$data/micrographs/*.jpg" --labels "$out/train_labels.csv" \
    --box 180 --shots 30 --seed 0 --out "$out/model" "$@"
"$bin" prune --model "$out/model" --micrographs "$data/micrographs/*.jpg" \
    --picks "$data/picks/topaz/Falcon_2012_06_12-15_30_21_0.box" \
            "$data/picks/topaz/Falcon_2012_06_12-15_33_42_0.box" \
    --out "$out/pruned" --scores "$out/scores.csv" --report "$out/report.html" \
    --prior "${PRIOR:-training}"
python3 - "$data/labels/topaz.csv" "$out/scores.csv" <<'PY'
import csv, sys
truth = {(r["micrograph"], float(r["x"]), float(r["y"])): r["label"] == "particle"
         for r in csv.DictReader(open(sys.argv[1]))}
rows = [((r["micrograph"], float(r["x"]), float(r["y"])), r) for r in csv.DictReader(open(sys.argv[2]))]
missing = [k for k, _ in rows if k not in truth]
assert not missing, f"{len(missing)} scored picks have no label, e.g. {missing[0]}"
def score(kept):
    tp = sum(truth[k] and kept(r) for k, r in rows)
    fp = sum((not truth[k]) and kept(r) for k, r in rows)
    particles = sum(truth[k] for k, _ in rows)
    return tp + fp, tp / max(tp + fp, 1), tp / max(particles, 1)
n = len(rows)
particles = sum(truth[k] for k, _ in rows)
print(f"{n} Topaz picks on 15_30_21 and 15_33_42, {particles} labelled particle")
print(f"raw picker:          precision {particles / n:.3f}, recall 1.000")
kept, p, r = score(lambda r: r["kept"] == "1")
print(f"pruned (default):    kept {kept}, precision {p:.3f}, recall {r:.3f}")
for t in (0.6, 0.7):
    kept, p, r = score(lambda row, t=t: row["class"] != "unscored" and float(row["p_particle"]) >= t)
    print(f"pruned (p >= {t}):   kept {kept}, precision {p:.3f}, recall {r:.3f}")
PY
