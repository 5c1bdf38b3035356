"""Transcripts (mi.show), progress bars, quiet third-party calls, and the baseline cache."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import mechintro as mi
from mechintro import engine, vectors
from mechintro.errors import MechintroError
from mechintro.readouts import yes_no

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "analyses" / "data" / "smollm2-135m"


def test_show_a_generation_trial_with_its_window_response_and_verdicts():
    ds = mi.open_run(SHIPPED / "injected-thoughts.zarr")
    i = int(np.flatnonzero(ds.condition.values == "injected")[0])
    t = mi.show(ds, i, display=False)
    text = str(t)
    response = str(ds.response.values[i])
    assert response in text  # whole, not cut at 50 characters
    # the injected window, decoded, sits between the markers
    mask = ds.attention_mask.values[i].astype(bool)
    window = ds.input_ids.values[i][mask][ds.inject_mask.values[i][mask]]
    inside = text.split("⟦", 1)[1].split("⟧", 1)[0]
    assert len(window) > 0 and inside.strip()
    assert (
        f"layer={int(ds.inject_layer.values[i])}" in text
        and f"strength={float(ds.strength.values[i]):g}" in text
    )
    assert f"concept={ds.concept.values[i]}" in text
    for criterion in (
        "coherence",
        "affirmative",
        "thinking_about_word",
        "affirmative_identification",
    ):
        assert f"{criterion}: " in text
    page = t._repr_html_()
    assert "<mark" in page and "</mark>" in page and "&lt;|im_start|&gt;" in page


def test_show_a_logit_trial_gives_the_runs_own_probabilities():
    ds = mi.open_run(SHIPPED / "sweep.zarr")
    t = mi.show(ds, [3, 7], display=False)
    assert len(t) == 2
    expected = float(yes_no(ds.isel(trial=[7])).p_yes_norm.values[0])
    assert t.trials[1].answer["P(yes)/(P(yes)+P(no))"] == pytest.approx(expected, rel=1e-6)
    assert t.trials[1].index == int(ds.trial.values[7])


def test_show_refuses_a_trial_out_of_range():
    ds = mi.open_run(SHIPPED / "sweep.zarr")
    with pytest.raises(MechintroError, match="out of range"):
        mi.show(ds, ds.sizes["trial"])


def test_model_repr_is_one_line(tiny):
    text = repr(tiny)
    assert "\n" not in text and f"{tiny.n_layers} layers" in text and len(text) < 300
    assert "<table>" in tiny._repr_html_()


def test_concept_vectors_progress_bar_by_default_and_none_when_off(
    tiny, capsys, monkeypatch, tmp_path
):
    monkeypatch.setenv("MECHINTRO_CACHE", str(tmp_path))
    vectors.concept_vectors(tiny, ["Dust"], baseline=["Sand", "Clay"], progress=False)
    assert "concept vectors" not in capsys.readouterr().err
    calls = []
    vectors.concept_vectors(
        tiny,
        ["Dust"],
        baseline=["Sand", "Clay"],
        cache=False,
        progress=lambda d, n: calls.append((d, n)),
    )
    assert calls[0] == (0, 3) and calls[-1] == (3, 3)
    vectors.concept_vectors(tiny, ["Dust"], baseline=["Sand", "Clay"], cache=False)
    assert "concept vectors" in capsys.readouterr().err


def test_baseline_activations_are_cached_hash_checked_and_identical(
    tiny, monkeypatch, tmp_path, caplog
):
    monkeypatch.setenv("MECHINTRO_CACHE", str(tmp_path))
    seen = []
    real = engine.last_token_resid

    def counting(model, prompts):
        seen.append(len(prompts))
        return real(model, prompts)

    monkeypatch.setattr(engine, "last_token_resid", counting)
    baseline = ["Sand", "Clay", "Rain", "Wood"]
    fresh = vectors.concept_vectors(
        tiny, ["Dust", "Oceans"], baseline=baseline, batch_size=2, progress=False
    )
    assert sum(seen) == 6
    seen.clear()
    cached = vectors.concept_vectors(
        tiny, ["Dust", "Oceans"], baseline=baseline, batch_size=2, progress=False
    )
    assert sum(seen) == 2  # only the concepts' own prompts
    np.testing.assert_array_equal(fresh.values, cached.values)
    np.testing.assert_array_equal(fresh.resid_norm.values, cached.resid_norm.values)
    # another template is another entry
    seen.clear()
    vectors.concept_vectors(
        tiny,
        ["Dust"],
        baseline=baseline,
        batch_size=2,
        template="Think about {word}",
        progress=False,
    )
    assert sum(seen) == 5
    # a damaged entry is refused and recomputed
    for entry in (tmp_path / "baselines").glob("*.safetensors"):
        data = bytearray(entry.read_bytes())
        data[-1] ^= 0xFF
        entry.write_bytes(bytes(data))
    seen.clear()
    again = vectors.concept_vectors(
        tiny, ["Dust", "Oceans"], baseline=baseline, batch_size=2, progress=False
    )
    assert sum(seen) == 6 and "failed their hash check" in caplog.text
    np.testing.assert_array_equal(fresh.values, again.values)


def test_third_party_warnings_are_quiet_inside_our_calls_only():
    from mechintro.progress import quiet_third_party

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_third_party():
            warnings.warn_explicit(
                "`past_key_values` is deprecated and will be removed",
                FutureWarning,
                "x.py",
                1,
                module="transformers.models",
            )
        warnings.warn(
            "`past_key_values` is deprecated and will be removed", FutureWarning, stacklevel=1
        )
    assert len(caught) == 1  # the one raised outside the block is the user's to see


def test_vectors_from_array_and_safetensors_round_trip(tiny, tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.normal(size=(2, tiny.d_model)).astype(np.float32)
    v = mi.vectors_from_array(arr, tiny, ["a", "b"], layers=[1])
    assert v.dims == ("concept", "layer", "d_model") and v.sizes["layer"] == tiny.n_layers
    np.testing.assert_array_equal(v.sel(concept="b", layer=1).values, arr[1])
    assert not v.sel(layer=0).values.any()
    path = mi.save_vectors_safetensors(v, tmp_path / "v.safetensors")
    back = mi.load_vectors_safetensors(path, tiny)
    np.testing.assert_array_equal(back.values, v.values)
    assert back.attrs["weights_sha256"] == tiny.weights_sha256 and list(back.concept.values) == [
        "a",
        "b",
    ]
    from safetensors.torch import load_file

    assert tuple(load_file(path)["concept_vectors"].shape) == (2, tiny.n_layers, tiny.d_model)
    with pytest.raises(MechintroError, match="expected"):
        mi.vectors_from_array(arr[:, :3], tiny, ["a", "b"], layers=[1])


def test_a_run_shows_trial_progress_by_default_and_none_when_off(
    tiny, capsys, tmp_path, monkeypatch
):
    from mechintro.experiments import detection_logits

    monkeypatch.setenv("MECHINTRO_CACHE", str(tmp_path))
    vecs = vectors.concept_vectors(
        tiny, ["Dust", "Oceans"], baseline=["Sand", "Clay"], progress=False
    )
    config = detection_logits.Config(
        model=tiny.name, concepts=("Dust", "Oceans"), layers=("1",), strengths=(1.0,), batch_size=4
    )
    capsys.readouterr()
    detection_logits.run(config, tmp_path / "quiet.zarr", model=tiny, vectors=vecs, progress=False)
    assert "trial" not in capsys.readouterr().err
    detection_logits.run(config, tmp_path / "shown.zarr", model=tiny, vectors=vecs)
    err = capsys.readouterr().err
    # captured stderr is no terminal: the bar is plain lines (mechintro.progress), the last one
    # saying every trial is done
    assert "shown.zarr" in err and "3/3 trial" in err


def test_show_prints_the_transcript_in_a_script(tmp_path):
    """`mi.show(ds, 0)` in a script used to print nothing (it returned an object only a REPL or
    Jupyter displays); now it writes the text to stdout where it is called and returns None."""
    import os
    import subprocess
    import sys

    expected = tmp_path / "expected.txt"
    script = (
        "import mechintro as mi\n"
        f"ds = mi.open_run({str(SHIPPED / 'sweep.zarr')!r})\n"
        "assert mi.show(ds, 3) is None\n"
        "from pathlib import Path\n"
        f"Path({str(expected)!r}).write_text(str(mi.show(ds, 3, display=False)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "P(yes)" in done.stdout and done.stdout == expected.read_text() + "\n"
