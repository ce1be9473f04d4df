"""One CloudWatch dashboard per environment, laid out for the on-call engineer.

Top to bottom: the alarm states, then four rows that follow a request's path:
1. traffic and errors (is anything failing, and where: API, ALB, gateway),
2. latency and time to first token,
3. capacity and GPU (tasks, targets, GPU, queue),
   with conversation affinity on, its own row (forwarded and owner-hit shares, vLLM's prefix-cache
   hit rate over the service and the prefix-cache tokens per task),
4. backends (SageMaker when deployed; ALB target response time otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from .signals import ServiceSignals

WIDTH = 24  # CloudWatch dashboards are 24 units wide


def _graph(title: str, left: Sequence[cloudwatch.IMetric], right: Sequence[cloudwatch.IMetric] = (), **kw) -> dict:
    """A graph's properties; the widget is made once the row's width is known."""
    return {"title": title, "left": list(left), "right": list(right), "height": 6, **kw}


class OnCallDashboard(Construct):
    """A dashboard of `signals` with the `alarms`' states on top.

    Attributes: `dashboard`, `rows` ({row title: [widgets]}) for tests and extension.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        dashboard_name: str,
        signals: ServiceSignals,
        alarms: Sequence[cloudwatch.IAlarm] = (),
    ) -> None:
        super().__init__(scope, id_)
        s = signals
        rows: dict[str, list[dict]] = {
            "Traffic and errors": [],
            "Latency and time to first token": [],
            "Capacity and GPU": [],
            "Conversation affinity": [],
            "Backends": [],
        }
        traffic, latency, capacity, affinity, backends = rows.values()
        if s.api is not None:
            traffic.append(_graph("API requests and 4XX", [s.api_requests(), s.api_4xx()]))
            traffic.append(_graph("API 5XX rate", [s.api_5xx_rate()]))
            traffic.append(_graph("API throttled (429)", [s.api_throttled()]))
            latency.append(_graph("API latency p50 / p99 (all routes; streams last as long as the answer)",
                                  [s.api_latency("p50"), s.api_latency("p99")]))
            if s.api.buffered_routes:
                latency.append(_graph("Buffered routes latency p99",
                                      [s.api_route_latency(m, p) for m, p in s.api.buffered_routes]))
        if s.load_balancer is not None:
            traffic.append(_graph("ALB 5XX: targets / ALB itself", [s.alb_target_5xx(), s.alb_elb_5xx()]))
            capacity.append(_graph("Targets healthy / unhealthy", [s.healthy_hosts(), s.unhealthy_hosts()]))
            backends.append(_graph("ALB target response time p50 / p95",
                                   [s.target_response_time("p50"), s.target_response_time("p95")]))
        if s.gateway is not None:
            traffic.append(_graph("Gateway requests / error rate", [s.gateway_requests()], [s.gateway_error_rate()]))
            latency.append(_graph("Gateway time to first token p50 / p95 (ms)",
                                  [s.gateway_ttft("p50"), s.gateway_ttft("p95")]))
            latency.append(_graph("Gateway latency p50 / p95 (ms)",
                                  [s.gateway_latency("p50"), s.gateway_latency("p95")]))
            capacity.append(_graph("vLLM queue depth / in flight", [s.queue_depth(), s.in_flight()]))
            traffic.append(_graph("Tokens per tenant (5 min): prompt / completion",
                                  [s.tenant_tokens(s.gateway.prompt_tokens)],
                                  [s.tenant_tokens(s.gateway.completion_tokens)]))
        if s.gateway is not None and s.gateway.affinity is not None:
            share = cloudwatch.YAxisProps(min=0, max=1)
            affinity.append(_graph("Affinity: forwarded share / served by owner share",
                                   [s.affinity_forwarded_share(), s.affinity_hit_share()], left_y_axis=share))
            # Per task from the gateway's own per-window ratio: metric math divides single series, not
            # one search's array of series by another's.
            affinity.append(_graph("vLLM prefix-cache hit rate: service / each task (tokens from cache / looked up)",
                                   [s.prefix_cache_hit_rate(), s.prefix_cache_hit_rate_per_task()],
                                   left_y_axis=share))
            affinity.append(_graph("Prefix-cache tokens per task (5 min): looked up / from cache",
                                   [s.prefix_cache_tokens_per_task(s.gateway.affinity.prefix_cache_queries)],
                                   [s.prefix_cache_tokens_per_task(s.gateway.affinity.prefix_cache_hits)]))
        if s.ecs is not None:
            capacity.append(_graph("ECS tasks running / desired", [s.running_tasks(), s.desired_tasks()]))
        if s.gpu_utilization is not None:
            capacity.append(_graph("GPU utilization % (CloudWatch agent)", [s.gpu_utilization],
                                   left_y_axis=cloudwatch.YAxisProps(min=0, max=100)))
        if s.sagemaker is not None:
            backends.append(_graph("SageMaker invocations / 5XX", [s.sagemaker_invocations()], [s.sagemaker_5xx()]))
            backends.append(_graph("SageMaker model latency p50 / p99 (µs)",
                                   [s.sagemaker_model_latency("p50"), s.sagemaker_model_latency("p99")]))
            backends.append(_graph("SageMaker GPU utilization (% x GPUs)", [s.sagemaker_gpu_utilization()]))

        self.rows: dict[str, list[cloudwatch.GraphWidget]] = {
            title: [cloudwatch.GraphWidget(**g, width=max(WIDTH // len(graphs), 6)) for g in graphs]
            for title, graphs in rows.items()
            if graphs
        }
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=dashboard_name,
            default_interval=Duration.hours(3),
        )
        if alarms:
            self.dashboard.add_widgets(
                cloudwatch.AlarmStatusWidget(title="Alarms", alarms=list(alarms), width=WIDTH, height=4)
            )
        for title, widgets in self.rows.items():
            self.dashboard.add_widgets(cloudwatch.TextWidget(markdown=f"## {title}", width=WIDTH, height=1))
            self.dashboard.add_widgets(*widgets)
