"""The model pre-warm: a Fargate task that downloads the pinned model revision into the EFS model
cache (``ModelPrewarm``), and the custom resource that runs it during the deploy (``ModelCacheFill``)."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Acknowledgment, CustomResource, Duration, Fn, RemovalPolicy, Stack, Token, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import custom_resources as cr
from constructs import Construct

from .aws_names import S3_PREFIX_URI
from .checkov import skip_checkov
from .model_cache import ModelCache
from .vllm import HF_HOME

CONTAINER = "prewarm"
# The Provider framework's and CloudFormation's ceiling for one custom-resource operation (1 hour):
# the largest catalog model must be in the cache within it (docs/deploy-order.md has the budget).
FILL_TIMEOUT = Duration.hours(1)
RUNNER_CODE = Path(__file__).resolve().parent / "prewarm_runner"


class ModelPrewarm(Construct):
    """Fargate task definition that runs ``script`` (Python) in ``image`` with the cache at HF_HOME.

    Meant for the vLLM image itself and ``containers/prewarm/prewarm.py`` (the default ``script``,
    shipped with this package): the image already
    has ``huggingface_hub``, so nothing is built, and the files land exactly where vLLM looks.
    Fargate, not the GPU cluster: it needs no GPU and must not take a GPU host's place.

    Safe defaults: the VPC's private subnets (``subnets``; the task needs a route to the Hub or to
    S3), 2 vCPU / 8 GiB, 100 GiB ephemeral storage (the vLLM image unpacks to ~25 GB),
    ``hf_token`` as an ECS secret (default none: a public model or an S3 source), the cache mounted with
    TLS + IAM through the access point, a security group with egress only to HTTPS (the Hub) and
    to the cache's NFS port.
    ``model_s3_uri`` (``s3://bucket/prefix/`` with the revision's files) copies from S3 instead
    of the Hub, for VPCs without internet egress; the task role may read that prefix only.

    ``run_task_command(cluster_name)`` is the exact ``aws ecs run-task`` line (a token string).

    Attributes: ``task_definition``, ``security_group``, ``log_group``, ``subnet_ids``, ``model_id``,
    ``revision``, ``model_s3_uri``, ``cache_access`` (the cache's NFS ingress rule for the task).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection | None = None,
        image: ecs.ContainerImage,
        script: str | None = None,
        model_id: str,
        revision: str,
        hf_token: secretsmanager.ISecret | None = None,
        model_cache: ModelCache,
        cpu: int = 2048,
        memory_mib: int = 8192,
        ephemeral_storage_gib: int = 100,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        log_key: kms.IKey | None = None,
        log_removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        model_s3_uri: str | None = None,
    ) -> None:
        super().__init__(scope, id_)
        if len(revision) != 40:
            raise ValueError("ModelPrewarm: revision must be a 40-character commit sha, never a branch")
        if script is None:
            from .assets import prewarm_script

            script = prewarm_script()  # containers/prewarm/prewarm.py, shipped with this package
        if not script.strip():
            raise ValueError("ModelPrewarm: script is empty")
        source_match = S3_PREFIX_URI.match(model_s3_uri) if model_s3_uri is not None else None
        if model_s3_uri is not None and source_match is None:
            raise ValueError("ModelPrewarm: model_s3_uri must look like s3://bucket/prefix/")
        if not 21 <= ephemeral_storage_gib <= 200:
            raise ValueError("ModelPrewarm: ephemeral_storage_gib must be 21..200 (Fargate's range)")

        self.model_id, self.revision, self.model_s3_uri = model_id, revision, model_s3_uri
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="Model pre-warm task: HTTPS out (Hugging Face Hub, AWS endpoints) and NFS to the cache",
            allow_all_outbound=False,
        )
        self.security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to the Hub and AWS APIs")
        self.cache_access = model_cache.allow_from(self.security_group, "Model pre-warm task")

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
        if source_match is not None:
            bucket, prefix = source_match["bucket"], source_match["prefix"]
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
                **({"MODEL_S3_URI": model_s3_uri} if model_s3_uri else {}),
            },
            # No token for public models: the Hub answers 401 to an invalid token even on a public repo.
            secrets={"HF_TOKEN": ecs.Secret.from_secrets_manager(hf_token)} if hf_token is not None else None,
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
        self.subnet_ids: list[str] = vpc.select_subnets(**_selection_kwargs(subnets or ec2.SubnetSelection())).subnet_ids

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


