"""Experiments: each turns a frozen config into trials, runs them, and summarises the run.

Each module satisfies :class:`mechintro.experiments.base.Experiment`: ``NAME``, ``Config`` (a
frozen dataclass), ``build_trials(config, model, ...)``, ``run(config, out, model=..., ...)``,
``summarize(ds)`` and ``format_summary(summary)``. :data:`EXPERIMENTS` maps CLI names to
modules, importing a module only when it is first looked up; a new experiment is one module
plus one line in :data:`MODULES` (docs/extending.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from types import ModuleType

MODULES: dict[str, str] = {
    "detection-logits": "mechintro.experiments.detection_logits",
    "injected-thoughts": "mechintro.experiments.injected_thoughts",
    "thoughts-vs-text": "mechintro.experiments.thoughts_vs_text",
    "prefill": "mechintro.experiments.prefill",
    "intentional-control": "mechintro.experiments.intentional_control",
    "latent-introspection": "mechintro.experiments.latent_introspection",
    "sweep": "mechintro.experiments.sweep",
    "localisation": "mechintro.experiments.localisation",
    "self-prediction": "mechintro.looking_inward.experiment",
    "patchscope": "mechintro.experiments.patchscope",
    "strength-comparison": "mechintro.experiments.strength_comparison",
    "strength-classification": "mechintro.experiments.strength_classification",
    "mismatch": "mechintro.experiments.mismatch",
    "sentence-localisation": "mechintro.experiments.sentence_localisation",
    "concept-confusion": "mechintro.experiments.concept_confusion",
}
"""CLI name → module path, in the order the CLI and the docs list them."""


class _Registry(Mapping[str, ModuleType]):
    """A read-only mapping that imports an experiment's module on first lookup."""

    def __getitem__(self, name: str) -> ModuleType:
        module = importlib.import_module(MODULES[name])
        if module.NAME != name:
            raise AssertionError(f"{MODULES[name]} is registered as {name} but names itself")
        return module

    def __iter__(self) -> Iterator[str]:
        return iter(MODULES)

    def __len__(self) -> int:
        return len(MODULES)


EXPERIMENTS: Mapping[str, ModuleType] = _Registry()
