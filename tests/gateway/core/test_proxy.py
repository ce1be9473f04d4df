"""The streaming hot path under faults: client disconnects (proved with vLLM's own
/metrics), heartbeats, a backend killed mid-stream, a slow backend, a backend down at
start, the per-key limit, load shedding, and graceful shutdown."""

from __future__ import annotations

import json
import signal
import socket
import time

import openai
import pytest

from tests.fixtures.engine import free_port, http_get, vllm_metric
from tests.gateway.helpers import error_of, open_stream, request, sse_events, wait_until

MSG = [{"role": "user", "content": "hello"}]
LONG = {"messages": MSG, "max_tokens": 1000, "ignore_eos": True}


def _running(engine) -> float:  # type: ignore[no-untyped-def]
    return vllm_metric(engine.base_url, "vllm:num_requests_running")


def _finished(engine) -> float:  # type: ignore[no-untyped-def]
    """Requests vLLM finished by itself (stop/length/...), i.e. not aborted."""
    total = 0.0
    for line in http_get(engine.base_url + "/metrics?name%5B%5D=vllm:request_success_total")[1].decode().splitlines():
        if line.startswith("vllm:request_success_total{") and 'finished_reason="abort"' not in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _generated(engine) -> float:  # type: ignore[no-untyped-def]
    return vllm_metric(engine.base_url, "vllm:generation_tokens_total")


def _assert_aborted(engine, finished_before: float, generated_before: float) -> None:  # type: ignore[no-untyped-def]
    assert wait_until(lambda: _running(engine) == 0, timeout=10), "vLLM kept generating after the client left"
    time.sleep(0.3)
    assert _running(engine) == 0
    # it did not run to its 1000 tokens: vLLM aborted it, it did not finish it
    assert _finished(engine) == finished_before
    assert _generated(engine) - generated_before < LONG["max_tokens"]


def test_client_disconnect_aborts_a_stream_in_vllm(gateway_server, vllm_engine) -> None:  # type: ignore[no-untyped-def]
    assert wait_until(lambda: _running(vllm_engine) == 0)
    finished, generated = _finished(vllm_engine), _generated(vllm_engine)
    c, r = open_stream(gateway_server.base_url, "/v1/chat/completions",
                       {**LONG, "model": vllm_engine.model, "stream": True}, gateway_server.api_key)
    it = sse_events(r)
    for _ in range(3):
        next(it)
    assert _running(vllm_engine) == 1
    c.sock.shutdown(socket.SHUT_RDWR)
    c.close()
    _assert_aborted(vllm_engine, finished, generated)


def test_client_disconnect_aborts_a_non_streaming_call_in_vllm(gateway_server, vllm_engine) -> None:  # type: ignore[no-untyped-def]
    assert wait_until(lambda: _running(vllm_engine) == 0)
    finished, generated = _finished(vllm_engine), _generated(vllm_engine)
    s = socket.create_connection(("127.0.0.1", gateway_server.port))
    body = json.dumps({**LONG, "model": vllm_engine.model}).encode()
    s.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        + f"authorization: Bearer {gateway_server.api_key}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    assert wait_until(lambda: _running(vllm_engine) == 1, timeout=10)
    s.close()
    _assert_aborted(vllm_engine, finished, generated)
    def recs() -> list[dict]:  # type: ignore[type-arg]
        return [json.loads(x) for x in gateway_server.log.read_text().splitlines() if '"client_disconnected":true' in x]

    assert wait_until(lambda: any(not r["stream"] for r in recs()), timeout=5)


