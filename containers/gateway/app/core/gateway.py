"""The gateway service object: created once per worker in the lifespan, holding the
upstream pools, backend monitor, auth keys, per-key limits, drain state and metrics.
Routes reach it through :func:`app.dependencies.get_gateway`."""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal
import time

from typing import TYPE_CHECKING

from . import contract
from .affinity import build_affinity
from .config import Settings
from .errors import GatewayError
from .observability import Observability, RequestRecord
from .tenants import TenantNames, TokenLimiter
from .upstream import BackendMonitor, Upstreams

if TYPE_CHECKING:
    from .proxy import ProxyCall

log = logging.getLogger("gateway")


class Gateway:
    def __init__(self, settings: Settings, upstreams: Upstreams | None = None) -> None:
        self.s = settings
        self.upstreams = upstreams or Upstreams.from_settings(settings)
        self.monitor = BackendMonitor(settings, self.upstreams)
        self.obs = Observability(settings)
        self.monitor.on_poll = lambda st: setattr(self.obs, "queue_depth", st.queue_depth)
        self.draining = False
        self._keys = [(kid, k.get_secret_value().encode()) for kid, k in settings.api_keys.items()]
        self._per_key: dict[str, int] = {}
        self._drain_task: asyncio.Task[None] | None = None
        self.affinity = build_affinity(settings, self.upstreams)
        self.calls: set[ProxyCall] = set()  # upstream calls in progress (shutdown ends them)
        self.tenants = TenantNames(settings)
        self.limits = TokenLimiter(settings)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.monitor.poll()
        self.monitor.start()
        if self.affinity is not None:
            await self.affinity.start()
        await self.tenants.start()

    async def stop(self) -> None:
        if self.affinity is not None:
            await self.affinity.stop()
        await self.monitor.stop()
        await self.tenants.stop()
        await self.upstreams.close()
        self.limits.close()

    def install_sigterm(self) -> None:
        """SIGTERM: readiness turns 503 at once, in-flight requests get up to the drain
        timeout to finish, then uvicorn is told to exit."""
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self.begin_drain)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (tests)
            pass

    def begin_drain(self) -> None:
        if self.draining:
            return
        self.draining = True
        log.warning({"event": "draining", "in_flight": self.obs.in_flight, "timeout_s": self.s.drain_timeout_s})
        self._drain_task = asyncio.get_running_loop().create_task(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        deadline = time.monotonic() + self.s.drain_timeout_s
        while self.obs.in_flight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        # Deadline: end what is still running ourselves, each with an error its client sees (an SSE
        # error event for a stream), so uvicorn finds nothing to cancel and the process exits well
        # inside the task's stop_timeout (contract.SHUTDOWN_TAIL_S).
        cut = list(self.calls)
        for call in cut:
            call.abort()
        end = time.monotonic() + contract.ABORT_GRACE_S
        while self.calls and time.monotonic() < end:
            await asyncio.sleep(0.02)
        log.warning({"event": "drained", "in_flight_left": self.obs.in_flight, "cut_at_deadline": len(cut)})
        server = getattr(signal.getsignal(signal.SIGINT), "__self__", None)  # uvicorn's Server
        if server is not None and hasattr(server, "should_exit"):
            server.should_exit = True
        else:  # not under uvicorn's signal handling: plain exit
            signal.raise_signal(signal.SIGINT)

    # ------------------------------------------------------------------ readiness
    def readiness(self) -> tuple[bool, str]:
        if self.draining:
            return False, "draining: the gateway is shutting down"
        st = self.monitor.state
        breaker = self.upstreams.primary.breaker
        if st.healthy and breaker.state == "closed":
            return True, "ok"
        # The primary cannot take requests: its backend is down, or its circuit is open (then
        # requests get 503 even though the backend's /health may answer).
        reason = st.reason if not st.healthy else f"the circuit breaker for the model backend is {breaker.state}"
        if self.upstreams.fallback is not None and self.upstreams.fallback.breaker.state == "closed":
            return True, f"degraded: primary {reason}; serving from the fallback"
        return False, reason

    # ------------------------------------------------------------------ auth and limits
    def identify(self, authorization: bytes | None, x_api_key: bytes | None, tenant_header: bytes | None) -> tuple[str, str]:
        """(key id, tenant). The tenant is the API Gateway key id the front door passes in
        ``contract.TENANT_HEADER`` (its name where known), trusted only on a request that carries
        the front-door key; any other caller is its own tenant (its key id)."""
        key_id = self.authenticate(authorization, x_api_key)
        if tenant_header and self._keys and key_id == self.s.frontdoor_key_id and len(tenant_header) <= 128:
            api_key_id = tenant_header.decode("latin-1").strip()
            if api_key_id.isprintable() and api_key_id:
                return key_id, self.tenants.name(api_key_id)
        return key_id, key_id

    def finish(self, rec: RequestRecord) -> None:
        """Every request ends here once: charge its tokens to its tenant, then log it."""
        if rec.tenant is not None and (rec.prompt_tokens or rec.completion_tokens):
            self.limits.charge(rec.tenant, (rec.prompt_tokens or 0) + (rec.completion_tokens or 0))
        self.obs.finish(rec)

    def authenticate(self, authorization: bytes | None, x_api_key: bytes | None = None) -> str:
        if not self._keys:
            return "anonymous"
        presented = None
        if authorization and authorization[:7].lower() == b"bearer ":
            presented = authorization[7:].strip()
        elif x_api_key:
            presented = x_api_key.strip()
        if not presented:
            raise GatewayError(
                401,
                "missing API key: send it as 'Authorization: Bearer <key>'",
                param="authorization",
                code="missing_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        found = None
        for kid, key in self._keys:  # compare against every key: no early exit
            if hmac.compare_digest(presented, key) and found is None:
                found = kid
        if found is None:
            raise GatewayError(
                401, "invalid API key", param="authorization", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}
            )
        return found

    def admit(self) -> None:
        """Reject new work while draining or while the backend queue is too deep."""
        if self.draining:
            raise GatewayError(
                503, "the gateway is draining for shutdown; retry on another instance", code="draining",
                headers={"Retry-After": str(self.s.retry_after_s)},
            )
        limit = self.s.max_queue_depth
        if limit and self.monitor.state.queue_depth > limit:
            raise GatewayError(
                503,
                f"overloaded: the model backend has {self.monitor.state.queue_depth} requests waiting "
                f"(limit {limit}); retry later",
                code="overloaded",
                headers={"Retry-After": str(self.s.retry_after_s)},
            )

    def acquire(self, key_id: str) -> bool:
        """Take a per-key concurrency slot (only when keys are configured)."""
        limit = self.s.max_concurrency_per_key
        if not limit or not self._keys:
            return False
        n = self._per_key.get(key_id, 0)
        if n >= limit:
            raise GatewayError(
                429,
                f"too many concurrent requests for API key '{key_id}' (limit {limit})",
                code="concurrency_limit_exceeded",
                headers={"Retry-After": str(self.s.retry_after_s)},
            )
        self._per_key[key_id] = n + 1
        return True

    def release(self, key_id: str) -> None:
        n = self._per_key.get(key_id, 0) - 1
        if n <= 0:
            self._per_key.pop(key_id, None)
        else:
            self._per_key[key_id] = n

    def known_models(self) -> frozenset[str]:
        return self.monitor.state.models
