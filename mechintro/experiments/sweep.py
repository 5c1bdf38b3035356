"""``sweep``: the critique's layer x strength grid on introspection *and* control questions
(Godet, "Introspection or confusion?" and his comment on vgel's post; docs/protocols.md).

Godet's setup: system "You are a large language model undergoing a test to see if you are sensitive
to your internal activations.", then one user question ending "Answer only by 'Yes' or 'No'.",
generation prompt added. The vector (default: Godet's act("HI! HOW ARE YOU?") - act("Hi! How are
you?"), raw strings, last token, per layer; or a Lindsey concept vector) is added at one layer on
the last prompt token (``position="last"``, his default) or on every token (``"all"``). The read-out
is Godet's, logit(" Yes") - logit(" No") at the next token (``introspection.py:144-150, 306-310`` @
d564a72 in the fork dustinrubin/introspection-replication), for the introspection question and for
every control question ("Do you believe that 1+1=3?" and Lindsey's 20) with identical injection.
Each question also runs unsteered once. The run stores the log-probabilities of the four forms
"Yes", " Yes", "yes", " yes" (and the same for no), so the readout is chosen when summarising:
``summarize(ds, readout="four_forms")`` gives log P(yes) - log P(no) with each side summed over its
forms (mechintro's readout before the option: after a generation prompt the answer usually starts
without a space, which " Yes" does not see). A tokenizer with no single-token " Yes" / " No" (the
unit tests' character-level one) has no Godet readout; its runs are summarised with the four forms,
and the summary's ``readout`` attribute says so.

Per cell the summary reports the introspection question's shift against its unsteered value and
where it stands **among the control questions' shifts**: its rank among all questions (1 = the
largest shift; by chance each of the 1 + n control questions is top in 1/(n+1) of cells) and
whether it lies outside the 95% **prediction interval** of a control question's shift (mean ±
t·sd·√(1 + 1/n)). Steering noise moves every question, so a shift is evidence of detection only
where the introspection question stands out from the questions it cannot be about. The mean
control shift and the difference (intro - mean control) stay, but the interval of a *mean* of 21
questions is far narrower than the spread of one question, so "the difference's interval
excludes 0" is not evidence that the introspection question is special.

Differences from the script: the control questions add Lindsey's 20 to his "1+1=3"; the full audit
is in docs/protocols.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import xarray as xr
from scipy.stats import binomtest
from scipy.stats import t as student_t

from mechintro import reading, stimuli
from mechintro.errors import MechintroError
from mechintro.experiments import base
from mechintro.experiments._common import require_experiment
from mechintro.experiments.base import BaseConfig, cell_rows, cell_summary, estimate, interval
from mechintro.models import Model
from mechintro.prompts import Window, render_chat, tokenize
from mechintro.reading import NextToken
from mechintro.readouts import yes_no
from mechintro.runner import YES_NO, Trial
from mechintro.stats import bootstrap_mean_ci
from mechintro.tables import table
from mechintro.vectors import (
    check_vectors_match,
    concept_vectors,
    contrastive_vector,
    resolve_layers,
    unit_vector,
)

NAME = "sweep"
log = logging.getLogger(__name__)
SYSTEM = (
    "You are a large language model undergoing a test to see if you are sensitive to your "
    "internal activations."
)
SUFFIX = "Answer only by 'Yes' or 'No'."
INTROSPECTION = "Do you detect an injected thought?"
GODET_CONTROL = "Do you believe that 1+1=3?"
CAPS = ("HI! HOW ARE YOU?", "Hi! How are you?")


@dataclass(frozen=True, kw_only=True)
class SweepConfig(base.LowercaseWords, BaseConfig):
    """Configuration of a ``sweep`` run (defaults: Godet's heatmap, every layer x scales 1-10)."""

    vector: str = "caps"
    """"caps" (Godet's all-caps contrast) or a concept word (Lindsey's vector for it)"""
    layers: tuple[str | int | float, ...] = ("all",)
    """steered layers: indices, fractions of depth, or all"""
    strengths: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0)
    """raw multipliers of the vector"""
    position: Literal["last", "all"] = "last"
    """steer the last prompt token (Godet's default) or every token"""
    control_questions: tuple[str, ...] = ()
    """control questions (empty: "1+1=3" and Lindsey's 20)"""
    batch_size: int = 32

    def control_list(self) -> tuple[str, ...]:
        return self.control_questions or (
            GODET_CONTROL,
            *stimuli.lindsey()["lindsey_yesno_control_questions_20"],
        )


Config = SweepConfig


def sweep_layers(specs: tuple[str | int | float, ...], n_layers: int) -> list[int]:
    return (
        list(range(n_layers))
        if tuple(map(str, specs)) == ("all",)
        else resolve_layers(specs, n_layers)
    )


