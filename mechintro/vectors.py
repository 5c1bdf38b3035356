"""Concept vectors.

**Lindsey (2025)** — the recipe of every quantitative experiment in "Emergent Introspective
Awareness": render ``Tell me about {word}`` (the concept *and* baseline words in lowercase, as in
the paper's appendix; ``lowercase=False`` keeps them as listed, as the open replications do) with
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

import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import xarray as xr

from mechintro import engine, stimuli
from mechintro._fs import staged_dir
from mechintro.errors import MechintroError
from mechintro.models import Model, cache_dir
from mechintro.progress import Progress
from mechintro.progress import reporter as progress_reporter
from mechintro.prompts import render_chat, tokenize
from mechintro.provenance import provenance_attrs

log = logging.getLogger(__name__)

LINDSEY_TEMPLATE = "Tell me about {word}"
StrengthUnit = Literal["raw", "resid_norm"]

# mechintro's former PCA-center suffixes (20 generic assistant openings), kept for comparison.
# The default is now the authors' 582 truncated outputs (stimuli.latent_introspection_suffixes).
DEFAULT_SUFFIXES = (
    "",
    "I",
    "The",
    "Sure",
    "Well,",
    "That game",
    "I can see",
    "Let me",
    "It is",
    "One thing",
    "When I",
    "There are",
    "In my",
    "Honestly,",
    "This is",
    "My favorite",
    "You know,",
    "Imagine",
    "First,",
    "Here is",
)


def _acts(
    model: Model, texts: Sequence[str], batch_size: int, step: Callable[[int], None] | None = None
) -> torch.Tensor:
    """Last-token residuals ``(n, layer, d_model)`` of rendered ``texts``; ``step(k)`` after each
    batch of ``k`` prompts."""
    prompts = [tokenize(model.tokenizer, t).input_ids for t in texts]
    out = []
    for i in range(0, len(prompts), batch_size):
        out.append(engine.last_token_resid(model, prompts[i : i + batch_size]))
        if step:
            step(len(out[-1]))
    return torch.cat(out, 0)


class _Counter:
    """Prompts done so far, reported to a ``(done, total)`` callback."""

    def __init__(self, report: Callable[[int, int], None] | None, total: int) -> None:
        self.report, self.total, self.done = report, total, 0
        if report:
            report(0, total)

    def __call__(self, k: int) -> None:
        self.done += k
        if self.report:
            self.report(self.done, self.total)


# --- the baseline words' activations, cached per (weights, rendered prompts) ---------------------
#
# Lindsey's recipe subtracts the mean activation over 100 baseline prompts; they are the same for
# every concept, so computing them on every call made the README quick start spend 94 of its 132 s
# on them. The mean and the mean norm are kept in the model cache ($MECHINTRO_CACHE/baselines),
# keyed by the weights' sha256 and everything that changes the numbers (the rendered prompts, the
# batch size — padding —, dtype and device), with the file's own sha256 checked on every read.
_BASELINE_CACHE_VERSION = 1


def _baseline_key(model: Model, texts: Sequence[str], batch_size: int) -> str | None:
    if (
        model.remote or len(model.weights_sha256) != 64
    ):  # no content hash (Hub fingerprint, remote): no cache
        return None
    key = {
        "version": _BASELINE_CACHE_VERSION,
        "weights_sha256": model.weights_sha256,
        "texts": list(texts),
        "batch_size": batch_size,
        "dtype": str(model.dtype),
        "device": model.device.type,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _baseline_stats(
    model: Model,
    texts: Sequence[str],
    batch_size: int,
    step: Callable[[int], None] | None,
    cache: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean activation ``(layer, d_model)`` and mean norm ``(layer,)`` over the baseline prompts,
    from the cache when a verified entry exists."""
    from safetensors.torch import load_file, save_file

    from mechintro.models import sha256_of

    key = _baseline_key(model, texts, batch_size) if cache else None
    folder = cache_dir() / "baselines"
    path, manifest = folder / f"{key}.safetensors", folder / f"{key}.json"
    if key is not None and manifest.is_file() and path.is_file():
        try:
            expected = json.loads(manifest.read_text()).get("sha256")
        except (OSError, ValueError):
            expected = None
        if expected == sha256_of([path]):
            stored = load_file(path)
            log.debug("baseline activations from the cache (%s)", path)
            return stored["mean"], stored["norm"]
        log.warning(
            "cached baseline activations %s failed their hash check; computing them again",
            path.name,
        )
    base = _acts(model, texts, batch_size, step)
    mean, norm = base.mean(0), base.norm(dim=-1).mean(0)
    if key is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            scratch = folder / f"{key}.{os.getpid()}.tmp"
            save_file(
                {"mean": mean.contiguous(), "norm": norm.contiguous()},
                scratch,
                metadata={
                    "model": model.name,
                    "weights_sha256": model.weights_sha256,
                    "prompts": str(len(texts)),
                },
            )
            digest = sha256_of([scratch])
            scratch.replace(path)
            manifest.write_text(
                json.dumps(
                    {
                        "sha256": digest,
                        "model": model.name,
                        "weights_sha256": model.weights_sha256,
                        "prompts": len(texts),
                        "batch_size": batch_size,
                    }
                )
            )
        except OSError as exc:  # a read-only or full cache only costs time
            log.warning("could not cache the baseline activations in %s (%s)", folder, exc)
    return mean, norm


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
    model: Model,
    vectors: torch.Tensor,
    names: Sequence[str],
    resid_norm: torch.Tensor,
    method: str,
    **attrs: object,
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
    progress: Progress = None,
    cache: bool = True,
    system: str | None = None,
) -> xr.DataArray:
    """Lindsey's concept vectors for ``concepts`` at every layer (``system``: a system message;
    ``None``, the default, sends none, so the template's own default applies).

    The baseline words' mean activation is computed once per (weights, rendered prompts) and kept
    in the model cache (``$MECHINTRO_CACHE/baselines``, hash-checked on read; ``cache=False``
    recomputes it), so later calls cost only the concepts' own prompts. The numbers are the same
    either way (the same batches, in the same order).

    Args:
        progress: a bar over the prompts (default), ``False`` for none, or a ``(done, total)``
            callable (:mod:`mechintro.progress`).

    Returns:
        DataArray ``(concept, layer, d_model)`` float32: act(concept) − mean(act(baseline)).
    """
    concepts = _check_words(concepts, "concept")
    baseline = _check_words(stimuli.baseline_words() if baseline is None else baseline, "baseline")
    if "{word}" not in template:
        raise MechintroError("the template must contain '{word}'")

    def text(w: str) -> str:
        return _chat(model, template.format(word=w.lower() if lowercase else w), system)

    base_texts = [text(w) for w in baseline]
    key = _baseline_key(model, base_texts, batch_size) if cache else None
    cached = key is not None and (cache_dir() / "baselines" / f"{key}.json").is_file()
    with progress_reporter(progress, "concept vectors", "prompt") as report:
        step = _Counter(report, len(concepts) + (0 if cached else len(baseline)))
        mean, base_norm = _baseline_stats(model, base_texts, batch_size, step, cache)
        acts = _acts(model, [text(w) for w in concepts], batch_size, step)
    return _package(
        model,
        acts - mean,
        concepts,
        base_norm,
        "lindsey",
        template=template,
        lowercase=str(lowercase).lower(),
        baseline=list(baseline),
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
        model,
        vec,
        [name],
        both.norm(dim=-1).mean(0),
        "contrastive",
        positive=list(positive),
        negative=list(negative),
        chat=str(chat).lower(),
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
    them (``helpers.py: train_concept_vector``, repeng
    ``ControlVector.train(method="pca_center")``).

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
    neg = _acts(
        model,
        [_chat(model, template.format(concept=neutral), system) + s for s in suffixes],
        batch_size,
    )
    vecs = []
    for c in concepts:
        pos = _acts(
            model,
            [_chat(model, template.format(concept=c), system) + s for s in suffixes],
            batch_size,
        )
        vecs.append(pca_center_direction(pos, neg))
    return _package(
        model,
        torch.stack(vecs),
        concepts,
        neg.norm(dim=-1).mean(0),
        "pca_center",
        template=template,
        neutral=neutral,
        suffixes=list(suffixes),
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
        model,
        (b.mean(0) - a.mean(0))[None],
        [name],
        a.norm(dim=-1).mean(0),
        "model_contrast",
        other_model=other.name,
        other_weights_sha256=other.weights_sha256,
        prompts=list(prompts),
    )


def unit_vector(
    vectors: xr.DataArray, concept: str, layer: int, unit: StrengthUnit = "raw"
) -> torch.Tensor:
    """The vector added per unit strength at ``layer``.

    ``raw``: the concept vector itself (Lindsey). ``resid_norm``: the vector rescaled to the mean
    residual norm at that layer, so strength 1 adds a vector as long as the residual stream.
    """
    if concept not in vectors.indexes["concept"]:
        raise MechintroError(f"no vectors for {[concept]}: compute vectors for these concepts")
    v = torch.from_numpy(
        np.asarray(vectors.sel(concept=concept, layer=layer).values, dtype=np.float32).copy()
    )
    if unit == "raw":
        return v
    if unit == "resid_norm":
        norm = float(v.norm())
        if norm == 0:
            raise MechintroError(
                f"vector for '{concept}' at layer {layer} is zero; cannot rescale it"
            )
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
            raise MechintroError(
                f"layer {str(s)!r} is not a number: use an index (12) or a fraction of depth (0.5)"
            ) from None
        if not math.isfinite(value):
            raise MechintroError(
                f"layer {str(s)!r} is not finite: use an index or a fraction of depth"
            )
        # A fraction by value, not by spelling: "1e-1" is 0.1 of the depth, "12" an index.
        if isinstance(s, float) or not re.fullmatch(r"[+-]?\d+", text):
            if not 0 <= value < 1:
                raise MechintroError(
                    f"layer fraction {text} is outside [0, 1): use e.g. 0.5, or an integer index"
                )
            layer = int(value * n_layers)
        else:
            layer = int(value)
            if layer < 0:
                layer += n_layers
        if not 0 <= layer < n_layers:
            raise MechintroError(
                f"layer {text} is out of range for a model "
                f"with {n_layers} layers (0..{n_layers - 1})"
            )
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
        vectors.to_dataset(name="concept_vectors").to_zarr(
            staging, zarr_format=3, consolidated=False
        )
    return path


def load_vectors(path: str | Path, model: Model | None = None) -> xr.DataArray:
    """Read vectors saved by :func:`save_vectors`; with ``model``, check they belong to it."""
    path = Path(path)
    if not path.exists():
        raise MechintroError(
            f"vectors file {path} does not exist: create it with `mechintro vectors`"
        )
    try:
        # zarr v3 only: v2 stores can carry a pickle codec, which would run code on read.
        ds = xr.open_zarr(path, consolidated=False, zarr_format=3)
        da = ds["concept_vectors"].load()
    except Exception as exc:  # zarr raises many types for a foreign or truncated store
        raise MechintroError(
            f"{path} is not a mechintro vectors store "
            f"({type(exc).__name__}): recreate it with `mechintro vectors`"
        ) from None
    if da.dims != ("concept", "layer", "d_model") or any(
        k not in da.attrs for k in _REQUIRED_ATTRS
    ):
        raise MechintroError(
            f"{path} is not a mechintro vectors store (wrong dims "
            "or attrs): recreate it with `mechintro vectors`"
        )
    if not np.isfinite(da.values).all():
        raise MechintroError(f"{path} contains non-finite values: recompute the vectors")
    if model is not None:
        check_vectors_match(da, model)
    return da


def check_vectors_match(vectors: xr.DataArray, model: Model, concepts: Iterable[str] = ()) -> None:
    """Refuse ``vectors`` made on another model, or lacking a vector for any of ``concepts``.

    Example::

        check_vectors_match(vectors, model, config.concepts)  # before any trial is built
    """
    if vectors.sizes["d_model"] != model.d_model or vectors.sizes["layer"] != model.n_layers:
        raise MechintroError(
            f"vectors have d_model {vectors.sizes['d_model']} and "
            f"{vectors.sizes['layer']} layers but {model.name} has {model.d_model} "
            f"and {model.n_layers}: compute vectors with this model"
        )
    if vectors.attrs.get("weights_sha256") != model.weights_sha256:
        raise MechintroError(
            f"vectors were computed on {vectors.attrs.get('model')} "
            f"(weights {str(vectors.attrs.get('weights_sha256'))[:12]}…), "
            f"not on {model.name}: compute vectors with this model"
        )
    have = set(vectors.concept.values.tolist())
    missing = list(dict.fromkeys(c for c in concepts if c not in have))
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise MechintroError(
            f"no vectors for {missing[:5]}{more}: compute vectors for these concepts"
        )


# --- interop: vectors made elsewhere, and a file other libraries read ----------------------------


def vectors_from_array(
    array: np.ndarray | torch.Tensor,
    model: Model,
    concepts: Sequence[str],
    layers: Sequence[int] | None = None,
    *,
    method: str = "external",
) -> xr.DataArray:
    """Concept vectors from a numpy array or torch tensor made elsewhere (another steering
    library, a probe, a sparse-autoencoder feature), ready to inject with any experiment.

    Args:
        array: ``(concept, layer, d_model)`` — every layer of ``model`` when ``layers`` is
            ``None``, else one row per entry of ``layers`` — or ``(concept, d_model)`` with
            ``layers``: the same vector at each of those layers.
        layers: the model layers the rows belong to. Other layers hold zeros (injecting there
            adds nothing); the defined ones are listed in ``attrs["defined_layers"]``.
        method: recorded as the vectors' ``method`` (provenance).

    Returns:
        DataArray ``(concept, layer, d_model)`` float32, like :func:`concept_vectors`'s, with
        ``resid_norm`` left as NaN (use raw strengths; ``resid_norm`` units need the model's
        activations: compute them with :func:`concept_vectors`).
    """
    values = torch.as_tensor(
        np.asarray(array.detach().cpu() if isinstance(array, torch.Tensor) else array),
        dtype=torch.float32,
    )
    concepts = _check_words(concepts, "concept")
    if layers is not None:
        layers = [model.check_layer(int(layer)) for layer in layers]
        if values.ndim == 2:
            values = values[:, None, :].expand(-1, len(layers), -1)
    expected = (len(concepts), model.n_layers if layers is None else len(layers), model.d_model)
    if tuple(values.shape) != expected:
        raise MechintroError(
            f"array has shape {tuple(values.shape)}, expected (concept, layer, "
            f"d_model) = {expected} for {len(concepts)} concept(s) and "
            f"{model.name} (d_model {model.d_model}): reshape it or pass layers="
        )
    if not torch.isfinite(values).all():
        raise MechintroError("the array contains NaN or inf: pass finite vectors")
    full = values if layers is None else torch.zeros(len(concepts), model.n_layers, model.d_model)
    if layers is not None:
        full[:, layers] = values
    return _package(
        model,
        full,
        concepts,
        torch.full((model.n_layers,), float("nan")),
        method,
        defined_layers=list(range(model.n_layers)) if layers is None else layers,
    )


def save_vectors_safetensors(vectors: xr.DataArray, path: str | Path) -> Path:
    """Write vectors as one safetensors file: tensor ``concept_vectors`` ``(concept, layer,
    d_model)`` float32 and ``resid_norm`` ``(layer,)``; metadata: every attribute (model, weights
    hash, method, provenance) and ``concepts`` (JSON list, the order of axis 0).

    Other steering libraries read it without mechintro::

        from safetensors.torch import load_file
        t = load_file(path)["concept_vectors"]  # (concept, layer, d_model)
        steering = {layer: t[0, layer] for layer in (12, 15)}  # steering-vectors' layer → vector
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists():
        raise MechintroError(f"{path} already exists: choose another path or delete it")
    metadata = {
        str(k): v if isinstance(v, str) else json.dumps(v) for k, v in vectors.attrs.items()
    }
    metadata["concepts"] = json.dumps([str(c) for c in vectors.concept.values])
    tensors = {
        "concept_vectors": torch.from_numpy(
            np.ascontiguousarray(
                vectors.transpose("concept", "layer", "d_model").values, dtype=np.float32
            )
        ),
        "resid_norm": torch.from_numpy(
            np.ascontiguousarray(vectors.resid_norm.values, dtype=np.float32)
        ),
    }
    scratch = path.with_name(path.name + ".partial")
    save_file(tensors, scratch, metadata=metadata)
    scratch.replace(path)
    return path


def load_vectors_safetensors(path: str | Path, model: Model | None = None) -> xr.DataArray:
    """Read vectors written by :func:`save_vectors_safetensors`; with ``model``, check they belong
    to it (same check as :func:`load_vectors`)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise MechintroError(
            f"vectors file {path} does not exist: write it with mi.save_vectors_safetensors"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            vecs, norm = f.get_tensor("concept_vectors"), f.get_tensor("resid_norm")
        concepts = json.loads(metadata.pop("concepts"))
    except Exception as exc:  # safetensors raises several types for a foreign file
        raise MechintroError(
            f"{path} is not a mechintro safetensors vectors file "
            f"({type(exc).__name__}): write it with mi.save_vectors_safetensors"
        ) from None
    if (
        vecs.ndim != 3
        or len(concepts) != vecs.shape[0]
        or any(k not in metadata for k in _REQUIRED_ATTRS)
    ):
        raise MechintroError(
            f"{path} is not a mechintro safetensors vectors file (wrong shape or metadata)"
        )
    da = xr.DataArray(
        vecs.numpy(),
        dims=("concept", "layer", "d_model"),
        coords={
            "concept": np.array(concepts, dtype=object),
            "layer": np.arange(vecs.shape[1]),
            "resid_norm": ("layer", norm.numpy()),
            "vector_norm": (("concept", "layer"), vecs.norm(dim=-1).numpy()),
        },
        name="concept_vectors",
        attrs=metadata,
    )
    if model is not None:
        check_vectors_match(da, model)
    return da


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
    lowercase: bool = True,
) -> xr.DataArray:
    """Any published recipe by name (the Python side of ``mechintro vectors --method``).

    - ``lindsey``: :func:`concept_vectors` of ``concepts`` against ``baseline`` (default Lindsey's
      100 words); no system message unless ``system`` is given; concept and baseline words
      lowercased unless ``lowercase=False`` (the open replications keep them as listed).
    - ``pca_center``: :func:`pca_center_vectors` (the Latent Introspection code's recipe; default
      an empty system message and the authors' 582 ``suffixes``).
    - ``contrastive``: :func:`contrastive_vector`, ``positive`` minus ``negative`` prompts, named
      ``concepts[0]`` (raw strings with ``chat=False``, as Godet's caps vector).

    ``system``: a system message for the prompts; ``None`` sends none (the template's default
    applies); left out, each method's own default.
    """
    if method == "lindsey":
        return concept_vectors(
            model,
            concepts,
            baseline=baseline,
            batch_size=batch_size,
            system=None if system == "method default" else system,
            lowercase=lowercase,
        )
    if not lowercase:
        raise MechintroError(
            f"lowercase=False applies to the lindsey method only, not {method}: drop it"
        )
    if method == "pca_center":
        return pca_center_vectors(
            model,
            concepts,
            suffixes=suffixes,
            batch_size=batch_size,
            system="" if system == "method default" else system,
        )
    if method == "contrastive":
        if len(concepts) != 1:
            raise MechintroError(
                "a contrastive vector takes one name: give "
                "exactly one concept (e.g. --concepts caps)"
            )
        return contrastive_vector(
            model,
            positive,
            negative,
            name=concepts[0],
            chat=chat,
            batch_size=batch_size,
            system=None if system == "method default" else system,
        )
    raise MechintroError(
        f"unknown vector method '{method}': use lindsey, pca_center or contrastive"
    )
