"""The lifecycle engine on small hand-written templates, against CloudFormation's documented rules.

The expected replacements come from the resource schemas (createOnlyProperties) as AWS publishes
them, e.g. an EFS file system's PerformanceMode and a security group's GroupDescription.
"""

from __future__ import annotations

from pathlib import Path

from tests.tools.assemblies import write_assembly
from tools.lifecycle import Stack, diff_environment, load_assembly, origins, references, render

REGION = "us-east-1"


def stack(name: str, resources: dict, outputs: dict | None = None, deps: tuple[str, ...] = ()) -> Stack:
    template = {"Resources": resources, **({"Outputs": outputs} if outputs else {})}
    return Stack(name, name, REGION, template, frozenset(deps), False)


def efs(mode: str = "generalPurpose") -> dict:
    return {"Type": "AWS::EFS::FileSystem", "Properties": {"PerformanceMode": mode, "Encrypted": True}}


def sg(description: str) -> dict:
    return {"Type": "AWS::EC2::SecurityGroup", "Properties": {"GroupDescription": description, "VpcId": "vpc-1"}}


def test_references_cover_ref_getatt_and_sub() -> None:
    value = {"A": {"Ref": "X"}, "B": {"Fn::GetAtt": ["Y", "Arn"]}, "C": {"Fn::Sub": "${Z.Name}-${AWS::Region}"}}
    assert set(references(value)) == {("X", None), ("Y", "Arn"), ("Z", "Name"), ("AWS::Region", None)}


def test_create_only_change_replaces_and_stateful_replacement_blocks() -> None:
    before = {"s": stack("s", {"Fs": efs()})}
    after = {"s": stack("s", {"Fs": efs("maxIO")})}
    diff = diff_environment("e", before, after)
    assert [(c.logical_id, c.action, c.reasons) for c in diff.changes] == [("Fs", "replace", ["PerformanceMode"])]
    assert len(diff.blocking) == 1 and "stateful s/Fs" in diff.blocking[0]


