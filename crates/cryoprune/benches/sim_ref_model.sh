#!/usr/bin/env bash
# The simulated evaluation set the benchmarks share: RELION's tests/ref_model.mrc (a structure
# pretraining never sees) on 10 micrographs of 1024² at 3.54 Å/px (a 50 px particle) under a
# preset, seed 101, and labels.csv with every pick labelled particle or junk from the truth.
# Does nothing when OUT_DIR exists.
#
#   crates/cryoprune/benches/sim_ref_model.sh PRESET OUT_DIR
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
preset="$1"
sim="$2"
bin="${CRYOPRUNE:-$root/target/release/cryoprune}"
[ -d "$sim" ] && exit 0
"$bin" simulate --out "$sim" --map "$root/../shared/data/sources/relion/tests/ref_model.mrc" \
    --pixel 3.54 --count 10 --size 1024 --preset "$preset" --seed 101 --no-previews > /dev/null
python3 - "$sim/truth.csv" "$sim/labels.csv" <<'PY'
import csv, sys
with open(sys.argv[2], "w") as f:
    f.write("micrograph,x,y,label,score\n")
    for r in csv.DictReader(open(sys.argv[1])):
        label = "particle" if r["label"] == "particle" else "junk"
        f.write(f"{r['micrograph']},{r['x']},{r['y']},{label},{r['score']}\n")
PY
