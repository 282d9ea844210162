#!/usr/bin/env bash
# Does cryo-EM pretraining help a few labels? Simulates micrographs of a structure pretraining
# never saw (RELION's tests/ref_model.mrc, never among pretraining's structures) under two
# junk settings (the realistic and hard presets), labels every pick particle or junk from the
# truth, and runs the few-shot protocol: K labels per class, 5 draws, the network from scratch
# against the network started from BACKBONE, scored on the image alone and with the pick
# context.
#
#   crates/cryoprune/benches/pretrain_sim_eval.sh BACKBONE [OUT_DIR] [SHOTS] [FEWSHOT_ARGS...]
#
# BACKBONE may also be topaz:PATH (Topaz's resnet16_u64.sav): Topaz's network at 96 px, started
# from it, against the same network from scratch; FEWSHOT_ARGS go to every fewshot run (for
# example --freeze-epochs 15 to train the head alone on the frozen features). TRIALS (default 5)
# and VARIANTS (default scratch,pretrained) set the draws and variants.
#
# Needs a release build (cargo build --release) and ../shared/data beside the checkout.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
backbone="$1"
out="${2:-pretrain_sim_eval}"
shots="${3:-10}"
extra=("${@:4}")
net=(--weights "small=$backbone")
case "$backbone" in
    topaz:*) net=(--archs topaz-resnet16 --input-size 96 --weights "topaz-resnet16=$backbone") ;;
esac
bin="${CRYOPRUNE:-$root/target/release/cryoprune}"
mkdir -p "$out"
for preset in realistic hard; do
    sim="$out/sim_$preset"
    "$root/crates/cryoprune/benches/sim_ref_model.sh" "$preset" "$sim"
    # The particle is 50 px across at 3.54 Å/px: a 76 px box, 1.5 diameters.
    "$bin" fewshot --micrographs "$sim/micrographs/*.mrc" --labels "$sim/labels.csv" \
        --box 76 --shots "$shots" --trials "${TRIALS:-5}" --variants "${VARIANTS:-scratch,pretrained}" \
        "${net[@]}" "${extra[@]}" --out "$out/fewshot_$preset"
done
