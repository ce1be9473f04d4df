"""The OpenAI pass-through routes in front of the real vLLM CPU engine, with the
official ``openai`` SDK as the client."""

from __future__ import annotations

import json
import uuid
from typing import Any

import openai
import pytest

from containers.gateway.app.core import contract
from tests.gateway.helpers import error_of, open_stream, request, sse_events, wait_until

MSG = [{"role": "user", "content": "hello gateway"}]


def test_chat_non_streaming_via_sdk(openai_client: openai.OpenAI, gateway_server) -> None:  # type: ignore[no-untyped-def]
    raw = openai_client.chat.completions.with_raw_response.create(
        model=gateway_server.model, messages=MSG, max_tokens=6, extra_body={"ignore_eos": True}
    )
    r = raw.parse()
    assert r.model == gateway_server.model
    assert isinstance(r.choices[0].message.content, str)
    assert r.usage.completion_tokens == 6 and r.usage.prompt_tokens > 0
    assert float(raw.headers[contract.OVERHEAD_HEADER]) >= 0
    assert raw.headers[contract.REQUEST_ID_HEADER]


def test_chat_streaming_via_sdk_strips_the_usage_event_it_added(openai_client: openai.OpenAI, gateway_server) -> None:  # type: ignore[no-untyped-def]
    chunks = list(
        openai_client.chat.completions.create(
            model=gateway_server.model, messages=MSG, max_tokens=12, stream=True, extra_body={"ignore_eos": True}
        )
    )
    assert chunks and all(c.choices for c in chunks), "a chunk without choices leaked to a client that asked for none"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "length"
    assert len(text) > 0
    assert all(c.usage is None for c in chunks)


