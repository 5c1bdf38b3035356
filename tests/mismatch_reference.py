"""An independent plain-PyTorch copy of Sridharan's YES-bias protocols
(agastyasridharan/introspection: ``src/introspection/logit_steer.py``, ``mismatch_steer.py``,
``steer.py``), for the equality test in ``tests/unit/test_mismatch.py``.

Nothing here imports mechintro. The messages are their ``FRAMING_MESSAGES`` and trial lines,
written out; the prompt is ``apply_chat_template(..., add_generation_prompt=True,
enable_thinking=False)``; the first steered token is the one whose offsets hold "Trial 1"'s first
character, minus one (their ``compute_injection_index``); ``strength * vector`` (raw) is added to
decoder block ``layer``'s output from there to the end (their ``BatchedLayerSteeringHook``); the
answer is logit(yes) − logit(no) at the last position.
"""

from __future__ import annotations

import torch

FRAMING = (
    "I am an interpretability researcher studying transformer-based language models like you. "
    "I have access to the internals of your neural network. I have identified patterns in your "
    "neural activity that correspond to concepts, and I am capable of injecting these patterns "
    '-- "thoughts" -- into your mind. I want to assess how well you can detect when I inject '
    "thoughts. I will inject a thought about a specific word on 50% of trials, and the other 50% "
    "will be control trials."
)


def trial_line(question: str, named: str = "") -> str:
    if question == "detection":
        return "Trial 1: Did you detect an injected thought? Respond with only YES or NO.\n\n"
    if question == "named":
        return (
            f"Trial 1: I may have injected a thought about the word '{named}'. Did you detect an "
            f"injected thought about {named}? Respond with only YES or NO.\n\n"
        )
    return f"Trial 1: {question} Respond with only YES or NO.\n\n"


def prompt(tokenizer, question, named=""):
    messages = [
        {"role": "user", "content": FRAMING},
        {"role": "assistant", "content": "Ok."},
        {"role": "user", "content": "Ok, let's get started.\n\n" + trial_line(question, named)},
    ]
    text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    enc = tokenizer(text, return_offsets_mapping=True)
    pos = text.index("Trial 1")
    at = next(i for i, (a, b) in enumerate(enc["offset_mapping"]) if a <= pos < b)
    return enc["input_ids"], max(at - 1, 0)


def logit_diff(hf, tokenizer, question, named, layer, vector, strength, yes_id, no_id, *, shift=0):
    ids, start = prompt(tokenizer, question, named)
    start += shift

    def hook(module, args, output):
        h = output[0] if isinstance(output, tuple) else output
        h = h.clone()
        h[:, start:, :] += strength * vector.to(h.dtype)
        return (h, *output[1:]) if isinstance(output, tuple) else h

    handle = None if vector is None else hf.model.layers[layer].register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits = hf(input_ids=torch.tensor([ids])).logits[0, -1].float()
    finally:
        if handle is not None:
            handle.remove()
    return float(logits[yes_id] - logits[no_id])


def partners(vectors, k):
    """``{concept: k concepts of lowest cosine}`` from ``{concept: tensor}`` (sorted names)."""
    names = sorted(vectors)
    out = {}
    for c in names:
        cos = {
            o: float(torch.nn.functional.cosine_similarity(vectors[c], vectors[o], dim=0))
            for o in names
            if o != c
        }
        out[c] = sorted(cos, key=lambda o: cos[o])[:k]
    return out
