"""The ``mechintro`` command line. It owns the terminal: progress bars, tables, one-line errors.

    mechintro vectors --concepts Dust,Oceans --out vectors.zarr
    mechintro run detection-logits --layers 0.5,0.67 --strengths 1,2,4,8 --out runs/demo.zarr
    mechintro info runs/demo.zarr

Bad input exits with status 2 and one line on stderr naming the problem and the fix; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from mechintro.errors import MechintroError


def _list(text: str) -> list[str]:
    items = [s.strip() for s in text.split(",")]
    if not text.strip() or any(not s for s in items):
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of non-empty items")
    return items


def _shard(text: str):
    from mechintro.runner import Shard

    try:
        return Shard.parse(text)
    except MechintroError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _floats(text: str) -> list[float]:
    out = []
    for s in _list(text):
        try:
            value = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{s}' is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"strength '{s}' is not finite")
        out.append(value)
    return out


def _max_memory(text: str) -> dict:
    from mechintro.models import parse_max_memory

    try:
        return parse_max_memory(text)
    except MechintroError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' must be at least 1")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage otherwise)
        command = " ".join(self.prog.split()[1:])
        raise MechintroError(f"{message} (see `mechintro {command + ' ' if command else ''}--help`)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mechintro", description="Concept-injection introspection experiments on open LMs.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def model_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--model", default="smollm2-135m", help="offline name, Hugging Face repo id, or local directory (default: smollm2-135m)")
        sp.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16", "auto"])
        sp.add_argument("--device-map", default=None, help="passed to from_pretrained, e.g. auto")
        sp.add_argument("--max-memory", type=_max_memory, default=None, metavar="DEV=SIZE,...",
                        help="most each device may hold, e.g. 0=20GiB,cpu=8GiB; the rest is offloaded to disk (implies --device-map auto)")
        sp.add_argument("--offload-folder", type=Path, default=None, help="where weights placed on the disk live (implies --device-map auto)")
        sp.add_argument("--trust-remote-code", action="store_true", help="allow a Hub repo's own modelling code")
        sp.add_argument("--remote", nargs="?", const=True, default=False, metavar="URL",
                        help="run the traces on NDIF (a Hub id as --model; NDIF_HOST/NDIF_API_KEY apply), or on the NDIF-protocol server at URL")

    v = sub.add_parser("vectors", help="compute Lindsey concept vectors for every layer")
    model_args(v)
    v.add_argument("--concepts", type=_list, required=True, help="comma-separated words, e.g. Dust,Oceans")
    v.add_argument("--out", type=Path, required=True, help="output zarr store")

    r = sub.add_parser("run", help="run an experiment into a run dataset")
    r.add_argument("experiment", help="experiment name (e.g. detection-logits)")
    model_args(r)
    r.add_argument("--concepts", type=_list, help="comma-separated concept words")
    r.add_argument("--vectors", type=Path, help="precomputed vectors (default: compute for --concepts)")
    r.add_argument("--layers", type=_list, help="indices (15) or fractions of depth (0.5), comma-separated")
    r.add_argument("--strengths", type=_floats, help="comma-separated injection strengths")
    r.add_argument("--strength-unit", choices=["raw", "resid_norm"], help="raw multiplier (paper) or multiples of the residual norm")
    r.add_argument("--trials", type=_positive_int, help="injected trials per (layer, strength) cell")
    r.add_argument("--seed", type=int, help="random seed")
    r.add_argument("--batch-size", type=_positive_int, help="trials per forward pass")
    rec = r.add_mutually_exclusive_group()
    rec.add_argument("--record-resid", dest="record_resid", action="store_true", default=None, help="store every layer's residual stream (default)")
    rec.add_argument("--no-record-resid", dest="record_resid", action="store_false", help="do not store residual streams")
    r.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="any other config field of the experiment, e.g. --set question=mind --set controls=10 "
                        "(lists comma-separated; `mechintro run EXPERIMENT --fields` lists them)")
    r.add_argument("--fields", action="store_true", help="list the experiment's config fields and defaults, then exit")
    r.add_argument("--shard", type=_shard, help="run only shard i of N (e.g. 2/4: a Slurm array task); join with `mechintro merge`")
    r.add_argument("--out", type=Path, help="run store (a .zarr directory); an existing one is resumed")

    m = sub.add_parser("merge", help="join the stores of a sharded run into one run")
    m.add_argument("shards", type=Path, nargs="+", help="the store of every shard (1/N … N/N)")
    m.add_argument("--out", type=Path, required=True, help="the merged run store")

    t = sub.add_parser("train", help="LoRA-finetune a model to predict the behaviour in a self-prediction run (Looking Inward)")
    model_args(t)
    t.add_argument("--behaviour", type=Path, required=True, help="self-prediction run whose object-level answers are the targets")
    t.add_argument("--out", type=Path, required=True, help="adapter directory (resumes OUT.partial if a run was stopped)")
    t.add_argument("--examples", type=_positive_int, help="training examples (default 300)")
    t.add_argument("--seed", type=int, help="seed of the adapter's initialisation and the example order")
    t.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE", help="any training setting (see mechintro.training.TrainConfig)")

    i = sub.add_parser("info", help="describe a run: provenance, config, trial counts")
    i.add_argument("run", type=Path)

    g = sub.add_parser("grade", help="grade a saved generation run with Lindsey's judge prompts")
    g.add_argument("run", type=Path)
    g.add_argument("--judge-url", help="base URL of an OpenAI-compatible endpoint, e.g. https://api.openai.com/v1")
    g.add_argument("--judge-model", help="the endpoint's model name (with --judge-url), or a model mechintro can load (local judge)")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key (default OPENAI_API_KEY)")
    g.add_argument("--criteria", type=_list, default=None, help="comma-separated criteria (default: all four)")

    vr = sub.add_parser("verify", help="check a run: schema, counts, digests, hashes, non-finite values")
    vr.add_argument("run", type=Path)
    vr.add_argument("--repair", action="store_true", help="mark damaged batches uncommitted so a resume recomputes them")
    return p


def _progress(desc: str, quiet: bool):
    if quiet:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=0, desc=desc, unit="trial", file=sys.stderr)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update, bar.close


def _cmd_vectors(args: argparse.Namespace) -> int:
    from mechintro.models import load_model
    from mechintro.vectors import concept_vectors, save_vectors

    if args.out.exists():
        raise MechintroError(f"{args.out} already exists: choose another --out or delete it")
    model = load_model(args.model, dtype=args.dtype, device_map=args.device_map, trust_remote_code=args.trust_remote_code,
                       max_memory=args.max_memory, offload_folder=args.offload_folder,
                       remote=args.remote)
    vectors = concept_vectors(model, args.concepts)
    save_vectors(vectors, args.out)
    norms = vectors.vector_norm.mean("concept")
    print(f"wrote {len(args.concepts)} concept vectors × {model.n_layers} layers to {args.out}")
    print("mean ‖v‖ by layer: " + ", ".join(f"{int(layer)}:{float(n):.1f}" for layer, n in zip(norms.layer.values, norms.values, strict=True)))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from mechintro.experiments import EXPERIMENTS
    from mechintro.models import OFFLINE_MODELS, load_model
    from mechintro.runs import open_run
    from mechintro.vectors import load_vectors, resolve_layers

    module = EXPERIMENTS.get(args.experiment)
    if module is None:
        raise MechintroError(f"unknown experiment '{args.experiment}': choose from {', '.join(sorted(EXPERIMENTS))}")
    fields = {f.name: f for f in dataclasses.fields(module.Config)}
    if args.fields:
        for f in fields.values():
            print(f"{f.name:<18} {f.default!r}")
        return 0
    if args.out is None:
        raise MechintroError("the following arguments are required: --out (see `mechintro run --help`)")
    overrides = {
        "model": args.model,
        "concepts": tuple(args.concepts) if args.concepts else None,
        "layers": tuple(args.layers) if args.layers else None,
        "strengths": tuple(args.strengths) if args.strengths else None,
        "strength_unit": args.strength_unit, "trials": args.trials, "seed": args.seed,
        "batch_size": args.batch_size, "record_resid": args.record_resid,
    }
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise MechintroError(f"{args.experiment} has no option {', '.join('--' + k.replace('_', '-') for k in unknown)}: see `mechintro run {args.experiment} --fields`")
    _apply_settings(args.settings, fields, given)
    config = module.Config(**given)
    if args.out.exists():
        open_run(args.out, committed_only=False)  # a foreign or corrupt file fails here, before the model loads
    spec = OFFLINE_MODELS.get(config.model)
    if spec is not None and hasattr(config, "layers") and tuple(map(str, config.layers)) != ("all",):
        resolve_layers(config.layers, spec.n_layers)  # depth is known: refuse bad layers before loading
    if args.vectors is not None and not args.vectors.exists():
        raise MechintroError(f"vectors file {args.vectors} does not exist: create it with `mechintro vectors`")
    model = load_model(config.model, dtype=args.dtype, device_map=args.device_map, trust_remote_code=args.trust_remote_code,
                       max_memory=args.max_memory, offload_folder=args.offload_folder,
                       remote=args.remote)
    vectors = load_vectors(args.vectors, model) if args.vectors else None
    update, close = _progress(args.experiment, args.quiet)
    try:
        out = module.run(config, args.out, model=model, vectors=vectors, progress=update, shard=args.shard)
    finally:
        close()
    ds = open_run(out)
    if args.shard is not None:
        print(f"{args.experiment}: shard {args.shard}, {ds.sizes['trial']} trials on {model.name} → {out}; "
              "join the shards with `mechintro merge SHARD... --out RUN`")
        return 0
    print(f"{args.experiment}: {ds.sizes['trial']} trials on {model.name} → {out}")
    print(module.format_summary(module.summarize(ds)))
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from mechintro.runs import merge, open_run

    out = merge(args.shards, args.out)
    ds = open_run(out)
    print(f"merged {len(args.shards)} shards: {ds.sizes['trial']} trials → {out}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from mechintro import training
    from mechintro.models import load_model
    from mechintro.runs import open_run

    if args.remote:
        raise MechintroError("finetuning runs here, not remotely: drop --remote")
    fields = {f.name: f for f in dataclasses.fields(training.TrainConfig)}
    given = {k: v for k, v in {"examples": args.examples, "seed": args.seed}.items() if v is not None}
    _apply_settings(args.settings, fields, given)
    config = training.TrainConfig(**given)
    if not args.behaviour.exists():
        raise MechintroError(f"behaviour run {args.behaviour} does not exist: create it with `mechintro run self-prediction`")
    behaviour = open_run(args.behaviour)
    examples = training.training_examples(behaviour, config.examples, seed=config.seed)
    model = load_model(args.model, dtype=args.dtype, device_map=args.device_map, trust_remote_code=args.trust_remote_code,
                       max_memory=args.max_memory, offload_folder=args.offload_folder)
    update, close = _progress("train", args.quiet)
    try:
        out = training.finetune(model, examples, args.out, config, behaviour=behaviour, progress=update)
    finally:
        close()
    record = training.read_training(out)
    losses = record["losses"]
    print(f"adapter {out}: {record['examples']} examples of {record['behaviour_model']}'s behaviour, {record['steps']} steps "
          f"in {record['train_seconds']} s; loss {losses[0]:.3f} (first step) → {sum(losses[-5:]) / len(losses[-5:]):.3f} (mean of the last 5)")
    return 0


def _apply_settings(settings: list[str], fields: dict, given: dict) -> None:
    """Add each ``--set KEY=VALUE`` to ``given``, parsed like the field's default."""
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise MechintroError(f"--set {item}: expected KEY=VALUE with KEY one of {', '.join(fields)}")
        given[key] = _field_value(value, fields[key].default)


