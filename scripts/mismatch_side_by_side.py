"""Side by side with the authors' own code for ``mismatch`` (docs/results.md): every trial of a
mechintro ``mismatch`` run recomputed by Sridharan's functions, and the largest difference in
logit(YES) − logit(NO), the quantity both parts report.

    python scripts/mismatch_side_by_side.py AUTHORS RUN [--n N]

AUTHORS holds their package as ``src/introspection/``, outside this repository:
``__init__.py``, ``hooks.py``, ``steer.py`` and ``utils.py`` from neevparikh/introspection @
b38f0f9 (``git show``, unchanged), and from the fork agastyasridharan/introspection, which cannot
be fetched whole here, ``types.py`` (@ 43a8041), ``logit_steer.py`` (@ 43a8041) and
``mismatch_steer.py`` (@ d8b5e0b) transcribed from the stored files up to the functions this
script calls (their ``run_*_experiment``, ``parse_args`` and ``main`` left out), and the two
question lists of ``constants.py`` (@ 43a8041).

Called, unmodified: ``logit_steer.build_detection_messages``, ``build_factual_messages``,
``prepare_prompt`` (their chat template call, tokenisation and ``steer.compute_injection_index``),
``resolve_yes_no_tokens``, ``extract_logit_diffs`` and ``run_logit_interventions`` (their
``steer.build_batched_addends`` and ``hooks.register_batched_intervention_hooks``), and
``mismatch_steer.build_mismatch_messages``. The factual questions are their
``FACTUAL_NO_QUESTIONS``.

Adaptations, all in model loading and inputs: the model is the run's, loaded by
``mechintro.load_model`` (float32 on CPU; their ``utils.load_model`` reads the Hub); the vectors
are the run's own (``injected_vector``, one per trial: the concept's, the partner's or the random
direction) handed to their code as ``{name: {layer: vector}}`` instead of the ``.pt`` file of
their ``generate_steering_vectors``; each trial is one request (batch 1) rather than their
per-concept batches of the same prompt, which the hook adds to row by row; the YES / NO tokens are
resolved by their rule on the detection prompt (score part) and on the first named concept's
prompt (mismatch part), as their two scripts do.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path

import numpy as np
import torch

from mechintro.cli import script_main
from mechintro.errors import MechintroError


def _strs(x) -> np.ndarray:
    return np.array([str(v) for v in np.asarray(x.values)], dtype=object)


def _messages(logit_steer, mismatch_steer, part: str, question: str, concept: str):
    if part == "mismatch":
        return mismatch_steer.build_mismatch_messages(concept)
    if question == "detection":
        return logit_steer.build_detection_messages()
    return logit_steer.build_factual_messages(question)


def theirs(authors: Path, ds, model, rows: list[int]) -> tuple[np.ndarray, dict[str, tuple]]:
    """Their logit(YES) − logit(NO) for each trial in ``rows``, and the token pair per part."""
    sys.path.insert(0, str(authors / "src"))
    from introspection import logit_steer, mismatch_steer
    from introspection.types import BatchedInterventionRequest

    hf, tok, device = model.hf, model.tokenizer, model.device
    part, question, concept = _strs(ds.part), _strs(ds.question), _strs(ds.concept)
    cond, layer = _strs(ds.condition), np.asarray(ds.inject_layer.values)
    strength, vec = np.asarray(ds.strength.values), np.asarray(ds.injected_vector.values)
    tokens = {}
    for p in sorted(set(part)):
        i = int(np.flatnonzero(part == p)[0])
        first = logit_steer.prepare_prompt(
            tok, device, _messages(logit_steer, mismatch_steer, p, question[i], concept[i])
        )
        with contextlib.redirect_stdout(io.StringIO()):  # their report of the variants
            tokens[p] = logit_steer.resolve_yes_no_tokens(tok, hf, first)
    out = np.full(len(rows), np.nan)
    for j, i in enumerate(rows):
        prompt = logit_steer.prepare_prompt(
            tok, device, _messages(logit_steer, mismatch_steer, part[i], question[i], concept[i])
        )
        yes, no = tokens[part[i]]
        if cond[i] == "none":
            r = logit_steer.extract_logit_diffs(hf, prompt, 1, yes, no)
        else:
            L = int(layer[i])
            vectors = {"v": {L: torch.tensor(vec[i], dtype=torch.float32)}}
            req = [BatchedInterventionRequest("v", [L], float(strength[i]), str(L))]
            r = logit_steer.run_logit_interventions(hf, prompt, vectors, req, yes, no, False, None)
        out[j] = r[0]["logit_diff"]
    return out, tokens


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("authors", type=Path, help="folder holding their src/introspection/")
    p.add_argument("run", help="a mechintro mismatch run")
    p.add_argument("--n", type=int, default=0, help="only the first N trials (default: all)")
    args = p.parse_args()
    if not (args.authors / "src" / "introspection" / "logit_steer.py").exists():
        raise MechintroError(
            f"{args.authors}/src/introspection/logit_steer.py does not exist: assemble their "
            "package there as this script's docstring says"
        )
    from mechintro.experiments import mismatch as MM
    from mechintro.models import load_model
    from mechintro.runs import open_run

    ds = open_run(args.run)
    if ds.attrs.get("experiment") != "mismatch":
        raise MechintroError(
            f"{args.run} is a {ds.attrs.get('experiment')} run: give a mismatch run"
        )
    model = load_model(ds.attrs["model"])
    rows = list(range(ds.sizes["trial"]))[: args.n or None]
    ours = MM.logit_diff(ds)[rows]
    with torch.no_grad():
        their, tokens = theirs(args.authors, ds, model, rows)
    labels, ids = _strs(ds.answer_label), np.asarray(ds.answer_id.values)
    logp = np.asarray(ds.answer_logprobs.values)
    first = int(np.flatnonzero(_strs(ds.condition) == "none")[0])
    mine = tuple(
        int(ids[np.flatnonzero(labels == k)[np.argmax(logp[first, labels == k])]])
        for k in ("yes", "no")
    )
    d = np.abs(their - ours)
    cond = _strs(ds.condition)[rows]
    print(f"{ds.attrs['model']}, {len(rows)} trials of {args.run}")
    print(f"their YES/NO token ids per part {tokens}; mechintro's {mine}")
    for c in sorted(set(cond)):
        k = cond == c
        print(f"  {c:<12} {k.sum():3d} trials: max |Δ| {d[k].max():.2e}")
    same = int((np.sign(their) == np.sign(ours)).sum())
    print(
        f"largest |Δ logit(YES) − logit(NO)| {d.max():.2e} (median {np.median(d):.2e}); "
        f"YES/NO choice the same in {same} of {len(rows)}"
    )
    return 0


if __name__ == "__main__":
    script_main(main)
