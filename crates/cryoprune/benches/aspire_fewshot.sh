#!/usr/bin/env bash
# The image network on micrographs from another simulator (ASPIRE's; aspire_sim.py says what
# they hold): RELION's ref_model at SNR 0.05 and 0.1, K = 10 and 30 labels per class, 5 draws,
# from scratch and from the shipped cryo-EM backbone (BACKBONE overrides it).
#
#   python3 -m venv av && av/bin/pip install aspire==0.14.3
#   ASPIRE_PYTHON=av/bin/python crates/cryoprune/benches/aspire_fewshot.sh OUT_DIR   # OUT_DIR/fewshot_*/results.md
#
# Needs a release build (cargo build --release) and ../shared/data beside the checkout.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
out="${1:-aspire}"
bin="${CRYOPRUNE:-$root/target/release/cryoprune}"
backbone="${BACKBONE:-$root/crates/cryoprune-model/weights/cryo-small-64.safetensors}"
mkdir -p "$out"
py="${ASPIRE_PYTHON:-python3}"
case "$py" in */*) py="$(cd "$(dirname "$py")" && pwd)/$(basename "$py")" ;; esac
for snr in 0.05 0.1; do
    sim="$out/sim_$snr"
    # From inside OUT_DIR, where ASPIRE writes its logs/ folder.
    [ -d "$sim" ] || (cd "$out" && "$py" \
        "$root/crates/cryoprune/benches/aspire_sim.py" "sim_$snr" "$snr" 7)
    # The particle is 50 px across: a 76 px box, 1.5 diameters.
    "$bin" fewshot --micrographs "$sim/micrographs/*.mrc" --labels "$sim/labels.csv" --box 76 \
        --shots 10,30 --trials 5 --archs small --weights "small=$backbone" \
        --variants "${VARIANTS:-scratch,pretrained}" --out "$out/fewshot_$snr"
done
