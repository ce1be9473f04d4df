"""Synth is deterministic and offline: a second synth gives byte-identical templates."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cfn import ROOT, cdk_synth

pytestmark = pytest.mark.synth


def test_two_synths_are_byte_identical(cdk_out: Path, tmp_path: Path) -> None:
    result = cdk_synth(tmp_path)
    assert result.returncode == 0, result.stderr
    first = sorted(p.relative_to(cdk_out) for p in cdk_out.rglob("*.template.json"))
    second = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.template.json"))
    assert first and first == second
    for rel in first:
        assert (cdk_out / rel).read_bytes() == (tmp_path / rel).read_bytes(), f"{rel} differs between synths"


def test_synth_needs_no_lookups(cdk_out: Path) -> None:
    """Nothing was missing from context: no lookup was attempted and no dummy AZ slipped in."""
    for manifest in cdk_out.rglob("manifest.json"):
        assert '"missing"' not in manifest.read_text(), f"{manifest} records a context lookup"
    for template in cdk_out.rglob("*.template.json"):
        assert "dummy1a" not in template.read_text(), template.name
    # The committed context is the only source of looked-up values (the GPU AMI id).
    assert (ROOT / "cdk.context.json").exists()
