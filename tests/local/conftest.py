"""One local stack (vLLM CPU engine, gateway, front door) for the whole tests/local session.

Environments run one after the other on it; the engine is reused while the local vLLM command line
stays the same. Every run of these tests starts a vLLM engine: run them under
``flock /tmp/llmh-vllm.lock`` on a shared machine.
"""

from __future__ import annotations

import io
import json
import random
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tools.local import smoke
from tools.local.smoke import Outcome
from tools.local.stack import Endpoint, LocalStack, Ports


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
            self.cache[key] = {o.name: o for o in smoke.run(ep, names)}
        return self.cache[key]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests on the local stack start the vLLM CPU engine too (the stack makes its own tiny model):
    the same `vllm` marker as the tests on the engine fixture, so `make test-infra` leaves them out."""
    for item in items:
        if "local_runner" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.vllm)


def listening_ports(n: int) -> list[int]:
    """``n`` free ports below the kernel's ephemeral range. The stack binds each again whenever it
    restarts that component for the next environment; a port from the ephemeral range (``bind(0)``)
    can meanwhile be taken as the local end of any outbound connection on the machine (seen: the front
    door's, between two environments: "address already in use")."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports: list[int] = []
    for port in random.sample(range(max(1024, low - 12_000), low), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == n:
            return ports
    raise RuntimeError(f"no {n} free ports below {low}")


@pytest.fixture(scope="session")
def local_runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    work = tmp_path_factory.mktemp("local-stack")
    stack = LocalStack(work, work, Ports(*listening_ports(3)))
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
