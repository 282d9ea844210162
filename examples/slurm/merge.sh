#!/bin/bash
# Joins the array's shards into what one prune run would have written: the pruned pick files,
# scores.csv, the summary and the report. submit.sh queues it to start once every task succeeded.
#SBATCH --job-name=cryoprune-merge
#SBATCH --cpus-per-task=2
#SBATCH --mem=4G
#SBATCH --time=00:30:00
#SBATCH --output=cryoprune_merge_%j.log
set -euo pipefail

SHARDS_DIR=${SHARDS_DIR:-cryoprune_shards}
OUT=${OUT:-pruned}
CRYOPRUNE=${CRYOPRUNE:-cryoprune}

"$CRYOPRUNE" merge --in "$SHARDS_DIR"/* --out "$OUT" \
    --scores "$OUT.scores.csv" --report "$OUT.report.html"
