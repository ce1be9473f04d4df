"""Catalogs of model architectures and GPU instance types, read from the JSON files beside this module.

The data lives in ``models.json`` and ``instances.json`` (each says where its numbers
come from) so that adding a model or an instance size is a data change, not a code change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

SAGEMAKER_PREFIX = "ml."


class SizingError(ValueError):
    """A configuration that cannot work; the message is one line that says why and what would."""


class ModelArchitecture(BaseModel):
    """What the sizing math needs to know about a transformer; embeddable in the environment config.

    For a model outside the catalog, copy the figures from its ``config.json``:
    ``num_hidden_layers`` → ``layers``, ``num_attention_heads`` → ``attention_heads``,
    ``num_key_value_heads`` → ``kv_heads``, ``head_dim`` (or ``hidden_size /
    num_attention_heads``) → ``head_dim``; ``parameters`` is the total count (the Hub shows it).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    hf_id: str | None = Field(default=None, description="Hugging Face id; set by get_model, optional in config.")
    parameters: PositiveInt = Field(description="Total parameter count (all experts of a mixture-of-experts model).")
    layers: PositiveInt
    attention_heads: PositiveInt
    kv_heads: PositiveInt = Field(
        description="Key/value heads (equal to attention_heads without grouped-query attention)."
    )
    head_dim: PositiveInt
    hidden_size: PositiveInt | None = Field(default=None, description="Defaults to attention_heads × head_dim.")
    vocab_size: PositiveInt | None = Field(
        default=None,
        description="Needed only to size quantized weights exactly: embeddings and lm_head stay in the "
        "unquantized dtype. Without it every parameter is taken as quantized.",
    )
    max_context: PositiveInt | None = Field(
        default=None, description="max_position_embeddings; when unknown, max_model_len is not checked against it."
    )
    tie_word_embeddings: bool = False
    gated: bool | None = Field(
        default=None,
        description="True when the Hugging Face repo is gated (download needs an accepted licence and a token); "
        "None when unknown.",
    )

    @model_validator(mode="after")
    def _kv_heads_group_attention_heads(self) -> ModelArchitecture:
        if self.attention_heads % self.kv_heads:
            raise ValueError(
                f"kv_heads ({self.kv_heads}) must divide attention_heads ({self.attention_heads}): "
                "grouped-query attention shares each KV head among a whole number of query heads"
            )
        return self

    @property
    def name(self) -> str:
        return self.hf_id or "custom model"

    @property
    def embedding_parameters(self) -> int:
        """Parameters of the input embedding and the output head (one matrix when they are tied)."""
        if self.vocab_size is None:
            return 0
        hidden = self.hidden_size or self.attention_heads * self.head_dim
        return self.vocab_size * hidden * (1 if self.tie_word_embeddings else 2)


@dataclass(frozen=True)
class Gpu:
    model: str
    memory_gib: int
    """Advertised GPU memory."""
    cuda_total_mib: int
    """Total that ``torch.cuda.mem_get_info()`` reports: the figure vLLM multiplies by gpu_memory_utilization."""


@dataclass(frozen=True)
class InstanceType:
    name: str
    family: str
    """``g5``, ``p4de``, ``ml.g6e``: the name up to the size."""
    gpu: Gpu
    gpu_count: int
    vcpus: int
    memory_gib: int
    local_nvme_gb: int
    """Local NVMe instance storage; 0 when the type has none."""

    @classmethod
    def describe(
        cls,
        name: str,
        *,
        gpu_count: int,
        gpu_memory_gib: int,
        vcpus: int,
        memory_gib: int,
        local_nvme_gb: int = 0,
        gpu_model: str = "custom GPU",
        cuda_total_mib: int | None = None,
    ) -> InstanceType:
        """An instance type the catalog lacks, from the figures AWS publishes for it (EC2 instance type
        page). ``cuda_total_mib`` (what ``torch.cuda.mem_get_info()`` reports) defaults to 91 % of the
        advertised GPU memory: below every GPU measured in the catalog, so sizing errs on "does not fit"."""
        if min(gpu_count, gpu_memory_gib, vcpus, memory_gib) < 1 or local_nvme_gb < 0:
            raise SizingError(f"instance type {name!r}: gpu_count, gpu_memory_gib, vcpus and memory_gib must be >= 1")
        total = cuda_total_mib if cuda_total_mib is not None else int(gpu_memory_gib * 1024 * 0.91)
        return cls(
            name=name,
            family=name.rsplit(".", 1)[0],
            gpu=Gpu(model=gpu_model, memory_gib=gpu_memory_gib, cuda_total_mib=total),
            gpu_count=gpu_count,
            vcpus=vcpus,
            memory_gib=memory_gib,
            local_nvme_gb=local_nvme_gb,
        )

    @property
    def has_local_nvme(self) -> bool:
        return self.local_nvme_gb > 0

    @property
    def is_sagemaker(self) -> bool:
        return self.name.startswith(SAGEMAKER_PREFIX)

    @property
    def sort_key(self) -> tuple[int, int, int]:
        # "Smallest" = fewest GPUs, then fewest vCPUs and least memory: within a family that
        # is also the cheapest order (g5.16xlarge, 1 GPU, costs less than g5.12xlarge, 4 GPUs).
        return (self.gpu_count, self.vcpus, self.memory_gib)


