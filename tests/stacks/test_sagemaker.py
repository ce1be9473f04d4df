"""The SageMaker stack of every environment that deploys it, read from the synthesized templates."""

from __future__ import annotations

import re

import pytest
import yaml

from llm_hosting_constructs.sagemaker_container import DEFAULT_VERSIONS, MODEL_DIR
from llm_hosting_constructs.sizing import get_instance
from llmhost import outputs
from tests.cfn import CONFIG_DIR, ENVIRONMENTS, only, resources

pytestmark = pytest.mark.synth
CONFIG = {env: yaml.safe_load((CONFIG_DIR / f"{env}.yaml").read_text()) for env in ENVIRONMENTS}
AUTO_DELETE_ROLE = "CustomS3AutoDeleteObjectsCustomResourceProviderRole3B1BD092"  # CDK's bucket emptier
SM_ENVS = [env for env in ENVIRONMENTS if "sagemaker" in CONFIG[env].get("backends", [])]
# Repository of each container's DLC in AWS's DLC account (763104351884), as SageMaker publishes them.
REPOSITORY = {"tgi": "huggingface-pytorch-tgi-inference", "vllm": "huggingface-vllm", "lmi": "djl-inference"}
# Stateful or name-bearing resources: a changed logical id would replace them.
PINNED_IDS = {
    "EndpointKeyF20E8C6D": "AWS::KMS::Key",
    "EndpointLogGroup15F89CA5": "AWS::Logs::LogGroup",
    "Endpoint8024A810": "AWS::SageMaker::Endpoint",
}


def sm(env: str) -> dict:
    return {"container": "tgi", "weights": "s3", "image_versions": {}, **CONFIG[env]["sagemaker"]}


def stack(templates: dict, env: str) -> dict:
    return templates[env][f"{env}-{outputs.SAGEMAKER}"]


def container(templates: dict, env: str) -> dict:
    return only(stack(templates, env), "AWS::SageMaker::Model")["Properties"]["PrimaryContainer"]


def variant(templates: dict, env: str) -> dict:
    (v,) = only(stack(templates, env), "AWS::SageMaker::EndpointConfig")["Properties"]["ProductionVariants"]
    return v


def statements(templates: dict, env: str) -> list[dict]:
    t = stack(templates, env)
    (policy,) = resources(t, "AWS::IAM::Policy").values()
    return policy["Properties"]["PolicyDocument"]["Statement"]


def listify(value: object) -> list:
    return value if isinstance(value, list) else [value]


def test_staging_deploys_sagemaker_and_no_other_env_does(templates: dict) -> None:
    assert SM_ENVS, "no environment has the sagemaker backend: the SageMaker stack tests would not run"
    for env in ENVIRONMENTS:
        assert (f"{env}-{outputs.SAGEMAKER}" in templates[env]) == (env in SM_ENVS)


@pytest.mark.parametrize("env", SM_ENVS)
def test_image_is_the_configured_container_version_in_the_region(templates: dict, env: str) -> None:
    cfg = sm(env)
    name = cfg["container"]
    version = cfg["image_versions"].get(name, DEFAULT_VERSIONS[name])
    image = container(templates, env)["Image"]
    match = re.fullmatch(r"763104351884\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com/(?P<repo>[^:]+):(?P<tag>.+)", image)
    assert match, image
    assert match["region"] == CONFIG[env]["region"]
    assert match["repo"] == REPOSITORY[name]
    assert version in match["tag"]


