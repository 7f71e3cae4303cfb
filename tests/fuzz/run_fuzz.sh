#!/usr/bin/env bash
# Builds every libFuzzer target in tests/fuzz with clang (ASan + UBSan) and runs
# each for SECONDS_PER_TARGET: 30 s in CI, 900 s (15 minutes) or more for a long run.
# Usage:
#   tests/fuzz/run_fuzz.sh [SECONDS_PER_TARGET] [OUT_DIR] [TARGET...]   (defaults: 30, /tmp/mnemo-fuzz, all)
# The inputs in tests/fuzz/regress/TARGET/ (ones that once found a bug) start each corpus, so
# every run replays them first. The corpus in OUT_DIR grows across runs.
# Needs clang, libclang-rt-14-dev and libomp-dev (CI installs them).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
secs="${1:-30}"
out="${2:-/tmp/mnemo-fuzz}"
shift $(($# < 2 ? $# : 2))
only=("$@")
mkdir -p "$out/obj"
cflags="-std=c11 -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fopenmp -D_GNU_SOURCE -I$root -w"
objs=()
for f in "$root"/tensor/*.c "$root"/data/*.c "$root"/autograd/*.c "$root"/nn/*.c "$root"/models/*.c; do
    o="$out/obj/$(basename "$(dirname "$f")")_$(basename "$f" .c).o"
    extra=""
    case "$f" in
        *_avx512.c) extra="-mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 -mfma" ;;
        *_avx2.c) extra="-mavx2 -mfma" ;;
    esac
    # shellcheck disable=SC2086
    clang $cflags $extra -c "$f" -o "$o"
    objs+=("$o")
done
status=0
for src in "$root"/tests/fuzz/fuzz_*.c; do
    name="$(basename "$src" .c)"
    if [ ${#only[@]} -gt 0 ] && [[ ! " ${only[*]} " =~ " ${name#fuzz_} " ]]; then continue; fi
    clang -std=c11 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fopenmp \
        -D_GNU_SOURCE -I"$root" "$src" "${objs[@]}" -lsleef -ljansson -lutf8proc -lz -lm -o "$out/$name"
    mkdir -p "$out/corpus_$name"
    # a valid starting point helps a short run get past the header checks
    case "$name" in
        fuzz_safetensors)
            python3 - "$out/corpus_$name" <<'PY'
import struct, sys
d = sys.argv[1]
for name, hdr, data in [("seed_empty", b"{}      ", b""),
                        ("seed_tensor", b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', struct.pack("<2f", 1, 2))]:
    open(f"{d}/{name}", "wb").write(struct.pack("<Q", len(hdr)) + hdr + data)
PY
            ;;
        fuzz_vocab) printf '[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n##s\n' > "$out/corpus_$name/seed_vocab" ;;
        fuzz_config_model) # the golden ViT and BERT directories as (family, config length, config, weights)
            python3 - "$out/corpus_$name" "$root/tests/golden" <<'PY'
import struct, sys
d, g = sys.argv[1], sys.argv[2]
for fam, sub in [(0, "vit"), (1, "bert_cls")]:
    cfg = open(f"{g}/{sub}/config.json", "rb").read()
    st = open(f"{g}/{sub}/model.safetensors", "rb").read()
    open(f"{d}/seed_{sub}", "wb").write(bytes([fam]) + struct.pack("<H", len(cfg)) + cfg + st)
PY
            ;;
    esac
    [ -d "$root/tests/fuzz/regress/$name" ] && cp "$root/tests/fuzz/regress/$name"/* "$out/corpus_$name/"
    max_len=4096
    [ "$name" = fuzz_config_model ] && max_len=65536
    dict=""
    [ -f "$root/tests/fuzz/${name#fuzz_}.dict" ] && dict="-dict=$root/tests/fuzz/${name#fuzz_}.dict"
    echo "==> $name for ${secs}s"
    # shellcheck disable=SC2086
    if (cd "$out" && ./"$name" -max_total_time="$secs" -max_len="$max_len" -rss_limit_mb=4096 -print_final_stats=1 \
            $dict "corpus_$name" 2>&1 | tail -n 12); then
        echo "$name: no crash in ${secs}s"
    else
        echo "$name: FAILED (see $out for crash-* inputs)"
        status=1
    fi
done
exit $status
