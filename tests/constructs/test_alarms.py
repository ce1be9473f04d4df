"""LlmAlarms, AlarmTopic and OnCallDashboard on hand-made signals (no other stack needed)."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pydantic
import pytest
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Template

from llm_hosting_constructs import gpu_metrics
from llm_hosting_constructs.alarms import PAGING, AlarmThresholds, LlmAlarms
from llm_hosting_constructs.alerting import AlarmTopic
from llm_hosting_constructs.dashboard import OnCallDashboard
from llm_hosting_constructs.signals import (
    ApiRef,
    EcsServiceRef,
    GatewayMetricNames,
    LoadBalancerRef,
    SageMakerRef,
    ServiceSignals,
)
from tests.cfn import only, resources

GATEWAY = GatewayMetricNames(
    namespace="Gw", dimensions={"Service": "svc", "Model": "m"}, requests="Requests", errors="Errors",
    ttft="TimeToFirstToken", latency="Latency", queue_depth="QueueDepth", in_flight="InFlight",
)
SIGNALS = ServiceSignals(
    api=ApiRef("api", "dev", "abc123", buffered_routes=(("GET", "/v1/models"), ("POST", "/v1/chat"))),
    load_balancer=LoadBalancerRef("app/alb/1", "targetgroup/tg/2"),
    ecs=EcsServiceRef("cluster", "service"),
    gpu_utilization=gpu_metrics.utilization_metric("asg"),
    gateway=GATEWAY,
    sagemaker=SageMakerRef("ep", "AllTraffic", gpus_per_instance=4),
)


def stack() -> cdk.Stack:
    return cdk.Stack(cdk.App(), "M", env=cdk.Environment(account="123456789012", region="eu-west-1"))


def build(signals: ServiceSignals = SIGNALS, **kw) -> tuple[dict, LlmAlarms]:
    s = stack()
    topic = AlarmTopic(s, "Topic", emails=["a@example.com"]).topic
    alarms = LlmAlarms(s, "Alarms", signals=signals, topic=topic, name_prefix="x", **kw)
    OnCallDashboard(s, "Dash", dashboard_name="x", signals=signals, alarms=list(alarms.alarms.values()))
    return Template.from_stack(s).to_json(), alarms


@pytest.fixture(scope="module")
def template() -> dict:
    return build(thresholds=AlarmThresholds(queue_depth=7), min_healthy_hosts=2)[0]


def alarms(template: dict) -> dict[str, dict]:
    return {a["Properties"]["AlarmName"].removeprefix("x-"): a["Properties"] for a in resources(template, "AWS::CloudWatch::Alarm").values()}


def test_every_signal_has_its_alarm(template: dict) -> None:
    assert sorted(alarms(template)) == sorted([
        "api-5xx-rate", "api-latency-p99", "api-throttled", "alb-target-5xx", "alb-elb-5xx", "unhealthy-hosts",
        "healthy-hosts-below-min", "tasks-below-desired", "gpu-utilization", "gpu-metrics-missing", "gateway-ttft-p95",
        "gateway-error-rate", "queue-depth", "sagemaker-model-latency-p99", "sagemaker-5xx",
        "sagemaker-gpu-utilization",
    ])


def test_thresholds_and_units(template: dict) -> None:
    a = alarms(template)
    assert a["queue-depth"]["Threshold"] == 7
    assert a["healthy-hosts-below-min"]["Threshold"] == 2
    assert a["sagemaker-model-latency-p99"]["Threshold"] == 60_000_000  # ms -> µs
    assert a["sagemaker-gpu-utilization"]["Threshold"] == 95 * 4  # per GPU x GPUs


def test_missing_data_is_deliberate(template: dict) -> None:
    a = alarms(template)
    breaching = {n for n, p in a.items() if p["TreatMissingData"] == "breaching"}
    assert breaching == {"healthy-hosts-below-min", "tasks-below-desired"}
    assert all(p["TreatMissingData"] in ("breaching", "notBreaching") for p in a.values())


def test_only_the_composite_has_actions(template: dict) -> None:
    assert all("AlarmActions" not in p for p in alarms(template).values())
    composite = only(template, "AWS::CloudWatch::CompositeAlarm")["Properties"]
    assert len(composite["AlarmActions"]) == 1 and composite["AlarmName"] == "x-page"
    assert rule_members(template) == set(PAGING)


def rule_members(template: dict) -> set[str]:
    """Short names of the alarms the composite's rule references."""
    rule = json.dumps(only(template, "AWS::CloudWatch::CompositeAlarm")["Properties"]["AlarmRule"])
    by_id = {k: v["Properties"]["AlarmName"].removeprefix("x-") for k, v in resources(template, "AWS::CloudWatch::Alarm").items()}
    return {name for logical_id, name in by_id.items() if f'"{logical_id}"' in rule}


