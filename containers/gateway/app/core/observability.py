"""One structured JSON line per request, which is also the CloudWatch EMF record
(the ``_aws`` block turns its numbers into metrics), plus Prometheus metrics.

No prompt or completion text is written unless ``GATEWAY_LOG_PROMPTS`` is on."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from . import contract
from .config import Settings

_LAT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.msg if isinstance(record.msg, dict) else {"message": record.getMessage()}
        out = {"ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name, **msg}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def setup_logging(s: Settings) -> None:
    root = logging.getLogger("gateway")
    if not any(getattr(h, "_gateway", False) for h in root.handlers):
        h = logging.StreamHandler(sys.stdout)
        h.setFormatter(JsonFormatter())
        h._gateway = True  # type: ignore[attr-defined]
        root.addHandler(h)
        root.propagate = False
    root.setLevel(s.log_level.upper())


@dataclass(eq=False, slots=True)
class RequestRecord:
    """What one request leaves behind; filled in on the hot path with plain attributes."""

    route: str
    request_id: str
    t0: float
    key_id: str = "-"
    tenant: str | None = None
    model: str | None = None
    stream: bool = False
    status: int = 0
    upstream: str | None = None
    t_upstream_sent: float | None = None
    t_upstream_headers: float | None = None
    t_first_byte: float | None = None
    overhead_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None
    disconnected: bool = False
    prompt: Any = None
    completion: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Observability:
    def __init__(self, s: Settings) -> None:
        self.s = s
        self.log = logging.getLogger("gateway.request")
        self.in_flight = 0
        self.queue_depth = 0
        reg = self.registry = CollectorRegistry()
        self.p_requests = Counter("gateway_requests", "Requests by route and status", ["route", "status"], registry=reg)
        self.p_latency = Histogram("gateway_request_latency_seconds", "End-to-end latency", ["route"], buckets=_LAT_BUCKETS, registry=reg)
        self.p_ttft = Histogram("gateway_time_to_first_token_seconds", "Time to first upstream byte of a stream", ["route"], buckets=_LAT_BUCKETS, registry=reg)
        self.p_tokens = Counter("gateway_tokens", "Tokens", ["kind"], registry=reg)
        self.p_in_flight = Gauge("gateway_in_flight_requests", "Requests in flight", registry=reg)
        self.p_queue = Gauge("gateway_backend_queue_depth", "vLLM waiting requests, last seen", registry=reg)
        self.p_overhead = Histogram(
            "gateway_overhead_seconds", "Gateway time before the upstream answered", buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05), registry=reg
        )
        self.p_affinity = Counter("gateway_affinity_requests", "Affinity routing outcome", ["outcome"], registry=reg)
        self._req_child: dict[tuple[str, int], Any] = {}
        self._lat_child: dict[str, Any] = {}
        self._ttft_child: dict[str, Any] = {}
        self._emf_base = {
            "Namespace": contract.METRICS_NAMESPACE,
            "Dimensions": [list(d) for d in contract.EMF_DIMENSION_SETS],
        }
        self._emf_tenant = {
            "Namespace": contract.METRICS_NAMESPACE,
            "Dimensions": [list(d) for d in contract.EMF_TENANT_DIMENSION_SETS],
        }

    def start(self) -> None:
        self.in_flight += 1
        self.p_in_flight.inc()

    def finish(self, r: RequestRecord) -> None:
        self.in_flight -= 1
        self.p_in_flight.dec()
        now = time.perf_counter()
        latency_ms = (now - r.t0) * 1000.0
        ttft_ms = (r.t_first_byte - r.t0) * 1000.0 if (r.stream and r.t_first_byte is not None) else None
        status = r.status
        c = self._req_child.get((r.route, status))
        if c is None:
            c = self._req_child[(r.route, status)] = self.p_requests.labels(r.route, str(status))
        c.inc()
        h = self._lat_child.get(r.route)
        if h is None:
            h = self._lat_child[r.route] = self.p_latency.labels(r.route)
        h.observe(latency_ms / 1000.0)
        if ttft_ms is not None:
            h = self._ttft_child.get(r.route)
            if h is None:
                h = self._ttft_child[r.route] = self.p_ttft.labels(r.route)
            h.observe(ttft_ms / 1000.0)
        if r.overhead_ms is not None:
            self.p_overhead.observe(r.overhead_ms / 1000.0)
        if r.prompt_tokens:
            self.p_tokens.labels("prompt").inc(r.prompt_tokens)
        if r.completion_tokens:
            self.p_tokens.labels("completion").inc(r.completion_tokens)
        self.p_queue.set(self.queue_depth)

        rec: dict[str, Any] = {
            "ts": round(time.time(), 3),
            "level": "info" if status < 500 else "error",
            "logger": "gateway.request",
            "request_id": r.request_id,
            "key_id": r.key_id,
            "tenant": r.tenant,
            "route": r.route,
            "model": r.model,
            "stream": r.stream,
            "status": status,
            "upstream": r.upstream,
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "latency_ms": round(latency_ms, 3),
            "ttft_ms": round(ttft_ms, 3) if ttft_ms is not None else None,
            "overhead_ms": r.overhead_ms,
        }
        affinity = r.extra.get("affinity")  # core/affinity.py Decision
        if affinity is not None:
            rec["affinity"] = affinity.label
            self.p_affinity.labels(affinity.label).inc()
        if r.error:
            rec["error"] = r.error
        if r.disconnected:
            rec["client_disconnected"] = True
        if self.s.log_prompts:
            rec["prompt"] = r.prompt
            rec["completion"] = r.completion
        if self.s.emf_enabled:
            metrics = [
                contract.METRIC_REQUESTS,
                contract.METRIC_ERRORS,
                contract.METRIC_CLIENT_ERRORS,
                contract.METRIC_REJECTED,
                contract.METRIC_LATENCY,
                contract.METRIC_IN_FLIGHT,
                contract.METRIC_QUEUE_DEPTH,
            ]
            rec[contract.DIMENSION_SERVICE] = self.s.service_name
            rec[contract.DIMENSION_MODEL] = r.model or self.s.served_model_name or "unknown"
            rec[contract.METRIC_REQUESTS] = 1
            rec[contract.METRIC_ERRORS] = 1 if (status >= 500 or r.error) else 0
            rec[contract.METRIC_CLIENT_ERRORS] = 1 if 400 <= status < 500 else 0
            rec[contract.METRIC_REJECTED] = 1 if (status == 429 or r.extra.get("shed")) else 0
            rec[contract.METRIC_LATENCY] = rec["latency_ms"]
            rec[contract.METRIC_IN_FLIGHT] = self.in_flight
            rec[contract.METRIC_QUEUE_DEPTH] = self.queue_depth
            if ttft_ms is not None:
                rec[contract.METRIC_TTFT] = rec["ttft_ms"]
                metrics.append(contract.METRIC_TTFT)
            if r.overhead_ms is not None:
                rec[contract.METRIC_OVERHEAD] = r.overhead_ms
                metrics.append(contract.METRIC_OVERHEAD)
            if r.prompt_tokens is not None:
                rec[contract.METRIC_PROMPT_TOKENS] = r.prompt_tokens
                metrics.append(contract.METRIC_PROMPT_TOKENS)
            if r.completion_tokens is not None:
                rec[contract.METRIC_COMPLETION_TOKENS] = r.completion_tokens
                metrics.append(contract.METRIC_COMPLETION_TOKENS)
            if affinity is not None:
                for name, value in affinity.metrics().items():
                    rec[name] = value
                    metrics.append(name)
            directives = [{**self._emf_base, "Metrics": [{"Name": m, "Unit": contract.METRIC_UNITS[m]} for m in metrics]}]
            if r.tenant is not None:
                rec[contract.DIMENSION_TENANT] = r.tenant
                directives.append(
                    {
                        **self._emf_tenant,
                        "Metrics": [
                            {"Name": m, "Unit": contract.METRIC_UNITS[m]} for m in metrics if m in contract.TENANT_METRICS
                        ],
                    }
                )
            rec["_aws"] = {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": directives}
        sys.stdout.write(orjson.dumps(rec, default=str).decode() + "\n")
        sys.stdout.flush()
