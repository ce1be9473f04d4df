"""Upstream connections: connection pools (:mod:`.httpclient`), one circuit breaker per upstream, the single
retry layer (connection errors only, before the first byte), the fallback, and the
backend monitor that polls vLLM's health, queue depth and served models."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field


from .config import Settings
from .errors import GatewayError
from .httpclient import ConnectFailed, Disconnected, Pool, ReadTimeout, Response, UpstreamError

log = logging.getLogger("gateway")

# Errors that mean "the upstream never answered": safe to retry once.
CONNECT_ERRORS = (ConnectFailed, ConnectionResetError)


class CircuitBreaker:
    """Closed -> open after ``threshold`` consecutive failures -> half-open after
    ``reset_s`` -> closed on success, open again on failure.

    Half-open lets one trial request through at a time, and the backend monitor's
    ``/health`` probe is a trial too (:meth:`probe_ok`): the circuit closes when the
    backend is healthy again even if no client request arrives (the ALB sends none to a
    target whose ``/health`` is 503) and even while a slow trial request is still running.
    A trial whose client went away is released without a verdict (:meth:`abandon`), so an
    abandoned trial cannot hold the circuit open."""

    def __init__(self, threshold: int, reset_s: float) -> None:
        self.threshold = threshold
        self.reset_s = reset_s
        self.failures = 0
        self.opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if time.monotonic() - self.opened_at >= self.reset_s:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        if self.opened_at is None:
            return True
        if time.monotonic() - self.opened_at < self.reset_s or self._trial_in_flight:
            return False
        self._trial_in_flight = True  # half-open: one trial request at a time
        return True

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._trial_in_flight = False

    def failure(self) -> None:
        self.failures += 1
        self._trial_in_flight = False
        if self.opened_at is not None or self.failures >= self.threshold:
            self.opened_at = time.monotonic()

    def abandon(self) -> None:
        """The trial request ended without an answer (its client left): no verdict."""
        self._trial_in_flight = False

    def probe_ok(self) -> None:
        """The backend's own health check passed: close the circuit once it is half-open."""
        if self.state == "half-open":
            self.success()


@dataclass(eq=False)
class Upstream:
    name: str
    base_url: str
    pool: Pool
    breaker: CircuitBreaker
    auth_header: str | None = None
    model_override: str | None = None

    async def close(self) -> None:
        await self.pool.close()


def make_pool(s: Settings, base_url: str) -> Pool:
    return Pool(
        base_url,
        connect_timeout_s=s.connect_timeout_s,
        read_timeout_s=s.read_timeout_s,
        keepalive_s=s.upstream_keepalive_s,
        max_idle=s.upstream_pool_size,
    )


