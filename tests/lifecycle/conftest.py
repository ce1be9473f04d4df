"""The committed environments as CloudFormation will see them, and the same after config changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lifecycle.changes import CHANGES, Applied, plan_rounds, synth_rounds
from tools.lifecycle import Environment, load_assembly


@pytest.fixture(scope="session")
def assembly(cdk_out: Path) -> dict[str, Environment]:
    """{environment: {stack name: Stack}} of the committed config (the one shared synth)."""
    return load_assembly(cdk_out)


@pytest.fixture(scope="session")
def applied(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Applied]:
    """Every change in CHANGES applied to one environment it fits, synthesized (few synths: each
    round changes several environments of one config dir at once)."""
    rounds = plan_rounds(CHANGES)
    return synth_rounds(rounds, tmp_path_factory.mktemp("lifecycle"))
