"""Concept vectors.

**Lindsey (2025)** — the recipe of every quantitative experiment in "Emergent Introspective
Awareness": render ``Tell me about {word}`` (word in lowercase, as in the paper's appendix) with
the model's chat template and generation prompt, read the residual stream at the last prompt
token (the analogue of the ``:`` in ``Assistant:``) after every block, and subtract the mean over
the same prompt for 100 baseline words (the duplicate "Butterflies" kept). No normalisation: a
strength is a raw multiplier. Vectors for every layer come from one batched pass per batch of
prompts; the vector injected at layer L is the one computed at layer L.

Also: **contrastive pairs** (mean difference between two prompt sets, e.g. ALL CAPS vs lowercase),
**PCA-center** directions (the repeng method of the Latent Introspection code: unit-norm first
principal component of pair-centred activations), and **model contrast** (mean difference of two
models' activations on the same prompts).

Every result is an :class:`xarray.DataArray` with dims ``(concept, layer, d_model)`` and
coordinates ``resid_norm(layer)`` (mean residual norm at the read-out token over the baseline
prompts) and ``vector_norm(concept, layer)``, so a strength can be given raw or relative to the
residual norm (:func:`unit_vector`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import xarray as xr

from mechintro import engine, stimuli
from mechintro._fs import staged_dir
from mechintro.errors import MechintroError
from mechintro.models import Model
from mechintro.prompts import render_chat, tokenize
from mechintro.provenance import provenance_attrs

LINDSEY_TEMPLATE = "Tell me about {word}"
StrengthUnit = Literal["raw", "resid_norm"]

# mechintro's former PCA-center suffixes (20 generic assistant openings), kept for comparison.
# The default is now the authors' 582 truncated outputs (stimuli.latent_introspection_suffixes).
DEFAULT_SUFFIXES = (
    "", "I", "The", "Sure", "Well,", "That game", "I can see", "Let me", "It is", "One thing",
    "When I", "There are", "In my", "Honestly,", "This is", "My favorite", "You know,",
    "Imagine", "First,", "Here is",
)


def _acts(model: Model, texts: Sequence[str], batch_size: int) -> torch.Tensor:
    """Last-token residuals ``(n, layer, d_model)`` of rendered ``texts``."""
    prompts = [tokenize(model.tokenizer, t).input_ids for t in texts]
    out = [engine.last_token_resid(model, prompts[i:i + batch_size]) for i in range(0, len(prompts), batch_size)]
    return torch.cat(out, 0)


def _chat(model: Model, content: str, system: str | None = None) -> str:
    """``content`` as a user turn with the generation prompt. ``system=None`` sends no system
    message (a template such as SmolLM2's then inserts its default one); a string, even ``""``,
    is sent as the system message (the Latent Introspection code sends ``""``)."""
    messages = [{"role": "user", "content": content}]
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    return render_chat(model.tokenizer, messages)


def _check_words(words: Sequence[str], what: str) -> list[str]:
    words = [w for w in words]
    if not words:
        raise MechintroError(f"the {what} list is empty: give at least one word")
    if any(not isinstance(w, str) or not w.strip() for w in words):
        raise MechintroError(f"the {what} list contains an empty entry: remove it")
    return words


def _package(
    model: Model, vectors: torch.Tensor, names: Sequence[str], resid_norm: torch.Tensor, method: str, **attrs: object
) -> xr.DataArray:
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if list(names).count(n) > 1})
        raise MechintroError(f"duplicate concept names {dup}: give each concept once")
    da = xr.DataArray(
        vectors.float().numpy(),
        dims=("concept", "layer", "d_model"),
        coords={
            "concept": np.array(list(names), dtype=object),
            "layer": np.arange(model.n_layers),
            "resid_norm": ("layer", resid_norm.float().numpy()),
            "vector_norm": (("concept", "layer"), vectors.float().norm(dim=-1).numpy()),
        },
        name="concept_vectors",
    )
    da.attrs.update(
        {
            "model": model.name,
            "weights_sha256": model.weights_sha256,
            "method": method,
            **{k: v if isinstance(v, str) else json.dumps(v) for k, v in attrs.items()},
            **provenance_attrs(),
        }
    )
    return da


def concept_vectors(
    model: Model,
    concepts: Sequence[str],
    *,
    baseline: Sequence[str] | None = None,
    template: str = LINDSEY_TEMPLATE,
    lowercase: bool = True,
    batch_size: int = 32,
    system: str | None = None,
) -> xr.DataArray:
    """Lindsey's concept vectors for ``concepts`` at every layer (``system``: a system message;
    ``None``, the default, sends none, so the template's own default applies).

    Returns:
        DataArray ``(concept, layer, d_model)`` float32: act(concept) − mean(act(baseline)).
    """
    concepts = _check_words(concepts, "concept")
    baseline = _check_words(stimuli.baseline_words() if baseline is None else baseline, "baseline")
    if "{word}" not in template:
        raise MechintroError("the template must contain '{word}'")

    def text(w: str) -> str:
        return _chat(model, template.format(word=w.lower() if lowercase else w), system)

    base = _acts(model, [text(w) for w in baseline], batch_size)
    acts = _acts(model, [text(w) for w in concepts], batch_size)
    mean = base.mean(0)
    return _package(
        model, acts - mean, concepts, base.norm(dim=-1).mean(0), "lindsey",
        template=template, lowercase=str(lowercase).lower(), baseline=list(baseline),
    )


def contrastive_vector(
    model: Model,
    positive: Sequence[str],
    negative: Sequence[str],
    *,
    name: str,
    chat: bool = True,
    batch_size: int = 32,
    system: str | None = None,
) -> xr.DataArray:
    """Mean difference of last-token activations, positive minus negative prompts.

    With ``chat=False`` the prompts are used raw (Godet's "HI! HOW ARE YOU?" − "Hi! How are
    you?"); with ``chat=True`` each is a user turn rendered with the chat template.
    """
    positive = _check_words(positive, "positive prompt")
    negative = _check_words(negative, "negative prompt")
    wrap = (lambda s: _chat(model, s, system)) if chat else (lambda s: s)
    pos = _acts(model, [wrap(s) for s in positive], batch_size)
    neg = _acts(model, [wrap(s) for s in negative], batch_size)
    both = torch.cat([pos, neg])
    vec = (pos.mean(0) - neg.mean(0))[None]
    return _package(
        model, vec, [name], both.norm(dim=-1).mean(0), "contrastive",
        positive=list(positive), negative=list(negative), chat=str(chat).lower(),
    )


def pca_center_direction(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """repeng's ``pca_center``: first principal component of pair-centred activations.

    Args:
        pos, neg: ``(pairs, layer, d_model)`` activations of matched positive/negative prompts.

    Returns:
        ``(layer, d_model)`` unit vectors, signed so that positives project higher on average.
    """
    center = (pos + neg) / 2
    train = torch.cat([pos - center, neg - center]).double()  # (2·pairs, layer, d)
    out = []
    for layer in range(train.shape[1]):
        x = train[:, layer]
        _, _, vh = torch.linalg.svd(x - x.mean(0), full_matrices=False)
        d = vh[0]
        # repeng's rule: flip when more pairs have the positive below the negative than above
        below = ((pos[:, layer].double() @ d) < (neg[:, layer].double() @ d)).float().mean()
        above = ((pos[:, layer].double() @ d) > (neg[:, layer].double() @ d)).float().mean()
        if below > above:
            d = -d
        out.append(d)
    return torch.stack(out).float()


def pca_center_vectors(
    model: Model,
    concepts: Sequence[str],
    *,
    template: str = "Please talk about {concept}.",
    neutral: str = "anything",
    suffixes: Sequence[str] | None = None,
    system: str | None = "",
    batch_size: int = 32,
) -> xr.DataArray:
    """Latent-Introspection concept directions (unit norm per layer), as the authors' code makes
    them (``helpers.py: train_concept_vector``, repeng ``ControlVector.train(method="pca_center")``).

    For each suffix, positive = chat(``system``, ``template`` with the concept) + suffix, negative
    = the same with ``neutral`` in place of the concept; the direction is
    :func:`pca_center_direction`. Defaults are the authors': an empty system message (``None``
    lets the template insert its own default one, a deviation) and their 582 truncated outputs
    as suffixes (:func:`mechintro.stimuli.latent_introspection_suffixes`); pass ``suffixes`` to
    use another set (``DEFAULT_SUFFIXES`` is mechintro's former 20).
    """
    concepts = _check_words(concepts, "concept")
    suffixes = stimuli.latent_introspection_suffixes() if suffixes is None else list(suffixes)
    if len(suffixes) < 2:
        raise MechintroError("PCA-center needs at least 2 suffixes (prompt pairs)")
    neg = _acts(model, [_chat(model, template.format(concept=neutral), system) + s for s in suffixes], batch_size)
    vecs = []
    for c in concepts:
        pos = _acts(model, [_chat(model, template.format(concept=c), system) + s for s in suffixes], batch_size)
        vecs.append(pca_center_direction(pos, neg))
    return _package(
        model, torch.stack(vecs), concepts, neg.norm(dim=-1).mean(0), "pca_center",
        template=template, neutral=neutral, suffixes=list(suffixes),
        system="(template default)" if system is None else system,
    )


def model_contrast_vector(
    model: Model, other: Model, prompts: Sequence[str], *, name: str, batch_size: int = 32
) -> xr.DataArray:
    """Mean of ``other``'s minus ``model``'s last-token activations on the same chat prompts
    (the Latent Introspection emergent-misalignment vector uses a finetune as ``other``)."""
    prompts = _check_words(prompts, "prompt")
    if (other.n_layers, other.d_model) != (model.n_layers, model.d_model):
        raise MechintroError(
            f"{other.name} ({other.n_layers} layers, d_model {other.d_model}) does not match "
            f"{model.name} ({model.n_layers}, {model.d_model}): contrast models of one architecture"
        )
    a = _acts(model, [_chat(model, p) for p in prompts], batch_size)
    b = _acts(other, [_chat(other, p) for p in prompts], batch_size)
    return _package(
        model, (b.mean(0) - a.mean(0))[None], [name], a.norm(dim=-1).mean(0), "model_contrast",
        other_model=other.name, other_weights_sha256=other.weights_sha256, prompts=list(prompts),
    )


def unit_vector(vectors: xr.DataArray, concept: str, layer: int, unit: StrengthUnit = "raw") -> torch.Tensor:
    """The vector added per unit strength at ``layer``.

    ``raw``: the concept vector itself (Lindsey). ``resid_norm``: the vector rescaled to the mean
    residual norm at that layer, so strength 1 adds a vector as long as the residual stream.
    """
    v = torch.from_numpy(np.asarray(vectors.sel(concept=concept, layer=layer).values, dtype=np.float32).copy())
    if unit == "raw":
        return v
    if unit == "resid_norm":
        norm = float(v.norm())
        if norm == 0:
            raise MechintroError(f"vector for '{concept}' at layer {layer} is zero; cannot rescale it")
        return v / norm * float(vectors.resid_norm.sel(layer=layer))
    raise MechintroError(f"unknown strength unit '{unit}': use 'raw' or 'resid_norm'")


def resolve_layers(specs: Sequence[str | int | float], n_layers: int) -> list[int]:
    """Layer indices from indices (``"12"``, ``12``) or fractions of depth (``"0.5"``, ``0.5``).

    A fraction ``f`` in ``[0, 1)`` maps to ``int(f · n_layers)`` (the convention of the open
    replication A′); a negative index counts from the end.
    """
    if len(specs) == 0:
        raise MechintroError("no layers given: pass indices such as 12 or fractions such as 0.5")
    out: list[int] = []
    for s in specs:
        text = str(s).strip()
        try:
            value = float(text)
        except ValueError:
            raise MechintroError(f"layer '{s}' is not a number: use an index (12) or a fraction of depth (0.5)") from None
        if not math.isfinite(value):
            raise MechintroError(f"layer '{s}' is not finite: use an index or a fraction of depth")
        if "." in text or isinstance(s, float):
            if not 0 <= value < 1:
                raise MechintroError(f"layer fraction {text} is outside [0, 1): use e.g. 0.5, or an integer index")
            layer = int(value * n_layers)
        else:
            layer = int(value)
            if layer < 0:
                layer += n_layers
        if not 0 <= layer < n_layers:
            raise MechintroError(f"layer {text} is out of range for a model with {n_layers} layers (0..{n_layers - 1})")
        if layer not in out:
            out.append(layer)
    return out


_REQUIRED_ATTRS = ("model", "weights_sha256", "method")


def save_vectors(vectors: xr.DataArray, path: str | Path) -> Path:
    """Write vectors to a zarr store (written to a temporary name, then renamed into place)."""
    path = Path(path)
    if path.exists():
        raise MechintroError(f"{path} already exists: choose another path or delete it")
    with staged_dir(path) as staging:
        vectors.to_dataset(name="concept_vectors").to_zarr(staging, zarr_format=3, consolidated=False)
    return path


def load_vectors(path: str | Path, model: Model | None = None) -> xr.DataArray:
    """Read vectors saved by :func:`save_vectors`; with ``model``, check they belong to it."""
    path = Path(path)
    if not path.exists():
        raise MechintroError(f"vectors file {path} does not exist: create it with `mechintro vectors`")
    try:
        # zarr v3 only: v2 stores can carry a pickle codec, which would run code on read.
        ds = xr.open_zarr(path, consolidated=False, zarr_format=3)
        da = ds["concept_vectors"].load()
    except Exception as exc:  # zarr raises many types for a foreign or truncated store
        raise MechintroError(f"{path} is not a mechintro vectors store ({type(exc).__name__}): recreate it with `mechintro vectors`") from None
    if da.dims != ("concept", "layer", "d_model") or any(k not in da.attrs for k in _REQUIRED_ATTRS):
        raise MechintroError(f"{path} is not a mechintro vectors store (wrong dims or attrs): recreate it with `mechintro vectors`")
    if not np.isfinite(da.values).all():
        raise MechintroError(f"{path} contains non-finite values: recompute the vectors")
    if model is not None:
        check_vectors_match(da, model)
    return da


def check_vectors_match(vectors: xr.DataArray, model: Model) -> None:
    if vectors.sizes["d_model"] != model.d_model or vectors.sizes["layer"] != model.n_layers:
        raise MechintroError(
            f"vectors have d_model {vectors.sizes['d_model']} and {vectors.sizes['layer']} layers but "
            f"{model.name} has {model.d_model} and {model.n_layers}: compute vectors with this model"
        )
    if vectors.attrs.get("weights_sha256") != model.weights_sha256:
        raise MechintroError(
            f"vectors were computed on {vectors.attrs.get('model')} (weights {str(vectors.attrs.get('weights_sha256'))[:12]}…), "
            f"not on {model.name}: compute vectors with this model"
        )


VectorMethod = Literal["lindsey", "pca_center", "contrastive"]


def make_vectors(
    model: Model,
    method: VectorMethod,
    concepts: Sequence[str] = (),
    *,
    system: str | Literal["method default"] | None = "method default",
    suffixes: Sequence[str] | None = None,
    baseline: Sequence[str] | None = None,
    positive: Sequence[str] = (),
    negative: Sequence[str] = (),
    chat: bool = True,
    batch_size: int = 32,
) -> xr.DataArray:
    """Any published recipe by name (the Python side of ``mechintro vectors --method``).

    - ``lindsey``: :func:`concept_vectors` of ``concepts`` against ``baseline`` (default Lindsey's
      100 words); no system message unless ``system`` is given.
    - ``pca_center``: :func:`pca_center_vectors` (the Latent Introspection code's recipe; default
      an empty system message and the authors' 582 ``suffixes``).
    - ``contrastive``: :func:`contrastive_vector`, ``positive`` minus ``negative`` prompts, named
      ``concepts[0]`` (raw strings with ``chat=False``, as Godet's caps vector).

    ``system``: a system message for the prompts; ``None`` sends none (the template's default
    applies); left out, each method's own default.
    """
    if method == "lindsey":
        return concept_vectors(model, concepts, baseline=baseline, batch_size=batch_size,
                               system=None if system == "method default" else system)
    if method == "pca_center":
        return pca_center_vectors(model, concepts, suffixes=suffixes, batch_size=batch_size,
                                  system="" if system == "method default" else system)
    if method == "contrastive":
        if len(concepts) != 1:
            raise MechintroError("a contrastive vector takes one name: give exactly one concept (e.g. --concepts caps)")
        return contrastive_vector(model, positive, negative, name=concepts[0], chat=chat, batch_size=batch_size,
                                  system=None if system == "method default" else system)
    raise MechintroError(f"unknown vector method '{method}': use lindsey, pca_center or contrastive")
