"""GPU benchmark: the whole serving path, direct to vLLM vs through the gateway, same run.

On a GPU host where `../shared/gpu/start-vllm.sh` has started vLLM on :8000 (see bench/gpu/README.md),
this starts the gateway exactly as its container does (`python -m app.server`, the settings the
ECS task definition sets, one worker), then, for every cell of

    concurrency {1, 32, 128, 256} x {streaming, non-streaming} x prompt {256, 2000 words}

runs one direct round and one through-gateway round back to back (the order alternates from cell
to cell). Each of `c` closed-loop workers sends `requests_per_worker(c)` chat completions
(`max_tokens=256`, `ignore_eos`), spread over several client processes so the client is never the
bottleneck. Per round it records TTFT p50/p99 (first content chunk; for non-streaming calls the
whole response), inter-chunk gap p50/p99, output tokens/s (from `usage`), errors, and for gateway
rounds the gateway's CPU seconds and peak RSS. Writes JSON and prints a Markdown table.

    python3 bench/gpu/bench.py --upstream http://127.0.0.1:8000 --model m --out results.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[2]
GATEWAY_DIR = REPO / "containers" / "gateway"
sys.path.insert(0, str(GATEWAY_DIR))
from app.core import contract  # noqa: E402  (stdlib only)

CONCURRENCY = (1, 32, 128, 256)
PROMPT_WORDS = (256, 2000)
MAX_TOKENS = 256
VOCAB = 128_254  # the synthetic word-level tokenizer of shared/gpu/mk_model.py: words w0..w128253
ALB_IDLE_TIMEOUT_S = 900  # config default (ecs.alb_idle_timeout_seconds)
CLK = os.sysconf("SC_CLK_TCK")


def requests_per_worker(concurrency: int, override: int = 0) -> int:
    return override or {1: 4, 32: 3}.get(concurrency, 2)


def pctl(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


# --------------------------------------------------------------------------- the client
async def one_request(session: aiohttp.ClientSession, url: str, body: dict[str, Any], out: dict[str, list]) -> None:
    start = time.perf_counter()
    try:
        async with session.post(url, json=body) as resp:
            if resp.status != 200:
                await resp.read()
                out["errors"].append(f"HTTP {resp.status}")
                return
            if not body["stream"]:
                data = await resp.json()
                out["ttft"].append(time.perf_counter() - start)
                out["tokens"].append(data["usage"]["completion_tokens"])
                return
            first = last = None
            tokens = 0
            async for line in resp.content:
                if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                    continue
                now = time.perf_counter()
                if b'"usage":{' in line and b'"choices":[]' in line:
                    tokens = json.loads(line[6:])["usage"]["completion_tokens"]
                    continue
                if first is None:
                    first = now
                    out["ttft"].append(now - start)
                else:
                    out["gaps"].append(now - last)
                last = now
            if tokens != body["max_tokens"]:
                # ignore_eos + max_tokens: anything shorter is a stream that broke or ended in an error event.
                out["errors"].append("short stream")
            out["tokens"].append(tokens)
    except (aiohttp.ClientError, asyncio.TimeoutError, KeyError, ValueError) as exc:
        out["errors"].append(type(exc).__name__)


async def client_worker_group(
    url: str, bodies: list[dict[str, Any]], workers: int, per_worker: int, stagger_s: float = 0.0
) -> dict[str, list]:
    out: dict[str, list] = {"ttft": [], "gaps": [], "tokens": [], "errors": []}
    conn = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=600, sock_connect=10)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:

        async def worker(w: int) -> None:
            # Identical requests (ignore_eos, same max_tokens) keep closed-loop workers in lockstep:
            # every wave would arrive as one burst. A start offset spreads arrivals over a request.
            await asyncio.sleep(stagger_s * w / max(1, workers))
            for i in range(per_worker):
                await one_request(session, url, bodies[(w * per_worker + i) % len(bodies)], out)

        await asyncio.gather(*(worker(w) for w in range(workers)))
    return out


def _client_process(args: tuple[str, list[dict[str, Any]], int, int, float]) -> dict[str, list]:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(client_worker_group(*args))


def run_round(
    pool: mp.pool.Pool, url: str, bodies: list[dict[str, Any]], concurrency: int, per_worker: int, stagger_s: float = 0.0
) -> tuple[dict[str, list], float]:
    procs = min(8, concurrency)
    split = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    start = time.perf_counter()
    parts = pool.map(_client_process, [(url, bodies, n, per_worker, stagger_s) for n in split])
    wall = time.perf_counter() - start
    merged: dict[str, list] = {"ttft": [], "gaps": [], "tokens": [], "errors": []}
    for p in parts:
        for k in merged:
            merged[k].extend(p[k])
    return merged, wall


# --------------------------------------------------------------------------- the gateway
def gateway_env(upstream: str, model: str, port: int) -> dict[str, str]:
    """The environment the ECS task definition gives the gateway (app.py serving_settings)."""
    return {
        **os.environ,
        contract.ENV_UPSTREAM_URL: upstream,
        contract.ENV_SERVED_MODEL_NAME: model,
        contract.ENV_PORT: str(port),
        contract.ENV_KEEPALIVE_TIMEOUT_S: str(contract.server_keepalive_for_alb(ALB_IDLE_TIMEOUT_S)),
        contract.ENV_UPSTREAM_KEEPALIVE_S: str(contract.DEFAULT_UPSTREAM_KEEPALIVE_S),
        contract.ENV_DRAIN_TIMEOUT_S: "100",
        contract.ENV_SERVICE_NAME: "llm-hosting-bench",
        contract.ENV_EMF_ENABLED: "true",
        contract.ENV_LOG_PROMPTS: "false",
        contract.ENV_WORKERS: os.environ.get("GATEWAY_WORKERS", "1"),
        contract.ENV_MAX_TOKENS_CAP: "4096",
        contract.ENV_MAX_CONCURRENCY_PER_KEY: "100000",
        contract.ENV_MAX_QUEUE_DEPTH: "100000",
    }


class Gateway:
    def __init__(self, upstream: str, model: str, port: int, log: Path) -> None:
        self.port = port
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.server"],
            cwd=GATEWAY_DIR,
            env=gateway_env(upstream, model, port),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        import urllib.request

        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{contract.HEALTH_PATH}", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("gateway not ready; see its log")

    def _pids(self) -> list[int]:
        """The server process and, with several workers, its worker processes."""
        pids, i = [self.proc.pid], 0
        while i < len(pids):
            try:
                with open(f"/proc/{pids[i]}/task/{pids[i]}/children") as f:
                    pids.extend(int(x) for x in f.read().split())
            except OSError:
                pass
            i += 1
        return pids

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in self._pids():
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK
        return total

    def peak_rss_mb(self) -> float:
        total = 0.0
        for pid in self._pids():
            with open(f"/proc/{pid}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
        return total

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


# --------------------------------------------------------------------------- the matrix
def bodies_for(model: str, words: int, stream: bool, n: int = 64) -> list[dict[str, Any]]:
    rng = random.Random(words * 2 + stream)
    out = []
    for _ in range(n):
        prompt = " ".join(f"w{rng.randrange(VOCAB)}" for _ in range(words))
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": MAX_TOKENS,
            "ignore_eos": True,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        out.append(body)
    return out


def summarize(raw: dict[str, list], wall: float) -> dict[str, Any]:
    ms = lambda v: None if v is None else round(v * 1000, 2)  # noqa: E731
    return {
        "requests": len(raw["tokens"]) + len(raw["errors"]),
        "errors": len(raw["errors"]),
        "error_kinds": sorted(set(raw["errors"])),
        "ttft_p50_ms": ms(pctl(raw["ttft"], 0.5)),
        "ttft_p99_ms": ms(pctl(raw["ttft"], 0.99)),
        "gap_p50_ms": ms(pctl(raw["gaps"], 0.5)),
        "gap_p99_ms": ms(pctl(raw["gaps"], 0.99)),
        "output_tokens": sum(raw["tokens"]),
        "output_tokens_per_s": round(sum(raw["tokens"]) / wall, 1),
        "wall_s": round(wall, 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", default="http://127.0.0.1:8000")
    ap.add_argument("--model", default="m")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--label", default="llama-3-8b-shape bf16")
    ap.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)))
    ap.add_argument("--prompt-words", default=",".join(map(str, PROMPT_WORDS)))
    ap.add_argument("--modes", default="stream,unary")
    ap.add_argument("--gateway-port", type=int, default=8080)
    ap.add_argument("--requests-per-worker", type=int, default=0, help="0: 4 at 1 stream, 3 at 32, else 2")
    ap.add_argument("--stagger-s", type=float, default=0.0, help="spread worker starts over this many seconds")
    a = ap.parse_args()

    gw = Gateway(a.upstream, a.model, a.gateway_port, a.out.with_suffix(".gateway.log"))
    gw.wait_ready()
    targets = {"direct": f"{a.upstream}/v1/chat/completions", "gateway": f"http://127.0.0.1:{a.gateway_port}/v1/chat/completions"}
    results: list[dict[str, Any]] = []
    ctx = mp.get_context("fork")
    try:
        with ctx.Pool(8) as pool:
            # Warm both paths (connection pools, CUDA graphs for the batch sizes used).
            for url in targets.values():
                run_round(pool, url, bodies_for(a.model, 256, True, 8), 8, 1)
            flip = False
            for words in map(int, a.prompt_words.split(",")):
                for mode in a.modes.split(","):
                    bodies = bodies_for(a.model, words, mode == "stream")
                    for conc in map(int, a.concurrency.split(",")):
                        order = ["gateway", "direct"] if flip else ["direct", "gateway"]
                        flip = not flip
                        for target in order:
                            cpu0 = gw.cpu_seconds()
                            per_worker = requests_per_worker(conc, a.requests_per_worker)
                            raw, wall = run_round(pool, targets[target], bodies, conc, per_worker, a.stagger_s)
                            row = {"target": target, "mode": mode, "prompt_words": words, "concurrency": conc, **summarize(raw, wall)}
                            if target == "gateway":
                                row["gateway_cpu_s"] = round(gw.cpu_seconds() - cpu0, 2)
                                row["gateway_cpu_cores"] = round(row["gateway_cpu_s"] / wall, 3)
                            results.append(row)
                            print(json.dumps(row), flush=True)
        peak_rss = gw.peak_rss_mb()
    finally:
        gw.stop()
    report = {
        "label": a.label,
        "date": time.strftime("%Y-%m-%d"),
        "gpu": _gpu_name(),
        "vllm_version": _vllm_version(a.upstream),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "gateway": {"workers": int(os.environ.get("GATEWAY_WORKERS", "1")), "peak_rss_mb": round(peak_rss, 1)},
        "max_tokens": MAX_TOKENS,
        "stagger_s": a.stagger_s,
        "results": results,
    }
    a.out.write_text(json.dumps(report, indent=1))
    print(table(report))
    return 0


def _gpu_name() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        return "unknown"


def _vllm_version(upstream: str) -> str:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{upstream}/version", timeout=5) as r:
            return json.loads(r.read())["version"]
    except (OSError, ValueError, KeyError):
        return "unknown"


def table(report: dict[str, Any]) -> str:
    """Markdown: one row per cell, direct vs gateway side by side."""
    rows = {}
    for r in report["results"]:
        rows.setdefault((r["prompt_words"], r["mode"], r["concurrency"]), {})[r["target"]] = r
    lines = [
        f"{report['label']} on {report['gpu']}, vLLM {report['vllm_version']}, {report['date']}; "
        f"gateway: {report['gateway']['workers']} worker, peak RSS {report['gateway']['peak_rss_mb']} MB",
        "",
        "| prompt | mode | streams | TTFT p50 direct / gw (ms) | added p50 | TTFT p99 direct / gw | gap p50 d / gw | gap p99 d / gw | tok/s direct | tok/s gw | gw/direct | errors d/gw | gw CPU cores |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (words, mode, conc), pair in sorted(rows.items()):
        d, g = pair.get("direct"), pair.get("gateway")
        if not (d and g):
            continue
        added = None if d["ttft_p50_ms"] is None or g["ttft_p50_ms"] is None else round(g["ttft_p50_ms"] - d["ttft_p50_ms"], 2)
        ratio = round(g["output_tokens_per_s"] / d["output_tokens_per_s"], 3) if d["output_tokens_per_s"] else None
        lines.append(
            f"| {words} | {mode} | {conc} | {d['ttft_p50_ms']} / {g['ttft_p50_ms']} | {added} | {d['ttft_p99_ms']} / {g['ttft_p99_ms']} "
            f"| {d['gap_p50_ms']} / {g['gap_p50_ms']} | {d['gap_p99_ms']} / {g['gap_p99_ms']} | {d['output_tokens_per_s']} | {g['output_tokens_per_s']} "
            f"| {ratio} | {d['errors']}/{g['errors']} | {g.get('gateway_cpu_cores')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
