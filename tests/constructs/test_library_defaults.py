"""What an importing team gets without this repository's app: the packaged gateway and pre-warm
defaults, a GPU cluster that synthesizes without credentials, and instance types the catalog lacks."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk.assertions import Annotations, Match, Template
from constructs import Construct

import llm_hosting_constructs

from llm_hosting_constructs import assets
from llm_hosting_constructs.affinity import GatewayAffinity
from llm_hosting_constructs.gateway import contract
from llm_hosting_constructs.gpu_cluster import GPU_AMI_PARAMETER, GpuCluster
from llm_hosting_constructs.inference_service import InferenceService, QueueDepthMetric
from llm_hosting_constructs.inference_task import InferenceTask
from llm_hosting_constructs.internal_alb import InternalAlb
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


# --------------------------------------------------------------------------- few required props


def public_constructs() -> list[type[Construct]]:
    found = []
    for info in pkgutil.walk_packages(llm_hosting_constructs.__path__, f"{llm_hosting_constructs.__name__}."):
        module = importlib.import_module(info.name)
        found += [
            c for name, c in vars(module).items()
            if inspect.isclass(c) and issubclass(c, Construct) and c.__module__ == module.__name__
            and not name.startswith("_")
        ]  # fmt: skip
    return found


def test_every_public_construct_takes_at_most_six_required_props() -> None:
    constructs = public_constructs()
    assert {"InferenceService", "InferenceTask", "ModelPrewarm", "SageMakerEndpoint"} <= {c.__name__ for c in constructs}
    required = {}
    for construct in constructs:
        params = inspect.signature(construct.__init__).parameters.values()
        required[construct.__name__] = [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    assert {name: props for name, props in required.items() if len(props) > 6} == {}


def minimal_service(s: cdk.Stack, vpc: ec2.Vpc, **props: Any) -> InferenceService:
    """InferenceService with its required props only (and the packaged gateway's task)."""
    cache, _ = cache_and_secrets(s, vpc)
    task = InferenceTask(s, "T", vllm_image=ecs.ContainerImage.from_registry("vllm/vllm-openai:v0.24.0"),
                         vllm_args=["m"], gpu_count=1, model_cache=cache, cpu_units=8192, memory_mib=30000)  # fmt: skip
    gpu = GpuCluster(s, "G", vpc=vpc, subnets=PRIVATE, instance_type="g6.2xlarge", max_instances=3,
                     machine_image=ec2.MachineImage.generic_linux({REGION: "ami-0abcdef0123456789"}))  # fmt: skip
    alb = InternalAlb(s, "A", vpc=vpc, subnets=PRIVATE, target_port=8080, health_check_path="/health")
    return InferenceService(
        s, "Svc", cluster=gpu.cluster, task_definition=task.task_definition, capacity_provider=gpu.capacity_provider,
        target_group=alb.target_group, queue_depth=QueueDepthMetric("N", "QueueDepth", {"Service": "s"}), **props,
    )  # fmt: skip


def test_inference_task_and_service_defaults() -> None:
    s, vpc = vpc_stack(env=cdk.Environment(account=ACCOUNT, region=REGION))
    svc = minimal_service(s, vpc)
    t = Template.from_stack(s)
    (service,) = t.find_resources("AWS::ECS::Service").values()
    assert service["Properties"]["DesiredCount"] == 1
    assert service["Properties"]["LoadBalancers"][0]["ContainerName"] == "gateway"
    assert service["Properties"]["LoadBalancers"][0]["ContainerPort"] == 8080
    (target,) = t.find_resources("AWS::ApplicationAutoScaling::ScalableTarget").values()
    assert (target["Properties"]["MinCapacity"], target["Properties"]["MaxCapacity"]) == (1, 2)
    policies = t.find_resources("AWS::ApplicationAutoScaling::ScalingPolicy")
    tracking = [p["Properties"]["TargetTrackingScalingPolicyConfiguration"] for p in policies.values()
                if "TargetTrackingScalingPolicyConfiguration" in p["Properties"]]  # fmt: skip
    assert [c["TargetValue"] for c in tracking] == [300]
    steps = [p["Properties"]["StepScalingPolicyConfiguration"]["StepAdjustments"] for p in policies.values()
             if "StepScalingPolicyConfiguration" in p["Properties"]]  # fmt: skip
    assert {a.get("MetricIntervalLowerBound") for a in steps[0]} >= {0, 24}  # thresholds 8 and 4x8, relative to 8
    # The security group is created in the cluster's VPC; the task has no HF_TOKEN and mounts read-write.
    assert t.to_json()["Resources"][s.get_logical_id(svc.security_group.node.default_child)]["Properties"]["VpcId"]
    (task,) = t.find_resources("AWS::ECS::TaskDefinition").values()
    (vllm,) = [c for c in task["Properties"]["ContainerDefinitions"] if c["Name"] == "vllm"]
    assert "Secrets" not in vllm and vllm["MountPoints"][0]["ReadOnly"] is False


def test_inference_service_takes_an_existing_security_group_or_overrides_its_props() -> None:
    s, vpc = vpc_stack(env=cdk.Environment(account=ACCOUNT, region=REGION))
    mine = ec2.SecurityGroup(s, "Mine", vpc=vpc, description="the team's own")
    svc = minimal_service(s, vpc, existing_security_group=mine)
    assert svc.security_group is mine and svc.node.try_find_child("SecurityGroup") is None
    s2, vpc2 = vpc_stack(env=cdk.Environment(account=ACCOUNT, region=REGION))
    minimal_service(s2, vpc2, security_group_props={"description": "overridden"})
    groups = Template.from_stack(s2).find_resources("AWS::EC2::SecurityGroup")
    assert "overridden" in [g["Properties"]["GroupDescription"] for g in groups.values()]


def test_inference_service_rejects_an_existing_security_group_with_props_first_thing() -> None:
    s, vpc = vpc_stack(env=cdk.Environment(account=ACCOUNT, region=REGION))
    mine = ec2.SecurityGroup(s, "Mine", vpc=vpc, description="the team's own")
    with pytest.raises(ValueError, match="^InferenceService: give existing_security_group or security_group_props, not both$"):
        minimal_service(s, vpc, existing_security_group=mine, security_group_props={"description": "x"})
    assert s.node.find_child("Svc").node.children == []  # nothing was created before the check


def test_prewarm_defaults_to_private_subnets_and_no_token() -> None:
    s, vpc = vpc_stack(env=cdk.Environment(account=ACCOUNT, region=REGION))
    cache, _ = cache_and_secrets(s, vpc)
    prewarm = ModelPrewarm(s, "P", vpc=vpc, image=ecs.ContainerImage.from_registry("vllm/vllm-openai:v0.24.0"),
                           model_id="m/x", revision=SHA, model_cache=cache)  # fmt: skip
    assert prewarm.subnet_ids == vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnet_ids
    (task,) = Template.from_stack(s).find_resources("AWS::ECS::TaskDefinition").values()
    assert "Secrets" not in task["Properties"]["ContainerDefinitions"][0]


def test_affinity_defaults_to_the_packaged_gateway_s_names_and_port() -> None:
    s, vpc = vpc_stack(env=cdk.Environment(account=ACCOUNT, region=REGION))
    svc = minimal_service(s, vpc)
    gateway = svc.service.task_definition.find_container("gateway")
    GatewayAffinity(s, "Aff", service=svc.service, security_group=svc.security_group, gateway_container=gateway,
                    mode="prefix", namespace_name="team.internal")  # fmt: skip
    t = Template.from_stack(s)
    (task,) = [r for r in t.find_resources("AWS::ECS::TaskDefinition").values()
               if any(c["Name"] == "gateway" for c in r["Properties"]["ContainerDefinitions"])]  # fmt: skip
    (gw,) = [c for c in task["Properties"]["ContainerDefinitions"] if c["Name"] == "gateway"]
    env = {e["Name"]: e["Value"] for e in gw["Environment"]}
    assert env[contract.ENV_AFFINITY_PORT] == "8080" and env[contract.ENV_AFFINITY] == "prefix"
    assert env[contract.ENV_AFFINITY_DNS_NAME] == "gateway.team.internal"
    (namespace,) = t.find_resources("AWS::ServiceDiscovery::PrivateDnsNamespace").values()
    assert namespace["Properties"]["Vpc"] == {"Ref": s.get_logical_id(vpc.node.default_child)}
