"""Running a list of trials into a run dataset, resumably.

An experiment (see :mod:`mechintro.experiments`) turns its config into a list of :class:`Trial`
values — prompt, injection, labels — before anything runs. :func:`execute` then validates
everything, creates the store (:mod:`mechintro.runs`), and runs the trials in fixed batches,
writing and committing each. Started again on an existing store with the same config, model and
weights, it skips committed batches; since batches are fixed and each is seeded from the run seed
and its index, the finished dataset equals that of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import xarray as xr
import zarr

from mechintro import engine, planning, runs
from mechintro._fs import store_lock
from mechintro.errors import MechintroError
from mechintro.interventions import Intervention
from mechintro.interventions import identity as intervention_identity
from mechintro.models import Model
from mechintro.progress import Progress
from mechintro.progress import callback as progress_callback
from mechintro.prompts import Prompt, Window
from mechintro.provenance import provenance_attrs
from mechintro.reading import (
    Batch,
    Generate,
    NextToken,
    Outputs,
    Readout,
    Resid,
    check_reads,
)
from mechintro.reading import (
    batch_seed as batch_seed,  # re-exported: the seed of a run's batch
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, eq=False)
class Trial:
    """One trial: a prompt, and what (if anything) is injected into it.

    ``vector`` is the vector added per unit strength (``None``: nothing injected); the engine
    adds ``strength x vector`` at layers ``inject_layer .. inject_layer_end - 1`` on the tokens of
    ``window``. ``vector`` may also be ``(inject_layer_end - inject_layer, d_model)``: one vector
    per injected layer. The labels become coordinates of the run dataset. For a control trial the
    layer and strength name the cell it is the control of; ``condition`` says nothing was injected.
    ``read_window`` marks the tokens an analysis reads (stored as ``read_mask``, e.g. the written
    sentence of intentional control); ``max_new_tokens`` cuts this trial's response shorter than
    the run's (tokens after it are stored as ``-1``, as after an end of sequence). ``swap_prefix``
    > 0 hands the first tokens to the run's ``swap_model`` (Latent Introspection's model swap).
    ``patch`` writes activations at chosen prompt positions (:class:`mechintro.engine.Patch`:
    Patchscopes, Activation Oracles). ``interventions`` are any further
    :class:`~mechintro.interventions.Intervention` objects (:class:`~mechintro.engine.Add`,
    :class:`~mechintro.engine.Ablate`, :class:`~mechintro.engine.Patch` or a class of your own):
    the engine plans and applies each, and their fields join the run's identity; the stored
    ``inject_mask`` and ``injected_vector`` describe the ``vector`` field only.
    """

    prompt: Prompt
    condition: str
    concept: str = ""
    strength: float = 0.0
    inject_layer: int = -1
    inject_layer_end: int = -1
    vector: torch.Tensor | None = None
    window: Window = field(default_factory=Window.whole)
    labels: Mapping[str, str | int | float] = field(default_factory=dict)
    read_window: Window | None = None
    max_new_tokens: int | None = None
    swap_prefix: int = 0
    patch: engine.Patch | None = None
    token_strengths: tuple[float, ...] | None = None
    """Per prompt token, a multiplier of ``strength x vector`` on the window's tokens (``None``:
    1 on each): strength comparison adds a1 on one sentence and a2 on another in one pass."""
    interventions: tuple[Intervention, ...] = ()

    def injection(self) -> engine.Add | None:
        if self.vector is None:
            return None
        mask: tuple[float, ...] | tuple[bool, ...] = self.window.resolve(self.prompt)
        if self.token_strengths is not None:
            if len(self.token_strengths) != len(mask):
                raise MechintroError(
                    f"token_strengths has {len(self.token_strengths)} entries but the prompt has "
                    f"{len(mask)} tokens: give one per prompt token"
                )
            mask = tuple(
                float(w) if m else 0.0 for m, w in zip(mask, self.token_strengths, strict=True)
            )
        return engine.Add(
            vector=self.vector * self.strength,
            layers=tuple(range(self.inject_layer, self.inject_layer_end)),
            mask=mask,
            generated=self.window.generated,
        )

    def all_interventions(self, injection: engine.Add | None) -> list[Intervention]:
        """Everything this trial does to the model: its injection (``vector``, ``strength``,
        ``window``, resolved once by :meth:`injection`), its ``patch`` and its
        ``interventions``."""
        own = [injection] if injection is not None else []
        return [*own, *([self.patch] if self.patch is not None else []), *self.interventions]


@dataclass(frozen=True, kw_only=True)
class Answers:
    """Answer tokens read in logit mode: ``label`` → candidate surface forms (single tokens)."""

    forms: Mapping[str, Sequence[str]]

    def resolve(self, tokenizer: Any) -> tuple[list[str], list[str], list[int]]:
        """``(texts, labels, token_ids)`` of the forms that are single tokens of this tokenizer."""
        texts, labels, ids = [], [], []
        for label, forms in self.forms.items():
            kept = 0
            for form in forms:
                enc = tokenizer(form, add_special_tokens=False)["input_ids"]
                if len(enc) == 1 and int(enc[0]) not in ids:
                    texts.append(form)
                    labels.append(label)
                    ids.append(int(enc[0]))
                    kept += 1
            if kept == 0:
                raise MechintroError(
                    f"no form of answer '{label}' ({list(forms)}) is a single token of this "
                    "tokenizer"
                )
        return texts, labels, ids


YES_NO = Answers(forms={"yes": ("Yes", " Yes", "yes", " yes"), "no": ("No", " No", "no", " no")})


@dataclass(frozen=True)
class Shard:
    """Part ``index`` of ``count`` (1-based, "2/4") of a run: batch ``b`` belongs to shard
    ``b % count + 1``, so N processes (a Slurm array, say) split any trial grid deterministically,
    each writing its own store; :func:`mechintro.runs.merge` joins them into the run an unsharded
    process would have written (batches and their seeds do not depend on the sharding)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if (
            isinstance(self.count, bool)
            or isinstance(self.index, bool)
            or self.count < 1
            or not 1 <= self.index <= self.count
        ):
            raise MechintroError(
                f"shard {self.index}/{self.count} does not exist: give i/N with 1 <= i <= N, e.g. "
                "1/4"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            index, count = (int(x) for x in text.split("/"))
        except ValueError:
            raise MechintroError(f"shard '{text}' is not of the form i/N (e.g. 1/4)") from None
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True, kw_only=True)
class Generation:
    max_new_tokens: int = 100
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0


