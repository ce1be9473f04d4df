"""A SageMaker real-time endpoint for an LLM container, in private subnets, with least privilege."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aws_cdk import CfnDeletionPolicy, CfnResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from .aws_names import S3_PREFIX_URI
from .checkov import skip_checkov
from .log_groups import access_log_bucket, encrypted_log_group
from .reuse import existing_or_new, reject_contradictions
from .sagemaker_container import parse_image_uri, volume_kms_key_problem
from .sagemaker_policy import acknowledge_wildcards, grant_execution
from .sizing import InstanceType, get_instance

ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
CAPTURE_PREFIX = "captures"
TIMEOUT_RANGE = (60, 3600)  # ContainerStartupHealthCheckTimeoutInSeconds / ModelDataDownloadTimeoutInSeconds


def instance_slug(instance_type: str) -> str:
    """``ml.g6e.2xlarge`` -> ``g6e-2xlarge``: the instance type as it appears in an endpoint name."""
    return instance_type.removeprefix("ml.").replace(".", "-")


class SageMakerEndpoint(Construct):
    """Model, endpoint config and endpoint for one LLM container on ``ml.*`` GPU instances.

    Safe defaults:

    - Weights pre-staged uncompressed in S3 (``model_data_s3_uri``, a prefix ending in ``/``)
      reach the container as ``ModelDataSource`` at ``/opt/ml/model``, and the container runs
      with network isolation: it can reach nothing, not even the Hub. Without
      ``model_data_s3_uri`` the container pulls from the Hugging Face Hub and so needs network
      (isolation off, and a NAT route from the subnets).
    - Its own execution role, scoped to the model's S3 prefix, the image's ECR repository, the
      endpoint's log group, SageMaker's metric namespace, the VPC's network interfaces and the
      rollback alarms. No managed policy.
    - Its own security group in the given (private) subnets: no ingress, egress HTTPS only.
    - Start-up health check and model download timeouts of 30 minutes (60–3600 s allowed).
    - A customer-managed KMS key (rotated) for the log group, the data-capture bucket and, only
      where the instance type has no local NVMe storage, the ML storage volume: SageMaker
      rejects a volume key for instance types with instance storage (they encrypt it in
      hardware), so ``volume_kms_key`` with such a type is a ``ValueError`` here.
    - Blue/green updates (all at once, then ``rollback_bake`` watching two alarms: invocation 5XX
      errors and p99 model latency) with automatic rollback when either fires.
    - Data capture off (prompts and completions are not stored) unless
      ``data_capture_sampling_percentage`` is given; then to a KMS-encrypted, versioned, SSL-only bucket.

    Instance type changes deploy as a new endpoint (``name_includes_instance_type``, the default):
    the endpoint's name ends in the instance type (``-g6e-2xlarge``), so a new type is a new name,
    which CloudFormation creates beside the old endpoint (EndpointName is create-only) together with
    a new scalable target, and deletes the old pair only after the new one is in service. An
    in-place ``UpdateEndpoint`` to another instance type fails while the variant is a registered
    scalable target (AWS: "Update endpoints that use auto scaling"); a new count or model does not,
    so those update in place (blue/green). Either way the instance quota must hold the old fleet and
    the new one at once (docs/sagemaker.md).

    Bring your own execution role with ``existing_role`` (the statements above are added to it; an
    immutable imported role gets none, and must already allow them), or adjust the created one with
    ``role_props`` (keyword arguments of ``iam.Role``, e.g. ``permissions_boundary``), not both.

    Attributes: ``role``, ``security_group``, ``key``, ``log_group``, ``model``, ``endpoint_config``,
    ``endpoint``, ``endpoint_name``, ``variant_name``, ``volume_kms_key`` (None on NVMe types),
    ``data_capture_bucket`` (None when off), ``rollback_alarms``, ``instance``.
    ``grant_invoke(grantee)`` lets a role call the endpoint (streamed or not).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        endpoint_name: str,
        image_uri: str,
        environment: Mapping[str, str],
        instance_type: str | InstanceType,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        instance_count: int = 1,
        variant_name: str = "AllTraffic",
        model_data_s3_uri: str | None = None,
        model_data_kms_key_arn: str | None = None,
        network_isolation: bool | None = None,
        container_startup_timeout: Duration = Duration.minutes(30),
        model_download_timeout: Duration = Duration.minutes(30),
        volume_kms_key: kms.IKey | None = None,
        data_capture_sampling_percentage: int | None = None,
        data_capture_retention: Duration = Duration.days(30),
        rollback_5xx_errors: int = 5,
        rollback_latency_p99: Duration = Duration.seconds(60),
        rollback_bake: Duration = Duration.minutes(10),
        log_retention: logs.RetentionDays = logs.RetentionDays.THREE_MONTHS,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        name_includes_instance_type: bool = True,
        existing_role: iam.IRole | None = None,
        role_props: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(scope, id_)
        reject_contradictions("SageMakerEndpoint", role=(existing_role, role_props))
        instance = get_instance(instance_type) if isinstance(instance_type, str) else instance_type
        isolate = model_data_s3_uri is not None if network_isolation is None else network_isolation
        s3_match = S3_PREFIX_URI.match(model_data_s3_uri) if model_data_s3_uri else None
        startup_s, download_s = container_startup_timeout.to_seconds(), model_download_timeout.to_seconds()
        if not instance.is_sagemaker:
            raise ValueError(f"SageMakerEndpoint: instance_type {instance.name!r} is not a SageMaker type (ml.*)")
        log_group_prefix = f"/aws/sagemaker/Endpoints/{endpoint_name}"
        if name_includes_instance_type:
            endpoint_name = f"{endpoint_name}-{instance_slug(instance.name)}"
        if not ENDPOINT_NAME.match(endpoint_name):
            raise ValueError(
                f"SageMakerEndpoint: endpoint name {endpoint_name!r} must match {ENDPOINT_NAME.pattern} (at most 63 "
                "characters, the instance type included); shorten endpoint_name"
            )
        if instance_count < 1:
            raise ValueError("SageMakerEndpoint: instance_count must be at least 1 (real-time endpoints cannot run 0)")
        if model_data_s3_uri is not None and s3_match is None:
            raise ValueError(
                f"SageMakerEndpoint: model_data_s3_uri {model_data_s3_uri!r} must be an S3 prefix s3://bucket/path/ "
                "ending in '/' (uncompressed weights)"
            )
        if model_data_kms_key_arn and model_data_s3_uri is None:
            raise ValueError("SageMakerEndpoint: model_data_kms_key_arn needs model_data_s3_uri")
        if isolate and model_data_s3_uri is None:
            raise ValueError(
                "SageMakerEndpoint: network_isolation needs model_data_s3_uri; a container that pulls from the Hub needs network"
            )
        for name, secs in (("container_startup_timeout", startup_s), ("model_download_timeout", download_s)):
            if not TIMEOUT_RANGE[0] <= secs <= TIMEOUT_RANGE[1]:
                raise ValueError(f"SageMakerEndpoint: {name} is {secs} s; SageMaker allows 60..3600 s")
        volume_key_problem = volume_kms_key_problem(instance.name, instance.has_local_nvme)
        if volume_kms_key is not None and volume_key_problem:
            raise ValueError(f"SageMakerEndpoint: {volume_key_problem}: drop volume_kms_key")
        if data_capture_sampling_percentage is not None and not 1 <= data_capture_sampling_percentage <= 100:
            raise ValueError(
                f"SageMakerEndpoint: data_capture_sampling_percentage {data_capture_sampling_percentage} must be 1..100"
            )
        if isolate and {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"} & set(environment):
            raise ValueError("SageMakerEndpoint: drop the Hub token: with network isolation the weights come from S3 only")

        image = parse_image_uri(image_uri)  # fails early on a URI the role could not be scoped to
        self.instance = instance
        self.endpoint_name = endpoint_name
        self.variant_name = variant_name

        # SageMaker writes the endpoint's container logs to this group; created up front to set
        # retention and encryption, and to scope the role to exactly this group.
        self.key, self.log_group = encrypted_log_group(
            self,
            "LogGroup",
            retention=log_retention,
            removal_policy=removal_policy,
            key_id="Key",
            key_description=f"SageMaker endpoint {endpoint_name}: logs, data capture, storage volume",
            log_group_name=f"/aws/sagemaker/Endpoints/{endpoint_name}",
            # The key keeps decrypting the groups of earlier instance types' endpoints (kept below).
            key_scope=f"{log_group_prefix}-*" if name_includes_instance_type else None,
        )
        # SageMaker names the group after the endpoint, so a new instance type (a new endpoint name)
        # replaces it: keep the old endpoint's logs, which expire with their retention.
        group_resource: CfnResource = self.log_group.node.default_child  # type: ignore[assignment]
        group_resource.cfn_options.update_replace_policy = CfnDeletionPolicy.RETAIN

        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description=f"SageMaker endpoint {endpoint_name}: no ingress, HTTPS egress to VPC endpoints",
            allow_all_outbound=False,
        )
        # S3 (model data) is a gateway endpoint whose prefix list ID is a lookup; the private
        # subnets route nowhere else but VPC endpoints (and NAT only where config adds one).
        self.security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to AWS APIs (VPC endpoints, S3)")
        subnet_ids = vpc.select_subnets(
            subnet_group_name=subnets.subnet_group_name,
            subnet_type=subnets.subnet_type,
            one_per_az=subnets.one_per_az,
            subnets=subnets.subnets,
            availability_zones=subnets.availability_zones,
        ).subnet_ids

        self.role: iam.IRole = existing_or_new(
            existing_role,
            role_props,
            lambda **props: iam.Role(self, "ExecutionRole", **props),
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"SageMaker endpoint {endpoint_name}: pulls its image and weights, writes its logs and metrics",
        )
        self._wildcards = grant_execution(
            self.role,
            image=image,
            log_group=self.log_group,
            security_group=self.security_group,
            subnet_ids=subnet_ids,
            vpc=vpc,
            weights=(s3_match["bucket"], s3_match["prefix"]) if s3_match else None,
            weights_kms_key_arn=model_data_kms_key_arn,
        )

        self.volume_kms_key: kms.IKey | None = None
        if not instance.has_local_nvme:
            self.volume_kms_key = volume_kms_key or self.key
            self.role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="StorageVolumeKey",
                    actions=["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:CreateGrant", "kms:DescribeKey"],
                    resources=[self.volume_kms_key.key_arn],
                )
            )

        self.data_capture_bucket: s3.Bucket | None = None
        data_capture = None
        if data_capture_sampling_percentage is not None:
            self.data_capture_bucket = self._data_capture_bucket(data_capture_retention, removal_policy)
            capture_arn = self.data_capture_bucket.arn_for_objects(f"{CAPTURE_PREFIX}/*")
            self._wildcards.append(("capture", capture_arn))
            self.role.add_to_principal_policy(
                iam.PolicyStatement(sid="WriteDataCapture", actions=["s3:PutObject"], resources=[capture_arn])
            )
            self.role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="EncryptDataCapture", actions=["kms:GenerateDataKey", "kms:Encrypt"], resources=[self.key.key_arn]
                )
            )
            data_capture = sagemaker.CfnEndpointConfig.DataCaptureConfigProperty(
                enable_capture=True,
                initial_sampling_percentage=data_capture_sampling_percentage,
                destination_s3_uri=self.data_capture_bucket.s3_url_for_object(CAPTURE_PREFIX),
                kms_key_id=self.key.key_arn,
                capture_options=[
                    sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Input"),
                    sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Output"),
                ],
            )

        container = sagemaker.CfnModel.ContainerDefinitionProperty(
            image=image_uri,
            environment=dict(environment),
            model_data_source=(
                sagemaker.CfnModel.ModelDataSourceProperty(
                    s3_data_source=sagemaker.CfnModel.S3DataSourceProperty(
                        s3_uri=model_data_s3_uri, s3_data_type="S3Prefix", compression_type="None"
                    )
                )
                if model_data_s3_uri
                else None
            ),
        )
        self.model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=self.role.role_arn,
            primary_container=container,
            enable_network_isolation=isolate,
            vpc_config=sagemaker.CfnModel.VpcConfigProperty(
                security_group_ids=[self.security_group.security_group_id], subnets=subnet_ids
            ),
        )
        # SageMaker checks the role's permissions when it creates the model and the endpoint. The policy
        # is the role's DefaultPolicy, or an imported role's Policy; none where the role is immutable.
        policy = self.role.node.try_find_child("DefaultPolicy") or self.role.node.try_find_child("Policy")
        if policy is not None:
            self.model.node.add_dependency(policy)

        self.endpoint_config = sagemaker.CfnEndpointConfig(
            self,
            "EndpointConfig",
            production_variants=[
                sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                    variant_name=variant_name,
                    model_name=self.model.attr_model_name,
                    instance_type=instance.name,
                    initial_instance_count=instance_count,
                    initial_variant_weight=1.0,
                    container_startup_health_check_timeout_in_seconds=int(startup_s),
                    model_data_download_timeout_in_seconds=int(download_s),
                )
            ],
            kms_key_id=self.volume_kms_key.key_arn if self.volume_kms_key else None,
            data_capture_config=data_capture,
        )
        if self.volume_kms_key is None:
            skip_checkov(
                self.endpoint_config,
                "CKV_AWS_98",
                f"{instance.name} has local NVMe storage, encrypted in hardware; CreateEndpointConfig rejects a KmsKeyId for it",
            )

        self.rollback_alarms = self._rollback_alarms(rollback_5xx_errors, rollback_latency_p99)
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="DescribeRollbackAlarms",
                actions=["cloudwatch:DescribeAlarms"],
                resources=[a.alarm_arn for a in self.rollback_alarms],
            )
        )
        bake = int(rollback_bake.to_seconds())
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=endpoint_name,
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
            # Keep the instance count Application Auto Scaling has set across updates; a new
            # data-capture setting still applies.
            retain_all_variant_properties=True,
            exclude_retained_variant_properties=[
                sagemaker.CfnEndpoint.VariantPropertyProperty(variant_property_type="DataCaptureConfig")
            ],
            deployment_config=sagemaker.CfnEndpoint.DeploymentConfigProperty(
                blue_green_update_policy=sagemaker.CfnEndpoint.BlueGreenUpdatePolicyProperty(
                    traffic_routing_configuration=sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(
                        type="ALL_AT_ONCE", wait_interval_in_seconds=bake
                    ),
                    termination_wait_in_seconds=min(bake, 600),
                    # New fleet: download + start-up, then the bake, with room to spare.
                    maximum_execution_timeout_in_seconds=min(28_800, max(600, int(download_s + startup_s) + 2 * bake + 600)),
                ),
                auto_rollback_configuration=sagemaker.CfnEndpoint.AutoRollbackConfigProperty(
                    alarms=[sagemaker.CfnEndpoint.AlarmProperty(alarm_name=a.alarm_name) for a in self.rollback_alarms]
                ),
            ),
        )
        self.endpoint.node.add_dependency(self.log_group)
        acknowledge_wildcards(self.role, self._wildcards)

    def grant_invoke(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` invoke the endpoint, streamed or not (and nothing else)."""
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["sagemaker:InvokeEndpoint", "sagemaker:InvokeEndpointWithResponseStream"],
            resource_arns=[self.endpoint.ref],  # Ref of AWS::SageMaker::Endpoint is its ARN
        )

    # --- pieces ---------------------------------------------------------------------------

    def _data_capture_bucket(self, retention: Duration, removal_policy: RemovalPolicy) -> s3.Bucket:
        # S3 server access logging writes only to SSE-S3 buckets.
        access_logs = access_log_bucket(
            self,
            "DataCaptureAccessLogs",
            receives="the data-capture bucket's server access logs",
            removal_policy=removal_policy,
            auto_delete_objects=removal_policy == RemovalPolicy.DESTROY,
        )
        bucket = s3.Bucket(
            self,
            "DataCaptureBucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="data-capture/",
            lifecycle_rules=[s3.LifecycleRule(expiration=retention, noncurrent_version_expiration=Duration.days(1))],
            removal_policy=removal_policy,
            auto_delete_objects=removal_policy == RemovalPolicy.DESTROY,
        )
        if removal_policy == RemovalPolicy.DESTROY:
            # S3 deletes only empty buckets: CDK's auto-delete custom resource empties both first.
            provider = Stack.of(self).node.find_child("Custom::S3AutoDeleteObjectsCustomResourceProvider")
            reason = (
                "CDK's auto-delete handler: runs only when a bucket of an environment torn down with it is "
                "deleted, calls only S3 on those buckets, holds no data"
            )
            for check in ("CKV_AWS_115", "CKV_AWS_116", "CKV_AWS_117"):
                skip_checkov(provider.node.find_child("Handler"), check, reason)
        return bucket

    def _rollback_alarms(self, errors_5xx: int, latency_p99: Duration) -> list[cloudwatch.Alarm]:
        dims = {"EndpointName": self.endpoint_name, "VariantName": self.variant_name}
        errors = cloudwatch.Alarm(
            self,
            "Invocation5xxAlarm",
            alarm_description=f"{self.endpoint_name}: model 5XX errors; rolls back a blue/green update while baking",
            metric=cloudwatch.Metric(
                namespace="AWS/SageMaker",
                metric_name="Invocation5XXErrors",
                dimensions_map=dims,
                statistic="Sum",
                period=Duration.minutes(1),
            ),
            threshold=errors_5xx,
            evaluation_periods=5,
            datapoints_to_alarm=2,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        latency = cloudwatch.Alarm(
            self,
            "ModelLatencyAlarm",
            alarm_description=f"{self.endpoint_name}: p99 model latency; rolls back a blue/green update while baking",
            metric=cloudwatch.Metric(
                namespace="AWS/SageMaker",
                metric_name="ModelLatency",  # microseconds
                dimensions_map=dims,
                statistic="p99",
                period=Duration.minutes(1),
            ),
            threshold=int(latency_p99.to_milliseconds()) * 1000,
            evaluation_periods=5,
            datapoints_to_alarm=3,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        return [errors, latency]
