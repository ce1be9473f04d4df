"""Start and stop the local serving path of one environment: vLLM → gateway → front door.

Each component is its own process group with its own log file; :meth:`LocalStack.stop` ends all of
them (SIGTERM, then SIGKILL). :meth:`LocalStack.start` for a second environment keeps the running
engine when that environment's local vLLM command line is the same, and replaces it otherwise.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .cfn import Environment
from .engine import GPU_ONLY_FLAGS, MODEL_FLAGS, flag_value, local_vllm_command, local_vllm_environment
from .gateway import local_gateway_command, local_gateway_environment
from .template import Api, Task, read_api, read_task

REPO = Path(__file__).resolve().parents[2]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
TINY_MODEL_SCRIPT = REPO / "tests" / "fixtures" / "make_tiny_model.py"
VLLM_START_TIMEOUT_S = float(os.environ.get("VLLM_START_TIMEOUT_S", "420"))


class StartError(RuntimeError):
    """A component did not come up; the message names it and ends with its log's tail."""


@dataclass
class Ports:
    frontdoor: int = 8300
    gateway: int = 8301
    vllm: int = 8302


@dataclass
class Component:
    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    log: Path
    url: str

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, grace_s: float = 20.0) -> None:
        if self.alive():
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=30)
            except ProcessLookupError:
                pass


@dataclass
class Endpoint:
    """What a client needs: the stage URL, the OpenAI base URL, one API key per tenant."""

    env: str
    stage_url: str
    keys: dict[str, str]
    """{tenant (usage plan name): key value}."""
    vllm_url: str
    served_model: str
    rate_limit: dict[str, float]
    """{tenant: the usage plan's rate limit, requests per second}."""
    burst_limit: dict[str, int]
    """{tenant: the usage plan's burst limit}."""

    @property
    def openai_base_url(self) -> str:
        return self.stage_url + "v1"


def _get(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def _wait(component: Component, url: str, timeout_s: float, ok: set[int]) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if not component.alive():
            raise StartError(f"{component.name} exited ({component.popen.returncode}) before it was ready:\n{component.tail()}")
        try:
            if _get(url) in ok:
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.25)
    raise StartError(f"{component.name} not ready after {timeout_s:.0f} s:\n{component.tail()}")


def require_free_port(name: str, url: str) -> None:
    """Fail before starting a component whose port another process listens on: the readiness check
    would take that process's answer for this one's (seen: a gateway and an engine left over from an
    interrupted run answered "ready" for the new ones, and every keyed check got the old gateway's 401)."""
    port = urllib.parse.urlsplit(url).port
    with socket.socket() as s:
        # As the servers bind: SO_REUSEADDR, so connections closing on the port (TIME_WAIT) do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port or 0))
        except OSError as exc:
            raise StartError(
                f"{name}: 127.0.0.1:{port} is in use ({exc.strerror}): stop what listens there"
                " (another `make local`?) or choose other ports (LOCAL_PORTS='--port ... --gateway-port ... --vllm-port ...')"
            ) from None


def frontdoor_spec(api: Api, *, backend: str, port: int, key_values: dict[str, str]) -> dict[str, object]:
    """The front door's input: the API as the template declares it, plus local key values and backend."""
    plans = {p.name: {"rate": p.rate_limit, "burst": p.burst_limit, "quota": p.quota_limit} for p in api.usage_plans}
    keys = [
        {"id": key_id, "value": key_values[key_id], "plan": p.name} for p in api.usage_plans for key_id in p.key_ids
    ]
    methods = [
        {
            "path": m.path,
            "http_method": m.http_method,
            "api_key_required": m.api_key_required,
            "integration_http_method": m.integration_http_method,
            "uri_path": m.uri_path,
            "request_parameters": m.request_parameters,
            "timeout_ms": m.timeout_ms,
            "streaming": m.streaming,
        }
        for m in api.methods
        if m.integration_type == "HTTP_PROXY"
    ]
    return {
        "stage": api.stage, "methods": methods, "plans": plans, "keys": keys, "backend": backend, "port": port,
        "stage_rate": api.stage_rate_limit, "stage_burst": api.stage_burst_limit,
    }  # fmt: skip


