"""The simple API: POST /v1/chat (JSON ``content``, ``model``, ``usage``, ``latency_ms``)
and POST /v1/chat/stream (SSE ``data: {"content": ...}`` events ending ``data: [DONE]``)."""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from ..core.errors import GatewayError
from ..core.observability import RequestRecord
from ..core.proxy import ProxyCall
from ..core.validation import validate_chat
from ..dependencies import GatewayDep, KeyIdDep
from .openai import new_request_id
from ..schemas import ErrorResponse, SimpleChatRequest, SimpleChatResponse

router = APIRouter(tags=["simple"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    c: {"model": ErrorResponse, "description": d}
    for c, d in {
        400: "Invalid request",
        401: "Missing or invalid API key",
        404: "Unknown model",
        413: "Body too large",
        429: "Per-key concurrency limit",
        502: "Backend failure",
        503: "Unavailable",
        504: "Backend timeout",
    }.items()
}


class _CallResponse(Response):
    """Hands the ASGI cycle to a ProxyCall (which writes status, headers and body)."""

    def __init__(self, call: ProxyCall) -> None:  # noqa: D107 - no Response init on purpose
        self.call = call
        self.background = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.call(scope, receive, send)


def _payload(req: SimpleChatRequest, gw: Any, stream: bool) -> dict[str, Any]:
    if req.messages is not None:
        if req.prompt is not None:
            raise GatewayError(400, "invalid 'prompt': send either 'prompt' or 'messages', not both", param="prompt")
        messages = [m.model_dump(exclude_none=True) for m in req.messages]
    elif req.prompt is not None:
        messages = ([{"role": "system", "content": req.system}] if req.system else []) + [
            {"role": "user", "content": req.prompt}
        ]
    else:
        raise GatewayError(400, "invalid 'prompt': one of 'prompt' or 'messages' is required", param="prompt", code="missing_required_parameter")
    p: dict[str, Any] = {"messages": messages, "stream": stream}
    model = req.model or gw.s.served_model_name or next(iter(sorted(gw.known_models())), None)
    if model:
        p["model"] = model
    for f in ("max_tokens", "temperature", "top_p"):
        v = getattr(req, f)
        if v is not None:
            p[f] = v
    if stream:
        p["stream_options"] = {"include_usage": True}
    validate_chat(p, gw.s, gw.known_models())
    return p


def _start(request: Request, gw: Any, key_id: str, route: str, body: SimpleChatRequest, stream: bool) -> ProxyCall:
    rid = request.headers.get("x-request-id")
    rec = RequestRecord(route, rid if rid and len(rid) <= 128 else new_request_id(), time.perf_counter(), key_id=key_id)
    rec.stream = stream
    gw.obs.start()
    slot = False
    try:
        gw.admit()
        p = _payload(body, gw, stream)
        rec.model = p.get("model")
        if gw.s.log_prompts:
            rec.prompt = p["messages"]
        slot = gw.acquire(key_id)
    except GatewayError as e:
        rec.status = e.status
        rec.error = e.code
        gw.obs.finish(rec)
        raise
    return ProxyCall(
        gw, rec, "POST", "/v1/chat/completions", orjson.dumps(p), stream=stream, mode="simple", strip_usage=stream, slot=slot, payload=p
    )


@router.post("/v1/chat", response_model=SimpleChatResponse, responses=_ERRORS, summary="Chat, one JSON answer")
async def chat(request: Request, body: SimpleChatRequest, gw: GatewayDep, key_id: KeyIdDep) -> Response:
    return _CallResponse(_start(request, gw, key_id, "chat", body, stream=False))


@router.post(
    "/v1/chat/stream",
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}, "description": 'SSE: data: {"content": ...} ... data: [DONE]'}, **_ERRORS},
    summary="Chat, streamed as SSE content events",
)
async def chat_stream(request: Request, body: SimpleChatRequest, gw: GatewayDep, key_id: KeyIdDep) -> Response:
    return _CallResponse(_start(request, gw, key_id, "chat_stream", body, stream=True))
