"""``concept-confusion`` on the tiny random model: every trial's logit-lens option probabilities
equal an independent plain-PyTorch copy of the Latent Introspection code's confusion matrix
(``tests/confusion_reference.py``), and the copy, mutated (turn 2 steered too, the vector's sign
flipped, the options mapped back with the inverse order), no longer matches; the grid and its
controls; the mutual information against an independent computation on synthetic matrices with
known MI, its bias correction and permutation null; the summary; bad configs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import mutual_info_score

from mechintro import runs, stimuli
from mechintro.errors import MechintroError
from mechintro.experiments import concept_confusion as CC
from mechintro.vectors import concept_vectors

from .. import confusion_reference as REF

WORDS = ("cats", "bread", "love")
STEERED = [0, 1]
STRENGTH = 8.0


@pytest.fixture(scope="module")
def vecs(tiny):
    return concept_vectors(tiny, WORDS, baseline=["apple", "chair", "river"])


def _config(**over):
    kw = dict(
        concepts=WORDS,
        interventions=("inject",),
        infos=("none",),
        orderings=2,
        strengths=(STRENGTH,),
        layer_start=0,
        layer_end=2,
        lens_layers=3,
        random_control=True,
        n_perm=20,
        vector_method="lindsey",
    )
    return CC.Config(**(kw | over))


@pytest.fixture(scope="module")
def cc_run(tiny, vecs, tmp_path_factory):
    out = CC.run(_config(), tmp_path_factory.mktemp("cc") / "cc.zarr", model=tiny, vectors=vecs)
    return runs.open_run(out)


def _strs(x):
    return np.array([str(v) for v in np.asarray(x.values)], dtype=object)


def _reference(tiny, vecs, perm, injected, *, sign=1.0, steer_all=False):
    steps = REF.conversation(stimuli.latent_introspection(), list(WORDS), perm, None)
    vectors = None
    if injected != CC.NONE:
        vectors = {
            layer: sign * STRENGTH * torch.tensor(vecs.sel(concept=injected, layer=layer).values)
            for layer in STEERED
        }
    probs = REF.lens_probs(tiny.hf, tiny.tokenizer, steps, STEERED, vectors, 3, steer_all=steer_all)
    ids = [tiny.tokenizer.encode(str(i), add_special_tokens=False)[0] for i in range(len(perm))]
    return probs[:, ids].double().numpy()  # (layer, shown option)


def test_every_trial_matches_the_plain_pytorch_reference(tiny, vecs, cc_run):
    ds = cc_run
    ours, layers = CC.option_probs(ds, tiny)
    assert layers == [0, 1, 2] and ours.shape == (ds.sizes["trial"], 3, len(WORDS) + 1)
    perms = [json.loads(p) for p in _strs(ds.perm)]
    assert perms[0] == REF.generate_orderings(len(WORDS) + 1, 2, 777)[0]
    injected = _strs(ds.injected)
    moved = 0.0
    for i in np.flatnonzero(np.isin(_strs(ds.condition), ["concept", "none"])):
        ref = _reference(tiny, vecs, perms[i], injected[i])
        np.testing.assert_allclose(np.log(ours[i]), np.log(ref), atol=1e-4, err_msg=str(i))
        if injected[i] != CC.NONE:
            none = np.flatnonzero(
                (injected == CC.NONE) & (ds.ordering.values == ds.ordering.values[i])
            )
            moved = max(moved, float(np.abs(np.log(ours[i]) - np.log(ours[none[0]])).max()))
    assert moved > 1e-2, "the tiny model must respond to the steering for the test to mean anything"
    # the final lens layer is the model's own answer, as stored by the run
    np.testing.assert_allclose(np.log(ours[:, -1]), np.log(CC.option_probs(ds)[0][:, 0]), atol=1e-4)
    steered = np.flatnonzero(_strs(ds.condition) == "concept")
    for mutation in ({"sign": -1.0}, {"steer_all": True}):
        worst = max(
            float(np.abs(np.log(ours[i]) - np.log(_reference(tiny, vecs, perms[i], injected[i],
                                                             **mutation))).max())
            for i in steered
        )  # fmt: skip
        assert worst > 1e-3, mutation


def test_the_confusion_matrix_is_mapped_back_as_their_code_does(tiny, vecs, cc_run):
    ds = cc_run
    s = CC.summarize(ds, model=tiny, n_perm=5)
    ours, _ = CC.option_probs(ds, tiny)
    perms = [json.loads(p) for p in _strs(ds.perm)]
    canonical = [CC.NONE, *WORDS]
    injected = _strs(ds.injected)

    def matrix(mapper):
        m = np.zeros((2, len(canonical), 3, len(canonical)))
        for i in np.flatnonzero(np.isin(_strs(ds.condition), ["concept", "none"])):
            r = canonical.index(injected[i])
            for j in range(3):
                m[int(ds.ordering[i]), r, j] = mapper(ours[i, j], perms[i])
        return m.mean(0)

    got = s.confusion.sel(intervention="inject", info="none", condition="concept").isel(strength=0)
    want = matrix(REF.map_to_canonical)
    np.testing.assert_allclose(got.transpose("lens_layer", ...).values, want.transpose(1, 0, 2))
    assert any(list(np.argsort(p)) != p for p in perms), "an order that is its own inverse"
    wrong = matrix(lambda x, p: REF.map_to_canonical(x, list(np.argsort(p))))
    assert np.abs(wrong - want).max() > 1e-3


def test_the_grid_and_its_controls(tiny, vecs):
    cfg = _config(random_control=True, orderings=3, infos=("none", "introspect"))
    trials, layers = CC.build_trials(cfg, tiny, vecs)
    assert layers == STEERED
    assert CC.lens_config(cfg, 3).resid_layers == ("0", "1", "2")
    off = CC.lens_config(_config(lens_layers=0), 3)
    assert not off.record_resid and off == _config(lens_layers=0)
    assert len(trials) == 2 * 3 * (1 + len(WORDS) * 3)
    for t in trials:
        twins = [u for u in trials if u.labels["ordering"] == t.labels["ordering"]
                 and u.labels["info"] == t.labels["info"]]  # fmt: skip
        assert all(u.prompt.input_ids == t.prompt.input_ids for u in twins)
    by = {(t.condition, t.concept): t.vector for t in trials if t.labels["ordering"] == 0}
    for c in WORDS:
        v, r, sh = by[("concept", c)], by[("random", c)], by[("shuffled", c)]
        assert v.shape == (2, tiny.d_model)
        np.testing.assert_allclose(r.norm(dim=1), v.norm(dim=1), rtol=1e-5)
        np.testing.assert_allclose(sh.norm(dim=1), v.norm(dim=1), rtol=1e-5)
        np.testing.assert_allclose(np.sort(sh.numpy(), 1), np.sort(v.numpy(), 1))
        cos = torch.nn.functional.cosine_similarity(v, r, dim=1)
        assert float(cos.abs().max()) < 0.9 and not torch.equal(sh, v)
    # the steered window is turn 1 (system template, user, "{ }"), not the question
    t = next(t for t in trials if t.condition == "concept")
    mask = np.array(t.window.resolve(t.prompt))
    on = [t.prompt.offsets[i] for i in np.flatnonzero(mask)]
    steered, rest = t.prompt.text[: on[-1][1]], t.prompt.text[on[-1][1] :]
    assert mask[0] and mask[: len(on)].all() and on[0][0] == 0
    assert steered.rstrip().endswith("{ }<|im_end|>") and "Which concept" not in steered
    assert "Which concept" in rest and "injected into this message" not in rest


def _channel(k: int, q: float) -> np.ndarray:
    """P(recovered | injected): right with probability q, else uniform over the others."""
    m = np.full((k, k), (1 - q) / (k - 1))
    np.fill_diagonal(m, q)
    return m


def test_mutual_information_matches_an_independent_computation():
    k, q = 10, 0.6
    h = -(q * np.log2(q) + (1 - q) * np.log2((1 - q) / (k - 1)))
    known = np.log2(k) - h  # uniform input through a symmetric channel
    assert CC.soft_mi(_channel(k, q)) == pytest.approx(known, abs=1e-12)
    assert CC.soft_mi(np.ones((k, k))) == pytest.approx(0.0, abs=1e-12)
    assert CC.soft_mi(np.eye(k)) == pytest.approx(np.log2(k))
    rng = np.random.default_rng(1)
    a = rng.integers(0, k, 400)
    r = np.where(rng.random(400) < q, a, rng.integers(0, k, 400))
    counts = np.zeros((k, k))
    np.add.at(counts, (a, r), 1)
    assert CC.mutual_information(counts) == pytest.approx(
        mutual_info_score(a, r) / np.log(2), abs=1e-10
    )


def test_the_bias_correction_is_near_zero_on_independent_draws():
    k, n = 10, 500
    rng = np.random.default_rng(0)
    plug, mm = [], []
    for _ in range(200):
        counts = np.zeros((k, k))
        np.add.at(counts, (rng.integers(0, k, n), rng.integers(0, k, n)), 1)
        plug.append(CC.mutual_information(counts))
        mm.append(CC.miller_madow(counts))
    expected_bias = (k - 1) ** 2 / (2 * n * np.log(2))  # the plug-in's first-order bias
    assert np.mean(plug) == pytest.approx(expected_bias, rel=0.15)
    assert abs(np.mean(mm)) < 0.15 * expected_bias


def test_the_permutation_null_calibrates_the_p_value():
    k, n_o = 10, 5
    rng = np.random.default_rng(2)
    ps = []
    for seed in range(40):  # the model's answers ignore what was injected
        probs = rng.dirichlet(np.ones(k) * 0.3, size=(n_o, k))
        st = CC.confusion_stats(probs, n_perm=99, seed=seed)
        ps.append(st["mi_p"])
        assert st["soft_mi_null"] > 0
    assert 0.02 < np.mean(np.array(ps) < 0.2) < 0.45
    right = np.stack([_channel(k, 0.9)] * n_o)
    st = CC.confusion_stats(right, n_perm=99)
    assert st["accuracy"] == 1.0 and st["mi"] == pytest.approx(np.log2(k))
    assert st["mi_p"] == pytest.approx(0.01) and st["soft_mi_p"] == pytest.approx(0.01)
    # Miller-Madow: (10 - 1) + (10 - 1) - (10 - 1) filled bins beyond one, over 2 N ln 2
    assert st["mi_mm"] == pytest.approx(st["mi"] + 9 / (2 * 50 * np.log(2)))
    assert st["varies"] == 1.0
    same = np.tile(np.eye(k)[3], (n_o, k, 1))  # always option 3: no power
    st = CC.confusion_stats(same, n_perm=9)
    assert st["varies"] == 0.0 and st["mi"] == pytest.approx(0.0, abs=1e-12)
    assert st["soft_mi"] == pytest.approx(0.0, abs=1e-12)


def test_summary_of_known_answers(cc_run):
    ds = cc_run.load()
    cond, injected = _strs(ds.condition), _strs(ds.injected)
    canonical = [CC.NONE, *WORDS]
    logp = np.full((ds.sizes["trial"], len(canonical)), -5.0, dtype=np.float32)
    for i in range(len(cond)):  # concept: always right; random, shuffled, none: "(no injection)"
        perm = json.loads(str(ds.perm.values[i]))
        want = injected[i] if cond[i] == "concept" else CC.NONE
        logp[i, perm.index(canonical.index(want))] = -0.1
    ds["answer_logprobs"] = (("trial", "answer"), logp)
    s = CC.summarize(ds, n_perm=50)
    c, r = s.sel(condition="concept").squeeze(), s.sel(condition="random").squeeze()
    assert float(c.accuracy) == 1.0 and int(c.n) == 2 * len(canonical)
    assert float(r.accuracy) == pytest.approx(1 / len(canonical))
    assert float(c.mi) == pytest.approx(2.0) and float(r.mi) == 0.0
    assert bool(s.above_random.squeeze()) and bool(s.above_shuffled.squeeze())
    assert float(r.varies) == 0.0 and float(c.mi_p) < 0.05
    assert json.loads(s.attrs["uninjected_choices"])["inject/none/8"][CC.NONE] == 2
    text = CC.format_summary(s)
    assert "concept acc" in text and "random MI-MM" in text


def test_a_run_stopped_early_is_summarised_on_its_whole_orders(cc_run):
    ds = cc_run.load()
    last = np.flatnonzero(ds.ordering.values == 1)
    part = ds.isel(trial=np.setdiff1d(np.arange(ds.sizes["trial"]), last[-3:]))
    s, whole = CC.summarize(part, n_perm=5), CC.summarize(ds, n_perm=5)
    assert int(s.orders.min()) == 1 and int(whole.orders.min()) == 2
    assert int(s.n.sel(condition="concept").squeeze()) == 1 + len(WORDS)
    assert np.isfinite(s.accuracy).all()
    assert "option orders per cell 1-1 of 2" in CC.format_summary(s)


@pytest.mark.parametrize(
    "kw",
    [{"concepts": ()}, {"concepts": tuple(f"c{i}" for i in range(10))}, {"concepts": ("a", "a")},
     {"orderings": 0}, {"infos": ()}, {"lens_layers": -1}, {"n_perm": 0}],
)  # fmt: skip
def test_bad_configs_are_one_line_errors(kw):
    with pytest.raises(MechintroError):
        CC.Config(**kw)


def test_too_many_lens_layers_is_refused_before_the_store(tiny, vecs, tmp_path):
    with pytest.raises(MechintroError, match="lens_layers"):
        CC.run(_config(lens_layers=4), tmp_path / "x.zarr", model=tiny, vectors=vecs)
    assert not (tmp_path / "x.zarr").exists()
