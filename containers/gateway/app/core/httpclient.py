"""A lean HTTP/1.1 client for the upstream hop (asyncio protocol + httptools parser).

Why not aiohttp: on this hop the gateway only ever sends one small JSON body and
relays bytes back; aiohttp's general machinery (request/response objects, multidicts,
URL objects, a timer rescheduled on every read) was the largest share of the
gateway's own time per request in profiles. This client writes each request with one
``transport.write`` and hands body bytes straight from the parser to the reader.

* Keep-alive pool per upstream (LIFO); an idle connection is never reused after
  ``keepalive_s`` (kept below vLLM's own 5 s, so vLLM never closes one under us).
* Connect timeout per new connection; read timeout = longest silence while a
  response is in progress, enforced by one watchdog task per pool (no per-read timer).
* Flow control: reading from the upstream pauses while 1 MiB is buffered unread.
* ``Response.close()`` drops the connection: vLLM sees the disconnect and aborts.

Errors: :class:`ConnectFailed` (nothing was received: safe to retry once),
:class:`ReadTimeout`, :class:`Disconnected` (the connection broke mid-response).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

import httptools

_HIGH_WATER = 1 << 20


class UpstreamError(Exception):
    pass


class ConnectFailed(UpstreamError):
    """The request got no byte of response: refused, reset, or a stale pooled connection."""


class ReadTimeout(UpstreamError):
    pass


class Disconnected(UpstreamError):
    """The connection broke after the response had started."""


class Response:
    __slots__ = ("conn", "status", "headers", "_chunks", "_size", "_waiter", "_eof", "_exc", "_head_fut", "keep_alive")

    def __init__(self, conn: "_Conn", head_fut: asyncio.Future[None]) -> None:
        self.conn = conn
        self.status = 0
        self.headers: dict[str, str] = {}
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._waiter: asyncio.Future[None] | None = None
        self._eof = False
        self._exc: BaseException | None = None
        self._head_fut = head_fut
        self.keep_alive = True

    # --- fed by the protocol
    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size > _HIGH_WATER:
            self.conn.pause()
        self._wake()

    def _finish(self) -> None:
        self._eof = True
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        if self._eof:
            return
        self._exc = exc
        if not self._head_fut.done():
            self._head_fut.set_exception(exc)
        self._wake()

    # --- consumer API
    def at_eof(self) -> bool:
        return self._eof and not self._chunks

    async def read_chunk(self) -> bytes:
        """The bytes that arrived since the last call (waits for some); b"" at the end."""
        while not self._chunks:
            if self._eof:
                return b""
            if self._exc is not None:
                raise self._exc
            self._waiter = self.conn.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if len(self._chunks) == 1:
            data = self._chunks.popleft()
        else:
            data = b"".join(self._chunks)
            self._chunks.clear()
        if self._size > _HIGH_WATER:
            self.conn.resume()
        self._size = 0
        return data

    async def read(self) -> bytes:
        parts = []
        while True:
            d = await self.read_chunk()
            if not d:
                return b"".join(parts)
            parts.append(d)

    def close(self) -> None:
        """Drop the connection (the upstream sees a disconnect)."""
        self.conn.abort()

    def release(self) -> None:
        """Give the connection back to the pool if the body was read to the end."""
        if self._eof and self._exc is None and self.keep_alive:
            self.conn.to_pool()
        else:
            self.conn.abort()


class _Conn(asyncio.Protocol):
    def __init__(self, pool: "Pool") -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.resp: Response | None = None
        self.closed = False
        self.got_bytes = False
        self.idle_since = 0.0
        self.last_io = 0.0
        self._paused = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        self.last_io = self.pool.now
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._error(Disconnected("unexpected protocol upgrade from the upstream"))
        except httptools.HttpParserError as e:
            self._error(Disconnected(f"invalid HTTP from the upstream: {e}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        r = self.resp
        if r is not None and not r._eof:
            if not self.got_bytes:
                r._fail(ConnectFailed("the upstream closed the connection before answering"))
            else:
                r._fail(Disconnected("the upstream closed the connection mid-response"))

    def pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if self.resp is not None:
            self.resp.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        r = self.resp
        if r is None:
            return
        r.status = self.parser.get_status_code()
        r.keep_alive = self.parser.should_keep_alive()
        if not r._head_fut.done():
            r._head_fut.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self.resp is not None:
            self.resp._feed(body)

    def on_message_complete(self) -> None:
        if self.resp is not None:
            self.resp._finish()

    # pool side
    def _error(self, exc: BaseException) -> None:
        if self.resp is not None:
            self.resp._fail(exc)
        self.abort()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.abort()
        self.pool.forget(self)

    def to_pool(self) -> None:
        if self.closed:
            return
        self.resp = None
        self.resume()
        self.parser = httptools.HttpResponseParser(self)
        self.got_bytes = False
        self.idle_since = time.monotonic()
        self.pool.put(self)


class Pool:
    """Connections to one upstream base URL."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
        keepalive_s: float,
        max_idle: int = 1024,
    ) -> None:
        u = urlsplit(base_url)
        self.base_path = u.path.rstrip("/")
        self.scheme = u.scheme
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (443 if u.scheme == "https" else 80)
        default_port = (u.scheme == "https" and self.port == 443) or (u.scheme == "http" and self.port == 80)
        self.host_header = (self.host if default_port else f"{self.host}:{self.port}").encode()
        self.ssl: ssl.SSLContext | None = ssl.create_default_context() if u.scheme == "https" else None
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.keepalive_s = keepalive_s
        self.max_idle = max_idle
        self.loop = asyncio.get_running_loop()
        self.idle: list[_Conn] = []
        self.active: set[_Conn] = set()
        self.now = time.monotonic()
        self._watchdog = self.loop.create_task(self._watch())

    async def _watch(self) -> None:
        period = min(1.0, self.read_timeout_s / 4)
        while True:
            await asyncio.sleep(period)
            self.now = now = time.monotonic()
            for c in list(self.active):
                if c.resp is not None and not c.resp._eof and now - c.last_io > self.read_timeout_s:
                    c._error(ReadTimeout(f"no data from the upstream for {self.read_timeout_s:g} s"))
            for c in list(self.idle):
                if now - c.idle_since >= self.keepalive_s:
                    c.abort()

    async def close(self) -> None:
        self._watchdog.cancel()
        for c in list(self.idle) + list(self.active):
            c.abort()

    def put(self, c: _Conn) -> None:
        self.active.discard(c)
        if len(self.idle) < self.max_idle:
            self.idle.append(c)
        else:
            c.abort()

    def forget(self, c: _Conn) -> None:
        self.active.discard(c)
        try:
            self.idle.remove(c)
        except ValueError:
            pass

    async def _get(self) -> tuple[_Conn, bool]:
        now = time.monotonic()
        while self.idle:
            c = self.idle.pop()
            if not c.closed and now - c.idle_since < self.keepalive_s:
                return c, True
            c.abort()
        try:
            _, c = await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: _Conn(self), self.host, self.port, ssl=self.ssl, server_hostname=self.host if self.ssl else None
                ),
                self.connect_timeout_s,
            )
        except asyncio.TimeoutError:
            raise ConnectFailed(f"connect timeout after {self.connect_timeout_s:g} s") from None
        except OSError as e:
            raise ConnectFailed(f"{type(e).__name__}: {e.strerror or e}") from None
        return c, False  # type: ignore[return-value]

    async def request(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Response:
        """Send one request; return when the status line and headers are in."""
        c, _reused = await self._get()
        head = [b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (method.encode(), (self.base_path + path).encode(), self.host_header)]
        for k, v in headers.items():
            head.append(b"%s: %s\r\n" % (k.encode("latin-1"), v.encode("latin-1")))
        if body is not None:
            head.append(b"Content-Length: %d\r\n\r\n" % len(body))
            head.append(body)
        else:
            head.append(b"\r\n")
        fut: asyncio.Future[None] = self.loop.create_future()
        r = Response(c, fut)
        c.resp = r
        c.last_io = self.now = time.monotonic()
        self.active.add(c)
        assert c.transport is not None
        c.transport.write(b"".join(head))
        try:
            await fut
        except BaseException:
            c.abort()
            raise
        return r


def new_pool(base_url: str, **kw: Any) -> Pool:
    return Pool(base_url, **kw)
