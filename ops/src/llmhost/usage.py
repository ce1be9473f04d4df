"""`llmhost usage`: tokens per tenant from the gateway's CloudWatch metrics.

The gateway emits, per request, ``PromptTokens``, ``CompletionTokens``, ``Requests`` and
``Errors`` with the dimensions ``Service`` and ``Tenant`` (EMF, namespace
``LlmHosting/Gateway``). ``Tenant`` is the tenant's name where the gateway could resolve it,
else the front door's API key id; ids are resolved here from the same SSM parameter the
gateway reads, so one tenant is one row either way.

The names below mirror ``containers/gateway/app/core/contract.py`` (this package is installed
on its own and cannot import it); a test keeps them equal.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .aws import Aws
from .errors import LlmhostError

NAMESPACE = "LlmHosting/Gateway"
DIMENSION_SERVICE = "Service"
DIMENSION_TENANT = "Tenant"
METRICS = ("PromptTokens", "CompletionTokens", "Requests", "Errors")
TENANT_NAMES_PARAMETER = "/llm-hosting/{env}/tenant-api-keys"
_SINCE = re.compile(r"^(\d+)([mhd])$")
_UNIT = {"m": 60, "h": 3600, "d": 86400}


def service_name(env: str) -> str:
    """The EMF ``Service`` value of an environment (app.py: ``llm-hosting-<env>``)."""
    return f"llm-hosting-{env}"


def parse_since(text: str) -> timedelta:
    m = _SINCE.match(text.strip())
    if not m or int(m.group(1)) < 1:
        raise LlmhostError(f"--since {text!r}: give a duration like 30m, 24h or 7d")
    seconds = int(m.group(1)) * _UNIT[m.group(2)]
    if seconds > 455 * 86400:
        raise LlmhostError(f"--since {text!r}: CloudWatch keeps metrics for 455 days at most")
    return timedelta(seconds=seconds)


@dataclass
class TenantUsage:
    tenant: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    errors: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def tenant_names(aws: Aws, env: str) -> dict[str, str]:
    """{api key id: tenant name} from the API stack's SSM parameter; {} where it does not exist."""
    ssm = aws.client("ssm")
    name = TENANT_NAMES_PARAMETER.format(env=env)
    try:
        value = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        return {}
    doc = json.loads(value)
    return {str(k): str(v) for k, v in doc.items()} if isinstance(doc, dict) else {}


def tenant_usage(aws: Aws, env: str, since: timedelta, now: datetime | None = None) -> list[TenantUsage]:
    """Sums over the window of each tenant's metrics, most tokens first."""
    cw = aws.client("cloudwatch")
    service = service_name(env)
    tenants: set[str] = set()
    paginator = cw.get_paginator("list_metrics")
    pages = aws.call(
        "list the gateway's tenant metrics",
        lambda: list(
            paginator.paginate(
                Namespace=NAMESPACE, MetricName="Requests", Dimensions=[{"Name": DIMENSION_SERVICE, "Value": service}]
            )
        ),
    )
    for page in pages:
        for metric in page["Metrics"]:
            dims = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
            if set(dims) == {DIMENSION_SERVICE, DIMENSION_TENANT}:
                tenants.add(dims[DIMENSION_TENANT])
    if not tenants:
        return []
    end = now or datetime.now(timezone.utc)
    period = max(60, -(-int(since.total_seconds()) // 60) * 60)  # one datapoint for the whole window
    queries, index = [], {}
    for i, tenant in enumerate(sorted(tenants)):
        for j, metric in enumerate(METRICS):
            qid = f"m{i}_{j}"
            index[qid] = (tenant, metric)
            dims = [{"Name": DIMENSION_SERVICE, "Value": service}, {"Name": DIMENSION_TENANT, "Value": tenant}]
            queries.append(
                {
                    "Id": qid,
                    "MetricStat": {
                        "Metric": {"Namespace": NAMESPACE, "MetricName": metric, "Dimensions": dims},
                        "Period": period,
                        "Stat": "Sum",
                    },
                }
            )
    sums: dict[tuple[str, str], float] = {}
    for start in range(0, len(queries), 500):  # GetMetricData takes 500 queries per call
        kwargs = {"MetricDataQueries": queries[start : start + 500], "StartTime": end - since, "EndTime": end}
        while True:
            page = aws.call("read the gateway's tenant metrics", cw.get_metric_data, **kwargs)
            for r in page["MetricDataResults"]:
                sums[index[r["Id"]]] = sums.get(index[r["Id"]], 0.0) + sum(r["Values"])
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
    names = tenant_names(aws, env)
    rows: dict[str, TenantUsage] = {}
    for (tenant, metric), value in sums.items():
        row = rows.setdefault(names.get(tenant, tenant), TenantUsage(names.get(tenant, tenant)))
        field = {"PromptTokens": "prompt_tokens", "CompletionTokens": "completion_tokens", "Requests": "requests", "Errors": "errors"}[metric]
        setattr(row, field, getattr(row, field) + int(round(value)))
    return sorted(rows.values(), key=lambda r: (-r.total_tokens, r.tenant))