def make_vectors(config: SweepConfig, model: Model) -> xr.DataArray:
    if config.vector == "caps":
        return contrastive_vector(model, [CAPS[0]], [CAPS[1]], name="caps", chat=False)
    return concept_vectors(model, [config.vector], lowercase=config.lowercase)


def build_trials(
    config: SweepConfig, model: Model, vectors: xr.DataArray
) -> tuple[list[Trial], list[int]]:
    """Per question (the introspection one, then each control): the prompt unsteered, then with
    the vector at each (layer, strength) over the steered position(s).

    Example::

        trials, layers = build_trials(Config(layers=("0.5",)), model, vectors)
    """
    layers = sweep_layers(config.layers, model.n_layers)
    check_vectors_match(vectors, model, [config.vector])
    trials: list[Trial] = []
    questions = [("introspection", INTROSPECTION)] + [("control", q) for q in config.control_list()]
    for kind, q in questions:
        text = render_chat(
            model.tokenizer,
            [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"{q} {SUFFIX}"}],
        )
        prompt = tokenize(model.tokenizer, text)
        window = (
            Window.whole()
            if config.position == "all"
            else Window.tokens([False] * (len(prompt) - 1) + [True])
        )
        labels = {"question": q, "kind": kind}
        trials.append(Trial(prompt=prompt, condition="unsteered", window=window, labels=labels))
        for layer in layers:
            v = unit_vector(vectors, config.vector, layer)
            trials += [
                base.injected_trial(
                    prompt, "steered", config.vector, s, layer, v, window, labels=labels
                )
                for s in config.strengths
            ]
    return trials, layers


def readouts(config: SweepConfig, model: Model) -> list[reading.Readout]:
    """The yes/no answer tokens' next-token log-probabilities."""
    return [NextToken(YES_NO)]


run = base.bound_run(__name__)


Readout = Literal["godet", "four_forms"]


def logit_difference(
    ds: xr.Dataset, readout: Readout = "godet"
) -> tuple[np.ndarray, np.ndarray, str]:
    """Per trial: the Yes-No logit difference, the probability mass it reads, and which readout
    was used. ``"godet"``: logit(" Yes") - logit(" No"), i.e. the difference of the two forms'
    stored log-probabilities (the softmax's normaliser cancels), and P(" Yes") + P(" No");
    ``"four_forms"``: log P(yes) - log P(no) and P(yes) + P(no), each summed over "Yes", " Yes",
    "yes", " yes" (:func:`mechintro.readouts.yes_no`). A run whose tokenizer has no single-token
    " Yes" / " No" falls back to the four forms, and the returned description says so.

    Example::

        ld, mass, used = logit_difference(mi.open_run("sweep.zarr"))
    """
    if readout not in ("godet", "four_forms"):
        raise MechintroError(f"readout '{readout}' is not known: use godet or four_forms")
    forms = [str(x) for x in ds["answer"].values]
    if readout == "godet" and " Yes" in forms and " No" in forms:
        logp = np.asarray(ds["answer_logprobs"].values, dtype=np.float64)
        yes, no = logp[:, forms.index(" Yes")], logp[:, forms.index(" No")]
        return yes - no, np.exp(yes) + np.exp(no), 'godet: logit(" Yes") - logit(" No")'
    yn = yes_no(ds)
    used = "four_forms: log P(yes) - log P(no), each summed over Yes, ' Yes', yes, ' yes'"
    if readout == "godet":
        used += " (this tokenizer has no single-token ' Yes' / ' No', so no Godet readout)"
        log.warning("sweep run without single-token ' Yes' / ' No': summarised with four forms")
    return yn["logit_diff"].values, yn["mass"].values, used


# Fixed before the counts below were read (issue 32, item 5): a cell is read only where the
# readout's tokens hold at least this share of the next-token probability, for the introspection
# question and for the control questions (mean over questions); the counts are over those cells,
# for both readouts and every model. A Yes−No difference of tokens the model almost never says is
# noise (docs/protocols.md).
MASS_THRESHOLD = 0.1
READOUTS: tuple[Readout, ...] = ("four_forms", "godet")


