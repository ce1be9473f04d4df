"""One name per setting, from the YAML field to the construct prop (issue 14), checked on the code.

Two checks, both mechanical so that a new setting cannot start a second name:

- every field of a stack's settings dataclass is a config field of its sections, or is declared
  ``stacks.derived(why)`` (what app.py derives it from);
- every keyword that ``app.py`` or a stack passes to a settings dataclass or to a construct of
  ``llm_hosting_constructs`` from a config or settings attribute is named as that attribute, read
  from the source (AST).

"The same name" allows only these spellings, each a rule rather than a list of exceptions:
- a unit suffix (``_seconds``, ``_ms``, ``_days``) is dropped where the value becomes a ``Duration``
  or ``RetentionDays`` (``Duration.seconds(s.x_seconds)`` -> ``x=``, ``RETENTION[c.x_days]`` -> ``x=``);
- a nested section qualifies its fields when they are flattened (``data_capture.sampling_percentage`` ->
  ``data_capture_sampling_percentage``, ``model.id`` -> ``model_id``);
- a prefix that names the receiving construct is dropped in its props (``alb_`` for ``InternalAlb``:
  ``ecs.alb_idle_timeout_seconds`` -> ``InternalAlb(idle_timeout=)``), as in YAML it tells the
  settings of one section apart.
What is left is in ``RENAMED`` below, each with its reason.
"""

from __future__ import annotations

import ast
import dataclasses
import types
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from config.schema import (
    ApiConfig,
    CustomDomain,
    EcsConfig,
    EnvironmentConfig,
    ModelConfig,
    MonitoringConfig,
    NetworkConfig,
    SageMakerConfig,
)
from stacks.api import ApiSettings
from stacks.model_cache import ModelCacheSettings
from stacks.monitoring import MonitoringSettings
from stacks.network import NetworkSettings
from stacks.sagemaker import SageMakerSettings
from stacks.serving import ServingSettings

ROOT = Path(__file__).resolve().parents[2]
UNITS = ("_seconds", "_ms", "_days")

SECTIONS: dict[type, tuple[type[BaseModel], ...]] = {
    NetworkSettings: (NetworkConfig, EnvironmentConfig),
    ModelCacheSettings: (EcsConfig,),
    ServingSettings: (EcsConfig, ModelConfig),
    SageMakerSettings: (SageMakerConfig,),
    ApiSettings: (ApiConfig, CustomDomain, EcsConfig),
    MonitoringSettings: (MonitoringConfig,),
}

CONSTRUCT_PREFIX: dict[str, str] = {
    "InternalAlb": "alb_",
    "ModelCache": "efs_",
    "RegionalWebAcl": "waf_",
    "AlarmTopic": "alarm_",
    "ModelPrewarm": "prewarm_",
    "GatewayAffinity": "affinity_",
    "VllmSettings": "vllm_",
}

RENAMED: dict[tuple[str, str], str] = {
    ("VllmSettings", "served_model_name"): "VllmSettings is named after vLLM's flags (--served-model-name)",
    ("InferenceTask", "gpu_count"): "one GPU per tensor-parallel rank (model.tensor_parallel_size)",
    ("GpuCluster", "container_stop_timeout"): "the ECS agent's ECS_CONTAINER_STOP_TIMEOUT, the task's stop timeout",
    ("GatewayAffinity", "mode"): "ecs.affinity is the mode of the gateways' affinity",
    ("RegionalWebAcl", "log_retention"): "the WAF log is kept as long as the API access log",
    ("OnCallDashboard", "dashboard_name"): "the dashboard is named by the alarms' name_prefix",
}

# Local names that hold a config section (app.py) or a stack's settings (stacks/).
SECTION_OF_NAME: dict[str, str | None] = {
    "cfg": None, "s": None, "settings": None, "ecs": "ecs", "m": "model", "sm": "sagemaker",
    "t": "tenant", "domain": "custom_domain", "thresholds": "thresholds",
}  # fmt: skip
CONVERSIONS = {"RETENTION", "THROUGHPUT"}  # app.py / stacks: config value -> CDK value, same setting


