"""``mechintro train``: LoRA-finetune a model on a self-prediction run's behaviour (Looking
Inward)."""

from __future__ import annotations

import argparse

from mechintro.cli import _args, _common
from mechintro.errors import MechintroError

HELP = "LoRA-finetune a model to predict the behaviour in a self-prediction run (Looking Inward)"


def arguments(p: _args.Parser) -> None:
    _args.trainer_args(
        p,
        out="adapter",
        examples=300,
        seed=_args.seed,
        seed_help="seed of the adapter's initialisation and the example order",
        settings_help="any training setting (see mechintro.training.TrainConfig)",
    )
    _args.required_path(
        p, "--behaviour", "self-prediction run whose object-level answers are the targets"
    )


def command(args: argparse.Namespace) -> int:
    from mechintro import training
    from mechintro.looking_inward import tasks
    from mechintro.runs import open_run

    if args.remote:
        raise MechintroError("finetuning runs here, not remotely: drop --remote")
    _common.check_out(args.out)
    config = _common.training_config(args, training.TrainConfig, "finetuning")
    if not args.behaviour.exists():
        raise MechintroError(
            f"behaviour run {args.behaviour} does not exist: create it with `mechintro run "
            "self-prediction`"
        )
    behaviour = open_run(args.behaviour)
    examples = tasks.training_examples(behaviour, config.examples, seed=config.seed)
    out, record = _common.train(
        args,
        "train",
        lambda model, update: training.finetune(
            model, examples, args.out, config, behaviour=behaviour, progress=update
        ),
    )
    print(
        _common.trained_line("adapter", out, record, f"of {record['behaviour_model']}'s behaviour")
    )
    return 0
