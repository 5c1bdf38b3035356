"""Analyses of saved runs: planted directions are recovered, the logit lens reproduces the model,
the alignment equals a direct computation, and the causal check re-runs trials exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from mechintro import analysis as an
from mechintro.errors import MechintroError

N_CONCEPTS, PER_CONCEPT, N_CONTROLS, LAYERS, POS, D = 10, 8, 16, 4, 6, 48
WINDOW = slice(2, POS)


def synthetic_run(*, planted: str, seed: int = 0) -> tuple[xr.Dataset, xr.DataArray, np.ndarray]:
    """A run-shaped dataset: 10 concepts × 8 injected trials (half detected) + 16 controls.

    ``planted="anomaly"``: detected trials carry an extra direction ``u`` (independent of the
    concepts) at layers 2–3 on the window. ``planted="concept"``: detected trials carry more of
    their own concept vector (3× instead of 1×), and concept vectors share a component, so the
    separation is all concept and must vanish once the concept is projected out.
    """
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(D)
    u /= np.linalg.norm(u)
    shared = rng.standard_normal(D)
    vecs = {f"c{i}": shared + 0.3 * rng.standard_normal(D) for i in range(N_CONCEPTS)}
    concepts, labels, injected_vector = [], [], []
    for c in vecs:
        for j in range(PER_CONCEPT):
            concepts.append(c)
            labels.append("detected" if j % 2 == 0 else "missed")
            injected_vector.append(vecs[c])
    concepts += [""] * N_CONTROLS
    labels += ["control"] * N_CONTROLS
    injected_vector += [np.zeros(D)] * N_CONTROLS
    n = len(concepts)
    lab = np.array(labels)
    vec = np.array(injected_vector)
    resid = rng.standard_normal((n, LAYERS, POS, D))
    injected = lab != "control"
    amount = np.where(lab == "detected", 3.0, 1.0) if planted == "concept" else np.ones(n)
    resid[injected, 1:, WINDOW] += (amount[injected, None] * vec[injected])[:, None, None, :]
    if planted == "anomaly":
        resid[lab == "detected", 2:, WINDOW] += 2.5 * u
    inject_mask = np.zeros((n, POS), bool)
    inject_mask[injected, WINDOW] = True
    ds = xr.Dataset(
        {
            "resid": (("trial", "layer", "pos", "d_model"), resid.astype(np.float16)),
            "input_ids": (("trial", "pos"), np.ones((n, POS), np.int32)),
            "attention_mask": (("trial", "pos"), np.ones((n, POS), np.int8)),
            "inject_mask": (("trial", "pos"), inject_mask),
            "injected_vector": (("trial", "d_model"), vec.astype(np.float32)),
        },
        coords={
            "trial": np.arange(n),
            "layer": np.arange(LAYERS),
            "concept": ("trial", concepts),
            "condition": ("trial", np.where(injected, "injected", "control")),
            "strength": ("trial", np.ones(n)),
        },
        attrs={"model": "synthetic", "weights_sha256": "0" * 64, "experiment": "synthetic"},
    )
    return ds, xr.DataArray(lab.astype(object), dims="trial", attrs={"rule": "planted"}), u


def test_planted_anomaly_direction_is_recovered_on_held_out_concepts():
    ds, labels, u = synthetic_run(planted="anomaly")
    result = an.anomaly_directions(ds, labels, n_boot=300)
    missed = an.anomaly_directions(ds, labels, negatives="missed", n_boot=10)
    probe = result.auc.sel(estimator="probe")
    for layer in (2, 3):
        # against missed injections only, the difference of means is the planted direction; against
        # all negatives it also holds the injection itself (controls have none)
        assert abs(float(missed.direction.sel(layer=layer).values @ u)) > 0.9
        assert abs(float(result.direction_span.sel(layer=layer).values @ u)) > abs(
            float(result.direction.sel(layer=layer).values @ u)
        )
        for removal in (
            "none",
            "span",
        ):  # the planted direction is not a concept: it survives removal
            assert float(probe.sel(removal=removal, layer=layer)) > 0.9
            assert float(result.auc_lo.sel(estimator="probe", removal=removal, layer=layer)) > 0.75
        assert float(result.auc.sel(estimator="diff_means", removal="none", layer=layer)) > 0.9
    for layer in (0, 1):  # no signal: chance, with 0.5 inside the interval
        lo = float(result.auc_lo.sel(estimator="probe", removal="none", layer=layer))
        hi = float(result.auc_hi.sel(estimator="probe", removal="none", layer=layer))
        assert lo < 0.5 < hi
    assert result.attrs["n_detected"] == N_CONCEPTS * PER_CONCEPT // 2
    assert result.attrs["n_concepts"] == N_CONCEPTS


def test_a_separation_that_is_only_the_concept_vanishes_when_it_is_projected_out():
    ds, labels, _ = synthetic_run(planted="concept")
    result = an.anomaly_directions(ds, labels, negatives="missed", n_boot=300)
    auc = result.auc.sel(estimator="diff_means", layer=3)
    assert float(auc.sel(removal="none")) > 0.9
    assert abs(float(auc.sel(removal="span")) - 0.5) < 0.15


def test_folds_hold_out_whole_concepts():
    from mechintro.analysis.anomaly import _folds

    groups = np.array(["a", "a", "b", "b", "c", "c", "d", "control#1"], dtype=object)
    fold = _folds(groups, 3, seed=1)
    for g in set(groups):
        assert len(set(fold[groups == g])) == 1
    assert len(set(fold)) == 3


def test_detection_labels_from_logits_use_the_controls_quantile():
    ds, _, _ = synthetic_run(planted="anomaly")
    n = ds.sizes["trial"]
    yes = np.linspace(-3, 3, n)
    yes[ds.condition.values == "control"] = 0.0
    logprobs = np.stack([np.log(1 / (1 + np.exp(-yes))), np.log(1 / (1 + np.exp(yes)))], 1)
    ds = ds.assign(
        answer_logprobs=(("trial", "answer"), logprobs.astype(np.float32))
    ).assign_coords(answer=["Yes", "No"], answer_label=("answer", ["yes", "no"]))
    labels = an.detection_labels(ds)
    injected = ds.condition.values != "control"
    assert ((labels.values == "detected") == (injected & (yes > 1e-4))).all()
    assert labels.attrs["threshold"] == pytest.approx(0.0, abs=1e-4)


def test_detection_labels_from_grades_follow_the_injected_thoughts_scoring():
    """The analysis layer grades a generation run with :func:`mechintro.readouts.grades`, the one
    implementation the experiment module uses too, and ``detected`` is exactly the injected
    trials meeting the criterion on the shipped injected-thoughts run."""
    from pathlib import Path

    from mechintro.experiments import injected_thoughts
    from mechintro.readouts import grades
    from mechintro.runs import open_run

    root = Path(__file__).resolve().parents[2]
    ds = open_run(root / "analyses" / "data" / "smollm2-135m" / "injected-thoughts.zarr")
    assert injected_thoughts.grades is grades  # one implementation, not two copies
    ours = grades(ds)
    injected = ds.condition.values != "control"
    for criterion in ("success", "affirmative"):  # SmolLM never succeeds; it does say yes
        labels = an.detection_labels(ds, source="offline", criterion=criterion)
        hit = ours[criterion].values & injected
        expected = np.where(hit, "detected", np.where(injected, "missed", "control"))
        assert (labels.values == expected).all()
        assert labels.attrs["rule"] == f"offline grade '{criterion}'"
    # of 80 injected trials (offline grader; 19 before the second round of rules, docs/grading.md)
    assert (labels.values == "detected").sum() == 21


def test_cosines_with_vectors_of_the_same_model(tmp_path):
    ds, labels, u = synthetic_run(planted="anomaly")
    result = an.anomaly_directions(ds, labels, negatives="missed", n_boot=50)
    rng = np.random.default_rng(3)
    table = rng.standard_normal((3, LAYERS, D))
    table[0] = u  # "Unusual" is the planted direction at every layer
    vectors = xr.DataArray(
        table,
        dims=("concept", "layer", "d_model"),
        coords={"concept": ["Unusual", "Dust", "Oceans"], "layer": np.arange(LAYERS)},
        attrs={"model": "synthetic", "weights_sha256": "0" * 64},
    )
    cos = an.anomaly_cosines(result, vectors)
    assert float(abs(cos.sel(word="Unusual", layer=3))) > 0.8
    assert float(abs(cos.sel(word="Dust", layer=3))) < 0.5
    assert cos.attrs["chance"] == pytest.approx(1.96 / np.sqrt(D))
    with pytest.raises(MechintroError, match="compute vectors with the run's model"):
        an.anomaly_cosines(result, vectors.assign_attrs(weights_sha256="1" * 64))


def synthetic_sentences(seed: int = 0) -> tuple[xr.Dataset, xr.DataArray]:
    """Intentional-control-shaped data: the word's vector is strong on the sentence under
    'think' and weak under 'dont_think'."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(12)]
    control = [f"k{i}" for i in range(20)]
    table = rng.standard_normal((len(words) + len(control), LAYERS, D))
    vectors = xr.DataArray(
        table,
        dims=("concept", "layer", "d_model"),
        coords={"concept": words + control, "layer": np.arange(LAYERS)},
        attrs={"model": "synthetic", "weights_sha256": "0" * 64},
    )
    rows, concept, condition = [], [], []
    read = np.zeros((2 * len(words), POS), bool)
    read[:, 3:] = True
    for cond, amount in (("think", 1.0), ("dont_think", 0.3)):
        for i, w in enumerate(words):
            r = rng.standard_normal((LAYERS, POS, D)) * 2
            r[:, 3:] += amount * table[i][:, None, :]
            rows.append(r)
            concept.append(w)
            condition.append(cond)
    ds = xr.Dataset(
        {
            "resid": (("trial", "layer", "pos", "d_model"), np.array(rows, np.float16)),
            "read_mask": (("trial", "pos"), read),
        },
        coords={
            "trial": np.arange(len(rows)),
            "layer": np.arange(LAYERS),
            "concept": ("trial", concept),
            "condition": ("trial", condition),
        },
        attrs={
            "model": "synthetic",
            "weights_sha256": "0" * 64,
            "experiment": "intentional-control",
        },
    )
    return ds, vectors.assign_attrs(control=control)


