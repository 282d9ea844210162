#!/usr/bin/env bash
# The deep picker against real pickers (issue 20's protocol). EMPIAR-10017: `picker train` on the
# manual truth of 6 micrographs that no peer picked (4 train, 2 validate), `pick` on the other 6,
# scored by `evaluate-picks` (radius 54 px, half the 108 px particle) on all 6 and on the 4 that
# crYOLO, Topaz and DeepPicker picked, next to those pickers' own picks and, when TOPAZ (a
# `topaz` executable from the topaz-em package, with torch) is set, Topaz's pretrained general
# model (resnet16_u64, micrographs downsampled 8x, radius 7). Then the same on simulated
# micrographs (realistic preset) of RELION's ref_model (sim_ref_model.sh) and of ASPIRE's 70S
# ribosome, neither seen in pretraining: train on sim_0001-0006, test on sim_0007-0010 against
# every particle placed (radius: half the particle, 25 and 24 px).
# Writes OUT/picker.md; extra arguments go to every `picker train`.
#
#   crates/cryoprune/benches/picker.sh [OUT_DIR] [PICKER_TRAIN_ARGS...]
#
# Needs a release build (cargo build --release) and ../shared/data beside the checkout.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
out="${1:-picker_bench}"
extra=("${@:2}")
bin="${CRYOPRUNE:-$root/target/release/cryoprune}"
d="$root/../shared/data/empiar-10017"
mkdir -p "$out"
train_ids="14_57_34 15_07_41 15_14_01 15_27_22 16_48_06 16_55_40"
test_ids="14_33_35 15_17_31 15_30_21 15_33_42 16_59_12 17_02_43"
peer_ids="14_33_35 15_17_31 15_30_21 15_33_42"
mics() { for t in $1; do echo "$d/micrographs/Falcon_2012_06_12-${t}_0.jpg"; done; }
truth() { for t in $1; do echo "$d/truth/Falcon_2012_06_12-${t}_0.star"; done; }
# One table row from evaluate-picks' JSON: precision, recall, F1 at the threshold, best F1, AP.
row() {
    python3 - "$1" "$2" "$3" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t, b, ap = r["total"], r.get("best") or {}, r.get("average_precision")
fmt = lambda v: "-" if v is None else f"{v:.3f}"
print(f"| {sys.argv[2]} | {sys.argv[3]} | {t['picks']} | {fmt(t['precision'])} | {fmt(t['recall'])} | "
      f"**{fmt(t['f1'])}** | {fmt(b.get('f1'))} | {fmt(ap)} |")
PY
}
score() { # NAME SET PICKS_DIR FORMAT THRESHOLD TRUTH...
    local name="$1" set="$2" picks="$3" fmt="$4" thr="$5"
    shift 5
    local args=(--picks "$picks" --truth "$@" --radius "$radius" --json "$out/$name.$set.json")
    [ "$fmt" != - ] && args+=(--format "$fmt")
    [ "$thr" != - ] && args+=(--threshold="$thr")
    "$bin" evaluate-picks "${args[@]}" >> "$out/evaluate.log" 2>&1
    row "$out/$name.$set.json" "$name" "$set" >> "$out/picker.md"
}

echo "| picker | micrographs | picks | precision | recall | F1 | best F1 | AP |" > "$out/picker.md"
echo "|---|---|---|---|---|---|---|---|" >> "$out/picker.md"
radius=54
start=$(date +%s)
# shellcheck disable=SC2046
"$bin" picker train --micrographs $(mics "$train_ids") --picks $(truth "$train_ids") --box 162 \
    --validation 2 "${extra[@]}" --out "$out/empiar_picker" > "$out/empiar_train.log" 2>&1
echo "EMPIAR-10017 picker train: $(( $(date +%s) - start )) s" > "$out/times.txt"
start=$(date +%s)
# shellcheck disable=SC2046
"$bin" pick --model "$out/empiar_picker" --micrographs $(mics "$test_ids") --out "$out/empiar_picks.star" > /dev/null 2>&1
echo "EMPIAR-10017 pick (6 micrographs): $(( $(date +%s) - start )) s" >> "$out/times.txt"
# Every peak, for the average precision over thresholds.
# shellcheck disable=SC2046
"$bin" pick --model "$out/empiar_picker" --micrographs $(mics "$test_ids") --threshold=-8 --out "$out/empiar_all.star" > /dev/null 2>&1
for set in test6 peer4; do
    ids=$([ $set = test6 ] && echo "$test_ids" || echo "$peer_ids")
    # shellcheck disable=SC2046
    score cryoprune "$set" "$out/empiar_picks.star" - - $(truth "$ids")
    # shellcheck disable=SC2046
    score "cryoprune (every peak)" "$set" "$out/empiar_all.star" - - $(truth "$ids")
