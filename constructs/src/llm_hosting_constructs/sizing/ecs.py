"""What a GPU instance registers with ECS, so synth can reject a task that could never be placed.

ECS places a task only on a container instance whose *registered* CPU and memory cover
the task's reservation. Those figures are known only once an instance has booted, so
synth uses a documented approximation:

- CPU: ``vCPUs × 1024`` CPU units. The ECS agent registers 1,024 units per vCPU
  (ECS developer guide, "Amazon ECS task definition parameters", *cpu*).
- Memory: ``installed MiB × 0.96 − ECS_RESERVED_MEMORY``. The agent registers the memory
  the kernel reports (``MemTotal``), which is below the advertised size: the ECS
  developer guide's "Reserving Amazon ECS Linux container instance memory" gives an
  m4.large, 8 GiB installed, registering 7,985 MiB (97.5 %). We take 96 % to leave room
  for the larger kernel reservations (crash kernel, page tables) of big GPU hosts, and
  subtract ``ECS_RESERVED_MEMORY``, which the agent removes from what it registers.
  A task sized within this estimate can be placed; one a little above it may still fit
  on a real instance, but synth errs on the side of a task that starts.
"""

from __future__ import annotations

from math import floor
from typing import Final

from .catalog import InstanceType, SizingError, get_instance

CPU_UNITS_PER_VCPU: Final = 1024
REGISTERED_MEMORY_FRACTION: Final = 0.96
ECS_RESERVED_MEMORY_MIB: Final = 256
"""Memory kept back for the ECS agent, Docker and the CloudWatch agent.

The serving stack writes ``ECS_RESERVED_MEMORY=<this>`` into ``/etc/ecs/ecs.config``, so
the estimate here and what the agent registers subtract the same figure.
"""


def instance_registered_resources(
    instance_type: str | InstanceType, *, reserved_memory_mib: int = ECS_RESERVED_MEMORY_MIB
) -> tuple[int, int]:
    """``(cpu_units, memory_mib)`` that an EC2 instance of this type (a catalog name, or one described
    with ``InstanceType.describe``) registers with ECS (see module doc)."""
    instance = get_instance(instance_type) if isinstance(instance_type, str) else instance_type
    instance_type = instance.name
    if instance.is_sagemaker:
        raise SizingError(
            f"{instance_type} is a SageMaker instance type; ECS runs on EC2 types such as {instance_type[3:]}"
        )
    cpu_units = instance.vcpus * CPU_UNITS_PER_VCPU
    memory_mib = floor(instance.memory_gib * 1024 * REGISTERED_MEMORY_FRACTION) - reserved_memory_mib
    return cpu_units, memory_mib


def check_task_resources(
    instance_type: str,
    *,
    cpu_units: int,
    memory_mib: int,
    reserved_memory_mib: int = ECS_RESERVED_MEMORY_MIB,
) -> None:
    """Raise :class:`SizingError` when a task reserves more CPU or memory than the instance registers."""
    problem = task_resources_problem(
        instance_type, cpu_units=cpu_units, memory_mib=memory_mib, reserved_memory_mib=reserved_memory_mib
    )
    if problem:
        raise SizingError(problem)


def task_resources_problem(
    instance_type: str | InstanceType,
    *,
    cpu_units: int | None,
    memory_mib: int | None,
    reserved_memory_mib: int = ECS_RESERVED_MEMORY_MIB,
) -> str | None:
    """The one-line reason a task does not fit the instance's registered resources, or None."""
    reg_cpu, reg_mem = instance_registered_resources(instance_type, reserved_memory_mib=reserved_memory_mib)
    instance_type = instance_type if isinstance(instance_type, str) else instance_type.name
    over = []
    if cpu_units is not None and cpu_units > reg_cpu:
        over.append(f"CPU {cpu_units} units > {reg_cpu} registered")
    if memory_mib is not None and memory_mib > reg_mem:
        over.append(f"memory {memory_mib} MiB > ~{reg_mem} MiB registered")
    if not over:
        return None
    return (
        f"task asks for more than a {instance_type} registers with ECS ({'; '.join(over)}); "
        f"reserve at most {reg_cpu} CPU units and {reg_mem} MiB, or choose a larger size"
    )
