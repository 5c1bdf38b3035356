"""The ``mechintro`` command line. It owns the terminal: progress bars, tables, one-line errors.

    mechintro vectors --concepts Dust,Oceans --out vectors.zarr
    mechintro run detection-logits --layers 0.5,0.67 --strengths 1,2,4,8 --out runs/demo.zarr
    mechintro info runs/demo.zarr

Bad input exits with status 2 and one line on stderr naming the problem and the fix; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import json
import logging
import math
import os
import re
import signal
import sys
import threading
import types
import typing
import unicodedata
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from mechintro.errors import MechintroError


def _clean(item: str) -> str:
    """An item as typed, NFKC-normalised, without invisible format characters (zero-width space,
    byte-order mark) and surrounding blanks: what looks empty is empty."""
    text = unicodedata.normalize("NFKC", item)
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf").strip()


def _list(text: str) -> list[str]:
    items = [_clean(s) for s in text.split(",")]
    if not _clean(text) or any(not s for s in items):
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a comma-separated list of non-empty items"
        )
    return items


def _concepts(text: str) -> list[str]:
    items = _list(text)
    seen: dict[str, str] = {}
    for item in items:
        if item.casefold() in seen:
            raise argparse.ArgumentTypeError(
                f"the concept list has duplicates ('{seen[item.casefold()]}' and '{item}' are one "
                "word): give each concept once"
            )
        seen[item.casefold()] = item
    return items


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid int value: '{text}' (a seed is a whole number)"
        ) from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(
            f"seed {text} is out of range: give an integer from 0 to 2**63 - 1"
        )
    return value


MAX_BATCH = 1 << 20


def _batch_size(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_BATCH:
        raise argparse.ArgumentTypeError(
            f"batch size {text} is more than {MAX_BATCH} trials per forward pass, more than any "
            "machine's memory holds: "
            "give a smaller --batch-size (a run also checks the memory its batch needs)"
        )
    return value


def _texts(text: str) -> list[str]:
    """A comma-separated list, or ``@path``: a text file with one item per line."""
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise argparse.ArgumentTypeError(f"file {path} does not exist")
        items = [line for line in path.read_text("utf-8").splitlines() if line.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"file {path} has no non-empty lines")
        return items
    return _list(text)


def _shard(text: str):
    from mechintro.runner import Shard

    try:
        return Shard.parse(text)
    except MechintroError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _floats(text: str) -> list[float]:
    out = []
    for s in _list(text):
        try:
            value = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{s}' is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"strength '{s}' is not finite")
        if value in out:  # by value: 2 and 2.0, -0 and 0 are one strength
            raise argparse.ArgumentTypeError(
                f"strength '{s}' is given twice in '{text}': give each strength once"
            )
        out.append(value)
    return out


def _max_memory(text: str) -> dict:
    from mechintro.models import parse_max_memory

    try:
        return parse_max_memory(text)
    except MechintroError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' must be at least 1")
    return value


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # argparse takes "-1,2" for an option (only "-1" or "-.5" look like numbers to it), so
        # `--strengths -1,2` failed while `--strengths=-1,2` worked: anything that starts like a
        # negative number is a value (no option of mechintro's starts with a digit).
        self._negative_number_matcher = re.compile(r"^-\.?\d")

    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage otherwise)
        command = " ".join(self.prog.split()[1:])
        raise MechintroError(
            f"{message} (see `mechintro {command + ' ' if command else ''}--help`)"
        )


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="mechintro", description="Concept-injection introspection experiments on open LMs."
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def model_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--model",
            default="smollm2-135m",
            help="offline name, Hugging Face repo id (one without an org, e.g. gpt2, from the "
            "local HF cache), or local directory (default: smollm2-135m)",
        )
        sp.add_argument(
            "--dtype", default="float32", choices=["float32", "bfloat16", "float16", "auto"]
        )
        sp.add_argument("--device-map", default=None, help="passed to from_pretrained, e.g. auto")
        sp.add_argument(
            "--max-memory",
            type=_max_memory,
            default=None,
            metavar="DEV=SIZE,...",
            help="most each device may hold, e.g. 0=20GiB,cpu=8GiB; the rest is offloaded to disk "
            "(implies --device-map auto)",
        )
        sp.add_argument(
            "--offload-folder",
            type=Path,
            default=None,
            help="where weights placed on the disk live (implies --device-map auto)",
        )
        sp.add_argument(
            "--trust-remote-code", action="store_true", help="allow a Hub repo's own modelling code"
        )
        sp.add_argument(
            "--remote",
            nargs="?",
            const=True,
            default=False,
            metavar="URL",
            help="run the traces on NDIF (a Hub id as --model; NDIF_HOST/NDIF_API_KEY apply), or "
            "on the NDIF-protocol server at URL",
        )

    v = sub.add_parser(
        "vectors",
        help="compute concept vectors for every layer (Lindsey's, PCA-center or contrastive)",
    )
    model_args(v)
    v.add_argument(
        "--concepts",
        type=_concepts,
        required=True,
        help="comma-separated words, e.g. Dust,Oceans (contrastive: the vector's name)",
    )
    v.add_argument("--out", type=Path, required=True, help="output zarr store")
    v.add_argument(
        "--method",
        choices=["lindsey", "pca_center", "contrastive"],
        default="lindsey",
        help="lindsey (default): word minus baseline mean; pca_center: the Latent Introspection "
        "code's repeng recipe; "
        "contrastive: mean of --positive minus mean of --negative",
    )
    vs = v.add_mutually_exclusive_group()
    vs.add_argument(
        "--system",
        default=None,
        help="system message of the prompts (default: none for lindsey/contrastive, "
        "empty for pca_center, as the authors' code)",
    )
    vs.add_argument(
        "--template-system",
        action="store_true",
        help="send no system message, so the chat template's default applies",
    )
    v.add_argument(
        "--suffixes-file",
        type=Path,
        help="pca_center: JSON list of suffixes (default: the authors' 582 truncated outputs)",
    )
    v.add_argument(
        "--baseline-words",
        type=_list,
        help="lindsey: comma-separated baseline words (default: Lindsey's 100)",
    )
    v.add_argument(
        "--no-lowercase",
        dest="lowercase",
        action="store_false",
        help="lindsey: keep the concept and baseline words as listed (the open replications) "
        "instead of lowercasing them (the paper's appendix)",
    )
    v.add_argument(
        "--positive",
        type=_texts,
        help="contrastive: positive prompts, comma-separated or @file (one per line)",
    )
    v.add_argument(
        "--negative",
        type=_texts,
        help="contrastive: negative prompts, comma-separated or @file (one per line)",
    )
    v.add_argument(
        "--raw",
        action="store_true",
        help="contrastive: use the prompts as raw text, not chat turns",
    )

    r = sub.add_parser("run", help="run an experiment into a run dataset")
    r.add_argument("experiment", help="experiment name (e.g. detection-logits)")
    model_args(r)
    r.add_argument("--concepts", type=_concepts, help="comma-separated concept words")
    r.add_argument(
        "--vectors", type=Path, help="precomputed vectors (default: compute for --concepts)"
    )
    r.add_argument(
        "--layers", type=_list, help="indices (15) or fractions of depth (0.5), comma-separated"
    )
    r.add_argument("--strengths", type=_floats, help="comma-separated injection strengths")
    r.add_argument(
        "--strength-unit",
        choices=["raw", "resid_norm"],
        help="raw multiplier (paper) or multiples of the residual norm",
    )
    r.add_argument(
        "--trials", type=_positive_int, help="injected trials per (layer, strength) cell"
    )
    r.add_argument("--seed", type=_seed, help="random seed")
    r.add_argument("--batch-size", type=_batch_size, help="trials per forward pass")
    rec = r.add_mutually_exclusive_group()
    rec.add_argument(
        "--record-resid",
        dest="record_resid",
        action="store_true",
        default=None,
        help="store every layer's residual stream (default)",
    )
    rec.add_argument(
        "--no-record-resid",
        dest="record_resid",
        action="store_false",
        help="do not store residual streams",
    )
    r.add_argument(
        "--resid-layers",
        type=_list,
        help="with residuals recorded, store only these layers (indices or fractions of depth, "
        "comma-separated; default all)",
    )
    r.add_argument(
        "--resid-dtype",
        help="with residuals recorded, store them as float16 (default), bfloat16 or float32",
    )
    r.add_argument(
        "--resid-positions",
        type=_list,
        help="with residuals recorded, store only these prompt positions: all (default), last:N, "
        "window (from the first injected or read token), comma-separated",
    )
    r.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other config field of the experiment, e.g. --set question=mind --set controls=10 "
        "(lists comma-separated; `mechintro run EXPERIMENT --fields` lists them)",
    )
    r.add_argument(
        "--fields",
        action="store_true",
        help="list the experiment's config fields and defaults, then exit",
    )
    r.add_argument(
        "--preset",
        help="set every option to what an open replication's code does, e.g. injected-thoughts "
        "--preset uzaymacar (or safety-research); flags and --set still override; `--fields` "
        "lists the presets",
    )
    r.set_defaults(dtype=None)  # float32 unless --dtype or the preset's dtype
    r.add_argument(
        "--shard",
        type=_shard,
        help="run only shard i of N (e.g. 2/4: a Slurm array task); join with `mechintro merge`",
    )
    r.add_argument(
        "--out", type=Path, help="run store (a .zarr directory); an existing one is resumed"
    )
    r.add_argument(
        "--dry-run",
        action="store_true",
        help="print what the run will cost (trials, tokens, bytes on disk by variable, peak "
        "memory, time from one calibration batch) and write nothing at --out",
    )
    r.add_argument(
        "--no-space-check",
        action="store_true",
        help="start even if the store's uncompressed size exceeds the free space at --out",
    )

    m = sub.add_parser("merge", help="join the stores of a sharded run into one run")
    m.add_argument("shards", type=Path, nargs="+", help="the store of every shard (1/N … N/N)")
    m.add_argument("--out", type=Path, required=True, help="the merged run store")

    t = sub.add_parser(
        "train",
        help="LoRA-finetune a model to predict the behaviour in a self-prediction run (Looking "
        "Inward)",
    )
    model_args(t)
    t.add_argument(
        "--behaviour",
        type=Path,
        required=True,
        help="self-prediction run whose object-level answers are the targets",
    )
    t.add_argument(
        "--out",
        type=Path,
        required=True,
        help="adapter directory (resumes OUT.partial if a run was stopped)",
    )
    t.add_argument("--examples", type=_positive_int, help="training examples (default 300)")
    t.add_argument(
        "--seed", type=_seed, help="seed of the adapter's initialisation and the example order"
    )
    t.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any training setting (see mechintro.training.TrainConfig)",
    )

    i = sub.add_parser("info", help="describe a run: provenance, config, trial counts")
    i.add_argument("run", type=Path)

    rb = sub.add_parser(
        "runs",
        help="list every run under a folder: experiment, model, size, status "
        "(complete / resumable / damaged), headline result, date",
    )
    rb.add_argument("folder", type=Path, nargs="?", default=Path("runs"), help="default: runs")

    g = sub.add_parser("grade", help="grade a saved generation run with Lindsey's judge prompts")
    g.add_argument("run", type=Path)
    g.add_argument(
        "--judge-url",
        help="base URL of an OpenAI-compatible endpoint, e.g. https://api.openai.com/v1 (with "
        "--judge-api anthropic: default https://api.anthropic.com)",
    )
    g.add_argument(
        "--judge-api",
        choices=["openai", "anthropic"],
        default="openai",
        help="openai: chat completions (default); anthropic: Anthropic's Messages API, the "
        "judge Lindsey used",
    )
    g.add_argument(
        "--judge-model",
        help="the endpoint's model name (with --judge-url), or a model mechintro can load (local "
        "judge)",
    )
    g.add_argument(
        "--api-key-env",
        default=None,
        help="environment variable holding the API key (default OPENAI_API_KEY, or "
        "ANTHROPIC_API_KEY with --judge-api anthropic)",
    )
    g.add_argument(
        "--criteria", type=_list, default=None, help="comma-separated criteria (default: all four)"
    )

    vr = sub.add_parser(
        "verify", help="check a run: schema, counts, digests, hashes, non-finite values"
    )
    vr.add_argument("run", type=Path)
    vr.add_argument(
        "--repair",
        action="store_true",
        help="mark damaged batches uncommitted so a resume recomputes them",
    )

    o = sub.add_parser(
        "oracle",
        help="Activation Oracles: train an oracle, ask it about a run's activations, evaluate it",
    )
    osub = o.add_subparsers(dest="oracle_command", required=True, parser_class=_Parser)
    ot = osub.add_parser(
        "train", help="LoRA-train an activation oracle on data made from the project's stimuli"
    )
    model_args(ot)
    ot.add_argument(
        "--out",
        type=Path,
        required=True,
        help="oracle directory (resumes OUT.partial if a run was stopped)",
    )
    ot.add_argument("--examples", type=_positive_int, help="training examples (default 2000)")
    ot.add_argument(
        "--seed",
        type=int,
        help="seed of the data, the adapter's initialisation and the example order",
    )
    ot.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any setting of mechintro.oracle.train.OracleConfig, e.g. --set learning_rate=1e-4",
    )
    oa = osub.add_parser(
        "ask",
        help="ask an oracle (or 'untrained') a question about every trial of a run; answers are "
        "stored as a run",
    )
    oa.add_argument(
        "oracle", help="oracle directory, or 'untrained' for the base model asked the same way"
    )
    oa.add_argument("run", type=Path, help="a run with residuals (recorded with --record-resid)")
    oa.add_argument(
        "--question",
        required=True,
        help="e.g. 'Is there an injected thought here? If so, what is it about?'",
    )
    oa.add_argument("--layer", type=int, help="the run's layer to read (default: half depth)")
    oa.add_argument(
        "--positions",
        type=_list,
        help="the run's token positions, comma-separated; negatives count from the end "
        "(e.g. -3,-2,-1); default: the last token",
    )
    oa.add_argument("--model", help="the oracle's base model (default: the one it was trained on)")
    oa.add_argument(
        "--dtype", default="float32", choices=["float32", "bfloat16", "float16", "auto"]
    )
    oa.add_argument("--max-new-tokens", type=_positive_int, default=32)
    oa.add_argument(
        "--temperature",
        type=float,
        default=0.0,
        help="0: greedy (default); above 0: seeded sampling",
    )
    oa.add_argument("--seed", type=int, default=0)
    oa.add_argument("--batch-size", type=_positive_int, default=16)
    oa.add_argument(
        "--out",
        type=Path,
        required=True,
        help="answers run store (a .zarr directory); an existing one is resumed",
    )
    oe = osub.add_parser(
        "eval",
        help="held-out task-family accuracy of an oracle vs the untrained model, shuffled "
        "activations and a probe",
    )
    oe.add_argument("oracle", type=Path)
    oe.add_argument("--model", help="the oracle's base model (default: the one it was trained on)")
    oe.add_argument(
        "--n",
        type=_positive_int,
        default=100,
        help="test examples per set (as many again fit the probe)",
    )
    oe.add_argument("--seed", type=int, default=0)
    oe.add_argument("--out", type=Path, help="also write the rows as JSON here")
    oe.add_argument(
        "--items", type=Path, help="also write every test item's scores per reader as JSON here"
    )
    sa = sub.add_parser(
        "introspect",
        help="steering awareness: train a model to notice injected thoughts, evaluate it held-out",
    )
    sasub = sa.add_subparsers(dest="introspect_command", required=True, parser_class=_Parser)
    sat = sasub.add_parser(
        "train", help="LoRA-train steering awareness (Fonseca Rivera 2025's recipe, CPU-sized)"
    )
    model_args(sat)
    sat.add_argument(
        "--out",
        type=Path,
        required=True,
        help="adapter directory (resumes OUT.partial if a run was stopped)",
    )
    sat.add_argument("--examples", type=_positive_int, help="training examples (default 600)")
    sat.add_argument(
        "--concepts",
        type=_list,
        help="training concepts, comma-separated (default: theirs, less the held-out ones)",
    )
    sat.add_argument(
        "--held-out",
        type=_list,
        help="held-out concepts, comma-separated (default: Lindsey's 50 concept words)",
    )
    sat.add_argument("--epochs", type=_positive_int, help="epochs (default 2)")
    sat.add_argument(
        "--seed", type=_seed, help="seed of the data, the adapter's initialisation and the order"
    )
    sat.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any setting of mechintro.introspect.train.AwarenessConfig, e.g. --set layer=18",
    )
    sae = sasub.add_parser(
        "eval",
        help="held-out detection, identification and false positives of a trained adapter beside "
        "the untrained model, on the same trials",
    )
    sae.add_argument("adapter", type=Path)
    sae.add_argument(
        "--model", help="the adapter's base model (default: the one it was trained on)"
    )
    sae.add_argument(
        "--strengths", type=_list, help="evaluation strengths (default their 1,2,4,8,16)"
    )
    sae.add_argument("--controls", type=_positive_int, default=60, help="control trials")
    sae.add_argument(
        "--temperature", type=float, default=0.0, help="0: greedy (theirs); above 0: sampled"
    )
    sae.add_argument("--seed", type=int, default=0)
    sae.add_argument("--out", type=Path, help="write trials, summary and capability as JSON here")
    rp = sub.add_parser(
        "report",
        help="write a run's one-page HTML report: provenance, summary, figures, every trial's "
        "transcript",
    )
    rp.add_argument(
        "run",
        type=Path,
        help="a run store (the .zarr folder `mechintro run --out` wrote), or a folder holding "
        "runs: then each run's report is written into OUT_runs/ and --out is an index page "
        "linking them (experiment, model, size, status, headline result, date)",
    )
    rp.add_argument(
        "--out",
        type=Path,
        required=True,
        help="the HTML file to write (self-contained: no network needed to view it)",
    )
    return p


def _check_out(path: Path | None, flag: str = "--out") -> None:
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


def _load(args: argparse.Namespace, name: str | None = None):
    """The model named by the command's model flags (every flag of ``model_args``, so none is
    accepted and then ignored). A mechintro adapter directory (one with ``training.json``) loads
    its base model with the adapter merged in (:func:`mechintro.training.apply_adapter`)."""
    from mechintro.models import load_model

    name = name or args.model
    if (Path(name) / "training.json").is_file() and (Path(name) / "adapter_config.json").is_file():
        from mechintro import training

        if args.remote:
            raise MechintroError("an adapter is merged here, not remotely: drop --remote")
        base = _load(args, training.read_training(name)["base_model"])
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


def _losses(losses: list[float]) -> str:
    return (
        f"loss {losses[0]:.3f} (first step) → {sum(losses[-5:]) / len(losses[-5:]):.3f} "
        "(mean of the last 5)"
    )


def _progress(desc: str, quiet: bool):
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


def _cmd_vectors(args: argparse.Namespace) -> int:
    from mechintro.vectors import make_vectors, save_vectors

    if args.out.exists():
        raise MechintroError(f"{args.out} already exists: choose another --out or delete it")
    _check_out(args.out)
    inputs = _vector_inputs(args)
    model = _load(args)
    vectors = make_vectors(model, args.method, args.concepts, **inputs)
    save_vectors(vectors, args.out)
    norms = vectors.vector_norm.mean("concept")
    print(
        f"wrote {len(args.concepts)} {args.method} vectors × {model.n_layers} layers to {args.out}"
    )
    print(
        "mean ‖v‖ by layer: "
        + ", ".join(
            f"{int(layer)}:{float(n):.1f}"
            for layer, n in zip(norms.layer.values, norms.values, strict=True)
        )
    )
    return 0


def _vector_inputs(args: argparse.Namespace) -> dict:
    """``mechintro vectors --method``: the recipe's inputs from the flags, checked before the
    model loads."""
    from mechintro.experiments.latent_introspection import load_suffixes

    wrong = [
        flag
        for flag, value, method in (
            ("--suffixes-file", args.suffixes_file, "pca_center"),
            ("--baseline-words", args.baseline_words, "lindsey"),
            ("--positive", args.positive, "contrastive"),
            ("--negative", args.negative, "contrastive"),
            ("--raw", args.raw, "contrastive"),
            ("--no-lowercase", not args.lowercase, "lindsey"),
        )
        if value and args.method != method
    ]
    if wrong:
        raise MechintroError(
            f"{', '.join(wrong)} {'does' if len(wrong) == 1 else 'do'} not apply to --method "
            f"{args.method}: drop it or change the method"
        )
    if args.method == "contrastive" and not (args.positive and args.negative):
        raise MechintroError("--method contrastive needs --positive and --negative prompts")
    system = (
        None if args.template_system else ("method default" if args.system is None else args.system)
    )
    suffixes = load_suffixes(str(args.suffixes_file)) if args.suffixes_file else None
    return dict(
        system=system,
        suffixes=suffixes,
        baseline=args.baseline_words,
        positive=args.positive or (),
        negative=args.negative or (),
        chat=not args.raw,
        lowercase=args.lowercase,
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from mechintro.experiments import EXPERIMENTS
    from mechintro.runs import open_run, read_attrs
    from mechintro.vectors import load_vectors

    module = EXPERIMENTS.get(args.experiment)
    if module is None:
        raise MechintroError(
            f"unknown experiment '{args.experiment}': choose from {', '.join(sorted(EXPERIMENTS))}"
        )
    if args.fields:
        _print_fields(module)
        return 0
    if args.out is None:
        raise MechintroError(
            "the following arguments are required: --out (see `mechintro run --help`)"
        )
    _check_out(args.out)
    config = _run_config(args, module)
    if args.out.exists():
        # a foreign file fails here, before the model loads (the run repairs damaged chunks)
        read_attrs(args.out)
    _check_config_layers(config)
    if args.vectors is not None and not args.vectors.exists():
        raise MechintroError(
            f"vectors file {args.vectors} does not exist: create it with `mechintro vectors`"
        )
    model = _load(args, config.model)
    vectors = load_vectors(args.vectors, model) if args.vectors else None
    if args.dry_run:
        from mechintro import planning

        estimate = planning.estimate(
            lambda: module.run(config, args.out, model=model, vectors=vectors, progress=None)
        )
        print(planning.format_estimate(estimate))
        return 0
    update, close = _progress(args.experiment, args.quiet)
    try:
        from mechintro import planning

        checking = planning.no_space_check() if args.no_space_check else contextlib.nullcontext()
        with checking:
            out = module.run(
                config, args.out, model=model, vectors=vectors, progress=update, shard=args.shard
            )
    finally:
        close()
    ds = open_run(out)
    if args.shard is not None:
        print(
            f"{args.experiment}: shard {args.shard}, {ds.sizes['trial']} trials on {model.name} → "
            f"{out}; "
            "join the shards with `mechintro merge SHARD... --out RUN`"
        )
        return 0
    print(f"{args.experiment}: {ds.sizes['trial']} trials on {model.name} → {out}")
    print(module.format_summary(module.summarize(ds)))
    return 0


def _print_fields(module: Any) -> None:
    """`run EXPERIMENT --fields`: every config field with its default and help, then presets."""
    from mechintro.experiments.base import field_help

    helps = field_help(module.Config)
    for f in dataclasses.fields(module.Config):
        print(f"{f.name:<18} {f.default!r}")
        if helps[f.name]:
            print(f"{'':<18} {helps[f.name]}")
    for name, values in getattr(module, "PRESETS", {}).items():
        print(f"--preset {name}: " + ", ".join(f"{k}={v!r}" for k, v in values.items()))


def _run_config(args: argparse.Namespace, module: Any) -> Any:
    """The experiment's config from the command line's flags, its preset and ``--set``s (flags
    win over the preset); sets ``args.dtype`` from the preset when not given."""
    fields = {f.name for f in dataclasses.fields(module.Config)}
    overrides = {
        "model": args.model,
        "concepts": tuple(args.concepts) if args.concepts else None,
        "layers": tuple(args.layers) if args.layers else None,
        "strengths": tuple(args.strengths) if args.strengths else None,
        "strength_unit": args.strength_unit,
        "trials": args.trials,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "record_resid": args.record_resid,
        "resid_layers": tuple(args.resid_layers) if args.resid_layers else None,
        "resid_dtype": args.resid_dtype,
        "resid_positions": tuple(args.resid_positions) if args.resid_positions else None,
    }
    given = {k: v for k, v in overrides.items() if v is not None}
    if args.preset is not None:
        presets = getattr(module, "PRESETS", {})
        if args.preset not in presets:
            raise MechintroError(
                f"{args.experiment} has no preset '{args.preset}': "
                + (f"choose from {', '.join(presets)}" if presets else "it has no presets")
            )
        preset = dict(presets[args.preset])
        if args.dtype is None:
            args.dtype = str(preset.get("dtype", "float32"))
        given = {k: v for k, v in preset.items() if k != "dtype"} | given
    if args.dtype is None:
        args.dtype = "float32"
    unknown = sorted(set(given) - fields)
    if unknown:
        raise MechintroError(
            f"{args.experiment} has no option "
            f"{', '.join('--' + k.replace('_', '-') for k in unknown)}: see `mechintro run "
            f"{args.experiment} --fields`"
        )
    _apply_settings(args.settings, module.Config, given)
    return module.Config(**given)


def _check_config_layers(config: Any) -> None:
    """Where the model's depth is known, refuse layers that name one layer twice before the
    model loads."""
    from mechintro.models import OFFLINE_MODELS
    from mechintro.vectors import resolve_layers

    spec = OFFLINE_MODELS.get(config.model)
    if (
        spec is not None
        and hasattr(config, "layers")
        and tuple(map(str, config.layers)) != ("all",)
    ):
        resolved = resolve_layers(
            config.layers, spec.n_layers
        )  # depth is known: refuse bad layers before loading
        if len(resolved) != len(config.layers):
            raise MechintroError(
                f"layers {list(map(str, config.layers))} name the same layer of {spec.name} more "
                "than once "
                f"(they resolve to {resolved}): give each layer once"
            )


def _cmd_merge(args: argparse.Namespace) -> int:
    from mechintro.runs import merge, open_run

    _check_out(args.out)
    out = merge(args.shards, args.out)
    ds = open_run(out)
    print(f"merged {len(args.shards)} shards: {ds.sizes['trial']} trials → {out}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from mechintro import self_prediction, training
    from mechintro.runs import open_run

    if args.remote:
        raise MechintroError("finetuning runs here, not remotely: drop --remote")
    _check_out(args.out)
    given = {
        k: v for k, v in {"examples": args.examples, "seed": args.seed}.items() if v is not None
    }
    _apply_settings(args.settings, training.TrainConfig, given)
    config = training.TrainConfig(**given)
    if not args.behaviour.exists():
        raise MechintroError(
            f"behaviour run {args.behaviour} does not exist: create it with `mechintro run "
            "self-prediction`"
        )
    behaviour = open_run(args.behaviour)
    examples = self_prediction.training_examples(behaviour, config.examples, seed=config.seed)
    model = _load(args)
    update, close = _progress("train", args.quiet)
    try:
        out = training.finetune(
            model, examples, args.out, config, behaviour=behaviour, progress=update
        )
    finally:
        close()
    record = training.read_training(out)
    print(
        f"adapter {out}: {record['examples']} examples of {record['behaviour_model']}'s behaviour, "
        f"{record['steps']} steps "
        f"in {record['train_seconds']} s; {_losses(record['losses'])}"
    )
    return 0


def _apply_settings(settings: list[str], config: type, given: dict) -> None:
    """Add each ``--set KEY=VALUE`` to ``given``, parsed by the annotation of ``config``'s field
    (a dataclass): ``trials=3`` is an integer, tuples split on commas, a Literal's choices are
    checked, ``none`` is None where the field allows it."""
    fields = [f.name for f in dataclasses.fields(config)]  # in declaration order
    hints = typing.get_type_hints(config)
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise MechintroError(
                f"--set {item}: expected KEY=VALUE with KEY one of {', '.join(fields)}"
            )
        try:
            given[key] = _field_value(value, hints[key], key)
        except argparse.ArgumentTypeError as exc:
            raise MechintroError(f"--set {item}: {exc}") from None
        if key == "seed" and isinstance(given[key], int) and given[key] < 0:
            raise MechintroError(
                f"--set {item}: seed is out of range: give an integer from 0 to 2**63 - 1"
            )


def _field_value(text: str, hint: object, key: str) -> object:
    """A ``--set`` value parsed by its field's annotation ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.lower() == "none":
            return None
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return _field_value(text, rest[0], key)
        if str in rest:  # e.g. a layer given as an index, a fraction or "all": kept as typed
            return text
        for kind in (int, float):
            if kind in rest:
                try:
                    return kind(text)
                except ValueError:
                    pass
        raise MechintroError(f"{key}={text!r} is invalid: it must be one of {rest}")
    if origin is tuple:
        return tuple(_field_value(s, args[0], key) for s in _list(text)) if text else ()
    if origin is typing.Literal:
        if text not in args:
            choices = " or ".join(repr(a) for a in args)
            raise MechintroError(f"{key}={text!r} is invalid: it must be {choices}")
        return text
    if hint is bool:
        if text.lower() not in ("true", "false"):
            raise MechintroError(f"'{text}' is not true or false")
        return text.lower() == "true"
    if hint in (int, float):
        try:
            return hint(text)  # type: ignore[operator]
        except ValueError:
            what = "an integer" if hint is int else "a number"
            raise MechintroError(f"'{text}' is not {what}") from None
    return text


