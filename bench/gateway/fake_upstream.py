"""A small, fast OpenAI-format streaming server: the "high-rate" upstream of the gateway
benchmark and the upstream the fault tests control (kill it, slow it, overload it).

It speaks just enough HTTP/1.1 (keep-alive, chunked responses) and the vLLM shapes:
``GET /health``, ``GET /metrics`` (``vllm:num_requests_running`` / ``..._waiting``),
``GET /v1/models``, ``POST /v1/chat/completions`` and ``POST /v1/completions``, stream
or not. A stream emits ``max_tokens`` chunks (default ``--chunks``): the first after
``--ttft-ms``, then one every ``--interval-ms`` from a single shared ticker, then the
usage event when ``stream_options.include_usage`` is set, then ``data: [DONE]``.
``--busy-ms`` holds the event loop that long per inference request (vLLM's API server renders
and tokenizes on its loop, so a burst queues there), ``--backlog`` sets the listen queue, and
``/metrics`` also counts requests, chunks and accepted connections (``fake:*_total``).

    python bench/gateway/fake_upstream.py --port 9000 --interval-ms 20 --chunks 50

Needs only uvloop and httptools (both gateway dependencies) and the standard library.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time

import httptools

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None


class Stream:
    __slots__ = ("proto", "left", "usage", "n", "kind", "prompt_tokens")

    def __init__(self, proto: "Http", left: int, usage: bool, kind: str, prompt_tokens: int) -> None:
        self.proto = proto
        self.left = left
        self.usage = usage
        self.n = 0
        self.kind = kind
        self.prompt_tokens = prompt_tokens


class Server:
    def __init__(self, args: argparse.Namespace) -> None:
        self.a = args
        self.streams: set[Stream] = set()
        self.running = 0
        self.total_requests = 0
        self.total_chunks = 0
        self.total_connections = 0
        m = args.model
        self.chat_chunk = self._event(
            {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": m,
             "choices": [{"index": 0, "delta": {"content": args.token}, "logprobs": None, "finish_reason": None}]}
        )
        self.comp_chunk = self._event(
            {"id": "cmpl-fake", "object": "text_completion", "created": 0, "model": m,
             "choices": [{"index": 0, "text": args.token, "logprobs": None, "finish_reason": None}]}
        )
        self.role_chunk = self._event(
            {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": m,
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}]}
        )

    @staticmethod
    def _event(obj: object) -> bytes:
        return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"

    def usage_event(self, s: Stream) -> bytes:
        return self._event(
            {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": self.a.model, "choices": [],
             "usage": {"prompt_tokens": s.prompt_tokens, "total_tokens": s.prompt_tokens + s.n, "completion_tokens": s.n}}
        )

    def metrics(self) -> bytes:
        m = self.a.model
        return (
            f'vllm:num_requests_running{{engine="0",model_name="{m}"}} {float(self.running)}\n'
            f'vllm:num_requests_waiting{{engine="0",model_name="{m}"}} {float(self.a.waiting)}\n'
            f"fake:requests_total {self.total_requests}\nfake:chunks_total {self.total_chunks}\n"
            f"fake:connections_total {self.total_connections}\n"
        ).encode()

    async def ticker(self) -> None:
        interval = self.a.interval_ms / 1000.0
        loop = asyncio.get_running_loop()
        next_t = loop.time()
        while True:
            next_t += interval
            delay = next_t - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                next_t = loop.time()
            for s in list(self.streams):
                self.emit(s)

    def emit(self, s: Stream) -> None:
        p = s.proto
        if p.closed:
            self.streams.discard(s)
            return
        chunk = self.chat_chunk if s.kind == "chat" else self.comp_chunk
        s.n += 1
        s.left -= 1
        self.total_chunks += 1
        if s.left > 0:
            p.write_chunk(chunk)
            return
        tail = chunk
        if s.usage:
            tail += self.usage_event(s)
        tail += b"data: [DONE]\n\n"
        p.write_chunk(tail)
        p.end_chunked()
        self.streams.discard(s)
        self.running -= 1
        p.stream = None

    def start_stream(self, p: "Http", s: Stream) -> None:
        if p.closed:
            self.running -= 1
            return
        if s.kind == "chat":
            p.write_chunk(self.role_chunk)
        self.emit(s)
        if s.left > 0:
            self.streams.add(s)


class Http(asyncio.Protocol):
    def __init__(self, srv: Server) -> None:
        self.srv = srv
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.url = b""
        self.body: list[bytes] = []
        self.stream: Stream | None = None

    # asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.srv.total_connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.stream is not None:
            self.srv.streams.discard(self.stream)
            self.srv.running -= 1
            self.stream = None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()  # type: ignore[union-attr]

    # httptools
    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        url, body = self.url, b"".join(self.body)
        self.url, self.body = b"", []
        self.handle(method, url.split(b"?")[0], body)

    # responses
    def respond(self, status: int, body: bytes, ctype: bytes = b"application/json") -> None:
        reason = {200: b"OK", 404: b"Not Found", 400: b"Bad Request", 500: b"Internal Server Error"}.get(status, b"X")
        self.transport.write(  # type: ignore[union-attr]
            b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s" % (status, reason, ctype, len(body), body)
        )

    def write_chunk(self, data: bytes) -> None:
        self.transport.write(b"%x\r\n%s\r\n" % (len(data), data))  # type: ignore[union-attr]

    def end_chunked(self) -> None:
        self.transport.write(b"0\r\n\r\n")  # type: ignore[union-attr]

    def handle(self, method: bytes, path: bytes, body: bytes) -> None:
        srv, a = self.srv, self.srv.a
        if path == b"/health":
            return self.respond(200, b"")
        if path == b"/metrics":
            return self.respond(200, srv.metrics(), b"text/plain")
        if path == b"/v1/models":
            return self.respond(200, json.dumps({"object": "list", "data": [{"id": a.model, "object": "model", "owned_by": "fake"}]}).encode())
        if method != b"POST" or path not in (b"/v1/chat/completions", b"/v1/completions"):
            return self.respond(404, b'{"error":{"message":"not found","type":"NotFoundError","param":null,"code":404}}')
        try:
            req = json.loads(body)
        except ValueError:
            return self.respond(400, b'{"error":{"message":"bad json","type":"BadRequestError","param":null,"code":400}}')
        srv.total_requests += 1
        if a.busy_ms > 0:
            # vLLM's API server renders the chat template and tokenizes on its event loop: under a
            # burst that loop accepts nothing else for a while. time.sleep holds the loop the same way.
            time.sleep(a.busy_ms / 1000.0)
        kind = "chat" if path == b"/v1/chat/completions" else "completion"
        n = req.get("max_tokens") or a.chunks
        n = max(1, int(n)) if isinstance(n, int) else a.chunks
        prompt_tokens = len(body) // 8
        loop = asyncio.get_running_loop()
        if req.get("stream"):
            usage = bool((req.get("stream_options") or {}).get("include_usage"))
            s = Stream(self, n, usage, kind, prompt_tokens)
            self.stream = s
            srv.running += 1
            self.transport.write(  # type: ignore[union-attr]
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n"
            )
            if a.ttft_ms > 0:
                loop.call_later(a.ttft_ms / 1000.0, srv.start_stream, self, s)
            else:
                srv.start_stream(self, s)
            return
        text = a.token * n
        if kind == "chat":
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
        else:
            choice = {"index": 0, "text": text, "finish_reason": "length"}
        out = json.dumps(
            {"id": "fake", "object": "chat.completion" if kind == "chat" else "text_completion", "created": 0,
             "model": a.model, "choices": [choice],
             "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + n, "completion_tokens": n}},
            separators=(",", ":"),
        ).encode()
        if a.ttft_ms > 0:
            srv.running += 1

            def later() -> None:
                srv.running -= 1
                if not self.closed:
                    self.respond(200, out)

            loop.call_later(a.ttft_ms / 1000.0, later)
        else:
            self.respond(200, out)


async def serve(args: argparse.Namespace) -> None:
    srv = Server(args)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Http(srv), args.host, args.port, backlog=args.backlog)
    port = server.sockets[0].getsockname()[1]
    print(f"fake upstream listening on {args.host}:{port} pid={os.getpid()}", flush=True)
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(port))
        os.replace(args.port_file + ".tmp", args.port_file)
    tick = loop.create_task(srv.ticker())
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    t_end = time.monotonic() + args.max_seconds if args.max_seconds else None
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=1.0)
        except asyncio.TimeoutError:
            pass
        if t_end and time.monotonic() > t_end:
            break
    tick.cancel()
    server.close()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: pick a free port (see --port-file)")
    ap.add_argument("--port-file", default=None, help="write the bound port here")
    ap.add_argument("--model", default="fake")
    ap.add_argument("--token", default="tok")
    ap.add_argument("--chunks", type=int, default=50, help="chunks per stream when max_tokens is absent")
    ap.add_argument("--interval-ms", type=float, default=20.0, help="pace: one chunk per stream per interval")
    ap.add_argument("--ttft-ms", type=float, default=0.0, help="delay before the first chunk / the unary answer")
    ap.add_argument("--waiting", type=int, default=0, help="queue depth reported at /metrics")
    ap.add_argument("--busy-ms", type=float, default=0.0, help="hold the event loop this long per inference request")
    ap.add_argument("--backlog", type=int, default=4096, help="listen backlog (accept queue length)")
    ap.add_argument("--max-seconds", type=float, default=3600.0, help="exit after this long (bounded runs)")
    return ap.parse_args(argv)


if __name__ == "__main__":
    a = parse()
    if uvloop is not None:
        uvloop.install()
    try:
        asyncio.run(serve(a))
    except KeyboardInterrupt:
        sys.exit(0)
