"""The FastAPI app factory. Clients (upstream connection pools, backend monitor) are created in the
lifespan, one set per worker, and reached through :mod:`.dependencies`.

Run it with ``python -m app.server`` (uvicorn with uvloop and httptools; see
:mod:`.server`), or in tests ``create_app(Settings(...))``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from .core.config import Settings, get_settings
from .core.errors import GatewayError, install_error_handlers
from .core.gateway import Gateway
from .core.observability import setup_logging
from .routers import health, openai, simple
from .schemas import SimpleChatRequest

VERSION = "1.0.0"


class EdgeMiddleware:
    """Runs before routing, on every request:

    * a configured path prefix (``GATEWAY_PATH_PREFIX``, e.g. the API stage ``/prod`` that API
      Gateway's private integration may put in front of the path) is removed, so
      ``/prod/v1/models`` serves as ``/v1/models``; a path without it is served unchanged;
    * a declared Content-Length over the limit gets 413 before any route reads the body (the
      routes also count the bytes of chunked bodies as they arrive);
    * the OpenAI pass-through routes (plain ASGI endpoints, no dependencies) are called straight
      from here by path and method: FastAPI's exception and exit-stack middleware and the router's
      scan of every route cost about a fifth of the gateway's time per one-token call, measured.
      Anything else (and a pass-through path with another method: 405) goes through the router."""

    def __init__(self, app: Any, limit: int, prefix: str = "", fast: dict[tuple[str, str], Any] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.prefix = prefix
        self.prefix_slash = prefix + "/"
        self.fast = fast or {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            if self.prefix:
                path = scope["path"]
                if path.startswith(self.prefix_slash):
                    n = len(self.prefix)
                    scope = {**scope, "path": path[n:], "raw_path": scope.get("raw_path", b"")[n:] or path[n:].encode()}
            for k, v in scope["headers"]:
                if k == b"content-length":
                    try:
                        n = int(v)
                    except ValueError:
                        n = -1
                    if n < 0 or n > self.limit:
                        err = (
                            GatewayError(400, "invalid Content-Length header", param="content-length", code="invalid_value")
                            if n < 0
                            else GatewayError(
                                413, f"request body larger than {self.limit} bytes", param="body", code="request_too_large"
                            )
                        )
                        await err.send(send)
                        return
                    break
            endpoint = self.fast.get((scope["method"], scope["path"]))
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None, gateway: Gateway | None = None) -> FastAPI:
    s = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        setup_logging(s)
        gw = gateway or Gateway(s)
        app.state.gateway = gw
        await gw.start()
        gw.install_sigterm()
        try:
            yield
        finally:
            await gw.stop()

    app = FastAPI(
        title="llm-hosting gateway",
        version=VERSION,
        description="OpenAI-compatible gateway in front of vLLM: auth, limits, validation, streaming, metrics.",
        lifespan=lifespan,
        # FastAPI's native OpenTelemetry hooks: off, they cost time on every request and the
        # gateway has its own per-request log line, EMF metrics and Prometheus metrics.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.settings = s
    install_error_handlers(app)
    app.include_router(openai.router)  # first: the hot routes match with the fewest checks
    app.include_router(health.router)
    app.include_router(simple.router)
    app.add_middleware(EdgeMiddleware, limit=s.max_body_bytes, prefix=s.path_prefix, fast=openai.FAST_ROUTES)

    def custom_openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        paths, models = openai.openapi_paths()
        doc.setdefault("paths", {}).update(paths)
        comps = doc.setdefault("components", {})
        schemas = comps.setdefault("schemas", {})
        for m in [*models, SimpleChatRequest]:  # the simple routes read their body themselves
            js = m.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in js.pop("$defs", {}).items():
                schemas.setdefault(name, sub)
            schemas[m.__name__] = js
        comps.setdefault("securitySchemes", {})["bearer"] = {"type": "http", "scheme": "bearer"}
        app.openapi_schema = doc
        return doc

    app.openapi = custom_openapi  # type: ignore[method-assign]
    return app
