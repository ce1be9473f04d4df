"""The control target of the GPU benchmark: a plain aiohttp pass-through, nothing else.

aiohttp's web server in front, aiohttp's client behind (``TCPConnector(limit=0)``, so no pool cap
of its own; idle connections kept 4 s, below vLLM's 5 s keep-alive, as the gateway does: with
aiohttp's default 15 s the hop reuses connections vLLM has closed and answers 500, as 11 requests of
the 2026-12-04 run did), request body and response bytes relayed as they come. No auth, validation, metrics or
logging: whatever TTFT tail or throughput loss the gateway shows beyond this hop in the same rounds
is the gateway's own.

    python3 bench/gpu/aiohttp_hop.py --upstream http://127.0.0.1:8000 --port 8090
"""

from __future__ import annotations

import argparse

import aiohttp
from aiohttp import web

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


def make_app(upstream: str) -> web.Application:
    app = web.Application(client_max_size=16 << 20)

    async def start(app: web.Application) -> None:
        app["session"] = aiohttp.ClientSession(
            upstream, connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=4), timeout=aiohttp.ClientTimeout(total=None, sock_read=600)
        )

    async def stop(app: web.Application) -> None:
        await app["session"].close()

    async def relay(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with app["session"].request(request.method, request.rel_url, data=body, headers=headers) as up:
            out = web.StreamResponse(
                status=up.status, headers={k: v for k, v in up.headers.items() if k.lower() not in _HOP_BY_HOP}
            )
            await out.prepare(request)
            async for data in up.content.iter_any():
                await out.write(data)
            await out.write_eof()
            return out

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_route("*", "/{tail:.*}", relay)
    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", default="http://127.0.0.1:8000")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8090)
    a = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(make_app(a.upstream), host=a.host, port=a.port, access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    main()
