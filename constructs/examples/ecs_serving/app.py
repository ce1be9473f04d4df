#!/usr/bin/env python3
"""The ECS serving path from the construct library alone: vLLM and the packaged gateway on a GPU
cluster behind an internal ALB, weights cached on EFS, filled by the one-off pre-warm task.

    pip install llm-hosting-constructs   # the wheel: constructs, gateway source, pre-warm script
    npx cdk synth                        # no AWS credentials needed

The stack is environment-agnostic (as `cdk init` makes it) and the GPU AMI is resolved at deploy
time, so synth looks nothing up. To pin the AMI instead, give the stack an env and drop
`machine_image`: GpuCluster then looks it up once and keeps it in cdk.context.json.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_kms as kms

from llm_hosting_constructs.gateway import contract
from llm_hosting_constructs.gpu_cluster import GpuCluster
from llm_hosting_constructs.inference_service import InferenceService, QueueDepthMetric
from llm_hosting_constructs.inference_task import InferenceTask
from llm_hosting_constructs.internal_alb import InternalAlb
from llm_hosting_constructs.model_cache import ModelCache
from llm_hosting_constructs.prewarm import ModelPrewarm
from llm_hosting_constructs.serving_secrets import ServingSecrets
from llm_hosting_constructs.sizing import check, get_instance, get_model, instance_registered_resources, plan
from llm_hosting_constructs.vllm import VllmSettings, vllm_environment, vllm_serve_args

INSTANCE_TYPE = "g6e.xlarge"  # 1 × L40S 48 GB
VLLM = VllmSettings(
    model_id="meta-llama/Llama-3.1-8B-Instruct",
    revision="0e9e39f249a16976918f6564b8830bc894c89659",  # a commit, never a branch
    served_model_name="llama-3-1-8b",
    max_model_len=16384,
)
SERVICE_NAME = "llm-example"  # the gateway's EMF Service dimension

# Fail at synth, not at deploy: the model must fit the GPUs with room for its KV cache.
check(plan(get_model(VLLM.model_id), get_instance(INSTANCE_TYPE), max_model_len=VLLM.max_model_len))

app = cdk.App()
stack = cdk.Stack(app, "LlmServing", description="llm-hosting-constructs example: vLLM on ECS GPU")

vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=1)  # NAT: vLLM and the pre-warm reach the Hub
subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
key = kms.Key(stack, "Key", enable_key_rotation=True, removal_policy=cdk.RemovalPolicy.DESTROY)

cache = ModelCache(stack, "ModelCache", vpc=vpc, subnets=subnets, removal_policy=cdk.RemovalPolicy.DESTROY)
secrets = ServingSecrets(stack, "Secrets", key=key, removal_policy=cdk.RemovalPolicy.DESTROY)
gpu = GpuCluster(
    stack,
    "Gpu",
    vpc=vpc,
    subnets=subnets,
    instance_type=INSTANCE_TYPE,
    max_instances=3,
    machine_image=ecs.EcsOptimizedImage.amazon_linux2023(ecs.AmiHardwareType.GPU),
)
vllm_image = ecs.ContainerImage.from_registry("vllm/vllm-openai:v0.24.0")
cpu_units, memory_mib = instance_registered_resources(INSTANCE_TYPE)  # one task per GPU host
task = InferenceTask(
    stack,
    "Inference",
    vllm_image=vllm_image,
    vllm_args=vllm_serve_args(VLLM),
    vllm_environment=vllm_environment(hf_hub_offline=False, keepalive_s=contract.VLLM_KEEPALIVE_S),
    gpu_count=VLLM.tensor_parallel_size,
    hf_token=secrets.hf_token,
    model_cache=cache,  # hf_hub_offline defaults to False: vLLM may download into the cache
    # The gateway image is built from the source the package ships; its settings come from the contract.
    gateway_environment={
        contract.ENV_SERVED_MODEL_NAME: VLLM.served_model_name,
        contract.ENV_SERVICE_NAME: SERVICE_NAME,
    },
    gateway_secrets={contract.ENV_API_KEYS: secrets.api_keys},
    cpu_units=cpu_units,
    memory_mib=memory_mib,
    log_key=key,
    log_removal_policy=cdk.RemovalPolicy.DESTROY,
)
alb = InternalAlb(
    stack,
    "Alb",
    vpc=vpc,
    subnets=subnets,
    target_port=contract.GATEWAY_PORT,
    health_check_path=contract.HEALTH_PATH,
)
service = InferenceService(
    stack,
    "Service",
    cluster=gpu.cluster,
    task_definition=task.task_definition,
    capacity_provider=gpu.capacity_provider,
    target_group=alb.target_group,  # the packaged gateway's container and port are the defaults
    # 1..2 tasks by default: 300 requests per task per minute, or 8 waiting in vLLM, add one.
    queue_depth=QueueDepthMetric(
        namespace=contract.METRICS_NAMESPACE,
        metric_name=contract.METRIC_QUEUE_DEPTH,
        dimensions={contract.DIMENSION_SERVICE: SERVICE_NAME, contract.DIMENSION_MODEL: VLLM.served_model_name},
    ),
    auto_scaling_group=gpu.auto_scaling_group,
)
cache.allow_from(service.security_group, "vLLM tasks to the model cache")
prewarm = ModelPrewarm(
    stack,
    "Prewarm",
    vpc=vpc,  # the VPC's private subnets by default
    image=vllm_image,  # the script defaults to the packaged containers/prewarm/prewarm.py
    model_id=VLLM.model_id,
    revision=VLLM.revision,
    hf_token=secrets.hf_token,
    model_cache=cache,
    log_key=key,
    log_removal_policy=cdk.RemovalPolicy.DESTROY,
)
cdk.CfnOutput(stack, "LoadBalancerDns", value=alb.load_balancer.load_balancer_dns_name)
cdk.CfnOutput(stack, "PrewarmCommand", value=prewarm.run_task_command(gpu.cluster.cluster_name, stack.region))

app.synth()
