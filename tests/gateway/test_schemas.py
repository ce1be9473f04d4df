"""The request rules (schemas.py): what the gateway itself rejects, and what it leaves to vLLM.
tests/gateway/routers/test_openai.py::test_exactly_as_strict_as_the_engine sends such bodies to
the real engine and through the gateway and compares."""

from __future__ import annotations

from typing import Any

import pytest

from containers.gateway.app.core.config import Settings
from containers.gateway.app.core.errors import GatewayError
from containers.gateway.app.schemas import ChatCompletionRequest, CompletionRequest, GatewayRequest, PassThroughRequest, ResponsesRequest

S = Settings(max_tokens_cap=100, max_message_chars=50, max_messages=4)
MODELS = frozenset({"tiny"})
OK = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}


def _chat(**kw: Any) -> dict[str, Any]:
    return {**OK, **kw}


def _rejected(schema: type[GatewayRequest], body: Any) -> GatewayError:
    with pytest.raises(GatewayError) as ei:
        schema.parse(body, S, MODELS)
    return ei.value


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        ([], 400, "body", "invalid_value"),
        ({"model": "tiny"}, 400, "messages", "missing_required_parameter"),
        (_chat(messages="hi"), 400, "messages", "invalid_value"),
        (_chat(messages=[]), 400, "messages", "invalid_value"),
        (_chat(messages=[{"role": "user", "content": "x"}] * 5), 400, "messages", "invalid_value"),
        (_chat(messages=[{"content": "x"}]), 400, "messages[0].role", "missing_required_parameter"),
        (_chat(messages=[{"role": {}, "content": "x"}]), 400, "messages[0].role", "invalid_value"),  # found by the fuzzer
        (_chat(messages=[{"role": "user", "content": "x"}, "hi"]), 400, "messages[1]", "invalid_value"),
        (_chat(messages=[{"role": "user", "content": "x" * 51}]), 400, "messages[0].content", "message_too_long"),
        (_chat(messages=[{"role": "user", "content": [{"type": "text", "text": "x" * 51}]}]), 400, "messages[0].content", "message_too_long"),
        (_chat(messages=[{"role": "user", "content": 5}]), 400, "messages[0].content", "invalid_value"),
        (_chat(messages=[{"role": "user", "content": [{"type": "text", "text": 5}]}]), 400, "messages[0].content[0].text", "invalid_value"),
        (_chat(messages=[{"role": "user", "content": ["x"]}]), 400, "messages[0].content[0]", "invalid_value"),
        (_chat(model="gpt-4"), 404, "model", "model_not_found"),
        (_chat(model=5), 400, "model", "invalid_value"),
        (_chat(max_tokens=101), 400, "max_tokens", "max_tokens_exceeded"),
        (_chat(max_completion_tokens=101), 400, "max_completion_tokens", "max_tokens_exceeded"),
        (_chat(max_tokens=2.5), 400, "max_tokens", "invalid_value"),
        (_chat(max_tokens="many"), 400, "max_tokens", "invalid_value"),
        (_chat(max_tokens=[]), 400, "max_tokens", "invalid_value"),
        (_chat(stream="maybe"), 400, "stream", "invalid_value"),
        (_chat(stream=True, stream_options="x"), 400, "stream_options", "invalid_value"),
        (_chat(stream=True, stream_options={"include_usage": "maybe"}), 400, "stream_options.include_usage", "invalid_value"),
    ],
)
def test_chat_rejections_name_the_field(body: Any, status: int, param: str, code: str) -> None:
    e = _rejected(ChatCompletionRequest, body)
    assert (e.status, e.param, e.code) == (status, param, code)
    assert f"'{param}'" in e.message or (param == "model" and "gpt-4" in e.message)


def test_a_union_names_the_member_that_got_furthest() -> None:
    e = _rejected(ChatCompletionRequest, _chat(messages=[{"role": "user", "content": 5}]))
    assert e.message == "invalid 'messages[0].content': Input should be a valid string; or Input should be a valid list"
    e = _rejected(ChatCompletionRequest, _chat(max_tokens="x", stream="maybe"))
    assert e.param == "max_tokens" and e.message.endswith("(and 1 more invalid field(s))")


