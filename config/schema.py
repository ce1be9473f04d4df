"""The typed schema of an environment file (`config/<env>.yaml`) and its loader.

Config flows one way: YAML -> `EnvironmentConfig` (validated once, here) -> construct
props (built in `app.py` only). Every model forbids unknown keys, so a typo fails synth
instead of being silently ignored.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from llm_hosting_constructs.alarms import AlarmThresholds
from llm_hosting_constructs.aws_names import S3_PREFIX_PATTERN, ecr_registry
from llm_hosting_constructs.front_door import tenants_problem
from llm_hosting_constructs.inference_service import DEFAULT_QUEUE_DEPTH_THRESHOLD, DEFAULT_REQUESTS_PER_TARGET
from llm_hosting_constructs.sagemaker_autoscaling import EndpointOffHours
from llm_hosting_constructs.sagemaker_container import (
    DEFAULT_MAX_CONCURRENT_REQUESTS,
    DEFAULT_VERSIONS,
    volume_kms_key_problem,
)
from llm_hosting_constructs.sagemaker_container import image_uri as container_image_uri
from llm_hosting_constructs.schedule import OffHours
from llm_hosting_constructs.sizing import (
    ModelArchitecture,
    Quantization,
    SizingError,
    SizingReport,
    check,
    get_instance,
    get_model,
    instance_registered_resources,
    plan,
    tool_call_parser,
)
from llm_hosting_constructs.vllm import TOOL_CALL_PARSERS

CONFIG_DIR = Path(__file__).resolve().parent
S3PrefixUri = Annotated[str, StringConstraints(pattern=S3_PREFIX_PATTERN)]

# CloudWatch Logs accepts only these retention periods (days).
LogRetentionDays = Literal[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653
]
AccountId = Annotated[str, StringConstraints(pattern=r"^\d{12}$")]
Region = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")]
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
GitSha = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{40}$")]
HfModelId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")]
Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,30}$")]
ImageRef = Annotated[str, StringConstraints(pattern=r"^[\w./-]+:[\w.-]+$")]
AcmCertificateArn = Annotated[
    str, StringConstraints(pattern=r"^arn:aws[\w-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]{36}$")
]
DomainName = Annotated[
    str, StringConstraints(max_length=253, pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
]


TOOL_CALLING_OFF = "none"
"""`model.tool_call_parser: none`: serve without tool calling, said explicitly."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NetworkConfig(Strict):
    """The VPC. No NAT by default: every AWS API the tasks need has a VPC endpoint."""

    cidr: str = Field("10.40.0.0/16", description="VPC IPv4 CIDR, /16 to /22.")
    nat_gateways: int = Field(
        0,
        ge=0,
        le=3,
        description="NAT gateways for internet egress. 0 keeps the VPC closed; the model cache is then "
        "filled from S3 or a pre-warm run in an environment with egress. 1 is enough for dev.",
    )
    flow_log_retention_days: LogRetentionDays = Field(90, description="Retention of the VPC flow log group.")

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            net = ipaddress.IPv4Network(value)
        except ValueError as exc:
            raise ValueError(f"not an IPv4 CIDR ({exc}); use e.g. 10.40.0.0/16") from None
        if not 16 <= net.prefixlen <= 22:
            raise ValueError(f"prefix /{net.prefixlen} is outside /16../22; the subnets need room")
        return value


