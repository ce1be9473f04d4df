#!/usr/bin/env python3
"""CDK entry point: one Stage per environment file in `config/`, cdk-nag on the whole app.

`npx cdk deploy "dev/*"` deploys one environment. Every config file is validated before any
construct is created, so an invalid file fails synth with one line and writes no template.
Config is turned into construct props here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import cx_api
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_ssm as ssm
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks, NIST80053R5Checks
from constructs import Construct

from config.schema import (
    CONFIG_DIR,
    ConfigError,
    EnvironmentConfig,
    ecs_task_resources,
    load_all,
    sagemaker_token_limits,
)
from containers.gateway.app.core import contract
from llm_hosting_constructs import gpu_metrics, sagemaker_container
from llm_hosting_constructs.front_door import TENANT_KEY_MAP_PARAMETER, TenantPlan
from llm_hosting_constructs.signals import (
    AffinityMetricNames,
    EcsServiceRef,
    GatewayMetricNames,
    LoadBalancerRef,
    SageMakerRef,
    ServiceSignals,
)
from llm_hosting_constructs.sizing import get_instance
from llm_hosting_constructs.vllm import VllmSettings
from llmhost import outputs, parameters
from stacks.api import AlbBackend, ApiSettings, ApiStack
from stacks.compliance import acknowledge_regulated_packs
from stacks.model_cache import ModelCacheSettings, ModelCacheStack
from stacks.monitoring import MonitoringSettings, MonitoringStack
from stacks.network import NetworkSettings, NetworkStack
from stacks.sagemaker import SageMakerSettings, SageMakerStack
from stacks.serving import ServingSettings, ServingStack

ROOT = Path(__file__).resolve().parent
# The id of the gateway key the API front door sends as its bearer key (generated in the API-keys secret);
# the gateway trusts the tenant header only on requests under this key.
FRONTDOOR_KEY_ID = contract.DEFAULT_FRONTDOOR_KEY_ID


def _removal(cfg: EnvironmentConfig) -> cdk.RemovalPolicy:
    return cdk.RemovalPolicy.RETAIN if cfg.retain_stateful else cdk.RemovalPolicy.DESTROY


def _stack_props(cfg: EnvironmentConfig, holds: str, *, protect: bool = True) -> dict[str, Any]:
    """What every stack of the environment gets: its description, the removal policy of what it holds and,
    where ``protect``, termination protection in prod-like environments (``retain_stateful``)."""
    return {
        "description": f"llm-hosting {cfg.name}: {holds}",
        "removal_policy": _removal(cfg),
        **({"termination_protection": cfg.retain_stateful} if protect else {}),
    }


_R = logs.RetentionDays
RETENTION: dict[int, logs.RetentionDays] = {
    1: _R.ONE_DAY, 3: _R.THREE_DAYS, 5: _R.FIVE_DAYS, 7: _R.ONE_WEEK, 14: _R.TWO_WEEKS,
    30: _R.ONE_MONTH, 60: _R.TWO_MONTHS, 90: _R.THREE_MONTHS, 120: _R.FOUR_MONTHS,
    150: _R.FIVE_MONTHS, 180: _R.SIX_MONTHS, 365: _R.ONE_YEAR, 400: _R.THIRTEEN_MONTHS,
    545: _R.EIGHTEEN_MONTHS, 731: _R.TWO_YEARS, 1096: _R.THREE_YEARS, 1827: _R.FIVE_YEARS,
    2192: _R.SIX_YEARS, 2557: _R.SEVEN_YEARS, 2922: _R.EIGHT_YEARS, 3288: _R.NINE_YEARS,
    3653: _R.TEN_YEARS,
}  # fmt: skip


def build_stage(app: cdk.App, cfg: EnvironmentConfig) -> cdk.Stage:
    """All stacks of one environment, wired together."""
    stage = cdk.Stage(app, cfg.name, env=cdk.Environment(account=cfg.account, region=cfg.region))
    network = NetworkStack(
        stage,
        outputs.NETWORK,
        settings=NetworkSettings(
            cidr=cfg.network.cidr,
            availability_zones=cfg.availability_zones,
            nat_gateways=cfg.network.nat_gateways,
            flow_log_retention=RETENTION[cfg.network.flow_log_retention_days],
        ),
        **_stack_props(cfg, "VPC, flow logs, VPC endpoints"),
    )
    serving = build_ecs_serving(stage, cfg, network) if "ecs" in cfg.backends else None
    sagemaker = build_sagemaker(stage, cfg, network) if "sagemaker" in cfg.backends else None
    api = build_api(stage, cfg, network, serving) if serving is not None else None
    build_monitoring(stage, cfg, api=api, serving=serving, sagemaker=sagemaker)
    acknowledge_regulated_packs(stage, cfg)
    for key, value in sorted({"environment": cfg.name, **cfg.tags}.items()):
        cdk.Tags.of(stage).add(key, value)
        # With @aws-cdk/core:explicitStackTags the call above tags resources only; CloudFormation
        # propagates stack tags to what a template cannot tag, so stacks are tagged explicitly.
        cdk.Tags.of(stage).add(key, value, include_resource_types=["aws:cdk:stack"])
    return stage


def serving_settings(cfg: EnvironmentConfig) -> ServingSettings:
    """Config -> props of the serving stack (ECS backend)."""
    assert cfg.ecs is not None
    ecs, m = cfg.ecs, cfg.model
    cpu_units, memory_mib = ecs_task_resources(ecs.instance_type)
    stop_timeout_s = 120  # ECS's maximum: the gateway drains within it, vLLM stops after the gateway
    # The EMF `Service` dimension: the gateway emits it, the alarms select on it; one value for both.
    service_name = f"llm-hosting-{cfg.name}"
    return ServingSettings(
        instance_type=ecs.instance_type,
        vllm_image=ecs.vllm_image,
        vllm=VllmSettings(
            model_id=m.id,
            revision=m.revision,
            served_model_name=m.served_name,
            max_model_len=m.max_model_len,
            tensor_parallel_size=m.tensor_parallel_size,
            gpu_memory_utilization=ecs.gpu_memory_utilization,
            max_num_seqs=ecs.max_num_seqs,
            dtype=m.dtype,
            quantization=m.quantization,
            kv_cache_dtype=m.kv_cache_dtype,
            enable_chunked_prefill=ecs.enable_chunked_prefill,
            tool_call_parser=m.vllm_tool_call_parser,
            port=contract.VLLM_PORT,
        ),
        hf_hub_offline=ecs.hf_hub_offline,
        cpu_units=cpu_units,
        memory_mib=memory_mib,
        min_capacity=ecs.min_capacity,
        desired_capacity=ecs.desired_capacity,
        max_capacity=ecs.max_capacity,
        root_volume_gib=ecs.root_volume_gib,
        alb_idle_timeout_seconds=ecs.alb_idle_timeout_seconds,
        # A draining target keeps its streams until the longest one the API allows has ended.
        deregistration_delay_seconds=cfg.api.stream_timeout_seconds,
        certificate_arn=ecs.certificate_arn,
        health_check_grace_period_seconds=ecs.health_check_grace_period_seconds,
        scale_requests_per_target=ecs.scale_requests_per_target,
        scale_queue_depth=ecs.scale_queue_depth,
        off_hours=ecs.off_hours,
        metrics_service_name=service_name,
        gateway_environment={
            contract.ENV_UPSTREAM_URL: contract.DEFAULT_UPSTREAM_URL,
            contract.ENV_SERVED_MODEL_NAME: m.served_name,
            contract.ENV_PORT: str(contract.GATEWAY_PORT),
            contract.ENV_KEEPALIVE_TIMEOUT_S: str(contract.server_keepalive_for_alb(ecs.alb_idle_timeout_seconds)),
            contract.ENV_UPSTREAM_KEEPALIVE_S: str(contract.DEFAULT_UPSTREAM_KEEPALIVE_S),
            contract.ENV_DRAIN_TIMEOUT_S: str(contract.drain_timeout_for_stop_timeout(stop_timeout_s)),
            # API Gateway's private integration may put the stage name (build_api: cfg.name) in front
            # of the path; the gateway serves both forms (issue 11.2).
            contract.ENV_PATH_PREFIX: f"/{cfg.name}",
            contract.ENV_FRONTDOOR_KEY_ID: FRONTDOOR_KEY_ID,
            contract.ENV_TENANT_NAMES_PARAMETER: contract.TENANT_NAMES_PARAMETER.format(env=cfg.name),
            contract.ENV_TENANT_TOKENS_PER_MINUTE: json.dumps(
                {t.name: t.tokens_per_minute for t in cfg.api.tenants if t.tokens_per_minute}, sort_keys=True
            ),
            contract.ENV_SERVICE_NAME: service_name,
            contract.ENV_EMF_ENABLED: "true",
            contract.ENV_LOG_PROMPTS: str(ecs.log_prompts).lower(),
            # Every request reaches the gateway under the front door's one key, so a per-key cap would
            # cap the whole service; tenants are limited by their API Gateway usage plans instead.
            contract.ENV_MAX_CONCURRENCY_PER_KEY: "0",
            contract.ENV_MAX_QUEUE_DEPTH: str(ecs.shed_queue_depth),
        },
        gateway_asset_dir=str(ROOT / "containers" / "gateway"),
        prewarm_script=(ROOT / "containers" / "prewarm" / "prewarm.py").read_text(),
        log_retention=RETENTION[ecs.log_retention_days],
        deletion_protection=cfg.retain_stateful,
        stop_timeout_seconds=stop_timeout_s,
        cloudwatch_agent_config=gpu_metrics.agent_config(),
        model_s3_uri=ecs.model_s3_uri,
        affinity=ecs.affinity,
        affinity_namespace_name=f"{service_name}.internal",
        # Only where the stack is never deleted: the protection ECS leaves behind blocks deleting the ASG.
        managed_termination_protection=cfg.retain_stateful,
    )


def build_ecs_serving(stage: cdk.Stage, cfg: EnvironmentConfig, network: NetworkStack) -> ServingStack:
    """The model-cache (stateful) and serving stacks of the ECS backend."""
    assert cfg.ecs is not None
    cache = ModelCacheStack(
        stage,
        outputs.MODEL_CACHE,
        network=network,
        settings=ModelCacheSettings(
            efs_throughput_mode=cfg.ecs.efs_throughput_mode,
            automatic_backups=cfg.retain_stateful,
            hf_token_secret_name=cfg.ecs.hf_token_secret_name,
            generated_key_id=FRONTDOOR_KEY_ID,
            alb_access_logs=cfg.ecs.alb_access_logs,
            security_group_parameter_name=parameters.name(cfg.name, parameters.MODEL_CACHE_SECURITY_GROUP_ID),
        ),
        **_stack_props(cfg, "EFS model cache, its KMS key, serving secrets (stateful)"),
    )
    serving = ServingStack(
        stage,
        outputs.SERVING,
        network=network,
        cache=cache,
        settings=serving_settings(cfg),
        environment=cfg.name,
        # Serves production traffic: deleting it by mistake is an outage (issue 11.10).
        **_stack_props(cfg, "GPU cluster, vLLM + gateway service, internal ALB, pre-warm task"),
    )
    serving.add_stack_dependency(cache, "reads the model cache's security group from an SSM parameter at deploy")
    return serving


def sagemaker_settings(cfg: EnvironmentConfig) -> SageMakerSettings:
    """Config -> props of the SageMaker stack (the alternative backend)."""
    assert cfg.sagemaker is not None
    sm, m = cfg.sagemaker, cfg.model
    max_input_tokens, prefill_tokens = sagemaker_token_limits(cfg)
    from_s3 = sm.weights == "s3"
    environment = sagemaker_container.container_environment(
        sm.container,
        model=sagemaker_container.MODEL_DIR if from_s3 else m.id,
        revision=None if from_s3 else m.revision,
        served_name=m.served_name,
        num_gpus=m.tensor_parallel_size,
        max_model_len=m.max_model_len,
        max_input_tokens=max_input_tokens,
        max_batch_prefill_tokens=prefill_tokens,
        max_concurrent_requests=sm.max_concurrent_requests,
        dtype=m.dtype,
        quantization=m.quantization_method,
        kv_cache_dtype=m.kv_cache_dtype,
    )
    if sm.hf_token_secret_name:
        # Resolved by CloudFormation at deploy: never in the template, but readable in the model's
        # environment by anyone allowed sagemaker:DescribeModel (docs/sagemaker.md).
        environment["HF_TOKEN"] = f"{{{{resolve:secretsmanager:{sm.hf_token_secret_name}:SecretString}}}}"
    thresholds = cfg.monitoring.thresholds
    return SageMakerSettings(
        endpoint_name=f"{cfg.name}-{m.served_name}",
        image_uri=sagemaker_container.image_uri(
            sm.container,
            version=getattr(sm.image_versions, sm.container),
            region=cfg.region,
            instance_type=sm.instance_type,
        ),
        environment=environment,
        instance_type=sm.instance_type,
        instance_count=sm.instance_count,
        min_capacity=sm.min_capacity,
        max_capacity=sm.max_capacity,
        model_data_s3_uri=sm.model_data_s3_uri,
        model_data_kms_key_arn=sm.model_data_kms_key_arn,
        volume_kms_key_arn=sm.volume_kms_key_arn,
        container_startup_timeout_seconds=sm.container_startup_timeout_seconds,
        model_download_timeout_seconds=sm.model_download_timeout_seconds,
        data_capture_sampling_percentage=sm.data_capture.sampling_percentage if sm.data_capture else None,
        data_capture_retention_days=sm.data_capture.retention_days if sm.data_capture else 30,
        target_invocations_per_instance=sm.target_invocations_per_instance,
        scale_in_cooldown_seconds=sm.scale_in_cooldown_seconds,
        scale_out_cooldown_seconds=sm.scale_out_cooldown_seconds,
        rollback_5xx_errors=thresholds.sagemaker_5xx,
        rollback_latency_p99_ms=thresholds.sagemaker_model_latency_p99_ms,
        rollback_bake_seconds=sm.rollback_bake_seconds,
        log_retention=RETENTION[sm.log_retention_days],
        off_hours=sm.off_hours,
    )


def build_sagemaker(stage: cdk.Stage, cfg: EnvironmentConfig, network: NetworkStack) -> SageMakerStack:
    """The SageMaker backend: endpoint in the network stack's private subnets, with auto scaling."""
    assert cfg.sagemaker is not None
    return SageMakerStack(
        stage,
        outputs.SAGEMAKER,
        network=network,
        settings=sagemaker_settings(cfg),
        # Holds the endpoint's KMS key and, with data capture, captured payloads.
        **_stack_props(cfg, f"SageMaker real-time endpoint ({cfg.sagemaker.container}), auto scaling"),
    )


