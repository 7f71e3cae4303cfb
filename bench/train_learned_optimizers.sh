#!/usr/bin/env bash
# Meta-trains the three learned optimizers (LSTM, Mnemosyne-C, Mnemosyne-T) on the mlp task family with
# the settings of spec/meta_training.md (B = 4 tasks, K = 20 steps per truncation, first order, log
# meta-loss, clip 1, Adam 1e-3 on the weights, horizons 100-1000), one process per kind with one thread
# each, all three at once, and copies each run's best validated weights to DEST/KIND.safetensors.
#
#   bench/train_learned_optimizers.sh [ITERATIONS] [DEST]        (defaults: 600, meta_runs/shipped)
#
# Run it again to continue interrupted runs (each resumes exactly from meta_runs/KIND/resume, the last
# multiple of 50 iterations). Progress: tail -f meta_runs/KIND.log. The shipped weights in optim/pretrained/
# are this script's output with the defaults (seed 0): 61 minutes of wall time on the 2-core development
# machine while other jobs kept its load at 5-7 (one interruption and resume included); on an idle machine
# expect 40-50 minutes. Copy DEST/KIND.safetensors to optim/pretrained/ and rebuild to ship new weights.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${META_TRAIN:-build/release/bench/meta_train}
ITERATIONS=${1:-600}
DEST=${2:-meta_runs/shipped}
[ -x "$BIN" ] || { echo "no $BIN: build it first (ninja), or set META_TRAIN" >&2; exit 1; }
mkdir -p meta_runs "$DEST"
pids=()
for kind in lstm mnemosyne-c mnemosyne-t; do
    resume=()
    [ -f "meta_runs/$kind/resume/trainer.safetensors" ] && resume=(--resume)
    "$BIN" --optimizer "$kind" --family mlp --image-size 14 --iterations "$ITERATIONS" --threads 1 \
        --checkpoint-every 50 --val-every 100 --val-tasks 3 --val-steps 100 --out "meta_runs/$kind" \
        "${resume[@]}" >> "meta_runs/$kind.log" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for kind in lstm mnemosyne-c mnemosyne-t; do
    if [ -f "meta_runs/$kind/optimizer_best.safetensors" ]; then
        cp "meta_runs/$kind/optimizer_best.safetensors" "$DEST/$kind.safetensors"
        echo "$DEST/$kind.safetensors ($(stat -c %s "$DEST/$kind.safetensors") bytes)"
    fi
done
exit $status
