"""The monitoring stack of every environment, read from the synthesized templates."""

from __future__ import annotations

import json
import re

import pytest

from config.schema import load_all
from containers.gateway.app.core import contract
from llm_hosting_constructs import gpu_metrics
from llmhost import outputs
from tests.cfn import CONFIG_DIR, ENVIRONMENTS, only, resources

pytestmark = pytest.mark.synth
CONFIG = {c.name: c for c in load_all(CONFIG_DIR)}
GW = contract.METRICS_NAMESPACE


def monitoring(templates: dict, env: str) -> dict:
    return templates[env][outputs.stack_name(env, outputs.MONITORING)]


def alarms(template: dict, env: str) -> dict[str, dict]:
    prefix = f"llm-hosting-{env}-"
    return {a["Properties"]["AlarmName"].removeprefix(prefix): a["Properties"] for a in resources(template, "AWS::CloudWatch::Alarm").values()}


def sagemaker_deployed(templates: dict, env: str) -> bool:
    """SageMaker alarms belong where the environment has the backend and its stack is part of the app."""
    return "sagemaker" in CONFIG[env].backends and outputs.stack_name(env, outputs.SAGEMAKER) in templates[env]


def expected(templates: dict, env: str) -> dict[str, tuple]:
    """name -> (namespace, metric, statistic, threshold, comparison, missing data)."""
    cfg = CONFIG[env]
    t = cfg.monitoring.thresholds
    rows = {
        "api-5xx-rate": ("AWS/ApiGateway", "5XXError", "Average", t.api_5xx_rate, "GreaterThanThreshold", "notBreaching"),
        "api-latency-p99": ("AWS/ApiGateway", "Latency", "p99", t.api_latency_p99_ms, "GreaterThanThreshold", "notBreaching"),
        "api-throttled": ("LlmHosting/Api", "ThrottledRequests", "Sum", t.api_throttled_requests, "GreaterThanThreshold", "notBreaching"),
        "alb-target-5xx": ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "Sum", t.alb_target_5xx, "GreaterThanThreshold", "notBreaching"),
        "alb-elb-5xx": ("AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", "Sum", t.alb_elb_5xx, "GreaterThanThreshold", "notBreaching"),
        "unhealthy-hosts": ("AWS/ApplicationELB", "UnHealthyHostCount", "Maximum", t.unhealthy_hosts, "GreaterThanThreshold", "notBreaching"),
        "tasks-below-desired": ("ECS/ContainerInsights", "RunningTaskCount", "Average", 1, "GreaterThanOrEqualToThreshold", "breaching"),
        "gpu-utilization": (gpu_metrics.NAMESPACE, gpu_metrics.UTILIZATION, "Average", t.gpu_utilization_percent, "GreaterThanThreshold", "notBreaching"),
        "gpu-metrics-missing": (gpu_metrics.NAMESPACE, gpu_metrics.UTILIZATION, "Average", 1, "GreaterThanOrEqualToThreshold", "notBreaching"),
        "gateway-ttft-p95": (GW, contract.METRIC_TTFT, "p95", t.ttft_p95_ms, "GreaterThanThreshold", "notBreaching"),
        "gateway-error-rate": (GW, contract.METRIC_ERRORS, "Average", t.gateway_error_rate, "GreaterThanThreshold", "notBreaching"),
        "queue-depth": (GW, contract.METRIC_QUEUE_DEPTH, "Maximum", t.queue_depth, "GreaterThanThreshold", "notBreaching"),
    }
    if cfg.ecs.min_capacity > 0:
        rows["healthy-hosts-below-min"] = ("AWS/ApplicationELB", "HealthyHostCount", "Minimum", cfg.ecs.min_capacity, "LessThanThreshold", "breaching")
    if sagemaker_deployed(templates, env):
        rows["sagemaker-model-latency-p99"] = ("AWS/SageMaker", "ModelLatency", "p99", t.sagemaker_model_latency_p99_ms * 1000, "GreaterThanThreshold", "notBreaching")
        rows["sagemaker-5xx"] = ("AWS/SageMaker", "Invocation5XXErrors", "Sum", t.sagemaker_5xx, "GreaterThanThreshold", "notBreaching")
        rows["sagemaker-gpu-utilization"] = ("/aws/sagemaker/Endpoints", "GPUUtilization", "Average", None, "GreaterThanThreshold", "notBreaching")
    return rows


