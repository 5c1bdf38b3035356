"""``latent-introspection`` equals an independent copy of the authors' procedure on a tiny model.

``tests/latent_reference.py`` re-implements acsresearch/latent-introspection-code in plain
PyTorch (incremental chat tokenisation, repeng-style block-output hooks, a steered and an
unsteered KV cache, sklearn PCA for the vectors). mechintro's defaults must give the same
vectors and the same P(" yes"); each named deviation must not (the mutations the test catches).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mechintro import runs, stimuli
from mechintro.experiments import latent_introspection as LI
from mechintro.vectors import pca_center_vectors

from ..latent_reference import authors_conversation, logit_diff, pca_center

# not the last block: hidden_states[-1] is after the final norm, where repeng reads its last layer
LAYERS = [0, 1]
STRENGTH = 8.0
# the authors' set, cut for the tiny tier's speed
SUFFIXES = stimuli.latent_introspection_suffixes()[:64]


@pytest.fixture(scope="module")
def both(tiny):
    ref = pca_center(tiny.hf, tiny.tokenizer, "cats", SUFFIXES, LAYERS)
    ours = pca_center_vectors(tiny, ["cats"], suffixes=SUFFIXES)
    return ref, ours


def test_pca_center_vectors_equal_the_reference(both):
    ref, ours = both
    for layer in LAYERS:
        v = ours.sel(concept="cats", layer=layer).values
        assert float(np.linalg.norm(v)) == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(v, ref[layer], atol=2e-4)


def _ours(tiny, vectors, tmp_path, name, **over) -> tuple[float, float]:
    cfg = LI.Config(
        concepts=("cats",),
        variants=("none",),
        control_questions=False,
        strengths=(STRENGTH,),
        layer_start=LAYERS[0],
        layer_end=LAYERS[-1] + 1,
        **over,
    )
    LI.run(cfg, tmp_path / name, model=tiny, vectors=vectors)
    ds = runs.open_run(tmp_path / name)
    p = np.exp(ds.answer_logprobs.sel(answer=" yes").values.astype(float))
    cond = ds.condition.values
    return float(p[cond == "unsteered"][0]), float(p[cond == "steered"][0])


def test_latent_introspection_equals_the_authors_procedure(tiny, both, tmp_path):
    ref_vecs, ours_vecs = both
    steps = authors_conversation(stimuli.latent_introspection(), None)
    base, expr = logit_diff(tiny.hf, tiny.tokenizer, steps, LAYERS, ref_vecs, STRENGTH)
    yes = tiny.tokenizer.encode(" yes", add_special_tokens=False)[0]
    ref_base, ref_steered = float(base[yes]), float(expr[yes])
    assert ref_steered != pytest.approx(ref_base, rel=0.1), (
        "the tiny model must respond to the steering for the test to mean anything"
    )
    got_base, got_steered = _ours(tiny, ours_vecs, tmp_path, "default.zarr")
    assert got_base == pytest.approx(ref_base, rel=1e-4)
    assert got_steered == pytest.approx(ref_steered, rel=1e-4)
    # mutations: each named deviation changes the steered number, so the comparison above catches it
    for name, over in (
        ("nosys.zarr", {"steer_system": False}),
        ("omit.zarr", {"omit_system": True}),
    ):
        _, mutated = _ours(tiny, ours_vecs, tmp_path, name, **over)
        assert mutated != pytest.approx(ref_steered, rel=1e-2), name


def test_mutated_reference_is_caught(tiny, both, tmp_path):
    """The other direction: change the reference (no system message in the steered chunk's
    vectors: the template default) and mechintro's defaults no longer match it."""
    ref_vecs, ours_vecs = both
    steps = authors_conversation(stimuli.latent_introspection(), None)
    steps = [s for s in steps if s["role"] != "system"]  # mutation: the system message is dropped
    _, expr = logit_diff(tiny.hf, tiny.tokenizer, steps, LAYERS, ref_vecs, STRENGTH)
    yes = tiny.tokenizer.encode(" yes", add_special_tokens=False)[0]
    _, got_steered = _ours(tiny, ours_vecs, tmp_path, "d.zarr")
    assert got_steered != pytest.approx(float(expr[yes]), rel=1e-2)


def test_binary_format_reads_one_and_zero(tiny, both, tmp_path):
    ref_vecs, ours_vecs = both
    steps = authors_conversation(stimuli.latent_introspection(), None, binary=True)
    _, expr = logit_diff(tiny.hf, tiny.tokenizer, steps, LAYERS, ref_vecs, STRENGTH)
    one = tiny.tokenizer.encode("1", add_special_tokens=False)[0]
    cfg = LI.Config(
        concepts=("cats",),
        variants=("none",),
        control_questions=False,
        strengths=(STRENGTH,),
        layer_start=LAYERS[0],
        layer_end=LAYERS[-1] + 1,
        answer_formats=("0-1",),
    )
    LI.run(cfg, tmp_path / "b.zarr", model=tiny, vectors=ours_vecs)
    ds = runs.open_run(tmp_path / "b.zarr")
    p = np.exp(ds.answer_logprobs.sel(answer="1").values.astype(float))
    assert float(p[ds.condition.values == "steered"][0]) == pytest.approx(
        float(expr[one]), rel=1e-4
    )
    s = LI.summarize(ds)
    assert "introspection/none [0/1]" in s.row.values
    assert float(s.p_yes.sel(row="introspection/none [0/1]", strength=STRENGTH)) == pytest.approx(
        float(expr[one]), rel=1e-4
    )


