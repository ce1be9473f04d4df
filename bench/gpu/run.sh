#!/bin/bash
# Steps of the GPU benchmark on a GPU host (see bench/gpu/README.md). The host reaches no package
# registry and a device call carries at most 64 MiB, so everything arrives in a kit (this folder's
# repository files, the gateway's wheels, copies of other gateway versions) and vLLM's wheels in
# 55 MB parts; /root persists while the machine is held.
#   parts FILE...  copy carried vLLM wheel parts to /root/parts
#   start KIT      install the kit to /root/kit, the gateway's wheels to /root/gw, record host facts,
#                  start vLLM (8B shape, shared/gpu/start-vllm.sh) in its own session, and while it
#                  loads run the CPU-side comparison against the fake upstream       -> $OUT/cpu-fake.json
#   burst          wait for vLLM, then burst arrivals at 128 and 256 streams: direct, the gateway, the
#                  aiohttp control and the other gateway copies of the kit (gw-old, also with the
#                  backend monitor's polling off; gw-aio: an aiohttp client)       -> $OUT/gpu-burst.json
#   staggered      staggered arrivals at 32/128/256, then bursts at 32 with the one-token calls
#                                                     -> $OUT/gpu-staggered.json, $OUT/gpu-burst32.json
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT" /root/parts /root/logs
K=/root/kit
bench() {  # bench SECONDS ARGS...: bench.py from the kit, under a time limit, with the gateway's wheels
  local limit=$1; shift
  (cd $K/repo && PYTHONPATH=/root/gw PYTHONUNBUFFERED=1 timeout "$limit" python3 bench/gpu/bench.py "$@")
}
extra() {  # the kit's other gateway copies as targets: gw-old (the code before a change), gw-aio (aiohttp client)
  [ -d $K/gw-old ] && echo "--gateway old=$K/gw-old"
  [ -d $K/gw-old ] && [ "${1:-}" = all ] && echo "--gateway old-nomon=$K/gw-old:GATEWAY_HEALTH_POLL_INTERVAL_S=3600"
  [ -d $K/gw-aio ] && [ "${1:-}" != old ] && echo "--gateway aioclient=$K/gw-aio"
  true
}
wait_healthy() {
  for i in $(seq 1 100); do
    curl -sf localhost:8000/health >/dev/null && { echo "vLLM healthy ($(date +%T))"; return 0; }
    sleep 5
  done
  echo "vLLM not healthy"; tail -40 /root/vllm.log; return 1
}
case "$1" in
  parts) shift; cp "$@" /root/parts/ && ls -la /root/parts ;;
  start)
    rm -rf $K && cp -r "$2" $K && cp "$3" /root/parts/
    python3 -m pip install -q --no-index --no-deps --no-compile --target /root/gw $K/whl/*.whl
    {
      echo "cores $(nproc)"; python3 -V; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
      for f in net/core/somaxconn net/ipv4/tcp_max_syn_backlog net/core/netdev_max_backlog net/ipv4/tcp_syncookies; do echo "$f $(cat /proc/sys/$f)"; done
      python3 -c "import aiohttp, uvloop, h11; print('image: aiohttp', aiohttp.__version__, 'uvloop', uvloop.__version__, 'h11', h11.__version__)"
      python3 -c "import httptools" 2>/dev/null && echo "image has httptools" || echo "image has no httptools: vLLM's uvicorn speaks h11"
    } > "$OUT/host.txt" 2>&1
    cp $K/start-vllm.sh $K/mk_model.py /root/
    setsid nohup bash /root/start-vllm.sh > /root/start.log 2>&1 < /dev/null &
    # CPU-side comparison while vLLM loads (it compiles on a few of the 16 cores): a fake upstream
    # that holds its event loop 1 ms per request, as vLLM's API server does while it renders and
    # tokenizes, so a burst queues there as it does in vLLM.
    (cd $K/repo && PYTHONPATH=/root/gw exec python3 bench/gateway/fake_upstream.py --port 9000 --busy-ms 1 --ttft-ms 30 \
      --interval-ms 15 --max-seconds 600 > /root/logs/fake.log 2>&1) &
    fake=$!
    sleep 2
    bench 400 --upstream http://127.0.0.1:9000 --model fake --label "fake upstream (CPU), 1 ms per request" \
      --arrivals burst --concurrency 128,256 --rounds 5 --max-tokens 60 --prompt-words 64 --unary 500 \
      $(extra) --base-port 18080 --logs /root/logs/cpu --out "$OUT/cpu-fake.json" | tail -32
    kill $fake
    tail -3 /root/start.log ;;
  burst)
    wait_healthy || exit 1
    for i in 1 2 3 4 5; do curl -s -o /dev/null -w "GET /metrics %{time_total}s %{size_download}B\n" localhost:8000/metrics; done | tee "$OUT/vllm-metrics-get.txt"
    bench 540 --arrivals burst --concurrency 128,256 --rounds 6 --unary 0 $(extra all) \
      --logs /root/logs/burst --out "$OUT/gpu-burst.json"
    curl -s localhost:8000/metrics | grep -E '^vllm:(time_to_first_token|request_queue_time)_seconds_(sum|count)' > "$OUT/vllm-metrics.txt"
    tar czf "$OUT/logs-burst.tgz" -C /root/logs burst ;;
  staggered)
    bench 330 --arrivals staggered --stagger-s 1.5 --concurrency 32,128,256 --rounds 6 --unary 0 \
      --logs /root/logs/stag --out "$OUT/gpu-staggered.json"
    bench 200 --arrivals burst --concurrency 32 --rounds 6 --unary 300 $(extra old) \
      --logs /root/logs/b32 --out "$OUT/gpu-burst32.json"
    tar czf "$OUT/logs-staggered.tgz" -C /root/logs stag b32 cpu 2>/dev/null; cp /root/vllm.log "$OUT/vllm.log" ;;
  *) echo "usage: $0 parts FILE...|start KIT PART|burst|staggered"; exit 2 ;;
esac
