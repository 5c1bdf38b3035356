"""Godet's localisation and sweep, as his scripts do them (victorgodet's commits in the fork
dustinrubin/introspection-replication; docs/protocols.md): the steered tokens are a sentence's own
tokens and never its "SENTENCE t:" label, layers round as his code rounds them, the system message
follows his Qwen / non-Qwen rule, the sweep reads " Yes" / " No"; each old behaviour is a named
option, and a run stored before the options existed is not resumed with the new defaults."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from mechintro import runs
from mechintro.errors import MechintroError
from mechintro.experiments import localisation as LO
from mechintro.experiments import sweep as SW
from mechintro.prompts import Window
from mechintro.readouts import yes_no
from mechintro.vectors import concept_vectors

WORDS = ("Dust", "Oceans", "Bread", "Silver")
SHIPPED = Path(__file__).resolve().parents[2] / "analyses" / "data" / "smollm2-135m"


@pytest.fixture(scope="module")
def vecs(tiny):
    return concept_vectors(tiny, WORDS, baseline=["apple", "chair", "river"])


def _config(**kw) -> LO.Config:
    base = {"concepts": WORDS, "layers": (2,), "strengths": (4.0,), "trials": 4, "k": 3}
    return LO.Config(**(base | kw))


def _sentences(text: str, k: int) -> list[str]:
    """The k sentences of a rendered prompt's listing, read back from its text."""
    listing = text[text.index("SENTENCE 1: ") :].split("\n")[0]
    parts = [listing.split(f"SENTENCE {i}: ")[1] for i in range(1, k + 1)]
    return [p.split(f" SENTENCE {i + 2}: ")[0] for i, p in enumerate(parts)]


def _expected_mask(trial, sentences: list[str]) -> list[bool]:
    """Independently of the module: the tokens whose characters lie inside one of ``sentences``
    (the tiny tokenizer is character-level, so these are exactly the sentences' characters)."""
    text = trial.prompt.text
    spans = []
    for s in sentences:
        at = text.index(f": {s}") + 2
        spans.append((at, at + len(s)))
    return [any(a < hi and b > lo for lo, hi in spans) for a, b in trial.prompt.offsets]


def _steered_text(trial) -> str:
    mask = trial.window.resolve(trial.prompt)
    return "".join(
        trial.prompt.text[a:b] for (a, b), m in zip(trial.prompt.offsets, mask, strict=True) if m
    )


def test_default_window_is_the_sentences_own_tokens_and_no_label(tiny, vecs):
    trials, _ = LO.build_trials(_config(), tiny, vecs)
    injected = [t for t in trials if t.condition == "injected"]
    assert {t.labels["task"] for t in injected} == {"sentence", "half", "depth"}
    for t in injected:
        sentences = _sentences(t.prompt.text, 3)
        task, target = t.labels["task"], t.labels["target"]
        if task == "sentence":
            chosen = [sentences[int(target) - 1]]
        elif task == "half":
            chosen = sentences[:1] if target == "first" else sentences[1:]
        else:
            chosen = sentences
        assert list(t.window.resolve(t.prompt)) == _expected_mask(t, chosen)
        steered = _steered_text(t)
        assert steered == "".join(chosen)
        assert "SENTENCE" not in steered and ":" not in steered  # no "SENTENCE t:" label


def test_steer_label_restores_the_old_windows(tiny, vecs):
    trials, _ = LO.build_trials(_config(steer_label=True), tiny, vecs)
    for t in (t for t in trials if t.condition == "injected"):
        sentences = _sentences(t.prompt.text, 3)
        task, target = t.labels["task"], t.labels["target"]
        steered = _steered_text(t)
        if task == "sentence":
            label = f"SENTENCE {target}: {sentences[int(target) - 1]}"
            assert steered == label
            mask = Window.span(label).resolve(t.prompt)
            assert t.window.resolve(t.prompt) == mask
        elif task == "half":
            assert steered.startswith("SENTENCE 1: " if target == "first" else "SENTENCE 2: ")
            assert ("SENTENCE 3" in steered) == (target == "second")
        else:
            listing = " ".join(f"SENTENCE {i + 1}: {s}" for i, s in enumerate(sentences))
            assert steered == listing


