"""The oracle itself: its prompt (``"Layer: L\\n" + " ?" × k + " \\n" + question``), an
:class:`Oracle` (the model, trained or not, and how activations are written in), :func:`ask`,
:func:`p_yes` and the Patchscopes baseline :func:`describe`. ``mechintro.oracle`` re-exports it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mechintro import engine
from mechintro.errors import MechintroError
from mechintro.models import Model
from mechintro.prompts import render_chat, tokenize

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

    def patch(self, vectors: torch.Tensor, positions: Sequence[int]) -> engine.Patch:
        """``vectors`` (one per position) added at ``positions`` of the oracle's prompt, after its
        injection layer at its coefficient (how the oracle reads activations)."""
        return engine.Patch(
            vectors=vectors,
            positions=positions,
            layer=self.inject_layer,
            mode="add",
            coefficient=self.coefficient,
        )


def untrained(model: Model) -> Oracle:
    """The base model asked in the oracle format with no training: the zero-training baseline."""
    return Oracle(model=model, base_weights_sha256=model.weights_sha256, record={})


def load(model: Model, path: str | Path) -> Oracle:
    """Load the oracle at ``path`` onto ``model`` (refused unless it was trained on these
    weights)."""
    from mechintro import training

    path = Path(path)
    record = training.read_study_adapter(
        path, ORACLE_KEY, "oracle", "an activation oracle", "mechintro oracle train"
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
    patches = [oracle.patch(a, p.positions) for a in acts]
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
    for out in _batches(
        oracle,
        prompts,
        patches,
        batch_size,
        lambda s: engine.Generate(max_new_tokens, temperature, seed + s),
    ):
        answers += [_decode(oracle.model, row) for row in out.generated]
    return answers


def _batches(
    oracle: Oracle,
    prompts: list[tuple[int, ...]],
    patches: list[engine.Patch],
    batch_size: int,
    readout: Callable[[int], engine.Readout],
) -> Iterator[engine.BatchResult]:
    """The oracle run on ``batch_size`` prompts at a time, each with its patch, reading
    ``readout(first prompt's index)``."""
    for s in range(0, len(prompts), batch_size):
        yield engine.run_batch(
            oracle.model,
            prompts[s : s + batch_size],
            [[p] for p in patches[s : s + batch_size]],
            [readout(s)],
        )


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
    for res in _batches(
        oracle, prompts, patches, batch_size, lambda s: engine.NextToken((*yes, *no))
    ):
        lp = res.answer_logprobs
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
        out = engine.run_batch(
            model,
            [ids] * len(chunk),
            [[p] for p in patches],
            [engine.Generate(max_new_tokens, temperature=0.0, seed=0)],
        )
        answers += [_decode(model, row).split("\n")[0].strip() for row in out.generated]
    return answers