@dataclass(eq=False)
class Upstreams:
    primary: Upstream
    fallback: Upstream | None = None

    @classmethod
    def from_settings(cls, s: Settings) -> "Upstreams":
        primary = Upstream(
            "primary", s.upstream_url, make_pool(s, s.upstream_url), CircuitBreaker(s.circuit_failure_threshold, s.circuit_reset_s)
        )
        fallback = None
        if s.fallback_url:
            key = s.fallback_api_key.get_secret_value() if s.fallback_api_key else None
            fallback = Upstream(
                "fallback",
                s.fallback_url,
                make_pool(s, s.fallback_url),
                CircuitBreaker(s.circuit_failure_threshold, s.circuit_reset_s),
                auth_header=f"Bearer {key}" if key else None,
                model_override=s.fallback_model,
            )
        return cls(primary, fallback)

    async def close(self) -> None:
        await self.primary.close()
        if self.fallback:
            await self.fallback.close()

    def choose(self) -> Upstream:
        """The primary while its circuit lets requests through, else the fallback."""
        if self.primary.breaker.allow():
            return self.primary
        if self.fallback is not None and self.fallback.breaker.allow():
            return self.fallback
        raise GatewayError(
            503,
            "backend unavailable: the circuit breaker for the model backend is open after repeated "
            "connection failures",
            code="backend_circuit_open",
            headers={"Retry-After": str(max(1, int(self.primary.breaker.reset_s)))},
        )

    async def open(
        self,
        method: str,
        path: str,
        body: bytes | None | Callable[[Upstream], bytes | None],
        headers: dict[str, str],
    ) -> tuple[Upstream, Response]:
        """Send the request and return once the response headers are in.

        The one retry layer of the gateway: a connection error before any byte came
        back is retried once (a stale pooled connection is the usual cause); after
        that the upstream's breaker counts a failure and, if it is now open and a
        fallback exists, the fallback gets the request."""
        up = self.choose()
        trial = up.breaker.opened_at is not None  # this call holds the half-open trial
        tried_fallback = up is self.fallback
        attempt = 0
        build = body if callable(body) else None
        while True:
            try:
                data = build(up) if build is not None else body
                h = headers
                if up.auth_header:
                    h = {**headers, "Authorization": up.auth_header}
                resp = await up.pool.request(method, path, data, h)
            except asyncio.CancelledError:
                if trial:
                    up.breaker.abandon()
                raise
            except CONNECT_ERRORS as e:
                attempt += 1
                if attempt == 1:
                    continue
                up.breaker.failure()
                if not tried_fallback and self.fallback is not None and self.primary.breaker.state != "closed":
                    up, tried_fallback, attempt = self.fallback, True, 0
                    if self.fallback.breaker.allow():
                        trial = up.breaker.opened_at is not None
                        continue
                raise GatewayError(
                    502,
                    f"backend unavailable: could not connect to the model backend ({type(e).__name__})",
                    code="backend_unreachable",
                ) from e
            except ReadTimeout as e:
                up.breaker.failure()
                raise GatewayError(504, "backend timeout: the model backend did not answer in time", code="backend_timeout") from e
            except (Disconnected, UpstreamError, OSError) as e:
                up.breaker.failure()
                raise GatewayError(502, f"backend error: {type(e).__name__}: {e}", code="backend_error") from e
            if resp.status >= 500:
                up.breaker.failure()
            else:
                up.breaker.success()
            return up, resp


_WAITING = re.compile(rb"^vllm:num_requests_waiting(?:\{[^}]*\})? ([0-9.eE+-]+)", re.M)
_RUNNING = re.compile(rb"^vllm:num_requests_running(?:\{[^}]*\})? ([0-9.eE+-]+)", re.M)


@dataclass(eq=False)
class BackendState:
    healthy: bool = False
    reason: str = "backend not checked yet"
    queue_depth: int = 0
    running: int = 0
    models: frozenset[str] = field(default_factory=frozenset)
    checked_at: float = 0.0


class BackendMonitor:
    """Polls the primary's /health, /metrics and /v1/models in the background."""

    def __init__(self, s: Settings, upstreams: Upstreams) -> None:
        self.s = s
        self.upstreams = upstreams
        self.state = BackendState()
        if s.served_model_name:
            self.state.models = frozenset({s.served_model_name})
        self._task: asyncio.Task[None] | None = None
        self.on_poll: Callable[[BackendState], None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def _run(self) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(self.s.health_poll_interval_s)

    async def poll(self) -> None:
        up = self.upstreams.primary
        st = self.state
        timeout = max(2.0, self.s.health_poll_interval_s)

        async def get(path: str) -> tuple[int, bytes]:
            r = await up.pool.request("GET", path, None, {})
            try:
                return r.status, await r.read()
            finally:
                r.release()

        try:
            status, _ = await asyncio.wait_for(get("/health"), timeout)
            st.healthy = status == 200
            st.reason = "ok" if st.healthy else f"backend /health returned {status}"
            if st.healthy:
                up.breaker.probe_ok()
                _, text = await asyncio.wait_for(get("/metrics"), timeout)
                st.queue_depth = int(sum(float(m) for m in _WAITING.findall(text)))
                st.running = int(sum(float(m) for m in _RUNNING.findall(text)))
                if not self.s.served_model_name:
                    status, raw = await asyncio.wait_for(get("/v1/models"), timeout)
                    if status == 200:
                        st.models = frozenset(m["id"] for m in json.loads(raw).get("data", []))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure means "not healthy"
            st.healthy = False
            st.reason = f"backend unreachable: {type(e).__name__}"
        st.checked_at = time.monotonic()
        if self.on_poll is not None:
            self.on_poll(st)
