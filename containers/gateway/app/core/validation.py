"""Request validation for the OpenAI routes, on the parsed JSON dict (no model objects:
this runs on every request). Each failure names the field, OpenAI style (``param``)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pydantic import TypeAdapter, ValidationError

from .config import Settings
from .errors import GatewayError

def _bad(param: str, message: str, code: str = "invalid_value") -> GatewayError:
    return GatewayError(400, f"invalid '{param}': {message}", param=param, code=code)


# vLLM validates requests with pydantic in lax mode (FastAPI parses the JSON, then pydantic
# validates the Python objects): 2.0 is an int, "0.5" a float, "true" a bool. The gateway
# coerces the same way, so it rejects exactly what the engine rejects (issue 13, defect 5).
_INT = TypeAdapter(int)
_FLOAT = TypeAdapter(float)
_BOOL = TypeAdapter(bool)


def _as(adapter: TypeAdapter[Any], name: str, v: Any, what: str) -> Any:
    try:
        return adapter.validate_python(v)
    except ValidationError:
        raise _bad(name, f"must be {what}") from None


def _is_int(v: Any) -> bool:
    return type(v) is int


def _text_len(content: Any, param: str) -> int:
    if content is None:
        return 0
    if type(content) is str:
        return len(content)
    if type(content) is list:
        n = 0
        for i, part in enumerate(content):
            if type(part) is not dict:
                raise _bad(f"{param}[{i}]", "a content part must be an object")
            text = part.get("text")
            if text is not None:
                if type(text) is not str:
                    raise _bad(f"{param}[{i}].text", "must be a string")
                n += len(text)
        return n
    raise _bad(param, "must be a string or a list of content parts")


def _check_model(body: dict[str, Any], models: Collection[str] | None) -> str | None:
    model = body.get("model")
    if model is None:
        return None
    if type(model) is not str or not model:
        raise _bad("model", "must be a non-empty string")
    if models and model not in models:
        raise GatewayError(
            404,
            f"The model '{model}' does not exist; this gateway serves: {', '.join(sorted(models))}",
            param="model",
            code="model_not_found",
        )
    return model


def _check_sampling(body: dict[str, Any], s: Settings, token_fields: tuple[str, ...] = ("max_tokens", "max_completion_tokens")) -> None:
    """The sampling fields the gateway checks, as vLLM's SamplingParams checks them, plus the
    gateway's own ``max_tokens_cap``. Normalises ``stream`` to a bool in place."""
    for name in token_fields:
        v = body.get(name)
        if v is None:
            continue
        v = _as(_INT, name, v, "an integer")
        if v < 1:
            raise _bad(name, "must be at least 1")
        if v > s.max_tokens_cap:
            raise _bad(name, f"{v} exceeds this gateway's limit of {s.max_tokens_cap}", code="max_tokens_exceeded")
    v = body.get("temperature")
    if v is not None and _as(_FLOAT, "temperature", v, "a number") < 0:
        raise _bad("temperature", "must be a number of at least 0")
    v = body.get("top_p")
    if v is not None and not 0 < _as(_FLOAT, "top_p", v, "a number") <= 1:
        raise _bad("top_p", "must be a number greater than 0 and at most 1")
    v = body.get("n")
    if v is not None and _as(_INT, "n", v, "an integer") < 1:
        raise _bad("n", "must be an integer of at least 1")
    for name in ("presence_penalty", "frequency_penalty"):
        v = body.get(name)
        if v is not None and not -2 <= _as(_FLOAT, name, v, "a number") <= 2:
            raise _bad(name, "must be a number between -2 and 2")
    v = body.get("stream")
    if v is not None and type(v) is not bool:
        body["stream"] = _as(_BOOL, "stream", v, "a boolean")
    v = body.get("stream_options")
    if v is not None and type(v) is not dict:
        raise _bad("stream_options", "must be an object")


def validate_chat(body: Any, s: Settings, models: Collection[str] | None) -> str | None:
    """Validate a /v1/chat/completions body; return the model name (or None)."""
    if type(body) is not dict:
        raise _bad("body", "the request body must be a JSON object")
    model = _check_model(body, models)
    messages = body.get("messages")
    if type(messages) is not list:
        raise _bad("messages", "is required and must be a list of messages", code="missing_required_parameter" if messages is None else "invalid_value")
    if not messages:
        raise _bad("messages", "must contain at least one message")
    if len(messages) > s.max_messages:
        raise _bad("messages", f"{len(messages)} messages exceed the limit of {s.max_messages}")
    limit = s.max_message_chars
    for i, m in enumerate(messages):
        if type(m) is not dict:
            raise _bad(f"messages[{i}]", "must be an object with 'role' and 'content'")
        # vLLM takes any role string (custom roles reach the chat template), so the gateway does too.
        if type(m.get("role")) is not str:
            raise _bad(f"messages[{i}].role", "is required and must be a string, e.g. user or assistant")
        if _text_len(m.get("content"), f"messages[{i}].content") > limit:
            raise _bad(f"messages[{i}].content", f"longer than the limit of {limit} characters", code="message_too_long")
    _check_sampling(body, s)
    return model


def validate_completion(body: Any, s: Settings, models: Collection[str] | None) -> str | None:
    """Validate a /v1/completions body; return the model name (or None)."""
    if type(body) is not dict:
        raise _bad("body", "the request body must be a JSON object")
    model = _check_model(body, models)
    prompt = body.get("prompt")
    limit = s.max_message_chars
    if type(prompt) is str:
        if not prompt:
            raise _bad("prompt", "must not be empty")
        if len(prompt) > limit:
            raise _bad("prompt", f"longer than the limit of {limit} characters", code="message_too_long")
    elif type(prompt) is list and prompt:
        if all(type(p) is str for p in prompt):
            if sum(len(p) for p in prompt) > limit:
                raise _bad("prompt", f"longer than the limit of {limit} characters", code="message_too_long")
        elif all(_is_int(p) for p in prompt):
            if len(prompt) > limit:
                raise _bad("prompt", f"longer than the limit of {limit} tokens", code="message_too_long")
        elif not all(type(p) is list and all(_is_int(t) for t in p) for p in prompt):
            raise _bad("prompt", "must be a string, a list of strings, or token ids")
    else:
        raise _bad(
            "prompt",
            "is required and must be a non-empty string or list",
            code="missing_required_parameter" if prompt is None else "invalid_value",
        )
    _check_sampling(body, s)
    return model


def validate_responses(body: Any, s: Settings, models: Collection[str] | None) -> str | None:
    """Validate a /v1/responses body (the Responses API): the model, the output cap, stream."""
    if type(body) is not dict:
        raise _bad("body", "the request body must be a JSON object")
    model = _check_model(body, models)
    if body.get("input") is None:
        raise _bad("input", "is required", code="missing_required_parameter")
    _check_sampling(body, s, ("max_output_tokens",))
    return model


def validate_object(body: Any, s: Settings, models: Collection[str] | None) -> str | None:
    """The other JSON routes (embeddings, score, rerank, tokenize, detokenize): a JSON object
    and a served model; vLLM checks the rest."""
    if type(body) is not dict:
        raise _bad("body", "the request body must be a JSON object")
    return _check_model(body, models)
