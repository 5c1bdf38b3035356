"""``mechintro train``: LoRA-finetune a model on a self-prediction run's behaviour (Looking
Inward)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mechintro.cli import _args, _common
from mechintro.errors import MechintroError

HELP = "LoRA-finetune a model to predict the behaviour in a self-prediction run (Looking Inward)"


def arguments(p: _args.Parser) -> None:
    _args.model_args(p)
    p.add_argument(
        "--behaviour",
        type=Path,
        required=True,
        help="self-prediction run whose object-level answers are the targets",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="adapter directory (resumes OUT.partial if a run was stopped)",
    )
    p.add_argument("--examples", type=_args.positive_int, help="training examples (default 300)")
    p.add_argument(
        "--seed", type=_args.seed, help="seed of the adapter's initialisation and the example order"
    )
    _args.settings_flag(
        p,
        "any training setting (see mechintro.training.TrainConfig)",
    )


def command(args: argparse.Namespace) -> int:
    from mechintro import training
    from mechintro.looking_inward import tasks
    from mechintro.runs import open_run

    if args.remote:
        raise MechintroError("finetuning runs here, not remotely: drop --remote")
    _common.check_out(args.out)
    given = {
        k: v for k, v in {"examples": args.examples, "seed": args.seed}.items() if v is not None
    }
    _args.apply_settings(args.settings, training.TrainConfig, given)
    config = training.TrainConfig(**given)
    if not args.behaviour.exists():
        raise MechintroError(
            f"behaviour run {args.behaviour} does not exist: create it with `mechintro run "
            "self-prediction`"
        )
    behaviour = open_run(args.behaviour)
    examples = tasks.training_examples(behaviour, config.examples, seed=config.seed)
    model = _common.load(args)
    update, close = _common.progress_bar("train", args.quiet)
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
        f"in {record['train_seconds']} s; {_common.loss_line(record['losses'])}"
    )
    return 0
