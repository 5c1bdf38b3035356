"""Figures from saved results. Functions take data and return a matplotlib ``Figure``; saving is
the caller's job (``analyses/`` scripts), never the library's. The library never selects a
matplotlib backend: in Jupyter the figures show inline, and scripts (or ``MPLBACKEND``) choose
their own.

One module per study, every figure function re-exported here (``plotting.detection_shift``):
:mod:`~mechintro.plotting.injection` (the concept-injection protocols),
:mod:`~mechintro.plotting.mechanisms` (logit lens, anomaly directions),
:mod:`~mechintro.plotting.looking_inward` (Looking Inward) and
:mod:`~mechintro.plotting.trained` (Activation Oracles, the positive control); what they share
(labels, styles, bands, showing a figure once in Jupyter) is :mod:`~mechintro.plotting._style`.
"""

from __future__ import annotations

from mechintro.plotting._style import LABELS, label
from mechintro.plotting.injection import (
    alignment_by_layer,
    detection_shift,
    injected_thoughts_by_layer,
    injected_thoughts_by_strength,
    latent_shifts,
    prefill_apology,
    sweep_heatmaps,
    thoughts_vs_text,
)
from mechintro.plotting.looking_inward import (
    probe_auc,
    self_cross_matrix,
    self_prediction_accuracy,
    self_vs_cross_bars,
)
from mechintro.plotting.mechanisms import (
    anomaly_auc,
    anomaly_cosine_matrix,
    lens_curves,
)
from mechintro.plotting.trained import (
    oracle_comparison,
    positive_control,
)

__all__ = [
    "LABELS",
    "alignment_by_layer",
    "anomaly_auc",
    "anomaly_cosine_matrix",
    "detection_shift",
    "injected_thoughts_by_layer",
    "injected_thoughts_by_strength",
    "label",
    "latent_shifts",
    "lens_curves",
    "oracle_comparison",
    "positive_control",
    "prefill_apology",
    "probe_auc",
    "self_cross_matrix",
    "self_prediction_accuracy",
    "self_vs_cross_bars",
    "sweep_heatmaps",
    "thoughts_vs_text",
]
