"""What several commands do: refuse an ``--out`` that cannot be written before any work, load
the model the model flags name, draw a progress bar, summarise a training's losses."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

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
    in (:func:`mechintro.training.apply_adapter`)."""
    from mechintro.models import load_model

    name = name or args.model
    if (Path(name) / "training.json").is_file() and (Path(name) / "adapter_config.json").is_file():
        from mechintro import training

        if args.remote:
            raise MechintroError("an adapter is merged here, not remotely: drop --remote")
        base = load(args, training.read_training(name)["base_model"])
        return training.apply_adapter(base, name)
    return load_model(
        name,
        dtype=args.dtype,
        device_map=args.device_map,
        trust_remote_code=args.trust_remote_code,
        max_memory=args.max_memory,
        offload_folder=args.offload_folder,
        remote=args.remote,
    )


def loss_line(losses: list[float]) -> str:
    return (
        f"loss {losses[0]:.3f} (first step) → {sum(losses[-5:]) / len(losses[-5:]):.3f} "
        "(mean of the last 5)"
    )


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