def _load(name: str) -> Any:
    return json.loads(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))


NOT_ARCHITECTURE = ("ids", "tool_call_parser")
"""Catalog entry keys that describe how the model is served, not its shape."""


@cache
def _models() -> dict[str, ModelArchitecture]:
    by_id: dict[str, ModelArchitecture] = {}
    for entry in _load("models.json")["models"]:
        figures = {k: v for k, v in entry.items() if k not in NOT_ARCHITECTURE}
        for hf_id in entry["ids"]:
            by_id[hf_id.lower()] = ModelArchitecture(hf_id=hf_id, **figures)
    return by_id


@cache
def _tool_call_parsers() -> dict[str, str]:
    return {
        hf_id.lower(): entry["tool_call_parser"]
        for entry in _load("models.json")["models"]
        if "tool_call_parser" in entry
        for hf_id in entry["ids"]
    }


def tool_call_parser(hf_id: str) -> str | None:
    """vLLM's ``--tool-call-parser`` for the family of ``hf_id``; None when the catalog knows none
    (a model outside the catalog, or one without a tool-calling chat format)."""
    return _tool_call_parsers().get(hf_id.lower())


@cache
def _instances() -> dict[str, InstanceType]:
    data = _load("instances.json")
    gpus = {
        name: Gpu(model=name, memory_gib=figures["memory_gib"], cuda_total_mib=figures["cuda_total_mib"])
        for name, figures in data["gpus"].items()
    }
    catalog: dict[str, InstanceType] = {}
    for name, spec in data["instances"].items():
        catalog[name] = InstanceType(
            name=name,
            family=name.rsplit(".", 1)[0],
            gpu=gpus[spec["gpu"]],
            gpu_count=spec["gpus"],
            vcpus=spec["vcpus"],
            memory_gib=spec["memory_gib"],
            local_nvme_gb=spec["local_nvme_gb"],
        )
    for name in data["sagemaker"]:
        ec2 = catalog[name]
        ml_name = SAGEMAKER_PREFIX + name
        catalog[ml_name] = InstanceType(
            name=ml_name,
            family=SAGEMAKER_PREFIX + ec2.family,
            gpu=ec2.gpu,
            gpu_count=ec2.gpu_count,
            vcpus=ec2.vcpus,
            memory_gib=ec2.memory_gib,
            local_nvme_gb=ec2.local_nvme_gb,
        )
    return catalog


def model_ids() -> list[str]:
    """Every Hugging Face id the catalog knows, in catalog order."""
    return [m.hf_id for m in _models().values() if m.hf_id]


def get_model(hf_id: str, custom: ModelArchitecture | None = None) -> ModelArchitecture:
    """The architecture of ``hf_id``: ``custom`` when given (it wins over the catalog), else the catalog's.

    Ids match case-insensitively, as the Hub resolves them.
    """
    if custom is not None:
        return custom.model_copy(update={"hf_id": hf_id})
    try:
        return _models()[hf_id.lower()]
    except KeyError:
        raise SizingError(
            f"model {hf_id!r} is not in the sizing catalog; describe it with a custom architecture "
            "(parameters, layers, attention_heads, kv_heads, head_dim from its config.json) "
            f"or use one of: {', '.join(model_ids())}"
        ) from None


def get_instance(instance_type: str) -> InstanceType:
    """A catalog instance type by name: EC2 (``g5.2xlarge``) or SageMaker (``ml.g5.2xlarge``)."""
    try:
        return _instances()[instance_type]
    except KeyError:
        family = instance_type.rsplit(".", 1)[0]
        same_family = [i.name for i in instances() if i.family == family]
        hint = f"{family} sizes: {', '.join(same_family)}" if same_family else f"families: {', '.join(families())}"
        raise SizingError(f"instance type {instance_type!r} is not in the GPU catalog; {hint}") from None


def instances(family: str | None = None) -> list[InstanceType]:
    """Catalog instance types, smallest first; only ``family``'s when given (``g6e``, ``ml.g5``)."""
    chosen = [i for i in _instances().values() if family is None or i.family == family]
    return sorted(chosen, key=lambda i: (i.family, i.sort_key))


def families(*, sagemaker: bool = False) -> list[str]:
    """Instance families in catalog order: the EC2 ones, or the ``ml.*`` ones."""
    seen = dict.fromkeys(i.family for i in _instances().values() if i.is_sagemaker == sagemaker)
    return list(seen)
