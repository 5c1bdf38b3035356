"""Experiments: each turns a frozen config into trials, runs them, and summarises the run.

Each module exposes ``NAME``, ``Config`` (a frozen dataclass), ``run(config, out, model=...,
...)``, ``summarize(ds)`` and ``format_summary(summary)``. :data:`EXPERIMENTS` maps CLI names to modules.
"""

from __future__ import annotations

from types import ModuleType

from mechintro.experiments import detection_logits

EXPERIMENTS: dict[str, ModuleType] = {
    detection_logits.NAME: detection_logits,
}
