"""Does a model fit an instance as configured, how much KV cache is left, and what would fit instead."""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import floor

from .catalog import InstanceType, ModelArchitecture, SizingError, families, get_instance, get_model, instances
from .ecs import ECS_RESERVED_MEMORY_MIB, instance_registered_resources, task_resources_problem
from .memory import (
    GIB,
    MIB,
    RUNTIME_OVERHEAD_GIB,
    Dtype,
    KvCacheDtype,
    Quantization,
    kv_cache_bytes_per_token,
    kv_tokens,
    weight_bytes,
)

DEFAULT_GPU_MEMORY_UTILIZATION = 0.9  # vLLM's default
DEFAULT_MAX_NUM_SEQS = 256  # vLLM's default on GPUs under 70 GiB


@dataclass(frozen=True)
class SizingReport:
    """Every figure of one model-on-instance plan; ``problems`` is empty when it works."""

    model: str
    instance_type: str
    gpu_model: str
    gpus_on_instance: int
    tensor_parallel_size: int
    dtype: str
    quantization: str | None
    kv_cache_dtype: str
    gpu_memory_utilization: float
    max_model_len: int
    max_num_seqs: int
    gpu_memory_bytes: int
    """Per GPU, as torch.cuda.mem_get_info() reports it (what vLLM budgets from)."""
    budget_bytes_per_gpu: int
    """gpu_memory_bytes × gpu_memory_utilization: what vLLM lets itself use."""
    weight_bytes: int
    weight_bytes_per_gpu: int
    overhead_bytes_per_gpu: int
    kv_cache_bytes_per_token: int
    """Whole model, all KV heads: 2 × layers × KV heads × head_dim × bytes."""
    kv_cache_bytes_per_token_per_gpu: int
    kv_cache_bytes_per_gpu: int
    """Budget left for KV cache on each GPU; negative when the weights alone do not fit."""
    kv_tokens: int
    """Tokens of KV cache the deployment holds (all sequences together)."""
    max_concurrency: float
    """kv_tokens / max_model_len: how many full-length sequences the cache holds at once."""
    concurrent_sequences: int
    """Full-length sequences served at once: the KV cache's limit, capped at max_num_seqs."""
    ecs_cpu_units: int | None
    """CPU units the instance registers with ECS; None for SageMaker types."""
    ecs_memory_mib: int | None
    task_cpu_units: int | None
    task_memory_mib: int | None
    problems: tuple[str, ...]
    """One line each: why this cannot work and what would."""
    problem_fields: tuple[str, ...]
    """For each problem, the setting to change: ``tensor_parallel_size``, ``max_model_len``,
    ``instance_type`` (the model does not fit its GPUs) or ``task`` (CPU/memory reservation)."""
    alternatives: tuple[tuple[str, int], ...]
    """(instance type, tensor-parallel size): the smallest of each family that fits, when this does not."""

    @property
    def fits(self) -> bool:
        return not self.problems


def valid_tensor_parallel_sizes(model: ModelArchitecture, gpus: int) -> list[int]:
    """TP sizes up to ``gpus`` that vLLM accepts for this model, ascending.

    vLLM needs the attention heads split evenly, and the KV heads either split evenly
    (TP ≤ KV heads) or replicated evenly (TP a multiple of the KV heads).
    """
    return [tp for tp in range(1, gpus + 1) if not _tensor_parallel_problem(model, tp)]


def _tensor_parallel_problem(model: ModelArchitecture, tp: int) -> str | None:
    if tp < 1:
        return "tensor_parallel_size must be at least 1"
    if model.attention_heads % tp:
        return f"tensor_parallel_size {tp} does not divide the {model.attention_heads} attention heads of {model.name}"
    if tp <= model.kv_heads and model.kv_heads % tp:
        return f"tensor_parallel_size {tp} does not divide the {model.kv_heads} KV heads of {model.name}"
    if tp > model.kv_heads and tp % model.kv_heads:
        return (
            f"tensor_parallel_size {tp} is not a multiple of the {model.kv_heads} KV heads of {model.name} "
            "(needed to replicate them)"
        )
    return None


