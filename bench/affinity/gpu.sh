#!/bin/bash
# Affinity benchmark on one H200: two vLLM instances on the one GPU (each 0.45 of its memory at
# most, a 40 GiB KV cache each), each with its own gateway, a round-robin balancer in front
# (bench/affinity/run.py --engine urls), Llama-3-8B shape, conversations whose histories grow to
# ~7.9k tokens; affinity off vs prefix in alternating rounds, then the forward hop on its own.
#
# The GPU host reaches no package registry and a device call carries at most 64 MiB, so:
#   - vLLM 0.24's wheels come as the 55 MB parts of ../shared/gpu (p00..p05), one per call:
#       mkdir -p /root/parts && cp PART /root/parts/          (calls 1..5, back to back)
#   - this script's last call carries the last part and a kit folder: KIT/repo (containers/gateway,
#     tests/fixtures/engine.py, bench/affinity/run.py, bench/gateway/fake_upstream.py), KIT/whl
#     (the gateway's wheels and pytest's: the harness imports tests/fixtures/engine.py), KIT/mk_model.py
#       bash KIT/repo/bench/affinity/gpu.sh KIT LAST_PART
# /root persists only while the machine is held. Writes $OUT/gpu-affinity.json, run.log (the
# table), timeline.txt, gpu.txt, the vLLM logs and the gateway logs.
#
# Both engines start at once: --kv-cache-memory-bytes skips vLLM's memory profiling, which would
# otherwise count the other engine's allocations as its own. --enforce-eager: no torch.compile and
# no CUDA graphs, to start in about a minute instead of several (the device time is short); it
# slows decoding, not the prefill this benchmark is about, and both modes run on the same engines.
set -uo pipefail
KIT=$(cd "$1" && pwd); LAST_PART=$2; ROUNDS=${ROUNDS:-2}; CONVS=${CONVS:-32}
OUT=${OUT:-/tmp/affinity-out}; mkdir -p "$OUT" /root/parts /root/logs
T0=$(date +%s)
mark() { echo "$(( $(date +%s) - T0 )) s: $*" | tee -a "$OUT/timeline.txt"; }
cp "$LAST_PART" /root/parts/
python3 -m pip install -q --no-index --no-deps --no-compile --target /root/gw "$KIT"/whl/*.whl &
gw_pip=$!
if [ ! -d /root/site/vllm ]; then
  (cd /root/parts && cat p[0-9][0-9] | tar x) || { mark "parts incomplete: $(ls /root/parts)"; exit 1; }
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /root/site /root/parts/wheels/*.whl
fi
wait $gw_pip
mark "installed"
export HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1
PYTHONPATH=/root/site python3 "$KIT/mk_model.py" /root/m8b > /dev/null
for port in 8000 8001; do
  (cd /root && PYTHONPATH=/root/site exec setsid python3 -m vllm.entrypoints.openai.api_server \
    --model /root/m8b --served-model-name m --load-format dummy --dtype bfloat16 --max-model-len 8192 \
    --gpu-memory-utilization 0.45 --kv-cache-memory-bytes 40G --max-num-seqs 128 --enable-prefix-caching \
    --enforce-eager --disable-uvicorn-access-log --port $port > /root/logs/vllm-$port.log 2>&1 < /dev/null) &
done
for port in 8000 8001; do
  for i in $(seq 1 150); do
    curl -sf localhost:$port/health > /dev/null && break
    [ "$i" = 150 ] && { mark "vLLM :$port not healthy"; tail -40 /root/logs/vllm-$port.log; cp /root/logs/vllm-*.log "$OUT/"; exit 1; }
    sleep 2
  done
  mark "vLLM :$port healthy"
done
{ nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv,noheader
  grep -ho "GPU KV cache size: [0-9,]* tokens" /root/logs/vllm-800[01].log; } | tee "$OUT/gpu.txt"
# Histories: 1,000-word shared system prompt + 4,400-word document + 5 x (200-word reply + 300-word
# turn) = 7,900 words at turn 6, one token each (shared/gpu's word-level tokenizer), under the 8,192
# context of the Llama-3-8B config.
(cd "$KIT/repo" && PYTHONPATH=/root/gw PYTHONUNBUFFERED=1 python3 bench/affinity/run.py --engine urls \
  --urls http://127.0.0.1:8000,http://127.0.0.1:8001 --model m --vocab gpu \
  --profiles doc --conversations "$CONVS" --turns 6 --system-words 1000 --doc-words 4400 --turn-words 300 --reply-words 200 \
  --max-tokens 32 --concurrency 16 --rounds "$ROUNDS" --hop-requests 150 \
  --log-dir /root/logs/affinity --out "$OUT/gpu-affinity.json") 2>&1 | tee "$OUT/run.log"
mark "bench done"
cp /root/logs/vllm-8000.log /root/logs/vllm-8001.log "$OUT/"
tar czf "$OUT/gateway-logs.tgz" -C /root/logs affinity 2>/dev/null
mark "end"
