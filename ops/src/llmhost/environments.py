"""Environment config: found in the repository's ``config/`` and read through its own loader.

The CLI does not re-implement the schema: it loads ``config/schema.py`` from the checkout
(the same code ``cdk synth`` validates with), so ``llmhost`` and synth never disagree
about what an environment says.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from functools import cache
from pathlib import Path
from typing import Any, cast

import yaml
from llm_hosting_constructs.sizing import Quantization

from .errors import LlmhostError

CONFIG_DIR_ENV = "LLMHOST_CONFIG_DIR"


def find_config_dir(explicit: Path | None = None) -> Path:
    """``--config-dir``, else ``$LLMHOST_CONFIG_DIR``, else the nearest ``config/`` with a ``schema.py``
    in the current directory or one of its parents (so it works from anywhere in the checkout)."""
    if explicit is None and os.environ.get(CONFIG_DIR_ENV):
        explicit = Path(os.environ[CONFIG_DIR_ENV])
    if explicit is not None:
        if not (explicit / "schema.py").is_file():
            raise LlmhostError(f"{explicit} is not an llm-hosting config directory (no schema.py in it)")
        return explicit.resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "config" / "schema.py").is_file():
            return folder / "config"
    raise LlmhostError(
        "no config/ directory found here or above: run llmhost inside the llm-hosting checkout, "
        f"or pass --config-dir (or set {CONFIG_DIR_ENV})"
    )


def environment_names(config_dir: Path) -> list[str]:
    return sorted(p.stem for p in config_dir.glob("*.yaml"))


def load(name: str, config_dir: Path, *, whole_config_checks: bool = True) -> Any:
    """The validated ``EnvironmentConfig`` of environment ``name``; one-line errors for a wrong name or file.

    ``whole_config_checks=False`` still validates every field, but lets through a file that only
    fails the loader's checks across sections (sizing, SageMaker rules): ``llmhost size`` then
    shows the figures that explain the failure instead of only the line.
    """
    known = environment_names(config_dir)
    if name not in known:
        raise LlmhostError(f"unknown environment {name!r}; {config_dir} has: {', '.join(known) or 'no *.yaml files'}")
    schema = _schema_module(config_dir)
    path = config_dir / f"{name}.yaml"
    try:
        return schema.load_environment(path)
    except schema.ConfigError as exc:
        if whole_config_checks:
            raise LlmhostError(str(exc)) from None
        try:
            return schema.EnvironmentConfig.model_validate(yaml.safe_load(path.read_text()))
        except (ValueError, yaml.YAMLError):  # pydantic's ValidationError is a ValueError
            raise LlmhostError(str(exc)) from None


@cache
def _schema_module(config_dir: Path) -> Any:
    # Loaded from its file under a private name: config/ is a folder of the checkout, not an
    # installed package, and a test or a second checkout must not replace the app's `config`.
    name = f"_llmhost_config_schema_{abs(hash(config_dir))}"
    spec = importlib.util.spec_from_file_location(name, config_dir / "schema.py")
    if spec is None or spec.loader is None:
        raise LlmhostError(f"cannot load {config_dir / 'schema.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pydantic resolves the models' annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def quantization(model_config: Any) -> Quantization | None:
    """The config's quantization in sizing terms ("none" in YAML is no quantization)."""
    value = getattr(model_config, "quantization", None)
    # The schema's choices (fp8, awq, gptq) are a subset of the sizing module's.
    return None if value in (None, "none") else cast(Quantization, value)