def _default_tensor_parallel_size(model: ModelArchitecture, instance: InstanceType) -> int:
    # One vLLM task per GPU host: use as many of its GPUs as the model's heads allow.
    valid = valid_tensor_parallel_sizes(model, instance.gpu_count)
    return valid[-1] if valid else 1


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def _precision(dtype: str, quantization: str | None) -> str:
    return quantization if quantization else ("bfloat16" if dtype == "auto" else dtype)


def _compute(
    model: ModelArchitecture,
    instance: InstanceType,
    *,
    dtype: Dtype,
    quantization: Quantization | None,
    kv_cache_dtype: KvCacheDtype,
    max_model_len: int | None,
    tensor_parallel_size: int | None,
    gpu_memory_utilization: float,
    max_num_seqs: int,
    task_cpu_units: int | None,
    task_memory_mib: int | None,
    overhead_gib_per_gpu: float,
    reserved_memory_mib: int,
) -> tuple[SizingReport, frozenset[int]]:
    """The report, and the indexes of its problems that a larger instance would solve."""
    if not 0 < gpu_memory_utilization <= 1:
        raise SizingError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
    if max_num_seqs < 1:
        raise SizingError(f"max_num_seqs must be at least 1, got {max_num_seqs}")
    if max_model_len is None:
        if model.max_context is None:
            raise SizingError(f"{model.name}: set max_model_len (the custom architecture gives no max_context)")
        max_model_len = model.max_context
    if max_model_len < 1:
        raise SizingError(f"max_model_len must be at least 1, got {max_model_len}")
    tp = _default_tensor_parallel_size(model, instance) if tensor_parallel_size is None else tensor_parallel_size
    problems: list[str] = []
    fields: list[str] = []
    solved_by_larger: set[int] = set()

    def problem(setting: str, text: str, *, larger_instance_helps: bool = False) -> None:
        if larger_instance_helps:
            solved_by_larger.add(len(problems))
        problems.append(text)
        fields.append(setting)

    # Tensor parallelism first: the memory figures below assume the TP size is usable.
    if tp > instance.gpu_count:
        bigger = [i.name for i in instances(instance.family) if i.gpu_count >= tp]
        hint = (
            f"{instance.family} sizes with {tp} or more: {', '.join(bigger)}"
            if bigger
            else f"no {instance.family} size has {tp}"
        )
        problem(
            "tensor_parallel_size",
            f"tensor_parallel_size {tp} exceeds the {instance.gpu_count} GPU(s) of {instance.name}; "
            f"use at most {instance.gpu_count} or a larger instance ({hint})",
            larger_instance_helps=True,
        )
    tp_problem = _tensor_parallel_problem(model, tp)
    if tp_problem:
        valid = valid_tensor_parallel_sizes(model, max(instance.gpu_count, 8))
        problem("tensor_parallel_size", f"{tp_problem}; valid sizes: {', '.join(map(str, valid))}")
    tp = max(tp, 1)

    if model.max_context is not None and max_model_len > model.max_context:
        problem(
            "max_model_len",
            f"max_model_len {max_model_len:,} exceeds the {model.max_context:,}-token context of {model.name}; "
            f"use at most {model.max_context:,}",
        )

    gpu_bytes = instance.gpu.cuda_total_mib * MIB
    budget = floor(gpu_bytes * gpu_memory_utilization)
    weights = weight_bytes(model, dtype=dtype, quantization=quantization)
    weights_per_gpu = -(-weights // tp)  # ceiling: the largest shard decides
    overhead = round(overhead_gib_per_gpu * GIB)
    kv_per_token = kv_cache_bytes_per_token(model, dtype=dtype, kv_cache_dtype=kv_cache_dtype)
    kv_per_token_gpu = kv_cache_bytes_per_token(
        model, dtype=dtype, kv_cache_dtype=kv_cache_dtype, tensor_parallel_size=tp
    )
    kv_available = budget - weights_per_gpu - overhead
    tokens = kv_tokens(kv_available, kv_per_token_gpu)
    max_concurrency = tokens / max_model_len
    concurrent = min(floor(max_concurrency), max_num_seqs)

    precision = _precision(dtype, quantization)
    usable = (
        f"each {instance.gpu.model} GPU of {instance.name} gives {_gib(budget)} "
        f"({_gib(gpu_bytes)} × gpu_memory_utilization {gpu_memory_utilization:.2f})"
    )
    if kv_available <= 0:
        problem(
            "instance_type",
            f"{model.name} in {precision} does not fit {instance.name} at tensor-parallel {tp}: "
            f"{_gib(weights_per_gpu)} of weights + {_gib(overhead)} runtime overhead per GPU, but {usable}",
            larger_instance_helps=True,
        )
    elif tokens < max_model_len:
        problem(
            "max_model_len",
            f"{model.name} on {instance.name} has KV cache for {tokens:,} tokens ({_gib(kv_available)} per GPU "
            f"at {kv_per_token_gpu:,} bytes/token), less than one sequence at max_model_len {max_model_len:,}; "
            f"lower max_model_len to at most {tokens:,}, use kv_cache_dtype fp8, raise gpu_memory_utilization, "
            "or use a larger instance",
            larger_instance_helps=True,
        )

    ecs_cpu: int | None = None
    ecs_mem: int | None = None
    if not instance.is_sagemaker:
        ecs_cpu, ecs_mem = instance_registered_resources(instance, reserved_memory_mib=reserved_memory_mib)
        task_problem = task_resources_problem(
            instance, cpu_units=task_cpu_units, memory_mib=task_memory_mib, reserved_memory_mib=reserved_memory_mib
        )
        if task_problem:
            problem("task", task_problem)

    return SizingReport(
        model=model.name,
        instance_type=instance.name,
        gpu_model=instance.gpu.model,
        gpus_on_instance=instance.gpu_count,
        tensor_parallel_size=tp,
        dtype=dtype,
        quantization=quantization,
        kv_cache_dtype=kv_cache_dtype,
        gpu_memory_utilization=gpu_memory_utilization,
        max_model_len=max_model_len,
        max_num_seqs=max_num_seqs,
        gpu_memory_bytes=gpu_bytes,
        budget_bytes_per_gpu=budget,
        weight_bytes=weights,
        weight_bytes_per_gpu=weights_per_gpu,
        overhead_bytes_per_gpu=overhead,
        kv_cache_bytes_per_token=kv_per_token,
        kv_cache_bytes_per_token_per_gpu=kv_per_token_gpu,
        kv_cache_bytes_per_gpu=kv_available,
        kv_tokens=tokens,
        max_concurrency=max_concurrency,
        concurrent_sequences=concurrent,
        ecs_cpu_units=ecs_cpu,
        ecs_memory_mib=ecs_mem,
        task_cpu_units=task_cpu_units,
        task_memory_mib=task_memory_mib,
        problems=tuple(problems),
        problem_fields=tuple(fields),
        alternatives=(),
    ), frozenset(solved_by_larger)


def plan(
    model: ModelArchitecture | str,
    instance: InstanceType | str,
    *,
    dtype: Dtype = "auto",
    quantization: Quantization | None = None,
    kv_cache_dtype: KvCacheDtype = "auto",
    max_model_len: int | None = None,
    tensor_parallel_size: int | None = None,
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
    max_num_seqs: int = DEFAULT_MAX_NUM_SEQS,
    task_cpu_units: int | None = None,
    task_memory_mib: int | None = None,
    overhead_gib_per_gpu: float = RUNTIME_OVERHEAD_GIB,
    reserved_memory_mib: int = ECS_RESERVED_MEMORY_MIB,
) -> SizingReport:
    """Size ``model`` on ``instance`` as vLLM would configure it.

    ``max_model_len`` defaults to the model's context (as vLLM does);
    ``tensor_parallel_size`` to the most GPUs of the instance that the model's heads
    allow. ``task_cpu_units``/``task_memory_mib``, when given, are checked against what
    the instance registers with ECS. When the model does not fit, ``alternatives`` names
    the smallest instance of each family (EC2 or SageMaker, like ``instance``) that does,
    and the problem line repeats them.
    """
    arch = get_model(model) if isinstance(model, str) else model
    inst = get_instance(instance) if isinstance(instance, str) else instance
    settings = dict(
        dtype=dtype,
        quantization=quantization,
        kv_cache_dtype=kv_cache_dtype,
        max_model_len=max_model_len,
        gpu_memory_utilization=gpu_memory_utilization,
        max_num_seqs=max_num_seqs,
        overhead_gib_per_gpu=overhead_gib_per_gpu,
    )
    report, solved_by_larger = _compute(
        arch,
        inst,
        tensor_parallel_size=tensor_parallel_size,
        task_cpu_units=task_cpu_units,
        task_memory_mib=task_memory_mib,
        reserved_memory_mib=reserved_memory_mib,
        **settings,  # type: ignore[arg-type]
    )
    if not solved_by_larger:
        return report
    # Look for alternatives at a context the model supports, so that a too-long
    # max_model_len (its own problem line) does not also hide every instance.
    if arch.max_context is not None:
        settings["max_model_len"] = min(report.max_model_len, arch.max_context)
    alternatives = tuple(
        (r.instance_type, r.tensor_parallel_size)
        for family in families(sagemaker=inst.is_sagemaker)
        if (r := smallest_fitting(arch, family, **settings)) is not None  # type: ignore[arg-type]
    )
    fitting = (
        "smallest that fit: " + ", ".join(f"{name} (TP {tp})" for name, tp in alternatives)
        if alternatives
        else "no catalog instance fits: quantize (awq, fp8), use kv_cache_dtype fp8, lower max_model_len "
        "or pick a smaller model"
    )
    last = max(solved_by_larger)  # say it once, after the last problem a larger instance solves
    problems = tuple(f"{p}; {fitting}" if i == last else p for i, p in enumerate(report.problems))
    return replace(report, problems=problems, alternatives=alternatives)


def smallest_fitting(
    model: ModelArchitecture | str,
    family: str,
    *,
    dtype: Dtype = "auto",
    quantization: Quantization | None = None,
    kv_cache_dtype: KvCacheDtype = "auto",
    max_model_len: int | None = None,
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
    max_num_seqs: int = DEFAULT_MAX_NUM_SEQS,
    overhead_gib_per_gpu: float = RUNTIME_OVERHEAD_GIB,
) -> SizingReport | None:
    """The report for the smallest instance of ``family`` that fits (at its largest valid TP), or None."""
    arch = get_model(model) if isinstance(model, str) else model
    candidates = instances(family)
    if not candidates:
        raise SizingError(
            f"unknown instance family {family!r}; families: {', '.join(families() + families(sagemaker=True))}"
        )
    for inst in candidates:
        if not valid_tensor_parallel_sizes(arch, inst.gpu_count):
            continue
        report, _ = _compute(
            arch,
            inst,
            dtype=dtype,
            quantization=quantization,
            kv_cache_dtype=kv_cache_dtype,
            max_model_len=max_model_len,
            tensor_parallel_size=None,
            gpu_memory_utilization=gpu_memory_utilization,
            max_num_seqs=max_num_seqs,
            task_cpu_units=None,
            task_memory_mib=None,
            overhead_gib_per_gpu=overhead_gib_per_gpu,
            reserved_memory_mib=ECS_RESERVED_MEMORY_MIB,
        )
        if report.fits:
            return report
    return None


def check(report: SizingReport) -> None:
    """Raise :class:`SizingError` with one line naming every problem of ``report``; return if it fits."""
    if report.problems:
        raise SizingError(" | ".join(report.problems))
