"""`llmhost cost`: monthly cost of an environment as configured, the same traffic on a commercial API,
and the volume at which they cross.

Pure functions over explicit inputs (:class:`Deployment`, :class:`Traffic`, :class:`Prices`)
so every figure can be checked by hand; the CLI builds the inputs from the config.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from llm_hosting_constructs.schedule import OffHours, weekly_times

from .errors import LlmhostError

HOURS_PER_MONTH = 730.0  # AWS's billing convention (8,760 h / 12)
HOURS_PER_WEEK = 168.0
DAYS_PER_MONTH = HOURS_PER_MONTH / 24

# Deployment facts the config does not state; each is a documented estimate.
INTERFACE_ENDPOINTS = 11
"""Interface VPC endpoints per AZ: llm_hosting_constructs.network.INTERFACE_ENDPOINTS (a test keeps them equal)."""
ROOT_VOLUME_GB = 200
"""gp3 root volume of a GPU host: the vLLM image (~10 GB compressed, ~25 GB on disk) plus Docker's working space."""
WAF_RULES = 4
"""Rules in the web ACL: three AWS managed rule groups and one rate-based rule."""
REQUEST_OVERHEAD_BYTES = 600
"""HTTP headers and JSON around a chat request, beyond its text."""
BYTES_PER_INPUT_TOKEN = 4
"""Prompt text: about four bytes of UTF-8 per token for English."""
BYTES_PER_STREAMED_TOKEN = 250
"""One OpenAI ``chat.completion.chunk`` SSE event per output token: ~250 bytes of JSON and framing."""
ALB_NEW_CONNECTIONS_PER_LCU = 25  # per second; the other LCU dimensions are bytes (1 GB/hour) and rules


PRICES_FILE = "ops/src/llmhost/data/prices.json"


@dataclass(frozen=True)
class Prices:
    data: dict[str, Any]
    source: str = PRICES_FILE
    """Where the prices came from, for the error that asks to add one."""

    @property
    def read_on(self) -> str:
        return str(self.data["read_on"])

    @property
    def region(self) -> str:
        return str(self.data["region"])

    def hourly(self, instance_type: str) -> float:
        table = "sagemaker_hosting_per_hour" if instance_type.startswith("ml.") else "ec2_on_demand_per_hour"
        try:
            return float(self.data[table][instance_type])
        except KeyError:
            raise LlmhostError(
                f"no {self.region} price for {instance_type} in the prices file (read {self.read_on}); "
                f"add it under {table} in {self.source}"
            ) from None

    def __getitem__(self, key: str) -> Any:
        return self.data[key]


def load_prices(path: Path | None = None) -> Prices:
    """The packaged prices file, or ``path``; a file that is not JSON is one line."""
    if path is None:
        return Prices(json.loads(resources.files("llmhost").joinpath("data/prices.json").read_text()))
    try:
        return Prices(json.loads(path.read_text()), str(path))
    except (OSError, ValueError) as exc:
        raise LlmhostError(f"cannot read prices from {path}: {exc}") from None


@dataclass(frozen=True)
class ApiPrice:
    name: str
    input_per_million: float
    output_per_million: float


def api_price_for(prices: Prices, model_id: str, input_price: float | None, output_price: float | None) -> ApiPrice:
    """The commercial API to compare with: prices given on the command line, else the same model's
    managed API from the prices file, else the file's default."""
    if (input_price is None) != (output_price is None):
        raise LlmhostError("give both --api-input-price and --api-output-price, or neither")
    if input_price is not None and output_price is not None:
        return ApiPrice("API at the given prices", input_price, output_price)
    api = prices["commercial_api"]
    entry = api["by_model"].get(model_id, api["default"])
    return ApiPrice(entry["name"], float(entry["input_per_million"]), float(entry["output_per_million"]))


