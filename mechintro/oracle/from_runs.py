"""Asking an oracle about a saved run: :func:`run_activations` reads a run's stored residuals,
:func:`ask_run` asks about every trial and stores the answers as a run of their own.
``mechintro.oracle`` re-exports them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from mechintro import engine
from mechintro.errors import MechintroError
from mechintro.oracle.reader import Oracle, _decode, oracle_prompt, source_layer
from mechintro.reading import Generate
from mechintro.runner import Generation


def run_activations(
    run: xr.Dataset, *, layer: int, positions: Sequence[int] | None, where: str = "run"
) -> tuple[np.ndarray, torch.Tensor]:
    """The trials with a residual stream and their activations ``(trial, positions, d_model)``
    at ``layer``; ``positions`` index the run's (left-padded) ``pos`` axis, negatives from the
    end; ``None``: the last prompt token."""
    if "resid" not in run:
        raise MechintroError(
            f"{where} has no residual stream: run the experiment again with --record-resid"
        )
    layers = [int(x) for x in run["layer"].values]
    if layer not in layers:
        raise MechintroError(
            f"layer {layer} is not in {where} (layers {layers[0]}–{layers[-1]}): choose one of them"
        )
    width = run.sizes["pos"]
    pos = [-1] if positions is None else list(positions)
    if not pos or any(not -width <= p < width for p in pos):
        raise MechintroError(
            f"positions {pos} out of range: {where} has {width} "
            f"positions (0…{width - 1}, or -1 for the last)"
        )
    pos = [p % width for p in pos]
    mask = np.asarray(run["attention_mask"].values)[:, pos]
    if not mask.all():
        bad = int(np.flatnonzero(~mask.all(1))[0])
        raise MechintroError(
            f"position(s) {pos} fall on padding in trial "
            f"{int(run['trial'].values[bad])} of {where}: choose positions "
            "every trial has (negative positions count from the last token)"
        )
    from mechintro.analysis._common import require_stored

    require_stored(run, np.isin(np.arange(width), pos), "the oracle")
    acts = run["resid"].sel(layer=layer).isel(pos=pos).values.astype(np.float32)
    return np.asarray(run["trial"].values), torch.from_numpy(acts)


def ask_run(
    oracle: Oracle,
    run_path: str | Path,
    question: str,
    out: str | Path,
    *,
    layer: int | None = None,
    positions: Sequence[int] | None = None,
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    seed: int = 0,
    batch_size: int = 16,
    oracle_path: str = "",
) -> Path:
    """Ask ``oracle`` ``question`` about every committed trial of the run at ``run_path`` and store
    the answers as a generation-mode run at ``out`` (same store, commit protocol and digests as any
    run; a killed job resumes). The new run's trial coordinates are the source trials' own
    (concept, condition, strength, layers), plus ``source_trial``.

    ``layer``: the run's layer to read (default: half depth); ``positions``: as in
    :func:`run_activations`.
    """
    from mechintro import runs
    from mechintro.provenance import provenance_attrs

    if not question.strip():
        raise MechintroError(
            "the question is empty: ask something, e.g. --question 'What is this about?'"
        )
    run = runs.open_run(run_path)
    if "resid" not in run:
        raise MechintroError(
            f"{run_path} has no residual stream: run the experiment again with --record-resid"
        )
    if run.attrs.get("weights_sha256") != oracle.base_weights_sha256:
        raise MechintroError(
            f"{run_path} was recorded with {run.attrs.get('model')}, not the oracle's base model "
            f"{oracle.model.name.split('+')[0]}: ask an oracle of that model"
        )
    layer = source_layer(oracle.model, 50) if layer is None else layer
    trial_ids, acts = run_activations(run, layer=layer, positions=positions, where=str(run_path))
    if not len(trial_ids):
        raise MechintroError(f"{run_path} has no committed trials to ask about")
    prompt = oracle_prompt(oracle.model.tokenizer, question, layer=layer, n_positions=acts.shape[1])
    config = {
        "question": question,
        "layer": layer,
        "positions": None if positions is None else list(positions),
        "source_run": str(run_path),
        "source_config": json.loads(run.attrs["config"]),
        "oracle": oracle_path,
        "oracle_trained": oracle.trained,
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "seed": seed,
        "inject_layer": oracle.inject_layer,
        "coefficient": oracle.coefficient,
    }
    out = Path(out)
    n, width = len(trial_ids), len(prompt.input_ids)
    inject = np.zeros((n, width), dtype=bool)
    inject[:, list(prompt.positions)] = True
    coords = {
        "trial": np.arange(n),
        "pos": np.arange(width),
        "source_trial": ("trial", trial_ids.astype(np.int64)),
    }
    for name in runs.TRIAL_COORDS:
        coords[name] = ("trial", run[name].values)
    inputs = xr.Dataset(
        {
            "input_ids": (
                ("trial", "pos"),
                np.tile(np.array(prompt.input_ids, dtype=np.int32), (n, 1)),
            ),
            "attention_mask": (("trial", "pos"), np.ones((n, width), dtype=np.int8)),
            "inject_mask": (("trial", "pos"), inject),
            "injected_vector": (("trial", "d_model"), acts[:, 0].numpy()),
        },
        coords=coords,
    )
    attrs = {
        "model": oracle.model.name,
        "weights_sha256": oracle.model.weights_sha256,
        "config": json.dumps(config),
        "experiment": "oracle-ask",
        **provenance_attrs(),
    }
    if out.exists():
        existing = runs.open_run(out, committed_only=False)
        if (
            existing.attrs.get("config") != attrs["config"]
            or existing.attrs.get("weights_sha256") != attrs["weights_sha256"]
        ):
            raise MechintroError(
                f"{out} holds another question, run or oracle: choose another --out or delete it"
            )
    else:
        runs.create_run(
            out,
            inputs=inputs,
            attrs=attrs,
            batch_size=batch_size,
            readouts=[Generate(Generation(max_new_tokens=max_new_tokens)).stored(oracle.model)],
        )
    done = runs.committed_mask(out)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        if done[start:stop].all():
            continue
        chunk = acts[start:stop]
        patches = [oracle.patch(a, prompt.positions) for a in chunk]
        from mechintro.runner import batch_seed

        res = engine.run_batch(
            oracle.model,
            [prompt.input_ids] * len(chunk),
            [[p] for p in patches],
            [engine.Generate(max_new_tokens, temperature, batch_seed(seed, start // batch_size))],
        )
        texts = np.array([_decode(oracle.model, row) for row in res.generated], dtype=object)
        runs.write_batch(
            out,
            start,
            {
                "response_ids": (("trial", "new_token"), res.generated.numpy().astype(np.int32)),
                "response": (("trial",), texts),
                "nonfinite": (("trial",), res.nonfinite.numpy()),
            },
        )
    runs.mark_complete(out)
    return out
