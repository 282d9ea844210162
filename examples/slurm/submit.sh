#!/bin/bash
# Prunes with an array of SHARDS tasks, then merges once all of them succeeded:
#   SHARDS=16 MODEL=cryoprune_model bash submit.sh
# Every setting of prune_array.sh and merge.sh can be given the same way.
set -euo pipefail
here=$(dirname "$0")
SHARDS=${SHARDS:-8}
array=$(sbatch --parsable --export=ALL --array=0-$((SHARDS - 1)) "$here/prune_array.sh")
array=${array%%;*} # "id;cluster" on federated clusters
sbatch --export=ALL --dependency=afterok:"$array" "$here/merge.sh"
