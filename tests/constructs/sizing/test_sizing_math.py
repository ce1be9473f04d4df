"""Weights, KV cache and fit, against figures worked out by hand from the published architectures."""

import subprocess
import sys

import pytest

from llm_hosting_constructs.sizing import (
    ModelArchitecture,
    SizingError,
    check,
    check_task_resources,
    get_instance,
    get_model,
    instance_registered_resources,
    kv_cache_bytes_per_token,
    plan,
    smallest_fitting,
    valid_tensor_parallel_sizes,
    weight_bytes,
)

LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"
LLAMA_70B = "meta-llama/Llama-3.1-70B-Instruct"
LLAMA3_70B = "meta-llama/Meta-Llama-3-70B-Instruct"  # 8k context
QWEN_7B = "Qwen/Qwen2.5-7B-Instruct"
MIB = 1024**2
GIB = 1024**3
OVERHEAD = 2 * GIB  # the documented runtime overhead per GPU
# GPU totals as torch reports them (instances.json: nvidia-smi's figure less 2% where not measured).
A10G_BYTES = 22567 * MIB
A100_40_BYTES = 40140 * MIB
L40S_BYTES = 45146 * MIB


# --- KV cache -----------------------------------------------------------------------


def test_kv_bytes_per_token_llama_8b() -> None:
    # 2 (K, V) × 32 layers × 8 KV heads × 128 head_dim × 2 bytes (bf16)
    assert kv_cache_bytes_per_token(get_model(LLAMA_8B)) == 2 * 32 * 8 * 128 * 2 == 131_072
    assert kv_cache_bytes_per_token(get_model(LLAMA_8B), kv_cache_dtype="fp8") == 65_536


def test_kv_bytes_per_token_other_models() -> None:
    assert kv_cache_bytes_per_token(get_model(LLAMA_70B)) == 2 * 80 * 8 * 128 * 2 == 327_680
    assert kv_cache_bytes_per_token(get_model(QWEN_7B)) == 2 * 28 * 4 * 128 * 2 == 57_344
    assert kv_cache_bytes_per_token(get_model("mistralai/Mixtral-8x7B-Instruct-v0.1")) == 131_072


def test_tensor_parallel_splits_then_replicates_kv_heads() -> None:
    m70 = get_model(LLAMA_70B)
    assert kv_cache_bytes_per_token(m70, tensor_parallel_size=4) == 2 * 80 * 2 * 128 * 2  # 2 heads per GPU
    assert kv_cache_bytes_per_token(m70, tensor_parallel_size=8) == 2 * 80 * 1 * 128 * 2  # 1 head per GPU
    # Qwen2.5-7B has 4 KV heads: at TP 4 each GPU holds one, as it would at TP 8 by replication.
    assert kv_cache_bytes_per_token(get_model(QWEN_7B), tensor_parallel_size=4) == 2 * 28 * 1 * 128 * 2


# --- weights ------------------------------------------------------------------------


def test_weight_bytes_by_precision() -> None:
    m8 = get_model(LLAMA_8B)
    params = 8_030_261_248
    embeddings = 2 * 128_256 * 4_096  # input embedding + untied lm_head, kept in bf16 when quantized
    assert weight_bytes(m8) == params * 2 == 16_060_522_496
    assert weight_bytes(m8, dtype="float32") == params * 4
    assert weight_bytes(m8, quantization="fp8") == (params - embeddings) * 1 + embeddings * 2 == 9_080_934_400
    # AWQ int4, group 128: 0.5 byte + (2-byte scale + 0.5-byte zero) / 128 per linear weight.
    awq = (params - embeddings) * (0.5 + 2.5 / 128) + embeddings * 2
    assert weight_bytes(m8, quantization="awq") == pytest.approx(awq, abs=1)
    assert 5.3 < weight_bytes(m8, quantization="awq") / GIB < 5.4


def test_70b_fp16_weights_are_about_141_gb() -> None:
    assert weight_bytes(get_model(LLAMA3_70B), dtype="float16") == 70_553_706_496 * 2
    assert round(weight_bytes(get_model(LLAMA3_70B), dtype="float16") / 1e9) == 141


def test_custom_model_without_vocab_counts_every_parameter_as_quantized() -> None:
    m = ModelArchitecture(parameters=1_000_000_000, layers=16, attention_heads=16, kv_heads=4, head_dim=64)
    assert weight_bytes(m, quantization="fp8") == 1_000_000_000


# --- fit --------------------------------------------------------------------------


