"""What every experiment shares: the base config, the :class:`Experiment` protocol, the one
:func:`run`, per-cell summaries and the config fields' help.

An experiment is a module (registered in :data:`mechintro.experiments.EXPERIMENTS`) that declares
its trials (:func:`build_trials`), what they read (:func:`readouts`) and its summary
(:func:`summarize`, :func:`format_summary`); :func:`run` does the rest (vectors, trials,
:func:`mechintro.runner.execute`), and the module's own ``run`` is :func:`bound_run`'s.
``tests/unit/test_experiments.py`` checks every registered module against :class:`Experiment`;
docs/extending.md walks through writing one.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, cast, runtime_checkable

import numpy as np
import xarray as xr

from mechintro.config import ResidDtype, check_config
from mechintro.models import DEFAULT_MODEL, Model
from mechintro.prompts import Prompt, Window
from mechintro.reading import Readout
from mechintro.runner import Shard, Trial, execute
from mechintro.vectors import StrengthUnit, concept_vectors

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True, kw_only=True)
class BaseConfig:
    """The fields every experiment has. Subclasses add theirs (a docstring under each field
    becomes its ``mechintro run NAME --fields`` help) and may redeclare a field to change its
    default. ``__post_init__`` checks every field against its annotation
    (:func:`mechintro.config.check_config`); a subclass that checks more calls ``super()``."""

    model: str = DEFAULT_MODEL
    """model name (see `mechintro models`) or a local checkpoint directory"""
    seed: int = 0
    """random seed of the trial grid and of sampling (each batch is seeded from it)"""
    batch_size: int = 16
    """trials per forward pass (fixed for a run: resuming needs the same)"""
    record_resid: bool = False
    """store every layer's residual stream over the prompt (float16)"""
    resid_layers: tuple[str, ...] = ("all",)
    """the layers whose residual stream is stored when recording: indices (15) or fractions of
    depth (0.5), or all (a 1,000-trial Llama-3.1-8B run is 39 GB with all 32)"""
    resid_dtype: ResidDtype = "float16"
    """the stored residual stream's dtype: float16, bfloat16 (the same bytes, 8x the rounding
    error) or float32 (twice the bytes); docs/performance.md measures what each moves"""
    resid_positions: tuple[str, ...] = ("all",)
    """the prompt positions whose residual stream is stored: all, last:N (the last N prompt
    tokens), window (from the first injected or read token to the end), comma-separated for
    their union; the others read as zeros and analyses refuse to read them"""

    def __post_init__(self) -> None:
        check_config(self)


@dataclass(frozen=True, kw_only=True)
class SteeredConfig(BaseConfig):
    """A :class:`BaseConfig` that scales vectors by a strength."""

    strength_unit: StrengthUnit = "raw"
    """raw multiplier of the concept vector (the paper) or multiples of the mean residual norm
    at the layer (resid_norm)"""


@dataclass(frozen=True, kw_only=True)
class LowercaseWords:
    """The field of a config whose vectors, when none are given, are Lindsey vectors computed
    here (:func:`lindsey_vectors`) from lowercased words by default: listed before the config's
    base class (``class Config(LowercaseWords, SteeredConfig)``)."""

    lowercase: bool = True
    """Lindsey vectors computed here (no --vectors): lowercase the concept and baseline words
    (the paper's appendix); False keeps them as listed (the open replications)"""

    LEGACY: ClassVar[dict[str, object]] = {"lowercase": True}
    """What a run stored before this field existed was made with (filled in on resume)."""


C = TypeVar("C", bound=BaseConfig)
C_in = TypeVar("C_in", bound=BaseConfig, contravariant=True)

Planned = list[Trial] | tuple[list[Trial], list[int]]
"""What ``build_trials`` returns: the trials, with the block indices the config's ``layers``
resolved to (stored as the run's ``layer_map``) where it has layers."""

Progress = Callable[[int, int], None] | None


class Experiment(Protocol[C]):
    """What an experiment module provides (a module satisfies this structurally).

    Example (any registered experiment)::

        from mechintro.experiments import EXPERIMENTS
        exp = EXPERIMENTS["detection-logits"]
        config = exp.Config(concepts=("Dust", "Oceans"), layers=("0.5",), strengths=(4.0,))
        out = exp.run(config, "dl.zarr", model=mi.load_model("smollm2-135m"))
        text = exp.format_summary(exp.summarize(mi.open_run(out)))  # as `mechintro run` prints it
    """

    NAME: str
    """the CLI name (``mechintro run NAME``), stored as the run's ``experiment`` attribute"""
    Config: type[C]
    """a frozen dataclass with at least :class:`BaseConfig`'s fields; its defaults are valid"""

    def build_trials(self, config: C, model: Model, vectors: xr.DataArray | None, /) -> Planned:
        """The trials of ``config`` on ``model`` injecting ``vectors`` (list of
        :class:`mechintro.runner.Trial`), built before anything runs."""

    def readouts(self, config: C, model: Model, /) -> list[Readout]:
        """What the run reads (:mod:`mechintro.reading`); ``[]``: residual streams only."""

    def run(
        self,
        config: C,
        out: str | Path,
        *,
        model: Model,
        vectors: xr.DataArray | None = None,
        progress: Progress = None,
        shard: Shard | None = None,
    ) -> Path:
        """Build the trials and run them into the store ``out`` (resuming it if present):
        :func:`bound_run`."""

    def summarize(self, ds: xr.Dataset) -> xr.Dataset:
        """The run's summary table as a dataset (its numbers are what docs/results.md shows)."""

    def format_summary(self, summary: xr.Dataset) -> str:
        """:func:`summarize`'s result as plain text (the CLI prints it)."""


