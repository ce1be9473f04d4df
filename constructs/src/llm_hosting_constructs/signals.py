"""The CloudWatch metrics of an LLM service, defined once for its alarms and its dashboard.

Not a construct: `ServiceSignals` only builds `cloudwatch.Metric` objects from the names of
the deployed resources, so the alarms and the dashboard always show the same series.

Sources, per signal:

* API Gateway (`AWS/ApiGateway`, dimensions ApiName + Stage; per-method metrics need the
  stage's detailed metrics): 5XXError (0/1 per request, so its Average is the 5XX rate),
  Latency, Count.
* Throttled requests: API Gateway publishes no 429 metric. The front door's access-log metric
  filter counts responses with status 429 (usage-plan, method and account throttling, and the
  gateway's own per-key limits) into `LlmHosting/Api` `ThrottledRequests` by ApiId.
* ALB (`AWS/ApplicationELB`): HTTPCode_Target_5XX_Count, HTTPCode_ELB_5XX_Count,
  HealthyHostCount, UnHealthyHostCount, TargetResponseTime.
* ECS Container Insights (`ECS/ContainerInsights`, ClusterName + ServiceName):
  RunningTaskCount, DesiredTaskCount.
* GPU utilization of the ECS hosts: the CloudWatch agent's `nvidia_gpu` collector (Container
  Insights for ECS has no GPU metrics); see `llm_hosting_constructs.gpu_metrics`.
* The gateway's EMF metrics (namespace, names and the Service + Model dimensions come from the
  gateway contract; pass them in `GatewayMetricNames`). With conversation affinity on
  (`AffinityMetricNames`): AffinityForwarded and AffinityHit (0/1 per request that had an
  affinity key, so their Averages are shares) and vLLM's prefix-cache counters as deltas in prompt
  tokens, PrefixCacheHits and PrefixCacheQueries, per service and per task (dimension Task), and
  their ratio per poll window, PrefixCacheHitRate, per task only.
* SageMaker (`AWS/SageMaker`: ModelLatency in microseconds, Invocation5XXErrors;
  `/aws/sagemaker/Endpoints`: GPUUtilization, 0..100 x GPUs per instance).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch

ONE_MINUTE = Duration.minutes(1)
FIVE_MINUTES = Duration.minutes(5)


@dataclass(frozen=True)
class ApiRef:
    """A REST API stage: its name and stage name, the route paths that are buffered, and its id."""

    api_name: str
    stage_name: str
    api_id: str
    buffered_routes: tuple[tuple[str, str], ...] = ()
    """(method, resource path) of the buffered routes; their p99 latency is alarmed."""
    throttled_namespace: str = "LlmHosting/Api"
    throttled_metric_name: str = "ThrottledRequests"
    throttled_dimension: str = "ApiId"


@dataclass(frozen=True)
class LoadBalancerRef:
    """The internal ALB and its target group, as CloudWatch names them (`app/name/id`, `targetgroup/name/id`)."""

    load_balancer_full_name: str
    target_group_full_name: str


@dataclass(frozen=True)
class EcsServiceRef:
    cluster_name: str
    service_name: str


@dataclass(frozen=True)
class AffinityMetricNames:
    """The gateway's conversation-affinity metrics (docs/affinity.md): fill from the gateway contract."""

    forwarded: str
    hit: str
    prefix_cache_hits: str
    prefix_cache_queries: str
    task_dimension: str
    """The dimension whose value is the task (ip:port) on the prefix-cache metrics."""
    prefix_cache_hit_rate: str = "PrefixCacheHitRate"
    """Hits / queries of one gateway poll window (0..1), with the task dimension only."""


@dataclass(frozen=True)
class GatewayMetricNames:
    """The gateway's EMF metrics: fill from `containers/gateway/app/core/contract.py`."""

    namespace: str
    dimensions: Mapping[str, str]
    requests: str
    errors: str
    ttft: str
    latency: str
    queue_depth: str
    in_flight: str
    prompt_tokens: str = "PromptTokens"
    completion_tokens: str = "CompletionTokens"
    tenant_dimension: str = "Tenant"
    """The dimension whose value is the tenant (API key's tenant name) on the token metrics."""
    affinity: AffinityMetricNames | None = None
    """Only where the gateways route by affinity (ecs.affinity not off): they emit these metrics."""


@dataclass(frozen=True)
class SageMakerRef:
    endpoint_name: str
    variant_name: str
    gpus_per_instance: int = 1