def metric_stats(alarm: dict) -> list[tuple[str, str, str]]:
    """(namespace, metric, statistic) of a plain alarm or of each metric inside a math alarm."""
    if "MetricName" in alarm:
        return [(alarm["Namespace"], alarm["MetricName"], alarm.get("ExtendedStatistic") or alarm["Statistic"])]
    return [
        (q["MetricStat"]["Metric"]["Namespace"], q["MetricStat"]["Metric"]["MetricName"], q["MetricStat"]["Stat"])
        for q in alarm["Metrics"]
        if "MetricStat" in q
    ]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_expected_alarms_and_no_others(templates: dict, env: str) -> None:
    assert set(alarms(monitoring(templates, env), env)) == set(expected(templates, env))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_alarm_metric_statistic_threshold_and_missing_data(templates: dict, env: str) -> None:
    found = alarms(monitoring(templates, env), env)
    for name, (namespace, metric, stat, threshold, comparison, missing) in expected(templates, env).items():
        alarm = found[name]
        assert (namespace, metric, stat) in metric_stats(alarm), name
        if threshold is not None:
            assert alarm["Threshold"] == threshold, name
        assert alarm["ComparisonOperator"] == comparison, name
        assert alarm["TreatMissingData"] == missing, name


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_gateway_alarms_use_the_serving_dimensions(templates: dict, env: str) -> None:
    found = alarms(monitoring(templates, env), env)
    dims = {d["Name"]: d["Value"] for d in found["gateway-ttft-p95"]["Dimensions"]}
    assert dims == {contract.DIMENSION_SERVICE: f"llm-hosting-{env}", contract.DIMENSION_MODEL: CONFIG[env].model.served_name}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_tasks_below_desired_waits_for_model_load(templates: dict, env: str) -> None:
    alarm = alarms(monitoring(templates, env), env)["tasks-below-desired"]
    minutes = CONFIG[env].monitoring.thresholds.tasks_below_desired_minutes
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == minutes
    (expression,) = [q["Expression"] for q in alarm["Metrics"] if "Expression" in q]
    assert expression == "desired - running"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_sagemaker_gpu_threshold_scales_with_gpus(templates: dict, env: str) -> None:
    cfg = CONFIG[env]
    found = alarms(monitoring(templates, env), env)
    if not sagemaker_deployed(templates, env):
        assert not [n for n in found if n.startswith("sagemaker")]
        return
    from llm_hosting_constructs.sizing import get_instance

    gpus = get_instance(cfg.sagemaker.instance_type).gpu_count
    assert found["sagemaker-gpu-utilization"]["Threshold"] == cfg.monitoring.thresholds.sagemaker_gpu_utilization_percent * gpus


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_one_composite_pages_and_nothing_else_has_actions(templates: dict, env: str) -> None:
    t = monitoring(templates, env)
    found = alarms(t, env)
    assert all("AlarmActions" not in a for a in found.values())
    composite = only(t, "AWS::CloudWatch::CompositeAlarm")["Properties"]
    topic_id = next(iter(resources(t, "AWS::SNS::Topic")))
    assert composite["AlarmActions"] == [{"Ref": topic_id}]
    rule = json.dumps(composite["AlarmRule"])
    ids = {a["Properties"]["AlarmName"].removeprefix(f"llm-hosting-{env}-"): k for k, a in resources(t, "AWS::CloudWatch::Alarm").items()}
    members = {name for name, logical_id in ids.items() if f'"{logical_id}"' in rule}
    paging = {"api-5xx-rate", "alb-target-5xx", "alb-elb-5xx", "tasks-below-desired", "gateway-error-rate"}
    if CONFIG[env].ecs.off_hours is None:
        paging.add("healthy-hosts-below-min")
    if sagemaker_deployed(templates, env):
        paging.add("sagemaker-5xx")
    assert members == paging


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_topic_is_kms_encrypted_with_a_subscription_per_email(templates: dict, env: str) -> None:
    t = monitoring(templates, env)
    topic = only(t, "AWS::SNS::Topic")["Properties"]
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": ["AlarmTopicKeyBA1A4AA7", "Arn"]}  # pinned key
    emails = {s["Properties"]["Endpoint"] for s in resources(t, "AWS::SNS::Subscription").values()}
    assert emails == set(CONFIG[env].monitoring.alarm_emails)
    assert all(s["Properties"]["Protocol"] == "email" for s in resources(t, "AWS::SNS::Subscription").values())
    assert t["Outputs"][outputs.ALARM_TOPIC_ARN]["Value"] == {"Ref": next(iter(resources(t, "AWS::SNS::Topic")))}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_dashboard_has_the_on_call_rows_and_metrics(templates: dict, env: str) -> None:
    t = monitoring(templates, env)
    dash = only(t, "AWS::CloudWatch::Dashboard")["Properties"]
    assert dash["DashboardName"] == f"llm-hosting-{env}"
    body = json.dumps(dash["DashboardBody"])
    rows = ["Traffic and errors", "Latency and time to first token", "Capacity and GPU", "Backends"]
    positions = [body.find(f"## {r}") for r in rows]
    assert -1 not in positions and positions == sorted(positions)
    for metric in ("5XXError", "ThrottledRequests", "HTTPCode_Target_5XX_Count", "HTTPCode_ELB_5XX_Count",
                   contract.METRIC_TTFT, contract.METRIC_QUEUE_DEPTH, contract.METRIC_ERRORS, "RunningTaskCount",
                   "DesiredTaskCount", "HealthyHostCount", gpu_metrics.UTILIZATION):
        assert metric in body, metric
    assert ("ModelLatency" in body) == sagemaker_deployed(templates, env)
    composite_id = next(iter(resources(t, "AWS::CloudWatch::CompositeAlarm")))
    assert '\\"type\\":\\"alarm\\"' in body and f'"{composite_id}"' in body  # alarm panel shows the page
    assert t["Outputs"][outputs.DASHBOARD_NAME]["Value"] == f"llm-hosting-{env}"


