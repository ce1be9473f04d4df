"""SageMakerEndpoint, SageMakerVariantScaling and the container helpers as another team would use them."""

from __future__ import annotations

import socket
from dataclasses import replace
from typing import Any

import aws_cdk as cdk
import pydantic
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk.assertions import Template

from llm_hosting_constructs.sagemaker_autoscaling import SageMakerVariantScaling
from llm_hosting_constructs.sagemaker_container import (
    DEFAULT_VERSIONS,
    MODEL_DIR,
    SDK_FRAMEWORK,
    container_environment,
    image_uri,
    parse_image_uri,
)
from llm_hosting_constructs.sagemaker_endpoint import SageMakerEndpoint
from llm_hosting_constructs.schedule import OffHours
from llm_hosting_constructs.sizing import get_instance

IMAGE = "763104351884.dkr.ecr.eu-west-1.amazonaws.com/huggingface-pytorch-tgi-inference:2.7.0-tgi3.3.6-gpu-py311-cu124-ubuntu22.04"
WEIGHTS = "s3://models-123456789012/meta-llama/Llama-3.1-8B-Instruct/rev/"
# An instance type without local NVMe (EBS-only, like ml.p3.2xlarge): the catalog's GPU types all have NVMe.
EBS_ONLY = replace(get_instance("ml.g5.2xlarge"), name="ml.p3.2xlarge", family="ml.p3", local_nvme_gb=0)
ENV = {"HF_MODEL_ID": MODEL_DIR}


def stack() -> tuple[cdk.Stack, ec2.Vpc]:
    s = cdk.Stack(cdk.App(), "S", env=cdk.Environment(account="123456789012", region="eu-west-1"))
    vpc = ec2.Vpc(
        s,
        "Vpc",
        max_azs=2,
        nat_gateways=0,
        subnet_configuration=[ec2.SubnetConfiguration(name="w", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)],
    )
    return s, vpc


def endpoint(s: cdk.Stack, vpc: ec2.Vpc, **overrides: Any) -> SageMakerEndpoint:
    props: dict[str, Any] = dict(
        endpoint_name="test-llm",
        image_uri=IMAGE,
        environment=ENV,
        instance_type="ml.g5.2xlarge",
        vpc=vpc,
        subnets=ec2.SubnetSelection(subnet_group_name="w"),
        model_data_s3_uri=WEIGHTS,
    )
    return SageMakerEndpoint(s, "Llm", **{**props, **overrides})


