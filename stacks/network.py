"""The network stack: the VPC every other stack of the environment lives in."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_logs as logs
from constructs import Construct

from llm_hosting_constructs.network import PrivateNetwork


class NetworkStack(Stack):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        cidr: str,
        availability_zones: Sequence[str],
        nat_gateways: int,
        flow_log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
        **kwargs,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        self.network = PrivateNetwork(
            self,
            "Network",
            cidr=cidr,
            availability_zones=availability_zones,
            nat_gateways=nat_gateways,
            flow_log_retention=flow_log_retention,
            removal_policy=removal_policy,
        )
        self.vpc = self.network.vpc
        self.workload_subnets = self.network.workload_subnets
