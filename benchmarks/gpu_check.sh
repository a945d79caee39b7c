#!/usr/bin/env bash
# The GPU figures of issue 20 in one short prepared run (about 6-8 minutes on one H100; each part has its own time
# limit, and the whole is bounded by GPU_CHECK_BUDGET seconds, default 480):
#   1. benchmarks/gpu_train.py   the 1b shape at 8,192 tokens: document-masked FlexAttention step against plain
#                                causal and against transformers' Llama; tokens/s and MFU (+ the exactness check)
#   2. benchmarks/gpu_embed.py   the semantic-dedup encoder's docs/s against sentence-transformers on the same GPU
#   3. benchmarks/proxy_bench.py one whole mix-optimizer proxy (preset `proxy`, 1,048,576 tokens) on CUDA
#
# Usage:  bash benchmarks/gpu_check.sh [OUTPUT_DIR]     (default: $OUT if set, else benchmarks/results/gpu)
# Writes OUTPUT_DIR/{gpu_train,gpu_embed,proxy}.txt (each benchmark's whole output) and OUTPUT_DIR/summary.txt.
# Without a CUDA GPU it measures nothing and exits 3 with a one-line message (no figure is ever simulated).
# Exit status: 0 every part finished; 1 a part failed or ran out of time (the others still ran); 3 no CUDA GPU.
set -uo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
OUTPUT=${1:-${OUT:-benchmarks/results/gpu}}
BUDGET=${GPU_CHECK_BUDGET:-480}
mkdir -p "$OUTPUT"

if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: no CUDA GPU visible to $PYTHON (torch.cuda.is_available() is False): nothing measured" \
        | tee "$OUTPUT/summary.txt"
    exit 3
fi

started=$SECONDS
status=0
{
    echo "gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    "$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name())'
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
} | tee "$OUTPUT/summary.txt"

# run NAME LIMIT_SECONDS COMMAND...: one part, its output kept whole, its last lines in the summary
run() {
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET - (SECONDS - started)))
    ((limit > left)) && limit=$left
    if ((limit < 30)); then
        echo "== $name: skipped, the ${BUDGET}s budget is spent" | tee -a "$OUTPUT/summary.txt"
        status=1
        return
    fi
    echo "== $name (limit ${limit}s): $*" | tee -a "$OUTPUT/summary.txt"
    local part_started=$SECONDS code
    timeout --signal=INT --kill-after=15 "$limit" "$@" >"$OUTPUT/$name.txt" 2>&1
    code=$?
    tail -n 12 "$OUTPUT/$name.txt" | tee -a "$OUTPUT/summary.txt"
    echo "== $name: exit $code after $((SECONDS - part_started))s" | tee -a "$OUTPUT/summary.txt"
    ((code == 0)) || status=1
}

run gpu_train 240 "$PYTHON" benchmarks/gpu_train.py --warmup 2 --steps 8
run gpu_embed 150 "$PYTHON" benchmarks/gpu_embed.py --docs 20000 --repeats 2
run proxy 150 "$PYTHON" benchmarks/proxy_bench.py --steps 0 --proxy-tokens 1048576 --device cuda

echo "gpu_check: total $((SECONDS - started))s, exit $status" | tee -a "$OUTPUT/summary.txt"
exit $status
