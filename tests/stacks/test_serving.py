"""The serving stack of every ECS environment, read from the synthesized templates (not from the Python)."""

from __future__ import annotations

import json

import pytest
import yaml

from containers.gateway.app.core import contract
from llm_hosting_constructs.sizing import instance_registered_resources
from llm_hosting_constructs.vllm import TOOL_CALL_PARSERS
from llmhost import outputs, parameters
from tests.cfn import CONFIG_DIR, ENVIRONMENTS, ROOT, only, resources

pytestmark = pytest.mark.synth
CONFIG = {env: yaml.safe_load((CONFIG_DIR / f"{env}.yaml").read_text()) for env in ENVIRONMENTS}
ECS_ENVS = [env for env in ENVIRONMENTS if "ecs" in CONFIG[env].get("backends", ["ecs"])]
CONTEXT = json.loads((ROOT / "cdk.context.json").read_text())
AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"


def serving(templates: dict, env: str) -> dict:
    return templates[env][f"{env}-{outputs.SERVING}"]


def ecs_cfg(env: str) -> dict:
    return CONFIG[env]["ecs"]


def inference_task(t: dict) -> dict:
    (task,) = [r for r in resources(t, "AWS::ECS::TaskDefinition").values() if "EC2" in r["Properties"]["RequiresCompatibilities"]]
    return task["Properties"]


def prewarm_task(t: dict) -> dict:
    (task,) = [r for r in resources(t, "AWS::ECS::TaskDefinition").values() if "FARGATE" in r["Properties"]["RequiresCompatibilities"]]
    return task["Properties"]


def container(t: dict, name: str) -> dict:
    (c,) = [c for c in inference_task(t)["ContainerDefinitions"] if c["Name"] == name]
    return c


def env_of(c: dict) -> dict[str, str]:
    return {e["Name"]: e["Value"] for e in c.get("Environment", [])}


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


# --------------------------------------------------------------------------- GPU cluster


@pytest.mark.parametrize("env", ECS_ENVS)
def test_launch_template_uses_the_gpu_ami_committed_in_context(templates: dict, env: str) -> None:
    data = only(serving(templates, env), "AWS::EC2::LaunchTemplate")["Properties"]["LaunchTemplateData"]
    key = f"ssm:account={CONFIG[env]['account']}:parameterName={AMI_PARAMETER}:region={CONFIG[env]['region']}"
    assert data["ImageId"] == CONTEXT[key]
    assert data["ImageId"].startswith("ami-")


