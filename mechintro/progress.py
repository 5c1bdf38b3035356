"""Progress you can see, and third-party noise you don't.

Every slow call in the Python API (loading a model, computing vectors, running trials, grading,
training, the residual-reading analyses) takes ``progress``:

- ``None`` or ``True`` (the default): a ``tqdm.auto`` bar — a widget in Jupyter (with
  ``ipywidgets``, in the ``notebook`` extra), text on stderr in a terminal — with rate and ETA;
  where stderr is not a terminal (a log file, a pipe, CI) plain lines instead (``work: 40/100
  trial, 12 s``, one per tenth done), without the carriage returns and cursor moves
  (``\r``, ``ESC[A``) a bar, or bars nested in one another, leave in a log;
- ``False``: nothing;
- a callable ``f(done, total)``: called instead of drawing a bar (the CLI passes its own).

``set_default(False)`` turns the default bars off for the whole session (``mechintro -q`` does).

:func:`quiet_third_party` silences the known deprecation warnings and loading bars that
transformers and nnsight print from inside our calls. It is used around those calls only: it
never installs a filter on the user's session.
"""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Union

Progress = Union[bool, Callable[[int, int], None], None]  # noqa: UP007 (a runtime alias)

# (category name, message regex) of the warnings third-party code raises from inside our calls;
# each one was seen in a kernel running the quick start or the analyses (issue 17).
_KNOWN_WARNINGS: tuple[tuple[str, str], ...] = (
    (
        "FutureWarning",
        r".*`past_key_values` is deprecated.*",
    ),  # transformers 5 via nnsight's forward
    ("FutureWarning", r".*LanguageModel.*"),  # nnsight: LanguageModel → TransformersModel
    (
        "DeprecationWarning",
        r".*",
    ),  # from inside transformers / nnsight internals only (module filter below)
    ("UserWarning", r".*TypedStorage is deprecated.*"),
)
_THIRD_PARTY = r"(transformers|nnsight|torch|accelerate|peft)(\..*)?"


@contextlib.contextmanager
def quiet_third_party() -> Iterator[None]:
    """Inside the block, the known third-party deprecation warnings are not shown and
    transformers draws no loading bars; both are restored on exit."""
    with warnings.catch_warnings():
        for category, message in _KNOWN_WARNINGS:
            cls = {
                "FutureWarning": FutureWarning,
                "DeprecationWarning": DeprecationWarning,
                "UserWarning": UserWarning,
            }[category]
            if category == "DeprecationWarning":
                warnings.filterwarnings("ignore", category=cls, module=_THIRD_PARTY)
            else:
                warnings.filterwarnings("ignore", message=message, category=cls)
        # tqdm.auto in a kernel without ipywidgets: warns once at import, then draws text bars
        warnings.filterwarnings("ignore", message=".*IProgress not found.*")
        try:
            from nnsight import NNsightDeprecationWarning

            warnings.filterwarnings("ignore", category=NNsightDeprecationWarning)
        except ImportError:
            pass
        with _no_hf_bars():
            yield


@contextlib.contextmanager
def _no_hf_bars() -> Iterator[None]:
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    was_on = hf_logging.is_progress_bar_enabled()
    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if was_on:
            hf_logging.enable_progress_bar()


_DEFAULT = {"enabled": True}


def set_default(enabled: bool) -> None:
    """Whether ``progress=None`` (every function's default) draws a bar; ``True`` at import."""
    _DEFAULT["enabled"] = bool(enabled)


def is_default_on() -> bool:
    """Whether ``progress=None`` draws a bar now (see :func:`set_default`)."""
    return _DEFAULT["enabled"]


def _off(progress: Progress) -> bool:
    return progress is False or (progress is None and not _DEFAULT["enabled"])


def _in_kernel() -> bool:
    """Whether this is a Jupyter kernel (where tqdm.auto draws widgets, whatever stderr is)."""
    if "IPython" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _to_a_log() -> bool:
    """Whether a text bar would land in a log: stderr is not a terminal, and not in Jupyter."""
    isatty = getattr(sys.stderr, "isatty", None)
    return not (callable(isatty) and isatty()) and not _in_kernel()


class Lines:
    """A ``(done, total)`` callback writing plain lines on stderr (for logs): the first call, each
    further tenth of the total, and where it stopped (at ``close``) — no carriage returns, no
    cursor moves."""

    def __init__(self, desc: str, unit: str = "it") -> None:
        self.desc, self.unit = desc, unit
        self.start = time.monotonic()
        self.tenth: tuple[int, int] | None = None  # (total, tenths done) at the last line
        self.last: tuple[int, int] | None = None  # the last (done, total) reported
        self.written: tuple[int, int] | None = None  # the last (done, total) written

    def __call__(self, done: int, total: int) -> None:
        self.last = (done, total)
        tenth = (total, 10 * done // total if total else 0)
        if self.tenth is None or tenth > self.tenth:
            self.tenth = tenth
            self._write(done, total)

    def _write(self, done: int, total: int) -> None:
        self.written = (done, total)
        elapsed = time.monotonic() - self.start
        sys.stderr.write(f"{self.desc}: {done}/{total} {self.unit}, {elapsed:.0f} s\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.last is not None and self.last != self.written:
            self._write(*self.last)


class _Bar:
    """A ``(done, total)`` callback drawing one ``tqdm.auto`` bar, opened at the first call (when
    the total is known) so no empty bar is ever drawn; plain :class:`Lines` where the bar would
    land in a log."""

    def __init__(self, desc: str, unit: str) -> None:
        self.desc, self.unit, self.bar = desc, unit, None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None and _to_a_log():
            self.bar = Lines(self.desc, self.unit)
        if isinstance(self.bar, Lines):
            self.bar(done, total)
            return
        if self.bar is None:
            with (
                warnings.catch_warnings()
            ):  # no ipywidgets in this kernel: text bars, without the warning
                warnings.filterwarnings("ignore", message=".*IProgress not found.*")
                from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total,
                initial=done,
                desc=self.desc,
                unit=self.unit,
                dynamic_ncols=True,
                leave=True,
            )
            return
        if self.bar.total != total:
            self.bar.total = total
            self.bar.refresh()
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextlib.contextmanager
def reporter(
    progress: Progress, desc: str, unit: str = "it"
) -> Iterator[Callable[[int, int], None] | None]:
    """The callback a slow function calls with ``(done, total)``: a bar for ``None``/``True``, the
    caller's own callable, or ``None`` for ``False``. The bar is closed when the block ends."""
    if _off(progress):
        yield None
    elif callable(progress):
        yield progress
    else:
        bar = _Bar(desc, unit)
        try:
            yield bar
        finally:
            bar.close()


def steps(progress: Progress, desc: str, items: list, unit: str = "it") -> Iterator:
    """Iterate ``items`` reporting progress as each one finishes."""
    with reporter(progress, desc, unit) as report:
        total = len(items)
        if report:
            report(0, total)
        for k, item in enumerate(items):
            yield item
            if report:
                report(k + 1, total)


def callback(
    progress: Progress, desc: str, unit: str = "it"
) -> tuple[Callable[[int, int], None] | None, Callable[[], None]]:
    """:func:`reporter` for code that cannot wrap its loop in a ``with`` block: the callback and
    the function that closes its bar."""
    if _off(progress):
        return None, lambda: None
    if callable(progress):
        return progress, lambda: None
    bar = _Bar(desc, unit)
    return bar, bar.close
