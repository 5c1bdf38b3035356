"""Each experiment equals an independent plain-PyTorch copy of its documented protocol.

``tests/protocol_reference.py`` renders every prompt from the documented strings with the chat
template, finds the steered tokens from the tokenizer's offsets, adds the vectors with forward
hooks and reads the next-token log-probabilities (or a greedy continuation, or the residual
stream) without mechintro's prompt builders, engine or nnsight. Each test runs the experiment
(``module.run(config, out, model=tiny)``) and compares it trial by trial with the copy: the prompt
tokens and steered positions exactly, log-probabilities to 1e-4, greedy tokens exactly, residuals
to float16 rounding. Each test then changes one detail of mechintro's code at run time (a prompt
word, a steered position, a recipe detail) and checks that the comparison reports it.

Tolerance: the copy runs one prompt at a time; mechintro batches with left padding, which changes
float32 summation order: measured at most 2.9e-6 on the tiny model and 2.1e-5 on SmolLM2 (the
integration tier); 1e-4 is above both and far below the effect of steering itself (each test
checks that steering moves some readout by more than 1e-2, so equality is not trivial).
"""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
import torch

from mechintro import runs, stimuli
from mechintro.experiments import (
    detection_logits,
    injected_thoughts,
    intentional_control,
    localisation,
    patchscope,
    prefill,
    sweep,
    thoughts_vs_text,
)
from mechintro.prompts import Window
from mechintro.vectors import concept_vectors

from .. import protocol_reference as R

CONCEPTS = ("Dust", "Oceans", "Bread")
ATOL = 1e-4


@pytest.fixture(scope="module")
def vectors(tiny):
    return concept_vectors(tiny, CONCEPTS, progress=False)


def vec(vectors, concept: str, layer: int, unit: str = "raw") -> torch.Tensor:
    """The vector both sides inject per unit strength (the recipe has its own equality test
    below): the concept vector itself (``raw``), or rescaled to the layer's mean residual norm
    (``resid_norm``)."""
    v = torch.from_numpy(np.asarray(vectors.sel(concept=concept, layer=layer).values).copy())
    if unit == "resid_norm":
        v = v / v.norm() * float(vectors.resid_norm.sel(layer=layer))
    return v


def config_of(ds) -> dict:
    return json.loads(ds.attrs["config"])


def prompt_of(ds, i: int) -> list[int]:
    return [
        int(x)
        for x, m in zip(ds.input_ids.values[i], ds.attention_mask.values[i], strict=True)
        if m
    ]


def mask_of(ds, i: int, name: str = "inject_mask") -> list[int]:
    row = ds[name].values[i][ds.attention_mask.values[i].astype(bool)]
    return [int(p) for p in np.flatnonzero(row)]


def response_of(ds, i: int) -> list[int]:
    return [int(t) for t in ds.response_ids.values[i] if t >= 0]


def caught(problems: list[str], kind: str) -> bool:
    """Whether the comparison reported a difference of this kind (the mutation was caught)."""
    return any(kind in p for p in problems)


def steering_matters(ds, hf, steered: np.ndarray) -> bool:
    """Whether steering changed some steered trial's readout against the same prompt unsteered
    (the reference's unsteered pass), so that equality does not hold trivially."""
    eos = R.eos_ids(hf, None)
    for i in np.flatnonzero(steered):
        ids = prompt_of(ds, i)
        if "answer_logprobs" in ds:
            plain = R.next_logprobs(hf, ids)[ds.answer_id.values].numpy()
            if np.abs(ds.answer_logprobs.values[i] - plain).max() > 1e-2:
                return True
        elif response_of(ds, i) != R.greedy(hf, ids, len(response_of(ds, i)), eos):
            return True
    return False