class ModelConfig(Strict):
    """The model vLLM (or SageMaker) serves."""

    id: HfModelId = Field(description="Hugging Face model id, e.g. meta-llama/Llama-3.1-8B-Instruct.")
    revision: GitSha = Field(description="Pinned commit sha of the model repo (40 hex chars), never a branch.")
    served_name: Name = Field(description="Model name clients send in the `model` field.")
    dtype: Literal["bfloat16", "float16"] = Field("bfloat16", description="Weight/activation dtype.")
    quantization: Literal["none", "fp8", "awq", "gptq"] = Field(
        "none", description="Weight quantization; awq/gptq need a pre-quantized checkpoint."
    )
    kv_cache_dtype: Literal["auto", "fp8"] = Field("auto", description="fp8 halves KV-cache bytes per token.")
    max_model_len: int = Field(ge=256, le=1_048_576, description="Longest prompt + completion, in tokens.")
    tensor_parallel_size: int = Field(1, ge=1, le=8, description="GPUs one model replica spans.")
    architecture: ModelArchitecture | None = Field(
        None, description="Only for models missing from the sizing catalog: copy the figures from its config.json."
    )
    tool_call_parser: str | None = Field(
        None,
        description="vLLM `--tool-call-parser` for the model's tool-call format (hermes, llama3_json, mistral, ...); "
        "unset = the sizing catalog's for the model's family; `none` serves without tool calling.",
    )

    @field_validator("tool_call_parser")
    @classmethod
    def _known_parser(cls, value: str | None) -> str | None:
        if value is not None and value != TOOL_CALLING_OFF and value not in TOOL_CALL_PARSERS:
            raise ValueError(f"{value!r} is not a vLLM tool-call parser; use one of: {', '.join(TOOL_CALL_PARSERS)}, none")
        return value

    @property
    def quantization_method(self) -> Quantization | None:
        """``quantization`` as the sizing module and the SageMaker containers take it: None for ``none``."""
        return None if self.quantization == "none" else self.quantization

    @property
    def vllm_tool_call_parser(self) -> str | None:
        """The parser vLLM is started with: config's, else the catalog's; None = tool calling off."""
        chosen = self.tool_call_parser or tool_call_parser(self.id)
        return None if chosen == TOOL_CALLING_OFF else chosen


class EcsConfig(Strict):
    """vLLM on ECS GPU instances, with the gateway beside it."""

    instance_type: str = Field(description="GPU instance type: g5, g6, g6e, p4d or p5 family.")
    min_capacity: int = Field(1, ge=0, le=100, description="Fewest tasks (= GPU hosts) when scaled in.")
    desired_capacity: int = Field(1, ge=0, le=100, description="Tasks at deploy time.")
    max_capacity: int = Field(2, ge=1, le=100, description="Most tasks when scaled out.")
    vllm_image: ImageRef = Field("vllm/vllm-openai:v0.24.0", description="vLLM image, pinned by tag.")
    gpu_memory_utilization: float = Field(0.90, ge=0.5, le=0.98, description="Share of GPU memory vLLM may use.")
    max_num_seqs: int = Field(128, ge=1, le=1024, description="Most sequences vLLM batches at once.")
    enable_chunked_prefill: bool = Field(True, description="Interleave long prefills with decoding.")
    alb_idle_timeout_seconds: int = Field(
        900, ge=600, le=4000, description="ALB idle timeout; long generations need >= 600 s."
    )
    certificate_arn: AcmCertificateArn | None = Field(
        None,
        description="ACM certificate (publicly trusted: API Gateway verifies it) for an HTTPS listener on the internal "
        "ALB; required where tags mark data-classification confidential.",
    )
    tls_host_name: DomainName | None = Field(
        None,
        description="Name on certificate_arn that the front door sends as Host and verifies the certificate "
        "against (the ALB's own DNS name cannot be on a public certificate); needs no DNS record.",
    )
    hf_token_secret_name: str | None = Field(
        None,
        description="Existing Secrets Manager secret (plain string) with the Hugging Face token, created before the "
        "first deploy; needed for a gated model unless model_s3_uri is set. Unset: no token is sent.",
    )
    efs_throughput_mode: Literal["elastic", "bursting"] = Field("elastic", description="EFS throughput mode.")
    off_hours: OffHours | None = Field(None, description="Scale to zero at night (non-prod only); unset = always on.")
    hf_hub_offline: bool = Field(
        True,
        description="Serve only from the pre-warmed EFS cache (HF_HUB_OFFLINE=1, cache mounted read-only). "
        "false lets vLLM download on first start (needs NAT egress) and mounts the cache read-write.",
    )
    root_volume_gib: int = Field(
        200, ge=100, le=2000, description="Encrypted gp3 root volume of each GPU host (the vLLM image is ~25 GB unpacked)."
    )
    health_check_grace_period_seconds: int = Field(
        900, ge=600, le=1200, description="Time a new task gets to load the model before health checks count."
    )
    scale_requests_per_target: int = Field(
        DEFAULT_REQUESTS_PER_TARGET, ge=1, le=100_000, description="Target tracking: ALB requests per task per minute."
    )
    scale_queue_depth: int = Field(
        DEFAULT_QUEUE_DEPTH_THRESHOLD, ge=1, le=1024, description="Step scaling: add a task when vLLM's waiting queue averages this deep (x4: two)."
    )
    shed_queue_depth: int = Field(
        256,
        ge=0,
        le=100_000,
        description="The gateway answers 503 while vLLM's waiting queue is deeper than this; 0 turns shedding off.",
    )
    log_prompts: bool = Field(
        False, description="Log prompt and completion text in the gateway's request log. Sensitive: off unless needed."
    )
    alb_access_logs: bool = Field(False, description="ALB access logs to an encrypted, retained S3 bucket (prod).")
    log_retention_days: LogRetentionDays = Field(90, description="Retention of the vLLM, gateway and pre-warm log groups.")
    model_s3_uri: S3PrefixUri | None = Field(
        None,
        description="s3://bucket/prefix/ holding model.revision's files: the pre-warm task copies from there instead "
        "of the Hugging Face Hub (VPCs without internet egress). Unset: from the Hub.",
    )

    affinity: Literal["off", "prefix", "conversation"] = Field(
        "prefix",
        description="Conversation affinity: the gateways route each conversation to the task holding its prefix "
        "cache (prefix: hash of the messages through the first user turn; conversation: the x-conversation-id "
        "header). Tasks find each other through Cloud Map DNS (docs/affinity.md). Default prefix: measured on CPU "
        "and on an H200 (docs/affinity.md, Measured); needs max_capacity <= 8.",
    )

    @model_validator(mode="after")
    def _capacity(self) -> EcsConfig:
        if not self.min_capacity <= self.desired_capacity <= self.max_capacity:
            raise ValueError(
                f"needs min_capacity <= desired_capacity <= max_capacity; got "
                f"{self.min_capacity} / {self.desired_capacity} / {self.max_capacity}"
            )
        if self.affinity != "off" and self.max_capacity > 8:
            raise ValueError(
                f"affinity: needs max_capacity <= 8 (got {self.max_capacity}): Cloud Map DNS answers list at most "
                "eight tasks, so larger services would see different rings; lower max_capacity or set affinity: off"
            )
        return self


