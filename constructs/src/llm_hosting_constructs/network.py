"""A private VPC for GPU inference: workloads in private subnets, AWS APIs through VPC endpoints."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Acknowledgment, RemovalPolicy, Stack, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from .checkov import skip_checkov
from .log_groups import encrypted_log_group

# Interface endpoints the serving tasks and the ECS agent need with no internet route:
# image pulls (ECR api + dkr, layers come from S3), logs, secrets, SSM, STS, metrics,
# the three endpoints the ECS container agent itself talks to, and EC2: the CloudWatch agent
# on the GPU hosts fills the AutoScalingGroupName dimension with ec2:DescribeTags, and without
# an answer it publishes no GPU metric at all (a closed VPC otherwise has a GPU alarm that can
# never fire).
INTERFACE_ENDPOINTS: dict[str, ec2.InterfaceVpcEndpointAwsService] = {
    "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
    "Ssm": ec2.InterfaceVpcEndpointAwsService.SSM,
    "Sts": ec2.InterfaceVpcEndpointAwsService.STS,
    "Monitoring": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING,
    "Ecs": ec2.InterfaceVpcEndpointAwsService.ECS,
    "EcsAgent": ec2.InterfaceVpcEndpointAwsService.ECS_AGENT,
    "EcsTelemetry": ec2.InterfaceVpcEndpointAwsService.ECS_TELEMETRY,
    "Ec2": ec2.InterfaceVpcEndpointAwsService.EC2,
}


class PrivateNetwork(Construct):
    """VPC with private workload subnets, KMS-encrypted flow logs and VPC endpoints.

    Safe defaults: no NAT gateway (no internet egress at all), no public subnets unless NAT is
    asked for, every AWS API the serving tasks need reachable through a VPC endpoint, flow logs
    of all traffic kept `flow_log_retention` and encrypted with a customer-managed key.

    Bring your own VPC with `existing_vpc`: then only the endpoints are added to it, and the
    VPC-shaping props (`cidr`, `availability_zones`, `nat_gateways`) must be left unset.

    Attributes: `vpc`, `workload_subnets` (selection for tasks, EFS, ALB), `endpoint_security_group`,
    `flow_log_key` (None with `existing_vpc`).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        existing_vpc: ec2.IVpc | None = None,
        cidr: str | None = None,
        availability_zones: Sequence[str] | None = None,
        nat_gateways: int | None = None,
        flow_log_retention: logs.RetentionDays = logs.RetentionDays.THREE_MONTHS,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, id_)
        if existing_vpc is not None and any(p is not None for p in (cidr, availability_zones, nat_gateways)):
            raise ValueError("PrivateNetwork: existing_vpc cannot be combined with cidr, availability_zones or nat_gateways")
        if existing_vpc is None and (cidr is None or not availability_zones):
            raise ValueError("PrivateNetwork: cidr and availability_zones are required unless existing_vpc is given")

        self.flow_log_key: kms.IKey | None = None
        if existing_vpc is not None:
            self.vpc: ec2.IVpc = existing_vpc
            self.workload_subnets = ec2.SubnetSelection(one_per_az=True, subnet_type=_private_type(existing_vpc))
        else:
            nat = nat_gateways or 0
            private_type = ec2.SubnetType.PRIVATE_WITH_EGRESS if nat else ec2.SubnetType.PRIVATE_ISOLATED
            subnets = [ec2.SubnetConfiguration(name="Workload", subnet_type=private_type, cidr_mask=20)]
            if nat:
                # Only the NAT gateways live here (they have Elastic IPs): nothing gets a public IP by default.
                subnets.append(
                    ec2.SubnetConfiguration(
                        name="Egress", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24, map_public_ip_on_launch=False
                    )
                )
            self.flow_log_key, log_group = encrypted_log_group(
                self,
                "FlowLogGroup",
                key_id="FlowLogKey",
                key_description="Encrypts the VPC flow log group",
                retention=flow_log_retention,
                removal_policy=removal_policy,
            )
            vpc = ec2.Vpc(
                self,
                "Vpc",
                ip_addresses=ec2.IpAddresses.cidr(cidr),
                availability_zones=list(availability_zones or []),
                nat_gateways=nat,
                subnet_configuration=subnets,
                # The default group would admit all traffic between its members: nothing uses it, so empty it.
                restrict_default_security_group=True,
                flow_logs={
                    "All": ec2.FlowLogOptions(
                        destination=ec2.FlowLogDestination.to_cloud_watch_logs(log_group),
                        traffic_type=ec2.FlowLogTrafficType.ALL,
                    )
                },
            )
            self.vpc = vpc
            self.workload_subnets = ec2.SubnetSelection(subnet_group_name="Workload")
            _settle_default_group_provider(self)

        self.endpoint_security_group = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=self.vpc,
            description="HTTPS from inside the VPC to the AWS service endpoints",
            allow_all_outbound=False,
        )
        self.endpoint_security_group.add_ingress_rule(
            ec2.Peer.ipv4(self.vpc.vpc_cidr_block), ec2.Port.tcp(443), "HTTPS from the VPC"
        )
        Validations.of(self.endpoint_security_group).acknowledge(
            Acknowledgment(
                id="AwsSolutions::AwsSolutions-EC23",
                reason="The only ingress is 443 from the VPC's own CIDR (a token cdk-nag cannot resolve), never 0.0.0.0/0.",
            )
        )
        self.vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[self.workload_subnets])
        for name, service in INTERFACE_ENDPOINTS.items():
            self.vpc.add_interface_endpoint(
                name,
                service=service,
                subnets=self.workload_subnets,
                security_groups=[self.endpoint_security_group],
                private_dns_enabled=True,
            )


def _private_type(vpc: ec2.IVpc) -> ec2.SubnetType:
    return ec2.SubnetType.PRIVATE_WITH_EGRESS if vpc.private_subnets else ec2.SubnetType.PRIVATE_ISOLATED


def _settle_default_group_provider(scope: Construct) -> None:
    """CDK's provider that empties the default security group: a one-shot Lambda run at deploy time."""
    provider = Stack.of(scope).node.try_find_child("Custom::VpcRestrictDefaultSGCustomResourceProvider")
    if provider is None:
        return
    handler = provider.node.find_child("Handler")
    # Its GetAtt on the role already orders them; the explicit DependsOn is redundant (cfn-lint W3005).
    handler.remove_resource_dependency(provider.node.find_child("Role"))  # type: ignore[attr-defined]
    reason = (
        "CDK's custom-resource handler that revokes the default security group's rules: it runs once per "
        "deploy, calls only the EC2 API, and holds no data"
    )
    for check in ("CKV_AWS_115", "CKV_AWS_116", "CKV_AWS_117", "CKV_AWS_173"):
        skip_checkov(handler, check, reason)
