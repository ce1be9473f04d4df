"""The SageMaker serving container: which image, and the environment that configures it.

Pure Python (no aws-cdk-lib): the config schema validates with it and the stacks build props
with it. The image URI is resolved offline at synth by the SageMaker Python SDK 3
(``sagemaker.core.image_uris``, from the ``sagemaker-core`` distribution), imported lazily:
it costs about 3 s, paid only by an app that deploys the SageMaker backend.

Three containers, one engine each:

- ``tgi``: Hugging Face TGI DLC (``huggingface-llm``). The default the product brief asks for,
  but TGI is in maintenance mode since December 2025: 3.3.6 is its last DLC.
- ``vllm``: Hugging Face vLLM DLC (``huggingface-vllm``), maintained; ``SM_VLLM_*`` variables
  become vLLM flags (``SM_VLLM_MAX_MODEL_LEN=8192`` → ``--max-model-len 8192``).
- ``lmi``: AWS Large Model Inference (``djl-lmi``, vLLM inside), maintained; ``OPTION_*``
  variables configure it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Literal

Container = Literal["tgi", "vllm", "lmi"]

SDK_FRAMEWORK: dict[str, str] = {"tgi": "huggingface-llm", "vllm": "huggingface-vllm", "lmi": "djl-lmi"}
"""Container choice → the SDK's framework name for ``image_uris.retrieve``."""

DEFAULT_VERSIONS: dict[str, str] = {"tgi": "3.3.6", "vllm": "0.29.0", "lmi": "0.38.0"}
"""Pinned image versions (each listed by sagemaker-core 2.27.0). 3.3.6 is the last TGI DLC."""

def volume_kms_key_problem(instance_name: str, has_local_nvme: bool) -> str | None:
    """Why a KMS key for the ML storage volume cannot be given for this instance type, or None: types with
    local NVMe instance storage encrypt it in hardware and CreateEndpointConfig rejects a KmsKeyId."""
    if not has_local_nvme:
        return None
    return (
        f"{instance_name} has local NVMe storage (encrypted in hardware); "
        "CreateEndpointConfig rejects a KMS key for its storage volume"
    )


MODEL_DIR = "/opt/ml/model"
"""Where SageMaker puts the weights given as ``ModelDataSource`` (uncompressed S3 prefix)."""

_ECR_URI = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?/(?P<repo>[^:@]+)[:@].+$")


@dataclass(frozen=True)
class EcrImage:
    uri: str
    account: str
    region: str
    repository: str


@cache
def image_uri(container: Container, *, version: str, region: str, instance_type: str) -> str:
    """The DLC image URI of ``container`` at ``version`` in ``region``; offline, no AWS call.

    Raises ``ValueError`` with one line when the SDK does not know the container, version or
    region (its message lists the versions it knows).
    """
    if container not in SDK_FRAMEWORK:
        raise ValueError(f"unknown container {container!r}; one of: {', '.join(SDK_FRAMEWORK)}")
    from sagemaker.core import image_uris  # lazy: ~3 s of imports, only for the SageMaker backend

    try:
        return image_uris.retrieve(
            SDK_FRAMEWORK[container],
            region=region,
            version=version,
            image_scope="inference",
            instance_type=instance_type,
        )
    except ValueError as exc:
        first = str(exc).split(". You may need")[0]
        raise ValueError(f"{container} image {version} in {region}: {first}") from None


def parse_image_uri(uri: str) -> EcrImage:
    """Account, region and repository of an ECR image URI (for the execution role's ECR scope)."""
    match = _ECR_URI.match(uri)
    if not match:
        raise ValueError(f"not an ECR image URI: {uri!r}")
    return EcrImage(uri=uri, account=match["account"], region=match["region"], repository=match["repo"])


