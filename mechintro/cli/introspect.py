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
    _args.model_args(sat)
    sat.add_argument(
        "--out",
        type=Path,
        required=True,
        help="adapter directory (resumes OUT.partial if a run was stopped)",
    )
    sat.add_argument("--examples", type=_args.positive_int, help="training examples (default 600)")
    sat.add_argument(
        "--concepts",
        type=_args.comma_list,
        help="training concepts, comma-separated (default: theirs, less the held-out ones)",
    )
    sat.add_argument(
        "--held-out",
        type=_args.comma_list,
        help="held-out concepts, comma-separated (default: Lindsey's 50 concept words)",
    )
    sat.add_argument("--epochs", type=_args.positive_int, help="epochs (default 2)")
    sat.add_argument(
        "--seed",
        type=_args.seed,
        help="seed of the data, the adapter's initialisation and the order",
    )
    _args.settings_flag(
        sat,
        "any setting of mechintro.introspect.train.AwarenessConfig, e.g. --set layer=18",
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
    from mechintro import training
    from mechintro.introspect import train as itrain

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
    _args.apply_settings(args.settings, itrain.AwarenessConfig, given)
    config = itrain.AwarenessConfig(**given)
    if args.concepts is not None and args.held_out is not None:
        from mechintro.introspect import data as idata

        idata.check_disjoint(args.concepts, args.held_out)  # before the model loads
    if args.out.exists() and not (args.out / "training.json").exists():
        raise MechintroError(
            f"{args.out} exists and is not a finished adapter: choose another --out or delete it"
        )
    model = _common.load(args)
    update, close = _common.progress_bar("introspect train", args.quiet)
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
        f"{record['train_seconds']} s; {_common.loss_line(record['losses'])}"
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
