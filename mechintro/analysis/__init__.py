"""Analyses of saved runs: they take run datasets — and, for the logit lens and the
causal check, the model — and return xarray objects. Plotting lives in :mod:`mechintro.plotting`;
nothing here writes files.

* :mod:`~mechintro.analysis.anomaly` — where the "something is off" signal lives when a model
  notices an injection, and whether it is just the concept;
* :mod:`~mechintro.analysis.causal` — whether that direction is causal for the yes answer
  (needs the model);
* :mod:`~mechintro.analysis.lens` — the logit lens over layers (needs the model's weights);
* :mod:`~mechintro.analysis.alignment` — think / don't-think alignment with concept vectors.

Looking Inward's runs are scored by :mod:`mechintro.looking_inward.score`, in the study's package.

Layering: this package reads run datasets only. It never imports :mod:`mechintro.experiments`,
:mod:`mechintro.engine` or nnsight, except through the two modules that need a model,
:mod:`~mechintro.analysis.lens` and :mod:`~mechintro.analysis.causal`, which are imported when one
of their names is first used; so ``import mechintro.analysis`` stays light
(``tests/unit/test_architecture.py`` holds both).

Residuals are read one layer and :data:`~mechintro.analysis._common.CHUNK_TRIALS` trials at a
time, so memory does not grow with the run.
"""

from __future__ import annotations

from mechintro import _lazy_getattr
from mechintro.analysis.alignment import alignment, alignment_summary
from mechintro.analysis.anomaly import (
    anomaly_baselines,
    anomaly_cosines,
    anomaly_directions,
    detection_labels,
    window_features,
)

# The model-needing modules (torch, and for the causal check nnsight): loaded on first use.
MODEL_MODULES = ("mechintro.analysis.lens", "mechintro.analysis.causal")
_LAZY = {
    "causal_check": "mechintro.analysis.causal",
    "lens_summary": "mechintro.analysis.lens",
    "logit_lens": "mechintro.analysis.lens",
}

__all__ = [
    "alignment",
    "alignment_summary",
    "anomaly_baselines",
    "anomaly_cosines",
    "anomaly_directions",
    "causal_check",
    "detection_labels",
    "lens_summary",
    "logit_lens",
    "window_features",
]


__getattr__ = _lazy_getattr("mechintro.analysis", _LAZY, globals())


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