@dataclass(frozen=True)
class Traffic:
    requests_per_day: float
    input_tokens: int
    output_tokens: int

    @property
    def requests_per_month(self) -> float:
        return self.requests_per_day * DAYS_PER_MONTH

    def with_volume(self, requests_per_day: float) -> Traffic:
        return Traffic(requests_per_day, self.input_tokens, self.output_tokens)


@dataclass(frozen=True)
class Deployment:
    """What an environment runs, in the terms the cost model needs."""

    name: str
    region: str
    model_id: str
    model_bytes_on_disk: int
    availability_zones: int
    nat_gateways: int
    waf_enabled: bool
    ecs_instance_type: str | None = None
    ecs_instances: int = 0
    ecs_max_instances: int = 0
    off_hours: OffHours | None = None
    sagemaker_instance_type: str | None = None
    sagemaker_instances: int = 0
    sagemaker_off_hours: OffHours | None = None
    """Down to one instance between ``down_cron`` and ``up_cron`` (an endpoint cannot run none)."""


@dataclass(frozen=True)
class CostLine:
    item: str
    monthly_usd: float
    basis: str


@dataclass(frozen=True)
class Estimate:
    lines: list[CostLine]
    api: ApiPrice
    api_monthly_usd: float
    crossover_requests_per_day: float | None
    ecs_instances: int
    notes: list[str] = field(default_factory=list)

    @property
    def total_usd(self) -> float:
        return sum(line.monthly_usd for line in self.lines)


# --- schedule -------------------------------------------------------------------


def _weekly_events(cron: str) -> list[int]:
    """Minutes since Monday 00:00 at which a weekly cron fires."""
    times = weekly_times(cron)
    if times is None:
        raise LlmhostError(
            f"cannot read schedule {cron!r}: the cost model handles weekly schedules at a fixed minute and hour "
            "('M H ? * DAYS *')"
        )
    return times


def on_hours_per_week(off_hours: OffHours | None) -> float:
    """Hours per week the service runs: all 168 without a schedule, else between each up and the next down."""
    if off_hours is None:
        return HOURS_PER_WEEK
    events = sorted(
        [(t, True) for t in _weekly_events(off_hours.scale_up_cron)] + [(t, False) for t in _weekly_events(off_hours.scale_down_cron)]
    )
    state = events[-1][1]  # the week wraps: Monday 00:00 continues the last event of last week
    on_minutes, since = 0, 0
    for t, up in events:
        if state:
            on_minutes += t - since
        state, since = up, t
    if state:
        on_minutes += 7 * 1440 - since
    return on_minutes / 60


def scale_ups_per_week(off_hours: OffHours | None) -> int:
    return len(_weekly_events(off_hours.scale_up_cron)) if off_hours else 0


# --- the estimate ---------------------------------------------------------------


def ecs_instances_needed(deployment: Deployment, traffic: Traffic, instance_output_tps: float | None) -> int:
    """The configured count, or more when the output tokens per second during serving hours
    exceed what the fleet sustains (``instance_output_tps`` per instance, a benchmarked figure)."""
    if instance_output_tps is None or not deployment.ecs_instance_type:
        return deployment.ecs_instances
    serving_seconds_per_day = on_hours_per_week(deployment.off_hours) / 7 * 3600
    output_tps = traffic.requests_per_day * traffic.output_tokens / serving_seconds_per_day
    return max(deployment.ecs_instances, math.ceil(output_tps / instance_output_tps))


