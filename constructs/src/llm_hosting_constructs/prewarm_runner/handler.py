"""Custom resource handlers: run the model pre-warm task during the deploy and wait for it.

Used with CDK's ``custom_resources.Provider``: ``on_event`` starts the Fargate task (or joins
one already running for the same model, e.g. after a deploy timed out while it ran) and
``is_complete`` polls ``DescribeTasks`` until the task has stopped. Exit code 0 of the
pre-warm container completes the resource; anything else fails the deploy with the task's
own stop reason, before the serving service exists or changes.

Resource properties (all strings, set by ``ModelCacheFill``): ``Cluster``, ``TaskDefinition``
(ARN), ``Container``, ``Subnets`` (comma-separated),
``SecurityGroup``, ``LogGroup``, and the trigger fields ``ModelId``, ``Revision``,
``SourceUri``. A change of the trigger fields gives a new physical id (a new fill); Delete
never touches the cache. Only the standard library and boto3 (in the Lambda runtime).
"""

from __future__ import annotations

import hashlib
from typing import Any

import boto3

TRIGGER_FIELDS = ("ModelId", "Revision", "SourceUri")


def fill_id(props: dict[str, Any]) -> str:
    """Physical id of one fill: the model, its revision and its source; stable across deploys.

    Also the task's ``startedBy`` tag, which ECS limits to 36 letters, digits, '-' and '_'.
    """
    digest = hashlib.sha256("\n".join(str(props.get(f, "")) for f in TRIGGER_FIELDS).encode()).hexdigest()
    return f"prewarm-{digest[:28]}"


def _ecs() -> Any:
    return boto3.client("ecs")


def on_event(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    props = event["ResourceProperties"]
    if event["RequestType"] == "Delete":
        # The cache outlives this resource (it is the model-cache stack's), and a rollback of a
        # revision change must not delete files the running service still reads.
        return {"PhysicalResourceId": event["PhysicalResourceId"]}
    physical_id = fill_id(props)
    if event["RequestType"] == "Update" and event.get("PhysicalResourceId") == physical_id:
        # Same model, revision and source (only e.g. the subnets changed): the cache is already filled.
        return {"PhysicalResourceId": physical_id, "Data": {"TaskArn": ""}}
    ecs = _ecs()
    running = ecs.list_tasks(cluster=props["Cluster"], startedBy=physical_id, desiredStatus="RUNNING")["taskArns"]
    if running:
        task_arn = running[0]
    else:
        response = ecs.run_task(
            cluster=props["Cluster"],
            taskDefinition=props["TaskDefinition"],
            launchType="FARGATE",
            platformVersion="LATEST",
            count=1,
            startedBy=physical_id,
            networkConfiguration={
                "awsvpcConfiguration": {
                    "subnets": [s for s in props["Subnets"].split(",") if s],
                    "securityGroups": [props["SecurityGroup"]],
                    "assignPublicIp": "DISABLED",
                }
            },
        )
        if response.get("failures") or not response.get("tasks"):
            raise RuntimeError(f"RunTask of the model pre-warm failed: {response.get('failures')}")
        task_arn = response["tasks"][0]["taskArn"]
    print(f"pre-warm {props['ModelId']}@{props['Revision']}: task {task_arn} ({physical_id})")
    return {"PhysicalResourceId": physical_id, "Data": {"TaskArn": task_arn}}


def verdict(task: dict[str, Any], container: str) -> bool:
    """True when ``task`` (one DescribeTasks entry) stopped with ``container`` exiting 0; False while it
    runs; raises with ECS's own reasons when it stopped any other way."""
    if task.get("lastStatus") != "STOPPED":
        return False
    found = [c for c in task.get("containers", []) if c.get("name") == container]
    exit_code = found[0].get("exitCode") if found else None
    if exit_code == 0:
        return True
    reason = found[0].get("reason") if found else None
    raise RuntimeError(
        f"model pre-warm task {task.get('taskArn')} stopped ({task.get('stopCode', 'no stop code')}: "
        f"{task.get('stoppedReason') or 'no reason given'}); container {container!r} exit code {exit_code}"
        + (f" ({reason})" if reason else "")
    )


def is_complete(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    task_arn = event.get("Data", {}).get("TaskArn", "")
    if event["RequestType"] == "Delete" or not task_arn:
        return {"IsComplete": True}
    props = event["ResourceProperties"]
    response = _ecs().describe_tasks(cluster=props["Cluster"], tasks=[task_arn])
    if not response.get("tasks"):
        raise RuntimeError(f"model pre-warm task {task_arn} not found: {response.get('failures')}")
    try:
        done = verdict(response["tasks"][0], props["Container"])
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}; its log: CloudWatch log group {props.get('LogGroup')}") from None
    return {"IsComplete": done}