def api_settings(cfg: EnvironmentConfig) -> ApiSettings:
    """Config -> settings of the API stack."""
    domain = cfg.api.custom_domain
    return ApiSettings(
        tenants=[
            TenantPlan(
                name=t.name,
                rate_limit=t.rate_limit,
                burst_limit=t.burst_limit,
                quota_limit=t.quota.limit if t.quota else None,
                quota_period=t.quota.period if t.quota else "MONTH",
            )
            for t in cfg.api.tenants
        ],
        api_name=f"llm-hosting-{cfg.name}",
        stage_name=cfg.name,
        rate_limit=cfg.api.rate_limit,
        burst_limit=cfg.api.burst_limit,
        stream_timeout_seconds=cfg.api.stream_timeout_seconds,
        access_log_retention=RETENTION[cfg.api.access_log_retention_days],
        waf_rate_limit=cfg.api.waf_rate_limit if cfg.api.waf_enabled else None,
        backend_key_field=FRONTDOOR_KEY_ID,
        domain_name=domain.domain_name if domain else None,
        certificate_arn=domain.certificate_arn if domain else None,
        hosted_zone_id=domain.hosted_zone_id if domain else None,
        hosted_zone_name=domain.hosted_zone_name if domain else None,
        tenant_key_map_parameter_name=TENANT_KEY_MAP_PARAMETER.format(env=cfg.name),
        tls_host_name=cfg.ecs.tls_host_name if cfg.ecs else None,
    )


