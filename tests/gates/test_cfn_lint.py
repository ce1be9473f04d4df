"""cfn-lint (the CloudFormation spec) over every synthesized template: no errors, no warnings."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.cfn import ENVIRONMENTS, ROOT

pytestmark = pytest.mark.synth
CFN_LINT = str(ROOT / ".venv/bin/cfn-lint")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_cfn_lint_is_clean(cdk_out: Path, env: str) -> None:
    files = sorted((cdk_out / f"assembly-{env}").glob("*.template.json"))
    assert files, f"no templates for {env}"
    result = subprocess.run(
        [CFN_LINT, "--config-file", str(ROOT / ".cfnlintrc.yaml"), "--", *map(str, files)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_catches_a_broken_template(tmp_path: Path) -> None:
    """The gate can fail: a template with a wrong property type is reported."""
    bad = tmp_path / "bad.template.json"
    bad.write_text('{"Resources": {"B": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": 5, "Nope": 1}}}}')
    result = subprocess.run([CFN_LINT, "--", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "Nope" in result.stdout
