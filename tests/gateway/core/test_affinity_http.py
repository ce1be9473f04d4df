"""Conversation affinity across real gateway processes, each in front of its own fake upstream
(bench/gateway/fake_upstream.py), over loopback: forwarding, the abandoned forwarded stream,
a dead owner, an overloaded owner, and no second forward."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from containers.gateway.app.core import contract
from tests.fixtures.engine import Proc, free_port, vllm_metric
from tests.gateway.helpers import open_stream, request, sse_events, wait_until

CONV = contract.CONVERSATION_ID_HEADER
CHAT = "/v1/chat/completions"


def served(upstreams: list[Proc]) -> list[int]:
    return [int(vllm_metric(u.base_url, "fake:requests_total")) for u in upstreams]


def log_lines(gw: Proc) -> list[dict[str, Any]]:
    out = []
    for line in gw.log.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"logger":"gateway.request"' in line:
            out.append(json.loads(line))
    return out


def body(turn: int = 0, stream: bool = False, conv: str = "c", max_tokens: int = 2) -> dict[str, Any]:
    msgs: list[dict[str, Any]] = [{"role": "system", "content": "be brief"}, {"role": "user", "content": f"{conv}: hello"}]
    for t in range(turn):
        msgs += [{"role": "assistant", "content": f"answer {t}"}, {"role": "user", "content": f"{conv}: more {t}"}]
    return {"model": "fake", "messages": msgs, "max_tokens": max_tokens, "stream": stream}


def cluster(
    start_fake_upstream: Callable[..., Proc], start_gateway: Callable[..., Proc], n: int, mode: str = "prefix",
    upstream_args: list[list[str]] | None = None, **settings: Any,
) -> tuple[list[Proc], list[Proc]]:
    ups = [start_fake_upstream(*((upstream_args or [[]] * n)[i])) for i in range(n)]
    ports = [free_port() for _ in range(n)]
    peers = ",".join(f"127.0.0.1:{p}" for p in ports)
    gws = [
        start_gateway(
            u.base_url, port=port, affinity=mode, affinity_peers=peers, affinity_self=f"127.0.0.1:{port}",
            affinity_refresh_s=0.3, **settings,
        )
        for u, port in zip(ups, ports)
    ]  # fmt: skip
    for g in gws:  # every gateway has polled its peers as ready
        assert wait_until(lambda g=g: request(g.base_url, "GET", "/health")[0] == 200, 15)
    time.sleep(1.0)
    return ups, gws


def forwarded_conversation(g_from: Proc, ups: list[Proc], target: int, prefix: str = "conv") -> str:
    """A conversation id that ``g_from`` sends to upstream ``target`` (found by asking)."""
    for i in range(200):
        cid = f"{prefix}-{i}"
        before = served(ups)
        st, _, _ = request(g_from.base_url, "POST", CHAT, body(), headers={CONV: cid})
        assert st == 200
        after = served(ups)
        if after[target] == before[target] + 1:
            return cid
    raise AssertionError("no conversation routed to upstream %d" % target)


def test_every_turn_of_a_conversation_lands_on_one_task_whatever_gateway_takes_it(
    start_fake_upstream, start_gateway  # type: ignore[no-untyped-def]
) -> None:
    ups, gws = cluster(start_fake_upstream, start_gateway, 3)
    convs = [f"topic {i}" for i in range(12)]
    per_conv: dict[str, set[int]] = {}
    n = 0
    for c in convs:
        for turn in range(6):
            g = gws[n % 3]  # round robin in front, as the ALB does
            n += 1
            before = served(ups)
            st, _, _ = request(g.base_url, "POST", CHAT, body(turn, conv=c))
            assert st == 200
            after = served(ups)
            per_conv.setdefault(c, set()).update(i for i in range(3) if after[i] != before[i])
    assert all(len(s) == 1 for s in per_conv.values()), per_conv
    assert len({next(iter(s)) for s in per_conv.values()}) > 1  # and conversations spread over the tasks
    lines = [ln for g in gws for ln in log_lines(g)]
    origin = [ln for ln in lines if ln.get("affinity") in ("self", "forwarded")]
    assert len(origin) == 72 and all(ln[contract.METRIC_AFFINITY_HIT] == 1 for ln in origin)
    fwd = [ln for ln in origin if ln["affinity"] == "forwarded"]
    assert fwd and all(ln[contract.METRIC_AFFINITY_FORWARDED] == 1 and ln["upstream"].startswith("peer:") for ln in fwd)
    emf = {m["Name"] for ln in fwd for m in ln["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {contract.METRIC_AFFINITY_HIT, contract.METRIC_AFFINITY_FORWARDED} <= emf
    assert sum(ln.get("affinity") == "received" for ln in lines) == len(fwd)  # each forward served once, at the owner


def test_without_affinity_a_conversation_is_scattered(start_fake_upstream, start_gateway) -> None:  # type: ignore[no-untyped-def]
    ups = [start_fake_upstream() for _ in range(3)]
    gws = [start_gateway(u.base_url) for u in ups]
    for turn in range(6):
        assert request(gws[turn % 3].base_url, "POST", CHAT, body(turn, conv="one"))[0] == 200
    assert served(ups) == [2, 2, 2]  # the control: what affinity fixes


def test_forwarded_stream_abandoned_by_the_client_closes_the_owners_upstream_connection(
    start_fake_upstream, start_gateway  # type: ignore[no-untyped-def]
) -> None:
    ups, gws = cluster(
        start_fake_upstream, start_gateway, 2, mode="conversation",
        upstream_args=[["--interval-ms", "50"], ["--interval-ms", "50"]],
    )  # fmt: skip
    cid = forwarded_conversation(gws[0], ups, target=1)
    c, r = open_stream(gws[0].base_url, CHAT, body(stream=True, max_tokens=400), headers={CONV: cid})
    assert r.status == 200
    events = sse_events(r)
    got = [next(events) for _ in range(3)]
    assert all(e.startswith(b"data: {") for e in got)
    assert vllm_metric(ups[1].base_url, "vllm:num_requests_running") == 1  # it streams from the owner's upstream
    assert vllm_metric(ups[0].base_url, "vllm:num_requests_running") == 0
    c.sock.close()  # type: ignore[union-attr]  # the client goes away mid-stream
    c.close()
    assert wait_until(lambda: vllm_metric(ups[1].base_url, "vllm:num_requests_running") == 0, 5), (
        "the owner's upstream still streams for a client that left"
    )
    assert wait_until(lambda: any(ln.get("client_disconnected") for ln in log_lines(gws[1])), 5)  # at the owner too


def test_owner_killed_then_served_locally(start_fake_upstream, start_gateway) -> None:  # type: ignore[no-untyped-def]
    ups, gws = cluster(start_fake_upstream, start_gateway, 2, mode="conversation")
    cid = forwarded_conversation(gws[0], ups, target=1)
    gws[1].kill()
    before = served(ups)
    st, _, out = request(gws[0].base_url, "POST", CHAT, body(1), headers={CONV: cid})
    assert st == 200, out
    assert served(ups)[0] == before[0] + 1
    assert log_lines(gws[0])[-1]["affinity"] in ("fallback_unreachable", "unready")
    assert wait_until(lambda: request(gws[0].base_url, "POST", CHAT, body(2), headers={CONV: cid})[0] == 200 and
                      log_lines(gws[0])[-1]["affinity"] == "unready", 5)  # fmt: skip


def test_owner_whose_backend_is_down_is_skipped(start_fake_upstream, start_gateway) -> None:  # type: ignore[no-untyped-def]
    ups, gws = cluster(start_fake_upstream, start_gateway, 2, mode="conversation")
    cid = forwarded_conversation(gws[0], ups, target=1)
    ups[1].kill()  # the owner's gateway lives on, its vLLM is gone: its /health turns 503
    assert wait_until(lambda: request(gws[1].base_url, "GET", "/health")[0] == 503, 10)
    assert wait_until(lambda: request(gws[0].base_url, "POST", CHAT, body(1), headers={CONV: cid})[0] == 200 and
                      log_lines(gws[0])[-1]["affinity"] == "unready", 5)  # fmt: skip


def test_owner_with_a_deep_queue_is_not_sent_more(start_fake_upstream, start_gateway) -> None:  # type: ignore[no-untyped-def]
    ups, gws = cluster(
        start_fake_upstream, start_gateway, 2, mode="conversation", upstream_args=[[], ["--waiting", "5"]],
        affinity_max_queue=4,
    )  # fmt: skip
    for i in range(20):
        assert request(gws[0].base_url, "POST", CHAT, body(), headers={CONV: f"q-{i}"})[0] == 200
    assert served(ups) == [20, 0]
    labels = [ln["affinity"] for ln in log_lines(gws[0])]
    assert "overloaded" in labels and set(labels) <= {"self", "overloaded"}


def test_a_forwarded_request_is_not_forwarded_again(start_fake_upstream, start_gateway) -> None:  # type: ignore[no-untyped-def]
    ups = [start_fake_upstream() for _ in range(2)]
    p0, p1 = free_port(), free_port()
    peers = f"127.0.0.1:{p0},127.0.0.1:{p1}"
    g0 = start_gateway(ups[0].base_url, port=p0, affinity="conversation", affinity_peers=peers,
                       affinity_self=f"127.0.0.1:{p0}", affinity_refresh_s=0.3)  # fmt: skip
    # g1 disagrees about the ring (it does not know it is p1): left alone it would send g0's
    # forwards on again, to p0 or to itself.
    g1 = start_gateway(ups[1].base_url, port=p1, affinity="conversation", affinity_peers=peers,
                       affinity_self="127.0.0.1:1", affinity_refresh_s=0.3)  # fmt: skip
    assert wait_until(lambda: request(g1.base_url, "GET", "/health")[0] == 200, 15)
    cid = forwarded_conversation(g0, ups, target=1)
    before = served(ups)
    for turn in range(4):
        assert request(g0.base_url, "POST", CHAT, body(turn), headers={CONV: cid})[0] == 200
    assert served(ups) == [before[0], before[1] + 4]
    assert [ln["affinity"] for ln in log_lines(g1)][-4:] == ["received"] * 4


@pytest.mark.parametrize("mode", ["prefix", "conversation"])
def test_invalid_affinity_settings_stop_the_gateway(mode: str) -> None:
    from pydantic import ValidationError

    from containers.gateway.app.core.config import Settings

    with pytest.raises(ValidationError, match="GATEWAY_AFFINITY_DNS_NAME"):
        Settings(affinity=mode)
    assert Settings(affinity=mode, affinity_peers="a:1, b:2").affinity_peers == ("a:1", "b:2")


def test_forwarded_stream_abandoned_by_the_client_is_aborted_in_vllm(vllm_engine, start_gateway) -> None:  # type: ignore[no-untyped-def]
    """The real engine behind both gateways: the owner's vLLM aborts the forwarded request."""
    from tests.gateway.core.test_proxy import LONG, MSG, _assert_aborted, _finished, _generated, _running

    ports = [free_port(), free_port()]
    peers = ",".join(f"127.0.0.1:{p}" for p in ports)
    g0, g1 = (
        start_gateway(vllm_engine.base_url, port=p, affinity="conversation", affinity_peers=peers,
                      affinity_self=f"127.0.0.1:{p}", affinity_refresh_s=0.3, max_tokens_cap=1000)
        for p in ports
    )  # fmt: skip
    assert wait_until(lambda: request(g1.base_url, "GET", "/health")[0] == 200, 60)
    time.sleep(1.0)

    def received() -> int:
        return sum(ln.get("affinity") == "received" for ln in log_lines(g1))

    cid = None
    for i in range(50):
        n = received()
        st, _, _ = request(g0.base_url, "POST", CHAT, {"model": vllm_engine.model, "messages": MSG, "max_tokens": 1},
                           headers={CONV: f"v-{i}"})  # fmt: skip
        assert st == 200
        if wait_until(lambda n=n: received() > n, 2):
            cid = f"v-{i}"
            break
    assert cid is not None, "gateway 0 forwarded none of 50 conversations"
    assert wait_until(lambda: _running(vllm_engine) == 0)
    finished, generated = _finished(vllm_engine), _generated(vllm_engine)
    c, r = open_stream(g0.base_url, CHAT, {**LONG, "model": vllm_engine.model, "stream": True}, headers={CONV: cid})
    it = sse_events(r)
    for _ in range(3):
        next(it)
    assert _running(vllm_engine) == 1
    c.sock.close()  # type: ignore[union-attr]
    c.close()
    _assert_aborted(vllm_engine, finished, generated)
    assert wait_until(lambda: any(ln.get("client_disconnected") and ln.get("affinity") == "received" for ln in log_lines(g1)), 5)