def test_alignment_equals_a_direct_per_token_computation():
    ds, vectors = synthetic_sentences()
    control = vectors.attrs["control"]
    al = an.alignment(ds, vectors, baseline=control)
    t, layer = 5, 2
    h = ds.resid.values[t, layer, 3:].astype(np.float64)
    v = vectors.sel(concept=str(ds.concept.values[t]), layer=layer).values
    direct = np.mean([x @ v / np.linalg.norm(x) / np.linalg.norm(v) for x in h])
    assert float(al.cos_word.sel(layer=layer)[t]) == pytest.approx(direct, abs=1e-5)
    k = vectors.sel(concept=control[7], layer=layer).values
    base = np.mean([x @ k / np.linalg.norm(x) / np.linalg.norm(k) for x in h])
    assert float(al.cos_baseline.sel(layer=layer, control_word=control[7])[t]) == pytest.approx(
        base, abs=1e-5
    )
    proj = np.mean(h @ (v / np.linalg.norm(v)))
    assert float(al.proj_word.sel(layer=layer)[t]) == pytest.approx(proj, rel=1e-4)


def test_alignment_summary_orders_think_above_dont_think_above_baseline():
    ds, vectors = synthetic_sentences()
    summary = an.alignment_summary(
        an.alignment(ds, vectors, baseline=vectors.attrs["control"]), n_boot=300
    )
    think, dont = (
        summary.cos_word.sel(condition="think"),
        summary.cos_word.sel(condition="dont_think"),
    )
    assert (think > dont).all() and (dont > summary.baseline_hi.sel(condition="dont_think")).all()
    assert (summary.gap_lo > 0).all()
    assert (summary.gap == think - dont).all() or np.allclose(summary.gap, think - dont)