def build_api(stage: cdk.Stage, cfg: EnvironmentConfig, network: NetworkStack, serving: ServingStack) -> ApiStack:
    """The public front door: REST API -> VPC link v2 -> the serving stack's internal ALB."""
    api = ApiStack(
        stage,
        outputs.API,
        network=network,
        backend=AlbBackend(
            load_balancer_arn_parameter=parameters.name(cfg.name, parameters.ALB_ARN),
            dns_name_parameter=parameters.name(cfg.name, parameters.ALB_DNS_NAME),
            security_group_id_parameter=parameters.name(cfg.name, parameters.ALB_SECURITY_GROUP_ID),
            frontdoor_security_group_id_parameter=parameters.name(cfg.name, parameters.FRONTDOOR_SECURITY_GROUP_ID),
            port=int(serving.listener.port),
            https=serving.listener.protocol == elbv2.ApplicationProtocol.HTTPS,
        ),
        backend_key_secret=serving.gateway_api_keys_secret,
        settings=api_settings(cfg),
        environment=cfg.name,
        # The tenants' API keys live here: deleting the stack invalidates every key (issue 11.10).
        **_stack_props(cfg, "REST API (keys, usage plans, WAF, streaming) in front of the ALB"),
    )
    api.add_stack_dependency(serving, "reads the internal ALB from SSM parameters at deploy")
    return api