def logit_problems(ds, i: int, ids, at, hf, edits) -> list[str]:
    """Differences of trial ``i`` from the reference: prompt tokens, steered positions, and the
    answer tokens' log-probabilities."""
    if prompt_of(ds, i) != ids:
        return [f"trial {i}: prompt tokens differ"]
    if at is not None and mask_of(ds, i) != at:
        return [f"trial {i}: steered positions {mask_of(ds, i)} != {at}"]
    ref = R.next_logprobs(hf, ids, edits)[ds.answer_id.values].numpy()
    got = ds.answer_logprobs.values[i].astype(float)
    err = float(np.abs(got - ref).max())
    return [f"trial {i}: log-probabilities differ by {err:.2e}"] if err > ATOL else []


def test_lindsey_vectors_equal_the_reference(tiny, vectors):
    """The recipe (lower-cased "Tell me about {word}", user turn, generation prompt, last token,
    minus the 100 baseline words' mean) and the resid_norm unit."""
    ref, resid_norm = R.lindsey_vectors(tiny.hf, tiny.tokenizer, CONCEPTS)
    for c in CONCEPTS:
        np.testing.assert_allclose(vectors.sel(concept=c).values, ref[c].numpy(), atol=1e-4)
    np.testing.assert_allclose(vectors.resid_norm.values, resid_norm.numpy(), rtol=1e-5)
    # caught: the word not lower-cased (the open replication's variant)
    upper = concept_vectors(tiny, ["Dust"], lowercase=False, progress=False)
    assert np.abs(upper.sel(concept="Dust").values - ref["Dust"].numpy()).max() > 1e-2


# --- detection-logits --------------------------------------------------------------------------


def detection_problems(model, vectors, ds) -> list[str]:
    ids, at = R.lindsey_trial(model.tokenizer)
    forms = R.single_tokens(model.tokenizer, R.YES_FORMS + R.NO_FORMS)
    assert sorted(ds.answer_id.values.tolist()) == sorted(forms)
    out = []
    for i in range(ds.sizes["trial"]):
        layer, s, c = int(ds.inject_layer[i]), float(ds.strength[i]), str(ds.concept.values[i])
        injected = str(ds.condition.values[i]) == "injected"
        v = vec(vectors, c, layer, config_of(ds)["strength_unit"]) if injected else None
        edits = [R.Steer(layer, s * v, at)] if injected else []
        out += logit_problems(ds, i, ids, at if injected else None, model.hf, edits)
    return out


def test_detection_logits_equals_the_reference(tiny, vectors, tmp_path, monkeypatch):
    """caught: the injection starting at "Trial 1" instead of the double newline before it
    (``stimuli.TRIAL_MARKER``): two tokens later."""
    cfg = detection_logits.Config(concepts=CONCEPTS, layers=(1, 2), strengths=(4.0,))
    ds = runs.open_run(detection_logits.run(cfg, tmp_path / "d", model=tiny, vectors=vectors))
    assert detection_problems(tiny, vectors, ds) == []
    assert steering_matters(ds, tiny.hf, ds.condition.values == "injected")
    # the other strength unit: the vector rescaled to the layer's mean residual norm
    cfg_norm = dataclasses.replace(cfg, strength_unit="resid_norm", strengths=(0.5,))
    ds = runs.open_run(detection_logits.run(cfg_norm, tmp_path / "n", model=tiny, vectors=vectors))
    assert detection_problems(tiny, vectors, ds) == []
    monkeypatch.setattr(stimuli, "TRIAL_MARKER", "Trial 1")
    ds = runs.open_run(detection_logits.run(cfg, tmp_path / "m", model=tiny, vectors=vectors))
    assert caught(detection_problems(tiny, vectors, ds), "steered positions")


# --- sweep ---------------------------------------------------------------------------------------


def sweep_problems(model, ds, vectors=None) -> list[str]:
    cfg = config_of(ds)
    if cfg["vector"] == "caps":
        caps = R.caps_vector(model.hf, model.tokenizer)
    else:  # a Lindsey concept vector
        caps = {layer: vec(vectors, cfg["vector"], layer) for layer in range(model.n_layers)}
    out = []
    for i in range(ds.sizes["trial"]):
        ids = R.godet_question(model.tokenizer, str(ds.question.values[i]))
        steered = str(ds.condition.values[i]) == "steered"
        layer, s = int(ds.inject_layer[i]), float(ds.strength[i])
        if steered and np.abs(ds.injected_vector.values[i] - caps[layer].numpy()).max() > 1e-4:
            out.append(f"trial {i}: the vector differs")
        # Godet's default: the last prompt token; or every token
        at = list(range(len(ids))) if cfg["position"] == "all" else [len(ids) - 1]
        edits = [R.Steer(layer, s * caps[layer], at)] if steered else []
        out += logit_problems(ds, i, ids, at if steered else None, model.hf, edits)
    return out