def test_sentence_tokens_drop_colon_and_space_tokens_as_godets_code(tiny):
    prompt, _ = LO._prompt(tiny, "sentence", ["Rain falls.", "Dust settles."])
    mask = LO.sentence_tokens(prompt, tiny.tokenizer, "Dust settles.")
    kept = [i for i, m in enumerate(mask) if m]
    assert "".join(prompt.text[slice(*prompt.offsets[i])] for i in kept) == "Dust settles."
    assert prompt.text[prompt.offsets[kept[0] - 1][0]] == " "  # the space after the colon ...
    assert prompt.text[prompt.offsets[kept[0] - 2][0]] == ":"  # ... and the colon: dropped
    with pytest.raises(MechintroError, match="does not occur"):
        LO.sentence_tokens(prompt, tiny.tokenizer, "Snow melts.")


def test_layer_rounding_round_by_default_floor_as_option(tiny, vecs):
    assert LO.localisation_layers(("0.1", "0.25", "0.5", "0.75"), 30, "round") == [3, 8, 15, 22]
    assert LO.localisation_layers(("0.1", "0.25", "0.5", "0.75"), 30, "floor") == [3, 7, 15, 22]
    assert LO.localisation_layers((0.99, 1), 30, "round") == [29, 1]  # clipped, as his max/min
    with pytest.raises(MechintroError, match="twice"):
        LO.localisation_layers(("0.25", "0.26"), 30, "round")
    # the tiny model has 3 layers: 0.5 is round(1.5) = 2 (his code), int(1.5) = 1 (floor)
    for rounding, layer in (("round", 2), ("floor", 1)):
        trials, layers = LO.build_trials(
            _config(layers=("0.5",), tasks=("sentence",), layer_rounding=rounding), tiny, vecs
        )
        assert layers == [layer]
        assert {t.inject_layer for t in trials if t.condition == "injected"} == {layer}


def test_system_message_follows_godets_qwen_rule(tiny_models, vecs):
    llama, qwen = tiny_models("llama"), tiny_models("qwen2")
    assert "qwen" in qwen.name and "qwen" not in llama.name
    sentences = ["Rain falls.", "Dust settles."]

    def text(model, system_message):
        return LO._prompt(model, "sentence", sentences, system_message)[0].text

    assert not text(llama, "authors").startswith("<|im_start|>system")
    assert text(llama, "empty").startswith("<|im_start|>system\n<|im_end|>")
    assert text(qwen, "authors").startswith("<|im_start|>system\n<|im_end|>")
    assert text(qwen, "empty") == text(qwen, "authors")
    with pytest.raises(MechintroError):
        LO.Config(system_message="none")


def _strip_fields(out: Path, fields: tuple[str, ...]) -> None:
    """Make ``out`` look like a run stored before ``fields`` existed."""
    group = zarr.open_group(str(out), mode="r+")
    config = json.loads(group.attrs["config"])
    group.attrs["config"] = json.dumps(
        {k: v for k, v in config.items() if k not in fields}, sort_keys=True
    )


def test_a_run_from_before_the_options_resumes_only_with_the_old_behaviour(tiny, vecs, tmp_path):
    out = tmp_path / "lo.zarr"
    legacy = dict(LO.Config.LEGACY)
    LO.run(_config(tasks=("sentence",), **legacy), out, model=tiny, vectors=vecs)
    _strip_fields(out, tuple(legacy))
    assert "steer_label" not in runs.read_attrs(out)["config"]
    # missing fields read as the behaviour of their time: the old settings resume it
    LO.run(_config(tasks=("sentence",), **legacy), out, model=tiny, vectors=vecs)
    # the new defaults would change its trials: refused with one line naming the fields
    with pytest.raises(MechintroError) as err:
        LO.run(_config(tasks=("sentence",)), out, model=tiny, vectors=vecs)
    message = str(err.value)
    assert "\n" not in message
    assert all(f in message for f in ("steer_label", "layer_rounding", "system_message"))