def _field_value(text: str, default: object) -> object:
    """A ``--set`` value parsed like the field's default: lists for tuples, numbers, booleans."""
    def scalar(s: str, like: object) -> object:
        if isinstance(like, bool):
            if s.lower() not in ("true", "false"):
                raise MechintroError(f"'{s}' is not true or false")
            return s.lower() == "true"
        if isinstance(like, int):
            try:
                return int(s)
            except ValueError:
                raise MechintroError(f"'{s}' is not an integer") from None
        if isinstance(like, float):
            try:
                return float(s)
            except ValueError:
                raise MechintroError(f"'{s}' is not a number") from None
        return s

    if isinstance(default, tuple):
        like = default[0] if default else ""
        return tuple(scalar(s, like) for s in _list(text)) if text else ()
    return scalar(text, default)


def _cmd_info(args: argparse.Namespace) -> int:
    import numpy as np

    from mechintro.runs import open_run

    ds = open_run(args.run, committed_only=False)
    committed = np.asarray(ds["committed"].values)
    a = ds.attrs
    print(f"run:            {args.run}")
    print(f"experiment:     {a.get('experiment', '?')}  (mode {a['mode']}, complete: {a.get('complete')})")
    print(f"trials:         {int(committed.sum())} committed of {committed.size}; non-finite: {int(np.asarray(ds['nonfinite'].values)[committed].sum())}")
    print(f"model:          {a['model']}  weights sha256 {a['weights_sha256']}")
    print(f"residuals:      {'recorded ' + str(dict(ds['resid'].sizes)) if 'resid' in ds else 'not recorded'}")
    print(f"mechintro:      {a['mechintro_version']}  git {a['git_commit']}  created {a.get('created', '?')}")
    print(f"packages:       {a['package_versions']}")
    print("config:         " + json.dumps(json.loads(a["config"]), sort_keys=True))
    for key in ("layer_map", "seed", "batch_size"):
        if key in a:
            print(f"{key + ':':<16}{a[key]}")
    return 0