done
for peer in crYOLO topaz deepPicker; do
    # shellcheck disable=SC2046
    score "$peer (own picks)" peer4 "$d/picks/$peer" - - $(truth "$peer_ids")
done
if [ -n "${TOPAZ:-}" ]; then
    py="$(dirname "$(command -v "$TOPAZ")")/python"
    mkdir -p "$out/topaz_mrc"
    "$py" - "$d/micrographs" "$out/topaz_mrc" <<'PY'
import glob, os, sys
import mrcfile, numpy as np
from PIL import Image
for p in glob.glob(os.path.join(sys.argv[1], "*.jpg")):
    a = np.asarray(Image.open(p).convert("L"), dtype=np.float32)
    with mrcfile.new(os.path.join(sys.argv[2], os.path.basename(p)[:-4] + ".mrc"), overwrite=True) as m:
        m.set_data(a)
PY
    start=$(date +%s)
    tm=$(for t in $test_ids; do echo "$out/topaz_mrc/Falcon_2012_06_12-${t}_0.mrc"; done)
    # shellcheck disable=SC2086
    "$TOPAZ" preprocess -s 8 -o "$out/topaz_proc/" $tm > /dev/null 2>&1
    "$TOPAZ" extract -m resnet16_u64 -r 7 -x 8 -o "$out/topaz_general.txt" "$out"/topaz_proc/*.mrc > /dev/null 2>&1
    echo "Topaz general model, preprocess + extract (6 micrographs): $(( $(date +%s) - start )) s" >> "$out/times.txt"
    for set in test6 peer4; do
        ids=$([ $set = test6 ] && echo "$test_ids" || echo "$peer_ids")
        # shellcheck disable=SC2046
        score "Topaz general model (score >= 0)" "$set" "$out/topaz_general.txt" topaz 0 $(truth "$ids")
    done
fi

# Simulated: structures and junk the picker never saw, every particle's centre known. Trained on
# sim_0001-0006 (2 of them validating), scored on sim_0007-0010.
simulated() { # NAME SIM_DIR BOX RADIUS
    local name="$1" sim="$2" box="$3"
    radius="$4"
    local tr te start
    tr=$(for i in 1 2 3 4 5 6; do echo "$sim/micrographs/sim_000$i.mrc"; done)
    te=$(for i in 7 8 9 10; do printf '%s/micrographs/sim_%04d.mrc\n' "$sim" "$i"; done)
    python3 - "$sim/particles.csv" "$out/${name}_test_truth.csv" <<'PY'
import sys
rows = open(sys.argv[1]).read().splitlines()
test = {f"sim_{i:04d}" for i in range(7, 11)}
open(sys.argv[2], "w").write("\n".join([rows[0]] + [r for r in rows[1:] if r.split(",")[0] in test]) + "\n")
PY
    start=$(date +%s)
    # shellcheck disable=SC2086
    "$bin" picker train --micrographs $tr --picks "$sim/particles.csv" --box "$box" --validation 2 \
        "${extra[@]}" --out "$out/${name}_picker" > "$out/${name}_train.log" 2>&1
    echo "$name picker train: $(( $(date +%s) - start )) s" >> "$out/times.txt"
    # shellcheck disable=SC2086
    "$bin" pick --model "$out/${name}_picker" --micrographs $te --out "$out/${name}_picks.star" > /dev/null 2>&1
    # shellcheck disable=SC2086
    "$bin" pick --model "$out/${name}_picker" --micrographs $te --threshold=-8 --out "$out/${name}_all.star" > /dev/null 2>&1
    local truth="$out/${name}_test_truth.csv"
    score cryoprune "$name 7-10" "$out/${name}_picks.star" - - "$truth"
    score "cryoprune (every peak)" "$name 7-10" "$out/${name}_all.star" - - "$truth"
    score "simulated picker (its picks)" "$name 7-10" "$sim/picks.star" - - "$truth"
}
# RELION's ref_model (sim_ref_model.sh): a 50 px particle, a 76 px box.
CRYOPRUNE="$bin" "$root/crates/cryoprune/benches/sim_ref_model.sh" realistic "$out/sim_realistic"
simulated sim "$out/sim_realistic" 76 25
# ASPIRE's 70S ribosome, the other structure kept out of pretraining. Its map's header gives no
# voxel size, so `simulate` takes a voxel as one pixel: at 1 Å/px the particle spans 48 px.
ribosome="$out/sim_ribosome"
[ -d "$ribosome" ] || "$bin" simulate --out "$ribosome" \
    --map "$root/../shared/data/sources/aspire/clean70SRibosome_vol_65p.mrc" --pixel 1.0 \
    --count 10 --size 1024 --preset realistic --seed 202 --no-previews > /dev/null
simulated ribosome "$ribosome" 72 24
cat "$out/picker.md" "$out/times.txt"
