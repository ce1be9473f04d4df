"""GPU utilization of ECS GPU hosts, by the CloudWatch agent's `nvidia_gpu` collector.

Container Insights for ECS publishes no GPU metrics, so the hosts run the CloudWatch agent
with the `nvidia_gpu` collector. One module names the metric for both sides: the serving stack
writes `agent_config()` into the hosts' agent configuration, the monitoring stack alarms on
`utilization_metric()`. Pure Python apart from the metric factory.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch

NAMESPACE = "CWAgent"
UTILIZATION = "nvidia_smi_utilization_gpu"
DIMENSION = "AutoScalingGroupName"
"""The agent aggregates per Auto Scaling group (`append_dimensions` + `aggregation_dimensions`)."""


def agent_config(*, interval_seconds: int = 60) -> dict[str, Any]:
    """CloudWatch agent configuration: GPU utilization and memory per Auto Scaling group."""
    return {
        "agent": {"metrics_collection_interval": interval_seconds},
        "metrics": {
            "namespace": NAMESPACE,
            "append_dimensions": {DIMENSION: "${aws:AutoScalingGroupName}"},
            "aggregation_dimensions": [[DIMENSION]],
            "metrics_collected": {
                "nvidia_gpu": {"measurement": ["utilization_gpu", "memory_used", "memory_total"]},
            },
        },
    }


def utilization_metric(auto_scaling_group_name: str, *, period: Duration = Duration.minutes(5)) -> cloudwatch.Metric:
    """Average GPU utilization (%) over the group's GPUs."""
    return cloudwatch.Metric(
        namespace=NAMESPACE,
        metric_name=UTILIZATION,
        dimensions_map={DIMENSION: auto_scaling_group_name},
        statistic="Average",
        period=period,
    )
