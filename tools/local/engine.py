"""The vLLM container's command line, turned into the CPU engine's on this machine.

The template's ``vllm serve MODEL ARGS...`` becomes ``python -m vllm.entrypoints.openai.api_server
--model TINY ARGS'...`` (DESIGN §5: the CPU build's console script does not start). Exactly three
kinds of change, each listed here and tested; every other flag passes unchanged, so a flag vLLM
rejects fails here as it would on the GPU host:

- the model is the tiny random-weight model (``--load-format dummy``: it has no weight files), and
  the flags that only identify the Hub model (:data:`MODEL_FLAGS`) go with it;
- flags that only make sense on a GPU are dropped (:data:`GPU_ONLY_FLAGS`, each with the reason);
- ``--port`` is the local port, and the environment's GPU-host paths are local ones
  (:data:`LOCAL_ENVIRONMENT`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from .template import Container

SERVE = ["vllm", "serve"]

MODEL_FLAGS: Mapping[str, str] = {
    "--revision": "pins the Hub model's commit; the local model is a directory",
    "--tokenizer-revision": "pins the Hub tokenizer's commit; the local tokenizer is in the directory",
}
GPU_ONLY_FLAGS: Mapping[str, str] = {
    "--gpu-memory-utilization": "share of GPU memory; the CPU engine's KV cache is VLLM_CPU_KVCACHE_SPACE",
    "--tensor-parallel-size": "splits the model over that many GPUs; the tiny model runs in one CPU process",
    "--quantization": "fp8 weights need the GPU kernels; the tiny model's weights are random",
    "--kv-cache-dtype": "an fp8 KV cache needs the GPU kernels; the CPU engine keeps it in the model dtype",
}
"""Flag -> why it is dropped. Each takes one value."""

LOCAL_ENVIRONMENT: Mapping[str, str] = {
    "HF_HUB_OFFLINE": "1",  # nothing to download: the model is a local directory, and this machine has no Hub access
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache for the CPU engine (DESIGN §5)
    "TRANSFORMERS_OFFLINE": "1",
}
"""Set over the container's environment; ``HF_HOME`` (an EFS mount path) is set to a local directory."""


def local_vllm_command(container: Container, *, model_dir: Path, port: int, python: str = sys.executable) -> list[str]:
    """The CPU engine's command line for the template's ``vllm`` container."""
    argv = [*container.entry_point, *container.command]
    if argv[:2] != SERVE or len(argv) < 3 or argv[2].startswith("-"):
        raise ValueError(f"the vllm container runs {' '.join(argv[:3])!r}, not 'vllm serve MODEL ...'")
    args: list[str] = []
    rest = argv[3:]
    i = 0
    while i < len(rest):
        flag = rest[i]
        name = flag.split("=", 1)[0]
        takes_value = "=" not in flag and i + 1 < len(rest) and not rest[i + 1].startswith("--")
        if name in MODEL_FLAGS or name in GPU_ONLY_FLAGS:
            i += 2 if takes_value else 1
            continue
        if name == "--port":
            args += ["--port", str(port)]
            i += 2 if takes_value else 1
            continue
        args.append(flag)
        i += 1
    return [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir), "--load-format", "dummy", *args]


def local_vllm_environment(container: Container, *, hf_home: Path, base: Mapping[str, str]) -> dict[str, str]:
    """``base`` (this process's environment), the container's environment and secrets, the local overrides."""
    return {**base, **container.environment, **container.secrets, **LOCAL_ENVIRONMENT, "HF_HOME": str(hf_home)}


def flag_value(command: Sequence[str], flag: str) -> str | None:
    """The value after ``flag`` in a command line, or None."""
    return command[command.index(flag) + 1] if flag in command else None
