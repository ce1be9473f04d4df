"""`llmhost chat` and `llmhost smoke` over real HTTP: the gateway in front of the vLLM CPU engine
(session fixtures of tests/fixtures/engine.py), found directly or through stack outputs (moto)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from llmhost import outputs

from tests.fixtures.engine import Proc, free_port

from .conftest import REGION, deploy_stack


def _direct(gw: Proc) -> list[str]:
    return ["--url", gw.base_url, "--api-key", gw.api_key or ""]


def test_chat(gateway_server: Proc, llmhost: Callable[..., Any]) -> None:
    r = llmhost("chat", *_direct(gateway_server), "--model", "tiny", "--max-tokens", "8", "Say hello")
    assert r.code == 0, r.err
    assert r.out.endswith("\n") and r.out.strip()  # the (random-weight) answer
    tokens = int(re.search(r"(\d+) tokens in", r.err).group(1))  # type: ignore[union-attr]
    assert 1 <= tokens <= 8
    assert "tokens/s end to end" in r.err and not re.search(r"time to first token \d", r.err)


def test_chat_stream_times_first_token(gateway_server: Proc, llmhost: Callable[..., Any]) -> None:
    # No --model: the first model the API lists (the engine serves "tiny").
    r = llmhost("chat", *_direct(gateway_server), "--stream", "--max-tokens", "12", "Count to three")
    assert r.code == 0, r.err
    m = re.search(r"time to first token (\d+\.\d+) s · (\d+) tokens in (\d+\.\d+) s", r.err)
    assert m, (r.out, r.err)
    ttft, tokens, total = float(m.group(1)), int(m.group(2)), float(m.group(3))
    assert 0 < ttft <= total and 1 <= tokens <= 12, (r.out, r.err)
    if tokens > 1:  # the CPU engine sometimes sends a whole answer in one burst: no honest rate then
        assert "tokens/s after the first" in r.err or "tokens arrived in one burst" in r.err, r.err


def test_chat_rejected_key_and_unreachable(gateway_server: Proc, llmhost: Callable[..., Any]) -> None:
    r = llmhost("chat", "--url", gateway_server.base_url, "--api-key", "sk-wrong", "--model", "tiny", "hi")
    assert r.code == 1
    assert re.fullmatch(
        r"llmhost: error: http://127\.0\.0\.1:\d+/v1/chat/completions answered 401: .+ \(API key .+\)\n", r.err
    )
    port = free_port()
    r = llmhost(
        "chat", "--url", f"http://127.0.0.1:{port}/prod/", "--api-key", "k", "--model", "tiny", "--stream", "hi"
    )
    assert r.code == 1 and r.err.startswith(
        f"llmhost: error: cannot reach http://127.0.0.1:{port}/prod/v1/chat/completions"
    )


def test_smoke_passes(gateway_server: Proc, llmhost: Callable[..., Any]) -> None:
    r = llmhost("smoke", *_direct(gateway_server), "--model", "tiny")
    assert r.code == 0, r.out + r.err
    for check in ("health", "completion", "stream"):
        assert re.search(rf"│ {check}\s+│ pass", r.out), r.out
    assert "finish_reason" in r.out and "first after" in r.out


def test_smoke_fails_when_unreachable(llmhost: Callable[..., Any]) -> None:
    r = llmhost(
        "smoke", "--url", f"http://127.0.0.1:{free_port()}", "--api-key", "k", "--model", "tiny", "--timeout", "5"
    )
    assert r.code == 1
    assert r.out.count("FAIL") == 3
    assert r.err.strip() == "llmhost: error: smoke test failed: health, completion, stream (3 of 3 checks)"


def test_smoke_fails_with_a_bad_key(gateway_server: Proc, llmhost: Callable[..., Any]) -> None:
    r = llmhost("smoke", "--url", gateway_server.base_url, "--api-key", "sk-wrong", "--model", "tiny")
    assert r.code == 1
    # /health needs no key; the completion and the stream are refused.
    assert re.search(r"│ health\s+│ pass", r.out) and "smoke test failed: completion, stream (2 of 3 checks)" in r.err


@pytest.mark.usefixtures("aws")
def test_chat_and_smoke_found_through_stack_outputs(
    vllm_engine: Proc, start_gateway: Callable[..., Proc], llmhost: Callable[..., Any], write_env: Callable[..., Path]
) -> None:
    # API Gateway keys are at least 20 characters: a gateway of its own with such a key.
    api_key = "sk-llmhost-ops-test-key-0001"
    gateway = start_gateway(vllm_engine.base_url, api_keys={"platform-dev": api_key})
    write_env("dev", model={"served_name": "tiny"})
    apigw = boto3.client("apigateway", region_name=REGION)
    key = apigw.create_api_key(name="platform-dev", value=api_key, enabled=True)
    deploy_stack("dev-api", {outputs.API_URL: gateway.base_url + "/", outputs.API_KEY_IDS: key["id"]})
    r = llmhost("chat", "--env", "dev", "--stream", "--max-tokens", "6", "Hello")
    assert r.code == 0, r.err
    assert "time to first token" in r.err
    r = llmhost("smoke", "--env", "dev")
    assert r.code == 0, r.out + r.err
    assert f"smoke test of {gateway.base_url}/" in r.out


@pytest.mark.parametrize("suffix,stream", [("/v1", "--no-stream"), ("/v1/", "--stream")])
def test_chat_with_an_openai_style_base_url(
    start_fake_upstream: Callable[..., Proc], llmhost: Callable[..., Any], suffix: str, stream: str
) -> None:
    """`--url http://host/v1` (the OpenAI SDK's convention) reaches /v1/models, not /v1/v1/models.

    Against the small OpenAI-format server of bench/gateway over loopback: no engine needed."""
    upstream = start_fake_upstream("--chunks", "3")
    r = llmhost("chat", "--url", upstream.base_url + suffix, "--api-key", "k", "--max-tokens", "3", stream, "hi")
    assert r.code == 0, r.err
    assert "/v1/v1/" not in r.err and "3 tokens in" in r.err