def test_scale_to_zero_envs_do_not_page_on_healthy_hosts() -> None:
    t, a = build(scales_to_zero=True)
    assert "healthy-hosts-below-min" in a.alarms and "healthy-hosts-below-min" not in a.paging
    assert rule_members(t) == set(PAGING) - {"healthy-hosts-below-min"}


def test_without_sagemaker_there_are_no_sagemaker_alarms() -> None:
    _, a = build(ServiceSignals(api=SIGNALS.api, gateway=GATEWAY))
    assert not [n for n in a.alarms if n.startswith("sagemaker")]


def test_topic_is_kms_encrypted_and_cloudwatch_may_use_the_key(template: dict) -> None:
    topic = only(template, "AWS::SNS::Topic")["Properties"]
    assert "KmsMasterKeyId" in topic
    key = only(template, "AWS::KMS::Key")["Properties"]
    assert any(st.get("Principal") == {"Service": "cloudwatch.amazonaws.com"} for st in key["KeyPolicy"]["Statement"])
    assert only(template, "AWS::SNS::Subscription")["Properties"]["Endpoint"] == "a@example.com"


def test_dashboard_rows_in_on_call_order(template: dict) -> None:
    body = json.dumps(only(template, "AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"])
    order = [body.find(f"## {t}") for t in ("Traffic and errors", "Latency and time to first token", "Capacity and GPU", "Backends")]
    assert -1 not in order and order == sorted(order)
    for metric in ("TimeToFirstToken", "QueueDepth", "nvidia_smi_utilization_gpu", "RunningTaskCount", "ModelLatency", "ThrottledRequests"):
        assert metric in body


def test_no_paging_signal_is_rejected() -> None:
    with pytest.raises(ValueError, match="no paging alarm"):
        LlmAlarms(stack(), "A", signals=ServiceSignals(), topic=sns.Topic(stack(), "T"), name_prefix="x")


def test_gpu_metric_without_ecs_is_rejected() -> None:
    s = stack()
    with pytest.raises(ValueError, match="gpu_utilization"):
        LlmAlarms(s, "A", signals=ServiceSignals(gpu_utilization=gpu_metrics.utilization_metric("a")), topic=sns.Topic(s, "T"), name_prefix="x")


def test_gpu_agent_config_feeds_the_alarmed_metric() -> None:
    cfg = gpu_metrics.agent_config()
    assert cfg["metrics"]["namespace"] == gpu_metrics.NAMESPACE
    assert "utilization_gpu" in cfg["metrics"]["metrics_collected"]["nvidia_gpu"]["measurement"]
    assert cfg["metrics"]["aggregation_dimensions"] == [[gpu_metrics.DIMENSION]]


def test_every_alarm_states_its_missing_data_treatment_explicitly() -> None:
    """CloudWatch's default (missing) hides a blind alarm; each alarm chooses (docs: the alarms table)."""
    t, _ = build()
    for logical_id, alarm in resources(t, "AWS::CloudWatch::Alarm").items():
        assert alarm["Properties"].get("TreatMissingData") in ("breaching", "notBreaching"), logical_id


def test_a_gpu_metric_that_never_arrives_fires_while_tasks_run(template: dict) -> None:
    """gpu-utilization treats no data as OK; gpu-metrics-missing is what notices an agent that publishes nothing."""
    blind = alarms(template)["gpu-metrics-missing"]
    (expression,) = [m["Expression"] for m in blind["Metrics"] if "Expression" in m]
    assert expression == "IF(running >= 1 AND FILL(gpu, -1) < 0, 1, 0)"
    stats = {m["Id"]: m["MetricStat"] for m in blind["Metrics"] if "MetricStat" in m}
    assert stats["running"]["Metric"]["MetricName"] == "RunningTaskCount"
    assert stats["gpu"]["Metric"]["MetricName"] == gpu_metrics.UTILIZATION
    assert stats["running"]["Period"] == stats["gpu"]["Period"] == 300
    assert (blind["Threshold"], blind["ComparisonOperator"], blind["EvaluationPeriods"]) == (1, "GreaterThanOrEqualToThreshold", 3)


@pytest.mark.parametrize("field,value", [("api_5xx_rate", 1.5), ("tasks_below_desired_minutes", 2), ("ttft_p95_ms", 0)])
def test_thresholds_reject_out_of_range_values(field: str, value: float) -> None:
    with pytest.raises(pydantic.ValidationError, match=field):
        AlarmThresholds(**{field: value})


def test_thresholds_reject_unknown_fields() -> None:
    with pytest.raises(pydantic.ValidationError, match="queue_dept"):
        AlarmThresholds(queue_dept=3)  # type: ignore[call-arg]
