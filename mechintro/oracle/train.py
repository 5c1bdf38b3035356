"""Training and evaluating an activation oracle.

:func:`train` builds the training mixture (:mod:`mechintro.oracle.data`), reads each example's
activations from the *base* model (as a run stores them: float16 residuals after the block), and
LoRA-finetunes the model with :func:`mechintro.training.finetune` — seeded, checkpointed into
``OUT.partial`` and resumed bit-identically after a kill, provenance in ``training.json`` — with
the activations added at the placeholders during every forward pass (the norm-matched addition
at layer 1, the added term detached from the graph as in the authors' hook).

Our defaults against the paper's (``nl_probes/configs/sft_config.py``): LoRA r 64, α 128 on
all linear layers, lr 1e-5, 1 epoch, batch 16 — the same; dropout 0 instead of 0.05 (a resumed
run must replay the same steps), no warm-up/linear decay and no gradient clipping (the project's
finetune loop has neither), and thousands of examples instead of ~1M.

:func:`evaluate_items` measures yes/no accuracy on the held-out task families and on questions about
held-out concepts, for the oracle, the untrained model asked the same way, the oracle fed
shuffled activations (a sanity check that should fall to chance) and a logistic-regression probe
on the same activations, each with a Wilson interval.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mechintro import engine, training
from mechintro.arch import get_module
from mechintro.errors import MechintroError
from mechintro.models import Model
from mechintro.oracle import (
    COEFFICIENT,
    INJECT_LAYER,
    LAYER_PERCENTS,
    ORACLE_KEY,
    PLACEHOLDER,
    YES_NO,
    Oracle,
    oracle_prompt,
    source_layer,
    untrained,
    yes_no_ids,
)
from mechintro.oracle import data as odata
from mechintro.prompts import render_chat, tokenize


@dataclass(frozen=True, kw_only=True)
class OracleConfig(training.LoraSettings):
    """Oracle training settings (the paper's LoRA and learning rate; see the module docstring)."""

    examples: int = 2000
    rank: int = 64
    alpha: int = 128
    learning_rate: float = 1e-5
    batch_size: int = 16
    inject_layer: int = INJECT_LAYER
    coefficient: float = COEFFICIENT
    layer_percents: tuple[int, ...] = LAYER_PERCENTS

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.layer_percents or not all(0 <= p < 100 for p in self.layer_percents):
            raise MechintroError("layer_percents must be depths from 0 to 99")


def _context_tokens(model: Model, ex: odata.Example) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Token ids of an example's context and its activation positions (non-negative)."""
    if isinstance(ex.context, tuple):
        system, user = ex.context
        text = render_chat(
            model.tokenizer,
            [{"role": "system", "content": system}, {"role": "user", "content": user}],
        )
        prompt = tokenize(model.tokenizer, text)
        start = text.rindex(user)
        in_user = [
            i for i, (a, b) in enumerate(prompt.offsets) if a < start + len(user) and b > start
        ]
        return prompt.input_ids, tuple(in_user[p] for p in ex.positions)
    ids = tuple(model.tokenizer(ex.context, add_special_tokens=False)["input_ids"])
    return ids, tuple(p % len(ids) for p in ex.positions)


def activations(
    model: Model, examples: Sequence[odata.Example], *, batch_size: int = 16
) -> list[tuple[int, torch.Tensor]]:
    """Each example's ``(layer, activations (positions, d_model))``, float16-rounded as a run
    stores them, from ``model``'s residual stream over the example's context."""
    out: list[tuple[int, torch.Tensor]] = []
    for s in range(0, len(examples), batch_size):
        chunk = examples[s : s + batch_size]
        tokens = [_context_tokens(model, ex) for ex in chunk]
        res = engine.run_batch(
            model, [ids for ids, _ in tokens], [[] for _ in chunk], [engine.Resid()]
        )
        width = res.resid.shape[2]
        for row, (ex, (ids, pos)) in enumerate(zip(chunk, tokens, strict=True)):
            layer = source_layer(model, ex.percent)
            out.append((layer, res.resid[row, layer, [width - len(ids) + p for p in pos]].float()))
    return out


def _question(ex: odata.Example) -> str:
    return (YES_NO + ex.question) if ex.label is not None else ex.question


def _digest(acts: list[tuple[int, torch.Tensor]]) -> str:
    h = hashlib.sha256()
    for layer, a in acts:
        h.update(str(layer).encode())
        h.update(a.to(torch.float16).numpy().tobytes())
    return h.hexdigest()


def _steer(
    model: Model, placements: list[tuple[tuple[int, ...], torch.Tensor]], config: OracleConfig
) -> Callable:
    """finetune's ``steer``: a forward hook adding each example's activations at its
    placeholders."""

    @contextlib.contextmanager
    def steer(peft_model, indices):
        block = get_module(peft_model.base_model.model, model.arch.layers)[config.inject_layer]

        def hook(module, args, output):
            h = output[0] if isinstance(output, tuple) else output
            delta = torch.zeros_like(h)
            for row, i in enumerate(indices):
                pos, vecs = placements[i]
                at = list(pos)
                unit = torch.nn.functional.normalize(vecs.to(h.dtype), dim=-1)
                delta[row, at] = (
                    h[row, at].norm(dim=-1, keepdim=True) * unit * config.coefficient
                ).detach()
            h = h + delta
            return (h, *output[1:]) if isinstance(output, tuple) else h

        handle = block.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    return steer


def train(
    model: Model,
    out: str | Path,
    config: OracleConfig,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Train an activation oracle for ``model`` into ``out`` (an adapter directory with
    ``training.json``; resumes ``out.partial``). Returns ``out``."""
    if model.remote:
        raise MechintroError("oracle training runs here, not remotely: drop --remote")
    model.check_layer(config.inject_layer)
    examples = odata.training_set(
        config.examples, seed=config.seed, tokenizer=model.tokenizer, percents=config.layer_percents
    )
    leaked = odata.leaks(examples)
    if leaked:  # the builder filters them; this guards any change to it
        i, word = leaked[0]
        raise MechintroError(
            f"oracle training example {i} ({examples[i].family}) mentions the held-out concept "
            f"{word!r}: remove it from mechintro.oracle.data's pools"
        )
    acts = activations(model, examples)
    pairs, placements = [], []
    for ex, (layer, vecs) in zip(examples, acts, strict=True):
        prompt = oracle_prompt(model.tokenizer, _question(ex), layer=layer, n_positions=len(vecs))
        user = (
            f"Layer: {layer}\n" + PLACEHOLDER * len(vecs) + " \n" + _question(ex)
        )  # the user turn oracle_prompt renders
        ids, _ = training._encode(model, user, ex.answer)
        if [ids[p] for p in prompt.positions] != [prompt.input_ids[p] for p in prompt.positions]:
            raise MechintroError(
                f"{model.name}'s tokenizer renders the oracle "
                "prompt differently with an answer after it"
            )
        pairs.append((user, ex.answer))
        placements.append((prompt.positions, vecs))
    families = sorted({ex.family for ex in examples})
    record = {
        ORACLE_KEY: {
            "inject_layer": config.inject_layer,
            "coefficient": config.coefficient,
            "layer_percents": list(config.layer_percents),
            "source_layers": sorted({a[0] for a in acts}),
            "families": {f: sum(ex.family == f for ex in examples) for f in families},
            "held_out_families": list(odata.HELD_OUT_FAMILIES),
            "held_out_concepts": "Lindsey's 50 concept words (mechintro.stimuli.concept_words)",
            "held_out_filter": "no example mentions a held-out word in any singular/plural form "
            "(word boundary, any case; mechintro.oracle.data.held_out_mentions)",
            "context_texts": len(odata._texts()),
            "activations_sha256": _digest(acts),
            "oracle_config": dataclasses.asdict(config),
        }
    }
    return training.finetune(
        model,
        pairs,
        out,
        config.lora(),
        progress=progress,
        steer=_steer(model, placements, config),
        extra_record=record,
    )


# --- evaluation ----------------------------------------------------------------------------------


def p_yes_examples(
    oracle: Oracle,
    examples: Sequence[odata.Example],
    acts: Sequence[tuple[int, torch.Tensor]],
    *,
    batch_size: int = 16,
) -> np.ndarray:
    """P(yes)/(P(yes)+P(no)) per yes/no example, each with its own question, layer and
    activations."""
    yes, no = yes_no_ids(oracle.model.tokenizer)
    scores = []
    for s in range(0, len(examples), batch_size):
        prompts, patches = [], []
        for ex, (layer, vecs) in zip(
            examples[s : s + batch_size], acts[s : s + batch_size], strict=True
        ):
            p = oracle_prompt(
                oracle.model.tokenizer, _question(ex), layer=layer, n_positions=len(vecs)
            )
            prompts.append(p.input_ids)
            patches.append(
                engine.Patch(
                    vectors=vecs,
                    positions=p.positions,
                    layer=oracle.inject_layer,
                    coefficient=oracle.coefficient,
                )
            )
        lp = engine.run_batch(
            oracle.model, prompts, [[p] for p in patches], [engine.NextToken((*yes, *no))]
        ).answer_logprobs
        scores.append(
            torch.sigmoid(
                torch.logsumexp(lp[:, : len(yes)], -1) - torch.logsumexp(lp[:, len(yes) :], -1)
            ).numpy()
        )
    return np.concatenate(scores)


def _probe_scores(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(set(train_y.tolist())) < 2:
        return np.full(len(test_x), float(train_y.mean()))
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    probe.fit(train_x, train_y)
    return probe.predict_proba(test_x)[:, 1]


def _signflip_p(diff: np.ndarray, clusters: Sequence[object], *, draws: int, seed: int) -> float:
    """Two-sided sign-flip permutation p of the summed paired difference ``diff``, flipping whole
    clusters (every item of a concept together): exact when there are at most 16 clusters,
    else ``draws`` random flips (p then has resolution 1/(draws + 1))."""
    keys = sorted(set(clusters), key=str)
    sums = np.array([diff[[c == k for c in clusters]].sum() for k in keys])
    observed = abs(sums.sum())
    if observed == 0:
        return 1.0
    if len(keys) <= 16:
        signs = 1 - 2 * ((np.arange(2 ** len(keys))[:, None] >> np.arange(len(keys))) & 1)
        return float(np.mean(np.abs(signs @ sums) >= observed - 1e-12))
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(draws, len(keys)))
    return float((1 + np.sum(np.abs(signs @ sums) >= observed - 1e-12)) / (draws + 1))


def paired_tests(
    a: np.ndarray, b: np.ndarray, clusters: Sequence[object], *, draws: int = 20000, seed: int = 0
) -> dict:
    """Reader ``a`` against reader ``b`` on the same items (``a``, ``b``: correct per item).

    ``mcnemar_p``: exact two-sided McNemar test (binomial on the discordant items, ``a_only``
    right only for ``a``, ``b_only`` only for ``b``), items independent. ``clustered_p``: the
    concept-clustered version, a sign-flip permutation test of the summed difference flipping
    all items of a concept together (:func:`_signflip_p`)."""
    from scipy.stats import binomtest

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    a_only, b_only = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    return {
        "a_only": a_only,
        "b_only": b_only,
        "mcnemar_p": float(binomtest(a_only, a_only + b_only, 0.5).pvalue)
        if a_only + b_only
        else 1.0,
        "clusters": len(set(clusters)),
        "clustered_p": _signflip_p(a - b, clusters, draws=draws, seed=seed),
        "clustered_draws": None if len(set(clusters)) <= 16 else draws,
    }


def evaluate_items(
    model: Model,
    oracle: Oracle,
    *,
    n: int = 100,
    seed: int = 0,
    percents: tuple[int, ...] = LAYER_PERCENTS,
) -> tuple[list[dict], list[dict]]:
    """Yes/no accuracy of the oracle and its baselines on each evaluation set, and every test
    item's scores.

    Sets: each held-out family (``sentiment``, ``language``), ``held-out concepts`` (identity
    questions about the first 25 of Lindsey's concept words) and ``held-out concepts,
    replication`` (the other 25: no concept shared with the first; :func:`data.concept_sets`).
    Each set has ``2n`` examples; the probe (one logistic regression per source layer, on the
    activation averaged over positions) is fit on the first ``n`` and every reader is scored on
    the last ``n``. Rows: ``set``, ``reader`` (oracle, untrained, shuffled, probe, majority),
    ``correct``, ``n``, ``accuracy``, ``lo``, ``hi``; the oracle's rows add ``vs_shuffled`` and
    ``vs_untrained`` (:func:`paired_tests`, clustered by the concept the activation came from).
    Items: ``set``, ``item``, ``concept``, ``question``, ``label``, ``layer``, and per reader
    ``p_yes`` and ``correct``.
    """
    from mechintro.stats import wilson

    sets = {
        f: odata.make(f, 2 * n, seed=seed + 101, percents=percents) for f in odata.HELD_OUT_FAMILIES
    }
    for name, words in odata.concept_sets().items():
        sets[name] = odata.held_out_concepts(2 * n, seed=seed + 101, percents=percents, words=words)
    base = untrained(model)
    rows, items = [], []
    for name, examples in sets.items():
        acts = activations(model, examples)
        y = np.array([ex.label for ex in examples])
        test = slice(n, 2 * n)
        shuffled = list(
            acts[n:]
        )  # activations permuted among test examples of the same source layer
        rng = random.Random(seed)
        for layer in sorted({a[0] for a in shuffled}):
            idx = [i for i, a in enumerate(shuffled) if a[0] == layer]
            perm = rng.sample(idx, len(idx))
            moved = {i: shuffled[j] for i, j in zip(idx, perm, strict=True)}
            shuffled = [moved.get(i, a) for i, a in enumerate(shuffled)]
        scores = {
            "oracle": p_yes_examples(oracle, examples[n:], acts[n:]),
            "untrained": p_yes_examples(base, examples[n:], acts[n:]),
            "shuffled": p_yes_examples(oracle, examples[n:], shuffled),
        }
        probe = np.zeros(n)
        for layer in sorted({a[0] for a in acts}):
            tr = [i for i in range(n) if acts[i][0] == layer]
            te = [i for i in range(n, 2 * n) if acts[i][0] == layer]
            if te:
                x = {i: acts[i][1].mean(0).numpy() for i in tr + te}
                probe[[i - n for i in te]] = (
                    _probe_scores(np.stack([x[i] for i in tr]), y[tr], np.stack([x[i] for i in te]))
                    if tr
                    else 0.5
                )
        scores["probe"] = probe
        majority = float(y[:n].mean() >= 0.5)
        scores["majority"] = np.full(n, majority)
        right = {
            reader: (s > 0.5) == (y[test] == 1) if reader != "majority" else y[test] == majority
            for reader, s in scores.items()
        }
        concepts = [ex.concept for ex in examples[n:]]
        for reader, hits in right.items():
            correct = int(hits.sum())
            lo, hi = wilson(correct, n)
            row = {
                "set": name,
                "reader": reader,
                "correct": correct,
                "n": n,
                "accuracy": correct / n,
                "lo": lo,
                "hi": hi,
            }
            if reader == "oracle":
                for other in ("shuffled", "untrained"):
                    row[f"vs_{other}"] = paired_tests(hits, right[other], concepts, seed=seed)
            rows.append(row)
        for k, ex in enumerate(examples[n:]):
            items.append(
                {
                    "set": name,
                    "item": k,
                    "concept": ex.concept,
                    "question": ex.question,
                    "label": int(ex.label),
                    "layer": acts[n + k][0],
                    **{
                        reader: {
                            "p_yes": float(scores[reader][k]),
                            "correct": bool(right[reader][k]),
                        }
                        for reader in scores
                    },
                }
            )
    return rows, items
