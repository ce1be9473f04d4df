"""checkov's CloudFormation scan over every synthesized template: no failed checks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.cfn import ENVIRONMENTS, ROOT

pytestmark = pytest.mark.synth
CHECKOV = ROOT / ".venv-checkov/bin/checkov"


def run_checkov(directory: Path) -> list[dict]:
    result = subprocess.run(
        [str(CHECKOV), "--config-file", str(ROOT / ".checkov.yaml"), "-d", str(directory), "-o", "json"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(directory), "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
        timeout=600,
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    return [f for r in reports for f in r.get("results", {}).get("failed_checks", [])]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_checkov_passes(cdk_out: Path, env: str) -> None:
    failed = run_checkov(cdk_out / f"assembly-{env}")
    summary = [f"{f['check_id']} {f['resource']} ({f['check_name']})" for f in failed]
    assert not summary, "\n".join(summary)


def test_checkov_catches_an_unencrypted_bucket(tmp_path: Path) -> None:
    (tmp_path / "bad.template.json").write_text(
        '{"AWSTemplateFormatVersion": "2010-09-09", "Resources": {"B": {"Type": "AWS::S3::Bucket", "Properties": {}}}}'
    )
    assert any(f["resource"] == "AWS::S3::Bucket.B" for f in run_checkov(tmp_path))
