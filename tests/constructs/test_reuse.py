"""Bring-your-own resources (``existing_x``) and sub-resource overrides (``x_props``), as an importer uses them.

Each construct that takes them: the contradiction is one line raised before anything is created;
an existing resource is really used and no new one of its kind is created; ``x_props`` reach the
created resource.
"""

from __future__ import annotations

import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Template

from llm_hosting_constructs.internal_alb import InternalAlb
from llm_hosting_constructs.model_cache import ModelCache
from tests.constructs.test_sagemaker import endpoint
from tests.constructs.test_sagemaker import stack as sagemaker_stack
from tests.constructs.test_serving_constructs import PRIVATE
from tests.constructs.test_serving_constructs import stack as serving_stack

ROLE_ARN = "arn:aws:iam::123456789012:role/platform/sagemaker-execution"


# --------------------------------------------------------------------------- SageMakerEndpoint: role


def test_sagemaker_endpoint_rejects_an_existing_role_with_role_props_first_thing() -> None:
    s, vpc = sagemaker_stack()
    mine = iam.Role.from_role_arn(s, "Mine", ROLE_ARN)
    with pytest.raises(ValueError, match="^SageMakerEndpoint: give existing_role or role_props, not both$"):
        endpoint(s, vpc, existing_role=mine, role_props={"role_name": "x"})
    assert s.node.find_child("Llm").node.children == []


def test_sagemaker_endpoint_uses_an_existing_role_and_creates_none() -> None:
    s, vpc = sagemaker_stack()
    mine = iam.Role.from_role_arn(s, "Mine", ROLE_ARN)
    ep = endpoint(s, vpc, existing_role=mine)
    t = Template.from_stack(s)
    assert ep.role is mine
    assert t.find_resources("AWS::IAM::Role") == {}
    (model,) = t.find_resources("AWS::SageMaker::Model").values()
    assert model["Properties"]["ExecutionRoleArn"] == ROLE_ARN
    # The endpoint's statements go to the imported role, in a policy the model waits for.
    (policy_id, policy) = next(iter(t.find_resources("AWS::IAM::Policy").items()))
    assert policy["Properties"]["Roles"] == ["sagemaker-execution"]
    assert any(st.get("Sid") == "DescribeRollbackAlarms" for st in policy["Properties"]["PolicyDocument"]["Statement"])
    assert policy_id in model["DependsOn"]


def test_sagemaker_endpoint_role_props_reach_the_created_role() -> None:
    s, vpc = sagemaker_stack()
    boundary = iam.ManagedPolicy.from_managed_policy_arn(s, "Boundary", "arn:aws:iam::123456789012:policy/boundary")
    endpoint(s, vpc, role_props={"permissions_boundary": boundary, "path": "/platform/"})
    (role,) = Template.from_stack(s).find_resources("AWS::IAM::Role").values()
    assert role["Properties"]["PermissionsBoundary"] == "arn:aws:iam::123456789012:policy/boundary"
    assert role["Properties"]["Path"] == "/platform/"
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "sagemaker.amazonaws.com"
    }


# --------------------------------------------------------------------------- ModelCache: security group, file system


def test_model_cache_rejects_an_existing_security_group_with_props_first_thing() -> None:
    s, vpc = serving_stack()
    mine = ec2.SecurityGroup(s, "Mine", vpc=vpc)
    with pytest.raises(ValueError, match="^ModelCache: give existing_security_group or security_group_props, not both$"):
        ModelCache(s, "Cache", vpc=vpc, existing_security_group=mine, security_group_props={"description": "x"})
    assert s.node.find_child("Cache").node.children == []


def test_model_cache_uses_an_existing_security_group_and_creates_none() -> None:
    s, vpc = serving_stack()
    mine = ec2.SecurityGroup(s, "Mine", vpc=vpc, description="the team's NFS group", allow_all_outbound=False)
    cache = ModelCache(s, "Cache", vpc=vpc, subnets=PRIVATE, existing_security_group=mine)
    client = ec2.SecurityGroup(s, "Client", vpc=vpc, allow_all_outbound=False)
    cache.allow_from(client, "client to cache")
    t = Template.from_stack(s).to_json()["Resources"]
    mine_id = s.get_logical_id(mine.node.default_child)  # type: ignore[arg-type]
    assert cache.security_group is mine and cache.node.try_find_child("SecurityGroup") is None
    assert sorted(k for k, r in t.items() if r["Type"] == "AWS::EC2::SecurityGroup") == sorted(
        [mine_id, s.get_logical_id(client.node.default_child)]  # type: ignore[arg-type]
    )
    targets = [r for r in t.values() if r["Type"] == "AWS::EFS::MountTarget"]
    assert targets and all(r["Properties"]["SecurityGroups"] == [{"Fn::GetAtt": [mine_id, "GroupId"]}] for r in targets)
    (ingress,) = [r for r in t.values() if r["Type"] == "AWS::EC2::SecurityGroupIngress"]
    assert ingress["Properties"]["GroupId"] == {"Fn::GetAtt": [mine_id, "GroupId"]}
    assert ingress["Properties"]["FromPort"] == 2049


