#!/usr/bin/env bash
# Meta-trains the three learned optimizers with the recipes their built-in weights came from (seed 0), one
# process per kind with one thread each, and copies each run's best validated weights to DEST/KIND.safetensors.
#
#   mlp recipe (LSTM, Mnemosyne-C): the mlp family (Fashion-MNIST at 14x14, 1-2 hidden layers of 16-64 units),
#     first-order meta-gradients, 600 iterations, validation on 3 held-out tasks x 100 steps, best by the area
#     under the log-loss curve.
#   mlp+vit recipe (Mnemosyne-T): half MLPs at 28x28 with hidden widths 64/128/192, half tiny ViTs (see
#     bench/common/tasks.c), second-order meta-gradients, 150 iterations, validation on 4 held-out tasks x 300
#     steps every 25 iterations, best by the final validation loss (--select-final).
#   Both: B = 4 tasks, K = 20 steps per truncation, log meta-loss, clip 1, Adam 1e-3 on the weights, horizons
#   100-1000.
#
#   bench/train_learned_optimizers.sh [DEST] [KIND...]     (defaults: meta_runs/shipped, all three)
#
# The runs go to meta_runs/KIND (start from an empty one: an existing run there is resumed, exactly, from its
# last checkpoint). Progress: tail -f meta_runs/KIND.log. At most JOBS runs at once (default 2: a second-order
# run on the wide MLPs holds ~12 GB). Wall times are in bench/README.md. Copy DEST/KIND.safetensors to
# optim/pretrained/ and rebuild to ship new weights.
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

recipe() { # the options of KIND's recipe
    case "$1" in
    mnemosyne-t)
        echo --family mlp+vit --image-size 28 --widths 64,128,192 --second-order --iterations 150 \
            --checkpoint-every 25 --val-every 25 --val-tasks 4 --val-steps 300 --select-final ;;
    lstm | mnemosyne-c)
        echo --family mlp --image-size 14 --iterations 600 --checkpoint-every 50 --val-every 100 --val-tasks 3 \
            --val-steps 100 ;;
    *) echo "unknown kind $1 (lstm, mnemosyne-c, mnemosyne-t)" >&2; exit 2 ;;
    esac
}

status=0
running=0
for kind in "${KINDS[@]}"; do
    opts=$(recipe "$kind")
    if [ "$running" -ge "$JOBS" ]; then
        wait -n || status=1
        running=$((running - 1))
    fi
    resume=()
    [ -f "meta_runs/$kind/resume/trainer.safetensors" ] && resume=(--resume)
    # shellcheck disable=SC2086 # opts is a list of options
    "$BIN" --optimizer "$kind" $opts --threads 1 --seed 0 --out "meta_runs/$kind" "${resume[@]}" \
        >> "meta_runs/$kind.log" 2>&1 &
    running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
    wait -n || status=1
    running=$((running - 1))
done
for kind in "${KINDS[@]}"; do
    if [ -f "meta_runs/$kind/optimizer_best.safetensors" ]; then
        cp "meta_runs/$kind/optimizer_best.safetensors" "$DEST/$kind.safetensors"
        echo "$DEST/$kind.safetensors ($(stat -c %s "$DEST/$kind.safetensors") bytes)"
    fi
done
exit $status
