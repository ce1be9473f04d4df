"""HTTP calls to a deployed API (API Gateway → ALB → gateway → vLLM), with timing.

The wire format is OpenAI's chat completions, streamed as server-sent events; the time to
first token and the token rate are measured here, on the client, as a user would see them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import LlmhostError

HEALTH_PATH = "health"
"""The gateway's readiness path (containers/gateway contract.HEALTH_PATH, without the slash)."""
API_KEY_HEADER = "x-api-key"
MIN_DECODE_SPAN_S = 0.05
"""API Gateway's API-key header; the gateway accepts it as well."""


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    """Ends with ``/``: the API stage URL (``.../prod/``) or a gateway's root."""
    api_key: str | None
    timeout_s: float = 120.0

    def url(self, path: str) -> str:
        return self.base_url + path.lstrip("/")

    def headers(self) -> dict[str, str]:
        return {API_KEY_HEADER: self.api_key} if self.api_key else {}


def endpoint(base_url: str, api_key: str | None, timeout_s: float = 120.0) -> Endpoint:
    """The API root from a URL given either way: the stage/gateway root, or an OpenAI-style base
    URL ending in ``/v1`` (the paths here carry their own ``v1/``)."""
    root = base_url.rstrip("/").removesuffix("/v1")
    return Endpoint(root + "/", api_key, timeout_s)


@dataclass(frozen=True)
class ChatResult:
    text: str
    streamed: bool
    total_s: float
    ttft_s: float | None
    """Request sent → first token printed; only measurable when streaming."""
    last_token_s: float | None
    completion_tokens: int
    finish_reason: str | None
    saw_done: bool

    @property
    def decode_rate(self) -> float | None:
        """Tokens per second after the first (streaming): (tokens − 1) / (last − first token time).

        None when it cannot be measured honestly: too few tokens, or tokens that arrived in one
        burst (less than MIN_DECODE_SPAN_S apart), where the ratio would say more about buffering
        than about generation.
        """
        if not self.streamed or self.ttft_s is None or self.last_token_s is None or self.completion_tokens < 2:
            return None
        span = self.last_token_s - self.ttft_s
        return (self.completion_tokens - 1) / span if span >= MIN_DECODE_SPAN_S else None

    @property
    def end_to_end_rate(self) -> float | None:
        """Completion tokens over the whole request, prefill included."""
        return self.completion_tokens / self.total_s if self.completion_tokens and self.total_s > 0 else None


class StreamTimer:
    """Times a streamed answer as the user sees it: first and last piece, relative to the request."""

    def __init__(self, on_text: Callable[[str], None]) -> None:
        self.on_text = on_text
        self.t0 = time.perf_counter()
        self.first: float | None = None
        self.last: float | None = None
        self.pieces: list[str] = []

    def piece(self, text: str) -> None:
        now = time.perf_counter() - self.t0
        self.first = now if self.first is None else self.first
        self.last = now
        self.pieces.append(text)
        self.on_text(text)

    def result(self, *, tokens: int, finish_reason: str | None, saw_done: bool) -> ChatResult:
        # Without a usage figure, count pieces: vLLM and TGI send one token per event.
        return ChatResult(
            "".join(self.pieces),
            True,
            time.perf_counter() - self.t0,
            self.first,
            self.last,
            tokens or len(self.pieces),
            finish_reason,
            saw_done,
        )


@contextmanager
def _http_errors(url: str, timeout_s: float) -> Iterator[None]:
    """httpx failures as one line each: unreachable, silent, broken."""
    try:
        yield
    except httpx.ConnectError as exc:
        raise LlmhostError(f"cannot reach {url}: {exc}") from None
    except httpx.TimeoutException:
        raise LlmhostError(f"no answer from {url} for {timeout_s:g} s") from None
    except httpx.HTTPError as exc:
        raise LlmhostError(f"request to {url} failed: {exc}") from None


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if body.get("message"):  # API Gateway's own errors: {"message": "Forbidden"}
            return str(body["message"])
    return json.dumps(body)[:200]


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    message = _error_message(response)
    hint = ""
    if response.status_code in (401, 403):
        hint = " (API key missing or not accepted: check --api-key or the stack's key)"
    raise LlmhostError(f"{response.request.url} answered {response.status_code}: {message}{hint}")


class Client:
    """One HTTP client for a command's calls; errors come out as :class:`LlmhostError`."""

    def __init__(self, ep: Endpoint) -> None:
        self.endpoint = ep
        self._http = httpx.Client(timeout=httpx.Timeout(ep.timeout_s, connect=10.0), headers=ep.headers())

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = self.endpoint.url(path)
        with _http_errors(url, self.endpoint.timeout_s):
            return self._http.request(method, url, **kwargs)

    def health(self) -> httpx.Response:
        return self._request("GET", HEALTH_PATH)

    def first_model(self) -> str:
        response = self._request("GET", "v1/models")
        _raise_for_status(response)
        models = [m["id"] for m in response.json().get("data", [])]
        if not models:
            raise LlmhostError(f"{self.endpoint.url('v1/models')} lists no model; pass --model")
        return str(models[0])

    def chat(
        self,
        model: str,
        prompt: str,
        *,
        stream: bool,
        max_tokens: int,
        on_text: Callable[[str], None] = lambda _: None,
    ) -> ChatResult:
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
            return self._chat_stream(body, on_text)
        t0 = time.perf_counter()
        response = self._request("POST", "v1/chat/completions", json=body)
        total = time.perf_counter() - t0
        _raise_for_status(response)
        data = response.json()
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
        on_text(text)
        tokens = int((data.get("usage") or {}).get("completion_tokens", 0))
        return ChatResult(text, False, total, None, None, tokens, choice.get("finish_reason"), False)

    def _chat_stream(self, body: dict[str, Any], on_text: Callable[[str], None]) -> ChatResult:
        url = self.endpoint.url("v1/chat/completions")
        timer = StreamTimer(on_text)
        usage_tokens = 0
        finish = None
        done = False
        with _http_errors(url, self.endpoint.timeout_s), self._http.stream("POST", url, json=body) as response:
            if response.status_code >= 400:
                response.read()
                _raise_for_status(response)
            for event in sse_data(response.iter_bytes()):
                if event == "[DONE]":
                    done = True
                    break
                data = json.loads(event)
                if "error" in data:
                    raise LlmhostError(f"{url} failed mid-stream: {data['error'].get('message', data['error'])}")
                if data.get("usage"):
                    usage_tokens = int(data["usage"].get("completion_tokens", 0))
                for choice in data.get("choices", []):
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        timer.piece(piece)
                    finish = choice.get("finish_reason") or finish
        return timer.result(tokens=usage_tokens, finish_reason=finish, saw_done=done)


def sse_data(chunks: Iterable[bytes]) -> Iterator[str]:
    """The ``data:`` payloads of a server-sent event stream, from raw byte chunks that may split a line
    anywhere (HTTP reads, SageMaker PayloadParts); comments such as heartbeats and other fields skipped."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            text = line.decode("utf-8", errors="replace").strip()
            if text.startswith("data:"):
                yield text[5:].strip()
    tail = buffer.decode("utf-8", errors="replace").strip()
    if tail.startswith("data:"):
        yield tail[5:].strip()
