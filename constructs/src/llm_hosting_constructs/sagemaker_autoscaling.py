"""Application Auto Scaling for a SageMaker real-time endpoint variant."""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct
from pydantic import Field

from .schedule import DEFAULT_SCALE_DOWN_CRON, OffHours


class EndpointOffHours(OffHours):
    """``OffHours`` of a real-time endpoint: it scales down to ``off_hours_capacity`` (at least one
    instance), not to zero."""

    scale_down_cron: str = Field(DEFAULT_SCALE_DOWN_CRON, description="When to scale down to 1 instance.")


class SageMakerVariantScaling(Construct):
    """Scales one production variant's instance count between ``min_capacity`` and ``max_capacity``.

    Target tracking on ``SageMakerVariantInvocationsPerInstance`` (invocations per instance per
    minute) with a slow scale-in (300 s) and a quick scale-out (60 s) by default: an LLM
    instance takes minutes to load its model, so giving one back too eagerly costs more than
    keeping it a little longer.

    Off-hours (optional, for non-prod): at ``off_hours.scale_down_cron`` min and max drop to
    ``off_hours_capacity`` (at least 1: a real-time endpoint without inference components
    cannot scale to zero); at ``off_hours.scale_up_cron`` they return to ``min_capacity`` /
    ``max_capacity``.

    Application Auto Scaling acts through its SageMaker service-linked role; nothing to grant.

    Attributes: ``target``, ``resource_id``.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        endpoint: sagemaker.CfnEndpoint,
        variant_name: str,
        min_capacity: int = 1,
        max_capacity: int = 2,
        target_invocations_per_instance: float,
        scale_in_cooldown: Duration = Duration.seconds(300),
        scale_out_cooldown: Duration = Duration.seconds(60),
        off_hours: OffHours | None = None,
        off_hours_capacity: int = 1,
    ) -> None:
        super().__init__(scope, id_)
        if not 1 <= min_capacity <= max_capacity:
            raise ValueError(
                f"SageMakerVariantScaling: needs 1 <= min_capacity <= max_capacity, got {min_capacity} / {max_capacity} "
                "(real-time endpoints cannot scale to 0)"
            )
        if target_invocations_per_instance <= 0:
            raise ValueError("SageMakerVariantScaling: target_invocations_per_instance must be positive")
        if not 1 <= off_hours_capacity <= max_capacity:
            raise ValueError(f"SageMakerVariantScaling: off_hours_capacity must be 1..max_capacity ({max_capacity})")

        self.resource_id = f"endpoint/{endpoint.attr_endpoint_name}/variant/{variant_name}"
        self.target = appscaling.ScalableTarget(
            self,
            "Target",
            service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            resource_id=self.resource_id,
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            min_capacity=min_capacity,
            max_capacity=max_capacity,
            # Application Auto Scaling's own service-linked role for SageMaker variants (it creates it
            # on first use); CDK's default would be a new role with no permissions.
            role=iam.Role.from_role_arn(
                self,
                "ServiceLinkedRole",
                Stack.of(self).format_arn(
                    service="iam",
                    region="",
                    resource="role",
                    resource_name="aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
                    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint",
                ),
                mutable=False,
            ),
        )
        self.target.scale_to_track_metric(
            "InvocationsPerInstance",
            # Named after the endpoint: a new endpoint name (a new instance type) replaces the target and
            # so this policy, and CloudFormation cannot replace a resource that keeps its custom name.
            policy_name=f"{endpoint.endpoint_name}-{variant_name}-invocations" if endpoint.endpoint_name else None,
            predefined_metric=appscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
            target_value=target_invocations_per_instance,
            scale_in_cooldown=scale_in_cooldown,
            scale_out_cooldown=scale_out_cooldown,
        )
        if off_hours is not None:
            self.target.scale_on_schedule(
                "OffHoursScaleDown",
                schedule=appscaling.Schedule.expression(f"cron({off_hours.scale_down_cron})"),
                min_capacity=off_hours_capacity,
                max_capacity=off_hours_capacity,
            )
            self.target.scale_on_schedule(
                "OffHoursScaleUp", schedule=appscaling.Schedule.expression(f"cron({off_hours.scale_up_cron})"), min_capacity=min_capacity, max_capacity=max_capacity
            )
