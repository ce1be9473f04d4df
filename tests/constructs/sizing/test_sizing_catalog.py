"""The catalogs hold the published figures: checked against numbers copied from the sources, not from the code."""

import pytest
from pydantic import ValidationError

from llm_hosting_constructs.sizing import (
    ModelArchitecture,
    SizingError,
    families,
    get_instance,
    get_model,
    instances,
)

# From each repository's config.json: layers, attention heads, KV heads, head_dim, max_position_embeddings.
PUBLISHED = {
    "meta-llama/Llama-3.1-8B-Instruct": (32, 32, 8, 128, 131072),
    "meta-llama/Llama-3.1-70B-Instruct": (80, 64, 8, 128, 131072),
    "meta-llama/Llama-3.3-70B-Instruct": (80, 64, 8, 128, 131072),
    "meta-llama/Meta-Llama-3-8B-Instruct": (32, 32, 8, 128, 8192),
    "mistralai/Mistral-7B-Instruct-v0.3": (32, 32, 8, 128, 32768),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": (32, 32, 8, 128, 32768),
    "Qwen/Qwen2.5-7B-Instruct": (28, 28, 4, 128, 32768),
    "Qwen/Qwen2.5-14B-Instruct": (48, 40, 8, 128, 32768),
    "Qwen/Qwen2.5-32B-Instruct": (64, 40, 8, 128, 32768),
    "Qwen/Qwen2.5-72B-Instruct": (80, 64, 8, 128, 32768),
}


@pytest.mark.parametrize(("hf_id", "figures"), PUBLISHED.items())
def test_catalog_matches_published_config(hf_id: str, figures: tuple[int, int, int, int, int]) -> None:
    m = get_model(hf_id)
    assert (m.layers, m.attention_heads, m.kv_heads, m.head_dim, m.max_context) == figures
    assert m.hf_id == hf_id


# Parameter counts recomputed here from config.json figures the catalog does not hold
# (intermediate_size, experts, q/k/v biases): embeddings (+ untied lm_head) + per layer
# q,o (h×h) + k,v (h×kv_dim) + MLP (3×h×inter per expert) + router + 2 norms, + final norm.
def _count(
    h: int,
    inter: int,
    layers: int,
    kv_dim: int,
    vocab: int,
    *,
    experts: int = 1,
    qkv_bias: bool = False,
    tied: bool = False,
) -> int:
    attn = 2 * h * h + 2 * h * kv_dim + ((h + 2 * kv_dim) if qkv_bias else 0)
    mlp = experts * 3 * h * inter + (h * experts if experts > 1 else 0)
    return layers * (attn + mlp + 2 * h) + vocab * h * (1 if tied else 2) + h


@pytest.mark.parametrize(
    ("hf_id", "expected"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", _count(4096, 14336, 32, 1024, 128256)),
        ("meta-llama/Llama-3.1-70B-Instruct", _count(8192, 28672, 80, 1024, 128256)),
        ("meta-llama/Llama-3.2-1B-Instruct", _count(2048, 8192, 16, 512, 128256, tied=True)),
        ("mistralai/Mistral-7B-Instruct-v0.3", _count(4096, 14336, 32, 1024, 32768)),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", _count(4096, 14336, 32, 1024, 32000, experts=8)),
        ("Qwen/Qwen2.5-7B-Instruct", _count(3584, 18944, 28, 512, 152064, qkv_bias=True)),
        ("Qwen/Qwen2.5-14B-Instruct", _count(5120, 13824, 48, 1024, 152064, qkv_bias=True)),
        ("Qwen/Qwen2.5-32B-Instruct", _count(5120, 27648, 64, 1024, 152064, qkv_bias=True)),
        ("Qwen/Qwen2.5-72B-Instruct", _count(8192, 29568, 80, 1024, 152064, qkv_bias=True)),
    ],
)
def test_parameter_counts_match_architecture(hf_id: str, expected: int) -> None:
    assert get_model(hf_id).parameters == expected


def test_published_headline_parameter_counts() -> None:
    # The model cards' headline figures (Qwen's cards truncate: 7.61B, 14.7B).
    assert round(get_model("meta-llama/Llama-3.1-8B-Instruct").parameters / 1e9, 2) == 8.03
    assert round(get_model("meta-llama/Llama-3.1-70B-Instruct").parameters / 1e9, 1) == 70.6
    assert round(get_model("mistralai/Mixtral-8x7B-Instruct-v0.1").parameters / 1e9, 1) == 46.7
    assert int(get_model("Qwen/Qwen2.5-7B-Instruct").parameters / 1e7) == 761
    assert int(get_model("Qwen/Qwen2.5-14B-Instruct").parameters / 1e8) == 147
    assert round(get_model("Qwen/Qwen2.5-72B-Instruct").parameters / 1e9, 1) == 72.7


def test_model_lookup_is_case_insensitive() -> None:
    assert get_model("qwen/qwen2.5-72b-instruct").layers == 80


