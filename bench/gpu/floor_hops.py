"""Floors for the one-token calls: the least a hop in front of vLLM can add on this host.

``tcp``: a byte relay. One upstream connection per client connection, bytes copied as they come,
no HTTP parsing: what the kernel and two extra wake-ups per call cost, and nothing else.

``raw``: the least an HTTP server in Python can be: an asyncio protocol around httptools' parser (as
uvicorn's), no ASGI, no flow control, no timers, one task per request, the answer written in one
piece, with the gateway's own client. What a hot path without uvicorn could reach at best.

``asgi``: uvicorn exactly as the gateway runs it (uvloop, the gateway's ``core/httpserver`` protocol,
one worker, no access log) around a bare ASGI app that sends the body upstream with the gateway's
own client (``core/httpclient.Pool``) and answers with what came back. No auth, validation,
metrics, logging or FastAPI: the gateway's added latency beyond this is its own work.

``granian``: the same bare ASGI app under granian (a maintained server with its HTTP layer in Rust,
one worker process, uvloop, HTTP/1.1 only): whether a faster server exists off the shelf.

``gateway-raw`` is no floor: the gateway's own OpenAI endpoints (all their work) behind the bare
httptools server instead of uvicorn and FastAPI's outer layers, started from the gateway's
settings: what a hot path of our own would give the gateway as it is (issue 13, option 1b).

    python3 bench/gpu/floor_hops.py tcp --upstream http://127.0.0.1:8000 --port 18091
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httptools
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "containers" / "gateway"))


class _Pipe(asyncio.Protocol):
    """One side of the relay: what arrives is written to the peer's transport."""

    def __init__(self) -> None:
        self.peer: asyncio.Transport | None = None
        self.pending: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            self.pending.append(data)  # the client spoke before the upstream connection was up
        else:
            self.peer.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None:
            self.peer.close()


