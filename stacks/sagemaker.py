"""The SageMaker stack: the alternative backend, a real-time endpoint with Application Auto Scaling."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from llm_hosting_constructs.sagemaker_autoscaling import SageMakerVariantScaling
from llm_hosting_constructs.sagemaker_endpoint import SageMakerEndpoint
from llm_hosting_constructs.schedule import OffHours
from llmhost import outputs


@dataclass(frozen=True)
class SageMakerSettings:
    """Everything app.py derives from the `sagemaker:` config section."""

    endpoint_name: str
    image_uri: str
    environment: Mapping[str, str]
    instance_type: str
    instance_count: int
    min_capacity: int
    max_capacity: int
    model_data_s3_uri: str | None
    model_data_kms_key_arn: str | None
    volume_kms_key_arn: str | None
    container_startup_timeout_seconds: int
    model_download_timeout_seconds: int
    data_capture_percent: int | None
    data_capture_retention_days: int
    target_invocations_per_instance: int
    scale_in_cooldown_seconds: int
    scale_out_cooldown_seconds: int
    rollback_5xx_errors: int
    rollback_latency_p99_ms: int
    rollback_bake_seconds: int
    log_retention: logs.RetentionDays
    off_hours: OffHours | None = None


class SageMakerStack(Stack):
    """Endpoint + scaling. Exposes ``endpoint_name`` and ``variant_name`` for the monitoring stack."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        settings: SageMakerSettings,
        removal_policy: RemovalPolicy,
        **kwargs,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        s = settings
        volume_key = (
            kms.Key.from_key_arn(self, "VolumeKey", s.volume_kms_key_arn) if s.volume_kms_key_arn else None
        )
        self.endpoint = SageMakerEndpoint(
            self,
            "Endpoint",
            endpoint_name=s.endpoint_name,
            image_uri=s.image_uri,
            environment=s.environment,
            instance_type=s.instance_type,
            instance_count=s.instance_count,
            vpc=vpc,
            subnets=subnets,
            model_data_s3_uri=s.model_data_s3_uri,
            model_data_kms_key_arn=s.model_data_kms_key_arn,
            container_startup_timeout=Duration.seconds(s.container_startup_timeout_seconds),
            model_download_timeout=Duration.seconds(s.model_download_timeout_seconds),
            volume_kms_key=volume_key,
            data_capture_percent=s.data_capture_percent,
            data_capture_retention=Duration.days(s.data_capture_retention_days),
            rollback_5xx_errors=s.rollback_5xx_errors,
            rollback_latency_p99=Duration.millis(s.rollback_latency_p99_ms),
            rollback_bake_time=Duration.seconds(s.rollback_bake_seconds),
            log_retention=s.log_retention,
            removal_policy=removal_policy,
        )
        self.scaling = SageMakerVariantScaling(
            self,
            "Scaling",
            endpoint=self.endpoint.endpoint,
            variant_name=self.endpoint.variant_name,
            min_capacity=s.min_capacity,
            max_capacity=s.max_capacity,
            target_invocations_per_instance=s.target_invocations_per_instance,
            scale_in_cooldown=Duration.seconds(s.scale_in_cooldown_seconds),
            scale_out_cooldown=Duration.seconds(s.scale_out_cooldown_seconds),
            off_hours=s.off_hours,
        )
        self.endpoint_name = self.endpoint.endpoint_name
        self.variant_name = self.endpoint.variant_name
        CfnOutput(self, outputs.SAGEMAKER_ENDPOINT_NAME, value=self.endpoint.endpoint.attr_endpoint_name)
