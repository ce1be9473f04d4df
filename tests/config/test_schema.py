"""The environment schema: the committed files are valid; broken ones fail with one clear line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from config.schema import CONFIG_DIR, ConfigError, load_all, load_environment
from tests.cfn import CONFIG_DIR as TEST_CONFIG_DIR
from tests.cfn import ENVIRONMENTS, ROOT, cdk_synth

BASE = yaml.safe_load((CONFIG_DIR / "dev.yaml").read_text())


def write(tmp_path: Path, data: Any, name: str = "dev") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def variant(**changes: Any) -> dict:
    """dev.yaml with dotted-path changes; a value of `...` deletes the key."""
    data = yaml.safe_load(yaml.safe_dump(BASE))
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = data
        for key in parents:
            node = node[key]
        if value is ...:
            del node[leaf]
        else:
            node[leaf] = value
    return data


def test_environments_under_test_are_valid() -> None:
    """Every config/<env>.yaml (or $LLMHOST_TEST_CONFIG_DIR's) loads; the suite runs on exactly these."""
    assert ENVIRONMENTS, f"no *.yaml in {TEST_CONFIG_DIR}"
    assert [c.name for c in load_all(TEST_CONFIG_DIR)] == ENVIRONMENTS


def test_committed_prod_is_retained_in_a_closed_vpc() -> None:
    prod = load_environment(CONFIG_DIR / "prod.yaml")
    assert prod.retain_stateful and prod.network.nat_gateways == 0


# A valid SageMaker-only variant of dev.yaml; the sagemaker rows below break one thing each.
SM = {"instance_type": "ml.g6e.2xlarge", "model_data_s3_uri": "s3://models-111111111111/llama/"}


def sm(**fields: Any) -> dict:
    """Changes that turn dev.yaml into a SageMaker-only environment with `fields` in its section."""
    return {"backends": ["sagemaker"], "ecs": ..., "sagemaker": {**SM, **fields}}


# (changes to dev.yaml, text the one-line error must contain: the field and what is allowed)
INVALID = {
    "account-not-12-digits": ({"account": "12345"}, ["account", r"^\d{12}$"]),
    "unknown-field": ({"modle": {"id": "x"}}, ["modle", "unknown field"]),
    "region-malformed": ({"region": "US East"}, ["region"]),
    "az-outside-region": ({"availability_zones": ["us-east-1a", "eu-west-1b"]}, ["eu-west-1b", "us-east-1"]),
    "single-az": ({"availability_zones": ["us-east-1a"]}, ["availability_zones", "at least 2"]),
    "revision-is-a-branch": ({"model__revision": "main"}, ["model.revision", "[0-9a-f]{40}"]),
    "dtype-unknown": ({"model__dtype": "float64"}, ["model.dtype", "bfloat16", "float16"]),
    "quantization-unknown": ({"model__quantization": "int3"}, ["model.quantization", "fp8"]),
    "tensor-parallel-zero": ({"model__tensor_parallel_size": 0}, ["model.tensor_parallel_size", "greater than or equal to 1"]),
    "min-above-max": ({"ecs__min_capacity": 3, "ecs__desired_capacity": 3, "ecs__max_capacity": 2}, ["ecs", "min_capacity <= desired_capacity <= max_capacity"]),
    "desired-below-min": ({"ecs__min_capacity": 2, "ecs__desired_capacity": 1}, ["ecs", "1", "2"]),
    "affinity-beyond-eight-tasks": ({"ecs__affinity": "prefix", "ecs__max_capacity": 9}, ["ecs", "affinity: needs max_capacity <= 8", "at most eight tasks"]),
    # ecs.affinity defaults to prefix: a larger service must say affinity: off, and the error says so.
    "affinity-by-default-beyond-eight-tasks": ({"ecs__max_capacity": 9}, ["ecs", "affinity: needs max_capacity <= 8", "set affinity: off"]),
    "affinity-unknown": ({"ecs__affinity": "sticky"}, ["ecs.affinity", "'off'", "'prefix'", "'conversation'"]),
    "backend-section-missing": ({"backends": ["ecs", "sagemaker"]}, ["sagemaker", "section is missing"]),
    "backend-unknown": ({"backends": ["eks"]}, ["backends.0", "'ecs'", "'sagemaker'"]),
    "no-backends": ({"backends": []}, ["backends", "at least 1"]),
    "alarm-email-invalid": ({"monitoring__alarm_emails": ["oncall"]}, ["monitoring.alarm_emails.0"]),
    "alb-idle-timeout-too-short": ({"ecs__alb_idle_timeout_seconds": 60}, ["ecs.alb_idle_timeout_seconds", "600"]),
    "throttle-rate-negative": ({"api__rate_limit": -1}, ["api.rate_limit", "greater than 0"]),
    "tenant-above-api-rate": ({"api__tenants": [{"name": "a", "rate_limit": 500, "burst_limit": 10}]}, ["tenant 'a'", "exceeds"]),
    "tenant-duplicated": ({"api__tenants": [{"name": "a", "rate_limit": 1, "burst_limit": 1}] * 2}, ["unique", "a"]),
    "quota-period-unknown": ({"api__tenants": [{"name": "a", "rate_limit": 1, "burst_limit": 1, "quota": {"limit": 5, "period": "YEAR"}}]}, ["quota.period", "'MONTH'"]),
    "retention-not-allowed": ({"network__flow_log_retention_days": 10}, ["network.flow_log_retention_days", "90"]),
    "cidr-not-a-network": ({"network__cidr": "10.0.0.1/8"}, ["network.cidr", "IPv4 CIDR"]),
    "reserved-tag": ({"tags": {"aws:owner": "me"}}, ["tags", "reserved"]),
    "off-hours-on-retained-env": ({"retain_stateful": True}, ["off_hours", "non-prod"]),
    "name-differs-from-file": ({"name": "prod"}, ["name", "'dev'"]),
    "model-missing": ({"model": ...}, ["model", "Field required"]),
    "shed-queue-depth-negative": ({"ecs__shed_queue_depth": -1}, ["ecs.shed_queue_depth", "greater than or equal to 0"]),
    "log-prompts-not-bool": ({"ecs__log_prompts": "sometimes"}, ["ecs.log_prompts", "valid boolean"]),
    "api-log-retention-not-allowed": ({"api__access_log_retention_days": 45}, ["api.access_log_retention_days", "30"]),
    "api-stream-timeout-over-15-min": ({"api__stream_timeout_seconds": 1800}, ["api.stream_timeout_seconds", "less than or equal to 900"]),
    "api-waf-rate-below-minimum": ({"api__waf_rate_limit": 10}, ["api.waf_rate_limit", "greater than or equal to 100"]),
    "api-domain-uppercase": ({"api__custom_domain": {"domain_name": "LLM.Example.com", "certificate_arn": "arn:aws:acm:us-east-1:111111111111:certificate/00000000-0000-0000-0000-000000000000"}}, ["api.custom_domain.domain_name"]),
    "api-domain-cert-not-acm": ({"api__custom_domain": {"domain_name": "llm.example.com", "certificate_arn": "arn:aws:iam::111111111111:server-certificate/x"}}, ["api.custom_domain.certificate_arn"]),
    "api-domain-cert-other-region": ({"api__custom_domain": {"domain_name": "llm.example.com", "certificate_arn": "arn:aws:acm:eu-west-1:111111111111:certificate/00000000-0000-0000-0000-000000000000"}}, ["certificate_arn", "eu-west-1", "us-east-1"]),
    "api-domain-zone-id-without-name": ({"api__custom_domain": {"domain_name": "llm.example.com", "certificate_arn": "arn:aws:acm:us-east-1:111111111111:certificate/00000000-0000-0000-0000-000000000000", "hosted_zone_id": "Z0123456789"}}, ["api.custom_domain", "both or neither"]),
    "api-domain-outside-zone": ({"api__custom_domain": {"domain_name": "llm.example.com", "certificate_arn": "arn:aws:acm:us-east-1:111111111111:certificate/00000000-0000-0000-0000-000000000000", "hosted_zone_id": "Z0123456789", "hosted_zone_name": "example.org"}}, ["api.custom_domain", "not inside hosted zone"]),
    "threshold-error-rate-above-one": ({"monitoring__thresholds": {"gateway_error_rate": 5}}, ["monitoring.thresholds.gateway_error_rate", "less than or equal to 1"]),
    "threshold-latency-above-buffered-timeout": ({"monitoring__thresholds": {"api_latency_p99_ms": 60000}}, ["monitoring.thresholds.api_latency_p99_ms", "29000"]),
    "threshold-unknown": ({"monitoring__thresholds": {"ttft_p99_ms": 100}}, ["monitoring.thresholds.ttft_p99_ms", "unknown field"]),
    "threshold-tasks-window-too-short": ({"monitoring__thresholds": {"tasks_below_desired_minutes": 1}}, ["monitoring.thresholds.tasks_below_desired_minutes", "5"]),
    # serving on ECS: sizing at synth (the figures are worked out in tests/constructs/sizing) and deploy-time pitfalls
    "ecs-70b-fp16-on-g5-2xlarge": ({"model__id": "meta-llama/Llama-3.1-70B-Instruct", "ecs__instance_type": "g5.2xlarge"}, ["ecs.instance_type", "does not fit g5.2xlarge", "smallest that fit", "g6e.12xlarge (TP 4)"]),
    "ecs-tp-2-on-one-gpu": ({"model__tensor_parallel_size": 2}, ["model.tensor_parallel_size", "exceeds the 1 GPU(s) of g6.2xlarge"]),
    "ecs-tp-not-dividing-heads": ({"model__tensor_parallel_size": 3, "ecs__instance_type": "g6.12xlarge"}, ["model.tensor_parallel_size", "does not divide the 32 attention heads", "valid sizes: 1, 2, 4, 8"]),
    "ecs-context-beyond-kv-cache": ({"model__max_model_len": 131072}, ["model.max_model_len", "lower max_model_len to at most"]),
    "ecs-instance-not-in-catalog": ({"ecs__instance_type": "g4dn.xlarge"}, ["ecs.instance_type", "not in the GPU catalog", "g6e"]),
    "ecs-sagemaker-instance-type": ({"ecs__instance_type": "ml.g5.2xlarge"}, ["ecs.instance_type", "g5.2xlarge"]),
    "ecs-model-not-in-catalog": ({"model__id": "acme/secret-13b"}, ["model.id", "custom architecture"]),
    "ecs-hub-online-in-closed-vpc": ({"network__nat_gateways": 0, "ecs__hf_hub_offline": False}, ["ecs.hf_hub_offline", "nat_gateways is 0"]),
    "ecs-public-image-in-closed-vpc": ({"network__nat_gateways": 0, "ecs__hf_hub_offline": True, "ecs__model_s3_uri": "s3://models-1/llama/"}, ["ecs.vllm_image", "111111111111.dkr.ecr.us-east-1.amazonaws.com/"]),
    "ecs-closed-vpc-prewarm-without-s3": ({"network__nat_gateways": 0, "ecs__hf_hub_offline": True}, ["ecs.model_s3_uri", "nat_gateways is 0"]),
    "ecs-model-s3-uri-not-a-prefix": ({"ecs__model_s3_uri": "s3://models-1/llama"}, ["ecs.model_s3_uri", "s3://"]),
    "ecs-grace-period-too-short": ({"ecs__health_check_grace_period_seconds": 300}, ["ecs.health_check_grace_period_seconds", "600"]),
    "ecs-root-volume-too-small": ({"ecs__root_volume_gib": 30}, ["ecs.root_volume_gib", "100"]),
    # Off-hours cron as EventBridge / Application Auto Scaling read it (docs/lifecycle.md cites the page)
    "cron-hour-25": ({"ecs__off_hours__scale_down_cron": "0 25 ? * MON-FRI *"}, ["ecs.off_hours.scale_down_cron", "hours '25' is outside 0-23"]),
    "cron-day-of-month-and-week-both-set": ({"ecs__off_hours__scale_down_cron": "0 19 * * MON-FRI *"}, ["ecs.off_hours.scale_down_cron", "exactly one of day-of-month and day-of-week must be '?'", "'0 19 ? * MON-FRI *'"]),
    "cron-both-days-question-mark": ({"ecs__off_hours__scale_up_cron": "0 7 ? * ? *"}, ["ecs.off_hours.scale_up_cron", "exactly one of day-of-month and day-of-week"]),
    "cron-five-fields": ({"ecs__off_hours__scale_up_cron": "0 7 * * 1-5"}, ["ecs.off_hours.scale_up_cron", "has 5 fields, needs 6"]),
    "cron-minute-60": ({"ecs__off_hours__scale_up_cron": "60 7 ? * MON-FRI *"}, ["ecs.off_hours.scale_up_cron", "minutes '60' is outside 0-59"]),
    "cron-month-13": ({"ecs__off_hours__scale_up_cron": "0 7 ? 13 MON-FRI *"}, ["month '13' is outside 1-12 or JAN-DEC"]),
    "cron-day-of-week-zero": ({"ecs__off_hours__scale_up_cron": "0 7 ? * 0 *"}, ["day-of-week '0' is outside 1-7 or SUN-SAT"]),
    "cron-question-mark-in-hours": ({"ecs__off_hours__scale_up_cron": "0 ? 1 * ? *"}, ["hours cannot be '?'"]),
    "cron-last-weekday": ({"ecs__off_hours__scale_up_cron": "0 7 ? * 6L *"}, ["day-of-week '6L'", "L, W and # are not supported"]),
    "cron-range-backwards": ({"ecs__off_hours__scale_up_cron": "0 7 ? * FRI-MON *"}, ["range 'FRI-MON' runs backwards"]),
    "cron-year-pinned": ({"ecs__off_hours__scale_up_cron": "0 7 ? * MON-FRI 2027"}, ["year must be '*'"]),
    "cron-step-zero": ({"ecs__off_hours__scale_up_cron": "0 */0 ? * MON-FRI *"}, ["hours '*/0': a step is '/N' with N >= 1"]),
    "sm-cron-hour-25": ({**sm(off_hours={"scale_down_cron": "0 25 ? * MON-FRI *"})}, ["sagemaker.off_hours.scale_down_cron", "outside 0-23"]),
    # tool calling (vLLM, "Tool Calling"): a model without a known parser says so; a parser name must be vLLM's
    "ecs-model-without-tool-parser": ({"model__id": "mistralai/Mistral-7B-Instruct-v0.2"}, ["model.tool_call_parser", "Mistral-7B-Instruct-v0.2", "`none`"]),
    "ecs-tool-parser-unknown": ({"model__tool_call_parser": "llama3"}, ["model.tool_call_parser", "'llama3'", "llama3_json"]),
    "ecs-queue-depth-zero": ({"ecs__scale_queue_depth": 0}, ["ecs.scale_queue_depth", "greater than or equal to 1"]),
    "ecs-confidential-over-plain-http": ({"tags": {"data-classification": "confidential"}}, ["ecs.certificate_arn is unset", "confidential", "ecs.tls_host_name"]),
    "ecs-certificate-without-tls-host": ({"ecs__certificate_arn": "arn:aws:acm:us-east-1:111111111111:certificate/00000000-0000-0000-0000-000000000000"}, ["ecs.certificate_arn and ecs.tls_host_name go together"]),
    # SageMaker backend: same sizing catalog (ml.* types), and what CreateModel/CreateEndpointConfig would reject
    "sm-70b-fp16-on-ml-g5-12xlarge": ({**sm(instance_type="ml.g5.12xlarge"), "model__id": "meta-llama/Llama-3.1-70B-Instruct", "model__tensor_parallel_size": 4}, ["sagemaker.instance_type", "does not fit ml.g5.12xlarge", "smallest that fit", "ml.g6e.12xlarge (TP 4)"]),
    "sm-tp-2-on-one-gpu": ({**sm(), "model__tensor_parallel_size": 2}, ["model.tensor_parallel_size", "exceeds the 1 GPU(s) of ml.g6e.2xlarge"]),
    "sm-ec2-instance-type": (sm(instance_type="g6e.2xlarge"), ["sagemaker", "not a SageMaker type", "ml.g6e.2xlarge"]),
    "sm-instance-not-in-catalog": (sm(instance_type="ml.g4dn.xlarge"), ["sagemaker.instance_type", "not in the GPU catalog"]),
    "sm-volume-key-on-nvme-instance": (sm(volume_kms_key_arn="arn:aws:kms:us-east-1:111111111111:key/00000000-0000-0000-0000-000000000000"), ["sagemaker.volume_kms_key_arn", "local NVMe", "CreateEndpointConfig rejects"]),
    "sm-s3-weights-without-uri": (sm(model_data_s3_uri=None), ["sagemaker", "weights: s3 needs model_data_s3_uri"]),
    "sm-weights-uri-not-a-prefix": (sm(model_data_s3_uri="s3://models/llama.tar.gz"), ["sagemaker.model_data_s3_uri"]),
    "sm-hub-weights-in-closed-vpc": ({**sm(weights="hub", model_data_s3_uri=None), "network__nat_gateways": 0}, ["sagemaker.weights", "nat_gateways is 0"]),
    "sm-hub-token-with-s3-weights": (sm(hf_token_secret_name="hf-token"), ["sagemaker", "hf_token_secret_name is for weights: hub only"]),
    "sm-input-tokens-not-below-context": (sm(max_input_tokens=8192), ["sagemaker.max_input_tokens", "below model.max_model_len (8192)"]),
    "sm-tgi-prefill-below-input": (sm(max_input_tokens=4096, max_batch_prefill_tokens=2048), ["sagemaker.max_batch_prefill_tokens", "4096"]),
    "sm-image-version-unknown": (sm(image_versions={"tgi": "9.9.9"}), ["sagemaker.image_versions.tgi", "Unsupported huggingface-llm version: 9.9.9"]),
    "sm-container-unknown": (sm(container="triton"), ["sagemaker.container", "'tgi'", "'vllm'", "'lmi'"]),
    "sm-startup-timeout-over-an-hour": (sm(container_startup_timeout_seconds=7200), ["sagemaker.container_startup_timeout_seconds", "3600"]),
    "sm-count-above-max": (sm(instance_count=3), ["sagemaker", "min_capacity <= instance_count <= max_capacity"]),
    "sm-min-zero": (sm(min_capacity=0), ["sagemaker.min_capacity", "greater than or equal to 1"]),
    "sm-off-hours-on-retained-env": ({**sm(off_hours={}), "retain_stateful": True}, ["sagemaker.off_hours", "non-prod"]),
    "sm-data-capture-zero-percent": (sm(data_capture={"sampling_percentage": 0}), ["sagemaker.data_capture.sampling_percentage", "greater than or equal to 1"]),
    "sm-tgi-sized-without-fp8-kv-cache": ({**sm(instance_type="ml.g5.2xlarge"), "model__max_model_len": 32768, "model__kv_cache_dtype": "fp8"}, ["model.max_model_len", "KV cache for 23,552 tokens", "tgi container keeps its KV cache in the model dtype"]),
}


@pytest.mark.parametrize("changes,expected", INVALID.values(), ids=INVALID.keys())
def test_invalid_config_fails_with_one_line(tmp_path: Path, changes: dict, expected: list[str]) -> None:
    path = write(tmp_path, variant(**changes))
    with pytest.raises(ConfigError) as err:
        load_environment(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    for text in expected:
        assert text in message, f"{text!r} missing from: {message}"


@pytest.mark.parametrize(
    "model_id,configured,expected",
    [
        # vLLM's Tool Calling page: llama3_json for Llama 3.1/3.2, hermes for Qwen2.5, mistral for Mistral v0.3
        ("meta-llama/Llama-3.1-8B-Instruct", None, "llama3_json"),
        ("Qwen/Qwen2.5-7B-Instruct", None, "hermes"),
        ("mistralai/Mistral-7B-Instruct-v0.3", None, "mistral"),
        ("meta-llama/Llama-3.1-8B-Instruct", "pythonic", "pythonic"),
        ("mistralai/Mistral-7B-Instruct-v0.2", "none", None),
        ("mistralai/Mistral-7B-Instruct-v0.2", "mistral", "mistral"),
    ],
)
def test_tool_call_parser_from_catalog_or_config(tmp_path: Path, model_id: str, configured: str | None, expected: str | None) -> None:
    changes: dict[str, Any] = {"model__id": model_id}
    if configured is not None:
        changes["model__tool_call_parser"] = configured
    cfg = load_environment(write(tmp_path, variant(**changes)))
    assert cfg.model.vllm_tool_call_parser == expected


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: dev\naccount: [unclosed\n")
    with pytest.raises(ConfigError, match=r"dev\.yaml: not valid YAML at line \d"):
        load_environment(path)


def test_invalid_file_fails_synth_and_writes_no_template(tmp_path: Path) -> None:
    """The real CLI, pointed at a config dir with one good and one broken environment."""
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    write(config_dir, BASE)
    write(config_dir, {**yaml.safe_load((CONFIG_DIR / "prod.yaml").read_text()), "account": "x"}, name="prod")
    outdir = tmp_path / "out"
    result = cdk_synth(outdir, config_dir=config_dir)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("config error:")]
    assert len(errors) == 1 and "prod.yaml: account:" in errors[0]
    assert "Traceback" not in result.stderr
    assert not list(outdir.rglob("*.template.json")), "a template was written despite the invalid config"
    assert ROOT.exists()


def test_task_larger_than_the_instance_fails_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The serving task is sized from what the host registers with ECS; a task above it is rejected at load."""
    import config.schema as schema

    monkeypatch.setattr(schema, "ecs_task_resources", lambda instance_type: (64 * 1024, 512 * 1024))
    path = write(tmp_path, BASE)
    with pytest.raises(ConfigError) as err:
        load_environment(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: ecs.instance_type: ")
    assert "registers with ECS" in message and "g6.2xlarge" in message


@pytest.mark.parametrize(
    "cron", ["0 19 ? * MON-FRI *", "*/15 8-18 ? * 2-6 *", "0 19 1 * ? *", "0 6 ? JAN-MAR MON,WED,FRI *", "0 0/6 ? * * *"]
)
def test_valid_off_hours_crons_are_accepted(tmp_path: Path, cron: str) -> None:
    """Forms the AWS cron reference documents; the ECS schedule must also convert to the ASG's Unix cron."""
    from llm_hosting_constructs.inference_service import unix_cron

    cfg = load_environment(write(tmp_path, variant(ecs__off_hours__scale_down_cron=cron)))
    assert cfg.ecs is not None and cfg.ecs.off_hours is not None
    assert cfg.ecs.off_hours.scale_down_cron == cron
    assert len(unix_cron(cron).split()) == 5


@pytest.mark.parametrize("configured,method", [("none", None), ("fp8", "fp8"), ("awq", "awq")])
def test_quantization_method_is_none_for_none(configured: str, method: str | None) -> None:
    """The one place `model.quantization: none` becomes "no method" for the sizing module and the containers."""
    model = load_environment(CONFIG_DIR / "dev.yaml").model.model_copy(update={"quantization": configured})
    assert model.quantization_method == method
