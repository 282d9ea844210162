#!/bin/bash
# One task of a SLURM array job: prunes every N-th micrograph (N = the array's size) into
# $SHARDS_DIR/<task id>/. Submit with submit.sh, which also queues the merge after it.
# Requeued or rerun tasks resume: --skip-existing keeps what a task already finished.
#SBATCH --job-name=cryoprune
#SBATCH --cpus-per-task=8
#SBATCH --mem=8G
#SBATCH --time=02:00:00
#SBATCH --output=cryoprune_%A_%a.log
set -euo pipefail

# Edit these, or set them in the environment before submitting (sbatch passes it on).
MODEL=${MODEL:-cryoprune_model}
MICROGRAPHS=${MICROGRAPHS:-'MotionCorr/job002/Movies/*.mrc'}
PICKS=${PICKS:-AutoPick/job006/}
SHARDS_DIR=${SHARDS_DIR:-cryoprune_shards}
CRYOPRUNE=${CRYOPRUNE:-cryoprune}

"$CRYOPRUNE" prune --model "$MODEL" --micrographs "$MICROGRAPHS" --picks "$PICKS" \
    --shard "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT" \
    --out "$SHARDS_DIR/$SLURM_ARRAY_TASK_ID" \
    --threads "${SLURM_CPUS_PER_TASK:-0}" --skip-existing
