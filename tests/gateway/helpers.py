"""Small stdlib HTTP helpers for the gateway tests (raw bytes, SSE lines, disconnects)."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit


def conn(base_url: str, timeout: float = 60) -> http.client.HTTPConnection:
    u = urlsplit(base_url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)


def request(
    base_url: str, method: str, path: str, body: Any = None, key: str | None = None, headers: dict[str, str] | None = None,
    raw: bytes | None = None, timeout: float = 60, drop_content_type: bool = False,
) -> tuple[int, dict[str, str], bytes]:
    c = conn(base_url, timeout)
    h = {} if drop_content_type else {"content-type": "application/json"}
    h.update(headers or {})
    if key:
        h["authorization"] = f"Bearer {key}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    out = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, out


def open_stream(
    base_url: str, path: str, body: Any, key: str | None = None, timeout: float = 60, headers: dict[str, str] | None = None
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    c = conn(base_url, timeout)
    h = {"content-type": "application/json", **(headers or {})}
    if key:
        h["authorization"] = f"Bearer {key}"
    c.request("POST", path, body=json.dumps(body).encode(), headers=h)
    return c, c.getresponse()


def sse_events(resp: http.client.HTTPResponse) -> Iterator[bytes]:
    """Yield each SSE line that is not blank (``data: ...`` or ``: comment``)."""
    while True:
        line = resp.readline()
        if not line:
            return
        line = line.rstrip(b"\r\n")
        if line:
            yield line


def error_of(body: bytes) -> dict[str, Any]:
    doc = json.loads(body)
    assert set(doc) >= {"error"}, doc
    err = doc["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"]
    return err


def wait_until(pred: Callable[[], bool], timeout: float = 15.0, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(every)
    return pred()


def chunked_upload(
    base_url: str, path: str, chunk: bytes, count: int, headers: dict[str, str], timeout: float = 10
) -> tuple[int, bytes, int]:
    """POST ``count`` chunks of ``chunk`` with Transfer-Encoding: chunked (no Content-Length),
    stopping early when the server has already answered. Returns (status, body, chunks sent)."""
    import select
    import socket

    u = urlsplit(base_url)
    s = socket.create_connection((u.hostname, u.port), timeout=timeout)
    head = f"POST {path} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sent = 0
    try:
        s.sendall(head.encode() + b"\r\n")
        for _ in range(count):
            if select.select([s], [], [], 0)[0]:
                break  # the answer is there: the server stopped reading
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += 1
        else:
            s.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server answered and closed while we were still sending
    resp = http.client.HTTPResponse(s)
    resp.begin()
    body = resp.read()
    s.close()
    return resp.status, body, sent
