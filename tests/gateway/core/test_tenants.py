"""Usage per tenant: the front door's tenant header (trusted only with the front-door key), the
per-tenant EMF metrics and log fields, token limits shared by the workers, and tenant names from
SSM (moto: AWS cannot be reached from here)."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
from moto import mock_aws

from containers.gateway.app.core import contract
from containers.gateway.app.core.config import Settings
from containers.gateway.app.core.errors import GatewayError
from containers.gateway.app.core.tenants import RUN_ID_ENV, TenantNames, TokenLimiter
from tests.gateway.helpers import error_of, open_stream, request, sse_events, wait_until

MSG = [{"role": "user", "content": "hi"}]
KEYS = {"frontdoor": "sk-frontdoor", "direct": "sk-direct"}


def _records(gw) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    return [json.loads(x) for x in gw.log.read_text().splitlines() if '"gateway.request"' in x]


def _by_rid(gw, rid: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    assert wait_until(lambda: any(r["request_id"] == rid for r in _records(gw)), timeout=5)
    return next(r for r in _records(gw) if r["request_id"] == rid)


def test_tenant_header_trusted_only_with_the_front_door_key(start_fake_upstream, start_gateway) -> None:  # type: ignore[no-untyped-def]
    fake = start_fake_upstream("--chunks", "3")
    gw = start_gateway(fake.base_url, api_keys=KEYS, tenant_names={"k1a2b3": "team-a"})
    body = {"model": "fake", "messages": MSG, "max_tokens": 3}
    cases = [
        ("sk-frontdoor", "k1a2b3", "team-a"),  # known id: its name
        ("sk-frontdoor", "zz9y8x", "zz9y8x"),  # unknown id: the id
        ("sk-frontdoor", None, "frontdoor"),  # no header: the gateway key's id
        ("sk-direct", "k1a2b3", "direct"),  # not the front door: the header is ignored
    ]
    for key, header, tenant in cases:
        rid = uuid.uuid4().hex
        h = {"x-request-id": rid, **({contract.TENANT_HEADER: header} if header else {})}
        st, _, out = request(gw.base_url, "POST", "/v1/chat/completions", body, key=key, headers=h)
        assert st == 200, out
        rec = _by_rid(gw, rid)
        assert rec["tenant"] == tenant and rec[contract.DIMENSION_TENANT] == tenant, (header, rec)
        by_tenant = rec["_aws"]["CloudWatchMetrics"][1]
        assert by_tenant["Namespace"] == contract.METRICS_NAMESPACE
        assert by_tenant["Dimensions"] == [[contract.DIMENSION_SERVICE, contract.DIMENSION_TENANT]]
        names = {m["Name"] for m in by_tenant["Metrics"]}
        assert {"PromptTokens", "CompletionTokens", "Requests", "Errors"} <= names
        assert rec["PromptTokens"] > 0 and rec["CompletionTokens"] == 3
    # a rejected request of a known tenant counts as its error; one without a valid key has no tenant
    rid = uuid.uuid4().hex
    request(gw.base_url, "POST", "/v1/chat/completions", {**body, "model": "nope"}, key="sk-frontdoor",
            headers={"x-request-id": rid, contract.TENANT_HEADER: "k1a2b3"})
    rec = _by_rid(gw, rid)
    assert rec["tenant"] == "team-a" and rec["status"] == 404 and rec["ClientErrors"] == 1
    rid = uuid.uuid4().hex
    request(gw.base_url, "POST", "/v1/chat/completions", body, key="sk-wrong", headers={"x-request-id": rid, contract.TENANT_HEADER: "k1a2b3"})
    rec = _by_rid(gw, rid)
    assert rec["tenant"] is None and len(rec["_aws"]["CloudWatchMetrics"]) == 1


def test_stream_tokens_per_tenant_without_leaking_the_usage_event(start_fake_upstream, start_gateway) -> None:  # type: ignore[no-untyped-def]
    fake = start_fake_upstream("--chunks", "5", "--interval-ms", "5")
    gw = start_gateway(fake.base_url, api_keys=KEYS, tenant_names={"k1a2b3": "team-a"})
    for include_usage in (False, True):
        rid = uuid.uuid4().hex
        body = {"model": "fake", "messages": MSG, "stream": True, **({"stream_options": {"include_usage": True}} if include_usage else {})}
        c, r = open_stream(gw.base_url, "/v1/chat/completions", body, "sk-frontdoor",
                           headers={"x-request-id": rid, contract.TENANT_HEADER: "k1a2b3"})
        events = [json.loads(e[6:]) for e in sse_events(r) if e.startswith(b"data: {")]
        c.close()
        assert any("usage" in e for e in events) is include_usage
        rec = _by_rid(gw, rid)
        assert rec["tenant"] == "team-a" and rec["CompletionTokens"] == 5 and rec["PromptTokens"] > 0
        assert rec["TimeToFirstToken"] > 0
        assert "TimeToFirstToken" in {m["Name"] for m in rec["_aws"]["CloudWatchMetrics"][1]["Metrics"]}


def test_token_limit_429_per_tenant_shared_by_the_workers(start_fake_upstream, start_gateway) -> None:  # type: ignore[no-untyped-def]
    fake = start_fake_upstream("--chunks", "2")
    gw = start_gateway(fake.base_url, api_keys=KEYS, workers=2, tenant_names={"k1a2b3": "team-a"},
                       tenant_tokens_per_minute={"team-a": 60})
    body = {"model": "fake", "messages": MSG, "max_tokens": 25}
    h = {contract.TENANT_HEADER: "k1a2b3"}
    got = [request(gw.base_url, "POST", "/v1/chat/completions", body, key="sk-frontdoor", headers=h) for _ in range(6)]
    statuses = [st for st, _, _ in got]
    # each request uses 25 completion + ~10 prompt tokens: two fit in the minute's 60, then 429
    assert statuses[:2] == [200, 200] and set(statuses[2:]) == {429}, statuses
    st, hdrs, out = got[2]
    err = error_of(out)
    assert err["type"] == "rate_limit_error" and err["code"] == "tokens_per_minute_exceeded" and "team-a" in err["message"]
    assert 1 <= int(hdrs["retry-after"]) <= 60
    # other tenants are not limited by team-a's use
    assert request(gw.base_url, "POST", "/v1/chat/completions", body, key="sk-direct", headers=h)[0] == 200
    assert request(gw.base_url, "POST", "/v1/chat", {"prompt": "hi"}, key="sk-frontdoor", headers=h)[0] == 429


def test_workers_share_the_token_buckets(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Two limiters built from the same settings and run id are two workers of one task."""
    monkeypatch.setenv(RUN_ID_ENV, uuid.uuid4().hex)
    s = Settings(state_dir=str(tmp_path), tenant_tokens_per_minute={"a": 100, "b": 100})
    one, two = TokenLimiter(s), TokenLimiter(s)
    try:
        one.check("a")
        one.charge("a", 150)
        with pytest.raises(GatewayError) as ei:
            two.check("a")
        assert ei.value.status == 429 and int(ei.value.headers["Retry-After"]) == 31  # 51 tokens at 100/min
        two.check("b")
        two.check("not-limited")
    finally:
        one.close()
        two.close()


