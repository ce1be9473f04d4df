"""Gateway benchmark (`make bench-gateway`): direct vs through the gateway, alternating
rounds in one run, against (a) the vLLM CPU engine with the tiny random-weight model
and (b) the fake high-rate streaming upstream (fake_upstream.py), at 1, 32, 128 and
256 concurrent streams. Prints a table (added TTFT p50/p99, chunks/s, gateway CPU and
RSS) and writes JSON.

Everything runs on loopback on this machine: the engine or fake upstream, one gateway
worker, and this process as the client (aiohttp on uvloop). Load is closed-loop: each
of N workers keeps one stream open and starts the next when it ends; chunks are
counted inside the measurement window only.

    .venv/bin/python bench/gateway/run.py --out bench/out/gateway.json [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.fixtures.engine import (  # noqa: E402
    TINY_MODEL,
    VLLM_PYTHON,
    Proc,
    free_port,
    spawn,
    start_fake_upstream_process,
    start_gateway_process,
    wait_ready,
)

perf = time.perf_counter
KEY = "sk-bench"
CLK = os.sysconf("SC_CLK_TCK")


def pctl(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / CLK


def proc_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Round:
    target: str
    chunks: int = 0
    streams: int = 0
    errors: int = 0
    ttft: list[float] = field(default_factory=list)
    window_s: float = 0.0
    gw_cpu_pct: float | None = None
    gw_rss_mb: float | None = None

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.window_s if self.window_s else 0.0


async def stream_round(
    base: str, body: bytes, conc: int, seconds: float, warmup: float, target: str, gw_pid: int | None, headers: dict[str, str]
) -> Round:
    rnd = Round(target)
    conn = aiohttp.TCPConnector(limit=0, keepalive_timeout=3)
    url = base + ("/v1/chat/completions")
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=None, sock_read=120)) as s:
        t_start = perf()
        t_w0, t_w1 = t_start + warmup, t_start + warmup + seconds

        async def worker(delay: float) -> None:
            await asyncio.sleep(delay)  # stagger: real clients don't arrive in lock-step
            while perf() < t_w1:
                t0 = perf()
                first = True
                try:
                    async with s.post(url, data=body, headers=headers) as r:
                        if r.status != 200:
                            rnd.errors += 1
                            await r.read()
                            await asyncio.sleep(0.05)
                            continue
                        async for chunk in r.content.iter_any():
                            now = perf()
                            n = chunk.count(b"data: {")
                            if first and n:
                                first = False
                                if t_w0 <= t0 and now <= t_w1:
                                    rnd.ttft.append(now - t0)
                            if t_w0 <= now <= t_w1:
                                rnd.chunks += n
                            if now > t_w1:
                                break
                        else:
                            if t_w0 <= perf() <= t_w1:
                                rnd.streams += 1
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    rnd.errors += 1

        cpu0 = proc_cpu_s(gw_pid) if gw_pid else 0.0
        tasks = [asyncio.ensure_future(worker(warmup * i / conc)) for i in range(conc)]
        await asyncio.sleep(max(0.0, t_w0 - perf()))
        cpu_w0 = proc_cpu_s(gw_pid) if gw_pid else cpu0
        w0 = perf()
        await asyncio.sleep(max(0.0, t_w1 - perf()))
        w1 = perf()
        if gw_pid:
            rnd.gw_cpu_pct = 100.0 * (proc_cpu_s(gw_pid) - cpu_w0) / (w1 - w0)
            rnd.gw_rss_mb = proc_rss_mb(gw_pid)
        rnd.window_s = w1 - w0
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return rnd


async def soak(base: str, body: bytes, total: int, conc: int, gw_pid: int, headers: dict[str, str]) -> dict[str, Any]:
    done = 0
    samples: list[tuple[int, float]] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=3)) as s:
        url = base + "/v1/chat/completions"

        async def worker() -> None:
            nonlocal done
            while done < total:
                done += 1
                async with s.post(url, data=body, headers=headers) as r:
                    await r.read()
                if done % 5000 == 0:
                    samples.append((done, proc_rss_mb(gw_pid)))

        t0 = perf()
        await asyncio.gather(*(worker() for _ in range(conc)))
        wall = perf() - t0
    base_rss = samples[0][1] if samples else proc_rss_mb(gw_pid)
    end_rss = proc_rss_mb(gw_pid)
    return {
        "requests": done, "concurrency": conc, "wall_s": round(wall, 1), "req_per_s": round(done / wall),
        "rss_mb_after_5k": round(base_rss, 1), "rss_mb_end": round(end_rss, 1),
        "rss_growth_pct": round(100.0 * (end_rss - base_rss) / base_rss, 1),
        "samples": [(n, round(r, 1)) for n, r in samples],
    }


def start_engine(log_dir: Path) -> Proc:
    model = log_dir / "tiny-model"
    import subprocess

    subprocess.run([str(VLLM_PYTHON), str(REPO / "tests/fixtures/make_tiny_model.py"), str(model)], check=True, capture_output=True)
    port = free_port()
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", HF_HUB_OFFLINE="1", VLLM_NO_USAGE_STATS="1")
    cmd = [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--served-model-name", TINY_MODEL,
           "--load-format", "dummy", "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "1024",
           "--max-num-seqs", "256", "--disable-uvicorn-access-log"]  # fmt: skip
    p = Proc(spawn(cmd, env, log_dir / "vllm.log"), port, log_dir / "vllm.log", model=TINY_MODEL)
    wait_ready(p, "/health", 600)
    return p


def chat_body(model: str, max_tokens: int, stream: bool, ignore_eos: bool = True) -> bytes:
    b: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "benchmark the gateway"}], "max_tokens": max_tokens, "stream": stream}
    if ignore_eos:
        b["ignore_eos"] = True
    return json.dumps(b).encode()


async def scenario(name: str, up: Proc, gw: Proc, body: bytes, concs: list[int], rounds: int, seconds: float, warmup: float) -> list[dict[str, Any]]:
    out = []
    for conc in concs:
        res: dict[str, list[Round]] = {"direct": [], "gateway": []}
        for r in range(rounds):
            order = ("direct", "gateway") if r % 2 == 0 else ("gateway", "direct")
            for target in order:
                base = up.base_url if target == "direct" else gw.base_url
                hdr = {"content-type": "application/json"} | ({"authorization": f"Bearer {KEY}"} if target == "gateway" else {})
                rnd = await stream_round(base, body, conc, seconds, warmup, target, gw.popen.pid if target == "gateway" else None, hdr)
                res[target].append(rnd)
                await asyncio.sleep(0.5)
        d, g = res["direct"], res["gateway"]
        dt = [t for x in d for t in x.ttft]
        gt = [t for x in g for t in x.ttft]
        row = {
            "scenario": name, "streams": conc,
            "direct_chunks_per_s": round(statistics.mean(x.chunks_per_s for x in d)),
            "gateway_chunks_per_s": round(statistics.mean(x.chunks_per_s for x in g)),
            "direct_ttft_p50_ms": round(1000 * (pctl(dt, 0.5) or 0), 2), "gateway_ttft_p50_ms": round(1000 * (pctl(gt, 0.5) or 0), 2),
            "direct_ttft_p99_ms": round(1000 * (pctl(dt, 0.99) or 0), 2), "gateway_ttft_p99_ms": round(1000 * (pctl(gt, 0.99) or 0), 2),
            "gateway_cpu_pct": round(statistics.mean(x.gw_cpu_pct or 0 for x in g), 1),
            "gateway_rss_mb": round(max(x.gw_rss_mb or 0 for x in g), 1),
            "errors": sum(x.errors for x in d + g), "ttft_samples": [len(dt), len(gt)],
        }
        row["ratio"] = round(row["gateway_chunks_per_s"] / row["direct_chunks_per_s"], 3) if row["direct_chunks_per_s"] else None
        cpu_us = (row["gateway_cpu_pct"] / 100.0) / row["gateway_chunks_per_s"] * 1e6 if row["gateway_chunks_per_s"] else None
        row["gateway_cpu_us_per_chunk"] = round(cpu_us, 1) if cpu_us else None
        # what one worker could relay if it had a whole core to itself (CPU-bound estimate)
        row["chunks_per_s_per_core_est"] = round(1e6 / cpu_us) if cpu_us else None
        row["added_ttft_p50_ms"] = round(row["gateway_ttft_p50_ms"] - row["direct_ttft_p50_ms"], 2)
        row["added_ttft_p99_ms"] = round(row["gateway_ttft_p99_ms"] - row["direct_ttft_p99_ms"], 2)
        print(f"  {name:10s} {conc:4d} streams: direct {row['direct_chunks_per_s']:7d}/s gateway {row['gateway_chunks_per_s']:7d}/s "
              f"ratio {row['ratio']}  +TTFT p50 {row['added_ttft_p50_ms']} ms p99 {row['added_ttft_p99_ms']} ms  "
              f"gw CPU {row['gateway_cpu_pct']}% RSS {row['gateway_rss_mb']} MB  errors {row['errors']}", flush=True)
        out.append(row)
    return out


async def unary(name: str, up: Proc, gw: Proc, body: bytes, rounds: int, n: int) -> dict[str, Any]:
    """One-token non-streaming calls, one at a time, direct and gateway interleaved call
    by call (the finest alternation: load drift on a shared machine hits both alike)."""
    d: list[float] = []
    g: list[float] = []
    hd = {"content-type": "application/json"}
    hg = hd | {"authorization": f"Bearer {KEY}"}
    conn = {"limit": 1, "keepalive_timeout": 3}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(**conn)) as sd, aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(**conn)
    ) as sg:
        pairs = [(sd, up.base_url, hd, d), (sg, gw.base_url, hg, g)]
        for s, base, h, _ in pairs:  # warm both connections
            for _ in range(3):
                async with s.post(base + "/v1/chat/completions", data=body, headers=h) as r:
                    await r.read()
        for i in range(rounds * n):
            for s, base, h, out in pairs if i % 2 == 0 else pairs[::-1]:
                t0 = perf()
                async with s.post(base + "/v1/chat/completions", data=body, headers=h) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"unary call failed: {r.status} {await r.text()}")
                out.append(perf() - t0)
    row = {
        "scenario": name, "calls_each": len(d),
        "direct_p50_ms": round(1000 * pctl(d, 0.5), 3), "gateway_p50_ms": round(1000 * pctl(g, 0.5), 3),  # type: ignore[operator]
        "direct_p99_ms": round(1000 * pctl(d, 0.99), 3), "gateway_p99_ms": round(1000 * pctl(g, 0.99), 3),  # type: ignore[operator]
    }
    row["added_p50_ms"] = round(row["gateway_p50_ms"] - row["direct_p50_ms"], 3)
    row["added_p99_ms"] = round(row["gateway_p99_ms"] - row["direct_p99_ms"], 3)
    print(f"  {name}: one-token call p50 direct {row['direct_p50_ms']} ms, gateway {row['gateway_p50_ms']} ms, added {row['added_p50_ms']} ms (p99 added {row['added_p99_ms']} ms)", flush=True)
    return row


def print_table(res: dict[str, Any]) -> None:
    print("\n| upstream | streams | direct chunks/s | gateway chunks/s | ratio | added TTFT p50 (ms) | added TTFT p99 (ms) "
          "| gateway CPU % | CPU µs/chunk | gateway RSS (MB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in res["streams"]:
        print(f"| {r['scenario']} | {r['streams']} | {r['direct_chunks_per_s']} | {r['gateway_chunks_per_s']} | {r['ratio']} | "
              f"{r['added_ttft_p50_ms']} | {r['added_ttft_p99_ms']} | {r['gateway_cpu_pct']} | {r.get('gateway_cpu_us_per_chunk')} "
              f"| {r['gateway_rss_mb']} |")
    print("\n| one-token non-streaming call | direct p50 (ms) | gateway p50 (ms) | added p50 (ms) | added p99 (ms) |")
    print("|---|---:|---:|---:|---:|")
    for r in res["unary"]:
        print(f"| {r['scenario']} | {r['direct_p50_ms']} | {r['gateway_p50_ms']} | {r['added_p50_ms']} | {r['added_p99_ms']} |")
    if res.get("soak"):
        s = res["soak"]
        print(f"\nsoak: {s['requests']} requests at {s['req_per_s']} req/s, gateway RSS {s['rss_mb_after_5k']} MB after 5k -> {s['rss_mb_end']} MB at the end ({s['rss_growth_pct']:+}%)")


async def main(a: argparse.Namespace) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    logs = Path(a.logs)
    logs.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg_start": os.getloadavg()},
        "settings": vars(a), "streams": [], "unary": [], "soak": None,
    }
    procs: list[Proc] = []
    try:
        if not a.skip_vllm:
            print("starting the vLLM CPU engine ...", flush=True)
            eng = start_engine(logs)
            procs.append(eng)
            gw = start_gateway_process(eng.base_url, logs / "gateway-vllm.log", api_keys={"bench": KEY}, max_tokens_cap=4096, max_concurrency_per_key=0)
            procs.append(gw)
            wait_ready(gw, "/health", 30)
            print("(a) vLLM CPU engine", flush=True)
            res["unary"].append(await unary("vllm", eng, gw, chat_body(TINY_MODEL, 1, False), a.rounds, a.unary_n))
            res["streams"] += await scenario("vllm", eng, gw, chat_body(TINY_MODEL, a.vllm_tokens, True), a.concurrency, a.rounds, a.seconds, a.warmup)
            gw.stop()
            eng.stop(grace_s=20)
        print(f"(b) fake upstream, {1000 / a.interval_ms:.0f} chunks/s per stream", flush=True)
        fake = start_fake_upstream_process(logs / "fake.log", "--interval-ms", str(a.interval_ms), "--chunks", "50")
        procs.append(fake)
        gw = start_gateway_process(fake.base_url, logs / "gateway-fake.log", api_keys={"bench": KEY}, max_tokens_cap=100000, max_concurrency_per_key=0)
        procs.append(gw)
        wait_ready(gw, "/health", 30)
        res["unary"].append(await unary("fake", fake, gw, chat_body("fake", 1, False, False), a.rounds, a.unary_n))
        res["streams"] += await scenario(
            "fake", fake, gw, chat_body("fake", a.fake_tokens, True, False), a.concurrency, a.rounds, a.seconds, a.warmup
        )
        if a.max_rate:
            fast = start_fake_upstream_process(logs / "fake-fast.log", "--interval-ms", str(a.max_rate_interval_ms), "--chunks", "50")
            procs.append(fast)
            gw2 = start_gateway_process(fast.base_url, logs / "gateway-fast.log", api_keys={"bench": KEY}, max_tokens_cap=100000, max_concurrency_per_key=0)
            procs.append(gw2)
            wait_ready(gw2, "/health", 30)
            print(f"(c) fake upstream at {1000 / a.max_rate_interval_ms:.0f} chunks/s per stream: sustained chunks/s per worker", flush=True)
            res["streams"] += await scenario(
                f"fake-{1000 / a.max_rate_interval_ms:.0f}/s", fast, gw2, chat_body("fake", 1000, True, False), [128, 256], a.rounds, a.seconds, a.warmup
            )
        if a.soak:
            print(f"soak: {a.soak} non-streaming requests through the gateway", flush=True)
            res["soak"] = await soak(gw.base_url, chat_body("fake", 1, False, False), a.soak, 32, gw.popen.pid,
                                     {"content-type": "application/json", "authorization": f"Bearer {KEY}"})
    finally:
        for p in reversed(procs):
            p.stop(grace_s=10)
    res["machine"]["load_avg_end"] = os.getloadavg()
    print_table(res)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/out/gateway.json")
    ap.add_argument("--logs", default="bench/out/gateway-logs")
    ap.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 32, 128, 256])
    ap.add_argument("--rounds", type=int, default=4, help="rounds per target (alternating direct/gateway)")
    ap.add_argument("--seconds", type=float, default=4.0, help="measurement window per round")
    ap.add_argument("--warmup", type=float, default=1.5)
    ap.add_argument("--unary-n", type=int, default=150, help="one-token calls per round")
    ap.add_argument("--vllm-tokens", type=int, default=200, help="max_tokens of each vLLM stream")
    ap.add_argument("--fake-tokens", type=int, default=50, help="chunks of each fake stream")
    ap.add_argument("--interval-ms", type=float, default=20.0, help="fake pace (20 ms = 50 chunks/s per stream)")
    ap.add_argument("--max-rate", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--max-rate-interval-ms", type=float, default=2.0)
    ap.add_argument("--soak", type=int, default=50_000)
    ap.add_argument("--skip-vllm", action="store_true")
    ap.add_argument("--quick", action="store_true", help="short rounds, small soak (smoke run)")
    a = ap.parse_args()
    if a.quick:
        a.seconds, a.warmup, a.rounds, a.unary_n, a.soak = 3.0, 0.5, 1, 50, 5000
    asyncio.run(main(a))
