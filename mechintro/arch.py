"""One vocabulary for every architecture.

Interpretability code needs four things from a causal LM: the residual stream after each decoder
block, the final norm, the unembedding, and the token embedding. Hugging Face names them
differently per family (``model.layers`` vs ``transformer.h``), and transformers 5 changed a
decoder block's output from a tuple to a plain tensor, so the old idiom ``block.output[0]`` now
silently selects batch row 0. This module hides both differences, in the spirit of nnterp's
``StandardizedTransformer``.

Layer numbering, used everywhere in mechintro: layer ``L`` is the residual stream at the output of
decoder block ``L``, counted from 0 (TransformerLens's ``blocks.L.hook_resid_post``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import Any

import torch

from mechintro.errors import MechintroError


@dataclass(frozen=True)
class Architecture:
    """Dotted module paths, relative to the ``*ForCausalLM`` module, of the pieces we touch."""

    layers: str
    final_norm: str
    unembed: str
    embed: str


_DECODER = Architecture("model.layers", "model.norm", "lm_head", "model.embed_tokens")
_GPT2 = Architecture("transformer.h", "transformer.ln_f", "lm_head", "transformer.wte")
_GEMMA3_MM = Architecture(
    "model.language_model.layers",
    "model.language_model.norm",
    "lm_head",
    "model.language_model.embed_tokens",
)

ARCHITECTURES: dict[str, Architecture] = {
    "llama": _DECODER,
    "mistral": _DECODER,
    "qwen2": _DECODER,
    "qwen3": _DECODER,
    "gemma": _DECODER,
    "gemma2": _DECODER,
    "gemma3_text": _DECODER,
    "gemma3": _GEMMA3_MM,
    "olmo2": _DECODER,
    "phi3": _DECODER,
    "gpt2": _GPT2,
}


def get_module(root: Any, path: str) -> Any:
    """``get_module(model, "model.layers")`` — works on torch modules and nnsight envoys alike."""
    return reduce(getattr, path.split("."), root)


def architecture_of(hf_model: torch.nn.Module) -> Architecture:
    """The :class:`Architecture` of a loaded Hugging Face causal LM."""
    model_type = hf_model.config.model_type
    arch = ARCHITECTURES.get(model_type)
    if arch is None:
        # Most recent decoder-only families follow the Llama layout; accept them if they do.
        try:
            get_module(hf_model, _DECODER.layers)
            get_module(hf_model, _DECODER.final_norm)
            get_module(hf_model, _DECODER.unembed)
        except AttributeError:
            raise MechintroError(
                f"unsupported architecture '{model_type}': add its module paths to "
                "mechintro.arch.ARCHITECTURES"
            ) from None
        arch = _DECODER
    return arch


def text_config(config: Any) -> Any:
    """The language-model part of a (possibly multimodal) config."""
    return getattr(config, "text_config", None) or config


def resid_of(block_output: Any) -> torch.Tensor:
    """The residual-stream tensor in a decoder block's output, whatever its container.

    transformers 5 returns a tensor ``(batch, pos, d_model)``; older versions and some families
    return a tuple whose first element is that tensor. Never index ``output[0]`` blindly: on a
    tensor it is batch row 0.
    """
    if isinstance(block_output, tuple):
        return block_output[0]
    return block_output
