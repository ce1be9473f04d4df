"""OpenAI-compatible pass-through: POST /v1/chat/completions, POST /v1/completions,
GET /v1/models.

These are lean ASGI endpoints mounted inside the FastAPI app (no request object,
no body model, no response model on the hot path); they are described in the
OpenAPI document by :func:`openapi_paths`. Validation runs on the parsed dict; the
body goes upstream as the client sent it, except that a streaming request gets
``stream_options.include_usage`` so the gateway can log token counts (the extra
usage event is removed again when the client had not asked for it)."""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import orjson
from fastapi import APIRouter

from .. import schemas
from ..core import contract
from ..core.errors import GatewayError
from ..core.observability import RequestRecord
from ..core.proxy import ProxyCall
from ..core.validation import validate_chat, validate_completion
from ..dependencies import get_gateway, resolve

perf = time.perf_counter
_REQID = contract.REQUEST_ID_HEADER.encode()
_ID_PREFIX = os.urandom(6).hex()
_ids = itertools.count(1)


def new_request_id() -> str:
    """Unique per process start (random prefix) and cheap (a counter, no syscall)."""
    return f"{_ID_PREFIX}-{next(_ids)}"


class ClientGone(Exception):
    pass


async def read_body(receive: Any, limit: int) -> bytes:
    chunks = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ClientGone
        b = msg.get("body", b"")
        if b:
            size += len(b)
            if size > limit:
                raise GatewayError(413, f"request body larger than {limit} bytes", param="body", code="request_too_large")
            chunks.append(b)
        if not msg.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class OpenAIEndpoint:
    """One pass-through route as a plain ASGI app."""

    def __init__(self, route: str, upstream_path: str, kind: str) -> None:
        self.route = route
        self.upstream_path = upstream_path
        self.kind = kind  # "chat" | "completion" | "models"
        self.validate = {"chat": validate_chat, "completion": validate_completion}.get(kind)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        t0 = perf()
        gw = resolve(scope["app"], get_gateway, scope)
        auth = xkey = rid = None
        for k, v in scope["headers"]:
            if k == b"authorization":
                auth = v
            elif k == b"x-request-id":
                rid = v
            elif k == b"x-api-key":
                xkey = v
        rec = RequestRecord(
            self.route, rid.decode("latin-1") if rid and len(rid) <= 128 else new_request_id(), t0
        )
        gw.obs.start()
        slot = False
        try:
            rec.key_id = gw.authenticate(auth, xkey)
            if self.kind == "models":
                call = ProxyCall(gw, rec, "GET", self.upstream_path, None)
            else:
                gw.admit()
                body = await read_body(receive, gw.s.max_body_bytes)
                try:
                    payload = orjson.loads(body)
                except orjson.JSONDecodeError as e:
                    raise GatewayError(400, f"could not parse the JSON body: {e}", param="body", code="invalid_json") from None
                rec.model = self.validate(payload, gw.s, gw.known_models())  # type: ignore[misc]
                stream = payload.get("stream") is True
                rec.stream = stream
                if gw.s.log_prompts:
                    rec.prompt = payload.get("messages") if self.kind == "chat" else payload.get("prompt")
                strip = False
                if stream:
                    so = payload.get("stream_options")
                    if not (so and so.get("include_usage")):
                        payload["stream_options"] = {**(so or {}), "include_usage": True}
                        body = orjson.dumps(payload)
                        strip = True
                slot = gw.acquire(rec.key_id)
                call = ProxyCall(
                    gw, rec, "POST", self.upstream_path, body, stream=stream, strip_usage=strip, slot=slot, payload=payload
                )
        except GatewayError as e:
            if slot:
                gw.release(rec.key_id)
            rec.status = e.status
            rec.error = e.code
            if e.status == 503 and e.code == "overloaded":
                rec.extra["shed"] = True
            await e.send(send, [(_REQID, rec.request_id.encode())])
            gw.obs.finish(rec)
            return
        except ClientGone:
            rec.status = 499
            rec.disconnected = True
            gw.obs.finish(rec)
            return
        await call(scope, receive, send)


def _op(summary: str, body_model: type | None, stream_doc: bool) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "security": [{"bearer": []}],
        "responses": {
            "200": {
                "description": "The model backend's answer, passed through"
                + (" (an SSE stream when stream is true)" if stream_doc else ""),
                "content": {"application/json": {"schema": {"type": "object"}}}
                | ({"text/event-stream": {"schema": {"type": "string"}}} if stream_doc else {}),
            },
            **{
                code: {"description": d, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
                for code, d in {
                    "400": "Invalid request (the message names the field)",
                    "401": "Missing or invalid API key",
                    "404": "Unknown model",
                    "413": "Request body too large",
                    "429": "Per-key concurrency limit (Retry-After)",
                    "502": "Backend unreachable or failed",
                    "503": "Draining, overloaded or circuit open (Retry-After)",
                    "504": "Backend timeout",
                }.items()
                if body_model is not None or code in ("401", "502", "503", "504")
            },
        },
    }
    if body_model is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body_model.__name__}"}}},
        }
    return op


def openapi_paths() -> tuple[dict[str, Any], list[type]]:
    """OpenAPI path items for the lean routes, and the models their schemas need."""
    return (
        {
            "/v1/chat/completions": {"post": _op("OpenAI chat completions (pass-through)", schemas.ChatCompletionRequest, True)},
            "/v1/completions": {"post": _op("OpenAI completions (pass-through)", schemas.CompletionRequest, True)},
            "/v1/models": {"get": _op("Models served (pass-through)", None, False)},
        },
        [schemas.ChatCompletionRequest, schemas.CompletionRequest, schemas.ErrorResponse],
    )


router = APIRouter()
router.add_route("/v1/chat/completions", OpenAIEndpoint("chat_completions", "/v1/chat/completions", "chat"), methods=["POST"], include_in_schema=False)  # type: ignore[arg-type]
router.add_route("/v1/completions", OpenAIEndpoint("completions", "/v1/completions", "completion"), methods=["POST"], include_in_schema=False)  # type: ignore[arg-type]
router.add_route("/v1/models", OpenAIEndpoint("models", "/v1/models", "models"), methods=["GET"], include_in_schema=False)  # type: ignore[arg-type]
