"""``mechintro run EXPERIMENT``: run an experiment into a run store.

``run``'s flags for config fields are derived from the fields (:func:`flag_fields`): a field
``name`` of the grid most experiments declare (:class:`GridFields`) or of the experiments' base
config (:class:`mechintro.experiments.base.SteeredConfig`) is ``--name-with-dashes``, its value
parsed by the field's annotation (a tuple is comma-separated, a ``Literal`` offers its choices, a
bool is ``--name`` / ``--no-name``), its help this module's line for it or else the field's
docstring. Every other field is ``--set KEY=VALUE``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mechintro.cli import _args, _common
from mechintro.errors import MechintroError

HELP = "run an experiment into a run dataset"


@dataclasses.dataclass(frozen=True, kw_only=True)
class GridFields:
    """The grid fields most experiments' configs declare, each config its own (with its own
    default; some declare none): ``run`` has a flag for each, typed as they are declared here,
    and an experiment without the field refuses its flag (``has no option --strengths``). A test
    checks that every registered config that declares one of them declares it so."""

    concepts: tuple[str, ...] = ()
    layers: tuple[str | int | float, ...] = ()
    strengths: tuple[float, ...] = ()
    trials: int | None = None


_HELP: dict[str, str] = {
    "concepts": "comma-separated concept words",
    "layers": "indices (15) or fractions of depth (0.5), comma-separated",
    "strengths": "comma-separated injection strengths",
    "trials": "injected trials per (layer, strength) cell",
    "seed": "random seed",
    "batch_size": "trials per forward pass",
    "record_resid": "store every layer's residual stream (default)",
    "no_record_resid": "do not store residual streams",
    "resid_layers": "with residuals recorded, store only these layers (indices or fractions of "
    "depth, comma-separated; default all)",
    "resid_dtype": "with residuals recorded, store them as float16 (default), bfloat16 or float32",
    "resid_positions": "with residuals recorded, store only these prompt positions: all "
    "(default), last:N, window (from the first injected or read token), comma-separated",
    "strength_unit": "raw multiplier (paper) or multiples of the residual norm",
}
"""The flags' help on the command line, where it is shorter than the field's docstring."""

_TYPES: dict[str, Callable[[str], object]] = {
    "concepts": _args.concepts,  # a concept given twice is refused
    "seed": _args.seed,  # 0 to 2**63 - 1
    "batch_size": _args.batch_size,  # at most MAX_BATCH trials
}
"""Value types checked beyond what the annotation says."""


@functools.cache
def flag_fields() -> tuple[tuple[str, Any], ...]:
    """(name, annotation) of every config field ``run`` has a flag for, in the order of the
    help: :class:`GridFields`, then the base config's fields but ``model`` (the model flags set
    it)."""
    from mechintro.experiments.base import SteeredConfig

    out: dict[str, Any] = {}
    for config in (GridFields, SteeredConfig):
        hints = typing.get_type_hints(config)
        for f in dataclasses.fields(config):
            if f.name != "model":
                out.setdefault(f.name, hints[f.name])
    return tuple(out.items())


def _value(name: str, hint: Any) -> dict[str, Any]:
    """``add_argument``'s ``type`` or ``choices`` for the field ``name`` annotated ``hint``."""
    if name in _TYPES:
        return {"type": _TYPES[name]}
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else str
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return {"choices": list(args)}
    if origin is tuple:
        return {"type": _args.floats if args[0] is float else _args.comma_list}
    if hint is int:
        return {"type": _args.positive_int}
    return {"type": hint} if hint is float else {}


def _field_flags(p: _args.Parser) -> None:
    """A flag for each of :func:`flag_fields`, its value stored under the field's name (None
    when not given: the preset's or the config's default applies)."""
    from mechintro.experiments.base import SteeredConfig, field_help

    docs = field_help(GridFields) | field_help(SteeredConfig)
    for name, hint in flag_fields():
        flag = "--" + name.replace("_", "-")
        if hint is bool:
            pair = p.add_mutually_exclusive_group()
            pair.add_argument(
                flag, dest=name, action="store_true", default=None, help=_HELP.get(name, docs[name])
            )
            pair.add_argument(
                "--no-" + flag[2:],
                dest=name,
                action="store_false",
                help=_HELP.get(f"no_{name}", f"the opposite of {flag}"),
            )
        else:
            p.add_argument(flag, dest=name, help=_HELP.get(name, docs[name]), **_value(name, hint))


def arguments(p: _args.Parser) -> None:
    p.add_argument("experiment", help="experiment name (e.g. detection-logits)")
    _args.model_args(p)
    p.add_argument(
        "--vectors", type=Path, help="precomputed vectors (default: compute for --concepts)"
    )
    _field_flags(p)
    _args.settings_flag(
        p,
        "any other config field of the experiment, e.g. --set question=mind --set controls=10 "
        "(lists comma-separated; `mechintro run EXPERIMENT --fields` lists them)",
    )
    p.add_argument(
        "--fields",
        action="store_true",
        help="list the experiment's config fields and defaults, then exit",
    )
    p.add_argument(
        "--preset",
        help="set every option to what an open replication's code does, e.g. injected-thoughts "
        "--preset uzaymacar (or safety-research); flags and --set still override; `--fields` "
        "lists the presets",
    )
    p.set_defaults(dtype=None)  # float32 unless --dtype or the preset's dtype
    p.add_argument(
        "--shard",
        type=_args.shard,
        help="run only shard i of N (e.g. 2/4: a Slurm array task); join with `mechintro merge`",
    )
    p.add_argument(
        "--out", type=Path, help="run store (a .zarr directory); an existing one is resumed"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print what the run will cost (trials, tokens, bytes on disk by variable, peak "
        "memory, time from one calibration batch) and write nothing at --out",
    )
    p.add_argument(
        "--no-space-check",
        action="store_true",
        help="start even if the store's uncompressed size exceeds the free space at --out",
    )


def command(args: argparse.Namespace) -> int:
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
    _common.check_out(args.out)
    config = _run_config(args, module)
    if args.out.exists():
        # a foreign file fails here, before the model loads (the run repairs damaged chunks)
        read_attrs(args.out)
    _check_config_layers(config)
    if args.vectors is not None and not args.vectors.exists():
        raise MechintroError(
            f"vectors file {args.vectors} does not exist: create it with `mechintro vectors`"
        )
    model = _common.load(args, config.model)
    vectors = load_vectors(args.vectors, model) if args.vectors else None
    if args.dry_run:
        from mechintro import planning

        estimate = planning.estimate(
            lambda: module.run(config, args.out, model=model, vectors=vectors, progress=None)
        )
        print(planning.format_estimate(estimate))
        return 0
    update, close = _common.progress_bar(args.experiment, args.quiet)
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
    given: dict[str, Any] = {"model": args.model}
    for name, _ in flag_fields():
        value = getattr(args, name)
        if value is not None:
            given[name] = tuple(value) if isinstance(value, list) else value
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
    _args.apply_settings(args.settings, module.Config, given)
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
