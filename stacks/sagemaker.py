"""The SageMaker stack: the alternative backend, a real-time endpoint with Application Auto Scaling."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from llm_hosting_constructs.sagemaker_autoscaling import SageMakerVariantScaling
from llm_hosting_constructs.sagemaker_endpoint import SageMakerEndpoint
from llm_hosting_constructs.schedule import OffHours
from llmhost import outputs
from stacks import derived
from stacks.network import NetworkStack


@dataclass(frozen=True)
class SageMakerSettings:
    """Everything app.py derives from the `sagemaker:` config section."""

    endpoint_name: str = derived("<env>-<model.served_name>")
    image_uri: str = derived("sagemaker.container at its pinned image_versions, resolved for the region")
    environment: Mapping[str, str] = derived(
        "the container's environment, from model: and sagemaker: (sagemaker_container)"
    )
    instance_type: str
    instance_count: int
    min_capacity: int
    max_capacity: int
    model_data_s3_uri: str | None
    model_data_kms_key_arn: str | None
    volume_kms_key_arn: str | None
    container_startup_timeout_seconds: int
    model_download_timeout_seconds: int
    data_capture_sampling_percentage: int | None
    data_capture_retention_days: int
    target_invocations_per_instance: int
    scale_in_cooldown_seconds: int
    scale_out_cooldown_seconds: int
    rollback_5xx_errors: int = derived("monitoring.thresholds.sagemaker_5xx")
    rollback_latency_p99_ms: int = derived("monitoring.thresholds.sagemaker_model_latency_p99_ms")
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
        network: NetworkStack,
        settings: SageMakerSettings,
        removal_policy: RemovalPolicy,
        **kwargs,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        vpc, subnets = network.vpc, network.workload_subnets
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
            data_capture_sampling_percentage=s.data_capture_sampling_percentage,
            data_capture_retention=Duration.days(s.data_capture_retention_days),
            rollback_5xx_errors=s.rollback_5xx_errors,
            rollback_latency_p99=Duration.millis(s.rollback_latency_p99_ms),
            rollback_bake=Duration.seconds(s.rollback_bake_seconds),
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
