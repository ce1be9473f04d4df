"""One local stack (vLLM CPU engine, gateway, front door) for the whole tests/local session.

Environments run one after the other on it; the engine is reused while the local vLLM command line
stays the same. Every run of these tests starts a vLLM engine: run them under
``flock /tmp/llmh-vllm.lock`` on a shared machine.
"""

from __future__ import annotations

import io
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.engine import free_port
from tools.local.smoke import CHECKS
from tools.local.stack import Endpoint, LocalStack, Ports


@dataclass(frozen=True)
class Outcome:
    ok: bool
    detail: str
    seconds: float


class Runner:
    """Starts an environment (from any cloud assembly) on the shared stack and runs checks on it."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.log = io.StringIO()
        self.stack.echo = self.log
        self.cache: dict[tuple[str, str], dict[str, Outcome]] = {}
        self.engine_pids: dict[tuple[str, str], int] = {}

    def start(self, cdk_out: Path, env: str) -> Endpoint:
        self.stack.cdk_out = cdk_out
        ep = self.stack.start(env)
        assert self.stack.engine is not None
        self.engine_pids[(str(cdk_out), env)] = self.stack.engine.popen.pid
        return ep

    def run(self, cdk_out: Path, env: str, names: list[str] | None = None) -> dict[str, Outcome]:
        key = (str(cdk_out), env)
        if key not in self.cache:
            ep = self.start(cdk_out, env)
            results = {}
            for name in names or list(CHECKS):
                t0 = time.monotonic()
                try:
                    results[name] = Outcome(True, CHECKS[name](ep), time.monotonic() - t0)
                except Exception as exc:  # noqa: BLE001 - each outcome is asserted by its own test
                    results[name] = Outcome(False, f"{type(exc).__name__}: {exc}"[:400], time.monotonic() - t0)
            self.cache[key] = results
        return self.cache[key]


@pytest.fixture(scope="session")
def local_runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    work = tmp_path_factory.mktemp("local-stack")
    stack = LocalStack(work, work, Ports(free_port(), free_port(), free_port()))
    try:
        yield Runner(stack)
    finally:
        stack.stop_all()


def mutated_assembly(cdk_out: Path, out: Path, env: str, mutate: Callable[[str, dict[str, Any]], None]) -> Path:
    """A copy of ``cdk_out`` where ``mutate(stack_name, template)`` changed ``env``'s templates in place
    (the asset directories are linked, not copied)."""
    out.mkdir(parents=True)
    for item in cdk_out.iterdir():
        if item.name.startswith("asset."):
            (out / item.name).symlink_to(item.resolve())
        elif item.name == f"assembly-{env}":
            shutil.copytree(item, out / item.name)
    manifest = json.loads((out / f"assembly-{env}" / "manifest.json").read_text())
    for artifact in manifest["artifacts"].values():
        if artifact["type"] == "aws:cloudformation:stack":
            path = out / f"assembly-{env}" / artifact["properties"]["templateFile"]
            template = json.loads(path.read_text())
            mutate(artifact["properties"].get("stackName") or artifact["displayName"], template)
            path.write_text(json.dumps(template))
    return out
