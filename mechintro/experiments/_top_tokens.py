"""A readout of one's own: the ``k`` most likely next tokens at the last prompt position.

The worked example of docs/extending.md ("A new readout"): one class, no other module edited.
A run that reads it (``execute(..., readouts=[TopTokens(k=5)])``, or an experiment's
``readouts``) stores ``top_token_ids`` and ``top_logprobs``, both (trial, rank), and lists
``top_tokens`` in its ``readouts`` attribute, so ``open_run`` expects them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from mechintro import engine, runs
from mechintro.errors import MechintroError
from mechintro.models import Model
from mechintro.reading import Batch, Outputs, Readout


@dataclass(frozen=True, eq=False)
class TopTokens(Readout):
    """The ``k`` most likely next tokens at the last prompt position, most likely first:
    ``top_token_ids`` (trial, rank) and their log-probabilities ``top_logprobs`` (trial, rank),
    read from the engine's next-token distribution over the whole vocabulary.

    Example::

        out = execute(model, trials, "top.zarr", config={"k": 5}, readouts=[TopTokens(k=5)])
        mi.open_run(out).top_token_ids.values[0]  # the 5 likeliest next tokens of trial 0
    """

    k: int = 5
    name: ClassVar[str] = "top_tokens"

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise MechintroError(f"TopTokens k={self.k!r}: give a positive number of tokens")

    def stored(self, model: Model) -> runs.StoredReadout:
        if self.k > model.d_vocab:
            raise MechintroError(
                f"TopTokens k={self.k} is more than {model.name}'s {model.d_vocab} tokens: give "
                "fewer"
            )
        shape = (self.k,)
        return runs.StoredReadout(
            self.name,
            {
                "top_token_ids": runs.Variable(("trial", "rank"), "int64", -1, shape),
                "top_logprobs": runs.Variable(("trial", "rank"), "float32", np.nan, shape),
            },
        )

    def reads(self, batch: Batch) -> list[engine.Readout]:
        return [engine.NextToken(tuple(range(batch.model.d_vocab)))]

    def fill(self, batch: Batch, result: engine.BatchResult) -> Outputs:
        assert result.answer_logprobs is not None  # the engine's NextToken fills it
        values, ids = result.answer_logprobs.float().topk(self.k, dim=1)
        return {
            "top_token_ids": (("trial", "rank"), ids.numpy().astype(np.int64)),
            "top_logprobs": (("trial", "rank"), values.numpy().astype(np.float32)),
        }