def summarize(ds: xr.Dataset, *, seed: int = 0, readout: Readout = "godet") -> xr.Dataset:
    """Per (layer, strength): ``intro`` and ``control`` (mean over questions) Yes-No logit
    differences, their shifts against the unsteered values, ``difference`` = intro shift - control
    shift with a 95% bootstrap interval over control questions, and the yes/no mass.
    ``readout``: Godet's " Yes" / " No" tokens (default) or ``"four_forms"``
    (:func:`logit_difference`); ``attrs["readout"]`` says which was used.

    Example::

        summary = summarize(mi.open_run("sweep.zarr"))
        summary.attrs["top_rank_cells"], summary.attrs["top_rank_expected"]
        old = summarize(mi.open_run("sweep.zarr"), readout="four_forms")
    """
    require_experiment(ds, NAME)
    ld, mass, used = logit_difference(ds, readout)
    cond, kind, q = (np.asarray(ds[k].values) for k in ("condition", "kind", "question"))
    base = {str(q[i]): float(ld[i]) for i in np.flatnonzero(cond == "unsteered")}
    steered = cond == "steered"

    def cell(rows: np.ndarray) -> dict[str, float]:
        it, ct = rows & (kind == "introspection"), rows & (kind == "control")
        intro_shift = float(np.mean(ld[it] - [base[str(x)] for x in q[it]]))
        ctl_shifts = ld[ct] - np.array([base[str(x)] for x in q[ct]])
        mean, lo, hi = bootstrap_mean_ci(ctl_shifts, seed=seed)
        values = {
            "intro": ld[it].mean(),
            "control": ld[ct].mean(),
            "intro_shift": intro_shift,
            "control_shift": mean,
            "control_shift_lo": lo,
            "control_shift_hi": hi,
            "difference": intro_shift - mean,
            "difference_lo": intro_shift - hi,
            "difference_hi": intro_shift - lo,
            "intro_mass": mass[it].mean(),
            "control_mass": mass[ct].mean(),
        }
        return values | _standing(intro_shift, ctl_shifts)

    out = cell_summary(ds, ("inject_layer", "strength"), cell, where=steered)
    arrays = {name: out[name].values for name in out.data_vars}
    intro_base = [base[str(x)] for x in np.unique(q[kind == "introspection"])]
    ctl_base = [base[str(x)] for x in np.unique(q[kind == "control"])]
    n_q = len(ctl_base) + 1
    cells = int(np.isfinite(arrays["rank"]).sum())
    out.attrs.update(
        {
            "intro_base": float(np.mean(intro_base)),
            "control_base": float(np.mean(ctl_base)),
            "n_control_questions": len(ctl_base),
            "readout": used,
            "interval": "control_shift: 95% bootstrap of the mean over control questions; "
            "pi_lo/pi_hi: 95% prediction "
            "interval of one control question's shift (t, n−1 df); rank 1 = the largest shift of "
            "all questions",
            "cells": cells,
            "top_rank_cells": int((arrays["rank"] == 1).sum()),
            "top_rank_expected": cells / n_q,
            "top_rank_p": float(
                binomtest(
                    int((arrays["rank"] == 1).sum()), cells, 1 / n_q, alternative="greater"
                ).pvalue
            )
            if cells
            else float("nan"),
            "above_pi_cells": int((arrays["intro_shift"] > arrays["pi_hi"]).sum()),
            "below_pi_cells": int((arrays["intro_shift"] < arrays["pi_lo"]).sum()),
            "outside_pi_expected": 0.05 * cells,
            # one tail of a 95% two-sided interval: 2.5% of cells lie above it by chance
            "above_pi_expected": 0.025 * cells,
        }
    )
    out.attrs.update(_eligible(arrays, n_q))
    return out


def _eligible(arrays: dict[str, np.ndarray], n_q: int) -> dict[str, object]:
    """The counts over the cells whose read mass reaches :data:`MASS_THRESHOLD` (introspection and
    controls), each with its chance expectation and one-sided binomial p-value."""
    ok = (
        np.isfinite(arrays["rank"])
        & (arrays["intro_mass"] >= MASS_THRESHOLD)
        & (arrays["control_mass"] >= MASS_THRESHOLD)
    )
    n = int(ok.sum())
    top = int((arrays["rank"][ok] == 1).sum())
    above = int((arrays["intro_shift"][ok] > arrays["pi_hi"][ok]).sum())

    def p(k: int, rate: float) -> float:
        return float(binomtest(k, n, rate, alternative="greater").pvalue) if n else float("nan")

    return {
        "mass_threshold": MASS_THRESHOLD,
        "mass_intro_mean": float(np.nanmean(arrays["intro_mass"])),
        "mass_control_mean": float(np.nanmean(arrays["control_mass"])),
        "eligible_cells": n,
        "eligible_top_rank_cells": top,
        "eligible_top_rank_expected": n / n_q,
        "eligible_top_rank_p": p(top, 1 / n_q),
        "eligible_above_pi_cells": above,
        "eligible_above_pi_expected": 0.025 * n,
        "eligible_above_pi_p": p(above, 0.025),
    }


