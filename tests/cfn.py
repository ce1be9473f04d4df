"""Helpers for reading synthesized CloudFormation in tests."""

from __future__ import annotations

import os
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
