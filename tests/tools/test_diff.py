"""`make diff` (tools/diff.py): the report and the exit status, on assemblies and on two real commits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.cfn import ROOT
from tests.tools.assemblies import write_assembly


def run_diff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.diff", *args], cwd=ROOT, capture_output=True, text=True, timeout=900)


def efs_stack(mode: str, retention: int) -> dict:
    return {
        "Resources": {
            "Fs": {"Type": "AWS::EFS::FileSystem", "Properties": {"PerformanceMode": mode}},
            "Logs": {"Type": "AWS::Logs::LogGroup", "Properties": {"RetentionInDays": retention}},
        }
    }


@pytest.mark.parametrize(
    "after,status,expected",
    [
        (("maxIO", 30), 1, ["! AWS::EFS::FileSystem Fs  REPLACE: PerformanceMode", "BLOCKING: stateful dev-cache/Fs (AWS::EFS::FileSystem) is replaced"]),
        (("generalPurpose", 90), 0, ["~ AWS::Logs::LogGroup Logs  (RetentionInDays)", "no blocking findings"]),
    ],
    ids=["stateful-replacement-fails", "in-place-update-passes"],
)
def test_report_and_exit_status(tmp_path: Path, after: tuple[str, int], status: int, expected: list[str]) -> None:
    before_dir = write_assembly(tmp_path / "a", "dev", {"dev-cache": efs_stack("generalPurpose", 30)})
    after_dir = write_assembly(tmp_path / "b", "dev", {"dev-cache": efs_stack(*after)})
    result = run_diff("--before", str(before_dir), "--after", str(after_dir))
    assert result.returncode == status, result.stdout + result.stderr
    for line in expected:
        assert line in result.stdout


def test_base_ref_of_a_real_repo_is_synthesized_and_compared(tmp_path: Path) -> None:
    """Two commits in a clone: the second raises an alarm threshold in the first environment."""
    repo = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", "--shared", str(ROOT), str(repo)], check=True)
    for name in (".venv", "node_modules"):
        (repo / name).symlink_to((ROOT / name).resolve())
    config = sorted((repo / "config").glob("*.yaml"))[0]
    data = yaml.safe_load(config.read_text())
    data.setdefault("monitoring", {}).setdefault("thresholds", {})["ttft_p95_ms"] = 12345
    config.write_text(yaml.safe_dump(data))
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "commit", "-q", "-am", "raise ttft threshold"], check=True)
    result = run_diff("--repo", str(repo), "--base", "HEAD~1")
    assert result.returncode == 0, result.stdout + result.stderr
    env = data["name"]
    section = result.stdout.split(f"== {env}:", 1)[1].split("\n==", 1)[0]
    assert "~ AWS::CloudWatch::Alarm" in section and f"{env}-monitoring" in section, result.stdout
    others = [line for line in result.stdout.splitlines() if line.startswith("== ") and not line.startswith(f"== {env}:")]
    assert all(": 0 changes" in line for line in others), others
