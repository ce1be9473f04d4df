"""GPU benchmark: burst and staggered arrivals, direct vs the gateway vs a plain aiohttp hop, same rounds.

On a GPU host where `../shared/gpu/start-vllm.sh` has started vLLM on :8000 (see bench/gpu/README.md),
this starts the gateway exactly as its container does (`python -m app.server`, the settings the ECS
task definition sets, one worker) and the control, a plain aiohttp pass-through
(`bench/gpu/aiohttp_hop.py`), then for every cell of

    arrivals {burst, staggered} x concurrency {32, 128, 256}

runs `--rounds` rounds; a round sends the same load to every target once, the order rotating from
round to round (so each target sits in each position equally often). `burst`: every closed-loop
worker starts at the same instant; `staggered`: worker starts are spread evenly over `--stagger-s`.
Each worker sends `--requests-per-worker` streaming chat completions (`max_tokens`, `ignore_eos`,
`stream_options.include_usage`), spread over several client processes.

Per target and cell: output tokens/s per round from `usage` (vLLM merges tokens into fewer SSE events
under load, so chunks are no token count), the ratio to direct within each round (reported: median
pair, min, max), TTFT p50/p99 over every request of every round (first content event), and the
kernel's TCP counters over the target's rounds (listen-queue overflows, retransmissions, connections
opened), which show a connection problem where there is one. Then one-token non-streaming calls one at
a time, the targets interleaved call by call: the added p50 of each hop.

Any directory holding another copy of the gateway (`--gateway NAME=DIR`, e.g. the code before a fix)
becomes one more target in the same rounds. Writes JSON; prints the tables and the verdicts.

    python3 bench/gpu/bench.py --upstream http://127.0.0.1:8000 --model m --out results.json
    python3 bench/gpu/bench.py --table results.json ...     # the tables of written results
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import multiprocessing.pool
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[2]
GATEWAY_DIR = REPO / "containers" / "gateway"
sys.path.insert(0, str(GATEWAY_DIR))
from app.core import contract  # noqa: E402  (stdlib only)

CONCURRENCY = (32, 128, 256)
ARRIVALS = ("burst", "staggered")
# floor_hops.py's kinds, in the order of their ports; gateway-raw is no floor but joins the same calls
FLOORS = ("tcp", "raw", "asgi", "granian", "gateway-raw")
VOCAB = 128_254  # the synthetic word-level tokenizer of shared/gpu/mk_model.py: words w0..w128253
ALB_IDLE_TIMEOUT_S = 900  # config default (ecs.alb_idle_timeout_seconds)
CLK = os.sysconf("SC_CLK_TCK")
# Kernel TCP counters worth a look per round (/proc/net/netstat TcpExt, /proc/net/snmp Tcp).
TCP_COUNTERS = ("ListenOverflows", "ListenDrops", "TCPTimeouts", "TCPSynRetrans", "RetransSegs", "ActiveOpens")
TARGETS_OK = {"ratio": 0.98}


def pctl(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def tcp_counters() -> dict[str, int]:
    out: dict[str, int] = {}
    for path in ("/proc/net/netstat", "/proc/net/snmp"):
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        for names, values in zip(lines[::2], lines[1::2]):
            for k, v in zip(names.split()[1:], values.split()[1:]):
                if k in TCP_COUNTERS:
                    out[k] = int(v)
    return out


class UpstreamSockets(threading.Thread):
    """Samples /proc/net/tcp every few ms during a round: when each connection to the upstream's port
    first appears (for a hop: when the hop has connected to vLLM), how many there were, and the longest
    accept queue of the upstream's listening socket (connections the kernel completed that vLLM has not
    accepted yet)."""

    def __init__(self, port: int, period_s: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.hexport = f"{port:04X}"
        self.period_s = period_s
        self.first_seen: dict[str, float] = {}
        self.accept_queue_max = 0
        self.stop_evt = threading.Event()
        self.t0 = time.time()

    def run(self) -> None:
        while not self.stop_evt.is_set():
            now = time.time()
            for path in ("/proc/net/tcp", "/proc/net/tcp6"):
                try:
                    lines = Path(path).read_text().splitlines()[1:]
                except OSError:
                    continue
                for ln in lines:
                    f = ln.split()
                    local, remote, st = f[1], f[2], f[3]
                    if not local.endswith(":" + self.hexport):
                        continue
                    if st == "0A":  # LISTEN: rx_queue is the accept queue's length
                        self.accept_queue_max = max(self.accept_queue_max, int(f[4].split(":")[1], 16))
                    elif st == "01":
                        self.first_seen.setdefault(remote, now)
            self.stop_evt.wait(self.period_s)

    def result(self, start: float) -> dict[str, Any]:
        self.stop_evt.set()
        self.join()
        new = sorted(t - start for t in self.first_seen.values() if t >= start)
        return {"conns": len(self.first_seen), "new_conns": len(new), "accept_queue_max": self.accept_queue_max,
                "connect_p50_ms": round(1000 * (pctl(new, 0.5) or 0), 1), "connect_max_ms": round(1000 * (new[-1] if new else 0), 1)}  # fmt: skip


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
            first = None
            tokens = 0
            async for line in resp.content:
                if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                    continue
                if b'"usage":{' in line and b'"choices":[]' in line:
                    tokens = json.loads(line[6:])["usage"]["completion_tokens"]
                    continue
                if first is None:
                    first = time.perf_counter()
                    out["ttft"].append(first - start)
            if tokens != body["max_tokens"]:
                # ignore_eos + max_tokens: anything shorter is a stream that broke or ended in an error event.
                out["errors"].append("short stream")
            out["tokens"].append(tokens)
    except (aiohttp.ClientError, asyncio.TimeoutError, KeyError, ValueError) as exc:
        out["errors"].append(type(exc).__name__)


async def client_worker_group(
    url: str, bodies: list[dict[str, Any]], workers: int, first: int, total: int, per_worker: int, stagger_s: float
) -> dict[str, list]:
    out: dict[str, list] = {"ttft": [], "tokens": [], "errors": []}
    conn = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=900, sock_connect=30)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        t0 = time.perf_counter()

        async def worker(w: int) -> None:
            # Worker w of `total` starts at its share of the stagger window (0 for bursts), counted
            # from one shared instant so the processes' workers interleave.
            await asyncio.sleep(max(0.0, t0 + stagger_s * w / max(1, total) - time.perf_counter()))
            for i in range(per_worker):
                await one_request(session, url, bodies[(w * per_worker + i) % len(bodies)], out)

        await asyncio.gather(*(worker(first + w) for w in range(workers)))
    return out


def _client_process(args: tuple[Any, ...]) -> dict[str, list]:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    start_at, *rest = args
    time.sleep(max(0.0, start_at - time.time()))  # every process starts its workers at the same instant
    return asyncio.run(client_worker_group(*rest))


def run_round(
    pool: multiprocessing.pool.Pool, url: str, bodies: list[dict[str, Any]], concurrency: int, per_worker: int, stagger_s: float
) -> tuple[dict[str, list], float]:
    procs = min(8, concurrency)
    split = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    firsts = [sum(split[:i]) for i in range(procs)]
    start_at = time.time() + 0.2
    run_round.started_at = start_at  # type: ignore[attr-defined]
    parts = pool.map(_client_process, [(start_at, url, bodies, n, f, concurrency, per_worker, stagger_s) for n, f in zip(split, firsts)])
    wall = time.time() - start_at
    merged: dict[str, list] = {"ttft": [], "tokens": [], "errors": []}
    for p in parts:
        for k in merged:
            merged[k].extend(p[k])
    return merged, wall


# --------------------------------------------------------------------------- the hops
def gateway_env(upstream: str, model: str, port: int) -> dict[str, str]:
    """The environment the ECS task definition gives the gateway (app.py serving_settings)."""
    return {
        **os.environ,
        contract.ENV_UPSTREAM_URL: upstream,
        contract.ENV_SERVED_MODEL_NAME: model,
        contract.ENV_PORT: str(port),
        contract.ENV_HOST: "127.0.0.1",
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


class Hop:
    """A pass-through process in front of the upstream: a gateway copy or the aiohttp control."""

    def __init__(self, name: str, cmd: list[str], cwd: Path, env: dict[str, str], port: int, log: Path) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log.open("wb")
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    @classmethod
    def gateway(cls, name: str, gw_dir: Path, upstream: str, model: str, port: int, log: Path, env: dict[str, str]) -> "Hop":
        return cls(name, [sys.executable, "-m", "app.server"], gw_dir, {**gateway_env(upstream, model, port), **env}, port, log)

    @classmethod
    def aiohttp_control(cls, upstream: str, port: int, log: Path) -> "Hop":
        cmd = [sys.executable, str(Path(__file__).with_name("aiohttp_hop.py")), "--upstream", upstream, "--port", str(port)]
        return cls("aiohttp", cmd, REPO, dict(os.environ), port, log)

    @classmethod
    def floor(cls, kind: str, upstream: str, model: str, port: int, log: Path) -> "Hop":
        cmd = [sys.executable, str(Path(__file__).with_name("floor_hops.py")), kind, "--upstream", upstream, "--port", str(port)]
        # The gateway's environment for every floor: gateway-raw reads it, the others ignore it.
        return cls(f"floor-{kind}", cmd, REPO, gateway_env(upstream, model, port), port, log)

    def wait_ready(self, path: str, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log.name}")
            try:
                with urllib.request.urlopen(f"{self.url}{path}", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"{self.name} not ready; see {self.log.name}")

    def pids(self) -> list[int]:
        """The hop's process and its descendants (granian serves from a worker process)."""
        out, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            for t in Path(f"/proc/{pid}/task").glob("*/children"):
                todo += map(int, t.read_text().split())
        return out

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(map(int, fields[11:15]))  # user and system time, its own and its reaped children's
        return total / CLK

    def peak_rss_mb(self) -> float:
        return sum(
            next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmHWM:"))
            for pid in self.pids()
        ) / 1024

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# --------------------------------------------------------------------------- the cells
def bodies_for(model: str, words: int, max_tokens: int, stream: bool, n: int = 64) -> list[dict[str, Any]]:
    rng = random.Random(words * 2 + stream)
    out = []
    for _ in range(n):
        prompt = " ".join(f"w{rng.randrange(VOCAB)}" for _ in range(words))
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "ignore_eos": True,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        out.append(body)
    return out