class ModelCacheFill(Construct):
    """Runs ``prewarm``'s task during the deploy and waits until it has filled the cache.

    A custom resource (CDK's Provider framework: ``on_event`` starts the task, ``is_complete``
    polls it every ``query_interval``) whose properties are the model id, revision and S3 source:
    it runs on create and again whenever one of those changes, never on delete (the cache
    belongs to the stateful stack). Make whatever reads the cache depend on ``resource``; the
    deploy then fails with the task's stop reason before a service starts on an empty cache.

    The task runs on Fargate in ``cluster`` (no GPU host is launched for a download). A task
    already running for the same model (a deploy that timed out while it ran) is joined, not
    started twice. ``total_timeout`` is at most 1 hour, CloudFormation's limit for one
    custom-resource operation.

    The handlers run outside the VPC: they only call the ECS control plane (RunTask,
    DescribeTasks, ListTasks) and carry no model data; inside a closed VPC they would need
    ECS, Step Functions and Lambda endpoints for no change in what reaches the network.

    Attributes: ``resource``, ``provider``, ``on_event_function``, ``is_complete_function``.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        prewarm: ModelPrewarm,
        cluster: ecs.ICluster,
        total_timeout: Duration = FILL_TIMEOUT,
        query_interval: Duration = Duration.seconds(30),
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        log_key: kms.IKey | None = None,
        log_removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, id_)
        if total_timeout.to_seconds() > FILL_TIMEOUT.to_seconds():
            raise ValueError("ModelCacheFill: total_timeout is at most 1 hour (CloudFormation's custom-resource limit)")
        stack = Stack.of(self)
        task_definition = prewarm.task_definition
        self.log_group = logs.LogGroup(
            self, "Logs", retention=log_retention, encryption_key=log_key, removal_policy=log_removal_policy
        )
        # Bytecode left by tests or an import would change the asset hash: synth must not depend on it.
        code = lambda_.Code.from_asset(str(RUNNER_CODE), exclude=["__pycache__", "*.pyc"])

        def role(name: str, description: str) -> iam.Role:
            # Own roles instead of the AWSLambdaBasicExecutionRole managed policy: logs to this group only.
            created = iam.Role(
                self, name, assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description=description
            )
            self.log_group.grant_write(created)
            return created

        functions = {}
        for name, handler in (("OnEvent", "handler.on_event"), ("IsComplete", "handler.is_complete")):
            functions[name] = lambda_.Function(
                self,
                name,
                runtime=lambda_.Runtime.PYTHON_3_14,
                architecture=lambda_.Architecture.ARM_64,
                code=code,
                handler=handler,
                role=role(f"{name}Role", f"Model pre-warm on deploy: {handler}"),
                timeout=Duration.minutes(1),
                memory_size=256,
                log_group=self.log_group,
                description=f"Model pre-warm on deploy: {handler.split('.')[1]} (ECS RunTask/DescribeTasks)",
            )
        self.on_event_function, self.is_complete_function = functions["OnEvent"], functions["IsComplete"]
        self.on_event_function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ecs:RunTask"],
                resources=[task_definition.task_definition_arn],
                conditions={"ArnEquals": {"ecs:cluster": cluster.cluster_arn}},
            )
        )
        self.on_event_function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ecs:ListTasks"],
                resources=[stack.format_arn(service="ecs", resource="container-instance", resource_name="*")],
                conditions={"ArnEquals": {"ecs:cluster": cluster.cluster_arn}},
            )
        )
        roles = [task_definition.task_role, task_definition.obtain_execution_role()]
        self.on_event_function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[r.role_arn for r in roles],
                conditions={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
            )
        )
        self.is_complete_function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ecs:DescribeTasks"],
                resources=[stack.format_arn(service="ecs", resource="task", resource_name=f"{cluster.cluster_name}/*")],
            )
        )
        self.provider = cr.Provider(
            self,
            "Provider",
            on_event_handler=self.on_event_function,
            is_complete_handler=self.is_complete_function,
            total_timeout=total_timeout,
            query_interval=query_interval,
            log_group=self.log_group,
            framework_on_event_role=role("FrameworkOnEventRole", "CDK Provider framework: onEvent"),
            framework_complete_and_timeout_role=role(
                "FrameworkCompleteRole", "CDK Provider framework: isComplete and onTimeout"
            ),
            disable_waiter_state_machine_logging=False,
            waiter_state_machine_log_options=cr.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False
            ),
        )
        self.resource = CustomResource(
            self,
            "Resource",
            service_token=self.provider.service_token,
            resource_type="Custom::ModelCacheFill",
            properties={
                "Cluster": cluster.cluster_name,
                # A new revision alone (e.g. another log retention) updates the resource without a new
                # download: the handler re-runs the task only when ModelId, Revision or SourceUri change.
                "TaskDefinition": task_definition.task_definition_arn,
                "Container": CONTAINER,
                "Subnets": Fn.join(",", prewarm.subnet_ids),
                "SecurityGroup": prewarm.security_group.security_group_id,
                "LogGroup": prewarm.log_group.log_group_name,
                "ModelId": prewarm.model_id,
                "Revision": prewarm.revision,
                "SourceUri": prewarm.model_s3_uri or "",
            },
        )
        # What the task needs and the properties above do not reference: its roles' policies (EFS write,
        # S3 read, image pull, secret) and the NFS rules between its security group and the cache.
        needs: list[Construct] = [prewarm.cache_access]
        for role in (task_definition.task_role, task_definition.obtain_execution_role()):
            policy = role.node.try_find_child("DefaultPolicy")
            if policy is not None:
                needs.append(policy)
        needs += [c for c in prewarm.security_group.node.children if isinstance(c, ec2.CfnSecurityGroupEgress)]
        self.resource.node.add_dependency(*needs)
        self._acknowledge(cluster)

    def _acknowledge(self, cluster: ecs.ICluster) -> None:
        """cdk-nag findings of the handlers and of CDK's Provider framework, each with its reason."""
        stack = Stack.of(self)

        def ref(construct: Construct, attribute: str = "") -> str:
            """How cdk-nag writes a reference to ``construct``'s resource in a finding id."""
            logical_id = stack.get_logical_id(construct.node.default_child)  # type: ignore[arg-type]
            return f"<{logical_id}{'.' + attribute if attribute else ''}>"

        region = "<AWS::Region>" if Token.is_unresolved(stack.region) else stack.region
        account = "<AWS::AccountId>" if Token.is_unresolved(stack.account) else stack.account
        framework = [self.provider.node.find_child(n) for n in ("framework-isComplete", "framework-onTimeout")]
        wildcards = {
            **{
                f"arn:{partition}:ecs:{region}:{account}:container-instance/*": "ecs:ListTasks is authorized on "
                "container instances (AWS's service authorization reference); the ecs:cluster condition limits it "
                "to this cluster."
                for partition in ("aws", "<AWS::Partition>")
            },
            **{
                f"arn:{partition}:ecs:{region}:{account}:task/{ref(cluster)}/*": "DescribeTasks of the pre-warm "
                "task, whose id is known only at run time: any task of this cluster."
                for partition in ("aws", "<AWS::Partition>")
            },
            **{
                f"{ref(fn, 'Arn')}:*": "CDK's Provider framework invokes its handler functions by version "
                "(lambda:InvokeFunction on the function's ARN with a version suffix)."
                for fn in (self.on_event_function, self.is_complete_function, *framework)
            },
        }
        findings = {f"AwsSolutions-IAM5[Resource::{resource}]": reason for resource, reason in wildcards.items()}
        findings.update(
            {
                "AwsSolutions-L1": "CDK's Provider framework functions run the Node.js runtime CDK pins for them; the "
                "pre-warm handlers use the newest Python runtime.",
                "AwsSolutions-IAM5[Resource::*]": "The waiter state machine's log delivery (logs:CreateLogDelivery, "
                "logs:PutResourcePolicy, ...) takes no resource ARN (AWS documents '*' for vended logs).",
                "AwsSolutions-SF2": "CDK's Provider waiter state machine has no X-Ray switch; each step is a Lambda "
                "call logged in this construct's log group.",
            }
        )
        for finding, reason in findings.items():
            Validations.of(self).acknowledge(Acknowledgment(id=f"AwsSolutions::{finding}", reason=reason))
        # The HIPAA and NIST 800-53 packs (run as reports): these functions are a deploy-time control plane.
        compliance = {
            "LambdaInsideVPC": "The handlers only call the ECS control plane (RunTask/DescribeTasks/ListTasks) "
            "and carry no model data or prompts; inside the closed VPC they would need ECS, Lambda and Step Functions "
            "endpoints for no change in what reaches the network (docs/deploy-order.md).",
            "LambdaConcurrency": "Invoked by CloudFormation once per deploy of this stack (and every 30 s while it "
            "waits); there is no traffic to reserve concurrency for.",
            "LambdaDLQ": "Invoked synchronously by CloudFormation and the Provider framework, which report every "
            "failure as the stack event; an asynchronous dead-letter queue would never receive one.",
            "IAMNoInlinePolicy": "Single-purpose roles of this construct, created and deleted with it; the inline "
            "statements are scoped to the one task definition, cluster and log group.",
        }
        for pack in ("HIPAA.Security", "NIST.800.53.R5"):
            for rule, reason in compliance.items():
                Validations.of(self).acknowledge(Acknowledgment(id=f"{pack}::{pack}-{rule}", reason=reason))
        # checkov's equivalents, resource by resource. No reserved concurrency on purpose: a new account
        # may have only 10, and reserving any would fail the very first deploy.
        framework.append(self.provider.node.find_child("framework-onEvent"))
        for fn in (self.on_event_function, self.is_complete_function, *framework):
            skip_checkov(fn, "CKV_AWS_117", compliance["LambdaInsideVPC"])
            skip_checkov(fn, "CKV_AWS_115", compliance["LambdaConcurrency"])
            skip_checkov(fn, "CKV_AWS_116", compliance["LambdaDLQ"])
        for fn in framework:
            skip_checkov(
                fn,
                "CKV_AWS_173",
                "CDK's Provider framework functions: their environment holds only the ARNs of the handler "
                "functions and the waiter state machine, no secret.",
            )
        waiter_policy = self.provider.node.find_child("waiter-state-machine").node.find_child("Role").node.find_child(
            "DefaultPolicy"
        )
        skip_checkov(
            waiter_policy,
            "CKV_AWS_111",
            "The waiter's log delivery actions (logs:CreateLogDelivery, logs:PutResourcePolicy, ...) take no resource "
            "ARN; its lambda:InvokeFunction statements name the two framework functions.",
        )


def _selection_kwargs(selection: ec2.SubnetSelection) -> dict:
    """A SubnetSelection struct as the keyword arguments jsii's ``select_subnets`` takes."""
    names = ("availability_zones", "one_per_az", "subnet_filters", "subnet_group_name", "subnets", "subnet_type")
    return {n: getattr(selection, n) for n in names if getattr(selection, n) is not None}
