"""``concept-confusion``: which of 9 concepts (or none) was injected in the previous turn, read as
a 10-way choice from the logits with no judge — Pearson-Vogel et al.'s concept confusion matrix
(arXiv 2602.20031; acsresearch/latent-introspection-code @ 5007f75, ``main.py``
``concept_confusion_matrix``, lines 1201-1385, and ``helpers.py`` ``logit_lens_helper``,
``generate_orderings``, ``map_to_canonical``, ``average_confusion_matrices``).

The conversation is ``latent-introspection``'s (turn 1 of an intervention's framing, an optional
info document, the preset reply ``{ }``, all steered at every layer of a range, system template
tokens included), then the code's ``USER_TURN_2_CONFUSION_MATRIX``: "(no injection)" and the
concepts listed as options 0-9 in one of 5 shuffled orders (their ``generate_orderings(10, 5,
seed=777)``), answered after the prefill "The answer is ". Each concept (and nothing, for "(no
injection)") is injected on each ordering's byte-identical prompt. The readout is the code's:
the probability of each option's digit token, read through the logit lens at the last 10 layers
(``lens_layers``; the final norm and unembedding applied to the recorded residual stream at the
answer position, the last layer being the model's own output), mapped back to the canonical order
and averaged over the orderings into a (layer, injected, recovered) confusion matrix.

Mutual information between injected and recovered concept, in bits (their code has none; the
paper reports it): ``soft_mi`` from the averaged matrix (rows renormalised over the options,
uniform prior over what was injected), and ``mi`` from the argmax decisions (one per ordering and
injected option) with Miller-Madow's bias correction (``mi_mm``). Each has a permutation null that
reassigns the injected labels within each ordering (``*_null``: its mean; ``*_p``: one-sided
p-value). Controls on the byte-identical prompts, in every cell: ``random``, a Gaussian
direction per layer with the concept vector's norm there, and ``shuffled``, the concept vector
with its coordinates permuted (same norm and values, another direction); both share the
"(no injection)" row. A cell is above random only when the concept's Wilson lower bound on
balanced accuracy exceeds the random control's upper bound (bamdadd/introspection-scaling's
rule). Every option appears in 5 positions, so position bias is counterbalanced; the answers with
nothing injected are reported, and a cell whose answer never varies has no power.

Defaults are the code's: its 9 concepts, PCA-center vectors (as ``latent-introspection`` makes
them), strength 20 on the middle third of the layers (vgel's Qwen-32B preset), every framing and
info document. The differences are in docs/protocols.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import xarray as xr

from mechintro import stimuli
from mechintro.errors import MechintroError
from mechintro.experiments import _common, base
from mechintro.experiments.base import BaseConfig
from mechintro.models import Model
from mechintro.prompts import message_window, render_chat, tokenize
from mechintro.reading import NextToken, Readout
from mechintro.runner import Answers, Trial
from mechintro.stats import rate
from mechintro.tables import table
from mechintro.vectors import (
    check_vectors_match,
    resolve_layers,
    unit_vector,
)

NAME = "concept-confusion"
NONE = "(no injection)"
CONDITIONS = ("concept", "random", "shuffled")
Info = Literal["none", "introspect", "lorem", "poetic"]
PREFILL = "The answer is "


@dataclass(frozen=True, kw_only=True)
class ConceptConfusionConfig(BaseConfig):
    """Configuration of a ``concept-confusion`` run (defaults: acsresearch/latent-introspection-
    code ``concept_confusion_matrix``; docs/protocols.md)."""

    concepts: tuple[str, ...] = _common.ACS_CONCEPTS
    """the injected concepts, listed after "(no injection)" as options 1-9 (at most 9)"""
    vector_method: Literal["pca_center", "lindsey"] = "pca_center"
    """the code's PCA-centred vectors or Lindsey's mean differences"""
    layer_start: str | int | float = "0.33"
    """first steered layer (index or fraction of depth)"""
    layer_end: str | int | float = "0.67"
    """end of the steered layers, exclusive (n_layers or 1.0: to the last layer)"""
    strengths: tuple[float, ...] = (20.0,)
    """raw multipliers of the vectors (the code's vector_strength)"""
    interventions: tuple[_common.Intervention, ...] = (
        "inject",
        "inject-inaccurate",
        "finetune",
        "salient",
        "echo",
    )
    """the turn-1 framings (the code crosses all five with every document)"""
    infos: tuple[Info, ...] = ("none", "introspect", "lorem", "poetic")
    """the info documents in turn 1 (the paper's "with the info document": introspect)"""
    orderings: int = 5
    """shuffled option orders (the code's N_ORDERINGS)"""
    orderings_seed: int = 777
    """seed of the orders (the code's generate_orderings(..., seed=777), Python's random)"""
    lens_layers: int = 10
    """the last N layers read through the logit lens (the code's last_n_layers); 0: the final
    layer only, no residuals recorded"""
    random_control: bool = True
    """also inject the random and the shuffled-coordinate vectors on the same prompts"""
    n_perm: int = 1000
    """permutations of the mutual information's null (summary only)"""
    system_message: str = ""
    """the code's empty system message, in the trials and the vector prompts"""
    suffixes_file: str = ""
    """PCA-center suffixes (JSON list); default the code's 582 truncated outputs"""
    lowercase: bool = True
    """Lindsey vectors computed here: lowercase the concept and baseline words"""
    batch_size: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= len(self.concepts) <= 9:
            raise MechintroError(
                f"{len(self.concepts)} concepts: give 1 to 9 (with '(no injection)' they are "
                "options 0-9)"
            )
        if len(set(self.concepts)) != len(self.concepts):
            raise MechintroError("a concept is listed twice: give each concept once")
        if not self.interventions or not self.infos:
            raise MechintroError(
                "the interventions and infos lists must each hold at least one entry"
            )
        if self.orderings < 1:
            raise MechintroError(f"orderings={self.orderings}: give at least 1")
        if self.lens_layers < 0:
            raise MechintroError(f"lens_layers={self.lens_layers}: give 0 or more")
        if self.n_perm < 1:
            raise MechintroError(f"n_perm={self.n_perm}: give at least 1")
        if self.suffixes_file:
            _common.load_suffixes(self.suffixes_file)


Config = ConceptConfusionConfig


def generate_orderings(n: int, count: int, seed: int) -> list[list[int]]:
    """The code's ``generate_orderings``: ``perm[shown position] = canonical index``."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        perm = list(range(n))
        rng.shuffle(perm)
        out.append(perm)
    return out


def messages(
    concepts: tuple[str, ...], perm: list[int], intervention: str, info: str, system: str = ""
) -> list[dict[str, str]]:
    """The code's conversation for one framing, document and option order."""
    li = stimuli.latent_introspection()
    canonical = [NONE, *concepts]
    listing = "\n".join(f"{i}. {canonical[perm[i]]}" for i in range(len(canonical)))
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": _common.first_turn(li, intervention, info)},
        {"role": "assistant", "content": li["ASST_TURN_1"]},
        {"role": "user", "content": li["USER_TURN_2_CONFUSION_MATRIX"].format(
            concept_list_str=listing)},
        {"role": "assistant", "content": PREFILL},
    ]  # fmt: skip


