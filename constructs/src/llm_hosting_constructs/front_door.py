"""The public front door of an LLM service: a regional REST API with a private integration to an internal ALB.

API Gateway REST (not HTTP API) because only REST APIs have API keys, usage plans and
response streaming. The ALB is reached through a VPC link v2 (REST APIs support it since
Nov 2025): no NLB in between, so one hop less, no NLB to pay for and no second idle timeout
to keep in line with the ALB's. CDK 2.275's `Integration` has no switch for the v2 link's
`IntegrationTarget`, so it is set with one escape hatch on each method.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from aws_cdk import Acknowledgment, Duration, Fn, Names, RemovalPolicy, SecretValue, Validations
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as route53_targets
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from .log_groups import encrypted_log_group
from .signals import ApiRef

BUFFERED_TIMEOUT = Duration.seconds(29)
"""API Gateway's default (and, without a quota increase, largest) timeout of a buffered integration."""
MAX_STREAM_TIMEOUT = Duration.minutes(15)
"""Largest integration timeout of a streaming (ResponseTransferMode STREAM) integration."""

THROTTLED_METRIC_NAMESPACE = "LlmHosting/Api"
THROTTLED_METRIC_NAME = "ThrottledRequests"
THROTTLED_METRIC_DIMENSION = "ApiId"
"""The access-log metric filter counts 429 responses per API: API Gateway publishes no 429 metric of its own."""


@dataclass(frozen=True)
class Route:
    """One backend path the API exposes. `streaming` routes use ResponseTransferMode STREAM."""

    path: str
    method: Literal["GET", "POST"]
    streaming: bool


DEFAULT_ROUTES: tuple[Route, ...] = (
    # OpenAI-compatible: stream when the request body asks (`"stream": true`), so the integration streams.
    Route("/v1/chat/completions", "POST", streaming=True),
    Route("/v1/completions", "POST", streaming=True),
    Route("/v1/models", "GET", streaming=False),
    # The simple API: one JSON answer, or server-sent events.
    Route("/v1/chat", "POST", streaming=False),
    Route("/v1/chat/stream", "POST", streaming=True),
    # The Responses API streams when asked (`client.responses.stream`), like chat completions.
    Route("/v1/responses", "POST", streaming=True),
    # vLLM's tokenizer and version endpoints.
    Route("/tokenize", "POST", streaming=False),
    Route("/detokenize", "POST", streaming=False),
    Route("/version", "GET", streaming=False),
    # Pooling models (embedding, cross-encoder): the gateway answers 4xx where the served model has no such task.
    Route("/v1/embeddings", "POST", streaming=False),
    Route("/v1/score", "POST", streaming=False),
    Route("/v1/rerank", "POST", streaming=False),
    # The gateway's readiness (503 while its task cannot serve): what `llmhost smoke` and post-deploy
    # pipelines call through the API. One task answers, the one the ALB picks.
    Route("/health", "GET", streaming=False),
)

API_KEY_ID_HEADER = "x-llmhost-api-key-id"
"""Backend header that carries the caller's API Gateway key id (`$context.identity.apiKeyId`) on
every route. The gateway trusts it only on requests that carry the front door's own key."""

TENANT_KEY_MAP_PARAMETER = "/llm-hosting/{env}/tenant-api-keys"
"""SSM parameter (String, JSON `{api key id: tenant name}`) that maps the header's key id to a tenant."""


BACKEND_PATH_PARAMETER_PREFIX = "seg"
"""Integration path parameters `seg0`, `seg1`, ... carry the backend path, one segment each."""


def backend_path_override(path: str) -> tuple[str, dict[str, str]]:
    """The integration URI path and the parameter mapping that send exactly `path` to the backend.

    For private integrations API Gateway puts the stage in the path it sends to the backend (a call
    to stage `test` arrives as `test/path`) and documents removing it with parameter mapping that
    overrides the request path (AWS: "Private integrations for REST APIs in API Gateway"). Each
    segment of the URI is a path parameter mapped to a static value, so the path is an explicit
    override; one parameter per segment, so no value holds a `/` for API Gateway to encode.
    `("/v1/models")` → `("/{seg0}/{seg1}", {"integration.request.path.seg0": "'v1'", ...})`.
    """
    segments = path.strip("/").split("/")
    names = [f"{BACKEND_PATH_PARAMETER_PREFIX}{i}" for i in range(len(segments))]
    uri_path = "".join(f"/{{{n}}}" for n in names)
    return uri_path, {f"integration.request.path.{n}": f"'{seg}'" for n, seg in zip(names, segments, strict=True)}


