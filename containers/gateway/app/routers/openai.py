"""OpenAI-compatible pass-through: the chat, completions and Responses APIs (stream or not),
embeddings, score, rerank, tokenize, detokenize, models and version.

These are lean ASGI endpoints mounted inside the FastAPI app (no request object,
no body model, no response model on the hot path); they are described in the
OpenAPI document by :func:`openapi_paths`. The caller is authenticated from the
headers before a byte of the body is read; the body is read with a size cap and
validated on the parsed dict; then it goes upstream as the client sent it, except
that a streaming chat/completions request gets ``stream_options.include_usage`` so
the gateway can count tokens (the extra usage event is removed again when the client
had not asked for it)."""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter

from .. import schemas
from ..core import contract
from ..core.errors import GatewayError
from ..core.gateway import Gateway
from ..core.observability import RequestRecord
from ..core.proxy import ProxyCall
from ..dependencies import get_gateway, resolve

perf = time.perf_counter
_REQID = contract.REQUEST_ID_HEADER.encode()
_TENANT = contract.TENANT_HEADER.encode()
_ID_PREFIX = os.urandom(6).hex()
_ids = itertools.count(1)


def new_request_id() -> str:
    """Unique per process start (random prefix) and cheap (a counter, no syscall)."""
    return f"{_ID_PREFIX}-{next(_ids)}"


class ClientGone(Exception):
    pass


async def read_body(receive: Any, limit: int) -> bytes:
    """The request body, counted while it arrives: 413 as soon as it passes ``limit``
    (a chunked upload declares no length), without buffering the rest."""
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


def ended_early(gw: Gateway, rec: RequestRecord, e: GatewayError | ClientGone) -> None:
    """Record a request that ended before it went upstream: a gateway error, or the client left."""
    if isinstance(e, ClientGone):
        rec.status = 499
        rec.disconnected = True
    else:
        rec.status = e.status
        rec.error = e.code
        if e.status == 503 and e.code == "overloaded":
            rec.extra["shed"] = True
    gw.finish(rec)


def check_json_content_type(content_type: bytes | None) -> None:
    """vLLM answers 400 to a JSON route called without ``Content-Type: application/json``."""
    if content_type is None or content_type.split(b";", 1)[0].lower() != b"application/json":
        raise GatewayError(
            400,
            "invalid 'content-type': send the JSON body with 'Content-Type: application/json'",
            param="content-type",
            code="invalid_content_type",
        )


@dataclass(frozen=True)
class Kind:
    """What the gateway does on one route: the body's rules (also its OpenAPI schema), whether
    streams get ``stream_options.include_usage``, whether it may stream."""

    schema: type[schemas.GatewayRequest] | None  # None: GET, no body
    usage_injection: bool = False
    streams: bool = False


CHAT = Kind(schemas.ChatCompletionRequest, usage_injection=True, streams=True)
COMPLETION = Kind(schemas.CompletionRequest, usage_injection=True, streams=True)
RESPONSES = Kind(schemas.ResponsesRequest, streams=True)
JSON = Kind(schemas.PassThroughRequest)
GET = Kind(None)


