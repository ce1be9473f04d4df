"""The network stack: the VPC every other stack of the environment lives in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_logs as logs
from constructs import Construct

from llm_hosting_constructs.network import PrivateNetwork


@dataclass(frozen=True)
class NetworkSettings:
    """Everything app.py derives from the config for this stack (``network:``, ``availability_zones``)."""

    cidr: str
    availability_zones: Sequence[str]
    nat_gateways: int
    flow_log_retention: logs.RetentionDays


class NetworkStack(Stack):
    """Composes `PrivateNetwork`; exposes ``vpc`` and ``workload_subnets`` to the other stacks."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        settings: NetworkSettings,
        removal_policy: RemovalPolicy,
        **kwargs,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        self.network = PrivateNetwork(
            self,
            "Network",
            cidr=settings.cidr,
            availability_zones=settings.availability_zones,
            nat_gateways=settings.nat_gateways,
            flow_log_retention=settings.flow_log_retention,
            removal_policy=removal_policy,
        )
        self.vpc = self.network.vpc
        self.workload_subnets = self.network.workload_subnets
