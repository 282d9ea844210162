#!/usr/bin/env bash
# The ablation of the paper's Tables 2-3 for what cryoprune has: the default network from
# scratch or from a cryo-EM pretrained BACKBONE (`cryoprune pretrain`), each with and without
# the adaptation to the unlabelled picks (`-adapted`) and with the multi-loss head or one branch
# (`-single-loss`), K labels per class, TRIALS draws, image alone and with the pick context, on
#   (a) EMPIAR-10017 Topaz and (b) crYOLO picks (labels from 14_33_35 and 15_17_31, scored on
#       15_30_21 and 15_33_42; adapted on the picks of the labels' micrographs), and
#   (c) RELION's ref_model (a structure pretraining never sees) simulated under the realistic
#       and hard presets (scored on the picks not drawn; adapted on every pick, as prune would
#       see them).
#
#   crates/cryoprune/benches/ablation.sh BACKBONE [OUT_DIR]     # OUT_DIR/*/results.md
#
# SHOTS (default 10,30), TRIALS (default 5) and VARIANTS set the cells; INPUT (default: fewshot's
# own) is the network input size and ARCH (default small) the network, which must be the size
# and network BACKBONE was pretrained at and as. PICKERS (default "topaz crYOLO"; "deepPicker" is
# EMPIAR-10017's third) and PRESETS (default "realistic hard"; empty for none) pick the sets:
#   PICKERS=deepPicker PRESETS= crates/cryoprune/benches/ablation.sh BACKBONE abl_deeppicker/
# Needs a release build (cargo build --release) and ../shared/data beside the checkout.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
backbone="$1"
out="${2:-ablation}"
bin="${CRYOPRUNE:-$root/target/release/cryoprune}"
e="$root/../shared/data/empiar-10017"
m="$e/micrographs/Falcon_2012_06_12"
cells=(--shots "${SHOTS:-10,30}" --trials "${TRIALS:-5}" ${INPUT:+--input-size "$INPUT"}
    --archs "${ARCH:-small}" --weights "${ARCH:-small}=$backbone" --variants
    "${VARIANTS:-scratch,scratch-single-loss,scratch-adapted,scratch-adapted-single-loss,pretrained,pretrained-adapted}")
mkdir -p "$out"
for picker in ${PICKERS:-topaz crYOLO}; do
    "$bin" fewshot --micrographs "$m-14_33_35_0.jpg" "$m-15_17_31_0.jpg" \
        --labels "$e/labels/$picker.csv" --test-micrographs "$m-15_30_21_0.jpg" "$m-15_33_42_0.jpg" \
        --test-labels "$e/labels/$picker.csv" --box 180 --val-max 64 "${cells[@]}" \
        --unlabelled "$e/picks/$picker" --out "$out/empiar_$picker"
done
for preset in ${PRESETS-realistic hard}; do
    sim="$out/sim_$preset"
    "$root/crates/cryoprune/benches/sim_ref_model.sh" "$preset" "$sim"
    # The particle is 50 px across at 3.54 Å/px: a 76 px box, 1.5 diameters.
    "$bin" fewshot --micrographs "$sim/micrographs/*.mrc" --labels "$sim/labels.csv" --box 76 \
        "${cells[@]}" --unlabelled "$sim/picks.star" --out "$out/fewshot_$preset"
done
