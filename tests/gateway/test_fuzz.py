"""Property-based fuzzing of the gateway's own OpenAPI document (schemathesis +
hypothesis): whatever the request, the gateway answers without a 5xx of its own,
and every 4xx is an OpenAI-format error.

The gateway runs in front of the fake upstream (bench/gateway/fake_upstream.py),
which accepts anything well-formed: any 5xx here is the gateway's fault."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from containers.gateway.app.core.config import Settings
from containers.gateway.app.main import create_app
from tests.fixtures.engine import Proc, start_fake_upstream_process, start_gateway_process

KEY = "sk-fuzz"
schema = schemathesis.openapi.from_dict(create_app(Settings(upstream_url="http://127.0.0.1:9")).openapi())


@pytest.fixture(scope="module")
def fuzz_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    d: Path = tmp_path_factory.mktemp("fuzz")
    fake = start_fake_upstream_process(d / "fake.log", "--interval-ms", "1", "--chunks", "3", "--model", "fake")
    gw = start_gateway_process(fake.base_url, d / "gateway.log", api_keys={"fuzz": KEY}, max_tokens_cap=32, heartbeat_interval_s=0)
    try:
        yield gw
    finally:
        gw.stop()
        fake.kill()


@schema.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_gateway_5xx_and_openai_errors(case: schemathesis.Case, fuzz_gateway: Proc) -> None:
    resp = case.call(base_url=fuzz_gateway.base_url, headers={"authorization": f"Bearer {KEY}"}, timeout=30)
    assert resp.status_code < 500, f"{case.method} {case.path} -> {resp.status_code}: {resp.text[:500]}"
    if resp.status_code >= 400:
        err = json.loads(resp.content)["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["message"]
