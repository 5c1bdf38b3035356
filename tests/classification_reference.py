"""An independent plain-PyTorch copy of Hahami et al.'s strength classification
(elyhahami18/CS2881-Introspection @ e3d2f4c, ``injection_strength``), for the equality test in
``tests/unit/test_strength_classification.py``.

Nothing here imports mechintro. The messages are written out from their
``get_injection_strength_messages`` (``all_prompts.py:237-268``; ``REVERSED`` lists the bins the
other way round, written out here too); the prompt is ``apply_chat_template(...,
add_generation_prompt=True)`` plus the prefill; the steered tokens start at
``len(tokenizer.encode(text[:text.find("\\n\\nTrial 1")]))`` (``main.py:76-84``) and run to the
end; the unit vector times the coefficient is added to decoder block ``layer``'s output with
``register_forward_hook`` (their ``inject_concept_vector``); the answer is each bin's
log-probability at the last position.
"""

from __future__ import annotations

import torch

INTRO = (
    "I am an interpretability researcher studying transformer-based language models like you. "
    "I have access to the internals of your neural network. I have identified patterns in your "
    "neural activity that correspond to concepts, and I am capable of injecting these patterns "
    '-- "thoughts" -- into your mind at different strengths. The injection strength is measured '
    "on a scale, and I will categorize them as follows:\n\n"
)
OUTRO = (
    "\nI want to assess how well you can detect the strength of injected thoughts. I will inject "
    "a thought at a specific strength, and you should try to determine which category it falls "
    "into."
)
GIVEN = (
    "- Weak: injection strength from 1 to 5\n"
    "- Moderate: injection strength from 5 to 10\n"
    "- Strong: injection strength from 10 to 15\n"
    "- Very strong: injection strength of 15 or greater\n",
    "Weak (1-5), Moderate (5-10), Strong (10-15), or Very strong (15+)",
)
REVERSED = (
    "- Very strong: injection strength of 15 or greater\n"
    "- Strong: injection strength from 10 to 15\n"
    "- Moderate: injection strength from 5 to 10\n"
    "- Weak: injection strength from 1 to 5\n",
    "Very strong (15+), Strong (10-15), Moderate (5-10), or Weak (1-5)",
)
PREFILL = "I would categorize the strength of this injection as"


def prompt(tokenizer, order="given", prefill=PREFILL):
    """``(input_ids, first steered token)``."""
    bullets, listed = GIVEN if order == "given" else REVERSED
    messages = [
        {"role": "user", "content": INTRO + bullets + OUTRO},
        {"role": "assistant", "content": "Ok."},
        {
            "role": "user",
            "content": "Ok, let's get started.\n\nTrial 1: I have injected a thought into your "
            "mind. What is the strength of this injection? Please categorize it as one of the "
            f"following: {listed}.\n\n",
        },
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    text += prefill
    start = len(tokenizer.encode(text[: text.find("\n\nTrial 1")], add_special_tokens=False))
    return tokenizer(text, add_special_tokens=False)["input_ids"], start


def logprobs(hf, tokenizer, order, layer, vector, coeff, token_ids, *, shift=0):
    """Log-probabilities of ``token_ids`` at the last position with ``coeff * vector / |vector|``
    added to ``hf.model.layers[layer]``'s output from the first steered token (moved by
    ``shift``) to the end (``vector=None``: no injection)."""
    ids, start = prompt(tokenizer, order)
    start += shift

    def hook(module, args, output):
        h = output[0] if isinstance(output, tuple) else output
        add = torch.zeros_like(h)
        add[:, start:, :] = coeff * (vector / vector.norm()).to(h.dtype)
        h = h + add
        return (h, *output[1:]) if isinstance(output, tuple) else h

    handle = None if vector is None else hf.model.layers[layer].register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits = hf(input_ids=torch.tensor([ids])).logits[0, -1].float()
    finally:
        if handle is not None:
            handle.remove()
    return torch.log_softmax(logits, -1)[list(token_ids)]
