"""The smoke suite of ``make local-check``: real clients through the local front door.

Each check takes the :class:`~tools.local.stack.Endpoint` and returns a one-line detail, or raises
``AssertionError`` (or the client's own error) saying what went wrong. The clients are the official
``openai`` SDK (as a user would configure it for API Gateway: the tenant's key in ``x-api-key``),
plain ``httpx`` for the gateway's simple API and the front door's own errors, and ``llmhost smoke``.
The weights are random, so the text is gibberish: where the output must have a shape (a named tool
call, a JSON schema), vLLM's structured outputs guarantee it, and ``auto`` is checked for a 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import openai
from prometheus_client.parser import text_string_to_metric_families

from .frontdoor import TokenBucket
from .stack import Endpoint

MAX_TOKENS = 12
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": ["Paris", "Lima"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
NAMED = {"type": "function", "function": {"name": "get_weather"}}
MESSAGES: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
STRUCTURED_MAX_TOKENS = 64
"""Room for the structured answers (``{"city": "Lima"}`` and the like) to close."""
GREEDY = 0.0
"""Temperature of the named tool calls: the random weights then give the same answer on every run of one
engine command line (vLLM-CPU does not hold a named call's arguments to their schema, so a sampled answer
could run a number past max_tokens and leave no parsable call; docs/local.md). Not for json_schema:
greedy there repeats whitespace until max_tokens."""


def tenant_key(ep: Endpoint) -> str:
    return next(iter(ep.keys.values()))


def client(ep: Endpoint, *, key: str | None = None, timeout: float = 60) -> openai.OpenAI:
    """The SDK as a tenant configures it: API Gateway reads ``x-api-key``; the SDK's own bearer is replaced
    by the front door's integration mapping before it reaches the gateway."""
    k = key or tenant_key(ep)
    return openai.OpenAI(base_url=ep.openai_base_url, api_key=k, default_headers={"x-api-key": k}, max_retries=0, timeout=timeout)


def _http(ep: Endpoint, **headers: str) -> httpx.Client:
    return httpx.Client(base_url=ep.stage_url, headers=headers, timeout=60)


# --------------------------------------------------------------------------- OpenAI routes


def models(ep: Endpoint) -> str:
    ids = [m.id for m in client(ep).models.list().data]
    assert ep.served_model in ids, f"{ep.served_model!r} not in {ids}"
    return f"lists {ids}"


def chat(ep: Endpoint) -> str:
    r = client(ep).chat.completions.create(model=ep.served_model, messages=MESSAGES, max_tokens=MAX_TOKENS)
    assert r.usage is not None and r.usage.completion_tokens >= 1, r
    assert isinstance(r.choices[0].message.content, str)
    return f"{r.usage.completion_tokens} tokens, finish_reason {r.choices[0].finish_reason}"


