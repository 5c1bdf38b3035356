"""Sizing a run before it starts: trials, forward passes, tokens, bytes on disk, memory, time.

A run that keeps every trial's residual stream grows with layers × positions × d_model: a
1,000-trial Llama-3.1-8B run with 250-token prompts holds about 65 GB of float16 residuals. So
before anything is written, :func:`estimate` (``mechintro run … --dry-run``) builds the run's
trials exactly as the run would, runs one batch into a temporary store (a *calibration pass*)
and scales what it measured — each variable's bytes on disk after compression, the batch's wall
time, the process's peak memory — to the whole run. Nothing is written at ``--out``.

A real run also checks, before it creates its store, that an upper bound of its size (its
variables uncompressed) fits in the free space where the store goes, and refuses in one line
otherwise (:func:`check_free_space`); :func:`no_space_check` turns that off for runs whose
compression the user trusts.
"""

from __future__ import annotations

import contextlib
import contextvars
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mechintro.errors import MechintroError


@dataclass(frozen=True)
class Estimate:
    """What a run will cost, from its plan and one calibration batch.

    Attributes:
        experiment: the run's ``experiment`` attribute ("" if none).
        reads: the names of the run's readouts (``next_token + resid``).
        trials: trials in the run; ``committed`` of them are already in an existing store.
        batches: forward passes (batched) the run makes; ``batch_size`` trials each.
        prompt_tokens: prompt tokens over all trials (padding excluded).
        max_new_tokens: per trial, in generation mode (0 otherwise); ``generated_tokens`` is the
            calibration batch's mean generated length × trials.
        bytes_by_variable: estimated bytes on disk per stored variable (compressed);
            ``raw_bytes`` the same uncompressed, the bound a real run checks against free space.
        calibration_trials, calibration_seconds: the batch that was run and its wall time (the
            second of two runs of it, so one-time start-up costs are not scaled up).
        setup_seconds: the time from the start of the run to its first batch (model-dependent
            set-up such as concept vectors), paid once.
        peak_memory_bytes: the process's peak resident memory during the calibration (model,
            vectors and one batch), or the device's peak allocation on CUDA.
        free_bytes: free space where the store goes.
    """

    experiment: str
    model: str
    reads: str
    trials: int
    committed: int
    batch_size: int
    batches: int
    prompt_tokens: int
    max_new_tokens: int
    generated_tokens: int
    bytes_by_variable: Mapping[str, int]
    raw_bytes: int
    calibration_trials: int
    calibration_seconds: float
    setup_seconds: float
    peak_memory_bytes: int
    device: str
    free_bytes: int
    out: str
    notes: tuple[str, ...] = field(default=())

    @property
    def bytes(self) -> int:
        return sum(self.bytes_by_variable.values())

    @property
    def seconds(self) -> float:
        per_trial = self.calibration_seconds / max(self.calibration_trials, 1)
        return self.setup_seconds + per_trial * (self.trials - self.committed)

    @property
    def fits(self) -> bool:
        return self.bytes <= self.free_bytes


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError


def human_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def format_estimate(e: Estimate) -> str:
    """The estimate as the CLI prints it."""
    lines = [
        f"{e.experiment or 'run'} on {e.model} (reads {e.reads}, {e.device}) → {e.out}",
        f"  trials            {e.trials}"
        + (f" ({e.committed} already committed)" if e.committed else ""),
        f"  forward passes    {e.batches} batches of up to {e.batch_size} trials",
        f"  prompt tokens     {e.prompt_tokens}",
    ]
    if e.max_new_tokens:
        lines.append(
            f"  generated tokens  about {e.generated_tokens} (at most {e.max_new_tokens} per trial)"
        )
    lines.append(
        f"  on disk           {human_bytes(e.bytes)} (uncompressed {human_bytes(e.raw_bytes)})"
    )
    width = max(len(k) for k in e.bytes_by_variable)
    for name, size in sorted(e.bytes_by_variable.items(), key=lambda kv: -kv[1]):
        if size >= 0.01 * e.bytes:
            lines.append(f"    {name:<{width}}  {human_bytes(size)}")
    lines += [
        f"  peak memory       {human_bytes(e.peak_memory_bytes)}",
        f"  time              {human_seconds(e.seconds)} (set-up {human_seconds(e.setup_seconds)}; "
        f"{e.calibration_seconds / max(e.calibration_trials, 1):.3f} s per trial, measured on "
        f"{e.calibration_trials} trials)",
        f"  free space        {human_bytes(e.free_bytes)}: "
        + ("fits" if e.fits else "DOES NOT FIT"),
    ]
    lines += [f"  note: {n}" for n in e.notes]
    return "\n".join(lines)


# --- the hooks :func:`mechintro.runner.execute` reads ---

_PLANNING: contextvars.ContextVar[float | None] = contextvars.ContextVar("planning", default=None)
_SPACE_CHECK: contextvars.ContextVar[bool] = contextvars.ContextVar("space_check", default=True)


class Planned(Exception):
    """Raised by :func:`mechintro.runner.execute` under :func:`estimate` once the calibration
    batch has run: it carries the estimate out of the experiment's ``run`` before anything is
    written at ``out``."""

    def __init__(self, estimate: Estimate) -> None:
        super().__init__("planned")
        self.estimate = estimate


def planning() -> float | None:
    """Under :func:`estimate`, the ``time.perf_counter()`` at which the run started; else None."""
    return _PLANNING.get()


def space_check() -> bool:
    return _SPACE_CHECK.get()


@contextlib.contextmanager
def no_space_check() -> Iterator[None]:
    """Runs inside this context skip the free-space refusal (``--no-space-check``)."""
    token = _SPACE_CHECK.set(False)
    try:
        yield
    finally:
        _SPACE_CHECK.reset(token)


def estimate(run: Callable[[], object]) -> Estimate:
    """Call ``run`` (an experiment's ``run(...)``, a closure) in planning mode and return the
    estimate of the first run store it would write, without writing it.

    Example::

        e = estimate(lambda: detection_logits.run(config, "runs/dl.zarr", model=model))
        text = format_estimate(e)  # what `mechintro run … --dry-run` prints
    """
    token = _PLANNING.set(time.perf_counter())
    try:
        run()
    except Planned as planned:
        return planned.estimate
    finally:
        _PLANNING.reset(token)
    raise MechintroError("this run wrote no run store, so there is nothing to estimate")


def free_space(out: str | Path) -> int:
    """Free bytes on the filesystem that will hold ``out`` (its nearest existing ancestor)."""
    path = Path(out).resolve()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def check_free_space(out: str | Path, raw_bytes: int) -> None:
    """Refuse a new store whose uncompressed size exceeds the free space where it goes."""
    if not space_check():
        return
    free = free_space(out)
    if raw_bytes > free:
        raise MechintroError(
            f"{out} would need up to {human_bytes(raw_bytes)} but {human_bytes(free)} is free "
            "there: record fewer layers or trials (see `--dry-run` for the compressed estimate), "
            "choose another --out, or pass --no-space-check"
        )
