"""Circuit breaker states and the single retry layer (connection errors only, before
the first byte), against real sockets on loopback."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from containers.gateway.app.core import upstream as up_mod
from containers.gateway.app.core.config import Settings
from containers.gateway.app.core.errors import GatewayError
from containers.gateway.app.core.upstream import CircuitBreaker, Upstreams


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_breaker_opens_half_opens_and_closes(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(up_mod.time, "monotonic", clock)
    b = CircuitBreaker(threshold=3, reset_s=10)
    for _ in range(2):
        b.failure()
    assert b.state == "closed" and b.allow()
    b.failure()
    assert b.state == "open" and not b.allow()
    clock.t += 10
    assert b.state == "half-open"
    assert b.allow()  # the one trial request
    assert not b.allow()  # no second trial while the first is out
    b.failure()  # trial failed: open again for a full period
    assert b.state == "open" and not b.allow()
    clock.t += 10
    assert b.allow()
    b.success()
    assert b.state == "closed" and b.allow() and b.failures == 0


class CountingCloser:
    """Accepts TCP connections and closes them at once: every request sees a
    connection error before any byte (what a stale keep-alive connection looks like)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepts = 0
        self._stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.accepts += 1
            c.recv(65536)
            c.close()

    def close(self) -> None:
        self._stop = True
        self.t.join()
        self.sock.close()


def test_exactly_one_retry_on_connection_errors_then_502_then_circuit_open() -> None:
    srv = CountingCloser()
    try:
        s = Settings(upstream_url=f"http://127.0.0.1:{srv.port}", circuit_failure_threshold=2, circuit_reset_s=60)

        async def go() -> list[GatewayError]:
            ups = Upstreams.from_settings(s)
            errs = []
            try:
                for _ in range(3):
                    try:
                        await ups.open("POST", "/v1/completions", b"{}", {})
                    except GatewayError as e:
                        errs.append(e)
            finally:
                await ups.close()
            return errs

        errs = asyncio.run(go())
    finally:
        srv.close()
    assert [e.status for e in errs] == [502, 502, 503]
    assert errs[0].code == "backend_unreachable" and "backend" in errs[0].message
    assert errs[2].code == "backend_circuit_open"
    assert srv.accepts == 4  # two requests x (try + one retry); the third never left the gateway


def test_fallback_used_while_primary_circuit_is_open(start_fake_upstream) -> None:  # type: ignore[no-untyped-def]
    fake = start_fake_upstream()
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        dead = sk.getsockname()[1]
    s = Settings(
        upstream_url=f"http://127.0.0.1:{dead}", fallback_url=fake.base_url + "/v1", fallback_model="fake",
        circuit_failure_threshold=1, circuit_reset_s=60,
    )

    async def go() -> list[str]:
        ups = Upstreams.from_settings(s)
        used = []
        try:
            for _ in range(3):
                u, r = await ups.open("GET", "/v1/models", None, {})
                used.append(u.name)
                r.release()
        finally:
            await ups.close()
        return used

    assert asyncio.run(go()) == ["fallback", "fallback", "fallback"]