def test_config_thresholds_are_the_construct_s_model() -> None:
    """One definition (issue 14): the config section is the construct's model, not a copy kept in step."""
    from config.schema import MonitoringConfig
    from llm_hosting_constructs.alarms import AlarmThresholds

    assert MonitoringConfig.model_fields["thresholds"].annotation is AlarmThresholds


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_dashboard_shows_tokens_per_tenant(templates: dict, env: str) -> None:
    """Issue 13: prompt and completion tokens by the gateway's Tenant dimension, one series per tenant."""
    body = json.dumps(only(monitoring(templates, env), "AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"])
    assert "Tokens per tenant" in body
    searches = re.findall(r"SEARCH\(.*?\)", body.replace('\\\\\\"', '"'))
    tenant_searches = [q for q in searches if " Tenant'" in q]
    for metric in (contract.METRIC_PROMPT_TOKENS, contract.METRIC_COMPLETION_TOKENS):
        (query,) = [q for q in tenant_searches if f'MetricName="{metric}"' in q]
        assert f'Namespace="{GW}"' in query and f'Service="llm-hosting-{env}' in query and "'Sum', 300" in query


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_dashboard_shows_affinity_where_it_is_on(templates: dict, env: str) -> None:
    """Issue 15: forwarded / owner-hit shares and vLLM's prefix-cache hit rate, only where the gateways route by affinity."""
    body = json.dumps(only(monitoring(templates, env), "AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"])
    on = CONFIG[env].ecs is not None and CONFIG[env].ecs.affinity != "off"
    assert ("## Conversation affinity" in body) == on
    for metric in (contract.METRIC_AFFINITY_FORWARDED, contract.METRIC_AFFINITY_HIT,
                   contract.METRIC_PREFIX_CACHE_HITS, contract.METRIC_PREFIX_CACHE_QUERIES):
        assert (f'\\"{metric}\\"' in body) == on, metric
    if on:
        assert "hits / queries" in body
        searches = re.findall(r"SEARCH\(.*?\)", body.replace('\\\\\\"', '"'))
        task_searches = [q for q in searches if f" {contract.DIMENSION_TASK}'" in q]
        assert len(task_searches) == 3 and all(f'Service="llm-hosting-{env}' in q for q in task_searches)
        # the per-task hit-rate line reads the metric the gateway emits per task (contract name)
        rate = f'MetricName="{contract.METRIC_PREFIX_CACHE_HIT_RATE}"'
        assert [q for q in task_searches if rate in q and "'Average', 300" in q]
