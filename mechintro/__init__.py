"""mechintro: concept-injection introspection experiments on open language models.

Load a model (:func:`load_model`), compute concept vectors (:func:`concept_vectors`), run an
experiment into a run dataset (e.g. :mod:`mechintro.experiments.detection_logits`), and analyse
the saved dataset later (:func:`open_run`). See ``docs/schema.md`` for the dataset schema.
"""

from mechintro.errors import MechintroError
from mechintro.experiments import EXPERIMENTS, detection_logits
from mechintro.experiments.detection_logits import DetectionLogitsConfig
from mechintro.models import OFFLINE_MODELS, Model, from_hf, load_model
from mechintro.prompts import Prompt, Window, render_chat, tokenize
from mechintro.runs import open_run
from mechintro.vectors import (
    concept_vectors,
    contrastive_vector,
    load_vectors,
    model_contrast_vector,
    pca_center_vectors,
    resolve_layers,
    save_vectors,
)

__all__ = [
    "EXPERIMENTS",
    "OFFLINE_MODELS",
    "DetectionLogitsConfig",
    "MechintroError",
    "Model",
    "Prompt",
    "Window",
    "concept_vectors",
    "contrastive_vector",
    "detection_logits",
    "from_hf",
    "load_model",
    "load_vectors",
    "model_contrast_vector",
    "open_run",
    "pca_center_vectors",
    "render_chat",
    "resolve_layers",
    "save_vectors",
    "tokenize",
]
