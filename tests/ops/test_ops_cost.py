"""`llmhost cost`: every figure against arithmetic done here, from the prices file's own numbers."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic
import pytest

from llm_hosting_constructs.schedule import OffHours
from llmhost import cost
from llmhost.errors import LlmhostError

PRICES = cost.load_prices()
P = PRICES.data
WEEKDAYS_7_TO_19 = OffHours(scale_down_cron="0 19 ? * MON-FRI *", scale_up_cron="0 7 ? * MON-FRI *")
WEEKS_PER_MONTH = 730 / 168


def _deployment(**changes: object) -> cost.Deployment:
    base: dict[str, object] = dict(
        name="t",
        region="us-east-1",
        model_id="meta-llama/Llama-3.1-8B-Instruct",
        model_bytes_on_disk=16_060_522_496,
        availability_zones=2,
        nat_gateways=0,
        waf_enabled=False,
        ecs_instance_type="g6.2xlarge",
        ecs_instances=1,
        ecs_max_instances=4,
    )
    base.update(changes)
    return cost.Deployment(**base)  # type: ignore[arg-type]


def _line(lines: list[cost.CostLine], prefix: str) -> float:
    (match,) = [line.monthly_usd for line in lines if line.item.startswith(prefix)]
    return match


def test_prices_file_states_its_date_region_and_sources() -> None:
    assert PRICES.read_on == "2026-11-28" and PRICES.region == "us-east-1"
    assert "ec2_on_demand_per_hour" in P["sources"]
    assert P["ec2_on_demand_per_hour"]["g5.xlarge"] == 1.006


def test_schedule_hours() -> None:
    assert cost.on_hours_per_week(None) == 168
    assert cost.on_hours_per_week(WEEKDAYS_7_TO_19) == 5 * 12
    # Down every evening at 22:00, up every morning at 06:00: 16 h a day.
    assert cost.on_hours_per_week(OffHours(scale_down_cron="0 22 ? * * *", scale_up_cron="0 6 ? * * *")) == 7 * 16
    # Off for the weekend only: down Friday 20:00, up Monday 06:00 (AWS day numbers: 6 = FRI, 2 = MON).
    assert cost.on_hours_per_week(OffHours(scale_down_cron="0 20 ? * 6 *", scale_up_cron="0 6 ? * 2 *")) == 168 - (4 + 48 + 6)
    assert cost.scale_ups_per_week(WEEKDAYS_7_TO_19) == 5


def test_unreadable_schedule_is_one_line() -> None:
    # Valid AWS cron, but monthly (day-of-month 1) or at several hours: not a weekly schedule.
    with pytest.raises(LlmhostError, match="weekly schedules"):
        cost.on_hours_per_week(OffHours(scale_down_cron="0 19 1 * ? *", scale_up_cron="0 7 ? * MON-FRI *"))
    with pytest.raises(LlmhostError, match="weekly schedules"):
        cost.on_hours_per_week(OffHours(scale_down_cron="0 19,21 ? * MON-FRI *", scale_up_cron="0 7 ? * MON-FRI *"))
    # An invalid cron never reaches the cost model: the off-hours shape the config uses rejects it.
    with pytest.raises(pydantic.ValidationError, match="day-of-week 'MOX-FRI'"):
        OffHours(scale_down_cron="0 19 ? * MOX-FRI *")


def test_gpu_hours_with_the_dev_schedule() -> None:
    lines = cost.self_hosted_lines(_deployment(off_hours=WEEKDAYS_7_TO_19), cost.Traffic(0, 0, 0), PRICES)
    # 60 h a week × 730/168 weeks × $0.9776
    assert _line(lines, "GPU instances") == pytest.approx(60 * 730 / 168 * 0.9776) == pytest.approx(254.87, abs=0.01)
    assert _line(lines, "EBS root") == pytest.approx(200 * 0.08 * 60 / 168)
    # 14.96 GiB stored + 5 cold starts a week reading it at $0.03/GB.
    gib = 16_060_522_496 / 2**30
    assert _line(lines, "EFS") == pytest.approx(gib * 0.30 + 5 * WEEKS_PER_MONTH * gib * 0.03)


def test_always_on_fleet_and_fixed_network_charges() -> None:
    lines = cost.self_hosted_lines(
        _deployment(ecs_instances=2, nat_gateways=1, waf_enabled=True), cost.Traffic(0, 0, 0), PRICES
    )
    assert _line(lines, "GPU instances") == pytest.approx(2 * 730 * 0.9776)
    assert _line(lines, "NAT") == pytest.approx(730 * 0.045)
    assert _line(lines, "VPC interface endpoints") == pytest.approx(11 * 2 * 730 * 0.01) == pytest.approx(160.6)
    assert _line(lines, "WAF") == pytest.approx(5 + 4 * 1)
    assert _line(lines, "Application Load Balancer") == pytest.approx(730 * 0.0225)
    assert _line(lines, "EFS") == pytest.approx(16_060_522_496 / 2**30 * 0.30)  # no scheduled cold starts


def test_per_request_charges() -> None:
    traffic = cost.Traffic(100_000, 500, 200)
    lines = cost.self_hosted_lines(_deployment(waf_enabled=True), traffic, PRICES)
    requests = 100_000 * 730 / 24  # 3,041,667 a month
    assert _line(lines, "API Gateway") == pytest.approx(requests / 1e6 * 3.50)
    assert _line(lines, "WAF") == pytest.approx(5 + 4 + requests / 1e6 * 0.60)
    gb_out = requests * 200 * 250 / 1e9
    assert _line(lines, "Data transfer out") == pytest.approx(gb_out * 0.09)
    # ALB: bytes dominate (≈0.21 GB/h) over new connections (1.16/s ÷ 25 = 0.046 LCU).
    gb_per_hour = requests * (600 + 500 * 4 + 200 * 250) / 1e9 / 730
    assert _line(lines, "Application Load Balancer") == pytest.approx(730 * (0.0225 + gb_per_hour * 0.008))


def test_sagemaker_endpoint_runs_all_month() -> None:
    d = _deployment(
        ecs_instance_type=None, ecs_instances=0, sagemaker_instance_type="ml.g5.2xlarge", sagemaker_instances=2
    )
    lines = cost.self_hosted_lines(d, cost.Traffic(0, 0, 0), PRICES)
    assert _line(lines, "SageMaker endpoint") == pytest.approx(2 * 730 * 1.515)
    assert not [line for line in lines if line.item.startswith(("GPU", "EFS", "Application"))]
    # Down to one instance outside weekdays 07-19: 2 × 260.7 h + 1 × 469.3 h.
    nightly = cost.self_hosted_lines(
        _deployment(
            ecs_instance_type=None,
            sagemaker_instance_type="ml.g5.2xlarge",
            sagemaker_instances=2,
            sagemaker_off_hours=WEEKDAYS_7_TO_19,
        ),
        cost.Traffic(0, 0, 0),
        PRICES,
    )
    day = 60 * 730 / 168
    assert _line(nightly, "SageMaker endpoint") == pytest.approx((2 * day + (730 - day)) * 1.515)


def test_api_cost_and_crossover_against_a_closed_form() -> None:
    # SageMaker-only, no WAF: self-hosted = F + v × r exactly, so r* = F / (a − v).
    d = _deployment(
        ecs_instance_type=None, ecs_instances=0, sagemaker_instance_type="ml.g5.xlarge", sagemaker_instances=1
    )
    traffic = cost.Traffic(10_000, 1000, 500)
    api = cost.ApiPrice("x", 3.00, 15.00)
    month = 730 / 24
    a = month * (1000 * 3.00 + 500 * 15.00) / 1e6  # API $ per (request/day)
    assert cost.api_monthly(traffic, api) == pytest.approx(10_000 * a)
    fixed = 730 * 1.408 + 11 * 2 * 730 * 0.01
    v = month * (3.50 / 1e6 + 500 * 250 / 1e9 * 0.09)
    r_star = fixed / (a - v)
    assert cost.crossover(d, traffic, PRICES, api) == pytest.approx(r_star, rel=1e-6)
    # (730 × 1.408 + 160.6) / (0.319375 − 0.000449) = 1,188.44 / 0.318926
    assert round(r_star) == 3_726


def test_no_crossover_when_the_api_is_cheaper_per_request_than_serving() -> None:
    d = _deployment(sagemaker_instance_type=None)
    assert cost.crossover(d, cost.Traffic(1, 10, 10), PRICES, cost.ApiPrice("free", 0.0, 0.0)) is None


def test_fleet_grows_with_traffic_when_a_throughput_is_given() -> None:
    d = _deployment(ecs_instances=1, ecs_max_instances=2)
    traffic = cost.Traffic(1_000_000, 500, 200)  # 2,314.8 output tokens/s all day
    assert cost.ecs_instances_needed(d, traffic, 1000) == math.ceil(1_000_000 * 200 / 86_400 / 1000) == 3
    assert cost.ecs_instances_needed(d, traffic, None) == 1
    # With the dev schedule a week's traffic lands in its 60 serving hours: 7 × 2e8 / 216,000 s = 6,481 tokens/s.
    assert cost.ecs_instances_needed(_deployment(off_hours=WEEKDAYS_7_TO_19), traffic, 1000) == 7
    est = cost.estimate(d, traffic, PRICES, cost.ApiPrice("x", 1, 1), instance_output_tps=1000)
    assert est.ecs_instances == 3
    assert any("needs 3 instances but max_capacity is 2" in n for n in est.notes)
    assert _line(est.lines, "GPU instances") == pytest.approx(3 * 730 * 0.9776)


def test_api_price_choice() -> None:
    assert cost.api_price_for(PRICES, "meta-llama/Llama-3.1-8B-Instruct", None, None).input_per_million == 0.22
    default = cost.api_price_for(PRICES, "Qwen/Qwen2.5-7B-Instruct", None, None)
    assert default.name == P["commercial_api"]["default"]["name"]
    given = cost.api_price_for(PRICES, "Qwen/Qwen2.5-7B-Instruct", 1.0, 2.0)
    assert (given.input_per_million, given.output_per_million) == (1.0, 2.0)
    with pytest.raises(LlmhostError, match="give both --api-input-price and --api-output-price"):
        cost.api_price_for(PRICES, "x", 1.0, None)


def test_missing_price_names_the_file() -> None:
    with pytest.raises(
        LlmhostError, match=r"no us-east-1 price for p5en.48xlarge .* add it under ec2_on_demand_per_hour"
    ):
        PRICES.hourly("p5en.48xlarge")


def test_interface_endpoint_count_matches_the_network_construct() -> None:
    from llm_hosting_constructs.network import INTERFACE_ENDPOINTS

    assert cost.INTERFACE_ENDPOINTS == len(INTERFACE_ENDPOINTS)


def test_every_catalog_ec2_gpu_type_of_the_cheap_families_has_a_price() -> None:
    from llm_hosting_constructs.sizing import instances

    for family in ("g5", "g6", "g6e", "ml.g5"):
        for inst in instances(family):
            assert PRICES.hourly(inst.name) > 0


# --- the command ----------------------------------------------------------------------


def one_request(llmhost: Callable[..., Any], env: str, *extra: str) -> Any:
    """`llmhost cost` of one request a day of one token in and out: for what does not depend on traffic."""
    return llmhost("cost", "--env", env, "--requests-per-day", "1", "--input-tokens", "1", "--output-tokens", "1", *extra)


def test_cost_command(llmhost: Callable[..., object], write_env: Callable[..., Path], tmp_path: Path) -> None:
    write_env("dev")  # the repository's dev.yaml: g6.2xlarge, weekdays 07-19, 1 NAT, 2 AZs, no WAF
    png = tmp_path / "cost.png"
    r = llmhost("cost", "--env", "dev", "--requests-per-day", "20000", "--input-tokens", "500", "--output-tokens", "200",
                "--plot", str(png))  # fmt: skip
    assert r.code == 0, r.err
    assert "254.87" in r.out  # GPU hours, as worked out above
    api = 20_000 * 730 / 24 * (500 + 200) * 0.22 / 1e6
    assert f"{api:,.2f}" == "93.68" and "93.68" in r.out
    assert "crossover:" in r.out and "the API is cheaper" in r.out
    assert "read 2026-11-28" in r.out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cost_command_errors(llmhost: Callable[..., object], write_env: Callable[..., Path]) -> None:
    write_env("dev")
    r = llmhost("cost", "--env", "qa", "--requests-per-day", "1", "--input-tokens", "1", "--output-tokens", "1")
    assert r.code == 1 and "llmhost: error: unknown environment 'qa'" in r.err and "dev" in r.err
    r = llmhost("cost", "--env", "dev", "--requests-per-day", "1", "--input-tokens", "1")
    assert r.code == 2 and "--output-tokens" in r.err
    write_env("big", ecs={"instance_type": "p5en.48xlarge"})
    r = llmhost("cost", "--env", "big", "--requests-per-day", "1", "--input-tokens", "1", "--output-tokens", "1")
    assert r.code == 1 and "no us-east-1 price for p5en.48xlarge" in r.err


def test_another_prices_file(llmhost: Callable[..., object], write_env: Callable[..., Path], tmp_path: Path) -> None:
    write_env("dev")
    data = dict(P, read_on="2027-01-01", ec2_on_demand_per_hour={"g6.2xlarge": 2.0})
    mine = tmp_path / "prices.json"
    mine.write_text(json.dumps(data))
    r = llmhost(
        "cost",
        "--env",
        "dev",
        "--requests-per-day",
        "0",
        "--input-tokens",
        "0",
        "--output-tokens",
        "0",
        "--prices",
        str(mine),
    )
    assert r.code == 0, r.err
    assert f"{60 * 730 / 168 * 2.0:,.2f}" in r.out and "read 2027-01-01" in r.out  # 521.43
    write_env("big", ecs={"instance_type": "g6.4xlarge"})
    r = one_request(llmhost, "big", "--prices", str(mine))
    assert r.code == 1 and f"add it under ec2_on_demand_per_hour in {mine}" in r.err
    mine.write_text("{not json")
    r = one_request(llmhost, "dev", "--prices", str(mine))
    assert r.code == 1 and f"cannot read prices from {mine}" in r.err


@pytest.mark.parametrize("name", ["out.txt", "out"])
def test_plot_to_a_file_matplotlib_cannot_write_is_one_line(
    llmhost: Callable[..., object], write_env: Callable[..., Path], tmp_path: Path, name: str
) -> None:
    """`--plot out.txt` ended in matplotlib's traceback; now one line that lists the formats, before any work."""
    write_env("dev")
    target = tmp_path / name
    r = one_request(llmhost, "dev", "--plot", str(target))
    assert r.code == 1 and r.err.count("\n") == 1, r.err
    assert r.err.startswith(f"llmhost: error: --plot {target}: ")
    assert ".png" in r.err and ".svg" in r.err and ".pdf" in r.err
    assert r.out == "" and not target.exists()


def test_plot_format_follows_the_extension(
    llmhost: Callable[..., object], write_env: Callable[..., Path], tmp_path: Path
) -> None:
    write_env("dev")
    svg = tmp_path / "cost.svg"
    r = one_request(llmhost, "dev", "--plot", str(svg))
    assert r.code == 0, r.err
    assert b"<svg" in svg.read_bytes()[:500]
