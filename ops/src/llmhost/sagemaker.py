"""`llmhost sagemaker-invoke`: one chat turn against the SageMaker endpoint, streamed or not.

The payload depends on the serving container (config ``sagemaker.container``): TGI takes
``{"inputs", "parameters"}`` and streams ``{"token": {"text"}}`` events; the vLLM DLC and LMI
take OpenAI chat messages and stream ``chat.completion.chunk`` events.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .client import ChatResult, StreamTimer, sse_data
from .errors import LlmhostError


def payload(container: str, prompt: str, *, max_tokens: int, stream: bool) -> dict[str, Any]:
    if container == "tgi":
        # details: TGI then reports generated_tokens in a non-streamed answer.
        return {"inputs": prompt, "parameters": {"max_new_tokens": max_tokens, "details": True}, "stream": stream}
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def parse_response(body: Any) -> tuple[str, int]:
    """(generated text, completion tokens or 0 when not reported) of a non-streamed answer."""
    if isinstance(body, list) and body and isinstance(body[0], dict):
        body = body[0]  # TGI answers [{"generated_text": ..., "details": {...}}]
    if isinstance(body, dict):
        if "generated_text" in body:
            return str(body["generated_text"]), int((body.get("details") or {}).get("generated_tokens", 0))
        if body.get("choices"):
            text = body["choices"][0].get("message", {}).get("content") or ""
            return str(text), int((body.get("usage") or {}).get("completion_tokens", 0))
    raise LlmhostError(f"unexpected answer from the endpoint: {json.dumps(body)[:200]}")


def stream_pieces(parts: Iterable[bytes]) -> Iterator[tuple[str | None, int | None]]:
    """(text piece, completion tokens from a usage event) for each event of the response stream."""
    for event in sse_data(parts):
        if event == "[DONE]":
            return
        data = json.loads(event)
        if "token" in data:  # TGI
            token = data["token"]
            yield (None if token.get("special") else token.get("text")), None
        else:  # OpenAI chunk (vLLM DLC, LMI)
            usage = data.get("usage") or {}
            for choice in data.get("choices", []):
                yield (choice.get("delta") or {}).get("content"), None
            if usage.get("completion_tokens"):
                yield None, int(usage["completion_tokens"])


def invoke(
    runtime: Any,
    call: Callable[..., Any],
    endpoint_name: str,
    container: str,
    prompt: str,
    *,
    stream: bool,
    max_tokens: int,
    on_text: Callable[[str], None],
) -> ChatResult:
    """Invoke the endpoint through ``call`` (the Aws error translator) and time it like ``llmhost chat``."""
    body = json.dumps(payload(container, prompt, max_tokens=max_tokens, stream=stream))
    if not stream:
        t0 = time.perf_counter()
        response = call(
            f"invoke endpoint {endpoint_name}",
            runtime.invoke_endpoint,
            EndpointName=endpoint_name,
            ContentType="application/json",
            Accept="application/json",
            Body=body,
        )
        text, tokens = parse_response(json.loads(response["Body"].read()))
        total = time.perf_counter() - t0
        on_text(text)
        return ChatResult(text, False, total, None, None, tokens, None, False)
    response = call(
        f"invoke endpoint {endpoint_name} with a response stream",
        runtime.invoke_endpoint_with_response_stream,
        EndpointName=endpoint_name,
        ContentType="application/json",
        Body=body,
    )
    parts = (event["PayloadPart"]["Bytes"] for event in response["Body"] if "PayloadPart" in event)
    timer = StreamTimer(on_text)
    usage_tokens = 0
    for piece, reported in stream_pieces(parts):
        if reported:
            usage_tokens = reported
        if piece:
            timer.piece(piece)
    return timer.result(tokens=usage_tokens, finish_reason=None, saw_done=True)
