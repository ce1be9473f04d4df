"""What the local stack is built from, read from one environment's synthesized templates.

- :class:`Task`: the serving task definition's ``vllm`` and ``gateway`` containers (entry point,
  command, environment, secrets with their local values, ``DependsOn``, the gateway's image asset).
- :class:`Api`: the REST API's stage, its methods (path, HTTP method, API key, the integration's
  URI, request parameters, timeout, response transfer mode), usage plans with their keys, and the
  stage's default method throttling.

Anything else in the templates (alarms, IAM, a pre-warm custom resource, ...) is ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .cfn import Environment, TemplateError

VLLM = "vllm"
GATEWAY = "gateway"


@dataclass(frozen=True)
class Container:
    name: str
    entry_point: list[str]
    command: list[str]
    environment: dict[str, str]
    secrets: dict[str, str]
    """{variable: local value of the secret it names}."""
    depends_on: dict[str, str]
    """{container: condition}, e.g. {"vllm": "HEALTHY"}."""
    port: int | None
    image_asset_dir: Path | None
    """The staged build context when the image is a CDK asset (the gateway), else None."""


@dataclass(frozen=True)
class Task:
    vllm: Container
    gateway: Container


@dataclass(frozen=True)
class Method:
    path: str
    """Resource path, e.g. ``/v1/chat/completions``."""
    http_method: str
    api_key_required: bool
    integration_type: str
    integration_http_method: str
    uri: str
    request_parameters: dict[str, str]
    timeout_ms: int
    streaming: bool
    """ResponseTransferMode STREAM (else BUFFERED, the default)."""

    @property
    def uri_path(self) -> str:
        return urlsplit(self.uri).path or "/"


@dataclass(frozen=True)
class UsagePlan:
    name: str
    rate_limit: float | None
    burst_limit: int | None
    quota_limit: int | None
    quota_period: str | None
    key_ids: tuple[str, ...]


@dataclass(frozen=True)
class Api:
    name: str
    stage: str
    api_key_source: str
    methods: tuple[Method, ...]
    usage_plans: tuple[UsagePlan, ...]
    stage_rate_limit: float | None
    stage_burst_limit: int | None
    keys: dict[str, str] = field(default_factory=dict)
    """{API key id: name} of every key the usage plans hold."""


def _env_list(items: list[dict[str, Any]] | None) -> dict[str, str]:
    return {i["Name"]: str(i["Value"]) for i in items or []}


def _asset_dir(env: Environment, cdk_out: Path, image: Any) -> Path | None:
    """The build context of a docker-image asset whose hash the image reference carries; None for a
    registry image (``vllm/vllm-openai:v0.24.0``, an ECR pull-through path)."""
    text = json.dumps(image)
    for assembly_assets in (cdk_out / f"assembly-{env.name}").glob("*.assets.json"):
        for digest, asset in json.loads(assembly_assets.read_text()).get("dockerImages", {}).items():
            if digest in text:
                return (assembly_assets.parent / asset["source"]["directory"]).resolve()
    return None


def read_task(env: Environment, cdk_out: Path) -> Task:
    """The task definition that has both a ``vllm`` and a ``gateway`` container."""
    for stack, _, res in env.resources("AWS::ECS::TaskDefinition"):
        containers = {c["Name"]: c for c in res["Properties"].get("ContainerDefinitions", [])}
        if {VLLM, GATEWAY} <= set(containers):
            return Task(*(_container(env, cdk_out, stack, containers[n]) for n in (VLLM, GATEWAY)))
    raise TemplateError(f"no task definition of {env.name!r} runs both a {VLLM!r} and a {GATEWAY!r} container")


def _container(env: Environment, cdk_out: Path, stack: str, c: dict[str, Any]) -> Container:
    # The image stays unresolved: its asset hash is what identifies the staged build context.
    resolved = env.resolve({k: v for k, v in c.items() if k != "Image"}, stack)
    ports = resolved.get("PortMappings") or []
    return Container(
        name=resolved["Name"],
        entry_point=[str(a) for a in resolved.get("EntryPoint") or []],
        command=[str(a) for a in resolved.get("Command") or []],
        environment=_env_list(resolved.get("Environment")),
        secrets={s["Name"]: env.secret(s["ValueFrom"]) for s in resolved.get("Secrets") or []},
        depends_on={d["ContainerName"]: d["Condition"] for d in resolved.get("DependsOn") or []},
        port=int(ports[0]["ContainerPort"]) if ports else None,
        image_asset_dir=_asset_dir(env, cdk_out, c["Image"]),
    )


def read_api(env: Environment) -> Api:
    """The environment's one REST API, as its stage serves it."""
    apis = env.resources("AWS::ApiGateway::RestApi")
    if len(apis) != 1:
        raise TemplateError(f"environment {env.name!r} has {len(apis)} REST APIs; the local front door serves exactly one")
    stack, api_id, api = apis[0]
    resources = {lid: r["Properties"] for s, lid, r in env.resources("AWS::ApiGateway::Resource") if s == stack}

    def path_of(ref: Any) -> str:
        if isinstance(ref, dict) and "Ref" in ref and ref["Ref"] in resources:
            props = resources[ref["Ref"]]
            return path_of(props["ParentId"]).rstrip("/") + "/" + props["PathPart"]
        return "/"  # the API's root resource (Fn::GetAtt RootResourceId)

    methods = []
    for s, _, res in env.resources("AWS::ApiGateway::Method"):
        if s != stack:
            continue
        p = res["Properties"]
        integration = env.resolve(p.get("Integration", {}), stack)
        methods.append(
            Method(
                path=path_of(p["ResourceId"]),
                http_method=p["HttpMethod"],
                api_key_required=bool(p.get("ApiKeyRequired", False)),
                integration_type=integration.get("Type", ""),
                integration_http_method=integration.get("IntegrationHttpMethod", p["HttpMethod"]),
                uri=integration.get("Uri", ""),
                request_parameters={k: str(v) for k, v in integration.get("RequestParameters", {}).items()},
                timeout_ms=int(integration.get("TimeoutInMillis", 29_000)),
                streaming=integration.get("ResponseTransferMode", "BUFFERED") == "STREAM",
            )
        )
    (_, _, stage_res), = [r for r in env.resources("AWS::ApiGateway::Stage") if r[0] == stack]
    stage = stage_res["Properties"]
    default_settings = [
        m for m in stage.get("MethodSettings", []) if m.get("ResourcePath") == "/*" and m.get("HttpMethod") == "*"
    ]
    plan_keys: dict[str, list[str]] = {}
    for s, _, res in env.resources("AWS::ApiGateway::UsagePlanKey"):
        if s == stack:
            plan_keys.setdefault(res["Properties"]["UsagePlanId"]["Ref"], []).append(res["Properties"]["KeyId"]["Ref"])
    plans = []
    for s, lid, res in env.resources("AWS::ApiGateway::UsagePlan"):
        if s != stack:
            continue
        p = res["Properties"]
        throttle, quota = p.get("Throttle", {}), p.get("Quota", {})
        plans.append(
            UsagePlan(
                name=p.get("UsagePlanName", lid),
                rate_limit=throttle.get("RateLimit"),
                burst_limit=throttle.get("BurstLimit"),
                quota_limit=quota.get("Limit"),
                quota_period=quota.get("Period"),
                key_ids=tuple(plan_keys.get(lid, [])),
            )
        )
    keys = {lid: res["Properties"].get("Name", lid) for s, lid, res in env.resources("AWS::ApiGateway::ApiKey") if s == stack}
    return Api(
        name=api["Properties"].get("Name", api_id),
        stage=stage["StageName"],
        api_key_source=api["Properties"].get("ApiKeySourceType", "HEADER"),
        methods=tuple(sorted(methods, key=lambda m: (m.path, m.http_method))),
        usage_plans=tuple(plans),
        stage_rate_limit=default_settings[0].get("ThrottlingRateLimit") if default_settings else None,
        stage_burst_limit=default_settings[0].get("ThrottlingBurstLimit") if default_settings else None,
        keys=keys,
    )
