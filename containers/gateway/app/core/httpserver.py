"""uvicorn's httptools protocol, with a response that has a body of known length written to the
socket in one piece.

uvicorn writes the status line and headers the moment the app sends ``http.response.start`` and the
body at ``http.response.body``: two ``write`` calls, two TCP segments, and the client wakes up for
each. For a response whose length is declared (``content-length``) and whose body comes in one
message, this protocol holds the head until the body arrives and writes both at once; uvicorn's own
code still builds and checks the head. A stream (no length, or a body in several messages) gets its
head at once, as before: an SSE client must see the headers before the first token.

``app.server`` passes :class:`HttpProtocol` to uvicorn as ``http=``.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle


class _Collect:
    """Stands in for the transport while uvicorn renders a held head and its body."""

    __slots__ = ("real", "parts", "close_after")

    def __init__(self, real: Any) -> None:
        self.real = real
        self.parts: list[bytes] = []
        self.close_after = False

    def write(self, data: bytes) -> None:
        self.parts.append(data)

    def close(self) -> None:
        self.close_after = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class CoalescingCycle(RequestResponseCycle):
    _held: Any = None

    async def send(self, message: Any) -> None:
        held = self._held
        if held is None:
            if (
                message["type"] == "http.response.start"
                and not self.response_started
                and any(k.lower() == b"content-length" for k, _ in message.get("headers", ()))
            ):
                self._held = message
                return
            await super().send(message)
            return
        self._held = None
        if message["type"] == "http.response.start":  # uvicorn's own 500 after the app failed: it replaces the held head
            await self.send(message)
            return
        real = self.transport
        out = _Collect(real)
        self.transport = out  # type: ignore[assignment]
        try:
            await super().send(held)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                await super().send(message)
                message = None
        finally:
            self.transport = real
        if out.parts:
            real.write(b"".join(out.parts))
        if out.close_after:
            real.close()
        if message is not None:  # a body in several messages: the rest goes as uvicorn sends it
            await super().send(message)


class HttpProtocol(HttpToolsProtocol):
    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and type(cycle) is RequestResponseCycle:
            cycle.__class__ = CoalescingCycle  # before its task first runs: the app sees this send
