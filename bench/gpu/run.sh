#!/bin/bash
# Steps of the GPU benchmark on a GPU host (see bench/gpu/README.md). The host reaches no package
# registry and a device call carries at most 64 MiB, so everything arrives in a kit (this folder's
# repository files, the gateway's wheels, a copy of another gateway version) and vLLM's wheels in
# 55 MB parts; /root persists while the machine is held.
#   parts FILE...  copy carried vLLM wheel parts to /root/parts
#   start KIT PART install the kit to /root/kit, the gateway's wheels to /root/gw, vLLM's wheels and
#                  httptools (as the official vllm/vllm-openai image has it) to /root/site, record host
#                  facts, start vLLM (8B shape, shared/gpu/start-vllm.sh) in its own session, and while
#                  it loads run the CPU-side comparison against the fake upstream    -> $OUT/cpu-fake.json
#   burst          wait for vLLM, then bursts at 32, 128 and 256 streams: direct, the gateway and the
#                  aiohttp control in the same rounds                                -> $OUT/gpu-burst.json
#   staggered      staggered arrivals at 32/128/256 (same targets), then the one-token calls, the
#                  kit's older gateway copy (gw-old) too    -> $OUT/gpu-staggered.json, $OUT/gpu-one-token.json
#   floors KIT     without vLLM (no parts needed): install the kit, then the one-token calls against the
#                  fake upstream with the floors and each hop's CPU per call     -> $OUT/fake-floors.json
#   tail           the one-token calls with the floors (floor_hops.py) and each hop's CPU per call, then
#                  one cell (TAIL_ARRIVALS/TAIL_STREAMS, burst 128) for TAIL_ROUNDS rounds, written
#                  after every round                   -> $OUT/gpu-floors.json, $OUT/gpu-tail.json
# Settings from the environment: BURST_ROUNDS, STAGGER_ROUNDS, TAIL_ROUNDS (10, 8, 40), UNARY
# (one-token calls per target: 500, 800 in floors and tail), UPSTREAM/MODEL (vLLM's URL and served
# name); for a dry run on a CPU machine against
# the vLLM CPU engine, GPU_ROOT (/root) keeps it to a folder of its own and BENCH_EXTRA adds bench.py
# arguments (smaller cells).
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}
R=${GPU_ROOT:-/root}
K=$R/kit
UPSTREAM=${UPSTREAM:-http://127.0.0.1:8000}
MODEL=${MODEL:-m}
mkdir -p "$OUT" $R/parts $R/logs
bench() {  # bench SECONDS ARGS...: bench.py from the kit, under a time limit, with the gateway's wheels
  local limit=$1; shift
  (cd $K/repo && PYTHONPATH=$R/gw PYTHONUNBUFFERED=1 timeout "$limit" python3 bench/gpu/bench.py \
    --upstream "$UPSTREAM" --model "$MODEL" "$@" ${BENCH_EXTRA:-})
}
old() {  # the kit's older gateway copy as one more target, where the kit has one
  [ -d $K/gw-old ] && echo "--gateway old=$K/gw-old"
  true
}
wait_healthy() {
  for i in $(seq 1 100); do
    curl -sf "$UPSTREAM/health" >/dev/null && { echo "vLLM healthy ($(date +%T))"; return 0; }
    sleep 5
  done
  echo "vLLM not healthy"; tail -40 $R/vllm.log; return 1
}
install_kit() {  # the kit to $K, its gateway wheels to $R/gw
  rm -rf $K $R/gw && cp -r "$1" $K && python3 -m pip install -q --no-index --no-deps --no-compile --target $R/gw $K/whl/*.whl
}
fake() {  # a fake upstream that holds its event loop 1 ms per request, as vLLM's API server does while it
  # renders and tokenizes, and answers a one-token call after 5 ms, so the hops sleep between request and answer
  (cd $K/repo && PYTHONPATH=$R/gw exec python3 bench/gateway/fake_upstream.py --port 9000 --busy-ms 1 --ttft-ms 5 \
    --interval-ms 15 --max-seconds 600 > $R/logs/fake.log 2>&1) &
  fake=$!
  sleep 2
}
case "$1" in
  parts) shift; cp "$@" $R/parts/ && ls -la $R/parts ;;
  floors)
    install_kit "$2"
    fake  # as in start, without the bursts
    UPSTREAM=http://127.0.0.1:9000 MODEL=fake bench 300 --label "fake upstream (CPU), 1 ms per request, 5 ms to answer" \
      --rounds 0 --unary "${UNARY:-800}" --floors $(old) --base-port 18080 --logs $R/logs/fake-floors --out "$OUT/fake-floors.json" | tail -12
    kill $fake ;;
  start)
    install_kit "$2" && cp "$3" $R/parts/
    if [ ! -d $R/site/vllm ]; then  # what start-vllm.sh would do, so httptools can join before vLLM starts
      (cd $R/parts && cat p[0-9][0-9] | tar x) && \
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target $R/site $R/parts/wheels/*.whl
    fi
    python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target $R/site $K/whl/httptools-*.whl
    {
      echo "cores $(nproc)"; python3 -V; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
      for f in net/core/somaxconn net/ipv4/tcp_max_syn_backlog net/core/netdev_max_backlog net/ipv4/tcp_syncookies; do echo "$f $(cat /proc/sys/$f)"; done
      python3 -c "import aiohttp, uvloop, h11; print('image: aiohttp', aiohttp.__version__, 'uvloop', uvloop.__version__, 'h11', h11.__version__)"
      PYTHONPATH=$R/site python3 -c "import uvicorn, httptools, uvloop; print('vLLM side: uvicorn', uvicorn.__version__, 'httptools', httptools.__version__, 'uvloop', uvloop.__version__, '(uvicorn http=auto picks httptools)')"
      cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null | sed 's/^/cpuidle driver /'
    } > "$OUT/host.txt" 2>&1
    cp $K/start-vllm.sh $K/mk_model.py $R/
    setsid nohup bash $R/start-vllm.sh > $R/start.log 2>&1 < /dev/null &
    # CPU-side comparison while vLLM loads (it compiles on a few of the 16 cores)
    fake
    UPSTREAM=http://127.0.0.1:9000 MODEL=fake bench 300 --label "fake upstream (CPU), 1 ms per request, 5 ms to answer" \
      --arrivals burst --concurrency 256 --rounds 4 --max-tokens 60 --prompt-words 64 --unary "${UNARY:-500}" \
      --floors $(old) --base-port 18080 --logs $R/logs/cpu --out "$OUT/cpu-fake.json" | tail -14
    kill $fake
    tail -3 $R/start.log ;;
  burst)
    wait_healthy || exit 1
    bench 560 --arrivals burst --concurrency 32,128,256 --rounds "${BURST_ROUNDS:-10}" --unary 0 \
      --logs $R/logs/burst --out "$OUT/gpu-burst.json" | tail -16
    curl -s "$UPSTREAM/metrics" | grep -E '^vllm:(time_to_first_token|request_queue_time)_seconds_(sum|count)' > "$OUT/vllm-metrics.txt"
    tar czf "$OUT/logs-burst.tgz" -C $R/logs burst ;;
  staggered)
    wait_healthy || exit 1
    bench 470 --arrivals staggered --stagger-s 1.5 --concurrency 32,128,256 --rounds "${STAGGER_ROUNDS:-8}" --unary 0 \
      --logs $R/logs/stag --out "$OUT/gpu-staggered.json" | tail -16
    bench 100 --rounds 0 --unary "${UNARY:-500}" $(old) --logs $R/logs/one --out "$OUT/gpu-one-token.json" | tail -8
    tar czf "$OUT/logs-staggered.tgz" -C $R/logs stag one cpu 2>/dev/null; cp $R/vllm.log "$OUT/vllm.log" ;;
  tail)
    wait_healthy || exit 1
    bench 130 --rounds 0 --unary "${UNARY:-800}" --floors $(old) --logs $R/logs/floors --out "$OUT/gpu-floors.json" | tail -10
    bench 400 --arrivals "${TAIL_ARRIVALS:-burst}" --concurrency "${TAIL_STREAMS:-128}" --rounds "${TAIL_ROUNDS:-40}" --unary 0 \
      --logs $R/logs/tail --out "$OUT/gpu-tail.json" | tail -6
    tar czf "$OUT/logs-tail.tgz" -C $R/logs floors tail ;;
  *) echo "usage: $0 parts FILE...|start KIT PART|floors KIT|burst|staggered|tail"; exit 2 ;;
esac
