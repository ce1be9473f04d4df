"""The hot path: one upstream call, written back to the client as ASGI messages.

* OpenAI routes: the upstream's bytes go back as they came (SSE included); no
  per-chunk JSON and no per-chunk logging. The only per-chunk work is a suffix
  check and one substring search, to find vLLM's final usage event (asked for with
  ``stream_options.include_usage`` so the log has token counts, and removed again
  when the client had not asked for it).
* A task watches ``receive()`` for ``http.disconnect``: a client that goes away
  cancels the call, the upstream connection is closed (not returned to the pool),
  and vLLM aborts the request and frees its KV cache. Streaming or not.
* While waiting for the first byte of a stream, SSE comments (``: ping``) keep the
  ALB and the client from timing out.
* A failure after the first byte ends the stream with a final
  ``data: {"error": ...}`` event and ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from . import contract
from .errors import GatewayError, error_body
from .httpclient import ReadTimeout, Response, UpstreamError
from .observability import RequestRecord


perf = time.perf_counter
Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

USAGE_MARK = b'"choices":[],"usage":{'
RESPONSE_DONE_MARK = b"response.completed"  # the Responses API's last event (it carries usage)
_PROMPT_TOK = re.compile(rb'"(?:prompt|input)_tokens":\s*(\d+)')
_COMPL_TOK = re.compile(rb'"(?:completion|output)_tokens":\s*(\d+)')
_DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_OVERHEAD = contract.OVERHEAD_HEADER.encode()
_REQID = contract.REQUEST_ID_HEADER.encode()


def encode_payload(p: dict[str, Any]) -> bytes:
    """A request body the gateway rebuilt, as JSON for the upstream."""
    try:
        return orjson.dumps(p)
    except TypeError:  # orjson stops at 64-bit integers; JSON, pydantic and vLLM take any size
        return json.dumps(p, separators=(",", ":")).encode()


def _usage(rec: RequestRecord, blob: bytes, start: int = 0) -> None:
    m = _PROMPT_TOK.search(blob, start)
    if m:
        rec.prompt_tokens = int(m.group(1))
    m = _COMPL_TOK.search(blob, start)
    if m:
        rec.completion_tokens = int(m.group(1))


def _error_event(message: str, code: str, status: int = 502) -> bytes:
    return b"data: " + error_body(message, status, None, code) + b"\n\n" + _DONE


SHUTDOWN_MESSAGE = "the gateway is shutting down (the task is being replaced); retry the request"


class ProxyCall:
    """One upstream call. ``mode`` is ``"openai"`` (bytes pass-through) or ``"simple"``
    (the gateway's own /v1/chat shapes). Always calls ``gw.obs.finish`` exactly once."""

    def __init__(
        self,
        gw: Any,
        rec: RequestRecord,
        method: str,
        path: str,
        body: bytes | None,
        *,
        stream: bool = False,
        mode: str = "openai",
        strip_usage: bool = False,
        slot: bool = False,
        payload: dict[str, Any] | None = None,
    ) -> None:
        self.gw = gw
        self.rec = rec
        self.method = method
        self.path = path
        self.body = body
        self.stream = stream
        self.mode = mode
        self.strip_usage = strip_usage
        self.slot = slot
        self.payload = payload
        self.done = False
        self.disconnected = False
        self.aborted = False
        self.started = False
        self.task: asyncio.Task[Any] | None = None
        self.usage_mark = RESPONSE_DONE_MARK if path == "/v1/responses" else USAGE_MARK

    def abort(self) -> None:
        """Shutdown reached its deadline: end this call now, with an error the client sees."""
        if not self.done and self.task is not None:
            self.aborted = True
            self.task.cancel()

    def _headers_out(self, extra: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        rec = self.rec
        now = perf()
        oh = (rec.t_upstream_sent or now) - rec.t0
        if rec.t_upstream_headers is not None and self.rec.extra.get("t_body") is not None:
            oh += now - rec.extra["t_body"]
        elif rec.t_upstream_headers is not None:
            oh += now - rec.t_upstream_headers
        rec.overhead_ms = round(oh * 1000.0, 3)
        extra.append((_REQID, rec.request_id.encode()))
        extra.append((_OVERHEAD, str(rec.overhead_ms).encode()))
        return extra

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        gw = self.gw
        rec = self.rec
        task = self.task = asyncio.current_task()
        gw.calls.add(self)
        loop = asyncio.get_running_loop()
        watch: asyncio.Task[Any] | None = None

        def on_disconnect(f: asyncio.Future[Any]) -> None:
            if self.done or f.cancelled() or f.exception() is not None:
                return
            if f.result().get("type") == "http.disconnect":
                self.disconnected = True
                if task is not None:
                    task.cancel()

        def start_watch() -> None:
            nonlocal watch
            watch = loop.create_task(receive())
            watch.add_done_callback(on_disconnect)

        def stop_watch() -> None:
            watching.cancel()
            if watch is not None:
                watch.remove_done_callback(on_disconnect)
                watch.cancel()

        # The task that watches receive() for the client's disconnect is created once this one first
        # waits, after the upstream request is written: created before, it cost ~19 µs of the
        # one-token path (measured). A client gone by then is reported by receive() all the same.
        watching = loop.call_soon(start_watch)
        resp: Response | None = None
        try:
            headers = {"Content-Type": "application/json", "X-Request-Id": rec.request_id}
            rec.t_upstream_sent = perf()
            aff = gw.affinity  # conversation affinity (core/affinity.py): the owner task's gateway, or local
            open_ = gw.upstreams.open if aff is None else aff.opener_for(self.payload, scope["headers"], rec)
            up, resp = await open_(self.method, self.path, self._body_for if self.payload is not None else self.body, headers)
            rec.t_upstream_headers = perf()
            rec.upstream = up.name
            if resp.status != 200:
                await self._relay_error(resp, send)
            elif self.stream:
                await self._stream(resp, send)
            else:
                await self._unary(resp, send)
        except asyncio.CancelledError:
            if not (self.disconnected or self.aborted):
                raise
            if task is not None:
                task.uncancel()
            if self.disconnected:
                rec.disconnected = True
                rec.status = rec.status or 499
            else:
                await self._end_for_shutdown(send)
        except GatewayError as e:
            rec.error = e.code
            if not self.started:
                rec.status = e.status
                self.done = True
                stop_watch()
                await e.send(send, [(_REQID, rec.request_id.encode())])
            else:
                await self._finish_stream(send, _error_event(e.message, e.code or "backend_error", e.status))
        except (UpstreamError, ConnectionError) as e:
            timeout = isinstance(e, ReadTimeout)
            msg = (
                "backend timeout: the model backend stopped sending"
                if timeout
                else f"backend failure: the connection to the model backend broke ({type(e).__name__})"
            )
            code = "backend_timeout" if timeout else "backend_disconnected"
            rec.error = code
            if not self.started:
                rec.status = 504 if timeout else 502
                self.done = True
                stop_watch()
                await GatewayError(rec.status, msg, code=code).send(send, [(_REQID, rec.request_id.encode())])
            else:
                await self._finish_stream(send, _error_event(msg, code, 504 if timeout else 502))
        finally:
            self.done = True
            gw.calls.discard(self)
            stop_watch()
            if resp is not None:
                if self.disconnected or rec.error or not resp.at_eof():
                    resp.close()  # drop the connection: vLLM sees it and aborts the request
                else:
                    resp.release()
            if self.slot:
                gw.release(rec.key_id)
            gw.finish(rec)

    def _body_for(self, up: Any) -> bytes:
        """The request body for the chosen upstream: as validated for vLLM; for a generic
        OpenAI-compatible fallback without the usage injection and with its model name."""
        p = self.payload
        assert p is not None
        if up is self.gw.upstreams.primary:
            return self.body if self.body is not None else encode_payload(p)
        q = dict(p)
        if self.strip_usage:
            so = dict(q.get("stream_options") or {})
            so.pop("include_usage", None)
            if so:
                q["stream_options"] = so
            else:
                q.pop("stream_options", None)
            self.strip_usage = False
        if up.model_override:
            q["model"] = up.model_override
        return encode_payload(q)

    async def _end_for_shutdown(self, send: Send) -> None:
        rec = self.rec
        rec.error = "shutting_down"
        if self.started:  # a stream: an error event the SDK raises, then [DONE]
            await self._finish_stream(send, _error_event(SHUTDOWN_MESSAGE, "shutting_down", 503))
        elif not self.done:
            rec.status = 503
            self.done = True
            await GatewayError(503, SHUTDOWN_MESSAGE, code="shutting_down", headers={"Retry-After": "1"}).send(
                send, [(_REQID, rec.request_id.encode())]
            )

    async def _finish_stream(self, send: Send, tail: bytes) -> None:
        self.done = True
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    # ------------------------------------------------------------------ non-200 upstream
    async def _relay_error(self, resp: Response, send: Send) -> None:
        raw = await resp.read()
        status = resp.status
        self.rec.status = status
        if status >= 500:
            msg = f"backend error: the model backend returned {status}"
            try:
                inner = orjson.loads(raw).get("error", {})
                if isinstance(inner, dict) and inner.get("message"):
                    msg += f": {inner['message']}"
            except Exception:  # noqa: BLE001
                pass
            self.rec.error = "backend_error"
            raw = error_body(msg, 502 if status == 500 else status, None, "backend_error")
            status = 502 if status == 500 else status
            self.rec.status = status
        else:
            try:
                err = orjson.loads(raw)
                ok = isinstance(err, dict) and isinstance(err.get("error"), dict)
            except Exception:  # noqa: BLE001
                ok = False
            if ok:
                e = err["error"]
                e["type"] = "invalid_request_error" if status != 404 else "not_found_error"
                raw = orjson.dumps(err)
            else:
                raw = error_body(f"the model backend rejected the request ({status}): {raw[:200].decode(errors='replace')}", status, None, "backend_rejected")
        self.done = True
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": self._headers_out([(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]),
            }
        )
        await send({"type": "http.response.body", "body": raw})

    # ------------------------------------------------------------------ non-streaming
    async def _unary(self, resp: Response, send: Send) -> None:
        rec = self.rec
        raw = await resp.read()
        rec.extra["t_body"] = perf()
        rec.t_first_byte = rec.extra["t_body"]
        i = raw.rfind(b'"usage":{')
        if i >= 0:
            _usage(rec, raw, i)
        if self.mode == "simple":
            data = orjson.loads(raw)
            choice = (data.get("choices") or [{}])[0]
            content = (choice.get("message") or {}).get("content") or ""
            out = {
                "id": data.get("id"),
                "content": content,
                "model": data.get("model"),
                "finish_reason": choice.get("finish_reason"),
                "usage": {
                    "prompt_tokens": rec.prompt_tokens,
                    "completion_tokens": rec.completion_tokens,
                    "total_tokens": (rec.prompt_tokens or 0) + (rec.completion_tokens or 0),
                },
                "latency_ms": round((perf() - rec.t0) * 1000.0, 3),
            }
            if self.gw.s.log_prompts:
                rec.completion = content
            raw = orjson.dumps(out)
            ctype = b"application/json"
        else:
            ctype = (resp.headers.get("content-type") or "application/json").encode()
            if self.gw.s.log_prompts:
                try:
                    ch = orjson.loads(raw)["choices"][0]
                    rec.completion = (ch.get("message") or {}).get("content") or ch.get("text")
                except Exception:  # noqa: BLE001
                    pass
        rec.status = 200
        self.done = True
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": self._headers_out([(b"content-type", ctype), (b"content-length", str(len(raw)).encode())]),
            }
        )
        await send({"type": "http.response.body", "body": raw})

    # ------------------------------------------------------------------ streaming
    async def _first_chunk(self, content: Response, send: Send) -> bytes:
        hb = self.gw.s.heartbeat_interval_s
        if hb <= 0:
            return await content.read_chunk()
        read = asyncio.ensure_future(content.read_chunk())
        try:
            while True:
                done, _ = await asyncio.wait((read,), timeout=hb)
                if done:
                    return read.result()
                await send({"type": "http.response.body", "body": PING, "more_body": True})
        finally:
            if not read.done():
                read.cancel()

    async def _stream(self, resp: Response, send: Send) -> None:
        rec = self.rec
        self.started = True
        rec.status = 200
        await send({"type": "http.response.start", "status": 200, "headers": self._headers_out(list(SSE_HEADERS))})
        content = resp
        chunk = await self._first_chunk(content, send)
        rec.t_first_byte = perf()
        simple = self.mode == "simple"
        log_text = self.gw.s.log_prompts
        parts: list[str] | None = [] if log_text else None
        pending = b""
        strip = self.strip_usage
        while chunk:
            if pending:
                chunk = pending + chunk
                pending = b""
            if not chunk.endswith(b"\n\n"):
                i = chunk.rfind(b"\n\n")
                if i < 0:
                    pending = chunk
                    chunk = await content.read_chunk()
                    continue
                pending = chunk[i + 2 :]
                chunk = chunk[: i + 2]
            if self.usage_mark in chunk:
                chunk = self._take_usage(chunk, strip)
            if simple:
                chunk = self._to_simple(chunk, parts)
            elif parts is not None:
                self._collect(chunk, parts)
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            chunk = await content.read_chunk()
        if pending:
            await send({"type": "http.response.body", "body": pending, "more_body": True})
        if parts is not None:
            rec.completion = "".join(parts)
        self.done = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _take_usage(self, chunk: bytes, strip: bool) -> bytes:
        i = chunk.find(self.usage_mark)
        start = chunk.rfind(b"\n\n", 0, i) + 1  # the event holding the mark (0 when it is the first)
        end = chunk.find(b"\n\n", i)
        event = chunk[start:end] if end >= 0 else chunk[start:]
        _usage(self.rec, event, max(0, event.rfind(b'"usage"')))
        if not strip:
            return chunk
        start = chunk.rfind(b"data:", 0, i)
        end = chunk.find(b"\n\n", i)
        if start < 0 or end < 0:
            return chunk
        return chunk[:start] + chunk[end + 2 :]

    @staticmethod
    def _events(chunk: bytes) -> list[bytes]:
        return [e[5:].strip() for e in chunk.split(b"\n\n") if e.startswith(b"data:")]

    def _collect(self, chunk: bytes, parts: list[str]) -> None:
        for data in self._events(chunk):
            if data == b"[DONE]":
                continue
            try:
                ch = orjson.loads(data)["choices"]
                if ch:
                    parts.append((ch[0].get("delta") or {}).get("content") or ch[0].get("text") or "")
            except Exception:  # noqa: BLE001
                pass

    def _to_simple(self, chunk: bytes, parts: list[str] | None) -> bytes:
        out = []
        for data in self._events(chunk):
            if data == b"[DONE]":
                out.append(_DONE)
                continue
            try:
                obj = orjson.loads(data)
            except Exception:  # noqa: BLE001
                continue
            if "error" in obj:
                out.append(b"data: " + orjson.dumps(obj) + b"\n\n")
                continue
            ch = obj.get("choices")
            if not ch:
                continue
            text = (ch[0].get("delta") or {}).get("content")
            if text:
                if parts is not None:
                    parts.append(text)
                out.append(b"data: " + orjson.dumps({"content": text}) + b"\n\n")
        return b"".join(out)
