"""Bring your own resource (``existing_x``) or adjust the one a construct creates (``x_props``).

The convention of aws-solutions-constructs: a construct that creates a sub-resource takes
``existing_x`` (use this one, create nothing) or ``x_props`` (keyword arguments merged over the
construct's own for the one it creates), never both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def reject_contradictions(owner: str, **pairs: tuple[object | None, Mapping[str, Any] | None]) -> None:
    """Raise one line for any ``x`` given both ``existing_x`` and ``x_props``; call it first thing."""
    for name, (existing, props) in pairs.items():
        if existing is not None and props is not None:
            raise ValueError(f"{owner}: give existing_{name} or {name}_props, not both")


def existing_or_new(existing: T | None, props: Mapping[str, Any] | None, new: Callable[..., T], **defaults: Any) -> T:
    """``existing``, or ``new(**defaults, **props)`` (``props`` win)."""
    return existing if existing is not None else new(**{**defaults, **(props or {})})
