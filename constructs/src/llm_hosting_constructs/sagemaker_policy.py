"""The SageMaker endpoint's execution role policy: only what hosting one model needs.

Split from :mod:`sagemaker_endpoint` to keep the construct small. Every statement has a Sid; each
wildcard resource is returned with its kind, so that it is acknowledged for cdk-nag by its exact
finding id, with a reason per kind.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs

from .sagemaker_container import EcrImage


def grant_execution(
    role: iam.IRole,
    *,
    image: EcrImage,
    log_group: logs.ILogGroup,
    security_group: ec2.ISecurityGroup,
    subnet_ids: list[str],
    vpc: ec2.IVpc,
    weights: tuple[str, str] | None,
    weights_kms_key_arn: str | None,
) -> list[tuple[str, str]]:
    """Add the execution role's statements; return its wildcard resources as (kind, ARN) for
    :func:`acknowledge_wildcards`. ``weights`` is (bucket, prefix ending in /), or None (Hub)."""
    stack = Stack.of(role)
    eni_arn = stack.format_arn(service="ec2", resource="network-interface", resource_name="*")
    wildcards: list[tuple[str, str]] = [
        ("*", "*"),
        ("log-stream", f"{log_group.log_group_arn}:log-stream:*"),
        ("network-interface", eni_arn),
    ]
    repo_arn = f"arn:{stack.partition}:ecr:{image.region}:{image.account}:repository/{image.repository}"
    statements = [
        iam.PolicyStatement(
            sid="PullImage",
            actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            resources=[repo_arn],
        ),
        # ECR's token call has no resource: it authorizes nothing by itself.
        iam.PolicyStatement(sid="EcrToken", actions=["ecr:GetAuthorizationToken"], resources=["*"]),
        iam.PolicyStatement(
            sid="WriteLogs",
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[log_group.log_group_arn, wildcards[1][1]],
        ),
        iam.PolicyStatement(
            sid="PutMetrics",
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],  # PutMetricData has no resource; the namespace condition scopes it
            conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
        ),
        # Describe calls support no resource scoping.
        iam.PolicyStatement(
            sid="DescribeNetwork",
            actions=[
                "ec2:DescribeVpcs",
                "ec2:DescribeSubnets",
                "ec2:DescribeSecurityGroups",
                "ec2:DescribeNetworkInterfaces",
                "ec2:DescribeDhcpOptions",
            ],
            resources=["*"],
        ),
        iam.PolicyStatement(
            sid="NetworkInterfacesInThisVpc",
            actions=[
                "ec2:CreateNetworkInterface",
                "ec2:CreateNetworkInterfacePermission",
                "ec2:DeleteNetworkInterface",
                "ec2:DeleteNetworkInterfacePermission",
            ],
            resources=[
                eni_arn,
                stack.format_arn(service="ec2", resource="security-group", resource_name=security_group.security_group_id),
                *(stack.format_arn(service="ec2", resource="subnet", resource_name=s) for s in subnet_ids),
            ],
            conditions={"ArnEquals": {"ec2:Vpc": stack.format_arn(service="ec2", resource="vpc", resource_name=vpc.vpc_id)}},
        ),
    ]
    if weights:
        bucket, prefix = weights
        weights_arn = stack.format_arn(service="s3", region="", account="", resource=bucket, resource_name=f"{prefix}*")
        wildcards.append(("weights", weights_arn))
        statements += [
            iam.PolicyStatement(
                sid="ReadModelWeights",
                actions=["s3:GetObject"],
                resources=[weights_arn],
            ),
            iam.PolicyStatement(
                sid="ListModelWeights",
                actions=["s3:ListBucket"],
                resources=[stack.format_arn(service="s3", region="", account="", resource=bucket)],
                conditions={"StringLike": {"s3:prefix": [f"{prefix}*"]}},
            ),
        ]
    if weights_kms_key_arn:
        statements.append(
            iam.PolicyStatement(sid="DecryptModelWeights", actions=["kms:Decrypt"], resources=[weights_kms_key_arn])
        )
    for statement in statements:
        role.add_to_principal_policy(statement)
    return wildcards


def acknowledge_wildcards(role: iam.IRole, wildcards: list[tuple[str, str]]) -> None:
    """Each wildcard of the execution role's policy, acknowledged by its exact cdk-nag finding id."""
    stack = Stack.of(role)
    reasons = {
        "*": "ecr:GetAuthorizationToken and the ec2:Describe* calls accept no resource; "
        "cloudwatch:PutMetricData has none and is limited to the /aws/sagemaker/* namespaces by condition.",
        "log-stream": "Log streams of this endpoint's own log group; SageMaker names one per instance and "
        "container at run time.",
        "network-interface": "Network interfaces SageMaker creates for the endpoint have no name in advance; "
        "the ec2:Vpc condition limits them to this VPC.",
        "weights": "Read-only access to the objects under this model's own weights prefix, nothing else in the bucket.",
        "capture": "Write-only access to the capture prefix of this endpoint's own data-capture bucket.",
    }
    for kind, arn in wildcards:
        finding = "*" if arn == "*" else _nag_render(stack.resolve(arn))
        Validations.of(role).acknowledge(
            Acknowledgment(id=f"AwsSolutions::AwsSolutions-IAM5[Resource::{finding}]", reason=reasons[kind])
        )


def _nag_render(value: object) -> str:
    """A resolved CloudFormation value as cdk-nag writes it in a finding id (``<Logical.Arn>``, ``<AWS::Partition>``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        (fn, arg), = value.items()
        if fn == "Fn::Join":
            sep, parts = arg
            return sep.join(_nag_render(p) for p in parts)
        if fn == "Ref":
            return f"<{arg}>"
        if fn == "Fn::GetAtt":
            return f"<{arg[0]}.{arg[1]}>"
    raise ValueError(f"cannot render {value!r} as a cdk-nag finding id")
