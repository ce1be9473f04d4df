"""Entry point: ``python -m app.server`` (in the image) or
``python -m containers.gateway.app.server`` (from the repository root).

uvicorn with uvloop and httptools, ``GATEWAY_WORKERS`` processes, server keep-alive
``GATEWAY_KEEPALIVE_TIMEOUT_S`` (longer than the ALB idle timeout), no access log
(the gateway writes its own line per request)."""

from __future__ import annotations

import uvicorn

from .core.config import get_settings


def main() -> None:
    s = get_settings()
    uvicorn.run(
        f"{__package__}.main:create_app",
        factory=True,
        host=s.host,
        port=s.port,
        workers=s.workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level=s.log_level,
        timeout_keep_alive=s.keepalive_timeout_s,
        timeout_graceful_shutdown=max(1, int(s.drain_timeout_s) + 5),
        proxy_headers=False,
        server_header=False,
        date_header=False,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
