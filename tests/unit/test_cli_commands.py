"""The command line is one module per command (``mechintro.cli.COMMANDS``), and ``run``'s flags
for config fields are derived from the fields (issue 31, item 4)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import types
import typing

import pytest

from mechintro import cli
from mechintro.cli import _args
from mechintro.cli import run as run_command
from mechintro.errors import MechintroError
from mechintro.experiments import EXPERIMENTS


def _options(parser) -> dict[str, object]:
    """Every option string of ``parser`` → its action."""
    return {s: a for a in parser._actions for s in a.option_strings}


def _chosen(command: str):
    """The subparser of ``command``, its arguments added (as when the command is chosen)."""
    p = cli._parser()
    sub = next(a for a in p._actions if a.dest == "command")
    return sub.choices[command].with_arguments()


def test_every_command_is_a_module_with_help_arguments_and_command():
    for name in cli.COMMANDS:
        module = cli.command_module(name)
        assert isinstance(module.HELP, str) and module.HELP, name
        assert callable(module.arguments) and callable(module.command), name
    p = cli._parser()
    sub = next(a for a in p._actions if a.dest == "command")
    assert list(sub.choices) == list(cli.COMMANDS)


def test_the_dispatch_calls_the_chosen_command_module(monkeypatch):
    seen = []
    monkeypatch.setattr(
        cli.command_module("verify"), "command", lambda args: seen.append(args) or 7
    )
    assert cli.main(["verify", "some.zarr", "--repair"]) == 7
    assert seen[0].run.name == "some.zarr" and seen[0].repair is True


def test_building_the_command_line_loads_no_command_code():
    """Each command's arguments are added when it is chosen: building the parser (and
    `mechintro --help`) imports neither the experiments nor torch, which `run`'s derived flags
    need."""
    code = """if True:
        import sys
        from mechintro.cli import _parser
        p = _parser()
        print(int("torch" in sys.modules), int("mechintro.experiments.base" in sys.modules))
        p.parse_args(["run", "detection-logits", "--strengths", "1,2", "--out", "x.zarr"])
        print(int("mechintro.experiments.base" in sys.modules))
    """
    built, chosen = subprocess.check_output([sys.executable, "-c", code], text=True).splitlines()
    assert built == "0 0"  # neither torch nor the experiments' base config
    assert chosen == "1"  # `run` was chosen: its fields were read


def test_run_has_a_flag_for_every_derived_config_field():
    """A field of the base config (or the grid) is `--name-with-dashes`, stored under its name:
    a field added to the base config gets its flag without an edit of the CLI."""
    from mechintro.experiments.base import SteeredConfig

    options = _options(_chosen("run"))
    names = [name for name, _ in run_command.flag_fields()]
    base = [f.name for f in dataclasses.fields(SteeredConfig) if f.name != "model"]
    grid = [f.name for f in dataclasses.fields(run_command.GridFields)]
    assert names == grid + base
    for name in names:
        action = options["--" + name.replace("_", "-")]
        assert action.dest == name, name
    assert options["--no-record-resid"].dest == "record_resid"
    assert options["--resid-dtype"].choices == ["float16", "bfloat16", "float32"]
    assert options["--strength-unit"].choices == ["raw", "resid_norm"]


def test_a_new_base_field_gets_a_typed_flag_with_its_docstring(monkeypatch):
    from mechintro.experiments import base

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Wider(base.SteeredConfig):
        warmup: int = 2
        """warm-up batches before timing"""
        tags: tuple[float, ...] = ()

    monkeypatch.setattr(base, "SteeredConfig", Wider)
    run_command.flag_fields.cache_clear()
    try:
        parser = _chosen("run")
        options = _options(parser)
        assert options["--warmup"].help == "warm-up batches before timing"
        args = parser.parse_args(["detection-logits", "--warmup", "3", "--tags", "1,2"])
        assert args.warmup == 3 and args.tags == [1.0, 2.0]
        with pytest.raises(MechintroError, match="argument --warmup: '0' must be at least 1"):
            parser.parse_args(["detection-logits", "--warmup", "0"])
    finally:
        run_command.flag_fields.cache_clear()


def test_every_config_declares_the_grid_fields_as_the_flags_parse_them():
    """GridFields types `run`'s --concepts/--layers/--strengths/--trials: every registered
    experiment that has one of these fields declares it so (None allowed)."""
    grid = typing.get_type_hints(run_command.GridFields)

    def strip_none(hint):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        return args[0] if union and len(args) == 1 else hint

    for name, module in EXPERIMENTS.items():
        hints = typing.get_type_hints(module.Config)
        for field, hint in grid.items():
            if field in hints:
                assert strip_none(hints[field]) == strip_none(hint), (name, field, hints[field])


def test_run_flags_reach_the_config_as_before(tmp_path):
    """The flags' values become the config's fields (lists as tuples); a flag for a field the
    experiment lacks is refused by name, as before."""
    parser = _chosen("run")
    args = parser.parse_args(
        [
            "detection-logits", "--concepts", "Dust,Oceans", "--layers", "0.5,3",
            "--strengths=-1,2", "--trials", "2", "--seed", "5", "--no-record-resid",
            "--resid-dtype", "float32", "--strength-unit", "resid_norm", "--out", "x",
        ]
    )  # fmt: skip
    config = run_command._run_config(args, EXPERIMENTS["detection-logits"])
    assert (config.concepts, config.layers, config.strengths) == (
        ("Dust", "Oceans"),
        ("0.5", "3"),
        (-1.0, 2.0),
    )
    assert (config.trials, config.seed, config.record_resid) == (2, 5, False)
    assert (config.resid_dtype, config.strength_unit) == ("float32", "resid_norm")
    args = parser.parse_args(["self-prediction", "--strengths", "1", "--out", "x"])
    with pytest.raises(MechintroError, match="self-prediction has no option --strengths"):
        run_command._run_config(args, EXPERIMENTS["self-prediction"])


def test_the_parser_class_reads_negative_lists_and_fails_in_one_line():
    p = _args.Parser(prog="mechintro demo", arguments=lambda q: q.add_argument("--x", type=int))
    assert p.parse_args(["--x", "-3"]).x == -3
    with pytest.raises(MechintroError, match=r"^argument --x: .*\(see `mechintro demo --help`\)$"):
        p.parse_args(["--x", "y"])
