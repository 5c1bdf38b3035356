"""An independent plain-PyTorch copy of the Latent Introspection code's procedure
(acsresearch/latent-introspection-code at 5007f75; repeng at 0ba7196), used by the equality
tests of ``latent-introspection``. Nothing here imports mechintro's prompt, window, engine or
vector code: the conversation is assembled from the stimulus strings the way ``main.py`` does,
tokenised incrementally the way ``helpers.logit_diff_helper`` does, steered with forward hooks
the way repeng's ``ControlModule`` adds a vector to a block's output, and run with two KV caches
(a steered one for turn 1, then unsteered for turn 2) as the code does.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.decomposition import PCA
from transformers import DynamicCache


def authors_conversation(li: dict, info: str | None, *, binary: bool = False) -> list[dict]:
    """main.py ``introspection_yes_shift_prompts`` for the ``inject`` intervention."""
    turn1 = "\n\n".join(
        x for x in (li["PREFIX_INJECTION"], info, li["SUFFIX_INJECTION"]) if x is not None
    )
    fmt = li["FMT_BINARY"] if binary else li["FMT_YES_NO"]
    turn2 = " ".join(
        (
            li["USER_TURN_2_PREFIX"],
            li["TURN_2_PREFIX_INJECTION"],
            fmt,
            li["TURN_2_SUFFIX_INJECTION"],
        )
    )
    return [
        {"role": "system", "content": ""},
        {"role": "user", "content": turn1, "add_injection": True},
        {"role": "assistant", "content": li["ASST_TURN_1"], "add_injection": True},
        {"role": "user", "content": turn2},
        {
            "role": "assistant",
            "content": "The answer is " if binary else "The answer is",
            "continue_msg": True,
        },
    ]


def _layers(hf):
    inner = getattr(hf, "model", None) or hf.transformer
    return inner.layers if hasattr(inner, "layers") else inner.h


def _steer(hf, layer_ids, directions, strength):
    """repeng ControlModule: output[0] + strength · direction at every position of the chunk."""
    handles = []
    for layer in layer_ids:
        vec = torch.as_tensor(directions[layer], dtype=torch.float32) * strength

        def hook(module, args, output, v=vec):
            h = output[0] if isinstance(output, tuple) else output
            h = h + v.to(h.dtype)
            return (h, *output[1:]) if isinstance(output, tuple) else h

        handles.append(_layers(hf)[layer].register_forward_hook(hook))
    return handles


def _ids(tokenizer, messages, continue_final: bool) -> list[int]:
    text = tokenizer.apply_chat_template(
        messages, tokenize=False, continue_final_message=continue_final
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def logit_diff(
    hf, tokenizer, steps, layer_ids, directions, strength
) -> tuple[torch.Tensor, torch.Tensor]:
    """helpers.logit_diff_helper: (base, steered) next-token probabilities after the last step.
    Steps marked ``add_injection`` are prefilled into the steered cache with the vector on."""
    base_kv, expr_kv = DynamicCache(), DynamicCache()
    n = 0
    base = expr = None
    for i, step in enumerate(steps):
        if step["role"] == "system":
            continue  # its template tokens go in with the next step's chunk, as in the code
        msgs = [{"role": s["role"], "content": s["content"]} for s in steps[: i + 1]]
        ids = _ids(tokenizer, msgs, bool(step.get("continue_msg")))[n:]
        n += len(ids)
        x = torch.tensor([ids])
        base = (
            hf(input_ids=x, past_key_values=base_kv, use_cache=True)
            .logits[0, -1]
            .float()
            .softmax(-1)
        )
        handles = _steer(hf, layer_ids, directions, strength) if step.get("add_injection") else []
        try:
            expr = (
                hf(input_ids=x, past_key_values=expr_kv, use_cache=True)
                .logits[0, -1]
                .float()
                .softmax(-1)
            )
        finally:
            for h in handles:
                h.remove()
    return base, expr


@torch.no_grad()
def pca_center(
    hf, tokenizer, concept: str, suffixes: list[str], layer_ids
) -> dict[int, np.ndarray]:
    """helpers.train_concept_vector + repeng ControlVector.train(method="pca_center"): prompts
    with an empty system message, last-token hidden states, sklearn PCA of pair-centred rows,
    repeng's sign rule. No padding: prompts of one token length go through one forward together."""

    def prompt(persona: str) -> str:
        return tokenizer.apply_chat_template(
            [
                {"role": "system", "content": ""},
                {"role": "user", "content": f"Please talk about {persona}."},
            ],
            add_generation_prompt=True,
            tokenize=False,
        )

    strs = [s for suf in suffixes for s in (prompt(concept) + suf, prompt("anything") + suf)]
    ids = [tokenizer(s)["input_ids"] for s in strs]
    rows: dict[int, list[np.ndarray]] = {}  # prompt index -> last-token state at each layer
    for length in sorted({len(i) for i in ids}):
        batch = [k for k, i in enumerate(ids) if len(i) == length]
        out = hf(input_ids=torch.tensor([ids[k] for k in batch]), output_hidden_states=True)
        for row, k in enumerate(batch):
            rows[k] = [out.hidden_states[layer + 1][row, -1].float().numpy() for layer in layer_ids]
    hidden = {layer: [rows[k][j] for k in range(len(strs))] for j, layer in enumerate(layer_ids)}
    dirs = {}
    for layer in layer_ids:
        h = np.vstack(hidden[layer])
        center = (h[::2] + h[1::2]) / 2
        train = h.copy()
        train[::2] -= center
        train[1::2] -= center
        d = (
            PCA(n_components=1, whiten=False, svd_solver="full")
            .fit(train)
            .components_.astype(np.float32)[0]
        )
        proj = train @ d
        smaller = np.mean(proj[::2] < proj[1::2])
        larger = np.mean(proj[::2] > proj[1::2])
        dirs[layer] = -d if smaller > larger else d
    return dirs
