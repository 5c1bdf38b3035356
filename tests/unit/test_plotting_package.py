"""``mechintro.plotting`` is one module per study (issue 31, item 4): every figure function of
every study module is exported by the package and shows once in Jupyter's inline backend."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import matplotlib.pyplot as plt

from mechintro import plotting
from mechintro.plotting import _style


def _study_modules():
    return [
        importlib.import_module(f"mechintro.plotting.{m.name}")
        for m in pkgutil.iter_modules(plotting.__path__)
        if not m.name.startswith("_")
    ]


def test_every_figure_function_of_every_study_is_exported_and_wrapped():
    exported = set(plotting.__all__)
    drawn = []
    for module in _study_modules():
        for name, f in vars(module).items():
            if not inspect.isfunction(f) or name.startswith("_"):
                continue
            if f.__module__ != module.__name__:
                continue  # imported (from _style)
            assert f.__annotations__.get("return") == "plt.Figure", name  # a study draws
            drawn.append(name)
            assert getattr(plotting, name) is f and name in exported, name
            assert hasattr(f, "__wrapped__"), name  # shows once in Jupyter
    assert len(drawn) == len(set(drawn))  # no figure defined twice
    assert set(drawn) == exported - {"LABELS", "label"}  # and nothing else exported
    assert {"detection_shift", "self_prediction_accuracy", "oracle_comparison"} <= set(drawn)


def test_a_figure_is_closed_before_it_is_returned_only_inline(monkeypatch):
    def draw() -> plt.Figure:
        return plt.figure()

    draw.__module__ = "demo"
    namespace = {"draw": draw, "_private": draw, "plt": plt}
    _style.wrap_figures(namespace, "demo")
    assert namespace["_private"] is draw and namespace["draw"] is not draw
    monkeypatch.setattr(_style, "inline_backend", lambda: True)
    fig = namespace["draw"]()
    assert fig.number not in plt.get_fignums()  # detached: shown once, as the cell's value
    monkeypatch.setattr(_style, "inline_backend", lambda: False)
    fig = namespace["draw"]()
    assert fig.number in plt.get_fignums()  # open for plt.show()
    plt.close(fig)
