"""GpuCluster's instance role: the hosts write no CloudWatch Logs (issue 11.10)."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk.assertions import Template

from llm_hosting_constructs.gpu_cluster import GpuCluster
from tests.cfn import resources


def test_instance_role_cannot_write_logs_and_tasks_log_with_their_execution_role() -> None:
    """CDK grants the instance role logs:PutLogEvents on "*" (for tasks without an execution role); ours all
    have one, so awslogs is told to use it and the instance role is denied the logs actions everywhere."""
    s = cdk.Stack(cdk.App(), "S", env=cdk.Environment(account="123456789012", region="us-east-1"))
    vpc = ec2.Vpc(s, "Vpc", max_azs=2, nat_gateways=0, subnet_configuration=[
        ec2.SubnetConfiguration(name="p", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)])
    gpu = GpuCluster(s, "G", vpc=vpc, subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
                     instance_type="g6.2xlarge", max_instances=2)
    t = Template.from_stack(s).to_json()
    role_id = s.get_logical_id(gpu.instance_role.node.default_child)
    (policy,) = [p for p in resources(t, "AWS::IAM::Policy").values() if p["Properties"]["Roles"] == [{"Ref": role_id}]]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    denies = [st for st in statements if st["Effect"] == "Deny"]
    assert denies == [{"Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Effect": "Deny", "Resource": "*"}]
    (template,) = resources(t, "AWS::EC2::LaunchTemplate").values()
    assert "ECS_ENABLE_AWSLOGS_EXECUTIONROLE_OVERRIDE=true" in str(template["Properties"]["LaunchTemplateData"]["UserData"])
