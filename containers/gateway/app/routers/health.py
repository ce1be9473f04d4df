"""GET /health (readiness), GET /live (liveness), GET /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from ..core import contract
from ..core.errors import error_body
from ..dependencies import GatewayDep

router = APIRouter(tags=["health"])


@router.get(contract.HEALTH_PATH, summary="Ready: backend healthy and not draining, else 503 with the reason")
async def health(gw: GatewayDep) -> Response:
    ok, reason = gw.readiness()
    st = gw.monitor.state
    if ok:
        return Response(
            orjson.dumps({"status": "ok", "reason": reason, "backend_queue_depth": st.queue_depth}),
            media_type="application/json",
        )
    body = error_body(f"not ready: {reason}", 503, None, "not_ready")
    return Response(body, 503, media_type="application/json", headers={"Retry-After": str(gw.s.retry_after_s)})


@router.get(contract.LIVE_PATH, summary="Alive: the process serves HTTP")
async def live() -> dict[str, str]:
    return {"status": "alive"}


@router.get(contract.METRICS_PATH, summary="Prometheus metrics of this worker")
async def metrics(gw: GatewayDep) -> Response:
    return Response(generate_latest(gw.obs.registry), media_type=CONTENT_TYPE_LATEST)