def test_shipped_localisation_run_is_summarised_and_was_made_with_godets_defaults():
    ds = runs.open_run(SHIPPED / "localisation.zarr")
    config = json.loads(ds.attrs["config"])
    defaults = LO.Config()
    # a field added after the run (lowercase) reads as its LEGACY value, as on resume
    assert {k: config.get(k, LO.Config.LEGACY[k]) for k in LO.Config.LEGACY} == {
        k: getattr(defaults, k) for k in LO.Config.LEGACY
    }
    # its sentence windows leave the "SENTENCE t:" label out, so the digit read as the answer is
    # steered only where it also occurs inside a sentence (it was in all 400 under LEGACY)
    ids, mask = np.asarray(ds.input_ids.values), np.asarray(ds.inject_mask.values, dtype=bool)
    digit = {
        str(a): int(i) for a, i in zip(ds.answer_label.values, ds.answer_id.values, strict=True)
    }
    rows = np.flatnonzero((ds.condition.values == "injected") & (ds.task.values == "sentence"))
    assert len(rows) == 400
    steered_digit = sum(digit[str(ds.target.values[i])] in ids[i][mask[i]].tolist() for i in rows)
    assert steered_digit <= 0.02 * len(rows)
    s = LO.summarize(ds)
    assert set(s.task.values) == {"sentence", "half", "depth"}
    assert np.isfinite(s.accuracy.values).sum() == 20


def test_sweep_reads_godets_tokens_by_default_and_four_forms_as_option(tiny, tmp_path):
    cfg = SW.Config(layers=(1,), strengths=(2.0,), control_questions=("Is 1 > 2?", "Is 3 > 2?"))
    SW.run(cfg, tmp_path / "s.zarr", model=tiny)
    ds = runs.open_run(tmp_path / "s.zarr")
    # the tiny tokenizer has no single-token " Yes": no Godet readout, said so
    ld, _, used = SW.logit_difference(ds, "godet")
    assert used.startswith("four_forms") and "no Godet readout" in used
    np.testing.assert_allclose(ld, yes_no(ds).logit_diff.values)
    with pytest.raises(MechintroError, match="readout 'yes' is not known"):
        SW.logit_difference(ds, "yes")


def test_sweep_readouts_on_the_shipped_run():
    ds = runs.open_run(SHIPPED / "sweep.zarr")
    forms = [str(x) for x in ds.answer.values]
    logp = np.asarray(ds.answer_logprobs.values, dtype=np.float64)
    ld, mass, used = SW.logit_difference(ds)
    assert used.startswith("godet")
    np.testing.assert_allclose(ld, logp[:, forms.index(" Yes")] - logp[:, forms.index(" No")])
    np.testing.assert_allclose(
        mass, np.exp(logp[:, forms.index(" Yes")]) + np.exp(logp[:, forms.index(" No")])
    )
    godet, four = SW.summarize(ds), SW.summarize(ds, readout="four_forms")
    assert godet.attrs["readout"].startswith("godet") and four.attrs["readout"].startswith("four")
    assert not np.allclose(godet.intro_shift.values, four.intro_shift.values)
    np.testing.assert_allclose(
        four.intro.values.ravel()[:1],
        [yes_no(ds).logit_diff.values[_first_steered_intro(ds)]],
    )
    assert "readout: godet" in SW.format_summary(godet)


def _first_steered_intro(ds) -> int:
    """The one introspection trial of the first (layer, strength) cell."""
    cond, kind = ds.condition.values, ds.kind.values
    layer, strength = ds.inject_layer.values, ds.strength.values
    rows = (cond == "steered") & (kind == "introspection")
    rows &= (layer == layer[rows].min()) & (strength == strength[rows].min())
    return int(np.flatnonzero(rows)[0])
