"""Scoring Looking Inward runs (Binder et al. 2024; docs/looking-inward.md): self- and
cross-prediction, and probes.

A ``self-prediction`` run holds a model's object-level answers and its hypothetical predictions.
:func:`score` pairs a *predictor* run's predictions with a *target* run's object-level answers
(the same run for self-prediction), matching items by task and prompt text, so any model's
predictions can be scored against any model's behaviour. The default ``rules="authors"`` follow the
analysis that made the paper's numbers (felixbinder/introspection_self_prediction,
``evals/analysis/james/james_analysis.py``; docs/looking-inward.md): answers cleaned by
:func:`mechintro.looking_inward.tasks.clean`, a prediction right when the whole cleaned answer
equals the property, and **every pair kept** (``exclude_noncompliant=False``): an undefined
property scores as the value ``"none"``, and compliance is only reported. ``rules="lenient"`` is
mechintro's earlier scoring (lenient parsing, object-level non-compliant pairs excluded).

* :func:`accuracy` — per task × property, Wilson intervals, against the **mode baseline** (always
  guess the target's most frequent property value in that cell); pooled over the held-out and the
  training tasks with a bootstrap clustered by item (an item's properties share one answer).
* :func:`cross_matrix` — predictor × target accuracy on the held-out tasks.
* :func:`self_vs_cross` — accuracy(M1→M1) − accuracy(M2→M1) on the same pairs, paired bootstrap
  interval and sign-flip permutation p-value over items.
* :func:`behaviour_change` — do a model's predictions follow its new behaviour after finetuning
  on another model's answers, or its old one?
* :func:`calibration` — runs that sample answers at temperature 1: the mean absolute deviation
  between the distribution of a property over a target's sampled answers and over a predictor's
  sampled predictions, per prompt.
* :func:`probe` — beyond the paper: a linear probe on the residual stream at the hypothetical
  prompt's last token predicting a boolean property of the target's object-level answer,
  cross-validated by task (folds never split a task), from the target's own activations and from
  another model's activations on the same prompts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from mechintro.errors import MechintroError
from mechintro.looking_inward import tasks as sp
from mechintro.stats import bootstrap_mean_ci, cluster_bootstrap_weights, paired_auc, rate, wilson


def _str(values) -> np.ndarray:
    """Strings as a plain unicode array (run labels are numpy StringDType, which does not cast)."""
    return np.array([str(v) for v in np.asarray(values).tolist()], dtype=str)


def _labels(ds: xr.Dataset, name: str) -> np.ndarray:
    return _str(ds[name].values)


def _columns(*names: str) -> dict[str, list]:
    """An empty column per name, filled row by row and then made into a Dataset."""
    return {name: [] for name in names}


def score(
    predictor: xr.Dataset, target: xr.Dataset | None = None, *, rules: str = "authors"
) -> xr.Dataset:
    """One row (``pair``) per hypothetical trial of ``predictor`` whose item ``target`` answered.

    Variables: ``task``, ``split``, ``property``, ``item`` (``task:index``), ``target`` (the
    property of the target's object-level answer), ``prediction``, ``object_compliant``,
    ``prediction_compliant``, ``correct``, ``trial`` (the predictor's trial index); attrs
    ``rules``.

    ``rules="authors"``: ``target`` is ``"none"`` when the property is undefined (their
    ``james_analysis.py:load_meta_dfs``), ``prediction`` the whole cleaned answer, ``correct``
    their equality; compliance is their ``compliance_checks.py`` (refusals, off-format answers)
    on the raw answers, and for the object level also a defined property. ``rules="lenient"``:
    ``target`` / ``prediction`` are ``""`` when non-compliant (undefined), and such pairs are
    never correct.
    """
    sp._check_rules(rules)
    target = predictor if target is None else target
    sp.require_run(predictor, "predictor")
    sp.require_run(target, "target")
    cond_t = _labels(target, "condition")
    t_task, t_prompt, t_response, t_matching = (
        target[k].values for k in ("task", "item_prompt", "response", "matching")
    )
    behaviour = {}
    for i in np.nonzero(cond_t == "object")[0]:
        key = (str(t_task[i]), str(t_prompt[i]))
        behaviour[key] = (str(t_response[i]), str(t_matching[i]))
    rows = _columns(
        "task",
        "split",
        "property",
        "item",
        "target",
        "prediction",
        "object_compliant",
        "prediction_compliant",
        "correct",
        "trial",
    )
    cond_p = _labels(predictor, "condition")
    columns = {k: predictor[k].values for k in ("task", "item_prompt", "property", "response")}
    p_item = predictor["item"].values
    for i in np.nonzero(cond_p == "hypothetical")[0]:
        task, prompt, prop = (str(columns[k][i]) for k in ("task", "item_prompt", "property"))
        if (task, prompt) not in behaviour:
            continue
        response, matching = behaviour[(task, prompt)]
        answer = str(columns["response"][i])
        truth = sp.extract(response, prop, matching, rules)
        guess = sp.parse_prediction(answer, prop, rules)
        if rules == "authors":
            object_ok = truth is not None and sp.compliant(response, sp.compliance_groups(task))
            prediction_ok = sp.compliant(answer, sp.compliance_groups(task, prop))
            truth, guess = truth or "none", guess or ""
            correct = guess == truth
        else:
            object_ok, prediction_ok = truth is not None, guess is not None
            correct = object_ok and prediction_ok and guess == truth
            truth, guess = truth or "", guess or ""
        rows["task"].append(task)
        rows["split"].append(sp.TASKS[task].split)
        rows["property"].append(prop)
        rows["item"].append(f"{task}:{int(p_item[i])}")
        rows["target"].append(truth)
        rows["prediction"].append(guess)
        rows["object_compliant"].append(object_ok)
        rows["prediction_compliant"].append(prediction_ok)
        rows["correct"].append(correct)
        rows["trial"].append(int(i))
    if not rows["task"]:
        raise MechintroError(
            "the predictor and target runs share no items: run both with the same tasks, "
            "items and seed"
        )
    out = xr.Dataset(
        {
            k: (
                "pair",
                np.array(
                    v,
                    dtype=object
                    if k in ("task", "split", "property", "item", "target", "prediction")
                    else None,
                ),
            )
            for k, v in rows.items()
        }
    )
    out.attrs = {
        "predictor": predictor.attrs.get("model", "?"),
        "target": target.attrs.get("model", "?"),
        "predictor_adapter": _adapter(predictor),
        "target_adapter": _adapter(target),
        "rules": rules,
    }
    return out


def _kept(scored: xr.Dataset) -> np.ndarray:
    """The pairs accuracy is over: all of them under the authors' rules (their paper analysis runs
    with ``exclude_noncompliant=False``), the object-compliant ones under "lenient"."""
    if scored.attrs.get("rules", "authors") == "authors":
        return np.ones(scored.sizes["pair"], bool)
    return np.asarray(scored.object_compliant.values, bool)


def _finished(run: Path) -> bool:
    """Whether the run store ``run`` exists and its last batch was committed (its root attribute
    ``complete``, which :func:`mechintro.runs.mark_complete` sets), read without opening it."""
    try:
        meta = json.loads((run / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("attributes", {}).get("complete") == "true"


def study(root: str | Path) -> dict[str, list[tuple]]:
    """The finished runs of a ``scripts/looking_inward.py`` folder, as the comparisons they make
    (paths only; the one place that reads the folder's layout):

    * ``models``: ``(model,)`` for every ``MODEL/base.zarr``;
    * ``self_vs_cross``: ``(m1, m2, m1's self-trained run, m2's run trained on m1's behaviour)``;
    * ``behaviour_change``: ``(m1, m2, m1 changed toward m2's answers, m1's self-trained run)``;
    * ``calibration``: ``(m1, who predicts, predictor run, target run)`` — untrained and
      self-trained m1 predicting itself, then each m2 trained on m1's behaviour.
    """
    root = Path(root)

    def done(*runs: Path) -> bool:  # every batch committed: an interrupted run is left out
        return all(_finished(r) for r in runs)

    names = sorted(d.name for d in root.iterdir() if done(d / "base.zarr")) if root.exists() else []
    out: dict[str, list[tuple]] = {
        "models": [(n,) for n in names],
        "self_vs_cross": [],
        "behaviour_change": [],
        "calibration": [],
    }
    for m1 in names:
        own, cal = root / m1 / "self.zarr", root / m1 / "calibration"
        others = [m2 for m2 in names if m2 != m1]
        out["self_vs_cross"] += [
            (m1, m2, own, root / m2 / f"cross-on-{m1}" / "run.zarr")
            for m2 in others
            if done(own, root / m2 / f"cross-on-{m1}" / "run.zarr")
        ]
        out["behaviour_change"] += [
            (m1, run.parent.name.removeprefix("changed-by-"), run, own)
            for run in sorted((root / m1).glob("changed-by-*/run.zarr"))
            if done(run, own)
        ]
        cells = [
            ("itself, untrained", cal / "base.zarr", cal / "base.zarr"),
            ("itself, self-trained", cal / "self.zarr", cal / "self.zarr"),
            *[
                (
                    f"{m2} trained on its behaviour",
                    root / m2 / f"cross-on-{m1}" / "calibration.zarr",
                    cal / "self.zarr",
                )
                for m2 in others
            ],
        ]
        out["calibration"] += [
            (m1, who, predictor, target)
            for who, predictor, target in cells
            if done(predictor, target)
        ]
    return out


def _adapter(ds: xr.Dataset) -> str:
    import json

    return str(json.loads(ds.attrs.get("config", "{}")).get("adapter", ""))


def _mode_share(values: np.ndarray) -> float:
    if values.size == 0:
        return math.nan
    _, counts = np.unique(values, return_counts=True)
    return float(counts.max() / values.size)


def _loo_mode_hits(targets: np.ndarray, items: np.ndarray) -> float:
    """How many of a cell's pairs the mode of the **other items'** answers gets right
    (leave-one-item-out): each pair is guessed from the cell without its own item, so the
    baseline is out of sample (the in-sample mode always counts its own answer). A tie between
    modes counts as a random pick among them (1/k of a hit when the target is one of k)."""
    hits = 0.0
    for i, t in enumerate(targets):
        rest = targets[items != items[i]]
        if rest.size == 0:
            continue
        values, counts = np.unique(rest, return_counts=True)
        modes = values[counts == counts.max()]
        hits += float(t in modes) / len(modes)
    return hits


def pooled(scored: xr.Dataset, split: str | None = None, *, seed: int = 0) -> dict[str, float]:
    """Accuracy over the pairs of ``split`` (None: all) with a 95% bootstrap clustered by item, and
    the matching mode baseline (each cell's mode share, weighted by its n): the micro-average of
    the authors' ``calculate_evidence_0``. Which pairs count: :func:`score`'s ``rules`` (authors:
    all; lenient: the object-compliant ones). The mode is taken over the cell's object-level
    answers, ``"none"`` included, as in their ``flat_object_meta``. ``mode_baseline_loo``: the
    same with each pair's mode taken over the cell's **other** items (:func:`_loo_mode_hits`):
    the in-sample mode of a few items per cell is biased upward, so a claim that accuracy beats
    the mode is read on the out-of-sample one."""
    keep = _kept(scored)
    if split is not None:
        keep = keep & (_str(scored.split.values) == split)  # not &=: keep views the dataset
    correct = np.asarray(scored.correct.values, bool)[keep]
    acc, lo, hi, n = rate(correct, np.asarray(scored.item.values)[keep], seed=seed)
    cells = np.char.add(
        np.char.add(_str(scored.task.values)[keep], "/"), _str(scored.property.values)[keep]
    )
    targets = _str(scored.target.values)[keep]
    baseline = (
        sum(_mode_share(targets[cells == c]) * int((cells == c).sum()) for c in np.unique(cells))
        / n
        if n
        else math.nan
    )
    item = np.asarray(scored.item.values)[keep]
    loo = (
        sum(_loo_mode_hits(targets[cells == c], item[cells == c]) for c in np.unique(cells)) / n
        if n
        else math.nan
    )
    return {
        "accuracy": acc,
        "lo": lo,
        "hi": hi,
        "n": n,
        "mode_baseline": baseline,
        "mode_baseline_loo": loo,
    }


def accuracy(scored: xr.Dataset) -> xr.Dataset:
    """Per (task, property) cell: ``n`` scored pairs (all under the authors' rules, the
    object-compliant ones under "lenient"), ``accuracy`` [``lo``, ``hi``] (Wilson),
    ``mode_baseline``, ``object_compliance`` and ``prediction_compliance``; attrs
    ``{train,test}_{accuracy,lo,hi,n,mode_baseline}`` (:func:`pooled`)."""
    task = _str(scored.task.values)
    prop = _str(scored.property.values)
    compliant = np.asarray(scored.object_compliant.values, bool)
    kept = _kept(scored)
    predicted = np.asarray(scored.prediction_compliant.values, bool)
    correct = np.asarray(scored.correct.values, bool)
    targets = _str(scored.target.values)
    cells = list(dict.fromkeys(zip(task.tolist(), prop.tolist(), strict=True)))
    data = _columns(
        "n",
        "accuracy",
        "lo",
        "hi",
        "mode_baseline",
        "object_compliance",
        "prediction_compliance",
    )
    for t, p in cells:
        sel = (task == t) & (prop == p)
        ok = sel & kept
        n = int(ok.sum())
        k = int(correct[ok].sum())
        lo, hi = wilson(k, n) if n else (math.nan, math.nan)
        data["n"].append(n)
        data["accuracy"].append(k / n if n else math.nan)
        data["lo"].append(lo)
        data["hi"].append(hi)
        data["mode_baseline"].append(_mode_share(targets[ok]))
        data["object_compliance"].append(float(compliant[sel].mean()))
        data["prediction_compliance"].append(float(predicted[ok].mean()) if n else math.nan)
    out = xr.Dataset(
        {k: ("cell", np.array(v, dtype=float if k != "n" else int)) for k, v in data.items()},
        coords={
            "task": ("cell", [c[0] for c in cells]),
            "property": ("cell", [c[1] for c in cells]),
            "split": ("cell", [sp.TASKS[c[0]].split for c in cells]),
        },
    )
    for split in ("train", "test"):
        for key, value in pooled(scored, split).items():
            out.attrs[f"{split}_{key}"] = value
    out.attrs.update(scored.attrs)
    return out


def cross_matrix(
    runs: Mapping[str, xr.Dataset], split: str = "test", *, rules: str = "authors"
) -> xr.Dataset:
    """``accuracy``, ``lo``, ``hi``, ``n`` (predictor × target) on ``split`` tasks, and each
    target's ``mode_baseline``; the diagonal is self-prediction (:func:`score`'s ``rules``)."""
    names = list(runs)
    shape = (len(names), len(names))
    acc, lo, hi, n = (np.full(shape, math.nan) for _ in range(4))
    baseline = np.full(len(names), math.nan)
    for j, t in enumerate(names):
        for i, p in enumerate(names):
            r = pooled(score(runs[p], runs[t], rules=rules), split)
            acc[i, j], lo[i, j], hi[i, j], n[i, j] = r["accuracy"], r["lo"], r["hi"], r["n"]
            baseline[j] = r["mode_baseline"]
    dims = ("predictor", "target")
    return xr.Dataset(
        {
            "accuracy": (dims, acc),
            "lo": (dims, lo),
            "hi": (dims, hi),
            "n": (dims, n.astype(int)),
            "mode_baseline": ("target", baseline),
        },
        coords={"predictor": names, "target": names},
        attrs={"split": split},
    )


def self_vs_cross(
    self_run: xr.Dataset,
    cross_run: xr.Dataset,
    target: xr.Dataset | None = None,
    *,
    split: str = "test",
    rules: str = "authors",
    n_boot: int = 5000,
    seed: int = 0,
) -> dict[str, float]:
    """accuracy(self_run → target) − accuracy(cross_run → target) on the pairs both predicted
    (``target`` defaults to ``self_run``): the difference, its 95% paired bootstrap interval over
    items, and a two-sided sign-flip permutation p-value over items (:func:`score`'s ``rules``)."""
    target = self_run if target is None else target
    r = _paired_difference(
        score(self_run, target, rules=rules),
        score(cross_run, target, rules=rules),
        split,
        n_boot,
        seed,
        "the self and cross runs",
    )
    return {"self": r.pop("a"), "cross": r.pop("b"), **r}


def behaviour_change(
    changed: xr.Dataset,
    old: xr.Dataset,
    *,
    split: str = "test",
    rules: str = "authors",
    shifted_only: bool | None = None,
    n_boot: int = 5000,
    seed: int = 0,
) -> dict[str, float]:
    """The behaviour-change test (Binder et al. 2024, behaviour-change experiment): ``changed`` is a
    model finetuned on another model's object-level answers after its self-training, ``old`` the
    run of the model before that (its old behaviour). Do ``changed``'s predictions follow its new
    answers or its old ones? accuracy against the new behaviour − accuracy against the old, with
    :func:`self_vs_cross`'s paired interval and p-value.

    ``shifted_only`` (default: on under the authors' rules, as in their
    ``final_10_9_claude_shift_3000.py``: ``calculate_evidence_1(shifting="only_shifted",
    exclude_noncompliant=True)``) scores only the pairs whose property the finetuning changed,
    both object-level answers compliant, and a compliant prediction (``calc_shift_results``); on
    the unchanged pairs new = old and both accuracies are equal, so leaving them in only dilutes
    the difference. ``mode_new`` / ``mode_old``: the mode baselines on those pairs, the mode taken
    per property over them (their ``recalculate_mode``). ``changed_answers``: the share of the
    pairs with both answers compliant whose property changed.

    The control (when ``old`` holds predictions): is the new behaviour simply easier to predict?
    ``control_*`` compares, against the new behaviour, the changed model's predictions with the
    old model's on the same pairs: only a shift there says the finetuning moved the predictions
    themselves."""
    shifted_only = rules == "authors" if shifted_only is None else shifted_only
    new, before = score(changed, rules=rules), score(changed, old, rules=rules)

    def table(s: xr.Dataset) -> dict[tuple[str, str], tuple[str, bool, bool]]:
        keep = _str(s.split.values) == split
        keys = zip(
            np.asarray(s.item.values)[keep].tolist(),
            np.asarray(s.property.values)[keep].tolist(),
            strict=True,
        )
        rows = zip(
            _str(s.target.values)[keep].tolist(),
            np.asarray(s.object_compliant.values, bool)[keep].tolist(),
            np.asarray(s.prediction_compliant.values, bool)[keep].tolist(),
            strict=True,
        )
        return dict(zip(keys, rows, strict=True))

    a, b = table(new), table(before)
    both = [k for k in a if k in b and a[k][1] and b[k][1]]
    changed_pairs = {k for k in both if a[k][0] != b[k][0]}
    shifted = {k for k in changed_pairs if a[k][2]}  # and a compliant prediction
    if shifted_only and len(shifted) < 2:
        raise MechintroError(
            f"{len(shifted)} {split} pairs changed their property between the old and the changed "
            "run: too few to score the changed ones (shifted_only=False scores every pair)"
        )
    keys = shifted if shifted_only else None
    r = _paired_difference(new, before, split, n_boot, seed, "the changed and old runs", keys)
    result = {
        "new": r.pop("a"),
        "old": r.pop("b"),
        **r,
        "changed_answers": (
            float(np.mean([k in changed_pairs for k in both])) if both else math.nan
        ),
        "shifted_only": shifted_only,
    }
    if shifted_only:
        for name, t in (("mode_new", a), ("mode_old", b)):
            by_prop: dict[str, list[str]] = {}
            for k in shifted:
                by_prop.setdefault(k[1], []).append(t[k][0])
            hits = sum(_mode_share(np.array(v)) * len(v) for v in by_prop.values())
            result[name] = hits / len(shifted)
    if (_labels(old, "condition") == "hypothetical").any():
        c = _paired_difference(
            new,
            score(old, changed, rules=rules),
            split,
            n_boot,
            seed,
            "the changed and old runs",
            keys,
        )
        result.update(
            {f"control_{k}": v for k, v in c.items()}
        )  # control_a: changed → new, control_b: old → new
    return result


N_FLIPS = 100_000  # sign flips for the paired permutation p-values (resolution 1e-5)


def _paired_difference(
    a: xr.Dataset,
    b: xr.Dataset,
    split: str,
    n_boot: int,
    seed: int,
    what: str,
    keys: set[tuple[str, str]] | None = None,
) -> dict[str, float]:
    """accuracy(a) − accuracy(b) of two scored tables on the (item, property) pairs both scored
    (and in ``keys``, if given)."""

    def table(s: xr.Dataset) -> dict[tuple[str, str], bool]:
        keep = _kept(s) & (_str(s.split.values) == split)
        keys = zip(
            np.asarray(s.item.values)[keep].tolist(),
            np.asarray(s.property.values)[keep].tolist(),
            strict=True,
        )
        return dict(zip(keys, np.asarray(s.correct.values, bool)[keep].tolist(), strict=True))

    ta, tb = table(a), table(b)
    common = sorted(set(ta) & set(tb) & (set(ta) if keys is None else keys))
    if len(common) < 2:
        raise MechintroError(
            f"{what} share {len(common)} scored {split} pairs: run both on the same tasks and items"
        )
    items = np.array([k[0] for k in common])
    diff = np.array([float(ta[k]) - float(tb[k]) for k in common])
    groups = {g: np.nonzero(items == g)[0] for g in np.unique(items)}
    per_item = np.array([diff[ix].sum() for ix in groups.values()])
    sizes = np.array([ix.size for ix in groups.values()])
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(per_item), (n_boot, len(per_item)))
    boot = per_item[picks].sum(1) / sizes[picks].sum(1)
    # the sign flips: every one of the 2^n when that is at most N_FLIPS, else N_FLIPS drawn (plus
    # the identity), so a p-value printed to 4 digits rests on steps of at most 1/N_FLIPS
    m = len(per_item)
    if 2**m <= N_FLIPS:
        signs = 1 - 2 * ((np.arange(2**m)[:, None] >> np.arange(m)[None, :]) & 1).astype(float)
    else:
        signs = np.concatenate(
            [np.ones((1, m)), np.random.default_rng(seed + 1).choice([-1.0, 1.0], (N_FLIPS, m))]
        )
    null = np.abs(signs @ per_item)
    observed = abs(per_item.sum())
    return {
        "a": float(np.mean([ta[k] for k in common])),
        "b": float(np.mean([tb[k] for k in common])),
        "difference": float(diff.mean()),
        "lo": float(np.percentile(boot, 2.5)),
        "hi": float(np.percentile(boot, 97.5)),
        "p": float((null >= observed - 1e-12).sum() / len(signs)),
        "p_resolution": 1 / len(signs),
        "n_pairs": len(common),
        "n_items": len(per_item),
    }


def binned_mad(points: Sequence[tuple[float, float]], bins: int = 10) -> float:
    """The authors' calibration statistic (``side_experiments/19_sep_calibration_main_fig.py``:
    ``pandas_equal_frequency_binning`` then ``mean_absolute_error`` ×100): the points
    ``(P_object(v), P_predicted(v))`` pooled over prompts, cut into ``bins`` equal-frequency bins
    of ``P_object`` (``pandas.qcut``, duplicate edges dropped), and the mean over bins of
    ``|mean P_object − mean P_predicted|``, in percentage points. Averaging inside a bin lets
    deviations of opposite sign cancel (with equal-sized bins it is at most the mean per-point
    deviation). Bins left empty, which only very few points can give (their code would stop on
    the NaN there), are skipped."""
    import pandas as pd

    df = pd.DataFrame(list(points), columns=["x", "y"], dtype=float)
    if df.empty:
        return math.nan
    if df["x"].nunique() < 2:  # qcut cannot cut a single value: one bin
        return float(100 * abs(df["x"].mean() - df["y"].mean()))
    df["bin"] = pd.qcut(df["x"], q=bins, duplicates="drop")
    means = df.groupby("bin", observed=False)[["x", "y"]].mean()
    return float(100 * np.nanmean(np.abs(means["x"] - means["y"])))


def _linear_quantiles(ordered: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """``np.quantile(x, qs, method="linear")`` of the sorted ``ordered``, bit for bit, without its
    per-call overhead (numpy's ``_quantile``: virtual index (n - 1)·q, neighbours clipped to the
    last value, and ``_lerp``'s two-sided interpolation)."""
    n = ordered.size
    virtual = (n - 1) * qs
    below = np.floor(virtual)
    above = below + 1
    last = virtual >= n - 1
    below[last] = -1
    above[last] = -1
    lo, hi = below.astype(np.intp), above.astype(np.intp)
    gamma = virtual - lo
    a, b = ordered[lo], ordered[hi]
    diff = b - a
    out = a + diff * gamma
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5)
    return out


def _binned_mad_resamples(
    points: Sequence[Sequence[tuple[float, float]]],
    groups: Sequence[np.ndarray],
    picks: Sequence[np.ndarray],
    bins: int = 10,
) -> list[float]:
    """:func:`binned_mad` of each resample ``picks[r]`` (cluster indices into ``groups``, each a
    list of indices into ``points``), bit for bit, without a DataFrame, a ``qcut`` and a
    ``groupby`` per resample: the same equal-frequency edges (``pandas.qcut``'s quantiles,
    ``np.quantile`` on the resample), the same bins (``searchsorted``, lowest edge included), and
    the bin means of every resample from one ``groupby().mean()`` per summation pandas picks:
    ``reduceat`` where a resample's bin codes are already sorted, its cython kernel where they are
    not (rows in the same order, so the same sums)."""
    import pandas as pd

    def flat(ks, axis):
        return np.array([p[axis] for k in ks for p in points[k]], dtype=float)

    gx, gy = [flat(g, 0) for g in groups], [flat(g, 1) for g in groups]
    qs = np.linspace(0, 1, bins + 1)  # pandas.qcut's quantiles
    np.putmask(qs, bins * qs != np.arange(bins + 1), np.nextafter(qs, 1))
    out: list[float] = [math.nan] * len(picks)
    batches: dict[bool, tuple[list, list, list]] = {True: ([], [], []), False: ([], [], [])}
    sizes: dict[int, int] = {}
    for r, pick in enumerate(picks):
        x = np.concatenate([gx[g] for g in pick])
        y = np.concatenate([gy[g] for g in pick])
        if x.size == 0 or np.unique(x).size < 2:  # binned_mad's special cases
            out[r] = binned_mad(list(zip(x.tolist(), y.tolist(), strict=True)), bins)
            continue
        edges = pd.unique(_linear_quantiles(np.sort(x), qs))
        ids = np.searchsorted(edges, x, side="left")
        ids[x == edges[0]] = 1
        ok = (ids > 0) & (ids < len(edges))
        codes = ids[ok] - 1
        sizes[r] = len(edges) - 1
        keys, xs, ys = batches[bool((np.diff(codes) >= 0).all())]
        keys.append(r * bins + codes)
        xs.append(x[ok])
        ys.append(y[ok])
    per_bin = {r: np.full(n, np.nan) for r, n in sizes.items()}
    for keys, xs, ys in batches.values():
        if not keys:
            continue
        frame = pd.DataFrame(
            {"k": np.concatenate(keys), "x": np.concatenate(xs), "y": np.concatenate(ys)}
        )
        means = frame.groupby("k", sort=True)[["x", "y"]].mean()
        diff = means["x"].to_numpy() - means["y"].to_numpy()
        for key, d in zip(means.index.tolist(), diff.tolist(), strict=True):
            per_bin[key // bins][key % bins] = d
    for r, values in per_bin.items():
        out[r] = float(100 * np.nanmean(np.abs(values)))
    return out


def _calibration_value(response: str, prop: str, matching: str, rules: str) -> str | None:
    """An object-level sample's property for calibration. The authors' calibration script reads
    ``response.strip()[1]`` (case kept; a sample shorter than that is dropped), not the cleaned
    answer; other properties follow :func:`mechintro.looking_inward.tasks.extract`."""
    if rules == "authors" and prop.endswith("_character"):
        text = response.strip()
        n = ("first", "second", "third").index(prop.removesuffix("_character"))
        return text[n] if len(text) > n else None
    return sp.extract(response, prop, matching, rules)


def calibration(
    predictor: xr.Dataset,
    target: xr.Dataset | None = None,
    *,
    top: int = 3,
    rules: str = "authors",
    statistic: str = "binned",
    seed: int = 0,
    n_boot: int = 2000,
) -> xr.Dataset:
    """Calibration (Binder et al. 2024, calibration experiment): for each prompt and property, the
    distribution of the property over ``target``'s sampled object-level answers against the
    distribution of ``predictor``'s sampled predictions (both runs with ``samples`` > 1 at
    temperature 1).

    For each prompt, the ``top`` most frequent values ``v`` of the object-level answers (fewer if
    they take fewer; ties in order of first appearance) give points ``(P_object(v),
    P_predicted(v))``. ``statistic="binned"`` (the default, the authors'): :func:`binned_mad` of
    all the points pooled. ``statistic="per_prompt"`` (mechintro's earlier figure): per prompt,
    the mean of ``|P_object(v) − P_predicted(v)|`` over its values, then the mean over prompts
    (no cancelling, so usually above the binned figure).

    ``rules="authors"`` (their calibration script): an object sample's value is ``strip()[n]``
    of the answer, case kept (samples too short are dropped), the first value is the lower-cased
    mode, and a prediction is the whole answer, stripped and lower-cased. ``rules="lenient"``:
    :func:`mechintro.looking_inward.tasks.extract` / ``parse_prediction`` with those rules.
    Non-compliant predictions keep their mass but match no value.

    Rows (``pair``): ``task``, ``property``, ``item``, ``mad`` (the prompt's per-prompt figure),
    ``no_match`` (the same for predictions that never take those values), ``n_object``,
    ``n_predicted``; attrs ``mad``, ``lo``, ``hi`` (95% bootstrap over prompts) and ``no_match``
    of the chosen ``statistic``, ``binned_mad``, ``per_prompt_mad``, ``n`` (prompts),
    ``points``.
    """
    from collections import Counter

    sp._check_rules(rules)
    if statistic not in ("binned", "per_prompt"):
        raise MechintroError(
            f"unknown calibration statistic '{statistic}': choose binned or per_prompt"
        )
    target = predictor if target is None else target
    sp.require_run(predictor, "predictor", one_answer=False)
    sp.require_run(target, "target", one_answer=False)
    behaviour: dict[tuple[str, str], list[tuple[str, str]]] = {}
    t_task, t_prompt, t_response, t_matching = (
        target[k].values for k in ("task", "item_prompt", "response", "matching")
    )
    for i in np.nonzero(_labels(target, "condition") == "object")[0]:
        key = (str(t_task[i]), str(t_prompt[i]))
        behaviour.setdefault(key, []).append((str(t_response[i]), str(t_matching[i])))
    predicted: dict[tuple[str, str, str], list[str | None]] = {}
    items: dict[tuple[str, str], str] = {}
    columns = {k: predictor[k].values for k in ("task", "item_prompt", "property", "response")}
    p_item = predictor["item"].values
    for i in np.nonzero(_labels(predictor, "condition") == "hypothetical")[0]:
        task, prompt, prop = (str(columns[k][i]) for k in ("task", "item_prompt", "property"))
        answer = str(columns["response"][i])
        predicted.setdefault((task, prompt, prop), []).append(
            answer.strip().lower()
            if rules == "authors"
            else sp.parse_prediction(answer, prop, rules)
        )
        items[(task, prompt)] = f"{task}:{int(p_item[i])}"
    rows = _columns("task", "property", "item", "mad", "no_match", "n_object", "n_predicted")
    points: list[list[tuple[float, float]]] = []
    for (task, prompt, prop), guesses in predicted.items():
        answers = behaviour.get((task, prompt))
        if answers is None:
            continue
        actual = [
            v for v in (_calibration_value(r, prop, m, rules) for r, m in answers) if v is not None
        ]
        if not actual:
            continue
        p_obj = {v: c / len(actual) for v, c in Counter(actual).items()}  # first-appearance order
        p_hyp = {v: c / len(guesses) for v, c in Counter(guesses).items()}  # None matches nothing
        values = sorted(p_obj, key=lambda v: -p_obj[v])[:top]
        heads = list(values)
        if rules == "authors":  # the top value is looked up as the lower-cased mode
            heads[0] = Counter(v.lower() for v in actual).most_common(1)[0][0]
        pts = [(p_obj[v], p_hyp.get(h, 0.0)) for v, h in zip(values, heads, strict=True)]
        points.append(pts)
        rows["task"].append(task)
        rows["property"].append(prop)
        rows["item"].append(items[(task, prompt)])
        rows["mad"].append(100 * sum(abs(x - y) for x, y in pts) / len(pts))
        rows["no_match"].append(100 * sum(x for x, _ in pts) / len(pts))
        rows["n_object"].append(len(actual))
        rows["n_predicted"].append(len(guesses))
    if not rows["task"]:
        raise MechintroError(
            "the predictor and target runs share no prompt with a compliant object-level answer: "
            "run both with the same tasks, items and seed"
        )
    pooled_points = [p for pts in points for p in pts]
    binned = binned_mad(pooled_points)
    per_prompt = float(np.mean(rows["mad"]))
    if statistic == "binned":
        rng = np.random.default_rng(seed)
        clusters = np.array(rows["item"])
        groups = [np.nonzero(clusters == c)[0] for c in np.unique(clusters)]
        picks = [rng.integers(0, len(groups), len(groups)) for _ in range(n_boot)]
        boot = _binned_mad_resamples(points, groups, picks)
        mad, lo, hi = binned, float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))
        no_match = binned_mad([(x, 0.0) for x, _ in pooled_points])
    else:
        mad, lo, hi = bootstrap_mean_ci(
            rows["mad"], clusters=rows["item"], n_boot=n_boot, seed=seed
        )
        no_match = float(np.mean(rows["no_match"]))
    out = xr.Dataset(
        {
            k: ("pair", np.array(v, dtype=object if k in ("task", "property", "item") else None))
            for k, v in rows.items()
        }
    )
    out.attrs = {
        "mad": mad,
        "lo": lo,
        "hi": hi,
        "n": len(rows["mad"]),
        "no_match": no_match,
        "statistic": statistic,
        "rules": rules,
        "binned_mad": binned,
        "per_prompt_mad": per_prompt,
        "points": len(pooled_points),
        "predictor": predictor.attrs.get("model", "?"),
        "target": target.attrs.get("model", "?"),
        "predictor_adapter": _adapter(predictor),
        "target_adapter": _adapter(target),
    }
    return out


def probe(
    target: xr.Dataset,
    sources: Mapping[str, str | Path],
    *,
    properties: Sequence[str] | None = None,
    depths: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
    seed: int = 0,
    n_boot: int = 1000,
) -> xr.Dataset:
    """Cross-validated AUC of a linear probe for a boolean property of ``target``'s object-level
    answers, from the hypothetical-prompt residuals of each run in ``sources`` (name → run path),
    on the prompts every source predicted (so own and other activations see the same pairs).

    Folds are grouped by task (a probe never sees the task it is tested on); the AUC counts only
    (true, false) pairs of held-out answers **from the same task**
    (:func:`mechintro.stats.paired_auc`): tasks differ in their base rates, and pairs across tasks
    would score how well the probe tells tasks apart, not the property. Properties present in fewer
    than two tasks, or with a single class, are skipped, and so is a property no task has both
    classes of. Returns ``auc`` with a bootstrap interval over items (``lo``, ``hi``), ``n`` by
    (source, property), ``pairs`` (the within-task pairs the AUC is over), and the majority-class
    share ``majority`` by property.
    ``depths`` are fractions of each source's depth (layer ``round(f × (n_layers − 1))``), so
    models of different depths line up.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mechintro.runs import open_run

    props = [p for p in (properties or sorted(sp.BOOLEAN))]
    names = list(sources)
    frames = {}
    for name, path in sources.items():
        ds = open_run(path)
        frames[name] = (score(ds, target), sp.load_hypothetical_resid(path))
    # the same prompts for every source: pairs (item, property) that all of them predicted
    keys = [
        set(zip(_str(sc.item.values).tolist(), _str(sc.property.values).tolist(), strict=True))
        for sc, _ in frames.values()
    ]
    common = set.intersection(*keys) if keys else set()
    if any(not 0 <= f <= 1 for f in depths):
        raise MechintroError(f"depths must be fractions between 0 and 1, got {list(depths)}")
    shape = (len(names), len(props), len(depths))
    auc, lo, hi = (np.full(shape, math.nan) for _ in range(3))
    count = np.zeros(shape[:2], dtype=int)
    pairs = np.zeros(shape[:2], dtype=int)
    majority = np.full(len(props), math.nan)
    for si, name in enumerate(names):
        scored, resid = frames[name]
        trial_pos = {int(t): k for k, t in enumerate(resid.trial.values)}
        for pi, prop in enumerate(props):
            shared = np.array(
                [
                    (i, q) in common
                    for i, q in zip(
                        _str(scored.item.values).tolist(),
                        _str(scored.property.values).tolist(),
                        strict=True,
                    )
                ],
                bool,
            )
            keep = (
                (_str(scored.property.values) == prop)
                & np.asarray(scored.object_compliant.values, bool)
                & shared
            )
            rows = np.nonzero(keep)[0]
            y = _str(scored.target.values)[rows] == "true"
            groups = _str(scored.task.values)[rows]
            items = _str(scored.item.values)[rows]
            if len(np.unique(groups)) < 2 or not any(
                y[groups == g].any() and not y[groups == g].all() for g in np.unique(groups)
            ):
                continue
            majority[pi] = max(y.mean(), 1 - y.mean())
            count[si, pi] = len(rows)
            at = [trial_pos[int(t)] for t in np.asarray(scored.trial.values)[rows]]
            folds = GroupKFold(n_splits=min(5, len(np.unique(groups))))
            weights = cluster_bootstrap_weights(items, n_boot, seed)
            pairs[si, pi] = int(
                sum((y[groups == g]).sum() * (~y[groups == g]).sum() for g in np.unique(groups))
            )
            for li, depth in enumerate(depths):
                layer = round(depth * (resid.sizes["layer"] - 1))
                x = np.asarray(resid.isel(trial=at).sel(layer=layer).values, dtype=np.float32)
                p = np.zeros(
                    len(rows)
                )  # a fold with one class in training learns nothing: all ties
                for train, test in folds.split(x, y, groups):
                    if y[train].any() and not y[train].all():
                        clf = make_pipeline(
                            StandardScaler(), LogisticRegression(C=0.05, max_iter=2000)
                        ).fit(x[train], y[train])
                        p[test] = clf.decision_function(x[test])
                auc[si, pi, li], lo[si, pi, li], hi[si, pi, li] = paired_auc(p, y, groups, weights)
    dims = ("source", "property", "depth")
    return xr.Dataset(
        {
            "auc": (dims, auc),
            "lo": (dims, lo),
            "hi": (dims, hi),
            "n": (dims[:2], count),
            "pairs": (dims[:2], pairs),
            "majority": ("property", majority),
        },
        coords={"source": names, "property": props, "depth": list(depths)},
        attrs={"target": target.attrs.get("model", "?")},
    )
