#!/usr/bin/env bash
# Every CUDA path of audioret in one command and one table, so that the first GPU session records them all:
# training steps per audio encoder (CNN10, PaSST, an hf: AST) with bf16 autocast and torch.compile off/on, the
# GPU-resident data path with its augmentations on CUDA, MarianMT back-translation on CUDA, and a short training
# run scored on CUDA and on the CPU. Everything is built offline (random-init models, a synthetic cache).
#
#   bash benchmarks/gpu_check.sh                 # on the GPU machine: under 8 minutes
#   bash benchmarks/gpu_check.sh --cpu-smoke     # anywhere: the same paths, tiny, on the CPU, about a minute
#
# Environment: PYTHON (default python3) must import torch, transformers, h5py, xxhash, click, tqdm, sentencepiece
# and tomli_w; no audio decoder, WordNet or hub access is used. Where tomli_w is missing (a stock CUDA PyTorch
# image) and the machine is offline, bring its pure-Python wheel: `pip download --no-deps -d .whl tomli-w==1.2.0`
# beforehand, then `pip install --no-index --no-deps --target /tmp/site .whl/*.whl` and PYTHONPATH=/tmp/site.
# Logs: one file per section in GPU_CHECK_LOGS (default: $OUT when set, else a new temporary folder).
# Exit: 0 every section ok, 3 some encoder unavailable (e.g. not built yet), 1 a section failed or timed out.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
MODE=cuda
case "${1:-}" in
    --cpu-smoke) MODE=cpu ;;
    "") ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "error: unknown option ${1} (use --cpu-smoke or nothing)" >&2; exit 2 ;;
esac
LOGS=${GPU_CHECK_LOGS:-${OUT:-$(mktemp -d -t gpu-check-XXXXXX)}}
WORK=$(mktemp -d -t gpu-check-work-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$LOGS"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
BUDGET=450                          # seconds for all sections; each also has its own limit
if [ "$MODE" = cpu ]; then
    export OMP_NUM_THREADS=1        # a smoke test of the paths, not a timing: one thread is fastest on shared CPUs
    BUDGET=600                      # a cap, not a target: shared CI machines can be slow
fi
START=$(date +%s)
SUMMARY="$WORK/summary.tsv"
: >"$SUMMARY"

# run NAME LIMIT_S CMD...: one section under a time limit; its output is shown and kept, and a summary row
# (status, seconds, its last output line) is added. Exit 3 from a section means partial (an encoder unavailable).
run() {
    local name=$1 limit=$2 left rc t0 ms status last
    shift 2
    left=$((BUDGET - ($(date +%s) - START)))
    [ "$left" -lt "$limit" ] && limit=$left
    echo "=== $name (limit ${limit} s)"
    if [ "$limit" -le 5 ]; then
        printf '%s\t%s\t%s\t%s\n' "$name" "SKIPPED" "0" "no time left in the ${BUDGET} s budget" >>"$SUMMARY"
        return
    fi
    t0=$(date +%s%N)
    timeout --kill-after=10 "$limit" "$@" >"$LOGS/$name.log" 2>&1
    rc=$?
    ms=$((($(date +%s%N) - t0) / 1000000))
    cat "$LOGS/$name.log"
    case $rc in
        0) status=ok ;;
        3) status=partial ;;
        124|137) status=TIMEOUT ;;
        *) status="FAILED($rc)" ;;
    esac
    last=$(grep -v '^[[:space:]]*$' "$LOGS/$name.log" | tail -n 1 | cut -c1-150)
    printf '%s\t%s\t%d.%d\t%s\n' "$name" "$status" $((ms / 1000)) $((ms % 1000 / 100)) "$last" >>"$SUMMARY"
}

# has_status REGEX [SECTION]: whether a summary row (of SECTION, default any) has a status matching REGEX.
has_status() {
    awk -F'\t' -v re="$1" -v s="${2:-}" '(s == "" || $1 == s) && $2 ~ re {found = 1} END {exit !found}' "$SUMMARY"
}

# summary: the table of every section run so far, and the exit code it implies.
summary() {
    echo
    echo "=== gpu_check ($MODE) · $(($(date +%s) - START)) s · logs in $LOGS"
    printf '%-14s %-10s %8s  %s\n' section status seconds "last line of its output"
    while IFS=$'\t' read -r name status secs last; do
        printf '%-14s %-10s %8s  %s\n' "$name" "$status" "$secs" "$last"
    done <"$SUMMARY"
    cp "$SUMMARY" "$LOGS/summary.tsv"
    if has_status '^(FAILED|TIMEOUT|SKIPPED)'; then exit 1; fi
    if has_status '^partial$'; then exit 3; fi
    exit 0
}

IMPORTS="import torch, transformers, h5py, xxhash, click, tqdm, sentencepiece, tomli_w"
FX="$WORK/fixtures"
if [ "$MODE" = cuda ]; then
    run env 30 "$PY" -c "$IMPORTS
print('torch', torch.__version__, '· transformers', transformers.__version__, '·', torch.cuda.get_device_name(0))"
    has_status '^ok$' env || { echo "error: $PY cannot run the check (see env above)" >&2; summary; }
    run fixtures 60 "$PY" benchmarks/gpu_check_parts.py fixtures --out "$FX" --seconds 10
    run encoder-steps 270 "$PY" benchmarks/encoder_steps.py cnn10 passt hf:random-ast --device cuda --batch 16 \
        --steps 5 --warmup 2 --json "$LOGS/encoder-steps.json"
    run data-path 60 "$PY" benchmarks/train_step.py --cache "$FX/cache" --name gpucheck --device cuda --width 1 \
        --batch 30 --steps 8 --seconds 10 --workers 4 --text-model "$FX/text-tiny"
    run augment 40 "$PY" benchmarks/augment.py --device cuda --repeats 20
    run marian 60 "$PY" benchmarks/gpu_check_parts.py marian --model "$FX/marian" --device cuda
    run train-eval 120 "$PY" benchmarks/gpu_check_parts.py eval --fixtures "$FX" --device cuda --work "$WORK/run"
else
    run env 30 "$PY" -c "$IMPORTS
print('torch', torch.__version__, '· transformers', transformers.__version__, '· cpu smoke')"
    has_status '^ok$' env || { echo "error: $PY cannot run the check (see env above)" >&2; summary; }
    run fixtures 60 "$PY" benchmarks/gpu_check_parts.py fixtures --out "$FX" --seconds 2
    run encoder-steps 90 "$PY" benchmarks/encoder_steps.py cnn10 passt hf:random-ast --tiny --device cpu --batch 4 \
        --seconds 2 --steps 1 --warmup 1 --json "$LOGS/encoder-steps.json"
    run data-path 60 "$PY" benchmarks/train_step.py --cache "$FX/cache" --name gpucheck --device cpu --width 0.125 \
        --batch 8 --steps 2 --warmup 1 --seconds 2 --workers 1 --text-model "$FX/text-tiny"
    run augment 30 "$PY" benchmarks/augment.py --device cpu --batch 4 --frames 200 --width 0.125 --repeats 1
    run marian 30 "$PY" benchmarks/gpu_check_parts.py marian --model "$FX/marian" --device cpu --repeat 1
    run train-eval 90 "$PY" benchmarks/gpu_check_parts.py eval --fixtures "$FX" --device cpu --work "$WORK/run"
fi
summary