KmsKeyArn = Annotated[str, StringConstraints(pattern=r"^arn:aws[\w-]*:kms:[a-z0-9-]+:\d{12}:key/[0-9a-f-]{36}$")]


class SageMakerImageVersions(Strict):
    """Image version per container, resolved offline at synth by the SageMaker Python SDK 3 (defaults: the
    construct library's pins, sagemaker_container.DEFAULT_VERSIONS)."""

    tgi: str = Field(DEFAULT_VERSIONS["tgi"], description="Hugging Face TGI DLC (huggingface-llm); 3.3.6 is the last one (maintenance mode).")
    vllm: str = Field(DEFAULT_VERSIONS["vllm"], description="Hugging Face vLLM DLC (huggingface-vllm).")
    lmi: str = Field(DEFAULT_VERSIONS["lmi"], description="AWS Large Model Inference DLC (djl-lmi).")


class SageMakerDataCapture(Strict):
    """Capture request and response payloads (prompts and completions!) to an encrypted bucket."""

    sampling_percentage: int = Field(5, ge=1, le=100, description="Share of invocations captured.")
    retention_days: int = Field(30, ge=1, le=3650, description="Captured payloads are deleted after this many days.")


class SageMakerConfig(Strict):
    """A SageMaker real-time endpoint as the alternative backend."""

    instance_type: str = Field(description="ml.* GPU instance type.")
    instance_count: int = Field(1, ge=1, le=100, description="Instances at first deploy; auto scaling moves it in min..max.")
    min_capacity: int = Field(1, ge=1, le=100, description="Real-time endpoints cannot scale to 0.")
    max_capacity: int = Field(2, ge=1, le=100, description="Most instances when scaled out.")
    container: Literal["tgi", "vllm", "lmi"] = Field("tgi", description="TGI (default, maintenance mode), vLLM DLC, LMI.")
    image_versions: SageMakerImageVersions = Field(
        SageMakerImageVersions(), description="Pinned image version of each container."
    )
    weights: Literal["s3", "hub"] = Field(
        "s3",
        description="s3 (recommended): uncompressed weights pre-staged under model_data_s3_uri, network isolation on. "
        "hub: the container downloads from the Hugging Face Hub at start-up (needs NAT).",
    )
    model_data_s3_uri: S3PrefixUri | None = Field(
        None, description="S3 prefix (ending in /) holding the model's files as in its Hub repo; required with weights: s3."
    )
    model_data_kms_key_arn: KmsKeyArn | None = Field(
        None, description="KMS key that encrypts the weights' bucket, if not S3-managed; the role may decrypt with it."
    )
    hf_token_secret_name: str | None = Field(
        None,
        description="weights: hub only, for gated models: Secrets Manager secret resolved into the model's environment at "
        "deploy (visible to anyone allowed sagemaker:DescribeModel; prefer weights: s3).",
    )
    max_input_tokens: int | None = Field(None, ge=1, description="Longest prompt; default model.max_model_len - 1.")
    max_batch_prefill_tokens: int | None = Field(
        None, ge=1, description="Tokens prefilled per batch (TGI MAX_BATCH_PREFILL_TOKENS, vLLM/LMI max_num_batched_tokens); "
        "default model.max_model_len."
    )
    max_concurrent_requests: int = Field(
        DEFAULT_MAX_CONCURRENT_REQUESTS, ge=1, le=1024, description="Requests one instance serves at once."
    )
    container_startup_timeout_seconds: int = Field(
        1800, ge=60, le=3600, description="Time the container has to pass its health check (model load)."
    )
    model_download_timeout_seconds: int = Field(
        1800, ge=60, le=3600, description="Time SageMaker has to download the weights from S3 to the instance."
    )
    volume_kms_key_arn: KmsKeyArn | None = Field(
        None,
        description="KMS key for the ML storage volume; only for instance types without local NVMe (they get a "
        "generated key by default); CreateEndpointConfig rejects one for NVMe types.",
    )
    data_capture: SageMakerDataCapture | None = Field(None, description="Unset = prompts and completions are not captured.")
    target_invocations_per_instance: int = Field(
        30, ge=1, le=100_000, description="Target tracking: invocations per instance per minute."
    )
    scale_in_cooldown_seconds: int = Field(300, ge=0, le=3600, description="Wait after a scale-in.")
    scale_out_cooldown_seconds: int = Field(60, ge=0, le=3600, description="Wait after a scale-out.")
    off_hours: EndpointOffHours | None = Field(
        None, description="Non-prod only: down to 1 instance at night (real-time endpoints cannot scale to 0)."
    )
    rollback_bake_seconds: int = Field(
        600, ge=0, le=3600, description="Blue/green: how long the new fleet is watched by the rollback alarms."
    )
    log_retention_days: LogRetentionDays = Field(90, description="Retention of the endpoint's log group.")

    @model_validator(mode="after")
    def _capacity(self) -> SageMakerConfig:
        if not self.min_capacity <= self.instance_count <= self.max_capacity:
            raise ValueError(
                f"needs min_capacity <= instance_count <= max_capacity; got "
                f"{self.min_capacity} / {self.instance_count} / {self.max_capacity}"
            )
        return self

    @model_validator(mode="after")
    def _weights(self) -> SageMakerConfig:
        if not self.instance_type.startswith("ml."):
            raise ValueError(f"instance_type {self.instance_type!r} is not a SageMaker type; use ml.<type>, e.g. ml.g6e.2xlarge")
        if self.weights == "s3" and self.model_data_s3_uri is None:
            raise ValueError("weights: s3 needs model_data_s3_uri (s3://bucket/prefix/ with the uncompressed model files)")
        if self.weights == "hub" and (self.model_data_s3_uri or self.model_data_kms_key_arn):
            raise ValueError("weights: hub takes no model_data_s3_uri / model_data_kms_key_arn; use weights: s3 for those")
        if self.weights == "s3" and self.hf_token_secret_name:
            raise ValueError("hf_token_secret_name is for weights: hub only; with s3 the container never calls the Hub")
        return self


