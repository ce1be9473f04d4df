"""Validation rules of the pass-through routes: each failure names the field."""

from __future__ import annotations

from typing import Any

import pytest

from containers.gateway.app.core.config import Settings
from containers.gateway.app.core.errors import GatewayError
from containers.gateway.app.core.validation import validate_chat, validate_completion

S = Settings(max_tokens_cap=100, max_message_chars=50, max_messages=4)
MODELS = frozenset({"tiny"})
OK = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}


def _chat(**kw: Any) -> dict[str, Any]:
    return {**OK, **kw}


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ([], 400, "body"),
        ({"model": "tiny"}, 400, "messages"),
        (_chat(messages=[]), 400, "messages"),
        (_chat(messages=[{"role": "user", "content": "x"}] * 5), 400, "messages"),
        (_chat(messages=[{"content": "x"}]), 400, "messages[0].role"),
        (_chat(messages=[{"role": {}, "content": "x"}]), 400, "messages[0].role"),  # found by the fuzzer
        (_chat(messages=[{"role": "user", "content": "x"}, "hi"]), 400, "messages[1]"),
        (_chat(messages=[{"role": "user", "content": "x" * 51}]), 400, "messages[0].content"),
        (_chat(messages=[{"role": "user", "content": [{"type": "text", "text": "x" * 51}]}]), 400, "messages[0].content"),
        (_chat(messages=[{"role": "user", "content": 5}]), 400, "messages[0].content"),
        (_chat(model="gpt-4"), 404, "model"),
        (_chat(model=""), 400, "model"),
        (_chat(max_tokens=101), 400, "max_tokens"),
        (_chat(max_completion_tokens=0), 400, "max_completion_tokens"),
        (_chat(max_tokens=2.5), 400, "max_tokens"),
        (_chat(max_tokens="many"), 400, "max_tokens"),
        (_chat(max_tokens=[]), 400, "max_tokens"),
        (_chat(temperature=-0.1), 400, "temperature"),
        (_chat(top_p=0), 400, "top_p"),
        (_chat(top_p=1.5), 400, "top_p"),
        (_chat(n=0), 400, "n"),
        (_chat(stream="maybe"), 400, "stream"),
        (_chat(n="two"), 400, "n"),
        (_chat(presence_penalty=3), 400, "presence_penalty"),
    ],
)
def test_chat_rejections_name_the_field(body: Any, status: int, param: str) -> None:
    with pytest.raises(GatewayError) as ei:
        validate_chat(body, S, MODELS)
    assert ei.value.status == status
    assert ei.value.param == param
    assert param in ei.value.message or (param == "model" and "gpt-4" in ei.value.message)


@pytest.mark.parametrize(
    "body",
    [
        OK,
        _chat(max_tokens=100, temperature=0, top_p=1, n=2, stream=True, stream_options={"include_usage": True}),
        _chat(messages=[{"role": "assistant", "content": None}, {"role": "tool", "content": "r"}]),
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": [{"type": "text", "text": "x"}]}]},
        # issue 13 defect 5: what vLLM accepts (pydantic lax mode, SamplingParams' ranges), the
        # gateway accepts; tests/gateway/routers/test_openai.py checks the same list against the engine
        _chat(max_tokens=2.0), _chat(max_tokens="5"), _chat(messages=[{"role": "wizard", "content": "x"}]), _chat(n=17), _chat(temperature=2.5), _chat(stream="true"),
    ],
)
def test_chat_accepts_valid_bodies(body: dict[str, Any]) -> None:
    validate_chat(body, S, MODELS)


def test_stream_is_normalised_like_the_engine_reads_it() -> None:
    body = _chat(stream="true")
    validate_chat(body, S, MODELS)
    assert body["stream"] is True


def test_unknown_model_not_checked_while_the_model_list_is_unknown() -> None:
    assert validate_chat(_chat(model="anything"), S, frozenset()) == "anything"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "tiny"}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x" * 51}, "prompt"),
        ({"prompt": ["a" * 30, "b" * 30]}, "prompt"),
        ({"prompt": [1, "a"]}, "prompt"),
        ({"prompt": "hi", "max_tokens": 1000}, "max_tokens"),
    ],
)
def test_completion_rejections(body: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as ei:
        validate_completion(body, S, MODELS)
    assert ei.value.status == 400 and ei.value.param == param


def test_completion_accepts_strings_and_token_ids() -> None:
    for prompt in ("hi", ["a", "b"], [1, 2, 3], [[1, 2], [3]]):
        validate_completion({"model": "tiny", "prompt": prompt}, S, MODELS)
