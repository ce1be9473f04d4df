"""Render the config reference (every field, its type, default and purpose) from the schema.

`python -m tools.config_reference` prints the Markdown table that the README embeds between
the `config-reference` markers; `--write` updates README.md in place. A test keeps them in sync.
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from config.schema import EnvironmentConfig

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- config-reference:begin -->", "<!-- config-reference:end -->"


def _models_in(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _type_name(annotation: object) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        values = typing.get_args(annotation)
        if len(values) > 6:
            return f"one of {len(values)} values, `{values[0]}` to `{values[-1]}`"
        return " \\| ".join(f"`{a}`" for a in values)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in typing.get_args(annotation))}]"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        return "`{}`" if value == {} else f"`{value}`"
    if field.default is PydanticUndefined:
        return "**required**"
    if isinstance(field.default, BaseModel):
        return "(section defaults)"
    return f"`{field.default}`"


def rows(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        nested = _models_in(field.annotation)
        kind = "section" if nested else _type_name(field.annotation)
        desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
        out.append(f"| `{path}` | {kind} | {_default(field)} | {desc} |")
        for sub in nested:
            out.extend(rows(sub, f"{path}{'[]' if typing.get_origin(field.annotation) is list else ''}."))
    return out


def table() -> str:
    header = ["| field | type | default | what it is for |", "|---|---|---|---|"]
    return "\n".join(header + rows(EnvironmentConfig))


def embedded(text: str) -> str:
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


if __name__ == "__main__":
    if "--write" in sys.argv:
        text = README.read_text()
        head, rest = text.split(BEGIN, 1)
        README.write_text(f"{head}{BEGIN}\n{table()}\n{END}{rest.split(END, 1)[1]}")
    else:
        print(table())
