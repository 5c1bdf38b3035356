"""Activation Oracles (Karvonen, Chua, …, Evans, Marks 2025, arXiv 2512.15674): ask a model, in
words, about an activation.

An oracle prompt is a user turn ``"Layer: L\\n" + " ?" × k + " \\n" + question``, rendered with the
model's chat template. The ``k`` activations (read from layer ``L`` of some earlier forward pass)
are written into the residual stream at the ``" ?"`` placeholders at the output of an early block
(layer 1) as a norm-matched addition ``h ← h + ‖h‖·v/‖v‖·c`` with ``c = 1`` — the format, the layer
and the coefficient of the authors' code (``adamkarvonen/activation_oracles``,
``nl_probes/utils/dataset_utils.py`` and ``steering_hooks.py``). An *oracle* is the same model
LoRA-finetuned to answer such questions (:mod:`mechintro.oracle.train`); the untrained model asked
the same way, and :func:`describe` (a Patchscopes identity readout), are the zero-training
baselines.

Every run here keeps its residual stream, so :func:`ask_run` asks an oracle about any saved
trial after the fact and stores the answers as a run of their own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from mechintro import engine
from mechintro.errors import MechintroError
from mechintro.models import Model
from mechintro.prompts import render_chat, tokenize

log = logging.getLogger(__name__)

PLACEHOLDER = " ?"
INJECT_LAYER = 1
COEFFICIENT = 1.0
LAYER_PERCENTS = (25, 50, 75)
YES_NO = "Answer with 'Yes' or 'No' only. "
ORACLE_KEY = "activation_oracle"


def source_layer(model: Model, percent: float) -> int:
    """The layer at ``percent`` of the model's depth (the code's ``layer_percent_to_layer``)."""
    return int(model.n_layers * percent / 100)


@dataclass(frozen=True)
class OraclePrompt:
    """A rendered oracle prompt: its text, token ids and the placeholder token positions."""

    text: str
    input_ids: tuple[int, ...]
    positions: tuple[int, ...]


def oracle_prompt(
    tokenizer: object, question: str, *, layer: int, n_positions: int
) -> OraclePrompt:
    """Render ``question`` as an oracle prompt for ``n_positions`` activations from ``layer``.

    The placeholders' positions are found through the tokenizer's character offsets (the token
    that holds each ``"?"``), so tokenizers that split ``" ?"`` in two work too.
    """
    if not question.strip():
        raise MechintroError(
            "the question is empty: ask something, e.g. --question 'What is this about?'"
        )
    if n_positions < 1:
        raise MechintroError("an oracle prompt needs at least one activation")
    head = f"Layer: {layer}\n"
    content = head + PLACEHOLDER * n_positions + " \n" + question
    text = render_chat(tokenizer, [{"role": "user", "content": content}])
    start = text.index(content) + len(head)
    prompt = tokenize(tokenizer, text)
    marks = [start + len(PLACEHOLDER) * k + len(PLACEHOLDER) - 1 for k in range(n_positions)]
    positions = []
    for m in marks:
        hits = [i for i, (a, b) in enumerate(prompt.offsets) if a <= m < b]
        if not hits:
            raise MechintroError(
                "the tokenizer dropped an oracle placeholder: "
                "this model's tokenizer cannot hold the prompt"
            )
        positions.append(hits[0])
    if len(set(positions)) != n_positions:
        raise MechintroError(
            "two oracle placeholders fell into one token: this tokenizer merges ' ?' runs"
        )
    return OraclePrompt(text, prompt.input_ids, tuple(positions))


@dataclass(frozen=True, eq=False)
class Oracle:
    """A model that reads activations: ``model`` (the base model with the oracle's LoRA merged, or
    the base model itself when untrained), ``base_weights_sha256`` (what activations it reads
    must come from) and ``record`` (the training record; empty when untrained)."""

    model: Model
    base_weights_sha256: str
    record: dict
    inject_layer: int = INJECT_LAYER
    coefficient: float = COEFFICIENT

    @property
    def trained(self) -> bool:
        return bool(self.record)


def untrained(model: Model) -> Oracle:
    """The base model asked in the oracle format with no training: the zero-training baseline."""
    return Oracle(model=model, base_weights_sha256=model.weights_sha256, record={})


def load(model: Model, path: str | Path) -> Oracle:
    """Load the oracle at ``path`` onto ``model`` (refused unless it was trained on these
    weights)."""
    from mechintro import training

    path = Path(path)
    if not path.exists():
        raise MechintroError(
            f"oracle {path} does not exist: train one with `mechintro oracle train`"
        )
    record = training.read_training(path)
    if ORACLE_KEY not in record:
        raise MechintroError(
            f"{path} is an adapter but not an activation "
            "oracle: train one with `mechintro oracle train`"
        )
    merged = training.apply_adapter(model, path)
    settings = record[ORACLE_KEY]
    return Oracle(
        model=merged,
        base_weights_sha256=model.weights_sha256,
        record=record,
        inject_layer=int(settings["inject_layer"]),
        coefficient=float(settings["coefficient"]),
    )


def _as_sets(activations: torch.Tensor, d_model: int) -> torch.Tensor:
    acts = torch.as_tensor(activations).float()
    if acts.ndim == 1:
        acts = acts[None, None]
    elif acts.ndim == 2:
        acts = acts[None]
    if acts.ndim != 3 or acts.shape[-1] != d_model:
        raise MechintroError(
            f"activations of shape {tuple(acts.shape)}: give (d_model,), "
            "(positions, d_model) or (items, positions, d_model) with "
            f"d_model {d_model} (activations of the oracle's base model)"
        )
    if not bool(torch.isfinite(acts).all()) or not bool((acts.norm(dim=-1) > 0).all()):
        raise MechintroError(
            "an activation is zero or not finite: a norm-matched addition needs a direction"
        )
    return acts


def _prompts(
    oracle: Oracle, acts: torch.Tensor, question: str, layer: int
) -> tuple[list[tuple[int, ...]], list[engine.Patch]]:
    p = oracle_prompt(oracle.model.tokenizer, question, layer=layer, n_positions=acts.shape[1])
    patches = [
        engine.Patch(
            vectors=a,
            positions=p.positions,
            layer=oracle.inject_layer,
            mode="add",
            coefficient=oracle.coefficient,
        )
        for a in acts
    ]
    return [p.input_ids] * len(acts), patches


def ask(
    oracle: Oracle,
    activations: torch.Tensor,
    question: str,
    *,
    layer: int,
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    seed: int = 0,
    batch_size: int = 16,
) -> list[str]:
    """The oracle's answer to ``question`` about each set of activations.

    Args:
        activations: ``(d_model,)``, ``(positions, d_model)`` or ``(items, positions, d_model)``,
            read from layer ``layer`` of the oracle's base model (a run's ``resid``).
        layer: the layer they come from (it is written into the prompt, as in training).
        temperature: 0 is greedy; otherwise seeded sampling.
    """
    acts = _as_sets(activations, oracle.model.d_model)
    oracle.model.check_layer(layer)
    prompts, patches = _prompts(oracle, acts, question, layer)
    answers = []
    for s in range(0, len(prompts), batch_size):
        out = engine.patched_generate(
            oracle.model,
            prompts[s : s + batch_size],
            patches[s : s + batch_size],
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed + s,
        )
        answers += [_decode(oracle.model, row) for row in out.generated]
    return answers


def _decode(model: Model, row: torch.Tensor) -> str:
    ids = [int(t) for t in row.tolist() if t >= 0 and t not in engine._eos_ids(model)]
    return model.tokenizer.decode(ids, skip_special_tokens=True).strip()


def yes_no_ids(tokenizer: object) -> tuple[list[int], list[int]]:
    """Single-token spellings of yes and of no in the vocabulary (``Yes``, `` yes``, …)."""
    vocab = tokenizer.get_vocab()
    ids = {}
    for word in ("Yes", "No"):
        found = []
        for form in (word, word.lower(), " " + word, " " + word.lower()):
            enc = tokenizer(form, add_special_tokens=False)["input_ids"]
            if len(enc) == 1:
                found.append(int(enc[0]))
        if not found and word in vocab:
            found.append(int(vocab[word]))
        if not found:
            raise MechintroError(
                f"'{word}' is not a single token of this tokenizer: "
                "yes/no questions cannot be read as P(yes)"
            )
        ids[word] = sorted(set(found))
    return ids["Yes"], ids["No"]


def p_yes(
    oracle: Oracle, activations: torch.Tensor, question: str, *, layer: int, batch_size: int = 32
) -> np.ndarray:
    """P(yes) / (P(yes) + P(no)) of the first answer token, per set of activations, for a yes/no
    ``question`` (prefixed with the training data's "Answer with 'Yes' or 'No' only.")."""
    acts = _as_sets(activations, oracle.model.d_model)
    oracle.model.check_layer(layer)
    yes, no = yes_no_ids(oracle.model.tokenizer)
    prompts, patches = _prompts(oracle, acts, YES_NO + question, layer)
    out = []
    for s in range(0, len(prompts), batch_size):
        lp = engine.patched_forward(
            oracle.model,
            prompts[s : s + batch_size],
            patches[s : s + batch_size],
            answer_ids=yes + no,
        ).answer_logprobs
        py, pn = torch.logsumexp(lp[:, : len(yes)], -1), torch.logsumexp(lp[:, len(yes) :], -1)
        out.append(torch.sigmoid(py - pn).numpy())
    return np.concatenate(out)


# Patchscopes' entity-description prompt (Ghandeharioun et al. 2024, §4): few-shot "subject:
# description" lines, the activation patched over the last "x".
PATCHSCOPE_PROMPT = (
    "Syria: Country in the Middle East\n"
    "Leonardo DiCaprio: American actor\n"
    "Samsung: South Korean multinational company\n"
    "x"
)


def describe(
    model: Model,
    activation: torch.Tensor,
    *,
    layer: int,
    max_new_tokens: int = 16,
    batch_size: int = 16,
) -> list[str]:
    """Untrained readout (Patchscopes / SelfIE style): replace the residual stream of the last
    token of :data:`PATCHSCOPE_PROMPT` at ``layer`` with each activation and read the model's
    greedy continuation, a description of what the activation encodes. No training, no chat
    template (the prompt is plain text, as in the paper).

    ``activation``: ``(d_model,)`` or ``(items, d_model)`` from layer ``layer`` of ``model``.
    """
    acts = torch.as_tensor(activation).float().reshape(-1, activation.shape[-1])
    if acts.shape[-1] != model.d_model:
        raise MechintroError(
            f"activation of size {acts.shape[-1]}; {model.name} "
            f"has d_model {model.d_model}: read it from this model"
        )
    model.check_layer(layer)
    ids = tuple(tokenize(model.tokenizer, PATCHSCOPE_PROMPT).input_ids)
    answers = []
    for s in range(0, len(acts), batch_size):
        chunk = acts[s : s + batch_size]
        patches = [
            engine.Patch(vectors=a[None], positions=(len(ids) - 1,), layer=layer, mode="replace")
            for a in chunk
        ]
        out = engine.patched_generate(
            model,
            [ids] * len(chunk),
            patches,
            max_new_tokens=max_new_tokens,
            temperature=0.0,
            seed=0,
        )
        answers += [_decode(model, row).split("\n")[0].strip() for row in out.generated]
    return answers


# --- asking about a saved run --------------------------------------------------------------------


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
            mode="generate",
            max_new_tokens=max_new_tokens,
        )
    done = runs.committed_mask(out)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        if done[start:stop].all():
            continue
        chunk = acts[start:stop]
        patches = [
            engine.Patch(
                vectors=a,
                positions=prompt.positions,
                layer=oracle.inject_layer,
                mode="add",
                coefficient=oracle.coefficient,
            )
            for a in chunk
        ]
        from mechintro.runner import batch_seed

        res = engine.patched_generate(
            oracle.model,
            [prompt.input_ids] * len(chunk),
            patches,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=batch_seed(seed, start // batch_size),
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


__all__ = [
    "COEFFICIENT",
    "INJECT_LAYER",
    "LAYER_PERCENTS",
    "PLACEHOLDER",
    "Oracle",
    "OraclePrompt",
    "ask",
    "ask_run",
    "describe",
    "load",
    "oracle_prompt",
    "p_yes",
    "run_activations",
    "source_layer",
    "untrained",
    "yes_no_ids",
]