def build_monitoring(
    stage: cdk.Stage,
    cfg: EnvironmentConfig,
    *,
    api: ApiStack | None,
    serving: ServingStack | None,
    sagemaker: SageMakerStack | None,
) -> MonitoringStack:
    """Alarms, the paging composite and the dashboard over whatever this environment deploys.

    The serving and api stacks' names and ids are read at deploy from the SSM parameters those stacks
    write (``parameters.name``), never imported: a replaced ALB or service updates the alarms.
    """

    def signals(scope: Construct) -> ServiceSignals:
        def read(key: str) -> str:
            return ssm.StringParameter.value_for_string_parameter(scope, parameters.name(cfg.name, key))

        return ServiceSignals(
            api=(
                dataclasses.replace(api.front_door.signals(), api_id=read(parameters.REST_API_ID))
                if api
                else None
            ),
            load_balancer=(
                LoadBalancerRef(read(parameters.ALB_FULL_NAME), read(parameters.TARGET_GROUP_FULL_NAME))
                if serving
                else None
            ),
            ecs=(
                EcsServiceRef(read(parameters.ECS_CLUSTER_NAME), read(parameters.ECS_SERVICE_NAME))
                if serving
                else None
            ),
            gpu_utilization=(
                gpu_metrics.utilization_metric(read(parameters.ASG_NAME)) if serving else None
            ),
            gateway=(
                GatewayMetricNames(
                    namespace=contract.METRICS_NAMESPACE,
                    dimensions=serving.metric_dimensions(),
                    requests=contract.METRIC_REQUESTS,
                    errors=contract.METRIC_ERRORS,
                    ttft=contract.METRIC_TTFT,
                    latency=contract.METRIC_LATENCY,
                    queue_depth=contract.METRIC_QUEUE_DEPTH,
                    in_flight=contract.METRIC_IN_FLIGHT,
                    prompt_tokens=contract.METRIC_PROMPT_TOKENS,
                    completion_tokens=contract.METRIC_COMPLETION_TOKENS,
                    affinity=(
                        AffinityMetricNames(
                            forwarded=contract.METRIC_AFFINITY_FORWARDED,
                            hit=contract.METRIC_AFFINITY_HIT,
                            prefix_cache_hits=contract.METRIC_PREFIX_CACHE_HITS,
                            prefix_cache_queries=contract.METRIC_PREFIX_CACHE_QUERIES,
                            task_dimension=contract.DIMENSION_TASK,
                            prefix_cache_hit_rate=contract.METRIC_PREFIX_CACHE_HIT_RATE,
                        )
                        if cfg.ecs is not None and cfg.ecs.affinity != "off"
                        else None
                    ),
                )
                if serving
                else None
            ),
            sagemaker=(
                SageMakerRef(
                    endpoint_name=sagemaker.endpoint_name,
                    variant_name=sagemaker.variant_name,
                    gpus_per_instance=get_instance(cfg.sagemaker.instance_type).gpu_count,
                )
                if sagemaker is not None and cfg.sagemaker is not None
                else None
            ),
        )

    monitoring = MonitoringStack(
        stage,
        outputs.MONITORING,
        signals=signals,
        settings=MonitoringSettings(
            alarm_emails=list(cfg.monitoring.alarm_emails),
            name_prefix=f"llm-hosting-{cfg.name}",
            thresholds=cfg.monitoring.thresholds,
            min_healthy_hosts=cfg.ecs.min_capacity if cfg.ecs else 0,
            scales_to_zero=bool(cfg.ecs and cfg.ecs.off_hours),
        ),
        **_stack_props(cfg, "alarms, paging composite alarm, on-call dashboard", protect=False),
    )
    # No references between the stacks any more: the deploy order is explicit.
    for earlier in (serving, api, sagemaker):
        if earlier is not None:
            monitoring.add_stack_dependency(earlier, "reads its names and ids from SSM parameters at deploy")
    return monitoring


