#!/usr/bin/env bash
# The meta-training benchmark: inner steps per second, meta-iterations per second and peak memory of the
# gradient estimators (truncated backprop first and second order, PES, ES) on two task families, on one
# thread, on two task threads and on two MPI ranks, plus the memory of PES and ES as the truncation grows
# (K = 20 and K = 200). Every run is bench/meta_train with Mnemosyne-T, B = 4 tasks, K = 20, task horizons
# of 200 steps (ES trains each task's whole horizon in one truncation), no validation; timings are its
# "iterations alone" (no checkpoint or start-up). ES on the larger family runs on one thread only, and the
# memory rows (K = 20 and 200) train one task per iteration, to keep the whole within about half an hour
# on 2 cores. A run already in DEST/rows.tsv is not repeated (delete the file to start over); the runs'
# own outputs go to DEST/runs/ (logs and checkpoints, not kept).
# Writes DEST/meta_bench.md and DEST/meta_bench.json.
#
#   bench/meta_bench.sh [ITERATIONS] [DEST]        (defaults: 2, bench/results/meta_bench)
#
# Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${META_TRAIN:-build/release/bench/meta_train}
ITERS=${1:-2}
DEST=${2:-bench/results/meta_bench}
[ -x "$BIN" ] || { echo "no $BIN: build it first (ninja), or set META_TRAIN" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1} OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
mkdir -p "$DEST/runs"
rows="$DEST/rows.tsv"
touch "$rows"

# run NAME FAMILY ESTIMATOR PARALLEL K TASKS [extra meta_train options...]
run() {
    local name=$1 family=$2 est=$3 par=$4 k=$5 tasks=$6
    shift 6
    if grep -q "^$name	" "$rows"; then echo "== $name (done)" >&2; return 0; fi
    local out="$DEST/runs/$name" launch=() threads=(--threads 1)
    case $par in
    1thread) ;;
    2threads) threads=(--threads 1 --task-threads 2) ;;
    2ranks) launch=(mpirun -np 2 --oversubscribe) ;;
    esac
    local famopts=(--family "$family")
    [ "$family" = mlp+vit ] && famopts+=(--image-size 28 --widths 64,128,192)
    local estopts=(--estimator "$est")
    case $est in
    tbptt1) estopts=(--estimator tbptt) ;;
    tbptt2) estopts=(--estimator tbptt --second-order) ;;
    pes | es) estopts+=(--pairs 2) ;;
    esac
    rm -rf "$out"
    echo "== $name" >&2
    /usr/bin/time -f "%M" -o "$out.rss" "${launch[@]}" "$BIN" --optimizer mnemosyne-t "${famopts[@]}" "${estopts[@]}" \
        --tasks "$tasks" --unroll "$k" --horizon constant --horizon-min 200 --horizon-max 200 --iterations "$ITERS" \
        --val-tasks 0 --checkpoint-every 1000000 "${threads[@]}" --out "$out" "$@" > "$out.log" 2>&1 ||
        { echo "$name failed: see $out.log" >&2; return 1; }
    # "N iterations in T s (iterations alone: S s each, ..., R inner steps/s)"
    local line per steps
    line=$(grep 'iterations alone' "$out.log" | tail -1)
    per=$(sed -E 's/.*iterations alone: ([0-9.]+) s each.*/\1/' <<< "$line")
    steps=$(sed -E 's/.* ([0-9.]+) inner steps\/s.*/\1/' <<< "$line")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$family" "$est" "$par" "$k" "$tasks" "$steps" "$per" \
        "$(cat "$out.rss")" >> "$rows"
}

for family in mlp mlp+vit; do
    for est in tbptt1 tbptt2 pes es; do
        for par in 1thread 2threads 2ranks; do
            [ "$family/$est" = mlp+vit/es ] && [ $par != 1thread ] && continue
            run "${family/+/_}_${est}_${par}" "$family" "$est" "$par" 20 4
        done
    done
done
# memory as the truncation grows: PES at K = 20 and 200; ES (whose truncation is the horizon) at 20 and 200
run mlp_vit_pes_mem_K20 mlp+vit pes 1thread 20 1
run mlp_vit_pes_mem_K200 mlp+vit pes 1thread 200 1
run mlp_vit_es_mem_T20 mlp+vit es 1thread 20 1 --horizon-min 20 --horizon-max 20
run mlp_vit_es_mem_T200 mlp+vit es 1thread 200 1

python3 - "$DEST" "$rows" <<'PY'
import json, sys
dest, rows = sys.argv[1], sys.argv[2]
recs = []
for line in open(rows):
    name, fam, est, par, k, tasks, steps, per, rss = line.rstrip("\n").split("\t")
    recs.append(dict(run=name, family=fam, estimator=est, parallel=par, K=int(k), tasks=int(tasks),
                     inner_steps_per_s=float(steps),
                     s_per_iteration=float(per), peak_rss_mb=int(rss) / 1024))
json.dump(recs, open(dest + "/meta_bench.json", "w"), indent=1)
names = {"tbptt1": "TBPTT, first order", "tbptt2": "TBPTT, second order", "pes": "PES (2 pairs)",
         "es": "ES (2 pairs, whole horizon)"}
pars = {"1thread": "1 thread", "2threads": "2 task threads", "2ranks": "2 MPI ranks"}
with open(dest + "/meta_bench.md", "w") as f:
    f.write("| family | estimator | parallel | K | tasks | inner steps/s | s per meta-iteration | peak RSS (MB, per process) |\n")
    f.write("|---|---|---|---|---|---|---|---|\n")
    for r in recs:
        f.write("| %s | %s | %s | %d | %d | %.0f | %.2f | %.0f |\n" % (
            r["family"], names[r["estimator"]], pars[r["parallel"]], r["K"], r["tasks"], r["inner_steps_per_s"],
            r["s_per_iteration"], r["peak_rss_mb"]))
print(open(dest + "/meta_bench.md").read())
PY