def answers(n: int) -> Answers:
    """Options ``"0"`` … ``str(n - 1)``: the code's ``token_id(tokenizer, label)``."""
    return Answers(forms={str(i): (str(i),) for i in range(n)})


def _layer_range(config: ConceptConfusionConfig, n_layers: int) -> list[int]:
    (start,) = resolve_layers([config.layer_start], n_layers)
    end_spec = str(config.layer_end).strip()
    end = (
        n_layers
        if end_spec in (str(n_layers), "1", "1.0")
        else resolve_layers([end_spec], n_layers)[0]
    )
    if end <= start:
        raise MechintroError(
            f"layer range {start}..{end} is empty: layer_end must come after layer_start"
        )
    return list(range(start, end))


def build_trials(
    config: ConceptConfusionConfig, model: Model, vectors: xr.DataArray
) -> tuple[list[Trial], list[int]]:
    """Per framing, document, ordering and strength: one uninjected trial and, per concept, the
    concept vector (and its random and shuffled controls) over turn 1, on one prompt.

    Example::

        trials, layers = build_trials(Config(infos=("none",), interventions=("inject",)), m, v)
    """
    layers = _layer_range(config, model.n_layers)
    check_vectors_match(vectors, model, config.concepts)
    rng = np.random.default_rng(config.seed)
    steer: dict[tuple[str, str], torch.Tensor] = {}
    for c in config.concepts:
        v = torch.stack([unit_vector(vectors, c, layer) for layer in layers])
        if float(v.norm()) == 0:
            raise MechintroError(f"vector for '{c}' is zero on layers {layers[0]}..{layers[-1]}")
        noise = torch.from_numpy(rng.standard_normal(v.shape)).float()
        perm = torch.from_numpy(rng.permutation(v.shape[1]))
        steer[("concept", c)] = v
        steer[("random", c)] = noise / noise.norm(dim=1, keepdim=True) * v.norm(dim=1, keepdim=True)
        steer[("shuffled", c)] = v[:, perm]
    conditions = CONDITIONS if config.random_control else CONDITIONS[:1]
    orders = generate_orderings(len(config.concepts) + 1, config.orderings, config.orderings_seed)
    trials: list[Trial] = []
    for iv in config.interventions:
        for info in config.infos:
            for o, perm in enumerate(orders):
                msgs = messages(config.concepts, perm, iv, info, config.system_message)
                prompt = tokenize(
                    model.tokenizer, render_chat(model.tokenizer, msgs, continue_final=True)
                )
                window = message_window(model.tokenizer, msgs, 0, 3)
                labels = {"intervention": iv, "info": info, "ordering": o, "perm": json.dumps(perm)}
                for s in config.strengths:
                    trials.append(
                        Trial(
                            prompt=prompt,
                            condition="none",
                            strength=float(s),
                            labels=labels | {"injected": NONE},
                        )
                    )
                    for c in config.concepts:
                        trials += [
                            base.injected_trial(
                                prompt,
                                cond,
                                c,
                                s,
                                layers[0],
                                steer[(cond, c)],
                                window,
                                end=layers[-1] + 1,
                                labels=labels | {"injected": c},
                            )
                            for cond in conditions
                        ]
    return trials, layers


