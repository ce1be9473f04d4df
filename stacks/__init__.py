"""Stacks: composition only. Each wires constructs from `llm_hosting_constructs` for one environment."""

from __future__ import annotations

import dataclasses
from typing import Any


def derived(why: str, **default: Any) -> Any:
    """A stack-settings field that is no config field: app.py derives it, from what ``why`` says.

    Every other settings field carries its YAML field's name (tests/stacks/test_setting_names.py).
    """
    return dataclasses.field(metadata={"derived": why}, **default)
