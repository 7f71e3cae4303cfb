#!/usr/bin/env bash
# Meta-trains the three learned optimizers with the one recipe their built-in weights came from (seed 0), one
# process per kind with one thread each, and copies each run's best validated weights to DEST/KIND.safetensors.
#
#   The recipe (the same tasks, unroll and budget for all three, so the comparison is fair): the mlp+vit family
#   -- half MLPs on Fashion-MNIST at 28x28 with 1-2 hidden layers of 64/128/192 units, half tiny ViTs (see
#   bench/common/tasks.c) -- B = 4 tasks, K = 20 steps per truncation, second-order meta-gradients, log
#   meta-loss, clip 1, Adam 3e-4 on the weights, 150 iterations, horizons 100-1000; validation on 4 held-out
#   tasks x 300 steps every 25 iterations, the best by the final validation loss (--select-final).
#
#   bench/train_learned_optimizers.sh [DEST] [KIND...]     (defaults: meta_runs/shipped, all three)
#
# STAGE=pes runs the second stage instead, from DEST/KIND.safetensors (the first stage's weights): 100x the
# inner steps on longer runs, with PES -- the mlp+vit+bert family, widths 64/128/192, B = 4, K = 20,
# 2 antithetic pairs, sigma 0.01, horizons log-uniform in 100-3000, Adam 1e-4, 3750 iterations (about 1.2M
# inner steps of the tasks, 2.5-4 hours on one thread), validation every 50 iterations, the best kept.
# Its runs go to meta_runs/pes_KIND; the built-in Mnemosyne-T is this stage's (seed 1).
#
# The runs go to meta_runs/KIND (start from an empty one: an existing run there is resumed, exactly, from its
# last checkpoint). Progress: tail -f meta_runs/KIND.log. At most JOBS runs at once (default 2; the default order
# runs Mnemosyne-T and the LSTM together, then Mnemosyne-C). Peak memory with the optimizer steps recomputed in
# the backward pass (meta_train's default): LSTM 7.3 GB, Mnemosyne-C 9.6 GB, Mnemosyne-T under 12 GB, so two runs
# fit in 24 GB. Wall times are in bench/README.md. Copy DEST/KIND.safetensors to lopt/pretrained/ and rebuild to
# ship new weights.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${META_TRAIN:-build/release/bench/meta_train}
DEST=${1:-meta_runs/shipped}
shift || true
KINDS=("$@")
[ ${#KINDS[@]} -gt 0 ] || KINDS=(mnemosyne-t lstm mnemosyne-c)
JOBS=${JOBS:-2}
[ -x "$BIN" ] || { echo "no $BIN: build it first (ninja), or set META_TRAIN" >&2; exit 1; }
mkdir -p meta_runs "$DEST"

RECIPE=(--family mlp+vit --image-size 28 --widths "64,128,192" --second-order --meta-lr 3e-4 --iterations 150
    --checkpoint-every 25 --val-every 25 --val-tasks 4 --val-steps 300 --select-final)
STAGE=${STAGE:-tbptt}
SEED=0
PREFIX=
if [ "$STAGE" = pes ]; then
    RECIPE=(--family mlp+vit+bert --image-size 28 --widths "64,128,192" --tasks 4 --unroll 20 --estimator pes
        --pairs 2 --sigma 0.01 --horizon log-uniform --horizon-min 100 --horizon-max 3000 --meta-lr 1e-4
        --iterations 3750 --checkpoint-every 10 --val-every 50 --val-tasks 4 --val-steps 300 --select-final)
    SEED=1
    PREFIX=pes_
elif [ "$STAGE" != tbptt ]; then
    echo "STAGE must be tbptt or pes" >&2
    exit 2
fi

status=0
running=0
wait_all() {
    while [ "$running" -gt 0 ]; do
        wait -n || status=1
        running=$((running - 1))
    done
}
for kind in "${KINDS[@]}"; do
    case "$kind" in
    lstm | mnemosyne-c | mnemosyne-t) ;;
    *) echo "unknown kind $kind (lstm, mnemosyne-c, mnemosyne-t)" >&2; exit 2 ;;
    esac
    if [ "$running" -ge "$JOBS" ]; then
        wait -n || status=1
        running=$((running - 1))
    fi
    run=meta_runs/$PREFIX$kind
    extra=()
    if [ -f "$run/resume/trainer.safetensors" ]; then
        extra=(--resume)
    elif [ "$STAGE" = pes ]; then
        [ -f "$DEST/$kind.safetensors" ] || { echo "STAGE=pes needs $DEST/$kind.safetensors (the first stage)" >&2; exit 1; }
        extra=(--init "$DEST/$kind.safetensors")
    fi
    "$BIN" --optimizer "$kind" "${RECIPE[@]}" --threads 1 --seed "$SEED" --out "$run" "${extra[@]}" \
        >> "$run.log" 2>&1 &
    running=$((running + 1))
done
wait_all
for kind in "${KINDS[@]}"; do
    if [ -f "meta_runs/$PREFIX$kind/optimizer_best.safetensors" ]; then
        cp "meta_runs/$PREFIX$kind/optimizer_best.safetensors" "$DEST/$kind.safetensors"
        echo "$DEST/$kind.safetensors ($(stat -c %s "$DEST/$kind.safetensors") bytes)"
    fi
done
exit $status
