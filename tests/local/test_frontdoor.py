"""The front-door stand-in against a real backend over loopback (an aiohttp echo server): each
documented API Gateway behaviour it imitates, and the mappings it must not ignore."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tools.local.frontdoor import RUNNER_OPTIONS, MappingError, TokenBucket, build_app, integration_request

KEY = "tenant-key"


async def _echo(request: web.Request) -> web.StreamResponse:
    """Answers with what it received; /slow waits 2 s; /stream sends 3 chunks 0.4 s apart."""
    if request.path.endswith("/slow"):
        await asyncio.sleep(2)
    if request.path.endswith("/stream"):
        out = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await out.prepare(request)
        for i in range(3):
            await out.write(f"data: {i}\n\n".encode())
            await asyncio.sleep(0.4)
        await out.write_eof()
        return out
    body = await request.read()
    return web.json_response({"path": request.path_qs, "headers": dict(request.headers), "body_bytes": len(body)})


def method(path: str, *, streaming: bool = False, params: dict[str, str] | None = None, timeout_ms: int = 29_000, uri_path: str | None = None) -> dict[str, Any]:
    return {
        "path": path, "http_method": "POST", "api_key_required": True, "integration_http_method": "POST",
        "uri_path": uri_path or path, "request_parameters": params or {}, "timeout_ms": timeout_ms, "streaming": streaming,
    }  # fmt: skip


def spec(backend: str, methods: list[dict[str, Any]], *, rate: float = 100, burst: int = 100) -> dict[str, Any]:
    return {
        "stage": "dev", "methods": methods, "backend": backend, "port": 0,
        "plans": {"tenant": {"rate": rate, "burst": burst, "quota": None}},
        "keys": [{"id": "key-id-1", "value": KEY, "plan": "tenant"}],
        "stage_rate": None, "stage_burst": None,
    }  # fmt: skip


@asynccontextmanager
async def _serve(methods: list[dict[str, Any]], **plan: Any) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    backend_app = web.Application()
    backend_app.router.add_route("*", "/{tail:.*}", _echo)
    async with TestServer(backend_app, host="127.0.0.1") as backend:
        async with TestServer(build_app(spec(str(backend.make_url("/")), methods, **plan)), host="127.0.0.1") as door:
            async with aiohttp.ClientSession() as session:
                yield str(door.make_url("/")), session


def run(methods: list[dict[str, Any]], scenario: Callable[[str, aiohttp.ClientSession], Any], **plan: Any) -> Any:
    async def main() -> Any:
        async with _serve(methods, **plan) as (url, session):
            return await scenario(url, session)

    return asyncio.run(main())


AUTH = {"integration.request.header.Authorization": "'Bearer backend-key'"}


def test_missing_or_wrong_key_is_403_forbidden_and_never_reaches_the_backend() -> None:
    async def scenario(url: str, s: aiohttp.ClientSession) -> list[tuple[int, Any]]:
        out = []
        for headers in ({}, {"x-api-key": "wrong"}, {"Authorization": f"Bearer {KEY}"}):
            async with s.post(url + "dev/v1/chat", headers=headers, json={}) as r:
                out.append((r.status, await r.json()))
        return out

    assert run([method("/v1/chat")], scenario) == [(403, {"message": "Forbidden"})] * 3


def test_unknown_path_or_method_is_403_missing_authentication_token() -> None:
    async def scenario(url: str, s: aiohttp.ClientSession) -> list[int]:
        codes = []
        for verb, path in (("POST", "dev/v1/nope"), ("GET", "dev/v1/chat"), ("POST", "v1/chat"), ("POST", "prod/v1/chat")):
            async with s.request(verb, url + path, headers={"x-api-key": KEY}) as r:
                assert await r.json() == {"message": "Missing Authentication Token"}
                codes.append(r.status)
        return codes

    assert run([method("/v1/chat")], scenario) == [403] * 4


def test_stage_is_sent_to_the_backend_unless_a_mapping_overrides_the_path() -> None:
    """AWS, "Private integrations for REST APIs in API Gateway": the stage portion is included."""

    async def scenario(url: str, s: aiohttp.ClientSession) -> list[str]:
        paths = []
        for p in ("dev/v1/chat", "dev/v1/models?x=1"):
            async with s.post(url + p, headers={"x-api-key": KEY}) as r:
                paths.append((await r.json())["path"])
        return paths

    plain = [method("/v1/chat"), method("/v1/models")]
    assert run(plain, scenario) == ["/dev/v1/chat", "/dev/v1/models?x=1"]
    overridden = [method("/v1/chat", params={"overwrite:path": "'/v1/chat'"}), method("/v1/models", params={"overwrite:path": "'v1/models'"})]
    assert run(overridden, scenario) == ["/v1/chat", "/v1/models?x=1"]


def test_header_mappings_replace_the_clients_and_map_context_variables() -> None:
    params = {**AUTH, "integration.request.header.x-llmhost-api-key-id": "context.identity.apiKeyId",
              "integration.request.header.x-stage": "context.stage", "integration.request.header.x-from-client": "method.request.header.x-tag"}  # fmt: skip

    async def scenario(url: str, s: aiohttp.ClientSession) -> dict[str, str]:
        headers = {"x-api-key": KEY, "Authorization": f"Bearer {KEY}", "x-tag": "t1"}
        async with s.post(url + "dev/v1/chat", headers=headers) as r:
            return {k.lower(): v for k, v in (await r.json())["headers"].items()}

    seen = run([method("/v1/chat", params=params)], scenario)
    assert seen["authorization"] == "Bearer backend-key"  # the client's bearer is gone
    assert seen["x-llmhost-api-key-id"] == "key-id-1" and seen["x-stage"] == "dev" and seen["x-from-client"] == "t1"
    assert seen["x-api-key"] == KEY  # HTTP proxy: other client headers pass through


def test_path_parameter_mapping_sets_the_path_without_the_stage() -> None:
    """The front door's fix (a URI of placeholders, each mapped to a static segment) is a path override."""
    m = method("/v1/chat", uri_path="/{seg0}/{seg1}", params={"integration.request.path.seg0": "'v1'", "integration.request.path.seg1": "'chat'"})

    async def scenario(url: str, s: aiohttp.ClientSession) -> str:
        async with s.post(url + "dev/v1/chat", headers={"x-api-key": KEY}) as r:
            return str((await r.json())["path"])

    assert run([m], scenario) == "/v1/chat"


