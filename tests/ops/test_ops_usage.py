"""`llmhost usage` against moto (AWS cannot be reached from here): CloudWatch metrics as the
gateway's EMF lines create them, tenant names from the API stack's SSM parameter."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest

from containers.gateway.app.core import contract
from llmhost import usage

from .conftest import REGION

pytestmark = pytest.mark.usefixtures("aws")


def _put(tenant: str, prompt: int, completion: int, errors: int = 0, service: str = "llm-hosting-dev", ago_h: float = 1) -> None:
    cw = boto3.client("cloudwatch", region_name=REGION)
    at = datetime.now(timezone.utc) - timedelta(hours=ago_h)
    dims = [{"Name": "Service", "Value": service}, {"Name": "Tenant", "Value": tenant}]
    data = [("PromptTokens", prompt), ("CompletionTokens", completion), ("Requests", 1), ("Errors", errors)]
    cw.put_metric_data(
        Namespace=contract.METRICS_NAMESPACE,
        MetricData=[{"MetricName": m, "Dimensions": dims, "Value": v, "Unit": "Count", "Timestamp": at} for m, v in data],
    )


def test_names_match_the_gateway_contract() -> None:
    assert usage.NAMESPACE == contract.METRICS_NAMESPACE
    assert (usage.DIMENSION_SERVICE, usage.DIMENSION_TENANT) == contract.EMF_TENANT_DIMENSION_SETS[0]
    assert set(usage.METRICS) <= set(contract.TENANT_METRICS)
    assert usage.TENANT_NAMES_PARAMETER == contract.TENANT_NAMES_PARAMETER


def test_usage_prints_tokens_per_tenant(llmhost: Callable[..., Any], write_env: Callable[..., Path]) -> None:
    write_env("dev")
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name="/llm-hosting/dev/tenant-api-keys", Type="String", Value=json.dumps({"k1a2b3": "team-a"})
    )
    _put("team-a", 100, 40)
    _put("k1a2b3", 10, 5, errors=1)  # the same tenant, before the gateway knew its name
    _put("zz9y8x", 7, 3)
    _put("team-a", 1000, 1000, ago_h=30)  # outside the window
    _put("team-a", 1000, 1000, service="llm-hosting-prod")  # another environment
    r = llmhost("usage", "--env", "dev", "--since", "24h")
    assert r.code == 0, r.err
    lines = [line for line in r.out.splitlines() if "team-a" in line or "zz9y8x" in line]
    assert len(lines) == 2 and "team-a" in lines[0]
    cells = [c.strip() for c in lines[0].split("│") if c.strip()]
    assert cells == ["team-a", "110", "45", "155", "2", "1"]
    cells = [c.strip() for c in lines[1].split("│") if c.strip()]
    assert cells == ["zz9y8x", "7", "3", "10", "1", "0"]


def test_usage_without_data_and_with_a_bad_window(llmhost: Callable[..., Any], write_env: Callable[..., Path]) -> None:
    write_env("dev")
    r = llmhost("usage", "--env", "dev")
    assert r.code == 0 and "no tenant metrics for dev in the last 24h" in r.out
    r = llmhost("usage", "--env", "dev", "--since", "yesterday")
    assert r.code == 1 and r.err.strip() == "llmhost: error: --since 'yesterday': give a duration like 30m, 24h or 7d"
