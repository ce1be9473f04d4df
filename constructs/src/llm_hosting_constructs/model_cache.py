"""An encrypted EFS file system that holds the Hugging Face cache (``HF_HOME``) of the serving tasks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Names, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_efs as efs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from .reuse import existing_or_new, reject_contradictions

# POSIX identity every client of the cache writes as (enforced by the access point, whatever
# user the container runs as): vLLM runs as root in its image, the pre-warm task too; the files
# still belong to this uid, so a reader never needs root on the file system.
CACHE_UID = "1000"
CACHE_GID = "1000"
CACHE_PATH = "/hf-cache"
FILE_SYSTEM_OWNED_PROPS = frozenset(
    {"vpc", "vpc_subnets", "security_group", "encrypted", "kms_key", "throughput_mode", "enable_automatic_backups",
     "removal_policy", "allow_anonymous_access"}
)  # fmt: skip
"""``efs.FileSystem`` props that ``file_system_props`` may not set: the construct's own props say them."""


class ModelCache(Construct):
    """EFS for model weights: KMS-encrypted, private mount targets, one access point for HF_HOME.

    Safe defaults: encryption at rest with a customer-managed key (rotation on), elastic
    throughput (pay per byte read, no burst credits to run out of while 16 tasks load 140 GB
    at once), IAM authorization and TLS required on every mount (the file system policy denies
    anonymous and non-TLS access), a security group that admits NFS only from the client
    security groups added with :meth:`allow_from`, and ``RETAIN`` removal.

    ``existing_key`` encrypts with your key instead of creating one. ``existing_security_group`` puts
    the mount targets in your group (``allow_from`` still opens NFS on it), or ``security_group_props``
    adjusts the created one, not both. ``file_system_props`` adds ``efs.FileSystem`` props (e.g.
    ``file_system_name``, ``lifecycle_policy``); those that decide encryption, network, throughput,
    backups and removal are this construct's own props and are rejected there. There is no
    ``existing_file_system``: the cache's file system policy, which denies clear-text NFS, can only
    be set on a file system created here. ``automatic_backups``
    turns on AWS Backup's default daily plan (prod). ``security_group_parameter_name`` writes
    the security group's id to that SSM parameter, and a client in another stack then reads it
    there at deploy instead of importing it: an export of a security group cannot change while
    imported, so a replaced group would fail the update ("Export ... cannot be updated as it is
    in use"). The client stack must then deploy after this one (an explicit stack dependency).

    Attributes: ``file_system``, ``access_point``, ``security_group``, ``key``, ``cache_path``
    (the access point's root), ``posix_uid``/``posix_gid``.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection | None = None,
        existing_key: kms.IKey | None = None,
        throughput_mode: efs.ThroughputMode = efs.ThroughputMode.ELASTIC,
        automatic_backups: bool = False,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        security_group_parameter_name: str | None = None,
        existing_security_group: ec2.ISecurityGroup | None = None,
        security_group_props: Mapping[str, Any] | None = None,
        file_system_props: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(scope, id_)
        reject_contradictions("ModelCache", security_group=(existing_security_group, security_group_props))
        owned = sorted(set(file_system_props or {}) & FILE_SYSTEM_OWNED_PROPS)
        if owned:
            raise ValueError(
                f"ModelCache: file_system_props may not set {', '.join(owned)}: the cache's encryption and network "
                "are its own props (existing_key, vpc, subnets, existing_security_group, throughput_mode, ...)"
            )
        if throughput_mode == efs.ThroughputMode.PROVISIONED:
            raise ValueError("ModelCache: PROVISIONED throughput is not supported; use ELASTIC (default) or BURSTING")

        self.key: kms.IKey = existing_key or kms.Key(
            self,
            "Key",
            description="Encrypts the model cache (EFS) and the serving secrets",
            enable_key_rotation=True,
            removal_policy=removal_policy,
        )
        self.security_group = existing_or_new(
            existing_security_group,
            security_group_props,
            lambda **props: ec2.SecurityGroup(self, "SecurityGroup", **props),
            vpc=vpc,
            description="NFS to the model cache, only from the serving and pre-warm tasks",
            allow_all_outbound=False,
        )
        self.security_group_parameter_name = security_group_parameter_name
        if security_group_parameter_name is not None:
            ssm.StringParameter(
                self,
                "SecurityGroupIdParameter",
                parameter_name=security_group_parameter_name,
                string_value=self.security_group.security_group_id,
                description="Security group of the EFS model cache, read by its clients' stacks at deploy",
            )
        self.file_system = efs.FileSystem(
            self,
            "FileSystem",
            vpc=vpc,
            vpc_subnets=subnets,
            security_group=self.security_group,
            encrypted=True,
            kms_key=self.key,
            performance_mode=efs.PerformanceMode.GENERAL_PURPOSE,
            throughput_mode=throughput_mode,
            enable_automatic_backups=automatic_backups,
            removal_policy=removal_policy,
            # CDK's "deny anonymous" default works by *allowing* ClientWrite + ClientRootAccess to every
            # principal that comes through a mount target, which would also hand write access to a
            # client granted read-only. Leave that statement out: the policy below denies clear-text
            # NFS, and once a file system has a policy, a client without IAM credentials gets nothing
            # (it is not allowed ClientMount), while each role gets exactly what grant_mount gives it.
            allow_anonymous_access=True,
            **(file_system_props or {}),
        )
        # No clear-text NFS: every client mounts with TLS (and IAM, through the access point).
        self.file_system.add_to_resource_policy(
            iam.PolicyStatement(
                sid="DenyUnencryptedTransport",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["*"],
                conditions={"Bool": {"aws:SecureTransport": "false"}},
            )
        )
        self.cache_path = CACHE_PATH
        self.posix_uid, self.posix_gid = CACHE_UID, CACHE_GID
        self.access_point = self.file_system.add_access_point(
            "HfCache",
            path=CACHE_PATH,
            posix_user=efs.PosixUser(uid=CACHE_UID, gid=CACHE_GID),
            create_acl=efs.Acl(owner_uid=CACHE_UID, owner_gid=CACHE_GID, permissions="750"),
        )

    def allow_from(self, peer: ec2.ISecurityGroup, description: str) -> ec2.CfnSecurityGroupIngress:
        """Open NFS (2049) to the ``peer`` security group, and nothing else; returns the ingress rule.

        The ingress rule is created in the peer's stack, so a client stack depends on the cache's
        stack and never the other way round (the cache stays deployable on its own). It sits at
        that stack's top level: make the tasks that mount the cache depend on it. In another stack,
        the cache's group id comes from ``security_group_parameter_name`` when set.
        """
        scope = Stack.of(peer)
        group_id = self.security_group.security_group_id
        if self.security_group_parameter_name is not None and scope is not Stack.of(self):
            group_id = ssm.StringParameter.value_for_string_parameter(scope, self.security_group_parameter_name)
        ingress = ec2.CfnSecurityGroupIngress(
            scope,
            f"NfsFrom{Names.unique_id(peer)}",
            group_id=group_id,
            source_security_group_id=peer.security_group_id,
            ip_protocol="tcp",
            from_port=efs.FileSystem.DEFAULT_PORT,
            to_port=efs.FileSystem.DEFAULT_PORT,
            description=description,
        )
        if not peer.allow_all_outbound:
            peer.add_egress_rule(
                ec2.Peer.security_group_id(group_id), ec2.Port.tcp(efs.FileSystem.DEFAULT_PORT), description
            )
        return ingress

    def add_to_task(self, task_definition: ecs.TaskDefinition, *, write: bool, name: str = "hf-cache") -> str:
        """Add the cache as an EFS volume (TLS + IAM, through the access point) to ``task_definition`` and
        let its task role mount it (read-only unless ``write``). Returns the volume name for mount points."""
        task_definition.add_volume(
            name=name,
            efs_volume_configuration=ecs.EfsVolumeConfiguration(
                file_system_id=self.file_system.file_system_id,
                transit_encryption="ENABLED",
                authorization_config=ecs.AuthorizationConfig(
                    access_point_id=self.access_point.access_point_id, iam="ENABLED"
                ),
            ),
        )
        self.grant_mount(task_definition.task_role, write=write)
        return name

    def grant_mount(self, grantee: iam.IGrantable, *, write: bool) -> None:
        """IAM authorization to mount through the access point (read-only unless ``write``)."""
        actions = ["elasticfilesystem:ClientMount"] + (["elasticfilesystem:ClientWrite"] if write else [])
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=actions,
                resources=[self.file_system.file_system_arn],
                conditions={"StringEquals": {"elasticfilesystem:AccessPointArn": self.access_point.access_point_arn}},
            )
        )


__all__ = ["CACHE_GID", "CACHE_PATH", "CACHE_UID", "ModelCache"]