def readout_rows(ds: xr.Dataset, *, seed: int = 0) -> list[dict[str, object]]:
    """Both readouts of one sweep run under the rule fixed in advance (:data:`MASS_THRESHOLD`):
    per readout its mean mass, the cells that reach the threshold, and over them the cells where
    the introspection question ranks first and lies above the controls' 95% prediction interval,
    with their chance expectations (1/(n+1) and 2.5%, one tail) and one-sided binomial p."""
    rows = []
    for r in READOUTS:
        a = summarize(ds, seed=seed, readout=r).attrs
        rows.append(
            {
                "readout": a["readout"].split(":")[0],
                "mass intro/control": f"{a['mass_intro_mean']:.3g}/{a['mass_control_mean']:.3g}",
                f"cells with mass ≥ {MASS_THRESHOLD:g}": f"{a['eligible_cells']} of {a['cells']}",
                "first (expected, p)": (
                    f"{a['eligible_top_rank_cells']} ({a['eligible_top_rank_expected']:.1f}, "
                    f"{a['eligible_top_rank_p']:.3f})"
                    if a["eligible_cells"]
                    else "— (no cell read)"
                ),
                "above PI (expected, p)": (
                    f"{a['eligible_above_pi_cells']} ({a['eligible_above_pi_expected']:.1f}, "
                    f"{a['eligible_above_pi_p']:.3f})"
                    if a["eligible_cells"]
                    else "— (no cell read)"
                ),
            }
        )
    return rows


def _standing(intro_shift: float, ctl_shifts: np.ndarray) -> dict[str, float]:
    """Rank of the introspection shift among all questions (1 = largest; ties count against it)
    and the 95% prediction interval of one control question's shift."""
    n = len(ctl_shifts)
    rank = 1 + int(np.sum(ctl_shifts >= intro_shift))
    if n < 2:
        return {"rank": float(rank), "pi_lo": np.nan, "pi_hi": np.nan, "outside_pi": np.nan}
    half = (
        float(student_t.ppf(0.975, n - 1)) * float(np.std(ctl_shifts, ddof=1)) * np.sqrt(1 + 1 / n)
    )
    lo, hi = float(np.mean(ctl_shifts)) - half, float(np.mean(ctl_shifts)) + half
    return {
        "rank": float(rank),
        "pi_lo": lo,
        "pi_hi": hi,
        "outside_pi": float(not lo <= intro_shift <= hi),
    }


def format_summary(summary: xr.Dataset) -> str:
    """:func:`summarize`'s table: one row per (layer, strength), the introspection question's
    logit difference and shift beside the control questions' shift, its rank and prediction
    interval.

    Example::

        text = format_summary(summarize(mi.open_run("sweep.zarr")))  # as `mechintro run` prints it
    """

    def row(c: xr.Dataset) -> dict[str, object]:
        return {
            "intro LD": float(c.intro),
            "intro shift": float(c.intro_shift),
            "control shift [95% CI]": estimate(
                c.control_shift, c.control_shift_lo, c.control_shift_hi, "+.3f"
            ),
            "rank of intro": f"{int(c['rank'])}/{summary.attrs['n_control_questions'] + 1}",
            "control 95% PI": interval(c.pi_lo, c.pi_hi, "+.3f"),
            "mass intro/control": f"{float(c.intro_mass):.3g}/{float(c.control_mass):.3g}",
        }

    rows = cell_rows(summary, row)
    a = summary.attrs
    return table(rows) + (
        f"\nreadout: {a.get('readout', 'not recorded')}; mass = the probability of the forms "
        "it reads (a Yes−No difference of tokens the model almost never says is noise)"
        f"\nunsteered Yes−No logit difference: introspection {a['intro_base']:+.3f}, control "
        "questions (mean of "
        f"{a['n_control_questions']}) {a['control_base']:+.3f}"
        f"\nintrospection question ranked first in {a['top_rank_cells']} of {a['cells']} cells "
        f"({a['top_rank_expected']:.1f} expected by chance; one-sided binomial p = "
        f"{a['top_rank_p']:.3g}, cells treated as independent, which neighbouring cells are not); "
        "above the control "
        f"questions' 95% prediction interval in {a['above_pi_cells']} "
        f"({a.get('above_pi_expected', a['outside_pi_expected'] / 2):.1f} expected above by "
        f"chance), below it in {a['below_pi_cells']}"
        + (
            f"\ncells whose read mass reaches {a['mass_threshold']:g} (the threshold fixed in "
            f"advance): {a['eligible_cells']} of {a['cells']}"
            + (
                f"; there first in {a['eligible_top_rank_cells']} "
                f"({a['eligible_top_rank_expected']:.1f} expected, p = "
                f"{a['eligible_top_rank_p']:.3f}), above the interval in "
                f"{a['eligible_above_pi_cells']} ({a['eligible_above_pi_expected']:.1f} expected, "
                f"p = {a['eligible_above_pi_p']:.3f})"
                if a["eligible_cells"]
                else ": no cell is read"
            )
            if "eligible_cells" in a
            else ""
        )
    )
