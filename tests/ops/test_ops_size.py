"""`llmhost size` and the environment config it reads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from llmhost import environments
from llmhost.errors import LlmhostError


def test_size_fits(llmhost: Callable[..., object]) -> None:
    r = llmhost(
        "size", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--instance", "g6.2xlarge", "--max-model-len", "8192"
    )
    assert r.code == 0, r.err
    # L4 (22,573 MiB as torch sees it): floor(× 0.9) − 16,060,522,496 weights − 2 GiB → 1,475 blocks of 16.
    assert (int(22573 * 2**20 * 0.9) - 16_060_522_496 - 2**31) // (16 * 131_072) * 16 == 23_600
    assert "23,600 tokens" in r.out
    assert "131,072 bytes" in r.out  # KV cache per token: 2 × 32 × 8 × 128 × 2
    assert "15.0 GiB in bfloat16" in r.out  # 16.06e9 bytes
    assert "concurrent sequences at 8,192 tokens" in r.out and "│ 2 (cache holds 2.88" in r.out
    assert "│ fits" in r.out and "yes" in r.out
    for row in ("g5.xlarge", "g6.xlarge", "g6e.xlarge", "p5.4xlarge"):
        assert row in r.out  # smallest of each family


def test_size_does_not_fit(llmhost: Callable[..., object]) -> None:
    r = llmhost(
        "size", "--model", "meta-llama/Meta-Llama-3-70B-Instruct", "--instance", "g5.2xlarge", "--dtype", "float16"
    )
    assert r.code == 1
    assert r.err.startswith("llmhost: error: meta-llama/Meta-Llama-3-70B-Instruct in float16 does not fit g5.2xlarge")
    assert r.err.count("\n") == 1  # one line
    assert "g6e.12xlarge (TP 4)" in r.err
    assert "131.4 GiB in float16" in r.out  # 141.1e9 bytes


def test_size_needs_env_or_model_and_instance(llmhost: Callable[..., object]) -> None:
    r = llmhost("size", "--model", "meta-llama/Llama-3.1-8B-Instruct")
    assert r.code == 2 and "give --env NAME, or both --model and --instance" in r.err
    r = llmhost("size", "--model", "acme/unknown", "--instance", "g5.xlarge")
    assert r.code == 1 and "'acme/unknown' is not in the sizing catalog" in r.err
    r = llmhost("size", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--instance", "g5.3xlarge")
    assert r.code == 1 and "g5 sizes: g5.xlarge" in r.err


def test_size_env_reads_the_config(llmhost: Callable[..., object], write_env: Callable[..., Path]) -> None:
    write_env("dev")
    r = llmhost("size", "--env", "dev")
    assert r.code == 0, r.err
    assert "meta-llama/Llama-3.1-8B-Instruct on g6.2xlarge" in r.out
    # Options override the config: 16k tokens no longer fit one L4.
    r = llmhost("size", "--env", "dev", "--max-model-len", "32768")
    assert r.code == 1 and "lower max_model_len to at most 23,600" in r.err


def test_size_env_with_both_backends(llmhost: Callable[..., object], write_env: Callable[..., Path]) -> None:
    write_env("both", backends=["ecs", "sagemaker"], sagemaker={"instance_type": "ml.g5.2xlarge", "weights": "hub"})
    r = llmhost("size", "--env", "both")
    assert r.code == 0, r.err
    assert "on g6.2xlarge" in r.out and "on ml.g5.2xlarge" in r.out
    assert "ml.g6e.xlarge" in r.out  # the SageMaker table lists ml.* families


def test_size_env_custom_architecture(llmhost: Callable[..., object], write_env: Callable[..., Path]) -> None:
    arch = {
        "parameters": 13_000_000_000,
        "layers": 40,
        "attention_heads": 40,
        "kv_heads": 40,
        "head_dim": 128,
        "max_context": 4096,
    }
    write_env(
        "custom",
        model={"id": "acme/custom-13b", "max_model_len": 4096, "architecture": arch},
        ecs={"instance_type": "g6e.xlarge"},
    )
    r = llmhost("size", "--env", "custom")
    assert r.code == 0, r.err
    # KV per token: 2 × 40 × 40 × 128 × 2 = 819,200 bytes; weights 26e9 bytes = 24.2 GiB.
    assert "819,200 bytes" in r.out and "24.2 GiB in bfloat16" in r.out


def test_wrong_env_and_missing_config_dir(
    llmhost: Callable[..., object],
    write_env: Callable[..., Path],
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_env("dev")
    r = llmhost("size", "--env", "prd")
    assert r.code == 1 and r.err.strip().endswith("has: dev")
    monkeypatch.delenv("LLMHOST_CONFIG_DIR")
    monkeypatch.chdir(tmp_path_factory.mktemp("nowhere"))  # no config/ in it or above it
    with pytest.raises(LlmhostError, match="no config/ directory found here or above"):
        environments.find_config_dir()
    r = llmhost("--config-dir", str(tmp_path), "size", "--env", "dev")
    assert r.code == 1 and "is not an llm-hosting config directory" in r.err


def test_invalid_config_is_one_line(llmhost: Callable[..., object], write_env: Callable[..., Path]) -> None:
    write_env("bad", ecs={"max_capacity": "many"})
    r = llmhost("size", "--env", "bad")
    assert r.code == 1 and "bad.yaml" in r.err and "ecs.max_capacity" in r.err
    assert r.err.count("\n") == 1


def test_size_shows_the_figures_of_a_config_that_fails_synth(
    llmhost: Callable[..., object], write_env: Callable[..., Path]
) -> None:
    write_env("tight", model={"max_model_len": 65536})  # 8B bf16 on one L4: 23,600 tokens of KV cache
    r = llmhost("size", "--env", "tight")
    assert r.code == 1
    assert "23,600 tokens" in r.out and "NO" in r.out
    assert "lower max_model_len to at most 23,600" in r.err
    # Every other command refuses the file with the loader's own line.
    r = llmhost("cost", "--env", "tight", "--requests-per-day", "1", "--input-tokens", "1", "--output-tokens", "1")
    assert r.code == 1 and "tight.yaml: model.max_model_len:" in r.err


def test_context_beyond_the_model_says_what_the_table_was_sized_at(llmhost: Callable[..., object]) -> None:
    """Mistral 7B v0.3 supports 32,768 tokens: 100,000 fits nowhere, and the per-family table, sized
    at the model's context instead, says so rather than listing instances as fitting 100,000."""
    r = llmhost(
        "size", "--model", "mistralai/Mistral-7B-Instruct-v0.3", "--instance", "g6e.xlarge", "--max-model-len", "100000"
    )
    assert r.code == 1 and "max_model_len" in r.err
    out = " ".join(r.out.split())  # rich wraps long lines at the terminal width
    assert "Smallest that fits, per family (32,768-token sequences, the model's context)" in out
    assert "note: the table is sized at the model's context of 32,768 tokens: 100,000 tokens fit on no instance" in out
    assert "100,000-token sequences" not in out
    # Within the context the title is the plain one.
    r = llmhost("size", "--model", "mistralai/Mistral-7B-Instruct-v0.3", "--instance", "g6e.xlarge", "--max-model-len", "16384")
    assert r.code == 0, r.err
    assert "Smallest that fits, per family (16,384-token sequences)" in r.out and "note:" not in r.out


def test_size_of_a_sagemaker_type_says_updates_need_twice_the_quota(llmhost: Callable[..., object]) -> None:
    r = llmhost("size", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--instance", "ml.g6e.2xlarge", "--max-model-len", "8192")
    assert r.code == 0, r.err
    text = " ".join(r.out.split())  # rich wraps long lines
    assert "'ml.g6e.2xlarge for endpoint usage' quota must allow twice the instances in service" in text


def test_size_of_an_ecs_type_has_no_sagemaker_quota_note(llmhost: Callable[..., object]) -> None:
    r = llmhost("size", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--instance", "g6e.2xlarge", "--max-model-len", "8192")
    assert r.code == 0, r.err
    assert "for endpoint usage" not in r.out
