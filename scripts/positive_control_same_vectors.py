"""The positive control's same-input check (issue 33; docs/positive-control.md): the untrained
model's own concept vectors, as made for an untrained run, saved for the trained model, so that a
run on the trained model (``--vectors OUT``) injects exactly what the untrained run injected.

Every run computes its model's own vectors; training changes them, so an instrument that moves
between the two models' runs may read the vectors rather than the trained model's reading of a
fixed injection. ``mechintro.vectors.vectors_from_array`` records them as made elsewhere.

    PYTHONPATH=. python scripts/positive_control_same_vectors.py RUNS/dl-untrained.zarr \\
        --adapter DIR/n600 --out RUNS/untrained-vectors.zarr
    mechintro run detection-logits --model DIR/n600 --vectors RUNS/untrained-vectors.zarr …
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mechintro.cli import script_main
from mechintro.errors import MechintroError


def main() -> int:
    import mechintro as mi
    from mechintro import experiments, training
    from mechintro.experiments.base import lindsey_vectors
    from mechintro.vectors import save_vectors, vectors_from_array

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="the untrained model's run whose vectors to copy")
    p.add_argument("--adapter", type=Path, required=True, help="the trained adapter directory")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    if args.out.exists():
        raise MechintroError(f"{args.out} exists: choose another --out or delete it")
    run = mi.open_run(args.run)
    module = experiments.EXPERIMENTS[run.attrs["experiment"]]
    fields = module.Config.__dataclass_fields__
    config = module.Config(**{
        k: tuple(v) if isinstance(v, list) else v
        for k, v in json.loads(run.attrs["config"]).items() if k in fields
    })  # fmt: skip
    base = mi.load_model(run.attrs["model"])
    if base.weights_sha256 != training.read_training(args.adapter)["base_weights_sha256"]:
        raise MechintroError(
            f"{args.run} was not recorded on {args.adapter}'s base model: give the untrained run"
        )
    vectors = lindsey_vectors(config, base)
    trained = training.apply_adapter(base, args.adapter)
    concepts = [str(c) for c in vectors.concept.values]
    method = f"{vectors.attrs.get('method', 'lindsey')}, made on the untrained {base.name}"
    save_vectors(vectors_from_array(vectors.values, trained, concepts, method=method), args.out)
    print(f"wrote {args.out}: {len(concepts)} concepts, every layer of {trained.name}")
    return 0


if __name__ == "__main__":
    script_main(main)
