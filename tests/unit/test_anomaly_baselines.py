"""Anomaly directions against their baselines: a planted anomaly signal beats the layer×strength
predictor, the logit-lens answer and the within-concept label-permutation null; a signal that is
only the cell, or only the answer, does not pass."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from mechintro.analysis import anomaly

N_CONCEPTS, PER_CONCEPT, N_CONTROLS, D = 10, 8, 16, 32
LAYERS = [2, 3]


def run(kind: str, seed: int = 0):
    """Concepts × 8 injected trials (injection layers 1/2 × strengths 1/4, two each) + controls;
    features given directly per (trial, layer), a lens Yes−No score per (trial, layer)."""
    rng = np.random.default_rng(seed)
    concepts, layer, strength = [], [], []
    for c in range(N_CONCEPTS):
        for j in range(PER_CONCEPT):
            concepts.append(f"c{c}")
            layer.append(1 + j % 2)
            strength.append(1.0 if j % 4 < 2 else 4.0)
    n_inj = len(concepts)
    concepts += [""] * N_CONTROLS
    layer += [-1] * N_CONTROLS
    strength += [0.0] * N_CONTROLS
    n = len(concepts)
    injected = np.arange(n) < n_inj
    strength_arr = np.array(strength)
    u, v = np.linalg.qr(rng.standard_normal((D, 2)))[0].T
    feats = rng.standard_normal((n, len(LAYERS), D))
    lens = rng.standard_normal((n, len(LAYERS)))
    latent = rng.standard_normal(n)
    norms = np.ones(n)  # the injected vectors' norms (1: the magnitude is the strength)
    latent[~injected] = -abs(latent[~injected])  # the controls answer no
    if kind == "anomaly":  # detection is half of each concept at random; the residual carries u
        detected = injected & (rng.random(n) < 0.5)
        feats += 3.0 * detected[:, None, None] * u
    elif kind == "cell":  # detection is the strength; the residual carries the strength
        detected = injected & (strength_arr == 4.0)
        feats += strength_arr[:, None, None] * v
    elif kind == "lens":  # detection is the answer the lens already reads; the residual carries it
        detected = injected & (latent > 0)
        feats += 2.0 * latent[:, None, None] * u
        lens = lens * 0.05 + latent[:, None]
    elif kind == "magnitude":  # detection is how hard the concept was pushed; the residual too
        # each trial its own vector: in every concept × layer × strength cell one large, one
        # small; detection follows the size of the push, which the residual carries
        strong = np.tile(np.arange(PER_CONCEPT) < PER_CONCEPT // 2, N_CONCEPTS)
        norms[:n_inj] = np.where(
            strong, rng.uniform(5.0, 10.0, n_inj), rng.uniform(0.2, 0.5, n_inj)
        )
        detected = injected & (norms > 1.0)
        feats += 0.3 * (norms * strength_arr)[:, None, None] * u
    else:
        raise AssertionError(kind)
    feats += injected[:, None, None] * v * 0.5  # every injection leaves a trace, detected or not
    labels = np.where(detected, "detected", np.where(injected, "missed", "control")).astype(object)
    ds = xr.Dataset(
        {
            "resid": (("trial", "layer"), np.zeros((n, len(LAYERS)), np.float16)),
            "injected_vector": (
                ("trial", "d"),
                norms[:, None] * np.eye(1, 4)[0] * injected[:, None],
            ),
        },
        coords={
            "trial": np.arange(n),
            "layer": LAYERS,
            "concept": ("trial", concepts),
            "condition": ("trial", np.where(injected, "injected", "control")),
            "inject_layer": ("trial", np.array(layer)),
            "strength": ("trial", strength_arr),
        },
        attrs={"model": "synthetic", "experiment": "synthetic"},
    )
    features = xr.DataArray(
        feats.astype(np.float32),
        dims=("trial", "layer", "d_model"),
        coords={"trial": np.arange(n), "layer": LAYERS},
    )
    lens_da = xr.DataArray(
        lens,
        dims=("trial", "layer"),
        coords={"trial": np.arange(n), "layer": LAYERS},
        name="logit_diff",
    )
    return ds, xr.DataArray(labels, dims="trial", attrs={"rule": kind}), features, lens_da


def baselines(kind: str, **kw):
    ds, labels, features, lens = run(kind)
    kw = {"n_perm": 39, "n_boot": 300, "lens": lens} | kw
    return anomaly.anomaly_baselines(ds, labels, features=features, **kw)


def test_a_planted_anomaly_signal_is_found_and_beats_all_three_baselines():
    r = baselines("anomaly")
    assert r.passes.all()
    assert (r.probe > 0.9).all() and (r.probe_lo > 0.8).all()
    assert (r.layer_strength < 0.75).all() and (abs(r.lens - 0.5) < 0.15).all()
    assert (
        (r.p_perm == pytest.approx(1 / 40)).all()
        and (r.p_perm_max == pytest.approx(1 / 40)).all()
        and (r.null_q95 < 0.8).all()
    )
    assert r.attrs["nested_probe"] > 0.9 and r.attrs["nested_vs_lens_lo"] > 0
    assert set(eval(r.attrs["nested_layers"])) <= set(LAYERS)
    assert "passes" in anomaly.format_baselines(r)


def test_a_signal_that_is_only_layer_and_strength_does_not_pass():
    r = baselines("cell")
    assert (r.probe > 0.9).all()  # the probe does separate detected trials...
    assert (r.layer_strength > 0.9).all()  # ...but so does the cell alone
    assert not r.passes.any()
    assert (r.vs_layer_strength_lo <= 0).all()


def test_a_signal_that_is_only_the_lens_answer_does_not_pass():
    r = baselines("lens")
    assert (r.probe > 0.8).all() and (r.lens > 0.95).all()
    assert not r.passes.any()
    assert (r.vs_lens_lo <= 0).all()


def test_without_a_lens_nothing_passes():
    r = baselines("anomaly", lens=None, n_perm=0)
    assert not r.passes.any() and not r.attrs["has_lens"] and np.isnan(r.lens).all()


def test_trials_injected_after_the_probed_layer_are_left_out():
    ds, labels, features, lens = run("anomaly")
    features = features.assign_coords(layer=[1, 2])
    lens = lens.assign_coords(layer=[1, 2])
    ds = ds.assign_coords(layer=[1, 2])
    r = anomaly.anomaly_baselines(ds, labels, features=features, lens=lens, n_perm=0, n_boot=50)
    injected_by_1 = int((ds.inject_layer.values == 1).sum()) + N_CONTROLS
    assert int(r.n_trials.sel(layer=1)) == injected_by_1
    assert int(r.n_trials.sel(layer=2)) == ds.sizes["trial"]


def test_detection_margin_leaves_borderline_trials_out():
    ds, _, _, _ = run("anomaly")
    n = ds.sizes["trial"]
    yes = np.linspace(-3, 3, n)
    yes[ds.condition.values == "control"] = 0.0
    logprobs = np.stack([np.log(1 / (1 + np.exp(-yes))), np.log(1 / (1 + np.exp(yes)))], 1)
    ds = ds.assign(
        answer_logprobs=(("trial", "answer"), logprobs.astype(np.float32))
    ).assign_coords(answer=["Yes", "No"], answer_label=("answer", ["yes", "no"]))
    injected = ds.condition.values != "control"
    labels = anomaly.detection_labels(ds, margin=1.0)
    assert ((labels.values == "detected") == (injected & (yes > 1.0 + 1e-4))).all()
    assert (
        (labels.values == "borderline") == (injected & (yes > 1e-4) & (yes <= 1.0 + 1e-4))
    ).all()
    assert labels.attrs["margin"] == 1.0 and "margin 1" in labels.attrs["rule"]
    from mechintro.errors import MechintroError

    with pytest.raises(MechintroError, match="margin"):
        anomaly.detection_labels(ds, margin=-1)


def test_within_concept_shuffles_do_not_depend_on_the_process_hash_seed():
    # the permutation null must be reproducible from its seed alone: two processes with different
    # string-hash seeds draw the same shuffles (iterating over a set of concept names did not)
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from mechintro.analysis.anomaly import _shuffle_within\n"
        "c = np.array([f'concept{i % 7}' for i in range(70)])\n"
        "y = np.arange(70) % 3 == 0\n"
        "rng = np.random.default_rng(0)\n"
        "print(''.join('1' if v else '0' for v in _shuffle_within(y, c, rng)))\n"
    )
    outs = set()
    for hash_seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        outs.add(
            subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            ).stdout
        )
    assert len(outs) == 1


def test_a_signal_that_is_only_the_injection_magnitude_does_not_pass():
    # detection follows strength × vector norm, which the residual carries: the probe beats the
    # layer×strength predictor (it cannot see the norm) and the lens, but not the magnitude
    r = baselines("magnitude")
    assert (r.vs_layer_strength_lo > 0).all() and (r.vs_lens_lo > 0).all()
    assert (r.p_perm_max < 0.05).all()  # without the magnitude baseline it would pass
    assert (r.magnitude > 0.95).all()
    assert not r.passes.any()
    assert r.attrs["nested_magnitude"] > 0.95


def test_injection_magnitude_is_strength_times_norm_and_zero_for_controls():
    ds, *_ = run("magnitude")
    m = anomaly.injection_magnitude(ds)
    control = ds["condition"].values == "control"
    assert (m[control] == 0).all()
    norms = np.linalg.norm(ds["injected_vector"].values, axis=1)
    np.testing.assert_allclose(m[~control], (ds["strength"].values * norms)[~control])


def test_identical_controls_are_one_cluster_and_the_pass_needs_simultaneous_intervals():
    """Issue 32, item 3: bit-identical control trials (the same prompt, no sampling) were each
    their own CV group and bootstrap cluster, so identical copies sat in training and held-out
    folds and were drawn as independent evidence. Now they are one cluster (one fold); the pass
    reads the simultaneous (max over layers) intervals against a margin fixed in advance."""
    ds, labels, features, lens = run("anomaly")
    controls = np.asarray(ds["concept"].values) == ""
    f = features.values.copy()
    f[controls] = f[np.flatnonzero(controls)[0]]  # every control the same activation
    features = features.copy(data=f)
    concepts = np.array([str(c) for c in ds["concept"].values], dtype=object)
    groups = anomaly.trial_groups(concepts, f)
    assert len(set(groups[controls].tolist())) == 1
    assert len(set(anomaly._folds(groups, 5, 0)[controls].tolist())) == 1
    distinct = anomaly.trial_groups(
        concepts, features.values + np.arange(len(concepts))[:, None, None]
    )
    assert len(set(distinct[controls].tolist())) == N_CONTROLS
    r = anomaly.anomaly_baselines(ds, labels, features=features, lens=lens, n_perm=19, n_boot=200)
    assert r.attrs["controls"] == N_CONTROLS and r.attrs["control_clusters"] == 1
    assert r.attrs["auc_margin"] == 0.0
    for b in anomaly.BASELINES:  # the band over layers is at least as wide as each layer's
        assert (r[f"sim_vs_{b}_lo"] <= r[f"vs_{b}_lo"] + 1e-9).all()
        assert (r[f"sim_vs_{b}_hi"] >= r[f"vs_{b}_hi"] - 1e-9).all()
    want = (
        (r.sim_vs_layer_strength_lo > 0)
        & (r.sim_vs_lens_lo > 0)
        & (r.sim_vs_magnitude_lo > 0)
        & (r.p_perm_max < 0.05)
    )
    assert (r.passes == want).all()
    assert "1 cluster(s)" in anomaly.format_baselines(r)


def test_simultaneous_interval_covers_all_layers_at_once():
    rng = np.random.default_rng(0)
    boots = rng.standard_normal((4000, 9))  # nine independent layers
    lo, hi, level = anomaly.simultaneous_interval(np.zeros(9), boots)
    covered = ((boots >= lo) & (boots <= hi)).all(1).mean()
    assert covered == pytest.approx(0.95, abs=0.005)
    assert 0.99 < level < 0.999  # each layer's own level: about 1 − 0.05/9, not 0.95
    assert (hi > np.quantile(boots, 0.975, axis=0)).all()
