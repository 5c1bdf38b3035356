"""The published experiments on a tiny random model: trial grids, injection windows, stored
labels and summaries. What the numbers mean on real models is the integration tier's and
``docs/results.md``'s business; here every window and count is checked exactly."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
import xarray as xr

from mechintro import engine, runs
from mechintro.errors import MechintroError
from mechintro.experiments import EXPERIMENTS
from mechintro.experiments import injected_thoughts as IT
from mechintro.experiments import intentional_control as IC
from mechintro.experiments import latent_introspection as LI
from mechintro.experiments import localisation as LO
from mechintro.experiments import prefill as PF
from mechintro.experiments import sweep as SW
from mechintro.experiments import thoughts_vs_text as TT
from mechintro.experiments.base import cell_summary, check_experiment, field_help
from mechintro.vectors import concept_vectors, contrastive_vector

from .test_engine import reference_forward

WORDS = ("Dust", "Oceans", "Bread", "Silver")


@pytest.fixture(scope="module")
def vecs(tiny):
    return concept_vectors(tiny, WORDS, baseline=["apple", "chair", "river"])


def _text(model, ids) -> str:
    """The tiny tokenizer is character-level; its decode() puts spaces between tokens."""
    return "".join(model.tokenizer.convert_ids_to_tokens(list(ids)))


def _decode(model, ds, i, mask_name):
    ids = np.asarray(ds["input_ids"].values[i])
    mask = np.asarray(ds[mask_name].values[i], dtype=bool)
    return _text(model, ids[mask].tolist())


def test_injected_thoughts_grid_window_and_controls(tiny, vecs, tmp_path):
    cfg = IT.Config(
        concepts=WORDS,
        layers=(1, 2),
        strengths=(2.0, 4.0),
        trials=3,
        controls=2,
        max_new_tokens=4,
        batch_size=8,
    )
    IT.run(cfg, tmp_path / "r.zarr", model=tiny, vectors=vecs)
    ds = runs.open_run(tmp_path / "r.zarr")
    assert ds.sizes["trial"] == 2 * 2 * (3 + 2)
    inj = ds.condition.values == "injected"
    assert (
        ds.generated_injection.values[inj].all() and not ds.generated_injection.values[~inj].any()
    )
    assert not ds.inject_mask.values[~inj].any() and (ds.injected_vector.values[~inj] == 0).all()
    # the window runs from the double newline before "Trial 1" to the end of the prompt
    text = _decode(tiny, ds, int(np.flatnonzero(inj)[0]), "inject_mask")
    assert text.startswith("\n\nTrial 1") and text.endswith("<|im_start|>assistant\n")
    assert set(ds.question.values) == {IT.QUESTIONS["detect"]}
    s = IT.summarize(ds)
    assert s.tpr.shape == (2, 2) and int(s.n.sum()) == 12 and int(s.n_control.sum()) == 8
    assert "FPR" in IT.format_summary(s)


@pytest.mark.parametrize("kind", ["random", "negated"])
def test_injected_thoughts_control_vectors(tiny, vecs, kind):
    cfg = IT.Config(
        concepts=WORDS, layers=(1,), strengths=(1.0,), trials=4, controls=0 + 1, vector_kind=kind
    )
    trials, _ = IT.build_trials(cfg, tiny, vecs)
    for t in trials:
        if t.vector is None:
            continue
        v = torch.from_numpy(vecs.sel(concept=t.concept, layer=1).values)
        if kind == "negated":
            assert torch.equal(t.vector, -v)
        else:
            assert torch.isclose(t.vector.norm(), v.norm(), rtol=1e-5)
            assert abs(float(torch.nn.functional.cosine_similarity(t.vector, v, dim=0))) < 0.6


def test_open_questions_inject_on_every_token(tiny, vecs):
    trials, _ = IT.build_trials(
        IT.Config(
            concepts=WORDS, layers=(1,), strengths=(1.0,), trials=1, controls=1, question="mind"
        ),
        tiny,
        vecs,
    )
    inj = trials[0].injection()
    assert (
        all(inj.mask) and inj.generated and "What's going on in your mind" in trials[0].prompt.text
    )


def test_thoughts_vs_text_windows_and_cut_responses(tiny, vecs, tmp_path):
    cfg = TT.Config(concepts=WORDS, pairs=2, layers=(1,), strengths=(4.0,), batch_size=8)
    TT.run(cfg, tmp_path / "t.zarr", model=tiny, vectors=vecs)
    ds = runs.open_run(tmp_path / "t.zarr")
    assert ds.sizes["trial"] == 2 * 2 * (1 + 1)
    for i in np.flatnonzero(ds.condition.values == "injected"):
        assert _decode(tiny, ds, i, "inject_mask") == str(ds.sentence.values[i])
    word = ds.task.values == "word"
    assert (ds.response_ids.values[word][:, 5:] == -1).all()
    cands = [json.loads(c) for c in ds.candidates.values]
    assert all(
        len(c) == 4 and ds.concept.values[i] in c for i, c in enumerate(cands)
    )  # 4 words: concept + 3 others
    s = TT.summarize(ds)
    assert int(s.n_pairs.sum()) == 2


def test_thoughts_vs_text_scoring_rules():
    assert TT.grading.repeated(
        "Sure: the old clock on the wall ticked loudly", "The old clock on the wall ticked loudly."
    )
    assert TT.grading.closest_word("I think of the sea.", ["Dust", "Oceans", "Bread"]) == "Oceans"
    assert TT.grading.closest_word("Nothing here", ["Dust"]) is None


def test_prefill_conditions_and_windows(tiny, vecs, tmp_path):
    cfg = PF.Config(
        concepts=WORDS, pairs=2, layers=(1,), strengths=(4.0,), max_new_tokens=3, batch_size=8
    )
    PF.run(cfg, tmp_path / "p.zarr", model=tiny, vectors=vecs)
    ds = runs.open_run(tmp_path / "p.zarr")
    assert sorted(set(ds.condition.values)) == ["control", "matched", "matched_after", "random"]
    for i in range(ds.sizes["trial"]):
        c = ds.condition.values[i]
        if c in ("matched", "random"):
            assert _decode(tiny, ds, i, "inject_mask") == str(ds.sentence.values[i])
        elif c == "matched_after":
            assert _decode(tiny, ds, i, "inject_mask") == PF.FOLLOW_UP
        assert (c == "random") == (ds.concept.values[i] not in ("", ds.prefilled.values[i]))
    assert "reduction" in PF.summarize(ds)
    PF.run(
        PF.Config(concepts=WORDS, pairs=1, layers=(1,), strengths=(4.0,), readout="logits"),
        tmp_path / "pl.zarr",
        model=tiny,
        vectors=vecs,
    )
    pl = runs.open_run(tmp_path / "pl.zarr")
    assert set(pl.answer_label.values) == {"accident", "intended"} and pl.input_ids.shape[0] == 4
    a = PF.apologies(pl)["apology"].values
    assert np.all((a >= 0) & (a <= 1))


def test_prefill_apology_first_cue_rule():
    assert PF.grading.apology("Sorry, that was an accident.") is True
    assert (
        PF.grading.apology("I meant it. Well, maybe it was an accident.") is False
    )  # intent first, retreat later
    assert PF.grading.apology("It was not an accident.") is False
    assert PF.grading.apology("The sky is blue.") is None


def test_intentional_control_reads_the_written_sentence(tiny, tmp_path):
    IC.run(IC.Config(concepts=WORDS, pairs=2), tmp_path / "i.zarr", model=tiny)
    ds = runs.open_run(tmp_path / "i.zarr")
    assert ds.sizes["trial"] == 2 * 4 and "resid" in ds
    # the readout it really has: residual streams only, no incidental yes/no logits
    assert [r["readout"] for r in runs.stored_readouts(ds.attrs)] == ["resid"]
    assert "answer_logprobs" not in ds
    for i in range(ds.sizes["trial"]):
        assert _decode(tiny, ds, i, "read_mask") == str(ds.sentence.values[i])
        prompt = _text(
            tiny,
            np.asarray(ds.input_ids.values[i])[
                np.asarray(ds.attention_mask.values[i], bool)
            ].tolist(),
        )
        assert ("Don't think about" in prompt) == (ds.condition.values[i] == "dont_think")
    with pytest.raises(MechintroError, match="record_resid"):
        IC.Config(record_resid=False)


def test_latent_introspection_steers_turn_one_only(tiny, tmp_path):
    vecs = contrastive_vector(tiny, ["cats"], ["anything"], name="cats")
    cfg = LI.Config(
        concepts=("cats",),
        variants=("none",),
        control_context="none",
        strengths=(3.0,),
        layer_start=1,
        layer_end=3,
    )
    trials, layers = LI.build_trials(cfg, tiny, vecs)
    assert layers == [1, 2] and len(trials) == 2 * (1 + 34)
    t = next(t for t in trials if t.condition == "steered")
    mask = t.window.resolve(t.prompt)
    steered = _text(tiny, [i for i, m in zip(t.prompt.input_ids, mask, strict=True) if m])
    # as the authors' code: turn 1 from the (empty) system message's template tokens to "{ }"
    assert steered.startswith(
        "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nI am an interpretability researcher"
    )
    assert steered.rstrip().endswith("{ }<|im_end|>")
    assert not mask[-1] and t.prompt.text.endswith("The answer is")
    # the named deviation steer_system=false leaves the system tokens out
    t2 = next(
        t
        for t in LI.build_trials(dataclasses.replace(cfg, steer_system=False), tiny, vecs)[0]
        if t.condition == "steered"
    )
    mask2 = t2.window.resolve(t2.prompt)
    assert _text(
        tiny, [i for i, m in zip(t2.prompt.input_ids, mask2, strict=True) if m]
    ).startswith("<|im_start|>user\nI am")
    # per-layer vectors: the engine adds vector k at layer k, as an independent hook computation
    # does
    inj = t.injection()
    assert inj.vector.shape == (2, tiny.d_model)
    res = engine.forward(tiny, [t.prompt.input_ids], [inj], answer_ids=list(range(10)))
    ref_lp = _per_layer_reference(tiny, t.prompt.input_ids, inj)
    assert torch.allclose(res.answer_logprobs[0], ref_lp[:10], atol=1e-5)


def _per_layer_reference(model, ids, inj):
    from mechintro.arch import get_module

    layers = get_module(model.hf, model.arch.layers)
    handles = []
    for k, layer_idx in enumerate(inj.layers):

        def hook(module, args, output, v=inj.vector[k]):
            h = output[0] if isinstance(output, tuple) else output
            h = h + torch.tensor(inj.mask, dtype=h.dtype)[None, :, None] * v
            return (h, *output[1:]) if isinstance(output, tuple) else h

        handles.append(layers[layer_idx].register_forward_hook(hook))
    try:
        lp, _ = reference_forward(model, ids, None)
    finally:
        for h in handles:
            h.remove()
    return lp


def test_latent_introspection_summary(tiny, tmp_path):
    vecs = contrastive_vector(tiny, ["cats"], ["anything"], name="cats")
    cfg = LI.Config(
        concepts=("cats",),
        variants=("none",),
        control_questions=False,
        strengths=(3.0,),
        layer_start=1,
        layer_end=3,
    )
    LI.run(cfg, tmp_path / "l.zarr", model=tiny, vectors=vecs)
    ds = runs.open_run(tmp_path / "l.zarr")
    s = LI.summarize(ds)
    p = np.exp(ds.answer_logprobs.values[:, 0].astype(float))
    base, steered = p[ds.condition.values == "unsteered"][0], p[ds.condition.values == "steered"][0]
    assert float(s.yes_shift.sel(row="introspection/none", strength=3.0)) == pytest.approx(
        steered - base, rel=1e-6
    )
    assert float(s.logit_shift.sel(row="introspection/none", strength=3.0)) == pytest.approx(
        np.log(steered / (1 - steered)) - np.log(base / (1 - base)), rel=1e-5
    )


def test_sweep_last_token_and_difference(tiny, tmp_path):
    cfg = SW.Config(
        layers=(0, 2), strengths=(1.0, 5.0), control_questions=("Is 1 > 2?", "Are you a cat?")
    )
    SW.run(cfg, tmp_path / "s.zarr", model=tiny)
    ds = runs.open_run(tmp_path / "s.zarr")
    assert ds.sizes["trial"] == 3 * (1 + 4)
    steered = ds.condition.values == "steered"
    assert (ds.inject_mask.values[steered].sum(1) == 1).all() and ds.inject_mask.values[steered][
        :, -1
    ].all()
    s = SW.summarize(ds)
    np.testing.assert_allclose(s.difference.values, s.intro_shift.values - s.control_shift.values)
    assert s.sizes == {"inject_layer": 2, "strength": 2}
    assert SW.sweep_layers(("all",), 3) == [0, 1, 2]


def test_localisation_windows_and_scoring(tiny, vecs, tmp_path):
    cfg = LO.Config(concepts=WORDS, layers=(1, 2), strengths=(4.0,), trials=3, k=3, batch_size=8)
    LO.run(cfg, tmp_path / "lo.zarr", model=tiny, vectors=vecs)
    ds = runs.open_run(tmp_path / "lo.zarr")
    pool = set(LO.stimuli.lindsey()["lindsey_sentences_50"])
    for i in np.flatnonzero(ds.condition.values == "injected"):
        text, task, target = (
            _decode(tiny, ds, i, "inject_mask"),
            ds.task.values[i],
            ds.target.values[i],
        )
        # the sentences' own tokens, never a "SENTENCE t:" label (steer_label: the
        # label too, tests/unit/test_localisation_window.py)
        if task == "sentence":
            assert "SENTENCE" not in text and text in pool
        elif task == "half":
            assert "SENTENCE" not in text and (text in pool) == (target == "first")
        else:
            assert int(ds.inject_layer.values[i]) == (
                int(ds.cell_layer.values[i]) // 2
                if target == "early"
                else int(ds.cell_layer.values[i])
            )
    assert set(ds.task.values[ds.inject_layer.values >= 0]) == {"sentence", "half", "depth"}
    c = LO.choices(ds)
    s = LO.summarize(ds)
    assert float(s.chance.sel(task="sentence")) == pytest.approx(1 / 3)
    m = (ds.condition.values == "injected") & (ds.task.values == "half")
    assert float(np.nansum(s.accuracy.sel(task="half") * s.n.sel(task="half"))) == pytest.approx(
        float(c.correct.values[m].sum())
    )


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_every_experiment_satisfies_the_protocol(name):
    """Discovered from the registry: a new module is checked without editing this file."""
    module = EXPERIMENTS[name]
    assert module.NAME == name
    assert check_experiment(module) == []
    module.Config()  # defaults are valid
    assert isinstance(module.__doc__, str) and module.__doc__.strip()


# self-prediction is owned elsewhere; its functions gain examples at merge (then drop this set)
@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_protocol_functions_have_docstrings_with_an_example(name):
    module = EXPERIMENTS[name]
    for member in ("build_trials", "run", "summarize", "format_summary"):
        doc = getattr(module, member).__doc__ or ""
        assert "Example::" in doc, f"{name}.{member} has no example in its docstring"


def test_protocol_check_fails_on_a_missing_member_or_a_wrong_signature():
    from mechintro.experiments import sweep

    lacking = types.ModuleType("lacking")
    members = {k: v for k, v in vars(sweep).items() if not k.startswith("__")}
    lacking.__dict__.update({k: v for k, v in members.items() if k != "summarize"})
    assert check_experiment(lacking) == ["lacking has no summarize"]
    wrong = types.ModuleType("wrong")
    wrong.__dict__.update(members)
    wrong.run = lambda config, out, *, model: out
    assert check_experiment(wrong) == [
        "wrong.run takes no argument vectors",
        "wrong.run takes no argument progress",
        "wrong.run takes no argument shard",
    ]
    wrong.Config = dict
    assert "wrong.Config is not a dataclass" in check_experiment(wrong)


def test_registry_imports_a_module_only_when_looked_up():
    code = (
        "import sys, mechintro.experiments as e; "
        "print(sorted(m for m in sys.modules if m.startswith('mechintro.experiments.'))); "
        "e.EXPERIMENTS['sweep']; print('mechintro.experiments.sweep' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True"]


def test_cell_summary_one_value_per_cell():
    ds = xr.Dataset(
        {"x": ("trial", [1.0, 2.0, 3.0, 10.0, 20.0])},
        coords={"layer": ("trial", [1, 1, 1, 2, -1]), "kind": ("trial", list("aabbc"))},
    )
    x = ds.x.values

    def cell(rows):
        return {"mean": x[rows].mean(), "n": int(rows.sum())} if rows.any() else {}

    s = cell_summary(ds, ("layer", "kind"), cell, where=ds.layer.values >= 0, ints=("n",))
    assert s.layer.values.tolist() == [1, 2] and s.kind.values.tolist() == ["a", "b"]
    assert s.n.dtype.kind == "i" and s.n.values.tolist() == [[2, 1], [0, 1]]
    assert s["mean"].sel(layer=1, kind="a") == 1.5 and np.isnan(s["mean"].sel(layer=2, kind="a"))
    s = cell_summary(ds, ("kind",), cell, levels={"kind": ["c", "a"]})
    assert s.kind.values.tolist() == ["c", "a"] and s.n.values.tolist() == [1, 2]


def test_set_parses_by_annotation_and_fields_show_the_docstrings(capsys):
    from mechintro.cli import main
    from mechintro.cli._args import apply_settings

    given: dict = {}
    settings = ["trials=3", "layers=1,0.5", "strengths=1,2.5", "question=mind", "seed=7"]
    apply_settings(settings, IT.Config, given)
    assert given == {
        "trials": 3,
        "layers": ("1", "0.5"),
        "strengths": (1.0, 2.5),
        "question": "mind",
        "seed": 7,
    }
    assert isinstance(given["trials"], int)
    from mechintro.experiments import detection_logits as DL

    given = {}
    apply_settings(["trials=none", "record_resid=false"], DL.Config, given)
    assert given == {"trials": None, "record_resid": False}
    with pytest.raises(MechintroError, match="question='why' is invalid: it must be 'detect'"):
        apply_settings(["question=why"], IT.Config, {})
    with pytest.raises(MechintroError, match="tasks='poems' is invalid"):
        apply_settings(["tasks=sentence,poems"], LO.Config, {})
    assert main(["run", "injected-thoughts", "--fields"]) == 0
    out = capsys.readouterr().out
    assert "uninjected control trials per cell" in out  # the field's own docstring
    assert "random seed of the trial grid" in out  # inherited from BaseConfig
    assert field_help(IT.Config)["strength_unit"].startswith("raw multiplier")


@pytest.mark.parametrize(
    "module,kwargs,match",
    [
        (IT, {"question": "why"}, "question='why' is invalid"),
        (IT, {"trials": 0}, "trials must be at least 1"),
        (TT, {"pairs": 51}, "pairs=51"),
        (SW, {"position": "first"}, "position='first' is invalid"),
        (LO, {"k": 12}, "k=12"),
        (LI, {"strengths": (float("nan"),)}, "finite"),
        (PF, {"readout": "judge"}, "readout='judge' is invalid"),
    ],
)
def test_bad_configs_are_one_line_errors(module, kwargs, match):
    with pytest.raises(MechintroError, match=match):
        module.Config(**kwargs)


# The smallest config of each protocol that injects concept vectors, naming every word of WORDS.
LACKING = {
    "concept-confusion": {"concepts": WORDS, "lens_layers": 1},
    "detection-logits": {"concepts": WORDS, "layers": (1,)},
    "injected-thoughts": {"concepts": WORDS, "layers": (1,)},
    "latent-introspection": {"concepts": WORDS},
    "localisation": {"concepts": WORDS, "layers": (1,)},
    "mismatch": {"concepts": WORDS, "k": 1, "layers": (1,)},
    "patchscope": {"concepts": WORDS, "layers": (1,)},
    "prefill": {"concepts": WORDS, "pairs": 4, "layers": (1,)},
    "sentence-localisation": {"concepts": WORDS, "layers": (1,)},
    "strength-classification": {"concepts": WORDS, "layers": (1,)},
    "strength-comparison": {"concepts": WORDS, "layers": (1,)},
    "sweep": {"vector": WORDS[-1], "layers": (1,)},
    "thoughts-vs-text": {"concepts": WORDS, "pairs": 4, "layers": (1,)},
}


def test_every_injecting_protocol_is_listed():
    takes = {
        name
        for name, exp in EXPERIMENTS.items()
        if {"concepts", "vector"} & {f.name for f in dataclasses.fields(exp.Config)}
        and name not in ("intentional-control",)  # nothing injected: its words are prompts
    }
    assert takes == set(LACKING)


@pytest.mark.parametrize("name", sorted(LACKING))
def test_vectors_lacking_a_concept_are_refused_before_any_trial(tiny, vecs, name):
    exp = EXPERIMENTS[name]
    lacking = vecs.sel(concept=list(WORDS[:-1]))
    with pytest.raises(MechintroError, match=r"^no vectors for \['Silver'\]: compute vectors"):
        exp.build_trials(exp.Config(**LACKING[name]), tiny, lacking)
    exp.build_trials(exp.Config(**LACKING[name]), tiny, vecs)  # the same config with every vector


@pytest.mark.parametrize("module", [PF, IC, TT])
@pytest.mark.parametrize("pairs,most", [(5, 4), (0, 4), (51, 50)])
def test_pairs_beyond_the_words_or_sentences_are_refused_in_the_config(module, pairs, most):
    words = WORDS if most == 4 else ()  # () is Lindsey's 50 words, 50 sentences
    with pytest.raises(
        MechintroError, match=rf"^pairs={pairs}: give 1\.\.{most} \(one per sentence"
    ):
        module.Config(concepts=words, pairs=pairs)
    module.Config(concepts=words, pairs=most)


def test_results_document_from_saved_runs(tiny, vecs, tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "analyses"))
    from results_doc import write

    folder = tmp_path / "runs" / "results" / "smollm2-135m"
    SW.run(
        SW.Config(
            layers=(0, 2), strengths=(1.0, 5.0), control_questions=("Is 1 > 2?", "Are you a cat?")
        ),
        folder / "sweep.zarr",
        model=tiny,
    )
    LO.run(
        LO.Config(
            concepts=WORDS, layers=(2,), strengths=(4.0,), trials=2, k=3, tasks=("sentence",)
        ),
        folder / "localisation.zarr",
        model=tiny,
        vectors=vecs,
    )
    (folder / "timing.json").write_text(json.dumps({"sweep": {"size": "small", "seconds": 60.0}}))
    text = write(tmp_path / "runs" / "results", tmp_path / "results.md").read_text()
    assert (
        "### sweep" in text and "### localisation" in text and "| sweep | small | 1.0 min |" in text
    )
    assert (
        "correlate at r =" in text
        and "balanced accuracy above chance (one-sided permutation" in text
    )
    assert "## qwen2.5-coder-1.5b\n\nNo runs yet" in text
    # the Activation Oracles section, from the results shipped in analyses/data/oracles
    assert (
        "## Activation Oracles (oracle vs self-report)" in text
        and "| probe, layer 22 (grouped 5-fold) | 0.57 [0.39, 0.73] (17/30) |" in text
    )


def test_model_swap_uses_the_other_models_cache(tiny, tiny_models, tmp_path):
    from tests.conftest import build_tiny

    other = build_tiny("llama", seed=1)
    vecs = contrastive_vector(tiny, ["cats"], ["anything"], name="cats")
    cfg = LI.Config(
        concepts=("cats",),
        variants=("none",),
        control_questions=False,
        strengths=(3.0,),
        layer_start=1,
        layer_end=3,
        swap_model="tiny-llama-seed1",
    )
    trials, _ = LI.build_trials(cfg, tiny, vecs)
    swapped = next(t for t in trials if t.condition == "swapped")
    k = swapped.swap_prefix
    assert _text(tiny, swapped.prompt.input_ids[:k]).endswith("{ }<|im_end|>\n")
    ids = torch.tensor([swapped.prompt.input_ids])
    answer_ids = [
        tiny.tokenizer.convert_tokens_to_ids(" yes"),
        tiny.tokenizer.convert_tokens_to_ids(" no"),
    ]
    with torch.no_grad():  # independent computation: the other model's cache, then this model
        cache = other.hf(input_ids=ids[:, :k], use_cache=True).past_key_values
        ref = torch.log_softmax(
            tiny.hf(input_ids=ids[:, k:], past_key_values=cache).logits[0, -1], -1
        )[answer_ids]
    got = engine.swap_forward(
        tiny, other, [swapped.prompt.input_ids], [k], answer_ids=answer_ids
    ).answer_logprobs[0]
    assert torch.allclose(got, ref, atol=1e-5)
    # the same model filling its own cache is an ordinary forward pass
    own = engine.swap_forward(
        tiny, tiny, [swapped.prompt.input_ids], [k], answer_ids=answer_ids
    ).answer_logprobs[0]
    plain = engine.forward(
        tiny, [swapped.prompt.input_ids], [None], answer_ids=answer_ids
    ).answer_logprobs[0]
    assert torch.allclose(own, plain, atol=1e-5) and not torch.allclose(got, plain, atol=1e-3)
    LI.run(cfg, tmp_path / "swap.zarr", model=tiny, vectors=vecs, swap_model=other)
    ds = runs.open_run(tmp_path / "swap.zarr")
    assert ds.attrs["swap_weights_sha256"] == other.weights_sha256
    row = np.flatnonzero(ds.condition.values == "swapped")[0]
    assert np.allclose(ds.answer_logprobs.values[row], ref.numpy(), atol=1e-5)
    assert "swap_yes_shift" in LI.summarize(ds)
    with pytest.raises(MechintroError, match="one architecture and tokenizer"):
        engine.swap_forward(
            tiny, tiny_models("gpt2"), [swapped.prompt.input_ids], [k], answer_ids=answer_ids
        )


def test_injected_thoughts_regraded_by_a_judge(tiny, vecs, tmp_path):
    from mechintro import judge

    class Always:
        identity = "test:always-yes"

        def complete(self, prompt: str) -> str:
            return "Thinking it over... YES"

    cfg = IT.Config(
        concepts=WORDS, layers=(1,), strengths=(2.0,), trials=2, controls=1, max_new_tokens=3
    )
    IT.run(cfg, tmp_path / "g.zarr", model=tiny, vectors=vecs)
    judge.grade_run(tmp_path / "g.zarr", Always())
    ds = runs.open_run(tmp_path / "g.zarr")
    s = IT.summarize(ds, source="judge")
    assert float(s.tpr.sel(inject_layer=1, strength=2.0)) == 1.0 and s.attrs["fpr_pooled"] == 1.0
    assert ds.attrs["judge_coherence"] == "test:always-yes"
    with pytest.raises(MechintroError, match="no judge verdicts"):
        IT.summarize(
            runs.open_run(tmp_path / "g.zarr").drop_vars("grade_coherence"), source="judge"
        )


def test_patchscope_patches_the_placeholder_and_reads_the_continuation(tiny, vecs, tmp_path):
    from mechintro.experiments import patchscope as PS

    from .test_oracle import reference_patched_logprobs

    cfg = PS.Config(model=tiny.name, concepts=WORDS[:2], layers=("1", "2"), strengths=(1.0, 2.0))
    trials, layers = PS.build_trials(cfg, tiny, vecs)
    assert layers == [1, 2] and len(trials) == 2 * 2 * 2 * 3
    assert {t.condition for t in trials} == set(PS.CONDITIONS)
    for t in trials:
        if t.patch is None:
            assert t.condition == "none"
            continue
        assert _text(tiny, [t.prompt.input_ids[p] for p in t.patch.positions]) == "?"
        assert t.patch.layer == t.inject_layer and t.patch.mode == "replace"
    concept, random = (t for t in trials[:2])  # one cell's concept vector and its random control
    assert torch.allclose(concept.patch.vectors.norm(), random.patch.vectors.norm())
    assert not torch.allclose(concept.patch.vectors, random.patch.vectors)
    ds = runs.open_run(PS.run(cfg, tmp_path / "ps.zarr", model=tiny, vectors=vecs)).load()
    assert ds.attrs["experiment"] == "patchscope" and ds.attrs["layer_map"] == '{"1": 1, "2": 2}'
    first = np.asarray(ds.response_ids.values)[:, 0]
    for i, t in enumerate(trials):  # the stored first token: greedy under the trial's own patch
        if t.patch is not None:
            expected = reference_patched_logprobs(tiny, t.prompt.input_ids, t.patch).argmax()
            assert first[i] == int(expected)
    ds["response"] = ("trial", np.where(ds.condition == "concept", ds.concept, "x"))
    s = PS.summarize(ds)
    assert s.condition.values.tolist() == list(PS.CONDITIONS)
    assert (s.n == 2).all() and (s.rate.sel(condition="concept") == 1).all()
    assert (s.rate.sel(condition=["random", "none"]) == 0).all()
    assert "concept [95% CI]" in PS.format_summary(s)
    # a patched run records residual streams too: the placeholder holds the written vector
    recorded = dataclasses.replace(cfg, record_resid=True)
    ps = runs.open_run(PS.run(recorded, tmp_path / "r.zarr", model=tiny, vectors=vecs)).load()
    t = concept
    at = ps.sizes["pos"] - len(t.prompt) + t.patch.positions[0]
    stored = torch.from_numpy(ps.resid.values[0, t.patch.layer, at].astype(np.float32))
    torch.testing.assert_close(stored, t.patch.vectors[0].float(), atol=2e-2, rtol=2e-3)


def test_results_document_patchscope_verdict_counts_cells_above_the_random_control():
    """The patchscope sentence counts trials decoded and cells whose concept interval lies above
    the random-vector control's, from the summary alone."""
    import sys
    from pathlib import Path

    import numpy as np
    import xarray as xr

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "analyses"))
    from results_doc import _verdict

    from mechintro.stats import wilson

    hits = {"concept": [[6, 1]], "random": [[0, 0]], "none": [[0, 0]]}  # layer 7, strengths 1, 2
    n = 6
    rows = {}
    for cond, grid in hits.items():
        rows[cond] = [[(k / n, *wilson(k, n)) for k in layer] for layer in grid]
    arr = np.array([rows[c] for c in ("concept", "random", "none")])  # (cond, layer, strength, 3)
    dims = ("condition", "inject_layer", "strength")
    coords = {"condition": ["concept", "random", "none"], "inject_layer": [7], "strength": [1, 2]}
    summary = xr.Dataset(
        {
            "rate": (dims, arr[..., 0]),
            "lo": (dims, arr[..., 1]),
            "hi": (dims, arr[..., 2]),
            "n": (dims, np.full(arr.shape[:3], n)),
        },
        coords=coords,
    )
    text = _verdict("patchscope", summary)
    assert "in 7 of 12 trials (best cell 1.00)" in text
    assert "1 of 2 (layer, strength) cells are above the random-vector control" in text


