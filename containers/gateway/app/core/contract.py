"""The gateway's contract with the CDK stacks: names both sides must agree on.

Standard library only, and nothing here imports FastAPI or any other runtime
dependency of the gateway: the stacks import this module at synth time as
``containers.gateway.app.core.contract`` (a PEP 420 namespace import from the
repository root; there is deliberately no ``containers/__init__.py`` and no
``containers/gateway/__init__.py``).

What lives here:

* the container port and the health paths (ALB target group, container health check);
* the CloudWatch embedded-metric-format (EMF) namespace, metric names, units and
  dimension names the gateway emits (dashboards and alarms);
* the names of the environment variables the ECS task definition sets, which of
  them must come from Secrets Manager, and the keep-alive rule of DESIGN §4.

Change a value here and both the gateway and the stacks follow; the tests of both
sides read these constants instead of repeating literals.
"""

from __future__ import annotations

from typing import Final

# --------------------------------------------------------------------------- ports, paths
GATEWAY_PORT: Final = 8080
"""The port the gateway listens on inside the task (container port, ALB target port)."""

VLLM_PORT: Final = 8000
"""The port of the vLLM container the gateway forwards to (over localhost in awsvpc)."""

DEFAULT_UPSTREAM_URL: Final = f"http://127.0.0.1:{VLLM_PORT}"

HEALTH_PATH: Final = "/health"
"""Readiness: 200 when the backend is healthy and the gateway is not draining, else 503.
Use it for the ALB target group health check."""

LIVE_PATH: Final = "/live"
"""Liveness: 200 while the process serves HTTP at all. Use it for the container health check."""

METRICS_PATH: Final = "/metrics"
"""Prometheus text format (gateway metrics only; vLLM's own are on the vLLM port)."""

# Container health check for the ECS task definition (the image has Python, no curl).
CONTAINER_HEALTHCHECK_COMMAND: Final = (
    "CMD",
    "python",
    "-c",
    "import urllib.request,sys;"
    f"sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{GATEWAY_PORT}{LIVE_PATH}',"
    "timeout=3).status==200 else 1)",
)

# --------------------------------------------------------------------------- headers
REQUEST_ID_HEADER: Final = "x-request-id"
OVERHEAD_HEADER: Final = "x-gateway-overhead-ms"
"""Response header: the gateway's own time on the request before the upstream answered (ms)."""
CONVERSATION_ID_HEADER: Final = "x-conversation-id"
"""Request header: the caller's conversation id, the affinity key in ``conversation`` mode."""
AFFINITY_FORWARDED_HEADER: Final = "x-llmh-forwarded"
"""Set on a request one gateway forwards to the owner's gateway; such a request is never forwarded again."""
AFFINITY_PROMPT_HEAD_CHARS: Final = 1024
"""``prefix`` mode on /v1/completions: the prompt's first characters are its affinity key."""

# --------------------------------------------------------------------------- CloudWatch EMF
METRICS_NAMESPACE: Final = "LlmHosting/Gateway"

METRIC_REQUESTS: Final = "Requests"
METRIC_ERRORS: Final = "Errors"  # responses with status >= 500 or a stream that ended in error
METRIC_CLIENT_ERRORS: Final = "ClientErrors"  # 4xx (auth, validation, 429)
METRIC_REJECTED: Final = "Rejected"  # 429 per-key limit and 503 load shedding
METRIC_TTFT: Final = "TimeToFirstToken"
METRIC_LATENCY: Final = "Latency"
METRIC_IN_FLIGHT: Final = "InFlight"
METRIC_PROMPT_TOKENS: Final = "PromptTokens"
METRIC_COMPLETION_TOKENS: Final = "CompletionTokens"
METRIC_QUEUE_DEPTH: Final = "QueueDepth"  # vllm:num_requests_waiting as last seen by the gateway
METRIC_OVERHEAD: Final = "GatewayOverhead"
METRIC_AFFINITY_FORWARDED: Final = "AffinityForwarded"  # 1: served by the owner task's vLLM through a forward
METRIC_AFFINITY_HIT: Final = "AffinityHit"  # 1: served by the owner (this task or a forward); Average = hit share
METRIC_PREFIX_CACHE_HITS: Final = "PrefixCacheHits"  # vLLM prompt tokens served from its prefix cache (per poll)
METRIC_PREFIX_CACHE_QUERIES: Final = "PrefixCacheQueries"  # vLLM prompt tokens looked up (per poll); hit rate = Hits/Queries

