"""Side by side with the authors' own code for ``concept-confusion`` (docs/results.md).

Step 1 runs acsresearch/latent-introspection-code (@5007f75) — its ``main.py``
``_concept_confusion_matrix_prompts`` and ``_run_concept_confusion_matrix`` with ``helpers.py``
``logit_lens_helper``, unchanged — with repeng 0.4.0 (PyPI; the lock file pins the git commit
0ba7196, whose ``ControlModule`` adds the vector to a block's output in the same way) on a model
from mechintro's cache of converted weights, in a scratch folder OUTSIDE this repository:

    # HERE holds authors/ (their checkout: git archive of 5007f75), site/ (pip install --no-deps
    # --target: transformers==4.57.3 huggingface_hub==0.36.0), site2/ (tokenizers==0.22.1 repeng)
    python scripts/confusion_side_by_side.py npz VECTORS.zarr $HERE/vectors.npz
    python scripts/confusion_side_by_side.py authors $HERE smollm2-135m $HERE/vectors.npz \
        9 20 20 inject_info-none_shuf_00,inject_info-none_shuf_01 $HERE/authors_confusion.json

Adaptations, all in model loading and inputs: the tokenizer is rebuilt from the cached
``tokenizer.json`` and chat template, RoPE's base is read from transformers 5's
``rope_parameters`` (as ``scripts/latent_side_by_side.py`` does); the vectors are mechintro's
(``mechintro vectors --method pca_center``, the file the mechintro run used) handed to their code
as repeng ``ControlVector``s instead of trained by their ``train_vectors`` (the PCA-center recipe
itself was compared in the latent-introspection side by side); the logger is a stub holding the
two settings the function reads (``vector_strength``, ``layer_range``); float32 on CPU; repeng
0.4.0's ``np.float_`` annotations renamed ``np.float64`` (numpy 2 has no ``np.float_``).

Step 2 compares with the mechintro run (its concept rows and "(no injection)" row):

    python scripts/confusion_side_by_side.py compare $HERE/authors_confusion.json RUN.zarr

Their output for orders 0 and 1 on SmolLM2, with the vectors of the shipped run
(``analyses/data/smollm2-135m/concept-confusion.zarr``), is shipped as
``analyses/data/smollm2-135m/concept-confusion-authors.json``, so step 2 runs without their
environment (docs/results.md quotes it).
"""

import glob
import json
import os
import sys

import numpy as np


def npz(vectors_path: str, out: str) -> None:
    from mechintro.vectors import load_vectors

    v = load_vectors(vectors_path)
    np.savez(out, **{str(c): v.sel(concept=c).values.astype(np.float32) for c in v.concept.values})
    print(f"wrote {out}: {list(map(str, v.concept.values))}, {v.shape}")


def authors(here: str, model_name: str, vec_path: str, start: int, end: int, strength: float,
            labels: list[str], out: str) -> None:  # fmt: skip
    sys.path[:0] = [os.path.join(here, "site2"), os.path.join(here, "site"), here,
                    os.path.join(here, "authors")]  # fmt: skip
    os.chdir(os.path.join(here, "authors"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    import transformers

    assert transformers.__version__ == "4.57.3", transformers.__version__
    import main
    from repeng import ControlVector
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    path = glob.glob(os.path.expanduser(f"~/.cache/mechintro/models/{model_name}-*"))[0]
    cfg = json.load(open(os.path.join(path, "tokenizer_config.json")))
    tok = PreTrainedTokenizerFast(
        tokenizer_file=os.path.join(path, "tokenizer.json"),
        **{k: cfg[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token") if k in cfg},
    )
    tok.chat_template = open(os.path.join(path, "chat_template.jinja")).read()
    config = AutoConfig.from_pretrained(path)
    rope = json.load(open(os.path.join(path, "config.json"))).get("rope_parameters")
    if rope:
        config.rope_theta = rope["rope_theta"]
    model = AutoModelForCausalLM.from_pretrained(path, config=config, torch_dtype=torch.float32)
    model.eval()
    data = np.load(vec_path)
    layers = list(range(start, end))
    vectors = {
        c: ControlVector(model_type=config.model_type, directions={i: data[c][i] for i in layers})
        for c in main.CONCEPTS
    }

    class Logger:
        def __init__(self) -> None:
            self.settings = {"vector_strength": strength, "layer_range": layers}

        def print(self, *a):
            print(*a, flush=True)

    # whole prompt labels (every order) or single orders ("inject_info-none_shuf_00")
    prompts = [
        c
        for c in main.concept_confusion_matrix_prompts()
        if c.extra["prompt"] in labels or c.label in labels
    ]
    result = main._run_concept_confusion_matrix(
        tok, model, vectors, Logger(), main.CONCEPTS, prompts
    )
    json.dump(
        {"layers": layers, "strength": strength, "transformers": transformers.__version__,
         "perms": {c.label: c.extra["perm"] for c in prompts}, "result": result},
        open(out, "w"),
    )  # fmt: skip
    print("wrote", out)


def compare(authors_json: str, run: str) -> None:
    from mechintro.experiments import concept_confusion as CC
    from mechintro.models import load_model
    from mechintro.runs import open_run

    theirs = json.load(open(authors_json))
    ds = open_run(run)
    model = load_model(ds.attrs["model"])
    probs, layers = CC.option_probs(ds, model)
    canonical = [CC.NONE, *json.loads(ds.attrs["config"])["concepts"]]
    orders = CC.generate_orderings(len(canonical), 5, 777)
    cond = np.array([str(x) for x in ds.condition.values])
    key = {
        (str(ds["intervention"].values[i]), str(ds["info"].values[i]),
         int(ds["ordering"].values[i]), str(ds["injected"].values[i])): i
        for i in np.flatnonzero(np.isin(cond, ["concept", "none"]))
    }  # fmt: skip
    worst = 0.0
    for label, res in theirs["result"].items():
        iv, info = label.split("_info-")
        info = {"lorem-ipsum": "lorem"}.get(info, info)
        used = sorted(
            int(lab.rsplit("_", 1)[1]) for lab in theirs["perms"] if lab.startswith(label + "_")
        )
        for o in used:
            assert theirs["perms"][f"{label}_shuf_{o:02d}"] == orders[o], (label, o)
        assert res["labels"] == canonical, res["labels"]
        ours = np.zeros((len(used), len(layers), len(canonical), len(canonical)))
        for j, o in enumerate(used):
            for r, c in enumerate(canonical):
                ours[j, :, r][:, orders[o]] = probs[key[(iv, info, o, c)]]
        ours = ours.mean(0)  # (layer, injected, recovered), their average over the orders used
        t = np.array(res["matrix"])
        assert t.shape == ours.shape, (t.shape, ours.shape)
        d = np.abs(np.log(t) - np.log(ours))
        worst = max(worst, float(d.max()))
        arg = (t.argmax(-1) == ours.argmax(-1)).mean()
        print(
            f"{label}, orders {used}: max |Δ log p| {d.max():.2e} (median {np.median(d):.2e}) "
            f"over {t.size} entries (layers {layers}); argmax agrees in {arg:.0%} of "
            f"{t.shape[0] * t.shape[1]} (layer, injected) rows"
        )
    print(f"largest difference in log-probability: {worst:.2e}")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "npz":
        npz(sys.argv[2], sys.argv[3])
    elif cmd == "authors":
        a = sys.argv
        authors(a[2], a[3], a[4], int(a[5]), int(a[6]), float(a[7]), a[8].split(","), a[9])
    elif cmd == "compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(__doc__)
