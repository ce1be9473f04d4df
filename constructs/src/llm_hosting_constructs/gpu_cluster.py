"""An ECS cluster of GPU instances: launch template, Auto Scaling group and a managed capacity provider."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jsii
from aws_cdk import Acknowledgment, Annotations, Aspects, CfnResource, Duration, IAspect, Stack, Token, Validations
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from constructs import Construct, IConstruct

from .checkov import skip_checkov
from .sizing import ECS_RESERVED_MEMORY_MIB, InstanceType, get_instance

# Root volume: the vLLM image is ~10 GB compressed and ~25 GB unpacked, and a deployment briefly
# holds two versions of it; CUDA/torch compile caches and logs come on top.
DEFAULT_ROOT_VOLUME_GIB = 200
MIN_ROOT_VOLUME_GIB = 100
# The SSM parameter behind EcsOptimizedImage.amazon_linux2023(GPU); its looked-up value is cached in
# cdk.context.json under "ssm:account=<account>:parameterName=<this>:region=<region>".
GPU_AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"


class GpuCluster(Construct):
    """ECS cluster whose capacity is an Auto Scaling group of GPU instances.

    ``instance_type``: a name from the sizing catalog, or ``InstanceType.describe(...)`` for one it lacks.

    Safe defaults: ``machine_image`` the AL2023 ECS GPU-optimized AMI resolved once and kept in
    ``cdk.context.json`` (``cached_in_context``: a deploy never rolls instances because AWS published a
    new AMI; ``cdk context --reset`` + a synth with credentials moves to the newest). That lookup needs
    a stack with account and region and, once, AWS credentials; without them pass ``machine_image``
    (``EcsOptimizedImage.amazon_linux2023(AmiHardwareType.GPU)`` resolves at deploy time instead, a pinned
    ``MachineImage.generic_linux({...})`` never changes). IMDSv2 required
    with a hop limit of 1 and IMDS blocked for awsvpc tasks (tasks use their task role, never
    the instance's), an encrypted gp3 root volume of ``root_volume_gib``, instances in the
    private ``subnets`` only (no public IP), the CloudWatch agent with ``cloudwatch_agent_config``
    when given (GPU metrics), a capacity provider with managed scaling (target
    100 %: one task per GPU host), managed termination protection and managed draining, and
    Container Insights with enhanced observability.

    ``managed_termination_protection=False`` is for environments that are torn down: deleting the
    capacity provider leaves ECS's scale-in protection on the instances, and CloudFormation then
    cannot delete the Auto Scaling group (docs/deploy-order.md). Managed draining still stops
    tasks gracefully before an instance terminates.

    ``depend_on_capacity(resource)`` orders a service after the cluster's capacity-provider
    association, so it is created after it and deleted before it ("capacity provider is in use").

    The ASG's own size is left to the capacity provider: ``min`` 0, ``max`` = ``max_instances``,
    no desired count (a deploy never resets it).

    Attributes: ``cluster``, ``auto_scaling_group``, ``capacity_provider``, ``launch_template``,
    ``instance_security_group``, ``instance_role``.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        instance_type: str | InstanceType,
        max_instances: int,
        machine_image: ec2.IMachineImage | None = None,
        root_volume_gib: int = DEFAULT_ROOT_VOLUME_GIB,
        reserved_memory_mib: int = ECS_RESERVED_MEMORY_MIB,
        container_stop_timeout: Duration = Duration.seconds(120),
        cluster_name: str | None = None,
        cloudwatch_agent_config: Mapping[str, Any] | None = None,
        managed_termination_protection: bool = True,
    ) -> None:
        super().__init__(scope, id_)
        # A name from the sizing catalog (SizingError for an unknown one), or InstanceType.describe(...).
        instance = get_instance(instance_type) if isinstance(instance_type, str) else instance_type
        instance_type = instance.name
        if instance.is_sagemaker:
            raise ValueError(f"GpuCluster: {instance_type} is a SageMaker type; use the EC2 name ({instance_type[3:]})")
        if max_instances < 1:
            raise ValueError("GpuCluster: max_instances must be >= 1")
        if root_volume_gib < MIN_ROOT_VOLUME_GIB:
            raise ValueError(
                f"GpuCluster: root_volume_gib {root_volume_gib} is too small for the vLLM image; "
                f"use >= {MIN_ROOT_VOLUME_GIB}"
            )

        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=vpc,
            cluster_name=cluster_name,
            container_insights_v2=ecs.ContainerInsights.ENHANCED,
        )
        self.instance_security_group = ec2.SecurityGroup(
            self,
            "InstanceSecurityGroup",
            vpc=vpc,
            description="GPU container instances: outbound only (tasks have their own ENIs and groups)",
            allow_all_outbound=True,
        )
        self.instance_role = iam.Role(
            self,
            "InstanceRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="ECS container agent on the GPU instances",
        )
        user_data = ec2.UserData.for_linux()
        user_data.add_commands(
            "cat >> /etc/ecs/ecs.config <<'EOF'",
            "ECS_ENABLE_GPU_SUPPORT=true",
            f"ECS_RESERVED_MEMORY={reserved_memory_mib}",
            "ECS_AWSVPC_BLOCK_IMDS=true",
            f"ECS_CONTAINER_STOP_TIMEOUT={int(container_stop_timeout.to_seconds())}s",
            # vLLM's image is large: keep it cached on the host between task restarts.
            "ECS_IMAGE_PULL_BEHAVIOR=prefer-cached",
            "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true",
            # awslogs writes with each task's execution role, not the instance role (denied below).
            "ECS_ENABLE_AWSLOGS_EXECUTIONROLE_OVERRIDE=true",
            "EOF",
        )
        self.launch_template = ec2.LaunchTemplate(
            self,
            "LaunchTemplate",
            machine_image=machine_image or self._cached_gpu_ami(),
            instance_type=ec2.InstanceType(instance_type),
            role=self.instance_role,
            security_group=self.instance_security_group,
            user_data=user_data,
            require_imdsv2=True,
            http_put_response_hop_limit=1,
            instance_metadata_tags=False,
            detailed_monitoring=True,
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/xvda",
                    volume=ec2.BlockDeviceVolume.ebs(
                        root_volume_gib,
                        encrypted=True,
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                        delete_on_termination=True,
                    ),
                )
            ],
        )
        self.auto_scaling_group = autoscaling.AutoScalingGroup(
            self,
            "Asg",
            vpc=vpc,
            vpc_subnets=subnets,
            launch_template=self.launch_template,
            min_capacity=0,
            max_capacity=max_instances,
            # ECS clears an instance's protection only while its capacity provider exists: with managed
            # termination protection off, protected instances would never scale in (or be deleted).
            new_instances_protected_from_scale_in=managed_termination_protection,
            health_checks=autoscaling.HealthChecks.ec2(grace_period=Duration.minutes(10)),
            capacity_rebalance=False,
        )
        Validations.of(self.auto_scaling_group).acknowledge(
            Acknowledgment(
                id="AwsSolutions::AwsSolutions-AS3",
                reason="Scaling is driven by the ECS capacity provider; task and instance events are alarmed "
                "on in the monitoring stack, so ASG notifications would page twice.",
            )
        )
        self.capacity_provider = ecs.AsgCapacityProvider(
            self,
            "CapacityProvider",
            auto_scaling_group=self.auto_scaling_group,
            enable_managed_scaling=True,
            enable_managed_termination_protection=managed_termination_protection,
            enable_managed_draining=True,
            target_capacity_percent=100,
            machine_image_type=ecs.MachineImageType.AMAZON_LINUX_2,
        )
        self.cluster.add_asg_capacity_provider(self.capacity_provider)
        # CDK's ECS statements allow logs:CreateLogStream/PutLogEvents on "*" to the instance role, for
        # tasks without an execution role. Every task here has one (awslogs uses it, see ecs.config):
        # the hosts themselves write no logs, so deny what the default would allow anywhere.
        self.instance_role.add_to_policy(
            iam.PolicyStatement(
                effect=iam.Effect.DENY,
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=["*"],
            )
        )
        if cloudwatch_agent_config is not None:
            # Host metrics ECS does not publish (GPU utilization: the nvidia_gpu collector). After the
            # capacity provider has written ECS_CLUSTER: a slow or failed install never delays joining.
            config_path = "/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json"
            user_data.add_commands(
                "dnf install -y amazon-cloudwatch-agent",
                f"cat > {config_path} <<'EOF'",
                json.dumps(cloudwatch_agent_config, sort_keys=True),
                "EOF",
                "/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s "
                f"-c file:{config_path}",
            )
            namespace = cloudwatch_agent_config.get("metrics", {}).get("namespace", "CWAgent")
            self.instance_role.add_to_policy(
                iam.PolicyStatement(
                    actions=["cloudwatch:PutMetricData"],
                    resources=["*"],
                    conditions={"StringEquals": {"cloudwatch:namespace": namespace}},
                )
            )
            self.instance_role.add_to_policy(iam.PolicyStatement(actions=["ec2:DescribeTags"], resources=["*"]))
        skip_checkov(
            self.instance_role.node.find_child("DefaultPolicy"),
            "CKV_AWS_111",
            "CDK's ECS container-agent statements (logs:PutLogEvents, ecs:Submit*) and PutMetricData limited to the "
            "agent's namespace; the write actions that take an ARN are scoped to this cluster.",
        )
        for finding in ("AwsSolutions-IAM5[Resource::*]", "AwsSolutions-IAM5[Action::ecs:Submit*]"):
            Validations.of(self.instance_role).acknowledge(
                Acknowledgment(
                    id=f"AwsSolutions::{finding}",
                    reason="ECS agent and CloudWatch agent actions that take no resource ARN (ecs:Submit* and Poll "
                    "on this cluster's instances, ecr:GetAuthorizationToken, ec2:DescribeTags, "
                    "cloudwatch:PutMetricData limited to its namespace).",
                )
            )

    def _cached_gpu_ami(self) -> ec2.IMachineImage:
        """The AL2023 ECS GPU AMI, looked up once and kept in cdk.context.json. Where the lookup cannot
        happen, one error line on this construct says what to do (synth then fails) instead of a jsii
        traceback or the CLI's bare credentials message."""
        stack = Stack.of(self)
        problem = None
        if Token.is_unresolved(stack.account) or Token.is_unresolved(stack.region):
            problem = (
                f"stack {stack.node.path} has no account/region (env), which the GPU AMI lookup needs: give the "
                "stack env=Environment(account=..., region=...), or pass machine_image (e.g. "
                "EcsOptimizedImage.amazon_linux2023(AmiHardwareType.GPU), resolved at deploy time)"
            )
        else:
            key = f"ssm:account={stack.account}:parameterName={GPU_AMI_PARAMETER}:region={stack.region}"
            cached = self.node.try_get_context(key)
            if isinstance(cached, dict) and "$providerError" in cached:
                reason = str(cached["$providerError"]).splitlines()[0]
                problem = (
                    f"the GPU AMI lookup failed ({reason}) and context key {key!r} is not set: run `npx cdk synth` "
                    f"once with credentials for account {stack.account} and commit the cdk.context.json it writes, "
                    "or pass machine_image"
                )
        if problem is None:
            return ecs.EcsOptimizedImage.amazon_linux2023(ecs.AmiHardwareType.GPU, cached_in_context=True)
        Annotations.of(self).add_error(f"GpuCluster: {problem}")
        # Synth fails on the error above; this only keeps the construct tree complete until then.
        region = "us-east-1" if Token.is_unresolved(stack.region) else stack.region
        return ec2.MachineImage.generic_linux({region: "ami-00000000000000000"})

    def depend_on_capacity(self, dependent: CfnResource) -> None:
        """Make ``dependent`` (an ECS service's CfnService) depend on the cluster's capacity-provider association.

        CDK creates the ``AWS::ECS::ClusterCapacityProviderAssociations`` resource under the cluster
        construct at synth (an aspect of the cluster), so the dependency is added by an aspect too,
        when the association exists.
        """
        Aspects.of(dependent).add(_AfterCapacityAssociation(self.cluster, dependent))


@jsii.implements(IAspect)
class _AfterCapacityAssociation:
    def __init__(self, cluster: ecs.Cluster, dependent: CfnResource) -> None:
        self._cluster, self._dependent = cluster, dependent

    def visit(self, node: IConstruct) -> None:
        if node.node.path != self._dependent.node.path:
            return
        association = self._cluster.node.try_find_child(self._cluster.node.id)
        if not isinstance(association, ecs.CfnClusterCapacityProviderAssociations):
            raise ValueError(
                f"GpuCluster: no capacity-provider association under {self._cluster.node.path} when "
                f"{node.node.path} was visited; create the service after the GpuCluster"
            )
        self._dependent.add_resource_dependency(association)
