"""Tenants: names for the front door's API key ids, and per-tenant token limits.

Tenants are API Gateway keys. The front door passes the caller's key id
(``contract.TENANT_HEADER``); :class:`TenantNames` turns it into the tenant's name from
``GATEWAY_TENANT_NAMES`` (JSON ``{api key id: name}``) and, when
``GATEWAY_TENANT_NAMES_PARAMETER`` names an SSM parameter holding the same JSON (the API
stack writes ``/llm-hosting/<env>/tenant-api-keys``), from that parameter, re-read every
``GATEWAY_TENANT_NAMES_REFRESH_S``. An id without a name stays the tenant's id.

:class:`TokenLimiter` enforces ``GATEWAY_TENANT_TOKENS_PER_MINUTE`` (JSON ``{tenant: tokens
per minute}``): a token bucket per tenant (capacity one minute of tokens, refilled
continuously) that a request may enter while its balance is positive; the request's prompt
and completion tokens are charged when it ends (a long generation can take the balance
below zero, and the tenant then waits until it refills). The buckets live in one small
memory-mapped file under ``GATEWAY_STATE_DIR`` (``/dev/shm``, a tmpfs also with a read-only
root filesystem) guarded by ``flock``, so all uvicorn workers of a task share them. Each task
has its own: with N tasks a tenant can use up to N times its limit (per-task limits).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import math
import mmap
import os
import struct
import tempfile
import time
from typing import Any

from .config import Settings
from .errors import GatewayError

log = logging.getLogger("gateway")

RUN_ID_ENV = "LLMHOST_GATEWAY_RUN_ID"
"""Set by ``app.server`` before the workers start: names the state file all of them share."""

_SLOT = struct.Struct("dd")  # balance (tokens), last refill (time.monotonic, system-wide on Linux)


def state_file(settings: Settings) -> str:
    directory = settings.state_dir if os.path.isdir(settings.state_dir) else tempfile.gettempdir()
    run = os.environ.get(RUN_ID_ENV) or str(os.getpid())
    return os.path.join(directory, f"llmhost-gateway-{run}-{settings.port}.tpm")


class TokenLimiter:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.limits = dict(settings.tenant_tokens_per_minute)
        self._slot = {name: i for i, name in enumerate(sorted(self.limits))}
        self._fd: int | None = None
        self._map: mmap.mmap | None = None
        if self.limits:
            self.path = state_file(settings)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            size = _SLOT.size * len(self._slot)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                if os.fstat(self._fd).st_size < size:
                    os.ftruncate(self._fd, size)  # zero balance and time 0: "full" (see _balance)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            self._map = mmap.mmap(self._fd, size)

    def _balance(self, i: int, limit: int, now: float) -> float:
        assert self._map is not None
        balance, at = _SLOT.unpack_from(self._map, i * _SLOT.size)
        if at == 0.0:
            return float(limit)
        return min(float(limit), balance + (now - at) * limit / 60.0)

    def check(self, tenant: str | None) -> None:
        """429 while the tenant's balance is used up."""
        i = self._slot.get(tenant) if tenant is not None else None
        if i is None:
            return
        limit = self.limits[tenant]  # type: ignore[index]
        now = time.monotonic()
        fcntl.flock(self._fd, fcntl.LOCK_SH)  # type: ignore[arg-type]
        try:
            balance = self._balance(i, limit, now)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)  # type: ignore[arg-type]
        if balance > 0:
            return
        wait_s = max(1, math.ceil((1 - balance) * 60.0 / limit))
        raise GatewayError(
            429,
            f"tenant '{tenant}' used its {limit} tokens per minute; retry after {wait_s} s",
            code="tokens_per_minute_exceeded",
            headers={"Retry-After": str(wait_s)},
        )

    def charge(self, tenant: str, tokens: int) -> None:
        i = self._slot.get(tenant)
        if i is None or tokens <= 0:
            return
        assert self._map is not None
        limit = self.limits[tenant]
        fcntl.flock(self._fd, fcntl.LOCK_EX)  # type: ignore[arg-type]
        try:
            now = time.monotonic()
            _SLOT.pack_into(self._map, i * _SLOT.size, self._balance(i, limit, now) - tokens, now)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)  # type: ignore[arg-type]

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class TenantNames:
    """API Gateway key id -> tenant name (static from settings, refreshed from SSM if configured)."""

    def __init__(self, settings: Settings, client: Any = None) -> None:
        self.s = settings
        self.names: dict[str, str] = dict(settings.tenant_names)
        self._client = client
        self._task: asyncio.Task[None] | None = None

    def name(self, api_key_id: str) -> str:
        return self.names.get(api_key_id, api_key_id)

    def load(self) -> None:
        """Read the SSM parameter once (blocking; run in a thread)."""
        if self._client is None:
            import boto3  # only where the parameter is configured (the image has it)

            self._client = boto3.client("ssm")
        value = self._client.get_parameter(Name=self.s.tenant_names_parameter)["Parameter"]["Value"]
        doc = json.loads(value)
        if not isinstance(doc, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in doc.items()):
            raise ValueError(f"{self.s.tenant_names_parameter} must hold a JSON object {{api key id: tenant name}}")
        self.names = {**self.s.tenant_names, **doc}

    async def refresh(self) -> None:
        try:
            await asyncio.to_thread(self.load)
        except Exception as e:  # noqa: BLE001 - keep serving with the names we have
            log.warning({"event": "tenant_names_not_loaded", "parameter": self.s.tenant_names_parameter, "error": f"{type(e).__name__}: {e}"})

    async def _run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.s.tenant_names_refresh_s)

    async def start(self) -> None:
        """Load in the background: start-up never waits for SSM (requests until then carry ids)."""
        if self.s.tenant_names_parameter:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