def test_unknown_model_says_how_to_describe_it() -> None:
    with pytest.raises(SizingError) as err:
        get_model("acme/secret-13b")
    msg = str(err.value)
    assert "\n" not in msg
    assert "'acme/secret-13b' is not in the sizing catalog" in msg
    assert "custom architecture" in msg and "meta-llama/Llama-3.1-8B-Instruct" in msg


def test_custom_architecture_wins_and_takes_the_id() -> None:
    custom = ModelArchitecture(parameters=13_000_000_000, layers=40, attention_heads=40, kv_heads=40, head_dim=128)
    m = get_model("meta-llama/Llama-3.1-8B-Instruct", custom)
    assert (m.hf_id, m.layers, m.kv_heads) == ("meta-llama/Llama-3.1-8B-Instruct", 40, 40)


def test_custom_architecture_is_validated() -> None:
    with pytest.raises(ValidationError, match="kv_heads .3. must divide attention_heads .32."):
        ModelArchitecture(parameters=1, layers=1, attention_heads=32, kv_heads=3, head_dim=64)
    with pytest.raises(ValidationError, match="extra"):
        ModelArchitecture(parameters=1, layers=1, attention_heads=4, kv_heads=4, head_dim=64, experts=8)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        ModelArchitecture(parameters=0, layers=1, attention_heads=4, kv_heads=4, head_dim=64)


def test_every_size_of_every_family_is_there() -> None:
    sizes = ["xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge", "12xlarge", "24xlarge", "48xlarge"]
    for family in ("g5", "g6", "g6e"):
        assert {i.name for i in instances(family)} == {f"{family}.{s}" for s in sizes}
        assert {i.name for i in instances(f"ml.{family}")} == {f"ml.{family}.{s}" for s in sizes}
    assert [i.name for i in instances("p5")] == ["p5.4xlarge", "p5.48xlarge"]
    for name in ("p4d.24xlarge", "p4de.24xlarge", "p5e.48xlarge", "p5en.48xlarge", "ml.p4d.24xlarge", "ml.p5.48xlarge"):
        get_instance(name)
    assert families() == ["g5", "g6", "g6e", "p4d", "p4de", "p5", "p5e", "p5en"]


# (gpus, gpu model, advertised GiB per GPU, vCPUs, memory GiB, NVMe) from the EC2 instance type pages.
@pytest.mark.parametrize(
    ("name", "spec"),
    [
        ("g5.xlarge", (1, "A10G", 24, 4, 16, True)),
        ("g5.12xlarge", (4, "A10G", 24, 48, 192, True)),
        ("g5.48xlarge", (8, "A10G", 24, 192, 768, True)),
        ("g6.2xlarge", (1, "L4", 24, 8, 32, True)),
        ("g6.48xlarge", (8, "L4", 24, 192, 768, True)),
        ("g6e.xlarge", (1, "L40S", 48, 4, 32, True)),
        ("g6e.12xlarge", (4, "L40S", 48, 48, 384, True)),
        ("g6e.48xlarge", (8, "L40S", 48, 192, 1536, True)),
        ("p4d.24xlarge", (8, "A100-SXM4-40GB", 40, 96, 1152, True)),
        ("p4de.24xlarge", (8, "A100-SXM4-80GB", 80, 96, 1152, True)),
        ("p5.48xlarge", (8, "H100-SXM-80GB", 80, 192, 2048, True)),
        ("p5e.48xlarge", (8, "H200-SXM-141GB", 141, 192, 2048, True)),
        ("ml.g5.2xlarge", (1, "A10G", 24, 8, 32, True)),
        ("ml.p5.48xlarge", (8, "H100-SXM-80GB", 80, 192, 2048, True)),
    ],
)
def test_instance_specs(name: str, spec: tuple[int, str, int, int, int, bool]) -> None:
    i = get_instance(name)
    assert (i.gpu_count, i.gpu.model, i.gpu.memory_gib, i.vcpus, i.memory_gib, i.has_local_nvme) == spec
    # What torch reports is a little below the advertised memory, never above.
    assert 0.9 * i.gpu.memory_gib * 1024 < i.gpu.cuda_total_mib <= i.gpu.memory_gib * 1024


def test_sagemaker_types_are_flagged() -> None:
    assert get_instance("ml.g6e.xlarge").is_sagemaker
    assert not get_instance("g6e.xlarge").is_sagemaker
    assert get_instance("ml.g6e.xlarge").family == "ml.g6e"


def test_unknown_instance_lists_the_family_sizes() -> None:
    with pytest.raises(
        SizingError, match=r"'g5\.3xlarge' is not in the GPU catalog; g5 sizes: g5\.xlarge, g5\.2xlarge"
    ):
        get_instance("g5.3xlarge")
    with pytest.raises(SizingError, match="families: g5, g6"):
        get_instance("m5.large")


def test_measured_gpu_totals() -> None:
    # torch.cuda.mem_get_info() totals read on an H100 80GB HBM3 and an H200 (bytes / 2**20).
    assert get_instance("p5.48xlarge").gpu.cuda_total_mib == 85_017_493_504 // 2**20 == 81_079
    assert get_instance("p5e.48xlarge").gpu.cuda_total_mib == 150_109_880_320 // 2**20 == 143_155
