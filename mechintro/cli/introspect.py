"""``mechintro introspect train|eval``: steering awareness."""

from __future__ import annotations

import argparse
from pathlib import Path

from mechintro.cli import _args, _common
from mechintro.errors import MechintroError

HELP = "steering awareness: train a model to notice injected thoughts, evaluate it held-out"


def arguments(p: _args.Parser) -> None:
    sasub = p.add_subparsers(dest="introspect_command", required=True, parser_class=_args.Parser)
    sat = sasub.add_parser(
        "train", help="LoRA-train steering awareness (Fonseca Rivera 2025's recipe, CPU-sized)"
    )
    _args.trainer_args(
        sat,
        out="adapter",
        examples=600,
        seed=_args.seed,
        seed_help="seed of the data, the adapter's initialisation and the order",
        settings_help="any setting of mechintro.introspect.train.AwarenessConfig, e.g. --set "
        "layer=18",
    )
    for flag, help in (
        (
            "--concepts",
            "training concepts, comma-separated (default: theirs, less the held-out ones)",
        ),
        ("--held-out", "held-out concepts, comma-separated (default: Lindsey's 50 concept words)"),
    ):
        sat.add_argument(flag, type=_args.comma_list, help=help)
    sat.add_argument("--epochs", type=_args.positive_int, help="epochs (default 2)")
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
        "--strengths", type=_args.comma_list, help="evaluation strengths (default their 1,2,4,8,16)"
    )
    sae.add_argument("--controls", type=_args.positive_int, default=60, help="control trials")
    sae.add_argument(
        "--temperature", type=float, default=0.0, help="0: greedy (theirs); above 0: sampled"
    )
    sae.add_argument("--seed", type=int, default=0)
    sae.add_argument("--out", type=Path, help="write trials, summary and capability as JSON here")


def command(args: argparse.Namespace) -> int:
    _common.check_out(args.out)
    if args.introspect_command == "train":
        return _train(args)
    return _evaluate(args)


def _train(args: argparse.Namespace) -> int:
    from mechintro.introspect import train as itrain

    config = _common.training_config(
        args, itrain.AwarenessConfig, "introspect training", epochs=args.epochs
    )
    if args.concepts is not None and args.held_out is not None:
        from mechintro.introspect import data as idata

        idata.check_disjoint(args.concepts, args.held_out)  # before the model loads
    _common.refuse_unfinished(args.out, "adapter")
    out, record = _common.train(
        args,
        "introspect train",
        lambda model, update: itrain.train(
            model,
            args.out,
            config,
            progress=update,
            concepts=args.concepts,
            held_out=args.held_out,
        ),
    )
    print(
        _common.trained_line("adapter", out, record, str(record[itrain.AWARENESS_KEY]["families"]))
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from mechintro import training
    from mechintro.introspect import train as itrain
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
