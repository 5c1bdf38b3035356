"""Models larger than memory: accelerate's placement over the CPU and the disk gives the in-memory
model's numbers — forward, recording, generation, vector extraction — and a fingerprint computed
without materialising a weight. Tiny random models, no download, no GPU: a "simulated second
device map" is a second split of the same modules (the disk path is the one a GPU machine would
add to; the execution device differs, the bookkeeping is the same)."""

from __future__ import annotations

import pytest
import torch

from mechintro import engine, models, vectors
from mechintro.errors import MechintroError
from tests.conftest import mixed_batch

# Layers 1-2 and the unembedding on disk, read in place from the safetensors checkpoint.
SPLIT_A = {
    "model.embed_tokens": "cpu",
    "model.layers.0": "cpu",
    "model.layers.1": "disk",
    "model.layers.2": "disk",
    "model.norm": "cpu",
    "model.rotary_emb": "cpu",
    "lm_head": "disk",
}
# The other way round: embeddings and layer 0 on disk, the rest in memory.
SPLIT_B = {
    "model.embed_tokens": "disk",
    "model.layers.0": "disk",
    "model.layers.1": "cpu",
    "model.layers.2": "cpu",
    "model.norm": "disk",
    "model.rotary_emb": "cpu",
    "lm_head": "cpu",
}


