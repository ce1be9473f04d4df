"""The simple API: POST /v1/chat (JSON ``content``, ``model``, ``usage``, ``latency_ms``)
and POST /v1/chat/stream (SSE ``data: {"content": ...}`` events ending ``data: [DONE]``)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response

from ..core.errors import GatewayError, invalid_request
from ..core.observability import RequestRecord
from ..core.proxy import ProxyCall, encode_payload
from ..dependencies import GatewayDep, IdentityDep
from ..schemas import ChatCompletionRequest, ErrorResponse, SimpleChatRequest, SimpleChatResponse
from .openai import ClientGone, check_json_content_type, ended_early, new_request_id, read_body

router = APIRouter(tags=["simple"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    c: {"model": ErrorResponse, "description": d}
    for c, d in {
        400: "Invalid request",
        401: "Missing or invalid API key",
        404: "Unknown model",
        413: "Body too large",
        429: "Per-key concurrency limit or tenant token limit",
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
        messages = req.messages
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
    ChatCompletionRequest.parse(p, gw.s, gw.known_models())
    return p


# The body is read by the route, after the key was checked (a dependency) and with the size cap:
# a FastAPI body parameter would be read before any dependency runs, whole, however large.
_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SimpleChatRequest"}}},
    }
}


async def _body(request: Request, gw: Any) -> SimpleChatRequest:
    check_json_content_type(request.headers.get("content-type", "").encode("latin-1") or None)
    raw = await read_body(request.receive, gw.s.max_body_bytes)
    try:
        return SimpleChatRequest.model_validate_json(raw)
    except ValidationError as e:
        raise invalid_request(e.errors(include_url=False)) from None


async def _start(request: Request, gw: Any, who: tuple[str, str], route: str, stream: bool) -> ProxyCall:
    rid = request.headers.get("x-request-id")
    key_id, tenant = who
    rec = RequestRecord(route, rid if rid and len(rid) <= 128 else new_request_id(), time.perf_counter(), key_id=key_id)
    rec.tenant = tenant
    rec.stream = stream
    gw.obs.start()
    slot = False
    try:
        gw.admit()
        p = _payload(await _body(request, gw), gw, stream)
        rec.model = p.get("model")
        if gw.s.log_prompts:
            rec.prompt = p["messages"]
        gw.limits.check(tenant)
        slot = gw.acquire(key_id)
    except (GatewayError, ClientGone) as e:
        ended_early(gw, rec, e)
        raise
    return ProxyCall(
        gw, rec, "POST", "/v1/chat/completions", encode_payload(p), stream=stream, mode="simple", strip_usage=stream, slot=slot, payload=p
    )


@router.post(
    "/v1/chat", response_model=SimpleChatResponse, responses=_ERRORS, summary="Chat, one JSON answer", openapi_extra=_BODY_DOC
)
async def chat(request: Request, gw: GatewayDep, who: IdentityDep) -> Response:
    try:
        return _CallResponse(await _start(request, gw, who, "chat", stream=False))
    except ClientGone:
        return Response(status_code=499)


@router.post(
    "/v1/chat/stream",
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}, "description": 'SSE: data: {"content": ...} ... data: [DONE]'}, **_ERRORS},
    summary="Chat, streamed as SSE content events",
    openapi_extra=_BODY_DOC,
)
async def chat_stream(request: Request, gw: GatewayDep, who: IdentityDep) -> Response:
    try:
        return _CallResponse(await _start(request, gw, who, "chat_stream", stream=True))
    except ClientGone:
        return Response(status_code=499)
