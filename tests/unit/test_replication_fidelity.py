"""``injected-thoughts --preset uzaymacar`` (and ``safety-research``, the same settings) equals an
independent copy of the open replications' code (``tests/replication_reference.py``) on the tiny
model: vectors (cosine ≥ 0.99999), prompt tokens, the steered start, first-token
log-probabilities (≤ 1e-4), greedy continuations, and the sampling support (top-k 50). Each
comparison is shown to catch a mutation: the words lowercased, the steering from "Trial" instead
of the token before it, sampling without top-k. The integration tier repeats it on SmolLM2
(``tests/integration/test_replication_fidelity_smollm2.py``)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from mechintro import engine, runs
from mechintro.experiments import injected_thoughts as IT
from mechintro.vectors import concept_vectors

from .. import replication_reference as A
from ..protocol_reference import eos_ids
from .test_protocol_fidelity import caught, mask_of, prompt_of, response_of

WORDS = ("Dust", "Oceans", "Trees")


def preset(name: str = "uzaymacar", **over) -> IT.Config:
    """The preset as ``mechintro run --preset`` applies it, then the test's own grid."""
    values = {k: v for k, v in IT.PRESETS[name].items() if k != "dtype"}
    return IT.Config(**(values | over))


def vector_problems(vectors, ref: dict[str, torch.Tensor], layer: int) -> list[str]:
    """``ref``: the reference vectors at ``layer`` (:func:`replication_reference.vectors`)."""
    out = []
    for w in ref:
        got = torch.from_numpy(np.asarray(vectors.sel(concept=w, layer=layer).values).copy())
        cos = float(torch.nn.functional.cosine_similarity(got, ref[w], dim=0))
        if cos < 0.99999:
            out.append(f"{w}: vector cosine {cos:.6f} < 0.99999")
    return out


def trial_problems(
    model, vectors, ref: dict[str, torch.Tensor], cfg, *, n_greedy: int = 0, ds=None
) -> list[str]:
    """Prompt tokens, steered start and first-token log-probabilities of every trial of ``cfg``
    (one layer, where ``ref`` holds the reference vectors; with ``ds``, its greedy tokens too)
    against the reference."""
    trials, _ = IT.build_trials(cfg, model, vectors)
    out = []
    for i, t in enumerate(trials):
        number = int(t.labels["question"].split(":")[0].removeprefix("Trial "))
        ids, start = A.trial_prompt(model.tokenizer, number)
        if list(t.prompt.input_ids) != ids:
            out.append(f"trial {i}: prompt tokens differ")
            continue
        inj = t.injection()
        add = None
        if inj is not None:
            mask = np.flatnonzero(inj.mask).tolist()
            if mask != list(range(start, len(ids))):
                out.append(f"trial {i}: steered positions start at {mask[0]}, not {start}")
            add = t.strength * ref[t.concept]
        want = A.first_token_logprobs(model.hf, ids, start, t.inject_layer, add)
        got = engine.forward(
            model, [t.prompt.input_ids], [inj], answer_ids=list(range(want.shape[0]))
        ).answer_logprobs[0]
        delta = float((got.float() - want).abs().max())
        if delta > 1e-4:
            out.append(f"trial {i}: first-token log-probs differ by {delta:.2e}")
        if ds is not None:  # the run stores the trials in the order they were built
            want_ids = A.greedy(
                model.hf, ids, start, t.inject_layer, add, n_greedy, eos_ids(model.hf, None)
            )
            if prompt_of(ds, i) != ids:
                out.append(f"trial {i}: stored prompt tokens differ")
            elif inj is not None and mask_of(ds, i) != list(range(start, len(ids))):
                out.append(f"trial {i}: stored steered positions differ")
            elif response_of(ds, i) != want_ids:
                out.append(f"trial {i}: greedy tokens {response_of(ds, i)} != {want_ids}")
    return out