def test_llama_8b_on_g5_xlarge() -> None:
    r = plan(LLAMA_8B, "g5.xlarge", max_model_len=8192)
    budget = int(A10G_BYTES * 0.9)  # 21,296,893,132
    kv_free = budget - 16_060_522_496 - OVERHEAD  # 3,088,886,988
    blocks = kv_free // (16 * 131_072)  # 1,472 blocks of 16 tokens
    assert (r.budget_bytes_per_gpu, r.kv_cache_bytes_per_gpu) == (budget, kv_free) == (21_296_893_132, 3_088_886_988)
    assert r.kv_tokens == blocks * 16 == 23_552
    assert r.max_concurrency == pytest.approx(23_552 / 8192)
    assert r.concurrent_sequences == 2
    assert r.tensor_parallel_size == 1 and r.fits
    check(r)


def test_fp8_kv_cache_doubles_the_tokens() -> None:
    r = plan(LLAMA_8B, "g5.xlarge", max_model_len=8192, kv_cache_dtype="fp8")
    assert r.kv_tokens == (3_088_886_988 // (16 * 65_536)) * 16 == 47_120


def test_max_num_seqs_caps_concurrency() -> None:
    assert plan(LLAMA_8B, "g5.xlarge", max_model_len=1024, max_num_seqs=4).concurrent_sequences == 4


def test_70b_fp16_does_not_fit_g5_2xlarge_and_names_what_would() -> None:
    r = plan(LLAMA3_70B, "g5.2xlarge", dtype="float16")
    assert not r.fits
    with pytest.raises(SizingError) as err:
        check(r)
    msg = str(err.value)
    assert "\n" not in msg
    assert "does not fit g5.2xlarge at tensor-parallel 1" in msg
    assert "131.4 GiB of weights" in msg  # 141.1e9 bytes / 2^30
    for fitting in (
        "g5.48xlarge (TP 8)",
        "g6.48xlarge (TP 8)",
        "g6e.12xlarge (TP 4)",
        "p4d.24xlarge (TP 8)",
        "p5.48xlarge (TP 8)",
    ):
        assert fitting in msg
    assert ("g6e.12xlarge", 4) in r.alternatives
    assert not any(name.startswith("ml.") for name, _ in r.alternatives)


def test_70b_fits_p4d_at_tp8() -> None:
    r = plan(LLAMA_70B, "p4d.24xlarge", max_model_len=8192, tensor_parallel_size=8)
    per_gpu_weights = 70_553_706_496 * 2 // 8  # 17,638,426,624
    kv_free = int(A100_40_BYTES * 0.9) - per_gpu_weights - OVERHEAD  # 18,094,946,304
    assert r.weight_bytes_per_gpu == per_gpu_weights
    assert r.kv_cache_bytes_per_gpu == kv_free == 18_094_946_304
    assert r.kv_tokens == (kv_free // (16 * 40_960)) * 16 == 441_760
    assert r.fits


def test_70b_fits_p5_48xlarge_but_not_the_single_gpu_p5() -> None:
    assert plan(LLAMA_70B, "p5.48xlarge", max_model_len=32768).fits
    one_h100 = plan(LLAMA_70B, "p5.4xlarge", max_model_len=32768)
    assert not one_h100.fits and "does not fit p5.4xlarge" in one_h100.problems[0]


def test_smallest_fitting_per_family() -> None:
    # 70B bf16 at 8k: 8 A10G leave 2,305 blocks (36,880 tokens); 4 A10G cannot hold 35.3 GB each.
    r = smallest_fitting(LLAMA_70B, "g5", max_model_len=8192)
    assert r is not None and (r.instance_type, r.tensor_parallel_size, r.kv_tokens) == (
        "g5.48xlarge",
        8,
        (int(A10G_BYTES * 0.9) - 70_553_706_496 * 2 // 8 - OVERHEAD) // (16 * 40_960) * 16,
    )
    # 4 L40S: (45146 MiB × 0.9 − 141.1e9 / 4 − 2 GiB) / (16 × 81,920) = 3,952 blocks.
    r = smallest_fitting(LLAMA_70B, "g6e", max_model_len=8192)
    assert r is not None and (r.instance_type, r.tensor_parallel_size) == ("g6e.12xlarge", 4)
    assert r.kv_tokens == ((int(L40S_BYTES * 0.9) - 70_553_706_496 * 2 // 4 - OVERHEAD) // (16 * 81_920)) * 16 == 63_232
    r8 = smallest_fitting(LLAMA_8B, "g5", max_model_len=8192)
    assert r8 is not None and r8.instance_type == "g5.xlarge"
    mixtral = smallest_fitting("mistralai/Mixtral-8x7B-Instruct-v0.1", "g5", max_model_len=8192)
    assert mixtral is not None and mixtral.instance_type == "g5.48xlarge"  # 93.4 GB / 4 > 21.7 GB usable
    assert smallest_fitting(LLAMA_70B, "p5e", max_model_len=8192) is not None
    ml = smallest_fitting(LLAMA_70B, "ml.g6e", max_model_len=8192)
    assert ml is not None and ml.instance_type == "ml.g6e.12xlarge"


def test_smallest_fitting_none_and_unknown_family() -> None:
    assert smallest_fitting(LLAMA_70B, "g5", max_model_len=131072) is None  # 36,880 tokens < 131,072
    with pytest.raises(SizingError, match="unknown instance family 'g7'"):
        smallest_fitting(LLAMA_8B, "g7")


def test_awq_70b_fits_one_h100() -> None:
    # 70B AWQ: (70.55e9 − 2.10e9) × 0.5195 + 2.10e9 × 2 = 39.8e9 bytes;
    # one H100 gives 81,559 MiB × 0.9 = 77.0e9 bytes.
    r = plan(LLAMA_70B, "p5.4xlarge", quantization="awq", max_model_len=8192)
    assert r.weight_bytes == pytest.approx(
        (70_553_706_496 - 2_101_346_304) * (0.5 + 2.5 / 128) + 2_101_346_304 * 2, abs=1
    )
    assert r.fits


# --- tensor parallelism ----------------------------------------------------------


def test_tensor_parallel_larger_than_the_gpus() -> None:
    r = plan(LLAMA_8B, "g5.2xlarge", tensor_parallel_size=4, max_model_len=8192)
    assert "tensor_parallel_size 4 exceeds the 1 GPU(s) of g5.2xlarge" in r.problems[0]
    assert "g5 sizes with 4 or more: g5.12xlarge, g5.24xlarge, g5.48xlarge" in r.problems[0]


def test_tensor_parallel_must_divide_heads() -> None:
    r = plan(QWEN_7B, "g5.48xlarge", tensor_parallel_size=8, max_model_len=8192)
    assert r.problems == (
        "tensor_parallel_size 8 does not divide the 28 attention heads of Qwen/Qwen2.5-7B-Instruct; valid sizes: 1, 2, 4",
    )
    assert valid_tensor_parallel_sizes(get_model(QWEN_7B), 8) == [1, 2, 4]  # 7 divides 28 heads but not 4 KV heads
    assert valid_tensor_parallel_sizes(get_model(LLAMA_70B), 8) == [1, 2, 4, 8]
    assert valid_tensor_parallel_sizes(get_model("Qwen/Qwen2.5-14B-Instruct"), 8) == [
        1,
        2,
        4,
        8,
    ]  # 5 divides 40 heads, not 8 KV heads
    # Without an explicit size, the most GPUs the heads allow.
    assert plan(QWEN_7B, "g5.48xlarge", max_model_len=8192).tensor_parallel_size == 4


def test_kv_heads_must_split_or_replicate_evenly() -> None:
    m = ModelArchitecture(parameters=10**9, layers=8, attention_heads=24, kv_heads=8, head_dim=64, max_context=4096)
    assert valid_tensor_parallel_sizes(m, 8) == [1, 2, 4, 8]  # 3 and 6 divide 24 heads but not 8 KV heads
    r = plan(m, "g5.48xlarge", tensor_parallel_size=6)
    assert "tensor_parallel_size 6 does not divide the 8 KV heads" in r.problems[0]


# --- context and KV capacity -----------------------------------------------------


def test_max_model_len_beyond_the_context() -> None:
    r = plan("meta-llama/Meta-Llama-3-8B-Instruct", "g6e.xlarge", max_model_len=16384)
    assert r.problems == (
        "max_model_len 16,384 exceeds the 8,192-token context of meta-llama/Meta-Llama-3-8B-Instruct; use at most 8,192",
    )


def test_default_max_model_len_is_the_context_and_may_not_fit() -> None:
    r = plan(LLAMA_8B, "g5.xlarge")  # 131,072 tokens × 128 KiB = 16 GiB of KV for one sequence
    assert r.max_model_len == 131_072
    with pytest.raises(SizingError) as err:
        check(r)
    msg = str(err.value)
    assert "KV cache for 23,552 tokens" in msg and "lower max_model_len to at most 23,552" in msg
    assert "g6e.xlarge (TP 1)" in msg  # 48 GB L40S holds it
    assert "p5.4xlarge (TP 1)" in msg


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(SizingError, match="gpu_memory_utilization must be in"):
        plan(LLAMA_8B, "g5.xlarge", gpu_memory_utilization=1.2)
    custom = ModelArchitecture(parameters=10**9, layers=8, attention_heads=8, kv_heads=8, head_dim=64)
    with pytest.raises(SizingError, match="set max_model_len"):
        plan(custom, "g5.xlarge")
    assert plan(custom, "g5.xlarge", max_model_len=2048).fits


# --- ECS registered resources ----------------------------------------------------


def test_registered_resources() -> None:
    # vCPU × 1024 units; floor(GiB × 1024 × 0.96) − 256 MiB reserved.
    assert instance_registered_resources("g5.2xlarge") == (8 * 1024, 31_457 - 256)
    assert instance_registered_resources("p4d.24xlarge") == (96 * 1024, 1_132_462 - 256)
    assert instance_registered_resources("g5.xlarge", reserved_memory_mib=0) == (4096, 15_728)


def test_task_larger_than_the_instance() -> None:
    check_task_resources("g5.2xlarge", cpu_units=8192, memory_mib=31_201)
    with pytest.raises(SizingError) as err:
        check_task_resources("g5.2xlarge", cpu_units=8193, memory_mib=32_768)
    assert str(err.value) == (
        "task asks for more than a g5.2xlarge registers with ECS (CPU 8193 units > 8192 registered; "
        "memory 32768 MiB > ~31201 MiB registered); reserve at most 8192 CPU units and 31201 MiB, or choose a larger size"
    )
    r = plan(LLAMA_8B, "g5.2xlarge", max_model_len=8192, task_cpu_units=4096, task_memory_mib=32_000)
    assert len(r.problems) == 1 and "memory 32000 MiB > ~31201 MiB" in r.problems[0]
    assert r.alternatives == ()  # a bigger GPU does not fix a task definition


def test_sagemaker_types_have_no_ecs_registration() -> None:
    with pytest.raises(SizingError, match="SageMaker instance type; ECS runs on EC2 types such as g5.2xlarge"):
        instance_registered_resources("ml.g5.2xlarge")
    r = plan(LLAMA_70B, "ml.g5.2xlarge", max_model_len=8192)
    assert r.ecs_cpu_units is None
    assert r.alternatives and all(name.startswith("ml.") for name, _ in r.alternatives)
    assert get_instance("ml.p5.48xlarge").name in [name for name, _ in r.alternatives]


def test_sizing_does_not_import_aws_cdk() -> None:
    code = (
        "import sys, llm_hosting_constructs.sizing as s; "
        "s.plan(s.get_model('Qwen/Qwen2.5-7B-Instruct'), s.get_instance('g6.xlarge'), max_model_len=4096); "
        "print('aws_cdk' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_each_problem_names_the_setting_to_change() -> None:
    r = plan(
        "meta-llama/Meta-Llama-3-8B-Instruct",
        "g5.xlarge",
        max_model_len=16384,
        tensor_parallel_size=2,
        task_memory_mib=20_000,
    )
    # TP 2 > 1 GPU; 16,384 > the 8,192-token context; 20,000 MiB > floor(16 × 1024 × 0.96) − 256 = 15,472.
    # Memory is fine as computed at TP 2: 8.03e9 weight bytes + 2 GiB per GPU leave ~176k tokens.
    assert r.problem_fields == ("tensor_parallel_size", "max_model_len", "task")
    assert len(r.problems) == len(r.problem_fields)
    assert plan(LLAMA3_70B, "g5.2xlarge").problem_fields == ("instance_type",)
    assert plan(LLAMA_8B, "g5.xlarge").problem_fields == ("max_model_len",)  # 131k tokens of KV do not fit


def test_what_would_fit_is_said_once() -> None:
    # TP 8 on one A10G, and at TP 8 the 131k default context does not fit: two problems, one list.
    r = plan(LLAMA_70B, "g5.2xlarge", tensor_parallel_size=8)
    assert r.problem_fields == ("tensor_parallel_size", "max_model_len")
    assert sum("smallest that fit" in p for p in r.problems) == 1 and "smallest that fit" in r.problems[-1]
