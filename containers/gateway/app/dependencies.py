"""Typed dependencies. Tests override them with ``app.dependency_overrides``; the lean
pass-through endpoints (plain ASGI, outside FastAPI's dependency machinery) resolve
the same overrides through :func:`resolve`."""

from __future__ import annotations

from typing import Annotated, Any, Callable, TypeVar

from fastapi import Depends, Request

from .core import contract
from .core.config import Settings
from .core.errors import GatewayError
from .core.gateway import Gateway

T = TypeVar("T")


def get_gateway(request: Request) -> Gateway:
    return request.app.state.gateway


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def resolve(app: Any, dep: Callable[[Request], T], scope: dict[str, Any]) -> T:
    fn = app.dependency_overrides.get(dep, dep)
    return fn(Request(scope))


def require_identity(request: Request, gw: Annotated[Gateway, Depends(get_gateway)]) -> tuple[str, str]:
    """(key id, tenant) of the caller, from the headers only (401 without a valid key)."""
    h = request.headers
    auth, xkey, tenant = h.get("authorization"), h.get("x-api-key"), h.get(contract.TENANT_HEADER)
    return gw.identify(
        auth.encode("latin-1") if auth else None,
        xkey.encode("latin-1") if xkey else None,
        tenant.encode("latin-1") if tenant else None,
    )


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
IdentityDep = Annotated[tuple[str, str], Depends(require_identity)]

__all__ = ["GatewayDep", "SettingsDep", "IdentityDep", "get_gateway", "get_settings", "resolve", "GatewayError"]
