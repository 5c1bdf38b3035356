"""The command line's vocabulary: value types for argparse (each refusal one line naming the
problem and the fix), the parser class (one-line errors; subcommands that add their arguments when
chosen), the model flags several commands share, and ``--set KEY=VALUE`` parsed by a config
dataclass's annotations."""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import types
import typing
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mechintro.errors import MechintroError


def clean(item: str) -> str:
    """An item as typed, NFKC-normalised, without invisible format characters (zero-width space,
    byte-order mark) and surrounding blanks: what looks empty is empty."""
    text = unicodedata.normalize("NFKC", item)
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf").strip()


def comma_list(text: str) -> list[str]:
    items = [clean(s) for s in text.split(",")]
    if not clean(text) or any(not s for s in items):
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a comma-separated list of non-empty items"
        )
    return items


def concepts(text: str) -> list[str]:
    items = comma_list(text)
    seen: dict[str, str] = {}
    for item in items:
        if item.casefold() in seen:
            raise argparse.ArgumentTypeError(
                f"the concept list has duplicates ('{seen[item.casefold()]}' and '{item}' are one "
                "word): give each concept once"
            )
        seen[item.casefold()] = item
    return items


def seed(text: str) -> int:
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


def batch_size(text: str) -> int:
    value = positive_int(text)
    if value > MAX_BATCH:
        raise argparse.ArgumentTypeError(
            f"batch size {text} is more than {MAX_BATCH} trials per forward pass, more than any "
            "machine's memory holds: "
            "give a smaller --batch-size (a run also checks the memory its batch needs)"
        )
    return value


def texts(text: str) -> list[str]:
    """A comma-separated list, or ``@path``: a text file with one item per line."""
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise argparse.ArgumentTypeError(f"file {path} does not exist")
        items = [line for line in path.read_text("utf-8").splitlines() if line.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"file {path} has no non-empty lines")
        return items
    return comma_list(text)


def shard(text: str):
    from mechintro.runner import Shard

    try:
        return Shard.parse(text)
    except MechintroError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def floats(text: str) -> list[float]:
    out = []
    for s in comma_list(text):
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


def max_memory(text: str) -> dict:
    from mechintro.models import parse_max_memory

    try:
        return parse_max_memory(text)
    except MechintroError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' must be at least 1")
    return value


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (a :class:`MechintroError`: exit 2, no usage
    dump), that reads ``-1,2`` as a value, and whose ``arguments`` (a function that adds them) run
    only when it parses: a subcommand's arguments are added when that command is chosen, so
    building the whole command line imports nothing a command needs (``run``'s flags come from
    the experiments' config fields, whose module loads torch)."""

    def __init__(
        self, *args: Any, arguments: Callable[[Parser], None] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._arguments = arguments
        # argparse takes "-1,2" for an option (only "-1" or "-.5" look like numbers to it), so
        # `--strengths -1,2` failed while `--strengths=-1,2` worked: anything that starts like a
        # negative number is a value (no option of mechintro's starts with a digit).
        self._negative_number_matcher = re.compile(r"^-\.?\d")

    def with_arguments(self) -> Parser:
        """This parser, its ``arguments`` added (once)."""
        if self._arguments is not None:
            add, self._arguments = self._arguments, None
            add(self)
        return self

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        return super(Parser, self.with_arguments()).parse_known_args(args, namespace)

    def error(self, message: str) -> typing.NoReturn:  # one line, exit 2 (not usage)
        command = " ".join(self.prog.split()[1:])
        raise MechintroError(
            f"{message} (see `mechintro {command + ' ' if command else ''}--help`)"
        )


def model_args(sp: argparse.ArgumentParser) -> None:
    """The flags that name and place the model (every one is read by
    :func:`mechintro.cli._common.load`, so none is accepted and then ignored)."""
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
        type=max_memory,
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


def required_path(p: argparse.ArgumentParser, flag: str, help: str) -> None:
    """A flag that names a file or directory and must be given (most commands' ``--out``)."""
    p.add_argument(flag, type=Path, required=True, help=help)


def settings_flag(p: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE``, repeatable, into ``args.settings``: each is parsed later by
    :func:`apply_settings` against the command's config dataclass."""
    p.add_argument(
        "--set", dest="settings", action="append", default=[], metavar="KEY=VALUE", help=help
    )


def trainer_args(
    p: argparse.ArgumentParser,
    *,
    out: str,
    examples: int,
    seed: Callable[[str], int],
    seed_help: str,
    settings_help: str,
) -> None:
    """The flags of a command that LoRA-trains (``train``, ``oracle train``, ``introspect
    train``): the model's, ``--out`` (the ``out`` directory), ``--examples`` (``examples`` by
    default), ``--seed`` (parsed by ``seed``) and ``--set``."""
    model_args(p)
    required_path(p, "--out", f"{out} directory (resumes OUT.partial if a run was stopped)")
    p.add_argument("--examples", type=positive_int, help=f"training examples (default {examples})")
    p.add_argument("--seed", type=seed, help=seed_help)
    settings_flag(p, settings_help)


def apply_settings(settings: list[str], config: type, given: dict) -> None:
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
            given[key] = field_value(value, hints[key], key)
        except argparse.ArgumentTypeError as exc:
            raise MechintroError(f"--set {item}: {exc}") from None
        if key == "seed" and isinstance(given[key], int) and given[key] < 0:
            raise MechintroError(
                f"--set {item}: seed is out of range: give an integer from 0 to 2**63 - 1"
            )


def field_value(text: str, hint: object, key: str) -> object:
    """A ``--set`` value parsed by its field's annotation ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.lower() == "none":
            return None
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return field_value(text, rest[0], key)
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
        return tuple(field_value(s, args[0], key) for s in comma_list(text)) if text else ()
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
            return hint(text)
        except ValueError:
            what = "an integer" if hint is int else "a number"
            raise MechintroError(f"'{text}' is not {what}") from None
    return text
