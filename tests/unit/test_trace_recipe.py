"""The README's "Your own trace on our model" recipe, run as written (on tiny models): its cached
residuals and steered logits equal what plain PyTorch forward hooks on ``model.hf`` give."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest
import torch

import mechintro as mi
from mechintro.arch import get_module

ROOT = Path(__file__).resolve().parents[2]


def recipe() -> str:
    readme = (ROOT / "README.md").read_text()
    after = readme[readme.index("**Your own trace on our model**") :]
    return re.search(r"```python\n(.*?)```", after, re.S).group(1)


def on_tiny(code: str) -> str:
    """The recipe with the tiny model (3 blocks) in place of SmolLM2, and a short baseline."""
    for old, new in [
        ('mi.load_model("smollm2-135m")', "tiny"),
        ("read, steer = (5, 15), 15", "read, steer = (0, 1), 1"),
        (
            'mi.concept_vectors(model, ["Dust"])',
            'mi.concept_vectors(model, ["Dust"], baseline=["Sand"])',
        ),
    ]:
        assert code.count(old) == 1, old
        code = code.replace(old, new)
    return code


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_the_readme_trace_recipe(tiny_models, arch, tmp_path):
    tiny = tiny_models(arch)
    script = tmp_path / "recipe.py"  # nnsight reads a trace's body from its source file
    script.write_text(on_tiny(recipe()))
    scope = runpy.run_path(str(script), init_globals={"mi": mi, "tiny": tiny})
    cache, logits, ids = scope["cache"], scope["logits"], scope["ids"]
    vector = torch.as_tensor(scope["vector"].values, dtype=tiny.dtype)

    # the same with forward hooks on the Hugging Face module
    seen, handles = {}, []
    blocks = get_module(tiny.hf, tiny.arch.layers)

    def hook(i, add):
        def run(_module, _inputs, out):
            h = out[0] if isinstance(out, tuple) else out
            h = h + add if add is not None else h
            seen[i] = h.clone()
            return (h, *out[1:]) if isinstance(out, tuple) else h

        return run

    for i, add in [(0, None), (1, 4.0 * vector)]:
        handles.append(blocks[i].register_forward_hook(hook(i, add)))
    try:
        with torch.no_grad():
            expected = tiny.hf(ids).logits[:, -1]
    finally:
        for h in handles:
            h.remove()
    assert set(cache) == {0, 1}
    for i in (0, 1):
        assert torch.allclose(cache[i], seen[i], atol=1e-5)
    assert torch.allclose(logits, expected, atol=1e-4)
    with torch.no_grad():
        plain = tiny.hf(ids).logits[:, -1]
    assert not torch.allclose(plain, expected, atol=1e-3)  # the vector did change the output
