"""What several commands do: refuse an ``--out`` that cannot be written before any work, load
the model the model flags name, draw a progress bar; and what the LoRA-training commands share
(their config from the flags, the training under a progress bar, a summary of the losses)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mechintro.cli import _args
from mechintro.errors import MechintroError


def check_out(path: Path | None, flag: str = "--out") -> None:
    """Refuse an output path that cannot be created — a file where a folder must be, a folder
    that may not be written — before any model loads or any vector is computed."""
    if path is None:
        return
    here = Path(os.path.abspath(path)).parent
    while not os.path.lexists(here) and here != here.parent:
        here = here.parent
    if not here.is_dir():
        raise MechintroError(
            f"{flag} {path}: {here} is a file, not a directory: choose an {flag} inside a directory"
        )
    if not os.access(here, os.W_OK | os.X_OK):
        raise MechintroError(
            f"{flag} {path}: {here} is not writable (permissions or a read-only file system): "
            f"choose an {flag} you may write to"
        )


def load(args: argparse.Namespace, name: str | None = None):
    """The model named by the command's model flags (every flag of
    :func:`mechintro.cli._args.model_args`, so none is accepted and then ignored). A mechintro
    adapter directory (one with ``training.json``) loads its base model with the adapter merged
    in (:func:`mechintro.training.load_adapted`)."""
    from mechintro.models import load_model

    name = name or args.model
    from mechintro import training

    if training.is_adapter(name):
        if args.remote:
            raise MechintroError("an adapter is merged here, not remotely: drop --remote")
        return training.load_adapted(name, lambda base: load(args, base))
    return load_model(
        name,
        dtype=args.dtype,
        device_map=args.device_map,
        trust_remote_code=args.trust_remote_code,
        max_memory=args.max_memory,
        offload_folder=args.offload_folder,
        remote=args.remote,
    )


def trained_line(what: str, out: Path, record: dict, examples: str) -> str:
    """The line a training command prints: the adapter (``what``: adapter, oracle), its
    ``examples`` described, steps, time and the loss from the first step to the last five."""
    losses = record["losses"]
    return (
        f"{what} {out}: {record['examples']} examples {examples}, {record['steps']} steps in "
        f"{record['train_seconds']} s; loss {losses[0]:.3f} (first step) → "
        f"{sum(losses[-5:]) / len(losses[-5:]):.3f} (mean of the last 5)"
    )


def training_config(args: argparse.Namespace, config: type, what: str, **flags: Any) -> Any:
    """A LoRA-training command's ``config`` (a dataclass) from ``--examples``, ``--seed``, the
    command's other ``flags`` and its ``--set`` settings; ``--remote`` is refused (``what`` runs
    here)."""
    if args.remote:
        raise MechintroError(f"{what} runs here, not remotely: drop --remote")
    given = {
        k: v
        for k, v in {"examples": args.examples, "seed": args.seed, **flags}.items()
        if v is not None
    }
    _args.apply_settings(args.settings, config, given)
    return config(**given)


def refuse_unfinished(out: Path, what: str) -> None:
    """Refuse an ``--out`` that exists but holds no finished ``what`` (a trained adapter has
    ``training.json``): it is not resumed (``OUT.partial`` is) and not overwritten."""
    if out.exists() and not (out / "training.json").exists():
        raise MechintroError(
            f"{out} exists and is not a finished {what}: choose another --out or delete it"
        )


def train(
    args: argparse.Namespace, desc: str, run: Callable[[Any, Any], Path]
) -> tuple[Path, dict]:
    """``run(model, progress)`` on the model the flags name, under a progress bar: the trained
    adapter's directory and its training record."""
    from mechintro import training

    model = load(args)
    update, close = progress_bar(desc, args.quiet)
    try:
        out = run(model, update)
    finally:
        close()
    return out, training.read_training(out)


def progress_bar(desc: str, quiet: bool):
    if quiet:
        return False, lambda: None  # False, not None: the library draws its own bar for None
    if not sys.stderr.isatty():  # a log: plain lines, no \r debris
        from mechintro.progress import Lines

        lines = Lines(desc, "trial")
        return lines, lines.close
    from tqdm import tqdm

    bar = tqdm(total=0, desc=desc, unit="trial", file=sys.stderr)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update, bar.close
