"""What the figures share: labels and line styles, legends, layer colours, 95 % bands, and the
wrapper that shows a returned figure once in Jupyter."""

from __future__ import annotations

import functools
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from mechintro.stats import wilson

LABELS = {
    "think": "think about the word",
    "dont_think": "don't think about it",
    "rewarded": "rewarded for thinking of it",
    "punished": "punished for thinking of it",
    "happy": "happy if you think of it",
    "sad": "sad if you think of it",
    "charity": "charity if you think of it",
    "terrorist": "terrorist if you think of it",
    "matched": "matched concept, injected on the sentence",
    "random": "random concept, injected on the sentence",
    "matched_after": "matched concept, injected after the prefill",
    "injected": "injected",
    "control": "no injection",
}


STYLES = [
    ("-", "o"),
    ("--", "s"),
    (":", "^"),
    ("-.", "D"),
    ((0, (5, 1, 1, 1)), "v"),
    ((0, (1, 1)), "P"),
]


def label(name: object) -> str:
    """A condition's name in words (``dont_think`` → "don't think about it")."""
    text = str(name)
    return LABELS.get(text, text.replace("dont_", "don't ").replace("_", " "))


def legend_below(ax: plt.Axes, fontsize: int = 7, ncol: int = 2) -> None:
    """The legend under the axes, off the data."""
    ax.legend(
        fontsize=fontsize, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=ncol, frameon=False
    )


def layer_colors(n: int) -> np.ndarray:
    return plt.cm.viridis(np.linspace(0, 0.9, n))


def finish(fig: plt.Figure, axes, ticks, title: str, fontsize: int = 7) -> plt.Figure:
    """Ticks at the data (``None``: as they are), legends, the title."""
    for a in axes:
        if ticks is not None:
            a.set_xticks(ticks)
        a.legend(fontsize=fontsize)
    if title:
        fig.suptitle(title)
    return fig


def wilson_band(rates: xr.DataArray, n: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """95% Wilson interval of each rate (a share of ``n`` trials)."""
    lo, hi = np.array(
        [
            wilson(round(float(r) * int(k)), int(k))
            for r, k in zip(rates.values, n.values, strict=True)
        ]
    ).T
    return lo, hi


def band(ax: plt.Axes, x, mid, lo, hi, color, label: str, marker: str = "o-") -> None:
    ax.plot(x, mid, marker, color=color, label=label)
    ax.fill_between(x, lo, hi, color=color, alpha=0.2)


def inline_backend() -> bool:
    """Whether pyplot draws into Jupyter's inline backend (the kernel's default)."""
    import matplotlib

    return "inline" in str(matplotlib.get_backend()).lower()


def shown_once(draw):
    """In Jupyter's inline backend pyplot shows every figure still open when a cell ends, and the
    cell's value is shown too: a figure a function returns appeared twice. There it is closed
    (detached from pyplot) before it is returned, so it shows once, as the value of the cell or
    through ``display(fig)``, and is still a figure to save. Elsewhere (scripts, GUI backends)
    it stays open for ``plt.show()``."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        fig = draw(*args, **kwargs)
        if inline_backend():
            plt.close(fig)
        return fig

    return wrapper


def wrap_figures(namespace: dict[str, Any], module: str) -> None:
    """Wrap every public function of ``module`` (its ``globals()``: ``namespace``) that draws a
    figure (annotated ``-> plt.Figure``) in :func:`shown_once`."""
    for name in [
        n
        for n, f in list(namespace.items())
        if callable(f)
        and not n.startswith("_")
        and getattr(f, "__module__", None) == module
        and f.__annotations__.get("return") == "plt.Figure"
    ]:
        namespace[name] = shown_once(namespace[name])
