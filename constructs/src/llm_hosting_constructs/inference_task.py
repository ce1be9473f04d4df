"""The serving task: vLLM on the GPUs and the gateway in front of it, in one awsvpc task."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Size, Validations
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from .model_cache import ModelCache
from .vllm import HF_HOME, VLLM_ENTRYPOINT, vllm_healthcheck_command

# ECS caps a container health check's start period at 300 s; the service's health-check grace
# period covers the rest of a slow model load.
MAX_START_PERIOD = Duration.seconds(300)
MAX_RETRIES = 10
MAX_STOP_TIMEOUT = Duration.seconds(120)
VLLM_CONTAINER = "vllm"
GATEWAY_CONTAINER = "gateway"
SHM_CAP_MIB = 20 * 1024


class InferenceTask(Construct):
    """EC2 task definition (awsvpc) with two essential containers.

    - ``vllm``: ``vllm_image`` with ``vllm serve <vllm_args>``, ``gpu_count`` GPUs, a large
      ``/dev/shm`` (NCCL needs it for tensor parallelism; default a quarter of the task's
      memory, at most 20 GiB), unlimited memlock and a 64 MiB stack, the model cache mounted
      at ``HF_HOME`` (read-only when ``hf_hub_offline``: the cache was pre-warmed and vLLM
      never writes it), ``HF_TOKEN`` as an ECS secret, a ``/health`` check with the longest
      start period ECS allows.
    - ``gateway``: ``gateway_image`` (default: built from the gateway source this package ships,
      ``llm_hosting_constructs.gateway``), port ``gateway_port`` (default its contract's 8080),
      liveness check ``gateway_healthcheck_command`` (default the contract's), started only once vLLM is
      HEALTHY (and so stopped first), read-only root file system, non-root ``gateway_user``
      (default 10001, the user ``containers/gateway/Dockerfile`` creates),
      ``gateway_secrets`` (e.g. the API keys) as ECS secrets, ``gateway_environment`` plain.

    Defaults: ``vllm_environment`` empty, ``hf_token`` none (public models only),
    ``hf_hub_offline`` false (vLLM may download into the cache; set it once the cache is pre-warmed).

    Both stop within ``stop_timeout`` (ECS's maximum, 120 s, by default): the gateway drains
    its streams, then vLLM exits. Each container logs to its own group with ``log_retention``,
    encrypted with ``log_key`` when given.

    ``cpu_units``/``memory_mib`` reserve the task as a whole (one task per GPU host); the
    gateway gets ``gateway_cpu_units``/``gateway_memory_mib`` of it and vLLM the rest.

    Attributes: ``task_definition``, ``vllm``, ``gateway``, ``task_role``, ``execution_role``,
    ``log_groups`` (by container name).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        vllm_image: ecs.ContainerImage,
        vllm_args: Sequence[str],
        vllm_environment: Mapping[str, str] | None = None,
        gpu_count: int,
        hf_token: secretsmanager.ISecret | None = None,
        model_cache: ModelCache,
        hf_hub_offline: bool = False,
        gateway_image: ecs.ContainerImage | None = None,
        gateway_port: int | None = None,
        gateway_environment: Mapping[str, str] | None = None,
        gateway_secrets: Mapping[str, secretsmanager.ISecret] | None = None,
        gateway_healthcheck_command: Sequence[str] | None = None,
        gateway_user: str = "10001:10001",
        cpu_units: int,
        memory_mib: int,
        gateway_cpu_units: int = 1024,
        gateway_memory_mib: int = 2048,
        vllm_port: int = 8000,
        shm_size_mib: int | None = None,
        stop_timeout: Duration = MAX_STOP_TIMEOUT,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        log_key: kms.IKey | None = None,
        log_removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, id_)
        # Defaults: the gateway this package ships (image built from its source, its contract's port and
        # liveness check, its own settings' defaults).
        if gateway_image is None or gateway_port is None or gateway_healthcheck_command is None:
            from .gateway import contract, gateway_image as packaged_gateway_image

            gateway_image = gateway_image or packaged_gateway_image()
            gateway_port = gateway_port or contract.GATEWAY_PORT
            gateway_healthcheck_command = gateway_healthcheck_command or contract.CONTAINER_HEALTHCHECK_COMMAND
        gateway_environment = gateway_environment or {}
        vllm_environment = vllm_environment or {}
        if gpu_count < 1:
            raise ValueError("InferenceTask: gpu_count must be >= 1 (vLLM's tensor-parallel size)")
        if stop_timeout.to_seconds() > MAX_STOP_TIMEOUT.to_seconds():
            raise ValueError("InferenceTask: stop_timeout cannot exceed 120 s (ECS's maximum)")
        if gateway_cpu_units >= cpu_units or gateway_memory_mib >= memory_mib:
            raise ValueError("InferenceTask: the gateway's share must leave CPU and memory for vLLM")
        if "HF_TOKEN" in vllm_environment:
            raise ValueError("InferenceTask: HF_TOKEN is a secret; pass it as hf_token, not in vllm_environment")
        leaked = sorted(set(gateway_environment) & set(gateway_secrets or {}))
        if leaked:
            raise ValueError(f"InferenceTask: {', '.join(leaked)} given both as plain environment and as secret")
        vllm_memory_mib = memory_mib - gateway_memory_mib
        shm = shm_size_mib if shm_size_mib is not None else min(SHM_CAP_MIB, vllm_memory_mib // 4)
        if shm >= vllm_memory_mib:
            raise ValueError(f"InferenceTask: shm_size_mib {shm} must be below vLLM's memory ({vllm_memory_mib} MiB)")

        self.task_role = iam.Role(
            self, "TaskRole", assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="vLLM + gateway task: mounts the model cache, nothing else",
        )  # fmt: skip
        self.execution_role = iam.Role(
            self, "ExecutionRole", assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="Pulls the images, writes the logs, reads the task's secrets",
        )  # fmt: skip
        self.task_definition = ecs.Ec2TaskDefinition(
            self,
            "TaskDefinition",
            network_mode=ecs.NetworkMode.AWS_VPC,
            task_role=self.task_role,
            execution_role=self.execution_role,
        )
        # Task-level reservation: the whole host, so ECS places exactly one task per instance.
        cfn = self.task_definition.node.default_child
        cfn.add_property_override("Cpu", str(cpu_units))  # type: ignore[union-attr]
        cfn.add_property_override("Memory", str(memory_mib))  # type: ignore[union-attr]

        volume = model_cache.add_to_task(self.task_definition, write=not hf_hub_offline)

        self.log_groups: dict[str, logs.LogGroup] = {}
        for name in (VLLM_CONTAINER, GATEWAY_CONTAINER):
            self.log_groups[name] = logs.LogGroup(
                self, f"{name.capitalize()}Logs", retention=log_retention, encryption_key=log_key,
                removal_policy=log_removal_policy,
            )  # fmt: skip

        self.vllm = self.task_definition.add_container(
            VLLM_CONTAINER,
            image=vllm_image,
            entry_point=list(VLLM_ENTRYPOINT),
            command=list(vllm_args),
            essential=True,
            cpu=cpu_units - gateway_cpu_units,
            memory_reservation_mib=vllm_memory_mib,
            gpu_count=gpu_count,
            environment=dict(vllm_environment),
            # None for a public model or an S3-staged one: the Hub rejects an invalid token even on public repos.
            secrets={"HF_TOKEN": ecs.Secret.from_secrets_manager(hf_token)} if hf_token is not None else None,
            linux_parameters=self._vllm_linux_parameters(shm),
            # Model load window before ECS replaces the task: 300 s start period + 10 × 30 s = 600 s
            # (ECS allows no more retries); the service's ALB grace period is longer still.
            health_check=ecs.HealthCheck(
                command=vllm_healthcheck_command(vllm_port),
                interval=Duration.seconds(30),
                timeout=Duration.seconds(10),
                retries=MAX_RETRIES,
                start_period=MAX_START_PERIOD,
            ),
            stop_timeout=stop_timeout,
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix=VLLM_CONTAINER, log_group=self.log_groups[VLLM_CONTAINER],
                mode=ecs.AwsLogDriverMode.NON_BLOCKING, max_buffer_size=Size.mebibytes(25),
            ),  # fmt: skip
        )
        self.vllm.add_ulimits(
            ecs.Ulimit(name=ecs.UlimitName.MEMLOCK, soft_limit=-1, hard_limit=-1),
            ecs.Ulimit(name=ecs.UlimitName.STACK, soft_limit=67_108_864, hard_limit=67_108_864),
            ecs.Ulimit(name=ecs.UlimitName.NOFILE, soft_limit=65_536, hard_limit=65_536),
        )
        self.vllm.add_mount_points(
            ecs.MountPoint(container_path=HF_HOME, source_volume=volume, read_only=hf_hub_offline)
        )

        self.gateway = self.task_definition.add_container(
            GATEWAY_CONTAINER,
            image=gateway_image,
            essential=True,
            cpu=gateway_cpu_units,
            memory_limit_mib=gateway_memory_mib,
            user=gateway_user,
            readonly_root_filesystem=True,
            environment=dict(gateway_environment),
            secrets={k: ecs.Secret.from_secrets_manager(v) for k, v in (gateway_secrets or {}).items()},
            port_mappings=[ecs.PortMapping(container_port=gateway_port, protocol=ecs.Protocol.TCP)],
            health_check=ecs.HealthCheck(
                command=list(gateway_healthcheck_command),
                interval=Duration.seconds(15),
                timeout=Duration.seconds(5),
                retries=3,
                start_period=Duration.seconds(30),
            ),
            stop_timeout=stop_timeout,
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix=GATEWAY_CONTAINER, log_group=self.log_groups[GATEWAY_CONTAINER],
                mode=ecs.AwsLogDriverMode.NON_BLOCKING, max_buffer_size=Size.mebibytes(25),
            ),  # fmt: skip
        )
        self.gateway.add_ulimits(ecs.Ulimit(name=ecs.UlimitName.NOFILE, soft_limit=65_536, hard_limit=65_536))
        self.gateway.add_container_dependencies(
            ecs.ContainerDependency(container=self.vllm, condition=ecs.ContainerDependencyCondition.HEALTHY)
        )

        Validations.of(self.execution_role).acknowledge(
            Acknowledgment(
                id="AwsSolutions::AwsSolutions-IAM5[Resource::*]",
                reason="ecr:GetAuthorizationToken has no resource-level permissions (AWS documents '*'); image "
                "pulls themselves are limited to the named repositories.",
            )
        )
        Validations.of(self.task_definition).acknowledge(
            Acknowledgment(
                id="AwsSolutions::AwsSolutions-ECS2",
                reason="The plain environment holds only non-secret settings (model name, ports, timeouts); "
                "HF_TOKEN and the API keys are ECS secrets from Secrets Manager.",
            )
        )

    def _vllm_linux_parameters(self, shm_mib: int) -> ecs.LinuxParameters:
        return ecs.LinuxParameters(self, "VllmLinuxParameters", shared_memory_size=shm_mib, init_process_enabled=True)

