"""Unit tests of conversation affinity: the ring, the key, the routing decision, the fallbacks."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from containers.gateway.app.core import contract
from containers.gateway.app.core.affinity import (
    Affinity,
    Decision,
    HashRing,
    Peer,
    PeerDirectory,
    affinity_key,
)
from containers.gateway.app.core.httpclient import Pool
from containers.gateway.app.core.upstream import CircuitBreaker, Upstream

KEYS = [int.from_bytes(hashlib.sha256(b"k%d" % i).digest()[:8], "big") for i in range(20_000)]


def owners(ring: HashRing) -> list[str | None]:
    return [ring.owner(k) for k in KEYS]


# --------------------------------------------------------------------------- ring
def test_ring_is_the_same_whatever_order_the_members_come_in() -> None:
    a = HashRing(["10.0.1.5:8080", "10.0.2.9:8080", "10.0.3.7:8080"])
    b = HashRing(["10.0.3.7:8080", "10.0.1.5:8080", "10.0.2.9:8080"])
    assert owners(a) == owners(b)
    assert HashRing([]).owner(123) is None


def test_ring_spreads_keys_evenly_enough() -> None:
    members = [f"10.0.0.{i}:8080" for i in range(1, 5)]
    got = owners(HashRing(members))
    shares = [got.count(m) / len(got) for m in members]
    assert all(0.17 < s < 0.33 for s in shares), shares  # 0.25 each, within the vnode noise


@settings(max_examples=40, deadline=None)
@given(n=st.integers(min_value=1, max_value=9), seed=st.integers(min_value=0, max_value=10_000))
def test_adding_a_member_moves_only_its_share(n: int, seed: int) -> None:
    members = [f"10.{seed % 250}.{i}.{seed % 7}:8080" for i in range(n)]
    new = f"10.255.{seed % 250}.1:8080"
    before = owners(HashRing(members))
    after = owners(HashRing([*members, new]))
    moved = [(b, a) for b, a in zip(before, after) if b != a]
    assert all(a == new for _, a in moved)  # keys only ever move to the new member
    share = len(moved) / len(KEYS)
    assert abs(share - 1 / (n + 1)) < 0.35 / (n + 1) + 0.02, (share, 1 / (n + 1))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(min_value=2, max_value=10), gone=st.integers(min_value=0, max_value=9))
def test_removing_a_member_moves_only_the_keys_it_owned(n: int, gone: int) -> None:
    members = [f"10.1.{i}.4:8080" for i in range(n)]
    dead = members[gone % n]
    before = owners(HashRing(members))
    after = owners(HashRing([m for m in members if m != dead]))
    for b, a in zip(before, after):
        assert (b == a) if b != dead else (a != dead)
    share = sum(b == dead for b in before) / len(KEYS)
    assert abs(share - 1 / n) < 0.35 / n + 0.02


# --------------------------------------------------------------------------- key
def conversation(turns: int, topic: str = "ships") -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = [{"role": "system", "content": "You are terse."}]
    for t in range(turns):
        msgs.append({"role": "user", "content": f"{topic} question {t}"})
        if t < turns - 1:
            msgs.append({"role": "assistant", "content": f"answer {t}"})
    return msgs


def test_prefix_key_is_stable_across_the_turns_of_one_conversation() -> None:
    keys = {affinity_key("prefix", {"model": "m", "messages": conversation(t)}, []) for t in range(1, 7)}
    assert len(keys) == 1 and None not in keys
    other = affinity_key("prefix", {"model": "m", "messages": conversation(3, "trains")}, [])
    assert other not in keys


def test_prefix_key_ignores_json_key_order_but_not_content() -> None:
    a = {"model": "m", "messages": [{"role": "user", "content": "hi", "name": "x"}]}
    b = {"messages": [{"name": "x", "content": "hi", "role": "user"}], "model": "m", "temperature": 0.3}
    assert affinity_key("prefix", a, []) == affinity_key("prefix", b, [])
    c = {"model": "m", "messages": [{"role": "user", "content": "hi!", "name": "x"}]}
    assert affinity_key("prefix", c, []) != affinity_key("prefix", a, [])


def test_completion_prompt_head_is_the_key() -> None:
    head = "x" * contract.AFFINITY_PROMPT_HEAD_CHARS
    assert affinity_key("prefix", {"model": "m", "prompt": head + "turn 1"}, []) == affinity_key(
        "prefix", {"model": "m", "prompt": head + "turn 1 ... turn 2"}, []
    )
    assert affinity_key("prefix", {"model": "m", "prompt": [1, 2]}, []) is None


def test_conversation_mode_reads_only_the_header() -> None:
    conv = contract.CONVERSATION_ID_HEADER.encode()
    p1 = {"model": "m", "messages": conversation(1)}
    p2 = {"model": "m", "messages": conversation(4, "trains")}
    assert affinity_key("conversation", p1, [(conv, b"c-1")]) == affinity_key("conversation", p2, [(conv, b"c-1")])
    assert affinity_key("conversation", p1, [(conv, b"c-1")]) != affinity_key("conversation", p1, [(conv, b"c-2")])
    assert affinity_key("conversation", p1, []) is None  # no header: no affinity, the ALB's choice stands
    assert affinity_key("off", p1, [(conv, b"c-1")]) is None


# --------------------------------------------------------------------------- decisions
SELF, PEER_A, PEER_B = "10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"


class LocalUpstreams:
    """The local side of the decision: records what was served locally."""

    def __init__(self) -> None:
        self.primary = object()
        self.calls: list[str] = []

    async def open(self, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[str, str]:
        self.calls.append(path)
        return "local", "response"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when this returns: connecting is refused


def payload_owned_by(a: Affinity, owner: str) -> dict[str, Any]:
    for i in range(10_000):
        p = {"model": "m", "messages": [{"role": "user", "content": f"conversation {i}"}]}
        key = affinity_key("prefix", p, [])
        assert key is not None
        if a.directory.ring.owner(key) == owner:
            return p
    raise AssertionError("no key found for " + owner)


def on_a_loop(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """An async test, run on an event loop of its own (pools and tasks belong to one loop)."""

    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())

    return run


@contextlib.asynccontextmanager
async def affinity(peer_ports: dict[str, int] | None = None, max_queue: int = 4) -> AsyncIterator[tuple[Affinity, LocalUpstreams]]:
    """Affinity among SELF, PEER_A and PEER_B, all ready; a peer not in peer_ports has a closed port."""
    ports = peer_ports or {}

    def make_pool(base: str) -> Pool:
        addr = base.removeprefix("http://")
        port = ports.get(addr, closed_port())
        return Pool(f"http://127.0.0.1:{port}", connect_timeout_s=1, read_timeout_s=5, keepalive_s=4)

    d = PeerDirectory(make_pool=make_pool, self_addr=SELF, static_peers=[SELF, PEER_A, PEER_B])
    d.set_members(d.static)
    for p in d.peers.values():
        p.ready = True
    local = LocalUpstreams()
    a = Affinity("prefix", d, local, max_queue, 60.0)  # type: ignore[arg-type]
    try:
        yield a, local
    finally:
        await a.stop()


@on_a_loop
async def test_owner_is_self_means_local_with_no_hop() -> None:
    async with affinity() as (a, local):
        d = a.route(payload_owned_by(a, SELF), [])
        assert d.outcome == "self" and d.label == "self"
        assert a.opener(d, []) == local.open  # the local call itself: nothing in between
        assert d.metrics() == {contract.METRIC_AFFINITY_FORWARDED: 0, contract.METRIC_AFFINITY_HIT: 1}


@on_a_loop
async def test_owner_elsewhere_is_forwarded_unless_overloaded() -> None:
    async with affinity(max_queue=4) as (a, _):
        p = payload_owned_by(a, PEER_A)
        assert a.route(p, []).outcome == "forward"
        a.directory.peers[PEER_A].queue_depth = 4
        assert a.route(p, []).outcome == "forward"  # at the bound: still the owner
        a.directory.peers[PEER_A].queue_depth = 5
        d = a.route(p, [])
        assert d.outcome == "overloaded" and d.metrics()[contract.METRIC_AFFINITY_HIT] == 0


@on_a_loop
async def test_unready_owner_means_local() -> None:
    async with affinity() as (a, _):
        p = payload_owned_by(a, PEER_B)
        a.directory.peers[PEER_B].ready = False
        assert a.route(p, []).outcome == "unready"


@on_a_loop
async def test_a_forwarded_request_is_never_forwarded_again() -> None:
    async with affinity() as (a, local):
        p = payload_owned_by(a, PEER_A)
        hdrs = [(contract.AFFINITY_FORWARDED_HEADER.encode(), b"10.0.0.3:8080")]
        d = a.route(p, hdrs)
        assert d.outcome == "received" and d.metrics() == {}
        assert a.opener(d, hdrs) == local.open


@on_a_loop
async def test_dead_owner_falls_back_to_local_and_is_skipped_afterwards() -> None:
    async with affinity() as (a, local):  # every peer's port is closed
        p = payload_owned_by(a, PEER_A)
        d = a.route(p, [])
        assert d.outcome == "forward"
        up, resp = await a.opener(d, [])("POST", "/v1/chat/completions", b"{}", {"Content-Type": "application/json"})
        assert (up, resp) == ("local", "response") and local.calls == ["/v1/chat/completions"]
        assert d.label == "fallback_unreachable" and d.metrics()[contract.METRIC_AFFINITY_HIT] == 0
        assert a.route(p, []).outcome == "unready"  # no second connect attempt before the next poll


@on_a_loop
async def test_membership_change_closes_departed_peers() -> None:
    async with affinity() as (a, _):
        gone = a.directory.peers[PEER_B]
        a.directory.set_members([SELF, PEER_A])
        assert set(a.directory.peers) == {PEER_A}
        await asyncio.sleep(0.05)
        assert gone.upstream.pool._watchdog.done()  # its pool was closed, not leaked


@on_a_loop
async def test_dns_discovery_failure_keeps_the_last_ring() -> None:
    answers: list[Any] = [[SELF, PEER_A], OSError("SERVFAIL")]

    async def resolver(name: str, port: int) -> list[str]:
        r = answers.pop(0)
        if isinstance(r, Exception):
            raise r
        return r

    d = PeerDirectory(
        make_pool=lambda b: Pool(b, connect_timeout_s=1, read_timeout_s=1, keepalive_s=1),
        self_addr=SELF, dns_name="gateway.llm.local", resolver=resolver,
    )  # fmt: skip
    await d.refresh()
    assert d.ring.members == {SELF, PEER_A}
    await d.refresh()
    assert d.ring.members == {SELF, PEER_A} and d.last_error and "SERVFAIL" in d.last_error
    await d.close()


@on_a_loop
async def test_self_address_is_found_from_the_route_to_the_peers() -> None:
    async def resolver(name: str, port: int) -> list[str]:
        return ["127.0.0.1:8080", "127.0.0.2:8080"]

    d = PeerDirectory(
        make_pool=lambda b: Pool(b, connect_timeout_s=0.2, read_timeout_s=1, keepalive_s=1),
        self_addr=None, dns_name="gateway.llm.local", port=8080, resolver=resolver,
    )  # fmt: skip
    await d.refresh()
    assert d.self_addr == "127.0.0.1:8080"
    assert set(d.peers) == {"127.0.0.2:8080"}  # never a peer of itself
    await d.close()


def test_decision_labels() -> None:
    peer = Peer("x", Upstream("peer:x", "http://x", None, CircuitBreaker(1, 1)))  # type: ignore[arg-type]
    d = Decision("forward", peer)
    assert d.label == "forwarded" and d.metrics()[contract.METRIC_AFFINITY_FORWARDED] == 1
    d.fell_back = "owner_503"
    assert d.label == "fallback_owner_503" and d.metrics() == {
        contract.METRIC_AFFINITY_FORWARDED: 0,
        contract.METRIC_AFFINITY_HIT: 0,
    }


@on_a_loop
async def test_a_forward_carries_the_callers_headers_once_and_the_forwarded_mark() -> None:
    seen: list[bytes] = []

    async def owner(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        head = await r.readuntil(b"\r\n\r\n")
        seen.append(head)
        n = int(next(ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")))
        await r.readexactly(n)
        w.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
        await w.drain()

    server = await asyncio.start_server(owner, "127.0.0.1", 0)
    async with affinity({PEER_A: server.sockets[0].getsockname()[1]}) as (a, local):
        p = payload_owned_by(a, PEER_A)
        client = [(b"host", b"alb"), (b"content-type", b"application/json"), (b"authorization", b"Bearer k"),
                  (b"content-length", b"2"), (b"x-conversation-id", b"c1")]  # fmt: skip
        d = a.route(p, client)
        up, resp = await a.opener(d, client)("POST", "/v1/chat/completions", b"{}", {"Content-Type": "application/json"})
        assert up.name == f"peer:{PEER_A}" and resp.status == 200 and await resp.read() == b"{}"
        resp.release()
        lines = [ln.lower() for ln in seen[0].split(b"\r\n")]
        assert sum(ln.startswith(b"content-type:") for ln in lines) == 1
        assert sum(ln.startswith(b"content-length:") for ln in lines) == 1 and b"host: alb" not in lines
        assert b"authorization: bearer k" in lines and b"x-conversation-id: c1" in lines
        assert f"{contract.AFFINITY_FORWARDED_HEADER}: {SELF}".encode() in lines
        assert local.calls == [] and d.label == "forwarded"
    server.close()


def test_counter_deltas_first_look_steady_and_engine_restart() -> None:
    from containers.gateway.app.core.affinity import counter_deltas

    assert counter_deltas(None, (100.0, 400.0)) is None  # nothing to subtract yet
    assert counter_deltas((100.0, 400.0), (160.0, 500.0)) == (60.0, 100.0)
    assert counter_deltas((160.0, 500.0), (160.0, 500.0)) == (0.0, 0.0)  # idle window
    # vLLM restarted between two polls: its counters start from zero, so all it counted since is new
    assert counter_deltas((160.0, 500.0), (10.0, 20.0)) == (10.0, 20.0)
    # queries reset but hits not (yet) below the old total: still a restart, not a negative window
    assert counter_deltas((5.0, 500.0), (7.0, 30.0)) == (7.0, 30.0)


def test_prefix_cache_counters_become_per_task_emf_deltas_and_rate(capsys) -> None:  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    from containers.gateway.app.core.affinity import PrefixCacheReport

    # polls: first look; +60/+100; idle; vLLM restarted (counters from zero)
    counters = iter([(100.0, 400.0), (160.0, 500.0), (160.0, 500.0), (10.0, 40.0)])

    async def go() -> list:
        async def vllm(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            while True:
                try:
                    await r.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                h, q = next(counters)
                body = (
                    "# TYPE vllm:prefix_cache_hits_total counter\n"
                    f'vllm:prefix_cache_hits_total{{engine="0",model_name="m"}} {h}\n'
                    f'vllm:prefix_cache_queries_total{{engine="0",model_name="m"}} {q}\n'
                    'vllm:external_prefix_cache_hits_total{engine="0",model_name="m"} 999.0\n'
                ).encode()
                w.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                await w.drain()

        server = await asyncio.start_server(vllm, "127.0.0.1", 0)
        pool = Pool(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", connect_timeout_s=1, read_timeout_s=2, keepalive_s=4)
        up = Upstream("primary", "", pool, CircuitBreaker(1, 1))
        s = SimpleNamespace(service_name="svc", served_model_name="m", emf_enabled=True)
        rep = PrefixCacheReport(s, lambda: "10.0.0.1:8080")
        out = [await rep.poll(up) for _ in range(4)]
        await pool.close()
        server.close()
        return out

    first, second, idle, restarted = asyncio.run(go())
    assert first is None  # nothing to compare with
    assert second[contract.METRIC_PREFIX_CACHE_HITS] == 60 and second[contract.METRIC_PREFIX_CACHE_QUERIES] == 100
    assert second[contract.METRIC_PREFIX_CACHE_HIT_RATE] == 0.6 and second["Task"] == "10.0.0.1:8080"
    counts, rate = second["_aws"]["CloudWatchMetrics"]
    assert counts["Dimensions"] == [["Service", "Model"], ["Service", "Model", "Task"]]
    assert [m["Name"] for m in counts["Metrics"]] == [contract.METRIC_PREFIX_CACHE_HITS,
                                                      contract.METRIC_PREFIX_CACHE_QUERIES]
    # the ratio per task only: a service-wide average of ratios would weigh an idle task like a busy one
    assert rate["Dimensions"] == [["Service", "Model", "Task"]] and rate["Namespace"] == contract.METRICS_NAMESPACE
    assert rate["Metrics"] == [{"Name": "PrefixCacheHitRate", "Unit": "None"}]
    # an idle window reports its zero counts but no rate (a 0 would read as "all misses")
    assert idle[contract.METRIC_PREFIX_CACHE_QUERIES] == 0 and contract.METRIC_PREFIX_CACHE_HIT_RATE not in idle
    assert len(idle["_aws"]["CloudWatchMetrics"]) == 1
    # after the restart the window is what vLLM counted since: 10 of 40
    assert restarted[contract.METRIC_PREFIX_CACHE_HITS] == 10
    assert restarted[contract.METRIC_PREFIX_CACHE_HIT_RATE] == 0.25
    logged = [json.loads(ln) for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    assert [ln[contract.METRIC_PREFIX_CACHE_HITS] for ln in logged] == [60, 0, 10]


def test_only_one_worker_process_reports_the_prefix_cache(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    code = (
        "import sys, time; sys.path.insert(0, '.');"
        "from containers.gateway.app.core.affinity import _sole_reporter as r;"
        "print(r(48123), r(48123), flush=True); time.sleep(8)"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outs = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert outs == ["False False", "False False", "True True"]