class _SecondToLast(Window):
    @classmethod
    def tokens(cls, mask, *, generated=False):
        return Window(mask=(*mask[1:], False))


def test_sweep_equals_the_reference(tiny, vectors, tmp_path, monkeypatch):
    """Godet's caps vector recomputed by the reference. caught: the steered token moved from
    the last prompt token to the one before it."""
    cfg = sweep.Config(layers=(0, 2), strengths=(2.0, 8.0), control_questions=(R.GODET_CONTROL,))
    ds = runs.open_run(sweep.run(cfg, tmp_path / "s", model=tiny))
    assert set(ds.question.values.tolist()) == {R.GODET_QUESTION, R.GODET_CONTROL}
    assert sweep_problems(tiny, ds) == []
    assert steering_matters(ds, tiny.hf, ds.condition.values == "steered")
    # every token steered, with a Lindsey concept vector
    cfg_all = dataclasses.replace(cfg, position="all", vector="Dust", layers=(1,))
    ds = runs.open_run(sweep.run(cfg_all, tmp_path / "a", model=tiny, vectors=vectors))
    assert sweep_problems(tiny, ds, vectors) == []
    assert steering_matters(ds, tiny.hf, ds.condition.values == "steered")
    monkeypatch.setattr(sweep, "Window", _SecondToLast)
    ds = runs.open_run(sweep.run(cfg, tmp_path / "m", model=tiny))
    assert caught(sweep_problems(tiny, ds), "steered positions")


# --- localisation --------------------------------------------------------------------------------


def localisation_problems(model, vectors, cfg, ds) -> list[str]:
    tok = model.tokenizer
    space = len(tok(" 1", add_special_tokens=False)["input_ids"]) == 1
    forms = {
        "sentence": [(" " if space else "") + str(i) for i in range(1, cfg.k + 1)],
        "half": [" first", " second"],
        "depth": [" early", " late"],
    }
    assert ds.answer.values.tolist() == [f for t in cfg.tasks for f in forms[t]]
    trials, _ = localisation.build_trials(cfg, model, vectors)  # for the sampled sentences only
    out = []
    for i, trial in enumerate(trials):
        found = re.findall(r"SENTENCE \d: (.*?)(?= SENTENCE \d: |\n)", trial.prompt.text)
        sentences = found[: cfg.k]
        task, target = str(ds.task.values[i]), str(ds.target.values[i])
        qwen = "qwen" in model.name.lower()
        ids, offsets, text = R.localisation_prompt(tok, task, sentences, qwen=qwen)
        if str(ds.condition.values[i]) == "control":
            out += logit_problems(ds, i, ids, None, model.hf, [])
            continue
        layer = int(ds.cell_layer[i])
        if task == "sentence":
            part = [int(target)]
        elif task == "half":
            h = cfg.k // 2
            part = list(range(1, h + 1) if target == "first" else range(h + 1, cfg.k + 1))
        else:
            part = list(range(1, cfg.k + 1))
            layer = layer // 2 if target == "early" else layer
        at = sorted(
            {
                p
                for j in part
                for p in R.sentence_positions(tok, ids, offsets, text, sentences[j - 1])
            }
        )
        v = float(ds.strength[i]) * vec(vectors, str(ds.concept.values[i]), layer)
        if int(ds.inject_layer[i]) != layer:
            out.append(f"trial {i}: injected at layer {int(ds.inject_layer[i])}, not {layer}")
        out += logit_problems(ds, i, ids, at, model.hf, [R.Steer(layer, v, at)])
    return out