def chat_stream(ep: Endpoint) -> str:
    chunks = list(
        client(ep).chat.completions.create(
            model=ep.served_model, messages=MESSAGES, max_tokens=MAX_TOKENS, stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
    )
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens >= 1, f"last chunk has no usage: {chunks[-1]}"
    return f"{len(chunks)} chunks, usage {usage.completion_tokens} tokens in the last"


def completions(ep: Endpoint) -> str:
    r = client(ep).completions.create(model=ep.served_model, prompt="The gateway", max_tokens=MAX_TOKENS)
    assert r.usage is not None and r.usage.completion_tokens >= 1
    return f"{r.usage.completion_tokens} tokens"


def simple_chat(ep: Endpoint) -> str:
    with _http(ep, **{"x-api-key": tenant_key(ep)}) as http:
        r = http.post("v1/chat", json={"model": ep.served_model, "prompt": "hello", "max_tokens": MAX_TOKENS})
    assert r.status_code == 200, f"{r.status_code} {r.text[:200]}"
    assert isinstance(r.json()["content"], str)
    return f"content of {len(r.json()['content'])} chars"


def simple_chat_stream(ep: Endpoint) -> str:
    with _http(ep, **{"x-api-key": tenant_key(ep)}) as http:
        with http.stream("POST", "v1/chat/stream", json={"model": ep.served_model, "prompt": "hello", "max_tokens": MAX_TOKENS}) as r:
            assert r.status_code == 200, f"{r.status_code} {r.read()[:200]!r}"
            data = [line[5:].strip() for line in r.iter_lines() if line.startswith("data:")]
    assert data and data[-1] == "[DONE]", data[-3:]
    return f"{len(data)} events ending [DONE]"


# --------------------------------------------------------------------------- tool calling, structured output


def tool_auto(ep: Endpoint) -> str:
    r = client(ep).chat.completions.create(
        model=ep.served_model, messages=MESSAGES, tools=[WEATHER_TOOL], tool_choice="auto", max_tokens=MAX_TOKENS
    )
    return f"200, finish_reason {r.choices[0].finish_reason}"


def tool_auto_stream(ep: Endpoint) -> str:
    chunks = list(
        client(ep).chat.completions.create(
            model=ep.served_model, messages=MESSAGES, tools=[WEATHER_TOOL], tool_choice="auto",
            max_tokens=MAX_TOKENS, stream=True,
        )  # fmt: skip
    )
    return f"200, {len(chunks)} chunks"


def _check_weather_call(name: str | None, arguments: str) -> str:
    # The answer is a call of the named function. Not asserted: its arguments, which vLLM-CPU 0.32
    # does not hold to the parameters' schema for a named tool_choice (seen: `0.0`, a number that
    # runs past max_tokens, and, streamed, no argument text at all), while response_format
    # json_schema is held to its schema (below). With random weights only the call's shape is ours.
    assert name == "get_weather", name
    return f"get_weather({arguments})"


def tool_named(ep: Endpoint) -> str:
    r = client(ep).chat.completions.create(
        model=ep.served_model, messages=MESSAGES, tools=[WEATHER_TOOL], tool_choice=NAMED, max_tokens=STRUCTURED_MAX_TOKENS,
        temperature=GREEDY,
    )
    calls = r.choices[0].message.tool_calls
    assert calls, f"no tool call: {r.choices[0].message}"
    return _check_weather_call(calls[0].function.name, calls[0].function.arguments)


def tool_named_stream(ep: Endpoint) -> str:
    name, arguments = None, ""
    for chunk in client(ep).chat.completions.create(
        model=ep.served_model, messages=MESSAGES, tools=[WEATHER_TOOL], tool_choice=NAMED,
        max_tokens=STRUCTURED_MAX_TOKENS, temperature=GREEDY, stream=True,
    ):  # fmt: skip
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                if call.function is not None:
                    name = call.function.name or name
                    arguments += call.function.arguments or ""
    return _check_weather_call(name, arguments)


def json_schema(ep: Endpoint) -> str:
    schema = WEATHER_TOOL["function"]["parameters"]
    r = client(ep).chat.completions.create(
        model=ep.served_model, messages=MESSAGES, max_tokens=STRUCTURED_MAX_TOKENS,
        response_format={"type": "json_schema", "json_schema": {"name": "weather", "schema": schema, "strict": True}},
    )  # fmt: skip
    content = r.choices[0].message.content or ""
    value = json.loads(content)
    assert value.get("city") in ("Paris", "Lima"), value
    return json.dumps(value)


def responses(ep: Endpoint) -> str:
    r = client(ep).responses.create(model=ep.served_model, input="hello", max_output_tokens=16)
    assert r.status == "completed" or r.output, r
    return f"{r.usage.output_tokens if r.usage else '?'} output tokens"


def responses_stream(ep: Endpoint) -> str:
    events = [e.type for e in client(ep).responses.create(model=ep.served_model, input="hello", max_output_tokens=16, stream=True)]
    assert events and events[-1] == "response.completed", events[-3:]
    return f"{len(events)} events ending response.completed"


# --------------------------------------------------------------------------- the front door's own answers


def _forbidden(ep: Endpoint, headers: dict[str, str]) -> str:
    with _http(ep, **headers) as http:
        r = http.post("v1/chat/completions", json={"model": ep.served_model, "messages": MESSAGES, "max_tokens": 4})
    assert r.status_code == 403 and r.json() == {"message": "Forbidden"}, f"{r.status_code} {r.text[:200]}"
    return '403 {"message":"Forbidden"}'


def wrong_key(ep: Endpoint) -> str:
    return _forbidden(ep, {"x-api-key": "not-a-key", "Authorization": "Bearer not-a-key"})


def missing_key(ep: Endpoint) -> str:
    return _forbidden(ep, {"Authorization": f"Bearer {tenant_key(ep)}"})


def llmhost_smoke(ep: Endpoint) -> str:
    from llmhost.cli import run

    out = io.StringIO()  # its table and error line: one line here, its failed rows if it fails
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = run(["smoke", "--url", ep.stage_url, "--api-key", tenant_key(ep), "--model", ep.served_model, "--timeout", "60"])
    lines = [" ".join(line.replace("│", " ").split()) for line in out.getvalue().splitlines()]
    assert code == 0, f"llmhost smoke exited {code}: " + " | ".join(line for line in lines if "FAIL" in line or "error" in line)
    return "llmhost smoke passed: " + ", ".join(line.split()[0] for line in lines if " pass " in f" {line} ")


# --------------------------------------------------------------------------- a client that leaves


ABANDONED_MAX_TOKENS = 4000
"""Far more than the engine generates while the check runs (about 1,000 tokens/s for one stream on the
CPU engine here): the request is still generating when the client leaves."""
ABORT_WITHIN_S = 1.0
DISCONNECT_ATTEMPTS = 3


def engine_metric(engine: httpx.Client, ep: Endpoint, sample: str) -> float:
    """One vLLM sample, summed over its label sets for the served model, read from the engine's own port.
    ``name[]`` has prometheus_client render only that sample: the whole page takes up to seconds to
    render while the engine streams on 2 loaded cores, which is longer than the second measured."""
    r = engine.get(ep.vllm_url + "/metrics", params={"name[]": sample})
    r.raise_for_status()
    values = [
        s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
        if s.name == sample and s.labels.get("model_name") == ep.served_model
    ]
    assert values, f"vLLM's /metrics has no {sample} for model {ep.served_model!r}"
    return sum(values)


def _first_token(lines: Iterator[str]) -> bool:
    """Read SSE lines until one carries generated text; False if the stream ends first."""
    for line in lines:
        if line.startswith("data: {"):
            choices = json.loads(line[6:]).get("choices") or [{}]
            if (choices[0].get("delta") or {}).get("content"):
                return True
    return False


def _abandoned_stream(ep: Endpoint, engine: httpx.Client) -> float | None:
    """One client that leaves mid-stream: seconds from its leaving until vLLM's running requests read 0;
    None when vLLM had already run the request to its end before the client left (nothing to abort).
    Fails if vLLM finished the request after the client left, i.e. did not abort it."""
    running, finished = "vllm:num_requests_running", "vllm:request_success_total"
    body = {"model": ep.served_model, "messages": MESSAGES, "max_tokens": ABANDONED_MAX_TOKENS, "ignore_eos": True, "stream": True}
    t0 = time.monotonic()
    while engine_metric(engine, ep, running) > 0:
        assert time.monotonic() - t0 < 10, "vLLM still runs an earlier request: nothing to measure against"
        time.sleep(0.1)
    finished_before = engine_metric(engine, ep, finished)  # every finish reason: vLLM counts none of a client's aborts
    with _http(ep, **{"x-api-key": tenant_key(ep)}) as http, http.stream("POST", "v1/chat/completions", json=body) as r:
        assert r.status_code == 200, f"{r.status_code} {r.read()[:200]!r}"
        assert _first_token(r.iter_lines()), "the stream ended before its first token"
    # Leaving the blocks closed the connection mid-stream.
    t_left = time.monotonic()
    if engine_metric(engine, ep, finished) > finished_before:
        return None  # seen with CPU-bound processes beside it: all 4,000 tokens out before the client read one
    while (n := engine_metric(engine, ep, running)) > 0:
        assert time.monotonic() - t_left < 10, f"vLLM still runs {n:g} request(s) 10 s after the client left"
        time.sleep(0.02)
    seconds = time.monotonic() - t_left
    done = engine_metric(engine, ep, finished) - finished_before
    assert done == 0, f"vLLM finished {done:g} request(s) of {ABANDONED_MAX_TOKENS} tokens after the client left: it did not abort it"
    return seconds


def disconnect(ep: Endpoint) -> str:
    """A client that goes away mid-stream: the front door, then the gateway, close their upstream
    connections and vLLM aborts the request: its running requests are 0 within 1 s, and it did not
    finish it. The precondition is the first token at the client (the request is then running, not
    waiting in vLLM's queue); the measure ends when the engine's answer 0 arrives, so it includes the
    read. Up to :data:`DISCONNECT_ATTEMPTS` clients, until one is within 1 s: on the shared 2-core machine
    an answer now and then waits for the CPU longer than the abort takes, and a starved client may read
    its first token only after vLLM has finished the request (docs/local.md); a request vLLM finishes
    after the client left fails at once."""
    times: list[float | None] = []
    with httpx.Client(timeout=10) as engine:
        while len(times) < DISCONNECT_ATTEMPTS and (not times or times[-1] is None or times[-1] > ABORT_WITHIN_S):
            times.append(_abandoned_stream(ep, engine))
    seen = ", ".join("finished before the client left" if t is None else f"{t:.2f} s" for t in times)
    assert times[-1] is not None and times[-1] <= ABORT_WITHIN_S, f"no client left mid-stream with vLLM's running requests 0 within {ABORT_WITHIN_S:g} s: {seen}"
    return f"running requests 0 after {seen}; aborted, not finished"


def burst_429(ep: Endpoint) -> str:
    """Twice the tenant's usage-plan burst at once: API Gateway answers the excess 429."""
    tenant, key = next(iter(ep.keys.items()))
    n = ep.burst_limit[tenant] * 2 + 5

    async def fire() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=ep.stage_url, headers={"x-api-key": key}, limits=limits, timeout=60) as http:
            return list(await asyncio.gather(*(http.get("v1/models") for _ in range(n))))

    responses = asyncio.run(fire())
    throttled = [r for r in responses if r.status_code == 429]
    assert throttled, f"no 429 in {n} simultaneous requests (burst {ep.burst_limit[tenant]}): {[r.status_code for r in responses][:20]}"
    assert all(r.json() == {"message": "Too Many Requests"} for r in throttled), throttled[0].text
    return f"{len(throttled)} of {n} simultaneous requests got 429 (burst {ep.burst_limit[tenant]})"


