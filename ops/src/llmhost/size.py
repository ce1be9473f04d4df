"""`llmhost size`: the sizing module's report as tables."""

from __future__ import annotations

from dataclasses import dataclass

from llm_hosting_constructs.sizing import (
    DEFAULT_GPU_MEMORY_UTILIZATION,
    DEFAULT_MAX_NUM_SEQS,
    Dtype,
    KvCacheDtype,
    ModelArchitecture,
    Quantization,
    SizingReport,
    families,
    get_instance,
    plan,
    smallest_fitting,
)
from rich.console import Console
from rich.table import Table

GIB = 1024**3


@dataclass(frozen=True)
class SizeRequest:
    """What to size: a model, an instance and vLLM's memory settings."""

    model: ModelArchitecture
    instance_type: str
    dtype: Dtype = "auto"
    quantization: Quantization | None = None
    kv_cache_dtype: KvCacheDtype = "auto"
    max_model_len: int | None = None
    tensor_parallel_size: int | None = None
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION
    max_num_seqs: int = DEFAULT_MAX_NUM_SEQS

    def report(self) -> SizingReport:
        return plan(
            self.model,
            get_instance(self.instance_type),
            dtype=self.dtype,
            quantization=self.quantization,
            kv_cache_dtype=self.kv_cache_dtype,
            max_model_len=self.max_model_len,
            tensor_parallel_size=self.tensor_parallel_size,
            gpu_memory_utilization=self.gpu_memory_utilization,
            max_num_seqs=self.max_num_seqs,
        )

    def smallest_per_family(self, *, sagemaker: bool, max_model_len: int) -> list[tuple[str, SizingReport | None]]:
        return [
            (
                family,
                smallest_fitting(
                    self.model,
                    family,
                    dtype=self.dtype,
                    quantization=self.quantization,
                    kv_cache_dtype=self.kv_cache_dtype,
                    max_model_len=max_model_len,
                    gpu_memory_utilization=self.gpu_memory_utilization,
                    max_num_seqs=self.max_num_seqs,
                ),
            )
            for family in families(sagemaker=sagemaker)
        ]


def _gib(n: int) -> str:
    return f"{n / GIB:,.1f} GiB"


def report_table(r: SizingReport) -> Table:
    instance = get_instance(r.instance_type)
    precision = r.quantization or ("bfloat16" if r.dtype == "auto" else r.dtype)
    # The KV cache is kept in the activation dtype unless an fp8 KV cache is asked for.
    kv_dtype = "fp8" if r.kv_cache_dtype.startswith("fp8") else ("bfloat16" if r.dtype == "auto" else r.dtype)
    t = Table(title=f"{r.model} on {r.instance_type}", show_header=False, title_justify="left")
    t.add_column("figure", style="bold")
    t.add_column("value")
    t.add_row(
        "GPUs",
        f"{r.gpus_on_instance} × {r.gpu_model}, {_gib(r.gpu_memory_bytes)} each "
        f"({instance.gpu.memory_gib} GiB advertised)",
    )
    t.add_row("tensor parallel", str(r.tensor_parallel_size))
    t.add_row(
        "GPU memory budget",
        f"{_gib(r.budget_bytes_per_gpu)} per GPU (gpu_memory_utilization {r.gpu_memory_utilization:.2f})",
    )
    t.add_row("weights", f"{_gib(r.weight_bytes)} in {precision} ({_gib(r.weight_bytes_per_gpu)} per GPU)")
    t.add_row("runtime overhead", f"{_gib(r.overhead_bytes_per_gpu)} per GPU (activations, CUDA graphs, context)")
    t.add_row(
        "KV cache per token",
        f"{r.kv_cache_bytes_per_token:,} bytes in {kv_dtype} ({r.kv_cache_bytes_per_token_per_gpu:,} per GPU)",
    )
    kv_left = _gib(r.kv_cache_bytes_per_gpu) if r.kv_cache_bytes_per_gpu > 0 else "none"
    t.add_row("KV cache available", f"{kv_left} per GPU = {r.kv_tokens:,} tokens")
    t.add_row(
        f"concurrent sequences at {r.max_model_len:,} tokens",
        f"{r.concurrent_sequences} (cache holds {r.max_concurrency:.2f}; max_num_seqs {r.max_num_seqs})",
    )
    if r.ecs_cpu_units is not None:
        t.add_row("registers with ECS", f"{r.ecs_cpu_units:,} CPU units, ~{r.ecs_memory_mib:,} MiB")
    t.add_row("fits", "[green]yes[/green]" if r.fits else "[red]NO[/red]: " + " | ".join(r.problems))
    return t


def smallest_table(rows: list[tuple[str, SizingReport | None]], max_model_len: int, *, capped: bool = False) -> Table:
    """``capped``: the rows were sized at the model's context, shorter than the length asked for."""
    where = ", the model's context" if capped else ""
    title = f"Smallest that fits, per family ({max_model_len:,}-token sequences{where})"
    t = Table(title=title, title_justify="left")
    t.add_column("family")
    t.add_column("instance")
    t.add_column("TP", justify="right")
    t.add_column("KV tokens", justify="right")
    t.add_column("concurrent seqs", justify="right")
    for family, r in rows:
        if r is None:
            t.add_row(family, "[dim]none fits[/dim]", "", "", "")
        else:
            t.add_row(
                family, r.instance_type, str(r.tensor_parallel_size), f"{r.kv_tokens:,}", str(r.concurrent_sequences)
            )
    return t


def render(console: Console, request: SizeRequest) -> SizingReport:
    """Print the report and the per-family table; return the report (the caller sets the exit code)."""
    r = request.report()
    console.print(report_table(r))
    # At the report's max_model_len, within the model's context (a too-long one is its own problem).
    length = min(r.max_model_len, request.model.max_context or r.max_model_len)
    rows = request.smallest_per_family(sagemaker=get_instance(request.instance_type).is_sagemaker, max_model_len=length)
    capped = length < r.max_model_len
    console.print(smallest_table(rows, length, capped=capped))
    if capped:
        console.print(
            f"[yellow]note:[/yellow] the table is sized at the model's context of {length:,} tokens: "
            f"{r.max_model_len:,} tokens fit on no instance, the model does not support them"
        )
    instance = get_instance(request.instance_type)
    if instance.is_sagemaker:
        console.print(quota_note(instance.name))
    return r


def quota_note(instance_type: str) -> str:
    """SageMaker updates start the new fleet beside the old one (docs/sagemaker.md: quota for updates)."""
    return (
        f"Quota: every endpoint update (blue/green: new model, image or count) runs a second fleet until the "
        f"new one is in service, so the account's '{instance_type} for endpoint usage' quota must allow twice "
        f"the instances in service (2 x max_capacity to be safe); an instance-type change needs the new type's "
        f"quota for instance_count while the old endpoint still runs."
    )
