"""Affinity benchmark (`make bench-affinity`): N engines, each with its own gateway, a round-robin
balancer in front, multi-turn conversations with long histories; affinity off vs on in
alternating rounds of one run, for one or more workload profiles (``--profiles``). Prints a table
and writes JSON.

Per phase: vLLM's prefix-cache hit rate (``vllm:prefix_cache_hits`` / ``..._queries`` deltas,
in tokens, over every turn, summed over the engines and per engine), TTFT p50/p99 of every turn
through the balancer, the gateways' forwarded and affinity-hit shares, and two numbers from a
model of the cache (``cache_model``): ``ceiling``, what a perfect router can reach on this
workload, and ``routed_model``, what the cache gives on the engines the turns really went to (the
balancer records where each connection went; with affinity on, the owner on the ring). Both come
from the turns' real prompt token counts, the engine's KV block size and the tokens all first turns
share (the engine's own ``/tokenize``). Every phase uses conversations of its own (a salt in the
first user turn), so no phase profits from another's cache; a profile's shared system prompt is
warmed on every engine before the rounds, as it is in steady state. Then, unless
``--hop-requests 0``, the forward hop on its own: one-token streams sent to gateway 0 whose owner
is gateway 0 vs gateway 1, alternating.

Backends (``--engine``):
  ``vllm``   N vLLM CPU engines with the tiny model (tests/fixtures/make_tiny_model.py, context
             raised to --max-model-len), prefix caching on. Run it under
             ``flock /tmp/llmh-vllm.lock`` (the Makefile target does not take the lock itself).
  ``fake``   N fake upstreams (bench/gateway/fake_upstream.py): exercises the harness and the
             routing shares; they have no prefix cache, so hit rates are n/a (the cache
             model runs with no shared tokens, on the fake's own token counts).
  ``urls``   already-running engines (``--urls``), e.g. two vLLMs on one GPU (gpu.sh).

The assistant turns the client sends back are fixed text from the same word list, not the
generated gibberish: random weights produce byte sequences that do not re-tokenize to the same
ids, which would break the prefix for reasons that have nothing to do with routing.

    .venv/bin/python bench/affinity/run.py --engine fake --conversations 12 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from containers.gateway.app.core.affinity import HashRing, affinity_key  # noqa: E402
from tests.fixtures.engine import (  # noqa: E402
    TINY_MODEL,
    VLLM_PYTHON,
    Proc,
    free_port,
    http_get,
    spawn,
    start_fake_upstream_process,
    start_gateway_process,
    vllm_metric,
    wait_ready,
)

perf = time.perf_counter
TINY_WORDS = (
    "the a an of to in is on for with as by at from gateway model token stream chunk request response latency "
    "server client engine cache queue health metrics user assistant system hello world quick brown fox jumps over "
    "lazy dog 0 1 2 3 4 5 6 7 8 9"
).split()
HITS, QUERIES = "vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"


def pctl(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


# --------------------------------------------------------------------------- processes
def start_engines(n: int, log_dir: Path, max_model_len: int, kv_gib: str) -> list[Proc]:
    model = log_dir / "tiny-model"
    subprocess.run([str(VLLM_PYTHON), str(REPO / "tests/fixtures/make_tiny_model.py"), str(model)], check=True, capture_output=True)
    cfg = json.loads((model / "config.json").read_text())
    cfg["max_position_embeddings"] = max_model_len  # long histories; random weights do not care
    (model / "config.json").write_text(json.dumps(cfg))
    tc = json.loads((model / "tokenizer_config.json").read_text())
    tc["model_max_length"] = max_model_len
    (model / "tokenizer_config.json").write_text(json.dumps(tc))
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=kv_gib, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1")  # fmt: skip
    procs = []
    for i in range(n):
        port = free_port()
        cmd = [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
               "--served-model-name", TINY_MODEL, "--load-format", "dummy", "--host", "127.0.0.1", "--port", str(port),
               "--max-model-len", str(max_model_len), "--max-num-seqs", "64", "--enable-prefix-caching",
               "--disable-uvicorn-access-log"]  # fmt: skip
        log = log_dir / f"vllm-{i}.log"
        procs.append(Proc(spawn(cmd, env, log), port, log, model=TINY_MODEL))
    for p in procs:
        wait_ready(p, "/health", 900)
    return procs


async def start_balancer(ports: list[int], routes: dict[int, int]) -> tuple[asyncio.AbstractServer, int]:
    """Round robin per connection (the client opens one connection per request), as a plain TCP relay.
    ``routes`` maps each client connection's source port to the index of the backend it was given (the
    client looks its own port up while its response is open), so a phase can tell where each turn went."""
    nxt = itertools.cycle(range(len(ports)))

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            dst.close()

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        i = next(nxt)
        routes[w.get_extra_info("peername")[1]] = i
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", ports[i])
        except OSError:
            w.close()
            return
        await asyncio.gather(pipe(r, uw), pipe(ur, w))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def gateway_set(backends: list[str], mode: str, log_dir: Path, model: str, max_queue: int) -> list[Proc]:
    ports = [free_port() for _ in backends]
    peers = ",".join(f"127.0.0.1:{p}" for p in ports)
    gws = []
    for i, (url, port) in enumerate(zip(backends, ports)):
        extra: dict[str, Any] = {}
        if mode != "off":
            extra = dict(affinity=mode, affinity_peers=peers, affinity_self=f"127.0.0.1:{port}",
                         affinity_refresh_s=1.0, affinity_max_queue=max_queue)  # fmt: skip
        gws.append(start_gateway_process(url, log_dir / f"gateway-{mode}-{i}.log", port=port, served_model_name=model,
                                         emf_enabled="false", read_timeout_s=600, max_tokens_cap=4096, **extra))  # fmt: skip
    for g in gws:
        wait_ready(g, "/health", 120)
    return gws


# --------------------------------------------------------------------------- workload
# Each conversation: an optional system prompt shared by every conversation of the profile (an agent's
# instructions and tool definitions), a short opening user turn of its own, then per turn an assistant
# reply and a user turn, all resent every turn. In words of the tiny vocabulary (one token each).
PROFILES: dict[str, dict[str, int]] = {
    # A coding/ops agent: 3,000 tokens of shared instructions and tool schemas, then the conversation.
    "agent": {"system_words": 3000, "doc_words": 100, "reply_words": 200, "turn_words": 100},
    # A chat with nothing shared across conversations: the history is all there is to reuse.
    "chat": {"system_words": 0, "doc_words": 150, "reply_words": 400, "turn_words": 200},
    # The 2026-12-04 run: a 400-token shared prompt, then a 1,600-token document in the first turn.
    "doc": {"system_words": 400, "doc_words": 1600, "reply_words": 60, "turn_words": 120},
}


class Workload:
    def __init__(self, a: argparse.Namespace, profile: str) -> None:
        self.a = a
        self.profile = profile
        self.shape = dict(PROFILES.get(profile, {}))
        for k in ("system_words", "doc_words", "reply_words", "turn_words"):
            if getattr(a, k) is not None:
                self.shape[k] = getattr(a, k)
        self.words = [f"w{i}" for i in range(1000, 60000)] if a.vocab == "gpu" else TINY_WORDS
        rng = random.Random(7)
        self.system = self.text(rng, self.shape["system_words"])
        self.shared_tokens: int | None = None  # tokens every first turn shares (filled in by measure_shared)

    def text(self, rng: random.Random, n: int) -> str:
        return " ".join(rng.choice(self.words) for _ in range(n))

    def conversation(self, salt: str, i: int) -> list[list[dict[str, str]]]:
        """The messages of each turn of conversation i (turn t resends turns 0..t-1)."""
        rng = random.Random(f"{salt}/{i}")
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        msgs.append({"role": "user", "content": f"{salt} {i}: " + self.text(rng, self.shape["doc_words"])})
        turns = [list(msgs)]
        for _ in range(self.a.turns - 1):
            msgs = msgs + [{"role": "assistant", "content": self.text(rng, self.shape["reply_words"])},
                           {"role": "user", "content": self.text(rng, self.shape["turn_words"])}]  # fmt: skip
            turns.append(list(msgs))
        return turns

    def measure_shared(self, engine: str, model: str) -> None:
        """The tokens all first turns have in common (system prompt and template), from the engine's
        own /tokenize of two first turns: the part of a first turn any engine can serve from cache."""
        ids = []
        for salt in ("probe-a", "probe-b"):
            body = json.dumps({"model": model, "messages": self.conversation(salt, 0)[0]}).encode()
            req = urllib.request.Request(engine + "/tokenize", body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as r:
                ids.append(json.loads(r.read())["tokens"])
        self.shared_tokens = next((i for i, (x, y) in enumerate(zip(*ids)) if x != y), min(map(len, ids)))


def best_hit(prompt: int, cached: int, block: int) -> int:
    """Prompt tokens vLLM can serve from cache when ``cached`` leading tokens are in it: whole blocks
    only, and never the last prompt token (it must be computed to sample)."""
    return min(cached, prompt - 1) // block * block


async def stream_turn(session: aiohttp.ClientSession, url: str, model: str, messages: list[dict[str, str]], max_tokens: int,
                      headers: dict[str, str] | None = None) -> tuple[float | None, dict[str, int], int, int | None]:  # fmt: skip
    """One streamed turn: (TTFT, usage, status, the client's source port while the response was open)."""
    body = {"model": model, "messages": messages, "max_tokens": max_tokens, "stream": True, "ignore_eos": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    t0 = perf()
    ttft = None
    usage: dict[str, int] = {}
    async with session.post(url + "/v1/chat/completions", json=body, headers=headers or {}) as r:
        sock = r.connection.transport.get_extra_info("sockname") if r.connection and r.connection.transport else None
        port = sock[1] if sock else None
        if r.status != 200:
            await r.read()
            return None, usage, r.status, port
        async for line in r.content:
            if ttft is None and line.startswith(b"data: {") and b'"content"' in line:
                ttft = perf() - t0
            if b'"prompt_tokens"' in line:
                usage = json.loads(line[6:])["usage"]
    return ttft, usage, 200, port


def engine_counters(engines: list[str]) -> list[tuple[float, float]]:
    return [(vllm_metric(u, HITS), vllm_metric(u, QUERIES)) for u in engines]


def gateway_outcomes(gws: list[Proc]) -> dict[str, float]:
    out: dict[str, float] = {}
    for g in gws:
        _, text = http_get(g.base_url + "/metrics")
        for line in text.decode().splitlines():
            if line.startswith("gateway_affinity_requests_total{"):
                label = line.split('outcome="', 1)[1].split('"', 1)[0]
                out[label] = out.get(label, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


async def phase(a: argparse.Namespace, wl: Workload, mode: str, salt: str, lb_port: int, routes: dict[int, int],
                gws: list[Proc], engines: list[str], block: int) -> dict[str, Any]:  # fmt: skip
    convs = [wl.conversation(salt, i) for i in range(a.conversations)]
    ring = HashRing([f"127.0.0.1:{g.port}" for g in gws]) if mode != "off" else None
    index = {f"127.0.0.1:{g.port}": i for i, g in enumerate(gws)}
    ttfts: list[float] = []
    turns_done: list[dict[str, Any]] = []  # per answered turn: conversation, turn, prompt tokens, engine
    completion = 0
    errors = 0
    before, out_before = engine_counters(engines), gateway_outcomes(gws)
    sem = asyncio.Semaphore(a.concurrency)
    url = f"http://127.0.0.1:{lb_port}"
    conn = aiohttp.TCPConnector(force_close=True, limit=0)  # one connection per request: round robin per request
    timeout = aiohttp.ClientTimeout(total=900)
    t0 = perf()
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:

        async def run(ci: int, turns: list[list[dict[str, str]]]) -> None:
            nonlocal errors, completion
            async with sem:
                for t, msgs in enumerate(turns):
                    ttft, usage, status, port = await stream_turn(session, url, a.model, msgs, a.max_tokens)
                    if status != 200 or ttft is None:
                        errors += 1
                        continue
                    ttfts.append(ttft)
                    if ring is not None:  # served by the key's owner (the phase's outcomes say if any was not)
                        owner = ring.owner(affinity_key(mode, {"model": a.model, "messages": msgs}, []))  # type: ignore[arg-type]
                        engine = index.get(owner or "")
                    else:  # off: the gateway the balancer picked serves it with its own engine
                        engine = routes.get(port) if port is not None else None
                    if usage:
                        completion += usage.get("completion_tokens", 0)
                        turns_done.append({"conv": ci, "turn": t, "prompt": usage["prompt_tokens"], "engine": engine})

        await asyncio.gather(*(run(i, c) for i, c in enumerate(convs)))
    wall = perf() - t0
    after, out_after = engine_counters(engines), gateway_outcomes(gws)
    dh = [b[0] - x[0] for b, x in zip(after, before)]
    dq = [b[1] - x[1] for b, x in zip(after, before)]
    outcomes = {k: out_after.get(k, 0.0) - out_before.get(k, 0.0) for k in set(out_after) | set(out_before)}
    keyed = sum(v for k, v in outcomes.items() if k not in ("none", "received"))
    prompts = [x["prompt"] for x in turns_done]
    return {
        "mode": mode, "profile": wl.profile, "salt": salt, "requests": len(ttfts), "errors": errors, "wall_s": round(wall, 2),
        "hit_rate": round(sum(dh) / sum(dq), 4) if sum(dq) else None,
        **cache_model(turns_done, wl.shared_tokens, block),
        "hit_rate_per_engine": [round(h / q, 4) if q else None for h, q in zip(dh, dq)],
        "queried_tokens_per_engine": [int(q) for q in dq],
        "computed_prompt_tokens": int(sum(dq) - sum(dh)),
        "ttft_p50_ms": round(1000 * pctl(ttfts, 0.5), 1) if ttfts else None,  # type: ignore[operator]
        "ttft_p99_ms": round(1000 * pctl(ttfts, 0.99), 1) if ttfts else None,  # type: ignore[operator]
        "prompt_tokens_mean": round(sum(prompts) / len(prompts)) if prompts else None,
        "prompt_tokens_max": max(prompts) if prompts else None,
        "output_tokens_per_s": round(completion / wall, 1),
        "forwarded_share": round(outcomes.get("forwarded", 0) / keyed, 4) if keyed else None,
        "affinity_hit_share": round((outcomes.get("forwarded", 0) + outcomes.get("self", 0)) / keyed, 4) if keyed else None,
        "outcomes": outcomes,
    }  # fmt: skip


def cache_model(turns: list[dict[str, Any]], shared: int | None, block: int) -> dict[str, Any]:
    """What the prefix cache can give this phase's turns, in prompt tokens, as shares of all of them.

    ``ceiling``: a perfect router (every turn on the engine that served the conversation's previous
    turn): turn t reuses turn t-1's whole prompt, a first turn the shared part (system prompt and
    template, warmed on every engine before the run), in whole blocks. ``routed``: the same cache
    model on the engines the turns really went to: a turn reuses the longest earlier prompt of its
    conversation that its engine served, else the shared part. If the measured hit rate matches
    ``routed``, routing alone explains it. ``shared_only``: the shared part alone, which every engine
    serves from cache under any routing (the floor of ``routed``)."""
    if not turns or shared is None:
        return {"ceiling": None, "routed_model": None, "shared_only": None, "same_engine_as_previous": None}
    total = sum(x["prompt"] for x in turns)
    by_conv: dict[int, list[dict[str, Any]]] = {}
    for x in turns:
        by_conv.setdefault(x["conv"], []).append(x)
    ceiling = routed = same = follow = 0
    for conv in by_conv.values():
        conv.sort(key=lambda x: x["turn"])
        seen: dict[Any, int] = {}  # engine -> longest prompt of this conversation it served
        prev: dict[str, Any] | None = None
        for x in conv:
            ceiling += best_hit(x["prompt"], prev["prompt"] if prev else shared, block)
            routed += best_hit(x["prompt"], max(seen.get(x["engine"], 0), shared), block)
            if prev is not None:
                follow += 1
                same += prev["engine"] == x["engine"]
            seen[x["engine"]] = max(seen.get(x["engine"], 0), x["prompt"])
            prev = x
    shared_only = sum(best_hit(x["prompt"], shared, block) for x in turns)
    return {"ceiling": round(ceiling / total, 4), "routed_model": round(routed / total, 4),
            "shared_only": round(shared_only / total, 4),
            "same_engine_as_previous": round(same / follow, 4) if follow else None}  # fmt: skip


async def hop_cost(a: argparse.Namespace, gws: list[Proc], mode: str) -> dict[str, Any]:
    """One-token streams to gateway 0: owner gateway 0 (local) vs owner gateway 1 (one forward)."""
    ring = HashRing([f"127.0.0.1:{g.port}" for g in gws])
    local, remote = [], []
    i = 0
    while len(local) < a.hop_requests or len(remote) < a.hop_requests:
        msgs = [{"role": "user", "content": f"hop probe {i}"}]
        i += 1
        owner = ring.owner(affinity_key(mode, {"model": a.model, "messages": msgs}, []))  # type: ignore[arg-type]
        if owner == f"127.0.0.1:{gws[0].port}" and len(local) < a.hop_requests:
            local.append(msgs)
        elif owner == f"127.0.0.1:{gws[1].port}" and len(remote) < a.hop_requests:
            remote.append(msgs)
    res: dict[str, list[float]] = {"local": [], "forwarded": []}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
        for lm, rm in zip(local, remote):
            for kind, msgs in (("local", lm), ("forwarded", rm)):
                ttft, _, st, _ = await stream_turn(s, gws[0].base_url, a.model, msgs, 1)
                if st == 200 and ttft is not None:
                    res[kind].append(ttft)
    p50 = {k: pctl(v, 0.5) for k, v in res.items()}
    return {
        "pairs": len(local),
        "local_ttft_p50_ms": round(1000 * p50["local"], 2) if p50["local"] else None,
        "forwarded_ttft_p50_ms": round(1000 * p50["forwarded"], 2) if p50["forwarded"] else None,
        "added_p50_ms": round(1000 * (p50["forwarded"] - p50["local"]), 2) if p50["local"] and p50["forwarded"] else None,
        "local_ttft_p99_ms": round(1000 * (pctl(res["local"], 0.99) or 0), 2),
        "forwarded_ttft_p99_ms": round(1000 * (pctl(res["forwarded"], 0.99) or 0), 2),
    }


def summarize(phases: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    """Per profile and mode, the median over rounds."""
    keys = ("hit_rate", "ceiling", "routed_model", "shared_only", "same_engine_as_previous", "computed_prompt_tokens", "ttft_p50_ms",
            "ttft_p99_ms", "output_tokens_per_s", "forwarded_share", "affinity_hit_share")  # fmt: skip
    out: dict[str, Any] = {}
    for prof in dict.fromkeys(p["profile"] for p in phases):
        out[prof] = {}
        for m in ("off", mode):
            sel = [p for p in phases if p["profile"] == prof and p["mode"] == m]
            out[prof][m] = {k: (statistics.median(xs) if (xs := [p[k] for p in sel if p[k] is not None]) else None) for k in keys}
    return out


def print_table(res: dict[str, Any]) -> None:
    f = lambda v, fmt: "n/a" if v is None else format(v, fmt)  # noqa: E731
    print(f"\n{'profile':>7} {'round':>5} {'affinity':>8} {'req':>4} {'err':>3} {'hit rate':>8} {'ceiling':>7} {'routed':>6} "
          f"{'per engine':>15} {'same eng':>8} {'computed':>9} {'TTFT p50':>9} {'TTFT p99':>9} {'tok/s':>6} {'fwd':>5} "
          f"{'owner':>5} {'prompt':>6}")  # fmt: skip
    for p in res["phases"]:
        per = ",".join("-" if h is None else f"{h:.2f}" for h in p["hit_rate_per_engine"])
        print(f"{p['profile']:>7} {p['round']:>5} {p['mode']:>8} {p['requests']:>4} {p['errors']:>3} {f(p['hit_rate'], '.3f'):>8} "
              f"{f(p['ceiling'], '.3f'):>7} {f(p['routed_model'], '.3f'):>6} {per:>15} {f(p['same_engine_as_previous'], '.2f'):>8} "
              f"{p['computed_prompt_tokens']:>9} {f(p['ttft_p50_ms'], '.1f'):>9} {f(p['ttft_p99_ms'], '.1f'):>9} "
              f"{p['output_tokens_per_s']:>6.1f} {f(p['forwarded_share'], '.2f'):>5} {f(p['affinity_hit_share'], '.2f'):>5} "
              f"{f(p['prompt_tokens_mean'], 'd'):>6}")  # fmt: skip
    print("\nmedians over rounds:", json.dumps(res["summary"]))
    if res.get("hop"):
        print("forward hop on its own:", json.dumps(res["hop"]))


def block_size(engine: str, default: int) -> int:
    """The engine's KV block size (vllm:cache_config_info's label), else ``default``."""
    try:
        _, text = http_get(engine + "/metrics")
    except OSError:
        return default
    for line in text.decode().splitlines():
        if line.startswith("vllm:cache_config_info{") and 'block_size="' in line:
            return int(line.split('block_size="', 1)[1].split('"', 1)[0])
    return default


async def warm_shared(engines: list[str], wl: Workload, model: str) -> None:
    """Every engine gets one first turn of the profile directly (outside every phase's counters), so
    the shared system prompt is in every cache before the measured phases, as in steady state."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as s:
        for e in engines:
            await stream_turn(s, e, model, wl.conversation("warm", 0)[0], 1)


async def main(a: argparse.Namespace) -> None:
    log_dir = Path(a.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    owned: list[Proc] = []
    servers: list[asyncio.AbstractServer] = []
    try:
        if a.engine == "vllm":
            owned += start_engines(a.engines, log_dir, a.max_model_len, a.kv_gib)
            engines = [p.base_url for p in owned]
        elif a.engine == "fake":
            owned += [start_fake_upstream_process(log_dir / f"fake-{i}.log", "--interval-ms", "2", "--ttft-ms", "5")
                      for i in range(a.engines)]  # fmt: skip
            engines = [p.base_url for p in owned]
        else:
            engines = [u.rstrip("/") for u in a.urls.split(",")]
        sets: dict[str, tuple[list[Proc], int, dict[int, int]]] = {}
        for mode in ("off", a.mode):
            gws = gateway_set(engines, mode, log_dir, a.model, a.max_queue)
            owned += gws
            routes: dict[int, int] = {}
            server, port = await start_balancer([g.port for g in gws], routes)
            servers.append(server)
            sets[mode] = (gws, port, routes)
        await asyncio.sleep(2.5)  # the affinity gateways have polled each other as ready
        block = block_size(engines[0], a.block_size)
        workloads = [Workload(a, prof) for prof in a.profiles.split(",")]
        for wl in workloads:
            if a.engine == "fake":
                wl.shared_tokens = 0  # no tokenizer there: the cache model's arithmetic still runs
            else:
                wl.measure_shared(engines[0], a.model)
                await warm_shared(engines, wl, a.model)
        phases = []
        for r in range(a.rounds):
            for wl in workloads:
                for mode in (("off", a.mode) if r % 2 == 0 else (a.mode, "off")):
                    gws, port, routes = sets[mode]
                    p = await phase(a, wl, mode, f"r{r}-{wl.profile}-{mode}", port, routes, gws, engines, block)
                    p["round"] = r
                    phases.append(p)
                    print(json.dumps(p), flush=True)
        hop = await hop_cost(a, sets[a.mode][0], a.mode) if a.hop_requests and a.mode == "prefix" else None
        res = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": platform.node(), "cpus": os.cpu_count(),
            "args": vars(a), "engines": engines, "block_size": block,
            "profiles": {wl.profile: {**wl.shape, "shared_tokens": wl.shared_tokens} for wl in workloads},
            "phases": phases, "summary": summarize(phases, a.mode), "hop": hop,
        }  # fmt: skip
        print_table(res)
        if a.out:
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_text(json.dumps(res, indent=1))
    finally:
        for s in servers:
            s.close()
        for p in reversed(owned):
            p.stop(grace_s=20)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=["vllm", "fake", "urls"], default="fake")
    ap.add_argument("--urls", default="", help="with --engine urls: comma-separated engine base URLs")
    ap.add_argument("--engines", type=int, default=3, help="how many engines to start (vllm, fake)")
    ap.add_argument("--model", default=TINY_MODEL)
    ap.add_argument("--mode", choices=["prefix", "conversation"], default="prefix")
    ap.add_argument("--vocab", choices=["tiny", "gpu"], default="tiny", help="gpu: words w1000.. of shared/gpu's tokenizer")
    ap.add_argument("--profiles", default="agent,chat", help=f"workloads, comma-separated, each run off and on: {', '.join(PROFILES)}")
    ap.add_argument("--conversations", type=int, default=40)
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--system-words", type=int, default=None, help="override the profiles': shared system prompt")
    ap.add_argument("--doc-words", type=int, default=None, help="override: each conversation's opening user turn")
    ap.add_argument("--turn-words", type=int, default=None, help="override: each later user turn")
    ap.add_argument("--reply-words", type=int, default=None, help="override: each assistant turn resent")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--concurrency", type=int, default=6, help="conversations in flight")
    ap.add_argument("--rounds", type=int, default=2, help="alternating off/on pairs")
    ap.add_argument("--max-queue", type=int, default=4, help="GATEWAY_AFFINITY_MAX_QUEUE")
    ap.add_argument("--max-model-len", type=int, default=8192)
    ap.add_argument("--kv-gib", default="1", help="VLLM_CPU_KVCACHE_SPACE per engine")
    ap.add_argument("--block-size", type=int, default=128, help="KV block size if the engine does not say (vLLM CPU: 128)")
    ap.add_argument("--hop-requests", type=int, default=60, help="pairs for the forward-hop cost (prefix mode)")
    ap.add_argument("--log-dir", default="bench/out/affinity-logs")
    ap.add_argument("--out", default="bench/out/affinity.json")
    return ap.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
