"""`llmhost cost --plot`: monthly cost against volume, self-hosted and commercial API."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import LlmhostError


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: files only
        import matplotlib.pyplot as plt
    except ImportError:
        raise LlmhostError("--plot needs matplotlib: pip install 'llmhost[plot]' (make install does)") from None
    return plt


def check_format(path: Path) -> None:
    """Fail before any work when matplotlib cannot write ``path``: it picks the format from the extension."""
    _pyplot()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    formats = sorted(FigureCanvasAgg.get_supported_filetypes())
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in formats:
        given = f".{suffix} is not an image format" if suffix else "it has no extension"
        raise LlmhostError(
            f"--plot {path}: {given}; the extension picks the format: {', '.join('.' + f for f in formats)}"
        )


def plot_costs(
    path: Path,
    *,
    title: str,
    self_hosted: Callable[[float], float],
    api: Callable[[float], float],
    api_name: str,
    volume: float,
    crossover: float | None,
) -> None:
    """Draw both curves from zero to beyond the crossover and the given volume, and write the image
    in the format of ``path``'s extension (see :func:`check_format`)."""
    plt = _pyplot()
    top = 2.0 * max(volume, crossover or 0.0, 1.0)
    xs = [top * i / 400 for i in range(401)]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    ax.plot(xs, [self_hosted(x) for x in xs], label="self-hosted (this environment)", linewidth=2)
    ax.plot(xs, [api(x) for x in xs], label=api_name, linewidth=2)
    ax.axvline(volume, color="grey", linestyle=":", label=f"given volume ({volume:,.0f}/day)")
    if crossover is not None:
        ax.axvline(crossover, color="red", linestyle="--", label=f"crossover ({crossover:,.0f}/day)")
    ax.set_xlabel("requests per day")
    ax.set_ylabel("USD per month")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as exc:
        raise LlmhostError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        plt.close(fig)
