"""mechintro: concept-injection introspection experiments on open language models.

Load a model (:func:`load_model`), compute concept vectors (:func:`concept_vectors`), run an
experiment into a run dataset (e.g. :mod:`mechintro.experiments.detection_logits`), and analyse
the saved dataset later (:func:`open_run`). See ``docs/schema.md`` for the dataset schema.

Names are imported on first use, so ``import mechintro`` (and every CLI error) stays fast; torch,
transformers and nnsight load when a model or run is first touched.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from mechintro._anyio_guard import define_anyio_classes
from mechintro.errors import MechintroError

define_anyio_classes()  # so that a later `import nnsight` cannot break anyio (docs/engineering.md)

_EXPORTS = {
    "EXPERIMENTS": "mechintro.experiments",
    "DetectionLogitsConfig": "mechintro.experiments.detection_logits",
    "OFFLINE_MODELS": "mechintro.models",
    "Model": "mechintro.models",
    "from_hf": "mechintro.models",
    "load_model": "mechintro.models",
    "Prompt": "mechintro.prompts",
    "Window": "mechintro.prompts",
    "render_chat": "mechintro.prompts",
    "tokenize": "mechintro.prompts",
    "open_run": "mechintro.runs",
    "verify": "mechintro.runs",
    "concept_vectors": "mechintro.vectors",
    "contrastive_vector": "mechintro.vectors",
    "load_vectors": "mechintro.vectors",
    "model_contrast_vector": "mechintro.vectors",
    "pca_center_vectors": "mechintro.vectors",
    "resolve_layers": "mechintro.vectors",
    "save_vectors": "mechintro.vectors",
    "vectors_from_array": "mechintro.vectors",
    "save_vectors_safetensors": "mechintro.vectors",
    "load_vectors_safetensors": "mechintro.vectors",
    "show": "mechintro.transcripts",
    "list_runs": "mechintro.browse",
    "to_dataframe": "mechintro.export",
    "to_parquet": "mechintro.export",
    "to_hf_dataset": "mechintro.export",
}

# Modules reachable as attributes (mi.oracle.ask(...), mi.detection_logits.run(...)), imported on
# first use like the names above.
_SUBMODULES = {
    "oracle": "mechintro.oracle",
    "detection_logits": "mechintro.experiments.detection_logits",
}

__all__ = ["MechintroError", *_EXPORTS, *_SUBMODULES]


def _lazy_getattr(
    module: str, names: Mapping[str, str], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports each of ``names`` from the module it maps to on
    first use and keeps it in ``namespace`` (the module's globals), so that a light import
    stays light (``mechintro.analysis`` uses it too)."""

    def lazy(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module '{module}' has no attribute '{name}'")
        value = getattr(importlib.import_module(names[name]), name)
        namespace[name] = value
        return value

    return lazy


_exported = _lazy_getattr("mechintro", _EXPORTS, globals())


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(_SUBMODULES[name])
    return _exported(name)


def __dir__() -> list[str]:
    return sorted(__all__)