def summarize_cell(rounds: list[dict[str, dict[str, Any]]], names: list[str]) -> dict[str, Any]:
    """Per target: tokens/s per round, ratio to direct per round (pairs), pooled TTFT percentiles."""
    ms = lambda v: None if v is None else round(v * 1000, 1)  # noqa: E731
    out: dict[str, Any] = {}
    for name in names:
        rs = [r[name] for r in rounds]
        tps = [r["tokens"] / r["wall"] for r in rs]
        ttft = [t for r in rs for t in r["ttft"]]
        row: dict[str, Any] = {
            "tokens_per_s": [round(x, 1) for x in tps],
            "tokens_per_s_median": round(statistics.median(tps), 1),
            "ttft_p50_ms": ms(pctl(ttft, 0.5)),
            "ttft_p99_ms": ms(pctl(ttft, 0.99)),
            "ttft_max_ms": ms(max(ttft) if ttft else None),
            "round_p99_ms": [ms(pctl(r["ttft"], 0.99)) for r in rs],
            "ttft_ms_by_round": [[ms(t) for t in r["ttft"]] for r in rs],  # for intervals over rounds (tables())
            "requests": sum(r["requests"] for r in rs),
            "errors": sum(len(r["errors"]) for r in rs),
            "error_kinds": sorted({e for r in rs for e in r["errors"]}),
            "tcp": {k: sum(r["tcp"].get(k, 0) for r in rs) for k in TCP_COUNTERS},
            "upstream_new_conns": sum(r["upstream_sockets"]["new_conns"] for r in rs),
            "upstream_accept_queue_max": max(r["upstream_sockets"]["accept_queue_max"] for r in rs),
            "upstream_connect_max_ms": max(r["upstream_sockets"]["connect_max_ms"] for r in rs),
            "ttft_p90_ms": ms(pctl(ttft, 0.9)),
        }
        if "cpu_s" in rs[0]:
            row["cpu_cores"] = round(sum(r["cpu_s"] for r in rs) / sum(r["wall"] for r in rs), 3)
        if name != "direct":
            pairs = [r[name]["tokens"] / r[name]["wall"] / (r["direct"]["tokens"] / r["direct"]["wall"]) for r in rounds]
            row["ratio_pairs"] = [round(x, 3) for x in pairs]
            row["ratio_median"] = round(statistics.median(pairs), 3)
            row["ratio_min"], row["ratio_max"] = round(min(pairs), 3), round(max(pairs), 3)
        out[name] = row
    return out


