"""The serving constructs as another team would use them: contradictory props are rejected first thing,
and the defaults are the safe ones. Each test synthesizes at most one tiny stack in-process."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_efs as efs
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Template

from llm_hosting_constructs.checkov import skip_checkov
from llm_hosting_constructs.gpu_cluster import GpuCluster
from llm_hosting_constructs.inference_service import InferenceService, OffHours, QueueDepthMetric, unix_cron
from llm_hosting_constructs.inference_task import InferenceTask
from llm_hosting_constructs.internal_alb import InternalAlb
from llm_hosting_constructs.log_groups import access_log_bucket
from llm_hosting_constructs.model_cache import ModelCache
from llm_hosting_constructs.prewarm import FILL_TIMEOUT, ModelCacheFill, ModelPrewarm
from llm_hosting_constructs.serving_secrets import ServingSecrets
from llm_hosting_constructs.sizing import get_model, model_ids
from llm_hosting_constructs.vllm import VllmSettings, vllm_serve_args

ENV = cdk.Environment(account="123456789012", region="eu-west-1")
AMI_KEY = (
    "ssm:account=123456789012:parameterName=/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/"
    "image_id:region=eu-west-1"
)
SHA = "0e9e39f249a16976918f6564b8830bc894c89659"


def stack() -> tuple[cdk.Stack, ec2.Vpc]:
    app = cdk.App(context={AMI_KEY: "ami-0123456789abcdef0"})
    s = cdk.Stack(app, "S", env=ENV)
    vpc = ec2.Vpc(s, "Vpc", max_azs=2, nat_gateways=0, subnet_configuration=[
        ec2.SubnetConfiguration(name="w", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)])  # fmt: skip
    return s, vpc


PRIVATE = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)


def cache_and_secrets(s: cdk.Stack, vpc: ec2.Vpc) -> tuple[ModelCache, ServingSecrets]:
    cache = ModelCache(s, "Cache", vpc=vpc, subnets=PRIVATE)
    return cache, ServingSecrets(s, "Secrets", key=cache.key)


def task_kwargs(s: cdk.Stack, vpc: ec2.Vpc, **overrides) -> dict:
    cache, secrets = cache_and_secrets(s, vpc)
    kwargs = dict(
        vllm_image=ecs.ContainerImage.from_registry("vllm/vllm-openai:v0.24.0"),
        vllm_args=["m"],
        vllm_environment={"HF_HOME": "/mnt/hf-cache"},
        gpu_count=1,
        hf_token=secrets.hf_token,
        model_cache=cache,
        hf_hub_offline=True,
        gateway_image=ecs.ContainerImage.from_registry("gateway:1"),
        gateway_port=8080,
        gateway_environment={"GATEWAY_PORT": "8080"},
        gateway_secrets={"GATEWAY_API_KEYS": secrets.api_keys},
        gateway_healthcheck_command=["CMD", "true"],
        cpu_units=8192,
        memory_mib=30000,
    )
    kwargs.update(overrides)
    return kwargs


# --------------------------------------------------------------------------- vLLM command line


def test_vllm_args_pin_revision_and_bind_loopback() -> None:
    args = vllm_serve_args(VllmSettings(model_id="org/m", revision=SHA, served_model_name="m", max_model_len=4096))
    assert args[0] == "org/m"
    assert args[args.index("--revision") + 1] == args[args.index("--tokenizer-revision") + 1] == SHA
    assert args[args.index("--host") + 1] == "127.0.0.1"


@pytest.mark.parametrize("method,passed", [("awq", False), ("gptq", False), ("fp8", True), ("none", False)])
def test_only_fp8_is_passed_as_quantization(method: str, passed: bool) -> None:
    """awq/gptq are read from the checkpoint (so vLLM picks Marlin); fp8 quantizes a bf16 checkpoint on load."""
    args = vllm_serve_args(VllmSettings(model_id="o/m", revision=SHA, served_model_name="m", max_model_len=4096, quantization=method))  # type: ignore[arg-type]
    assert ("--quantization" in args) == passed


def test_chunked_prefill_off_is_explicit() -> None:
    args = vllm_serve_args(VllmSettings(model_id="o/m", revision=SHA, served_model_name="m", max_model_len=4096, enable_chunked_prefill=False))
    assert "--no-enable-chunked-prefill" in args and "--enable-chunked-prefill" not in args


def test_tool_calling_flags_only_with_a_parser() -> None:
    """vLLM answers 400 to `tools` with tool_choice auto unless both flags are given (vLLM, "Tool Calling")."""
    plain = vllm_serve_args(VllmSettings(model_id="o/m", revision=SHA, served_model_name="m", max_model_len=4096))
    assert "--enable-auto-tool-choice" not in plain and "--tool-call-parser" not in plain
    args = vllm_serve_args(VllmSettings(model_id="o/m", revision=SHA, served_model_name="m", max_model_len=4096, tool_call_parser="hermes"))
    assert "--enable-auto-tool-choice" in args and args[args.index("--tool-call-parser") + 1] == "hermes"


def test_vllm_settings_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="tensor_parallel_size"):
        VllmSettings(model_id="o/m", revision=SHA, served_model_name="m", max_model_len=1, tensor_parallel_size=0)
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        VllmSettings(model_id="o/m", revision=SHA, served_model_name="m", max_model_len=1, gpu_memory_utilization=1.5)
    with pytest.raises(ValueError, match="tool_call_parser 'llama3' is not one of vLLM's"):
        VllmSettings(model_id="o/m", revision=SHA, served_model_name="m", max_model_len=1, tool_call_parser="llama3")


# --------------------------------------------------------------------------- ModelCache / ServingSecrets


def test_model_cache_rejects_provisioned_throughput() -> None:
    s, vpc = stack()
    with pytest.raises(ValueError, match="PROVISIONED"):
        ModelCache(s, "C", vpc=vpc, subnets=PRIVATE, throughput_mode=efs.ThroughputMode.PROVISIONED)


def test_model_cache_defaults_retain_and_grant_read_only_mount() -> None:
    s, vpc = stack()
    cache = ModelCache(s, "C", vpc=vpc, subnets=PRIVATE)
    role = cdk.aws_iam.Role(s, "R", assumed_by=cdk.aws_iam.ServicePrincipal("ecs-tasks.amazonaws.com"))
    cache.grant_mount(role, write=False)
    t = Template.from_stack(s)
    t.has_resource("AWS::EFS::FileSystem", {"DeletionPolicy": "Retain"})
    t.has_resource("AWS::KMS::Key", {"DeletionPolicy": "Retain"})
    (policy,) = t.find_resources("AWS::IAM::Policy").values()
    assert policy["Properties"]["PolicyDocument"]["Statement"][0]["Action"] == "elasticfilesystem:ClientMount"


def test_existing_hf_token_is_referenced_not_created() -> None:
    s, vpc = stack()
    cache = ModelCache(s, "C", vpc=vpc, subnets=PRIVATE)
    secrets = ServingSecrets(s, "Sec", key=cache.key, hf_token_secret_name="team/hf-token")
    assert secrets.hf_token is not None and "team/hf-token" in secrets.hf_token.secret_arn
    descriptions = [r["Properties"]["Description"] for r in Template.from_stack(s).find_resources("AWS::SecretsManager::Secret").values()]
    assert len(descriptions) == 1 and "Gateway API keys" in descriptions[0]


def test_blank_hf_token_name_is_rejected() -> None:
    s, vpc = stack()
    cache = ModelCache(s, "C", vpc=vpc, subnets=PRIVATE)
    with pytest.raises(ValueError, match="blank"):
        ServingSecrets(s, "Sec", key=cache.key, hf_token_secret_name=" ")


# --------------------------------------------------------------------------- GpuCluster


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"instance_type": "ml.g5.2xlarge"}, "SageMaker type"),
        ({"root_volume_gib": 50}, "too small for the vLLM image"),
        ({"max_instances": 0}, "max_instances"),
    ],
)
def test_gpu_cluster_rejects_contradictory_props(kwargs: dict, message: str) -> None:
    s, vpc = stack()
    props = {"vpc": vpc, "subnets": PRIVATE, "instance_type": "g6.2xlarge", "max_instances": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        GpuCluster(s, "G", **props)


def test_gpu_cluster_unknown_instance_names_the_catalog() -> None:
    s, vpc = stack()
    with pytest.raises(ValueError, match="not in the GPU catalog"):
        GpuCluster(s, "G", vpc=vpc, subnets=PRIVATE, instance_type="g4dn.xlarge", max_instances=1)


def test_gpu_cluster_without_agent_config_grants_no_metric_writes() -> None:
    s, vpc = stack()
    GpuCluster(s, "G", vpc=vpc, subnets=PRIVATE, instance_type="g6.2xlarge", max_instances=2)
    assert "cloudwatch:PutMetricData" not in json.dumps(Template.from_stack(s).to_json())


# --------------------------------------------------------------------------- InferenceTask


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"gpu_count": 0}, "gpu_count"),
        ({"stop_timeout": cdk.Duration.seconds(300)}, "120 s"),
        ({"gateway_cpu_units": 8192}, "leave CPU and memory for vLLM"),
        ({"vllm_environment": {"HF_TOKEN": "hf_x"}}, "HF_TOKEN is a secret"),
        ({"gateway_environment": {"GATEWAY_API_KEYS": "{}"}}, "both as plain environment and as secret"),
        ({"shm_size_mib": 40000}, "shm_size_mib"),
    ],
)
def test_inference_task_rejects_contradictory_props(overrides: dict, message: str) -> None:
    s, vpc = stack()
    kwargs = task_kwargs(s, vpc)
    kwargs.update(overrides)
    with pytest.raises(ValueError, match=message):
        InferenceTask(s, "T", **kwargs)


def test_inference_task_mounts_read_write_when_online() -> None:
    s, vpc = stack()
    InferenceTask(s, "T", **task_kwargs(s, vpc, hf_hub_offline=False))
    (task,) = Template.from_stack(s).find_resources("AWS::ECS::TaskDefinition").values()
    (vllm,) = [c for c in task["Properties"]["ContainerDefinitions"] if c["Name"] == "vllm"]
    assert vllm["MountPoints"][0]["ReadOnly"] is False
    assert vllm["LinuxParameters"]["SharedMemorySize"] == min(20480, (30000 - 2048) // 4)


# --------------------------------------------------------------------------- InternalAlb


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"idle_timeout": cdk.Duration.seconds(5000)}, "idle_timeout"),
        ({"deregistration_delay": cdk.Duration.seconds(7200)}, "deregistration_delay"),
        ({"health_check_path": "health"}, "start with '/'"),
    ],
)
def test_internal_alb_rejects_out_of_range_props(kwargs: dict, message: str) -> None:
    s, vpc = stack()
    props = {"vpc": vpc, "subnets": PRIVATE, "target_port": 8080, "health_check_path": "/health", **kwargs}
    with pytest.raises(ValueError, match=message):
        InternalAlb(s, "A", **props)


def test_internal_alb_is_closed_until_a_caller_is_allowed() -> None:
    s, vpc = stack()
    alb = InternalAlb(s, "A", vpc=vpc, subnets=PRIVATE, target_port=8080, health_check_path="/health")
    caller = ec2.SecurityGroup(s, "Caller", vpc=vpc, allow_all_outbound=False)
    alb.allow_from(caller, "front door")
    t = Template.from_stack(s)
    assert "0.0.0.0/0" not in json.dumps(t.find_resources("AWS::EC2::SecurityGroup"))  # listener never opened
    (rule,) = t.find_resources("AWS::EC2::SecurityGroupIngress").values()
    assert rule["Properties"]["FromPort"] == 80 and "Caller" in rule["Properties"]["SourceSecurityGroupId"]["Fn::GetAtt"][0]


def test_internal_alb_https_with_a_certificate() -> None:
    s, vpc = stack()
    arn = "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
    alb = InternalAlb(s, "A", vpc=vpc, subnets=PRIVATE, target_port=8080, health_check_path="/health", certificate_arn=arn)
    assert alb.port == 443
    (listener,) = Template.from_stack(s).find_resources("AWS::ElasticLoadBalancingV2::Listener").values()
    assert listener["Properties"]["Protocol"] == "HTTPS" and "Metadata" not in listener  # no checkov skip needed


def test_internal_alb_access_logs_when_given_a_bucket() -> None:
    s, vpc = stack()
    bucket = s3.Bucket(s, "Logs", enforce_ssl=True)
    InternalAlb(s, "A", vpc=vpc, subnets=PRIVATE, target_port=8080, health_check_path="/health", access_log_bucket=bucket)
    (lb,) = Template.from_stack(s).find_resources("AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    attrs = {a["Key"]: a["Value"] for a in lb["Properties"]["LoadBalancerAttributes"]}
    assert attrs["access_logs.s3.enabled"] == "true"


def test_access_log_bucket_is_what_alb_log_delivery_accepts_and_nothing_public() -> None:
    s, _ = stack()
    bucket = access_log_bucket(s, "AlbAccessLogs", removal_policy=cdk.RemovalPolicy.DESTROY)
    assert bucket.node.path == "S/AlbAccessLogs"  # in the caller's scope: its logical id is the caller's to keep
    (props,) = [r["Properties"] for r in Template.from_stack(s).find_resources("AWS::S3::Bucket").values()]
    # SSE-S3: "the only server-side encryption option that's supported is Amazon S3-managed keys (SSE-S3)"
    # ("Enable access logs for your Application Load Balancer",
    # https://docs.aws.amazon.com/elasticloadbalancing/latest/application/enable-access-logging.html).
    rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert rule == {"SSEAlgorithm": "AES256"}
    assert set(props["PublicAccessBlockConfiguration"].values()) == {True}
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    (lifecycle,) = props["LifecycleConfiguration"]["Rules"]
    assert lifecycle["ExpirationInDays"] == 365 and lifecycle["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30
    skips = bucket.node.default_child.get_metadata("checkov")["skip"]  # type: ignore[union-attr]
    assert [s_["id"] for s_ in skips] == ["CKV_AWS_18"]


# --------------------------------------------------------------------------- InferenceService


def service_kwargs(s: cdk.Stack, vpc: ec2.Vpc, **overrides) -> dict:
    gpu = GpuCluster(s, "G", vpc=vpc, subnets=PRIVATE, instance_type="g6.2xlarge", max_instances=3)
    task = InferenceTask(s, "T", **task_kwargs(s, vpc))
    alb = InternalAlb(s, "A", vpc=vpc, subnets=PRIVATE, target_port=8080, health_check_path="/health")
    kwargs = dict(
        cluster=gpu.cluster, task_definition=task.task_definition, capacity_provider=gpu.capacity_provider,
        vpc=vpc, subnets=PRIVATE, target_group=alb.target_group, container_name="gateway", container_port=8080,
        desired_capacity=1, min_capacity=1, max_capacity=2, scale_requests_per_target=300,
        queue_depth=QueueDepthMetric("LlmHosting/Gateway", "QueueDepth", {"Service": "s", "Model": "m"}),
        scale_queue_depth=8, auto_scaling_group=gpu.auto_scaling_group,
    )  # fmt: skip
    kwargs.update(overrides)
    return kwargs


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"health_check_grace_period": cdk.Duration.seconds(300)}, "600..1200"),
        ({"min_capacity": 3}, "min_capacity <= desired_capacity <= max_capacity"),
        ({"off_hours": OffHours(), "auto_scaling_group": None}, "GPU hosts idle"),
        ({"scale_queue_depth": 0}, ">= 1"),
    ],
)
def test_inference_service_rejects_contradictory_props(overrides: dict, message: str) -> None:
    s, vpc = stack()
    with pytest.raises(ValueError, match=message):
        InferenceService(s, "Svc", **service_kwargs(s, vpc, **overrides))


@pytest.mark.parametrize(
    "aws,unix",
    [
        ("0 19 ? * MON-FRI *", "0 19 * * MON-FRI"),
        ("30 6 ? * 2-6 *", "30 6 * * MON-FRI"),  # AWS days 1-7 are SUN-SAT
        ("0 0 1 * ? *", "0 0 1 * *"),
    ],
)
def test_unix_cron_for_auto_scaling(aws: str, unix: str) -> None:
    assert unix_cron(aws) == unix


def test_unix_cron_rejects_a_year() -> None:
    with pytest.raises(ValueError, match="year"):
        unix_cron("0 19 ? * MON-FRI 2027")


# --------------------------------------------------------------------------- ModelPrewarm


def test_prewarm_rejects_a_branch_and_an_empty_script() -> None:
    s, vpc = stack()
    cache, secrets = cache_and_secrets(s, vpc)
    common = dict(vpc=vpc, subnets=PRIVATE, image=ecs.ContainerImage.from_registry("x:1"), model_id="o/m",
                  hf_token=secrets.hf_token, model_cache=cache)  # fmt: skip
    with pytest.raises(ValueError, match="commit sha"):
        ModelPrewarm(s, "P1", script="print(1)", revision="main", **common)
    with pytest.raises(ValueError, match="script is empty"):
        ModelPrewarm(s, "P2", script=" ", revision=SHA, **common)


def test_skip_checkov_needs_a_specific_reason() -> None:
    s, _ = stack()
    bucket = s3.Bucket(s, "B")
    with pytest.raises(ValueError, match="specific"):
        skip_checkov(bucket, "CKV_AWS_18", "because")
    skip_checkov(bucket, "CKV_AWS_18", "A log bucket's own access would need yet another bucket.")
    (resource,) = Template.from_stack(s).find_resources("AWS::S3::Bucket").values()
    assert resource["Metadata"]["checkov"]["skip"] == [
        {"id": "CKV_AWS_18", "comment": "A log bucket's own access would need yet another bucket."}
    ]


# --------------------------------------------------------------------------- the pre-warm script


def prewarm_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "containers" / "prewarm" / "prewarm.py"
    spec = importlib.util.spec_from_file_location("prewarm_script", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_prewarm_fetches_safetensors_only_when_the_repo_has_them() -> None:
    script = prewarm_script()
    files = ["config.json", "model-00001-of-00002.safetensors", "pytorch_model.bin", "original/consolidated.00.pth", "tokenizer.json"]
    patterns = script.ignore_patterns(files)
    assert script.weight_files(files, patterns) == ["model-00001-of-00002.safetensors"]
    legacy = ["config.json", "pytorch_model.bin"]
    assert script.weight_files(legacy, script.ignore_patterns(legacy)) == ["pytorch_model.bin"]


def test_prewarm_refuses_a_branch(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import sys
    import types

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(HfApi=None, snapshot_download=None))
    monkeypatch.setenv("MODEL_ID", "o/m")
    monkeypatch.setenv("MODEL_REVISION", "main")
    assert prewarm_script().main() == 2
    assert "40-character commit sha" in capsys.readouterr().err


def test_prewarm_from_s3_writes_the_hub_snapshot_layout(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    objects = {"m/r/config.json": b"{}", "m/r/model.safetensors": b"w" * 10, "m/r/pytorch_model.bin": b"b",
               "m/r/original/consolidated.pth": b"x"}  # fmt: skip

    class FakeS3:
        def get_paginator(self, _name):
            contents = [{"Key": k, "Size": len(v)} for k, v in objects.items()]
            return types.SimpleNamespace(paginate=lambda Bucket, Prefix: [{"Contents": contents}])

        def download_file(self, bucket, key, path):
            assert bucket == "bkt"
            with open(path, "wb") as f:
                f.write(objects[key])

    monkeypatch.setitem(sys.modules, "boto3", types.SimpleNamespace(client=lambda _service: FakeS3()))
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    script = prewarm_script()
    assert script.from_s3("s3://bkt/m/r/", "org/model", SHA) == 0
    snapshot = tmp_path / "hub" / "models--org--model" / "snapshots" / SHA
    assert sorted(p.name for p in snapshot.iterdir()) == ["config.json", "model.safetensors"]
    objects["m/r/model.safetensors"] = b"changed!!!"  # same size: a second run downloads nothing
    assert script.from_s3("s3://bkt/m/r/", "org/model", SHA) == 0
    assert (snapshot / "model.safetensors").read_bytes() == b"w" * 10


def test_prewarm_rejects_a_malformed_s3_source() -> None:
    s, vpc = stack()
    cache, secrets = cache_and_secrets(s, vpc)
    with pytest.raises(ValueError, match="s3://bucket/prefix/"):
        ModelPrewarm(s, "P", vpc=vpc, subnets=PRIVATE, image=ecs.ContainerImage.from_registry("x:1"), script="x",
                     model_id="o/m", revision=SHA, hf_token=secrets.hf_token, model_cache=cache,
                     model_s3_uri="s3://bucket/no-slash")  # fmt: skip


# --------------------------------------------------------------------------- ModelCacheFill (deploy-time pre-warm)

# The budget docs/deploy-order.md states: ~10 minutes of the hour for Fargate to pull and unpack the
# vLLM image, the rest for the download; the rate it needs must stay under what the first deploy is
# expected to see (a deploy assumption to confirm).
IMAGE_PULL_S = 600
ASSUMED_FILL_MIBPS = 100


def test_fill_timeout_fits_the_largest_catalog_model() -> None:
    largest = max((get_model(m) for m in model_ids()), key=lambda m: m.parameters)
    assert largest.hf_id == "Qwen/Qwen2.5-72B-Instruct"
    weights_bytes = largest.parameters * 2  # bf16, as the catalog's largest is served unquantized
    needed_mibps = weights_bytes / 2**20 / (FILL_TIMEOUT.to_seconds() - IMAGE_PULL_S)
    assert 40 < needed_mibps < ASSUMED_FILL_MIBPS  # 46 MiB/s


def fill(total_timeout: cdk.Duration = FILL_TIMEOUT) -> Template:
    s, vpc = stack()
    cache, secrets = cache_and_secrets(s, vpc)
    prewarm = ModelPrewarm(s, "P", vpc=vpc, subnets=PRIVATE, image=ecs.ContainerImage.from_registry("x:1"), script="x",
                           model_id="o/m", revision=SHA, hf_token=None, model_cache=cache)  # fmt: skip
    cluster = ecs.Cluster(s, "Cluster", vpc=vpc)
    ModelCacheFill(s, "Fill", prewarm=prewarm, cluster=cluster, total_timeout=total_timeout)
    return Template.from_stack(s)


def test_fill_refuses_more_than_cloudformations_hour() -> None:
    with pytest.raises(ValueError, match="at most 1 hour"):
        fill(cdk.Duration.minutes(61))


def test_fill_without_a_token_sends_none() -> None:
    """A public model: no HF_TOKEN secret at all (an invalid token gets 401 even on public repos)."""
    t = fill()
    (task,) = t.find_resources("AWS::ECS::TaskDefinition").values()
    (c,) = task["Properties"]["ContainerDefinitions"]
    assert "Secrets" not in c and "HF_TOKEN" not in json.dumps(c)
    (resource,) = t.find_resources("Custom::ModelCacheFill").values()
    assert resource["Properties"]["ModelId"] == "o/m" and resource["Properties"]["Revision"] == SHA


def test_fill_handlers_and_framework_use_no_managed_policy() -> None:
    t = fill()
    roles = t.find_resources("AWS::IAM::Role")
    lambda_roles = [r for r in roles.values() if "lambda.amazonaws.com" in json.dumps(r["Properties"]["AssumeRolePolicyDocument"])]
    assert len(lambda_roles) == 4  # on_event, is_complete, framework onEvent, framework isComplete/onTimeout
    assert all("ManagedPolicyArns" not in r["Properties"] for r in lambda_roles)
