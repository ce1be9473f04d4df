"""The environment owner's path: a new config/<env>.yaml is picked up by every per-environment test,
and one documented command (`make snapshots`) writes its snapshots.

Each test points the suite at a temporary config directory ($LLMHOST_TEST_CONFIG_DIR, which the
session's synth passes to the app as `-c config_dir=`) and runs pytest on it in a subprocess.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.cfn import CDK_ENV, CONFIG_DIR_ENV, ROOT

SNAPSHOT_DIR_ENV = "LLMHOST_TEST_SNAPSHOT_DIR"
# The new environment's name: "qa" unless config/ already has one (as README's example suggests adding).
# Its snapshots go to a temporary directory, yet `--snapshot-update` there deletes the repository's
# snapshots of the same test ids as unused: a committed qa environment would lose them.
NEW = next(n for n in ("qa", *(f"qa{i}" for i in range(2, 100))) if not (ROOT / "config" / f"{n}.yaml").exists())


def config_dir_with_new_env(tmp_path: Path, *, committed: bool) -> Path:
    """A config dir holding a copy of dev.yaml named `qa` (and the committed environments if asked)."""
    config = tmp_path / "config"
    config.mkdir()
    if committed:
        for path in (ROOT / "config").glob("*.yaml"):
            shutil.copy(path, config)
    data = yaml.safe_load((ROOT / "config" / "dev.yaml").read_text())
    (config / f"{NEW}.yaml").write_text(yaml.safe_dump({**data, "name": NEW}, sort_keys=False))
    return config


def run(*args: str, env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=ROOT, env={**CDK_ENV, **env}, capture_output=True, text=True, timeout=timeout
    )


def test_a_new_environment_gets_every_per_environment_test(tmp_path: Path) -> None:
    """Collected with a config dir of dev, prod, staging and a new qa (a copy of dev): every test
    parametrized by dev is parametrized by qa as well; nothing in the suite names the environments."""
    config = config_dir_with_new_env(tmp_path, committed=True)
    result = run(
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q", "--snapshot-warn-unused",
        "tests/gates", "tests/stacks", "tests/config/test_schema.py", env={CONFIG_DIR_ENV: str(config)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ids = set(result.stdout.split())
    dev = {i for i in ids if re.search(r"\[dev[\]-]", i)}
    assert len(dev) > 50, sorted(ids)[:20]
    missing = sorted({i.replace("[dev", f"[{NEW}", 1) for i in dev} - ids)
    assert not missing, missing
    for gate in ("test_snapshots.py::test_stacks_match_snapshots", "test_cfn_lint.py::test_cfn_lint_is_clean",
                 "test_checkov.py::test_checkov_passes"):  # fmt: skip
        assert f"tests/gates/{gate}[{NEW}]" in ids


@pytest.mark.synth
def test_make_snapshots_writes_a_new_environment_and_a_change_names_stack_and_resource(tmp_path: Path) -> None:
    """`make snapshots` writes qa's snapshots, the snapshot test then passes, and after a change to
    qa.yaml it fails naming the stack, the resource, what changed and the command (one synth each)."""
    config = config_dir_with_new_env(tmp_path, committed=False)
    snapshots = tmp_path / "snapshots"
    env = {CONFIG_DIR_ENV: str(config), SNAPSHOT_DIR_ENV: str(snapshots)}

    # The Makefile's recipe itself; -o: the installs it depends on are this session's, not to be redone here.
    written = run("make", "-o", "install", "-o", ".venv/.stamp-dev", "snapshots", env=env)
    assert written.returncode == 0, written.stdout[-3000:] + written.stderr[-3000:]
    names = sorted(p.name for p in snapshots.rglob("*.json"))
    assert f"test_stacks_match_snapshots[{NEW}][{NEW}-serving].json" in names, names
    assert all(f"[{NEW}]" in n for n in names)

    test = (sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "tests/gates/test_snapshots.py")
    passed = run(*test, env=env)
    assert passed.returncode == 0, passed.stdout[-3000:]

    data = yaml.safe_load((config / f"{NEW}.yaml").read_text())
    data["monitoring"]["thresholds"]["gpu_utilization_percent"] = 91
    (config / f"{NEW}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    failed = run(*test, env=env)
    assert failed.returncode == 1
    lines = failed.stdout.splitlines()
    assert any(
        re.search(rf"{NEW}-monitoring: resource \w+ \(AWS::CloudWatch::Alarm\) changed: Properties\.Threshold", line)
        for line in lines
    ), failed.stdout[-4000:]
    assert "if intended, update the snapshots: make snapshots" in failed.stdout



def test_make_snapshots_after_a_failed_synth_deletes_no_snapshot(tmp_path: Path) -> None:
    """A config that fails synth: `make snapshots` fails and leaves the stored snapshots alone (syrupy
    would otherwise delete every snapshot of the tests it ran that asserted nothing, i.e. all of them)."""
    name = "broken-snapshot-probe"
    config = tmp_path / "config"
    config.mkdir()
    (config / f"{name}.yaml").write_text(f"name: {name}\n")  # fails validation: synth exits 1 at once
    # Where the snapshots of a run without $LLMHOST_TEST_SNAPSHOT_DIR live; removed again below.
    stored = (
        ROOT / "tests/gates/__snapshots__/test_snapshots" / f"test_stacks_match_snapshots[{name}][{name}-network].json"
    )
    stored.write_text("{}")
    try:
        env = {CONFIG_DIR_ENV: str(config)}
        result = run("make", "-o", "install", "-o", ".venv/.stamp-dev", "snapshots", env=env)
        assert result.returncode != 0 and "config error: " in result.stdout, result.stdout[-3000:]
        assert stored.exists()
    finally:
        stored.unlink(missing_ok=True)
