"""``mechintro vectors``: compute concept vectors for every layer and save them."""

from __future__ import annotations

import argparse
from pathlib import Path

from mechintro.cli import _args, _common
from mechintro.errors import MechintroError

HELP = "compute concept vectors for every layer (Lindsey's, PCA-center or contrastive)"


def arguments(p: _args.Parser) -> None:
    _args.model_args(p)
    p.add_argument(
        "--concepts",
        type=_args.concepts,
        required=True,
        help="comma-separated words, e.g. Dust,Oceans (contrastive: the vector's name)",
    )
    _args.required_path(p, "--out", "output zarr store")
    p.add_argument(
        "--method",
        choices=["lindsey", "pca_center", "contrastive"],
        default="lindsey",
        help="lindsey (default): word minus baseline mean; pca_center: the Latent Introspection "
        "code's repeng recipe; "
        "contrastive: mean of --positive minus mean of --negative",
    )
    vs = p.add_mutually_exclusive_group()
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
    p.add_argument(
        "--suffixes-file",
        type=Path,
        help="pca_center: JSON list of suffixes (default: the authors' 582 truncated outputs)",
    )
    p.add_argument(
        "--baseline-words",
        type=_args.comma_list,
        help="lindsey: comma-separated baseline words (default: Lindsey's 100)",
    )
    p.add_argument(
        "--no-lowercase",
        dest="lowercase",
        action="store_false",
        help="lindsey: keep the concept and baseline words as listed (the open replications) "
        "instead of lowercasing them (the paper's appendix)",
    )
    for side in ("positive", "negative"):
        p.add_argument(
            f"--{side}",
            type=_args.texts,
            help=f"contrastive: {side} prompts, comma-separated or @file (one per line)",
        )
    p.add_argument(
        "--raw",
        action="store_true",
        help="contrastive: use the prompts as raw text, not chat turns",
    )


def command(args: argparse.Namespace) -> int:
    from mechintro.vectors import make_vectors, save_vectors

    if args.out.exists():
        raise MechintroError(f"{args.out} already exists: choose another --out or delete it")
    _common.check_out(args.out)
    inputs = _vector_inputs(args)
    model = _common.load(args)
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
    from mechintro.experiments._common import load_suffixes

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