def lens_config(config: ConceptConfusionConfig, n_layers: int) -> ConceptConfusionConfig:
    """``config`` recording the residual stream the lens reads: the answer position (float32)
    at the last ``lens_layers`` layers; unchanged when ``lens_layers`` is 0."""
    if config.lens_layers == 0:
        return config
    if config.lens_layers > n_layers:
        raise MechintroError(
            f"lens_layers={config.lens_layers}: the model has {n_layers} layers; give at most that"
        )
    return dataclasses.replace(
        config,
        record_resid=True,
        resid_layers=tuple(str(i) for i in range(n_layers - config.lens_layers, n_layers)),
        resid_positions=("last:1",),
        resid_dtype="float32",
    )


def prepare(config: ConceptConfusionConfig, model: Model) -> ConceptConfusionConfig:
    """The config as run: the residual stream at the answer position recorded at the last
    ``lens_layers`` layers (:func:`lens_config`), for :func:`summarize` with ``model``."""
    return lens_config(config, model.n_layers)


def make_vectors(config: ConceptConfusionConfig, model: Model) -> xr.DataArray:
    """The configured vectors (PCA-center by default, as the code makes them)."""
    return _common.code_vectors(
        model,
        config.concepts,
        method=config.vector_method,
        suffixes_file=config.suffixes_file,
        system=config.system_message,
        lowercase=config.lowercase,
    )


def readouts(config: ConceptConfusionConfig, model: Model) -> list[Readout]:
    """The option digits' next-token log-probabilities (one option per concept, and none)."""
    return [NextToken(answers(len(config.concepts) + 1))]


def run_attrs(config: ConceptConfusionConfig, layers: list[int]) -> dict[str, str]:
    """The injected span of layers as the run's ``layer_map``."""
    return {"layer_map": json.dumps({"start": layers[0], "end": layers[-1] + 1})}


run = base.bound_run(__name__)