def test_unknown_mapping_source_fails_at_start() -> None:
    with pytest.raises(MappingError, match="stageVariables.x"):
        build_app(spec("http://127.0.0.1:9", [method("/v1/chat", params={"integration.request.header.a": "stageVariables.x"})]))
    with pytest.raises(MappingError, match="context variable"):
        build_app(spec("http://127.0.0.1:9", [method("/v1/chat", params={"integration.request.header.a": "context.authorizer.x"})]))


def test_buffered_route_stops_at_the_integration_timeout_with_504() -> None:
    async def scenario(url: str, s: aiohttp.ClientSession) -> tuple[int, Any, float]:
        t0 = time.monotonic()
        async with s.post(url + "dev/slow", headers={"x-api-key": KEY}) as r:
            return r.status, await r.json(), time.monotonic() - t0

    status, body, seconds = run([method("/slow", timeout_ms=500)], scenario)
    assert (status, body) == (504, {"message": "Endpoint request timed out"}) and seconds < 1.5


def test_request_over_10_mb_is_413() -> None:
    async def scenario(url: str, s: aiohttp.ClientSession) -> list[int]:
        codes = []
        for size in (10 * 1024 * 1024, 10 * 1024 * 1024 + 1):
            async with s.post(url + "dev/v1/chat", headers={"x-api-key": KEY}, data=b"x" * size) as r:
                codes.append(r.status)
        return codes

    assert run([method("/v1/chat")], scenario) == [200, 413]