METRIC_UNITS: Final = {
    METRIC_REQUESTS: "Count",
    METRIC_ERRORS: "Count",
    METRIC_CLIENT_ERRORS: "Count",
    METRIC_REJECTED: "Count",
    METRIC_TTFT: "Milliseconds",
    METRIC_LATENCY: "Milliseconds",
    METRIC_IN_FLIGHT: "Count",
    METRIC_PROMPT_TOKENS: "Count",
    METRIC_COMPLETION_TOKENS: "Count",
    METRIC_QUEUE_DEPTH: "Count",
    METRIC_OVERHEAD: "Milliseconds",
    METRIC_AFFINITY_FORWARDED: "Count",
    METRIC_AFFINITY_HIT: "Count",
    METRIC_PREFIX_CACHE_HITS: "Count",
    METRIC_PREFIX_CACHE_QUERIES: "Count",
}

DIMENSION_SERVICE: Final = "Service"
"""Value: the GATEWAY_SERVICE_NAME setting (e.g. ``llm-hosting-prod``)."""
DIMENSION_MODEL: Final = "Model"
"""Value: the served model name (GATEWAY_SERVED_MODEL_NAME)."""

EMF_DIMENSION_SETS: Final = ((DIMENSION_SERVICE, DIMENSION_MODEL),)
"""The only dimension set emitted: alarms must use exactly these dimensions."""
DIMENSION_TASK: Final = "Task"
"""Value: the task's gateway address (ip:port). Only on the prefix-cache metrics, beside the set above,
so the hit rate can be read per task (gateways with affinity on emit them)."""

# --------------------------------------------------------------------------- environment
ENV_PREFIX: Final = "GATEWAY_"