def test_chat_streaming_with_usage_requested(openai_client: openai.OpenAI, gateway_server) -> None:  # type: ignore[no-untyped-def]
    chunks = list(
        openai_client.chat.completions.create(
            model=gateway_server.model, messages=MSG, max_tokens=9, stream=True,
            stream_options={"include_usage": True}, extra_body={"ignore_eos": True},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 9
    assert chunks[-1].choices == []


def test_completions_stream_and_not(openai_client: openai.OpenAI, gateway_server) -> None:  # type: ignore[no-untyped-def]
    r = openai_client.completions.create(model=gateway_server.model, prompt="the quick brown fox", max_tokens=5, extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 5 and isinstance(r.choices[0].text, str)
    parts = list(
        openai_client.completions.create(model=gateway_server.model, prompt="the quick", max_tokens=7, stream=True, extra_body={"ignore_eos": True})
    )
    assert len([p for p in parts if p.choices]) >= 1
    assert parts[-1].choices[0].finish_reason == "length"


def test_models_via_sdk(openai_client: openai.OpenAI, gateway_server) -> None:  # type: ignore[no-untyped-def]
    assert [m.id for m in openai_client.models.list()] == [gateway_server.model]


def _shape(event: bytes) -> object:
    if event == b"data: [DONE]":
        return "DONE"
    doc = json.loads(event[len(b"data: "):])
    doc.pop("id"), doc.pop("created")
    for ch in doc.get("choices", []):
        ch.get("delta", {}).pop("content", None)
    return doc


def test_sse_bytes_pass_through_unchanged(gateway_server, vllm_engine) -> None:  # type: ignore[no-untyped-def]
    """Same request direct and through the gateway: the same events, field for field.
    Without include_usage the gateway asks vLLM for it (token counts for the log) and
    removes that one event again; everything else is vLLM's bytes."""
    body = {"model": vllm_engine.model, "messages": MSG, "max_tokens": 5, "stream": True, "ignore_eos": True,
            "seed": 1, "stream_options": {"include_usage": True}}
    seen = []
    for base, key, b in (
        (vllm_engine.base_url, None, body),
        (gateway_server.base_url, gateway_server.api_key, body),
        (gateway_server.base_url, gateway_server.api_key, {k: v for k, v in body.items() if k != "stream_options"}),
    ):
        c, r = open_stream(base, "/v1/chat/completions", b, key)
        assert r.status == 200 and r.getheader("content-type").startswith("text/event-stream")
        seen.append([_shape(e) for e in sse_events(r)])
        c.close()
    assert seen[0] == seen[1]
    assert seen[1][-1] == "DONE" and seen[1][-2]["choices"] == [] and seen[1][-2]["usage"]["completion_tokens"] == 5
    assert seen[2] == seen[0][:-2] + seen[0][-1:]


def test_auth_required_and_constant_errors(gateway_server) -> None:  # type: ignore[no-untyped-def]
    body = {"model": gateway_server.model, "messages": MSG, "max_tokens": 1}
    for key in (None, "sk-wrong"):
        st, h, out = request(gateway_server.base_url, "POST", "/v1/chat/completions", body, key=key)
        assert st == 401 and h.get("www-authenticate") == "Bearer"
        assert error_of(out)["type"] == "authentication_error"
    st, _, _ = request(gateway_server.base_url, "GET", "/v1/models")
    assert st == 401
    st, _, _ = request(gateway_server.base_url, "GET", "/v1/models", headers={"x-api-key": gateway_server.other_api_key})
    assert st == 200
    bad = openai.OpenAI(base_url=gateway_server.base_url + "/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_unknown_model_is_404_in_openai_format(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as ei:
        openai_client.chat.completions.create(model="gpt-5", messages=MSG, max_tokens=1)
    err = ei.value.body
    assert err["code"] == "model_not_found" and err["param"] == "model" and "gpt-5" in err["message"]


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"messages": [{"role": 7, "content": "x"}]}, "messages[0].role"),
        ({"max_tokens": 100_000}, "max_tokens"),
        ({"temperature": 7}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": "x" * 200_001}]}, "messages[0].content"),
    ],
)
def test_validation_errors_name_the_field(gateway_server, patch, param) -> None:  # type: ignore[no-untyped-def]
    body = {"model": gateway_server.model, "messages": MSG, "max_tokens": 1, **patch}
    st, _, out = request(gateway_server.base_url, "POST", "/v1/chat/completions", body, key=gateway_server.api_key)
    err = error_of(out)
    assert st == 400 and err["param"] == param and param in err["message"]
    assert err["type"] == "invalid_request_error"


def test_body_too_large_is_413(gateway_server) -> None:  # type: ignore[no-untyped-def]
    big = b'{"messages": [{"role": "user", "content": "' + b"x" * 1_100_000 + b'"}]}'
    st, _, out = request(gateway_server.base_url, "POST", "/v1/chat/completions", raw=big, key=gateway_server.api_key)
    assert st == 413 and error_of(out)["code"] == "request_too_large"


def test_invalid_json_is_400(gateway_server) -> None:  # type: ignore[no-untyped-def]
    st, _, out = request(gateway_server.base_url, "POST", "/v1/completions", raw=b'{"prompt": ', key=gateway_server.api_key)
    assert st == 400 and error_of(out)["code"] == "invalid_json"


def test_one_log_line_per_request_without_prompt_text(openai_client: openai.OpenAI, gateway_server) -> None:  # type: ignore[no-untyped-def]
    secret = f"do-not-log-{uuid.uuid4().hex}"
    rid = uuid.uuid4().hex
    openai_client.chat.completions.create(
        model=gateway_server.model, messages=[{"role": "user", "content": secret}], max_tokens=3,
        extra_body={"ignore_eos": True}, extra_headers={"x-request-id": rid},
    )
    assert wait_until(lambda: len(_log_lines(gateway_server, rid)) == 1, timeout=5)
    assert secret not in gateway_server.log.read_text()
    rec = _log_lines(gateway_server, rid)[0]
    assert rec["key_id"] == "test" and rec["status"] == 200 and rec["model"] == gateway_server.model
    assert rec["prompt_tokens"] > 0 and rec["completion_tokens"] == 3 and rec["latency_ms"] > 0
    assert "prompt" not in rec and "completion" not in rec
    cw = rec["_aws"]["CloudWatchMetrics"][0]
    assert cw["Namespace"] == contract.METRICS_NAMESPACE
    assert cw["Dimensions"] == [[contract.DIMENSION_SERVICE, contract.DIMENSION_MODEL]]
    names = {m["Name"] for m in cw["Metrics"]}
    assert {contract.METRIC_REQUESTS, contract.METRIC_LATENCY, contract.METRIC_PROMPT_TOKENS, contract.METRIC_COMPLETION_TOKENS} <= names
    assert rec[contract.METRIC_COMPLETION_TOKENS] == 3


def _log_lines(gateway_server, rid: str) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    return [json.loads(line) for line in gateway_server.log.read_text().splitlines() if rid in line]


def test_streaming_log_line_has_ttft_and_tokens(gateway_server) -> None:  # type: ignore[no-untyped-def]
    rid = uuid.uuid4().hex
    c, r = open_stream(gateway_server.base_url, "/v1/chat/completions",
                       {"model": gateway_server.model, "messages": MSG, "max_tokens": 4, "stream": True, "ignore_eos": True},
                       gateway_server.api_key, headers={"x-request-id": rid})
    assert r.getheader(contract.REQUEST_ID_HEADER) == rid
    list(sse_events(r))
    c.close()
    assert wait_until(lambda: len(_log_lines(gateway_server, rid)) == 1, timeout=5)
    rec = _log_lines(gateway_server, rid)[0]
    assert rec["stream"] and rec["completion_tokens"] == 4 and rec["prompt_tokens"] > 0
    assert rec["ttft_ms"] is not None and 0 < rec["ttft_ms"] <= rec["latency_ms"]
    assert contract.METRIC_TTFT in {m["Name"] for m in rec["_aws"]["CloudWatchMetrics"][0]["Metrics"]}


def _status(base: str, key: str | None, path: str, body: Any = None, method: str = "POST", **kw: Any) -> tuple[int, bytes]:
    st, _, out = request(base, method, path, body, key=key, **kw)
    return st, out


@pytest.mark.parametrize(
    ("patch", "raw", "headers"),
    [
        ({"max_tokens": 2.0}, None, None),
        ({"max_tokens": "3"}, None, None),
        ({"max_tokens": 2.5}, None, None),
        ({"max_tokens": 0}, None, None),
        ({"n": 17}, None, None),
        ({"n": 0}, None, None),
        ({"temperature": 2.5}, None, None),
        ({"temperature": -1}, None, None),
        ({"top_p": 0}, None, None),
        ({"presence_penalty": 3}, None, None),
        ({"stream": "maybe"}, None, None),
        ({"messages": [{"role": "wizard", "content": "x"}]}, None, None),  # vLLM accepts custom roles
        ({"messages": [{"content": "x"}]}, None, None),
        ({}, None, {"content-type": "text/plain"}),
        ({}, None, {"content-type": "application/json; charset=utf-8"}),
        ({}, b"{}", None),
    ],
)
def test_exactly_as_strict_as_the_engine(gateway_server, vllm_engine, patch, raw, headers) -> None:  # type: ignore[no-untyped-def]
    """Issue 13 defect 5: the same body direct to vLLM and through the gateway gets the same
    outcome (accepted, or a 4xx); before the fix 2.0 and n=17 were 400 at the gateway only and
    text/plain went through."""
    body = {"model": vllm_engine.model, "messages": MSG, "max_tokens": 2, **patch}
    out = []
    for base, key in ((vllm_engine.base_url, None), (gateway_server.base_url, gateway_server.api_key)):
        st, data = _status(base, key, "/v1/chat/completions", body, raw=raw, headers=headers)
        out.append((st // 100, st if st >= 400 else 200, data))
    (direct_class, direct, ddata), (gw_class, gw, gdata) = out
    assert direct_class == gw_class, f"vLLM {direct} {ddata[:200]!r} vs gateway {gw} {gdata[:200]!r}"
    if gw >= 400:
        err = error_of(gdata)
        assert err["type"] == "invalid_request_error"


def test_missing_content_type_is_rejected_like_the_engine(gateway_server, vllm_engine) -> None:  # type: ignore[no-untyped-def]
    body = {"model": vllm_engine.model, "messages": MSG, "max_tokens": 1}
    direct = _status(vllm_engine.base_url, None, "/v1/chat/completions", body, drop_content_type=True)[0]
    st, out = _status(gateway_server.base_url, gateway_server.api_key, "/v1/chat/completions", body, drop_content_type=True)
    assert direct == st == 400 and error_of(out)["param"] == "content-type"


def test_engine_numeric_error_code_is_preserved(gateway_server, vllm_engine) -> None:  # type: ignore[no-untyped-def]
    body = {"model": vllm_engine.model, "messages": MSG, "max_tokens": 900, "logprobs": True, "top_logprobs": 1000}
    direct = json.loads(_status(vllm_engine.base_url, None, "/v1/chat/completions", body)[1])["error"]["code"]
    st, out = _status(gateway_server.base_url, gateway_server.api_key, "/v1/chat/completions", body)
    assert st == 400 and isinstance(direct, int) and error_of(out)["code"] == direct


def test_responses_api_via_sdk_stream_and_not(openai_client: openai.OpenAI, gateway_server) -> None:  # type: ignore[no-untyped-def]
    rid = uuid.uuid4().hex
    r = openai_client.responses.create(
        model=gateway_server.model, input="hello there", max_output_tokens=6, extra_headers={"x-request-id": rid}
    )
    assert r.status in ("completed", "incomplete") and r.usage.output_tokens > 0 and isinstance(r.output_text, str)
    assert wait_until(lambda: len(_log_lines(gateway_server, rid)) == 1, timeout=5)
    rec = _log_lines(gateway_server, rid)[0]
    assert rec["route"] == "responses" and rec["completion_tokens"] == r.usage.output_tokens
    assert rec["prompt_tokens"] == r.usage.input_tokens
    rid = uuid.uuid4().hex
    with openai_client.responses.stream(
        model=gateway_server.model, input="hello there", max_output_tokens=5, extra_headers={"x-request-id": rid}
    ) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and "response.output_text.delta" in kinds and kinds[-1] == "response.completed"
    assert wait_until(lambda: len(_log_lines(gateway_server, rid)) == 1, timeout=5)
    rec = _log_lines(gateway_server, rid)[0]
    assert rec["stream"] and rec["completion_tokens"] == final.usage.output_tokens and rec["ttft_ms"] > 0


def test_tokenize_detokenize_version_like_the_engine(gateway_server, vllm_engine) -> None:  # type: ignore[no-untyped-def]
    base, key, eng = gateway_server.base_url, gateway_server.api_key, vllm_engine.base_url
    body = {"model": vllm_engine.model, "prompt": "hello gateway"}
    st, out = _status(base, key, "/tokenize", body)
    assert st == 200 and json.loads(out) == json.loads(_status(eng, None, "/tokenize", body)[1])
    tokens = json.loads(out)["tokens"]
    st, out = _status(base, key, "/detokenize", {"model": vllm_engine.model, "tokens": tokens})
    assert st == 200 and json.loads(out)["prompt"] == json.loads(_status(eng, None, "/detokenize", {"tokens": tokens})[1])["prompt"]
    st, out = _status(base, key, "/version", method="GET")
    assert st == 200 and json.loads(out) == json.loads(_status(eng, None, "/version", method="GET")[1])
    assert _status(base, None, "/version", method="GET")[0] == 401


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/embeddings", {"input": "hello"}),
        ("/v1/score", {"text_1": "a", "text_2": "b"}),
        ("/v1/rerank", {"query": "a", "documents": ["b", "c"]}),
    ],
)
def test_pooling_routes_pass_through(gateway_server, vllm_engine, path, body) -> None:  # type: ignore[no-untyped-def]
    """The tiny model generates text: vLLM's own answer (whatever it is for this model) comes back
    through the gateway, not the gateway's 404 for an unknown route."""
    body = {"model": vllm_engine.model, **body}
    direct_st, direct = _status(vllm_engine.base_url, None, path, body)
    st, out = _status(gateway_server.base_url, gateway_server.api_key, path, body)
    assert st == direct_st, (direct, out)
    if st >= 400:  # vLLM's own answer, not the gateway's "no such route"
        err = error_of(out)
        assert b"no such route" not in out
        inner = json.loads(direct).get("error")
        assert err["message"] == inner["message"] if isinstance(inner, dict) else direct.decode()[:100] in err["message"]
