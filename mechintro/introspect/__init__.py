"""Steering awareness: training a model to notice injected thoughts, the positive control for
every instrument in the toolkit (Fonseca Rivera 2025, arXiv 2511.21399; code
david-aisi/steering-awareness @ 4f0dab39).

:mod:`mechintro.introspect.data` builds their training examples (pure Python, with the held-out
leak check); :mod:`mechintro.introspect.train` makes their vectors, trains the LoRA adapter through
:func:`mechintro.training.finetune` and runs their held-out evaluation. Commands:
``mechintro introspect train`` and ``mechintro introspect eval`` (docs/positive-control.md).
"""
