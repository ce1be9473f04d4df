"""The packaged gateway: its image, built from the source this package ships, and its contract.

``contract`` is the gateway's own ``app/core/contract.py`` (the same file the container runs): the
port, the health paths, the CloudWatch EMF namespace, metric and dimension names and the
``GATEWAY_*`` environment variables. Read names from it instead of copying them::

    from llm_hosting_constructs.gateway import contract, gateway_image

    InferenceTask(..., gateway_image=gateway_image())  # the default anyway
    GatewayMetricNames(namespace=contract.METRICS_NAMESPACE, requests=contract.METRIC_REQUESTS, ...)
"""

from __future__ import annotations

from aws_cdk import aws_ecs as ecs
from aws_cdk.aws_ecr_assets import Platform

from .assets import gateway_contract, gateway_dir

contract = gateway_contract()


def gateway_image() -> ecs.ContainerImage:
    """The gateway image, built by cdk-assets at deploy time from the packaged source (linux/amd64,
    the GPU instances' platform). Synth only stages the files its .dockerignore lets through (app/,
    requirements.txt): no Docker needed to synthesize."""
    return ecs.ContainerImage.from_asset(str(gateway_dir()), platform=Platform.LINUX_AMD64)
