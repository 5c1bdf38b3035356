"""``mechintro oracle train|ask|eval``: Activation Oracles."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mechintro.cli import _args, _common
from mechintro.errors import MechintroError

HELP = "Activation Oracles: train an oracle, ask it about a run's activations, evaluate it"


def arguments(p: _args.Parser) -> None:
    osub = p.add_subparsers(dest="oracle_command", required=True, parser_class=_args.Parser)
    ot = osub.add_parser(
        "train", help="LoRA-train an activation oracle on data made from the project's stimuli"
    )
    _args.trainer_args(
        ot,
        out="oracle",
        examples=2000,
        seed=int,
        seed_help="seed of the data, the adapter's initialisation and the example order",
        settings_help="any setting of mechintro.oracle.train.OracleConfig, e.g. --set "
        "learning_rate=1e-4",
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
        type=_args.comma_list,
        help="the run's token positions, comma-separated; negatives count from the end "
        "(e.g. -3,-2,-1); default: the last token",
    )
    oa.add_argument("--model", help="the oracle's base model (default: the one it was trained on)")
    oa.add_argument(
        "--dtype", default="float32", choices=["float32", "bfloat16", "float16", "auto"]
    )
    oa.add_argument("--max-new-tokens", type=_args.positive_int, default=32)
    oa.add_argument(
        "--temperature",
        type=float,
        default=0.0,
        help="0: greedy (default); above 0: seeded sampling",
    )
    oa.add_argument("--seed", type=int, default=0)
    oa.add_argument("--batch-size", type=_args.positive_int, default=16)
    _args.required_path(
        oa, "--out", "answers run store (a .zarr directory); an existing one is resumed"
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
        type=_args.positive_int,
        default=100,
        help="test examples per set (as many again fit the probe)",
    )
    oe.add_argument("--seed", type=int, default=0)
    oe.add_argument("--out", type=Path, help="also write the rows as JSON here")
    oe.add_argument(
        "--items", type=Path, help="also write every test item's scores per reader as JSON here"
    )


def command(args: argparse.Namespace) -> int:
    _common.check_out(args.out)
    if args.oracle_command == "train":
        return _oracle_train(args)
    if args.oracle_command == "ask":
        return _oracle_ask(args)
    return _oracle_evaluate(args)


def _oracle_base(path: Path | str, model_name: str | None, dtype: str = "float32"):
    from mechintro import training
    from mechintro.models import load_model

    if not Path(path).exists():
        raise MechintroError(
            f"oracle {path} does not exist: train one with `mechintro oracle train`"
        )
    record = training.read_training(path)
    return load_model(model_name or record["base_model"], dtype=dtype)


def _oracle_train(args: argparse.Namespace) -> int:
    from mechintro import oracle
    from mechintro.oracle import train as otrain

    config = _common.training_config(args, otrain.OracleConfig, "oracle training")
    _common.refuse_unfinished(args.out, "oracle")
    out, record = _common.train(
        args,
        "oracle train",
        lambda model, update: otrain.train(model, args.out, config, progress=update),
    )
    print(_common.trained_line("oracle", out, record, str(record[oracle.ORACLE_KEY]["families"])))
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
