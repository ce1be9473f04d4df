"""The model-cache (stateful) stack of every ECS environment, read from the synthesized templates."""

from __future__ import annotations

import json

import pytest
import yaml

from llmhost import outputs, parameters
from tests.cfn import CONFIG_DIR, ENVIRONMENTS, only, resources

pytestmark = pytest.mark.synth
CONFIG = {env: yaml.safe_load((CONFIG_DIR / f"{env}.yaml").read_text()) for env in ENVIRONMENTS}
ECS_ENVS = [env for env in ENVIRONMENTS if "ecs" in CONFIG[env].get("backends", ["ecs"])]

# Renaming any of these replaces the resource: a new empty cache (140 GB to download again), a new
# key (everything encrypted with the old one orphaned), a lost HF token. Pinned on purpose.
PINNED = {
    "ModelCacheKey78B7FBCB": "AWS::KMS::Key",
    "ModelCacheFileSystemC75099E4": "AWS::EFS::FileSystem",
    "ModelCacheFileSystemHfCache08A8FAC5": "AWS::EFS::AccessPoint",
    "ModelCacheSecurityGroup20732A76": "AWS::EC2::SecurityGroup",
    "SecretsApiKeys7AB8F12A": "AWS::SecretsManager::Secret",
}


def cache(templates: dict, env: str) -> dict:
    return templates[env][f"{env}-{outputs.MODEL_CACHE}"]


def file_system(templates: dict, env: str) -> dict:
    return only(cache(templates, env), "AWS::EFS::FileSystem")


@pytest.mark.parametrize("env", ECS_ENVS)
def test_stateful_logical_ids_are_pinned_and_retained_where_configured(templates: dict, env: str) -> None:
    t = cache(templates, env)
    retained = CONFIG[env]["retain_stateful"]
    for logical_id, type_ in PINNED.items():
        assert t["Resources"].get(logical_id, {}).get("Type") == type_, f"{logical_id} renamed in {env}"
    for logical_id in ("ModelCacheKey78B7FBCB", "ModelCacheFileSystemC75099E4", "SecretsApiKeys7AB8F12A"):
        assert t["Resources"][logical_id]["DeletionPolicy"] == ("Retain" if retained else "Delete")


@pytest.mark.parametrize("env", ECS_ENVS)
def test_efs_is_encrypted_with_the_rotating_customer_managed_key(templates: dict, env: str) -> None:
    fs = file_system(templates, env)["Properties"]
    assert fs["Encrypted"] is True
    assert fs["KmsKeyId"] == {"Fn::GetAtt": ["ModelCacheKey78B7FBCB", "Arn"]}
    assert cache(templates, env)["Resources"]["ModelCacheKey78B7FBCB"]["Properties"]["EnableKeyRotation"] is True


@pytest.mark.parametrize("env", ECS_ENVS)
def test_throughput_mode_from_config_elastic_by_default(templates: dict, env: str) -> None:
    expected = CONFIG[env]["ecs"].get("efs_throughput_mode", "elastic")
    assert file_system(templates, env)["Properties"]["ThroughputMode"] == expected


@pytest.mark.parametrize("env", ECS_ENVS)
def test_automatic_backups_only_in_prod(templates: dict, env: str) -> None:
    # CloudFormation creates an EFS without automatic backups unless BackupPolicy says otherwise.
    policy = file_system(templates, env)["Properties"].get("BackupPolicy", {}).get("Status", "DISABLED")
    assert policy == ("ENABLED" if CONFIG[env]["retain_stateful"] else "DISABLED")


@pytest.mark.parametrize("env", ECS_ENVS)
def test_mount_targets_in_every_private_workload_subnet(templates: dict, env: str) -> None:
    targets = resources(cache(templates, env), "AWS::EFS::MountTarget").values()
    assert len(targets) == len(CONFIG[env]["availability_zones"])
    for target in targets:
        assert "WorkloadSubnet" in json.dumps(target["Properties"]["SubnetId"])
        assert target["Properties"]["SecurityGroups"] == [{"Fn::GetAtt": ["ModelCacheSecurityGroup20732A76", "GroupId"]}]