def test_replaced_log_group_kept_by_update_replace_policy_is_a_warning() -> None:
    def group(name: str) -> dict:
        return {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": name}, "UpdateReplacePolicy": "Retain"}

    diff = diff_environment("e", {"s": stack("s", {"G": group("/a")})}, {"s": stack("s", {"G": group("/b")})})
    assert not diff.blocking and any("UpdateReplacePolicy Retain keeps the old one" in w for w in diff.warnings)


def test_updatable_property_is_an_update() -> None:
    before = {"s": stack("s", {"G": {"Type": "AWS::Logs::LogGroup", "Properties": {"RetentionInDays": 30}}})}
    after = {"s": stack("s", {"G": {"Type": "AWS::Logs::LogGroup", "Properties": {"RetentionInDays": 90}}})}
    diff = diff_environment("e", before, after)
    assert [(c.action, c.properties) for c in diff.changes] == [("update", ["RetentionInDays"])]
    assert not diff.blocking


def test_replacement_cascades_through_create_only_references() -> None:
    """A new security group id: an ingress rule naming it in GroupId (create-only) is replaced too."""
    rule = {"Type": "AWS::EC2::SecurityGroupIngress", "Properties": {"GroupId": {"Ref": "Sg"}, "IpProtocol": "tcp"}}
    before = {"s": stack("s", {"Sg": sg("old"), "Rule": rule})}
    after = {"s": stack("s", {"Sg": sg("new"), "Rule": rule})}
    actions = {c.logical_id: c.action for c in diff_environment("e", before, after).changes}
    assert actions == {"Sg": "replace", "Rule": "replace"}


def test_changed_export_in_use_blocks() -> None:
    out = {"SgId": {"Value": {"Fn::GetAtt": ["Sg", "GroupId"]}, "Export": {"Name": "p:SgId"}}}
    consumer = stack("c", {"T": {"Type": "AWS::SNS::Topic", "Properties": {"DisplayName": {"Fn::ImportValue": "p:SgId"}}}}, deps=("p",))
    before = {"p": stack("p", {"Sg": sg("old")}, out), "c": consumer}
    after = {"p": stack("p", {"Sg": sg("new")}, out), "c": consumer}
    diff = diff_environment("e", before, after)
    assert any("export p:SgId changes (replaced: Sg) while c imports it" in b for b in diff.blocking), diff.blocking


def test_unused_export_may_change() -> None:
    out = {"SgId": {"Value": {"Fn::GetAtt": ["Sg", "GroupId"]}, "Export": {"Name": "p:SgId"}}}
    diff = diff_environment("e", {"p": stack("p", {"Sg": sg("old")}, out)}, {"p": stack("p", {"Sg": sg("new")}, out)})
    assert not diff.blocking


def test_custom_named_replacement_blocks() -> None:
    def group(desc: str) -> dict:
        return {"Type": "AWS::EC2::SecurityGroup", "Properties": {"GroupDescription": desc, "GroupName": "fixed", "VpcId": "v"}}

    diff = diff_environment("e", {"s": stack("s", {"Sg": group("a")})}, {"s": stack("s", {"Sg": group("b")})})
    assert any("custom name GroupName" in b for b in diff.blocking), diff.blocking


def test_renamed_stateful_resource_is_a_replacement() -> None:
    diff = diff_environment("e", {"s": stack("s", {"CacheA": efs()})}, {"s": stack("s", {"CacheB": efs()})})
    assert any("a new logical id is a new resource" in b for b in diff.blocking), render([diff])


def test_sagemaker_instance_type_change_of_scaled_variant_blocks() -> None:
    def sm(instance: str) -> Stack:
        return stack(
            "sm",
            {
                f"Cfg{instance[3:6]}": {
                    "Type": "AWS::SageMaker::EndpointConfig",
                    "Properties": {"ProductionVariants": [{"VariantName": "AllTraffic", "InstanceType": instance}]},
                },
                "Ep": {"Type": "AWS::SageMaker::Endpoint", "Properties": {"EndpointConfigName": {"Fn::GetAtt": [f"Cfg{instance[3:6]}", "EndpointConfigName"]}}},
                "Target": {
                    "Type": "AWS::ApplicationAutoScaling::ScalableTarget",
                    "Properties": {
                        "ServiceNamespace": "sagemaker",
                        "ResourceId": {"Fn::Join": ["", ["endpoint/", {"Fn::GetAtt": ["Ep", "EndpointName"]}, "/variant/AllTraffic"]]},
                    },
                },
            },
        )

    diff = diff_environment("e", {"sm": sm("ml.g5.2xlarge")}, {"sm": sm("ml.g6.2xlarge")})
    assert any("UpdateEndpoint changes variant AllTraffic" in b for b in diff.blocking), render([diff])


def test_origins_follow_imports_and_ssm_parameters() -> None:
    producer = stack(
        "p",
        {"Fs": efs(), "Param": {"Type": "AWS::SSM::Parameter", "Properties": {"Name": "/x/fs", "Value": {"Ref": "Fs"}, "Type": "String"}}},
        {"FsId": {"Value": {"Ref": "Fs"}, "Export": {"Name": "p:FsId"}}},
    )
    consumer = stack("c", {})
    consumer.template["Parameters"] = {"FsParam": {"Type": "AWS::SSM::Parameter::Value<String>", "Default": "/x/fs"}}
    env = {"p": producer, "c": consumer}
    assert origins(env, "c", {"Fn::ImportValue": "p:FsId"}) == {("p", "Fs")}
    assert origins(env, "c", {"Ref": "FsParam"}) == {("p", "Fs")}
    assert origins(env, "c", "{{resolve:ssm:/x/fs}}") == {("p", "Fs")}


def test_load_assembly_reads_stacks_and_dependencies(tmp_path: Path) -> None:
    write_assembly(tmp_path, "dev", {"dev-a": {"Resources": {}}, "dev-cache": {"Resources": {}}}, deps={"dev-cache": ["dev-a"]})
    env = load_assembly(tmp_path)["dev"]
    assert env["dev-cache"].dependencies == {"dev-a"} and env["dev-cache"].termination_protection
    assert env["dev-a"].region == REGION and env["dev-a"].path == "dev/a"
