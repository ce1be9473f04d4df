"""`make synth` prints one summary block per environment, with real counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cfn import ENVIRONMENTS
from tools.synth_summary import summary

pytestmark = pytest.mark.synth


def test_summary_counts_each_environments_stacks_and_resources(cdk_out: Path, templates: dict) -> None:
    lines = summary(cdk_out).splitlines()
    for env in ENVIRONMENTS:
        stacks = templates[env]
        total = sum(len(t["Resources"]) for t in stacks.values())
        assert f"{env}: {len(stacks)} stacks, {total} resources" in lines
    network = json.loads(json.dumps(templates["prod"]["prod-network"]))
    assert any(line.split()[:2] == ["prod-network", str(len(network["Resources"]))] for line in lines)
