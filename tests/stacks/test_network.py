"""The network stack of every environment, read from the synthesized templates."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.cfn import CONFIG_DIR, ENVIRONMENTS, only, resources

pytestmark = pytest.mark.synth
CONFIG = {env: yaml.safe_load((CONFIG_DIR / f"{env}.yaml").read_text()) for env in ENVIRONMENTS}
INTERFACE_SERVICES = {"ecr.api", "ecr.dkr", "logs", "secretsmanager", "ssm", "sts", "monitoring", "ecs", "ecs-agent", "ecs-telemetry", "ec2"}


def network(templates: dict, env: str) -> dict:
    return templates[env][f"{env}-network"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_vpc_cidr_and_azs_come_from_config(templates: dict, env: str) -> None:
    t = network(templates, env)
    assert only(t, "AWS::EC2::VPC")["Properties"]["CidrBlock"] == CONFIG[env]["network"]["cidr"]
    azs = {s["Properties"]["AvailabilityZone"] for s in resources(t, "AWS::EC2::Subnet").values()}
    assert azs == set(CONFIG[env]["availability_zones"])


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_workload_subnets_are_private(templates: dict, env: str) -> None:
    subnets = resources(network(templates, env), "AWS::EC2::Subnet")
    workload = [s for s in subnets.values() if any(t["Value"] == "Workload" for t in s["Properties"]["Tags"])]
    assert len(workload) == len(CONFIG[env]["availability_zones"])
    assert all(s["Properties"]["MapPublicIpOnLaunch"] is False for s in workload)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_nat_only_where_config_asks(templates: dict, env: str) -> None:
    t = network(templates, env)
    nat = CONFIG[env]["network"]["nat_gateways"]
    assert len(resources(t, "AWS::EC2::NatGateway")) == nat
    assert bool(resources(t, "AWS::EC2::InternetGateway")) == bool(nat)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_service_the_tasks_need_has_an_endpoint(templates: dict, env: str) -> None:
    endpoints = resources(network(templates, env), "AWS::EC2::VPCEndpoint").values()
    interface = {
        e["Properties"]["ServiceName"].removeprefix(f"com.amazonaws.{CONFIG[env]['region']}.")
        for e in endpoints
        if e["Properties"].get("VpcEndpointType") == "Interface"
    }
    assert interface == INTERFACE_SERVICES
    assert all(e["Properties"]["PrivateDnsEnabled"] for e in endpoints if e["Properties"].get("VpcEndpointType") == "Interface")
    gateway = [e for e in endpoints if e["Properties"].get("VpcEndpointType") == "Gateway"]
    assert len(gateway) == 1 and ".s3" in str(gateway[0]["Properties"]["ServiceName"])


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_endpoint_security_group_admits_only_https_from_the_vpc(templates: dict, env: str) -> None:
    t = network(templates, env)
    groups = [g for g in resources(t, "AWS::EC2::SecurityGroup").values() if "endpoints" in g["Properties"]["GroupDescription"]]
    assert len(groups) == 1
    (rule,) = groups[0]["Properties"]["SecurityGroupIngress"]
    assert (rule["FromPort"], rule["ToPort"], rule["IpProtocol"]) == (443, 443, "tcp")
    assert rule["CidrIp"] == {"Fn::GetAtt": [next(iter(resources(t, "AWS::EC2::VPC"))), "CidrBlock"]}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_flow_logs_capture_all_traffic_encrypted_with_retention(templates: dict, env: str) -> None:
    t = network(templates, env)
    flow = only(t, "AWS::EC2::FlowLog")["Properties"]
    assert flow["TrafficType"] == "ALL"
    group = only(t, "AWS::Logs::LogGroup")["Properties"]
    assert group["RetentionInDays"] == CONFIG[env]["network"]["flow_log_retention_days"]
    assert "KmsKeyId" in group
    assert only(t, "AWS::KMS::Key")["Properties"]["EnableKeyRotation"] is True


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_stateful_resources_keep_their_logical_ids_and_retention(templates: dict, env: str) -> None:
    """Renaming these would replace the key (and orphan encrypted logs): the IDs are pinned."""
    t = network(templates, env)
    retained = CONFIG[env]["retain_stateful"]
    for logical_id in ("NetworkFlowLogKeyF785E5F9", "NetworkFlowLogGroup4F8CEEEF"):
        assert logical_id in t["Resources"], f"{logical_id} renamed in {env}"
        assert t["Resources"][logical_id]["DeletionPolicy"] == ("Retain" if retained else "Delete")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_tags_from_config_reach_resources(templates: dict, env: str) -> None:
    vpc_tags = {t["Key"]: t["Value"] for t in only(network(templates, env), "AWS::EC2::VPC")["Properties"]["Tags"]}
    assert CONFIG[env]["tags"].items() <= vpc_tags.items()
    assert vpc_tags["environment"] == env


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_flow_log_key_serves_only_this_regions_logs_for_this_accounts_groups(templates: dict, env: str) -> None:
    statements = only(network(templates, env), "AWS::KMS::Key")["Properties"]["KeyPolicy"]["Statement"]
    logs_statements = [s for s in statements if "Service" in s.get("Principal", {})]
    assert len(logs_statements) == 1
    (statement,) = logs_statements
    assert statement["Principal"]["Service"] == f"logs.{CONFIG[env]['region']}.amazonaws.com"
    arn = json.dumps(statement["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"])
    assert f"arn:aws:logs:{CONFIG[env]['region']}:{CONFIG[env]['account']}:log-group:" in arn.replace('", "', "")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_gpu_metric_dimension_resolves_without_internet(templates: dict, env: str) -> None:
    """Issue 11.4: the CloudWatch agent fills ${aws:AutoScalingGroupName} with ec2:DescribeTags and puts
    metrics with cloudwatch:PutMetricData; prod has no NAT, so both APIs need an interface endpoint."""
    from llm_hosting_constructs import gpu_metrics

    assert "${aws:AutoScalingGroupName}" in json.dumps(gpu_metrics.agent_config())
    services = {
        str(e["Properties"]["ServiceName"]) for e in resources(network(templates, env), "AWS::EC2::VPCEndpoint").values()
    }
    region = CONFIG[env]["region"]
    assert {f"com.amazonaws.{region}.ec2", f"com.amazonaws.{region}.monitoring"} <= services


def test_network_construct_calls_no_deprecated_cdk_api(tmp_path) -> None:
    """`cdk synth` printed "CfnResource#removeDependency is deprecated" (removed in the next major
    release): with JSII_DEPRECATED=fail the jsii runtime raises on any deprecated call instead."""
    script = (
        "import aws_cdk as cdk\n"
        "from llm_hosting_constructs.network import PrivateNetwork\n"
        "app = cdk.App(outdir=%r)\n"
        "stack = cdk.Stack(app, 'n', env=cdk.Environment(account='111111111111', region='us-east-1'))\n"
        "PrivateNetwork(stack, 'Network', cidr='10.0.0.0/16', availability_zones=['us-east-1a', 'us-east-1b'])\n"
        "app.synth()\n"
    ) % str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", script], env={**os.environ, "JSII_DEPRECATED": "fail"}, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    template = json.loads((tmp_path / "n.template.json").read_text())
    assert any("VpcRestrictDefaultSG" in k for k in template["Resources"]), "the provider whose dependency is removed is not exercised"
