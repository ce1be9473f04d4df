"""Plausible config changes an operator makes after the first deploy, applied to the committed files.

Each change yields candidate edits of one environment file; the first candidate the schema accepts
is used, in the first environment (sorted by name) it fits. Environments are discovered from
config/*.yaml. Changes are batched into rounds: one config dir per round, holding only the
environments changed in it (one change each), synthesized once.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from config.schema import ConfigError, load_environment
from tests.cfn import ENVIRONMENTS, ROOT, cdk_synth
from tools.lifecycle import Environment, load_assembly

Edit = Callable[[dict], Iterator[dict]]


@dataclass(frozen=True)
class Change:
    name: str
    edit: Edit


@dataclass(frozen=True)
class Applied:
    change: str
    environment: str
    after: Environment


def _edited(raw: dict, **dotted: object) -> dict:
    data = copy.deepcopy(raw)
    for path, value in dotted.items():
        *parents, leaf = path.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return data


def _ecs_instance_type(raw: dict) -> Iterator[dict]:
    if "ecs" in raw:
        for t in ("g6e.4xlarge", "g6e.2xlarge", "g6.4xlarge", "g5.4xlarge", "g5.2xlarge"):
            if t != raw["ecs"]["instance_type"]:
                yield _edited(raw, **{"ecs.instance_type": t})


def _model_revision(raw: dict) -> Iterator[dict]:
    old, new = raw["model"]["revision"], "5f0b02c75b57c5855da9ae460ce51323ea669d8a"
    # A prefix staged per revision moves with it, as an operator would stage the new files first.
    data = yaml.safe_load(yaml.safe_dump(raw).replace(old, new))
    yield data


def _max_model_len(raw: dict) -> Iterator[dict]:
    yield _edited(raw, **{"model.max_model_len": raw["model"]["max_model_len"] // 2})


def _tenant_added(raw: dict) -> Iterator[dict]:
    if "ecs" in raw:
        tenants = raw["api"].get("tenants", []) + [{"name": "new-team", "rate_limit": 5, "burst_limit": 10}]
        yield _edited(raw, **{"api.tenants": tenants})


def _certificate_added(raw: dict) -> Iterator[dict]:
    if "ecs" in raw and not raw["ecs"].get("certificate_arn"):
        arn = f"arn:aws:acm:{raw['region']}:{raw['account']}:certificate/0b2c4d6e-1a3b-4c5d-8e9f-a0b1c2d3e4f5"
        yield _edited(raw, **{"ecs.certificate_arn": arn})
        # Where the schema also wants the name on the certificate (the front door verifies it).
        yield _edited(raw, **{"ecs.certificate_arn": arn, "ecs.tls_host_name": f"llm-alb.{raw['name']}.example.com"})


def _nat_count(raw: dict) -> Iterator[dict]:
    n = raw["network"].get("nat_gateways", 0)
    for m in (n + 1, n - 1):
        if 0 <= m <= len(raw["availability_zones"]):
            yield _edited(raw, **{"network.nat_gateways": m})


def _alarm_threshold(raw: dict) -> Iterator[dict]:
    current = raw.get("monitoring", {}).get("thresholds", {}).get("ttft_p95_ms", 5000)
    yield _edited(raw, **{"monitoring.thresholds.ttft_p95_ms": current * 2})


def _off_hours_on(raw: dict) -> Iterator[dict]:
    if "ecs" in raw and not raw["ecs"].get("off_hours"):
        yield _edited(raw, **{"ecs.off_hours": {}})


def _sagemaker_instance_type(raw: dict) -> Iterator[dict]:
    if "sagemaker" in raw:
        for t in ("ml.g6e.4xlarge", "ml.g6e.2xlarge", "ml.g5.4xlarge", "ml.g6.4xlarge"):
            if t != raw["sagemaker"]["instance_type"]:
                yield _edited(raw, **{"sagemaker.instance_type": t})


def _waf_off(raw: dict) -> Iterator[dict]:
    if raw.get("api", {}).get("waf_enabled"):
        yield _edited(raw, **{"api.waf_enabled": False})


def _max_capacity(raw: dict) -> Iterator[dict]:
    if "ecs" in raw:
        yield _edited(raw, **{"ecs.max_capacity": raw["ecs"]["max_capacity"] + 2})


def _log_retention(raw: dict) -> Iterator[dict]:
    if "ecs" in raw:
        yield _edited(raw, **{"ecs.log_retention_days": 180 if raw["ecs"]["log_retention_days"] != 180 else 365})


CHANGES = [
    Change("ecs-instance-type", _ecs_instance_type),
    Change("model-revision", _model_revision),
    Change("max-model-len", _max_model_len),
    Change("tenant-added", _tenant_added),
    Change("certificate-added", _certificate_added),
    Change("nat-count", _nat_count),
    Change("alarm-threshold", _alarm_threshold),
    Change("off-hours-on", _off_hours_on),
    Change("sagemaker-instance-type", _sagemaker_instance_type),
    Change("waf-off", _waf_off),
    Change("ecs-max-capacity", _max_capacity),
    Change("log-retention", _log_retention),
]


def _first_valid(change: Change, env: str, raw: dict, scratch: Path) -> dict | None:
    for candidate in change.edit(raw):
        path = scratch / f"{env}.yaml"
        path.write_text(yaml.safe_dump(candidate))
        try:
            load_environment(path)
        except ConfigError:
            continue
        return candidate
    return None


def plan_rounds(changes: list[Change]) -> list[dict[str, tuple[str, dict]]]:
    """[{environment: (change name, edited config)}]: each change once, one change per env per round."""
    import tempfile

    raws = {env: yaml.safe_load((ROOT / "config" / f"{env}.yaml").read_text()) for env in ENVIRONMENTS}
    rounds: list[dict[str, tuple[str, dict]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for change in changes:
            fits = {env: c for env in ENVIRONMENTS if (c := _first_valid(change, env, raws[env], Path(tmp))) is not None}
            if not fits:
                raise AssertionError(f"change {change.name!r} fits no environment in config/: update tests/lifecycle/changes.py")
            # The environment whose next free round comes first, so rounds stay few and full.
            slot = {env: next((i for i, r in enumerate(rounds) if env not in r), len(rounds)) for env in fits}
            env = min(fits, key=lambda e: (slot[e], e))
            if slot[env] == len(rounds):
                rounds.append({})
            rounds[slot[env]][env] = (change.name, fits[env])
    return rounds


def synth_rounds(rounds: list[dict[str, tuple[str, dict]]], workdir: Path) -> dict[str, Applied]:
    """{change name: Applied} after one real synth per round (two at a time)."""

    def run(index: int) -> dict[str, Environment]:
        config_dir = workdir / f"round{index}" / "config"
        config_dir.mkdir(parents=True)
        for env, (_, data) in rounds[index].items():
            (config_dir / f"{env}.yaml").write_text(yaml.safe_dump(data))
        outdir = workdir / f"round{index}" / "cdk.out"
        result = cdk_synth(outdir, "-c", f"config_dir={config_dir}")
        assert result.returncode == 0, f"synth of round {index} failed:\n{result.stderr[-3000:]}"
        return load_assembly(outdir)

    with ThreadPoolExecutor(max_workers=2) as pool:
        assemblies = list(pool.map(run, range(len(rounds))))
    return {
        change: Applied(change, env, assemblies[i][env])
        for i, changed in enumerate(rounds)
        for env, (change, _) in changed.items()
    }
