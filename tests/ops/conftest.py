"""Fixtures of the llmhost tests: moto for AWS (AWS cannot be reached from here), a config
directory derived from the repository's own dev.yaml, and a runner that captures output."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

from llmhost.cli import run

REPO = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
ACCOUNT = DEFAULT_ACCOUNT_ID  # the account moto answers for


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def llmhost(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """Run ``llmhost ARGS`` in-process, as the console script would; return exit code and output."""
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps table cells at the terminal width

    def _run(*args: str) -> Result:
        capsys.readouterr()
        code = run(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return _run


@pytest.fixture
def write_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """``write_env(name, **changes)``: config/NAME.yaml from the repository's dev.yaml with nested
    changes applied (``{"ecs": {"instance_type": "g5.xlarge"}}``), in a config dir llmhost uses."""
    config = tmp_path / "config"
    config.mkdir()
    shutil.copy(REPO / "config" / "schema.py", config / "schema.py")
    monkeypatch.setenv("LLMHOST_CONFIG_DIR", str(config))

    def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
        for key, value in changes.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                _merge(base[key], value)
            elif value is None:
                base.pop(key, None)
            else:
                base[key] = value
        return base

    def _write(name: str, **changes: Any) -> Path:
        data = yaml.safe_load((REPO / "config" / "dev.yaml").read_text())
        data = _merge(data, {"name": name, **changes})
        path = config / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return _write


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto for every AWS call, with throw-away credentials (never real ones)."""
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An environment where botocore finds no credentials anywhere (and asks no metadata service)."""
    for var in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def deploy_stack(name: str, stack_outputs: dict[str, str]) -> None:
    """A CloudFormation stack in moto whose outputs are ``stack_outputs``."""
    import json

    template = {
        "Resources": {"Marker": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {key: {"Value": value} for key, value in stack_outputs.items()},
    }
    boto3.client("cloudformation", region_name=REGION).create_stack(StackName=name, TemplateBody=json.dumps(template))
