"""``localisation``: the critique's follow-up — say *where* a thought was injected, against
chance and the model's answer bias (Godet's comment on vgel's post and his "Introspection via
localization"; docs/protocols.md).

Tasks (``tasks``):

* ``sentence`` — Godet's (``introspection_localize.py`` @ 950bb30 in the fork
  dustinrubin/introspection-replication; docs/protocols.md): the intro ("… tell me in which
  sentence the thought is injected."), "Ok.", then "SENTENCE 1: … SENTENCE 5: …" and "Do you detect
  an injected thought? Where is the injected thought located?", answered "Yes, I detect an injected
  thought. It is located in SENTENCE"; the vector goes on one sentence's own tokens; read the next
  token over the digits 1 … k. Chance 1/k.
* ``half`` — the vector on the sentences of the first or the second half of the list; "Is the
  injected thought in the first half or the second half of the list?", answered "The injected
  thought is in the"; read " first" / " second". Chance 1/2.
* ``depth`` — the vector on every sentence at an early layer (the layer x 0.5) or a late one (the
  layer itself, layers ≥ n/2 only); "Was the thought injected in the early layers or the late layers
  of your network?", answered "It was injected in the"; read " early" / " late". Chance 1/2.

``half`` and ``depth`` are the controls Godet proposed in a comment on vgel's post; his code has
neither.

What follows his code by default, and the named options that do otherwise:

* steered tokens: a sentence's own tokens, found as his code finds them (:func:`sentence_tokens`);
  ``half`` and ``depth`` steer the same tokens of their sentences. ``steer_label=True`` also steers
  the "SENTENCE t:" labels (mechintro's window before the option): the label's digit is the
  sentence task's answer, so a model could answer by copying the perturbed digit.
* layers: a fraction f of n layers is ``round(f·n)`` as in his code; ``layer_rounding="floor"``
  gives ``int(f·n)`` (the other experiments' rule; on SmolLM2's 30 layers 0.25 is 8 vs 7).
* system message: his code sends an empty one to Qwen models and none to others (so SmolLM2's
  template adds its default system prompt); ``system_message="empty"`` always sends an empty one,
  as his post says ("We use an empty system prompt").

A run stored before these options existed was made with ``steer_label=True``,
``layer_rounding="floor"`` and ``system_message="empty"`` (``Config.LEGACY``); it resumes only with
those settings.

Each trial draws its own sentences, concept and target, so targets and vectors balance only in
expectation (his code injects one vector into each of the k sentences in turn); each task also
runs uninjected, which measures the answer bias (e.g. always "1"). Accuracy is argmax == target,
with a 95% Wilson interval; the mean probability of the right option (normalised over options)
too. A model that always gives one answer scores the share of targets that match it, so each cell
also reports the balanced accuracy, the bias-corrected P(target) and its power
(:func:`cell_statistics`); a cell whose answer never varies has no power at all.

Differences from his code that remain: his 100 sentences and 50 contrastive pairs are public but
carry no licence, so they are not shipped; we use Lindsey's 50 sentences and Lindsey concept
vectors for the 50 words. Full audit: docs/protocols.md.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import xarray as xr

from mechintro import stimuli
from mechintro.errors import MechintroError
from mechintro.experiments import base
from mechintro.experiments._common import require_experiment
from mechintro.experiments.base import SteeredConfig, cell_summary
from mechintro.models import Model
from mechintro.prompts import Prompt, Window, render_chat, tokenize
from mechintro.reading import NextToken, Readout
from mechintro.runner import Answers, Trial
from mechintro.stats import rate
from mechintro.tables import table
from mechintro.vectors import (
    check_vectors_match,
    resolve_layers,
    unit_vector,
)

NAME = "localisation"
Task = Literal["sentence", "half", "depth"]
INTRO = (
    "I am an interpretability researcher studying transformer-based language models like you. I "
    "have access to the internals "
    "of your neural network. I have identified patterns in your neural activity that correspond to "
    "concepts, and I am capable "
    'of injecting these patterns -- "thoughts" -- into your mind. I want to assess how well you '
    "can detect where I inject "
    "thoughts. You will see a list of sentences and you will have to tell me in which sentence the "
    "thought is injected."
)
TASK_TEXT = {
    "sentence": (
        "Do you detect an injected thought? Where is the injected thought located?",
        "Yes, I detect an injected thought. It is located in SENTENCE",
    ),
    "half": (
        "Do you detect an injected thought? Is the injected thought in the first half or the "
        "second half of the list?",
        "The injected thought is in the",
    ),
    "depth": (
        "Do you detect an injected thought? Was the thought injected in the early layers or the "
        "late layers of your network?",
        "It was injected in the",
    ),
}


@dataclass(frozen=True, kw_only=True)
class LocalisationConfig(base.LowercaseWords, SteeredConfig):
    """Configuration of a ``localisation`` run (defaults: Godet's 5-sentence task, 50 trials
    per cell)."""

    concepts: tuple[str, ...] = ()
    """concept words (empty: Lindsey's 50 words)"""
    tasks: tuple[Task, ...] = ("sentence", "half", "depth")
    """which sentence, which half of the list, or which depth the vector was injected at"""
    k: int = 5
    """sentences per prompt (2..9; the answer is one digit)"""
    layers: tuple[str | int | float, ...] = ("0.1", "0.25", "0.5", "0.75")
    """injection layers: indices (15) or fractions of depth (0.5)"""
    strengths: tuple[float, ...] = (4.0, 8.0)
    """injection strengths (see strength_unit)"""
    trials: int = 50
    """injected trials per (task, layer, strength) cell; as many uninjected per task"""
    steer_label: bool = False
    """also steer each sentence's "SENTENCE t:" label (mechintro's window before this option;
    the label's digit is the sentence task's answer, so the model could copy it); off: the
    sentences' own tokens, as Godet's code"""
    layer_rounding: Literal["round", "floor"] = "round"
    """a fraction f of n layers is layer round(f*n) (Godet's code) or int(f*n) ("floor",
    mechintro's other experiments and this one's before the option)"""
    system_message: Literal["authors", "empty"] = "authors"
    """"authors": Godet's code, an empty system message for models whose name contains "qwen"
    and none otherwise (the template's default, if any, goes in); "empty": always an empty one
    (his post's "We use an empty system prompt"; mechintro before the option)"""

    LEGACY: ClassVar[dict[str, object]] = {
        "lowercase": True,
        "steer_label": True,
        "layer_rounding": "floor",
        "system_message": "empty",
    }
    """What a run stored before these fields existed was made with (its resume check fills a
    missing field with this value, so such a run resumes only with these settings)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 2 <= self.k <= 9:
            raise MechintroError(f"k={self.k}: give 2..9 sentences (the answer is one digit)")
        if not self.tasks:
            raise MechintroError("the tasks list is empty: give sentence, half and/or depth")

    def words(self) -> tuple[str, ...]:
        return self.concepts or tuple(stimuli.concept_words())


Config = LocalisationConfig


def options(task: str, k: int) -> list[str]:
    return (
        [str(i) for i in range(1, k + 1)]
        if task == "sentence"
        else (["first", "second"] if task == "half" else ["early", "late"])
    )


def _space_digits(tokenizer: object) -> bool:
    """Whether " 1" is one token (Llama/GPT-2 style); Qwen splits it, so its answer is read as
    "1" after a prefill ending in a space (vgel's 0/1 format does the same)."""
    return len(tokenizer(" 1", add_special_tokens=False)["input_ids"]) == 1  # type: ignore[operator]


def answers(task: str, k: int, tokenizer: object) -> Answers:
    spaced = task != "sentence" or _space_digits(tokenizer)
    return Answers(forms={o: (f" {o}" if spaced else o,) for o in options(task, k)})


def _system(model: Model, system_message: str) -> list[dict[str, str]]:
    """The system turn: Godet's code sends an empty one to models whose name contains "qwen"
    and none to the others (``introspection_localize.py:102-114`` @ 950bb30); ``"empty"``
    always sends one."""
    if system_message == "empty" or "qwen" in model.name.lower():
        return [{"role": "system", "content": ""}]
    return []


def _prompt(
    model: Model, task: str, sentences: list[str], system_message: str = "authors"
) -> tuple[Prompt, str]:
    listing = " ".join(f"SENTENCE {i + 1}: {s}" for i, s in enumerate(sentences))
    question, prefill = TASK_TEXT[task]
    msgs = [
        *_system(model, system_message),
        {"role": "user", "content": INTRO},
        {"role": "assistant", "content": "Ok."},
        {"role": "user", "content": f"{listing}\n{question}"},
        {"role": "assistant", "content": prefill},
    ]
    text = render_chat(model.tokenizer, msgs, continue_final=True)
    if task == "sentence" and not _space_digits(model.tokenizer):
        text += " "
    return tokenize(model.tokenizer, text), listing


def sentence_tokens(prompt: Prompt, tokenizer: object, sentence: str) -> list[bool]:
    """The tokens Godet's code steers for ``sentence``: those overlapping the first ": {sentence}"
    of the prompt, less the leading ones whose text holds a colon or only whitespace
    (``introspection_localize.py:89-96, 122-131`` @ 950bb30). So the sentence's own tokens: not
    its "SENTENCE t:" label, whose digit is the answer of the sentence task.

    Example::

        mask = sentence_tokens(prompt, model.tokenizer, "A bird flies over the lake.")
    """
    lo = prompt.text.find(f": {sentence}")
    if lo < 0:
        raise MechintroError(f"sentence '{sentence}' does not occur in the prompt after a colon")
    hi = lo + len(f": {sentence}")
    hits = [i for i, (a, b) in enumerate(prompt.offsets) if b > lo and a < hi]
    while hits:
        piece = tokenizer.decode([prompt.input_ids[hits[0]]])  # type: ignore[attr-defined]
        if ":" not in piece and piece.strip():
            break
        hits.pop(0)
    if not hits:
        raise MechintroError(f"sentence '{sentence}' covers no token of its own in the prompt")
    chosen = set(hits)
    return [i in chosen for i in range(len(prompt))]


def localisation_layers(
    specs: Sequence[str | int | float], n_layers: int, rounding: str
) -> list[int]:
    """The injection layers: indices as given; a fraction f of depth is layer
    ``round(f * n_layers)`` clipped to the network (Godet's code, ``introspection_localize.py:79``
    @ 950bb30; Python's round, halves to even) or, with ``rounding="floor"``, ``int(f * n_layers)``
    as :func:`mechintro.vectors.resolve_layers`.

    Example::

        localisation_layers(("0.25",), 30, "round")  # [8]; "floor" gives [7]
    """
    floor = resolve_layers(specs, n_layers)  # validates every spec
    if rounding == "floor":
        return floor
    out: list[int] = []
    for s in specs:
        text = str(s).strip()
        if isinstance(s, float) or not text.lstrip("+-").isdigit():
            layer = max(0, min(round(float(text) * n_layers), n_layers - 1))
        else:
            layer = int(text) + (n_layers if int(text) < 0 else 0)
        if layer in out:
            raise MechintroError(
                f"layers {list(map(str, specs))} name layer {layer} twice once rounded: give "
                "each layer once"
            )
        out.append(layer)
    return out


def _window(
    prompt: Prompt, tokenizer: object, sentences: list[str], steer_label: bool, fallback: Window
) -> Window:
    """The sentences' own tokens (Godet's rule, one sentence or several), or ``fallback`` (the
    span with the labels) when ``steer_label``."""
    if steer_label:
        return fallback
    masks = [sentence_tokens(prompt, tokenizer, x) for x in sentences]
    return Window.tokens([any(m) for m in zip(*masks, strict=True)])


def build_trials(
    config: LocalisationConfig, model: Model, vectors: xr.DataArray
) -> tuple[list[Trial], list[int]]:
    """The trials of ``config`` on ``model``, built before anything runs.

    Example::

        trials, layers = build_trials(Config(tasks=("half",), trials=4), model, vectors)
    """
    layers = localisation_layers(config.layers, model.n_layers, config.layer_rounding)
    words = config.words()
    check_vectors_match(vectors, model, words)
    rng = np.random.default_rng(config.seed)
    pool = list(stimuli.lindsey()["lindsey_sentences_50"])
    trials: list[Trial] = []
    for task in config.tasks:
        for layer in layers:
            if task == "depth" and layer < model.n_layers // 2:
                continue  # its early layer is layer // 2; only late layers can pair with one
            for s in config.strengths:
                for _ in range(config.trials):
                    sentences = [
                        str(x)
                        for x in rng.choice(
                            np.array(pool, dtype=object), size=config.k, replace=False
                        )
                    ]
                    concept = str(rng.choice(np.array(words, dtype=object)))
                    target = int(rng.integers(0, len(options(task, config.k))))
                    prompt, listing = _prompt(model, task, sentences, config.system_message)
                    if task == "sentence":
                        window = _window(
                            prompt,
                            model.tokenizer,
                            [sentences[target]],
                            config.steer_label,
                            Window.span(f"SENTENCE {target + 1}: {sentences[target]}"),
                        )
                        at = layer
                    elif task == "half":
                        half = config.k // 2
                        part = sentences[:half] if target == 0 else sentences[half:]
                        first = listing.index(f"SENTENCE {1 if target == 0 else half + 1}:")
                        start = prompt.text.index(listing) + first
                        end = start + len(
                            " ".join(
                                f"SENTENCE {i + 1}: {x}"
                                for i, x in enumerate(part, start=0 if target == 0 else half)
                            )
                        )
                        window = _window(
                            prompt,
                            model.tokenizer,
                            part,
                            config.steer_label,
                            Window(start=start, end=end),
                        )
                        at = layer
                    else:
                        window = _window(
                            prompt,
                            model.tokenizer,
                            sentences,
                            config.steer_label,
                            Window.span(listing),
                        )
                        at = layer // 2 if target == 0 else layer
                    labels = {
                        "task": task,
                        "target": options(task, config.k)[target],
                        "cell_layer": layer,
                    }
                    v = unit_vector(vectors, concept, at, config.strength_unit)
                    trials.append(
                        base.injected_trial(
                            prompt, "injected", concept, s, at, v, window, labels=labels
                        )
                    )
        for _ in range(config.trials):
            sentences = [
                str(x)
                for x in rng.choice(np.array(pool, dtype=object), size=config.k, replace=False)
            ]
            prompt, _ = _prompt(model, task, sentences, config.system_message)
            trials.append(
                Trial(
                    prompt=prompt,
                    condition="control",
                    labels={"task": task, "target": "", "cell_layer": -1},
                )
            )
    if not trials:
        raise MechintroError(
            "no localisation trials: give layers in the second half of the network for the depth "
            "task"
        )
    return trials, layers


def readouts(config: LocalisationConfig, model: Model) -> list[Readout]:
    """Every option of every configured task; each trial is scored over its own task's."""
    forms: dict[str, tuple[str, ...]] = {}
    for task in config.tasks:
        forms.update(answers(task, config.k, model.tokenizer).forms)
    return [NextToken(Answers(forms=forms))]


run = base.bound_run(__name__)


def choices(ds: xr.Dataset) -> xr.Dataset:
    """Per trial: ``choice`` (the most probable option of the trial's task), ``p_target`` (the
    target's probability normalised over the task's options) and ``correct``."""
    k = int(json.loads(ds.attrs["config"])["k"])
    logp = np.asarray(ds["answer_logprobs"].values, dtype=np.float64)
    labels = [str(x) for x in ds["answer_label"].values]
    choice, p_target = [], []
    for i, (task, target) in enumerate(zip(ds["task"].values, ds["target"].values, strict=True)):
        opts = options(str(task), k)
        cols = [labels.index(o) for o in opts]
        p = np.exp(logp[i, cols])
        p = p / p.sum()
        choice.append(opts[int(np.argmax(p))])
        p_target.append(float(p[opts.index(str(target))]) if target else np.nan)
    choice_arr = np.array(choice, dtype=object)
    return xr.Dataset(
        {
            "choice": ("trial", choice_arr),
            "p_target": ("trial", np.array(p_target)),
            "correct": ("trial", choice_arr == np.asarray(ds["target"].values, dtype=object)),
        },
        coords={"trial": ds.trial.values},
    )


def _option_probs(ds: xr.Dataset, task: str, rows: np.ndarray) -> np.ndarray:
    """``(rows, options)``: each row's probability of each of the task's options, normalised
    over them."""
    k = int(json.loads(ds.attrs["config"])["k"])
    labels = [str(x) for x in ds["answer_label"].values]
    cols = [labels.index(o) for o in options(task, k)]
    p = np.exp(np.asarray(ds["answer_logprobs"].values, dtype=np.float64)[rows][:, cols])
    return p / p.sum(1, keepdims=True)


N_PERM = 1999  # target shuffles per cell for the balanced accuracy's p-value (resolution 1/2000)


def cell_statistics(
    choice: np.ndarray, target: np.ndarray, probs: np.ndarray, opts: Sequence[str]
) -> dict[str, float]:
    """What one cell's trials say beyond the model's favourite answer.

    * ``balanced_accuracy``: the mean over targets of the share answered correctly (a model that
      always says "second" scores 1/2 whatever the share of "second" targets; chance 1/k);
    * ``p_target_corrected``: per option, its mean probability when it is the target minus when
      it is not, averaged over options (0 when the answer ignores the injection's location);
    * ``varies``: whether the chosen answer ever differs between trials; when it never does the
      cell has **no power** — no location effect could show in its accuracy;
    * ``mde``: the smallest balanced accuracy above chance this cell could detect (two-sided
      alpha = 0.05, power 0.8, normal approximation with n trials):
      chance + 2.80·√(chance(1-chance)/n).
    * ``balanced_p``: one-sided permutation p-value of the balanced accuracy against chance (the
      targets shuffled among the cell's trials, :data:`N_PERM` times, seed 0; resolution
      ``1 / (N_PERM + 1)``): "above chance" is read on this, not on the raw accuracy, which a
      favourite answer matching a frequent target inflates.
    """
    present = [o for o in opts if (target == o).any()]
    chance = 1 / len(opts)
    n = len(target)
    bal = (
        float(np.mean([(choice[target == o] == o).mean() for o in present])) if present else np.nan
    )
    rng = np.random.default_rng(0)
    if present:
        # the shuffles one by one (the same draws as ever), scored together: a shuffle keeps each
        # option's count, so its accuracy on option o is (hits on o) / (count of o); the mean over
        # options equals np.mean of the per-option list to 1e-16 (the comparison allows 1e-12)
        shuffled = np.stack([rng.permutation(target) for _ in range(N_PERM)])
        null = np.zeros(N_PERM)
        for o in present:
            on = shuffled == o
            null += (on & (choice == o)).sum(1) / on.sum(1)
        null /= len(present)
        bal_p = (1 + int(np.sum(null >= bal - 1e-12))) / (N_PERM + 1)
    else:
        bal_p = np.nan
    corrected = []
    for o in present:
        j = list(opts).index(o)
        hit, miss = probs[target == o, j], probs[target != o, j]
        if miss.size:
            corrected.append(hit.mean() - miss.mean())
    return {
        "balanced_accuracy": bal,
        "balanced_p": bal_p,
        "p_target_corrected": float(np.mean(corrected)) if corrected else np.nan,
        "varies": float(len(set(choice.tolist())) > 1),
        "mde": chance
        + (1.959963984540054 + 0.8416212335729143) * np.sqrt(chance * (1 - chance) / n)
        if n
        else np.nan,
    }


def summarize(ds: xr.Dataset) -> xr.Dataset:
    """Per task x (layer, strength): accuracy with a 95% Wilson interval, chance, the mean
    normalised probability of the target, and what corrects them for the answer bias
    (:func:`cell_statistics`: balanced accuracy, bias-corrected P(target), whether the answer
    ever varies, and the smallest detectable effect); the uninjected answer bias in the attrs.

    Example::

        summary = summarize(mi.open_run("lo.zarr"))
        summary.accuracy.sel(task="half") - summary.chance.sel(task="half")
    """
    require_experiment(ds, NAME)
    c = choices(ds)
    k = int(json.loads(ds.attrs["config"])["k"])

    def strs(x: object) -> np.ndarray:
        return np.array([str(v) for v in np.asarray(x)], dtype=object)

    task, cond = strs(ds["task"].values), strs(ds["condition"].values)
    layer, strength = np.asarray(ds["cell_layer"].values), np.asarray(ds["strength"].values)
    target, choice = strs(ds["target"].values), strs(c["choice"].values)
    inj = cond == "injected"
    tasks = list(dict.fromkeys(task.tolist()))

    def cell(m: np.ndarray) -> dict[str, float]:
        if not m.any():
            return {}
        accuracy, lo, hi, n = rate(c["correct"].values[m])
        rows = np.flatnonzero(m)
        stats = cell_statistics(
            choice[rows], target[rows], _option_probs(ds, t_of(rows), rows), options(t_of(rows), k)
        )
        p_target = float(np.nanmean(c["p_target"].values[m]))
        return {"accuracy": accuracy, "lo": lo, "hi": hi, "n": n, "p_target": p_target} | stats

    def t_of(rows: np.ndarray) -> str:
        return str(task[rows[0]])

    keys = xr.Dataset(
        {"task": ("trial", task), "inject_layer": ("trial", layer), "strength": ("trial", strength)}
    )
    by = ("task", "inject_layer", "strength")
    out = cell_summary(keys, by, cell, where=inj, levels={"task": tasks})
    out["chance"] = ("task", [1 / len(options(t, k)) for t in tasks])
    for t in tasks:
        picks = choice[~inj & (task == t)]
        out.attrs[f"uninjected_choices_{t}"] = str(
            {o: int((picks == o).sum()) for o in options(t, k)}
        )
    return out


def format_summary(summary: xr.Dataset) -> str:
    """A plain-text table of :func:`summarize`'s result (the CLI prints it).

    Example::

        text = format_summary(summarize(mi.open_run("lo.zarr")))  # as `mechintro run` prints it
    """
    rows = []
    for (t, lay, s), c in base.ran_cells(summary, ("task", "inject_layer", "strength")):
        rows.append(
            {
                "task": str(t),
                "layer": int(lay),
                "strength": f"{float(s):g}",
                "n": int(c.n),
                "accuracy": float(c.accuracy),
                "95% CI": f"[{float(c.lo):.3f}, {float(c.hi):.3f}]",
                "chance": float(summary.chance.sel(task=t)),
                "balanced acc": float(c.balanced_accuracy),
                "p (bal > chance)": f"{float(c.balanced_p):.4f}",
                "P(target)": float(c.p_target),
                "P(target) − P(not target)": f"{float(c.p_target_corrected):+.3f}",
                "power": f"detects ≥ {float(c.mde):.2f}" if c.varies else "no power (one answer)",
            }
        )
    bias = "\n".join(
        f"uninjected answers ({t}): {summary.attrs[f'uninjected_choices_{t}']}"
        for t in summary.task.values
    )
    bias += (
        "\nbalanced accuracy: mean over targets of the share right (chance 1/k whatever the answer "
        "bias); power: the "
        "smallest balanced accuracy the cell could tell from chance (α 0.05, power 0.8); 'no "
        "power': the answer never varies; p (bal > chance): one-sided permutation p of the "
        f"balanced accuracy ({N_PERM} target shuffles, resolution 1/{N_PERM + 1})"
    )
    return table(rows) + "\n" + bias