def test_draining_owner_finishes_its_streams_and_new_turns_are_served_locally(
    start_fake_upstream, start_gateway  # type: ignore[no-untyped-def]
) -> None:
    import signal

    ups, gws = cluster(
        start_fake_upstream, start_gateway, 2, mode="conversation",
        upstream_args=[["--interval-ms", "20"], ["--interval-ms", "20"]], drain_timeout_s=15,
    )  # fmt: skip
    cid = forwarded_conversation(gws[0], ups, target=1)
    c, r = open_stream(gws[0].base_url, CHAT, body(stream=True, max_tokens=150), headers={CONV: cid})  # ~3 s, forwarded
    events = sse_events(r)
    assert next(events).startswith(b"data: {")
    gws[1].signal(signal.SIGTERM)  # the owner starts draining with that stream in flight
    assert wait_until(lambda: request(gws[1].base_url, "GET", "/health")[0] == 503, 5)
    before = served(ups)
    st, _, _ = request(gws[0].base_url, "POST", CHAT, body(1), headers={CONV: cid})
    assert st == 200 and served(ups)[0] == before[0] + 1  # the next turn: served here, not refused
    assert log_lines(gws[0])[-1]["affinity"] in ("fallback_owner_503", "unready")
    rest = list(events)
    assert rest[-1] == b"data: [DONE]" and not any(b'"error"' in e for e in rest)  # the forwarded stream ended whole
    c.close()
