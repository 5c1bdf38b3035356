"""Checking frozen configs (experiments, oracle and self-prediction training): every field against
its annotation, then the checks that fields with these names share. Wrong values from the Python
API get the same one-line errors as bad CLI input."""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from typing import Literal

from mechintro.errors import MechintroError

# The dtypes a run can store its residual streams in (``resid_dtype``); the first is the default.
ResidDtype = Literal["float16", "bfloat16", "float32"]
RESID_DTYPES: tuple[str, ...] = typing.get_args(ResidDtype)


def check_resid_positions(specs: object) -> tuple[str, ...]:
    """The ``resid_positions`` items, checked: ``all``, ``window`` or ``last:N`` (N ≥ 1)."""
    items = tuple(specs) if isinstance(specs, tuple | list) else (specs,)
    bad = [
        s
        for s in items
        if not isinstance(s, str)
        or not (s in ("all", "window") or re.fullmatch(r"last:[1-9][0-9]*", s))
    ]
    if bad or not items:
        raise MechintroError(
            f"resid_positions {list(items)} is invalid"
            + (f" at {bad[0]!r}" if bad else "")
            + ": give all, window or last:N (N at least 1), comma-separated"
        )
    return items


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
        item = typing.get_args(hint)[0]
        plural = {int: "integers", float: "numbers", str: "strings", bool: "True or False"}
        return f"a tuple of {plural[item]}" if item in plural else f"a tuple of ({_describe(item)})"
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
            f"the strength list {list(get('strengths'))} has duplicates (by value): give each "
            "strength once"
        )
    if isinstance(get("seed"), int) and not 0 <= get("seed") < 2**63:
        raise MechintroError(
            f"seed {get('seed')} is out of range: give an integer from 0 to 2**63 - 1"
        )
    for name in ("batch_size", "trials", "controls", "max_new_tokens"):
        value = get(name)
        if value is not None and value < 1:
            raise MechintroError(f"{name} must be at least 1, got {value}")
    if get("resid_positions") is not None:
        check_resid_positions(get("resid_positions"))
    temperature = get("temperature")
    if temperature is not None and not (finite(temperature) and temperature >= 0):
        raise MechintroError(f"temperature must be 0 or more, got {temperature}")