def test_heartbeats_while_waiting_for_the_first_token(start_fake_upstream, start_gateway) -> None:  # type: ignore[no-untyped-def]
    fake = start_fake_upstream("--ttft-ms", "1500", "--chunks", "3")
    gw = start_gateway(fake.base_url, heartbeat_interval_s=0.2)
    c, r = open_stream(gw.base_url, "/v1/chat/completions", {"model": "fake", "messages": MSG, "stream": True})
    events = list(sse_events(r))
    c.close()
    first_data = next(i for i, e in enumerate(events) if e.startswith(b"data:"))
    assert first_data >= 3 and all(e == b": ping" for e in events[:first_data])
    assert events[-1] == b"data: [DONE]"
    # the SDK ignores SSE comments
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key="x", max_retries=0)
    chunks = list(client.chat.completions.create(model="fake", messages=MSG, stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == "toktoktok"


def test_backend_killed_mid_stream_ends_with_an_error_event(start_fake_upstream, start_gateway) -> None:  # type: ignore[no-untyped-def]
    fake = start_fake_upstream("--interval-ms", "50", "--chunks", "400")
    gw = start_gateway(fake.base_url)
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key="x", max_retries=0)
    stream = client.chat.completions.create(model="fake", messages=MSG, stream=True)
    got = 0
    with pytest.raises(openai.APIError) as ei:
        for _ in stream:
            got += 1
            if got == 3:
                fake.kill()
    assert 3 <= got < 400
    assert "backend failure" in str(ei.value.message)
    # raw: the stream ends with one error event then [DONE]
    fake2 = start_fake_upstream("--interval-ms", "50", "--chunks", "400")
    gw2 = start_gateway(fake2.base_url)
    c, r = open_stream(gw2.base_url, "/v1/chat/completions", {"model": "fake", "messages": MSG, "stream": True})
    it = sse_events(r)
    for _ in range(3):
        next(it)
    fake2.kill()
    rest = list(it)
    c.close()
    assert rest[-1] == b"data: [DONE]"
    err = error_of(rest[-2][len(b"data: "):])
    assert err["code"] == "backend_disconnected"
    def logged() -> list[dict]:  # type: ignore[type-arg]
        return [json.loads(x) for x in gw2.log.read_text().splitlines() if '"gateway.request"' in x]

    assert wait_until(lambda: len(logged()) == 1, timeout=5)
    assert logged()[-1]["error"] == "backend_disconnected" and logged()[-1]["Errors"] == 1


def test_slow_backend_read_timeout(start_fake_upstream, start_gateway) -> None:  # type: ignore[no-untyped-def]
    fake = start_fake_upstream("--ttft-ms", "3000", "--chunks", "2")
    gw = start_gateway(fake.base_url, read_timeout_s=0.5, heartbeat_interval_s=0)
    st, _, out = request(gw.base_url, "POST", "/v1/chat/completions", {"model": "fake", "messages": MSG})
    assert st == 504 and error_of(out)["code"] == "backend_timeout"
    c, r = open_stream(gw.base_url, "/v1/chat/completions", {"model": "fake", "messages": MSG, "stream": True})
    events = list(sse_events(r))
    c.close()
    assert events[-1] == b"data: [DONE]" and error_of(events[-2][6:])["code"] == "backend_timeout"
    # a slow but live backend is fine with the default timeouts
    gw_ok = start_gateway(fake.base_url)
    st, _, out = request(gw_ok.base_url, "POST", "/v1/chat/completions", {"model": "fake", "messages": MSG})
    assert st == 200 and json.loads(out)["choices"][0]["message"]["content"] == "toktok"


def test_backend_down_at_start_then_recovers(start_fake_upstream, start_gateway) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    gw = start_gateway(f"http://127.0.0.1:{port}", circuit_failure_threshold=2, circuit_reset_s=1)
    assert request(gw.base_url, "GET", "/live")[0] == 200
    st, _, out = request(gw.base_url, "GET", "/health")
    assert st == 503 and "backend unreachable" in error_of(out)["message"]
    body = {"model": "fake", "messages": MSG}
    st1, _, out1 = request(gw.base_url, "POST", "/v1/chat/completions", body)
    assert st1 == 502 and "backend unavailable" in error_of(out1)["message"]
    request(gw.base_url, "POST", "/v1/chat/completions", body)
    st3, h3, out3 = request(gw.base_url, "POST", "/v1/chat/completions", body)
    assert st3 == 503 and error_of(out3)["code"] == "backend_circuit_open" and "retry-after" in h3
    start_fake_upstream("--chunks", "2", port=port)  # the backend comes up on the configured port
    assert wait_until(lambda: request(gw.base_url, "GET", "/health")[0] == 200, timeout=10)
    assert wait_until(lambda: request(gw.base_url, "POST", "/v1/chat/completions", body)[0] == 200, timeout=5)


def test_per_key_concurrency_limit_429(start_fake_upstream, start_gateway) -> None:  # type: ignore[no-untyped-def]
    fake = start_fake_upstream("--interval-ms", "50", "--chunks", "100")
    gw = start_gateway(fake.base_url, api_keys={"a": "key-a", "b": "key-b"}, max_concurrency_per_key=2)
    held = [open_stream(gw.base_url, "/v1/chat/completions", {"model": "fake", "messages": MSG, "stream": True}, "key-a") for _ in range(2)]
    st, h, out = request(gw.base_url, "POST", "/v1/chat/completions", {"model": "fake", "messages": MSG, "max_tokens": 1}, key="key-a")
    assert st == 429 and h["retry-after"] == "1" and error_of(out)["type"] == "rate_limit_error"
    st, _, _ = request(gw.base_url, "POST", "/v1/chat/completions", {"model": "fake", "messages": MSG, "max_tokens": 1}, key="key-b")
    assert st == 200
    for c, _ in held:
        c.close()
    assert wait_until(
        lambda: request(gw.base_url, "POST", "/v1/chat/completions", {"model": "fake", "messages": MSG, "max_tokens": 1}, key="key-a")[0] == 200,
        timeout=5,
    )


def test_load_shedding_503_when_backend_queue_is_deep(start_fake_upstream, start_gateway) -> None:  # type: ignore[no-untyped-def]
    fake = start_fake_upstream("--waiting", "50")
    gw = start_gateway(fake.base_url, max_queue_depth=10, retry_after_s=3)
    st, h, out = request(gw.base_url, "POST", "/v1/chat/completions", {"model": "fake", "messages": MSG})
    assert st == 503 and h["retry-after"] == "3"
    err = error_of(out)
    assert err["code"] == "overloaded" and "50" in err["message"]
    gw2 = start_gateway(fake.base_url, max_queue_depth=100)
    assert request(gw2.base_url, "POST", "/v1/chat/completions", {"model": "fake", "messages": MSG, "max_tokens": 1})[0] == 200


def test_graceful_shutdown_finishes_streams_then_exits(start_fake_upstream, start_gateway) -> None:  # type: ignore[no-untyped-def]
    fake = start_fake_upstream("--interval-ms", "50", "--chunks", "30")
    gw = start_gateway(fake.base_url, drain_timeout_s=20)
    c, r = open_stream(gw.base_url, "/v1/chat/completions", {"model": "fake", "messages": MSG, "stream": True})
    it = sse_events(r)
    next(it)
    t0 = time.monotonic()
    gw.signal(signal.SIGTERM)
    assert wait_until(lambda: request(gw.base_url, "GET", "/health")[0] == 503, timeout=2)
    st, _, out = request(gw.base_url, "GET", "/health")
    assert "draining" in error_of(out)["message"]
    st, _, out = request(gw.base_url, "POST", "/v1/chat/completions", {"model": "fake", "messages": MSG})
    assert st == 503 and error_of(out)["code"] == "draining"
    rest = list(it)
    c.close()
    assert rest[-1] == b"data: [DONE]" and len([e for e in rest if b'"tok"' in e]) == 30
    gw.popen.wait(timeout=20)
    assert gw.popen.returncode == 0
    assert time.monotonic() - t0 < 20


def test_drain_deadline_ends_streams_with_an_error_event_and_exits_at_once(start_fake_upstream, start_gateway) -> None:  # type: ignore[no-untyped-def]
    """Issue 13 defect 3: with a 1 s drain the process took ~7.5 s (uvicorn waited drain + 5 s more),
    streams cut at the end got no error event and no [DONE], and the log filled with tracebacks."""
    fake = start_fake_upstream("--interval-ms", "100", "--chunks", "1000")
    gw = start_gateway(fake.base_url, drain_timeout_s=1)
    c, r = open_stream(gw.base_url, "/v1/chat/completions", {"model": "fake", "messages": MSG, "stream": True})
    it = sse_events(r)
    next(it)
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key="x", max_retries=0)
    sdk_stream = client.chat.completions.create(model="fake", messages=MSG, stream=True)
    next(iter(sdk_stream))
    t0 = time.monotonic()
    gw.signal(signal.SIGTERM)
    with pytest.raises(openai.APIError) as ei:
        for _ in sdk_stream:
            pass
    assert "shutting down" in str(ei.value.message)
    rest = list(it)
    c.close()
    assert rest[-1] == b"data: [DONE]"
    assert error_of(rest[-2][len(b"data: "):])["code"] == "shutting_down"
    gw.popen.wait(timeout=15)
    elapsed = time.monotonic() - t0
    assert gw.popen.returncode == 0
    assert elapsed < 1 + 3, f"shutdown took {elapsed:.1f} s after a 1 s drain"
    log = gw.log.read_text()
    assert "Traceback" not in log, log[-3000:]
    recs = [json.loads(x) for x in log.splitlines() if '"gateway.request"' in x]
    assert len(recs) == 2 and all(x["error"] == "shutting_down" for x in recs)


