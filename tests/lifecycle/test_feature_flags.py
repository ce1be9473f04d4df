"""CDK feature flags: every flag configured at the recommended value, or listed with a reason.

The synthesized assembly carries aws-cdk-lib's own `feature-flag-report` (each flag's user value and
recommended value), so this reads what the library recommends, not a list copied from cdk.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.cfn import ROOT

LEFT_OFF = "## Flags not at the recommended value"


def _manifests(cdk_out: Path) -> dict[str, dict]:
    return {a.name.removeprefix("assembly-"): json.loads((a / "manifest.json").read_text()) for a in cdk_out.glob("assembly-*")}


@pytest.fixture(scope="module")
def flag_report(cdk_out: Path) -> dict[str, dict]:
    manifest = next(iter(_manifests(cdk_out).values()))
    return manifest["artifacts"]["aws-cdk-lib/feature-flag-report"]["properties"]["flags"]


def test_every_flag_is_configured(flag_report: dict[str, dict]) -> None:
    unset = sorted(name for name, flag in flag_report.items() if "userValue" not in flag)
    assert not unset, f"{len(unset)} feature flags not configured in cdk.json: {unset}"


def test_flags_off_the_recommendation_are_explained(flag_report: dict[str, dict]) -> None:
    doc = (ROOT / "docs" / "feature-flags.md").read_text()
    explained = doc.split(LEFT_OFF, 1)[1]
    differing = sorted(n for n, f in flag_report.items() if "userValue" in f and f["userValue"] != f.get("recommendedValue"))
    unexplained = [n for n in differing if f"`{n}`" not in explained]
    assert not unexplained, f"set against the recommendation without a reason in docs/feature-flags.md: {unexplained}"


def test_stacks_carry_the_environment_tags(cdk_out: Path) -> None:
    """@aws-cdk/core:explicitStackTags drops stack tags set through Tags.of(stage); CloudFormation
    propagates stack tags to resources a template cannot tag, so they must stay on the stacks."""
    for env, manifest in _manifests(cdk_out).items():
        cfg = yaml.safe_load((ROOT / "config" / f"{env}.yaml").read_text())
        expected = {"environment": cfg["name"], **cfg.get("tags", {})}
        stacks = {k: a for k, a in manifest["artifacts"].items() if a["type"] == "aws:cloudformation:stack"}
        assert stacks
        for name, artifact in stacks.items():
            assert artifact["properties"].get("tags") == expected, f"{name}: stack tags {artifact['properties'].get('tags')}"