def option_probs(ds: xr.Dataset, model: Model | None = None) -> tuple[np.ndarray, list[int]]:
    """``(trial, layer, option)`` probabilities of the option digits (full-vocabulary softmax, as
    the code reads them) and the layers: with ``model``, the logit lens at every recorded layer;
    without, the final layer from the stored answer log-probabilities."""
    n = len(json.loads(ds.attrs["config"])["concepts"]) + 1
    labels = [str(x) for x in ds["answer_label"].values]
    cols = [labels.index(str(i)) for i in range(n)]
    n_layers = int(ds.attrs.get("n_layers", 0)) or None
    if model is None or "resid" not in ds:
        final = np.exp(np.asarray(ds["answer_logprobs"].values, dtype=np.float64)[:, cols])
        last = n_layers - 1 if n_layers else -1
        return final[:, None, :], [last]
    from mechintro.arch import get_module, text_config

    if ds.attrs.get("weights_sha256") != model.weights_sha256:
        raise MechintroError(
            f"the run was made with other weights than {model.name}: load the run's model "
            f"({ds.attrs.get('model')})"
        )
    norm = get_module(model.hf, model.arch.final_norm)
    unembed = get_module(model.hf, model.arch.unembed)
    cap = getattr(text_config(model.hf.config), "final_logit_softcapping", None)
    ids = torch.tensor([int(ds["answer_id"].values[c]) for c in cols])
    layers = [int(x) for x in ds["layer"].values]
    out = np.empty((ds.sizes["trial"], len(layers), n))
    for j, layer in enumerate(layers):
        h = np.asarray(ds["resid"].sel(layer=layer).isel(pos=-1).values, dtype=np.float32)
        with torch.no_grad():
            logits = unembed(norm(torch.from_numpy(h).to(model.device, model.dtype))).float().cpu()
        if cap:
            logits = torch.tanh(logits / cap) * cap
        out[:, j] = torch.softmax(logits, -1)[:, ids].double().numpy()
    return out, layers


def mutual_information(joint: np.ndarray) -> float:
    """Plug-in mutual information (bits) of a joint table of counts or probabilities."""
    p = np.asarray(joint, dtype=np.float64)
    p = p / p.sum()
    pa, pr = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log2(p[nz] / (pa @ pr)[nz])).sum())


def miller_madow(counts: np.ndarray) -> float:
    """Mutual information (bits) of a count table with Miller-Madow's correction applied to each
    entropy of I = H(A) + H(R) - H(A, R): each adds (bins with counts - 1) / (2 N ln 2)."""
    c = np.asarray(counts, dtype=np.float64)
    n = c.sum()
    bins = np.count_nonzero(c.sum(1)) + np.count_nonzero(c.sum(0)) - np.count_nonzero(c) - 1
    return mutual_information(c) + bins / (2 * n * math.log(2))


def soft_mi(conditional: np.ndarray) -> float:
    """Mutual information (bits) of a (injected, recovered) matrix of probabilities: each row
    renormalised to a distribution, the injected label uniform."""
    rows = np.asarray(conditional, dtype=np.float64)
    rows = rows / rows.sum(1, keepdims=True)
    return mutual_information(rows / len(rows))


def _mi_bits(joint: np.ndarray) -> np.ndarray:
    """:func:`mutual_information` over the last two axes of a stack of joint tables."""
    p = joint / joint.sum((-2, -1), keepdims=True)
    expected = p.sum(-1, keepdims=True) * p.sum(-2, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log2(p / expected), 0.0)
    return terms.sum((-2, -1))


def _mm_bits(counts: np.ndarray) -> np.ndarray:
    """:func:`miller_madow` over the last two axes of a stack of count tables."""
    n = counts.sum((-2, -1))
    bins = (
        np.count_nonzero(counts.sum(-1), -1)
        + np.count_nonzero(counts.sum(-2), -1)
        - np.count_nonzero(counts, (-2, -1))
        - 1
    )
    return _mi_bits(counts) + bins / (2 * n * math.log(2))


