"""Gateway settings: every knob, read from ``GATEWAY_*`` environment variables.

The variable names are the ``ENV_*`` constants of :mod:`.contract` (the ECS task
definition sets them); a test checks that every field here has one. Secrets
(``GATEWAY_API_KEYS``, ``GATEWAY_FALLBACK_API_KEY``) come from Secrets Manager.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from . import contract


def _key_id(key: str) -> str:
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:8]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=contract.ENV_PREFIX, extra="ignore", frozen=True, validate_default=True
    )

    # --- upstreams
    upstream_url: str = Field(contract.DEFAULT_UPSTREAM_URL, description="Base URL of vLLM (no /v1).")
    served_model_name: str | None = Field(
        None, description="Model name clients must use; empty: whatever the upstream's /v1/models lists."
    )
    fallback_url: str | None = Field(
        None, description="Optional OpenAI-compatible base URL used while the primary's circuit is open."
    )
    fallback_api_key: SecretStr | None = Field(None, description="Bearer key for the fallback (secret).")
    fallback_model: str | None = Field(None, description="Model name sent to the fallback; empty: unchanged.")

    # --- auth and limits
    api_keys: Annotated[dict[str, SecretStr], NoDecode] = Field(
        default_factory=dict,
        description='Secret. JSON object {"key-id": "key"}, JSON list of keys, or comma-separated keys. '
        "Empty: no auth.",
    )
    max_concurrency_per_key: int = Field(64, ge=0, description="In-flight requests per key; 0 = unlimited. 429 beyond.")
    max_queue_depth: int = Field(0, ge=0, description="Shed load (503) while vLLM's waiting queue is deeper; 0 = off.")
    retry_after_s: int = Field(1, ge=1, description="Retry-After on 429 and load-shedding 503.")

    # --- validation
    max_tokens_cap: int = Field(4096, ge=1, description="Largest max_tokens / max_completion_tokens accepted.")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Largest request body; 413 beyond.")
    max_message_chars: int = Field(200_000, ge=1, description="Largest content of one message / prompt.")
    max_messages: int = Field(512, ge=1, description="Most messages in one chat request.")

    # --- timeouts, keep-alive, streaming
    connect_timeout_s: float = Field(5.0, gt=0, description="Upstream connect timeout.")
    read_timeout_s: float = Field(
        600.0, gt=0, description="Longest silence from the upstream (covers long prefills)."
    )
    upstream_keepalive_s: float = Field(
        contract.DEFAULT_UPSTREAM_KEEPALIVE_S, gt=0, description="Idle upstream connections are closed after this."
    )
    upstream_pool_size: int = Field(1024, ge=1, description="Most idle upstream connections kept per worker.")
    heartbeat_interval_s: float = Field(
        10.0, ge=0, description="SSE comment heartbeat while waiting for the first token; 0 = off."
    )
    drain_timeout_s: float = Field(25.0, ge=0, description="On SIGTERM, how long in-flight requests may finish.")
    health_poll_interval_s: float = Field(2.0, gt=0, description="How often the backend health/queue is polled.")
    circuit_failure_threshold: int = Field(5, ge=1, description="Consecutive upstream failures (connect errors, timeouts, 5xx) that open the circuit.")
    circuit_reset_s: float = Field(10.0, gt=0, description="How long an open circuit waits before a trial request.")

    # --- conversation affinity (core/affinity.py)
    affinity: Literal["off", "prefix", "conversation"] = Field(
        "off", description="Route each conversation to the task holding its prefix cache: off, prefix or conversation."
    )
    affinity_dns_name: str | None = Field(None, description="Cloud Map service DNS name whose A records are the peers.")
    affinity_peers: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Static peers, comma-separated host:port (instead of DNS)."
    )
    affinity_self: str | None = Field(
        None, description="This gateway's host:port as peers see it; unset: its IP towards the peers and affinity_port."
    )
    affinity_port: int = Field(contract.GATEWAY_PORT, ge=1, le=65535, description="Peers' gateway port (DNS discovery).")
    affinity_max_queue: int = Field(
        4, ge=0, description="Serve locally while the owner's vLLM has more requests waiting than this."
    )
    affinity_refresh_s: float = Field(2.0, gt=0, description="Peer discovery and peer health poll interval.")
    # --- tenants (the front door's API keys)
    frontdoor_key_id: str = Field(
        contract.DEFAULT_FRONTDOOR_KEY_ID,
        description=f"Key id (in API_KEYS) of the front door's key: only its requests may name a tenant in {contract.TENANT_HEADER}.",
    )
    tenant_names: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, description="JSON {api key id: tenant name}; ids without a name stay ids."
    )
    tenant_names_parameter: str | None = Field(
        None, description="SSM parameter with the same JSON (read at start and every TENANT_NAMES_REFRESH_S)."
    )
    tenant_names_refresh_s: float = Field(300.0, gt=0, description="How often the SSM parameter is re-read.")
    tenant_tokens_per_minute: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=dict,
        description="JSON {tenant: tokens per minute}; 429 with Retry-After beyond. Per task (shared by its workers).",
    )
    state_dir: str = Field("/dev/shm", description="Where the workers' shared token buckets live (a tmpfs).")

    # --- server
    path_prefix: str = Field(
        "", description='A prefix requests may carry and the gateway ignores, e.g. "/prod" (API Gateway stage).'
    )
    host: str = "0.0.0.0"
    port: int = Field(contract.GATEWAY_PORT, ge=1, le=65535)
    workers: int = Field(1, ge=1, description="uvicorn worker processes.")
    keepalive_timeout_s: int = Field(
        contract.DEFAULT_SERVER_KEEPALIVE_S, ge=1, description="Server keep-alive; must exceed the ALB idle timeout."
    )

    # --- observability
    log_prompts: bool = Field(False, description="Log prompt and completion text. Off unless set.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    emf_enabled: bool = Field(True, description="Add CloudWatch EMF metrics to the per-request log line.")
    service_name: str = Field("llm-gateway", description="Value of the EMF Service dimension.")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_keys(cls, v: object) -> object:
        if v is None or v == "":
            return {}
        if isinstance(v, str):
            s = v.strip()
            if s.startswith("{") or s.startswith("["):
                v = json.loads(s)
            else:
                v = [k.strip() for k in s.split(",") if k.strip()]
        if isinstance(v, list):
            return {_key_id(k): k for k in v}
        return v

    @field_validator("affinity_peers", mode="before")
    @classmethod
    def _split_peers(cls, v: object) -> object:
        return tuple(p.strip() for p in v.split(",") if p.strip()) if isinstance(v, str) else v

    @field_validator("tenant_names", "tenant_tokens_per_minute", mode="before")
    @classmethod
    def _json_object(cls, v: object) -> object:
        if v is None or v == "":
            return {}
        return json.loads(v) if isinstance(v, str) else v

    @field_validator("tenant_tokens_per_minute")
    @classmethod
    def _positive(cls, v: dict[str, int]) -> dict[str, int]:
        bad = sorted(k for k, n in v.items() if n < 1)
        if bad:
            raise ValueError(f"tokens per minute must be at least 1 (tenants: {', '.join(bad)})")
        return v

    @field_validator("path_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if v and not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", v):
            raise ValueError('must look like "/prod": a leading slash, URL-safe segments')
        return v

    @field_validator("upstream_url", "fallback_url")
    @classmethod
    def _strip_slash(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None if v == "" else v
        v = v.rstrip("/")
        if v.endswith("/v1"):
            v = v[:-3]
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v

    @field_validator("upstream_keepalive_s")
    @classmethod
    def _below_vllm(cls, v: float) -> float:
        if v >= contract.VLLM_KEEPALIVE_S:
            raise ValueError(
                f"must be below vLLM's keep-alive ({contract.VLLM_KEEPALIVE_S} s), "
                "or a reused dead connection fails a request"
            )
        return v

    @model_validator(mode="after")
    def _check(self) -> "Settings":
        if self.upstream_url is None:
            raise ValueError("upstream_url is required")
        if self.affinity != "off" and not (self.affinity_dns_name or self.affinity_peers):
            raise ValueError(
                "GATEWAY_AFFINITY needs its peers: set GATEWAY_AFFINITY_DNS_NAME (Cloud Map) or GATEWAY_AFFINITY_PEERS"
            )
        return self

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
