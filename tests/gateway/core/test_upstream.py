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
            self._serve(c)

    def _serve(self, c: socket.socket) -> None:
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


class Silent(CountingCloser):
    """Accepts TCP connections, reads the request and never answers (a backend mid-prefill)."""

    def __init__(self) -> None:
        self.conns: list[socket.socket] = []
        super().__init__()

    def _serve(self, c: socket.socket) -> None:
        self.conns.append(c)

    def close(self) -> None:
        super().close()
        for c in self.conns:
            c.close()


def test_a_cancelled_half_open_trial_releases_the_circuit() -> None:
    """Issue 13 defect 1: the trial's client left before the backend answered; before the fix
    the trial stayed "in flight" for ever and every later request got 503."""
    srv = Silent()
    try:
        s = Settings(upstream_url=f"http://127.0.0.1:{srv.port}", circuit_failure_threshold=1, circuit_reset_s=0.2)

        async def go() -> tuple[bool, str]:
            ups = Upstreams.from_settings(s)
            try:
                ups.primary.breaker.failure()  # open
                await asyncio.sleep(0.25)  # half-open: the next request is the trial
                trial = asyncio.ensure_future(ups.open("POST", "/v1/chat/completions", b"{}", {}))
                await asyncio.sleep(0.2)
                assert not trial.done()
                trial.cancel()  # the client went away
                with pytest.raises(asyncio.CancelledError):
                    await trial
                return ups.primary.breaker.allow(), ups.primary.breaker.state
            finally:
                await ups.close()

        allowed, state = asyncio.run(go())
    finally:
        srv.close()
    assert allowed and state == "half-open"


def test_the_health_probe_closes_a_half_open_circuit(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(up_mod.time, "monotonic", clock)
    b = CircuitBreaker(threshold=1, reset_s=5)
    b.failure()
    b.probe_ok()
    assert b.state == "open"  # a healthy probe does not cut the open period short
    clock.t += 5
    assert b.allow()  # a trial request is out (and may run for minutes)
    b.probe_ok()
    assert b.state == "closed" and b.allow() and b.allow()


MSG = [{"role": "user", "content": "hi"}]


def test_circuit_recovers_after_an_abandoned_trial_and_health_tells_the_truth(start_fake_upstream, start_gateway) -> None:  # type: ignore[no-untyped-def]
    """Issue 13's reproduction: a backend answering after 3 s restarts; the half-open trial's client
    gives up after 0.5 s. The circuit must close again, and while it is open /health must say 503."""
    import time

    from tests.gateway.helpers import request, wait_until

    fake = start_fake_upstream("--ttft-ms", "3000", "--chunks", "2")
    gw = start_gateway(fake.base_url, circuit_reset_s=2, circuit_failure_threshold=5)
    body = {"model": "fake", "messages": MSG, "max_tokens": 2}
    fake.kill()
    statuses = [request(gw.base_url, "POST", "/v1/chat/completions", body)[0] for _ in range(6)]
    assert statuses[:5] == [502] * 5 and statuses[5] == 503
    assert request(gw.base_url, "GET", "/health")[0] == 503
    start_fake_upstream("--ttft-ms", "3000", "--chunks", "2", port=fake.port)
    time.sleep(2.2)  # half-open now: the next request is the trial
    with pytest.raises(OSError):  # the client gives up before the backend answers
        request(gw.base_url, "POST", "/v1/chat/completions", body, timeout=0.5)
    time.sleep(4)
    assert wait_until(lambda: request(gw.base_url, "GET", "/health")[0] == 200, timeout=5)
    st, _, out = request(gw.base_url, "POST", "/v1/chat/completions", body, timeout=10)
    assert st == 200, out


def test_a_slow_non_stream_trial_does_not_503_everyone_else(start_fake_upstream, start_gateway) -> None:  # type: ignore[no-untyped-def]
    import threading as th
    import time

    from tests.gateway.helpers import request

    fake = start_fake_upstream("--ttft-ms", "3000", "--chunks", "2")
    gw = start_gateway(fake.base_url, circuit_reset_s=1, circuit_failure_threshold=1)
    body = {"model": "fake", "messages": MSG, "max_tokens": 2}
    fake.kill()
    assert request(gw.base_url, "POST", "/v1/chat/completions", body)[0] == 502
    start_fake_upstream("--ttft-ms", "3000", "--chunks", "2", port=fake.port)
    time.sleep(1.2)
    results: list[int] = []
    trial = th.Thread(target=lambda: results.append(request(gw.base_url, "POST", "/v1/chat/completions", body, timeout=10)[0]))
    trial.start()
    time.sleep(1.0)  # the trial is waiting for its 3 s answer
    st, _, out = request(gw.base_url, "POST", "/v1/chat/completions", body, timeout=10)
    trial.join()
    assert st == 200 and results == [200], (st, out, results)
