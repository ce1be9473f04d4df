"""OpenAI-format errors: ``{"error": {"message", "type", "param", "code"}}`` for every 4xx/5xx."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "server_error",
    503: "service_unavailable_error",
    504: "timeout_error",
}


def error_type(status: int) -> str:
    return _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def error_body(message: str, status: int, param: str | None = None, code: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": error_type(status), "param": param, "code": code}})


class GatewayError(Exception):
    """Raised anywhere in the gateway; rendered as an OpenAI error JSON response."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> bytes:
        return error_body(self.message, self.status, self.param, self.code)

    def response(self) -> Response:
        return Response(self.body(), self.status, headers=self.headers, media_type="application/json")

    async def send(self, send: Any, extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
        body = self.body()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        headers += [(k.lower().encode(), v.encode()) for k, v in self.headers.items()]
        if extra_headers:
            headers += extra_headers
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


# pydantic names a union's member in ``loc`` by its type (``str``, ``list[ContentPart]``), FastAPI
# puts where the value came from first (``body``): neither is part of the field's name.
_NOT_A_FIELD = re.compile(r"\[|^(str|int|float|bool|body|query|path|header)$")


def _loc_to_param(loc: tuple[Any, ...]) -> str:
    out = ""
    for p in loc:
        if isinstance(p, int):
            out += f"[{p}]"
        elif not _NOT_A_FIELD.search(p):
            out += f".{p}" if out else p
    return out or "body"


def invalid_request(errors: Sequence[Mapping[str, Any]]) -> GatewayError:
    """400 for pydantic's errors, naming one field OpenAI style (``messages[0].content``): the
    deepest error, which in a union is the member that got furthest; all that member's messages."""
    first = max(errors, key=lambda e: len(e["loc"]))
    param = _loc_to_param(first["loc"])
    params = [_loc_to_param(e["loc"]) for e in errors]
    msg = f"invalid '{param}': " + "; or ".join(dict.fromkeys(e["msg"] for e, p in zip(errors, params) if p == param))
    if (others := len(set(params)) - 1) > 0:
        msg += f" (and {others} more invalid field(s))"
    code = "missing_required_parameter" if first["type"] == "missing" else "invalid_value"
    return GatewayError(400, msg, param=param, code=code)


async def _validation_handler(_: Request, exc: RequestValidationError) -> Response:
    return invalid_request(exc.errors()).response()


async def _http_handler(_: Request, exc: StarletteHTTPException) -> Response:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    message = str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = "no such route"
    return GatewayError(exc.status_code, message, code=code, headers=dict(exc.headers or {})).response()


async def _gateway_handler(_: Request, exc: GatewayError) -> Response:
    return exc.response()


async def _unhandled(_: Request, exc: Exception) -> Response:
    return GatewayError(500, f"internal gateway error: {type(exc).__name__}", code="internal_error").response()


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_handler)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_handler)  # type: ignore[arg-type]
    app.add_exception_handler(GatewayError, _gateway_handler)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unhandled)
