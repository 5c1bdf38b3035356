"""``mechintro grade RUN``: grade a generation run with Lindsey's judge prompts."""

from __future__ import annotations

import argparse
from pathlib import Path

from mechintro.cli import _args, _common
from mechintro.errors import MechintroError

HELP = "grade a saved generation run with Lindsey's judge prompts"


def arguments(p: _args.Parser) -> None:
    p.add_argument("run", type=Path)
    p.add_argument(
        "--judge-url",
        help="base URL of an OpenAI-compatible endpoint, e.g. https://api.openai.com/v1 (with "
        "--judge-api anthropic: default https://api.anthropic.com)",
    )
    p.add_argument(
        "--judge-api",
        choices=["openai", "anthropic"],
        default="openai",
        help="openai: chat completions (default); anthropic: Anthropic's Messages API, the "
        "judge Lindsey used",
    )
    p.add_argument(
        "--judge-model",
        help="the endpoint's model name (with --judge-url), or a model mechintro can load (local "
        "judge)",
    )
    p.add_argument(
        "--api-key-env",
        default=None,
        help="environment variable holding the API key (default OPENAI_API_KEY, or "
        "ANTHROPIC_API_KEY with --judge-api anthropic)",
    )
    p.add_argument(
        "--criteria",
        type=_args.comma_list,
        default=None,
        help="comma-separated criteria (default: all four)",
    )


def command(args: argparse.Namespace) -> int:
    from mechintro import judge
    from mechintro.models import load_model

    if not args.judge_model:
        raise MechintroError(
            "give --judge-model (with --judge-url for an HTTP endpoint, or alone for a local model)"
        )
    criteria = args.criteria or list(judge.CRITERIA)
    unknown = [c for c in criteria if c not in judge.CRITERIA]
    if unknown:
        raise MechintroError(f"unknown criteria {unknown}: choose from {', '.join(judge.CRITERIA)}")
    from mechintro.runs import open_run

    open_run(args.run, committed_only=False)  # fail on a bad run before contacting any judge
    if args.judge_api == "anthropic":
        j = judge.AnthropicJudge(
            model=args.judge_model,
            base_url=args.judge_url or judge.ANTHROPIC_URL,
            api_key_env=args.api_key_env or "ANTHROPIC_API_KEY",
        )
    elif args.judge_url:
        j = judge.HTTPJudge(
            base_url=args.judge_url,
            model=args.judge_model,
            api_key_env=args.api_key_env or "OPENAI_API_KEY",
        )
    else:
        j = judge.ModelJudge(model=load_model(args.judge_model))
    update, close = _common.progress_bar("grade", args.quiet)
    try:
        verdicts = judge.grade_run(args.run, j, criteria=criteria, progress=update)
    finally:
        close()
    for c in criteria:
        values = verdicts[f"grade_{c}"].values
        counts = {k: int((values == k).sum()) for k in ("YES", "NO", "ungraded")}
        print(f"{c}: {counts}  (judge {j.identity})")
    return 0
