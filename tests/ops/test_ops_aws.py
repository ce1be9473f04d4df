"""AWS-facing commands against moto: stack outputs, one-line errors, the pre-warm task, SageMaker."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from moto.ec2.models.elastic_network_interfaces import NetworkInterface
from moto.ecs.models import ecs_backends
from moto.moto_api import state_manager

from llmhost import outputs, prewarm, sagemaker
from llmhost.aws import Aws

from .conftest import ACCOUNT, REGION, deploy_stack

pytestmark = pytest.mark.usefixtures("aws")


# --- stack outputs and errors ----------------------------------------------------


def test_stack_outputs_follow_the_naming_rule() -> None:
    deploy_stack("dev-serving", {outputs.CLUSTER_NAME: "dev-gpu"})
    aws = Aws(region=REGION)
    assert aws.stack_outputs("dev", outputs.SERVING) == {outputs.CLUSTER_NAME: "dev-gpu"}
    assert aws.output("dev", outputs.CLUSTER_NAME) == "dev-gpu"


def test_stack_not_deployed_names_stack_account_and_config_account(
    llmhost: Callable[..., Any], write_env: Callable[..., Path]
) -> None:
    write_env("dev")  # the config deploys dev to account 111111111111; moto answers as 123456789012
    r = llmhost("chat", "--env", "dev", "hello")
    assert r.code == 1
    assert r.err.strip() == (
        f"llmhost: error: stack dev-api is not deployed (account {ACCOUNT}, us-east-1; the config deploys dev to "
        "account 111111111111: use its credentials): deploy it with `npx cdk deploy 'dev/*'`"
    )


def test_missing_output_says_redeploy(llmhost: Callable[..., Any], write_env: Callable[..., Path]) -> None:
    write_env("dev")
    deploy_stack("dev-api", {outputs.API_URL: "https://abc.execute-api.us-east-1.amazonaws.com/prod/"})
    r = llmhost("chat", "--env", "dev", "hello")
    assert r.code == 1 and "stack dev-api has no output ApiKeyIds: it was deployed from an older version" in r.err


def test_no_credentials(llmhost: Callable[..., Any], write_env: Callable[..., Path], no_credentials: None) -> None:
    write_env("dev")
    r = llmhost("prewarm", "--env", "dev")
    assert r.code == 1
    assert r.err.startswith("llmhost: error: no AWS credentials found: set AWS_PROFILE")


def test_unknown_profile(llmhost: Callable[..., Any], write_env: Callable[..., Path], no_credentials: None) -> None:
    write_env("dev")
    r = llmhost("--profile", "nope", "prewarm", "--env", "dev")
    assert r.code == 1 and "AWS profile 'nope' is not configured" in r.err


def test_api_key_is_read_from_api_gateway(llmhost: Callable[..., Any], write_env: Callable[..., Path]) -> None:
    write_env("dev")
    key = boto3.client("apigateway", region_name=REGION).create_api_key(
        name="k", value="sk-from-apigw-0123456789", enabled=True
    )
    # Nothing listens on port 9 (discard): the call fails after discovery, which is what we look at.
    deploy_stack("dev-api", {outputs.API_URL: "http://127.0.0.1:9/prod/", outputs.API_KEY_IDS: f"{key['id']},other"})
    r = llmhost("chat", "--env", "dev", "hello")
    assert r.code == 1
    assert r.err.startswith("llmhost: error: cannot reach http://127.0.0.1:9/prod/v1/chat/completions")


# --- prewarm ---------------------------------------------------------------------


@pytest.fixture
def serving_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A cluster, a pre-warm task definition logging to CloudWatch, and the serving stack's outputs."""
    # moto 5.2.5 runs awsvpc tasks only if its ENI model has this attribute (a moto gap, not ours).
    monkeypatch.setattr(
        NetworkInterface, "private_dns_name", property(lambda self: "ip-10-0-1-5.ec2.internal"), raising=False
    )
    # moto walks a task towards STOPPED on every describe; keep it RUNNING until the test stops it.
    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**9})
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.40.{i}.0/24")["Subnet"]["SubnetId"] for i in (1, 2)]
    sg = ec2.create_security_group(GroupName="prewarm", Description="prewarm", VpcId=vpc)["GroupId"]
    ecs = boto3.client("ecs", region_name=REGION)
    ecs.create_cluster(clusterName="dev-gpu")
    boto3.client("logs", region_name=REGION).create_log_group(logGroupName="/llm/dev/prewarm")
    task_def = ecs.register_task_definition(
        family="dev-prewarm",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="1024",
        memory="4096",
        containerDefinitions=[
            {
                "name": "prewarm",
                "image": "prewarm:latest",
                "essential": True,
                "memory": 4096,
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": "/llm/dev/prewarm",
                        "awslogs-stream-prefix": "prewarm",
                        "awslogs-region": REGION,
                    },
                },
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    deploy_stack(
        "dev-serving",
        {
            outputs.CLUSTER_NAME: "dev-gpu",
            outputs.PREWARM_TASK_DEFINITION_ARN: task_def,
            outputs.PREWARM_SUBNETS: ",".join(subnets),
            outputs.PREWARM_SECURITY_GROUP: sg,
        },
    )
    yield "dev-gpu"
    state_manager.unset_transition(model_name="ecs::task")


def _finish_task(cluster: str, *, exit_code: int, lines: list[str]) -> Callable[[float], None]:
    """A stand-in for time.sleep: on its first call the task writes its log lines and stops."""
    calls = []

    def sleep(_: float) -> None:
        calls.append(1)
        if len(calls) > 1:
            return
        (arn,) = boto3.client("ecs", region_name=REGION).list_tasks(cluster=cluster, desiredStatus="RUNNING")[
            "taskArns"
        ]
        task = ecs_backends[ACCOUNT][REGION].tasks[cluster][arn]
        task.containers[0].exitCode = exit_code
        logs = boto3.client("logs", region_name=REGION)
        stream = f"prewarm/prewarm/{arn.rsplit('/', 1)[-1]}"
        logs.create_log_stream(logGroupName="/llm/dev/prewarm", logStreamName=stream)
        logs.put_log_events(
            logGroupName="/llm/dev/prewarm",
            logStreamName=stream,
            # CloudWatch (and moto) drop events older than 14 days: stamp them now.
            logEvents=[{"timestamp": int(time.time() * 1000) + i, "message": m} for i, m in enumerate(lines)],
        )
        boto3.client("ecs", region_name=REGION).stop_task(
            cluster=cluster, task=arn, reason="Essential container in task exited"
        )

    return sleep


def test_prewarm_runs_the_task_with_the_stack_outputs(serving_stack: str) -> None:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=200)
    sleep = _finish_task(serving_stack, exit_code=0, lines=["Fetching 4 files", "model is in /mnt/hf"])
    result = prewarm.run(Aws(region=REGION), "dev", console=console, poll_s=0, sleep=sleep)
    assert result.succeeded
    assert result.reason == "Essential container in task exited; prewarm exit code 0"
    assert result.log is not None and result.log.stream == f"prewarm/prewarm/{result.task_arn.rsplit('/', 1)[-1]}"
    task = boto3.client("ecs", region_name=REGION).describe_tasks(cluster=serving_stack, tasks=[result.task_arn])[
        "tasks"
    ][0]
    assert task["startedBy"] == prewarm.STARTED_BY and task["launchType"] == "FARGATE"
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert shown.index("Fetching 4 files") < shown.index("model is in /mnt/hf")  # the task's log, followed live


