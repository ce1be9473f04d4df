#!/bin/bash
# Steps of the GPU benchmark on a GPU host (see bench/gpu/README.md). Run from the repository root.
#   parts      copy the carried .gpu/pNN parts to /root/parts
#   start      install vLLM from the parts and start it on :8000 with the 8B-shaped model (shared/gpu)
#   bench8b    benchmark direct vs gateway, full matrix          -> $OUT/gpu-8b.json, .md
#   start70b   restart vLLM with the 70B-shaped fp8 model, TP 1  -> $OUT/vllm-70b.log
#   bench70b   streaming benchmark on the 70B model             -> $OUT/gpu-70b.json, .md
set -euo pipefail
OUT=${OUT:-bench/out}; mkdir -p "$OUT" /root/parts
gw_deps() {  # the gateway's own pinned dependencies (containers/gateway/requirements.txt), as wheels
  [ -d /root/gw/fastapi ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /root/gw .whl/*.whl
}
wait_healthy() {
  for i in $(seq 1 120); do
    curl -sf localhost:8000/health >/dev/null && { echo "vLLM healthy after $((i*5)) s"; return 0; }
    kill -0 "$(cat /root/vllm.pid)" 2>/dev/null || { echo "vLLM exited"; tail -40 /root/vllm.log; return 1; }
    sleep 5
  done
  echo "vLLM not healthy"; tail -40 /root/vllm.log; return 1
}
kv_tokens() { grep -o "GPU KV cache size: [0-9,]* tokens" /root/vllm.log | tail -1 || true; }
case "$1" in
  parts) cp .gpu/p[0-9][0-9] /root/parts/ && ls -la /root/parts ;;
  start) bash .gpu/start-vllm.sh; kv_tokens | tee "$OUT/kv-8b.txt"; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt" ;;
  bench8b)
    gw_deps
    PYTHONPATH=/root/gw python3 bench/gpu/bench.py --model m --out "$OUT/gpu-8b.json" --label "Llama-3-8B shape, bf16, TP 1" | tee "$OUT/gpu-8b.log"
    kv_tokens > "$OUT/kv-8b.txt" ;;
  start70b)
    kill "$(cat /root/vllm.pid)" 2>/dev/null || true; sleep 8
    PYTHONPATH=/root/site python3 bench/gpu/mk_70b.py /root/m8b /root/m70b
    # exec: the background subshell must not keep this script's stdout (a pipe to the caller) open.
    (cd /root && PYTHONPATH=/root/site HF_HUB_OFFLINE=1 exec setsid nohup python3 -m vllm.entrypoints.openai.api_server \
      --model /root/m70b --served-model-name m --load-format dummy --dtype bfloat16 --max-model-len 4096 \
      --gpu-memory-utilization 0.90 --max-num-seqs 256 --port 8000 > /root/vllm.log 2>&1 < /dev/null) &
    echo $! > /root/vllm.pid
    wait_healthy; kv_tokens | tee "$OUT/kv-70b.txt"; cp /root/vllm.log "$OUT/vllm-70b.log" ;;
  bench70b)
    gw_deps
    PYTHONPATH=/root/gw python3 bench/gpu/bench.py --model m --out "$OUT/gpu-70b.json" --label "Llama-3-70B shape, fp8, TP 1" \
      --modes stream --prompt-words 256 --concurrency 1,32,128,256 --requests-per-worker 1 | tee "$OUT/gpu-70b.log" ;;
  *) echo "usage: $0 parts|start|bench8b|start70b|bench70b"; exit 2 ;;
esac
