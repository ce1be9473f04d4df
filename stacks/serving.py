"""The serving stack: GPU cluster, the vLLM + gateway service behind an internal ALB, autoscaling, pre-warm.

Composition only; every decision lives in a construct of ``llm_hosting_constructs`` or in
``app.py`` (config -> props). Attribute names are what the API and monitoring stacks use:
``cluster``, ``service``, ``alb``, ``listener``, ``target_group``, ``frontdoor_security_group``,
``auto_scaling_group``, ``metrics_service_name``, ``served_model_name``, ``gateway_api_keys_secret``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_cdk import CfnOutput, CfnResource, Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_ssm as ssm
from aws_cdk.aws_ecr_assets import Platform
from constructs import Construct

from containers.gateway.app.core import contract
from llm_hosting_constructs.affinity import AffinityEnvNames, GatewayAffinity
from llm_hosting_constructs.aws_names import ecr_registry
from llmhost import parameters
from llm_hosting_constructs.gpu_cluster import GpuCluster
from llm_hosting_constructs.inference_service import InferenceService, OffHours, QueueDepthMetric
from llm_hosting_constructs.inference_task import InferenceTask
from llm_hosting_constructs.internal_alb import InternalAlb
from llm_hosting_constructs.prewarm import ModelCacheFill, ModelPrewarm
from llm_hosting_constructs.vllm import VllmSettings, vllm_environment, vllm_serve_args
from llmhost import outputs
from stacks import derived
from stacks.network import NetworkStack
from stacks.model_cache import ModelCacheStack


@dataclass(frozen=True)
class ServingSettings:
    """Everything app.py derives from the config for this stack."""

    instance_type: str
    vllm_image: str
    vllm: VllmSettings = derived("vLLM's flags, from model: and ecs: (VllmSettings)")
    hf_hub_offline: bool
    cpu_units: int = derived("the whole GPU host as ECS registers it (config.schema.ecs_task_resources)")
    memory_mib: int = derived("the whole GPU host as ECS registers it (config.schema.ecs_task_resources)")
    min_capacity: int
    desired_capacity: int
    max_capacity: int
    root_volume_gib: int
    alb_idle_timeout_seconds: int
    deregistration_delay_seconds: int = derived(
        "api.stream_timeout_seconds: a draining target keeps its longest stream"
    )
    certificate_arn: str | None
    health_check_grace_period_seconds: int
    scale_requests_per_target: int
    scale_queue_depth: int
    off_hours: OffHours | None
    metrics_service_name: str = derived("the EMF Service dimension, llm-hosting-<env>")
    gateway_environment: Mapping[str, str] = derived("the gateway container's environment (contract.ENV_*)")
    gateway_asset_dir: str = derived("the gateway's source in this repository")
    prewarm_script: str = derived("the pre-warm script in this repository")
    log_retention: logs.RetentionDays
    deletion_protection: bool = derived("retain_stateful")
    stop_timeout_seconds: int = derived("ECS's maximum, 120 s: the gateway drains within it", default=120)
    cloudwatch_agent_config: Mapping[str, Any] | None = derived(
        "the GPU metrics the agent collects (gpu_metrics.agent_config)", default=None
    )
    model_s3_uri: str | None = None
    affinity: str = "off"  # off | prefix | conversation (llm_hosting_constructs.affinity)
    affinity_namespace_name: str = derived("Cloud Map namespace <service>.internal", default="llm-hosting.internal")
    managed_termination_protection: bool = derived("retain_stateful", default=True)


class ServingStack(Stack):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        network: NetworkStack,
        cache: ModelCacheStack,
        settings: ServingSettings,
        environment: str,
        removal_policy: RemovalPolicy,
        **kwargs,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        vpc, subnets = network.vpc, network.workload_subnets
        s = settings
        self.metrics_service_name = s.metrics_service_name
        self.served_model_name = s.vllm.served_model_name
        # The gateway's keys (JSON {"key-id": "key"}); the front door must send the FRONTDOOR_KEY_ID one as
        # "Authorization: Bearer <key>" (e.g. an integration request header from a dynamic reference).
        self.gateway_api_keys_secret = cache.secrets.api_keys

        gpu = GpuCluster(
            self,
            "Gpu",
            vpc=vpc,
            subnets=subnets,
            instance_type=s.instance_type,
            # One spare host so a rolling deployment at max_capacity can still start its new task.
            max_instances=s.max_capacity + 1,
            root_volume_gib=s.root_volume_gib,
            container_stop_timeout=Duration.seconds(s.stop_timeout_seconds),
            cloudwatch_agent_config=s.cloudwatch_agent_config,
            managed_termination_protection=s.managed_termination_protection,
        )
        self.cluster = gpu.cluster
        self.auto_scaling_group = gpu.auto_scaling_group

        vllm_image = self._vllm_image(s.vllm_image)
        # Local views of the stateful stack's secrets: a grant on them goes into this stack's role
        # policies (never into the other stack's key policy, which would make the stacks depend on
        # each other both ways); decrypting with the key is granted below, through Secrets Manager only.
        hf_token = cache.secrets.hf_token  # an existing secret by name (no cross-stack export), or None
        api_keys = secretsmanager.Secret.from_secret_complete_arn(self, "ApiKeys", cache.secrets.api_keys.secret_arn)
        task = InferenceTask(
            self,
            "Inference",
            vllm_image=vllm_image,
            vllm_args=vllm_serve_args(s.vllm),
            vllm_environment=vllm_environment(hf_hub_offline=s.hf_hub_offline, keepalive_s=contract.VLLM_KEEPALIVE_S),
            gpu_count=s.vllm.tensor_parallel_size,
            vllm_port=s.vllm.port,
            hf_token=hf_token,
            model_cache=cache.model_cache,
            hf_hub_offline=s.hf_hub_offline,
            gateway_image=ecs.ContainerImage.from_asset(s.gateway_asset_dir, platform=Platform.LINUX_AMD64),
            gateway_port=contract.GATEWAY_PORT,
            gateway_environment=s.gateway_environment,
            gateway_secrets={contract.ENV_API_KEYS: api_keys},
            gateway_healthcheck_command=contract.CONTAINER_HEALTHCHECK_COMMAND,
            cpu_units=s.cpu_units,
            memory_mib=s.memory_mib,
            stop_timeout=Duration.seconds(s.stop_timeout_seconds),
            log_retention=s.log_retention,
            log_key=cache.key,
            log_removal_policy=removal_policy,
        )
        self.task_definition = task.task_definition
        tenant_names = s.gateway_environment.get(contract.ENV_TENANT_NAMES_PARAMETER)
        if tenant_names:
            # Written by the api stack, which deploys after this one: the ARN is built from the name
            # (a reference would make the stacks depend on each other both ways).
            task.task_role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="ReadTenantNames",
                    actions=["ssm:GetParameter"],
                    resources=[
                        self.format_arn(service="ssm", resource="parameter", resource_name=tenant_names.removeprefix("/"))
                    ],
                )
            )

        alb = InternalAlb(
            self,
            "Alb",
            vpc=vpc,
            subnets=subnets,
            target_port=contract.GATEWAY_PORT,
            health_check_path=contract.HEALTH_PATH,
            idle_timeout=Duration.seconds(s.alb_idle_timeout_seconds),
            deregistration_delay=Duration.seconds(s.deregistration_delay_seconds),
            certificate_arn=s.certificate_arn,
            access_log_bucket=cache.access_log_bucket,
            deletion_protection=s.deletion_protection,
        )
        self.alb = alb.load_balancer
        self.listener = alb.listener
        self.target_group = alb.target_group
        self.alb_security_group = alb.security_group
        # The API engineer attaches this group to the API Gateway VPC link; it is the ALB's only caller.
        self.frontdoor_security_group = ec2.SecurityGroup(
            self,
            "FrontdoorSecurityGroup",
            vpc=vpc,
            description="API Gateway VPC link ENIs: may call the internal ALB listener and nothing else",
            allow_all_outbound=False,
        )
        alb.allow_from(self.frontdoor_security_group, "API front door (VPC link) to the internal ALB")

        inference = InferenceService(
            self,
            "Serving",
            cluster=self.cluster,
            task_definition=task.task_definition,
            capacity_provider=gpu.capacity_provider,
            vpc=vpc,
            subnets=subnets,
            target_group=self.target_group,
            container_name=task.gateway.container_name,
            container_port=contract.GATEWAY_PORT,
            desired_capacity=s.desired_capacity,
            min_capacity=s.min_capacity,
            max_capacity=s.max_capacity,
            scale_requests_per_target=s.scale_requests_per_target,
            queue_depth=QueueDepthMetric(
                namespace=contract.METRICS_NAMESPACE,
                metric_name=contract.METRIC_QUEUE_DEPTH,
                dimensions=self.metric_dimensions(),
            ),
            scale_queue_depth=s.scale_queue_depth,
            health_check_grace_period=Duration.seconds(s.health_check_grace_period_seconds),
            off_hours=s.off_hours,
            auto_scaling_group=self.auto_scaling_group,
        )
        self.service = inference.service
        # Dependencies of the CfnService itself (not of its scaling resources, which reference it anyway).
        service_resource: CfnResource = self.service.node.default_child  # type: ignore[assignment]
        gpu.depend_on_capacity(service_resource)
        self.service_security_group = inference.security_group
        service_resource.add_resource_dependency(
            cache.model_cache.allow_from(self.service_security_group, "Serving tasks (vLLM) to the model cache")
        )
        self.affinity: GatewayAffinity | None = None
        if s.affinity != "off":
            self.affinity = GatewayAffinity(
                self, "Affinity", vpc=vpc, service=self.service, security_group=self.service_security_group,
                gateway_container=task.gateway, gateway_port=contract.GATEWAY_PORT, mode=s.affinity,  # type: ignore[arg-type]
                namespace_name=s.affinity_namespace_name,
                env_names=AffinityEnvNames(
                    mode=contract.ENV_AFFINITY, dns_name=contract.ENV_AFFINITY_DNS_NAME,
                    port=contract.ENV_AFFINITY_PORT, max_queue=contract.ENV_AFFINITY_MAX_QUEUE,
                ),
            )  # fmt: skip

        prewarm = ModelPrewarm(
            self,
            "Prewarm",
            vpc=vpc,
            subnets=subnets,
            image=vllm_image,
            script=s.prewarm_script,
            model_id=s.vllm.model_id,
            revision=s.vllm.revision,
            hf_token=hf_token,
            model_cache=cache.model_cache,
            log_retention=s.log_retention,
            log_key=cache.key,
            log_removal_policy=removal_policy,
            model_s3_uri=s.model_s3_uri,
        )
        self.prewarm = prewarm
        # The first deploy (and every model or revision change) fills the cache before the service
        # starts or rolls: vLLM reads it offline, and its tasks never wait on a download.
        self.cache_fill = ModelCacheFill(
            self,
            "CacheFill",
            prewarm=prewarm,
            cluster=self.cluster,
            log_retention=s.log_retention,
            log_key=cache.key,
            log_removal_policy=removal_policy,
        )
        service_resource.add_resource_dependency(self.cache_fill.resource.node.default_child)  # type: ignore[arg-type]
        for role in (task.execution_role, prewarm.task_definition.obtain_execution_role()):
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["kms:Decrypt"],
                    resources=[cache.key.key_arn],
                    conditions={"StringEquals": {"kms:ViaService": f"secretsmanager.{self.region}.amazonaws.com"}},
                )
            )
            if self.vllm_repository is not None:
                # An ECR pull-through cache creates the repository and imports the upstream image on the
                # first pull, with the puller's permissions: scoped to this one repository.
                self.vllm_repository.grant(role, "ecr:BatchImportUpstreamImage", "ecr:CreateRepository")

        # What the api and monitoring stacks read at deploy: SSM parameters, never exports, so that a
        # replaced ALB, target group, security group or service updates them instead of failing.
        for key, value in {
            parameters.ALB_ARN: self.alb.load_balancer_arn,
            parameters.ALB_DNS_NAME: self.alb.load_balancer_dns_name,
            parameters.ALB_SECURITY_GROUP_ID: self.alb_security_group.security_group_id,
            parameters.ALB_FULL_NAME: self.alb.load_balancer_full_name,
            parameters.TARGET_GROUP_FULL_NAME: self.target_group.target_group_full_name,
            parameters.FRONTDOOR_SECURITY_GROUP_ID: self.frontdoor_security_group.security_group_id,
            parameters.ECS_CLUSTER_NAME: self.cluster.cluster_name,
            parameters.ECS_SERVICE_NAME: self.service.service_name,
            parameters.ASG_NAME: self.auto_scaling_group.auto_scaling_group_name,
        }.items():
            ssm.StringParameter(
                self,
                f"Parameter-{key}",
                parameter_name=parameters.name(environment, key),
                string_value=value,
                description=f"llm-hosting {environment}: {key} of the serving stack, read by later stacks at deploy",
            )

        CfnOutput(self, outputs.CLUSTER_NAME, value=self.cluster.cluster_name, description="ECS cluster")
        CfnOutput(self, outputs.SERVICE_NAME, value=self.service.service_name, description="vLLM + gateway service")
        CfnOutput(
            self, outputs.LOAD_BALANCER_DNS, value=self.alb.load_balancer_dns_name,
            description="Internal ALB (reachable only from the API front door's security group)",
        )  # fmt: skip
        CfnOutput(self, outputs.PREWARM_TASK_DEFINITION_ARN, value=prewarm.task_definition.task_definition_arn)
        CfnOutput(self, outputs.PREWARM_SUBNETS, value=Fn.join(",", prewarm.subnet_ids))
        CfnOutput(self, outputs.PREWARM_SECURITY_GROUP, value=prewarm.security_group.security_group_id)
        CfnOutput(self, outputs.PREWARM_LOG_GROUP, value=prewarm.log_group.log_group_name)
        CfnOutput(
            self, outputs.PREWARM_COMMAND, value=prewarm.run_task_command(self.cluster.cluster_name, self.region),
            description="Runs the one-off model pre-warm (Fargate) that fills the EFS cache",
        )  # fmt: skip

    def metric_dimensions(self) -> dict[str, str]:
        """The gateway's EMF dimensions (contract.EMF_DIMENSION_SETS) with this deployment's values."""
        values = {
            contract.DIMENSION_SERVICE: self.metrics_service_name,
            contract.DIMENSION_MODEL: self.served_model_name,
        }
        (dimension_set,) = contract.EMF_DIMENSION_SETS
        return {name: values[name] for name in dimension_set}

    def _vllm_image(self, ref: str) -> ecs.ContainerImage:
        """An image in this account's ECR (a pull-through cache or mirror) gets a pull grant; others are public."""
        registry = ecr_registry(self.account, self.region)
        self.vllm_repository: ecr.IRepository | None = None
        if ref.startswith(registry):
            name, tag = ref.removeprefix(registry).rsplit(":", 1)
            self.vllm_repository = ecr.Repository.from_repository_name(self, "VllmRepository", name)
            return ecs.ContainerImage.from_ecr_repository(self.vllm_repository, tag)
        return ecs.ContainerImage.from_registry(ref)