def test_localisation_equals_the_reference(tiny, vectors, tmp_path, monkeypatch):
    """All three tasks. caught: one word of Godet's intro changed ("where I inject thoughts" →
    "when I inject thoughts", Lindsey's wording)."""
    cfg = localisation.Config(
        concepts=CONCEPTS, k=4, layers=(2,), strengths=(4.0,), trials=2, batch_size=4
    )
    ds = runs.open_run(localisation.run(cfg, tmp_path / "l", model=tiny, vectors=vectors))
    assert localisation_problems(tiny, vectors, cfg, ds) == []
    assert steering_matters(ds, tiny.hf, ds.condition.values == "injected")
    intro = localisation.INTRO.replace("where I inject", "when I inject")
    assert intro != localisation.INTRO
    monkeypatch.setattr(localisation, "INTRO", intro)
    ds = runs.open_run(localisation.run(cfg, tmp_path / "m", model=tiny, vectors=vectors))
    assert caught(localisation_problems(tiny, vectors, cfg, ds), "prompt tokens")


# --- injected-thoughts ---------------------------------------------------------------------------


def generation_problems(ds, i, ids, at, hf, edits, n, eos) -> list[str]:
    if prompt_of(ds, i) != ids:
        return [f"trial {i}: prompt tokens differ"]
    if at is not None and mask_of(ds, i) != at:
        return [f"trial {i}: steered positions {mask_of(ds, i)} != {at}"]
    ref = R.greedy(hf, ids, n, eos, edits)
    got = response_of(ds, i)
    return [] if got == ref else [f"trial {i}: greedy tokens {got} != {ref}"]


def injected_problems(model, vectors, cfg, ds) -> list[str]:
    if cfg.question == "detect":
        ids, at = R.lindsey_trial(model.tokenizer)
    else:
        ids, at = R.open_question(model.tokenizer, R.OPEN_QUESTIONS[cfg.question])
    sign = -1.0 if cfg.vector_kind == "negated" else 1.0
    eos = R.eos_ids(model.hf, model.tokenizer)
    out = []
    for i in range(ds.sizes["trial"]):
        layer, s, c = int(ds.inject_layer[i]), float(ds.strength[i]), str(ds.concept.values[i])
        injected = str(ds.condition.values[i]) == "injected"
        v = sign * s * vec(vectors, c, layer) if injected else None
        if injected and cfg.vector_kind == "random":
            # mechintro draws the direction; the protocol fixes its norm: the concept vector's
            drawn = torch.from_numpy(ds.injected_vector.values[i].copy())
            if abs(float(drawn.norm()) - float(v.norm()) / s) > 1e-4 * float(v.norm()) / s:
                out.append(f"trial {i}: the random vector's norm is not the concept vector's")
            v = s * drawn
        edits = [R.Steer(layer, v, at, generated=True, prompt_len=len(ids))] if injected else []
        n = cfg.max_new_tokens
        out += generation_problems(ds, i, ids, at if injected else None, model.hf, edits, n, eos)
    return out


class _PromptOnly(Window):
    @classmethod
    def from_marker(cls, marker, *, generated=False, **_options):
        return Window(start=marker)


def test_injected_thoughts_equals_the_reference(tiny, vectors, tmp_path, monkeypatch):
    """Greedy (temperature 0) so the tokens are comparable. caught: the generated tokens left
    unsteered (the injection on the prompt only)."""
    cfg = injected_thoughts.Config(
        concepts=CONCEPTS,
        layers=(1,),
        strengths=(8.0,),
        trials=3,
        controls=1,
        temperature=0.0,
        max_new_tokens=6,
    )
    ds = runs.open_run(injected_thoughts.run(cfg, tmp_path / "i", model=tiny, vectors=vectors))
    assert injected_problems(tiny, vectors, cfg, ds) == []
    assert steering_matters(ds, tiny.hf, ds.condition.values == "injected")
    # an open question (every token steered) with the negated vector
    cfg_open = dataclasses.replace(cfg, question="thinking", vector_kind="negated")
    ds = runs.open_run(injected_thoughts.run(cfg_open, tmp_path / "o", model=tiny, vectors=vectors))
    assert injected_problems(tiny, vectors, cfg_open, ds) == []
    assert steering_matters(ds, tiny.hf, ds.condition.values == "injected")
    cfg_random = dataclasses.replace(cfg, vector_kind="random")
    ds = runs.open_run(
        injected_thoughts.run(cfg_random, tmp_path / "r", model=tiny, vectors=vectors)
    )
    assert injected_problems(tiny, vectors, cfg_random, ds) == []
    monkeypatch.setattr(injected_thoughts, "Window", _PromptOnly)
    ds = runs.open_run(injected_thoughts.run(cfg, tmp_path / "m", model=tiny, vectors=vectors))
    assert caught(injected_problems(tiny, vectors, cfg, ds), "greedy tokens")


