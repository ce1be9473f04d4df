"""PrivateNetwork as another team would use it: own VPC, or bring your own."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk.assertions import Template

from llm_hosting_constructs.network import INTERFACE_ENDPOINTS, PrivateNetwork


def stack() -> cdk.Stack:
    return cdk.Stack(cdk.App(), "S", env=cdk.Environment(account="123456789012", region="eu-west-1"))


def test_existing_vpc_gets_only_endpoints() -> None:
    s = stack()
    vpc = ec2.Vpc(s, "Theirs", max_azs=2, nat_gateways=0, subnet_configuration=[
        ec2.SubnetConfiguration(name="p", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)])
    net = PrivateNetwork(s, "Net", existing_vpc=vpc)
    t = Template.from_stack(s)
    t.resource_count_is("AWS::EC2::VPC", 1)
    t.resource_count_is("AWS::EC2::FlowLog", 0)
    t.resource_count_is("AWS::EC2::VPCEndpoint", len(INTERFACE_ENDPOINTS) + 1)
    assert net.vpc is vpc and net.flow_log_key is None


@pytest.mark.parametrize("extra", [{"cidr": "10.0.0.0/16"}, {"availability_zones": ["eu-west-1a"]}, {"nat_gateways": 1}])
def test_existing_vpc_rejects_vpc_shaping_props(extra: dict) -> None:
    s = stack()
    vpc = ec2.Vpc(s, "Theirs")
    with pytest.raises(ValueError, match="existing_vpc cannot be combined"):
        PrivateNetwork(s, "Net", existing_vpc=vpc, **extra)


def test_new_vpc_needs_cidr_and_azs() -> None:
    with pytest.raises(ValueError, match="cidr and availability_zones are required"):
        PrivateNetwork(stack(), "Net", cidr="10.0.0.0/16")


def test_default_is_closed_with_no_public_subnet() -> None:
    s = stack()
    PrivateNetwork(s, "Net", cidr="10.0.0.0/16", availability_zones=["eu-west-1a", "eu-west-1b"])
    t = Template.from_stack(s)
    t.resource_count_is("AWS::EC2::NatGateway", 0)
    t.resource_count_is("AWS::EC2::InternetGateway", 0)
    t.has_resource("AWS::KMS::Key", {"DeletionPolicy": "Retain"})
