"""What the experiments share: config checking, layer maps, yes/no readouts and rate tables."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Sequence

import numpy as np
import xarray as xr

from mechintro.errors import MechintroError
from mechintro.stats import Interval, bootstrap_mean_ci, cluster_interval, newcombe, wilson_interval


def _matches(value: object, hint: object) -> bool:
    origin = typing.get_origin(hint)
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return isinstance(value, tuple | list) and all(_matches(v, item) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    raise AssertionError(f"config field type {hint} is not supported")


def _describe(hint: object) -> str:
    origin = typing.get_origin(hint)
    if hint is type(None):
        return "None"
    if origin is typing.Literal:
        return " or ".join(repr(a) for a in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if origin is tuple:
        return f"a tuple of ({_describe(typing.get_args(hint)[0])})"
    return {bool: "True or False", int: "an integer", float: "a number", str: "a string"}[hint]  # type: ignore[index]


def finite(x: float) -> bool:
    try:
        return math.isfinite(x)
    except OverflowError:  # an int too large for a float
        return False


def check_config(config: object) -> None:
    """Check a frozen experiment config: every field against its annotation, then the checks
    that fields with these names share (non-empty, no duplicates, finite, positive). Wrong values
    from the Python API get the same one-line errors as bad CLI input."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):  # type: ignore[arg-type]
        value = getattr(config, f.name)
        if not _matches(value, hints[f.name]):
            raise MechintroError(
                f"{f.name}={value!r} is invalid: it must be {_describe(hints[f.name])}"
            )
    get = lambda name: getattr(config, name, None)  # noqa: E731
    for name in ("layers", "strengths"):
        values = get(name)
        if values is not None and len(values) == 0:
            raise MechintroError(f"the {name} list is empty: give at least one")
    if get("concepts") and len({c.lower() for c in get("concepts")}) != len(get("concepts")):
        raise MechintroError("the concept list has duplicates: give each concept once")
    if get("strengths") and not all(finite(s) for s in get("strengths")):
        raise MechintroError(f"strengths must be finite numbers, got {list(get('strengths'))}")
    if get("strengths") and len(set(get("strengths"))) != len(get("strengths")):
        raise MechintroError(
            f"the strength list {list(get('strengths'))} has duplicates (by value): give each strength once"
        )
    if isinstance(get("seed"), int) and not 0 <= get("seed") < 2**63:
        raise MechintroError(
            f"seed {get('seed')} is out of range: give an integer from 0 to 2**63 - 1"
        )
    for name in ("batch_size", "trials", "controls", "max_new_tokens"):
        value = get(name)
        if value is not None and value < 1:
            raise MechintroError(f"{name} must be at least 1, got {value}")
    temperature = get("temperature")
    if temperature is not None and not (finite(temperature) and temperature >= 0):
        raise MechintroError(f"temperature must be 0 or more, got {temperature}")


def require_experiment(ds: xr.Dataset, name: str) -> None:
    """Refuse to summarise another experiment's run (its variables differ: the result would be
    a traceback or a table of NaN). Datasets without an ``experiment`` attribute pass."""
    made_by = ds.attrs.get("experiment")
    if made_by is not None and made_by != name:
        module = made_by.replace("-", "_")
        raise MechintroError(
            f"this is a {made_by} run, not {name}: summarise it with "
            f"mechintro.experiments.{module}.summarize"
        )


def layer_map(specs: Sequence[str | int | float], layers: Sequence[int]) -> str:
    """The ``layer_map`` attribute: each layer as given (index or fraction) → block index."""
    if len(layers) != len(specs):
        raise MechintroError(
            f"layers {list(map(str, specs))} name the same layer of this model more than once "
            f"(they resolve to {list(layers)}): give each layer once"
        )
    return json.dumps({str(s): int(layer) for s, layer in zip(specs, layers, strict=True)})