@pytest.fixture(scope="module")
def checkpoint(tiny, tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    tiny.hf.save_pretrained(d, safe_serialization=True)
    tiny.tokenizer.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def placed(checkpoint, tmp_path_factory):
    """The same checkpoint in memory and under three placements (two explicit maps, and everything
    the 150 kB memory budget leaves out going to an offload folder)."""
    out = {"memory": models.load_model(str(checkpoint))}
    out["split_a"] = models.load_model(str(checkpoint), device_map=SPLIT_A)
    out["split_b"] = models.load_model(
        str(checkpoint), device_map=SPLIT_B, offload_folder=tmp_path_factory.mktemp("off_b")
    )
    out["budget"] = models.load_model(
        str(checkpoint), max_memory={"cpu": "150KB"}, offload_folder=tmp_path_factory.mktemp("off")
    )
    return out


def _meta_params(model) -> int:
    return sum(p.device.type == "meta" for p in model.hf.parameters())


def test_placements_really_offload(placed):
    assert _meta_params(placed["memory"]) == 0
    for name in ("split_a", "split_b", "budget"):
        assert _meta_params(placed[name]) > 0, name
        assert "disk" in set(placed[name].hf.hf_device_map.values()), name


@pytest.mark.parametrize("where", ["split_a", "split_b", "budget"])
def test_offloaded_results_equal_in_memory(placed, where):
    ref, model = placed["memory"], placed[where]
    prompts, injections, vec = mixed_batch(ref)
    a = engine.forward(ref, prompts, injections, answer_ids=[10, 11], record=True)
    b = engine.forward(model, prompts, injections, answer_ids=[10, 11], record=True)
    assert torch.allclose(a.answer_logprobs, b.answer_logprobs, atol=1e-5, rtol=0)
    assert torch.allclose(a.resid.float(), b.resid.float(), atol=4e-3, rtol=0)
    ablate = {1: vec}
    assert torch.allclose(
        engine.forward(
            ref, prompts, injections, answer_ids=[10, 11], ablate=ablate
        ).answer_logprobs,
        engine.forward(
            model, prompts, injections, answer_ids=[10, 11], ablate=ablate
        ).answer_logprobs,
        atol=1e-5,
        rtol=0,
    )
    for temperature in (0.0, 1.0):
        a = engine.generate(
            ref, prompts, injections, max_new_tokens=6, temperature=temperature, seed=3, record=True
        )
        b = engine.generate(
            model,
            prompts,
            injections,
            max_new_tokens=6,
            temperature=temperature,
            seed=3,
            record=True,
        )
        assert torch.equal(a.generated, b.generated)
        assert torch.allclose(a.resid.float(), b.resid.float(), atol=4e-3, rtol=0)
    assert torch.allclose(
        engine.last_token_resid(ref, prompts),
        engine.last_token_resid(model, prompts),
        atol=1e-4,
        rtol=0,
    )


def test_offloaded_shared_prefix_and_vectors_equal_in_memory(placed):
    """The shared-prefix cache runs plain transformers code through accelerate's hooks; the concept
    vectors go through the vector extraction's own batching."""
    ref, model = placed["memory"], placed["split_a"]
    prompts = [[*range(5, 30), 40 + i, 41] for i in range(3)]
    injections = [
        engine.Injection(
            vector=torch.ones(ref.d_model), layers=(1,), mask=(False,) * 25 + (True, True)
        ),
        None,
        None,
    ]
    prefix = engine.shared_prefix(prompts, injections)
    assert prefix == 25
    a = engine.forward(ref, prompts, injections, answer_ids=[10, 11], record=True, prefix=prefix)
    b = engine.forward(model, prompts, injections, answer_ids=[10, 11], record=True, prefix=prefix)
    assert torch.allclose(a.answer_logprobs, b.answer_logprobs, atol=1e-5, rtol=0)
    assert torch.allclose(a.resid.float(), b.resid.float(), atol=4e-3, rtol=0)
    words, baseline = ["cat", "sun"], ["box", "tree", "rain"]
    va = vectors.concept_vectors(ref, words, baseline=baseline)
    vb = vectors.concept_vectors(model, words, baseline=baseline)
    assert float(abs(va - vb).max()) < 1e-4


def test_fingerprints_need_no_materialised_weights(placed, checkpoint, tiny):
    files = models.sha256_of(sorted(checkpoint.glob("*.safetensors")))
    for name, model in placed.items():
        assert model.weights_sha256 == files, (
            name
        )  # load_model: the checkpoint files' hash, wherever the weights are
        before = _meta_params(model)
        # from_hf on a dispatched model: read from the offload index, equal to the in-memory state
        # hash
        assert models.state_fingerprint(model.hf) == tiny.weights_sha256, name
        assert _meta_params(model) == before, name  # nothing was loaded into the module


def test_dispatched_in_memory_model_with_an_offload_folder(tiny, tmp_path):
    """accelerate's own ``dispatch_model`` writes the offloaded weights as ``.dat`` files with an
    ``index.json``: from_hf fingerprints them from there (it crashed on the meta tensors before)."""
    from accelerate import dispatch_model

    from tests.conftest import build_tiny

    hf = dispatch_model(
        build_tiny("llama").hf, device_map=SPLIT_A, main_device="cpu", offload_dir=tmp_path
    )
    assert (tmp_path / "index.json").is_file()
    model = models.from_hf(hf, tiny.tokenizer, name="dispatched")
    assert model.weights_sha256 == tiny.weights_sha256
    prompts, injections, _ = mixed_batch(tiny)
    assert torch.allclose(
        engine.forward(tiny, prompts, injections, answer_ids=[10, 11]).answer_logprobs,
        engine.forward(model, prompts, injections, answer_ids=[10, 11]).answer_logprobs,
        atol=1e-5,
        rtol=0,
    )


def test_unknown_meta_weights_are_refused_in_one_line(tiny):
    hf = tiny.hf
    with torch.device("meta"):
        from transformers import AutoModelForCausalLM

        empty = AutoModelForCausalLM.from_config(hf.config)
    with pytest.raises(MechintroError, match="no offload index holds it"):
        models.from_hf(empty, tiny.tokenizer)


def test_remote_model_is_unaffected(checkpoint):
    """A remote model is weightless here: the placement flags are refused, its fingerprint is its
    id."""
    with pytest.raises(MechintroError, match="stay on the server"):
        models.load_model(str(checkpoint), remote="local", max_memory={"cpu": "1GB"})
    remote = models.load_model(str(checkpoint), remote="local")
    assert remote.weights_sha256 == f"hf:{checkpoint}@remote"


def test_parse_max_memory():
    assert models.parse_max_memory("0=20GiB, cpu=8GiB") == {0: "20GiB", "cpu": "8GiB"}
    for bad in ("", "20GiB", "gpu=1GB", "cpu="):
        with pytest.raises(MechintroError, match="max-memory"):
            models.parse_max_memory(bad)


@pytest.mark.parametrize(
    "argv",
    [
        ["vectors", "--concepts", "Dust", "--out", "{tmp}/v.zarr"],
        ["run", "detection-logits", "--out", "{tmp}/r.zarr"],
        ["train", "--behaviour", "{tmp}/b.zarr", "--out", "{tmp}/a"],
        ["oracle", "train", "--out", "{tmp}/o"],
    ],
)
def test_every_command_passes_its_placement_flags_to_the_loader(argv, tmp_path, monkeypatch):
    """Each subcommand with the model flags hands all of them to load_model (none is accepted and
    then silently dropped)."""
    from mechintro.cli import main

    seen = {}

    class Loaded(Exception):
        pass

    def fake_load(name, **kwargs):
        seen.update(kwargs)
        raise Loaded

    monkeypatch.setattr(models, "load_model", fake_load)
    if argv[0] == "train":  # train opens its behaviour run before loading the model
        (tmp_path / "b.zarr").mkdir()
        monkeypatch.setattr("mechintro.runs.open_run", lambda path: None)
        monkeypatch.setattr("mechintro.looking_inward.tasks.training_examples", lambda *a, **k: [])
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    with pytest.raises(Loaded):
        main(
            [
                "--debug",
                "-q",
                *args,
                "--model",
                "m",
                "--max-memory",
                "cpu=1GiB",
                "--offload-folder",
                str(tmp_path / "off"),
            ]
        )
    assert seen["max_memory"] == {"cpu": "1GiB"} and str(seen["offload_folder"]) == str(
        tmp_path / "off"
    )
