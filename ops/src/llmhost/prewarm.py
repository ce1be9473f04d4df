"""`llmhost prewarm`: run the one-off task that downloads the model into EFS, and follow it to the end."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from . import outputs
from .aws import Aws
from .errors import LlmhostError

STARTED_BY = "llmhost-prewarm"


@dataclass(frozen=True)
class LogStream:
    group: str
    stream: str

    def __str__(self) -> str:
        return f"{self.group} {self.stream}"


@dataclass(frozen=True)
class PrewarmResult:
    task_arn: str
    succeeded: bool
    reason: str
    """One line: what ended the task (its stoppedReason and each container's exit code)."""
    log: LogStream | None


def _log_stream(task_definition: dict[str, Any], task_id: str) -> LogStream | None:
    # The awslogs driver names streams <prefix>/<container>/<task id>.
    for container in task_definition["containerDefinitions"]:
        conf = container.get("logConfiguration") or {}
        opts = conf.get("options") or {}
        if conf.get("logDriver") == "awslogs" and "awslogs-group" in opts and "awslogs-stream-prefix" in opts:
            return LogStream(opts["awslogs-group"], f"{opts['awslogs-stream-prefix']}/{container['name']}/{task_id}")
    return None


class _LogFollower:
    """Reads new lines of one log stream on each call; nothing while the stream does not exist yet."""

    def __init__(self, aws: Aws, log: LogStream | None) -> None:
        self.logs = aws.client("logs") if log else None
        self.log = log
        self.token: str | None = None

    def poll(self) -> list[str]:
        if self.logs is None or self.log is None:
            return []
        kwargs: dict[str, Any] = {
            "logGroupName": self.log.group,
            "logStreamName": self.log.stream,
            "startFromHead": True,
        }
        if self.token:
            kwargs["nextToken"] = self.token
        try:
            page = self.logs.get_log_events(**kwargs)
        except self.logs.exceptions.ResourceNotFoundException:
            return []  # the container has not written yet
        self.token = page.get("nextForwardToken", self.token)
        return [e["message"].rstrip("\n") for e in page.get("events", [])]


def run(
    aws: Aws,
    env: str,
    *,
    console: Console,
    poll_s: float = 10.0,
    timeout_s: float = 7200.0,
    sleep: Callable[[float], None] | None = None,
) -> PrewarmResult:
    """Start the pre-warm task from the serving stack's outputs and wait until it stops."""
    out = aws.stack_outputs(env, outputs.SERVING)
    missing = [
        k
        for k in (
            outputs.CLUSTER_NAME,
            outputs.PREWARM_TASK_DEFINITION_ARN,
            outputs.PREWARM_SUBNETS,
            outputs.PREWARM_SECURITY_GROUP,
        )
        if k not in out
    ]
    if missing:
        raise LlmhostError(
            f"stack {outputs.stack_name(env, outputs.SERVING)} lacks output(s) {', '.join(missing)}: "
            "it was deployed from an older version of this app; redeploy it"
        )
    cluster = out[outputs.CLUSTER_NAME]
    ecs = aws.client("ecs")
    task_def = aws.call(
        "read the pre-warm task definition",
        ecs.describe_task_definition,
        taskDefinition=out[outputs.PREWARM_TASK_DEFINITION_ARN],
    )["taskDefinition"]
    params: dict[str, Any] = {
        "cluster": cluster,
        "taskDefinition": out[outputs.PREWARM_TASK_DEFINITION_ARN],
        "count": 1,
        "startedBy": STARTED_BY,
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": [s.strip() for s in out[outputs.PREWARM_SUBNETS].split(",") if s.strip()],
                "securityGroups": [out[outputs.PREWARM_SECURITY_GROUP]],
                "assignPublicIp": "DISABLED",
            }
        },
    }
    if out.get(outputs.PREWARM_CAPACITY_PROVIDER):
        params["capacityProviderStrategy"] = [{"capacityProvider": out[outputs.PREWARM_CAPACITY_PROVIDER], "weight": 1}]
    else:
        params["launchType"] = "FARGATE" if "FARGATE" in task_def.get("requiresCompatibilities", []) else "EC2"
    started = aws.call("start the pre-warm task", ecs.run_task, **params)
    if not started.get("tasks"):
        reasons = "; ".join(f"{f.get('reason')} ({f.get('arn', '')})".strip() for f in started.get("failures", []))
        raise LlmhostError(f"ECS did not start the pre-warm task on cluster {cluster}: {reasons or 'no reason given'}")
    task_arn = started["tasks"][0]["taskArn"]
    task_id = task_arn.rsplit("/", 1)[-1]
    log = _log_stream(task_def, task_id)
    follower = _LogFollower(aws, log)
    console.print(
        f"started pre-warm task [bold]{task_id}[/bold] on cluster {cluster}" + (f"; logs: {log}" if log else "")
    )

    deadline = time.monotonic() + timeout_s
    task: dict[str, Any] = started["tasks"][0]
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True
    ) as progress:
        bar = progress.add_task("PROVISIONING")
        while True:
            task = aws.call("follow the pre-warm task", ecs.describe_tasks, cluster=cluster, tasks=[task_arn])["tasks"][
                0
            ]
            for line in follower.poll():
                progress.console.print(f"[dim]{line}[/dim]", highlight=False)
            status = task.get("lastStatus", "?")
            progress.update(bar, description=f"pre-warm task {status}")
            if status == "STOPPED":
                break
            if time.monotonic() > deadline:
                raise LlmhostError(
                    f"pre-warm task {task_id} is still {status} after {timeout_s:g} s; it keeps running: "
                    f"follow it with `aws ecs describe-tasks --cluster {cluster} --tasks {task_id}`"
                    + (f" and `aws logs tail {log.group} --log-stream-names {log.stream} --follow`" if log else "")
                )
            (sleep or time.sleep)(poll_s)
    for line in follower.poll():  # lines written just before the task stopped
        console.print(f"[dim]{line}[/dim]", highlight=False)

    containers = task.get("containers", [])
    codes = {c["name"]: c.get("exitCode") for c in containers}
    succeeded = bool(containers) and all(code == 0 for code in codes.values())
    parts = [task.get("stoppedReason") or task.get("stopCode") or "stopped"]
    parts += [f"{name} exit code {'none' if code is None else code}" for name, code in codes.items()]
    parts += [c["reason"] for c in containers if c.get("reason")]
    return PrewarmResult(task_arn, succeeded, "; ".join(parts), log)