def _models(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        return [m for arg in typing.get_args(annotation) for m in _models(arg)]
    return []


def config_names(model: type[BaseModel]) -> set[str]:
    """A section's field names, and ``<field>_<subfield>`` for its nested sections."""
    names = set(model.model_fields)
    for name, field in model.model_fields.items():
        for sub in _models(field.annotation):
            names |= {f"{name}_{n}" for n in sub.model_fields}
    return names


def _strip_unit(name: str) -> str:
    return next((name.removesuffix(u) for u in UNITS if name.endswith(u)), name)


def spellings(chain: list[str], *, converted: bool, callee: str) -> set[str]:
    """The names a keyword may have when its value is the attribute ``chain`` (e.g. ["s", "vllm", "port"])."""
    leaf, parent = chain[-1], chain[-2] if len(chain) > 1 else None
    parent = SECTION_OF_NAME.get(parent, parent) if parent is not None else None
    names = {leaf} | ({f"{parent}_{leaf}"} if parent else set())
    if converted:
        names |= {_strip_unit(n) for n in names}
    prefix = CONSTRUCT_PREFIX.get(callee)
    if prefix:
        names |= {n.removeprefix(prefix) for n in names}
    return names


def _chain(node: ast.expr) -> list[str] | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id in SECTION_OF_NAME and parts:
        return [node.id, *reversed(parts)]
    return None


def _source(node: ast.expr, converted: bool = False) -> tuple[list[str], bool] | None:
    """The config/settings attribute a keyword's value passes on, and whether its type is converted."""
    if isinstance(node, ast.IfExp):
        return _source(node.body, converted)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {"list", "tuple", "dict"}:
        return _source(node.args[0], converted) if len(node.args) == 1 else None
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in CONVERSIONS:
        return _source(node.slice, True)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "Duration"
        and len(node.args) == 1
    ):
        return _source(node.args[0], True)
    chain = _chain(node)
    return (chain, converted) if chain else None


def _derived(settings: type) -> dict[str, str]:
    return {f.name: f.metadata["derived"] for f in dataclasses.fields(settings) if "derived" in f.metadata}


def _checked_callees(tree: ast.Module) -> set[str]:
    """Constructs and dataclasses of the library imported by the module, and the stacks' settings classes."""
    names = {cls.__name__ for cls in SECTIONS}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("llm_hosting_constructs"):
            names |= {a.asname or a.name for a in node.names if a.name[:1].isupper()}
    return names


def name_chains(path: Path) -> list[tuple[str, str, str, bool]]:
    """(callee, keyword, dotted source, allowed) for every checked keyword in ``path``."""
    tree = ast.parse(path.read_text())
    callees = _checked_callees(tree)
    settings_derived = {cls.__name__: _derived(cls) for cls in SECTIONS}
    rows = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        callee = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        if callee not in callees:
            continue
        for kw in node.keywords:
            source = _source(kw.value) if kw.arg else None
            if source is None:
                continue
            chain, converted = source
            allowed = (
                kw.arg in spellings(chain, converted=converted, callee=callee)
                or (callee, kw.arg) in RENAMED
                or kw.arg in settings_derived.get(callee, {})
            )
            rows.append((callee, kw.arg, ".".join(chain), allowed))
    return rows


MODULES = [ROOT / "app.py", *sorted((ROOT / "stacks").glob("*.py"))]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_every_keyword_from_a_setting_has_the_settings_name(path: Path) -> None:
    wrong = [f"{c}({k}=...{src})" for c, k, src, ok in name_chains(path) if not ok]
    assert not wrong, f"{path.name}: a second name for a setting (rename one side, see this test's docstring): {wrong}"


def test_the_check_sees_the_chains_it_is_meant_to() -> None:
    """Guards the AST walk itself: known chains of each kind are found and judged."""
    rows = {(c, k, src): ok for c, k, src, ok in name_chains(ROOT / "stacks" / "serving.py")}
    assert rows[("InternalAlb", "idle_timeout", "s.alb_idle_timeout_seconds")] is True
    assert rows[("InferenceTask", "vllm_port", "s.vllm.port")] is True
    assert rows[("InferenceService", "scale_queue_depth", "s.scale_queue_depth")] is True
    app_rows = {(c, k, src): ok for c, k, src, ok in name_chains(ROOT / "app.py")}
    assert app_rows[("NetworkSettings", "flow_log_retention", "cfg.network.flow_log_retention_days")] is True
    assert app_rows[("VllmSettings", "model_id", "m.id")] is True
    # What the old names would have been: a second name is caught.
    old = spellings(["ecs", "alb_idle_timeout_seconds"], converted=False, callee="ServingSettings")
    assert "alb_idle_timeout_s" not in old
    assert "bake_time" not in spellings(["s", "rollback_bake_seconds"], converted=True, callee="SageMakerEndpoint")


@pytest.mark.parametrize("settings", list(SECTIONS), ids=lambda c: c.__name__)
def test_every_settings_field_is_a_config_field_or_documented_as_derived(settings: type) -> None:
    names = set().union(*(config_names(m) for m in SECTIONS[settings]))
    derived = _derived(settings)
    for f in dataclasses.fields(settings):
        if f.name in derived:
            assert f.name not in names, f"{settings.__name__}.{f.name} is a config field: do not declare it derived"
            continue
        assert f.name in names or any(f.name + u in names for u in UNITS), (
            f"{settings.__name__}.{f.name} is no config field of {[m.__name__ for m in SECTIONS[settings]]}: "
            "name it as the YAML field, or declare it `= derived(why)`"
        )