# Each container's variable for each setting (None: the container has no such setting).
# TGI (huggingface-llm) documents its variables in the TGI launcher; the vLLM DLC turns
# SM_VLLM_<FLAG> into --<flag>; LMI reads OPTION_<NAME> (and HF_MODEL_ID).
_VARIABLES: dict[str, dict[str, str | None]] = {
    "tgi": {
        "model": "HF_MODEL_ID",
        "revision": "HF_MODEL_REVISION",
        "served_name": None,
        "num_gpus": "SM_NUM_GPUS",
        "max_model_len": "MAX_TOTAL_TOKENS",
        "max_input_tokens": "MAX_INPUT_TOKENS",
        "max_batch_prefill_tokens": "MAX_BATCH_PREFILL_TOKENS",
        "max_concurrent_requests": "MAX_CONCURRENT_REQUESTS",
        "dtype": "DTYPE",
        "kv_cache_dtype": None,
        "quantization": "QUANTIZE",
    },
    "vllm": {
        "model": "SM_VLLM_MODEL",
        "revision": "SM_VLLM_REVISION",
        "served_name": "SM_VLLM_SERVED_MODEL_NAME",
        "num_gpus": "SM_VLLM_TENSOR_PARALLEL_SIZE",
        "max_model_len": "SM_VLLM_MAX_MODEL_LEN",
        "max_input_tokens": None,
        "max_batch_prefill_tokens": "SM_VLLM_MAX_NUM_BATCHED_TOKENS",
        "max_concurrent_requests": "SM_VLLM_MAX_NUM_SEQS",
        "dtype": "SM_VLLM_DTYPE",
        "kv_cache_dtype": "SM_VLLM_KV_CACHE_DTYPE",
        "quantization": "SM_VLLM_QUANTIZATION",
    },
    "lmi": {
        "model": "HF_MODEL_ID",
        "revision": "OPTION_REVISION",
        "served_name": None,
        "num_gpus": "OPTION_TENSOR_PARALLEL_DEGREE",
        "max_model_len": "OPTION_MAX_MODEL_LEN",
        "max_input_tokens": None,
        "max_batch_prefill_tokens": "OPTION_MAX_NUM_BATCHED_TOKENS",
        "max_concurrent_requests": "OPTION_MAX_ROLLING_BATCH_SIZE",
        "dtype": "OPTION_DTYPE",
        "kv_cache_dtype": "OPTION_KV_CACHE_DTYPE",
        "quantization": "OPTION_QUANTIZE",
    },
}
_FIXED: dict[str, dict[str, str]] = {"tgi": {"MESSAGES_API_ENABLED": "true"}, "vllm": {}, "lmi": {}}
"""Variables every deployment of the container gets: TGI's OpenAI-style Messages API."""


DEFAULT_MAX_CONCURRENT_REQUESTS = 128
"""Requests one instance batches at once (the containers' batch-size setting)."""


def container_environment(
    container: Container,
    *,
    model: str,
    served_name: str,
    max_model_len: int,
    revision: str | None = None,
    num_gpus: int = 1,
    max_input_tokens: int | None = None,
    max_batch_prefill_tokens: int | None = None,
    max_concurrent_requests: int = DEFAULT_MAX_CONCURRENT_REQUESTS,
    dtype: str | None = None,
    quantization: str | None = None,
    kv_cache_dtype: str = "auto",
) -> dict[str, str]:
    """The container environment for ``container``, from the model and its limits.

    Defaults: no ``revision`` (give the commit of a Hub model), one GPU, ``max_input_tokens`` three
    quarters of ``max_model_len`` (a quarter stays for the completion), ``max_batch_prefill_tokens``
    ``max_model_len`` (one whole prompt per prefill batch, as TGI requires), 128 concurrent requests,
    ``dtype`` the container's own default (the checkpoint's).

    ``model`` is a Hugging Face id (weights from the Hub) or :data:`MODEL_DIR` (weights
    pre-staged in S3); ``revision`` is only meaningful with a Hub id. No secret goes in here:
    whatever is in a SageMaker model's environment is readable by anyone allowed
    ``sagemaker:DescribeModel``.
    """
    if max_input_tokens is None:
        max_input_tokens = max_model_len * 3 // 4
    if max_batch_prefill_tokens is None:
        max_batch_prefill_tokens = max_model_len
    if container not in _VARIABLES:
        raise ValueError(f"unknown container {container!r}; one of: {', '.join(SDK_FRAMEWORK)}")
    if not 0 < max_input_tokens < max_model_len:
        raise ValueError(f"max_input_tokens ({max_input_tokens}) must be in 1..max_model_len-1 ({max_model_len - 1})")
    if num_gpus < 1 or max_batch_prefill_tokens < 1 or max_concurrent_requests < 1:
        raise ValueError("num_gpus, max_batch_prefill_tokens and max_concurrent_requests must be at least 1")
    if container == "tgi" and max_batch_prefill_tokens < max_input_tokens:
        raise ValueError(
            f"TGI needs max_batch_prefill_tokens ({max_batch_prefill_tokens}) >= max_input_tokens ({max_input_tokens})"
        )
    settings: dict[str, object] = {
        "model": model,
        "revision": revision if model != MODEL_DIR else None,
        "served_name": served_name,
        "num_gpus": num_gpus,
        "max_model_len": max_model_len,
        "max_input_tokens": max_input_tokens,
        "max_batch_prefill_tokens": max_batch_prefill_tokens,
        "max_concurrent_requests": max_concurrent_requests,
        "dtype": dtype,
        "kv_cache_dtype": kv_cache_dtype,
        "quantization": quantization,
    }
    names = _VARIABLES[container]
    env = {names[k]: str(v) for k, v in settings.items() if names[k] and v is not None}
    return {**env, **_FIXED[container]}