class OpenAIEndpoint:
    """One pass-through route as a plain ASGI app."""

    def __init__(self, route: str, upstream_path: str, kind: Kind) -> None:
        self.route = route
        self.upstream_path = upstream_path
        self.kind = kind

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        t0 = perf()
        app = scope["app"]
        # The tests' override hook where one is set; else the gateway straight from the app's state:
        # building a Request to look it up was 17 of the ~105 µs before the upstream write (measured).
        gw = resolve(app, get_gateway, scope) if app.dependency_overrides else app.state.gateway
        auth = xkey = rid = ctype = tenant = None
        for k, v in scope["headers"]:
            if k == b"authorization":
                auth = v
            elif k == b"content-type":
                ctype = v
            elif k == b"x-request-id":
                rid = v
            elif k == b"x-api-key":
                xkey = v
            elif k == _TENANT:
                tenant = v
        rec = RequestRecord(
            self.route, rid.decode("latin-1") if rid and len(rid) <= 128 else new_request_id(), t0
        )
        gw.obs.start()
        slot = False
        kind = self.kind
        try:
            rec.key_id, rec.tenant = gw.identify(auth, xkey, tenant)
            if kind.schema is None:
                call = ProxyCall(gw, rec, "GET", self.upstream_path, None)
            else:
                gw.admit()
                check_json_content_type(ctype)
                body = await read_body(receive, gw.s.max_body_bytes)
                try:
                    payload = orjson.loads(body)
                except orjson.JSONDecodeError as e:
                    raise GatewayError(400, f"could not parse the JSON body: {e}", param="body", code="invalid_json") from None
                req = kind.schema.parse(payload, gw.s, gw.known_models())
                rec.model = req.model or None
                stream = rec.stream = kind.streams and req.stream is True  # type: ignore[attr-defined]
                if kind.streams and "stream" in payload:
                    payload["stream"] = stream  # as vLLM reads it ("true" is true), for a fallback too
                if gw.s.log_prompts:
                    rec.prompt = payload.get("messages") or payload.get("prompt") or payload.get("input")
                strip = False
                if stream and kind.usage_injection:
                    so = req.stream_options  # type: ignore[attr-defined]
                    if not (so and so.include_usage):
                        payload["stream_options"] = {**(payload.get("stream_options") or {}), "include_usage": True}
                        body = orjson.dumps(payload)
                        strip = True
                gw.limits.check(rec.tenant)
                slot = gw.acquire(rec.key_id)
                call = ProxyCall(
                    gw, rec, "POST", self.upstream_path, body, stream=stream, strip_usage=strip, slot=slot, payload=payload
                )
        except (GatewayError, ClientGone) as e:
            if slot:
                gw.release(rec.key_id)
            if isinstance(e, GatewayError):
                await e.send(send, [(_REQID, rec.request_id.encode())])
            ended_early(gw, rec, e)
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
                    "429": "Per-key concurrency limit or tenant tokens per minute (Retry-After)",
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
    paths = {
        path: {("get" if kind is GET else "post"): _op(f"{summary} (pass-through)", kind.schema, kind.streams)}
        for path, _, kind, summary in ROUTES
    }
    models = [kind.schema for _, _, kind, _ in ROUTES if kind.schema is not None]
    return paths, [*dict.fromkeys(models), schemas.ErrorResponse]


ROUTES: tuple[tuple[str, str, Kind, str], ...] = (
    # (path, log route name, kind, summary)
    ("/v1/chat/completions", "chat_completions", CHAT, "OpenAI chat completions"),
    ("/v1/completions", "completions", COMPLETION, "OpenAI completions"),
    ("/v1/responses", "responses", RESPONSES, "OpenAI Responses API"),
    ("/v1/embeddings", "embeddings", JSON, "Embeddings (pooling models)"),
    ("/v1/score", "score", JSON, "Score (pooling models)"),
    ("/v1/rerank", "rerank", JSON, "Rerank (pooling models)"),
    ("/tokenize", "tokenize", JSON, "Tokenize with the served model's tokenizer"),
    ("/detokenize", "detokenize", JSON, "Detokenize with the served model's tokenizer"),
    ("/v1/models", "models", GET, "Models served"),
    ("/version", "version", GET, "vLLM version"),
)

router = APIRouter()
FAST_ROUTES: dict[tuple[str, str], OpenAIEndpoint] = {}
"""(method, path) -> endpoint: what the edge middleware calls without the router (app.main)."""
for _path, _name, _kind, _summary in ROUTES:
    _method = "GET" if _kind is GET else "POST"
    FAST_ROUTES[(_method, _path)] = OpenAIEndpoint(_name, _path, _kind)
    router.add_route(_path, FAST_ROUTES[(_method, _path)], methods=[_method], include_in_schema=False)  # type: ignore[arg-type]