@runtime_checkable
class MakesVectors(Protocol[C_in]):
    """An experiment whose vectors are not the Lindsey vectors of its ``words()`` or
    ``concepts`` (:func:`lindsey_vectors`): ``None`` where it injects nothing."""

    def make_vectors(self, config: C_in, model: Model, /) -> xr.DataArray | None:
        """The vectors a run injects when none are given."""


@runtime_checkable
class Prepares(Protocol[C]):
    """An experiment that completes its config for the model before it runs."""

    def prepare(self, config: C, model: Model, /) -> C:
        """``config`` as run on ``model`` (stored, and compared on resume)."""


@runtime_checkable
class StoresAttrs(Protocol[C_in]):
    """An experiment that stores attributes of its own (they override the derived ones)."""

    def run_attrs(self, config: C_in, layers: list[int], /) -> dict[str, str]:
        """The run's further attributes."""


@runtime_checkable
class Swaps(Protocol[C_in]):
    """An experiment some of whose trials hand their first tokens (``swap_prefix``) to a second
    model, named by the config."""

    def swap_model(self, config: C_in, /) -> Model | None:
        """The second model of ``config``, loaded (``None``: the config names none)."""


def lindsey_vectors(config: BaseConfig, model: Model) -> xr.DataArray:
    """Lindsey concept vectors (:func:`mechintro.vectors.concept_vectors`) of the config's
    ``words()`` if it has them, else its ``concepts``, lowercased as its ``lowercase`` says: the
    vectors an experiment computes unless it says otherwise (:class:`MakesVectors`).

    Example::

        vectors = lindsey_vectors(Config(concepts=("Dust",)), model)
    """
    words = getattr(config, "words", None)
    concepts = words() if callable(words) else getattr(config, "concepts", ())
    lowercase = bool(getattr(config, "lowercase", True))
    return concept_vectors(model, list(concepts), lowercase=lowercase)


def injected_trial(
    prompt: Prompt,
    condition: str,
    concept: str,
    strength: float,
    layer: int,
    vector: torch.Tensor,
    window: Window,
    *,
    end: int | None = None,
    **fields: Any,
) -> Trial:
    """A trial that adds ``strength x vector`` on ``window``'s tokens after block ``layer`` (after
    blocks ``layer .. end - 1`` where ``end`` is given); ``fields`` are further :class:`Trial`
    fields (``labels``, ``token_strengths``, ...).

    Example::

        trial = injected_trial(prompt, "injected", "Dust", 4.0, 12, v, window, labels={"k": 1})
    """
    return Trial(
        prompt=prompt,
        condition=condition,
        concept=concept,
        strength=float(strength),
        inject_layer=layer,
        inject_layer_end=layer + 1 if end is None else end,
        vector=vector,
        window=window,
        **fields,
    )


def run(
    protocol: Experiment[C],
    config: C,
    out: str | Path,
    *,
    model: Model,
    vectors: xr.DataArray | None = None,
    progress: Progress = None,
    shard: Shard | None = None,
    swap_model: Model | None = None,
) -> Path:
    """Run ``protocol``'s trials for ``config`` into ``out`` (resuming it if present): complete
    the config (:class:`Prepares`), compute the vectors when none are given
    (:class:`MakesVectors`, else :func:`lindsey_vectors`), build the trials, and hand them with
    the protocol's readouts to :func:`mechintro.runner.execute`, which stores ``NAME``, the
    ``layer_map`` of the layers ``build_trials`` resolved, the vectors' method and the
    protocol's own attributes (:class:`StoresAttrs`). ``swap_model`` fills the KV cache of the
    trials with a ``swap_prefix`` (loaded by the protocol when not given: :class:`Swaps`).

    Example::

        from mechintro.experiments import base, detection_logits
        out = base.run(detection_logits, detection_logits.Config(), "dl.zarr", model=model)
    """
    if isinstance(protocol, Prepares):
        config = protocol.prepare(config, model)
    if swap_model is None and isinstance(protocol, Swaps):
        swap_model = protocol.swap_model(config)
    if vectors is None:
        vectors = (
            protocol.make_vectors(config, model)
            if isinstance(protocol, MakesVectors)
            else lindsey_vectors(config, model)
        )
    planned = protocol.build_trials(config, model, vectors)
    trials, layers = planned if isinstance(planned, tuple) else (planned, None)
    attrs = protocol.run_attrs(config, layers or []) if isinstance(protocol, StoresAttrs) else {}
    return execute(
        model,
        trials,
        out,
        config=config,
        experiment=protocol.NAME,
        readouts=protocol.readouts(config, model),
        layers=None if "layer_map" in attrs else layers,
        vectors=vectors,
        extra_attrs=attrs or None,
        progress=progress,
        shard=shard,
        swap_model=swap_model,
    )