def top_k_problems(
    model, vectors, ref: dict[str, torch.Tensor], cfg, word: str, *, min_outside: float = 0.02
) -> list[str]:
    """Sample the first token many times with the preset's sampling: every draw must lie in
    transformers' top-50 support of the reference distribution. The number of draws makes a
    sampler without top-k land outside it with probability > 1 - 1e-6."""
    trials, _ = IT.build_trials(dataclasses.replace(cfg, concepts=(word,)), model, vectors)
    t = next(t for t in trials if t.injection() is not None)
    ids, start = A.trial_prompt(model.tokenizer, 1)
    add = t.strength * ref[word]
    lp = A.first_token_logprobs(model.hf, ids, start, t.inject_layer, add)
    keep = A.top_k_support(lp)
    outside = 1.0 - float(lp[sorted(keep)].exp().sum())
    if outside < min_outside:
        return [f"only {outside:.3f} of the mass lies outside the top 50: the test cannot tell"]
    n = math.ceil(math.log(1e-6) / math.log(1.0 - outside))
    prompts, injections = [t.prompt.input_ids] * n, [t.injection()] * n
    res = engine.generate(  # the unsteered prefix once, as the runner does (n copies otherwise)
        model,
        prompts,
        injections,
        prefix=engine.shared_prefix(prompts, injections),
        max_new_tokens=1,
        temperature=cfg.temperature,
        seed=0,
        top_k=cfg.top_k,
        top_p=cfg.top_p,
    )
    drawn = res.generated[:, 0].tolist()
    bad = [d for d in drawn if d not in keep]
    return [f"{len(bad)} of {n} draws outside the top-50 support"] if bad else []


# --- the tiny model -------------------------------------------------------------------------------

LAYER, STRENGTH = 1, 8.0
BASELINE = ("Desks", "Jackets", "Gondolas", "Laughter", "Intelligence")  # a short one: speed


@pytest.fixture(scope="module")
def listed(tiny):
    return concept_vectors(tiny, WORDS, baseline=BASELINE, lowercase=False, progress=False)


@pytest.fixture(scope="module")
def ref(tiny):
    return A.vectors(tiny.hf, tiny.tokenizer, WORDS, LAYER, baseline=BASELINE)


def test_preset_vectors_equal_the_replications(tiny, listed, ref):
    assert vector_problems(listed, ref, LAYER) == []
    # mutation: our default, the words lowercased
    lowered = concept_vectors(tiny, WORDS, baseline=BASELINE, progress=False)
    assert caught(vector_problems(lowered, ref, LAYER), "vector cosine")


def test_preset_trials_equal_the_replications(tiny, listed, ref, tmp_path):
    cfg = preset(
        concepts=WORDS,
        layers=(LAYER,),
        strengths=(STRENGTH,),
        trials=2,
        controls=1,
        temperature=0.0,
        max_new_tokens=4,
    )
    ds = runs.open_run(IT.run(cfg, tmp_path / "p", model=tiny, vectors=listed))
    assert trial_problems(tiny, listed, ref, cfg, n_greedy=4, ds=ds) == []
    # trial numbers: a concept's k-th injected trial is "Trial k", the controls follow (3, 4, 5)
    questions = sorted({str(q).split(":")[0] for q in ds.question.values})
    assert questions == ["Trial 1", "Trial 2", "Trial 3", "Trial 4", "Trial 5"]
    # mutation: steering from "Trial" itself (one token later)
    moved = dataclasses.replace(cfg, window_start="trial")
    assert caught(trial_problems(tiny, listed, ref, moved), "steered positions start")


def test_preset_samples_with_top_k_50(tiny, listed, ref):
    cfg = preset(concepts=WORDS, layers=(LAYER,), strengths=(STRENGTH,), trials=1, controls=1)
    assert top_k_problems(tiny, listed, ref, cfg, "Dust", min_outside=0.1) == []
    # mutation: our default sampler (no top-k)
    plain = dataclasses.replace(cfg, top_k=0)
    assert caught(top_k_problems(tiny, listed, ref, plain, "Dust", min_outside=0.1), "outside")


def test_presets_are_the_replications_settings():
    """Each preset value is what the replication's code does (docs/protocols.md cites the line)."""
    for name in ("uzaymacar", "safety-research"):
        cfg = preset(name)
        assert (cfg.lowercase, cfg.system_message, cfg.lead_in) == (False, "", False)
        assert (cfg.trial_numbers, cfg.draw, cfg.window_start) == (
            "sequential",
            "each",
            "token_before",
        )
        assert (cfg.top_k, cfg.top_p, cfg.temperature, cfg.max_new_tokens) == (50, 1.0, 1.0, 100)
        assert (cfg.trials, cfg.controls) == (15, 15)
        assert IT.PRESETS[name]["dtype"] == "bfloat16"
        assert "Happiness" in cfg.concepts and "Information" not in cfg.concepts
    # the defaults are untouched: a default run is the paper's protocol as before
    d = IT.Config()
    assert (d.lowercase, d.lead_in, d.trial_numbers, d.draw, d.window_start, d.top_k) == (
        True,
        True,
        "one",
        "random",
        "newlines",
        0,
    )
    assert IT.Config.LEGACY == {
        f: getattr(d, f) for f in IT.Config.LEGACY
    }  # an old run resumes with the defaults