@mock_aws
def test_tenant_names_from_the_ssm_parameter() -> None:
    name = contract.TENANT_NAMES_PARAMETER.format(env="dev")
    ssm = boto3.client("ssm", region_name="us-east-1")
    ssm.put_parameter(Name=name, Type="String", Value=json.dumps({"k1a2b3": "team-a", "q9w8e7": "team-b"}))
    names = TenantNames(Settings(tenant_names_parameter=name, tenant_names={"static1": "ops"}), client=ssm)
    assert names.name("k1a2b3") == "k1a2b3"  # nothing read yet
    names.load()
    assert (names.name("k1a2b3"), names.name("q9w8e7"), names.name("static1"), names.name("other")) == (
        "team-a", "team-b", "ops", "other",
    )
    ssm.put_parameter(Name=name, Type="String", Value="[1, 2]", Overwrite=True)
    with pytest.raises(ValueError, match="JSON object"):
        names.load()
    assert names.name("k1a2b3") == "team-a"  # a bad value keeps the names it had


@mock_aws
def test_tenant_names_load_in_the_background_and_refresh() -> None:
    import asyncio

    name = "/llm-hosting/dev/tenant-api-keys"
    ssm = boto3.client("ssm", region_name="us-east-1")
    ssm.put_parameter(Name=name, Type="String", Value=json.dumps({"k1": "team-a"}))
    names = TenantNames(Settings(tenant_names_parameter=name, tenant_names_refresh_s=0.1), client=ssm)

    async def go() -> list[str]:
        await names.start()  # returns at once: start-up never waits for SSM
        seen = [names.name("k1")]
        for _ in range(50):
            await asyncio.sleep(0.05)
            if names.name("k1") == "team-a":
                break
        seen.append(names.name("k1"))
        ssm.put_parameter(Name=name, Type="String", Value=json.dumps({"k1": "team-renamed"}), Overwrite=True)
        for _ in range(50):
            await asyncio.sleep(0.05)
            if names.name("k1") == "team-renamed":
                break
        seen.append(names.name("k1"))
        await names.stop()
        return seen

    assert asyncio.run(go()) == ["k1", "team-a", "team-renamed"]
