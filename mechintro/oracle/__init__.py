"""Activation Oracles (Karvonen, Chua, …, Evans, Marks 2025, arXiv 2512.15674): ask a model, in
words, about an activation.

An oracle prompt is a user turn ``"Layer: L\\n" + " ?" × k + " \\n" + question``, rendered with the
model's chat template. The ``k`` activations (read from layer ``L`` of some earlier forward pass)
are written into the residual stream at the ``" ?"`` placeholders at the output of an early block
(layer 1) as a norm-matched addition ``h ← h + ‖h‖·v/‖v‖·c`` with ``c = 1`` — the format, the layer
and the coefficient of the authors' code (``adamkarvonen/activation_oracles``,
``nl_probes/utils/dataset_utils.py`` and ``steering_hooks.py``). An *oracle* is the same model
LoRA-finetuned to answer such questions (:mod:`mechintro.oracle.train`); the untrained model asked
the same way, and :func:`describe` (a Patchscopes identity readout), are the zero-training
baselines.

Every run here keeps its residual stream, so :func:`ask_run` asks an oracle about any saved
trial after the fact and stores the answers as a run of their own.

The code is in :mod:`~mechintro.oracle.reader` (the oracle: prompts, loading, asking) and
:mod:`~mechintro.oracle.from_runs` (asking about saved runs); this package re-exports it.
"""

from __future__ import annotations

from mechintro.oracle.from_runs import ask_run, run_activations
from mechintro.oracle.reader import (
    COEFFICIENT,
    INJECT_LAYER,
    LAYER_PERCENTS,
    ORACLE_KEY,
    PATCHSCOPE_PROMPT,
    PLACEHOLDER,
    YES_NO,
    Oracle,
    OraclePrompt,
    ask,
    describe,
    load,
    oracle_prompt,
    p_yes,
    source_layer,
    untrained,
    yes_no_ids,
)

__all__ = [
    "COEFFICIENT",
    "INJECT_LAYER",
    "LAYER_PERCENTS",
    "ORACLE_KEY",
    "PATCHSCOPE_PROMPT",
    "PLACEHOLDER",
    "YES_NO",
    "Oracle",
    "OraclePrompt",
    "ask",
    "ask_run",
    "describe",
    "load",
    "oracle_prompt",
    "p_yes",
    "run_activations",
    "source_layer",
    "untrained",
    "yes_no_ids",
]