def test_looking_inward_verdicts_holm_and_a_reversed_advantage(tmp_path, monkeypatch):
    """Each direction's p is Holm-adjusted over the study's directions (step-down, not p × m),
    and a difference whose interval lies below 0 reads as the cross-trained model predicting
    better, not as 'interval includes 0'."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "analyses"))
    import results_doc

    from mechintro.looking_inward import score as sp
    from mechintro.stats import holm

    tests = {
        "a": dict(self=0.30, cross=0.22, difference=0.08, lo=0.01, hi=0.14, p=0.0376),
        "b": dict(self=0.15, cross=0.25, difference=-0.10, lo=-0.18, hi=-0.03, p=0.0072),
    }
    study = {
        "models": [("a",), ("b",)],
        "self_vs_cross": [("a", "b", "a", "x"), ("b", "a", "b", "y")],
        "behaviour_change": [],
        "calibration": [],
    }
    monkeypatch.setattr(sp, "study", lambda root: study)
    monkeypatch.setattr(results_doc, "open_run", lambda path: str(path))
    monkeypatch.setattr(
        sp, "self_vs_cross", lambda own, cross: tests[own] | dict(n_pairs=200, n_items=48)
    )
    monkeypatch.setattr(sp, "score", lambda ds: ds)
    monkeypatch.setattr(
        sp, "pooled", lambda scored, split: {"mode_baseline": 0.2, "mode_baseline_loo": 0.2, "n": 0}
    )
    _, verdicts = results_doc._looking_inward(tmp_path)
    a, b = (v for _, v in verdicts)
    want = holm([0.0376, 0.0072])
    assert f"Holm {want[0]:.3f}" in a and "Holm 0.038" in a  # p × 2 would be 0.075
    assert f"Holm {want[1]:.3f}" in b and "Holm 0.014" in b
    assert "a predicts itself better than b" in a and "advantage is shown" in a
    assert "b predicts itself **worse** than a trained on its behaviour does" in b
    assert "interval includes 0" not in b and "**not shown**" in b


def test_looking_inward_both_directions_per_pair():
    """The paper's test is read per pair of models: met only when both directions were run and
    both show the advantage; a pair with one direction run is 'not tested', not 'not met'."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "analyses"))
    from results_doc import _both_directions

    got = _both_directions(
        {("a", "b"): True, ("b", "a"): True, ("a", "c"): True, ("c", "a"): False, ("d", "a"): True}
    )
    assert got == [
        "a and b: met",
        "a and c: **not met**",
        "a and d: **not tested** (a as the target, d trained on its behaviour, not run)",
    ]
