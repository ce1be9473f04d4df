"""The app: the edge middleware (the configured path prefix, issue 11.2; the declared body size)
and the OpenAPI document."""

from __future__ import annotations

import json
import re

from containers.gateway.app.core.config import Settings
from containers.gateway.app.main import create_app
from tests.gateway.helpers import error_of, request

MSG = [{"role": "user", "content": "hi"}]


def test_path_prefix_is_tolerated_when_configured(start_fake_upstream, start_gateway) -> None:  # type: ignore[no-untyped-def]
    """API Gateway's private integration sends the stage in front of the path ("/prod/v1/...");
    with GATEWAY_PATH_PREFIX=/prod both forms serve; without it the prefixed path is a 404."""
    fake = start_fake_upstream("--chunks", "2")
    plain = start_gateway(fake.base_url)
    prefixed = start_gateway(fake.base_url, path_prefix="/prod")
    body = {"model": "fake", "messages": MSG, "max_tokens": 2}
    for path in ("/prod/v1/chat/completions", "/v1/chat/completions"):
        st, _, out = request(prefixed.base_url, "POST", path, body)
        assert st == 200 and json.loads(out)["choices"][0]["message"]["content"] == "toktok", (path, out)
    assert request(prefixed.base_url, "GET", "/prod/v1/models")[0] == 200
    assert request(prefixed.base_url, "POST", "/prod/v1/chat", {"prompt": "hi", "max_tokens": 2})[0] == 200
    assert request(prefixed.base_url, "GET", "/prod/health")[0] == 200
    assert request(prefixed.base_url, "GET", "/production/v1/models")[0] == 404  # a prefix of the prefix is not it
    st, _, out = request(plain.base_url, "POST", "/prod/v1/chat/completions", body)
    assert st == 404 and error_of(out)["code"] == "not_found"
    assert request(plain.base_url, "POST", "/v1/chat/completions", body)[0] == 200


def test_openapi_document_refs_resolve() -> None:
    """The simple routes' body schema was referenced but missing from the document (issue 14)."""
    doc = create_app(Settings(upstream_url="http://127.0.0.1:9")).openapi()
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(doc)))
    assert {"SimpleChatRequest", "ChatCompletionRequest", "ErrorResponse"} <= refs <= set(doc["components"]["schemas"])


def test_pass_through_routes_skip_the_router() -> None:
    """The edge middleware calls the OpenAI pass-through endpoints itself (FastAPI's middleware
    and route scan cost about a fifth of the gateway's time per one-token call): by method and
    path, after the prefix is removed; anything else reaches the router."""
    import asyncio

    from containers.gateway.app.main import EdgeMiddleware
    from containers.gateway.app.routers import openai

    assert set(openai.FAST_ROUTES) == {("GET" if k is openai.GET else "POST", p) for p, _, k, *_ in openai.ROUTES}
    seen: list[str] = []

    async def router(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        seen.append("router " + scope["path"])

    async def chat(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        seen.append("chat " + scope["path"])

    edge = EdgeMiddleware(router, 1000, "/prod", fast={("POST", "/v1/chat/completions"): chat})
    for method, path in (("POST", "/prod/v1/chat/completions"), ("POST", "/v1/chat/completions"), ("GET", "/v1/chat/completions"), ("POST", "/v1/chat")):
        asyncio.run(edge({"type": "http", "method": method, "path": path, "raw_path": path.encode(), "headers": []}, None, None))
    assert seen == ["chat /v1/chat/completions", "chat /v1/chat/completions", "router /v1/chat/completions", "router /v1/chat"]