ENV_UPSTREAM_URL: Final = "GATEWAY_UPSTREAM_URL"  # base URL of vLLM, e.g. http://127.0.0.1:8000
ENV_SERVED_MODEL_NAME: Final = "GATEWAY_SERVED_MODEL_NAME"  # vLLM --served-model-name
ENV_API_KEYS: Final = "GATEWAY_API_KEYS"  # SECRET. JSON {"key-id": "key", ...}; empty = no auth
ENV_FALLBACK_URL: Final = "GATEWAY_FALLBACK_URL"  # optional OpenAI-compatible base URL
ENV_FALLBACK_API_KEY: Final = "GATEWAY_FALLBACK_API_KEY"  # SECRET, bearer key for the fallback
ENV_FALLBACK_MODEL: Final = "GATEWAY_FALLBACK_MODEL"  # model name to send to the fallback
ENV_WORKERS: Final = "GATEWAY_WORKERS"
ENV_PORT: Final = "GATEWAY_PORT"
ENV_KEEPALIVE_TIMEOUT_S: Final = "GATEWAY_KEEPALIVE_TIMEOUT_S"  # server side, > ALB idle timeout
ENV_UPSTREAM_KEEPALIVE_S: Final = "GATEWAY_UPSTREAM_KEEPALIVE_S"  # < vLLM's 5 s
ENV_CONNECT_TIMEOUT_S: Final = "GATEWAY_CONNECT_TIMEOUT_S"
ENV_READ_TIMEOUT_S: Final = "GATEWAY_READ_TIMEOUT_S"
ENV_HEARTBEAT_INTERVAL_S: Final = "GATEWAY_HEARTBEAT_INTERVAL_S"
ENV_DRAIN_TIMEOUT_S: Final = "GATEWAY_DRAIN_TIMEOUT_S"  # < ECS stop_timeout
ENV_MAX_TOKENS_CAP: Final = "GATEWAY_MAX_TOKENS_CAP"
ENV_MAX_BODY_BYTES: Final = "GATEWAY_MAX_BODY_BYTES"
ENV_MAX_MESSAGE_CHARS: Final = "GATEWAY_MAX_MESSAGE_CHARS"
ENV_MAX_CONCURRENCY_PER_KEY: Final = "GATEWAY_MAX_CONCURRENCY_PER_KEY"
ENV_MAX_QUEUE_DEPTH: Final = "GATEWAY_MAX_QUEUE_DEPTH"  # shed load (503) above this
ENV_LOG_PROMPTS: Final = "GATEWAY_LOG_PROMPTS"  # "true" logs prompt/completion text; default off
ENV_LOG_LEVEL: Final = "GATEWAY_LOG_LEVEL"
ENV_EMF_ENABLED: Final = "GATEWAY_EMF_ENABLED"
ENV_SERVICE_NAME: Final = "GATEWAY_SERVICE_NAME"  # EMF Service dimension value
ENV_HOST: Final = "GATEWAY_HOST"
ENV_MAX_MESSAGES: Final = "GATEWAY_MAX_MESSAGES"
ENV_RETRY_AFTER_S: Final = "GATEWAY_RETRY_AFTER_S"
ENV_UPSTREAM_POOL_SIZE: Final = "GATEWAY_UPSTREAM_POOL_SIZE"
ENV_HEALTH_POLL_INTERVAL_S: Final = "GATEWAY_HEALTH_POLL_INTERVAL_S"
ENV_CIRCUIT_FAILURE_THRESHOLD: Final = "GATEWAY_CIRCUIT_FAILURE_THRESHOLD"
ENV_CIRCUIT_RESET_S: Final = "GATEWAY_CIRCUIT_RESET_S"
ENV_AFFINITY: Final = "GATEWAY_AFFINITY"  # off | prefix | conversation
ENV_AFFINITY_DNS_NAME: Final = "GATEWAY_AFFINITY_DNS_NAME"  # Cloud Map service name: its A records are the peers
ENV_AFFINITY_PEERS: Final = "GATEWAY_AFFINITY_PEERS"  # static peers host:port,... (local runs, tests)
ENV_AFFINITY_SELF: Final = "GATEWAY_AFFINITY_SELF"  # this gateway's host:port as the peers see it
ENV_AFFINITY_PORT: Final = "GATEWAY_AFFINITY_PORT"  # peers' gateway port with DNS discovery
ENV_AFFINITY_MAX_QUEUE: Final = "GATEWAY_AFFINITY_MAX_QUEUE"  # serve locally while the owner's queue is deeper
ENV_AFFINITY_REFRESH_S: Final = "GATEWAY_AFFINITY_REFRESH_S"  # peer discovery + peer health poll interval

ALL_ENV_VARS: Final = tuple(sorted(v for k, v in dict(globals()).items() if k.startswith("ENV_") and k != "ENV_PREFIX"))
"""Every GATEWAY_* variable the gateway reads (a test checks it matches the settings)."""

SECRET_ENV_VARS: Final = (ENV_API_KEYS, ENV_FALLBACK_API_KEY)
"""Set these from Secrets Manager (ECS ``secrets``), never as plaintext ``environment``."""

# --------------------------------------------------------------------------- keep-alive rule
VLLM_KEEPALIVE_S: Final = 5
"""vLLM's VLLM_HTTP_TIMEOUT_KEEP_ALIVE default: upstream keep-alive must stay below it."""
DEFAULT_UPSTREAM_KEEPALIVE_S: Final = 4.0
DEFAULT_ALB_IDLE_TIMEOUT_S: Final = 60
KEEPALIVE_MARGIN_S: Final = 5


def server_keepalive_for_alb(alb_idle_timeout_s: int) -> int:
    """The gateway's server keep-alive for an ALB idle timeout: strictly longer, so the
    ALB always closes an idle connection first and never reuses one the gateway closed
    (that race is what makes an ALB answer 502)."""
    if alb_idle_timeout_s < 1:
        raise ValueError("alb_idle_timeout_s must be >= 1")
    return alb_idle_timeout_s + KEEPALIVE_MARGIN_S


DEFAULT_SERVER_KEEPALIVE_S: Final = server_keepalive_for_alb(DEFAULT_ALB_IDLE_TIMEOUT_S)