def test_interventions_cross_documents(tiny, both):
    _, ours_vecs = both
    cfg = LI.Config(
        concepts=("cats",),
        variants=("none", "introspect_inaccurate"),
        interventions=("inject", "salient", "echo"),
        control_questions=False,
        strengths=(STRENGTH,),
        layer_start=1,
        layer_end=3,
    )
    trials, _ = LI.build_trials(cfg, tiny, ours_vecs)
    got = {(t.labels["intervention"], t.labels["variant"]) for t in trials}
    assert got == {
        ("inject", "none"),
        ("salient", "none"),
        ("echo", "none"),
        ("inject-inaccurate", "introspect_inaccurate"),
    }
    li = stimuli.latent_introspection()
    echo = next(t for t in trials if t.labels["intervention"] == "echo")
    assert li["PREFIX_ECHO"] in echo.prompt.text and li["TURN_2_PREFIX_ECHO"] in echo.prompt.text
    with pytest.raises(Exception, match="interventions"):
        dataclasses.replace(cfg, interventions=())


def test_vectors_cli_methods_equal_the_python_recipes(tiny, tmp_path):
    """``mechintro vectors --method`` gives what the Python functions give, with the recipe's
    inputs."""
    import json

    from mechintro.cli import main
    from mechintro.vectors import contrastive_vector, load_vectors, make_vectors

    tiny.hf.save_pretrained(tmp_path / "tiny", safe_serialization=True)
    tiny.tokenizer.save_pretrained(tmp_path / "tiny")
    (tmp_path / "s.json").write_text(json.dumps(SUFFIXES[:6]))
    m = str(tmp_path / "tiny")
    assert (
        main(
            [
                "-q",
                "vectors",
                "--model",
                m,
                "--method",
                "pca_center",
                "--concepts",
                "cats",
                "--suffixes-file",
                str(tmp_path / "s.json"),
                "--out",
                str(tmp_path / "p.zarr"),
            ]
        )
        == 0
    )
    got = load_vectors(tmp_path / "p.zarr")
    want = pca_center_vectors(tiny, ["cats"], suffixes=SUFFIXES[:6])
    assert got.attrs["method"] == "pca_center" and got.attrs["system"] == ""
    np.testing.assert_allclose(got.values, want.values, atol=1e-5)
    # --template-system: the deviation (no system message) is a different vector
    assert (
        main(
            [
                "-q",
                "vectors",
                "--model",
                m,
                "--method",
                "pca_center",
                "--concepts",
                "cats",
                "--suffixes-file",
                str(tmp_path / "s.json"),
                "--template-system",
                "--out",
                str(tmp_path / "t.zarr"),
            ]
        )
        == 0
    )
    assert not np.allclose(load_vectors(tmp_path / "t.zarr").values, want.values, atol=1e-3)
    (tmp_path / "pos.txt").write_text("HI! HOW ARE YOU?\nGOOD MORNING, FRIEND!\n")
    assert (
        main(
            [
                "-q",
                "vectors",
                "--model",
                m,
                "--method",
                "contrastive",
                "--concepts",
                "caps",
                "--raw",
                "--positive",
                f"@{tmp_path / 'pos.txt'}",
                "--negative",
                "Hi! How are you?,Good morning friend!",
                "--out",
                str(tmp_path / "c.zarr"),
            ]
        )
        == 0
    )
    want = contrastive_vector(
        tiny,
        ["HI! HOW ARE YOU?", "GOOD MORNING, FRIEND!"],
        ["Hi! How are you?", "Good morning friend!"],
        name="caps",
        chat=False,
    )
    np.testing.assert_allclose(load_vectors(tmp_path / "c.zarr").values, want.values, atol=1e-5)
    assert (
        main(
            [
                "-q",
                "vectors",
                "--model",
                m,
                "--concepts",
                "cats",
                "--baseline-words",
                "apple,chair",
                "--system",
                "Be brief.",
                "--out",
                str(tmp_path / "l.zarr"),
            ]
        )
        == 0
    )
    want = make_vectors(tiny, "lindsey", ["cats"], baseline=["apple", "chair"], system="Be brief.")
    np.testing.assert_allclose(load_vectors(tmp_path / "l.zarr").values, want.values, atol=1e-5)


def test_brackets_over_fewer_than_five_units_are_not_called_a_ci():
    import numpy as np
    import xarray as xr

    from mechintro.experiments import latent_introspection as li

    rows = ["introspection/none", "no"]
    summary = xr.Dataset(
        {"interval_units": (("row", "strength"), np.array([[2.0], [16.0]]))},
        coords={"row": rows, "strength": [20.0]},
    )
    note = li._interval_note(summary)
    assert "introspection/none 2" in note and "no 16" in note
    assert "**not** a 95% CI: introspection/none" in note
    summary["interval_units"][:] = 9.0
    assert "every bracket is a 95% interval" in li._interval_note(summary)
