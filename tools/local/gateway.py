"""The gateway container's process on this machine: its image's entry point, the task's environment.

The code is the image asset CDK staged in ``cdk.out`` (the build context the deploy would push);
it runs with this repository's ``.venv`` (which holds the gateway's pinned requirements) instead
of the image's. Its environment is built as ECS builds a container's: the Dockerfile's ``ENV``
lines (but ``PATH``, which points into the image), then the task definition's ``Environment`` and ``Secrets`` (values from the local secret
store). The only local changes (:func:`local_gateway_environment`): the listening port and host,
and the upstream URL's port, since vLLM listens on a local port.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

from .template import Container


IMAGE_LAYOUT_ENV = frozenset({"PATH"})
"""Dockerfile ENV that describes the image's file system (its /opt/venv), not the service: not applied here."""


def dockerfile_runtime(context: Path) -> tuple[list[str], dict[str, str]]:
    """(ENTRYPOINT, ENV) of the Dockerfile's last stage: what the image starts and with what environment."""
    text = (context / "Dockerfile").read_text()
    lines = text.replace("\\\n", " ").splitlines()
    stages = [i for i, line in enumerate(lines) if line.strip().upper().startswith("FROM ")]
    entry: list[str] = []
    env: dict[str, str] = {}
    for line in lines[stages[-1] if stages else 0 :]:
        word, _, rest = line.strip().partition(" ")
        if word.upper() == "ENTRYPOINT":
            entry = json.loads(rest)  # exec form; the shell form would run under /bin/sh -c
        elif word.upper() == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
    if not entry:
        raise ValueError(f"{context / 'Dockerfile'}: no exec-form ENTRYPOINT in the last stage")
    return entry, env


def local_gateway_command(container: Container, *, python: str = sys.executable) -> tuple[list[str], Path]:
    """(argv, working directory): the task's entry point and command, else the image's entry point."""
    if container.image_asset_dir is None:
        raise ValueError("the gateway container's image is not a CDK asset; nothing local to run")
    image_entry, _ = dockerfile_runtime(container.image_asset_dir)
    argv = [*(container.entry_point or image_entry), *container.command]
    if argv[0] in ("python", "python3"):
        argv[0] = python
    return argv, container.image_asset_dir


def local_gateway_environment(
    container: Container, *, port: int, vllm_port: int, template_vllm_port: int, base: Mapping[str, str]
) -> dict[str, str]:
    """The gateway's environment as ECS would set it, with the local ports."""
    assert container.image_asset_dir is not None
    _, image_env = dockerfile_runtime(container.image_asset_dir)
    env = {k: v for k, v in base.items() if not k.startswith("GATEWAY_")}
    env.update({k: v for k, v in image_env.items() if k not in IMAGE_LAYOUT_ENV})
    env.update(container.environment)
    env.update(container.secrets)
    upstream = env.get("GATEWAY_UPSTREAM_URL", "")
    env["GATEWAY_UPSTREAM_URL"] = upstream.replace(f":{template_vllm_port}", f":{vllm_port}")
    env["GATEWAY_PORT"] = str(port)
    env["GATEWAY_HOST"] = "127.0.0.1"  # the task listens on its ENI; locally, loopback only
    env["PYTHONUNBUFFERED"] = "1"
    return env