def test_model_cache_props_reach_the_created_group_and_file_system() -> None:
    s, vpc = serving_stack()
    ModelCache(
        s, "Cache", vpc=vpc, subnets=PRIVATE,
        security_group_props={"description": "overridden"},
        file_system_props={"file_system_name": "team-hf-cache"},
    )  # fmt: skip
    t = Template.from_stack(s)
    assert len(t.find_resources("AWS::EC2::SecurityGroup", {"Properties": {"GroupDescription": "overridden"}})) == 1
    (fs,) = t.find_resources("AWS::EFS::FileSystem").values()
    assert {"Key": "Name", "Value": "team-hf-cache"} in fs["Properties"]["FileSystemTags"]
    assert fs["Properties"]["Encrypted"] is True and "KmsKeyId" in fs["Properties"]


@pytest.mark.parametrize("prop", ["encrypted", "kms_key", "security_group", "throughput_mode"])
def test_model_cache_file_system_props_cannot_change_what_its_own_props_decide(prop: str) -> None:
    s, vpc = serving_stack()
    with pytest.raises(ValueError, match=f"^ModelCache: file_system_props may not set {prop}: "):
        ModelCache(s, "Cache", vpc=vpc, file_system_props={prop: None})
    assert s.node.find_child("Cache").node.children == []



# --------------------------------------------------------------------------- InternalAlb: security group


def test_internal_alb_rejects_an_existing_security_group_with_props_first_thing() -> None:
    s, vpc = serving_stack()
    mine = ec2.SecurityGroup(s, "Mine", vpc=vpc)
    with pytest.raises(ValueError, match="^InternalAlb: give existing_security_group or security_group_props, not both$"):
        InternalAlb(s, "Alb", vpc=vpc, subnets=PRIVATE, target_port=8080, health_check_path="/health",
                    existing_security_group=mine, security_group_props={"description": "x"})  # fmt: skip
    assert s.node.find_child("Alb").node.children == []


def test_internal_alb_uses_an_existing_security_group_and_creates_none() -> None:
    s, vpc = serving_stack()
    mine = ec2.SecurityGroup(s, "Mine", vpc=vpc, description="the team's ALB group", allow_all_outbound=False)
    alb = InternalAlb(s, "Alb", vpc=vpc, subnets=PRIVATE, target_port=8080, health_check_path="/health",
                      existing_security_group=mine)  # fmt: skip
    caller = ec2.SecurityGroup(s, "Caller", vpc=vpc, allow_all_outbound=False)
    alb.allow_from(caller, "caller to ALB")
    t = Template.from_stack(s).to_json()["Resources"]
    mine_id = s.get_logical_id(mine.node.default_child)  # type: ignore[arg-type]
    assert alb.security_group is mine and alb.node.try_find_child("SecurityGroup") is None
    assert len([r for r in t.values() if r["Type"] == "AWS::EC2::SecurityGroup"]) == 2  # mine and the caller's
    (lb,) = [r for r in t.values() if r["Type"] == "AWS::ElasticLoadBalancingV2::LoadBalancer"]
    assert lb["Properties"]["SecurityGroups"] == [{"Fn::GetAtt": [mine_id, "GroupId"]}]
    ingress = [r["Properties"] for r in t.values() if r["Type"] == "AWS::EC2::SecurityGroupIngress"]
    assert {"GroupId": {"Fn::GetAtt": [mine_id, "GroupId"]}, "FromPort": 80}.items() <= ingress[0].items()


def test_internal_alb_security_group_props_reach_the_created_group() -> None:
    s, vpc = serving_stack()
    InternalAlb(s, "Alb", vpc=vpc, subnets=PRIVATE, target_port=8080, health_check_path="/health",
                security_group_props={"description": "team ALB"})  # fmt: skip
    groups = Template.from_stack(s).find_resources("AWS::EC2::SecurityGroup")
    assert [g["Properties"]["GroupDescription"] for g in groups.values()] == ["team ALB"]