# --- thoughts-vs-text ----------------------------------------------------------------------------


def thoughts_problems(model, vectors, ds) -> list[str]:
    eos = R.eos_ids(model.hf, model.tokenizer)
    out = []
    for i in range(ds.sizes["trial"]):
        sentence, task = str(ds.sentence.values[i]), str(ds.task.values[i])
        lead, n = (R.WORD, 5) if task == "word" else (R.REPEAT, 15)
        text = R.chat(model.tokenizer, [{"role": "user", "content": lead + sentence}])
        ids, offsets = R.encode(model.tokenizer, text)
        lo = text.index(sentence)
        at = R.positions(offsets, lo, lo + len(sentence))
        injected = str(ds.condition.values[i]) == "injected"
        layer, s, c = int(ds.inject_layer[i]), float(ds.strength[i]), str(ds.concept.values[i])
        edits = [R.Steer(layer, s * vec(vectors, c, layer), at)] if injected else []
        out += generation_problems(ds, i, ids, at if injected else None, model.hf, edits, n, eos)
    return out


class _ToTheEnd(Window):
    @classmethod
    def span(cls, text):
        return Window(start=text)


def test_thoughts_vs_text_equals_the_reference(tiny, vectors, tmp_path, monkeypatch):
    """Both prompts, the vector on the sentence's tokens only, 5 / 15 greedy tokens. caught: the
    injection running from the sentence to the end of the prompt (the template tokens after it)."""
    cfg = thoughts_vs_text.Config(
        concepts=CONCEPTS, pairs=2, layers=(1,), strengths=(8.0,), temperature=0.0
    )
    ds = runs.open_run(thoughts_vs_text.run(cfg, tmp_path / "t", model=tiny, vectors=vectors))
    assert thoughts_problems(tiny, vectors, ds) == []
    assert steering_matters(ds, tiny.hf, ds.condition.values == "injected")
    monkeypatch.setattr(thoughts_vs_text, "Window", _ToTheEnd)
    ds = runs.open_run(thoughts_vs_text.run(cfg, tmp_path / "m", model=tiny, vectors=vectors))
    assert caught(thoughts_problems(tiny, vectors, ds), "steered positions")


# --- prefill -------------------------------------------------------------------------------------


def prefill_problems(model, vectors, cfg, ds) -> list[str]:
    eos = R.eos_ids(model.hf, model.tokenizer)
    logits = cfg.readout == "logits"
    out = []
    for i in range(ds.sizes["trial"]):
        sentence, word = str(ds.sentence.values[i]), str(ds.prefilled.values[i])
        msgs = [
            {"role": "user", "content": R.WORD + sentence},
            {"role": "assistant", "content": word},
            {"role": "user", "content": R.ACCIDENT_QUESTION},
        ]
        if logits:
            msgs.append({"role": "assistant", "content": "It was"})
        text = R.chat(model.tokenizer, msgs, prefill=logits)
        ids, offsets = R.encode(model.tokenizer, text)
        cond = str(ds.condition.values[i])
        at, edits = None, []
        if cond != "control":
            span = R.ACCIDENT_QUESTION if cond == "matched_after" else sentence
            lo = text.index(span)
            at = R.positions(offsets, lo, lo + len(span))
            layer, c = int(ds.inject_layer[i]), str(ds.concept.values[i])
            if (c == word) != (cond != "random"):
                out.append(f"trial {i}: {cond} injects {c} with {word} prefilled")
            edits = [R.Steer(layer, float(ds.strength[i]) * vec(vectors, c, layer), at)]
        if logits:
            out += logit_problems(ds, i, ids, at, model.hf, edits)
        else:
            n = cfg.max_new_tokens
            out += generation_problems(ds, i, ids, at, model.hf, edits, n, eos)
    return out