class Quota(Strict):
    limit: int = Field(gt=0, description="Requests per period.")
    period: Literal["DAY", "WEEK", "MONTH"] = Field("MONTH", description="Quota period.")


class Tenant(Strict):
    """One API consumer: its own key and usage plan."""

    name: Name = Field(description="Tenant name (lowercase, digits, dashes); names its API key and usage plan.")
    rate_limit: float = Field(gt=0, description="Steady-state requests per second.")
    burst_limit: int = Field(gt=0, description="Requests allowed in a burst.")
    quota: Quota | None = Field(None, description="Requests per period; unset = no quota.")
    tokens_per_minute: int | None = Field(
        None, gt=0, description="Prompt + completion tokens per minute, per serving task (gateway 429 beyond); unset = no limit."
    )


HostedZoneId = Annotated[str, StringConstraints(pattern=r"^Z[A-Z0-9]{1,31}$")]


class CustomDomain(Strict):
    """A custom domain name for the API (regional endpoint, TLS 1.2)."""

    domain_name: DomainName = Field(description="FQDN clients call, e.g. llm.example.com (lower case).")
    certificate_arn: AcmCertificateArn = Field(
        description="ACM certificate covering domain_name, in the environment's region (regional endpoint)."
    )
    hosted_zone_id: HostedZoneId | None = Field(
        None, description="Route 53 public hosted zone to create the alias record in; no record if unset."
    )
    hosted_zone_name: DomainName | None = Field(None, description="Name of that hosted zone, e.g. example.com.")

    @model_validator(mode="after")
    def _zone(self) -> CustomDomain:
        if (self.hosted_zone_id is None) != (self.hosted_zone_name is None):
            raise ValueError("hosted_zone_id and hosted_zone_name go together: give both or neither")
        if self.hosted_zone_name and not (
            self.domain_name == self.hosted_zone_name or self.domain_name.endswith("." + self.hosted_zone_name)
        ):
            raise ValueError(f"domain_name {self.domain_name!r} is not inside hosted zone {self.hosted_zone_name!r}")
        return self