def build_app() -> cdk.App:
    """The app for every environment in `config/` (or `-c config_dir=PATH`), all validated first."""
    # The built-in CloudFormation check costs ~8 s per synth; cfn-lint 1.x runs the same kind of
    # spec validation (and more) over every template in `make test`, with its rules listed once.
    app = cdk.App(builtin_cloud_formation_validation=False)
    configs = load_all(Path(app.node.try_get_context("config_dir") or CONFIG_DIR))
    for cfg in configs:
        # The VPC checks its AZs against the stack's, which CDK would otherwise look up (or fake as
        # dummy1a/1b). Config is the one source: answer that lookup from it, before any construct.
        app.node.set_context(f"availability-zones:account={cfg.account}:region={cfg.region}", cfg.availability_zones)
    for cfg in configs:
        build_stage(app, cfg)
    # Regulated users run this app: HIPAA Security and NIST 800-53 rev 5 gate synth as AwsSolutions does.
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app), HIPAASecurityChecks(app), NIST80053R5Checks(app))
    return app


def main() -> int:
    try:
        app = build_app()
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 1
    # The CLI checks the error annotations of the stacks it selects, and a plain `cdk synth` selects
    # none inside a Stage: without this an error (a GPU AMI missing from cdk.context.json) would pass.
    errors = [
        f"{message.id}: {message.entry.data}"
        for stack in app.synth().stacks_recursively
        for message in stack.messages
        if message.level == cx_api.SynthesisMessageLevel.ERROR
    ]
    for error in errors:
        print(f"synth error: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
