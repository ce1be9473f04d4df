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


DROP = object()  # the field is left out
BASE = {
    "/v1/chat/completions": {"messages": MSG, "max_tokens": 2},
    "/v1/completions": {"prompt": "hello", "max_tokens": 2},
    "/v1/responses": {"input": "hello", "max_output_tokens": 2},
}
CHAT, COMPLETIONS, RESPONSES = BASE


def _msg(**kw: Any) -> list[dict[str, Any]]:
    return [{"role": "user", **kw}]


# Issue 13 defect 5 / issue 14: every field the gateway checks (schemas.py), and a few it leaves to
# vLLM, with the status vLLM 0.32 answers (read from its protocol models and SamplingParams, and
# seen on the engine): {route: {field: [(value, vLLM's status[, the gateway's where it differs on
# purpose]), ...]}}; DROP leaves the field out.
PARITY_BY_FIELD: dict[str, dict[str, list[tuple[Any, ...]]]] = {
    CHAT: {
        "messages": [
            (DROP, 400), ([], 400), ("hi", 400), (["hi"], 400), ([{"content": "x"}], 400), (_msg(role=7, content="x"), 400),
            ([{"role": "wizard", "content": "x"}], 200),  # custom roles reach the chat template
            (_msg(content=5), 400), (_msg(content=["x"]), 400), (_msg(content=[{"type": "text", "text": 5}]), 400),
            (_msg(content=[{"type": "text", "text": "x"}]), 200), (_msg(content=[]), 200), (_msg(), 200),
            # vLLM's types read content as an iterable of parts: {} is no parts (any other object
            # fails there); the gateway reads text or a list of parts (README, "Validation")
            (_msg(content={}), 200, 400),
        ],
        "model": [("", 200), (None, 200), (5, 400), ("gpt-4", 404)],  # "": the served model
        "max_tokens": [(2.0, 200), ("3", 200), (True, 200), (None, 200), (2.5, 400), ("many", 400), (0, 400)],
        "max_completion_tokens": [(2.0, 200), (0, 400)],
        "stream": [("true", 200), (1, 200), ("yes", 200), (None, 200), ("maybe", 400), (2, 400)],
        # sent with stream: true (vLLM takes stream_options only with it)
        "stream_options": [({}, 200), ({"include_usage": "yes"}, 200), ("x", 400), ({"include_usage": "maybe"}, 400)],
        # SamplingParams' ranges: vLLM's to check (they differ between versions)
        "temperature": [("0.5", 200), (2.5, 400), (-1, 400)],
        "top_p": [(0, 400)],
        "n": [(17, 200), ("2", 200), (0, 400)],
        "presence_penalty": [(3, 400)],
    },
    COMPLETIONS: {
        "prompt": [
            (DROP, 400), ("", 400), ([], 400), (5, 400), ([1, 2], 200), ([1.0, 2.0], 200), ([[1, 2], [3]], 200),
            (["a", "b"], 200), ([1, "a"], 400), ([-1], 400), ([["a"]], 400),
        ],
        "model": [("", 200)],
        "max_tokens": [(2.0, 200), (0, 400)],
        "stream": [("true", 200)],
        "n": [(17, 200)],
    },
    RESPONSES: {
        "input": [(DROP, 400), ("", 200), (5, 400), ([5], 400), ({}, 400)],
        "model": [("", 200)],
        "max_output_tokens": [(2.0, 200), ("3", 200), (2.5, 400), (0, 400)],
        "stream": [("true", 200), ("maybe", 400)],
        "temperature": [(2.5, 400)],
    },
}
PARITY = [
    (path, {field: value, **({"stream": True} if field == "stream_options" else {})}, *statuses)
    for path, fields in PARITY_BY_FIELD.items()
    for field, cases in fields.items()
    for value, *statuses in cases
] + [
    (CHAT, {"stream_options": {"include_usage": True}}, 400),  # without stream
    (CHAT, {"max_tokens": DROP, "max_completion_tokens": 2}, 200),
]


@pytest.mark.parametrize("case", PARITY, ids=lambda c: f"{c[0]} {c[1]}")
def test_exactly_as_strict_as_the_engine(gateway_server, vllm_engine, case) -> None:  # type: ignore[no-untyped-def]
    """The same body direct to vLLM and through the gateway gets the same status. Before issue
    13's fix max_tokens 2.0 and n 17 were 400 at the gateway only; before issue 14's, model ""
    and prompt [1.0, 2.0] were (and the OpenAPI document still said what the code no longer did)."""
    path, patch, engine, *differs = case
    body = {"model": vllm_engine.model, **BASE[path], **patch}
    body = {k: v for k, v in body.items() if v is not DROP}
    direct = _status(vllm_engine.base_url, None, path, body)
    gw = _status(gateway_server.base_url, gateway_server.api_key, path, body)
    assert direct[0] == engine, f"vLLM changed: {direct[0]} {direct[1][:300]!r}"
    assert gw[0] == (differs[0] if differs else engine), f"gateway {gw[0]} {gw[1][:300]!r}"
    if gw[0] >= 400:
        err = error_of(gw[1])
        assert err["type"] == ("not_found_error" if gw[0] == 404 else "invalid_request_error")


@pytest.mark.parametrize(("headers", "status"), [({"content-type": "text/plain"}, 400), ({"content-type": "application/json; charset=utf-8"}, 200)])
def test_content_type_like_the_engine(gateway_server, vllm_engine, headers, status) -> None:  # type: ignore[no-untyped-def]
    body = {"model": vllm_engine.model, **BASE[CHAT]}
    assert _status(vllm_engine.base_url, None, CHAT, body, headers=headers)[0] == status
    assert _status(gateway_server.base_url, gateway_server.api_key, CHAT, body, headers=headers)[0] == status


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
