"""Analyses of saved runs: they take run datasets — and, for the logit lens and the
causal check, the model — and return xarray objects. Plotting lives in :mod:`mechintro.plotting`;
nothing here writes files.

* :mod:`~mechintro.analysis.anomaly` — where the "something is off" signal lives when a model
  notices an injection, and whether it is just the concept;
* :mod:`~mechintro.analysis.lens` — the logit lens over layers;
* :mod:`~mechintro.analysis.alignment` — think / don't-think alignment with concept vectors.

Residuals are read one layer and :data:`~mechintro.analysis._common.CHUNK_TRIALS` trials at a
time, so memory does not grow with the run.
"""

from mechintro.analysis.alignment import alignment, alignment_summary
from mechintro.analysis.anomaly import (
    anomaly_baselines,
    anomaly_cosines,
    anomaly_directions,
    causal_check,
    detection_labels,
    window_features,
)
from mechintro.analysis.lens import lens_summary, logit_lens

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