def test_prefill_equals_the_reference(tiny, vectors, tmp_path, monkeypatch):
    """Control, matched and random on the sentence, matched on the follow-up question; greedy,
    and the logit readout. caught: the prefilled word (the assistant's first answer) dropped."""
    cfg = prefill.Config(
        concepts=CONCEPTS,
        pairs=2,
        layers=(1,),
        strengths=(8.0,),
        temperature=0.0,
        max_new_tokens=8,
    )
    ds = runs.open_run(prefill.run(cfg, tmp_path / "p", model=tiny, vectors=vectors))
    assert prefill_problems(tiny, vectors, cfg, ds) == []
    assert steering_matters(ds, tiny.hf, ds.condition.values == "matched")
    lcfg = prefill.Config(
        concepts=CONCEPTS, pairs=2, layers=(1,), strengths=(8.0,), readout="logits"
    )
    ds = runs.open_run(prefill.run(lcfg, tmp_path / "pl", model=tiny, vectors=vectors))
    assert prefill_problems(tiny, vectors, lcfg, ds) == []
    assert steering_matters(ds, tiny.hf, ds.condition.values == "matched")
    original = prefill.messages

    def no_prefilled_word(sentence, word, *, prefix=None):
        return [m for m in original(sentence, word, prefix=prefix) if m["content"] != word]

    monkeypatch.setattr(prefill, "messages", no_prefilled_word)
    ds = runs.open_run(prefill.run(cfg, tmp_path / "m", model=tiny, vectors=vectors))
    assert caught(prefill_problems(tiny, vectors, cfg, ds), "prompt tokens")


# --- intentional-control -------------------------------------------------------------------------


def intentional_problems(model, ds) -> list[str]:
    out = []
    for i in range(ds.sizes["trial"]):
        sentence, word = str(ds.sentence.values[i]), str(ds.concept.values[i])
        instruction = R.THINK[str(ds.condition.values[i])].format(w=word.lower())
        user = [{"role": "user", "content": R.WRITE.format(s=sentence, i=instruction)}]
        text = R.chat(
            model.tokenizer, [*user, {"role": "assistant", "content": sentence}], prefill=True
        )
        start = len(R.chat(model.tokenizer, user))  # the assistant turn starts after its header
        assert text.startswith(R.chat(model.tokenizer, user))
        ids, offsets = R.encode(model.tokenizer, text)
        if prompt_of(ds, i) != ids:
            out.append(f"trial {i}: prompt tokens differ")
            continue
        read = R.positions(offsets, start, start + len(sentence))
        if mask_of(ds, i, "read_mask") != read:
            out.append(f"trial {i}: read positions {mask_of(ds, i, 'read_mask')} != {read}")
        ref = R.block_outputs(model.hf, ids).numpy()
        got = ds.resid.values[i][:, -len(ids) :].astype(np.float32)
        # stored as float16: within its rounding (relative 2^-11) of the float32 reference
        if not np.allclose(got, ref, rtol=2**-10, atol=1e-3):
            out.append(f"trial {i}: residuals differ by {np.abs(got - ref).max():.2e}")
    return out


def test_intentional_control_equals_the_reference(tiny, tmp_path, monkeypatch):
    """The residual stream over the prompt and the read window (the assistant's sentence).
    caught: "Don't write anything else." dropped from the instruction."""
    cfg = intentional_control.Config(concepts=CONCEPTS, pairs=2)
    ds = runs.open_run(intentional_control.run(cfg, tmp_path / "c", model=tiny))
    assert intentional_problems(tiny, ds) == []
    template = intentional_control.TEMPLATE.replace(" Don't write anything else.", "")
    monkeypatch.setattr(intentional_control, "TEMPLATE", template)
    ds = runs.open_run(intentional_control.run(cfg, tmp_path / "m", model=tiny))
    assert caught(intentional_problems(tiny, ds), "prompt tokens")


