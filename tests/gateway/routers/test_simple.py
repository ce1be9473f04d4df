"""The simple API (/v1/chat, /v1/chat/stream) in front of the real engine."""

from __future__ import annotations

import json

from tests.gateway.helpers import error_of, open_stream, request, sse_events


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