@pytest.fixture(scope="module")
def tiny_run(tiny, tmp_path_factory):
    from mechintro.experiments import detection_logits
    from mechintro.runs import open_run
    from mechintro.vectors import concept_vectors

    words = ["Dust", "Oceans", "Bread", "Silver"]
    vectors = concept_vectors(tiny, words, baseline=["Sand", "Clay", "Rain"])
    out = tmp_path_factory.mktemp("analysis") / "run.zarr"
    config = detection_logits.Config(
        concepts=tuple(words), layers=("1",), strengths=(1.0, 4.0), record_resid=True, batch_size=4
    )
    detection_logits.run(config, out, model=tiny, vectors=vectors)
    return open_run(out)


def test_logit_lens_last_layer_reproduces_the_model_and_middle_layers_match_hf(tiny, tiny_run):
    from mechintro.readouts import yes_no

    lens = an.logit_lens(tiny_run, tiny)
    stored = yes_no(tiny_run)
    last = lens.isel(layer=-1)
    # residuals are stored as float16: the lens at the last layer matches the model to ~1e-2
    assert float(abs(last.logit_diff - stored.logit_diff).max()) < 0.05
    assert (
        float(abs(lens.isel(layer=0).logit_diff - stored.logit_diff).max()) > 0.5
    )  # the check can fail
    # an independent lens on a control trial: HF hidden states → final norm → lm_head
    row = int(np.flatnonzero(tiny_run.condition.values == "control")[0])
    ids = torch.tensor(
        [tiny_run.input_ids.values[row][tiny_run.attention_mask.values[row].astype(bool)].tolist()]
    )
    with torch.no_grad():
        hidden = tiny.hf(ids, output_hidden_states=True).hidden_states
        logp = torch.log_softmax(tiny.hf.lm_head(tiny.hf.model.norm(hidden[2][0, -1])), -1).double()
    answers = [int(x) for x in tiny_run.answer_id.values]
    yes = tiny_run.answer_label.values == "yes"
    lp = logp[answers].numpy()
    expected = np.logaddexp.reduce(lp[yes]) - np.logaddexp.reduce(lp[~yes])
    assert float(lens.logit_diff.sel(layer=1)[row]) == pytest.approx(expected, abs=0.05)
    summary = an.lens_summary(lens, tiny_run.condition, n_boot=100)
    assert set(summary.group.values) == {"injected", "control"}
    assert np.isnan(summary.p_concept.sel(group="control")).all()