@pytest.mark.parametrize(
    "body",
    [
        OK,
        _chat(max_tokens=100, stream=True, stream_options={"include_usage": True}),
        _chat(messages=[{"role": "assistant", "content": None}, {"role": "tool", "content": "r"}, {"role": "user"}]),
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": [{"type": "text", "text": "x"}]}]},
        _chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}, {"type": "text", "text": "x" * 50}]}]),
        # vLLM's lax types: what vLLM reads as valid, the gateway does
        _chat(max_tokens=2.0), _chat(max_tokens="5"), _chat(max_tokens=True), _chat(stream="true"), _chat(stream=1),
        _chat(messages=[{"role": "wizard", "content": "x"}]), _chat(model=""), _chat(model=None),
        # vLLM's to check (SamplingParams): passed on as sent, vLLM's 400 comes back
        _chat(temperature=-1), _chat(temperature=2.5), _chat(top_p=0), _chat(n=0), _chat(n=17), _chat(presence_penalty=3),
        _chat(max_tokens=0), _chat(stream_options={"include_usage": True}),  # stream options without stream
    ],
)
def test_chat_accepts_what_vllm_reads_as_valid(body: dict[str, Any]) -> None:
    ChatCompletionRequest.parse(body, S, MODELS)


def test_stream_is_read_like_the_engine_reads_it() -> None:
    assert ChatCompletionRequest.parse(_chat(stream="true"), S, MODELS).stream is True
    assert ChatCompletionRequest.parse(_chat(stream="false"), S, MODELS).stream is False


def test_unknown_model_not_checked_while_the_model_list_is_unknown() -> None:
    assert ChatCompletionRequest.parse(_chat(model="anything"), S, frozenset()).model == "anything"


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"prompt": "x" * 51}, "prompt", "message_too_long"),
        ({"prompt": ["a" * 30, "b" * 30]}, "prompt", "message_too_long"),
        ({"prompt": list(range(51))}, "prompt", "message_too_long"),
        ({"prompt": [list(range(30)), list(range(30))]}, "prompt", "message_too_long"),
        ({"prompt": [1, "a"]}, "prompt[1]", "invalid_value"),
        ({"prompt": [-1]}, "prompt[0]", "invalid_value"),
        ({"prompt": 5}, "prompt", "invalid_value"),
        ({"prompt": "hi", "max_tokens": 1000}, "max_tokens", "max_tokens_exceeded"),
    ],
)
def test_completion_rejections(body: dict[str, Any], param: str, code: str) -> None:
    e = _rejected(CompletionRequest, body)
    assert (e.status, e.param, e.code) == (400, param, code)


def test_completion_accepts_strings_and_token_ids() -> None:
    # no prompt and "" are vLLM's to reject (it also takes prompt_embeds); [1.0] is [1] to vLLM
    for prompt in ("hi", ["a", "b"], [1, 2, 3], [[1, 2], [3]], [1.0, 2.0], "", None):
        CompletionRequest.parse({"model": "tiny", "prompt": prompt}, S, MODELS)


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": "tiny"}, "input", "missing_required_parameter"),
        ({"input": 5}, "input", "invalid_value"),
        ({"input": "hi", "max_output_tokens": 101}, "max_output_tokens", "max_tokens_exceeded"),
        ({"input": "hi", "max_output_tokens": 2.5}, "max_output_tokens", "invalid_value"),
    ],
)
def test_responses_rejections(body: dict[str, Any], param: str, code: str) -> None:
    e = _rejected(ResponsesRequest, body)
    assert (e.status, e.param, e.code) == (400, param, code)


def test_pass_through_routes_check_the_body_is_an_object_and_the_model() -> None:
    assert PassThroughRequest.parse({"model": "tiny", "anything": [1]}, S, MODELS).model == "tiny"
    assert _rejected(PassThroughRequest, {"model": "other"}).status == 404
    assert _rejected(PassThroughRequest, [1]).param == "body"