def _inputs_dataset(
    model: Model,
    trials: Sequence[Trial],
    injections: Sequence[engine.Injection | None],
    readouts: Sequence[Readout],
) -> xr.Dataset:
    n, width, d = len(trials), max(len(t.prompt) for t in trials), model.d_model
    ids = np.full((n, width), model.tokenizer.pad_token_id, dtype=np.int32)
    attn = np.zeros((n, width), dtype=np.int8)
    inject = np.zeros((n, width), dtype=bool)
    vectors = np.zeros((n, d), dtype=np.float32)
    read = np.zeros((n, width), dtype=bool)
    for i, t in enumerate(trials):
        k = len(t.prompt)
        ids[i, width - k :] = t.prompt.input_ids
        attn[i, width - k :] = 1
        inj = injections[i]
        if inj is not None:
            inject[i, width - k :] = inj.mask
            assert t.vector is not None  # a trial with an injection has its vector
            first = t.vector if t.vector.ndim == 1 else t.vector[0]
            vectors[i] = first.float().numpy()
        if t.read_window is not None:
            read[i, width - k :] = t.read_window.resolve(t.prompt)
    label_keys = sorted({k for t in trials for k in t.labels})
    for t in trials:
        if set(t.labels) != set(label_keys):
            raise AssertionError("every trial of a run carries the same label keys")
    coords: dict[str, object] = {
        "trial": np.arange(n),
        "pos": np.arange(width),
        "concept": ("trial", np.array([t.concept for t in trials], dtype=object)),
        "condition": ("trial", np.array([t.condition for t in trials], dtype=object)),
        "strength": ("trial", np.array([t.strength for t in trials], dtype=np.float64)),
        "inject_layer": ("trial", np.array([t.inject_layer for t in trials], dtype=np.int64)),
        "inject_layer_end": (
            "trial",
            np.array([t.inject_layer_end for t in trials], dtype=np.int64),
        ),
        "generated_injection": (
            "trial",
            np.array([t.window.generated and t.vector is not None for t in trials]),
        ),
    }
    for key in label_keys:
        values = [t.labels[key] for t in trials]
        coords[key] = (
            "trial",
            np.array(values, dtype=object if isinstance(values[0], str) else None),
        )
    for readout in readouts:
        coords |= readout.coords(model)
    data = {
        "input_ids": (("trial", "pos"), ids),
        "attention_mask": (("trial", "pos"), attn),
        "inject_mask": (("trial", "pos"), inject),
        "injected_vector": (("trial", "d_model"), vectors),
    }
    if any(t.read_window is not None for t in trials):
        data["read_mask"] = (("trial", "pos"), read)
    return xr.Dataset(data, coords=coords)


def _check_trials(model: Model, trials: Sequence[Trial]) -> list[engine.Add | None]:
    """Validate every trial before anything is written; return each trial's injection (its
    window resolved once, which also refuses a marker that is not in the prompt)."""
    if not trials:
        raise MechintroError(
            "the experiment produced no trials: give at least one concept, layer and strength"
        )
    max_len = getattr(model.hf.config, "max_position_embeddings", None)
    for t in trials:
        if not np.isfinite(t.strength):
            raise MechintroError(f"strength {t.strength} is not finite: give finite numbers")
        if max_len is not None and len(t.prompt) > max_len:
            raise MechintroError(
                f"a prompt is {len(t.prompt)} tokens, longer than {model.name}'s context of "
                f"{max_len}: shorten it"
            )
        if t.vector is not None:
            n_inject = t.inject_layer_end - t.inject_layer
            if t.vector.shape not in ((model.d_model,), (n_inject, model.d_model)):
                raise MechintroError(
                    f"vector for '{t.concept}' has size {tuple(t.vector.shape)}, but {model.name} "
                    f"has d_model {model.d_model}: compute vectors with this model"
                )
            model.check_layer(t.inject_layer)
            model.check_layer(t.inject_layer_end - 1)
    injections = [t.injection() for t in trials]
    rows = _interventions(trials, injections)
    if any(t.swap_prefix and row for t, row in zip(trials, rows, strict=True)):
        raise MechintroError(
            "a model-swap trial injects, patches or ablates nothing (its prefix is read by the "
            "swap model): split it into two runs"
        )
    engine.check(model, [t.prompt.input_ids for t in trials], rows)
    for x in {id(x): x for t in trials for x in t.interventions}.values():
        intervention_identity(x)  # refuses one that a run cannot identify
    return injections


