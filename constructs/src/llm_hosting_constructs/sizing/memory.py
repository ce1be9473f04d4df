"""GPU memory arithmetic of a vLLM deployment: weights, KV cache, what is left.

vLLM's accounting, which this follows: at start-up it takes ``total GPU memory ×
gpu_memory_utilization`` as its budget per GPU, loads its share of the weights,
profiles one forward pass at the chunked-prefill token budget (activation peak) plus
non-torch memory (CUDA context, cuBLAS workspace, NCCL buffers), and turns what is left
into KV-cache blocks of 16 tokens. Tensor parallelism splits the weights and the KV
heads across GPUs; with more GPUs than KV heads each GPU keeps one (replicated) KV head.
"""

from __future__ import annotations

from math import floor
from typing import Final, Literal, get_args

from .catalog import ModelArchitecture

GIB: Final = 1024**3
MIB: Final = 1024**2

Dtype = Literal["auto", "bfloat16", "float16", "half", "float32", "float"]
Quantization = Literal["fp8", "int8", "awq", "awq_marlin", "gptq", "gptq_marlin"]
KvCacheDtype = Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"]

DTYPES: Final[tuple[str, ...]] = get_args(Dtype)
QUANTIZATIONS: Final[tuple[str, ...]] = get_args(Quantization)
KV_CACHE_DTYPES: Final[tuple[str, ...]] = get_args(KvCacheDtype)

# vLLM's "auto" dtype is the checkpoint's 16-bit type (bf16 for every catalog model;
# fp32 checkpoints are cast to fp16), so it costs 2 bytes like bfloat16/float16.
DTYPE_BYTES: Final[dict[str, float]] = {
    "auto": 2,
    "bfloat16": 2,
    "float16": 2,
    "half": 2,
    "float32": 4,
    "float": 4,
}

# Bytes per *quantized* parameter (linear layers; embeddings and lm_head keep the dtype).
# fp8 / int8 (W8A8): one byte, plus per-tensor or per-channel scales that are negligible.
# AWQ / GPTQ 4-bit, group size 128 (the usual checkpoints): half a byte for the weight,
# plus per group of 128 weights an fp16 scale (2 bytes) and a packed 4-bit zero point
# (0.5 byte): 0.5 + 2.5 / 128 = 0.5195 bytes per parameter. This reproduces the ~5.4 GiB
# that vLLM reports loading for an AWQ Llama-3.1-8B (6.98 B linear params × 0.5195 +
# 1.05 B embedding params × 2 bytes).
INT4_GROUP_SIZE: Final = 128
QUANTIZED_BYTES: Final[dict[str, float]] = {
    "fp8": 1.0,
    "int8": 1.0,
    "awq": 0.5 + 2.5 / INT4_GROUP_SIZE,
    "awq_marlin": 0.5 + 2.5 / INT4_GROUP_SIZE,
    "gptq": 0.5 + 2.5 / INT4_GROUP_SIZE,
    "gptq_marlin": 0.5 + 2.5 / INT4_GROUP_SIZE,
}

KV_CACHE_BYTES: Final[dict[str, int | None]] = {
    "auto": None,  # same as the model dtype
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
}

KV_BLOCK_TOKENS: Final = 16
"""vLLM's default KV-cache block size on CUDA: capacity is a whole number of blocks."""

RUNTIME_OVERHEAD_GIB: Final = 2.0
"""GPU memory per GPU that is neither weights nor KV cache, taken from the budget.

vLLM's start-up log shows it as the profiled activation peak (about 0.5-1.5 GiB for
7B-70B models at the default chunked-prefill budget of 2,048-8,192 tokens, the larger
for large vocabularies: the sampler's logits), non-torch memory (0.2-0.9 GiB: CUDA
context, cuBLAS workspace, NCCL buffers under tensor parallelism) and CUDA-graph
capture (0.2-1 GiB). Measured on an H100 with PyTorch 2.11: the CUDA context alone takes
527 MiB before any allocation, a first bf16 GEMM adds 68 MiB of cuBLAS workspace. 2 GiB
covers the common cases; a deployment that is tight by less than that should be measured
on the instance.
"""


def weight_bytes(model: ModelArchitecture, *, dtype: Dtype = "auto", quantization: Quantization | None = None) -> int:
    """Bytes of weights of the whole model in GPU memory (before tensor-parallel splitting)."""
    unquantized = DTYPE_BYTES[dtype]
    if quantization is None:
        return round(model.parameters * unquantized)
    # Embeddings and lm_head stay in the unquantized dtype in vLLM's fp8 path and in
    # AWQ/GPTQ checkpoints; only the linear layers are quantized.
    embedding = model.embedding_parameters
    return round((model.parameters - embedding) * QUANTIZED_BYTES[quantization] + embedding * unquantized)


def kv_element_bytes(*, dtype: Dtype = "auto", kv_cache_dtype: KvCacheDtype = "auto") -> int:
    explicit = KV_CACHE_BYTES[kv_cache_dtype]
    return explicit if explicit is not None else int(DTYPE_BYTES[dtype])


def kv_heads_per_gpu(model: ModelArchitecture, tensor_parallel_size: int) -> int:
    """KV heads each GPU stores: an even share, or one replicated head when TP exceeds the KV heads."""
    return max(1, model.kv_heads // tensor_parallel_size)


def kv_cache_bytes_per_token(
    model: ModelArchitecture,
    *,
    dtype: Dtype = "auto",
    kv_cache_dtype: KvCacheDtype = "auto",
    tensor_parallel_size: int | None = None,
) -> int:
    """KV-cache bytes one token occupies: 2 (K and V) × layers × KV heads × head_dim × element bytes.

    With ``tensor_parallel_size`` the figure for one GPU (its share of KV heads);
    without, the whole model's.
    """
    heads = model.kv_heads if tensor_parallel_size is None else kv_heads_per_gpu(model, tensor_parallel_size)
    return 2 * model.layers * heads * model.head_dim * kv_element_bytes(dtype=dtype, kv_cache_dtype=kv_cache_dtype)


def kv_tokens(kv_bytes_available_per_gpu: int, kv_bytes_per_token_per_gpu: int) -> int:
    """Tokens of KV cache that fit: whole blocks of ``KV_BLOCK_TOKENS`` only, none if nothing is left."""
    if kv_bytes_available_per_gpu <= 0:
        return 0
    blocks = floor(kv_bytes_available_per_gpu / (KV_BLOCK_TOKENS * kv_bytes_per_token_per_gpu))
    return blocks * KV_BLOCK_TOKENS
