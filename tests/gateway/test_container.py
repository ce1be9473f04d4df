"""The container: multi-stage Dockerfile on a slim pinned base, non-root, pinned
requirements, uvicorn with uvloop + httptools and the keep-alive chain."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from containers.gateway.app import server
from containers.gateway.app.core import contract
from containers.gateway.app.core.config import get_settings
from tests.fixtures.engine import GATEWAY_DIR

DOCKERFILE = (GATEWAY_DIR / "Dockerfile").read_text()


def test_multi_stage_on_a_pinned_slim_base() -> None:
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.M)
    assert base and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base.group(1))
    assert len(re.findall(r"^FROM ", DOCKERFILE, re.M)) >= 2
    assert "COPY --from=build" in DOCKERFILE


def test_runs_as_non_root_with_the_contract_port_and_health_check() -> None:
    users = re.findall(r"^USER (\S+)$", DOCKERFILE, re.M)
    assert users and not users[-1].startswith(("root", "0"))
    assert f"EXPOSE {contract.GATEWAY_PORT}" in DOCKERFILE
    cmd = re.search(r"^\s+CMD (\[.*\])$", DOCKERFILE, re.M)
    assert cmd and tuple(["CMD", *json.loads(cmd.group(1))]) == contract.CONTAINER_HEALTHCHECK_COMMAND
    assert 'ENTRYPOINT ["python", "-m", "app.server"]' in DOCKERFILE


def test_runtime_requirements_are_pinned_and_include_uvloop_httptools() -> None:
    lines = [ln.strip() for ln in (GATEWAY_DIR / "requirements.txt").read_text().splitlines()]
    reqs = [ln for ln in lines if ln and not ln.startswith("#")]
    assert reqs and all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.+]+", r) for r in reqs), reqs
    names = {r.split("==")[0].lower() for r in reqs}
    assert {"uvicorn", "uvloop", "httptools", "fastapi"} <= names
    assert "openai" not in names  # the SDK stays out of the hot path


def test_dockerignore_sends_only_the_app() -> None:
    ign = (GATEWAY_DIR / ".dockerignore").read_text().splitlines()
    assert ign[1:4] == ["**", "!app/", "!app/**"] or "**" in ign


def test_server_runs_uvicorn_with_uvloop_httptools_and_keepalive(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(server.uvicorn, "run", lambda app, **kw: seen.update(kw, app=app))
    monkeypatch.setenv("GATEWAY_WORKERS", "3")
    monkeypatch.setenv("GATEWAY_KEEPALIVE_TIMEOUT_S", "125")
    get_settings.cache_clear()
    try:
        server.main()
    finally:
        get_settings.cache_clear()
    # httptools, through the protocol that writes a response of known length in one piece
    assert seen["loop"] == "uvloop" and issubclass(seen["http"], HttpToolsProtocol)
    assert seen["workers"] == 3 and seen["timeout_keep_alive"] == 125
    assert seen["port"] == contract.GATEWAY_PORT and seen["access_log"] is False
    assert seen["app"].endswith(".main:create_app") and seen["factory"] is True
    # the gateway drains itself; uvicorn's own wait fits the shutdown budget (issue 13 defect 3)
    assert seen["timeout_graceful_shutdown"] + contract.ABORT_GRACE_S <= contract.SHUTDOWN_TAIL_S


def test_openai_sdk_stays_out_of_the_gateway() -> None:
    import subprocess
    import sys

    code = "import sys; import app.main, app.server; sys.exit(1 if 'openai' in sys.modules or 'aiohttp' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], cwd=GATEWAY_DIR).returncode == 0