def confusion_stats(probs: np.ndarray, *, n_perm: int = 1000, seed: int = 0) -> dict[str, object]:
    """One cell's numbers from ``probs`` ``(ordering, injected, recovered)`` (canonical order,
    row 0 "(no injection)"): the averaged matrix (their ``average_confusion_matrices``), its
    soft MI, the argmax decisions' MI (plug-in and Miller-Madow), balanced accuracy, and the
    permutation nulls that reassign the injected labels within each ordering."""
    n_o, k, _ = probs.shape
    choice = probs.argmax(2)  # (ordering, injected)
    truth = np.broadcast_to(np.arange(k), choice.shape)
    counts = np.zeros((k, k))
    np.add.at(counts, (truth.ravel(), choice.ravel()), 1)
    obs_soft = soft_mi(probs.mean(0))
    obs_mm = miller_madow(counts)
    rng = np.random.default_rng(seed)
    perms = rng.random((n_perm, n_o, k)).argsort(-1)  # row r of order o gets label perms[.., o, r]
    inv = perms.argsort(-1)  # the row that label a comes from
    moved = probs[np.arange(n_o)[None, :, None], inv]  # (perm, order, label, recovered)
    rows = moved.mean(1)
    null_soft = _mi_bits(rows / rows.sum(-1, keepdims=True) / k)
    flat = (np.arange(n_perm)[:, None, None] * k + perms) * k + choice[None]
    null_counts = np.bincount(flat.ravel(), minlength=n_perm * k * k).reshape(n_perm, k, k)
    null_mm = _mm_bits(null_counts.astype(np.float64))
    hit = (choice == truth).ravel()
    acc, lo, hi, n = rate(hit)
    return {
        "confusion": probs.mean(0),
        "soft_mi": obs_soft,
        "soft_mi_null": float(null_soft.mean()),
        "soft_mi_p": float((1 + (null_soft >= obs_soft - 1e-12).sum()) / (1 + n_perm)),
        "mi": mutual_information(counts),
        "mi_mm": obs_mm,
        "mi_null": float(null_mm.mean()),
        "mi_p": float((1 + (null_mm >= obs_mm - 1e-12).sum()) / (1 + n_perm)),
        "accuracy": acc,
        "lo": lo,
        "hi": hi,
        "n": n,
        # within one order: a single digit chosen whatever is injected reads as varying over
        # the canonical options only because the orders differ
        "varies": float(any(len(set(row.tolist())) > 1 for row in choice)),
    }


SCALARS = (
    "orders",
    "soft_mi", "soft_mi_null", "soft_mi_p", "mi", "mi_mm", "mi_null", "mi_p", "accuracy", "lo",
    "hi", "n", "varies",
)  # fmt: skip


def summarize(
    ds: xr.Dataset, *, model: Model | None = None, n_perm: int | None = None, seed: int = 0
) -> xr.Dataset:
    """Per framing, document, strength, condition (concept, random, shuffled) and lens layer: the
    confusion matrix averaged over orderings (``confusion``, injected × recovered, canonical
    order), the mutual information (``soft_mi``, ``mi``, ``mi_mm``, their nulls and p-values),
    balanced accuracy with its Wilson interval, whether the answer varies, and ``above_random``;
    ``orders``: the option orders every row of which the run holds (all, unless it stopped early).
    With ``model`` the lens layers recorded in the run; without, the final layer only. The
    answers with nothing injected are in the attrs.

    Example::

        s = summarize(mi.open_run("cc.zarr"), model=mi.load_model("smollm2-135m"))
        s.mi_mm.sel(condition="concept") - s.mi_mm.sel(condition="random")
    """
    _common.require_experiment(ds, NAME)
    cfg = json.loads(ds.attrs["config"])
    n_perm = int(cfg.get("n_perm", 1000)) if n_perm is None else n_perm
    canonical = [NONE, *cfg["concepts"]]
    k = len(canonical)
    probs, layers = option_probs(ds, model)
    get = {name: np.array([str(x) for x in ds[name].values], dtype=object) for name in (
        "condition", "intervention", "info", "injected", "perm")}  # fmt: skip
    ordering = np.asarray(ds["ordering"].values).astype(int)
    strength = np.asarray(ds["strength"].values, dtype=float)
    ivs = [x for x in cfg["interventions"] if (get["intervention"] == x).any()]
    infos = [x for x in cfg["infos"] if (get["info"] == x).any()]
    strengths = sorted(set(strength.tolist()))
    conds = [c for c in CONDITIONS if (get["condition"] == c).any()]
    n_o = int(ordering.max()) + 1
    shape = (len(ivs), len(infos), len(strengths), len(conds), len(layers))
    out = {name: np.full(shape, np.nan) for name in SCALARS}
    confusion = np.full((*shape, k, k), np.nan)
    none_counts: dict[str, dict[str, int]] = {}
    for a, iv in enumerate(ivs):
        for b, info in enumerate(infos):
            for c, s in enumerate(strengths):
                cell = (get["intervention"] == iv) & (get["info"] == info) & (strength == s)
                none = np.flatnonzero(cell & (get["condition"] == "none"))
                picks = [
                    canonical[json.loads(get["perm"][i])[int(probs[i, -1].argmax())]] for i in none
                ]
                none_counts[f"{iv}/{info}/{s:g}"] = {x: picks.count(x) for x in canonical}
                for d, cond in enumerate(conds):
                    rows = np.zeros((n_o, k, len(layers), k))
                    filled = np.zeros((n_o, k), dtype=bool)
                    for i in np.flatnonzero(cell & np.isin(get["condition"], ["none", cond])):
                        perm = json.loads(get["perm"][i])
                        r = canonical.index(get["injected"][i])
                        rows[ordering[i], r][:, perm] = probs[i]  # map_to_canonical
                        filled[ordering[i], r] = True
                    whole = filled.all(1)  # the orders with every row (a run stopped early)
                    if not whole.any():
                        continue
                    for e in range(len(layers)):
                        st = confusion_stats(rows[whole, :, e], n_perm=n_perm, seed=seed)
                        confusion[a, b, c, d, e] = st.pop("confusion")
                        for name, v in st.items():
                            out[name][a, b, c, d, e] = v
                        out["orders"][a, b, c, d, e] = whole.sum()
    dims = ("intervention", "info", "strength", "condition", "lens_layer")
    summary = xr.Dataset(
        {name: (dims, v) for name, v in out.items()}
        | {"confusion": ((*dims, "injected", "recovered"), confusion)},
        coords={
            "intervention": ivs, "info": infos, "strength": strengths, "condition": conds,
            "lens_layer": layers, "injected": canonical, "recovered": canonical,
        },
    )  # fmt: skip
    summary["n"] = summary["n"].fillna(0).astype(int)
    summary["orders"] = summary["orders"].fillna(0).astype(int)
    summary["chance"] = 1 / k
    summary["max_mi"] = math.log2(k)
    for ctl in ("random", "shuffled"):
        if ctl in conds:
            summary[f"above_{ctl}"] = summary.lo.sel(condition="concept") > summary.hi.sel(
                condition=ctl
            )
    summary.attrs["uninjected_choices"] = json.dumps(none_counts)
    summary.attrs["orderings"] = n_o
    return summary


