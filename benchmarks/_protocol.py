"""The protocol workload the generation benchmarks share: the default ``injected-thoughts`` run's
trials, injections and shared prefix, built as the runner builds them."""

from __future__ import annotations


def protocol_trials(model):
    """``(config, trials, injections, prefix)`` of the default injected-thoughts run on
    ``model``; ``prefix`` is the shared-prefix length the runner would reuse (0 if too short)."""
    from mechintro import engine
    from mechintro.experiments import injected_thoughts as it
    from mechintro.runner import _check_trials
    from mechintro.vectors import concept_vectors

    config = it.Config()
    vectors = concept_vectors(model, config.words(), progress=False)
    trials, _ = it.build_trials(config, model, vectors)
    injections = _check_trials(model, trials)
    prefix = engine.shared_prefix([t.prompt.input_ids for t in trials], injections)
    return config, trials, injections, prefix if prefix >= engine.MIN_SHARED_PREFIX else 0
