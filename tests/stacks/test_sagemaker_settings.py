"""app.sagemaker_settings: config -> SageMaker stack props, for the choices staging does not deploy."""

from __future__ import annotations

from typing import Any

import pytest

from app import sagemaker_settings
from config.schema import CONFIG_DIR, EnvironmentConfig, load_environment
from llm_hosting_constructs.sagemaker_container import MODEL_DIR

STAGING = load_environment(CONFIG_DIR / "staging.yaml")


def with_sagemaker(**changes: Any) -> EnvironmentConfig:
    assert STAGING.sagemaker is not None
    return STAGING.model_copy(update={"sagemaker": STAGING.sagemaker.model_copy(update=changes)})


def test_hub_weights_use_the_model_id_revision_and_a_deploy_time_token_reference() -> None:
    cfg = with_sagemaker(weights="hub", model_data_s3_uri=None, hf_token_secret_name="llm/hf-token")
    s = sagemaker_settings(cfg)
    assert s.model_data_s3_uri is None
    assert s.environment["HF_MODEL_ID"] == cfg.model.id
    assert s.environment["HF_MODEL_REVISION"] == cfg.model.revision
    # Never the token itself: a dynamic reference CloudFormation resolves at deploy.
    assert s.environment["HF_TOKEN"] == "{{resolve:secretsmanager:llm/hf-token:SecretString}}"


@pytest.mark.parametrize(
    "container,model_key,repository",
    [("vllm", "SM_VLLM_MODEL", "/huggingface-vllm:"), ("lmi", "HF_MODEL_ID", "/djl-inference:")],
)
def test_other_containers_get_their_image_and_variables(container: str, model_key: str, repository: str) -> None:
    s = sagemaker_settings(with_sagemaker(container=container))
    assert repository in s.image_uri and ".us-east-1." in s.image_uri
    assert s.environment[model_key] == MODEL_DIR
    assert not any(k.startswith(("MAX_", "SM_NUM_GPUS")) for k in s.environment), "no TGI variables"


def test_endpoint_name_scaling_and_rollback_come_from_config() -> None:
    s = sagemaker_settings(STAGING)
    sm = STAGING.sagemaker
    assert sm is not None and sm.off_hours is not None
    assert s.endpoint_name == f"staging-{STAGING.model.served_name}"
    assert (s.min_capacity, s.max_capacity, s.instance_count) == (sm.min_capacity, sm.max_capacity, sm.instance_count)
    assert s.off_hours == sm.off_hours
    assert s.rollback_5xx_errors == STAGING.monitoring.thresholds.sagemaker_5xx
    assert s.rollback_latency_p99_ms == STAGING.monitoring.thresholds.sagemaker_model_latency_p99_ms
