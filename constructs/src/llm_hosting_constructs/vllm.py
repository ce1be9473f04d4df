"""How vLLM is started: the ``vllm serve`` arguments and environment, built from typed settings.

Pure Python (no aws-cdk-lib), so tests and the ops CLI can show the exact command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

VLLM_ENTRYPOINT = ("vllm", "serve")
"""The official image's entrypoint, set explicitly so an image change cannot silently change it."""

TOOL_CALL_PARSERS = (
    "hermes", "llama3_json", "llama4_json", "llama4_pythonic", "mistral", "pythonic", "granite", "internlm",
    "jamba", "xlam", "phi4_mini_json", "qwen3_coder", "qwen3_xml", "deepseek_v3", "kimi_k2", "openai",
)  # fmt: skip
"""vLLM tool-call parsers a config may name (each registered in vLLM's ToolParserManager; a test checks it)."""

# Where the model-cache access point is mounted in every container that uses it (HF_HOME).
HF_HOME = "/mnt/hf-cache"


@dataclass(frozen=True)
class VllmSettings:
    """Everything the ``vllm serve`` command line is made of."""

    model_id: str
    revision: str
    served_model_name: str
    max_model_len: int
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_num_seqs: int = 256
    dtype: Literal["auto", "bfloat16", "float16"] = "auto"
    quantization: Literal["none", "fp8", "awq", "gptq"] = "none"
    kv_cache_dtype: Literal["auto", "fp8"] = "auto"
    enable_chunked_prefill: bool = True
    tool_call_parser: str | None = None
    """vLLM's parser for the model's tool-call format; None serves without tool calling."""
    port: int = 8000
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if self.tensor_parallel_size < 1:
            raise ValueError("tensor_parallel_size must be >= 1")
        if not 0 < self.gpu_memory_utilization < 1:
            raise ValueError("gpu_memory_utilization must be between 0 and 1")
        if self.tool_call_parser is not None and self.tool_call_parser not in TOOL_CALL_PARSERS:
            raise ValueError(f"tool_call_parser {self.tool_call_parser!r} is not one of vLLM's: {', '.join(TOOL_CALL_PARSERS)}")


def vllm_serve_args(s: VllmSettings) -> list[str]:
    """Arguments after ``vllm serve``: the model first, then one flag per setting.

    - ``--revision`` and ``--tokenizer-revision`` pin both to the same commit, which is also
      what lets ``HF_HUB_OFFLINE=1`` find them in the cache without asking the Hub.
    - ``--host 127.0.0.1``: only the gateway beside it (same network namespace in awsvpc)
      reaches vLLM; nothing on the VPC can bypass the gateway.
    - awq/gptq are *not* passed as ``--quantization``: vLLM reads the method from the
      checkpoint and picks the fast Marlin kernels, which naming ``awq`` explicitly would
      disable. fp8 is passed: it quantizes a bf16/fp16 checkpoint on load.
    - ``--enable-auto-tool-choice --tool-call-parser P`` when the model has a tool-call
      format: without them vLLM answers 400 to every ``tools`` request whose ``tool_choice``
      is ``auto`` (vLLM, "Tool Calling": https://docs.vllm.ai/en/latest/features/tool_calling/).
    """
    args = [
        s.model_id,
        "--revision", s.revision,
        "--tokenizer-revision", s.revision,
        "--served-model-name", s.served_model_name,
        "--host", s.host,
        "--port", str(s.port),
        "--max-model-len", str(s.max_model_len),
        "--tensor-parallel-size", str(s.tensor_parallel_size),
        "--gpu-memory-utilization", f"{s.gpu_memory_utilization:g}",
        "--max-num-seqs", str(s.max_num_seqs),
        "--dtype", s.dtype,
        "--kv-cache-dtype", s.kv_cache_dtype,
        "--enable-chunked-prefill" if s.enable_chunked_prefill else "--no-enable-chunked-prefill",
    ]  # fmt: skip
    if s.quantization == "fp8":
        args += ["--quantization", "fp8"]
    if s.tool_call_parser is not None:
        args += ["--enable-auto-tool-choice", "--tool-call-parser", s.tool_call_parser]
    return args


def vllm_environment(*, hf_hub_offline: bool, keepalive_s: int) -> dict[str, str]:
    """Plain (non-secret) environment of the vLLM container. ``HF_TOKEN`` comes as an ECS secret."""
    return {
        "HF_HOME": HF_HOME,
        "HF_HUB_OFFLINE": "1" if hf_hub_offline else "0",
        # Pin the keep-alive the gateway's upstream pool is tuned below (DESIGN §4).
        "VLLM_HTTP_TIMEOUT_KEEP_ALIVE": str(keepalive_s),
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }


def vllm_healthcheck_command(port: int = 8000) -> list[str]:
    """Container health check: GET /health on loopback with the image's own Python (no curl needed)."""
    return [
        "CMD",
        "python3",
        "-c",
        "import urllib.request,sys;"
        f"sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{port}/health',timeout=5).status==200 else 1)",
    ]