def _check_memory(
    model: Model, trials: Sequence[Trial], batch_size: int, itemsize: int = 2
) -> None:
    """Refuse a batch whose recorded residual streams alone would not fit in half of this
    machine's memory (a typo such as ``--batch-size 1000000000000`` otherwise dies in a huge
    allocation, or swaps for hours)."""
    import os

    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    width = max(len(t.prompt) for t in trials)
    # the stored dtype's array + a float32 copy on the way
    per_trial = model.n_layers * width * model.d_model * (itemsize + 4)
    batch = min(batch_size, len(trials))
    if batch * per_trial > memory // 2:
        cap = max(1, (memory // 2) // per_trial)
        raise MechintroError(
            f"batch size {batch_size} needs about {batch * per_trial / 2**30:.0f} GiB for its "
            "residual streams, more than "
            f"half of this machine's {memory / 2**30:.0f} GiB: give --batch-size {cap} or less (or "
            "--no-record-resid)"
        )


def layer_map(specs: Sequence[str | int | float], layers: Sequence[int]) -> str:
    """The ``layer_map`` attribute: each layer as given (index or fraction) → block index;
    ``("all",)`` maps each block index to itself."""
    if tuple(map(str, specs)) == ("all",):
        return json.dumps({str(layer): int(layer) for layer in layers})
    if len(layers) != len(specs):
        raise MechintroError(
            f"layers {list(map(str, specs))} name the same layer of this model more than once "
            f"(they resolve to {list(layers)}): give each layer once"
        )
    return json.dumps({str(s): int(layer) for s, layer in zip(specs, layers, strict=True)})


def _derived_attrs(
    config: Mapping[str, object] | object,
    experiment: str | None,
    layers: Sequence[int] | None,
    vectors: xr.DataArray | None,
) -> dict[str, str]:
    """The attributes :func:`execute` derives from its ``experiment``, ``layers`` and
    ``vectors`` arguments."""
    attrs: dict[str, str] = {}
    if experiment is not None:
        attrs["experiment"] = experiment
    if layers is not None:
        specs = getattr(config, "layers", None)
        if specs is None:
            raise AssertionError("layers= needs a config with a layers field")
        attrs["layer_map"] = layer_map(specs, layers)
    if vectors is not None:
        attrs["vectors_method"] = vectors.attrs.get("method", "")
    return attrs


def execute(
    model: Model,
    trials: Sequence[Trial],
    out: str | Path,
    *,
    config: Mapping[str, object] | object,
    readouts: Sequence[Readout] | None = None,
    mode: str | None = None,
    answers: Answers | None = None,
    generation: Generation | None = None,
    batch_size: int | None = None,
    record: bool | None = None,
    seed: int | None = None,
    experiment: str | None = None,
    layers: Sequence[int] | None = None,
    vectors: xr.DataArray | None = None,
    extra_attrs: Mapping[str, str] | None = None,
    progress: Progress = None,
    swap_model: Model | None = None,
    shard: Shard | None = None,
) -> Path:
    """Run ``trials`` into the run store ``out``, resuming it if it exists.

    Args:
        config: the experiment's configuration, a dataclass (an experiment's ``Config``) or a
            JSON-serialisable mapping; stored, and compared on resume. From a dataclass,
            ``batch_size``, ``record`` and ``seed`` default to its ``batch_size``,
            ``record_resid`` and ``seed`` fields (else to 16, false and 0).
        readouts: what the run reads (:mod:`mechintro.reading`: :class:`NextToken`,
            :class:`Generate`, or a readout of one's own); the store holds their variables. A
            run that records residual streams adds :class:`Resid`; ``[]`` reads only those.
        mode: the earlier spelling of ``readouts``: ``"logits"`` is ``[NextToken(answers)]``,
            ``"generate"`` ``[Generate(generation)]``, ``"resid"`` ``[]``.
        record: store every layer's residual stream over the prompt — as the config's
            ``resid_dtype`` (default float16), at its ``resid_layers`` and ``resid_positions``
            (default all).
        experiment: the experiment's ``NAME``, stored as the ``experiment`` attribute.
        layers: the block indices that the config's ``layers`` resolved to, stored as the
            ``layer_map`` attribute (:func:`layer_map`).
        vectors: the vectors the trials inject; their ``method`` is stored as
            ``vectors_method``.
        extra_attrs: further run attributes (they override the derived ones).
        progress: a ``tqdm.auto`` bar (``None``/``True``, the default), ``False`` for none, or a
            callable called with ``(trials_done, trials_total)`` after each batch.
        swap_model: the model that fills the KV cache of trials with ``swap_prefix`` (logit mode).
        shard: run only this shard's batches (the store holds every trial's inputs; the others
            stay uncommitted until :func:`mechintro.runs.merge`).

    Returns:
        The path of the finished run.
    """
    trials = stored_vectors(out, trials)
    plan = _plan(
        model,
        trials,
        config=config,
        readouts=_spelled_readouts(readouts, mode, answers, generation),
        batch_size=batch_size,
        record=record,
        seed=seed,
        attrs=_derived_attrs(config, experiment, layers, vectors) | dict(extra_attrs or {}),
        swap_model=swap_model,
        shard=shard,
    )
    out = Path(out)
    started = planning.planning()
    if started is not None:  # `--dry-run`: one batch into a temporary store, then stop
        raise planning.Planned(_calibrate(plan, out, started))
    with store_lock(out):  # one writer per store; released on exit, however the process ends
        if not out.exists():
            planning.check_free_space(out, _raw_bytes(plan))
        done = _open_store(plan, out)
        _run_batches(plan, out, done, progress)
    return out


def _spelled_readouts(
    readouts: Sequence[Readout] | None,
    mode: str | None,
    answers: Answers | None,
    generation: Generation | None,
) -> list[Readout]:
    """``execute``'s readouts, given as such or by the earlier ``mode`` spelling."""
    if readouts is not None:
        if mode is not None or answers is not None or generation is not None:
            raise AssertionError("give readouts, or mode with its answers or generation")
        return list(readouts)
    warnings.warn(
        f"execute(mode={mode!r}) is deprecated: pass readouts=[NextToken(answers)] (logits), "
        "[Generate(generation)] (generate) or [] (resid)",
        DeprecationWarning,
        stacklevel=3,
    )
    if mode == "logits":
        if answers is None:
            raise AssertionError("logit mode needs answers")
        return [NextToken(answers)]
    if mode == "generate":
        if generation is None:
            raise AssertionError("generation mode needs generation settings")
        return [Generate(generation)]
    if mode == "resid":
        return []
    raise AssertionError(f"mode {mode!r}: give readouts (or mode logits, generate or resid)")


def _raw_bytes(plan: _Plan) -> int:
    """An upper bound of the store's size: its large variables uncompressed."""
    n, model = len(plan.trials), plan.model
    per_trial = 4 * model.d_model + 256  # the injected vector; labels, digests, flags
    if plan.record:
        stored = model.n_layers if plan.resid_layers is None else len(plan.resid_layers)
        item = runs.stored_resid_dtype(plan.resid_dtype).itemsize
        # positions before resid_from are zeros, which compress to next to nothing
        per_trial += item * stored * (plan.width - plan.resid_from) * model.d_model
    for readout in plan.readouts:
        if isinstance(readout, Resid):
            continue
        per_trial += sum(v.raw_bytes() for v in readout.stored(model).variables.values())
    return n * per_trial


def _store_sizes(path: Path) -> dict[str, int]:
    """Bytes on disk under each top-level entry of a store (its variables, the manifest)."""
    sizes: dict[str, int] = {}
    for entry in path.iterdir():
        files = [entry] if entry.is_file() else [f for f in entry.rglob("*") if f.is_file()]
        name = entry.name if entry.is_dir() else "metadata"
        sizes[name] = sizes.get(name, 0) + sum(f.stat().st_size for f in files)
    return sizes


def _peak_memory() -> tuple[int, str]:
    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return int(torch.cuda.max_memory_allocated()), "cuda"
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "cpu"


def _calibrate(plan: _Plan, out: Path, started: float) -> planning.Estimate:
    """Run the first batch into a temporary store and scale what it cost to the whole run."""
    import tempfile
    import time

    setup = time.perf_counter() - started
    n, size = len(plan.trials), plan.batch_size
    stop = min(size, n)
    prefix = _shared_prefix(plan)
    seconds = []
    with tempfile.TemporaryDirectory(prefix="mechintro-plan-") as tmp:
        path = Path(tmp) / "calibration.zarr"
        _create_store(plan, path)
        created = _store_sizes(path)
        for _ in range(2):  # the second run is timed: the first pays one-time start-up costs
            t0 = time.perf_counter()
            result, outputs = _backing_off(_read_batch, plan, 0, 0, stop, prefix)
            runs.write_batch(path, 0, outputs | _checked_outputs(plan, 0, result, outputs))
            seconds.append(time.perf_counter() - t0)
            if seconds[0] > 60:  # a slow batch is timed once: start-up is small beside it
                break
        after = _store_sizes(path)
    scale = n / stop
    sizes = {
        name: int(created.get(name, 0) + (after[name] - created.get(name, 0)) * scale)
        for name in after
    }
    generated = 0
    if "response_ids" in outputs:
        generated = int(np.rint((outputs["response_ids"][1] >= 0).sum() * scale))
    committed = 0
    if out.exists():
        with contextlib.suppress(MechintroError):
            committed = int(runs.committed_mask(out).sum())
    peak, device = _peak_memory()
    return planning.Estimate(
        experiment=plan.attrs.get("experiment", ""),
        model=plan.model.name,
        reads=" + ".join(r.name for r in plan.readouts),
        trials=n,
        committed=committed,
        batch_size=size,
        batches=-(-n // size),
        prompt_tokens=sum(len(t.prompt.input_ids) for t in plan.trials),
        max_new_tokens=next(
            (r.generation.max_new_tokens for r in plan.readouts if isinstance(r, Generate)), 0
        ),
        generated_tokens=generated,
        bytes_by_variable=sizes,
        raw_bytes=_raw_bytes(plan),
        calibration_trials=stop,
        calibration_seconds=seconds[-1],
        setup_seconds=setup,
        peak_memory_bytes=peak,
        device=device,
        free_bytes=planning.free_space(out),
        out=str(out),
    )


# The vectors a trial injects are computed from the model's own forward passes, and a float32 sum
# depends on how the work is split between threads: the same command on another thread count (or
# BLAS build) makes vectors that differ in the last bits, and the identity check would refuse to
# resume a run whose every other input is the same. Such noise is far below anything a steering
# experiment can resolve, but the trials still to run must use the very vectors the committed
# ones used, so the store's copy (``injected_vector``, written for every trial at creation and
# digested in the manifest) replaces the recomputed one.
VECTOR_NOISE = 1e-4  # the largest difference (relative to the vector's norm) taken as noise


def stored_vectors(out: str | Path, trials: Sequence[Trial]) -> list[Trial]:
    """``trials`` with each injected vector replaced by the one the existing run ``out`` stored
    for that trial, where the two differ only by floating-point noise (every trial within
    :data:`VECTOR_NOISE` of its stored vector, relative to its norm). Anything else — no store,
    another number of trials, a damaged ``injected_vector``, per-layer vectors, a real difference —
    returns ``trials`` unchanged, for the resume check to accept or refuse as before.

    Example (what :func:`execute` does before it checks a resume)::

        trials = stored_vectors("sweep.zarr", trials)
    """
    out = Path(out)
    trials = list(trials)
    injected = [i for i, t in enumerate(trials) if t.vector is not None]
    if not injected or not (out / "zarr.json").exists():
        return trials
    # the three ignores below (union-attr): `injected` holds only trials whose vector is not None
    if any(trials[i].vector.ndim != 1 for i in injected):  # type: ignore[union-attr]
        return trials  # per-layer vectors: only their first row is stored
    try:
        group = zarr.open_group(str(out), mode="r")
        stored = np.asarray(cast("zarr.Array[Any]", group["injected_vector"])[...])
    except Exception:  # not a readable run: the resume check says what is wrong with it
        return trials
    if stored.shape != (len(trials), trials[injected[0]].vector.shape[-1]):  # type: ignore[union-attr]
        return trials
    new = np.stack([trials[i].vector.detach().float().cpu().numpy() for i in injected])  # type: ignore[union-attr]
    old = stored[injected]
    if np.array_equal(new, old):  # the usual resume: nothing to substitute, nothing to digest
        return trials
    scale = np.maximum(np.linalg.norm(old, axis=1), np.finfo(np.float32).tiny)
    worst = float((np.abs(new - old).max(axis=1) / scale).max())
    manifest = runs.read_manifest(out)
    if (
        not worst <= VECTOR_NOISE
        or manifest is None
        or runs.value_digest(stored) != manifest["inputs"].get("injected_vector")
    ):
        return trials  # a real difference, or a stored copy that is not what was written
    log.info(
        "%s: the vectors computed now differ from the stored ones by floating-point noise "
        "(largest difference %.1e of a vector's norm); resuming with the stored vectors",
        out,
        worst,
    )
    for i in injected:
        t = trials[i]
        vector = torch.from_numpy(stored[i].copy()).to(t.vector)
        trials[i] = dataclasses.replace(t, vector=vector)
    return trials


@dataclass(frozen=True, eq=False)
class _Plan:
    """A run, checked and resolved before any file exists: its trials, their injections, its
    readouts (with :class:`Resid` when recording), the store's attributes and the settings of
    every batch."""

    model: Model
    trials: Sequence[Trial]
    injections: list[engine.Injection | None]
    readouts: Sequence[Readout]
    attrs: dict[str, str]
    batch_size: int
    record: bool
    seed: int
    swap_model: Model | None
    shard: Shard | None
    resid_layers: tuple[int, ...] | None = None  # stored layers when recording (None: all)
    resid_dtype: str = "float16"  # the stored residuals' dtype (config field resid_dtype)
    resid_from: int = 0  # the first stored prompt position (config field resid_positions)
    # the config class's LEGACY: what a field the stored run lacks meant when it was made
    legacy: Mapping[str, object] = dataclasses.field(default_factory=dict)

    @property
    def width(self) -> int:
        return max(len(t.prompt) for t in self.trials)


def _plan(
    model: Model,
    trials: Sequence[Trial],
    *,
    config: Mapping[str, object] | object,
    readouts: list[Readout],
    batch_size: int | None,
    record: bool | None,
    seed: int | None,
    attrs: dict[str, str],
    swap_model: Model | None,
    shard: Shard | None,
) -> _Plan:
    """Validate everything and derive the run's attributes (no file is touched)."""
    legacy = dict(getattr(type(config), "LEGACY", {}))
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    fields = cast("Mapping[str, Any]", config)  # a mapping now: a dataclass became its dict
    batch_size = int(fields.get("batch_size", 16)) if batch_size is None else batch_size
    record = bool(fields.get("record_resid", False)) if record is None else record
    seed = int(fields.get("seed", 0)) if seed is None else seed
    if batch_size < 1:
        raise MechintroError(f"batch size must be at least 1, got {batch_size}")
    if not readouts and not record:
        raise MechintroError("a run that reads only residual streams must record them")
    injections = _check_trials(model, trials)
    resid_layers = _resid_layers(fields.get("resid_layers"), model.n_layers) if record else None
    resid_dtype = str(fields.get("resid_dtype", "float16"))
    runs.stored_resid_dtype(resid_dtype)  # a bad value (a mapping config) is one line
    resid_from = _resid_from(fields.get("resid_positions"), trials, injections) if record else 0
    if record:
        _check_memory(model, trials, batch_size, runs.stored_resid_dtype(resid_dtype).itemsize)
    swapping = any(t.swap_prefix for t in trials)
    if swapping and (swap_model is None or [type(r) for r in readouts] != [NextToken] or record):
        raise MechintroError(
            "model-swap trials need a swap model, logit mode and no residual recording"
        )
    if record:
        readouts = [*readouts, Resid(resid_dtype, resid_layers, resid_from)]
    check_reads(readouts, Batch(model, trials, 0, 0, 1, batch_size, seed))
    attrs = {
        "model": model.name,
        "weights_sha256": model.weights_sha256,
        "n_layers": str(model.n_layers),
        "d_model": str(model.d_model),
        "config": json.dumps(dict(fields), sort_keys=True, default=str),
        "seed": str(seed),
        "record_resid": str(record).lower(),
        **provenance_attrs(),
        **attrs,
    }
    if swapping:
        assert swap_model is not None
        attrs.update(
            {"swap_model": swap_model.name, "swap_weights_sha256": swap_model.weights_sha256}
        )
    if shard is not None:
        attrs["shard"] = str(shard)
    attrs["identity"] = json.dumps(run_identity(model, trials), sort_keys=True)
    return _Plan(
        model=model,
        trials=trials,
        injections=injections,
        readouts=readouts,
        attrs=attrs,
        batch_size=batch_size,
        record=record,
        seed=seed,
        swap_model=swap_model if swapping else None,
        shard=shard,
        resid_layers=resid_layers,
        resid_dtype=resid_dtype,
        resid_from=resid_from,
        legacy=legacy,
    )


def _resid_from(
    specs: object, trials: Sequence[Trial], injections: Sequence[engine.Add | None]
) -> int:
    """The first prompt position (of the run's left-padded width) whose residual stream is
    stored, from the config's ``resid_positions``: ``last:N`` keeps the last N prompt tokens,
    ``window`` every position from the first one any trial injects into or reads (a control
    trial's window is its injected twin's); a list keeps their union. Prompts are left-padded,
    so every one of these is a tail of the positions, the same for every trial."""
    from mechintro.config import check_resid_positions

    items = check_resid_positions(ALL_LAYERS if specs is None else specs)
    width = max(len(t.prompt) for t in trials)
    starts = []
    for item in items:
        if item == "all":
            return 0
        if item.startswith("last:"):
            starts.append(max(0, width - int(item[5:])))
            continue
        firsts = []
        for t, inj in zip(trials, injections, strict=True):
            masks = [inj.mask] if inj is not None else []
            if t.read_window is not None:
                masks.append(t.read_window.resolve(t.prompt))
            for mask in masks:
                row = np.asarray(mask, dtype=bool)
                if row.any():
                    firsts.append(width - len(t.prompt) + int(np.argmax(row)))
        if not firsts:
            raise MechintroError(
                "resid_positions window: no trial of this run injects into or reads a prompt "
                "token, so there is no window: give last:N or all"
            )
        starts.append(min(firsts))
    return min(starts)


# Layers stored when no config says otherwise (and by every run made before the option existed).
ALL_LAYERS = ("all",)


def _resid_layers(specs: Sequence[object] | None, n_layers: int) -> tuple[int, ...] | None:
    """The block indices a recording run stores (``None``: every layer), from the config's
    ``resid_layers`` (indices or fractions of depth, or ``all``)."""
    from mechintro.vectors import resolve_layers

    if specs is None or tuple(map(str, specs)) == ALL_LAYERS:
        return None
    specs = tuple(map(str, specs))
    layers = resolve_layers(specs, n_layers)
    if len(set(layers)) != len(specs):
        raise MechintroError(
            f"resid_layers {list(specs)} name the same layer more than once (they resolve to "
            f"{layers}): give each layer once"
        )
    return tuple(sorted(layers))


def _create_store(plan: _Plan, path: Path) -> None:
    runs.create_run(
        path,
        inputs=_inputs_dataset(plan.model, plan.trials, plan.injections, plan.readouts),
        attrs=plan.attrs,
        batch_size=plan.batch_size,
        readouts=[r.stored(plan.model) for r in plan.readouts],
        record=plan.record,
        n_layers=plan.model.n_layers,
        resid_layers=plan.resid_layers,
        resid_dtype=plan.resid_dtype,
        resid_from=plan.resid_from,
    )


def _open_store(plan: _Plan, out: Path) -> np.ndarray:
    """Create the store, or check that an existing one was made by the same run (and restore
    its inputs); return which trials are committed."""
    if out.exists():
        runs.check_metadata(out)  # never write with edited metadata (a scale_factor added)
        stored = _check_resume(out, plan, plan.legacy)
        if "identity" in stored:  # same identity: the trials this command builds are the stored
            runs.restore_inputs(out, functools.partial(_create_store, plan))
    else:
        _create_store(plan, out)
    done = runs.committed_mask(out)
    if len(done) != len(plan.trials):
        raise MechintroError(
            f"{out} holds {len(done)} trials but this run has {len(plan.trials)}: use another --out"
        )
    return done


# Write each batch on a background thread while the next batch's forward pass runs. At most one
# batch is in flight (back-pressure: the next write waits for it), and the commit protocol is
# unchanged — the batch's data, then its commit flag — so a kill loses at most the batch being
# written and never shows it half-committed. Off: every write happens before the next forward.
BACKGROUND_WRITES = True


class _Writer:
    """Writes batches into ``out`` one at a time, on one worker thread (or inline)."""

    def __init__(self, out: Path, background: bool) -> None:
        import concurrent.futures

        self.out = out
        self.pool = concurrent.futures.ThreadPoolExecutor(1) if background else None
        self.pending: concurrent.futures.Future[None] | None = None
        self.pending_trials = 0
        self.written = 0

    def submit(self, start: int, outputs: Outputs, n_new: int) -> None:
        self.wait()
        if self.pool is None:
            runs.write_batch(self.out, start, outputs)
            self.written += n_new
            return
        self.pending = self.pool.submit(runs.write_batch, self.out, start, outputs)
        self.pending_trials = n_new

    def wait(self) -> None:
        """Wait for the batch in flight; its error, if any, is raised here."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()
            self.written += self.pending_trials

    def close(self) -> None:
        """Let the batch in flight finish (the store lock is released only after it), without
        raising: the caller is already leaving, normally or with an error of its own."""
        if self.pool is not None:
            self.pool.shutdown(wait=True)


def _run_batches(plan: _Plan, out: Path, done: np.ndarray, progress: Progress) -> None:
    """Run every uncommitted batch of this process's shard, writing and committing each."""
    trials, size = plan.trials, plan.batch_size
    prefix = _shared_prefix(plan)
    n_batches = -(-len(trials) // size)
    mine = (
        list(range(n_batches))
        if plan.shard is None
        else runs.shard_batches(len(trials), size, plan.shard.index, plan.shard.count)
    )
    total = sum(min(size, len(trials) - b * size) for b in mine)
    n_done = sum(int(done[b * size : (b + 1) * size].sum()) for b in mine)
    report, close_bar = progress_callback(progress, Path(out).name, "trial")
    if report:
        report(n_done, total)
    writer = _Writer(out, BACKGROUND_WRITES)
    reported = 0

    def written() -> None:  # report the trials whose batch is now committed
        nonlocal reported
        if report and writer.written != reported:
            reported = writer.written
            report(n_done + reported, total)

    try:
        for b in mine:
            start, stop = b * size, min((b + 1) * size, len(trials))
            if done[start:stop].all():
                continue
            result, outputs = _backing_off(_read_batch, plan, b, start, stop, prefix)
            outputs |= _checked_outputs(plan, b, result, outputs)
            writer.submit(start, outputs, int((~done[start:stop]).sum()))
            written()
        writer.wait()
        written()
    finally:
        writer.close()
    runs.mark_complete(out)
    close_bar()


def _shared_prefix(plan: _Plan) -> int:
    """One shared-prefix length for the whole run, so every batch takes the same path."""
    if plan.swap_model is not None or plan.model.remote:
        return 0
    rows = _interventions(plan.trials, plan.injections)
    prefix = engine.shared_prefix([t.prompt.input_ids for t in plan.trials], rows, plan.model)
    return prefix if prefix >= engine.MIN_SHARED_PREFIX else 0


BatchFn = Callable[[_Plan, int, int, int, int], tuple[engine.BatchResult, Outputs]]


def _backing_off(
    batch: BatchFn, plan: _Plan, b: int, start: int, stop: int, prefix: int
) -> tuple[engine.BatchResult, Outputs]:
    """Run trials ``start:stop`` of batch ``b``; where the device runs out of memory, run each
    half instead (recursively) and join the halves, so a batch size that fits most batches
    does not end a long run at the first long prompt. The joined result is the unsplit one's:
    each row's numbers come from its own prompt (up to the float rounding of another batch
    shape), and a sampled part draws from the whole batch's random stream at its own rows
    (:func:`_generate_batch`). A single trial that does not fit is refused in one line."""
    try:
        return batch(plan, b, start, stop, prefix)
    except torch.OutOfMemoryError as exc:
        if stop - start == 1:
            raise MechintroError(
                f"trial {start} alone does not fit in the device's memory ({_first_line(exc)}): "
                "use a smaller model, a shorter prompt, or load the model across devices "
                "(--device-map auto)"
            ) from None
        _release_cached_memory()
        middle = (start + stop) // 2
        log.warning(
            "batch %d ran out of device memory with %d trials: running it as %d + %d",
            b,
            stop - start,
            middle - start,
            stop - middle,
        )
        first = _backing_off(batch, plan, b, start, middle, prefix)
        second = _backing_off(batch, plan, b, middle, stop, prefix)
        return _join_results(first[0], second[0]), _join_outputs(first[1], second[1])


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _release_cached_memory() -> None:
    """Hand the allocator's cached blocks back before retrying a smaller batch."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _join_results(a: engine.BatchResult, b: engine.BatchResult) -> engine.BatchResult:
    """Two parts of one batch as one :class:`engine.BatchResult`; residual streams are
    left-padded (zeros, as the engine pads) to the wider part's width."""

    def cat(x: torch.Tensor | None, y: torch.Tensor | None, fill: float = 0) -> torch.Tensor | None:
        if x is None or y is None:
            assert x is None and y is None, "the parts of a batch read the same things"
            return None
        if x.dim() > 2 and x.shape[2] != y.shape[2]:  # resid: (trial, layer, pos, d_model)
            width = max(x.shape[2], y.shape[2])
            x, y = (torch.nn.functional.pad(t, (0, 0, width - t.shape[2], 0)) for t in (x, y))
        elif x.dim() == 2 and x.shape[1] != y.shape[1]:  # generated: (trial, new_token)
            width = max(x.shape[1], y.shape[1])
            x, y = (torch.nn.functional.pad(t, (0, width - t.shape[1]), value=fill) for t in (x, y))
        return torch.cat([x, y])

    return engine.BatchResult(
        answer_logprobs=cat(a.answer_logprobs, b.answer_logprobs),
        resid=cat(a.resid, b.resid),
        generated=cat(a.generated, b.generated, fill=-1),
        nonfinite=torch.cat([a.nonfinite, b.nonfinite]),
    )


def _join_outputs(a: Outputs, b: Outputs) -> Outputs:
    assert a.keys() == b.keys(), "the parts of a batch store the same variables"
    return {k: (a[k][0], np.concatenate([a[k][1], b[k][1]])) for k in a}


def _read_batch(
    plan: _Plan, b: int, start: int, stop: int, prefix: int
) -> tuple[engine.BatchResult, Outputs]:
    """Trials ``start:stop`` (batch ``b`` or part of it): one engine pass reads what every
    readout of the run asks for, and each readout fills its variables from the result."""
    chunk = plan.trials[start:stop]
    batch = Batch(plan.model, plan.trials, b, start, stop, plan.batch_size, plan.seed)
    reads = [r for readout in plan.readouts for r in readout.reads(batch)]
    injections = plan.injections[start:stop]
    if any(t.swap_prefix for t in chunk):
        assert plan.swap_model is not None
        answer_ids = next(list(r.answer_ids) for r in reads if isinstance(r, engine.NextToken))
        result = _swap_batch(plan.model, plan.swap_model, chunk, injections, answer_ids)
    else:
        prompts = [t.prompt.input_ids for t in chunk]
        rows = _interventions(chunk, injections)
        result = engine.run_batch(plan.model, prompts, rows, reads, prefix=prefix)
    outputs: Outputs = {}
    for readout in plan.readouts:
        outputs |= readout.fill(batch, result)
    return result, outputs


def _interventions(
    chunk: Sequence[Trial], injections: Sequence[engine.Add | None]
) -> list[list[Intervention]]:
    """Each trial's interventions (:meth:`Trial.all_interventions`; its injection resolved once,
    by :func:`_plan`)."""
    return [t.all_interventions(inj) for t, inj in zip(chunk, injections, strict=True)]


def _checked_outputs(plan: _Plan, b: int, result: engine.BatchResult, outputs: Outputs) -> Outputs:
    """What every batch stores besides its readouts: ``nonfinite``, true where the engine saw
    a non-finite logit or activation or a readout stored a non-finite number (warned about)."""
    nonfinite = result.nonfinite.numpy().copy()
    for name, (_, values) in outputs.items():
        if name != "resid" and values.dtype.kind == "f":
            nonfinite |= ~np.isfinite(values.reshape(len(values), -1)).all(1)
    if nonfinite.any():
        log.warning(
            "%d trial(s) in batch %d have non-finite logits or activations (flagged in "
            "`nonfinite`)",
            int(nonfinite.sum()),
            b,
        )
    return {"nonfinite": (("trial",), nonfinite)}


def _swap_batch(
    model: Model,
    swap_model: Model,
    chunk: Sequence[Trial],
    injections: Sequence[engine.Add | None],
    answer_ids: list[int],
) -> engine.BatchResult:
    """A logit-mode batch holding model-swap trials: those rows go through
    :func:`engine.swap_forward`, the others through :func:`engine.run_batch`, merged in order."""
    swap = [i for i, t in enumerate(chunk) if t.swap_prefix]
    rest = [i for i, t in enumerate(chunk) if not t.swap_prefix]
    logprobs = torch.zeros(len(chunk), len(answer_ids))
    nonfinite = torch.zeros(len(chunk), dtype=torch.bool)
    s = engine.swap_forward(
        model,
        swap_model,
        [chunk[i].prompt.input_ids for i in swap],
        [chunk[i].swap_prefix for i in swap],
        answer_ids=answer_ids,
    )
    logprobs[swap], nonfinite[swap] = s.answer_logprobs, s.nonfinite
    if rest:
        r = engine.run_batch(
            model,
            [chunk[i].prompt.input_ids for i in rest],
            _interventions([chunk[i] for i in rest], [injections[i] for i in rest]),
            [engine.NextToken(tuple(answer_ids))],
        )
        logprobs[rest], nonfinite[rest] = r.answer_logprobs, r.nonfinite
    return engine.BatchResult(
        answer_logprobs=logprobs, resid=None, generated=None, nonfinite=nonfinite
    )


def _sha(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def run_identity(model: Model, trials: Sequence[Trial]) -> dict[str, str]:
    """Everything besides the config that changes a trial's numbers, as short strings: checked
    on every resume (and every rerun of a finished store), so a run never mixes settings.

    ``vectors`` hashes the vectors' contents (not a path), ``input_ids`` every trial's token ids
    (so a changed chat template or tokenizer shows even where the config is the same),
    ``injection`` the resolved strengths, layers, token windows and labels.
    """
    import importlib.metadata

    from mechintro.provenance import mechintro_version

    try:
        device_map = getattr(model.hf, "hf_device_map", None) or str(
            next(model.hf.parameters()).device
        )
    except (StopIteration, AttributeError, TypeError):
        device_map = "unknown"
    vectors, ids, injection = [], [], []
    for t in trials:
        vectors.append(
            b"-"
            if t.vector is None
            else t.vector.detach().float().cpu().contiguous().numpy().tobytes()
        )
        if t.patch is not None:  # only patched trials' identities gain these
            vectors.append(t.patch.vectors.detach().float().cpu().contiguous().numpy().tobytes())
        ids.append(np.asarray(t.prompt.input_ids, dtype=np.int64).tobytes())
        mask = t.window.resolve(t.prompt) if t.vector is not None else None
        read = t.read_window.resolve(t.prompt) if t.read_window is not None else None
        injection.append(
            json.dumps(
                [
                    t.condition,
                    t.concept,
                    float(t.strength),
                    t.inject_layer,
                    t.inject_layer_end,
                    None if mask is None else np.asarray(mask, dtype=bool).tolist(),
                    t.window.generated,
                    None if read is None else np.asarray(read, dtype=bool).tolist(),
                    t.max_new_tokens,
                    t.swap_prefix,
                    {k: str(v) for k, v in sorted(t.labels.items())},
                ]
                + (
                    []
                    if t.patch is None
                    else [t.patch.layer, list(t.patch.positions), t.patch.mode, t.patch.coefficient]
                )
                + ([] if t.token_strengths is None else [[float(w) for w in t.token_strengths]])
                + (
                    []
                    if not t.interventions
                    else [[intervention_identity(x) for x in t.interventions]]
                )
            ).encode()
        )
    versions = {}
    for package in ("torch", "transformers"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    template = getattr(model.tokenizer, "chat_template", None) or ""
    return {
        "dtype": str(model.dtype).removeprefix("torch."),
        "device_map": json.dumps(device_map, sort_keys=True, default=str),
        "weights_sha256": model.weights_sha256,
        "chat_template_sha256": _sha(
            template.encode()
            if isinstance(template, str)
            else json.dumps(template, sort_keys=True).encode()
        )[:16],
        "input_ids_sha256": _sha(*ids)[:16],
        "vectors_sha256": _sha(*vectors)[:16],
        "injection_sha256": _sha(*injection)[:16],
        "n_trials": str(len(trials)),
        "mechintro_version": mechintro_version(),
        **{f"{k}_version": v for k, v in versions.items()},
    }


def _legacy_fields(config_legacy: Mapping[str, object]) -> dict[str, object]:
    """The values a run made before a config field existed was made with (the experiment's
    ``Config.LEGACY``, read from the config :func:`execute` is given: the runner does not look
    experiments up), so a missing field reads as the behaviour of its time, not the new
    default."""
    # base fields every experiment gained, as runs made before them behaved
    legacy: dict[str, object] = {
        "resid_layers": list(ALL_LAYERS),
        "resid_dtype": "float16",
        "resid_positions": list(ALL_LAYERS),
    }
    return legacy | dict(config_legacy)


def _check_resume(out: Path, plan: _Plan, config_legacy: Mapping[str, object]) -> dict[str, str]:
    """Refuse to resume ``out`` with anything that would change its numbers; return its
    attributes. A run made before readouts were stored compares what its mode held."""
    stored = runs.read_attrs(out)
    attrs = plan.attrs
    expected = {
        "model": attrs["model"],
        "weights_sha256": attrs["weights_sha256"],
        "record_resid": attrs["record_resid"],
        "batch_size": str(plan.batch_size),
        "swap_weights_sha256": attrs.get("swap_weights_sha256"),
        "shard": attrs.get("shard"),
    }
    diffs = [key for key, want in expected.items() if stored.get(key) != want]
    now = [r.stored(plan.model).described() for r in plan.readouts]
    if runs.stored_readouts(stored) != now:
        diffs.append("readouts")
    try:
        old = json.loads(stored["config"])
    except (json.JSONDecodeError, TypeError):
        raise MechintroError(
            f"{out} is not a valid mechintro run: the config attribute is not JSON"
        ) from None
    new = json.loads(attrs["config"])
    legacy = _legacy_fields(config_legacy)
    old = {k: v for k, v in legacy.items() if k in new} | old
    diffs += sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if "identity" in stored:
        try:
            was = json.loads(stored["identity"])
        except (json.JSONDecodeError, TypeError):
            was = {}
        now = json.loads(attrs["identity"])
        diffs += [k for k in now if was.get(k) != now[k] and k not in diffs]
    else:
        log.warning(
            "%s was made before mechintro recorded a run's identity: dtype, vectors and prompts "
            "are not checked on resume",
            out,
        )
    diffs = list(dict.fromkeys(diffs))  # batch_size is an attribute and a config field: once
    if diffs:
        raise MechintroError(
            f"{out} was made with a different setup (differs in: {', '.join(diffs)}): "
            "rerun with the original arguments to resume, or choose another --out"
        )
    return stored