def self_hosted_lines(
    deployment: Deployment, traffic: Traffic, prices: Prices, *, instance_output_tps: float | None = None
) -> list[CostLine]:
    """Every monthly charge of the environment that matters, with the arithmetic behind it."""
    lines: list[CostLine] = []
    azs = deployment.availability_zones
    requests = traffic.requests_per_month
    if deployment.ecs_instance_type:
        count = ecs_instances_needed(deployment, traffic, instance_output_tps)
        on_hours = on_hours_per_week(deployment.off_hours) * HOURS_PER_MONTH / HOURS_PER_WEEK
        rate = prices.hourly(deployment.ecs_instance_type)
        lines.append(
            CostLine(
                f"GPU instances ({deployment.ecs_instance_type})",
                count * on_hours * rate,
                f"{count} × {on_hours:,.0f} h × ${rate:g}/h",
            )
        )
        ebs_rate = prices["ebs_gp3_gb_month"]
        share = on_hours / HOURS_PER_MONTH  # scaled-in instances are terminated with their volumes
        lines.append(
            CostLine(
                "EBS root volumes (gp3)",
                count * ROOT_VOLUME_GB * ebs_rate * share,
                f"{count} × {ROOT_VOLUME_GB} GB × ${ebs_rate}/GB-month × {share:.0%} of the month",
            )
        )
        alb = prices["alb"]
        bytes_in = requests * (REQUEST_OVERHEAD_BYTES + traffic.input_tokens * BYTES_PER_INPUT_TOKEN)
        bytes_out = requests * traffic.output_tokens * BYTES_PER_STREAMED_TOKEN
        gb_per_hour = (bytes_in + bytes_out) / 1e9 / HOURS_PER_MONTH
        conn_lcu = requests / (HOURS_PER_MONTH * 3600) / ALB_NEW_CONNECTIONS_PER_LCU
        lcu = max(gb_per_hour, conn_lcu)
        lines.append(
            CostLine(
                "Application Load Balancer",
                HOURS_PER_MONTH * (alb["per_hour"] + lcu * alb["per_lcu_hour"]),
                f"730 h × (${alb['per_hour']}/h + {lcu:.3f} LCU × ${alb['per_lcu_hour']}/LCU-h)",
            )
        )
        efs = prices["efs"]
        gib = deployment.model_bytes_on_disk / 2**30
        starts = count * scale_ups_per_week(deployment.off_hours) * HOURS_PER_MONTH / HOURS_PER_WEEK
        lines.append(
            CostLine(
                "EFS model cache",
                gib * efs["standard_storage_gb_month"] + starts * gib * efs["elastic_read_per_gb"],
                f"{gib:,.1f} GB × ${efs['standard_storage_gb_month']}/GB-month"
                + (
                    f" + {starts:,.0f} cold starts × {gib:,.1f} GB read × ${efs['elastic_read_per_gb']}/GB"
                    if starts
                    else ""
                ),
            )
        )
    if deployment.sagemaker_instance_type:
        rate = prices.hourly(deployment.sagemaker_instance_type)
        n = deployment.sagemaker_instances
        day = on_hours_per_week(deployment.sagemaker_off_hours) * HOURS_PER_MONTH / HOURS_PER_WEEK
        night = HOURS_PER_MONTH - day
        lines.append(
            CostLine(
                f"SageMaker endpoint ({deployment.sagemaker_instance_type})",
                (n * day + min(n, 1) * night) * rate,
                f"({n} × {day:,.0f} h + 1 × {night:,.0f} h at night) × ${rate:g}/h"
                if deployment.sagemaker_off_hours
                else f"{n} × 730 h × ${rate:g}/h (real-time endpoints do not scale to zero)",
            )
        )
    api = prices["api_gateway_rest"]
    lines.append(
        CostLine(
            "API Gateway (REST)",
            requests / 1e6 * api["per_million_requests"],
            f"{requests:,.0f} requests × ${api['per_million_requests']}/million",
        )
    )
    gb_out = requests * traffic.output_tokens * BYTES_PER_STREAMED_TOKEN / 1e9
    lines.append(
        CostLine(
            "Data transfer out",
            gb_out * prices["data_transfer_out_per_gb"],
            f"{gb_out:,.1f} GB of streamed responses × ${prices['data_transfer_out_per_gb']}/GB",
        )
    )
    if deployment.waf_enabled:
        waf = prices["waf"]
        lines.append(
            CostLine(
                "WAF",
                waf["web_acl_month"] + WAF_RULES * waf["rule_month"] + requests / 1e6 * waf["per_million_requests"],
                f"${waf['web_acl_month']:g} ACL + {WAF_RULES} rules × ${waf['rule_month']:g} "
                f"+ ${waf['per_million_requests']}/million requests",
            )
        )
    if deployment.nat_gateways:
        nat = prices["nat_gateway"]
        lines.append(
            CostLine(
                "NAT gateways",
                deployment.nat_gateways * HOURS_PER_MONTH * nat["per_hour"],
                f"{deployment.nat_gateways} × 730 h × ${nat['per_hour']}/h (+ ${nat['per_gb_processed']}/GB processed)",
            )
        )
    vpce = prices["vpc_interface_endpoint"]
    lines.append(
        CostLine(
            "VPC interface endpoints",
            INTERFACE_ENDPOINTS * azs * HOURS_PER_MONTH * vpce["per_az_hour"],
            f"{INTERFACE_ENDPOINTS} endpoints × {azs} AZs × 730 h × ${vpce['per_az_hour']}/h",
        )
    )
    return lines


