"""The ECS service that keeps the inference tasks running behind the ALB, and how it scales."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from constructs import Construct

from .inference_task import GATEWAY_CONTAINER
from .reuse import existing_or_new, reject_contradictions
from .schedule import OffHours

MIN_GRACE = Duration.seconds(600)
MAX_GRACE = Duration.seconds(1200)
DEFAULT_REQUESTS_PER_TARGET = 300
"""ALB requests per task per minute that target tracking holds."""
DEFAULT_QUEUE_DEPTH_THRESHOLD = 8
"""vLLM waiting requests (average) at which step scaling adds a task."""


@dataclass(frozen=True)
class QueueDepthMetric:
    """Where the gateway publishes vLLM's waiting-queue depth (CloudWatch EMF)."""

    namespace: str
    metric_name: str
    dimensions: dict[str, str]


class InferenceService(Construct):
    """EC2 service of ``task`` on ``capacity_provider``, registered in ``target_group``, with autoscaling.

    Safe defaults: tasks spread across AZs and one per instance, private subnets only (awsvpc
    on EC2 never gets a public IP), deployment circuit breaker with rollback, 100 % minimum
    healthy during deployments (the capacity provider adds a GPU host for the new task), a
    health-check grace period of ``health_check_grace_period`` (600-1200 s: a 70B model takes
    minutes to load, past the container health check's 300 s cap).

    Scaling between ``min_capacity`` and ``max_capacity`` on two signals: ALB requests per
    target (target tracking) and the gateway's queue-depth metric (step scaling out: one
    more task at ``scale_queue_depth`` waiting requests on average, two more at 4×; it
    never scales in, the request-count policy does). ``off_hours`` adds scheduled actions that
    pin the service to 0 at night and restore min/max in the morning, and the same on
    ``auto_scaling_group`` so no GPU host idles (non-prod).

    Defaults: ``vpc`` the cluster's, ``subnets`` ECS's choice (the VPC's private subnets),
    ``container_name``/``container_port`` the packaged gateway's (``InferenceTask``'s gateway
    container), ``min_capacity`` 1, ``max_capacity`` 2, ``desired_capacity`` ``min_capacity``,
    ``scale_requests_per_target`` 300 per minute, ``scale_queue_depth`` 8. Bring your own security group with
    ``existing_security_group``, or override the created one's props with ``security_group_props``
    (keyword arguments of ``ec2.SecurityGroup``), not both.

    Attributes: ``service``, ``security_group``, ``scalable_target``.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        cluster: ecs.ICluster,
        task_definition: ecs.TaskDefinition,
        capacity_provider: ecs.AsgCapacityProvider,
        vpc: ec2.IVpc | None = None,
        subnets: ec2.SubnetSelection | None = None,
        target_group: elbv2.ApplicationTargetGroup,
        container_name: str = GATEWAY_CONTAINER,
        container_port: int | None = None,
        desired_capacity: int | None = None,
        min_capacity: int = 1,
        max_capacity: int = 2,
        scale_requests_per_target: int = DEFAULT_REQUESTS_PER_TARGET,
        queue_depth: QueueDepthMetric,
        scale_queue_depth: int = DEFAULT_QUEUE_DEPTH_THRESHOLD,
        health_check_grace_period: Duration = Duration.seconds(900),
        off_hours: OffHours | None = None,
        auto_scaling_group: autoscaling.AutoScalingGroup | None = None,
        service_name: str | None = None,
        existing_security_group: ec2.ISecurityGroup | None = None,
        security_group_props: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(scope, id_)
        reject_contradictions("InferenceService", security_group=(existing_security_group, security_group_props))
        if desired_capacity is None:
            desired_capacity = min_capacity
        if container_port is None:
            from .gateway import contract

            container_port = contract.GATEWAY_PORT
        if not min_capacity <= desired_capacity <= max_capacity or max_capacity < 1:
            raise ValueError(
                f"InferenceService: needs 0 <= min_capacity <= desired_capacity <= max_capacity, max >= 1; got "
                f"{min_capacity}/{desired_capacity}/{max_capacity}"
            )
        grace = health_check_grace_period.to_seconds()
        if not MIN_GRACE.to_seconds() <= grace <= MAX_GRACE.to_seconds():
            raise ValueError("InferenceService: health_check_grace_period must be 600..1200 s")
        if off_hours is not None and auto_scaling_group is None:
            raise ValueError("InferenceService: off_hours needs auto_scaling_group, or GPU hosts idle all night")
        if scale_requests_per_target < 1 or scale_queue_depth < 1:
            raise ValueError("InferenceService: scale_requests_per_target and scale_queue_depth must be >= 1")

        self.security_group = existing_or_new(
            existing_security_group,
            security_group_props,
            lambda **props: ec2.SecurityGroup(self, "SecurityGroup", **props),
            vpc=vpc or cluster.vpc,
            description="Serving tasks: the gateway port from the ALB only; egress to AWS endpoints and the cache",
            allow_all_outbound=True,
        )
        self.service = ecs.Ec2Service(
            self,
            "Service",
            cluster=cluster,
            task_definition=task_definition,
            service_name=service_name,
            desired_count=desired_capacity,
            vpc_subnets=subnets,
            security_groups=[self.security_group],
            capacity_provider_strategies=[
                ecs.CapacityProviderStrategy(capacity_provider=capacity_provider.capacity_provider_name, weight=1)
            ],
            placement_strategies=[ecs.PlacementStrategy.spread_across(ecs.BuiltInAttributes.AVAILABILITY_ZONE)],
            placement_constraints=[ecs.PlacementConstraint.distinct_instances()],
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            min_healthy_percent=100,
            max_healthy_percent=200,
            health_check_grace_period=health_check_grace_period,
            enable_ecs_managed_tags=True,
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
            enable_execute_command=False,
        )
        # The gateway container, not vLLM (the first essential container), is the target.
        target_group.add_target(
            self.service.load_balancer_target(container_name=container_name, container_port=container_port)
        )

        self.scalable_target = self.service.auto_scale_task_count(min_capacity=min_capacity, max_capacity=max_capacity)
        self.scalable_target.scale_on_request_count(
            "RequestsPerTarget",
            requests_per_target=scale_requests_per_target,
            target_group=target_group,
            scale_in_cooldown=Duration.minutes(10),
            scale_out_cooldown=Duration.minutes(3),
        )
        self.scalable_target.scale_on_metric(
            "QueueDepth",
            metric=cloudwatch.Metric(
                namespace=queue_depth.namespace,
                metric_name=queue_depth.metric_name,
                dimensions_map=queue_depth.dimensions,
                statistic="Average",
                period=Duration.minutes(1),
            ),
            scaling_steps=[
                appscaling.ScalingInterval(upper=scale_queue_depth, change=0),
                appscaling.ScalingInterval(lower=scale_queue_depth, change=1),
                appscaling.ScalingInterval(lower=scale_queue_depth * 4, change=2),
            ],
            adjustment_type=appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
            cooldown=Duration.minutes(3),
            evaluation_periods=3,
            datapoints_to_alarm=2,
            metric_aggregation_type=appscaling.MetricAggregationType.MAXIMUM,
        )
        if off_hours is not None:
            self.scalable_target.scale_on_schedule(
                "OffHoursDown",
                schedule=appscaling.Schedule.expression(f"cron({off_hours.scale_down_cron})"),
                min_capacity=0,
                max_capacity=0,
            )
            self.scalable_target.scale_on_schedule(
                "OffHoursUp",
                schedule=appscaling.Schedule.expression(f"cron({off_hours.scale_up_cron})"),
                min_capacity=min_capacity,
                max_capacity=max_capacity,
            )
            assert auto_scaling_group is not None
            asg_max = auto_scaling_group.node.default_child.max_size  # type: ignore[union-attr]
            auto_scaling_group.scale_on_schedule(
                "OffHoursDown",
                schedule=autoscaling.Schedule.expression(unix_cron(off_hours.scale_down_cron)),
                min_capacity=0,
                max_capacity=0,
            )
            auto_scaling_group.scale_on_schedule(
                "OffHoursUp",
                schedule=autoscaling.Schedule.expression(unix_cron(off_hours.scale_up_cron)),
                min_capacity=0,
                max_capacity=int(asg_max),
            )


_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


def unix_cron(aws_cron: str) -> str:
    """AWS 6-field cron (``min hour dom month dow year``, ``?`` allowed, days 1-7 = SUN-SAT) to the
    5-field Unix cron of Auto Scaling scheduled actions (days 0-6 = SUN-SAT, no year, no ``?``)."""
    fields = aws_cron.split()
    if len(fields) != 6:
        raise ValueError(f"expected 6 cron fields, got {aws_cron!r}")
    minute, hour, dom, month, dow, year = fields
    if year not in ("*", "?"):
        raise ValueError(f"a year ({year}) cannot be expressed in an Auto Scaling recurrence")
    dow = re.sub(r"\d", lambda m: _DAY_NAMES[int(m.group()) - 1] if m.group() != "0" else "SUN", dow)
    return " ".join(f.replace("?", "*") for f in (minute, hour, dom, month, dow))
