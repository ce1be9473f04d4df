"""The smoke suite's runner against a real front door (tools/local/frontdoor.py, over loopback) with a
tight usage plan: the suite keeps to the plan, so its own checks never meet a 429."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from aiohttp import web

from tests.local.test_frontdoor import KEY, method, spec
from tools.local import smoke
from tools.local.frontdoor import RUNNER_OPTIONS, build_app
from tools.local.stack import Endpoint

RATE, BURST = 4, 4


class Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the http.server signature
        pass


@contextmanager
def front_door() -> Iterator[Endpoint]:
    """A backend that answers 200, behind the front door with one tenant (RATE/s, burst BURST)."""
    backend = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    door_spec = spec(f"http://127.0.0.1:{backend.server_address[1]}", [{**method("/v1/models"), "http_method": "GET", "integration_http_method": "GET"}], rate=RATE, burst=BURST)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(build_app(door_spec), **RUNNER_OPTIONS)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield Endpoint(
            env="dev", stage_url=f"http://127.0.0.1:{runner.addresses[0][1]}/dev/", keys={"tenant": KEY}, vllm_url="",
            served_model="m", rate_limit={"tenant": RATE}, burst_limit={"tenant": BURST},
        )  # fmt: skip
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        backend.shutdown()


def _get(ep: Endpoint) -> str:
    r = httpx.get(ep.stage_url + "v1/models", headers={"x-api-key": KEY})
    assert r.status_code == 200, f"{r.status_code} {r.text}"
    return "200"


def _three(ep: Endpoint) -> str:
    """Like ``llmhost smoke``: three requests in one check."""
    return " ".join(_get(ep) for _ in range(3))


def test_the_suite_keeps_to_the_tenants_usage_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    checks = {**{f"one_{i}": _get for i in range(6)}, "three": _three, "one_more": _get}
    monkeypatch.setattr(smoke, "CHECKS", checks)
    monkeypatch.setattr(smoke, "KEYED_REQUESTS", {"three": 3})
    with front_door() as ep:
        # Run back to back, the same checks exceed the plan: the front door answers 429 ...
        unpaced = []
        for check in checks.values():
            try:
                check(ep)
            except AssertionError as exc:
                unpaced.append(str(exc))
        assert unpaced and all(e.startswith("429") for e in unpaced), unpaced
    with front_door() as ep:
        # ... which the suite's runner never meets.
        outcomes = list(smoke.run(ep))
    assert [o.name for o in outcomes] == list(checks)
    assert all(o.ok for o in outcomes), [o.detail for o in outcomes if not o.ok]