RunFunction = Callable[..., Path]


def bound_run(module_name: str) -> RunFunction:
    """The module ``module_name``'s ``run``: :func:`run` with that module as the protocol.

    Example (an experiment module's one line)::

        run = base.bound_run(__name__)
    """

    def run_protocol(
        config: BaseConfig,
        out: str | Path,
        *,
        model: Model,
        vectors: xr.DataArray | None = None,
        progress: Progress = None,
        shard: Shard | None = None,
        swap_model: Model | None = None,
    ) -> Path:
        protocol = cast("Experiment[BaseConfig]", sys.modules[module_name])
        return run(
            protocol, config, out, model=model, vectors=vectors, progress=progress, shard=shard,
            swap_model=swap_model,
        )  # fmt: skip

    name = module_name.rsplit(".", 1)[-1]
    run_protocol.__module__, run_protocol.__name__, run_protocol.__qualname__ = (
        module_name,
        "run",
        "run",
    )
    run_protocol.__doc__ = (
        f"Run {name}'s trials into ``out`` (resuming it if present), computing its vectors\n"
        "    when ``vectors`` is not given (``swap_model``: the second model of a protocol that\n"
        "    swaps): :func:`mechintro.experiments.base.run`.\n\n"
        "    Example::\n\n"
        f'        out = run(Config(), "{name}.zarr", model=mi.load_model("smollm2-135m"))\n'
    )
    return run_protocol


def protocol_members() -> list[str]:
    """The names :class:`Experiment` requires (attributes and functions)."""
    names = list(Experiment.__annotations__)
    names += [n for n, v in vars(Experiment).items() if not n.startswith("_") and callable(v)]
    return names


def check_experiment(module: ModuleType) -> list[str]:
    """What ``module`` lacks to satisfy :class:`Experiment`, one line per problem (empty: none).

    Checks that every member exists, that functions take the protocol's parameters (by the
    same names, keyword ones as keywords), and that ``Config`` is a dataclass with the base
    fields whose defaults construct.
    """
    problems = []
    for name in protocol_members():
        if not hasattr(module, name):
            problems.append(f"{module.__name__} has no {name}")
            continue
        want = getattr(Experiment, name, None)
        if callable(want) and name != "Config":
            problems += _signature_problems(module.__name__, name, want, getattr(module, name))
    config = getattr(module, "Config", None)
    if config is not None:
        if not dataclasses.is_dataclass(config):
            problems.append(f"{module.__name__}.Config is not a dataclass")
        else:
            fields = {f.name for f in dataclasses.fields(config)}
            base = {f.name for f in dataclasses.fields(BaseConfig)}
            if missing := sorted(base - fields):
                problems.append(f"{module.__name__}.Config lacks {', '.join(missing)}")
    if not isinstance(getattr(module, "NAME", ""), str):
        problems.append(f"{module.__name__}.NAME is not a string")
    return problems


