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

TENANT_HEADER: Final = "x-llmhost-api-key-id"
"""Request header the front door sets to the caller's API key id ($context.identity.apiKeyId).
The gateway trusts it only on requests that carry the front-door key."""

DEFAULT_FRONTDOOR_KEY_ID: Final = "frontdoor"
"""The key id, in the gateway's API_KEYS secret, of the key the front door sends."""

TENANT_NAMES_PARAMETER: Final = "/llm-hosting/{env}/tenant-api-keys"
"""SSM parameter (String, JSON {api key id: tenant name}) the API stack writes; ``.format(env=...)``."""

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
METRIC_PREFIX_CACHE_HIT_RATE: Final = "PrefixCacheHitRate"  # Hits / Queries of one poll window, per task only (0..1)

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
    METRIC_PREFIX_CACHE_HIT_RATE: "None",
}

DIMENSION_SERVICE: Final = "Service"
"""Value: the GATEWAY_SERVICE_NAME setting (e.g. ``llm-hosting-prod``)."""
DIMENSION_MODEL: Final = "Model"
"""Value: the served model name (GATEWAY_SERVED_MODEL_NAME)."""

EMF_DIMENSION_SETS: Final = ((DIMENSION_SERVICE, DIMENSION_MODEL),)
"""The dimension set of every metric: alarms must use exactly these dimensions."""
DIMENSION_TASK: Final = "Task"
"""Value: the task's gateway address (ip:port). Only on the prefix-cache metrics, beside the set above,
so the hit rate can be read per task (gateways with affinity on emit them); PrefixCacheHitRate has this
dimension set only (a service-wide average of per-task ratios would weigh an idle task like a busy one)."""

DIMENSION_TENANT: Final = "Tenant"
"""Value: the tenant's name where the gateway knows it (TENANT_NAMES), else its API key id
(requests through the front door), else the gateway key id the caller used."""
EMF_TENANT_DIMENSION_SETS: Final = ((DIMENSION_SERVICE, DIMENSION_TENANT),)
TENANT_METRICS: Final = (METRIC_REQUESTS, METRIC_ERRORS, METRIC_PROMPT_TOKENS, METRIC_COMPLETION_TOKENS, METRIC_TTFT)
"""The metrics also emitted per tenant (dimensions EMF_TENANT_DIMENSION_SETS)."""

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
ENV_PATH_PREFIX: Final = "GATEWAY_PATH_PREFIX"  # e.g. "/prod": the API stage name API Gateway may send
ENV_FRONTDOOR_KEY_ID: Final = "GATEWAY_FRONTDOOR_KEY_ID"
ENV_TENANT_NAMES: Final = "GATEWAY_TENANT_NAMES"  # JSON {api key id: tenant name}
ENV_TENANT_NAMES_PARAMETER: Final = "GATEWAY_TENANT_NAMES_PARAMETER"  # SSM parameter name, optional
ENV_TENANT_NAMES_REFRESH_S: Final = "GATEWAY_TENANT_NAMES_REFRESH_S"
ENV_TENANT_TOKENS_PER_MINUTE: Final = "GATEWAY_TENANT_TOKENS_PER_MINUTE"  # JSON {tenant name: tokens/min}
ENV_STATE_DIR: Final = "GATEWAY_STATE_DIR"

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

# --------------------------------------------------------------------------- shutdown budget
ABORT_GRACE_S: Final = 2.0
"""At the drain deadline the gateway ends what still runs (an SSE error event per stream); this long at most."""
SHUTDOWN_TAIL_S: Final = 5
"""After the drain timeout, the most the process takes to exit: ABORT_GRACE_S, then uvicorn's own
graceful shutdown (``timeout_graceful_shutdown``, 2 s), then the lifespan's cleanup."""
STOP_MARGIN_S: Final = 15


def drain_timeout_for_stop_timeout(stop_timeout_s: int) -> int:
    """GATEWAY_DRAIN_TIMEOUT_S for an ECS container ``stop_timeout``: drain + SHUTDOWN_TAIL_S stays
    STOP_MARGIN_S below it, so ECS never SIGKILLs the gateway mid-shutdown."""
    drain = stop_timeout_s - SHUTDOWN_TAIL_S - STOP_MARGIN_S
    if drain < 1:
        raise ValueError(f"stop_timeout {stop_timeout_s} s leaves no time to drain")
    return drain