@pytest.mark.parametrize("env", ECS_ENVS)
def test_instances_require_imdsv2_with_hop_limit_one(templates: dict, env: str) -> None:
    data = only(serving(templates, env), "AWS::EC2::LaunchTemplate")["Properties"]["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1


@pytest.mark.parametrize("env", ECS_ENVS)
def test_root_volume_is_encrypted_gp3_sized_for_the_vllm_image(templates: dict, env: str) -> None:
    data = only(serving(templates, env), "AWS::EC2::LaunchTemplate")["Properties"]["LaunchTemplateData"]
    (root,) = data["BlockDeviceMappings"]
    ebs = root["Ebs"]
    assert (root["DeviceName"], ebs["VolumeType"], ebs["Encrypted"]) == ("/dev/xvda", "gp3", True)
    assert ebs["VolumeSize"] == ecs_cfg(env).get("root_volume_gib", 200) >= 100


@pytest.mark.parametrize("env", ECS_ENVS)
def test_instance_type_from_config(templates: dict, env: str) -> None:
    data = only(serving(templates, env), "AWS::EC2::LaunchTemplate")["Properties"]["LaunchTemplateData"]
    assert data["InstanceType"] == ecs_cfg(env)["instance_type"]


@pytest.mark.parametrize("env", ECS_ENVS)
def test_user_data_joins_the_cluster_with_gpu_support_and_the_reserved_memory_sizing_assumes(templates: dict, env: str) -> None:
    data = only(serving(templates, env), "AWS::EC2::LaunchTemplate")["Properties"]["LaunchTemplateData"]
    text = json.dumps(data["UserData"])
    for line in ("ECS_CLUSTER=", "ECS_ENABLE_GPU_SUPPORT=true", "ECS_RESERVED_MEMORY=256", "ECS_AWSVPC_BLOCK_IMDS=true"):
        assert line in text, line
    assert "nvidia_gpu" in text  # CloudWatch agent GPU collector (monitoring alarms on it)
    assert text.index("ECS_CLUSTER=") < text.index("dnf install")  # a slow install never delays joining the cluster


@pytest.mark.parametrize("env", ECS_ENVS)
def test_asg_in_private_subnets_scaled_by_the_capacity_provider(templates: dict, env: str) -> None:
    t = serving(templates, env)
    asg = only(t, "AWS::AutoScaling::AutoScalingGroup")["Properties"]
    assert all("WorkloadSubnet" in json.dumps(s) for s in asg["VPCZoneIdentifier"])
    assert len(asg["VPCZoneIdentifier"]) == len(CONFIG[env]["availability_zones"])
    assert asg["MinSize"] == "0" and "DesiredCapacity" not in asg
    assert asg["MaxSize"] == str(ecs_cfg(env)["max_capacity"] + 1)  # room for a rolling deployment
    assert asg["NewInstancesProtectedFromScaleIn"] is CONFIG[env]["retain_stateful"]  # see the teardown test below
    provider = only(t, "AWS::ECS::CapacityProvider")["Properties"]["AutoScalingGroupProvider"]
    assert provider["ManagedScaling"]["Status"] == "ENABLED"


@pytest.mark.parametrize("env", ECS_ENVS)
def test_container_insights_enhanced(templates: dict, env: str) -> None:
    settings = only(serving(templates, env), "AWS::ECS::Cluster")["Properties"]["ClusterSettings"]
    assert {"Name": "containerInsights", "Value": "enhanced"} in settings


# --------------------------------------------------------------------------- vLLM container


@pytest.mark.parametrize("env", ECS_ENVS)
def test_vllm_command_comes_from_config(templates: dict, env: str) -> None:
    c, m, e = container(serving(templates, env), "vllm"), CONFIG[env]["model"], ecs_cfg(env)
    args = c["Command"]
    assert c["EntryPoint"] == ["vllm", "serve"] and args[0] == m["id"]
    assert flag(args, "--revision") == flag(args, "--tokenizer-revision") == m["revision"]
    assert flag(args, "--served-model-name") == m["served_name"]
    assert flag(args, "--max-model-len") == str(m["max_model_len"])
    assert flag(args, "--tensor-parallel-size") == str(m.get("tensor_parallel_size", 1))
    assert float(flag(args, "--gpu-memory-utilization")) == e.get("gpu_memory_utilization", 0.9)
    assert flag(args, "--max-num-seqs") == str(e.get("max_num_seqs", 128))
    assert flag(args, "--dtype") == m.get("dtype", "bfloat16")
    assert flag(args, "--kv-cache-dtype") == m.get("kv_cache_dtype", "auto")
    assert ("--enable-chunked-prefill" in args) == e.get("enable_chunked_prefill", True)
    assert flag(args, "--port") == str(contract.VLLM_PORT)
    assert flag(args, "--host") == "127.0.0.1"  # only the gateway beside it reaches vLLM


@pytest.mark.parametrize("env", ECS_ENVS)
def test_vllm_image_is_the_pinned_config_tag(templates: dict, env: str) -> None:
    image = json.dumps(container(serving(templates, env), "vllm")["Image"])
    ref = ecs_cfg(env).get("vllm_image", "vllm/vllm-openai:v0.24.0")
    repository, tag = ref.rsplit(":", 1)
    assert tag in image and repository.split("/", 1)[-1] in image
    assert ":latest" not in image


@pytest.mark.parametrize("env", ECS_ENVS)
def test_vllm_gets_tensor_parallel_gpus_large_shm_and_memlock(templates: dict, env: str) -> None:
    c = container(serving(templates, env), "vllm")
    assert c["ResourceRequirements"] == [{"Type": "GPU", "Value": str(CONFIG[env]["model"].get("tensor_parallel_size", 1))}]
    assert c["LinuxParameters"]["SharedMemorySize"] >= 4096  # Docker's 64 MB default breaks NCCL
    ulimits = {u["Name"]: (u["SoftLimit"], u["HardLimit"]) for u in c["Ulimits"]}
    assert ulimits["memlock"] == (-1, -1)


@pytest.mark.parametrize("env", ECS_ENVS)
def test_hf_token_is_an_ecs_secret_never_plaintext(templates: dict, env: str) -> None:
    t = serving(templates, env)
    for task in (inference_task(t), prewarm_task(t)):
        for c in task["ContainerDefinitions"]:
            assert "HF_TOKEN" not in env_of(c)
    name = ecs_cfg(env).get("hf_token_secret_name")
    for c in (container(t, "vllm"), prewarm_task(t)["ContainerDefinitions"][0]):
        secrets = {s["Name"]: s["ValueFrom"] for s in c.get("Secrets", [])}
        if name is None:  # a public or S3-staged model: no token at all (the Hub rejects an invalid one)
            assert "HF_TOKEN" not in secrets
        else:  # the secret created before the deploy, by name: no export from another stack
            assert f":secret:{name}" in json.dumps(secrets["HF_TOKEN"]) and "ImportValue" not in json.dumps(secrets)


@pytest.mark.parametrize("env", ECS_ENVS)
def test_efs_is_hf_home_read_only_when_serving_offline(templates: dict, env: str) -> None:
    t = serving(templates, env)
    offline = ecs_cfg(env).get("hf_hub_offline", True)
    c = container(t, "vllm")
    assert env_of(c)["HF_HUB_OFFLINE"] == ("1" if offline else "0")
    (mount,) = c["MountPoints"]
    assert env_of(c)["HF_HOME"] == mount["ContainerPath"]
    assert mount["ReadOnly"] is offline
    (volume,) = inference_task(t)["Volumes"]
    efs = volume["EFSVolumeConfiguration"]
    assert efs["TransitEncryption"] == "ENABLED" and efs["AuthorizationConfig"]["IAM"] == "ENABLED"
    assert "HfCache" in json.dumps(efs["AuthorizationConfig"]["AccessPointId"])


@pytest.mark.parametrize("env", ECS_ENVS)
def test_vllm_health_check_on_health_with_the_longest_start_period(templates: dict, env: str) -> None:
    check = container(serving(templates, env), "vllm")["HealthCheck"]
    assert f"127.0.0.1:{contract.VLLM_PORT}/health" in " ".join(check["Command"])
    assert check["StartPeriod"] == 300
    # the whole window a model load gets before ECS replaces the task, and the ALB waits longer still
    window = check["StartPeriod"] + check["Retries"] * check["Interval"]
    assert window == 600
    grace = only(serving(templates, env), "AWS::ECS::Service")["Properties"]["HealthCheckGracePeriodSeconds"]
    assert grace >= window


@pytest.mark.parametrize("env", ECS_ENVS)
def test_task_reserves_what_the_instance_registers(templates: dict, env: str) -> None:
    task = inference_task(serving(templates, env))
    cpu, memory = instance_registered_resources(ecs_cfg(env)["instance_type"])
    assert (task["Cpu"], task["Memory"], task["NetworkMode"]) == (str(cpu), str(memory), "awsvpc")
    containers = task["ContainerDefinitions"]
    assert sum(c["Cpu"] for c in containers) <= cpu
    assert sum(c.get("Memory", c.get("MemoryReservation", 0)) for c in containers) <= memory


# --------------------------------------------------------------------------- gateway container


@pytest.mark.parametrize("env", ECS_ENVS)
def test_gateway_image_is_the_repo_asset(templates: dict, env: str) -> None:
    image = json.dumps(container(serving(templates, env), "gateway")["Image"])
    assert "cdk-hnb659fds-container-assets" in image


@pytest.mark.parametrize("env", ECS_ENVS)
def test_gateway_starts_after_vllm_is_healthy(templates: dict, env: str) -> None:
    assert container(serving(templates, env), "gateway")["DependsOn"] == [{"ContainerName": "vllm", "Condition": "HEALTHY"}]


@pytest.mark.parametrize("env", ECS_ENVS)
def test_gateway_is_hardened(templates: dict, env: str) -> None:
    c = container(serving(templates, env), "gateway")
    assert c["ReadonlyRootFilesystem"] is True
    assert c["User"].split(":")[0] not in ("0", "root")
    assert c["PortMappings"] == [{"ContainerPort": contract.GATEWAY_PORT, "Protocol": "tcp"}]
    assert c["HealthCheck"]["Command"] == list(contract.CONTAINER_HEALTHCHECK_COMMAND)


@pytest.mark.parametrize("env", ECS_ENVS)
def test_gateway_environment_follows_the_contract(templates: dict, env: str) -> None:
    c = container(serving(templates, env), "gateway")
    environment = env_of(c)
    assert set(environment) - {"AWS_REGION"} <= set(contract.ALL_ENV_VARS)
    assert environment[contract.ENV_UPSTREAM_URL] == contract.DEFAULT_UPSTREAM_URL
    assert environment[contract.ENV_SERVED_MODEL_NAME] == CONFIG[env]["model"]["served_name"]
    assert environment[contract.ENV_SERVICE_NAME] == f"llm-hosting-{env}"
    assert environment[contract.ENV_LOG_PROMPTS] == str(ecs_cfg(env).get("log_prompts", False)).lower() == "false"
    # One key (the front door's) carries every tenant's traffic: a per-key cap would cap the service.
    assert environment[contract.ENV_MAX_CONCURRENCY_PER_KEY] == "0"
    assert int(environment[contract.ENV_MAX_QUEUE_DEPTH]) == ecs_cfg(env).get("shed_queue_depth", 256) > 0
    assert not set(environment) & set(contract.SECRET_ENV_VARS)
    assert contract.ENV_API_KEYS in {s["Name"] for s in c["Secrets"]}


@pytest.mark.parametrize("env", ECS_ENVS)
def test_keep_alive_chain(templates: dict, env: str) -> None:
    """ALB idle timeout < gateway server keep-alive; gateway upstream keep-alive < vLLM's keep-alive."""
    t = serving(templates, env)
    gateway, vllm = env_of(container(t, "gateway")), env_of(container(t, "vllm"))
    attrs = {a["Key"]: a["Value"] for a in only(t, "AWS::ElasticLoadBalancingV2::LoadBalancer")["Properties"]["LoadBalancerAttributes"]}
    idle = int(attrs["idle_timeout.timeout_seconds"])
    assert idle == ecs_cfg(env).get("alb_idle_timeout_seconds", 900)
    assert int(gateway[contract.ENV_KEEPALIVE_TIMEOUT_S]) > idle
    assert float(gateway[contract.ENV_UPSTREAM_KEEPALIVE_S]) < int(vllm["VLLM_HTTP_TIMEOUT_KEEP_ALIVE"])


@pytest.mark.parametrize("env", ECS_ENVS)
def test_streams_drain_before_stop_timeout(templates: dict, env: str) -> None:
    t = serving(templates, env)
    gateway = container(t, "gateway")
    assert gateway["StopTimeout"] == container(t, "vllm")["StopTimeout"] == 120
    assert float(env_of(gateway)[contract.ENV_DRAIN_TIMEOUT_S]) < gateway["StopTimeout"]


@pytest.mark.parametrize("env", ECS_ENVS)
def test_log_groups_have_retention_and_kms(templates: dict, env: str) -> None:
    groups = resources(serving(templates, env), "AWS::Logs::LogGroup").values()
    assert len(groups) == 4  # vllm, gateway, pre-warm task, pre-warm custom resource (handlers + waiter)
    for group in groups:
        assert group["Properties"]["RetentionInDays"] == ecs_cfg(env).get("log_retention_days", 90)
        assert "ModelCacheKey" in json.dumps(group["Properties"]["KmsKeyId"])


# --------------------------------------------------------------------------- IAM


def role_statements(t: dict, role_fragment: str) -> list[dict]:
    policies = [
        p["Properties"]
        for p in resources(t, "AWS::IAM::Policy").values()
        if any(role_fragment in r["Ref"] for r in p["Properties"]["Roles"])
    ]
    return [s for p in policies for s in p["PolicyDocument"]["Statement"]]


@pytest.mark.parametrize("env", ECS_ENVS)
def test_task_role_only_mounts_the_cache_through_its_access_point(templates: dict, env: str) -> None:
    t = serving(templates, env)
    (statement,) = [s for s in role_statements(t, "InferenceTaskRole") if "elasticfilesystem" in json.dumps(s["Action"])]
    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
    expected = {"elasticfilesystem:ClientMount"} | ({"elasticfilesystem:ClientWrite"} if not ecs_cfg(env).get("hf_hub_offline", True) else set())
    assert set(actions) == expected
    assert "elasticfilesystem:AccessPointArn" in statement["Condition"]["StringEquals"]


@pytest.mark.parametrize("env", ECS_ENVS)
def test_gateway_may_read_exactly_the_tenant_names_parameter(templates: dict, env: str) -> None:
    """The gateway reads tenant names from the api stack's parameter (GATEWAY_TENANT_NAMES_PARAMETER) with
    ssm:GetParameter; the api stack deploys later, so the ARN is built from the name, not referenced."""
    t = serving(templates, env)
    name = env_of(container(t, "gateway"))[contract.ENV_TENANT_NAMES_PARAMETER]
    assert name == f"/llm-hosting/{env}/tenant-api-keys"
    reads = [s for s in role_statements(t, "InferenceTaskRole") if "ssm:GetParameter" in json.dumps(s["Action"])]
    assert len(reads) == 1 and reads[0]["Action"] == "ssm:GetParameter" and reads[0]["Effect"] == "Allow"
    assert reads[0]["Resource"] == f"arn:aws:ssm:{CONFIG[env]['region']}:{CONFIG[env]['account']}:parameter{name}"


@pytest.mark.parametrize("env", ECS_ENVS)
def test_no_managed_policies_and_no_wildcard_actions_on_task_roles(templates: dict, env: str) -> None:
    t = serving(templates, env)
    for role in resources(t, "AWS::IAM::Role").values():
        assert "ManagedPolicyArns" not in role["Properties"]
    for fragment in ("InferenceTaskRole", "InferenceExecutionRole", "PrewarmTaskRole"):
        for s in role_statements(t, fragment):
            assert s["Action"] != "*" and "*" not in s["Action"]


@pytest.mark.parametrize("env", ECS_ENVS)
def test_ecr_image_pulls_are_scoped_to_its_repository_with_pull_through_cache_rights(templates: dict, env: str) -> None:
    t = serving(templates, env)
    ref = ecs_cfg(env).get("vllm_image", "vllm/vllm-openai:v0.24.0")
    registry = f"{CONFIG[env]['account']}.dkr.ecr.{CONFIG[env]['region']}.amazonaws.com/"
    for fragment in ("InferenceExecutionRole", "PrewarmTaskDefinitionExecutionRole"):
        statements = role_statements(t, fragment)
        imports = [s for s in statements if "ecr:BatchImportUpstreamImage" in s["Action"]]
        if not ref.startswith(registry):
            assert not imports
            continue
        repository = ref.removeprefix(registry).rsplit(":", 1)[0]
        (statement,) = imports  # (IAM policy minimization may merge the pull actions into it)
        assert {"ecr:BatchImportUpstreamImage", "ecr:CreateRepository"} <= set(statement["Action"])
        assert statement["Resource"] == f"arn:aws:ecr:{CONFIG[env]['region']}:{CONFIG[env]['account']}:repository/{repository}"


@pytest.mark.parametrize("env", ECS_ENVS)
def test_secret_key_decrypt_only_through_secrets_manager(templates: dict, env: str) -> None:
    t = serving(templates, env)
    decrypts = [s for s in role_statements(t, "InferenceExecutionRole") if s["Action"] == "kms:Decrypt"]
    assert decrypts and all(
        s["Condition"]["StringEquals"]["kms:ViaService"] == f"secretsmanager.{CONFIG[env]['region']}.amazonaws.com"
        for s in decrypts
    )


# --------------------------------------------------------------------------- service and scaling


@pytest.mark.parametrize("env", ECS_ENVS)
def test_service_counts_and_grace_period_from_config(templates: dict, env: str) -> None:
    t, e = serving(templates, env), ecs_cfg(env)
    service = only(t, "AWS::ECS::Service")["Properties"]
    assert service["DesiredCount"] == e["desired_capacity"]
    assert 600 <= service["HealthCheckGracePeriodSeconds"] <= 1200
    assert service["HealthCheckGracePeriodSeconds"] == e.get("health_check_grace_period_seconds", 900)
    target = only(t, "AWS::ApplicationAutoScaling::ScalableTarget")["Properties"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (e["min_capacity"], e["max_capacity"])


@pytest.mark.parametrize("env", ECS_ENVS)
def test_deployments_roll_back_on_failure_without_losing_capacity(templates: dict, env: str) -> None:
    deployment = only(serving(templates, env), "AWS::ECS::Service")["Properties"]["DeploymentConfiguration"]
    assert deployment["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    assert deployment["MinimumHealthyPercent"] == 100


@pytest.mark.parametrize("env", ECS_ENVS)
def test_tasks_spread_across_azs_private_one_per_host(templates: dict, env: str) -> None:
    t = serving(templates, env)
    service = only(t, "AWS::ECS::Service")["Properties"]
    assert {"Type": "spread", "Field": "attribute:ecs.availability-zone"} in service["PlacementStrategies"]
    assert {"Type": "distinctInstance"} in service["PlacementConstraints"]
    vpc = service["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert vpc["AssignPublicIp"] == "DISABLED"
    assert all("WorkloadSubnet" in json.dumps(s) for s in vpc["Subnets"])
    assert service["CapacityProviderStrategy"] == [{"CapacityProvider": {"Ref": next(iter(resources(t, "AWS::ECS::CapacityProvider")))}, "Weight": 1}]
    assert service["LoadBalancers"][0]["ContainerName"] == "gateway"
    assert service["LoadBalancers"][0]["ContainerPort"] == contract.GATEWAY_PORT


@pytest.mark.parametrize("env", ECS_ENVS)
def test_target_tracking_on_alb_requests_per_target(templates: dict, env: str) -> None:
    policies = resources(serving(templates, env), "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    (tracking,) = [p["Properties"] for p in policies if p["Properties"]["PolicyType"] == "TargetTrackingScaling"]
    config = tracking["TargetTrackingScalingPolicyConfiguration"]
    assert config["PredefinedMetricSpecification"]["PredefinedMetricType"] == "ALBRequestCountPerTarget"
    assert config["TargetValue"] == ecs_cfg(env).get("scale_requests_per_target", 300)


@pytest.mark.parametrize("env", ECS_ENVS)
def test_step_scaling_on_the_gateway_queue_depth_metric(templates: dict, env: str) -> None:
    t = serving(templates, env)
    (alarm,) = [a["Properties"] for a in resources(t, "AWS::CloudWatch::Alarm").values() if a["Properties"].get("MetricName") == contract.METRIC_QUEUE_DEPTH]
    assert alarm["Namespace"] == contract.METRICS_NAMESPACE
    (dimension_set,) = contract.EMF_DIMENSION_SETS
    dims = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
    assert set(dims) == set(dimension_set)
    assert dims == {contract.DIMENSION_SERVICE: f"llm-hosting-{env}", contract.DIMENSION_MODEL: CONFIG[env]["model"]["served_name"]}
    assert alarm["Threshold"] == ecs_cfg(env).get("scale_queue_depth", 8)
    (step,) = [p["Properties"] for p in resources(t, "AWS::ApplicationAutoScaling::ScalingPolicy").values() if p["Properties"]["PolicyType"] == "StepScaling"]
    assert all(a["ScalingAdjustment"] > 0 for a in step["StepScalingPolicyConfiguration"]["StepAdjustments"])


@pytest.mark.parametrize("env", ECS_ENVS)
def test_off_hours_scale_service_and_hosts_to_zero_and_back(templates: dict, env: str) -> None:
    t, e = serving(templates, env), ecs_cfg(env)
    target = only(t, "AWS::ApplicationAutoScaling::ScalableTarget")["Properties"]
    asg_actions = [a["Properties"] for a in resources(t, "AWS::AutoScaling::ScheduledAction").values()]
    if not e.get("off_hours"):
        assert "ScheduledActions" not in target and not asg_actions
        return
    actions = {a["ScheduledActionName"]: a for a in target["ScheduledActions"]}
    assert actions["OffHoursDown"]["ScalableTargetAction"] == {"MinCapacity": 0, "MaxCapacity": 0}
    assert actions["OffHoursDown"]["Schedule"] == f"cron({e['off_hours']['scale_down_cron']})"
    assert actions["OffHoursUp"]["ScalableTargetAction"] == {"MinCapacity": e["min_capacity"], "MaxCapacity": e["max_capacity"]}
    down = [a for a in asg_actions if a["MaxSize"] == 0]
    up = [a for a in asg_actions if a["MaxSize"] > 0]
    assert len(down) == len(up) == 1 and down[0]["MinSize"] == 0
    assert len(down[0]["Recurrence"].split()) == 5  # Unix cron for Auto Scaling


# --------------------------------------------------------------------------- internal ALB


@pytest.mark.parametrize("env", ECS_ENVS)
def test_alb_is_internal_in_private_subnets(templates: dict, env: str) -> None:
    alb = only(serving(templates, env), "AWS::ElasticLoadBalancingV2::LoadBalancer")["Properties"]
    assert alb["Scheme"] == "internal"
    assert all("WorkloadSubnet" in json.dumps(s) for s in alb["Subnets"])


@pytest.mark.parametrize("env", ECS_ENVS)
def test_alb_admits_only_the_front_door_security_group(templates: dict, env: str) -> None:
    t = serving(templates, env)
    alb_group = next(k for k, v in resources(t, "AWS::EC2::SecurityGroup").items() if "Internal ALB" in v["Properties"]["GroupDescription"])
    assert "SecurityGroupIngress" not in t["Resources"][alb_group]["Properties"]
    ingress = [r["Properties"] for r in resources(t, "AWS::EC2::SecurityGroupIngress").values() if r["Properties"]["GroupId"] == {"Fn::GetAtt": [alb_group, "GroupId"]}]
    assert len(ingress) == 1
    assert ingress[0]["SourceSecurityGroupId"]["Fn::GetAtt"][0].startswith("FrontdoorSecurityGroup")
    assert all("CidrIp" not in r for r in ingress)


@pytest.mark.parametrize("env", ECS_ENVS)
def test_listener_https_only_with_a_certificate(templates: dict, env: str) -> None:
    listener = only(serving(templates, env), "AWS::ElasticLoadBalancingV2::Listener")["Properties"]
    if ecs_cfg(env).get("certificate_arn"):
        assert (listener["Protocol"], listener["Port"]) == ("HTTPS", 443)
        assert listener["Certificates"] == [{"CertificateArn": ecs_cfg(env)["certificate_arn"]}]
    else:
        assert (listener["Protocol"], listener["Port"]) == ("HTTP", 80)


@pytest.mark.parametrize("env", ECS_ENVS)
def test_target_group_health_check_and_draining_for_long_streams(templates: dict, env: str) -> None:
    tg = only(serving(templates, env), "AWS::ElasticLoadBalancingV2::TargetGroup")["Properties"]
    assert (tg["TargetType"], tg["Port"], tg["HealthCheckPath"]) == ("ip", contract.GATEWAY_PORT, contract.HEALTH_PATH)
    assert tg["UnhealthyThresholdCount"] * tg["HealthCheckIntervalSeconds"] >= 60  # a busy GPU is not taken out at once
    attrs = {a["Key"]: a["Value"] for a in tg["TargetGroupAttributes"]}
    delay = int(attrs["deregistration_delay.timeout_seconds"])
    assert delay == CONFIG[env]["api"].get("stream_timeout_seconds", 900) <= 3600
    assert attrs["load_balancing.algorithm.type"] == "least_outstanding_requests"


@pytest.mark.parametrize("env", ECS_ENVS)
def test_access_logs_where_configured(templates: dict, env: str) -> None:
    alb = only(serving(templates, env), "AWS::ElasticLoadBalancingV2::LoadBalancer")["Properties"]
    attrs = {a["Key"]: a["Value"] for a in alb["LoadBalancerAttributes"]}
    if ecs_cfg(env).get("alb_access_logs"):
        assert attrs["access_logs.s3.enabled"] == "true"
        assert "AlbAccessLogs" in json.dumps(attrs["access_logs.s3.bucket"])
    else:
        assert attrs.get("access_logs.s3.enabled", "false") == "false"
    assert attrs["routing.http.drop_invalid_header_fields.enabled"] == "true"
    assert attrs["deletion_protection.enabled"] == str(CONFIG[env]["retain_stateful"]).lower()


# --------------------------------------------------------------------------- pre-warm and outputs


@pytest.mark.parametrize("env", ECS_ENVS)
def test_prewarm_task_downloads_the_pinned_revision_into_efs(templates: dict, env: str) -> None:
    task = prewarm_task(serving(templates, env))
    (c,) = task["ContainerDefinitions"]
    environment = env_of(c)
    assert environment["MODEL_ID"] == CONFIG[env]["model"]["id"]
    assert environment["MODEL_REVISION"] == CONFIG[env]["model"]["revision"]
    assert environment["HF_HUB_OFFLINE"] == "0"
    assert c["EntryPoint"] == ["python3", "-c"] and "snapshot_download" in c["Command"][0]
    assert c["Image"] == container(serving(templates, env), "vllm")["Image"]
    assert c["MountPoints"][0]["ReadOnly"] is False
    assert {s["Name"] for s in c.get("Secrets", [])} == ({"HF_TOKEN"} if ecs_cfg(env).get("hf_token_secret_name") else set())
    assert task["Volumes"][0]["EFSVolumeConfiguration"]["TransitEncryption"] == "ENABLED"


@pytest.mark.parametrize("env", ECS_ENVS)
def test_outputs_for_the_ops_cli(templates: dict, env: str) -> None:
    out = serving(templates, env)["Outputs"]
    for key in (
        outputs.CLUSTER_NAME,
        outputs.SERVICE_NAME,
        outputs.LOAD_BALANCER_DNS,
        outputs.PREWARM_TASK_DEFINITION_ARN,
        outputs.PREWARM_SUBNETS,
        outputs.PREWARM_SECURITY_GROUP,
        outputs.PREWARM_LOG_GROUP,
        outputs.PREWARM_COMMAND,
    ):
        assert key in out, key
    assert outputs.PREWARM_CAPACITY_PROVIDER not in out  # Fargate
    command = json.dumps(out[outputs.PREWARM_COMMAND]["Value"])
    for part in ("aws ecs run-task", "--launch-type FARGATE", "assignPublicIp=DISABLED", f"--region {CONFIG[env]['region']}"):
        assert part in command, part


# --------------------------------------------------------------------------- the command line, checked by vLLM itself

VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
PARSE = """
import json, sys
from vllm.entrypoints.cli.serve import ServeSubcommand
from vllm.utils.argparse_utils import FlexibleArgumentParser
out = []
for args in json.loads(sys.stdin.read()):
    top = FlexibleArgumentParser(prog="vllm")
    command = ServeSubcommand()
    command.subparser_init(top.add_subparsers(dest="subcommand"))
    ns = top.parse_args(["serve", *args])
    command.validate(ns)
    out.append({k: getattr(ns, k) for k in ("model_tag", "revision", "tokenizer_revision", "served_model_name",
                                            "max_model_len", "tensor_parallel_size", "max_num_seqs", "port",
                                            "enable_auto_tool_choice", "tool_call_parser")})
from vllm.tool_parsers import ToolParserManager
out.append(sorted(ToolParserManager.list_registered()))
print("PARSED " + json.dumps(out))
"""


@pytest.mark.vllm  # needs .venv-vllm: `make test-infra` deselects it rather than skip it
@pytest.mark.skipif(not VLLM_PYTHON.exists(), reason="needs .venv-vllm (make install-test)")
def test_vllm_accepts_the_synthesized_command_line(templates: dict) -> None:
    """Every environment's `vllm serve` arguments, parsed and validated by vLLM's own CLI parser
    (the CPU build of DESIGN §5: same argument parser as the GPU image)."""
    import subprocess

    commands = [container(serving(templates, env), "vllm")["Command"] for env in ECS_ENVS]
    result = subprocess.run(
        [str(VLLM_PYTHON), "-c", PARSE], input=json.dumps(commands), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    *parsed, registered_parsers = json.loads(result.stdout.split("PARSED ", 1)[1])
    for env, ns in zip(ECS_ENVS, parsed, strict=True):
        m = CONFIG[env]["model"]
        assert ns["model_tag"] == m["id"] and ns["revision"] == ns["tokenizer_revision"] == m["revision"]
        assert ns["served_model_name"] == [m["served_name"]] and ns["max_model_len"] == m["max_model_len"]
        assert ns["port"] == contract.VLLM_PORT
        # Llama 3.1 Instruct: vLLM's Tool Calling page names llama3_json; without both flags `tools` is a 400.
        assert m["id"].startswith("meta-llama/Llama-3.1-")
        assert ns["enable_auto_tool_choice"] is True and ns["tool_call_parser"] == "llama3_json"
    # Every parser a config may name is one vLLM registers.
    assert set(TOOL_CALL_PARSERS) <= set(registered_parsers), set(TOOL_CALL_PARSERS) - set(registered_parsers)


@pytest.mark.parametrize("env", ECS_ENVS)
def test_gateway_settings_accept_the_task_environment(templates: dict, env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway's own settings class parses the synthesized environment (plus a secret of the generated shape)."""
    from containers.gateway.app.core.config import Settings

    c = container(serving(templates, env), "gateway")
    for name in contract.ALL_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env_of(c).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(contract.ENV_API_KEYS, json.dumps({"frontdoor": "x" * 48}))
    settings = Settings()
    assert settings.port == contract.GATEWAY_PORT and settings.auth_enabled
    assert settings.served_model_name == CONFIG[env]["model"]["served_name"]
    assert settings.keepalive_timeout_s == contract.server_keepalive_for_alb(ecs_cfg(env).get("alb_idle_timeout_seconds", 900))
    assert settings.log_prompts is False


@pytest.mark.parametrize("env", ECS_ENVS)
def test_prewarm_copies_from_s3_where_configured_reading_only_that_prefix(templates: dict, env: str) -> None:
    t = serving(templates, env)
    (c,) = prewarm_task(t)["ContainerDefinitions"]
    uri = ecs_cfg(env).get("model_s3_uri")
    statements = [s for s in role_statements(t, "PrewarmTaskRole") if str(s["Action"]).startswith("s3:")]
    if not uri:
        assert "MODEL_S3_URI" not in env_of(c) and not statements
        return
    assert env_of(c)["MODEL_S3_URI"] == uri
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    actions = {s["Action"]: s for s in statements}
    assert set(actions) == {"s3:GetObject", "s3:ListBucket"}
    assert f"{bucket}/{prefix}*" in json.dumps(actions["s3:GetObject"]["Resource"])
    assert actions["s3:ListBucket"]["Condition"] == {"StringLike": {"s3:prefix": [f"{prefix}*"]}}


# --------------------------------------------------------------------------- deploy and delete order (issue 11)


def depends_on(resource: dict) -> set[str]:
    value = resource.get("DependsOn", [])
    return {value} if isinstance(value, str) else set(value)


def service(t: dict) -> dict:
    return only(t, "AWS::ECS::Service")


def cache_fill(t: dict) -> tuple[str, dict]:
    ((logical_id, fill),) = resources(t, "Custom::ModelCacheFill").items()
    return logical_id, fill


@pytest.mark.parametrize("env", ECS_ENVS)
def test_the_service_starts_only_after_the_cache_is_filled(templates: dict, env: str) -> None:
    """First deploy: CloudFormation creates the service (DesiredCount >= 1, vLLM offline) only after the
    custom resource has run the pre-warm task to exit 0; before issue 11 nothing ran it at all."""
    t = serving(templates, env)
    logical_id, fill = cache_fill(t)
    assert logical_id in depends_on(service(t))
    props = fill["Properties"]
    assert (props["ModelId"], props["Revision"]) == (CONFIG[env]["model"]["id"], CONFIG[env]["model"]["revision"])
    assert props["SourceUri"] == (ecs_cfg(env).get("model_s3_uri") or "")
    # The task it runs is the pre-warm task definition of this stack, on this cluster.
    (prewarm_id,) = [k for k, r in resources(t, "AWS::ECS::TaskDefinition").items() if "FARGATE" in r["Properties"]["RequiresCompatibilities"]]
    assert props["TaskDefinition"] == {"Ref": prewarm_id}
    assert props["Cluster"] == {"Ref": only_id(t, "AWS::ECS::Cluster")}


def only_id(t: dict, type_: str) -> str:
    (logical_id,) = resources(t, type_)
    return logical_id


@pytest.mark.parametrize("env", ECS_ENVS)
def test_the_fill_runs_after_everything_its_task_needs(templates: dict, env: str) -> None:
    """The task mounts EFS through the NFS rule for its security group and writes with its role's policy."""
    t = serving(templates, env)
    _, fill = cache_fill(t)
    needs = depends_on(fill)
    ingress = [k for k, r in resources(t, "AWS::EC2::SecurityGroupIngress").items() if k.startswith("NfsFrom") and "Prewarm" in k]
    assert len(ingress) == 1 and ingress[0] in needs
    assert {k for k in resources(t, "AWS::IAM::Policy") if k.startswith("PrewarmTaskRole")} <= needs
    assert {k for k in resources(t, "AWS::IAM::Policy") if k.startswith("PrewarmTaskDefinitionExecutionRole")} <= needs


@pytest.mark.parametrize("env", ECS_ENVS)
def test_the_service_waits_for_its_own_nfs_rule(templates: dict, env: str) -> None:
    t = serving(templates, env)
    (rule,) = [k for k in resources(t, "AWS::EC2::SecurityGroupIngress") if k.startswith("NfsFrom") and "Serving" in k]
    assert rule in depends_on(service(t))


@pytest.mark.parametrize("env", ECS_ENVS)
def test_the_fill_polls_for_cloudformations_full_hour(templates: dict, env: str) -> None:
    """Provider framework: is_complete every 30 s, for at most 1 h (its and CloudFormation's ceiling)."""
    machine = only(serving(templates, env), "AWS::StepFunctions::StateMachine")["Properties"]
    definition = json.dumps(machine["DefinitionString"])
    assert '\\"IntervalSeconds\\":30' in definition and '\\"MaxAttempts\\":120' in definition
    assert machine["LoggingConfiguration"]["Level"] == "ALL"


@pytest.mark.parametrize("env", ECS_ENVS)
def test_fill_handlers_may_run_only_this_task_on_this_cluster(templates: dict, env: str) -> None:
    t = serving(templates, env)
    statements = [
        s for k, r in resources(t, "AWS::IAM::Policy").items() if k.startswith("CacheFillOnEvent")
        for s in r["Properties"]["PolicyDocument"]["Statement"]
    ]
    (run,) = [s for s in statements if s["Action"] == "ecs:RunTask"]
    (prewarm_id,) = [k for k, r in resources(t, "AWS::ECS::TaskDefinition").items() if "FARGATE" in r["Properties"]["RequiresCompatibilities"]]
    assert run["Resource"] == {"Ref": prewarm_id}
    assert run["Condition"]["ArnEquals"]["ecs:cluster"] == {"Fn::GetAtt": [only_id(t, "AWS::ECS::Cluster"), "Arn"]}
    (pass_role,) = [s for s in statements if s["Action"] == "iam:PassRole"]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    assert all(s["Action"] != "*" and s.get("Resource") != "*" for s in statements)


@pytest.mark.parametrize("env", ECS_ENVS)
def test_the_service_is_created_after_and_deleted_before_the_capacity_provider_association(
    templates: dict, env: str
) -> None:
    """Without this DependsOn, CloudFormation may delete the association while the service still uses the
    capacity provider ("The specified capacity provider is in use"); issue 11 point 5."""
    t = serving(templates, env)
    assert only_id(t, "AWS::ECS::ClusterCapacityProviderAssociations") in depends_on(service(t))


@pytest.mark.parametrize("env", ECS_ENVS)
def test_scale_in_protection_only_where_the_stack_is_never_deleted(templates: dict, env: str) -> None:
    """ECS leaves its scale-in protection on the instances when the capacity provider is deleted, and the
    Auto Scaling group then cannot be deleted: environments that are torn down run without it."""
    t = serving(templates, env)
    retained = CONFIG[env]["retain_stateful"]
    provider = only(t, "AWS::ECS::CapacityProvider")["Properties"]["AutoScalingGroupProvider"]
    assert provider["ManagedTerminationProtection"] == ("ENABLED" if retained else "DISABLED")
    assert provider["ManagedDraining"] == "ENABLED"  # tasks still drain before an instance goes
    asg = only(t, "AWS::AutoScaling::AutoScalingGroup")["Properties"]
    assert asg.get("NewInstancesProtectedFromScaleIn", False) is retained


# --------------------------------------------------------------------------- update-safe stack boundaries (issue 11)


def manifest_dependencies(cdk_out, env: str) -> dict[str, set[str]]:
    """{stack display name: display names of the stacks it depends on} from the cloud assembly."""
    manifest = json.loads((cdk_out / f"assembly-{env}" / "manifest.json").read_text())
    stacks = {k: a for k, a in manifest["artifacts"].items() if a["type"] == "aws:cloudformation:stack"}
    return {
        a["displayName"].split("/")[1]: {stacks[d]["displayName"].split("/")[1] for d in a.get("dependencies", []) if d in stacks}
        for a in stacks.values()
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_no_stack_imports_what_the_serving_or_api_stack_exports(templates: dict, env: str) -> None:
    """A replaced ALB, target group, security group or service used to fail the serving stack's update with
    "Export ... cannot be updated as it is in use" (issue 11 point 6): nothing imports from them now."""
    for name, template in templates[env].items():
        text = json.dumps(template)
        for producer in (outputs.SERVING, outputs.API):
            assert f'"Fn::ImportValue": "{env}-{producer}:' not in text, f"{name} imports from {env}-{producer}"
    for producer in (outputs.SERVING, outputs.API):
        stack = templates[env].get(f"{env}-{producer}", {})
        assert not [k for k, o in stack.get("Outputs", {}).items() if "Export" in o], f"{env}-{producer} exports"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_parameter_a_stack_reads_is_written_by_a_stack_deployed_before_it(templates: dict, cdk_out, env: str) -> None:
    depends = manifest_dependencies(cdk_out, env)
    written = {
        r["Properties"]["Name"]: stack.removeprefix(f"{env}-")
        for stack, t in templates[env].items()
        for r in resources(t, "AWS::SSM::Parameter").values()
    }
    read_somewhere = 0
    for stack, t in templates[env].items():
        reader = stack.removeprefix(f"{env}-")
        for logical_id, p in t.get("Parameters", {}).items():
            if logical_id == "BootstrapVersion":
                continue
            assert p["Type"] == "AWS::SSM::Parameter::Value<String>", f"{stack}.{logical_id}"
            assert p["Default"] in written, f"{stack} reads {p['Default']}, which no stack writes"
            assert written[p["Default"]] in depends[reader], f"{stack} may deploy before {written[p['Default']]}"
            # No description: the CDK CLI then never skips this stack, so a changed value always reaches it.
            assert "[cdk:skip]" not in p.get("Description", "")
            read_somewhere += 1
    if "ecs" in CONFIG[env].get("backends", ["ecs"]):
        # api: ALB arn/dns/group + front-door group (no ALB DNS name where a TLS host name is called);
        # monitoring: 6 names and ids
        assert read_somewhere >= (9 if CONFIG[env]["ecs"].get("tls_host_name") else 10)


@pytest.mark.parametrize("env", ECS_ENVS)
def test_deploy_order_is_explicit(cdk_out, env: str) -> None:
    depends = manifest_dependencies(cdk_out, env)
    assert {outputs.NETWORK, outputs.MODEL_CACHE} <= depends[outputs.SERVING]
    assert outputs.SERVING in depends[outputs.API]
    assert {outputs.SERVING, outputs.API} <= depends[outputs.MONITORING]
    if "sagemaker" in CONFIG[env]["backends"]:
        assert outputs.SAGEMAKER in depends[outputs.MONITORING]


@pytest.mark.parametrize("env", ECS_ENVS)
def test_the_serving_stack_publishes_what_the_others_read(templates: dict, env: str) -> None:
    t = serving(templates, env)
    published = {r["Properties"]["Name"]: r["Properties"]["Value"] for r in resources(t, "AWS::SSM::Parameter").values()}
    (alb,) = resources(t, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    (group,) = resources(t, "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert published[parameters.name(env, parameters.ALB_ARN)] == {"Ref": alb}
    assert published[parameters.name(env, parameters.ALB_DNS_NAME)] == {"Fn::GetAtt": [alb, "DNSName"]}
    assert published[parameters.name(env, parameters.ALB_FULL_NAME)] == {"Fn::GetAtt": [alb, "LoadBalancerFullName"]}
    assert published[parameters.name(env, parameters.TARGET_GROUP_FULL_NAME)] == {"Fn::GetAtt": [group, "TargetGroupFullName"]}
    assert published[parameters.name(env, parameters.ECS_SERVICE_NAME)] == {"Fn::GetAtt": [only_id(t, "AWS::ECS::Service"), "Name"]}
    assert published[parameters.name(env, parameters.ECS_CLUSTER_NAME)] == {"Ref": only_id(t, "AWS::ECS::Cluster")}
    assert published[parameters.name(env, parameters.ASG_NAME)] == {"Ref": only_id(t, "AWS::AutoScaling::AutoScalingGroup")}