@pytest.mark.parametrize("env", SM_ENVS)
def test_container_environment_comes_from_config(templates: dict, env: str) -> None:
    cfg, model = sm(env), CONFIG[env]["model"]
    assert cfg["container"] == "tgi", "this test reads TGI's variables; extend it for the configured container"
    environment = container(templates, env)["Environment"]
    assert environment["HF_MODEL_ID"] == (MODEL_DIR if cfg["weights"] == "s3" else model["id"])
    assert environment["SM_NUM_GPUS"] == str(model.get("tensor_parallel_size", 1))
    assert environment["MAX_TOTAL_TOKENS"] == str(model["max_model_len"])
    assert environment["MAX_INPUT_TOKENS"] == str(cfg.get("max_input_tokens", model["max_model_len"] - 1))
    assert environment["MAX_BATCH_PREFILL_TOKENS"] == str(cfg.get("max_batch_prefill_tokens", model["max_model_len"]))
    assert environment["MAX_CONCURRENT_REQUESTS"] == str(cfg.get("max_concurrent_requests", 128))
    assert environment["DTYPE"] == model.get("dtype", "bfloat16")
    assert not {k for k in environment if "TOKEN" in k and k.startswith(("HF_", "HUGGING"))}, "no Hub token in the environment"


@pytest.mark.parametrize("env", SM_ENVS)
def test_weights_come_from_the_s3_prefix_with_network_isolation(templates: dict, env: str) -> None:
    cfg = sm(env)
    assert cfg["weights"] == "s3"
    model = only(stack(templates, env), "AWS::SageMaker::Model")["Properties"]
    source = model["PrimaryContainer"]["ModelDataSource"]["S3DataSource"]
    assert source == {"S3Uri": cfg["model_data_s3_uri"], "S3DataType": "S3Prefix", "CompressionType": "None"}
    assert model["EnableNetworkIsolation"] is True
    assert "ModelDataUrl" not in model["PrimaryContainer"]


@pytest.mark.parametrize("env", SM_ENVS)
def test_execution_role_has_no_managed_policy_and_trusts_only_sagemaker(templates: dict, env: str) -> None:
    role = stack(templates, env)["Resources"]["EndpointExecutionRole626EC5D8"]["Properties"]
    assert "ManagedPolicyArns" not in role
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}


@pytest.mark.parametrize("env", SM_ENVS)
def test_role_policy_is_scoped(templates: dict, env: str) -> None:
    by_sid = {s["Sid"]: s for s in statements(templates, env)}
    assert not any("*" in a for s in by_sid.values() for a in listify(s["Action"])), "no wildcard actions"
    # Resource "*" only where AWS offers no resource-level permission.
    unscoped = {a for s in by_sid.values() if s["Resource"] == "*" for a in listify(s["Action"])}
    assert unscoped == {
        "ecr:GetAuthorizationToken",
        "cloudwatch:PutMetricData",
        "ec2:DescribeVpcs",
        "ec2:DescribeSubnets",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeDhcpOptions",
    }
    assert by_sid["PutMetrics"]["Condition"] == {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}}
    # S3: read-only, the weights prefix only.
    bucket, prefix = re.fullmatch(r"s3://([^/]+)/(.+)", sm(env)["model_data_s3_uri"]).groups()
    s3_actions = {a for s in by_sid.values() for a in listify(s["Action"]) if a.startswith("s3:")}
    assert s3_actions == {"s3:GetObject", "s3:ListBucket", "s3:PutObject"}
    assert by_sid["ReadModelWeights"]["Resource"] == f"arn:aws:s3:::{bucket}/{prefix}*"
    assert by_sid["ListModelWeights"]["Condition"] == {"StringLike": {"s3:prefix": [f"{prefix}*"]}}
    assert "captures/*" in str(by_sid["WriteDataCapture"]["Resource"])
    # ECR: pull from the image's own repository.
    repo = container(templates, env)["Image"].split("/", 1)[1].split(":")[0]
    assert f"repository/{repo}" in str(by_sid["PullImage"]["Resource"])
    # Logs: the endpoint's own log group and its streams.
    assert all("EndpointLogGroup" in str(r) for r in listify(by_sid["WriteLogs"]["Resource"]))
    # Network interfaces only in this VPC.
    assert "ec2:Vpc" in by_sid["NetworkInterfacesInThisVpc"]["Condition"]["ArnEquals"]
    # The rollback alarms, for blue/green deployments.
    assert by_sid["DescribeRollbackAlarms"]["Action"] == "cloudwatch:DescribeAlarms"


