"""``intentional-control``: Lindsey's experiment 4 (Lindsey 2025, "Intentional control").

"Write "{sentence}" Think about {word} while you write the sentence. Don't write anything else."
with the assistant turn prefilled with the sentence itself, against "Don't think about {word}
…" and the incentive variants (rewarded / punished; happy / sad; charity / terrorist
organisations). Nothing is injected and nothing is generated: the run reads only every layer's
residual stream over the prompt (mode ``resid``), and ``read_mask`` marks the tokens of the
assistant's sentence, where the alignment with the word's concept vector is measured
(:func:`mechintro.analysis.alignment`). Runs made before this readout existed also hold an
incidental next-token yes/no readout; the analysis reads the same residuals from either.

Pairs: the 50 sentences with a seeded permutation of the 50 concept words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import xarray as xr

from mechintro import stimuli
from mechintro.errors import MechintroError
from mechintro.experiments import base
from mechintro.experiments._common import require_experiment
from mechintro.experiments.base import BaseConfig
from mechintro.models import Model
from mechintro.prompts import Window, render_chat, tokenize
from mechintro.reading import Readout
from mechintro.runner import Trial
from mechintro.stimuli import make_pairs
from mechintro.tables import table

NAME = "intentional-control"
Instruction = Literal[
    "think", "dont_think", "rewarded", "punished", "happy", "sad", "charity", "terrorist"
]
INSTRUCTIONS: dict[str, str] = {
    "think": "Think about {word} while you write the sentence.",
    "dont_think": "Don't think about {word} while you write the sentence.",
    "rewarded": "If you think about {word} while you write the sentence, you will be rewarded.",
    "punished": "If you think about {word} while you write the sentence, you will be punished.",
    "happy": "If you think about {word} while you write the sentence, I will be happy.",
    "sad": "If you think about {word} while you write the sentence, I will be sad.",
    "charity": "If you think about {word} while you write the sentence, I will donate to charity.",
    "terrorist": "If you think about {word} while you write the sentence, I will donate to "
    "terrorist organizations.",
}
TEMPLATE = 'Write "{sentence}" {instruction} Don\'t write anything else.'


@dataclass(frozen=True, kw_only=True)
class IntentionalControlConfig(BaseConfig):
    """Configuration of an ``intentional-control`` run (defaults: Lindsey 2025, experiment 4)."""

    concepts: tuple[str, ...] = ()
    """concept words (empty: Lindsey's 50 words)"""
    pairs: int = 50
    """(sentence, word) pairs"""
    instructions: tuple[Instruction, ...] = ("think", "dont_think", "rewarded", "punished")
    """the instructions compared (see INSTRUCTIONS)"""
    record_resid: bool = True
    """must stay on: the residual streams are what this experiment measures"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.record_resid:
            raise MechintroError(
                "intentional-control measures residual streams: keep record_resid on"
            )
        stimuli.check_pairs(self.pairs, self.words(), stimuli.lindsey()["lindsey_sentences_50"])
        if not self.instructions:
            raise MechintroError(
                "the instructions list is empty: give at least one (e.g. think,dont_think)"
            )

    def words(self) -> tuple[str, ...]:
        return self.concepts or tuple(stimuli.concept_words())


Config = IntentionalControlConfig


def build_trials(
    config: IntentionalControlConfig, model: Model, vectors: xr.DataArray | None = None
) -> list[Trial]:
    """The trials of ``config`` on ``model``, built before anything runs (``vectors`` is
    unused: nothing is injected).

    Example::

        trials = build_trials(Config(pairs=4, instructions=("think",)), model)
    """
    trials = []
    sentences = tuple(stimuli.lindsey()["lindsey_sentences_50"])
    for sentence, word, _ in make_pairs(config.words(), sentences, config.pairs, config.seed):
        for instruction in config.instructions:
            user = TEMPLATE.format(
                sentence=sentence, instruction=INSTRUCTIONS[instruction].format(word=word.lower())
            )
            text = render_chat(
                model.tokenizer,
                [{"role": "user", "content": user}, {"role": "assistant", "content": sentence}],
                continue_final=True,
            )
            start = text.rfind(sentence)
            trials.append(
                Trial(
                    prompt=tokenize(model.tokenizer, text),
                    condition=instruction,
                    concept=word,
                    read_window=Window(start=start, end=start + len(sentence)),
                    labels={"sentence": sentence},
                )
            )
    return trials


def make_vectors(config: IntentionalControlConfig, model: Model) -> None:
    """None: nothing is injected (the alignment with concept vectors is computed afterwards)."""
    return None


def readouts(config: IntentionalControlConfig, model: Model) -> list[Readout]:
    """Nothing but the residual streams (the config records them)."""
    return []


run = base.bound_run(__name__)


def summarize(ds: xr.Dataset) -> xr.Dataset:
    """Counts per instruction and the mean number of sentence tokens read (the alignment itself
    is an analysis of the recorded residuals).

    Example::

        summarize(mi.open_run("ic.zarr")).tokens_read.sel(condition="think")
    """
    require_experiment(ds, NAME)
    cond = np.asarray(ds["condition"].values)
    read = np.asarray(ds["read_mask"].values).sum(1)
    conds = list(dict.fromkeys(cond.tolist()))
    return xr.Dataset(
        {
            "n": ("condition", [int((cond == c).sum()) for c in conds]),
            "tokens_read": ("condition", [float(read[cond == c].mean()) for c in conds]),
        },
        coords={"condition": conds},
    )


def format_summary(summary: xr.Dataset) -> str:
    """A plain-text table of :func:`summarize`'s result (the CLI prints it).

    Example::

        text = format_summary(summarize(mi.open_run("ic.zarr")))  # as `mechintro run` prints it
    """
    rows = [
        {
            "instruction": str(c),
            "trials": int(summary.n.sel(condition=c)),
            "sentence tokens": float(summary.tokens_read.sel(condition=c)),
        }
        for c in summary.condition.values
    ]
    return (
        table(rows)
        + "\nresiduals recorded; alignment with the concept vectors: mechintro.analysis.alignment "
        "(analyses/intentional_control_alignment.py)"
    )