def policy_actions(t: Template) -> set[str]:
    (policy,) = t.find_resources("AWS::IAM::Policy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    return {a for st in statements for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])}


# --- storage volume key: only where the instance type has no local NVMe ------------------


def test_ebs_only_instance_gets_a_volume_key() -> None:
    s, vpc = stack()
    ep = endpoint(s, vpc, instance_type=EBS_ONLY)
    t = Template.from_stack(s)
    (config,) = t.find_resources("AWS::SageMaker::EndpointConfig").values()
    key_id = s.resolve(ep.key.key_arn)
    assert config["Properties"]["KmsKeyId"] == key_id
    assert {"kms:CreateGrant", "kms:Decrypt"} <= policy_actions(t)


def test_ebs_only_instance_takes_a_given_key() -> None:
    s, vpc = stack()
    key = kms.Key(s, "Theirs")
    endpoint(s, vpc, instance_type=EBS_ONLY, volume_kms_key=key)
    (config,) = Template.from_stack(s).find_resources("AWS::SageMaker::EndpointConfig").values()
    assert config["Properties"]["KmsKeyId"] == s.resolve(key.key_arn)


def test_nvme_instance_gets_no_volume_key() -> None:
    s, vpc = stack()
    ep = endpoint(s, vpc)
    (config,) = Template.from_stack(s).find_resources("AWS::SageMaker::EndpointConfig").values()
    assert "KmsKeyId" not in config["Properties"] and ep.volume_kms_key is None


def test_nvme_instance_with_a_volume_key_is_rejected() -> None:
    s, vpc = stack()
    with pytest.raises(ValueError, match="ml.g5.2xlarge has local NVMe.*CreateEndpointConfig rejects"):
        endpoint(s, vpc, volume_kms_key=kms.Key(s, "K"))


# --- weights -----------------------------------------------------------------------------


def test_hub_weights_run_without_isolation_and_without_s3_access() -> None:
    s, vpc = stack()
    endpoint(s, vpc, model_data_s3_uri=None, environment={"HF_MODEL_ID": "meta-llama/Llama-3.1-8B-Instruct"})
    t = Template.from_stack(s)
    (model,) = t.find_resources("AWS::SageMaker::Model").values()
    assert model["Properties"]["EnableNetworkIsolation"] is False
    assert "ModelDataSource" not in model["Properties"]["PrimaryContainer"]
    assert not {a for a in policy_actions(t) if a.startswith("s3:")}


def test_encrypted_weights_bucket_key_may_decrypt() -> None:
    s, vpc = stack()
    key = "arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    endpoint(s, vpc, model_data_kms_key_arn=key)
    assert "kms:Decrypt" in policy_actions(Template.from_stack(s))


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"model_data_s3_uri": None, "network_isolation": True}, "network_isolation needs model_data_s3_uri"),
        ({"model_data_s3_uri": "s3://bucket/model.tar.gz"}, "must be an S3 prefix"),
        ({"model_data_s3_uri": None, "model_data_kms_key_arn": "arn:aws:kms:x"}, "needs model_data_s3_uri"),
        ({"environment": {"HF_TOKEN": "x"}}, "drop the Hub token"),
        ({"container_startup_timeout": cdk.Duration.hours(2)}, "60..3600"),
        ({"model_download_timeout": cdk.Duration.seconds(30)}, "60..3600"),
        ({"instance_type": "g5.2xlarge"}, "not a SageMaker type"),
        ({"instance_count": 0}, "at least 1"),
        ({"endpoint_name": "bad_name"}, "endpoint_name"),
        ({"data_capture_sampling_percentage": 0}, "1..100"),
    ],
)
def test_contradictory_props_are_rejected(overrides: dict, message: str) -> None:
    s, vpc = stack()
    with pytest.raises(ValueError, match=message):
        endpoint(s, vpc, **overrides)


# --- data capture and rollback -------------------------------------------------------------


def test_no_data_capture_by_default() -> None:
    s, vpc = stack()
    ep = endpoint(s, vpc)
    t = Template.from_stack(s)
    (config,) = t.find_resources("AWS::SageMaker::EndpointConfig").values()
    assert "DataCaptureConfig" not in config["Properties"] and ep.data_capture_bucket is None
    t.resource_count_is("AWS::S3::Bucket", 0)


def test_rollback_alarm_thresholds() -> None:
    s, vpc = stack()
    endpoint(s, vpc, rollback_5xx_errors=3, rollback_latency_p99=cdk.Duration.seconds(20))
    alarms = {a["Properties"]["MetricName"]: a["Properties"] for a in Template.from_stack(s).find_resources("AWS::CloudWatch::Alarm").values()}
    assert alarms["Invocation5XXErrors"]["Threshold"] == 3
    assert alarms["ModelLatency"]["Threshold"] == 20_000_000  # ModelLatency is in microseconds
    assert alarms["ModelLatency"]["ExtendedStatistic"] == "p99"


# --- auto scaling --------------------------------------------------------------------------


def test_scaling_without_schedules_has_no_scheduled_actions() -> None:
    s, vpc = stack()
    ep = endpoint(s, vpc)
    SageMakerVariantScaling(s, "Scaling", endpoint=ep.endpoint, variant_name=ep.variant_name, target_invocations_per_instance=10)
    (target,) = Template.from_stack(s).find_resources("AWS::ApplicationAutoScaling::ScalableTarget").values()
    assert "ScheduledActions" not in target["Properties"]
    assert (target["Properties"]["MinCapacity"], target["Properties"]["MaxCapacity"]) == (1, 2)


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"min_capacity": 0}, "cannot scale to 0"),
        ({"min_capacity": 3, "max_capacity": 2}, "min_capacity <= max_capacity"),
        ({"target_invocations_per_instance": 0}, "positive"),
        ({"off_hours_capacity": 0}, "off_hours_capacity"),
    ],
)
def test_scaling_rejects_contradictions(overrides: dict, message: str) -> None:
    s, vpc = stack()
    ep = endpoint(s, vpc)
    props: dict[str, Any] = {"target_invocations_per_instance": 10, **overrides}
    with pytest.raises(ValueError, match=message):
        SageMakerVariantScaling(s, "Scaling", endpoint=ep.endpoint, variant_name=ep.variant_name, **props)