# --- patchscope ----------------------------------------------------------------------------------


def patchscope_problems(model, vectors, cfg, ds) -> list[str]:
    ids, offsets = R.encode(model.tokenizer, R.IDENTITY)
    at = R.positions(offsets, R.IDENTITY.rindex("?"), R.IDENTITY.rindex("?") + 1)[0]
    eos = R.eos_ids(model.hf, model.tokenizer)
    trials, _ = patchscope.build_trials(cfg, model, vectors)  # only the random vectors
    out = []
    for i in range(ds.sizes["trial"]):
        layer, s, c, cond = (
            int(ds.inject_layer[i]),
            float(ds.strength[i]),
            str(ds.concept.values[i]),
            str(ds.condition.values[i]),
        )
        v = vec(vectors, c, layer)
        v = v / v.norm() * float(vectors.resid_norm.sel(layer=layer)) * s  # resid_norm unit
        edits = []
        if cond == "concept":
            edits = [R.Replace(layer, v, at)]
        elif cond == "random":
            noise = trials[i].patch.vectors[0]
            if abs(float(noise.norm()) - float(v.norm())) > 1e-3 * float(v.norm()):
                out.append(f"trial {i}: the random vector's norm is not the concept vector's")
            edits = [R.Replace(layer, noise, at)]
        out += generation_problems(ds, i, ids, None, model.hf, edits, cfg.max_new_tokens, eos)
    return out


def test_patchscope_equals_the_reference(tiny, vectors, tmp_path, monkeypatch):
    """The placeholder's residual replaced by the concept vector scaled to the layer's mean
    residual norm; greedy. caught: the strength unit changed to raw."""
    # layer 0: on the 3-layer tiny model a patch at layer 1 never changes the greedy tokens
    cfg = patchscope.Config(concepts=CONCEPTS, layers=(0,), strengths=(1.0, 4.0))
    ds = runs.open_run(patchscope.run(cfg, tmp_path / "ps", model=tiny, vectors=vectors))
    assert patchscope_problems(tiny, vectors, cfg, ds) == []
    assert steering_matters(ds, tiny.hf, ds.condition.values == "concept")
    original = patchscope.unit_vector
    monkeypatch.setattr(
        patchscope, "unit_vector", lambda v, c, layer, unit="raw": original(v, c, layer, "raw")
    )
    ds = runs.open_run(patchscope.run(cfg, tmp_path / "m", model=tiny, vectors=vectors))
    assert caught(patchscope_problems(tiny, vectors, cfg, ds), "greedy tokens")


# --- the other architectures ---------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["qwen2", "gemma", "gemma2", "gemma3_text", "gpt2"])
def test_logit_and_generation_protocols_equal_the_reference_on_every_architecture(
    tiny_models, arch, tmp_path
):
    """detection-logits (log-probabilities) and thoughts-vs-text (greedy tokens, prompts of
    different lengths in one batch) on each tiny architecture."""
    model = tiny_models(arch)
    vectors = concept_vectors(model, CONCEPTS, progress=False)
    cfg = detection_logits.Config(concepts=CONCEPTS, layers=(1,), strengths=(4.0,))
    ds = runs.open_run(detection_logits.run(cfg, tmp_path / "d", model=model, vectors=vectors))
    assert detection_problems(model, vectors, ds) == []
    assert steering_matters(ds, model.hf, ds.condition.values == "injected")
    cfg = thoughts_vs_text.Config(
        concepts=CONCEPTS, pairs=2, layers=(1,), strengths=(8.0,), temperature=0.0
    )
    ds = runs.open_run(thoughts_vs_text.run(cfg, tmp_path / "t", model=model, vectors=vectors))
    assert thoughts_problems(model, vectors, ds) == []
