#!/usr/bin/env bash
# Does deciding at the dataset's share of particles (`prune --prior dataset`, the default) keep
# the particles a balanced few-shot model would throw away? For each set, trains the default
# network on K labels per class for three seeds, prunes the test picks with `--prior training`
# and `--prior dataset`, and scores the kept picks against the labels:
#   EMPIAR-10017 Topaz and crYOLO picks (K = 30; train on 14_33_35 and 15_17_31, test on
#   15_30_21 and 15_33_42), and micrographs simulated from RELION's ref_model under the
#   realistic and hard presets (K = 15; train on sim_0001-0005, test on sim_0006-0010).
#
#   crates/cryoprune/benches/prune_prior.sh [OUT_DIR]     # writes OUT_DIR/prune_prior.csv
#
# SETS picks the sets (default "empiar sim"); "aspire" adds the micrographs of another
# simulator that aspire_fewshot.sh made in the folder ASPIRE names (K = 15; train on
# asp_0001-0005, test on asp_0006-0010):
#   SETS=aspire ASPIRE=aspire/ crates/cryoprune/benches/prune_prior.sh prune_aspire/
# PICKERS picks EMPIAR-10017's pickers (default "topaz crYOLO"; DeepPicker's are the third):
#   SETS=empiar PICKERS=deepPicker crates/cryoprune/benches/prune_prior.sh prune_deeppicker/
#
# Needs a release build (cargo build --release) and ../shared/data beside the checkout.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
out="${1:-prune_prior}"
bin="${CRYOPRUNE:-$root/target/release/cryoprune}"
data="$root/../shared/data"
e="$data/empiar-10017"
m="$e/micrographs/Falcon_2012_06_12"
mkdir -p "$out"
table="$out/prune_prior.csv"
echo "set,seed,prior,assumed_share,macro_f1,particles_kept,junk_removed" > "$table"

# Scores a `--scores` CSV against labels, skipping the micrographs named.
score() {
    python3 "$root/crates/cryoprune/benches/score_kept.py" "$@"
}

# run NAME LABELS SHOTS BOX SKIP TRAIN_MICS TEST_MICS PICKS
run() {
    local name=$1 labels=$2 shots=$3 box=$4 skip=$5 train_mics=$6 test_mics=$7 picks=$8
    for seed in 0 1 2; do
        local model="$out/$name-$seed"
        # shellcheck disable=SC2086
        "$bin" train --micrographs $train_mics --labels "$labels" --box "$box" --shots "$shots" \
            --seed "$seed" --out "$model" > "$model.log" 2>&1
        for prior in training dataset; do
            # shellcheck disable=SC2086
            "$bin" prune --model "$model" --micrographs $test_mics --picks "$picks" \
                --out "$model-$prior" --scores "$model-$prior.csv" --prior "$prior" \
                > "$model-$prior.log" 2>&1
            share=$(python3 -c "import json,sys; p=json.load(open(sys.argv[1]))['prior']; print('' if p is None else round(p['assumed'],3))" "$model-$prior/prune_summary.json")
            echo "$name,$seed,$prior,$share,$(score "$labels" "$model-$prior.csv" "$skip")" >> "$table"
        done
    done
}

sets=" ${SETS:-empiar sim} "
[[ $sets == *" empiar "* ]] && for picker in ${PICKERS:-topaz crYOLO}; do
    picks="$out/picks_$picker"
    mkdir -p "$picks"
    cp "$e/picks/$picker/"*15_30_21* "$e/picks/$picker/"*15_33_42* "$picks/"
    run "empiar_$picker" "$e/labels/$picker.csv" 30 180 "" \
        "$m-14_33_35_0.jpg $m-15_17_31_0.jpg" "$m-15_30_21_0.jpg $m-15_33_42_0.jpg" "$picks"
done

[[ $sets == *" sim "* ]] && for preset in realistic hard; do
    sim="$out/sim_$preset"
    "$root/crates/cryoprune/benches/sim_ref_model.sh" "$preset" "$sim"
    run "sim_$preset" "$sim/labels.csv" 15 76 "sim_0001,sim_0002,sim_0003,sim_0004,sim_0005" \
        "$sim/micrographs/sim_000[1-5].mrc" \
        "$sim/micrographs/sim_000[6-9].mrc $sim/micrographs/sim_0010.mrc" "$sim/picks.star"
done
[[ $sets == *" aspire "* ]] && for snr in 0.05 0.1; do
    sim="$ASPIRE/sim_$snr"
    run "aspire_$snr" "$sim/labels.csv" 15 76 "asp_0001,asp_0002,asp_0003,asp_0004,asp_0005" \
        "$sim/micrographs/asp_000[1-5].mrc" \
        "$sim/micrographs/asp_000[6-9].mrc $sim/micrographs/asp_0010.mrc" "$sim/labels.csv"
done
column -s, -t "$table"