def test_engine_ablation_matches_a_plain_hook(tiny):
    from mechintro import engine

    prompt = [[5, 6, 7, 8, 9, 10]]
    u = torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(0))
    res = engine.forward(tiny, prompt, [None], answer_ids=[11, 12], ablate={1: u})
    unit = u / u.norm()

    def hook(_module, _inputs, output):
        h = output[0] if isinstance(output, tuple) else output
        h = h - (h @ unit)[..., None] * unit
        return (h, *output[1:]) if isinstance(output, tuple) else h

    handle = tiny.hf.model.layers[1].register_forward_hook(hook)
    try:
        with torch.no_grad():
            ref = torch.log_softmax(tiny.hf(torch.tensor(prompt)).logits[0, -1], -1)[[11, 12]]
    finally:
        handle.remove()
    plain = engine.forward(tiny, prompt, [None], answer_ids=[11, 12])
    assert torch.allclose(res.answer_logprobs[0], ref, atol=1e-4)
    assert not torch.allclose(plain.answer_logprobs[0], ref, atol=1e-3)


def test_causal_check_reruns_the_recorded_trials_exactly(tiny, tiny_run):
    labels = an.detection_labels(tiny_run, quantile=0.5)
    result = an.anomaly_directions(tiny_run, labels, folds=2, n_boot=50)
    check = an.causal_check(
        tiny,
        tiny_run,
        result,
        labels,
        layer=1,
        n_random=5,
        n_random_ablate=2,
        n_shuffled=2,
        max_trials=4,
    )
    assert np.allclose(check.recorded_logit_diff, check.stored_logit_diff, atol=1e-4)
    assert check.add_shift.sizes["add_direction"] == 2 + 2 + 5
    assert check.ablate_logit_diff.sizes["direction"] == 2 + 2 + 2
    assert check.attrs["ablated_layers"] == "1..2"
    assert check.attrs["p_resolution_add_random"] == pytest.approx(1 / 6)
    assert 1 / 6 <= check.attrs["add_p_random"] <= 1
    # setting the coordinate to the controls' mean changes the answer (the ablation acts)
    assert (
        float(
            abs(check.ablate_logit_diff.sel(direction="anomaly") - check.recorded_logit_diff).max()
        )
        > 1e-3
    )


def test_ablation_to_a_target_coordinate(tiny):
    import torch as _t

    from mechintro import engine

    prompt = [[1, 2, 3, 4, 5]]
    u = _t.zeros(tiny.d_model)
    u[0] = 1.0
    zero = engine.forward(tiny, prompt, [None], answer_ids=[1, 2], record=True, ablate={1: u})
    seven = engine.forward(
        tiny, prompt, [None], answer_ids=[1, 2], record=True, ablate={1: (u, 7.0)}
    )
    assert float(zero.resid[0, 1, :, 0].abs().max()) < 1e-2
    assert _t.allclose(seven.resid[0, 1, :, 0].float(), _t.full((5,), 7.0), atol=5e-2)
