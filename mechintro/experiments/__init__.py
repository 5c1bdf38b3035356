"""Experiments: each turns a frozen config into trials, runs them, and summarises the run.

Each module exposes ``NAME``, ``Config`` (a frozen dataclass), ``run(config, out, model=...,
...)``, ``summarize(ds)`` and ``format_summary(summary)``. :data:`EXPERIMENTS` maps CLI names to modules.
"""

from __future__ import annotations

from types import ModuleType

from mechintro.experiments import (
    detection_logits,
    injected_thoughts,
    intentional_control,
    latent_introspection,
    localisation,
    prefill,
    self_prediction,
    sweep,
    thoughts_vs_text,
)

EXPERIMENTS: dict[str, ModuleType] = {
    m.NAME: m
    for m in (
        detection_logits,
        injected_thoughts,
        thoughts_vs_text,
        prefill,
        intentional_control,
        latent_introspection,
        sweep,
        localisation,
        self_prediction,
    )
}