async def unary(targets: dict[str, str], model: str, n: int, hops: dict[str, Hop]) -> dict[str, Any]:
    """One-token non-streaming calls, one at a time, the targets interleaved call by call (load drift
    hits all alike), each over its own kept-alive connection. A hop's CPU time per call (its process,
    user + system, over every call it served) is what a call costs it, the kernel's work for its reads
    and writes included: on a machine where that differs from another, so does every hop's latency."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "w1 w2 w3"}], "max_tokens": 1}).encode()
    hdr = {"content-type": "application/json"}
    times: dict[str, list[float]] = {k: [] for k in targets}
    sessions = {k: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) for k in targets}
    cpu0 = {k: h.cpu_seconds() for k, h in hops.items()}
    try:
        names = list(targets)
        for i in range(n + 5):
            for k in names[i % len(names):] + names[: i % len(names)]:
                t0 = time.perf_counter()
                async with sessions[k].post(targets[k] + "/v1/chat/completions", data=body, headers=hdr) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"{k}: one-token call failed: {r.status}")
                if i >= 5:  # the first five warm the connections
                    times[k].append(time.perf_counter() - t0)
    finally:
        for s in sessions.values():
            await s.close()
    cpu_us = {k: round(1e6 * (h.cpu_seconds() - cpu0[k]) / (n + 5), 1) for k, h in hops.items()}
    d50 = pctl(times["direct"], 0.5) or 0.0
    return {
        k: {"p50_ms": round(1000 * (pctl(v, 0.5) or 0), 3), "p99_ms": round(1000 * (pctl(v, 0.99) or 0), 3),
            "added_p50_ms": round(1000 * ((pctl(v, 0.5) or 0) - d50), 3), "calls": len(v),
            **({"cpu_us_per_call": cpu_us[k]} if k in cpu_us else {})}
        for k, v in times.items()
    }  # fmt: skip


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--table":  # print the tables of result files already written
        for f in sys.argv[2:]:
            print(f"### {Path(f).name}\n\n{tables(json.loads(Path(f).read_text()))}\n")
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", default="http://127.0.0.1:8000")
    ap.add_argument("--model", default="m")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--label", default="Llama-3-8B shape, bf16, TP 1")
    ap.add_argument("--arrivals", default=",".join(ARRIVALS))
    ap.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)))
    ap.add_argument("--rounds", type=int, default=6, help="rounds per cell (each runs every target once; 0: only the one-token calls)")
    ap.add_argument("--requests-per-worker", type=int, default=1)
    ap.add_argument("--stagger-s", type=float, default=2.0, help="staggered arrivals: worker starts spread over this")
    ap.add_argument("--prompt-words", type=int, default=256)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--unary", type=int, default=300, help="one-token calls per target (0: skip)")
    ap.add_argument("--gateway", action="append", default=[], metavar="NAME=DIR[:VAR=VALUE...]",
                    help="another gateway copy (and/or settings) as one more target")
    ap.add_argument("--no-control", action="store_true", help="leave out the aiohttp control")
    ap.add_argument("--floors", action="store_true",
                    help="add the floors of floor_hops.py as targets of the one-token calls: a byte relay, a bare httptools server, "
                         "and a bare ASGI app under uvicorn and under granian; and gateway-raw, the gateway's endpoints on that bare server")
    ap.add_argument("--base-port", type=int, default=8080)
    ap.add_argument("--logs", type=Path, default=None, help="folder for the hops' logs (default: beside --out)")
    a = ap.parse_args()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    logs = a.logs or a.out.parent
    logs.mkdir(parents=True, exist_ok=True)

    hops: list[Hop] = []
    try:
        gws = [("gateway", str(GATEWAY_DIR))] + [tuple(g.split("=", 1)) for g in a.gateway]
        for i, (name, spec) in enumerate(gws):
            d, *env = spec.split(":")
            hops.append(Hop.gateway(name, Path(d).resolve(), a.upstream, a.model, a.base_port + i, logs / f"{a.out.stem}.{name}.log",
                                    dict(e.split("=", 1) for e in env)))  # fmt: skip
        if not a.no_control:
            hops.append(Hop.aiohttp_control(a.upstream, a.base_port + 10, logs / f"{a.out.stem}.aiohttp.log"))
        if a.floors:
            hops += [Hop.floor(k, a.upstream, a.model, a.base_port + 11 + i, logs / f"{a.out.stem}.floor-{k}.log") for i, k in enumerate(FLOORS)]
        for h in hops:
            h.wait_ready(contract.HEALTH_PATH)
        targets = {"direct": a.upstream, **{h.name: h.url for h in hops}}
        by_name = {h.name: h for h in hops}
        names = [n for n in targets if not n.startswith("floor-")]  # the floors serve the one-token calls only
        up_port = int(a.upstream.rsplit(":", 1)[1].split("/")[0])
        cells: list[dict[str, Any]] = []
        bodies = bodies_for(a.model, a.prompt_words, a.max_tokens, True)
        with mp.get_context("fork").Pool(8) as pool:
            for url in [targets[n] for n in names] if a.rounds else ():  # warm every path (pools, CUDA graphs for the batch sizes used)
                run_round(pool, url + "/v1/chat/completions", bodies, 16, 1, 0.0)
            for arrivals in a.arrivals.split(",") if a.rounds else ():
                stagger = a.stagger_s if arrivals == "staggered" else 0.0
                for conc in map(int, a.concurrency.split(",")):
                    rounds = []
                    for r in range(a.rounds):
                        order = names[r % len(names):] + names[: r % len(names)]
                        got: dict[str, dict[str, Any]] = {}
                        for name in order:
                            hop = by_name.get(name)
                            cpu0 = hop.cpu_seconds() if hop else 0.0
                            tcp0 = tcp_counters()
                            socks = UpstreamSockets(up_port)
                            socks.start()
                            raw, wall = run_round(pool, targets[name] + "/v1/chat/completions", bodies, conc, a.requests_per_worker, stagger)
                            tcp1 = tcp_counters()
                            got[name] = {
                                "tokens": sum(raw["tokens"]), "wall": wall, "ttft": raw["ttft"], "errors": raw["errors"],
                                "requests": len(raw["tokens"]) + len(raw["errors"]),
                                "tcp": {k: tcp1.get(k, 0) - tcp0.get(k, 0) for k in tcp1},
                                "upstream_sockets": socks.result(run_round.started_at),  # type: ignore[attr-defined]
                            }  # fmt: skip
                            if hop:
                                got[name]["cpu_s"] = hop.cpu_seconds() - cpu0
                        rounds.append(got)
                        partial = {"arrivals": arrivals, "concurrency": conc, "rounds": len(rounds), "targets": summarize_cell(rounds, names)}
                        a.out.write_text(json.dumps(report(a, [*cells, partial], None, {}), indent=1))  # a cut-off run keeps its rounds
                        print(f"{arrivals} {conc} round {r + 1}: " + "  ".join(
                            f"{n} {got[n]['tokens'] / got[n]['wall']:.0f} tok/s p99 {1000 * (pctl(got[n]['ttft'], 0.99) or 0):.0f} ms"
                            for n in names), flush=True)  # fmt: skip
                    cells.append(partial)
        one_token = asyncio.run(unary(targets, a.model, a.unary, by_name)) if a.unary else None
        peak = {h.name: round(h.peak_rss_mb(), 1) for h in hops}
    finally:
        for h in hops:
            h.stop()
    rep = report(a, cells, one_token, peak)
    a.out.write_text(json.dumps(rep, indent=1))
    print(tables(rep))
    return 0


def judged(target: str) -> bool:
    """A gateway copy, held to issue 13's targets (not direct, the control or a floor)."""
    return target not in ("direct", "aiohttp") and not target.startswith("floor-")


