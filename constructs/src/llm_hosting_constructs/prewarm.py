"""A one-off Fargate task that downloads the pinned model revision into the EFS model cache."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Fn, RemovalPolicy, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from .aws_names import S3_PREFIX_URI
from .model_cache import ModelCache
from .vllm import HF_HOME

CONTAINER = "prewarm"


class ModelPrewarm(Construct):
    """Fargate task definition that runs ``script`` (Python) in ``image`` with the cache at HF_HOME.

    Meant for the vLLM image itself and ``containers/prewarm/prewarm.py`` (the default ``script``,
    shipped with this package): the image already
    has ``huggingface_hub``, so nothing is built, and the files land exactly where vLLM looks.
    Fargate, not the GPU cluster: it needs no GPU and must not take a GPU host's place.

    Safe defaults: 2 vCPU / 8 GiB, 100 GiB ephemeral storage (the vLLM image unpacks to ~25 GB),
    HF_TOKEN as an ECS secret, the cache mounted with TLS + IAM through the access point, a
    security group with egress only to HTTPS (the Hub) and to the cache's NFS port.
    ``source_s3_uri`` (``s3://bucket/prefix/`` with the revision's files) copies from S3 instead
    of the Hub, for VPCs without internet egress; the task role may read that prefix only.

    ``run_task_command(cluster_name)`` is the exact ``aws ecs run-task`` line (a token string).

    Attributes: ``task_definition``, ``security_group``, ``log_group``, ``subnet_ids``.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        image: ecs.ContainerImage,
        script: str | None = None,
        model_id: str,
        revision: str,
        hf_token: secretsmanager.ISecret,
        model_cache: ModelCache,
        cpu: int = 2048,
        memory_mib: int = 8192,
        ephemeral_storage_gib: int = 100,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        log_key: kms.IKey | None = None,
        log_removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        source_s3_uri: str | None = None,
    ) -> None:
        super().__init__(scope, id_)
        if len(revision) != 40:
            raise ValueError("ModelPrewarm: revision must be a 40-character commit sha, never a branch")
        if script is None:
            from .assets import prewarm_script

            script = prewarm_script()  # containers/prewarm/prewarm.py, shipped with this package
        if not script.strip():
            raise ValueError("ModelPrewarm: script is empty")
        if source_s3_uri is not None and not S3_PREFIX_URI.match(source_s3_uri):
            raise ValueError("ModelPrewarm: source_s3_uri must look like s3://bucket/prefix/")
        if not 21 <= ephemeral_storage_gib <= 200:
            raise ValueError("ModelPrewarm: ephemeral_storage_gib must be 21..200 (Fargate's range)")

        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="Model pre-warm task: HTTPS out (Hugging Face Hub, AWS endpoints) and NFS to the cache",
            allow_all_outbound=False,
        )
        self.security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to the Hub and AWS APIs")
        model_cache.allow_from(self.security_group, "Model pre-warm task")

        self.log_group = logs.LogGroup(
            self, "Logs", retention=log_retention, encryption_key=log_key, removal_policy=log_removal_policy
        )
        task_role = iam.Role(
            self, "TaskRole", assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="Model pre-warm: writes the model cache",
        )  # fmt: skip
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            cpu=cpu,
            memory_limit_mib=memory_mib,
            ephemeral_storage_gib=ephemeral_storage_gib,
            task_role=task_role,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        volume = model_cache.add_to_task(self.task_definition, write=True)
        if source_s3_uri:
            bucket, _, prefix = source_s3_uri.removeprefix("s3://").partition("/")
            source = s3.Bucket.from_bucket_name(self, "SourceBucket", bucket)
            objects_arn = source.arn_for_objects(f"{prefix}*")
            task_role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=[objects_arn]))
            task_role.add_to_policy(
                iam.PolicyStatement(
                    actions=["s3:ListBucket"],
                    resources=[source.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [f"{prefix}*"]}},
                )
            )
            # cdk-nag names the finding by the ARN as synthesized: a literal partition (the app's
            # enablePartitionLiterals flag) or the pseudo parameter.
            for partition in ("aws", "<AWS::Partition>"):
                Validations.of(task_role).acknowledge(
                    Acknowledgment(
                        id=f"AwsSolutions::AwsSolutions-IAM5[Resource::arn:{partition}:s3:::{bucket}/{prefix}*]",
                        reason="The pre-warm reads every file of one model revision: the objects under one prefix.",
                    )
                )
        container = self.task_definition.add_container(
            CONTAINER,
            image=image,
            entry_point=["python3", "-c"],
            command=[script],
            essential=True,
            environment={
                "MODEL_ID": model_id,
                "MODEL_REVISION": revision,
                "HF_HOME": HF_HOME,
                "HF_HUB_OFFLINE": "0",
                "HF_HUB_DISABLE_TELEMETRY": "1",
                **({"MODEL_S3_URI": source_s3_uri} if source_s3_uri else {}),
            },
            secrets={"HF_TOKEN": ecs.Secret.from_secrets_manager(hf_token)},
            logging=ecs.LogDrivers.aws_logs(stream_prefix=CONTAINER, log_group=self.log_group),
        )
        Validations.of(self.task_definition).acknowledge(
            Acknowledgment(
                id="AwsSolutions::AwsSolutions-ECS2",
                reason="The plain environment holds the public model id and revision and cache paths; HF_TOKEN "
                "is an ECS secret from Secrets Manager.",
            )
        )
        Validations.of(self.task_definition.obtain_execution_role()).acknowledge(
            Acknowledgment(
                id="AwsSolutions::AwsSolutions-IAM5[Resource::*]",
                reason="ecr:GetAuthorizationToken has no resource-level permissions (AWS documents '*'); image "
                "pulls themselves are limited to the named repositories.",
            )
        )
        container.add_mount_points(ecs.MountPoint(container_path=HF_HOME, source_volume=volume, read_only=False))
        self.subnet_ids: list[str] = vpc.select_subnets(**_selection_kwargs(subnets)).subnet_ids

    def run_task_command(self, cluster_name: str, region: str) -> str:
        """The ``aws ecs run-task`` command line that runs the pre-warm once (a CloudFormation token)."""
        subnets = Fn.join(",", self.subnet_ids)
        return Fn.join(
            "",
            [
                f"aws ecs run-task --region {region} --cluster ",
                cluster_name,
                " --launch-type FARGATE --platform-version LATEST --task-definition ",
                self.task_definition.task_definition_arn,
                " --network-configuration 'awsvpcConfiguration={subnets=[",
                subnets,
                "],securityGroups=[",
                self.security_group.security_group_id,
                "],assignPublicIp=DISABLED}'",
            ],
        )



def _selection_kwargs(selection: ec2.SubnetSelection) -> dict:
    """A SubnetSelection struct as the keyword arguments jsii's ``select_subnets`` takes."""
    names = ("availability_zones", "one_per_az", "subnet_filters", "subnet_group_name", "subnets", "subnet_type")
    return {n: getattr(selection, n) for n in names if getattr(selection, n) is not None}

