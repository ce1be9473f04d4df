"""A local stand-in for the REST API: what the template declares, behaving as AWS documents it.

    python -m tools.local.frontdoor SPEC.json

SPEC.json is written by :mod:`tools.local.stack` from the api stack's template (methods, stage,
usage plans) plus local values (API keys, the backend URL). Each behaviour cites its AWS page; the
status codes are those of "Gateway response types for API Gateway"
(https://docs.aws.amazon.com/apigateway/latest/developerguide/supported-gateway-response-types.html).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

# "Amazon API Gateway quotas" (https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html):
# payload size 10 MB for REST APIs.
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
# "Stream the integration response for your proxy integrations in API Gateway"
# (https://docs.aws.amazon.com/apigateway/latest/developerguide/response-transfer-mode.html): a streamed
# response may run up to the integration timeout (15 min at most) and stops after 5 minutes of idle time.
STREAM_IDLE_TIMEOUT_S = 300.0
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "host", "content-length"}  # fmt: skip


class MappingError(ValueError):
    """A request-parameter mapping this stand-in cannot evaluate (so it never ignores one silently)."""


def _message(status: int, message: str) -> web.Response:
    # API Gateway's own errors are {"message": "..."} (default gateway response body).
    return web.json_response({"message": message}, status=status)


@dataclass
class TokenBucket:
    """Rate limit and burst as API Gateway applies them: the token bucket algorithm, the burst being
    the bucket's size ("Throttle requests to your REST APIs for better throughput in API Gateway",
    https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-request-throttling.html)."""

    rate: float
    burst: int
    tokens: float = -1.0
    stamp: float = field(default_factory=time.monotonic)

    def take(self) -> bool:
        now = time.monotonic()
        if self.tokens < 0:
            self.tokens = float(self.burst)
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class Key:
    id: str
    value: str
    plan: str
    bucket: TokenBucket | None
    quota: int | None
    used: int = 0


def evaluate(expression: str, context: dict[str, Any]) -> str | None:
    """One mapping source, as "Parameter mapping source reference for REST APIs in API Gateway" lists them
    (https://docs.aws.amazon.com/apigateway/latest/developerguide/rest-api-parameter-mapping-sources.html):
    a quoted static value, a method request header/querystring/path parameter, a context variable.
    None: the source is absent in this request (the integration parameter is then not sent)."""
    if len(expression) >= 2 and expression[0] == expression[-1] == "'":
        return expression[1:-1]
    kind, _, name = expression.partition(".request.") if expression.startswith("method.") else ("", "", "")
    if kind == "method":
        where, _, param = name.partition(".")
        source = {"header": context["headers"], "querystring": context["query"], "path": context["path_params"]}
        if where not in source:
            raise MappingError(f"mapping source {expression!r}: method.request.{where} is not supported here")
        value = source[where].get(param.lower() if where == "header" else param)
        return None if value is None else str(value)
    if expression.startswith("context."):
        try:
            return str(context["context"][expression.removeprefix("context.")])
        except KeyError:
            raise MappingError(f"mapping source {expression!r}: context variable not emulated") from None
    raise MappingError(f"mapping source {expression!r} is not a REST API parameter mapping source")


def integration_request(method: dict[str, Any], stage: str, context: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """(backend path with query string, header overrides) after the integration's request parameters.

    - ``integration.request.header.H``/``querystring.Q``/``path.P`` set a header, a query parameter or a
      ``{P}`` placeholder of the integration URI ("Parameter mapping for REST APIs in API Gateway",
      https://docs.aws.amazon.com/apigateway/latest/developerguide/rest-api-parameter-mapping.html); a
      header mapping replaces what the client sent under that name (the Authorization override).
    - The stage: "Private integrations for REST APIs in API Gateway"
      (https://docs.aws.amazon.com/apigateway/latest/developerguide/private-integration.html) says API
      Gateway includes the stage portion of the endpoint in the request to the backend (stage ``test``
      sends ``test/path``) and that overriding the path with parameter mapping removes it: the path is
      sent as ``/<stage><uri path>`` unless a mapping sets it (``integration.request.path.*`` filling
      the URI's placeholders, or ``overwrite:path``), which is then sent as mapped.
    """
    path: str = method["uri_path"]
    headers: dict[str, str] = {}
    query = dict(context["query"])
    override: str | None = None
    path_mapped = False
    for target, expression in method["request_parameters"].items():
        value = evaluate(expression, context)
        if value is None:
            continue
        if target.startswith("integration.request.header."):
            headers[target.removeprefix("integration.request.header.")] = value
        elif target.startswith("integration.request.querystring."):
            query[target.removeprefix("integration.request.querystring.")] = value
        elif target.startswith("integration.request.path."):
            name = target.removeprefix("integration.request.path.")
            path = path.replace("{" + name + "+}", value).replace("{" + name + "}", value)
            path_mapped = True
        elif target == "overwrite:path":
            override = value if value.startswith("/") else "/" + value
        else:
            raise MappingError(f"integration parameter {target!r} is not emulated")
    full = override if override is not None else path if path_mapped else f"/{stage}{path}"
    if query:
        full += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    return full, headers


CONTEXT_VARIABLES = (
    "requestId", "stage", "path", "resourcePath", "httpMethod", "identity.apiKeyId", "identity.apiKey", "identity.sourceIp",
)  # fmt: skip


def validate_spec(spec: dict[str, Any]) -> None:
    """Evaluate every mapping against an empty request first: an unknown source fails at start, not per request."""
    empty = {"headers": {}, "query": {}, "path_params": {}, "context": dict.fromkeys(CONTEXT_VARIABLES, "")}
    for method in spec["methods"]:
        integration_request(method, spec["stage"], empty)


def context_variables(spec: dict[str, Any], request: web.Request, key: Key | None, resource_path: str) -> dict[str, str]:
    """The ``$context`` variables the templates map ("$context variables for data models, authorizers,
    mapping templates, and access logging", https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-mapping-template-reference.html)."""
    values = (
        str(uuid.uuid4()), spec["stage"], request.path, resource_path, request.method,
        key.id if key else "", key.value if key else "", request.remote or "",
    )  # fmt: skip
    return dict(zip(CONTEXT_VARIABLES, values, strict=True))


class FrontDoor:
    def __init__(self, spec: dict[str, Any]) -> None:
        validate_spec(spec)
        self.spec = spec
        self.stage = spec["stage"]
        self.methods = {(m["path"], m["http_method"]): m for m in spec["methods"]}
        self.keys: dict[str, Key] = {}
        for k in spec["keys"]:
            plan = spec["plans"][k["plan"]]
            bucket = TokenBucket(plan["rate"], plan["burst"]) if plan.get("rate") is not None else None
            self.keys[k["value"]] = Key(k["id"], k["value"], k["plan"], bucket, plan.get("quota"))
        rate, burst = spec.get("stage_rate"), spec.get("stage_burst")
        self.stage_bucket = TokenBucket(rate, burst) if rate is not None and burst is not None else None
        self.backend: str = spec["backend"].rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def start(self, app: web.Application) -> None:
        self.session = aiohttp.ClientSession(auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None))

    async def stop(self, app: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        stage, _, rest = request.path.lstrip("/").partition("/")
        resource_path = "/" + rest.rstrip("/")
        method = self.methods.get((resource_path, request.method)) if stage == self.stage else None
        if method is None:
            # No such resource/method: 403 MISSING_AUTHENTICATION_TOKEN (gateway response types page).
            return _message(403, "Missing Authentication Token")
        key = self.keys.get(request.headers.get("x-api-key", ""))
        if method["api_key_required"] and key is None:
            # Missing or unknown key on a method that requires one: 403 {"message":"Forbidden"}
            # ("Usage plans and API keys for REST APIs in API Gateway",
            # https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-api-usage-plans.html).
            return _message(403, "Forbidden")
        # Per-client (usage plan) throttling first, then the stage's default method throttling (throttling page).
        if key is not None and key.bucket is not None and not key.bucket.take():
            return _message(429, "Too Many Requests")
        if self.stage_bucket is not None and not self.stage_bucket.take():
            return _message(429, "Too Many Requests")
        if key is not None and key.quota is not None:
            if key.used >= key.quota:
                return _message(429, "Limit Exceeded")  # QUOTA_EXCEEDED
            key.used += 1
        if request.content_length is not None and request.content_length > MAX_PAYLOAD_BYTES:
            return _message(413, "Request Too Long")  # REQUEST_TOO_LARGE, 10 MB quota
        body = await request.content.read(MAX_PAYLOAD_BYTES + 1)
        if len(body) > MAX_PAYLOAD_BYTES:
            return _message(413, "Request Too Long")
        context = {
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "query": dict(request.query),
            "path_params": {},
            "context": context_variables(self.spec, request, key, resource_path),
        }
        path, overrides = integration_request(method, self.stage, context)
        # HTTP proxy integration: the client's headers pass through, the mapped ones replace theirs.
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        for name, value in overrides.items():
            for existing in [h for h in headers if h.lower() == name.lower()]:
                del headers[existing]
            headers[name] = value
        timeout_s = method["timeout_ms"] / 1000
        if method["streaming"]:
            return await self._stream(request, method["integration_http_method"], path, headers, body, timeout_s)
        return await self._buffered(method["integration_http_method"], path, headers, body, timeout_s)

    async def _buffered(self, verb: str, path: str, headers: dict[str, str], body: bytes, timeout_s: float) -> web.StreamResponse:
        assert self.session is not None
        try:
            async with asyncio.timeout(timeout_s):
                async with self.session.request(verb, self.backend + path, headers=headers, data=body) as up:
                    payload = await up.read()
                    out = {k: v for k, v in up.headers.items() if k.lower() not in HOP_BY_HOP}
                    return web.Response(status=up.status, body=payload, headers=out)
        except TimeoutError:
            # Buffered integrations stop at their timeout (29 s by default): 504 INTEGRATION_TIMEOUT.
            return _message(504, "Endpoint request timed out")
        except aiohttp.ClientError:
            return _message(502, "Internal server error")

    async def _stream(
        self, request: web.Request, verb: str, path: str, headers: dict[str, str], body: bytes, timeout_s: float
    ) -> web.StreamResponse:
        """STREAM transfer mode: the backend's bytes go to the client as they arrive (streaming page)."""
        assert self.session is not None
        deadline = time.monotonic() + timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                up = await self.session.request(
                    verb, self.backend + path, headers=headers, data=body,
                    timeout=aiohttp.ClientTimeout(sock_read=STREAM_IDLE_TIMEOUT_S),
                )  # fmt: skip
        except TimeoutError:
            return _message(504, "Endpoint request timed out")
        except aiohttp.ClientError:
            return _message(502, "Internal server error")
        try:
            out = web.StreamResponse(status=up.status, headers={k: v for k, v in up.headers.items() if k.lower() not in HOP_BY_HOP})
            await out.prepare(request)
            async with asyncio.timeout_at(asyncio.get_running_loop().time() + max(0.0, deadline - time.monotonic())):
                async for chunk in up.content.iter_any():
                    await out.write(chunk)
            await out.write_eof()
            return out
        except (TimeoutError, aiohttp.ClientError, ConnectionResetError):
            # The stream ends where it stopped; closing the upstream (below) is what makes vLLM abort it.
            return out
        finally:
            up.close()


def build_app(spec: dict[str, Any]) -> web.Application:
    door = FrontDoor(spec)
    app = web.Application(client_max_size=MAX_PAYLOAD_BYTES + 1)
    app.on_startup.append(door.start)
    app.on_cleanup.append(door.stop)
    app.router.add_route("*", "/{tail:.*}", door.handle)
    return app


RUNNER_OPTIONS: dict[str, Any] = {"handler_cancellation": True, "access_log": None}
"""``handler_cancellation``: a client that goes away cancels its handler, which closes the upstream
connection at once (the gateway, then vLLM, stop working on it), also while the upstream sends nothing
(a request waiting in vLLM's queue); without it the handler only notices at its next write."""


async def serve(spec: dict[str, Any], host: str, port: int) -> None:
    runner = web.AppRunner(build_app(spec), **RUNNER_OPTIONS)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(f"front door listening on http://{host}:{port}/{spec['stage']}/", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    try:
        asyncio.run(serve(spec, "127.0.0.1", int(spec["port"])))
    except MappingError as exc:
        print(f"front door: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
