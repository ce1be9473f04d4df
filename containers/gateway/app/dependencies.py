"""Typed dependencies. Tests override them with ``app.dependency_overrides``; the lean
pass-through endpoints (plain ASGI, outside FastAPI's dependency machinery) resolve
the same overrides through :func:`resolve`."""

from __future__ import annotations

from typing import Annotated, Any, Callable, TypeVar

from fastapi import Depends, Request

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


def require_key(request: Request, gw: Annotated[Gateway, Depends(get_gateway)]) -> str:
    """The caller's key id (401 without a valid key when keys are configured)."""
    h = request.headers
    auth = h.get("authorization")
    xkey = h.get("x-api-key")
    return gw.authenticate(auth.encode() if auth else None, xkey.encode() if xkey else None)


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
KeyIdDep = Annotated[str, Depends(require_key)]

__all__ = ["GatewayDep", "SettingsDep", "KeyIdDep", "get_gateway", "get_settings", "resolve", "GatewayError"]
