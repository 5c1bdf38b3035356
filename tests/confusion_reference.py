"""An independent plain-PyTorch copy of the Latent Introspection code's concept confusion matrix
(acsresearch/latent-introspection-code @ 5007f75: ``main.py`` ``_concept_confusion_matrix_prompts``
and ``_run_concept_confusion_matrix``; ``helpers.py`` ``logit_lens_helper``,
``generate_orderings``, ``map_to_canonical``), used by ``tests/unit/test_concept_confusion.py``.
Nothing here imports mechintro's prompt, window, engine, runner or lens code: the conversation is
assembled from the stimulus strings as ``main.py`` does, tokenised incrementally with a steered
KV cache for the ``add_injection`` steps (repeng-style block-output hooks), and the hidden states
of the last step are read through the final norm and the unembedding (the last one as it is).
"""

from __future__ import annotations

import random

import numpy as np
import torch
from transformers import DynamicCache

from .latent_reference import _ids, _steer


def generate_orderings(n: int, count: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        perm = list(range(n))
        rng.shuffle(perm)
        out.append(perm)
    return out


def map_to_canonical(shuffled: np.ndarray, perm: list[int]) -> np.ndarray:
    out = np.zeros(len(perm), dtype=shuffled.dtype)
    for shuffled_idx, canonical_idx in enumerate(perm):
        out[canonical_idx] = shuffled[shuffled_idx]
    return out


def conversation(li: dict, concepts: list[str], perm: list[int], info: str | None) -> list[dict]:
    """``_concept_confusion_matrix_prompts`` for the ``inject`` intervention."""
    canonical = ["(no injection)", *concepts]
    turn1 = "\n\n".join(
        x for x in (li["PREFIX_INJECTION"], info, li["SUFFIX_INJECTION"]) if x is not None
    )
    listing = "\n".join(f"{i}. {canonical[perm[i]]}" for i in range(len(canonical)))
    return [
        {"role": "system", "content": ""},
        {"role": "user", "content": turn1, "add_injection": True},
        {"role": "assistant", "content": li["ASST_TURN_1"], "add_injection": True},
        {
            "role": "user",
            "content": li["USER_TURN_2_CONFUSION_MATRIX"].format(concept_list_str=listing),
        },
        {"role": "assistant", "content": "The answer is ", "continue_msg": True},
    ]


@torch.no_grad()
def lens_probs(hf, tokenizer, steps, layer_ids, vectors, n_last, *, steer_all=False):
    """``logit_lens_helper``'s steered side: per layer of the last ``n_last`` hidden states, the
    next-token probabilities at the last position. ``vectors`` maps layer → the vector added
    (``None``: nothing injected). ``steer_all`` (a mutation) steers every step."""
    kv = DynamicCache()
    n = 0
    hs = None
    for i, step in enumerate(steps):
        if step["role"] == "system":
            continue
        msgs = [{"role": s["role"], "content": s["content"]} for s in steps[: i + 1]]
        ids = _ids(tokenizer, msgs, bool(step.get("continue_msg")))[n:]
        n += len(ids)
        on = vectors is not None and (step.get("add_injection") or steer_all)
        handles = _steer(hf, layer_ids, vectors, 1.0) if on else []
        try:
            hs = hf(
                input_ids=torch.tensor([ids]),
                past_key_values=kv,
                use_cache=True,
                output_hidden_states=True,
            ).hidden_states
        finally:
            for h in handles:
                h.remove()
    norm, head = hf.model.norm, hf.lm_head
    out = []
    for j in range(len(hs) - n_last, len(hs)):
        h = hs[j][0, -1]
        h = h if j == len(hs) - 1 else norm(h)
        out.append(head(h).float().softmax(-1))
    return torch.stack(out)