def report(a: argparse.Namespace, cells: list[dict[str, Any]], one_token: dict[str, Any] | None, peak: dict[str, float]) -> dict[str, Any]:
    return {
        "label": a.label,
        "date": time.strftime("%Y-%m-%d"),
        "gpu": _gpu_name(),
        "vllm_version": _vllm_version(a.upstream),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "somaxconn": _sysctl("net/core/somaxconn"),
                 "tcp_max_syn_backlog": _sysctl("net/ipv4/tcp_max_syn_backlog")},  # fmt: skip
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "peak_rss_mb": peak,
        "cells": cells,
        "one_token": one_token,
    }


def _sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", name).read_text().strip()
    except OSError:
        return None


def _gpu_name() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        return "none"


def _vllm_version(upstream: str) -> str:
    try:
        with urllib.request.urlopen(f"{upstream}/version", timeout=5) as r:
            return json.loads(r.read())["version"]
    except (OSError, ValueError, KeyError):
        return "unknown"


def p99_gap_interval(row: dict[str, Any], ctl: dict[str, Any], draws: int = 1000) -> tuple[float, float] | None:
    """A 90 % interval of (pooled TTFT p99 of a hop) - (the control's), resampling whole rounds (the
    same rounds for both: a round's load hits both alike). None where the per-round TTFTs were not
    kept (results before 2026-12-05's second run)."""
    a, b = row.get("ttft_ms_by_round"), ctl.get("ttft_ms_by_round")
    if not a or not b or len(a) != len(b):
        return None
    rng = random.Random(13)
    gaps = []
    for _ in range(draws):
        idx = [rng.randrange(len(a)) for _ in a]
        gaps.append((pctl([t for i in idx for t in a[i]], 0.99) or 0.0) - (pctl([t for i in idx for t in b[i]], 0.99) or 0.0))
    gaps.sort()
    return gaps[int(0.05 * draws)], gaps[int(0.95 * draws) - 1]