def api_monthly(traffic: Traffic, api: ApiPrice) -> float:
    per_request = (traffic.input_tokens * api.input_per_million + traffic.output_tokens * api.output_per_million) / 1e6
    return traffic.requests_per_month * per_request


def self_hosted_monthly(
    deployment: Deployment, traffic: Traffic, prices: Prices, *, instance_output_tps: float | None = None
) -> float:
    return sum(
        line.monthly_usd
        for line in self_hosted_lines(deployment, traffic, prices, instance_output_tps=instance_output_tps)
    )


def crossover(
    deployment: Deployment, traffic: Traffic, prices: Prices, api: ApiPrice, *, instance_output_tps: float | None = None
) -> float | None:
    """Requests per day (same request shape) above which the commercial API costs more than the
    environment; None when it never does below a billion requests per day.

    Self-hosting is a fixed cost plus small per-request charges (and steps when the fleet has to
    grow); the API is linear. Scan a log grid for the first volume where the API is dearer, then
    bisect between it and the previous grid point.
    """

    def api_minus_self(volume: float) -> float:
        t = traffic.with_volume(volume)
        return api_monthly(t, api) - self_hosted_monthly(deployment, t, prices, instance_output_tps=instance_output_tps)

    previous = 0.0
    for step in range(0, 541):  # 1 to 1e9 requests/day, 60 points per decade
        volume = 10 ** (step / 60)
        if api_minus_self(volume) >= 0:
            low, high = previous, volume
            for _ in range(60):
                mid = (low + high) / 2
                low, high = (low, mid) if api_minus_self(mid) >= 0 else (mid, high)
            return high
        previous = volume
    return None


def estimate(
    deployment: Deployment,
    traffic: Traffic,
    prices: Prices,
    api: ApiPrice,
    *,
    instance_output_tps: float | None = None,
) -> Estimate:
    notes = []
    if deployment.region != prices.region:
        notes.append(
            f"prices are for {prices.region} (read {prices.read_on}); {deployment.name} runs in {deployment.region}"
        )
    count = ecs_instances_needed(deployment, traffic, instance_output_tps)
    if deployment.ecs_instance_type and instance_output_tps is None:
        notes.append(
            f"fleet fixed at desired_capacity ({deployment.ecs_instances}); pass --instance-output-tps "
            "(benchmarked output tokens/s of one instance) to grow it with the traffic"
        )
    if deployment.ecs_instance_type and count > deployment.ecs_max_instances:
        notes.append(f"the traffic needs {count} instances but max_capacity is {deployment.ecs_max_instances}")
    return Estimate(
        lines=self_hosted_lines(deployment, traffic, prices, instance_output_tps=instance_output_tps),
        api=api,
        api_monthly_usd=api_monthly(traffic, api),
        crossover_requests_per_day=crossover(deployment, traffic, prices, api, instance_output_tps=instance_output_tps),
        ecs_instances=count,
        notes=notes,
    )
