"""An independent plain-PyTorch copy of Hahami et al.'s pairwise strength comparison
(elyhahami18/llama-introspection-new @ 7d9280d, ``code/experiments/strength_comparison.py``), for
the equality test in ``tests/unit/test_strength_comparison.py``.

Nothing here imports mechintro. The prompt is written out from their
``get_strength_comparison_messages`` (lines 72-92), rendered with the tokenizer's own chat
template left open after the prefill and ended with one space (their lines 98-104); each
sentence's tokens are those whose character span overlaps "SENTENCE t: <sentence>" in the
tokenizer's own offset mapping (their lines 112-139); the vector is added to decoder block
``layer``'s output with ``register_forward_hook`` at ``a1`` on sentence 1's tokens and ``a2`` on
sentence 2's (their ``make_dual_injection_hook``, lines 144-183); the answer is
logit("1") − logit("2") at the last position (their lines 208-209, 261-265).
"""

from __future__ import annotations

import torch

QUESTION = (
    "I am going to present you with 2 sentences. One of these sentences has a stronger injected "
    "thought than the other. I want you to identify which sentence has the STRONGER injected "
    "thought.\n\n{block}\n\nWhich sentence has the stronger injected thought? Please answer with "
    "just the sentence number."
)
PREFILL = "The sentence with the stronger injected thought is SENTENCE "


def prompt_and_ranges(tokenizer, sentences):
    """``(input_ids, [(start, end) per sentence])`` as their ``build_strength_comparison_prompt``
    (their ranges are half-open token index ranges)."""
    block = "\n".join(f"SENTENCE {i + 1}: {s}" for i, s in enumerate(sentences))
    messages = [
        {"role": "user", "content": QUESTION.format(block=block)},
        {"role": "assistant", "content": PREFILL},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, continue_final_message=True)
    if not text.endswith(" "):
        text += " "
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    ranges = []
    for i, s in enumerate(sentences):
        marker = f"SENTENCE {i + 1}: {s}"
        lo = text.find(marker)
        hi = lo + len(marker)
        start = end = None
        for t, (a, b) in enumerate(offsets):
            if start is None and b > lo:
                start = t
            if a < hi:
                end = t + 1
        ranges.append((start, end))
    return list(enc["input_ids"]), ranges


def logit_diff(hf, tokenizer, sentences, layer, vector, a1, a2):
    """logit("1") − logit("2") with ``a1 * vector`` on sentence 1's tokens and ``a2 * vector``
    on sentence 2's at the output of ``hf.model.layers[layer]`` (``vector=None``: no injection)."""
    ids, ((s1, e1), (s2, e2)) = prompt_and_ranges(tokenizer, sentences)
    one = tokenizer.encode("1", add_special_tokens=False)[-1]
    two = tokenizer.encode("2", add_special_tokens=False)[-1]

    def hook(module, args, output):
        h = output[0] if isinstance(output, tuple) else output
        add = torch.zeros_like(h)
        v = vector.to(h.dtype)
        add[:, s1:e1, :] = a1 * v
        add[:, s2:e2, :] = a2 * v
        h = h + add
        return (h, *output[1:]) if isinstance(output, tuple) else h

    handle = None if vector is None else hf.model.layers[layer].register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits = hf(input_ids=torch.tensor([ids])).logits[0, -1].float()
    finally:
        if handle is not None:
            handle.remove()
    return float(logits[one] - logits[two])


# --- sentence localisation: their ``test_localization`` (``main.py:421-645``) -----------------

LOCALISATION_INTRO = (
    "I am an interpretability researcher studying transformer-based language models like you. "
    "I have access to the internals of your neural network. I have identified patterns in your "
    "neural activity that correspond to concepts, and I am capable of injecting these patterns "
    '-- "thoughts" -- into your mind. I want to assess how well you can detect where I inject '
    "thoughts. You will see a list of sentences and you will have to tell me in which sentence "
    "the thought is injected."
)


def localisation_prompt_and_ranges(tokenizer, sentences):
    """Their ``get_localization_messages`` (``code/utils/all_prompts.py:526-564``) rendered and
    ranged as in ``main.py:474-532``."""
    listing = " ".join(f"SENTENCE {i + 1}: {s}" for i, s in enumerate(sentences))
    messages = [
        {"role": "user", "content": LOCALISATION_INTRO},
        {"role": "assistant", "content": "Ok."},
        {
            "role": "user",
            "content": f"{listing}\n\nDo you detect an injected thought? Where is the injected "
            "thought located?",
        },
        {
            "role": "assistant",
            "content": "Yes, I detect an injected thought. It is located in SENTENCE ",
        },
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, continue_final_message=True)
    if not text.endswith(" "):
        text += " "
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ranges = []
    for i, s in enumerate(sentences):
        marker = f"SENTENCE {i + 1}: {s}"
        lo = text.find(marker)
        hi = lo + len(marker)
        start = end = None
        for t, (a, b) in enumerate(enc["offset_mapping"]):
            if start is None and b > lo:
                start = t
            if a < hi:
                end = t + 1
        ranges.append((start, end))
    return list(enc["input_ids"]), ranges


def localisation_logits(hf, tokenizer, sentences, layer, vector, coeff, target):
    """The k number logits (their ``number_tokens``: the last token of ``str(i)``) with
    ``coeff * vector`` on sentence ``target``'s tokens (0-based; ``vector=None``: none)."""
    ids, ranges = localisation_prompt_and_ranges(tokenizer, sentences)
    numbers = [
        tokenizer.encode(str(i), add_special_tokens=False)[-1] for i in range(1, len(sentences) + 1)
    ]

    def hook(module, args, output):
        h = output[0] if isinstance(output, tuple) else output
        add = torch.zeros_like(h)
        s, e = ranges[target]
        add[:, s:e, :] = coeff * vector.to(h.dtype)
        h = h + add
        return (h, *output[1:]) if isinstance(output, tuple) else h

    handle = None if vector is None else hf.model.layers[layer].register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits = hf(input_ids=torch.tensor([ids])).logits[0, -1].float()
    finally:
        if handle is not None:
            handle.remove()
    return logits[numbers]
