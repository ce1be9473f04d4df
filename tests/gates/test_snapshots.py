"""Snapshots of every stack of every environment (a complement to the fine-grained tests).

Asset hashes are masked so that a change in the gateway's source does not churn every snapshot.
Update after an intended change: `.venv/bin/python -m pytest tests/gates/test_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

import json
import re

import pytest
from syrupy.extensions.json import JSONSnapshotExtension

from tests.cfn import ENVIRONMENTS

pytestmark = pytest.mark.synth
ASSET_HASH = re.compile(r"\b[0-9a-f]{64}\b")


def masked(template: dict) -> dict:
    return json.loads(ASSET_HASH.sub("<asset-hash>", json.dumps(template, sort_keys=True)))


@pytest.fixture
def snapshot_json(snapshot):
    return snapshot.use_extension(JSONSnapshotExtension)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_stacks_match_snapshots(templates: dict, env: str, snapshot_json) -> None:
    stacks = templates[env]
    assert stacks, f"no stacks synthesized for {env}"
    for name, template in stacks.items():
        assert masked(template) == snapshot_json(name=name)