@dataclass
class LocalStack:
    """The three processes for one environment at a time; the engine survives an environment change
    when its command line is the same."""

    cdk_out: Path
    workdir: Path
    ports: Ports = field(default_factory=Ports)
    echo: IO[str] = sys.stdout
    engine: Component | None = None
    gateway: Component | None = None
    frontdoor: Component | None = None

    def _spawn(self, name: str, argv: list[str], env: dict[str, str], url: str, cwd: Path = REPO) -> Component:
        require_free_port(name, url)
        log = self.workdir / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return Component(name, argv, popen, log, url)

    def _line(self, name: str, text: str) -> None:
        print(f"{name:<9} {text}", file=self.echo, flush=True)

    def tiny_model(self) -> Path:
        out = self.workdir / "tiny-model"
        if not (out / "config.json").exists():
            if not VLLM_PYTHON.exists():
                raise StartError(f"{VLLM_PYTHON} is missing: run `make install-test` (it builds .venv-vllm)")
            subprocess.run([str(VLLM_PYTHON), str(TINY_MODEL_SCRIPT), str(out)], check=True, capture_output=True)
        return out

    def start(self, env_name: str) -> Endpoint:
        env = Environment.load(self.cdk_out, env_name)
        task, api = read_task(env, self.cdk_out), read_api(env)
        self._start_engine(task)
        self._start_gateway(task)
        return self._start_frontdoor(env_name, task, api)

    def _start_engine(self, task: Task) -> None:
        argv = local_vllm_command(task.vllm, model_dir=self.tiny_model(), port=self.ports.vllm, python=str(VLLM_PYTHON))
        if self.engine is not None and self.engine.alive() and self.engine.argv == argv:
            self._line("vllm", f"{self.engine.url}  reused: same command line")
            return
        self.stop_all()
        hf_home = self.workdir / "hf-home"
        hf_home.mkdir(exist_ok=True)
        env = local_vllm_environment(task.vllm, hf_home=hf_home, base=os.environ)
        dropped = [f for f in [*MODEL_FLAGS, *GPU_ONLY_FLAGS] if f in task.vllm.command]
        self.engine = self._spawn("vllm", argv, env, f"http://127.0.0.1:{self.ports.vllm}")
        seconds = _wait(self.engine, self.engine.url + "/health", VLLM_START_TIMEOUT_S, {200})
        self._line(
            "vllm",
            f"{self.engine.url}  ready in {seconds:.0f} s: the task's command on the tiny model"
            f" (dropped {' '.join(dropped) or 'nothing'}; log {self.engine.log})",
        )

    def _start_gateway(self, task: Task) -> None:
        if self.gateway is not None:
            self.gateway.stop()
        # DependsOn: the gateway starts only once vLLM is HEALTHY (waited for above).
        assert all(cond == "HEALTHY" for name, cond in task.gateway.depends_on.items() if name == "vllm")
        argv, cwd = local_gateway_command(task.gateway)
        template_port = int(flag_value(task.vllm.command, "--port") or 8000)
        env = local_gateway_environment(
            task.gateway, port=self.ports.gateway, vllm_port=self.ports.vllm, template_vllm_port=template_port, base=os.environ
        )
        self.gateway = self._spawn("gateway", argv, env, f"http://127.0.0.1:{self.ports.gateway}", cwd=cwd)
        seconds = _wait(self.gateway, self.gateway.url + "/health", 60, {200})
        self._line("gateway", f"{self.gateway.url}  ready in {seconds:.1f} s: {' '.join(argv[1:])} from {cwd.name} (log {self.gateway.log})")

    def _start_frontdoor(self, env_name: str, task: Task, api: Api) -> Endpoint:
        if self.frontdoor is not None:
            self.frontdoor.stop()
        key_values = {key_id: "local-" + secrets.token_urlsafe(24) for p in api.usage_plans for key_id in p.key_ids}
        spec = frontdoor_spec(api, backend=f"http://127.0.0.1:{self.ports.gateway}", port=self.ports.frontdoor, key_values=key_values)
        spec_file = self.workdir / f"frontdoor-{env_name}.json"
        spec_file.touch(mode=0o600)
        spec_file.write_text(json.dumps(spec, indent=1))
        url = f"http://127.0.0.1:{self.ports.frontdoor}/{api.stage}/"
        self.frontdoor = self._spawn("frontdoor", [sys.executable, "-m", "tools.local.frontdoor", str(spec_file)], dict(os.environ), url)
        _wait(self.frontdoor, url, 30, {403})
        self._line(
            "frontdoor",
            f"{url}  {len(spec['methods'])} methods ({sum(m.streaming for m in api.methods)} streaming), "  # type: ignore[arg-type]
            f"{len(api.usage_plans)} usage plan(s) (log {self.frontdoor.log})",
        )
        keys = {p.name: key_values[k] for p in api.usage_plans for k in p.key_ids}
        return Endpoint(
            env=env_name,
            stage_url=url,
            keys=keys,
            vllm_url=f"http://127.0.0.1:{self.ports.vllm}",
            served_model=flag_value(task.vllm.command, "--served-model-name") or "",
            rate_limit={p.name: float(p.rate_limit or 0) for p in api.usage_plans},
            burst_limit={p.name: int(p.burst_limit or 0) for p in api.usage_plans},
        )

    def components(self) -> list[Component]:
        return [c for c in (self.frontdoor, self.gateway, self.engine) if c is not None]

    def stop_all(self) -> None:
        # Reverse of the start order, as ECS stops containers in reverse dependency order.
        for c in self.components():
            c.stop()
        self.engine = self.gateway = self.frontdoor = None
