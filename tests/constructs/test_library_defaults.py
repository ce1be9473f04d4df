"""What an importing team gets without this repository's app: the packaged gateway and pre-warm
defaults, a GPU cluster that synthesizes without credentials, and instance types the catalog lacks."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk.assertions import Annotations, Match, Template

from llm_hosting_constructs import assets
from llm_hosting_constructs.gateway import contract
from llm_hosting_constructs.gpu_cluster import GPU_AMI_PARAMETER, GpuCluster
from llm_hosting_constructs.inference_task import InferenceTask
from llm_hosting_constructs.prewarm import ModelPrewarm
from llm_hosting_constructs.sizing import InstanceType, SizingError, check, get_model, plan
from tests.cfn import ROOT

from .test_serving_constructs import PRIVATE, SHA, cache_and_secrets, task_kwargs

ACCOUNT, REGION = "123456789012", "eu-west-1"
AMI_KEY = f"ssm:account={ACCOUNT}:parameterName={GPU_AMI_PARAMETER}:region={REGION}"


def vpc_stack(context: dict | None = None, env: cdk.Environment | None = None) -> tuple[cdk.Stack, ec2.Vpc]:
    app = cdk.App(context=context or {})
    s = cdk.Stack(app, "S", env=env)
    vpc = ec2.Vpc(s, "Vpc", max_azs=2, nat_gateways=0, subnet_configuration=[
        ec2.SubnetConfiguration(name="w", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)])  # fmt: skip
    return s, vpc


def synth(s: cdk.Stack) -> tuple[list[str], dict, list[str]]:
    """(context keys the app asks the CLI to look up, the stack's template, its error annotations)."""
    template = Template.from_stack(s).to_json()
    errors = [e.entry.data for e in Annotations.from_stack(s).find_error("*", Match.any_value())]
    manifest = json.loads((Path(cdk.Stage.of(s).synth().directory) / "manifest.json").read_text())
    missing = [m["key"] for m in manifest.get("missing", [])]
    return missing, template, errors


# --------------------------------------------------------------------------- packaged files


def test_packaged_files_are_the_repository_s_in_an_editable_install() -> None:
    assert assets.gateway_dir() == ROOT / "containers" / "gateway"
    assert assets.prewarm_script() == (ROOT / "containers" / "prewarm" / "prewarm.py").read_text()
    assert contract.GATEWAY_PORT == 8080 and contract.HEALTH_PATH == "/health"
    assert Path(contract.__file__) == ROOT / "containers/gateway/app/core/contract.py"


def test_inference_task_defaults_to_the_packaged_gateway() -> None:
    s, vpc = vpc_stack(env=cdk.Environment(account=ACCOUNT, region=REGION))
    kwargs = task_kwargs(s, vpc)
    for name in ("gateway_image", "gateway_port", "gateway_healthcheck_command", "gateway_environment"):
        del kwargs[name]
    InferenceTask(s, "Task", **kwargs)
    assembly = cdk.Stage.of(s).synth()
    template = assembly.get_stack_artifact(s.artifact_id).template
    (task,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::ECS::TaskDefinition"]
    (gateway,) = [c for c in task["Properties"]["ContainerDefinitions"] if c["Name"] == "gateway"]
    assert gateway["PortMappings"] == [{"ContainerPort": 8080, "Protocol": "tcp"}]
    assert gateway["HealthCheck"]["Command"] == list(contract.CONTAINER_HEALTHCHECK_COMMAND)
    # An image asset that cdk-assets builds at deploy, staged from the gateway's Docker build context:
    # what its .dockerignore lets through, the contract module included.
    assert "container-assets" in json.dumps(gateway["Image"])
    (staged,) = [p for p in Path(assembly.directory).glob("asset.*") if (p / "Dockerfile").is_file()]
    assert (staged / "app" / "core" / "contract.py").read_text() == Path(contract.__file__).read_text()
    assert not list(staged.rglob("__pycache__"))


def test_prewarm_defaults_to_the_packaged_script() -> None:
    s, vpc = vpc_stack(env=cdk.Environment(account=ACCOUNT, region=REGION))
    cache, secrets = cache_and_secrets(s, vpc)
    ModelPrewarm(s, "P", vpc=vpc, subnets=PRIVATE, image=ecs.ContainerImage.from_registry("vllm/vllm-openai:v0.24.0"),
                 model_id="m/x", revision=SHA, hf_token=secrets.hf_token, model_cache=cache)  # fmt: skip
    (task,) = Template.from_stack(s).find_resources("AWS::ECS::TaskDefinition").values()
    command = task["Properties"]["ContainerDefinitions"][0]["Command"]
    assert command[0] == assets.prewarm_script()


# --------------------------------------------------------------------------- GPU AMI without credentials


def test_machine_image_prop_needs_no_lookup_and_no_env() -> None:
    s, vpc = vpc_stack()
    image = ec2.MachineImage.generic_linux({REGION: "ami-0abcdef0123456789"})
    GpuCluster(s, "G", vpc=vpc, subnets=PRIVATE, instance_type="g6.2xlarge", max_instances=1, machine_image=image)
    missing, template, errors = synth(s)
    assert errors == [] and missing == []
    assert "ami-0abcdef0123456789" in json.dumps(template)


def test_default_ami_in_a_stack_without_env_is_one_error_line() -> None:
    """`cdk init`'s env-less stack: was a jsii traceback ("Cannot retrieve value from context provider ssm")."""
    s, vpc = vpc_stack()
    GpuCluster(s, "G", vpc=vpc, subnets=PRIVATE, instance_type="g6.2xlarge", max_instances=1)
    _, _, (message,) = synth(s)
    assert "\n" not in message and message.startswith("GpuCluster: stack S has no account/region")
    assert "env=Environment(account=..., region=...)" in message and "machine_image" in message


def test_default_ami_is_recorded_as_missing_context_for_the_cli_to_look_up() -> None:
    s, vpc = vpc_stack(env=cdk.Environment(account=ACCOUNT, region=REGION))
    GpuCluster(s, "G", vpc=vpc, subnets=PRIVATE, instance_type="g6.2xlarge", max_instances=1)
    missing, _, errors = synth(s)
    assert errors == [] and AMI_KEY in missing  # (the VPC asks for its AZs as well)


def test_failed_lookup_names_the_context_key_and_the_command() -> None:
    """What the CLI hands back after a lookup without credentials ($providerError, aws/aws-cdk#3772)."""
    failed = {"$providerError": "Need to perform AWS calls for account 123456789012, but no credentials have been configured", "$dontSaveContext": True}  # fmt: skip
    s, vpc = vpc_stack({AMI_KEY: failed}, env=cdk.Environment(account=ACCOUNT, region=REGION))
    GpuCluster(s, "G", vpc=vpc, subnets=PRIVATE, instance_type="g6.2xlarge", max_instances=1)
    _, _, (message,) = synth(s)
    assert "\n" not in message and f"context key {AMI_KEY!r} is not set" in message
    assert "run `npx cdk synth` once with credentials for account 123456789012" in message
    assert "no credentials have been configured" in message and "machine_image" in message


# --------------------------------------------------------------------------- instance types the catalog lacks


def test_an_unknown_instance_type_can_be_described() -> None:
    g7 = InstanceType.describe("g7.2xlarge", gpu_count=1, gpu_memory_gib=96, vcpus=8, memory_gib=64, local_nvme_gb=450)
    assert g7.family == "g7" and g7.has_local_nvme and g7.gpu.cuda_total_mib == int(96 * 1024 * 0.91)
    s, vpc = vpc_stack()
    with pytest.raises(SizingError, match="not in the GPU catalog"):
        GpuCluster(s, "A", vpc=vpc, subnets=PRIVATE, instance_type="g7.2xlarge", max_instances=1)
    GpuCluster(s, "B", vpc=vpc, subnets=PRIVATE, instance_type=g7, max_instances=1,
               machine_image=ec2.MachineImage.generic_linux({REGION: "ami-0abcdef0123456789"}))  # fmt: skip
    (template,) = Template.from_stack(s).find_resources("AWS::EC2::LaunchTemplate").values()
    assert template["Properties"]["LaunchTemplateData"]["InstanceType"] == "g7.2xlarge"
    # The sizing math works on it too: an 8B model in bf16 fits 96 GB.
    check(plan(get_model("meta-llama/Llama-3.1-8B-Instruct"), g7, max_model_len=8192))


def test_describe_rejects_nonsense() -> None:
    with pytest.raises(SizingError, match="must be >= 1"):
        InstanceType.describe("x.large", gpu_count=0, gpu_memory_gib=24, vcpus=4, memory_gib=16)