class ApiConfig(Strict):
    """API Gateway in front of the internal ALB."""

    rate_limit: float = Field(50, gt=0, description="Default method throttling, requests per second.")
    burst_limit: int = Field(100, gt=0, description="Default method throttling burst.")
    tenants: list[Tenant] = Field(min_length=1, description="Each tenant gets an API key and a usage plan.")
    waf_enabled: bool = Field(True, description="Attach a WAF web ACL (managed rules + rate-based rule).")
    waf_rate_limit: int = Field(
        2000, ge=100, le=2_000_000_000, description="WAF rate-based rule: most requests per client IP per 5 minutes."
    )
    access_log_retention_days: LogRetentionDays = Field(90, description="Retention of the API access log group.")
    stream_timeout_seconds: int = Field(
        900,
        ge=30,
        le=900,
        description="Integration timeout of the streaming routes (API Gateway allows up to 15 min when streaming).",
    )
    custom_domain: CustomDomain | None = Field(None, description="Serve the API on your own domain name.")

    @model_validator(mode="after")
    def _tenants(self) -> ApiConfig:
        problem = tenants_problem(self.tenants, self.rate_limit)
        if problem:
            raise ValueError(problem)
        return self


class MonitoringConfig(Strict):
    alarm_emails: list[Email] = Field(min_length=1, description="Who is paged; each gets an SNS subscription.")
    thresholds: AlarmThresholds = Field(AlarmThresholds(), description="Alarm thresholds; defaults suit most models.")


