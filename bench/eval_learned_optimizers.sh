#!/usr/bin/env bash
# Evaluates the learned optimizers (LSTM, Mnemosyne-C, Mnemosyne-T; untuned, their built-in weights unless
# LOPT_DIR holds KIND.safetensors) against SGD and Adam with tuned learning-rate grids. SGD and Adam pick
# their rate from a 4-point grid by seed 0's final train loss; the chosen rate then runs on every seed.
#
# The runs (task, steps, seeds), each a held-out task never trained on while meta-training:
#   - the three reference tasks at 300 and at 3,000 steps: an MLP 784-256-256-10 (ReLU) on Fashion-MNIST,
#     a ViT (dim 64, depth 2, heads 2) on Fashion-MNIST, BERT-tiny masked LM on the fortunes;
#   - architectures unlike the meta-training families, 3,000 steps: a wider MLP (784-1024-10, tanh), a
#     deeper MLP (784-128-128-128-128-10, GELU), the full-size vit-fm ViT (dim 128, depth 6, heads 4,
#     MLP 512, batch 64; 1 seed, its runs are long) and BERT-mini masked LM (1 seed).
#
#   bench/eval_learned_optimizers.sh [DEST] [RUN...]     (default DEST bench/results/learned_optimizers)
#
# RUN selects runs by name (e.g. mlp_3000 vit-fm_3000); all by default. A run whose results.json exists is
# skipped, so an interrupted evaluation resumes where it stopped. At most JOBS runs at once (default 2, one
# thread each). Progress: tail -f DEST/eval/NAME.log. Writes DEST/eval.md (all tables) and DEST/eval.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${EVAL_OPTIMIZERS:-build/release/bench/eval_optimizers}
DEST=${1:-bench/results/learned_optimizers}
shift || true
ONLY=("$@")
JOBS=${JOBS:-2}
LOPT_DIR=${LOPT_DIR:-}
[ -x "$BIN" ] || { echo "no $BIN: build it first (ninja), or set EVAL_OPTIMIZERS" >&2; exit 1; }

# name task steps seeds
RUNS=(
    "mlp_300 mlp:784-256-256-10:relu 300 3"
    "vit_300 vit:fm:dim64:depth2:heads2 300 3"
    "bert-tiny_300 bert:tiny:mlm 300 3"
    "mlp_3000 mlp:784-256-256-10:relu 3000 3"
    "vit_3000 vit:fm:dim64:depth2:heads2 3000 3"
    "bert-tiny_3000 bert:tiny:mlm 3000 3"
    "mlp-wide-tanh_3000 mlp:784-1024-10:tanh 3000 3"
    "mlp-deep-gelu_3000 mlp:784-128-128-128-128-10:gelu 3000 3"
    "vit-fm_3000 vit:fm:dim128:depth6:heads4:mlp512:patch4:b64 3000 1"
    "bert-mini_3000 bert:mini:mlm 3000 1"
)

learned=()
for kind in lstm mnemosyne-c mnemosyne-t; do
    if [ -n "$LOPT_DIR" ] && [ -f "$LOPT_DIR/$kind.safetensors" ]; then learned+=("$kind:$LOPT_DIR/$kind.safetensors")
    else learned+=("$kind"); fi
done
OPTIMIZERS="sgd,adam,$(IFS=,; echo "${learned[*]}")"

selected() {
    [ ${#ONLY[@]} -eq 0 ] && return 0
    for o in "${ONLY[@]}"; do [ "$o" = "$1" ] && return 0; done
    return 1
}

mkdir -p "$DEST/eval"
status=0
running=0
for run in "${RUNS[@]}"; do
    read -r name task steps seeds <<< "$run"
    selected "$name" || continue
    [ -f "$DEST/eval/$name/results.json" ] && { echo "$name: done (results.json exists)"; continue; }
    if [ "$running" -ge "$JOBS" ]; then
        wait -n || status=1
        running=$((running - 1))
    fi
    echo "$name: $task, $steps steps, $seeds seed(s)"
    "$BIN" --tasks "$task" --optimizers "$OPTIMIZERS" --grid --seeds "$seeds" --grid-seeds 1 \
        --grid-sgd 0.03,0.1,0.3,1 --grid-adam 0.0003,0.001,0.003,0.01 --steps "$steps" --threads 1 \
        --out "$DEST/eval/$name.tmp" --work "$DEST/eval/cache" --json "$DEST/eval/$name.tmp/results.json" \
        > "$DEST/eval/$name.log" 2>&1 && rm -rf "$DEST/eval/$name" && mv "$DEST/eval/$name.tmp" "$DEST/eval/$name" &
    running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
    wait -n || status=1
    running=$((running - 1))
done

{
    echo "# Learned optimizers vs tuned SGD and Adam"
    echo
    echo "Learned optimizers untuned; SGD and Adam at the best rate of a 4-point grid (seed 0's final train loss)."
    for run in "${RUNS[@]}"; do
        read -r name task steps seeds <<< "$run"
        [ -f "$DEST/eval/$name/results.md" ] || continue
        echo
        echo "## $name ($steps steps, $seeds seed$([ "$seeds" = 1 ] || echo s))"
        sed '1{/^## /d}' "$DEST/eval/$name/results.md"
    done
} > "$DEST/eval.md"
python3 - "$DEST" "${RUNS[@]}" <<'PY'
import json, os, sys
dest, runs = sys.argv[1], sys.argv[2:]
merged = {}
for run in runs:
    name = run.split()[0]
    path = os.path.join(dest, "eval", name, "results.json")
    if os.path.exists(path):
        with open(path) as f:
            merged[name] = json.load(f)
with open(os.path.join(dest, "eval.json"), "w") as f:
    json.dump(merged, f, indent=1)
PY
echo "wrote $DEST/eval.md and $DEST/eval.json"
exit $status