@pytest.mark.parametrize("env", SM_ENVS)
def test_vpc_config_uses_the_network_stacks_workload_subnets_and_an_own_security_group(templates: dict, env: str) -> None:
    t = stack(templates, env)
    vpc_config = only(t, "AWS::SageMaker::Model")["Properties"]["VpcConfig"]
    assert len(vpc_config["Subnets"]) == len(CONFIG[env]["availability_zones"])
    assert all("WorkloadSubnet" in s["Fn::ImportValue"] for s in vpc_config["Subnets"])
    ((sg_id, sg),) = resources(t, "AWS::EC2::SecurityGroup").items()
    assert vpc_config["SecurityGroupIds"] == [{"Fn::GetAtt": [sg_id, "GroupId"]}]
    assert "SecurityGroupIngress" not in sg["Properties"]
    assert [(e["IpProtocol"], e["FromPort"], e["ToPort"]) for e in sg["Properties"]["SecurityGroupEgress"]] == [("tcp", 443, 443)]


@pytest.mark.parametrize("env", SM_ENVS)
def test_instance_type_count_and_timeouts_come_from_config(templates: dict, env: str) -> None:
    cfg, v = sm(env), variant(templates, env)
    assert v["InstanceType"] == cfg["instance_type"]
    assert v["InitialInstanceCount"] == cfg.get("instance_count", 1)
    assert v["ContainerStartupHealthCheckTimeoutInSeconds"] == cfg.get("container_startup_timeout_seconds", 1800)
    assert v["ModelDataDownloadTimeoutInSeconds"] == cfg.get("model_download_timeout_seconds", 1800)
    assert 60 <= v["ContainerStartupHealthCheckTimeoutInSeconds"] <= 3600


@pytest.mark.parametrize("env", SM_ENVS)
def test_storage_volume_key_only_without_local_nvme(templates: dict, env: str) -> None:
    props = only(stack(templates, env), "AWS::SageMaker::EndpointConfig")["Properties"]
    if get_instance(sm(env)["instance_type"]).has_local_nvme:
        assert "KmsKeyId" not in props  # CreateEndpointConfig rejects it: instance storage is hardware-encrypted
    else:
        assert props["KmsKeyId"]