def format_summary(summary: xr.Dataset) -> str:
    """:func:`summarize`'s table: one row per framing, document, strength and lens layer, the
    concept's numbers beside its controls'.

    Example::

        text = format_summary(summarize(mi.open_run("cc.zarr")))  # as `mechintro run` prints it
    """
    rows = []
    conds = [str(c) for c in summary.condition.values]
    for iv in summary.intervention.values:
        for info in summary["info"].values:
            for s in summary.strength.values:
                for layer in summary.lens_layer.values:
                    c = summary.sel(intervention=iv, info=info, strength=s, lens_layer=layer)
                    row: dict[str, object] = {
                        "framing": f"{iv}/{info}",
                        "strength": f"{float(s):g}",
                        "layer": int(layer),
                    }
                    for cond in conds:
                        x = c.sel(condition=cond)
                        row[f"{cond} acc [95% CI]"] = (
                            f"{float(x.accuracy):.2f} [{float(x.lo):.2f}, {float(x.hi):.2f}]"
                        )
                        row[f"{cond} MI-MM (null, p)"] = (
                            f"{float(x.mi_mm):.2f} ({float(x.mi_null):.2f}, {float(x.mi_p):.3f})"
                        )
                        row[f"{cond} soft MI"] = f"{float(x.soft_mi):.3f}"
                    x = c.sel(condition="concept")
                    row["power"] = "varies" if x.varies else "no power (one answer)"
                    if "above_random" in c:
                        row["above random"] = "yes" if bool(c.above_random) else "no"
                    rows.append(row)
    return (
        table(rows) + f"\nchance {float(summary.chance):.2f}; option orders per cell "
        f"{int(summary.orders.min())}-{int(summary.orders.max())} of "
        f"{summary.attrs['orderings']}; MI in bits (at most "
        f"{float(summary.max_mi):.2f}); MI-MM: argmax decisions, Miller-Madow corrected, with "
        "its permutation null's mean and p; soft MI: the averaged probability matrix; answers "
        "with nothing injected (canonical option chosen): "
        + summary.attrs["uninjected_choices"]
        + "\nabove random: the concept's lower bound exceeds the random direction's upper bound"
    )