def yes_no(ds: xr.Dataset) -> xr.Dataset:
    """Per trial: ``p_yes``, ``p_no`` (summed over the run's answer forms), ``mass`` = p_yes +
    p_no, ``p_yes_norm`` = p_yes / mass, and ``logit_diff`` = log p_yes − log p_no."""
    p = np.exp(ds["answer_logprobs"].astype(np.float64))
    p_yes = p.where(ds.answer_label == "yes").sum("answer")
    p_no = p.where(ds.answer_label == "no").sum("answer")
    mass = p_yes + p_no
    return xr.Dataset(
        {
            "p_yes": p_yes,
            "p_no": p_no,
            "mass": mass,
            "p_yes_norm": p_yes / mass,
            "logit_diff": np.log(p_yes) - np.log(p_no),
        }
    )


def rate(
    successes: np.ndarray, clusters: np.ndarray | None = None, *, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float, int]:
    """``(rate, lo, hi, n)`` of a boolean array with a 95% interval: Wilson when trials are
    independent (``clusters`` None or one cluster), else :func:`mechintro.stats.cluster_interval`
    (a range, not a CI, below 5 clusters; *t* on clusters for 5–15; BCa above; Wilson on the
    clusters at 0 or 1). :func:`rate_interval` returns the same with its method. ``n = 0`` gives NaNs."""
    iv = rate_interval(successes, clusters, n_boot=n_boot, seed=seed)
    return iv.estimate, iv.lo, iv.hi, iv.n


def rate_interval(
    successes: np.ndarray, clusters: np.ndarray | None = None, *, n_boot: int = 2000, seed: int = 0
) -> Interval:
    """:func:`rate` as an :class:`mechintro.stats.Interval` (which says what the interval is)."""
    x = np.asarray(successes, dtype=float)
    if x.size == 0:
        return Interval(math.nan, math.nan, math.nan, "none", 0, note="no trials")
    if not np.isin(x, (0.0, 1.0)).all():
        raise AssertionError(
            "rate() takes successes (booleans); use mean_ci() for continuous values"
        )
    if clusters is None or len(set(np.asarray(clusters).tolist())) < 2:
        return wilson_interval(int(x.sum()), x.size)
    return cluster_interval(x, np.asarray(clusters), binary=True, n_boot=n_boot, seed=seed)


def mean_ci(
    values: np.ndarray, clusters: np.ndarray | None = None, *, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float, int]:
    """``(mean, lo, hi, n)`` of continuous values: a 95% percentile bootstrap when independent,
    else :func:`mechintro.stats.cluster_interval` over ``clusters`` (a range, not a CI, below 5)."""
    x = np.asarray(values, dtype=float)
    if clusters is not None and len(set(np.asarray(clusters).tolist())) < 2:
        clusters = None
    if clusters is None:
        mean, lo, hi = bootstrap_mean_ci(x, n_boot=n_boot, seed=seed)
        return mean, lo, hi, int(x.size)
    iv = cluster_interval(x, np.asarray(clusters), binary=False, n_boot=n_boot, seed=seed)
    return iv.estimate, iv.lo, iv.hi, int(x.size)


def diff_ci(
    a: np.ndarray, b: np.ndarray, *, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``a`` minus mean of ``b``: for two sets of successes (net detection = TPR − FPR)
    Newcombe's hybrid score interval (:func:`mechintro.stats.newcombe`, sensible at 0/n and n/n);
    for continuous values a 95% percentile bootstrap resampling each group."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size == 0 or b.size == 0:
        return math.nan, math.nan, math.nan
    if np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all():
        iv = newcombe(int(a.sum()), a.size, int(b.sum()), b.size)
        return iv.estimate, iv.lo, iv.hi
    rng = np.random.default_rng(seed)
    diffs = a[rng.integers(0, a.size, (n_boot, a.size))].mean(1) - b[
        rng.integers(0, b.size, (n_boot, b.size))
    ].mean(1)
    return (
        float(a.mean() - b.mean()),
        float(np.percentile(diffs, 2.5)),
        float(np.percentile(diffs, 97.5)),
    )


def table(rows: Sequence[dict[str, object]]) -> str:
    """A plain-text table of dict rows (same keys); floats to 3 decimals."""
    if not rows:
        return "(no rows)"
    keys = list(rows[0])

    def fmt(v: object) -> str:
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.3f}"
        return str(v)

    cells = [[fmt(r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.rjust(w) for k, w in zip(keys, widths, strict=True))]
    lines.append("-" * len(lines[0]))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)