def test_prewarm_command_success_and_failure(
    serving_stack: str, llmhost: Callable[..., Any], write_env: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_env("dev")
    monkeypatch.setattr(prewarm.time, "sleep", _finish_task(serving_stack, exit_code=0, lines=["done"]))
    r = llmhost("prewarm", "--env", "dev", "--poll", "0")
    assert r.code == 0, r.err
    assert "succeeded: meta-llama/Llama-3.1-8B-Instruct is in the cache" in r.out

    monkeypatch.setattr(
        prewarm.time, "sleep", _finish_task(serving_stack, exit_code=1, lines=["401 Client Error: gated repo"])
    )
    r = llmhost("prewarm", "--env", "dev", "--poll", "0")
    assert r.code == 1
    last = r.err.strip().splitlines()[-1]
    assert (
        last.startswith("llmhost: error: pre-warm task ")
        and "failed: Essential container in task exited; prewarm exit code 1" in last
    )
    assert "logs: /llm/dev/prewarm prewarm/prewarm/" in last
    assert "401 Client Error: gated repo" in r.err  # the task's log, followed live


def test_prewarm_times_out_with_a_way_to_follow(
    serving_stack: str, llmhost: Callable[..., Any], write_env: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_env("dev")
    clock = iter(range(0, 10_000, 5))
    monkeypatch.setattr(prewarm.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(prewarm.time, "sleep", lambda _: None)
    r = llmhost("prewarm", "--env", "dev", "--poll", "0", "--timeout", "20")
    assert r.code == 1
    assert (
        "is still RUNNING after 20 s; it keeps running: follow it with `aws ecs describe-tasks --cluster dev-gpu"
        in r.err
    )


def test_prewarm_stack_missing_outputs(llmhost: Callable[..., Any], write_env: Callable[..., Path]) -> None:
    write_env("dev")
    deploy_stack("dev-serving", {outputs.CLUSTER_NAME: "dev-gpu"})
    r = llmhost("prewarm", "--env", "dev")
    assert r.code == 1
    assert "stack dev-serving lacks output(s) PrewarmTaskDefinitionArn, PrewarmSubnets, PrewarmSecurityGroup" in r.err


# --- sagemaker-invoke ------------------------------------------------------------


def test_sagemaker_invoke_tgi(llmhost: Callable[..., Any], write_env: Callable[..., Path]) -> None:
    write_env(
        "sm",
        backends=["sagemaker"],
        ecs=None,
        # A gated model from the Hub needs its token secret named (synth refuses otherwise, issue 11).
        sagemaker={
            "instance_type": "ml.g5.2xlarge", "container": "tgi", "weights": "hub",
            "hf_token_secret_name": "llm-hosting/sm/hf-token",
        },  # fmt: skip
    )
    deploy_stack("sm-sagemaker", {outputs.SAGEMAKER_ENDPOINT_NAME: "sm-llm"})
    body = json.dumps([{"generated_text": "Paris is the capital.", "details": {"generated_tokens": 6}}])
    # moto's documented way to queue an endpoint's answer.
    requests.post(
        "http://motoapi.amazonaws.com/moto-api/static/sagemaker/endpoint-results",
        json={"account_id": ACCOUNT, "region": REGION, "results": [{"Body": body, "ContentType": "application/json"}]},
        timeout=5,
    )
    r = llmhost("sagemaker-invoke", "--env", "sm", "What is the capital of France?")
    assert r.code == 0, r.err
    assert r.out == "Paris is the capital.\n"
    assert "6 tokens in" in r.err and "tokens/s end to end" in r.err


def test_sagemaker_invoke_needs_the_backend(llmhost: Callable[..., Any], write_env: Callable[..., Path]) -> None:
    write_env("dev")
    r = llmhost("sagemaker-invoke", "--env", "dev", "hi")
    assert r.code == 1 and "environment dev has no sagemaker backend" in r.err


def test_sagemaker_payloads() -> None:
    assert sagemaker.payload("tgi", "hi", max_tokens=8, stream=True) == {
        "inputs": "hi",
        "parameters": {"max_new_tokens": 8, "details": True},
        "stream": True,
    }
    assert sagemaker.payload("vllm", "hi", max_tokens=8, stream=False) == {
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 8,
        "stream": False,
    }
    assert sagemaker.parse_response(
        {"choices": [{"message": {"content": "ok"}}], "usage": {"completion_tokens": 1}}
    ) == ("ok", 1)


class _StreamingRuntime:
    """invoke_endpoint_with_response_stream as botocore returns it (moto does not implement it):
    an iterable of PayloadPart events whose bytes split lines anywhere."""

    def __init__(self, wire: bytes, cut: int) -> None:
        self.parts = [wire[i : i + cut] for i in range(0, len(wire), cut)]
        self.calls: list[dict[str, Any]] = []

    def invoke_endpoint_with_response_stream(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {"Body": [{"PayloadPart": {"Bytes": p}} for p in self.parts]}


@pytest.mark.parametrize("cut", [1, 7, 1000])
def test_sagemaker_stream_tgi_and_openai_shapes(cut: int) -> None:
    tgi = b"".join(
        b"data:" + json.dumps({"token": {"id": i, "text": t, "special": s}}).encode() + b"\n\n"
        for i, (t, s) in enumerate([("Hel", False), ("lo", False), ("</s>", True)])
    )
    runtime = _StreamingRuntime(tgi, cut)
    printed: list[str] = []
    result = sagemaker.invoke(
        runtime, lambda _w, fn, **kw: fn(**kw), "ep", "tgi", "hi", stream=True, max_tokens=4, on_text=printed.append
    )
    assert (result.text, result.completion_tokens, printed) == ("Hello", 2, ["Hel", "lo"])
    assert json.loads(runtime.calls[0]["Body"])["stream"] is True
    openai = (
        b'data: {"choices":[{"delta":{"content":"Bon"}}]}\n\n'
        b'data: {"choices":[{"delta":{"content":"jour"}}]}\n\n'
        b'data: {"choices":[],"usage":{"completion_tokens":3}}\n\n'
        b"data: [DONE]\n\n"
    )
    result = sagemaker.invoke(
        _StreamingRuntime(openai, cut),
        lambda _w, fn, **kw: fn(**kw),
        "ep",
        "vllm",
        "hi",
        stream=True,
        max_tokens=4,
        on_text=lambda _: None,
    )
    assert (result.text, result.completion_tokens, result.ttft_s is not None) == ("Bonjour", 3, True)


def test_profile_from_the_environment_is_named(
    llmhost: Callable[..., Any], write_env: Callable[..., Path], no_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS_PROFILE=x without --profile: the error names x and where it came from (it said "None")."""
    write_env("dev")
    monkeypatch.setenv("AWS_PROFILE", "x")
    r = llmhost("prewarm", "--env", "dev")
    assert r.code == 1
    assert r.err == "llmhost: error: AWS profile 'x' (from $AWS_PROFILE) is not configured (see ~/.aws/config)\n"
