"""``self-prediction``: Binder et al. 2024, "Looking Inward"
(code: felixbinder/introspection_self_prediction).

One run holds, for every item of every task, the model's **object-level** answer at temperature 0
(``condition="object"``) and, for every property of the task, its answer to the **hypothetical**
question in a fresh context (``condition="hypothetical"``), both without chain of thought. Labels:
``task``, ``split`` (train / test, the paper's split), ``item``, ``property`` and ``item_prompt``
(the object-level prompt's text, so runs of different models can be matched item by item).
Answers are greedy and cut at ``max_new_tokens`` (object) / ``hypothetical_tokens``: every
property reads only the beginning of an answer. A **calibration** run samples instead:
``samples`` answers per prompt at ``temperature`` (label ``sample``), usually for one task and
``properties`` (the paper: animals, second character, 20 samples at temperature 1), scored by
:func:`mechintro.looking_inward.score.calibration`.

With ``record_resid`` the residual stream of every layer at the hypothetical prompt's last token
is stored in the run's ``hypothetical_resid`` group
(:func:`mechintro.looking_inward.tasks.load_hypothetical_resid`): the state the model answers
from, for the probes of :func:`mechintro.looking_inward.score.probe`. It is computed after the
trials by a second forward pass and written with :func:`mechintro.runs.write_group` (the store's
lock, its digests in the manifest, checked by ``mechintro verify``), not as a per-trial output:
it covers the hypothetical trials only, at one position.

``adapter`` evaluates a finetuned model: a LoRA adapter saved by ``mechintro train``, merged into
the weights before the run (:func:`mechintro.training.apply_adapter`); ``"A,B"`` merges B, trained
on the model with A merged, after A (the behaviour-change test).

Tasks, prompts and properties: :mod:`mechintro.looking_inward.tasks` (shared with the scoring
and the finetuning). Scoring and the self/cross comparisons: :mod:`mechintro.looking_inward.score`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from mechintro import engine, runs
from mechintro.errors import MechintroError
from mechintro.experiments._common import require_experiment
from mechintro.experiments.base import BaseConfig
from mechintro.looking_inward import score as scoring
from mechintro.looking_inward import tasks as sp
from mechintro.models import Model
from mechintro.prompts import render_chat, tokenize
from mechintro.reading import Generate, Readout
from mechintro.runner import Generation, Shard, Trial, execute
from mechintro.tables import table

NAME = sp.NAME
RESID_GROUP = sp.RESID_GROUP


@dataclass(frozen=True, kw_only=True)
class SelfPredictionConfig(BaseConfig):
    """Configuration of a ``self-prediction`` run (templates and split: Binder et al.
    2024; docs/looking-inward.md)."""

    record_resid: bool = True
    """record every layer's residual at each hypothetical prompt's last token"""
    tasks: tuple[str, ...] = ()
    """tasks to run (empty: all 13)"""
    items: int = 30
    """items per task (the hand-written kinds have 8-16 items and take all of them)"""
    max_new_tokens: int = 16
    """tokens of each object-level answer (properties read its first three words)"""
    hypothetical_tokens: int = 8
    """tokens of each hypothetical (self-prediction) answer"""
    hypothetical_splits: tuple[str, ...] = ("train", "test")
    """task splits asked the hypothetical questions (("test",): held-out tasks only)"""
    properties: tuple[str, ...] = ()
    """hypothetical questions asked (empty: each task's all)"""
    samples: int = 1
    """answers per prompt; > 1 with temperature > 0 is a calibration run"""
    temperature: float = 0.0
    """sampling temperature (0: greedy)"""
    adapter: str = ""
    """LoRA adapter directories saved by `mechintro train`, comma-separated, merged in order"""

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = [t for t in self.tasks if t not in sp.TASKS]
        if unknown:
            raise MechintroError(
                f"unknown task(s) {', '.join(unknown)}: choose from {', '.join(sp.TASKS)}"
            )
        if not self.hypothetical_splits or set(self.hypothetical_splits) - {"train", "test"}:
            raise MechintroError(
                "hypothetical_splits must be train and/or test, got "
                f"{','.join(self.hypothetical_splits) or 'nothing'}"
            )
        if (
            self.items < 1
            or self.max_new_tokens < 1
            or self.hypothetical_tokens < 1
            or self.samples < 1
        ):
            raise MechintroError(
                "items, max_new_tokens, hypothetical_tokens and samples must be at least 1"
            )
        known = {p for spec in sp.TASKS.values() for p in spec.properties}
        if set(self.properties) - known:
            raise MechintroError(
                f"unknown propert(ies) {', '.join(sorted(set(self.properties) - known))}: "
                f"choose from {', '.join(sorted(known))}"
            )
        if not 0 <= self.temperature <= 10:
            raise MechintroError(f"temperature must be between 0 and 10, got {self.temperature}")
        if self.samples > 1 and self.temperature == 0:
            raise MechintroError(
                f"samples={self.samples} at temperature 0 would repeat one greedy answer: "
                "set temperature (1 for calibration)"
            )

    def task_names(self) -> tuple[str, ...]:
        return self.tasks or tuple(sp.TASKS)


Config = SelfPredictionConfig


def _trial(
    model: Model,
    item: sp.Item,
    text: str,
    condition: str,
    prop: str,
    max_new_tokens: int | None,
    sample: int,
) -> Trial:
    rendered = render_chat(model.tokenizer, sp.messages(text))  # empty system message
    spec = sp.TASKS[item.task]
    return Trial(
        prompt=tokenize(model.tokenizer, rendered),
        condition=condition,
        labels={
            "task": item.task,
            "split": spec.split,
            "item": item.index,
            "property": prop,
            "item_prompt": item.prompt,
            "matching": item.matching,
            "sample": sample,
        },
        max_new_tokens=max_new_tokens,
    )


def build_trials(
    config: SelfPredictionConfig, model: Model, vectors: xr.DataArray | None = None
) -> list[Trial]:
    """Object-level trials first (one per item), then the hypothetical ones (item × property) of
    the tasks in ``hypothetical_splits`` (object-level answers of every task: training targets);
    each ``samples`` times in a row (label ``sample``). ``vectors`` is unused: nothing is
    injected.

    Example::

        config = Config(tasks=("animals",), items=2, properties=("first_character",))
        trials = build_trials(config, mi.load_model("smollm2-135m"))
        [t.condition for t in trials]   # ['object', 'object', 'hypothetical', 'hypothetical']
    """
    objects, hypotheticals = [], []
    for task in config.task_names():
        predict = sp.TASKS[task].split in config.hypothetical_splits
        props = [
            p for p in sp.TASKS[task].properties if not config.properties or p in config.properties
        ]
        for item in sp.items(task, config.items, config.seed):
            for s in range(config.samples):
                objects.append(_trial(model, item, item.prompt, "object", "", None, s))
            for prop in props if predict else ():
                for s in range(config.samples):
                    hypotheticals.append(
                        _trial(
                            model,
                            item,
                            sp.hypothetical(item, prop),
                            "hypothetical",
                            prop,
                            config.hypothetical_tokens,
                            s,
                        )
                    )
    return objects + hypotheticals


def readouts(config: SelfPredictionConfig, model: Model) -> list[Readout]:
    """The sampled answers, as long as the longer of the object-level and hypothetical ones."""
    most = max(config.max_new_tokens, config.hypothetical_tokens)
    return [Generate(Generation(max_new_tokens=most, temperature=config.temperature))]


def run(
    config: SelfPredictionConfig,
    out: str | Path,
    *,
    model: Model,
    vectors: xr.DataArray | None = None,
    progress: Callable[[int, int], None] | None = None,
    shard: Shard | None = None,
) -> Path:
    """Generate every answer into ``out``, then (``record_resid``) the hypothetical prompts'
    last-token residuals.

    ``vectors`` is unused (nothing is injected). A model finetuned with ``mechintro train`` is
    evaluated by giving its adapter as ``config.adapter`` (merged into ``model`` here).

    Example::

        model = mi.load_model("smollm2-135m")
        run(Config(tasks=("animals", "colors"), items=4), "sp.zarr", model=model)
        text = format_summary(summarize(mi.open_run("sp.zarr")))  # as `mechintro run` prints it
    """
    if shard is not None:
        raise MechintroError("self-prediction runs are not sharded: run it without --shard")
    if config.adapter:
        from mechintro.training import apply_adapter

        for adapter in config.adapter.split(","):
            model = apply_adapter(model, adapter)
    trials = build_trials(config, model)
    out = execute(
        model,
        trials,
        out,
        config=dataclasses.asdict(config),
        readouts=readouts(config, model),
        batch_size=config.batch_size,
        record=False,
        seed=config.seed,
        extra_attrs={"experiment": NAME},
        progress=progress,
    )
    if config.record_resid and not (out / RESID_GROUP).exists():
        _record_last_tokens(model, trials, out, config.batch_size)
    return out


def _record_last_tokens(model: Model, trials: list[Trial], out: Path, batch_size: int) -> None:
    """Every layer's residual at each hypothetical prompt's last token, stored as the run's
    ``hypothetical_resid`` group through :func:`mechintro.runs.write_group`: digested in the
    store's manifest (so ``mechintro verify`` checks it), written whole or not at all."""
    import torch

    index = [i for i, t in enumerate(trials) if t.condition == "hypothetical"]
    chunks = []
    for start in range(0, len(index), batch_size):
        batch = [trials[i].prompt.input_ids for i in index[start : start + batch_size]]
        chunks.append(engine.last_token_resid(model, batch).to(torch.float16).numpy())
    resid = (
        np.concatenate(chunks)
        if chunks
        else np.zeros((0, model.n_layers, model.d_model), np.float16)
    )
    ds = xr.Dataset(
        {"resid": (("trial", "layer", "d_model"), resid)},
        coords={"trial": np.array(index, dtype=np.int64), "layer": np.arange(model.n_layers)},
    )
    runs.write_group(out, RESID_GROUP, ds)


def summarize(ds: xr.Dataset) -> xr.Dataset:
    """The run scored against itself: accuracy per task and property against the mode baseline
    (:func:`mechintro.looking_inward.score.accuracy`).

    Example::

        summary = summarize(mi.open_run("sp.zarr"))
        summary.where(summary.split == "test", drop=True)   # the held-out tasks
    """
    require_experiment(ds, NAME)
    return scoring.accuracy(scoring.score(ds))


def format_summary(summary: xr.Dataset) -> str:
    """:func:`summarize`'s table as text: one row per (split, task, property).

    Example::

        text = format_summary(summarize(mi.open_run("sp.zarr")))  # as `mechintro run` prints it
    """
    rows = []
    for i in range(summary.sizes["cell"]):
        c = summary.isel(cell=i)
        rows.append(
            {
                "split": str(c.split.values),
                "task": str(c.task.values),
                "property": str(c.property.values),
                "n": int(c.n),
                "accuracy": float(c.accuracy),
                "95% CI": f"[{float(c.lo):.3f}, {float(c.hi):.3f}]",
                "mode baseline": float(c.mode_baseline),
                "object compliant": float(c.object_compliance),
                "prediction compliant": float(c.prediction_compliance),
            }
        )
    overall = summary.attrs
    return table(rows) + (
        f"\nheld-out tasks: accuracy {overall['test_accuracy']:.3f} "
        f"[{overall['test_lo']:.3f}, {overall['test_hi']:.3f}] "
        f"vs mode baseline {overall['test_mode_baseline']:.3f}; training tasks: "
        f"{overall['train_accuracy']:.3f} "
        f"vs {overall['train_mode_baseline']:.3f}"
    )
