#!/usr/bin/env bash
# Evaluates the built-in learned optimizers (LSTM, Mnemosyne-C, Mnemosyne-T) against SGD and Adam with
# tuned learning-rate grids on the three held-out tasks of issue 4 / spec/meta_training.md: an MLP
# 784-256-256-10 (ReLU) on Fashion-MNIST, a ViT (dim 64, depth 2, heads 2) on Fashion-MNIST and BERT-tiny
# masked LM on the fortunes corpus, 3 seeds, STEPS steps each. The learning rates of SGD and Adam are chosen
# from 4-point grids by seed 0's final train loss; the chosen rate then runs on all 3 seeds. One process per
# task, one thread each, all three at once; then merges the tables into DEST/eval.md and the JSON into
# DEST/eval.json.
#
#   bench/eval_learned_optimizers.sh [STEPS] [DEST]        (defaults: 300, bench/results/learned_optimizers)
#
# Progress: tail -f DEST/eval_TASK.log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${EVAL_OPTIMIZERS:-build/release/bench/eval_optimizers}
STEPS=${1:-300}
DEST=${2:-bench/results/learned_optimizers}
[ -x "$BIN" ] || { echo "no $BIN: build it first (ninja), or set EVAL_OPTIMIZERS" >&2; exit 1; }
TASKS=(mlp:784-256-256-10:relu vit:fm:dim64:depth2:heads2 bert:tiny:mlm)
mkdir -p "$DEST"
pids=()
for task in "${TASKS[@]}"; do
    slug=${task//:/_}
    "$BIN" --tasks "$task" --optimizers sgd,adam,lstm,mnemosyne-c,mnemosyne-t --grid --seeds 3 \
        --grid-seeds 1 --grid-sgd 0.03,0.1,0.3,1 --grid-adam 0.0003,0.001,0.003,0.01 \
        --steps "$STEPS" --threads 1 --out "$DEST/eval/$slug" --work "$DEST/eval/cache" \
        --json "$DEST/eval/$slug/results.json" > "$DEST/eval_$slug.log" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
{
    echo "# Learned optimizers vs tuned SGD and Adam ($STEPS steps, 3 seeds)"
    for task in "${TASKS[@]}"; do
        slug=${task//:/_}
        [ -f "$DEST/eval/$slug/results.md" ] && sed '1{/^## /d}' "$DEST/eval/$slug/results.md"
    done
} > "$DEST/eval.md"
python3 - "$DEST" "${TASKS[@]}" <<'PY'
import json, os, sys
dest, tasks = sys.argv[1], sys.argv[2:]
merged = {}
for t in tasks:
    path = os.path.join(dest, "eval", t.replace(":", "_"), "results.json")
    if os.path.exists(path):
        with open(path) as f:
            merged.update(json.load(f))
with open(os.path.join(dest, "eval.json"), "w") as f:
    json.dump(merged, f, indent=1)
PY
echo "wrote $DEST/eval.md and $DEST/eval.json"
exit $status
