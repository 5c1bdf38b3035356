"""Looking Inward on the offline models, end to end: self-prediction runs, self- and cross-training
(LoRA), evaluation of the trained models, and the cross-training data-scaling curve.

    python scripts/looking_inward.py --models smollm2-135m,qwen2.5-coder-0.5b --items 8
    python analyses/looking_inward.py            # tables and figures from what this wrote

For each model M (``--root``, default ``runs/looking-inward``):

1. ``M/base.zarr``: M's object-level answers and hypothetical predictions (``self-prediction``).
2. ``M/self-adapter``: M finetuned on its own behaviour on the training tasks; ``M/self.zarr``: the
   finetuned M (M1' in the paper's notation) evaluated: its new object-level answers and
   predictions.
3. For every other model M2: ``M2/cross-on-M/adapter`` — M2 finetuned on M1''s behaviour (same
   examples, same "you" framing); ``M2/cross-on-M/run.zarr`` — its predictions, scored against
   M1''s answers in ``M/self.zarr``.
4. ``--scaling N1,N2,...``: the first model (the cheapest to evaluate) cross-trained on N examples
   of the second's behaviour, for the data-scaling curve: ``M2/cross-on-M/scaling-N/``.
5. ``--calibration S``: calibration runs (animals, second character, S samples per prompt at
   temperature 1, ``--calibration-items`` prompts): ``M/calibration/base.zarr`` (untrained M),
   ``M/calibration/self.zarr`` (self-trained M) and ``M2/cross-on-M/calibration.zarr`` (M2 trained
   on M's behaviour; its predictions are scored against ``M/calibration/self.zarr``'s answers).
6. ``--behaviour-change``: the self-trained first model (run again with the models swapped for
   the other direction) finetuned (3 epochs) on the second model's
   object-level answers (every task, ``M/changed-by-M2/adapter``) and evaluated on the held-out
   tasks (``M/changed-by-M2/run.zarr``): do its predictions follow its new behaviour or its old?

Everything resumes: a finished run or adapter is skipped, an unfinished one continues. Wall times
go to ``ROOT/timing.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import time
from pathlib import Path

from mechintro import runs, training
from mechintro.cli import script_main
from mechintro.looking_inward import experiment as self_prediction
from mechintro.looking_inward import tasks as sp_shared
from mechintro.models import load_model

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", default="smollm2-135m,qwen2.5-coder-0.5b")
    p.add_argument("--items", type=int, default=8, help="items per task (the runs' size)")
    p.add_argument("--examples", type=int, default=300, help="training examples per adapter")
    p.add_argument(
        "--scaling", default="", help="comma-separated example counts for the cross-training curve"
    )
    p.add_argument(
        "--calibration",
        type=int,
        default=0,
        help="samples per prompt for the calibration runs (0: none; the paper: 20)",
    )
    p.add_argument(
        "--calibration-items", type=int, default=10, help="animals prompts in the calibration runs"
    )
    p.add_argument(
        "--behaviour-change",
        action="store_true",
        help="run the behaviour-change test on the first model",
    )
    p.add_argument(
        "--held-out-only",
        default="",
        help="models whose base and self runs predict on held-out tasks only "
        "(cross and scaling runs always do: they are scored there only)",
    )
    p.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="train with gradient checkpointing: the same adapters, less memory, more time "
        "(Qwen2.5-Coder-1.5B's behaviour change needed it in 24 GB)",
    )
    p.add_argument("--root", type=Path, default=ROOT / "runs" / "looking-inward")
    p.add_argument(
        "--ship",
        type=Path,
        help="only copy the finished runs, without residuals and adapter weights, to this "
        "folder (analyses/data/looking-inward: what `make figures` reads)",
    )
    args = p.parse_args()
    if args.ship:
        ship(args.root, args.ship)
        return
    names = [m for m in args.models.split(",") if m]
    args.root.mkdir(parents=True, exist_ok=True)
    timing_path = args.root / "timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    config = self_prediction.Config(items=args.items)
    train_config = training.TrainConfig(examples=args.examples)
    models = {}

    def model(name):
        if name not in models:
            models.clear()  # one model in memory at a time
            models[name] = load_model(name)
        return models[name]

    def timed(key, fn):
        if key in timing:
            return
        start = time.perf_counter()
        fn()
        timing[key] = round(time.perf_counter() - start, 1)
        timing_path.write_text(json.dumps(timing, indent=1))
        print(f"{key}: {timing[key]} s", flush=True)

    held_out_only = {m for m in args.held_out_only.split(",") if m}

    def evaluate(name, out, adapter="", held_out=False):
        splits = ("test",) if held_out or name in held_out_only else ("train", "test")
        cfg = self_prediction.Config(
            **{
                **config.__dict__,
                "model": name,
                "adapter": str(adapter),
                "hypothetical_splits": splits,
            }
        )
        timed(
            f"run {out.relative_to(args.root)}",
            lambda: self_prediction.run(cfg, out, model=model(name)),
        )

    def train(name, behaviour_run, out, cfg=train_config):
        behaviour = runs.open_run(behaviour_run)
        examples = sp_shared.training_examples(behaviour, cfg.examples, seed=cfg.seed)
        timed(
            f"train {out.relative_to(args.root)} ({len(examples)} examples)",
            lambda: training.finetune(
                model(name),
                examples,
                out,
                cfg,
                behaviour=behaviour,
                gradient_checkpointing=args.gradient_checkpointing,
            ),
        )

    for name in names:
        evaluate(name, args.root / name / "base.zarr")
        train(name, args.root / name / "base.zarr", args.root / name / "self-adapter")
        evaluate(name, args.root / name / "self.zarr", args.root / name / "self-adapter")
    for m1 in names:
        for m2 in names:
            if m1 == m2:
                continue
            folder = args.root / m2 / f"cross-on-{m1}"
            train(m2, args.root / m1 / "self.zarr", folder / "adapter")
            evaluate(m2, folder / "run.zarr", folder / "adapter", held_out=True)
    if args.calibration:
        calibration = self_prediction.Config(
            tasks=("animals",),
            properties=("second_character",),
            items=args.calibration_items,
            samples=args.calibration,
            temperature=1.0,
            max_new_tokens=4,
            hypothetical_tokens=2,
            hypothetical_splits=("test",),
            record_resid=False,
        )

        def sample(name, out, adapter=""):
            cfg = dataclasses.replace(calibration, model=name, adapter=str(adapter))
            timed(
                f"run {out.relative_to(args.root)}",
                lambda: self_prediction.run(cfg, out, model=model(name)),
            )

        for m1 in names:
            sample(m1, args.root / m1 / "calibration" / "base.zarr")
            sample(
                m1, args.root / m1 / "calibration" / "self.zarr", args.root / m1 / "self-adapter"
            )
            for m2 in names:
                if m2 != m1:
                    sample(
                        m2,
                        args.root / m2 / f"cross-on-{m1}" / "calibration.zarr",
                        args.root / m2 / f"cross-on-{m1}" / "adapter",
                    )
    if args.behaviour_change and len(names) >= 2:
        m1, m2 = names[0], names[1]
        folder, self_adapter = args.root / m1 / f"changed-by-{m2}", args.root / m1 / "self-adapter"
        behaviour = runs.open_run(args.root / m2 / "base.zarr")
        examples = sp_shared.object_examples(behaviour, args.examples, seed=train_config.seed)
        change = dataclasses.replace(train_config, epochs=3)

        def change_behaviour():
            self_trained = training.apply_adapter(model(m1), self_adapter)
            models.clear()  # the untrained model is not needed while training: its memory back
            gc.collect()
            training.finetune(
                self_trained,
                examples,
                folder / "adapter",
                change,
                behaviour=behaviour,
                gradient_checkpointing=args.gradient_checkpointing,
            )

        timed(
            f"train {(folder / 'adapter').relative_to(args.root)} ({len(examples)} "
            "object-level examples × 3 epochs)",
            change_behaviour,
        )
        evaluate(m1, folder / "run.zarr", f"{self_adapter},{folder / 'adapter'}", held_out=True)
    if args.scaling and len(names) >= 2:
        m1, m2 = names[1], names[0]
        for n in (int(x) for x in args.scaling.split(",")):
            folder = args.root / m2 / f"cross-on-{m1}" / f"scaling-{n}"
            train(
                m2,
                args.root / m1 / "self.zarr",
                folder / "adapter",
                training.TrainConfig(**{**train_config.__dict__, "examples": n}),
            )
            evaluate(m2, folder / "run.zarr", folder / "adapter", held_out=True)


def ship(root: Path, dest: Path) -> None:
    """Copy every finished run under ``root`` without its residual group, and each adapter's
    ``training.json`` only: a few MB that redraw every figure but the probes."""
    import shutil

    for run in sorted(root.rglob("*.zarr")):
        if not (run / "zarr.json").exists():
            continue
        target = dest / run.relative_to(root)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(
            run,
            target,
            ignore=shutil.ignore_patterns(sp_shared.RESID_GROUP, f".{sp_shared.RESID_GROUP}.tmp"),
        )
        runs.drop_group(target, sp_shared.RESID_GROUP)  # and its digests from the manifest
    for record in sorted(root.rglob(training.TRAINING_FILE)):
        target = dest / record.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(record, target)
    if (root / "timing.json").exists():
        shutil.copy2(root / "timing.json", dest / "timing.json")
    print(f"shipped {root} → {dest}")


if __name__ == "__main__":
    script_main(main)