async def tcp_relay(upstream: str, port: int) -> None:
    u = urlsplit(upstream)
    loop = asyncio.get_running_loop()

    class Client(_Pipe):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            loop.create_task(self.open())

        async def open(self) -> None:
            _, up = await loop.create_connection(_Pipe, u.hostname, u.port)
            assert self.transport is not None and up.transport is not None
            up.peer, self.peer = self.transport, up.transport
            for b in self.pending:
                up.transport.write(b)
            self.pending.clear()

    server = await loop.create_server(Client, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def _pool(upstream: str) -> Any:
    from app.core.httpclient import Pool  # the gateway's client

    return Pool(upstream, connect_timeout_s=5, read_timeout_s=600, keepalive_s=4)


class _Bare(asyncio.Protocol):
    """The bare server's connection: httptools' parser fed straight from the socket; a subclass
    answers each complete request in ``on_message_complete``."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)


async def raw_server(upstream: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    pool = _pool(upstream)

    class Raw(_Bare):
        def on_message_complete(self) -> None:
            method = self.parser.get_method().decode()
            body, self.body = b"".join(self.body), []
            loop.create_task(self.answer(method, self.url.decode(), body))

        async def answer(self, method: str, path: str, body: bytes) -> None:
            r = await pool.request(method, path, body if method == "POST" else None, {"Content-Type": "application/json"})
            data = await r.read()
            r.release()
            ctype = r.headers.get("content-type", "application/json").encode()
            head = b"HTTP/1.1 %d OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n" % (r.status, ctype, len(data))
            assert self.transport is not None
            self.transport.write(head + data)

    server = await loop.create_server(Raw, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


async def gateway_raw_server(port: int) -> None:
    """The gateway's own OpenAI endpoints (``app.routers.openai``: auth, admission, validation, the
    proxy, usage, the log line and metrics), started with the gateway's lifespan and settings
    (``GATEWAY_*``), behind the bare httptools server instead of uvicorn and FastAPI's outer layers:
    what a hot path of our own would give the gateway as it is. Other paths (the bench's /health)
    go through the FastAPI app. A prototype for measuring, not a server: no limits on heads or
    bodies, no timers, no pipelining, no disconnect watch, no drain."""
    from http import HTTPStatus

    from app.main import create_app
    from app.routers.openai import FAST_ROUTES

    loop = asyncio.get_running_loop()
    app = create_app()

    class GatewayRaw(_Bare):
        def __init__(self) -> None:
            super().__init__()
            self.headers: list[tuple[bytes, bytes]] = []

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name.lower(), value))

        def on_message_complete(self) -> None:
            method = self.parser.get_method().decode()
            headers, self.headers = self.headers, []
            body, self.body = b"".join(self.body), []
            loop.create_task(self.answer(method, self.url.decode(), headers, body))

        async def answer(self, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
            transport = self.transport
            assert transport is not None
            pending = [{"type": "http.request", "body": body, "more_body": False}]
            head: list[bytes] = []
            chunked = False

            async def receive() -> dict[str, Any]:
                if pending:
                    return pending.pop()
                return await loop.create_future()  # never done: a client's disconnect is not watched here

            async def send(msg: dict[str, Any]) -> None:
                nonlocal chunked
                if msg["type"] == "http.response.start":
                    hs = msg.get("headers", [])
                    chunked = not any(k.lower() == b"content-length" for k, _ in hs)
                    st = msg["status"]
                    head.append(b"HTTP/1.1 %d %s\r\n" % (st, HTTPStatus(st).phrase.encode()))
                    head.extend(b"%s: %s\r\n" % (k, v) for k, v in hs)
                    if chunked:
                        transport.write(b"".join(head) + b"transfer-encoding: chunked\r\n\r\n")
                    return
                data = msg.get("body", b"")
                if not chunked:
                    transport.write(b"".join(head) + b"\r\n" + data)
                    return
                if data:
                    transport.write(b"%x\r\n%s\r\n" % (len(data), data))
                if not msg.get("more_body", False):
                    transport.write(b"0\r\n\r\n")

            endpoint = FAST_ROUTES.get((method, path))
            if endpoint is not None:  # the hot routes, as the gateway's edge middleware calls them
                await endpoint({"type": "http", "method": method, "path": path, "headers": headers, "app": app}, receive, send)
                return
            path, _, query = path.partition("?")  # anything else (/health) through the FastAPI app
            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "http",
                     "method": method, "path": path, "raw_path": path.encode(), "query_string": query.encode(),
                     "root_path": "", "headers": headers, "server": ("127.0.0.1", port), "client": ("127.0.0.1", 0)}  # fmt: skip
            await app(scope, receive, send)

    async with app.router.lifespan_context(app):
        server = await loop.create_server(GatewayRaw, "127.0.0.1", port, backlog=4096)
        async with server:
            await server.serve_forever()


def asgi_app(upstream: str) -> Any:
    state: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()  # lifespan.startup: the pool needs the running loop
            state["pool"] = _pool(upstream)
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            await state["pool"].close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        method = scope["method"]
        r = await state["pool"].request(method, scope["path"], body if method == "POST" else None, {"Content-Type": "application/json"})
        data = await r.read()
        r.release()
        ctype = r.headers.get("content-type", "application/json").encode()
        await send({"type": "http.response.start", "status": r.status,
                    "headers": [(b"content-type", ctype), (b"content-length", str(len(data)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": data})

    return app


def granian_app() -> Any:
    """The app factory granian's worker process loads by name (it takes no callable from this process)."""
    return asgi_app(os.environ["FLOOR_UPSTREAM"])


def serve_granian(upstream: str, port: int) -> None:
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.log import LogLevels
    from granian.server import Server

    os.environ["FLOOR_UPSTREAM"] = upstream
    Server("floor_hops:granian_app", address="127.0.0.1", port=port, interface=Interfaces.ASGI, workers=1,
           loop=Loops.uvloop, http=HTTPModes.http1, websockets=False, factory=True, log_access=False,
           log_level=LogLevels.warning, working_dir=Path(__file__).parent, backlog=4096).serve()  # fmt: skip


def serve_asgi(upstream: str, port: int) -> None:
    import uvicorn

    from app.core.httpserver import HttpProtocol

    uvicorn.run(asgi_app(upstream), host="127.0.0.1", port=port, loop="uvloop", http=HttpProtocol,
                lifespan="on", access_log=False, log_level="warning", server_header=False, date_header=False)  # fmt: skip


def serve_gateway_raw(_upstream: str, port: int) -> None:
    """Upstream and port come from GATEWAY_* (bench.gateway_env), as for the gateway."""
    with contextlib.suppress(KeyboardInterrupt):  # how the gateway's drain ends a process not under uvicorn
        uvloop.run(gateway_raw_server(port))


SERVE = {
    "tcp": lambda upstream, port: uvloop.run(tcp_relay(upstream, port)),
    "raw": lambda upstream, port: uvloop.run(raw_server(upstream, port)),
    "asgi": serve_asgi,
    "granian": serve_granian,
    "gateway-raw": serve_gateway_raw,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=SERVE)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    SERVE[a.kind](a.upstream, a.port)


if __name__ == "__main__":
    main()