class EnvironmentConfig(Strict):
    """One deployable environment (`config/<name>.yaml`)."""

    name: Name = Field(description="Environment name; must equal the file name (dev, staging, prod).")
    account: AccountId = Field(description="AWS account id the environment deploys to.")
    region: Region = Field(description="AWS region, e.g. us-east-1.")
    availability_zones: list[str] = Field(
        min_length=2, max_length=3, description="AZs, explicit so synth never looks them up."
    )
    retain_stateful: bool = Field(
        True, description="RETAIN + termination protection for EFS, KMS keys and log buckets."
    )
    tags: dict[str, str] = Field(default_factory=dict, description="Tags on every resource.")
    network: NetworkConfig = Field(NetworkConfig(), description="The VPC.")
    model: ModelConfig = Field(description="The model to serve.")
    backends: list[Literal["ecs", "sagemaker"]] = Field(
        ["ecs"], min_length=1, description="Which backends to deploy: ecs, sagemaker, or both."
    )
    ecs: EcsConfig | None = Field(None, description="vLLM on ECS GPU instances; required when backends has ecs.")
    sagemaker: SageMakerConfig | None = Field(
        None, description="SageMaker real-time endpoint; required when backends has sagemaker."
    )
    api: ApiConfig = Field(description="API Gateway front door.")
    monitoring: MonitoringConfig = Field(description="Alarms and their recipients.")

    @field_validator("availability_zones")
    @classmethod
    def _azs(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("availability zones must be distinct")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key.lower().startswith("aws:"):
                raise ValueError(f"tag key {key!r} uses the reserved 'aws:' prefix")
            if not re.fullmatch(r"[\w .:/=+@-]{1,128}", key):
                raise ValueError(f"tag key {key!r} has characters AWS does not allow")
        return value

    @model_validator(mode="after")
    def _consistency(self) -> EnvironmentConfig:
        for az in self.availability_zones:
            if not (az.startswith(self.region) and re.fullmatch(r"[a-z]", az[len(self.region):])):
                raise ValueError(f"availability zone {az!r} is not in region {self.region} (expected e.g. {self.region}a)")
        if len(set(self.backends)) != len(self.backends):
            raise ValueError("backends lists a backend twice")
        for backend in ("ecs", "sagemaker"):
            section = getattr(self, backend)
            if backend in self.backends and section is None:
                raise ValueError(f"backends includes {backend!r} but the '{backend}:' section is missing")
            if backend not in self.backends and section is not None:
                raise ValueError(f"'{backend}:' section given but {backend!r} is not in backends; add it or remove the section")
        domain = self.api.custom_domain
        if domain and domain.certificate_arn.split(":")[3] != self.region:
            raise ValueError(
                f"api.custom_domain.certificate_arn is in {domain.certificate_arn.split(':')[3]}; a regional API "
                f"needs its certificate in {self.region}"
            )
        if self.ecs and self.network.nat_gateways == 0:
            if not self.ecs.hf_hub_offline:
                raise ValueError(
                    "ecs.hf_hub_offline is false but network.nat_gateways is 0: vLLM cannot reach the Hugging Face Hub "
                    "from a closed VPC; pre-warm the cache and set hf_hub_offline true, or add a NAT gateway"
                )
            if self.ecs.model_s3_uri is None:
                raise ValueError(
                    "ecs.model_s3_uri is unset but network.nat_gateways is 0: the pre-warm task cannot download from "
                    "the Hugging Face Hub; stage model.revision's files under s3://bucket/prefix/ and set it"
                )
            ecr = ecr_registry(self.account, self.region)
            if not self.ecs.vllm_image.startswith(ecr):
                raise ValueError(
                    f"ecs.vllm_image {self.ecs.vllm_image!r} is pulled from the internet but network.nat_gateways is 0; "
                    f"mirror it into ECR (e.g. a pull-through cache) and use {ecr}<repository>:<tag>"
                )
        if self.ecs and (self.ecs.certificate_arn is None) != (self.ecs.tls_host_name is None):
            raise ValueError("ecs.certificate_arn and ecs.tls_host_name go together: set both (HTTPS to the ALB) or neither")
        if self.ecs and self.ecs.certificate_arn is None and self.tags.get("data-classification") == "confidential":
            raise ValueError(
                "ecs.certificate_arn is unset but tags mark data-classification: confidential: prompts would cross the VPC "
                "in plain HTTP; set ecs.certificate_arn and ecs.tls_host_name (a publicly trusted ACM certificate)"
            )
        if self.ecs and self.ecs.off_hours and self.retain_stateful:
            raise ValueError("ecs.off_hours (scale to zero at night) is for non-prod; retain_stateful marks this env as prod-like")
        return self


class ConfigError(Exception):
    """A config file that cannot work. `str()` is one line: file, field, what is allowed."""


def _format(path: Path, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field; remove it or check the spelling (see README: Config reference)"
        elif err["type"] == "literal_error":
            msg = msg.replace("Input should be", "must be one of")
        parts.append(f"{loc}: {msg}")
    return f"{path}: " + "; ".join(parts)


def load_environment(path: Path) -> EnvironmentConfig:
    """Parse and validate one environment file; raise `ConfigError` with one line on any problem."""
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; environments live in config/<name>.yaml") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of fields at the top level")
    try:
        cfg = EnvironmentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format(path, exc)) from None
    if cfg.name != path.stem:
        raise ConfigError(f"{path}: name: is {cfg.name!r} but must equal the file name {path.stem!r}")
    if cfg.ecs is not None:
        check_ecs_sizing(path, cfg)
        check_tool_calling(path, cfg)
    if cfg.sagemaker is not None:
        check_sagemaker(path, cfg)
    check_model_access(path, cfg)
    return cfg