@dataclass(frozen=True)
class TenantPlan:
    """A consumer of the API: one API key and one usage plan."""

    name: str
    rate_limit: float
    burst_limit: int
    quota_limit: int | None = None
    quota_period: Literal["DAY", "WEEK", "MONTH"] = "MONTH"


class _Tenant(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def rate_limit(self) -> float: ...


def tenants_problem(tenants: Sequence[_Tenant], rate_limit: float) -> str | None:
    """Why these tenants' usage plans do not fit an API throttled at ``rate_limit`` (None when they do):
    one API key per tenant name, and a tenant cannot be promised more than the stage allows. The
    app's config checks its tenants with this very rule."""
    names = [t.name for t in tenants]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        return f"tenant names must be unique; duplicated: {', '.join(dupes)}"
    for t in tenants:
        if t.rate_limit > rate_limit:
            return f"tenant {t.name!r} rate_limit {t.rate_limit} exceeds the API's rate_limit {rate_limit}"
    return None


@dataclass(frozen=True)
class CustomDomainProps:
    """A custom domain for a regional API; a Route 53 alias record when `hosted_zone` is given."""

    domain_name: str
    certificate: acm.ICertificate
    hosted_zone: route53.IHostedZone | None = None


# JSON access log: who (key id, IP), what (method, path, status, sizes), how long, and the WAF and
# integration outcomes. Never a body: prompts and completions stay out of the logs.
ACCESS_LOG_FIELDS: dict[str, str] = {
    "requestId": "$context.requestId",
    "extendedRequestId": "$context.extendedRequestId",
    "apiId": "$context.apiId",
    "stage": "$context.stage",
    "requestTime": "$context.requestTime",
    "ip": "$context.identity.sourceIp",
    "userAgent": "$context.identity.userAgent",
    "apiKeyId": "$context.identity.apiKeyId",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "protocol": "$context.protocol",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationStatus": "$context.integration.status",
    "integrationLatency": "$context.integration.latency",
    "integrationError": "$context.integration.error",
    "errorMessage": "$context.error.message",
    "errorType": "$context.error.responseType",
    "wafStatus": "$context.waf.status",
    "xrayTraceId": "$context.xrayTraceId",
}


class LlmFrontDoor(Construct):
    """Regional REST API → VPC link v2 → internal ALB, with API keys, usage plans and access logs.

    Safe defaults: every method requires an API key; only `routes` reach the backend (each a
    fixed path that parameter mapping sets explicitly, since API Gateway would otherwise prefix
    the stage name, see `backend_path_override`; nothing else is proxied); the
    streaming routes use `ResponseTransferMode.STREAM` with `stream_timeout` (default and most
    15 min), the rest are buffered with 29 s; no response compression and no cache (streaming
    supports neither); default method throttling `rate_limit`/`burst_limit`;
    JSON access logs to a log group encrypted with a customer-managed KMS key and kept
    `access_log_retention`; X-Ray tracing; execution logging at ERROR only (no bodies).

    The ALB must accept traffic from `security_group` (the VPC link's ENIs use it) and from
    nothing else outside its targets; `load_balancer` is the integration target.
    `backend_protocol`/`backend_port` say how the ALB listener is reached; `tls_host_name` sets
    the Host header and the name API Gateway verifies the listener's certificate against (default:
    the ALB's DNS name; required for https, where it must be the publicly trusted certificate's
    name; TLS verification stays on, `insecureSkipVerification` is never set).
    `backend_bearer` (a Secrets Manager `SecretValue`) is sent to the backend as
    `Authorization: Bearer <value>` on every route, replacing the client's header: the backend
    then trusts the front door, and tenants' API Gateway keys never reach it.

    `api_name` names the API (and its CloudWatch metrics' ApiName); default: the construct path.

    `api_key_id_header` (default `x-llmhost-api-key-id`; None: not sent) carries the caller's API
    key id to the backend on every route, mapped from `$context.identity.apiKeyId`, so the backend
    can count usage per tenant. `tenant_key_map_parameter_name` (e.g.
    `TENANT_KEY_MAP_PARAMETER.format(env=...)`) writes an SSM String parameter with the JSON map
    `{api key id: tenant name}` of the tenants' keys.

    Attributes: `api` (RestApi), `api_name`, `stage`, `stage_name`, `routes`, `vpc_link`,
    `access_log_group`, `execution_log_group`, `log_key`, `api_keys` ({tenant: ApiKey}), `usage_plans`
    ({tenant: UsagePlan}), `tenant_key_map` (StringParameter or None), `methods` ({path: Method}),
    `domain` (DomainName or None), `url` (the invoke URL clients use); `signals()` and
    `throttled_requests_metric()` for monitoring.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        security_group: ec2.ISecurityGroup,
        load_balancer: elbv2.IApplicationLoadBalancer,
        tenants: Sequence[TenantPlan],
        backend_protocol: Literal["http", "https"] = "http",
        backend_port: int = 80,
        tls_host_name: str | None = None,
        backend_bearer: SecretValue | None = None,
        api_key_id_header: str | None = API_KEY_ID_HEADER,
        tenant_key_map_parameter_name: str | None = None,
        routes: Sequence[Route] = DEFAULT_ROUTES,
        api_name: str | None = None,
        stage_name: str = "live",
        rate_limit: float = 50,
        burst_limit: int = 100,
        stream_timeout: Duration = MAX_STREAM_TIMEOUT,
        access_log_retention: logs.RetentionDays = logs.RetentionDays.THREE_MONTHS,
        log_key: kms.IKey | None = None,
        custom_domain: CustomDomainProps | None = None,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, id_)
        if not tenants:
            raise ValueError("LlmFrontDoor: at least one tenant is needed; every method requires an API key")
        problem = tenants_problem(tenants, rate_limit)
        if problem:
            raise ValueError(f"LlmFrontDoor: {problem}")
        if not routes:
            raise ValueError("LlmFrontDoor: routes must not be empty")
        paths = [r.path for r in routes]
        if len(set(paths)) != len(paths) or any(not p.startswith("/") or p.endswith("/") for p in paths):
            raise ValueError(f"LlmFrontDoor: route paths must be unique, start with '/' and not end with '/': {paths}")
        if not 30 <= stream_timeout.to_seconds() <= MAX_STREAM_TIMEOUT.to_seconds():
            raise ValueError("LlmFrontDoor: stream_timeout must be between 30 s and 15 min")
        if not 1 <= backend_port <= 65535:
            raise ValueError(f"LlmFrontDoor: backend_port {backend_port} is not a port")
        if backend_protocol == "https" and tls_host_name is None:
            raise ValueError(
                "LlmFrontDoor: backend_protocol https needs tls_host_name, the name on the listener's publicly trusted "
                "certificate (API Gateway verifies it; the ALB's own DNS name cannot be on one)"
            )

        # --- access logs: JSON, KMS-encrypted, retained ------------------------------------------
        self.log_key, self.access_log_group = encrypted_log_group(
            self,
            "AccessLogs",
            retention=access_log_retention,
            removal_policy=removal_policy,
            key=log_key,
            key_description="Encrypts the API access log group",
        )

        # --- VPC link v2 straight to the ALB ----------------------------------------------------
        self.vpc_link = apigwv2.VpcLink(self, "VpcLink", vpc=vpc, subnets=subnets, security_groups=[security_group])

        # --- the API ------------------------------------------------------------------------------
        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=api_name or Names.unique_id(self),  # also the ApiName of its metrics
            description="OpenAI-compatible LLM API (private integration to the internal ALB)",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            api_key_source_type=apigw.ApiKeySourceType.HEADER,
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=removal_policy,
            deploy_options=apigw.StageOptions(
                stage_name=stage_name,
                tracing_enabled=True,
                throttling_rate_limit=rate_limit,
                throttling_burst_limit=burst_limit,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,
                metrics_enabled=True,
                access_log_destination=apigw.LogGroupLogDestination(self.access_log_group),
                access_log_format=apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS, separators=(",", ":"))),
            ),
            default_method_options=apigw.MethodOptions(api_key_required=True),
        )
        self.stage = self.api.deployment_stage
        self.api_name = api_name or Names.unique_id(self)
        self.stage_name = stage_name
        # API Gateway writes execution logs to this fixed name and would create the group itself, with
        # no retention and no key: create it first (the stage depends on it), retained and encrypted.
        self.execution_log_group = logs.LogGroup(
            self,
            "ExecutionLogs",
            log_group_name=Fn.join("", ["API-Gateway-Execution-Logs_", self.api.rest_api_id, f"/{stage_name}"]),
            retention=access_log_retention,
            encryption_key=self.log_key,
            removal_policy=removal_policy,
        )
        self.stage.node.add_dependency(self.execution_log_group)
        # The L2 adds an "Endpoint" output of its own; stacks publish the URL under their own key.
        self.api.node.try_remove_child("Endpoint")
        cfn_stage: apigw.CfnStage = self.stage.node.default_child  # type: ignore[assignment]
        cfn_stage.add_metadata(
            "checkov",
            {
                "skip": [
                    {
                        "id": "CKV_AWS_120",
                        "comment": "No response cache: streaming integrations cannot use endpoint caching, and LLM "
                        "answers are per request (sampling, per-tenant data); a cache would leak them across tenants.",
                    }
                ]
            },
        )

        host = tls_host_name or load_balancer.load_balancer_dns_name
        # The backend's own key replaces whatever Authorization the client sent (its key is the API
        # Gateway key in x-api-key). A dynamic reference: CloudFormation resolves it at deploy time,
        # the template holds only the reference.
        backend_headers: dict[str, str] = {}
        if backend_bearer is not None:
            backend_headers["integration.request.header.Authorization"] = f"'Bearer {backend_bearer.unsafe_unwrap()}'"
        if api_key_id_header is not None:
            # Mapped, so it replaces any header of that name the client sent.
            backend_headers[f"integration.request.header.{api_key_id_header}"] = "context.identity.apiKeyId"
        link = apigw.VpcLink.from_vpc_link_id(self, "VpcLinkRef", self.vpc_link.vpc_link_id)
        self.routes = tuple(routes)
        self.methods: dict[str, apigw.Method] = {}
        for route in routes:
            resource = self.api.root.resource_for_path(route.path)
            uri_path, path_mapping = backend_path_override(route.path)
            integration = apigw.Integration(
                type=apigw.IntegrationType.HTTP_PROXY,
                integration_http_method=route.method,
                uri=f"{backend_protocol}://{host}:{backend_port}{uri_path}",
                options=apigw.IntegrationOptions(
                    connection_type=apigw.ConnectionType.VPC_LINK,
                    vpc_link=link,
                    response_transfer_mode=(
                        apigw.ResponseTransferMode.STREAM if route.streaming else apigw.ResponseTransferMode.BUFFERED
                    ),
                    timeout=stream_timeout if route.streaming else BUFFERED_TIMEOUT,
                    request_parameters={**path_mapping, **backend_headers},
                ),
            )
            method = resource.add_method(route.method, integration, api_key_required=True)
            # VPC link v2: the integration names the load balancer it sends to (no L2 switch in 2.275).
            cfn_method: apigw.CfnMethod = method.node.default_child  # type: ignore[assignment]
            cfn_method.add_property_override("Integration.IntegrationTarget", load_balancer.load_balancer_arn)
            self.methods[route.path] = method
        Validations.of(self.api).acknowledge(
            Acknowledgment(
                id="AwsSolutions::AwsSolutions-APIG2",
                reason="Request bodies are validated by the gateway service behind the ALB (schema, size, token caps); "
                "API Gateway only proxies them.",
            ),
            Acknowledgment(
                id="AwsSolutions::AwsSolutions-APIG4",
                reason="Clients are OpenAI SDKs that send a key: every method requires an API Gateway key bound to a "
                "tenant usage plan, and the gateway checks its own keys; IAM/Cognito do not fit bearer-key clients.",
            ),
            Acknowledgment(
                id="AwsSolutions::AwsSolutions-COG4",
                reason="No Cognito user pool: access is by per-tenant API keys (usage plans), checked again "
                "by the gateway.",
            ),
        )
        role = self.api.node.try_find_child("CloudWatchRole")
        if role is not None:
            Validations.of(role).acknowledge(
                Acknowledgment(
                    id="AwsSolutions::AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                    "AmazonAPIGatewayPushToCloudWatchLogs]",
                    reason="API Gateway's account-level logging role needs AmazonAPIGatewayPushToCloudWatchLogs, the "
                    "AWS-maintained policy for exactly that service role.",
                )
            )

        # --- keys and usage plans, one per tenant --------------------------------------------------
        self.api_keys: dict[str, apigw.IApiKey] = {}
        self.usage_plans: dict[str, apigw.UsagePlan] = {}
        for tenant in tenants:
            plan = self.api.add_usage_plan(
                f"Plan-{tenant.name}",
                name=f"{tenant.name}",
                description=f"Usage plan of tenant {tenant.name}",
                throttle=apigw.ThrottleSettings(rate_limit=tenant.rate_limit, burst_limit=tenant.burst_limit),
                quota=(
                    apigw.QuotaSettings(limit=tenant.quota_limit, period=apigw.Period[tenant.quota_period])
                    if tenant.quota_limit
                    else None
                ),
                api_stages=[apigw.UsagePlanPerApiStage(api=self.api, stage=self.stage)],
            )
            key = self.api.add_api_key(f"Key-{tenant.name}", description=f"API key of tenant {tenant.name}")
            plan.add_api_key(key)
            self.api_keys[tenant.name] = key
            self.usage_plans[tenant.name] = plan
        self.tenant_key_map: ssm.StringParameter | None = None
        if tenant_key_map_parameter_name is not None:
            # JSON built with Fn::Join: key ids exist only at deploy time (alphanumeric, nothing to escape).
            pairs = [Fn.join("", ['"', key.key_id, f'":{json.dumps(name)}']) for name, key in self.api_keys.items()]
            self.tenant_key_map = ssm.StringParameter(
                self,
                "TenantKeyMap",
                parameter_name=tenant_key_map_parameter_name,
                string_value=Fn.join("", ["{", Fn.join(",", pairs), "}"]),
                description="API Gateway key id -> tenant name (JSON), for the gateway and llmhost usage",
            )

        # --- 429s as a metric (API Gateway has none of its own) ------------------------------------
        logs.MetricFilter(
            self,
            "ThrottledFilter",
            log_group=self.access_log_group,
            # The access-log format writes "status":"$context.status", a JSON string: match it as one.
            filter_pattern=logs.FilterPattern.string_value("$.status", "=", "429"),
            metric_namespace=THROTTLED_METRIC_NAMESPACE,
            metric_name=THROTTLED_METRIC_NAME,
            metric_value="1",
            dimensions={THROTTLED_METRIC_DIMENSION: "$.apiId"},
            unit=cloudwatch.Unit.COUNT,
        )

        # --- optional custom domain ----------------------------------------------------------------
        self.domain: apigw.DomainName | None = None
        self.url: str = self.api.url
        if custom_domain is not None:
            self.domain = apigw.DomainName(
                self,
                "Domain",
                domain_name=custom_domain.domain_name,
                certificate=custom_domain.certificate,
                endpoint_type=apigw.EndpointType.REGIONAL,
                security_policy=apigw.SecurityPolicy.TLS_1_2,
            )
            self.domain.add_base_path_mapping(self.api, stage=self.stage)
            self.url = f"https://{custom_domain.domain_name}/"
            if custom_domain.hosted_zone is not None:
                route53.ARecord(
                    self,
                    "AliasRecord",
                    zone=custom_domain.hosted_zone,
                    record_name=custom_domain.domain_name,
                    target=route53.RecordTarget.from_alias(route53_targets.ApiGatewayDomain(self.domain)),
                )

    def throttled_requests_metric(self, *, period: Duration = Duration.minutes(5)) -> cloudwatch.Metric:
        """429 responses of this API per `period` (Sum), from the access-log metric filter."""
        return cloudwatch.Metric(
            namespace=THROTTLED_METRIC_NAMESPACE,
            metric_name=THROTTLED_METRIC_NAME,
            dimensions_map={THROTTLED_METRIC_DIMENSION: self.api.rest_api_id},
            statistic="Sum",
            period=period,
        )

    def signals(self) -> ApiRef:
        """This API as the monitoring signals name it (ApiName, Stage, ApiId, buffered routes)."""
        return ApiRef(
            api_name=self.api_name,
            stage_name=self.stage_name,
            api_id=self.api.rest_api_id,
            buffered_routes=tuple((r.method, r.path) for r in self.routes if not r.streaming),
            throttled_namespace=THROTTLED_METRIC_NAMESPACE,
            throttled_metric_name=THROTTLED_METRIC_NAME,
            throttled_dimension=THROTTLED_METRIC_DIMENSION,
        )
