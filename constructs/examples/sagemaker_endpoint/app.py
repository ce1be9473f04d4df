#!/usr/bin/env python3
"""The SageMaker backend from the construct library alone: a real-time endpoint running the
Hugging Face vLLM DLC on an ml.g6e instance, weights pre-staged in S3, with auto scaling.

    pip install 'llm-hosting-constructs[sagemaker]'   # sagemaker-core resolves the image URI offline
    npx cdk synth                                     # no AWS credentials needed

The image URI is regional, so the stack names its region; without an account nothing is looked up
(the VPC spreads over the region's first two AZs at deploy time).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2

from llm_hosting_constructs import sagemaker_container
from llm_hosting_constructs.sagemaker_autoscaling import SageMakerVariantScaling
from llm_hosting_constructs.sagemaker_endpoint import SageMakerEndpoint
from llm_hosting_constructs.sizing import check, get_instance, get_model, plan

REGION = "us-east-1"
INSTANCE_TYPE = "ml.g6e.2xlarge"  # 1 × L40S 48 GB
MODEL_ID = "meta-llama/Llama-3.1-8B-Instruct"
MAX_MODEL_LEN = 16384
WEIGHTS = "s3://my-models-bucket/llama-3-1-8b-instruct/"  # the revision's files, uncompressed

check(plan(get_model(MODEL_ID), get_instance(INSTANCE_TYPE), max_model_len=MAX_MODEL_LEN))

app = cdk.App()
stack = cdk.Stack(
    app,
    "LlmSageMaker",
    env=cdk.Environment(region=REGION),
    description="llm-hosting-constructs example: SageMaker real-time endpoint (vLLM DLC)",
)
vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0, subnet_configuration=[
    ec2.SubnetConfiguration(name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=22),
])  # fmt: skip
endpoint = SageMakerEndpoint(
    stack,
    "Endpoint",
    endpoint_name="llama-3-1-8b",
    image_uri=sagemaker_container.image_uri(
        "vllm", version=sagemaker_container.DEFAULT_VERSIONS["vllm"], region=REGION, instance_type=INSTANCE_TYPE
    ),
    environment=sagemaker_container.container_environment(
        "vllm",
        model=sagemaker_container.MODEL_DIR,  # weights from S3, mounted at /opt/ml/model
        served_name="llama-3-1-8b",
        max_model_len=MAX_MODEL_LEN,  # one GPU, 128 concurrent requests by default
        max_input_tokens=MAX_MODEL_LEN - 1024,
        max_batch_prefill_tokens=MAX_MODEL_LEN,
        max_concurrent_requests=32,
        dtype="bfloat16",
    ),
    instance_type=INSTANCE_TYPE,
    vpc=vpc,
    subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
    model_data_s3_uri=WEIGHTS,  # network isolation on: the container reaches nothing
    removal_policy=cdk.RemovalPolicy.DESTROY,
)
SageMakerVariantScaling(
    stack,
    "Scaling",
    endpoint=endpoint.endpoint,
    variant_name=endpoint.variant_name,
    target_invocations_per_instance=30,
    min_capacity=1,
    max_capacity=2,
)
cdk.CfnOutput(stack, "EndpointName", value=endpoint.endpoint.attr_endpoint_name)

app.synth()