def _signature_problems(
    where: str, name: str, want: Callable[..., object], have: object
) -> list[str]:
    if not callable(have):
        return [f"{where}.{name} is not callable"]
    params = list(inspect.signature(want).parameters.values())[1:]  # drop self
    got = inspect.signature(have).parameters
    problems = []
    positional = [p for p in got.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for i, p in enumerate(params):
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.kind == p.POSITIONAL_ONLY:
            if len(positional) <= i:
                problems.append(f"{where}.{name} takes no positional argument {i + 1} ({p.name})")
        elif p.name not in got and not any(q.kind == q.VAR_KEYWORD for q in got.values()):
            problems.append(f"{where}.{name} takes no argument {p.name}")
    return problems


def field_help(config: type) -> dict[str, str]:
    """Each field's help: ``metadata={"help": ...}``, else the docstring under the field (in the
    class or the nearest base that declares it), else ``""``.

    Example::

        >>> field_help(BaseConfig)["seed"]
        'random seed of the trial grid and of sampling (each batch is seeded from it)'
    """
    docs: dict[str, str] = {}
    for cls in reversed(config.__mro__):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    out = {}
    for f in dataclasses.fields(config):
        out[f.name] = str(f.metadata.get("help", docs.get(f.name, "")))
    return out


def cell_summary(
    ds: xr.Dataset,
    by: Sequence[str],
    metrics: Callable[[np.ndarray], Mapping[str, float]],
    *,
    where: np.ndarray | None = None,
    ints: Iterable[str] = (),
    levels: Mapping[str, Sequence[object]] | None = None,
) -> xr.Dataset:
    """One value per cell of the grid that the coordinates ``by`` span, for each metric.

    The levels of each coordinate are its sorted distinct values over the trials ``where``
    selects (all by default), unless ``levels`` gives a coordinate's levels. ``metrics`` is
    called once per cell (every combination of levels, even an empty one) with the boolean trial
    mask of that cell and returns ``{name: value}``; a name it leaves out of a cell is NaN there.
    Metrics named in ``ints`` are stored as integers (0 where missing), the rest as float64.

    Example::

        >>> yn = yes_no(ds)
        >>> cell_summary(ds, ("inject_layer", "strength"),
        ...              lambda rows: {"p_yes": yn.p_yes.values[rows].mean(),
        ...                            "n": int(rows.sum())}, ints=("n",))
        <xarray.Dataset> Dimensions: (inject_layer: 4, strength: 4) ...
    """
    keys = [np.asarray(ds[name].values) for name in by]
    selected = np.ones(ds.sizes["trial"], dtype=bool) if where is None else np.asarray(where)
    given = levels or {}
    resolved = [
        list(given[name]) if name in given else sorted(set(k[selected].tolist()))
        for name, k in zip(by, keys, strict=True)
    ]
    shape = tuple(len(level) for level in resolved)
    ints = set(ints)
    arrays: dict[str, np.ndarray] = {}
    for index in itertools.product(*(range(n) for n in shape)):
        rows = selected.copy()
        for key, level, i in zip(keys, resolved, index, strict=True):
            rows &= key == level[i]
        for name, value in metrics(rows).items():
            if name not in arrays:
                arrays[name] = (
                    np.zeros(shape, dtype=int) if name in ints else np.full(shape, np.nan)
                )
            arrays[name][index] = value
    return xr.Dataset(
        {name: (tuple(by), values) for name, values in arrays.items()},
        coords=dict(zip(by, resolved, strict=True)),
    )


def cell_rows(
    summary: xr.Dataset, row: Callable[[xr.Dataset], Mapping[str, object] | None]
) -> list[dict[str, object]]:
    """The rows of a summary table, one per (inject_layer, strength) cell in the summary's
    order: ``layer`` and ``strength`` (``:g``), then what ``row(cell)`` gives for the cell
    (``summary`` at that layer and strength; ``None`` leaves the cell out).

    Example::

        rows = cell_rows(summary, lambda cell: {"n": int(cell.n)})
        table(rows)
    """
    rows = []
    for layer in summary.inject_layer.values:
        for s in summary.strength.values:
            more = row(summary.sel(inject_layer=layer, strength=s))
            if more is not None:
                rows.append({"layer": int(layer), "strength": f"{float(s):g}", **more})
    return rows


def ran_cells(
    summary: xr.Dataset, dims: Sequence[str], **fixed: object
) -> Iterator[tuple[tuple[Any, ...], xr.Dataset]]:
    """Each cell of ``summary`` over ``dims`` that ran (its ``accuracy`` is not NaN), in the
    summary's order with the first of ``dims`` outermost, as (its values along ``dims``, the
    cell); ``fixed`` selects along other dims (``condition="concept"``).

    Example::

        accuracy = {(int(layer), float(s)): float(c.accuracy)
                    for (layer, s), c in ran_cells(summary, ("inject_layer", "strength"))}
    """
    for key in itertools.product(*(summary[d].values for d in dims)):
        cell = summary.sel({**fixed, **dict(zip(dims, key, strict=True))})
        if not np.isnan(float(cell.accuracy)):
            yield key, cell


def interval(lo: object, hi: object, spec: str = ".3f") -> str:
    """``[lo, hi]``, each formatted with ``spec``.

    Example::

        >>> interval(0.1234, 0.5, ".2f")
        '[0.12, 0.50]'
    """
    return f"[{float(cast(float, lo)):{spec}}, {float(cast(float, hi)):{spec}}]"


def estimate(value: object, lo: object, hi: object, spec: str = ".2f") -> str:
    """``value [lo, hi]``, each formatted with ``spec``.

    Example::

        >>> estimate(0.5, 0.25, 0.75)
        '0.50 [0.25, 0.75]'
    """
    return f"{float(cast(float, value)):{spec}} {interval(lo, hi, spec)}"
