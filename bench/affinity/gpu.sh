#!/bin/bash
# Affinity benchmark on one H200: two vLLM instances, half the GPU memory each, each with its own
# gateway, a round-robin balancer in front (bench/affinity/run.py --engine urls), Llama-3-8B shape,
# conversations with ~8k-token histories; affinity off vs prefix in alternating rounds, then the
# forward hop on its own. Not run yet: see bench/affinity/README.md.
#
# Prerequisites are those of bench/gpu (README there): the vLLM 0.24 wheel parts from ../shared/gpu
# (.gpu/p00..), and the gateway's wheels in .whl/, plus pytest's (the harness reuses
# tests/fixtures/engine.py):
#   python3 -m pip download --only-binary=:all: --python-version 3.12 ... -d .whl pytest==9.2.0
# Steps, from the repository root on the GPU host:
#   bash bench/gpu/run.sh parts          # once per part
#   bash bench/affinity/gpu.sh start2    # carrying the last part, start-vllm.sh, mk_model.py
#   bash bench/affinity/gpu.sh bench     # carrying .whl: writes $OUT/gpu-affinity.json and the table
set -euo pipefail
OUT=${OUT:-bench/out}; mkdir -p "$OUT" /root/parts
export HF_HUB_OFFLINE=1
start_one() {  # $1 port; half the memory each (0.45 + 0.45 leaves the CUDA contexts their room)
  (cd /root && PYTHONPATH=/root/site exec setsid nohup python3 -m vllm.entrypoints.openai.api_server \
    --model /root/m8b --served-model-name m --load-format dummy --dtype bfloat16 --max-model-len 16384 \
    --gpu-memory-utilization 0.45 --max-num-seqs 256 --enable-prefix-caching --port "$1" \
    > "/root/vllm-$1.log" 2>&1 < /dev/null) &
  echo $! > "/root/vllm-$1.pid"
}
wait_healthy() {  # $1 port
  for i in $(seq 1 120); do
    curl -sf "localhost:$1/health" >/dev/null && { echo "vLLM :$1 healthy after $((i*5)) s"; return 0; }
    kill -0 "$(cat "/root/vllm-$1.pid")" 2>/dev/null || { echo "vLLM :$1 exited"; tail -40 "/root/vllm-$1.log"; return 1; }
    sleep 5
  done
  echo "vLLM :$1 not healthy"; tail -40 "/root/vllm-$1.log"; return 1
}
case "${1:-}" in
  start2)
    cp .gpu/p[0-9][0-9] /root/parts/ 2>/dev/null || true
    if [ ! -d /root/site/vllm ]; then
      (cd /root/parts && cat p[0-9][0-9] | tar x)
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /root/site /root/parts/wheels/*.whl
    fi
    PYTHONPATH=/root/site python3 .gpu/mk_model.py /root/m8b
    # One after the other: two engines profiling memory at once would each see the other's allocations.
    start_one 8000; wait_healthy 8000
    start_one 8001; wait_healthy 8001
    grep -ho "GPU KV cache size: [0-9,]* tokens" /root/vllm-800[01].log | tee "$OUT/kv-affinity.txt"
    nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv,noheader | tee "$OUT/gpu.txt" ;;
  bench)
    [ -d /root/gw/fastapi ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /root/gw .whl/*.whl
    # ~8k-token histories at turn 6: 1,000-word shared system prompt + 5,500-word document + 5 x (300 + 200).
    PYTHONPATH=/root/gw:/root/site python3 bench/affinity/run.py --engine urls \
      --urls http://127.0.0.1:8000,http://127.0.0.1:8001 --model m --vocab gpu \
      --conversations 48 --turns 6 --system-words 1000 --doc-words 5500 --turn-words 300 --reply-words 200 \
      --max-tokens 128 --concurrency 16 --rounds 3 --hop-requests 200 \
      --log-dir "$OUT/affinity-logs" --out "$OUT/gpu-affinity.json" | tee "$OUT/gpu-affinity.log" ;;
  *) echo "usage: $0 start2|bench"; exit 2 ;;
esac
