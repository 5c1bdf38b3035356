"""Logit lens: the model's final norm and unembedding applied to the recorded residual stream at
the answer position, layer by layer — P(yes), P(no) and P(concept word) as the network would
predict them if it stopped at that layer (nostalgebraist 2020; vgel's "Latent Introspection"
reads the yes-hill and its suppression in the last layers this way).

Needs the model's weights (norm and unembedding only — no forward pass) and a run with
recorded residuals. At the last layer it reproduces the model's own next-token distribution
(tested; the residuals are stored as float16, so to about 1e-2 in log-probability).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr

from mechintro.analysis._common import (
    layers_of,
    over_resid,
    require_logits,
    require_resid,
    require_stored,
    run_name,
)
from mechintro.arch import get_module, text_config
from mechintro.errors import MechintroError
from mechintro.models import Model


def word_token(model: Model, word: str) -> int:
    """The first token of ``" word"`` (lower case) — how the word would start an answer."""
    ids = model.tokenizer.encode(" " + word.lower(), add_special_tokens=False)
    if not ids:
        raise MechintroError(f"'{word}' tokenizes to nothing: pass another word")
    return int(ids[0])


def logit_lens(
    ds: xr.Dataset,
    model: Model,
    *,
    layers: Sequence[int] | None = None,
    position: int = -1,
    concepts: bool = True,
    chunk: int = 8192,
) -> xr.Dataset:
    """Per trial and layer: ``p_yes`` / ``p_no`` (summed over the run's answer forms),
    ``logit_diff`` = log P(yes) − log P(no), and ``p_concept`` (the first token of the trial's
    concept word, NaN for controls) at prompt position ``position`` (default the last token, where
    the answer is read).

    The unembedding runs over ``chunk`` vocabulary rows at a time, keeping only the log-normaliser
    and the logits of the tokens reported, so the memory the lens needs does not grow with the
    vocabulary (Qwen's 151,936 tokens; the numbers equal the unchunked lens to float rounding)."""
    require_resid(ds, "the logit lens")
    require_logits(ds, "the logit lens (it reads the run's answer tokens)")
    if ds.attrs.get("weights_sha256") != model.weights_sha256:
        raise MechintroError(
            f"{run_name(ds)} was made with other weights than {model.name}: load the run's "
            f"model ({ds.attrs.get('model')})"
        )
    if not -ds.sizes["pos"] <= position < ds.sizes["pos"]:
        raise MechintroError(
            f"position {position} is outside the run's {ds.sizes['pos']} prompt positions"
        )
    if chunk < 1:
        raise MechintroError(f"chunk must be at least 1, got {chunk}")
    require_stored(ds, np.arange(ds.sizes["pos"]) == position % ds.sizes["pos"], "the logit lens")
    layers = layers_of(ds, layers)
    norm = get_module(model.hf, model.arch.final_norm)
    unembed = get_module(model.hf, model.arch.unembed)
    cap = getattr(text_config(model.hf.config), "final_logit_softcapping", None)
    answer_ids = torch.tensor([int(x) for x in ds["answer_id"].values])
    yes = torch.from_numpy(np.asarray(ds["answer_label"].values) == "yes")
    concept_ids = np.array(
        [word_token(model, str(c)) if str(c) and concepts else -1 for c in ds["concept"].values]
    )

    def lens(_layer: int, idx: np.ndarray, block: np.ndarray) -> np.ndarray:
        h = torch.from_numpy(block[:, position]).to(model.device, model.dtype)
        rows_concept = torch.from_numpy(np.maximum(concept_ids[idx], 0))
        wanted = torch.cat(
            [answer_ids, rows_concept]
        )  # answer tokens, then each row's concept token
        with torch.no_grad(), _onloaded(norm), _onloaded(unembed):
            lognorm, picked = _chunked_unembedding(norm(h), unembed, cap, wanted, chunk)
        lp_answers = picked[:, : len(answer_ids)] - lognorm[:, None]
        lp_yes = torch.logsumexp(lp_answers[:, yes], -1)
        lp_no = torch.logsumexp(lp_answers[:, ~yes], -1)
        n = len(idx)
        lp_concept = picked[torch.arange(n), len(answer_ids) + torch.arange(n)] - lognorm
        lp_concept[torch.from_numpy(concept_ids[idx] < 0)] = float("nan")
        return torch.stack([lp_yes, lp_no, lp_concept], -1).double().numpy()

    out = over_resid(ds, layers, lens)  # (trial, layer, 3) log-probabilities
    dims = ("trial", "layer")
    return xr.Dataset(
        {
            "p_yes": (dims, np.exp(out[..., 0])),
            "p_no": (dims, np.exp(out[..., 1])),
            "logit_diff": (dims, out[..., 0] - out[..., 1]),
            "p_concept": (dims, np.exp(out[..., 2])),
        },
        coords={
            "trial": ds.trial.values,
            "layer": layers,
            "condition": ("trial", ds["condition"].values),
            "concept": ("trial", ds["concept"].values),
        },
        attrs={
            "position": position,
            "model": model.name,
            "experiment": ds.attrs.get("experiment", ""),
        },
    )


def _chunked_unembedding(
    x: torch.Tensor, unembed: torch.nn.Module, cap: float | None, wanted: torch.Tensor, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log-normaliser (n,), logits at wanted (n, k))`` of ``unembed(x)`` (float32, softcapped
    with ``cap``), computed over ``chunk`` vocabulary rows at a time: the full ``(n, vocab)``
    logits never exist, and the running log-sum-exp is exact up to float rounding."""
    weight = unembed.weight
    bias = getattr(unembed, "bias", None)
    n, vocab = x.shape[0], weight.shape[0]
    lognorm = torch.full((n,), -float("inf"))
    picked = torch.empty(n, len(wanted))
    for start in range(0, vocab, chunk):
        stop = min(start + chunk, vocab)
        logits = (
            torch.nn.functional.linear(
                x, weight[start:stop], None if bias is None else bias[start:stop]
            )
            .float()
            .cpu()
        )
        if cap:
            logits = torch.tanh(logits / cap) * cap
        lognorm = torch.logaddexp(lognorm, torch.logsumexp(logits, -1))
        here = (wanted >= start) & (wanted < stop)
        if here.any():
            picked[:, here] = logits[:, wanted[here] - start]
    return lognorm, picked


def _onloaded(module: torch.nn.Module):
    """A module whose weights accelerate offloaded (meta device) brought in for the duration; a
    no-op for a module in memory."""
    from accelerate.utils import align_module_device

    return align_module_device(module)


def lens_summary(
    lens: xr.Dataset, groups: xr.DataArray, *, n_boot: int = 1000, seed: int = 0
) -> xr.Dataset:
    """Mean of each lens quantity per group (e.g. ``injected`` / ``control``, or detection labels)
    and layer, with a 95% bootstrap interval over concepts (trials sharing a concept are one
    cluster)."""
    from mechintro.stats import mean_ci

    names = list(dict.fromkeys(str(g) for g in groups.values))
    concept = np.array(
        [str(c) or f"trial{i}" for i, c in enumerate(lens.concept.values)], dtype=object
    )
    g = np.array([str(x) for x in groups.values], dtype=object)
    out = {}
    for var in ("p_yes", "p_no", "logit_diff", "p_concept"):
        stats = np.full((len(names), lens.sizes["layer"], 3), np.nan)
        values = lens[var].values
        for i, name in enumerate(names):
            rows = g == name
            for li in range(lens.sizes["layer"]):
                x = values[rows, li]
                ok = np.isfinite(x)
                if ok.any():
                    stats[i, li] = mean_ci(x[ok], concept[rows][ok], n_boot=n_boot, seed=seed)[:3]
        out[var], out[f"{var}_lo"], out[f"{var}_hi"] = (
            (("group", "layer"), stats[..., j]) for j in range(3)
        )
    return xr.Dataset(
        out, coords={"group": names, "layer": lens.layer.values}, attrs=dict(lens.attrs)
    )
