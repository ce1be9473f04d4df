"""The simple API (/v1/chat, /v1/chat/stream) in front of the real engine."""

from __future__ import annotations

import json
import uuid

from containers.gateway.app.core import contract
from tests.gateway.helpers import chunked_upload, error_of, open_stream, request, sse_events, wait_until


def test_chat_returns_content_model_usage_latency(gateway_server) -> None:  # type: ignore[no-untyped-def]
    st, _, out = request(gateway_server.base_url, "POST", "/v1/chat", {"prompt": "hi", "max_tokens": 5}, key=gateway_server.api_key)
    assert st == 200, out
    doc = json.loads(out)
    assert isinstance(doc["content"], str)
    assert doc["model"] == gateway_server.model
    assert doc["usage"]["prompt_tokens"] > 0 and 1 <= doc["usage"]["completion_tokens"] <= 5
    assert doc["usage"]["total_tokens"] == doc["usage"]["prompt_tokens"] + doc["usage"]["completion_tokens"]
    assert doc["latency_ms"] > 0


def test_chat_stream_sends_content_events_then_done(gateway_server) -> None:  # type: ignore[no-untyped-def]
    c, r = open_stream(gateway_server.base_url, "/v1/chat/stream",
                       {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "temperature": 0}, gateway_server.api_key)
    assert r.status == 200
    events = [e for e in sse_events(r) if e.startswith(b"data:")]
    c.close()
    assert events[-1] == b"data: [DONE]"
    docs = [json.loads(e[6:]) for e in events[:-1]]
    assert docs and all(set(d) == {"content"} and isinstance(d["content"], str) for d in docs)


def test_simple_validation(gateway_server) -> None:  # type: ignore[no-untyped-def]
    base, key = gateway_server.base_url, gateway_server.api_key
    for body, param in (
        ({}, "prompt"),
        ({"prompt": "a", "messages": [{"role": "user", "content": "b"}]}, "prompt"),
        ({"prompt": "a", "max_tokens": "many"}, "max_tokens"),
        ({"prompt": "a", "temperature": 9}, "temperature"),
        ({"prompt": "a", "model": "nope"}, "model"),
        ({"prompt": "a", "surprise": 1}, "surprise"),
    ):
        st, _, out = request(base, "POST", "/v1/chat", body, key=key)
        err = error_of(out)
        assert st in (400, 404) and err["param"] == param, (body, out)
    st, _, out = request(base, "POST", "/v1/chat", {"prompt": "a"})
    assert st == 401 and error_of(out)["code"] == "missing_api_key"


def _rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_key_checked_before_the_body_is_read_and_chunked_bodies_capped(start_fake_upstream, start_gateway) -> None:  # type: ignore[no-untyped-def]
    """Issue 13 defect 2: a 300 MB chunked body with a wrong key drove the gateway to 985 MB before
    it answered 401; and /v1/chat had no cap on chunked bodies."""
    fake = start_fake_upstream("--chunks", "2")
    gw = start_gateway(fake.base_url, api_keys={"a": "key-a"})
    mb = b"x" * (1 << 20)
    for path in ("/v1/chat", "/v1/chat/stream", "/v1/chat/completions", "/v1/responses", "/tokenize"):
        st, out, sent = chunked_upload(
            gw.base_url, path, mb, 300, {"authorization": "Bearer wrong", "content-type": "application/json"}
        )
        assert st == 401 and error_of(out)["code"] == "invalid_api_key", (path, st, out)
        assert sent < 100, f"{path}: the gateway read {sent} MB before it answered 401"
        st, out, sent = chunked_upload(
            gw.base_url, path, mb, 300, {"authorization": "Bearer key-a", "content-type": "application/json"}
        )
        err = error_of(out)
        assert st == 413 and err["code"] == "request_too_large" and err["type"] == "invalid_request_error", (path, out)
        assert sent < 100
    assert _rss_mb(gw.popen.pid) < 200


def test_simple_routes_need_a_json_content_type(start_fake_upstream, start_gateway) -> None:  # type: ignore[no-untyped-def]
    fake = start_fake_upstream("--chunks", "2")
    gw = start_gateway(fake.base_url)
    for ctype in ("text/plain", None):
        h = {"content-type": ctype} if ctype else {}
        st, _, out = request(gw.base_url, "POST", "/v1/chat", raw=b'{"prompt": "hi"}', headers=h, drop_content_type=ctype is None)
        assert st == 400 and error_of(out)["param"] == "content-type", out
    st, _, out = request(gw.base_url, "POST", "/v1/chat", {"prompt": "hi", "max_tokens": 2}, headers={"content-type": "application/json; charset=utf-8"})
    assert st == 200 and json.loads(out)["content"] == "toktok"


def test_messages_may_carry_integers_beyond_64_bits(start_fake_upstream, start_gateway) -> None:  # type: ignore[no-untyped-def]
    """A message field the gateway does not read passes on as vLLM would take it, whatever its size
    (found by the fuzz test: the re-encoded body made a 500)."""
    fake = start_fake_upstream("--chunks", "2")
    gw = start_gateway(fake.base_url)
    body = {"messages": [{"role": "user", "content": "hi", "x": 2**70}], "max_tokens": 2}
    for path in ("/v1/chat", "/v1/chat/stream"):
        st, _, out = request(gw.base_url, "POST", path, body)
        assert st == 200, out


def test_shed_requests_count_as_rejected_on_every_route(start_fake_upstream, start_gateway) -> None:  # type: ignore[no-untyped-def]
    """Load shedding (503 overloaded) is in the Rejected metric; the simple routes left it out."""
    fake = start_fake_upstream("--waiting", "50")
    gw = start_gateway(fake.base_url, max_queue_depth=10)
    for path, body in (("/v1/chat/completions", {"model": "fake", "messages": [{"role": "user", "content": "hi"}]}), ("/v1/chat", {"prompt": "hi"})):
        rid = uuid.uuid4().hex
        st, _, out = request(gw.base_url, "POST", path, body, headers={"x-request-id": rid})
        assert st == 503 and error_of(out)["code"] == "overloaded"
        assert wait_until(lambda: rid in gw.log.read_text(), timeout=5)
        rec = next(json.loads(line) for line in gw.log.read_text().splitlines() if rid in line)
        assert rec[contract.METRIC_REJECTED] == 1, (path, rec)
