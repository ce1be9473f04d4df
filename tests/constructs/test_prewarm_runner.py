"""The deploy-time pre-warm handlers (custom resource): ECS RunTask / ListTasks / DescribeTasks / StopTask
answered by moto (5.2.5 supports all four for Fargate tasks), the stop verdict on AWS-shaped
DescribeTasks entries (moto reports no container exit codes)."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws
from moto.ec2.models.elastic_network_interfaces import NetworkInterface

from llm_hosting_constructs.prewarm_runner import handler

REGION = "us-east-1"
REVISION = "0e9e39f249a16976918f6564b8830bc894c89659"


@pytest.fixture
def props(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    # moto 5.2.5's awsvpc task reads an ENI attribute its own NetworkInterface lacks (a moto bug):
    # give the fake one, or RunTask with a network configuration raises inside moto.
    monkeypatch.setattr(NetworkInterface, "private_dns_name", "ip-10-0-1-10.ec2.internal", raising=False)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="prewarm", Description="prewarm", VpcId=vpc)["GroupId"]
        ecs = boto3.client("ecs", region_name=REGION)
        ecs.create_cluster(clusterName="gpu")
        task_definition = ecs.register_task_definition(
            family="prewarm",
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
            cpu="2048",
            memory="8192",
            containerDefinitions=[
                {"name": "prewarm", "image": "vllm/vllm-openai:v0.24.0", "essential": True, "memory": 8192}
            ],
        )["taskDefinition"]["taskDefinitionArn"]
        yield {
            "Cluster": "gpu",
            "TaskDefinition": task_definition,
            "Container": "prewarm",
            "Subnets": subnet,
            "SecurityGroup": group,
            "LogGroup": "/prewarm",
            "ModelId": "meta-llama/Llama-3.1-8B-Instruct",
            "Revision": REVISION,
            "SourceUri": "",
        }


def event(request: str, props: dict[str, str], physical_id: str | None = None, **extra: object) -> dict:
    e: dict = {"RequestType": request, "ResourceProperties": props, **extra}
    if physical_id is not None:
        e["PhysicalResourceId"] = physical_id
    return e


def tasks(cluster: str = "gpu") -> list[str]:
    return boto3.client("ecs", region_name=REGION).list_tasks(cluster=cluster)["taskArns"]


def test_create_starts_one_fargate_task_in_the_private_subnets(props: dict[str, str]) -> None:
    result = handler.on_event(event("Create", props))
    (arn,) = tasks()
    assert result["Data"]["TaskArn"] == arn
    task = boto3.client("ecs", region_name=REGION).describe_tasks(cluster="gpu", tasks=[arn])["tasks"][0]
    assert task["launchType"] == "FARGATE"
    assert task["startedBy"] == result["PhysicalResourceId"]


def test_is_complete_waits_while_the_task_runs(props: dict[str, str]) -> None:
    started = handler.on_event(event("Create", props))
    assert handler.is_complete({**event("Create", props), **started}) == {"IsComplete": False}


def test_is_complete_once_the_task_stopped(props: dict[str, str]) -> None:
    """moto reports exit code 0 for every stopped container: the success path (failures: below)."""
    started = handler.on_event(event("Create", props))
    boto3.client("ecs", region_name=REGION).stop_task(cluster="gpu", task=started["Data"]["TaskArn"], reason="done")
    assert handler.is_complete({**event("Create", props), **started}) == {"IsComplete": True}


def test_a_task_ecs_does_not_know_fails_the_deploy(props: dict[str, str]) -> None:
    gone = {"PhysicalResourceId": handler.fill_id(props), "Data": {"TaskArn": "arn:aws:ecs:us-east-1:123456789012:task/gpu/0"}}
    with pytest.raises(RuntimeError, match="not found"):
        handler.is_complete({**event("Create", props), **gone})


def test_a_second_deploy_joins_the_task_still_running_instead_of_starting_another(props: dict[str, str]) -> None:
    """A deploy that timed out (1 h) while the download ran: the retry waits for the same task."""
    first = handler.on_event(event("Create", props))
    second = handler.on_event(event("Create", props))
    assert second["Data"]["TaskArn"] == first["Data"]["TaskArn"]
    assert len(tasks()) == 1


def test_a_new_revision_is_a_new_fill(props: dict[str, str]) -> None:
    old = handler.on_event(event("Create", props))
    new_props = {**props, "Revision": "1" * 40}
    new = handler.on_event(event("Update", new_props, old["PhysicalResourceId"], OldResourceProperties=props))
    assert new["PhysicalResourceId"] != old["PhysicalResourceId"]
    assert new["Data"]["TaskArn"] != old["Data"]["TaskArn"]
    assert len(tasks()) == 2


@pytest.mark.parametrize("field", ["ModelId", "SourceUri"])
def test_model_id_and_source_are_triggers_too(props: dict[str, str], field: str) -> None:
    assert handler.fill_id(props) != handler.fill_id({**props, field: "s3://other/prefix/"})


def test_an_update_that_keeps_model_revision_and_source_downloads_nothing(props: dict[str, str]) -> None:
    """E.g. a new task-definition revision (another log retention): the cache is already filled."""
    physical_id = handler.fill_id(props)
    changed = {**props, "TaskDefinition": props["TaskDefinition"].replace(":1", ":2")}
    result = handler.on_event(event("Update", changed, physical_id))
    assert result["PhysicalResourceId"] == physical_id
    assert tasks() == []
    assert handler.is_complete({**event("Update", changed, physical_id), **result}) == {"IsComplete": True}


def test_delete_is_a_no_op(props: dict[str, str]) -> None:
    physical_id = handler.fill_id(props)
    result = handler.on_event(event("Delete", props, physical_id))
    assert result == {"PhysicalResourceId": physical_id}  # the framework refuses another id on delete
    assert tasks() == []
    assert handler.is_complete({**event("Delete", props, physical_id), **result}) == {"IsComplete": True}


def test_fill_id_is_a_valid_started_by_tag(props: dict[str, str]) -> None:
    """ECS: startedBy up to 36 letters (upper or lower), numbers, hyphens and underscores."""
    fill = handler.fill_id(props)
    assert len(fill) <= 36 and fill.replace("-", "").replace("_", "").isalnum()
    assert handler.fill_id(dict(props)) == fill  # stable across deploys


# --- the verdict on DescribeTasks entries, in the shape the ECS API reference documents ---------------

ARN = "arn:aws:ecs:us-east-1:111111111111:task/gpu/0123456789abcdef"


def stopped(exit_code: int | None, **task: object) -> dict:
    container: dict = {"name": "prewarm", "lastStatus": "STOPPED"}
    if exit_code is not None:
        container["exitCode"] = exit_code
    return {"taskArn": ARN, "lastStatus": "STOPPED", "stopCode": "EssentialContainerExited", "containers": [container], **task}


def test_exit_code_zero_completes() -> None:
    assert handler.verdict(stopped(0), "prewarm") is True


@pytest.mark.parametrize("status", ["PROVISIONING", "PENDING", "ACTIVATING", "RUNNING", "DEACTIVATING", "STOPPING"])
def test_not_stopped_is_not_complete(status: str) -> None:
    assert handler.verdict({**stopped(None), "lastStatus": status}, "prewarm") is False


def test_nonzero_exit_fails_with_code_and_reason() -> None:
    task = stopped(3, stoppedReason="Essential container in task exited")
    with pytest.raises(RuntimeError, match=r"EssentialContainerExited: Essential container in task exited.*exit code 3"):
        handler.verdict(task, "prewarm")


def test_a_task_that_never_started_its_container_fails() -> None:
    task = stopped(None, stopCode="TaskFailedToStart", stoppedReason="ResourceInitializationError: failed to invoke EFS utils")
    with pytest.raises(RuntimeError, match=r"TaskFailedToStart: ResourceInitializationError.*exit code None"):
        handler.verdict(task, "prewarm")
