"""OnCallDashboard's conversation-affinity row, read from the synthesized dashboard body."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import aws_cdk as cdk
from aws_cdk.assertions import Template

from llm_hosting_constructs.dashboard import OnCallDashboard
from llm_hosting_constructs.signals import AffinityMetricNames, GatewayMetricNames, ServiceSignals
from tests.cfn import only

GATEWAY = GatewayMetricNames(
    namespace="Gw", dimensions={"Service": "svc", "Model": "m"}, requests="Requests", errors="Errors",
    ttft="TimeToFirstToken", latency="Latency", queue_depth="QueueDepth", in_flight="InFlight",
)  # fmt: skip
AFFINITY = AffinityMetricNames(
    forwarded="Fwd", hit="Hit", prefix_cache_hits="PcHits", prefix_cache_queries="PcQueries", task_dimension="Task",
    prefix_cache_hit_rate="PcRate",
)  # fmt: skip
ROW = "## Conversation affinity"


def widgets(gateway: GatewayMetricNames) -> list[dict[str, Any]]:
    s = cdk.Stack(cdk.App(), "D", env=cdk.Environment(account="123456789012", region="eu-west-1"))
    OnCallDashboard(s, "Dash", dashboard_name="x", signals=ServiceSignals(gateway=gateway))
    body = only(Template.from_stack(s).to_json(), "AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"]
    return json.loads(body if isinstance(body, str) else "".join(p for p in body["Fn::Join"][1] if isinstance(p, str)))["widgets"]


def graph(ws: list[dict[str, Any]], title_start: str) -> dict[str, Any]:
    (w,) = [w for w in ws if w["type"] == "metric" and w["properties"].get("title", "").startswith(title_start)]
    return w["properties"]


def dims(m: list[Any]) -> dict[str, str]:
    """The dimensions of a metric row [namespace, name, k1, v1, ..., {options}]."""
    flat = [x for x in m[2:] if isinstance(x, str)]
    return dict(zip(flat[::2], flat[1::2]))


def test_no_affinity_row_without_affinity_metrics() -> None:
    text = json.dumps(widgets(GATEWAY))
    assert ROW not in text and "Fwd" not in text and "PcHits" not in text


def test_affinity_row_sits_between_capacity_and_backends() -> None:
    ws = widgets(dataclasses.replace(GATEWAY, affinity=AFFINITY))
    texts = [w["properties"]["markdown"] for w in ws if w["type"] == "text"]
    assert texts == ["## Traffic and errors", "## Latency and time to first token", "## Capacity and GPU", ROW]
    row_y = next(w["y"] for w in ws if w["type"] == "text" and w["properties"]["markdown"] == ROW)
    row = [w for w in ws if w["type"] == "metric" and w["y"] == row_y + 1]
    assert len(row) == 3 and sum(w["width"] for w in row) == 24


def test_forwarded_and_owner_shares_are_averages_of_the_service() -> None:
    p = graph(widgets(dataclasses.replace(GATEWAY, affinity=AFFINITY)), "Affinity: forwarded share")
    assert [m[:2] for m in p["metrics"]] == [["Gw", "Fwd"], ["Gw", "Hit"]]
    assert all(dims(m) == {"Service": "svc", "Model": "m"} for m in p["metrics"])
    # No options: the dashboard body's defaults, stat Average over 300 s (CloudWatch's dashboard body
    # structure); an explicit other statistic would appear here.
    assert all(len(m) == 6 for m in p["metrics"])
    assert p["yAxis"]["left"] == {"min": 0, "max": 1}


def test_prefix_cache_hit_rate_is_hits_over_queries_summed_over_the_service() -> None:
    p = graph(widgets(dataclasses.replace(GATEWAY, affinity=AFFINITY)), "vLLM prefix-cache hit rate: service")
    (expr,) = [m[0] for m in p["metrics"] if "expression" in m[0] and "SEARCH" not in m[0]["expression"]]
    inputs = {m[1]: m for m in p["metrics"] if "expression" not in m[0]}
    hits_id, queries_id = inputs["PcHits"][6]["id"], inputs["PcQueries"][6]["id"]
    assert expr["expression"] == f"{hits_id} / {queries_id}"
    for m in inputs.values():
        # Only the service's dimension set: the per-task series are not summed in (no double counting).
        assert m[0] == "Gw" and dims(m) == {"Service": "svc", "Model": "m"}
        assert m[6]["stat"] == "Sum" and m[6]["visible"] is False


def test_prefix_cache_hit_rate_has_one_line_per_task_beside_the_service_line() -> None:
    p = graph(widgets(dataclasses.replace(GATEWAY, affinity=AFFINITY)), "vLLM prefix-cache hit rate: service")
    searches = [m[0] for m in p["metrics"] if isinstance(m[0], dict) and "SEARCH" in m[0].get("expression", "")]
    # A search over the Task dimension (tasks come and go with their IPs): one series per task, the
    # Average of the gateway's per-poll ratios, on the same 0..1 axis as the service's rate.
    assert [q["expression"] for q in searches] == [
        "SEARCH('Namespace=\"Gw\" MetricName=\"PcRate\" Service=\"svc\" Model=\"m\" Task', 'Average', 300)"
    ]
    assert p["yAxis"]["left"] == {"min": 0, "max": 1}


def test_prefix_cache_tokens_per_task_search_the_task_dimension() -> None:
    p = graph(widgets(dataclasses.replace(GATEWAY, affinity=AFFINITY)), "Prefix-cache tokens per task")
    exprs = {m[0].get("yAxis", "left"): m[0]["expression"] for m in p["metrics"]}
    for side, metric in (("left", "PcQueries"), ("right", "PcHits")):
        assert exprs[side] == (f"SEARCH('Namespace=\"Gw\" MetricName=\"{metric}\" Service=\"svc\" Model=\"m\" Task', "
                               "'Sum', 300)")  # fmt: skip