def tables(report: dict[str, Any]) -> str:
    """Markdown: one row per cell and target; each hop against direct and against the aiohttp control
    of the same rounds (the fairest comparison: a round's load hits both alike)."""
    s = report["settings"]
    cells = report["cells"]
    stagger = f"; staggered: starts spread over {s['stagger_s']} s" if any(c["arrivals"] == "staggered" for c in cells) else ""
    lines = [
        f"{report['label']} on {report['gpu']}, vLLM {report['vllm_version']}, {report['date']}; {s['rounds']} rounds per cell, "
        f"{s['requests_per_worker']} request(s) per worker, {s['prompt_words']}-word prompts, {s['max_tokens']} tokens{stagger}; "
        f"peak RSS (MB) {report['peak_rss_mb']}",
    ]
    if cells:
        lines += [
            "",
            "| arrivals | streams | target | tok/s (median round) | vs direct: median pair (min-max) | vs aiohttp: median pair "
            "| TTFT p50 (ms) | TTFT p99 (ms) | p99 vs aiohttp: pooled / median of rounds (ms) | new conns to vLLM | accept queue max "
            "| listen overflows | retrans segs | errors | CPU cores |",
            "|---|---:|---|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
    verdicts = []
    for c in cells:
        t = c["targets"]
        ctl = t.get("aiohttp")
        for name, row in t.items():
            pair = "" if name == "direct" else f"{row['ratio_median']:.3f} ({row['ratio_min']:.3f}-{row['ratio_max']:.3f})"
            vs_tps = vs_p99 = ""
            if ctl and judged(name):
                vs_tps = f"{statistics.median(a / b for a, b in zip(row['tokens_per_s'], ctl['tokens_per_s'])):.3f}"
                med = statistics.median(a - b for a, b in zip(row["round_p99_ms"], ctl["round_p99_ms"]))
                vs_p99 = f"{row['ttft_p99_ms'] - ctl['ttft_p99_ms']:+.0f} / {med:+.0f}"
            lines.append(
                f"| {c['arrivals']} | {c['concurrency']} | {name} | {row['tokens_per_s_median']:.0f} | {pair} | {vs_tps} "
                f"| {row['ttft_p50_ms']} | {row['ttft_p99_ms']} | {vs_p99} | {row['upstream_new_conns']} "
                f"| {row['upstream_accept_queue_max']} | {row['tcp']['ListenOverflows']} | {row['tcp']['RetransSegs']} "
                f"| {row['errors']} | {row.get('cpu_cores', '')} |"
            )
            if judged(name):
                ok_ratio = row["ratio_median"] >= TARGETS_OK["ratio"]
                ok_p99 = ctl is None or row["ttft_p99_ms"] <= ctl["ttft_p99_ms"]
                spread = ""
                if ctl:
                    below = sum(x <= y for x, y in zip(row["round_p99_ms"], ctl["round_p99_ms"]))
                    spread = f"; round p99 at or below the control's in {below} of {len(row['round_p99_ms'])} rounds"
                    gap = p99_gap_interval(row, ctl)
                    if gap:
                        spread += f", pooled gap 90 % interval over rounds {gap[0]:+.0f} to {gap[1]:+.0f} ms"
                verdicts.append(
                    f"{name} {c['arrivals']} {c['concurrency']}: tokens/s median pair {row['ratio_median']:.3f} "
                    f"({'met' if ok_ratio else 'MISSED'} >= 0.98"
                    + (f"; the control's {ctl['ratio_median']:.3f}" if ctl else "")
                    + f"); TTFT p99 {row['ttft_p99_ms']} vs control {ctl['ttft_p99_ms'] if ctl else '-'} ms "
                    f"({'met' if ok_p99 else 'MISSED'}{spread})"
                )
    u = report.get("one_token")
    if u:
        lines += ["", "| one-token non-streaming call | p50 (ms) | p99 (ms) | added p50 vs direct (ms) | calls | hop CPU per call (µs) |",
                  "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for name, row in u.items():
            lines.append(f"| {name} | {row['p50_ms']} | {row['p99_ms']} | {row['added_p50_ms']} | {row['calls']} | {row.get('cpu_us_per_call', '')} |")
            if judged(name):
                verdicts.append(f"{name} one-token added p50 {row['added_p50_ms']} ms ({'met' if row['added_p50_ms'] <= 0.5 else 'MISSED'} <= 0.5)")
    return "\n".join(lines + ["", *verdicts])


if __name__ == "__main__":
    sys.exit(main())
