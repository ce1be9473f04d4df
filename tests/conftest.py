"""Session-wide fixtures: one real `cdk synth` of every environment, shared by all infra tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cfn import cdk_synth
from tools.synth_summary import stack_templates

pytest_plugins = ["tests.fixtures.engine"]

# Every test that starts the vLLM CPU engine depends on one of these fixtures (the engine, the gateway in
# front of it and the SDK client on the first; tests/local's emulated stack on the second): such tests get
# the `vllm` marker, which `make test-infra` deselects.
ENGINE_FIXTURES = ("tiny_model_dir", "local_runner")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """`make snapshots` (syrupy's --snapshot-update) deletes every snapshot no test asserted: after a run
    that failed (a synth that failed: no test asserted anything) that is all of them. Only a run that
    passed deletes the snapshots of environments that are gone."""
    if session.testsfailed and getattr(session.config.option, "update_snapshots", False):
        session.config.option.disable_unused_snapshots = True


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(f in getattr(item, "fixturenames", ()) for f in ENGINE_FIXTURES):
            item.add_marker(pytest.mark.vllm)


@pytest.fixture(scope="session")
def cdk_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    outdir = tmp_path_factory.mktemp("cdk.out")
    result = cdk_synth(outdir)
    assert result.returncode == 0, f"cdk synth failed:\n{result.stdout}\n{result.stderr}"
    return outdir


@pytest.fixture(scope="session")
def templates(cdk_out: Path) -> dict[str, dict[str, dict]]:
    """{env: {stack name: template dict}}, e.g. templates["prod"]["prod-network"]."""
    return stack_templates(cdk_out)