@pytest.mark.parametrize("env", SM_ENVS)
def test_data_capture_goes_to_a_kms_encrypted_bucket(templates: dict, env: str) -> None:
    t, cfg = stack(templates, env), sm(env)
    capture = only(t, "AWS::SageMaker::EndpointConfig")["Properties"].get("DataCaptureConfig")
    if "data_capture" not in cfg:
        assert capture is None
        return
    assert capture["EnableCapture"] is True
    assert capture["InitialSamplingPercentage"] == cfg["data_capture"]["sampling_percentage"]
    assert capture["KmsKeyId"] == {"Fn::GetAtt": ["EndpointKeyF20E8C6D", "Arn"]}
    bucket = t["Resources"]["EndpointDataCaptureBucketFC5FCCA9"]["Properties"]
    (sse,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert bucket["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True
    (rule,) = bucket["LifecycleConfiguration"]["Rules"]
    assert rule["ExpirationInDays"] == cfg["data_capture"]["retention_days"]


@pytest.mark.parametrize("env", SM_ENVS)
def test_blue_green_deployment_rolls_back_on_the_endpoints_alarms(templates: dict, env: str) -> None:
    t, cfg = stack(templates, env), sm(env)
    deployment = only(t, "AWS::SageMaker::Endpoint")["Properties"]["DeploymentConfig"]
    routing = deployment["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing == {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": cfg.get("rollback_bake_seconds", 600)}
    alarm_ids = {a["AlarmName"]["Ref"] for a in deployment["AutoRollbackConfiguration"]["Alarms"]}
    alarms = {t["Resources"][i]["Properties"]["MetricName"]: t["Resources"][i]["Properties"] for i in alarm_ids}
    assert set(alarms) == {"Invocation5XXErrors", "ModelLatency"}
    name = only(t, "AWS::SageMaker::Endpoint")["Properties"]["EndpointName"]
    for alarm in alarms.values():
        assert alarm["Namespace"] == "AWS/SageMaker"
        assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {"EndpointName": name, "VariantName": "AllTraffic"}
    thresholds = CONFIG[env]["monitoring"].get("thresholds", {})
    assert alarms["ModelLatency"]["Threshold"] == thresholds.get("sagemaker_model_latency_p99_ms", 60_000) * 1000  # µs
    assert alarms["Invocation5XXErrors"]["Threshold"] == thresholds.get("sagemaker_5xx", 5)


@pytest.mark.parametrize("env", SM_ENVS)
def test_scalable_target_is_the_variants_instance_count(templates: dict, env: str) -> None:
    t, cfg = stack(templates, env), sm(env)
    target = only(t, "AWS::ApplicationAutoScaling::ScalableTarget")["Properties"]
    assert target["ServiceNamespace"] == "sagemaker"
    assert target["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    assert (target["MinCapacity"], target["MaxCapacity"]) == (cfg["min_capacity"], cfg["max_capacity"])
    endpoint_id = next(iter(resources(t, "AWS::SageMaker::Endpoint")))
    assert target["ResourceId"] == {
        "Fn::Join": ["", ["endpoint/", {"Fn::GetAtt": [endpoint_id, "EndpointName"]}, "/variant/AllTraffic"]]
    }
    assert "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint" in str(target["RoleARN"])
    assert not resources(t, "AWS::IAM::Role").keys() - {"EndpointExecutionRole626EC5D8", AUTO_DELETE_ROLE}, "no extra scaling role"


@pytest.mark.parametrize("env", SM_ENVS)
def test_target_tracking_on_invocations_per_instance(templates: dict, env: str) -> None:
    cfg = sm(env)
    policy = only(stack(templates, env), "AWS::ApplicationAutoScaling::ScalingPolicy")["Properties"]
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"] == {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}
    assert tracking["TargetValue"] == cfg.get("target_invocations_per_instance", 30)
    assert tracking["ScaleInCooldown"] == cfg.get("scale_in_cooldown_seconds", 300)
    assert tracking["ScaleOutCooldown"] == cfg.get("scale_out_cooldown_seconds", 60)


@pytest.mark.parametrize("env", SM_ENVS)
def test_off_hours_scheduled_actions_only_where_config_asks(templates: dict, env: str) -> None:
    cfg = sm(env)
    target = only(stack(templates, env), "AWS::ApplicationAutoScaling::ScalableTarget")["Properties"]
    actions = {a["ScheduledActionName"]: a for a in target.get("ScheduledActions", [])}
    if "off_hours" not in cfg:
        assert not actions
        return
    assert not CONFIG[env].get("retain_stateful", True), "off-hours only in non-prod"
    down, up = actions["OffHoursScaleDown"], actions["OffHoursScaleUp"]
    assert down["Schedule"] == f"cron({cfg['off_hours']['scale_down_cron']})"
    assert down["ScalableTargetAction"] == {"MinCapacity": 1, "MaxCapacity": 1}
    assert up["Schedule"] == f"cron({cfg['off_hours']['scale_up_cron']})"
    assert up["ScalableTargetAction"] == {"MinCapacity": cfg["min_capacity"], "MaxCapacity": cfg["max_capacity"]}


@pytest.mark.parametrize("env", SM_ENVS)
def test_endpoint_name_output_for_the_ops_cli(templates: dict, env: str) -> None:
    t = stack(templates, env)
    endpoint_id = next(iter(resources(t, "AWS::SageMaker::Endpoint")))
    assert t["Outputs"][outputs.SAGEMAKER_ENDPOINT_NAME]["Value"] == {"Fn::GetAtt": [endpoint_id, "EndpointName"]}
    slug = CONFIG[env]["sagemaker"]["instance_type"].removeprefix("ml.").replace(".", "-")  # a new type is a new endpoint
    assert only(t, "AWS::SageMaker::Endpoint")["Properties"]["EndpointName"] == f"{env}-{CONFIG[env]['model']['served_name']}-{slug}"


@pytest.mark.parametrize("env", SM_ENVS)
def test_stateful_logical_ids_are_pinned(templates: dict, env: str) -> None:
    t = stack(templates, env)
    for logical_id, type_ in PINNED_IDS.items():
        assert t["Resources"][logical_id]["Type"] == type_
    if "data_capture" in sm(env):
        assert t["Resources"]["EndpointDataCaptureBucketFC5FCCA9"]["Type"] == "AWS::S3::Bucket"


@pytest.mark.parametrize("env", SM_ENVS)
def test_log_group_is_encrypted_and_only_it_may_use_the_key_through_logs(templates: dict, env: str) -> None:
    t = stack(templates, env)
    log_group = t["Resources"]["EndpointLogGroup15F89CA5"]["Properties"]
    name = only(t, "AWS::SageMaker::Endpoint")["Properties"]["EndpointName"]
    assert log_group["LogGroupName"] == f"/aws/sagemaker/Endpoints/{name}"
    assert log_group["KmsKeyId"] == {"Fn::GetAtt": ["EndpointKeyF20E8C6D", "Arn"]}
    assert log_group["RetentionInDays"] == sm(env).get("log_retention_days", 90)
    statements = t["Resources"]["EndpointKeyF20E8C6D"]["Properties"]["KeyPolicy"]["Statement"]
    (logs_statement,) = [s for s in statements if "Service" in s["Principal"]]
    assert logs_statement["Principal"] == {"Service": f"logs.{CONFIG[env]['region']}.amazonaws.com"}
    ((operator, condition),) = logs_statement["Condition"].items()
    assert operator in ("ArnEquals", "ArnLike")
    # Every instance type's group of this endpoint (a type change keeps the old group): base name + "-*".
    base = name.removesuffix("-" + sm(env)["instance_type"].removeprefix("ml.").replace(".", "-"))
    assert base != name
    assert condition["kms:EncryptionContext:aws:logs:arn"].endswith(f":log-group:/aws/sagemaker/Endpoints/{base}-*")


@pytest.mark.parametrize("env", SM_ENVS)
def test_log_group_of_a_replaced_endpoint_is_kept(templates: dict, env: str) -> None:
    """SageMaker names the group after the endpoint, whose name ends in the instance type: a type change
    replaces the group, and UpdateReplacePolicy Retain keeps the old endpoint's logs (issue 11.7)."""
    group = stack(templates, env)["Resources"]["EndpointLogGroup15F89CA5"]
    assert group["UpdateReplacePolicy"] == "Retain"
    assert group["DeletionPolicy"] == ("Retain" if CONFIG[env]["retain_stateful"] else "Delete")


@pytest.mark.parametrize("env", SM_ENVS)
def test_scaling_policy_name_changes_with_the_endpoint(templates: dict, env: str) -> None:
    """A new instance type replaces the scalable target and so the policy: CloudFormation cannot replace a
    resource that keeps its custom name, so the policy's name carries the endpoint's."""
    t = stack(templates, env)
    name = only(t, "AWS::SageMaker::Endpoint")["Properties"]["EndpointName"]
    assert only(t, "AWS::ApplicationAutoScaling::ScalingPolicy")["Properties"]["PolicyName"].startswith(f"{name}-")


@pytest.mark.parametrize("env", SM_ENVS)
def test_buckets_deleted_with_the_environment_are_emptied_by_cdk(templates: dict, env: str) -> None:
    t = stack(templates, env)
    buckets = resources(t, "AWS::S3::Bucket")
    emptied = {r["Properties"]["BucketName"]["Ref"] for r in resources(t, "Custom::S3AutoDeleteObjects").values()}
    assert emptied == {k for k, b in buckets.items() if b["DeletionPolicy"] == "Delete"}
    assert bool(emptied) == ("data_capture" in sm(env) and not CONFIG[env]["retain_stateful"])
