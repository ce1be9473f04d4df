"""`llmhost smoke`: health, one completion, one stream, each checked; for post-deploy pipelines."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .client import Client, Endpoint
from .errors import LlmhostError

PROMPT = "Reply with one short sentence: is the service up?"
MAX_TOKENS = 16


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    seconds: float
    detail: str


def _timed(name: str, fn: Callable[[], str]) -> Check:
    """Run one check; its detail on success, the one-line error on failure."""
    t0 = time.perf_counter()
    try:
        detail = fn()
    except LlmhostError as exc:
        return Check(name, False, time.perf_counter() - t0, str(exc))
    return Check(name, True, time.perf_counter() - t0, detail)


def run_checks(ep: Endpoint, model: str | None) -> list[Check]:
    """The three checks, in order; each runs even if an earlier one failed, so the report is whole."""
    with Client(ep) as client:

        def health() -> str:
            response = client.health()
            if response.status_code != 200:
                raise LlmhostError(
                    f"{response.request.url} answered {response.status_code}: {response.text.strip()[:160]}"
                )
            return f"{response.status_code} {response.text.strip()[:80]}"

        def completion() -> str:
            name = model or client.first_model()
            r = client.chat(name, PROMPT, stream=False, max_tokens=MAX_TOKENS)
            if r.completion_tokens < 1 or r.finish_reason not in {"stop", "length"}:
                raise LlmhostError(f"answer without tokens or finish_reason ({r.completion_tokens}, {r.finish_reason})")
            return f"{r.completion_tokens} tokens, finish_reason {r.finish_reason}"

        def stream() -> str:
            name = model or client.first_model()
            r = client.chat(name, PROMPT, stream=True, max_tokens=MAX_TOKENS)
            if not r.saw_done:
                raise LlmhostError("stream ended without data: [DONE]")
            if r.completion_tokens < 1:
                raise LlmhostError("stream carried no token")
            return (
                f"{r.completion_tokens} tokens, first after {r.ttft_s:.3f} s"
                if r.ttft_s is not None
                else f"{r.completion_tokens} tokens"
            )

        return [_timed("health", health), _timed("completion", completion), _timed("stream", stream)]
