"""Helpers for reading synthesized CloudFormation in tests."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR_ENV = "LLMHOST_TEST_CONFIG_DIR"
CONFIG_DIR = Path(os.environ.get(CONFIG_DIR_ENV) or ROOT / "config").resolve()
"""The environments under test: the repository's config/, or another directory given in
$LLMHOST_TEST_CONFIG_DIR (the app is then synthesized with `-c config_dir=` on it)."""
ENVIRONMENTS = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
CDK_ENV = {
    **os.environ,
    "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    "JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION": "1",
    "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
    "CDK_DISABLE_VERSION_CHECK": "1",
}


def cdk_synth(outdir: Path, *extra: str, config_dir: Path = CONFIG_DIR) -> subprocess.CompletedProcess[str]:
    """The real CLI, exactly as `make synth` runs it, on the environments of `config_dir`."""
    return subprocess.run(
        [str(ROOT / "node_modules/.bin/cdk"), "synth", "--quiet", "-o", str(outdir), "-c", f"config_dir={config_dir}", *extra],
        cwd=ROOT,
        env=CDK_ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )


def resources(template: dict, type_: str) -> dict[str, dict]:
    """Resources of one CloudFormation type, by logical id."""
    return {k: v for k, v in template.get("Resources", {}).items() if v["Type"] == type_}


def only(template: dict, type_: str) -> dict:
    """The single resource of a type; fails if there is not exactly one."""
    found = resources(template, type_)
    assert len(found) == 1, f"expected one {type_}, found {sorted(found)}"
    return next(iter(found.values()))


def backend_path(integration: dict) -> str:
    """The path a private integration sends to the backend: the URI's path, each `{name}` replaced by
    the static value its `integration.request.path.name` mapping gives (API Gateway's documented way
    to override the stage-prefixed path). Fails when a URI parameter has no static mapping."""
    uri = integration["Uri"]
    # "https://host:443/{seg0}/{seg1}", or a Fn::Join whose last part is ":80/{seg0}/{seg1}"
    tail = uri["Fn::Join"][1][-1] if isinstance(uri, dict) else uri.split("://", 1)[1]
    path = "/" + tail.split("/", 1)[1]
    mapping = integration.get("RequestParameters", {})
    for name in re.findall(r"\{([^}]+)\}", path):
        value = mapping.get(f"integration.request.path.{name}")
        assert isinstance(value, str) and value.startswith("'") and value.endswith("'"), f"{{{name}}} unmapped"
        path = path.replace(f"{{{name}}}", value[1:-1])
    return path


def count_overrides(acl: dict) -> dict[str, set[str]]:
    """{managed group: rules overridden to Count} of a web ACL's properties."""
    out: dict[str, set[str]] = {}
    for rule in acl["Rules"]:
        group = rule["Statement"].get("ManagedRuleGroupStatement")
        if group is None:
            continue
        assert rule["OverrideAction"] == {"None": {}}, "the group's own actions apply to every rule not overridden"
        overrides = group.get("RuleActionOverrides", [])
        assert all(o["ActionToUse"] == {"Count": {}} for o in overrides)
        out[group["Name"]] = {o["Name"] for o in overrides}
    return out
