"""Named options that reproduce the open replications of Lindsey's experiments
(docs/protocols.md, "Lindsey's experiments — open replications"): the defaults stay the
paper's, the option gives the replications' prompt, and the injection window does not move."""

from __future__ import annotations

import numpy as np
import pytest

from mechintro import stimuli
from mechintro.experiments import injected_thoughts as IT
from mechintro.prompts import render_chat
from mechintro.vectors import concept_vectors

WORDS = ("Dust", "Oceans")
SYSTEM_TURN = "<|im_start|>system\n<|im_end|>\n"  # an empty system message in ChatML


@pytest.fixture(scope="module")
def vecs(tiny):
    return concept_vectors(tiny, WORDS, baseline=["apple", "chair", "river"])


def _cfg(**kw) -> IT.Config:
    return IT.Config(concepts=WORDS, layers=(1,), strengths=(2.0,), trials=2, controls=1, **kw)


def _window_ids(trial) -> list[int]:
    mask = np.asarray(trial.injection().mask, dtype=bool)
    return np.asarray(trial.prompt.input_ids)[mask].tolist()


def test_default_sends_no_system_message(tiny, vecs):
    trials, _ = IT.build_trials(_cfg(), tiny, vecs)
    assert IT.Config().system_message is None
    assert trials[0].prompt.text == render_chat(
        tiny.tokenizer, stimuli.injected_thoughts_messages()
    )
    assert "<|im_start|>system" not in trials[0].prompt.text


def test_empty_system_message_of_the_replications(tiny, vecs):
    plain, _ = IT.build_trials(_cfg(), tiny, vecs)
    empty, _ = IT.build_trials(_cfg(system_message=""), tiny, vecs)
    # the replications' prompt: an empty system turn, then the paper's conversation unchanged
    assert empty[0].prompt.text == SYSTEM_TURN + plain[0].prompt.text
    # the injection window covers the same tokens: from "\n\nTrial 1" to the generation prompt
    for a, b in zip(plain, empty, strict=True):
        assert a.condition == b.condition and a.concept == b.concept
        if a.vector is not None:
            assert _window_ids(a) == _window_ids(b)
            system_tokens = [e <= len(SYSTEM_TURN) for _, e in b.prompt.offsets]
            assert any(system_tokens)
            assert not np.asarray(b.injection().mask)[system_tokens].any()


def test_system_message_text_and_open_questions(tiny, vecs):
    said, _ = IT.build_trials(_cfg(system_message="Be brief."), tiny, vecs)
    assert said[0].prompt.text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    # an open question injects on every prompt token, the system message's included
    mind, _ = IT.build_trials(_cfg(system_message="", question="mind"), tiny, vecs)
    inj = next(t for t in mind if t.vector is not None).injection()
    assert mind[0].prompt.text.startswith(SYSTEM_TURN) and all(inj.mask)


def test_system_message_from_the_command_line():
    from mechintro.cli._args import apply_settings

    given: dict = {}
    apply_settings(["system_message="], IT.Config, given)
    assert given == {"system_message": ""}
    apply_settings(["system_message=none"], IT.Config, given)
    assert given == {"system_message": None}


# --- the replications' presets (issue 35): options, resume of older runs, the command line ------


def _strip(out, fields) -> None:
    """Make ``out`` look like a run stored before ``fields`` existed."""
    import json

    import zarr

    group = zarr.open_group(str(out), mode="r+")
    config = json.loads(group.attrs["config"])
    group.attrs["config"] = json.dumps(
        {k: v for k, v in config.items() if k not in fields}, sort_keys=True
    )


def test_a_run_from_before_the_replication_options_resumes_with_the_defaults(tiny, vecs, tmp_path):
    from mechintro.errors import MechintroError

    out = tmp_path / "it.zarr"
    cfg = _cfg(max_new_tokens=2)
    IT.run(cfg, out, model=tiny, vectors=vecs)
    _strip(out, tuple(IT.Config.LEGACY))
    IT.run(cfg, out, model=tiny, vectors=vecs)  # missing fields read as their old behaviour
    with pytest.raises(MechintroError) as err:
        IT.run(_cfg(max_new_tokens=2, top_k=50), out, model=tiny, vectors=vecs)
    assert "top_k" in str(err.value) and "\n" not in str(err.value)


