"""What a run reads: readouts that own their stored variables.

A readout says three things, and the runner (:func:`mechintro.runner.execute`) asks nothing
else of it: what it stores (:meth:`Readout.stored`: its variables, their dims, dtype and fill,
and the coordinates they need, :meth:`Readout.coords`), what the engine reads for it in a batch
(:meth:`Readout.reads`: :class:`mechintro.engine.NextToken`, :class:`~mechintro.engine.Generate`
or :class:`~mechintro.engine.Resid`), and how that batch's :class:`~mechintro.engine.BatchResult`
fills its variables (:meth:`Readout.fill`). The store keeps the run's readouts as its
``readouts`` attribute, from which :func:`mechintro.runs.validate` derives the variables to
expect; runs made before it name a ``mode`` instead (:data:`mechintro.runs.LEGACY_MODES`).

:class:`NextToken`, :class:`Generate` and :class:`Resid` are the kit's readouts; a new one is a
subclass of :class:`Readout` (docs/extending.md, "A new readout").
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

from mechintro import engine, runs
from mechintro.models import Model

if TYPE_CHECKING:  # never imported at run time: the runner imports this module
    from mechintro.runner import Answers, Generation, Trial

Outputs = dict[str, tuple[tuple[str, ...], np.ndarray]]
"""A batch's stored values: variable name → (dims, values with one row per trial)."""