def check_model_access(path: Path, cfg: EnvironmentConfig) -> None:
    """A gated Hub model needs a token that exists before the deploy (the cache is filled during it)
    or weights staged in S3: nothing may wait for a secret value the same deploy would create."""
    m = cfg.model
    model = m.architecture if m.architecture is not None else get_model(m.id)
    if not model.gated:
        return
    create = (
        f"aws secretsmanager create-secret --region {cfg.region} --name llm-hosting/{cfg.name}/hf-token "
        "--secret-string <your hf_ token>"
    )
    if cfg.ecs is not None and cfg.ecs.hf_token_secret_name is None and cfg.ecs.model_s3_uri is None:
        raise ConfigError(
            f"{path}: ecs.hf_token_secret_name: {m.id} is gated on the Hugging Face Hub and the deploy downloads it; "
            f"before deploying run `{create}` and set ecs.hf_token_secret_name: llm-hosting/{cfg.name}/hf-token "
            "(or stage the weights in S3 and set ecs.model_s3_uri)"
        )
    sm = cfg.sagemaker
    if sm is not None and sm.weights == "hub" and sm.hf_token_secret_name is None:
        raise ConfigError(
            f"{path}: sagemaker.hf_token_secret_name: {m.id} is gated on the Hugging Face Hub; before deploying run "
            f"`{create}` and set sagemaker.hf_token_secret_name: llm-hosting/{cfg.name}/hf-token "
            "(or use sagemaker.weights: s3)"
        )


# --------------------------------------------------------------------------- sizing at synth
# One function per backend; each turns the sizing module's verdict into one ConfigError line.


def ecs_task_resources(instance_type: str) -> tuple[int, int]:
    """(cpu_units, memory_mib) of the serving task: everything the GPU host registers with ECS.

    One task per host, so the task reserves the whole instance; app.py sizes the task definition
    with this and the check below verifies it against the sizing module's registration figures.
    """
    return instance_registered_resources(instance_type)


def _sizing_problems(report: SizingReport, instance_field: str) -> str:
    """The report's problems, each after the config field to change (``SizingReport.problem_fields``)."""
    fields = {"tensor_parallel_size": "model.tensor_parallel_size", "max_model_len": "model.max_model_len"}
    return "; ".join(f"{fields.get(f, instance_field)}: {p}" for f, p in zip(report.problem_fields, report.problems))


def check_ecs_sizing(path: Path, cfg: EnvironmentConfig) -> None:
    """Model on `ecs.instance_type` as configured: fits the GPUs, valid TP size, task within the host."""
    assert cfg.ecs is not None
    m = cfg.model
    try:
        model = get_model(m.id, m.architecture)
        cpu_units, memory_mib = ecs_task_resources(cfg.ecs.instance_type)
    except SizingError as exc:
        field = "model.id" if "sizing catalog" in str(exc) else "ecs.instance_type"
        raise ConfigError(f"{path}: {field}: {exc}") from None
    report = plan(
        model,
        cfg.ecs.instance_type,
        dtype=m.dtype,
        quantization=m.quantization_method,
        kv_cache_dtype=m.kv_cache_dtype,
        max_model_len=m.max_model_len,
        tensor_parallel_size=m.tensor_parallel_size,
        gpu_memory_utilization=cfg.ecs.gpu_memory_utilization,
        max_num_seqs=cfg.ecs.max_num_seqs,
        task_cpu_units=cpu_units,
        task_memory_mib=memory_mib,
    )
    try:
        check(report)
    except SizingError:
        raise ConfigError(f"{path}: {_sizing_problems(report, 'ecs.instance_type')}") from None