def test_each_concept_numbered_trials(tiny, vecs):
    cfg = IT.Config(
        concepts=WORDS,
        layers=(1,),
        strengths=(2.0,),
        trials=2,
        controls=2,  # per concept with draw="each"
        draw="each",
        trial_numbers="sequential",
        lead_in=False,
        window_start="token_before",
    )
    trials, _ = IT.build_trials(cfg, tiny, vecs)
    asked = [(t.condition, t.concept, t.labels["question"].split(":")[0]) for t in trials]
    assert asked == [
        ("injected", "Dust", "Trial 1"),
        ("injected", "Dust", "Trial 2"),
        ("injected", "Oceans", "Trial 1"),
        ("injected", "Oceans", "Trial 2"),
        *[("control", "", f"Trial {n}") for n in (3, 4, 5, 6)],
    ]
    assert all("Ok, let's get started." not in t.prompt.text for t in trials)
    # the window starts on the last token before "Trial n", the template's newline
    t = trials[0]
    first = list(t.injection().mask).index(True)
    assert t.prompt.text[slice(*t.prompt.offsets[first])] == "\n"
    assert t.prompt.text[t.prompt.offsets[first + 1][0] :].startswith("Trial 1:")


def test_bad_replication_options_are_one_line():
    from mechintro.errors import MechintroError

    for bad, word in (
        ({"top_k": -1}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"lead_in": False}, "window_start"),
        ({"trial_numbers": "two"}, "trial_numbers"),
    ):
        with pytest.raises(MechintroError) as err:
            IT.Config(**bad)
        assert word in str(err.value) and "\n" not in str(err.value)


def test_preset_on_the_command_line(monkeypatch, capsys, tmp_path):
    from mechintro import cli
    from mechintro.cli import _common

    seen = {}

    def stop(args, *_):
        seen["dtype"] = args.dtype
        raise cli.MechintroError("stopped before loading")

    monkeypatch.setattr(_common, "load", stop)
    argv = ["run", "injected-thoughts", "--preset", "uzaymacar", "--out", str(tmp_path / "o")]
    assert cli.main(argv) == 2
    assert seen["dtype"] == "bfloat16"  # the preset's, as A′ runs
    assert cli.main([*argv, "--dtype", "float32"]) == 2
    assert seen["dtype"] == "float32"  # --dtype wins
    assert cli.main(["run", "injected-thoughts", "--out", str(tmp_path / "p")]) == 2
    assert seen["dtype"] == "float32"  # no preset: the default as before
    capsys.readouterr()
    assert cli.main(["run", "detection-logits", "--preset", "uzaymacar", "--out", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no preset 'uzaymacar'" in err and "\n" not in err
    assert cli.main(["run", "injected-thoughts", "--preset", "nope", "--out", "x"]) == 2
    assert "choose from uzaymacar, safety-research" in capsys.readouterr().err
    assert cli.main(["run", "injected-thoughts", "--fields"]) == 0
    listed = capsys.readouterr().out
    assert "--preset uzaymacar: lowercase=False" in listed and "top_k" in listed
    # the vectors command: --no-lowercase belongs to the lindsey method
    assert cli.main(["vectors", "--concepts", "Dust", "--out", str(tmp_path / "v"),
                     "--method", "pca_center", "--no-lowercase"]) == 2  # fmt: skip
    assert "--no-lowercase does not apply to --method pca_center" in capsys.readouterr().err


def test_make_vectors_keeps_the_case_when_asked(tiny):
    from mechintro.vectors import make_vectors

    base = ["Apple", "Chair"]
    listed = make_vectors(tiny, "lindsey", ["Dust"], baseline=base, lowercase=False)
    lowered = make_vectors(tiny, "lindsey", ["Dust"], baseline=base)
    assert listed.attrs["lowercase"] == "false" and lowered.attrs["lowercase"] == "true"
    assert not np.allclose(listed.values, lowered.values)
    same = concept_vectors(tiny, ["Dust"], baseline=base, lowercase=False, progress=False)
    np.testing.assert_allclose(listed.values, same.values)
