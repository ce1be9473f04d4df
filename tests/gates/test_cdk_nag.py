"""cdk-nag AwsSolutions runs on the whole app through `Validations` and passes."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks

pytestmark = pytest.mark.synth


def report(cdk_out: Path) -> dict:
    data = json.loads((cdk_out / "validation-report.json").read_text())
    return {p["pluginName"]: p for p in data["pluginReports"]}


def test_aws_solutions_ran_and_passed(cdk_out: Path) -> None:
    nag = report(cdk_out)["AwsSolutions"]
    assert nag["conclusion"] == "success"
    assert nag["violations"] == []


def test_every_acknowledgment_has_a_specific_reason(cdk_out: Path) -> None:
    suppressed = report(cdk_out)["AwsSolutions"]["suppressedViolations"]
    for item in suppressed:
        reason = item["reason"].strip()
        assert len(reason) >= 30, f"{item['acknowledgedId']} at {item['acknowledgedAt']}: reason too vague: {reason!r}"


def test_an_unacknowledged_finding_fails_synth(tmp_path: Path) -> None:
    """The gate is real: a bucket without SSL enforcement or logging makes synth raise."""
    app = cdk.App(outdir=str(tmp_path), builtin_cloud_formation_validation=False)
    stack = cdk.Stack(app, "Bad")
    s3.Bucket(stack, "Bucket")
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    with pytest.raises(RuntimeError, match=r"(?s)ValidationFailed.*AwsSolutions-S10"):
        app.synth()
    findings = report(tmp_path)["AwsSolutions"]["violations"]
    assert any(v["ruleName"] == "AwsSolutions-S10" for v in findings)
