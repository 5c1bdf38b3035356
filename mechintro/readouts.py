"""Readout helpers: what a run's stored readouts mean per trial (no model, no nnsight).

* :func:`yes_no` — a logit-mode run's answer log-probabilities as P(yes), P(no) and log-odds;
* :func:`grades` — a generation run's responses graded by Lindsey's criteria (the offline grader,
  :mod:`mechintro.grading`, or the LLM-judge verdicts ``mechintro grade`` stored).

The analysis layer reads runs through these, so it never needs an experiment module (or the
model code those import).
"""

from __future__ import annotations

import json
from typing import Literal

import numpy as np
import xarray as xr

from mechintro import grading
from mechintro.errors import MechintroError

GRADE_CRITERIA = ("coherence", "affirmative", "thinking_about_word", "affirmative_identification")


def yes_no(ds: xr.Dataset) -> xr.Dataset:
    """Per trial: ``p_yes``, ``p_no`` (summed over the run's answer forms), ``mass`` = p_yes +
    p_no, ``p_yes_norm`` = p_yes / mass, and ``logit_diff`` = log p_yes − log p_no."""
    p = np.exp(ds["answer_logprobs"].astype(np.float64))
    p_yes = p.where(ds.answer_label == "yes").sum("answer")
    p_no = p.where(ds.answer_label == "no").sum("answer")
    mass = p_yes + p_no
    return xr.Dataset(
        {
            "p_yes": p_yes,
            "p_no": p_no,
            "mass": mass,
            "p_yes_norm": p_yes / mass,
            "logit_diff": np.log(p_yes) - np.log(p_no),
        }
    )


def question_kind(question: str) -> str:
    """``"detect"`` for the detection questions (``detect``, ``detect_jan2026``), ``"open"`` for
    the open ones (``mind``, ``thinking``, ``unusual``): the grader's two rule sets."""
    return "detect" if question.startswith("detect") else "open"


def grades(ds: xr.Dataset, *, source: Literal["offline", "judge"] = "offline") -> xr.Dataset:
    """Per trial of an ``injected-thoughts`` run: Lindsey's four criteria, ``success`` and
    ``false_positive``.

    ``success`` is Lindsey's rule for the question: coherent and affirmative-with-identification
    (detection questions) or coherent and thinking-about-the-word (open questions), on injected
    trials. ``false_positive``: a control trial answered coherently and affirmatively (detection
    questions only). ``source="offline"`` grades with :func:`mechintro.grading.grade`;
    ``source="judge"`` reads the verdicts ``mechintro grade`` stored (``grade_{criterion}``).

    Example::

        ds = open_run("runs/injected-thoughts.zarr")
        g = grades(ds)
        tpr = g.success.values[ds.condition.values != "control"].mean()
    """
    kind = question_kind(json.loads(ds.attrs["config"])["question"])
    responses = [str(r) for r in ds["response"].values]
    concepts = [str(c) for c in ds["concept"].values]
    if source == "judge":
        missing = [n for n in GRADE_CRITERIA if f"grade_{n}" not in ds]
        if missing:
            raise MechintroError(
                f"the run has no judge verdicts for {missing}: "
                "run `mechintro grade RUN --judge-model ...` first"
            )
        values = {n: np.asarray(ds[f"grade_{n}"].values) == "YES" for n in GRADE_CRITERIA}
    else:
        g = [
            grading.grade(r, c, question_kind=kind)
            for r, c in zip(responses, concepts, strict=True)
        ]
        values = {n: np.array([getattr(x, n) for x in g]) for n in GRADE_CRITERIA}
    success = values["coherence"] & (
        values["affirmative_identification"] if kind == "detect" else values["thinking_about_word"]
    )
    injected = np.asarray(ds["condition"].values) != "control"
    fp_signal = values["affirmative"] if kind == "detect" else np.zeros_like(success)
    out = {n: ("trial", v) for n, v in values.items()}
    out["success"] = ("trial", success & injected)
    out["false_positive"] = ("trial", values["coherence"] & fp_signal & ~injected)
    return xr.Dataset(out, coords={"trial": ds.trial.values})