CHECKS: dict[str, Callable[[Endpoint], str]] = {
    f.__name__: f
    for f in (
        models, chat, chat_stream, completions, simple_chat, simple_chat_stream,
        tool_auto, tool_auto_stream, tool_named, tool_named_stream, json_schema, responses, responses_stream,
        wrong_key, missing_key, llmhost_smoke, disconnect, burst_429,
    )
}  # fmt: skip
"""In order; ``burst_429`` is last because it empties the tenant's bucket."""

KEYED_REQUESTS: dict[str, int] = {"wrong_key": 0, "missing_key": 0, "llmhost_smoke": 3, "disconnect": DISCONNECT_ATTEMPTS, "burst_429": 0}
"""Requests a check makes with the tenant's key, where not one: what its usage plan counts. ``burst_429``
is meant to exceed it."""


@dataclass(frozen=True)
class Outcome:
    name: str
    ok: bool
    detail: str
    seconds: float


PACE_BURST_SHARE, PACE_RATE_SHARE = 0.5, 0.8
"""The suite's share of the tenant's burst and rate: room for requests that reach the front door later
than they were counted here (on a loaded machine, by tenths of a second)."""


def run(ep: Endpoint, names: Sequence[str] | None = None) -> Iterator[Outcome]:
    """The checks in order, each outcome as it comes; a failed check does not stop the next.

    The suite keeps to the tenant's usage plan as a well-behaved client does: before each check it
    waits until a token bucket smaller than the plan's (:data:`PACE_BURST_SHARE`) holds the requests the
    check makes. Back to back, the checks can exceed dev's plan (5 requests/s, burst 10)."""
    tenant = next(iter(ep.keys))
    bucket = TokenBucket(ep.rate_limit[tenant] * PACE_RATE_SHARE, max(1, int(ep.burst_limit[tenant] * PACE_BURST_SHARE)))
    for name in names or list(CHECKS):
        for _ in range(KEYED_REQUESTS.get(name, 1)):
            while not bucket.take():
                time.sleep(1 / bucket.rate / 4)
        t0 = time.monotonic()
        try:
            detail, ok = CHECKS[name](ep), True
        except Exception as exc:  # noqa: BLE001 - a failed check is reported, and the next one runs
            detail, ok = f"{type(exc).__name__}: {exc}", False
        yield Outcome(name, ok, detail, time.monotonic() - t0)