# --- container image and environment -------------------------------------------------------


@pytest.mark.parametrize("container", sorted(SDK_FRAMEWORK))
@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_image_uri_resolves_offline(monkeypatch: pytest.MonkeyPatch, container: str, region: str) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("image_uri tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    image_uri.cache_clear()
    uri = image_uri(container, version=DEFAULT_VERSIONS[container], region=region, instance_type="ml.g6e.2xlarge")
    parsed = parse_image_uri(uri)
    assert (parsed.account, parsed.region) == ("763104351884", region)
    assert DEFAULT_VERSIONS[container] in uri


def test_unknown_image_version_is_one_line() -> None:
    with pytest.raises(ValueError, match=r"^tgi image 9\.9\.9 in us-east-1: Unsupported huggingface-llm version") as err:
        image_uri("tgi", version="9.9.9", region="us-east-1", instance_type="ml.g5.xlarge")
    assert "\n" not in str(err.value)


LIMITS = dict(
    revision="0e9e39f249a16976918f6564b8830bc894c89659",
    served_name="llama",
    num_gpus=4,
    max_model_len=8192,
    max_input_tokens=6000,
    max_batch_prefill_tokens=8192,
    max_concurrent_requests=64,
    dtype="bfloat16",
)


def test_vllm_environment_uses_sm_vllm_flags() -> None:
    env = container_environment("vllm", model=MODEL_DIR, **LIMITS)  # type: ignore[arg-type]
    assert env["SM_VLLM_MODEL"] == MODEL_DIR
    assert env["SM_VLLM_TENSOR_PARALLEL_SIZE"] == "4"
    assert env["SM_VLLM_MAX_MODEL_LEN"] == "8192"
    assert env["SM_VLLM_MAX_NUM_BATCHED_TOKENS"] == "8192"
    assert env["SM_VLLM_SERVED_MODEL_NAME"] == "llama"
    assert "SM_VLLM_REVISION" not in env  # weights from S3: no Hub revision


def test_lmi_environment_uses_options_and_hub_revision() -> None:
    env = container_environment("lmi", model="meta-llama/Llama-3.1-8B-Instruct", **LIMITS)  # type: ignore[arg-type]
    assert env["HF_MODEL_ID"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert env["OPTION_TENSOR_PARALLEL_DEGREE"] == "4"
    assert env["OPTION_MAX_MODEL_LEN"] == "8192"
    assert env["OPTION_MAX_ROLLING_BATCH_SIZE"] == "64"
    assert env["OPTION_REVISION"] == LIMITS["revision"]


def test_tgi_rejects_prefill_below_input_tokens() -> None:
    with pytest.raises(ValueError, match="TGI needs max_batch_prefill_tokens"):
        container_environment("tgi", model=MODEL_DIR, **{**LIMITS, "max_batch_prefill_tokens": 4096})  # type: ignore[arg-type]


def test_grant_invoke_allows_only_invoking_this_endpoint() -> None:
    s, vpc = stack()
    ep = endpoint(s, vpc)
    caller = cdk.aws_iam.Role(s, "Caller", assumed_by=cdk.aws_iam.AccountRootPrincipal())
    ep.grant_invoke(caller)
    policies = Template.from_stack(s).find_resources("AWS::IAM::Policy")
    (caller_policy,) = [p for p in policies.values() if p["Properties"]["Roles"] == [{"Ref": s.get_logical_id(caller.node.default_child)}]]
    (statement,) = caller_policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == ["sagemaker:InvokeEndpoint", "sagemaker:InvokeEndpointWithResponseStream"]
    assert statement["Resource"] == {"Ref": s.get_logical_id(ep.endpoint)}


# --- updates: instance type and count (issue 11 point 7) ----------------------------------------------


def create_only(type_: str) -> set[str]:
    """createOnlyProperties of a resource type, from the CloudFormation resource schema cfn-lint ships."""
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("eu-west-1", type_).schema
    return {p.removeprefix("/properties/") for p in schema.get("createOnlyProperties", [])}


def endpoint_and_target(**overrides: Any) -> tuple[dict, dict]:
    s, vpc = stack()
    ep = endpoint(s, vpc, **overrides)
    SageMakerVariantScaling(s, "Scaling", endpoint=ep.endpoint, variant_name=ep.variant_name, target_invocations_per_instance=10)
    t = Template.from_stack(s)
    (e,) = t.find_resources("AWS::SageMaker::Endpoint").values()
    (target,) = t.find_resources("AWS::ApplicationAutoScaling::ScalableTarget").values()
    return e["Properties"], target["Properties"]


def test_a_new_instance_type_is_a_new_endpoint_with_a_new_scalable_target() -> None:
    """UpdateEndpoint to another instance type fails while the variant is a registered scalable target
    (AWS: "Update endpoints that use auto scaling"); with the type in the name, CloudFormation replaces the
    endpoint (EndpointName is create-only) and the target (ResourceId is create-only) instead."""
    before, target_before = endpoint_and_target(instance_type="ml.g5.2xlarge")
    after, target_after = endpoint_and_target(instance_type="ml.g6e.2xlarge")
    assert "EndpointName" in create_only("AWS::SageMaker::Endpoint")
    assert "ResourceId" in create_only("AWS::ApplicationAutoScaling::ScalableTarget")
    assert (before["EndpointName"], after["EndpointName"]) == ("test-llm-g5-2xlarge", "test-llm-g6e-2xlarge")
    # The target names the endpoint by its attribute, so its ResourceId changes with the name.
    assert "EndpointName" in str(target_after["ResourceId"]) and target_before["ResourceId"] == target_after["ResourceId"]


def test_a_new_count_updates_the_endpoint_in_place() -> None:
    """Same name: CloudFormation calls UpdateEndpoint with a new endpoint config, which AWS allows for a
    registered variant as long as the instance type stays the same."""
    one, _ = endpoint_and_target(instance_count=1)
    two, _ = endpoint_and_target(instance_count=2)
    assert one["EndpointName"] == two["EndpointName"]


def test_an_endpoint_name_too_long_with_its_instance_type_is_refused() -> None:
    s, vpc = stack()
    with pytest.raises(ValueError, match=r"at most 63 characters, the instance type included"):
        endpoint(s, vpc, endpoint_name="a" * 55)


def test_off_hours_schedule_is_validated_where_it_is_built() -> None:
    """One OffHours for ECS, SageMaker and the config: a bad cron fails when it is constructed."""
    with pytest.raises(pydantic.ValidationError, match="hours '25' is outside 0-23"):
        OffHours(scale_down_cron="0 25 ? * MON-FRI *")
    s, vpc = stack()
    ep = endpoint(s, vpc)
    SageMakerVariantScaling(s, "Scaling", endpoint=ep.endpoint, variant_name=ep.variant_name,
                            target_invocations_per_instance=10, off_hours=OffHours(), off_hours_capacity=1)  # fmt: skip
    actions = Template.from_stack(s).find_resources("AWS::ApplicationAutoScaling::ScalableTarget")
    (target,) = actions.values()
    schedules = {a["ScheduledActionName"]: a for a in target["Properties"]["ScheduledActions"]}
    assert {a["Schedule"] for a in schedules.values()} == {"cron(0 19 ? * MON-FRI *)", "cron(0 7 ? * MON-FRI *)"}


def test_container_environment_needs_only_the_model_its_name_and_length() -> None:
    env = container_environment("tgi", model=MODEL_DIR, served_name="m", max_model_len=8192)
    # Three quarters of the context for the prompt, a whole prompt per prefill batch (TGI's rule holds).
    assert env["MAX_INPUT_TOKENS"] == "6144" and env["MAX_BATCH_PREFILL_TOKENS"] == "8192"
    assert env["SM_NUM_GPUS"] == "1" and env["MAX_CONCURRENT_REQUESTS"] == "128" and "DTYPE" not in env
