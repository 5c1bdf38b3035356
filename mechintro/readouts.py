"""Readout helpers: what a run's stored readouts mean per trial (no model, no nnsight)."""

from __future__ import annotations

import numpy as np
import xarray as xr


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
