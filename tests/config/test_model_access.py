"""A gated Hub model needs a token that exists before the deploy, or weights staged in S3 (issue 11 point 1).

The deploy itself downloads the model (the pre-warm custom resource), so nothing may wait for a secret
value that the same deploy would create: such a config fails synth with one line naming the field and
the command that provides the token.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from config.schema import ConfigError, load_environment
from llm_hosting_constructs.sizing import get_model, model_ids
from tests.cfn import cdk_synth
from tests.config.test_schema import BASE, variant, write

QWEN = "Qwen/Qwen2.5-7B-Instruct"
QWEN_REVISION = "a09a35458c702b33eeacc393d103063234e8bc28"


@pytest.mark.parametrize(
    ("model_id", "gated"),
    [("meta-llama/Llama-3.1-8B-Instruct", True), ("mistralai/Mistral-7B-Instruct-v0.3", True), (QWEN, False)],
)
def test_catalog_knows_which_models_are_gated(model_id: str, gated: bool) -> None:
    assert get_model(model_id).gated is gated


def test_every_catalog_model_says_whether_it_is_gated() -> None:
    assert all(get_model(m).gated is not None for m in model_ids())


def test_gated_model_without_token_or_s3_fails_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_environment(write(tmp_path, variant(ecs__hf_token_secret_name=...)))
    message = str(err.value)
    assert "\n" not in message
    assert "ecs.hf_token_secret_name: meta-llama/Llama-3.1-8B-Instruct is gated" in message
    assert "aws secretsmanager create-secret --region us-east-1 --name llm-hosting/dev/hf-token" in message
    assert "ecs.model_s3_uri" in message


def test_gated_model_with_an_existing_secret_is_valid(tmp_path: Path) -> None:
    cfg = load_environment(write(tmp_path, variant(ecs__hf_token_secret_name="team/hf-token")))
    assert cfg.ecs is not None and cfg.ecs.hf_token_secret_name == "team/hf-token"


def test_gated_model_staged_in_s3_needs_no_token(tmp_path: Path) -> None:
    uri = f"s3://models-111111111111/meta-llama/Llama-3.1-8B-Instruct/{BASE['model']['revision']}/"
    cfg = load_environment(write(tmp_path, variant(ecs__hf_token_secret_name=..., ecs__model_s3_uri=uri)))
    assert cfg.ecs is not None and cfg.ecs.model_s3_uri == uri


def test_public_model_needs_no_token(tmp_path: Path) -> None:
    data = variant(ecs__hf_token_secret_name=..., model__id=QWEN, model__revision=QWEN_REVISION, model__served_name="qwen")
    cfg = load_environment(write(tmp_path, data))
    assert cfg.ecs is not None and cfg.ecs.hf_token_secret_name is None


def test_custom_architecture_marked_gated_is_checked_too(tmp_path: Path) -> None:
    arch = {"parameters": 7_000_000_000, "layers": 32, "attention_heads": 32, "kv_heads": 8, "head_dim": 128, "gated": True}
    data = variant(
        ecs__hf_token_secret_name=..., model__id="acme/private-7b", model__architecture=arch, model__tool_call_parser="none"
    )
    with pytest.raises(ConfigError, match="ecs.hf_token_secret_name: acme/private-7b is gated"):
        load_environment(write(tmp_path, data))


def test_synth_stops_before_any_template(tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    write(config_dir, variant(ecs__hf_token_secret_name=...))
    outdir = tmp_path / "out"
    result = cdk_synth(outdir, "-c", f"config_dir={config_dir}")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("config error:")]
    assert len(errors) == 1 and "ecs.hf_token_secret_name" in errors[0]
    assert not list(outdir.rglob("*.template.json"))