def test_shutdown_fits_the_ecs_stop_timeout() -> None:
    from containers.gateway.app.core import contract

    drain = contract.drain_timeout_for_stop_timeout(120)  # app.py: ECS's maximum stop_timeout
    assert drain >= 60 and drain + contract.SHUTDOWN_TAIL_S <= 120 - 10
    assert contract.ABORT_GRACE_S + 2 < contract.SHUTDOWN_TAIL_S  # abort, then uvicorn's 2 s


def test_fallback_serves_while_the_primary_circuit_is_open(start_fake_upstream, start_gateway) -> None:  # type: ignore[no-untyped-def]
    fallback = start_fake_upstream("--model", "other-model", "--chunks", "2")
    gw = start_gateway(
        f"http://127.0.0.1:{free_port()}", fallback_url=fallback.base_url + "/v1", fallback_model="other-model",
        fallback_api_key="sk-fallback", served_model_name="tiny", circuit_failure_threshold=1, circuit_reset_s=60,
    )
    st, _, out = request(gw.base_url, "GET", "/health")
    assert st == 200 and "fallback" in json.loads(out)["reason"]
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key="x", max_retries=0)
    r = client.chat.completions.create(model="tiny", messages=MSG, max_tokens=2)
    assert r.model == "other-model" and r.choices[0].message.content == "toktok"
    chunks = list(client.chat.completions.create(model="tiny", messages=MSG, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "toktok"
    recs = [json.loads(x) for x in gw.log.read_text().splitlines() if '"gateway.request"' in x]
    assert recs and all(x["upstream"] == "fallback" for x in recs if x["status"] == 200)
