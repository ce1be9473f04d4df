"""Snapshots of every stack of every environment (a complement to the fine-grained tests).

Asset hashes are masked so that a change in the gateway's source does not churn every snapshot.
A mismatch names the stack and each resource (or output) that differs. Write them after an intended
change or for a new config/<env>.yaml with one command: `make snapshots`.

They live in tests/gates/__snapshots__, or in $LLMHOST_TEST_SNAPSHOT_DIR (with
$LLMHOST_TEST_CONFIG_DIR, a team's own environments keep their own snapshots).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from syrupy.extensions.json import JSONSnapshotExtension

from tests.cfn import ENVIRONMENTS

pytestmark = pytest.mark.synth
ASSET_HASH = re.compile(r"\b[0-9a-f]{64}\b")
SNAPSHOT_DIR_ENV = "LLMHOST_TEST_SNAPSHOT_DIR"
UPDATE = "make snapshots"
# Template sections whose entries are named (by logical id or key): a difference is reported per entry.
NAMED_SECTIONS = ("Resources", "Outputs", "Parameters", "Conditions", "Mappings", "Rules")


class StackSnapshots(JSONSnapshotExtension):
    @classmethod
    def dirname(cls, *, test_location: Any) -> str:
        base = os.environ.get(SNAPSHOT_DIR_ENV)
        if not base:
            return super().dirname(test_location=test_location)
        return str(Path(base) / test_location.basename)


def masked(template: dict) -> dict:
    return json.loads(ASSET_HASH.sub("<asset-hash>", json.dumps(template, sort_keys=True)))


def differences(stack: str, stored: dict | None, current: dict) -> list[str]:
    """One line per differing resource, output, ... of ``stack``: what it is and which keys changed."""
    if stored is None:
        return [f"{stack}: no snapshot yet"]
    lines = []
    for section in sorted(set(stored) | set(current)):
        old, new = stored.get(section), current.get(section)
        if old == new:
            continue
        if section not in NAMED_SECTIONS or not isinstance(old, dict) or not isinstance(new, dict):
            lines.append(f"{stack}: {section} changed")
            continue
        for key in sorted(set(old) | set(new)):
            before, after = old.get(key), new.get(key)
            if before == after:
                continue
            kind = (after or before or {}).get("Type", "") if section == "Resources" else ""
            noun = "mapping" if section == "Mappings" else section[:-1].lower()
            what = f"{stack}: {noun} {key}" + (f" ({kind})" if kind else "")
            if before is None or after is None:
                lines.append(f"{what} {'added' if before is None else 'removed'}")
            else:
                lines.append(f"{what} changed: {', '.join(changed_paths(before, after))}")
    return lines


def changed_paths(before: Any, after: Any, prefix: str = "", depth: int = 2) -> list[str]:
    """Dotted keys, up to ``depth`` levels down, under which ``before`` and ``after`` differ."""
    if depth == 0 or not isinstance(before, dict) or not isinstance(after, dict):
        return [prefix or "(value)"]
    return [
        path
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
        for path in changed_paths(before.get(key), after.get(key), f"{prefix}{'.' if prefix else ''}{key}", depth - 1)
    ]


@pytest.fixture
def snapshot_json(snapshot):  # type: ignore[no-untyped-def]
    return snapshot.use_extension(StackSnapshots)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_stacks_match_snapshots(templates: dict, env: str, snapshot_json: Any) -> None:
    stacks = templates[env]
    assert stacks, f"no stacks synthesized for {env}"
    problems: list[str] = []
    for name, template in stacks.items():
        current = masked(template)
        if snapshot_json(name=name) == current:
            continue
        recalled = snapshot_json.executions[max(snapshot_json.executions)].recalled_data
        problems += differences(name, json.loads(recalled) if recalled else None, current)
    assert not problems, "\n".join([*problems, f"if intended, update the snapshots: {UPDATE}"])