def _cmd_runs(args: argparse.Namespace) -> int:
    from mechintro.browse import list_runs

    found = list_runs(args.folder)
    print(found)
    for e in found:
        if e.status == "damaged":
            print(f"damaged: {e.path}: {e.problem}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import numpy as np

    from mechintro.runs import open_run, stored_readouts

    # Every chunk checked against its digest first: a damaged run is named, not described.
    ds = open_run(args.run, committed_only=False, check="full")
    committed = np.asarray(ds["committed"].values)
    a = ds.attrs
    print(f"run:            {args.run}")
    print(
        f"experiment:     {a.get('experiment', '?')}  (reads "
        f"{', '.join(r['readout'] for r in stored_readouts(a)) or 'nothing'}, complete: "
        f"{a.get('complete')})"
    )
    print(
        f"trials:         {int(committed.sum())} committed of {committed.size}; non-finite: "
        f"{int(np.asarray(ds['nonfinite'].values)[committed].sum())}"
    )
    print(f"model:          {a['model']}  weights sha256 {a['weights_sha256']}")
    print(
        "residuals:      "
        f"{'recorded ' + str(dict(ds['resid'].sizes)) if 'resid' in ds else 'not recorded'}"
    )
    print(
        f"mechintro:      {a['mechintro_version']}  git {a['git_commit']}  created "
        f"{a.get('created', '?')}"
    )
    print(f"packages:       {a['package_versions']}")
    print("config:         " + json.dumps(json.loads(a["config"]), sort_keys=True))
    for key in ("layer_map", "seed", "batch_size"):
        if key in a:
            print(f"{key + ':':<16}{a[key]}")
    return 0


def _cmd_grade(args: argparse.Namespace) -> int:
    from mechintro import judge
    from mechintro.models import load_model

    if not args.judge_model:
        raise MechintroError(
            "give --judge-model (with --judge-url for an HTTP endpoint, or alone for a local model)"
        )
    criteria = args.criteria or list(judge.CRITERIA)
    unknown = [c for c in criteria if c not in judge.CRITERIA]
    if unknown:
        raise MechintroError(f"unknown criteria {unknown}: choose from {', '.join(judge.CRITERIA)}")
    from mechintro.runs import open_run

    open_run(args.run, committed_only=False)  # fail on a bad run before contacting any judge
    if args.judge_api == "anthropic":
        j = judge.AnthropicJudge(
            model=args.judge_model,
            base_url=args.judge_url or judge.ANTHROPIC_URL,
            api_key_env=args.api_key_env or "ANTHROPIC_API_KEY",
        )
    elif args.judge_url:
        j = judge.HTTPJudge(
            base_url=args.judge_url,
            model=args.judge_model,
            api_key_env=args.api_key_env or "OPENAI_API_KEY",
        )
    else:
        j = judge.ModelJudge(model=load_model(args.judge_model))
    update, close = _progress("grade", args.quiet)
    try:
        verdicts = judge.grade_run(args.run, j, criteria=criteria, progress=update)
    finally:
        close()
    for c in criteria:
        values = verdicts[f"grade_{c}"].values
        counts = {k: int((values == k).sum()) for k in ("YES", "NO", "ungraded")}
        print(f"{c}: {counts}  (judge {j.identity})")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from mechintro.runs import verify

    report = verify(args.run, repair=args.repair)
    for line in report.notes:
        print(f"note: {line}")
    for line in report.problems:
        print(f"problem: {line}")
    print(f"{args.run}: {'OK' if report.ok else f'{len(report.problems)} problem(s)'}")
    return 0 if report.ok else 1


def _oracle_base(path: Path | str, model_name: str | None, dtype: str = "float32"):
    from mechintro import training
    from mechintro.models import load_model

    if not Path(path).exists():
        raise MechintroError(
            f"oracle {path} does not exist: train one with `mechintro oracle train`"
        )
    record = training.read_training(path)
    return load_model(model_name or record["base_model"], dtype=dtype)


def _cmd_introspect(args: argparse.Namespace) -> int:
    from mechintro import training
    from mechintro.introspect import train as itrain

    _check_out(args.out)
    if args.introspect_command == "train":
        if args.remote:
            raise MechintroError("introspect training runs here, not remotely: drop --remote")
        given = {
            k: v
            for k, v in {
                "examples": args.examples,
                "epochs": args.epochs,
                "seed": args.seed,
            }.items()
            if v is not None
        }
        _apply_settings(args.settings, itrain.AwarenessConfig, given)
        config = itrain.AwarenessConfig(**given)
        if args.concepts is not None and args.held_out is not None:
            from mechintro.introspect import data as idata

            idata.check_disjoint(args.concepts, args.held_out)  # before the model loads
        if args.out.exists() and not (args.out / "training.json").exists():
            raise MechintroError(
                f"{args.out} exists and is not a finished adapter: choose another --out or "
                "delete it"
            )
        model = _load(args)
        update, close = _progress("introspect train", args.quiet)
        try:
            out = itrain.train(
                model,
                args.out,
                config,
                progress=update,
                concepts=args.concepts,
                held_out=args.held_out,
            )
        finally:
            close()
        record = training.read_training(out)
        print(
            f"adapter {out}: {record['examples']} examples "
            f"{record[itrain.AWARENESS_KEY]['families']}, {record['steps']} steps in "
            f"{record['train_seconds']} s; {_losses(record['losses'])}"
        )
        return 0
    from mechintro.models import load_model

    if not args.adapter.exists():
        raise MechintroError(
            f"adapter {args.adapter} does not exist: train one with `mechintro introspect train`"
        )
    if not args.temperature >= 0:
        raise MechintroError(f"--temperature must be 0 or more, got {args.temperature}")
    strengths = None
    if args.strengths is not None:
        try:
            strengths = [float(x) for x in args.strengths]
        except ValueError:
            raise MechintroError(
                f"--strengths {','.join(args.strengths)}: give numbers, e.g. 1,2,4,8,16"
            ) from None
    record = training.read_training(args.adapter)
    model = load_model(args.model or record["base_model"])
    kw = {} if strengths is None else {"strengths": strengths}
    result = itrain.evaluate(
        model,
        args.adapter,
        n_controls=args.controls,
        temperature=args.temperature,
        seed=args.seed,
        **kw,
    )
    print(f"{'model':<10}{'group':<9}{'strength':>9}{'n':>5}  detected  identified  in format")
    for r in result["summary"]:
        if r["strength"] is None or r["group"] == "control":
            s = "all" if r["strength"] is None else f"{r['strength']:g}"
            d, i, f = (f"{v[0]:.2f} [{v[1]:.2f}, {v[2]:.2f}]" for v in (
                r["detected"], r["identified"], r["in_format"]))  # fmt: skip
            print(f"{r['model']:<10}{r['group']:<9}{s:>9}{r['n']:>5}  {d}  {i}  {f}")
    c = result["capability"]
    print(
        f"held-out text log-likelihood per token: untrained {c['untrained_loglik_per_token']}, "
        f"trained {c['trained_loglik_per_token']} ({c['texts']} texts)"
    )
    if args.out:
        args.out.write_text(itrain.dumps(result))
    return 0


def _cmd_oracle(args: argparse.Namespace) -> int:
    _check_out(args.out)
    if args.oracle_command == "train":
        return _oracle_train(args)
    if args.oracle_command == "ask":
        return _oracle_ask(args)
    return _oracle_evaluate(args)


def _oracle_train(args: argparse.Namespace) -> int:
    from mechintro import oracle
    from mechintro.oracle import train as otrain

    if args.remote:
        raise MechintroError("oracle training runs here, not remotely: drop --remote")
    given = {
        k: v for k, v in {"examples": args.examples, "seed": args.seed}.items() if v is not None
    }
    _apply_settings(args.settings, otrain.OracleConfig, given)
    config = otrain.OracleConfig(**given)
    if args.out.exists() and not (args.out / "training.json").exists():
        raise MechintroError(
            f"{args.out} exists and is not a finished oracle: choose another --out or delete it"
        )
    model = _load(args)
    update, close = _progress("oracle train", args.quiet)
    try:
        out = otrain.train(model, args.out, config, progress=update)
    finally:
        close()
    from mechintro import training

    record = training.read_training(out)
    print(
        f"oracle {out}: {record['examples']} examples {record[oracle.ORACLE_KEY]['families']}, "
        f"{record['steps']} steps in "
        f"{record['train_seconds']} s; {_losses(record['losses'])}"
    )
    return 0


def _oracle_ask(args: argparse.Namespace) -> int:
    from mechintro import oracle
    from mechintro.models import load_model

    if not args.question.strip():
        raise MechintroError(
            "the question is empty: ask something, e.g. --question 'What is this about?'"
        )
    if not args.run.exists():
        raise MechintroError(
            f"run {args.run} does not exist: check the path, or create it with `mechintro run`"
        )
    positions = None
    if args.positions is not None:
        try:
            positions = [int(p) for p in args.positions]
        except ValueError:
            raise MechintroError(
                f"--positions {','.join(args.positions)}: give integers, e.g. --positions=-2,-1"
            ) from None
    if args.oracle == "untrained":
        if not args.model:
            raise MechintroError("an untrained readout needs --model (the run's model)")
        asked = oracle.untrained(load_model(args.model, dtype=args.dtype))
    else:
        asked = oracle.load(_oracle_base(args.oracle, args.model, args.dtype), args.oracle)
    out = oracle.ask_run(
        asked,
        args.run,
        args.question,
        args.out,
        layer=args.layer,
        positions=positions,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        seed=args.seed,
        batch_size=args.batch_size,
        oracle_path=str(args.oracle),
    )
    from mechintro.runs import open_run

    ds = open_run(out)
    print(f"asked {ds.sizes['trial']} trials → {out}")
    for i in range(min(3, ds.sizes["trial"])):
        print(
            f"  trial {int(ds['source_trial'].values[i])} ({ds['condition'].values[i]}, "
            f"{ds['concept'].values[i] or '-'}): "
            f"{str(ds['response'].values[i])[:100]!r}"
        )
    return 0


def _oracle_evaluate(args: argparse.Namespace) -> int:
    from mechintro import oracle
    from mechintro.oracle import train as otrain

    model = _oracle_base(args.oracle, args.model)
    rows, items = otrain.evaluate_items(
        model, oracle.load(model, args.oracle), n=args.n, seed=args.seed
    )
    print(f"{'set':<32}{'reader':<11}{'accuracy':>9}  95% CI")
    for r in rows:
        print(
            f"{r['set']:<32}{r['reader']:<11}{r['accuracy']:>9.3f}  [{r['lo']:.3f}, {r['hi']:.3f}] "
            f" ({r['correct']}/{r['n']})"
        )
        for other in ("shuffled", "untrained"):
            if f"vs_{other}" in r:
                t = r[f"vs_{other}"]
                print(
                    f"{'':<32}vs {other}: right only for the oracle {t['a_only']}, only for "
                    f"{other} {t['b_only']}; McNemar p {t['mcnemar_p']:.3g}, clustered by "
                    f"concept ({t['clusters']}) p {t['clustered_p']:.3g}"
                )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    if args.items:
        args.items.write_text(json.dumps(items, indent=1))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    # No backend is chosen here either: figures are saved to PNG bytes and closed (any backend
    # can), and main() may run inside a user's kernel, whose inline backend must stay.
    from mechintro.report import write_report

    _check_out(args.out)
    out = write_report(args.run, args.out, progress=False if args.quiet else None)
    print(f"{out}  ({out.stat().st_size / 1e6:.1f} MB; open it in a browser)")
    return 0


def _quiet_hf_progress() -> None:
    """transformers draws its own progress bars on stderr; the CLI shows its own instead."""
    import transformers

    transformers.utils.logging.disable_progress_bar()


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's time limit, `kill`), handled like Ctrl-C: committed trials are
    kept."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated()


def _os_error(exc: OSError) -> str:
    """One line for an operating-system error: what happened, and what to do."""
    where = getattr(exc, "filename", "") or "I/O"
    if exc.errno == errno.EROFS:
        return f"{where} is on a read-only file system: choose an --out on a writable disk"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (
            f"permission denied for {where}: choose an --out you may write to, or fix its "
            "permissions"
        )
    if exc.errno == errno.ENOTDIR:
        return f"{where}: a part of this path is a file, not a directory: choose another --out"
    if exc.errno == errno.EISDIR:
        return f"{where} is a directory where a file was expected: check the path"
    return (
        f"{exc.strerror or exc} ({where}); fix the path or free disk space, then run the same "
        "command again "
        "(committed trials are kept)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    from mechintro.progress import is_default_on, set_default

    bars = is_default_on()
    try:
        return _main(argv, debug)
    finally:
        set_default(bars)  # -q lasts for this command only (main() is also called in-process)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str], debug: bool) -> int:
    try:
        args = _parser().parse_args(argv)
        logging.basicConfig(
            level=logging.WARNING if args.quiet else logging.INFO,
            format="%(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        for noisy in ("httpx", "urllib3", "transformers", "accelerate"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        _quiet_hf_progress()
        if args.quiet:
            from mechintro.progress import set_default

            set_default(False)  # the library's own bars (model loading, vectors) too
        handler = {
            "vectors": _cmd_vectors,
            "run": _cmd_run,
            "info": _cmd_info,
            "runs": _cmd_runs,
            "verify": _cmd_verify,
            "grade": _cmd_grade,
            "merge": _cmd_merge,
            "train": _cmd_train,
            "oracle": _cmd_oracle,
            "introspect": _cmd_introspect,
            "report": _cmd_report,
        }[args.command]
        return handler(args)
    except MechintroError as exc:
        if debug:
            raise
        print(f"mechintro: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(
            "mechintro: interrupted; committed trials are kept — run the same command to resume",
            file=sys.stderr,
        )
        return 143 if isinstance(exc, _Terminated) else 130
    except OSError as exc:
        if debug:
            raise
        print(f"mechintro: error: {_os_error(exc)}", file=sys.stderr)
        _quiet_abandoned_writes()
        return 2


def _quiet_abandoned_writes() -> None:
    """After a failed write (a full disk), zarr's other chunk writes of that call are left pending
    in its event loop; at exit asyncio would log each ("Task was destroyed but it is pending!",
    with its traceback) and warn of coroutines never awaited, under the one line that said what
    happened, and each coroutine would raise "Event loop is closed" when collected. The store is
    safe (nothing was committed): cancel them and wait, then silence what is left."""
    import asyncio

    logging.getLogger("asyncio").setLevel(logging.CRITICAL + 1)
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited")
    sync = sys.modules.get("zarr.core.sync")
    loop = getattr(sync, "loop", [None])[0] if sync is not None else None
    if loop is None or loop.is_closed():
        return

    async def cancel_the_rest() -> None:
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    try:
        asyncio.run_coroutine_threadsafe(cancel_the_rest(), loop).result(timeout=30)
    except Exception:  # the loop is stopping anyway: what is left is silenced above
        logging.getLogger(__name__).debug("zarr's pending writes not cancelled", exc_info=True)


def script_main(main: Callable[[], int | None]) -> NoReturn:
    """Run a script's ``main`` as the CLI runs a command: a
    :class:`~mechintro.errors.MechintroError` prints its one line, prefixed with the script's
    name, and exits with status 2 — never a traceback.

    Example (the last lines of every script in ``scripts/``, ``analyses/`` and ``benchmarks/``)::

        if __name__ == "__main__":
            script_main(main)
    """
    try:
        code = main()
    except MechintroError as exc:
        print(f"{Path(sys.argv[0]).name}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(code)


if __name__ == "__main__":
    sys.exit(main())