def _cmd_grade(args: argparse.Namespace) -> int:
    from mechintro import judge
    from mechintro.models import load_model

    if not args.judge_model:
        raise MechintroError("give --judge-model (with --judge-url for an HTTP endpoint, or alone for a local model)")
    criteria = args.criteria or list(judge.CRITERIA)
    unknown = [c for c in criteria if c not in judge.CRITERIA]
    if unknown:
        raise MechintroError(f"unknown criteria {unknown}: choose from {', '.join(judge.CRITERIA)}")
    from mechintro.runs import open_run

    open_run(args.run, committed_only=False)  # fail on a bad run before contacting any judge
    j = (judge.HTTPJudge(base_url=args.judge_url, model=args.judge_model, api_key_env=args.api_key_env)
         if args.judge_url else judge.ModelJudge(model=load_model(args.judge_model)))
    update, close = _progress("grade", args.quiet)
    try:
        verdicts = judge.grade_run(args.run, j, criteria=criteria, progress=update)
    finally:
        close()
    for c in criteria:
        values = verdicts[f"grade_{c}"].values
        counts = {k: int((values == k).sum()) for k in ("YES", "NO", "ungraded")}
        print(f"{c}: {counts}  (judge {j.identity})")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from mechintro.runs import verify

    report = verify(args.run, repair=args.repair)
    for line in report.notes:
        print(f"note: {line}")
    for line in report.problems:
        print(f"problem: {line}")
    print(f"{args.run}: {'OK' if report.ok else f'{len(report.problems)} problem(s)'}")
    return 0 if report.ok else 1


def _quiet_hf_progress() -> None:
    """transformers draws its own progress bars on stderr; the CLI shows its own instead."""
    import transformers

    transformers.utils.logging.disable_progress_bar()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = _parser().parse_args(argv)
        logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
        for noisy in ("httpx", "urllib3", "transformers", "accelerate"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        _quiet_hf_progress()
        handler = {"vectors": _cmd_vectors, "run": _cmd_run, "info": _cmd_info, "verify": _cmd_verify, "grade": _cmd_grade,
                   "merge": _cmd_merge, "train": _cmd_train}[args.command]
        return handler(args)
    except MechintroError as exc:
        if debug:
            raise
        print(f"mechintro: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mechintro: interrupted; committed trials are kept — run the same command to resume", file=sys.stderr)
        return 130
    except OSError as exc:
        if debug:
            raise
        print(f"mechintro: error: {exc.strerror or exc} ({getattr(exc, 'filename', '') or 'I/O'}); fix the path or free disk space, then run the same command again (committed trials are kept)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
