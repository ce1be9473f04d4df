"""GPU sizing of an LLM deployment, checked at synth and shown by ``llmhost size``.

Pure Python (stdlib + pydantic): the config schema, the stacks and the ops CLI import
it without loading aws-cdk-lib. Typical use::

    from llm_hosting_constructs.sizing import check, get_instance, get_model, plan

    report = plan(get_model("meta-llama/Llama-3.1-8B-Instruct"), get_instance("g5.xlarge"), max_model_len=8192)
    check(report)  # raises SizingError with one line when it cannot work
"""

from .catalog import (
    Gpu,
    InstanceType,
    ModelArchitecture,
    SizingError,
    families,
    get_instance,
    get_model,
    instances,
    model_ids,
    tool_call_parser,
)
from .ecs import ECS_RESERVED_MEMORY_MIB, check_task_resources, instance_registered_resources
from .memory import (
    DTYPES,
    KV_CACHE_DTYPES,
    QUANTIZATIONS,
    RUNTIME_OVERHEAD_GIB,
    Dtype,
    KvCacheDtype,
    Quantization,
    kv_cache_bytes_per_token,
    weight_bytes,
)
from .planner import (
    DEFAULT_GPU_MEMORY_UTILIZATION,
    DEFAULT_MAX_NUM_SEQS,
    SizingReport,
    check,
    plan,
    smallest_fitting,
    valid_tensor_parallel_sizes,
)

__all__ = [
    "DEFAULT_GPU_MEMORY_UTILIZATION",
    "DEFAULT_MAX_NUM_SEQS",
    "DTYPES",
    "ECS_RESERVED_MEMORY_MIB",
    "KV_CACHE_DTYPES",
    "QUANTIZATIONS",
    "RUNTIME_OVERHEAD_GIB",
    "Dtype",
    "Gpu",
    "InstanceType",
    "KvCacheDtype",
    "ModelArchitecture",
    "Quantization",
    "SizingError",
    "SizingReport",
    "check",
    "check_task_resources",
    "families",
    "get_instance",
    "get_model",
    "instance_registered_resources",
    "instances",
    "kv_cache_bytes_per_token",
    "model_ids",
    "plan",
    "smallest_fitting",
    "tool_call_parser",
    "valid_tensor_parallel_sizes",
    "weight_bytes",
]
