"""Entry point: ``python -m app.server`` (in the image) or
``python -m containers.gateway.app.server`` (from the repository root).

uvicorn with uvloop and httptools (:mod:`.core.httpserver`), ``GATEWAY_WORKERS`` processes, server keep-alive
``GATEWAY_KEEPALIVE_TIMEOUT_S`` (longer than the ALB idle timeout), no access log
(the gateway writes its own line per request)."""

from __future__ import annotations

import contextlib
import os

import uvicorn

from .core.config import Settings, get_settings
from .core.httpserver import HttpProtocol
from .core.tenants import RUN_ID_ENV, state_file


def main() -> None:
    s = get_settings()
    os.environ[RUN_ID_ENV] = str(os.getpid())  # the workers share one state file per run
    try:
        serve(s)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(state_file(s))


def serve(s: Settings) -> None:
    uvicorn.run(
        f"{__package__}.main:create_app",
        factory=True,
        host=s.host,
        port=s.port,
        workers=s.workers,
        loop="uvloop",
        http=HttpProtocol,  # httptools, with a response of known length written in one piece
        lifespan="on",
        access_log=False,
        log_level=s.log_level,
        timeout_keep_alive=s.keepalive_timeout_s,
        # The gateway drains itself (GATEWAY_DRAIN_TIMEOUT_S) and ends what is left before it tells
        # uvicorn to exit; uvicorn's own wait only covers the last writes (contract.SHUTDOWN_TAIL_S).
        timeout_graceful_shutdown=2,
        proxy_headers=False,
        server_header=False,
        date_header=False,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