@pytest.mark.parametrize("env", ECS_ENVS)
def test_cache_security_group_admits_nfs_only_from_the_task_groups(templates: dict, env: str) -> None:
    group = cache(templates, env)["Resources"]["ModelCacheSecurityGroup20732A76"]["Properties"]
    assert "SecurityGroupIngress" not in group  # no inline rule, no CIDR
    serving = templates[env][f"{env}-{outputs.SERVING}"]
    rules = [
        r["Properties"]
        for r in resources(serving, "AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == cache_group_in_serving(templates, env)
    ]
    assert {r["SourceSecurityGroupId"]["Fn::GetAtt"][0] for r in rules} == {
        "ServingSecurityGroup82BE63AA",
        "PrewarmSecurityGroupE1C3573B",
    }
    assert all((r["FromPort"], r["ToPort"], r["IpProtocol"]) == (2049, 2049, "tcp") for r in rules)
    assert all("CidrIp" not in r for r in rules)


@pytest.mark.parametrize("env", ECS_ENVS)
def test_access_point_roots_the_hf_cache_with_a_fixed_posix_owner(templates: dict, env: str) -> None:
    ap = only(cache(templates, env), "AWS::EFS::AccessPoint")["Properties"]
    assert ap["RootDirectory"]["Path"] == "/hf-cache"
    assert ap["PosixUser"] == {"Uid": "1000", "Gid": "1000"}
    assert ap["RootDirectory"]["CreationInfo"] == {"OwnerUid": "1000", "OwnerGid": "1000", "Permissions": "750"}


@pytest.mark.parametrize("env", ECS_ENVS)
def test_file_system_policy_denies_clear_text_nfs(templates: dict, env: str) -> None:
    statements = file_system(templates, env)["Properties"]["FileSystemPolicy"]["Statement"]
    deny = [s for s in statements if s["Effect"] == "Deny"]
    assert deny and deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # and no statement lets anyone in without IAM (anonymous access is off)
    assert not any(s["Effect"] == "Allow" and "elasticfilesystem:ClientRootAccess" in str(s["Action"]) for s in statements)


@pytest.mark.parametrize("env", ECS_ENVS)
def test_secrets_are_encrypted_with_the_cache_key(templates: dict, env: str) -> None:
    secrets = resources(cache(templates, env), "AWS::SecretsManager::Secret")
    assert secrets, "no secrets"
    for secret in secrets.values():
        assert secret["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["ModelCacheKey78B7FBCB", "Arn"]}


@pytest.mark.parametrize("env", ECS_ENVS)
def test_no_hf_token_secret_is_generated(templates: dict, env: str) -> None:
    """The deploy itself downloads the model: a token secret it created would hold a placeholder, not a token
    (issue 11: it used to be generated, so a gated model failed on the first deploy)."""
    secrets = resources(cache(templates, env), "AWS::SecretsManager::Secret")
    assert [s["Properties"]["Description"] for s in secrets.values()] == [
        'Gateway API keys, JSON {"key-id": "key"}; the front door sends the "frontdoor" key'
    ]


@pytest.mark.parametrize("env", ECS_ENVS)
def test_gateway_api_keys_secret_generates_the_json_the_gateway_reads(templates: dict, env: str) -> None:
    secret = cache(templates, env)["Resources"]["SecretsApiKeys7AB8F12A"]["Properties"]
    generated = secret["GenerateSecretString"]
    assert json.loads(generated["SecretStringTemplate"]) == {}
    assert generated["GenerateStringKey"] == "frontdoor"
    assert generated["PasswordLength"] >= 32


@pytest.mark.parametrize("env", ECS_ENVS)
def test_log_groups_may_use_the_key_through_cloudwatch_logs(templates: dict, env: str) -> None:
    policy = cache(templates, env)["Resources"]["ModelCacheKey78B7FBCB"]["Properties"]["KeyPolicy"]["Statement"]
    region = CONFIG[env]["region"]
    assert any(s.get("Principal", {}).get("Service") == f"logs.{region}.amazonaws.com" for s in policy)


@pytest.mark.parametrize("env", ECS_ENVS)
def test_alb_access_log_bucket_only_where_configured_sse_and_tls_only(templates: dict, env: str) -> None:
    t = cache(templates, env)
    buckets = resources(t, "AWS::S3::Bucket")
    if not CONFIG[env]["ecs"].get("alb_access_logs", False):
        assert not buckets
        return
    (bucket,) = buckets.values()
    sse = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"  # ALB logs accept SSE-S3 only
    assert bucket["Properties"]["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True
    policy = only(t, "AWS::S3::BucketPolicy")["Properties"]["PolicyDocument"]["Statement"]
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in policy)
    assert bucket["DeletionPolicy"] == ("Retain" if CONFIG[env]["retain_stateful"] else "Delete")


@pytest.mark.parametrize("env", ECS_ENVS)
def test_file_system_id_is_an_output(templates: dict, env: str) -> None:
    assert cache(templates, env)["Outputs"][outputs.MODEL_CACHE_FILE_SYSTEM_ID]["Value"] == {
        "Ref": "ModelCacheFileSystemC75099E4"
    }


def cache_group_in_serving(templates: dict, env: str) -> dict:
    """The serving stack's reference to the cache's security group: the template parameter that reads
    it from SSM at deploy (an import would block replacing the group: issue 11.6)."""
    name = parameters.name(env, parameters.MODEL_CACHE_SECURITY_GROUP_ID)
    serving = templates[env][f"{env}-{outputs.SERVING}"]
    (ref,) = [
        k
        for k, p in serving.get("Parameters", {}).items()
        if p["Type"] == "AWS::SSM::Parameter::Value<String>" and p["Default"] == name
    ]
    return {"Ref": ref}


@pytest.mark.parametrize("env", ECS_ENVS)
def test_cache_security_group_reaches_serving_through_ssm_not_an_export(templates: dict, env: str) -> None:
    published = {
        r["Properties"]["Name"]: r["Properties"]["Value"] for r in resources(cache(templates, env), "AWS::SSM::Parameter").values()
    }
    name = parameters.name(env, parameters.MODEL_CACHE_SECURITY_GROUP_ID)
    assert published[name] == {"Fn::GetAtt": ["ModelCacheSecurityGroup20732A76", "GroupId"]}
    serving = templates[env][f"{env}-{outputs.SERVING}"]
    assert "ModelCacheSecurityGroup" not in json.dumps(serving)
    group = cache_group_in_serving(templates, env)
    egress = [
        e
        for r in resources(serving, "AWS::EC2::SecurityGroup").values()
        for e in r["Properties"].get("SecurityGroupEgress", [])
        if e.get("DestinationSecurityGroupId") == group
    ]
    assert egress and all((e["FromPort"], e["ToPort"]) == (2049, 2049) for e in egress)  # groups without open egress