def test_streaming_route_passes_chunks_as_they_arrive() -> None:
    async def scenario(url: str, s: aiohttp.ClientSession) -> list[float]:
        t0 = time.monotonic()
        arrivals = []
        async with s.post(url + "dev/stream", headers={"x-api-key": KEY}) as r:
            async for _ in r.content.iter_any():
                arrivals.append(time.monotonic() - t0)
        return arrivals

    arrivals = run([method("/stream", streaming=True)], scenario)
    assert len(arrivals) >= 3 and arrivals[0] < 0.3 and arrivals[-1] > 0.7  # the first chunk came before the last was sent


class SilentStream(asyncio.Protocol):
    """A backend that answers a stream's headers, then sends nothing (a request waiting in vLLM's
    queue), and notes when its client's connection ends."""

    def __init__(self, closed: list[float]) -> None:
        self.closed = closed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if b"\r\n\r\n" in data:
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            self.transport.write(b"8\r\ndata: 0\n\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.append(time.monotonic())


def test_a_client_that_leaves_a_silent_stream_closes_the_backend_connection() -> None:
    """As ``serve`` runs it: the client's close cancels the handler, which closes the connection to the
    backend at once, though the backend has nothing to send (aiohttp would otherwise notice the client
    only at the next write, and the gateway and vLLM would keep the request)."""

    async def main() -> float:
        closed: list[float] = []
        backend = await asyncio.get_running_loop().create_server(lambda: SilentStream(closed), "127.0.0.1", 0)
        runner = web.AppRunner(build_app(spec(f"http://127.0.0.1:{backend.sockets[0].getsockname()[1]}", [method("/stream", streaming=True)])), **RUNNER_OPTIONS)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession() as s:
                async with s.post(f"http://127.0.0.1:{port}/dev/stream", headers={"x-api-key": KEY}) as r:
                    assert await r.content.readline() == b"data: 0\n"
            left = time.monotonic()  # the response was not read to its end: the connection is closed
            for _ in range(100):
                if closed:
                    break
                await asyncio.sleep(0.02)
            assert closed, "the front door kept its backend connection 2 s after the client left"
            return closed[0] - left
        finally:
            await runner.cleanup()
            backend.close()

    assert asyncio.run(main()) < 0.5


def test_usage_plan_burst_then_rate() -> None:
    """Token bucket: `burst` requests at once, then `rate` per second."""

    async def scenario(url: str, s: aiohttp.ClientSession) -> tuple[list[int], int]:
        async def one() -> int:
            async with s.post(url + "dev/v1/chat", headers={"x-api-key": KEY}) as r:
                if r.status == 429:
                    assert await r.json() == {"message": "Too Many Requests"}
                return r.status

        first = await asyncio.gather(*(one() for _ in range(8)))
        await asyncio.sleep(0.6)  # rate 2/s refills one token
        return sorted(first), await one()

    first, later = run([method("/v1/chat")], scenario, rate=2, burst=5)
    assert first.count(200) == 5 and first.count(429) == 3 and later == 200


def test_token_bucket_refills_at_the_rate_up_to_the_burst() -> None:
    b = TokenBucket(rate=10, burst=3)
    assert [b.take() for _ in range(4)] == [True, True, True, False]
    b.stamp -= 1.0  # a second later: full again, never above the burst
    assert [b.take() for _ in range(4)] == [True, True, True, False]


def test_integration_request_drops_parameters_whose_source_is_absent() -> None:
    m = method("/v1/chat", params={"integration.request.header.x-tag": "method.request.header.x-tag"})
    context = {"headers": {}, "query": {}, "path_params": {}, "context": {}}
    assert integration_request(m, "dev", context) == ("/dev/v1/chat", {})
    assert json.dumps(integration_request(m, "dev", {**context, "headers": {"x-tag": "a"}})[1]) == '{"x-tag": "a"}'