def batch_seed(seed: int, batch_index: int) -> int:
    """The seed of batch ``batch_index`` of a run seeded with ``seed``."""
    digest = hashlib.sha256(f"{seed}:{batch_index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclass(frozen=True, eq=False)
class Batch:
    """Trials ``start:stop`` of batch ``index`` of a run (the whole batch, or the part of it
    that fits in memory), as a readout sees them."""

    model: Model
    trials: Sequence[Trial]
    """every trial of the run"""
    index: int
    start: int
    stop: int
    batch_size: int
    seed: int
    """the run's seed (:func:`batch_seed` gives this batch's)"""

    @property
    def chunk(self) -> Sequence[Trial]:
        """The trials this batch reads."""
        return self.trials[self.start : self.stop]

    @property
    def whole(self) -> tuple[int, int]:
        """The trials of the whole batch ``index`` (``chunk`` may be a part of it)."""
        first = self.index * self.batch_size
        return first, min(first + self.batch_size, len(self.trials))

    @property
    def width(self) -> int:
        """The run's prompt width (the longest prompt; shorter ones are left-padded)."""
        return max(len(t.prompt) for t in self.trials)


class Readout(ABC):
    """What a run reads and stores; see the module docstring."""

    name: ClassVar[str]
    """stored in the run's ``readouts`` attribute"""

    @abstractmethod
    def stored(self, model: Model) -> runs.StoredReadout:
        """The variables this readout stores on ``model`` (every extent fixed before the run)."""

    def coords(self, model: Model) -> dict[str, object]:
        """Coordinates written with the inputs that :meth:`stored` names (none by default)."""
        return {}

    @abstractmethod
    def reads(self, batch: Batch) -> list[engine.Readout]:
        """What the engine reads for this readout in ``batch``."""

    @abstractmethod
    def fill(self, batch: Batch, result: engine.BatchResult) -> Outputs:
        """This readout's variables for the trials of ``batch``, from the engine's result."""


@dataclass(frozen=True, eq=False)
class NextToken(Readout):
    """The next-token log-probabilities of the ``answers`` (single tokens) at the last prompt
    position: ``answer_logprobs`` (trial, answer), with the coordinates ``answer`` (the
    token's text), ``answer_label`` and ``answer_id``."""

    answers: Answers
    name: ClassVar[str] = "next_token"

    def stored(self, model: Model) -> runs.StoredReadout:
        n = len(self.answers.resolve(model.tokenizer)[2])
        variable = runs.Variable(("trial", "answer"), "float32", np.nan, (n,))
        return runs.StoredReadout(
            self.name, {"answer_logprobs": variable}, ("answer", "answer_label")
        )

    def coords(self, model: Model) -> dict[str, object]:
        texts, labels, token_ids = self.answers.resolve(model.tokenizer)
        return {
            "answer": np.array(texts, dtype=object),
            "answer_label": ("answer", np.array(labels, dtype=object)),
            "answer_id": ("answer", np.array(token_ids, dtype=np.int64)),
        }

    def reads(self, batch: Batch) -> list[engine.Readout]:
        return [engine.NextToken(tuple(self.answers.resolve(batch.model.tokenizer)[2]))]

    def fill(self, batch: Batch, result: engine.BatchResult) -> Outputs:
        assert result.answer_logprobs is not None  # the engine's NextToken fills it
        logprobs = result.answer_logprobs.numpy().astype(np.float32)
        return {"answer_logprobs": (("trial", "answer"), logprobs)}


@dataclass(frozen=True, eq=False)
class Generate(Readout):
    """Sampled tokens: ``response_ids`` (trial, new_token; ``-1`` after the end of sequence and
    after a trial's own ``max_new_tokens``) and their text, ``response``. Each batch samples
    from its own seed (:func:`batch_seed`); a part of a batch (split to fit in memory) samples
    from the whole batch's random stream at its own rows, so it draws what it would have drawn
    in the whole batch."""

    generation: Generation
    name: ClassVar[str] = "generate"

    def stored(self, model: Model) -> runs.StoredReadout:
        most = self.generation.max_new_tokens
        variables = {
            "response_ids": runs.Variable(("trial", "new_token"), "int32", -1, (most,)),
            # text: about 12 bytes per token (16 per token with the ids, as before readouts)
            "response": runs.Variable(("trial",), "object", "", text_bytes=12 * most),
        }
        return runs.StoredReadout(self.name, variables)

    def _steps(self, batch: Batch) -> int:
        # A batch whose trials all stop early (their own max_new_tokens) generates only that
        # far; the step count is the whole batch's, so a part of it runs the same loop.
        most = self.generation.max_new_tokens
        first, last = batch.whole
        return max(min(t.max_new_tokens or most, most) for t in batch.trials[first:last])

    def reads(self, batch: Batch) -> list[engine.Readout]:
        first, last = batch.whole
        whole = (batch.start, batch.stop) == (first, last)
        rows_of = None if whole else (batch.start - first, last - first)
        g = self.generation
        return [
            engine.Generate(
                self._steps(batch), g.temperature, batch_seed(batch.seed, batch.index),
                top_k=g.top_k, top_p=g.top_p, rows_of=rows_of,
            )
        ]  # fmt: skip

    def fill(self, batch: Batch, result: engine.BatchResult) -> Outputs:
        chunk, steps = batch.chunk, self._steps(batch)
        ids = np.full((len(chunk), self.generation.max_new_tokens), -1, dtype=np.int32)
        assert result.generated is not None  # the engine's Generate fills it
        ids[:, :steps] = result.generated.numpy()
        for row, t in enumerate(chunk):
            if t.max_new_tokens is not None:
                ids[row, t.max_new_tokens :] = -1
        texts = [
            batch.model.tokenizer.decode([t for t in row if t >= 0], skip_special_tokens=True)
            for row in ids.tolist()
        ]
        return {
            "response_ids": (("trial", "new_token"), ids),
            "response": (("trial",), np.array(texts, dtype=object)),
        }


_TORCH_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass(frozen=True, eq=False)
class Resid(Readout):
    """The residual stream after the blocks ``layers`` (``None``: every one) over the prompt,
    as ``dtype`` (bfloat16 kept as its bits), from prompt position ``start`` of the run's
    left-padded width (the earlier positions stay zeros): ``resid`` (trial, layer, pos,
    d_model). The runner adds it when the config records residuals."""

    dtype: str = "float16"
    layers: tuple[int, ...] | None = None
    start: int = 0
    name: ClassVar[str] = "resid"

    def stored(self, model: Model) -> runs.StoredReadout:
        n = model.n_layers if self.layers is None else len(self.layers)
        dims = ("trial", "layer", "pos", "d_model")
        # the pos extent is the run's; the store allocates resid itself, chunked by layer
        variable = runs.Variable(dims, self.dtype, 0, (n, 0, model.d_model))
        return runs.StoredReadout(self.name, {"resid": variable})

    def reads(self, batch: Batch) -> list[engine.Readout]:
        return [engine.Resid(_TORCH_DTYPES[self.dtype])]

    def fill(self, batch: Batch, result: engine.BatchResult) -> Outputs:
        assert result.resid is not None  # the engine's Resid fills it
        stored_dtype = runs.stored_resid_dtype(self.dtype)
        kept = result.resid[:, list(self.layers)] if self.layers is not None else result.resid
        if kept.dtype != _TORCH_DTYPES[self.dtype]:
            raise AssertionError(f"the engine returned {kept.dtype} residuals")
        if self.dtype == "bfloat16":  # kept as its bits: numpy has no bfloat16
            kept = kept.view(torch.int16)
        values = kept.numpy().view(stored_dtype)
        n, width = len(batch.chunk), batch.width
        resid = np.zeros((n, values.shape[1], width, batch.model.d_model), dtype=stored_dtype)
        # left-aligned prompts end at the run's width; positions before start stay zero
        first = max(width - values.shape[2], self.start)
        resid[:, :, first:] = values[:, :, values.shape[2] - (width - first) :]
        return {"resid": (("trial", "layer", "pos", "d_model"), resid)}


def check_reads(readouts: Sequence[Readout], batch: Batch) -> None:
    """Refuse, before anything is written, readouts that cannot declare what they store on
    this model, or that the engine cannot read in one batch (two next-token or generation
    readouts)."""
    from mechintro.errors import MechintroError

    for readout in readouts:
        readout.stored(batch.model)  # a readout refuses a bad setting here, in one line
    reads = [r for readout in readouts for r in readout.reads(batch)]
    if sum(isinstance(r, engine.NextToken | engine.Generate) for r in reads) > 1:
        names = ", ".join(r.name for r in readouts)
        raise MechintroError(
            f"readouts {names} each read the next token: a run reads one NextToken or one "
            "Generate (and Resid); split it into two runs"
        )
    if not reads:
        raise MechintroError("the run reads nothing: give a readout, or record residual streams")
