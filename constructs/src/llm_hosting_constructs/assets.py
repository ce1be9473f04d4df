"""Files the ECS constructs run: the gateway's container source (with its contract module) and the
pre-warm script.

They live once, in the repository's ``containers/gateway`` and ``containers/prewarm``. The wheel
carries a copy under ``llm_hosting_constructs/_assets/`` (hatchling ``force-include``, see
pyproject.toml); an editable install of the repository reads the folders themselves. Either way the
constructs and the image build see the same files. Standard library only.
"""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

_HERE = Path(__file__).resolve().parent
# A wheel: package data beside this module. An editable install: <repo>/constructs/src/<package>.
_ROOTS = (_HERE / "_assets", _HERE.parents[2] / "containers")


@cache
def _root() -> Path:
    for root in _ROOTS:
        if (root / "gateway" / "Dockerfile").is_file() and (root / "prewarm" / "prewarm.py").is_file():
            return root
    searched = " or ".join(str(r) for r in _ROOTS)
    raise FileNotFoundError(
        f"llm_hosting_constructs: the gateway and pre-warm sources are missing from this installation "
        f"(looked in {searched}); reinstall the wheel, built with `pip wheel ./constructs`"
    )


def gateway_dir() -> Path:
    """The gateway's Docker build context (Dockerfile, requirements.txt, app/)."""
    return _root() / "gateway"


def prewarm_script() -> str:
    """The pre-warm entrypoint's Python source (``ModelPrewarm``'s ``script``)."""
    return (_root() / "prewarm" / "prewarm.py").read_text(encoding="utf-8")


@cache
def gateway_contract() -> ModuleType:
    """The gateway's contract module (ports, health paths, metric and environment names), loaded from
    the gateway source itself: ``app/core/contract.py`` is standard library only."""
    name = "llm_hosting_constructs._gateway_contract"
    spec = importlib.util.spec_from_file_location(name, gateway_dir() / "app" / "core" / "contract.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