@dataclass(frozen=True)
class ServiceSignals:
    """Every metric the on-call view needs. Parts may be None where a backend is not deployed."""

    api: ApiRef | None = None
    load_balancer: LoadBalancerRef | None = None
    ecs: EcsServiceRef | None = None
    gpu_utilization: cloudwatch.IMetric | None = None
    gateway: GatewayMetricNames | None = None
    sagemaker: SageMakerRef | None = None

    # --- API Gateway ---------------------------------------------------------------------------
    def _api(self, name: str, statistic: str, period: Duration = FIVE_MINUTES, **extra_dims: str) -> cloudwatch.Metric:
        assert self.api is not None
        return cloudwatch.Metric(
            namespace="AWS/ApiGateway",
            metric_name=name,
            dimensions_map={"ApiName": self.api.api_name, "Stage": self.api.stage_name, **extra_dims},
            statistic=statistic,
            period=period,
        )

    def api_requests(self) -> cloudwatch.Metric:
        return self._api("Count", "Sum")

    def api_5xx_rate(self) -> cloudwatch.Metric:
        return self._api("5XXError", "Average")

    def api_4xx(self) -> cloudwatch.Metric:
        return self._api("4XXError", "Sum")

    def api_latency(self, statistic: str = "p99") -> cloudwatch.Metric:
        return self._api("Latency", statistic)

    def api_route_latency(self, method: str, path: str, statistic: str = "p99") -> cloudwatch.Metric:
        return self._api("Latency", statistic, Method=method, Resource=path)

    def api_throttled(self) -> cloudwatch.Metric:
        assert self.api is not None
        return cloudwatch.Metric(
            namespace=self.api.throttled_namespace,
            metric_name=self.api.throttled_metric_name,
            dimensions_map={self.api.throttled_dimension: self.api.api_id},
            statistic="Sum",
            period=FIVE_MINUTES,
        )

    # --- ALB -----------------------------------------------------------------------------------
    def _alb(self, name: str, statistic: str, period: Duration, *, target_group: bool = False) -> cloudwatch.Metric:
        assert self.load_balancer is not None
        dims = {"LoadBalancer": self.load_balancer.load_balancer_full_name}
        if target_group:
            dims["TargetGroup"] = self.load_balancer.target_group_full_name
        return cloudwatch.Metric(
            namespace="AWS/ApplicationELB", metric_name=name, dimensions_map=dims, statistic=statistic, period=period
        )

    def alb_target_5xx(self) -> cloudwatch.Metric:
        return self._alb("HTTPCode_Target_5XX_Count", "Sum", FIVE_MINUTES)

    def alb_elb_5xx(self) -> cloudwatch.Metric:
        return self._alb("HTTPCode_ELB_5XX_Count", "Sum", FIVE_MINUTES)

    def healthy_hosts(self) -> cloudwatch.Metric:
        return self._alb("HealthyHostCount", "Minimum", ONE_MINUTE, target_group=True)

    def unhealthy_hosts(self) -> cloudwatch.Metric:
        return self._alb("UnHealthyHostCount", "Maximum", ONE_MINUTE, target_group=True)

    def target_response_time(self, statistic: str = "p95") -> cloudwatch.Metric:
        return self._alb("TargetResponseTime", statistic, FIVE_MINUTES)

    # --- ECS (Container Insights) --------------------------------------------------------------
    def _ecs(self, name: str) -> cloudwatch.Metric:
        assert self.ecs is not None
        return cloudwatch.Metric(
            namespace="ECS/ContainerInsights",
            metric_name=name,
            dimensions_map={"ClusterName": self.ecs.cluster_name, "ServiceName": self.ecs.service_name},
            statistic="Average",
            period=ONE_MINUTE,
        )

    def running_tasks(self) -> cloudwatch.Metric:
        return self._ecs("RunningTaskCount")

    def desired_tasks(self) -> cloudwatch.Metric:
        return self._ecs("DesiredTaskCount")

    def tasks_missing(self) -> cloudwatch.MathExpression:
        """Desired minus running tasks, per minute."""
        return cloudwatch.MathExpression(
            expression="desired - running",
            using_metrics={"desired": self.desired_tasks(), "running": self.running_tasks()},
            label="Tasks below desired",
            period=ONE_MINUTE,
        )

    # --- gateway (EMF) -------------------------------------------------------------------------
    def _gw(self, name: str, statistic: str, period: Duration = FIVE_MINUTES) -> cloudwatch.Metric:
        assert self.gateway is not None
        return cloudwatch.Metric(
            namespace=self.gateway.namespace,
            metric_name=name,
            dimensions_map=dict(self.gateway.dimensions),
            statistic=statistic,
            period=period,
        )

    def gateway_requests(self) -> cloudwatch.Metric:
        assert self.gateway is not None
        return self._gw(self.gateway.requests, "Sum")

    def gateway_error_rate(self) -> cloudwatch.Metric:
        """The gateway emits Errors as 0 or 1 on every request: its Average is the error rate."""
        assert self.gateway is not None
        return self._gw(self.gateway.errors, "Average")

    def gateway_ttft(self, statistic: str = "p95") -> cloudwatch.Metric:
        assert self.gateway is not None
        return self._gw(self.gateway.ttft, statistic)

    def gateway_latency(self, statistic: str = "p95") -> cloudwatch.Metric:
        assert self.gateway is not None
        return self._gw(self.gateway.latency, statistic)

    def queue_depth(self) -> cloudwatch.Metric:
        assert self.gateway is not None
        return self._gw(self.gateway.queue_depth, "Maximum", ONE_MINUTE)

    def in_flight(self) -> cloudwatch.Metric:
        assert self.gateway is not None
        return self._gw(self.gateway.in_flight, "Maximum", ONE_MINUTE)

    def _gw_search(self, metric_name: str, dimension: str, statistic: str = "Sum") -> cloudwatch.SearchExpression:
        """`metric_name` (`statistic` per 5 min) for each value of `dimension`: a search, so a value that
        appears later (a new tenant, a new task) shows up. Matches the gateway's metrics with this
        deployment's dimension values (`dimensions`) that also carry `dimension`."""
        assert self.gateway is not None
        terms = " ".join(f'{k}="{v}"' for k, v in self.gateway.dimensions.items())
        return cloudwatch.SearchExpression(
            expression=f"SEARCH('Namespace=\"{self.gateway.namespace}\" MetricName=\"{metric_name}\" {terms} "
            f"{dimension}', '{statistic}', 300)",
            label="",
            period=FIVE_MINUTES,
        )

    def tenant_tokens(self, metric_name: str) -> cloudwatch.SearchExpression:
        """`metric_name` (Sum per 5 min) of each tenant, one series per tenant."""
        assert self.gateway is not None
        return self._gw_search(metric_name, self.gateway.tenant_dimension)

    # --- conversation affinity (gateway EMF) ---------------------------------------------------
    def _affinity(self) -> AffinityMetricNames:
        assert self.gateway is not None and self.gateway.affinity is not None
        return self.gateway.affinity

    def affinity_forwarded_share(self) -> cloudwatch.Metric:
        """Share of keyed requests served by their owner task through a forward: about (N-1)/N of N tasks."""
        return self._gw(self._affinity().forwarded, "Average")

    def affinity_hit_share(self) -> cloudwatch.Metric:
        """Share of keyed requests served by their owner (here or forwarded); the rest fell back."""
        return self._gw(self._affinity().hit, "Average")

    def prefix_cache_hit_rate(self) -> cloudwatch.MathExpression:
        """vLLM's prefix-cache hit rate over the service: prompt tokens served from cache / looked up."""
        a = self._affinity()
        return cloudwatch.MathExpression(
            expression="hits / queries",
            using_metrics={"hits": self._gw(a.prefix_cache_hits, "Sum"),
                           "queries": self._gw(a.prefix_cache_queries, "Sum")},  # fmt: skip
            label="prefix-cache hit rate (service)",
            period=FIVE_MINUTES,
        )

    def prefix_cache_tokens_per_task(self, metric_name: str) -> cloudwatch.SearchExpression:
        """`metric_name` (PrefixCacheHits or PrefixCacheQueries, Sum per 5 min) per task."""
        return self._gw_search(metric_name, self._affinity().task_dimension)

    def prefix_cache_hit_rate_per_task(self) -> cloudwatch.SearchExpression:
        """vLLM's prefix-cache hit rate of each task, one line per task: the Average over 5 min of the
        gateway's per-poll ratios (each poll window weighs the same, busy or not)."""
        a = self._affinity()
        return self._gw_search(a.prefix_cache_hit_rate, a.task_dimension, "Average")

    # --- SageMaker -----------------------------------------------------------------------------
    def _sm(self, namespace: str, name: str, statistic: str, period: Duration) -> cloudwatch.Metric:
        assert self.sagemaker is not None
        return cloudwatch.Metric(
            namespace=namespace,
            metric_name=name,
            dimensions_map={"EndpointName": self.sagemaker.endpoint_name, "VariantName": self.sagemaker.variant_name},
            statistic=statistic,
            period=period,
        )

    def sagemaker_model_latency(self, statistic: str = "p99") -> cloudwatch.Metric:
        """Microseconds."""
        return self._sm("AWS/SageMaker", "ModelLatency", statistic, FIVE_MINUTES)

    def sagemaker_5xx(self) -> cloudwatch.Metric:
        return self._sm("AWS/SageMaker", "Invocation5XXErrors", "Sum", FIVE_MINUTES)

    def sagemaker_invocations(self) -> cloudwatch.Metric:
        return self._sm("AWS/SageMaker", "Invocations", "Sum", FIVE_MINUTES)

    def sagemaker_gpu_utilization(self) -> cloudwatch.Metric:
        """0..100 x GPUs per instance (SageMaker sums its GPUs)."""
        return self._sm("/aws/sagemaker/Endpoints", "GPUUtilization", "Average", FIVE_MINUTES)