def check_tool_calling(path: Path, cfg: EnvironmentConfig) -> None:
    """vLLM is started with tool calling whenever the model has a known tool-call format; a model
    without one must say so, or every `tools` request would be a 400 nobody expected."""
    m = cfg.model
    if m.tool_call_parser is None and tool_call_parser(m.id) is None:
        raise ConfigError(
            f"{path}: model.tool_call_parser: the sizing catalog knows no vLLM tool-call parser for {m.id!r}; "
            f"set the one of its chat format ({', '.join(TOOL_CALL_PARSERS[:5])}, ...) or `none` to serve it without tool calling"
        )


def sagemaker_token_limits(cfg: EnvironmentConfig) -> tuple[int, int]:
    """(max_input_tokens, max_batch_prefill_tokens) of the SageMaker container, defaults applied."""
    assert cfg.sagemaker is not None
    sm, max_len = cfg.sagemaker, cfg.model.max_model_len
    return (sm.max_input_tokens or max_len - 1, sm.max_batch_prefill_tokens or max_len)


def check_sagemaker(path: Path, cfg: EnvironmentConfig) -> None:
    """The SageMaker backend as configured: model fits the ml.* instance, token limits, KMS and
    network rules SageMaker would reject at deploy, image resolvable for the region."""
    assert cfg.sagemaker is not None
    sm, m = cfg.sagemaker, cfg.model
    try:
        model = get_model(m.id, m.architecture)
        instance = get_instance(sm.instance_type)
    except SizingError as exc:
        field = "model.id" if "sizing catalog" in str(exc) else "sagemaker.instance_type"
        raise ConfigError(f"{path}: {field}: {exc}") from None
    report = plan(
        model,
        instance,
        dtype=m.dtype,
        quantization=m.quantization_method,
        # The TGI container is not given model.kv_cache_dtype: size its KV cache as it runs it.
        kv_cache_dtype="auto" if sm.container == "tgi" else m.kv_cache_dtype,
        max_model_len=m.max_model_len,
        tensor_parallel_size=m.tensor_parallel_size,
        max_num_seqs=sm.max_concurrent_requests,
    )
    if report.problems:
        lines = _sizing_problems(report, "sagemaker.instance_type")
        if sm.container == "tgi" and m.kv_cache_dtype == "fp8":
            lines += " (sized without model.kv_cache_dtype fp8: the tgi container keeps its KV cache in the model dtype; "
            lines += "container vllm or lmi uses fp8)"
        raise ConfigError(f"{path}: {lines}")
    max_input, prefill = sagemaker_token_limits(cfg)
    if max_input >= m.max_model_len:
        raise ConfigError(
            f"{path}: sagemaker.max_input_tokens: {max_input} must be below model.max_model_len ({m.max_model_len}) "
            "to leave room for the completion"
        )
    if sm.container == "tgi" and prefill < max_input:
        raise ConfigError(f"{path}: sagemaker.max_batch_prefill_tokens: TGI needs at least max_input_tokens ({max_input})")
    volume_key_problem = volume_kms_key_problem(sm.instance_type, instance.has_local_nvme)
    if sm.volume_kms_key_arn and volume_key_problem:
        raise ConfigError(f"{path}: sagemaker.volume_kms_key_arn: {volume_key_problem}: remove volume_kms_key_arn")
    if sm.weights == "hub" and cfg.network.nat_gateways == 0:
        raise ConfigError(
            f"{path}: sagemaker.weights: hub needs internet egress but network.nat_gateways is 0; "
            "pre-stage the weights in S3 (weights: s3) or add a NAT gateway"
        )
    if sm.off_hours and cfg.retain_stateful:
        raise ConfigError(
            f"{path}: sagemaker.off_hours: is for non-prod; retain_stateful marks this environment as prod-like"
        )
    try:
        container_image_uri(
            sm.container, version=getattr(sm.image_versions, sm.container), region=cfg.region, instance_type=sm.instance_type
        )
    except ValueError as exc:
        raise ConfigError(f"{path}: sagemaker.image_versions.{sm.container}: {exc}") from None


def load_all(config_dir: Path = CONFIG_DIR) -> list[EnvironmentConfig]:
    """Every `*.yaml` in `config_dir`, validated, sorted by name. All are checked before any is used."""
    files = sorted(config_dir.glob("*.yaml"))
    if not files:
        raise ConfigError(f"{config_dir}: no environment files (*.yaml)")
    return [load_environment(f) for f in files]
