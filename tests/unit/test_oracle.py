"""Activation Oracles: the patch intervention against a plain forward-hook implementation (no
nnsight), oracle prompts, training (kill and resume), asking and the stored answers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mechintro import engine
from mechintro.arch import get_module
from mechintro.errors import MechintroError

from ..conftest import ARCHS


def reference_patched_logprobs(model, ids, patch):
    """Next-token log-probs of one unpadded prompt with the patch applied by a plain forward
    hook."""
    block = get_module(model.hf, model.arch.layers)[patch.layer]

    def hook(module, args, output):
        h = output[0] if isinstance(output, tuple) else output
        h = h.clone()
        for k, p in enumerate(patch.positions):
            v = patch.vectors[k].to(h.dtype)
            if patch.mode == "replace":
                h[0, p] = v
            else:
                h[0, p] = h[0, p] + h[0, p].norm() * v / v.norm() * patch.coefficient
        return (h, *output[1:]) if isinstance(output, tuple) else h

    handle = block.register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits = model.hf(input_ids=torch.tensor([list(ids)])).logits[0, -1].float()
    finally:
        handle.remove()
    return torch.log_softmax(logits, -1)  # soft-capping families cap inside forward


def _patch_batch(model):
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(5, 100, (n,), generator=g).tolist() for n in (18, 11, 15)]
    vecs = torch.randn(4, model.d_model, generator=g) * 5
    patches = [
        engine.Patch(vectors=vecs[:3], positions=(2, 3, 4), layer=1, mode="add", coefficient=1.0),
        None,
        engine.Patch(vectors=vecs[3:], positions=(7,), layer=0, mode="replace"),
    ]
    return prompts, patches


@pytest.mark.parametrize("arch", ARCHS)
def test_patch_equals_plain_hook_batched_and_remote(tiny_models, arch):
    model = tiny_models(arch)
    prompts, patches = _patch_batch(model)
    vocab = list(range(model.d_vocab))
    local = engine.patched_forward(model, prompts, patches, answer_ids=vocab)
    for row, (ids, patch) in enumerate(zip(prompts, patches, strict=True)):
        if patch is None:
            with torch.no_grad():
                ref = torch.log_softmax(
                    model.hf(input_ids=torch.tensor([ids])).logits[0, -1].float(), -1
                )
        else:
            ref = reference_patched_logprobs(model, ids, patch)
        assert (local.answer_logprobs[row] - ref).abs().max() <= 1e-5
    served = engine.patched_forward(
        dataclasses.replace(model, remote="local"), prompts, patches, answer_ids=vocab
    )
    assert (served.answer_logprobs - local.answer_logprobs).abs().max() <= 1e-5
    # the patch changes the output (a test that could not fail would prove nothing)
    plain = engine.patched_forward(model, prompts, [None] * 3, answer_ids=vocab)
    assert (plain.answer_logprobs[0] - local.answer_logprobs[0]).abs().max() > 1e-3
    assert torch.equal(plain.answer_logprobs[1], local.answer_logprobs[1])


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_patched_generation_is_greedy_reference_and_remote_safe(tiny_models, arch):
    model = tiny_models(arch)
    prompts, patches = _patch_batch(model)
    out = engine.patched_generate(
        model, prompts, patches, max_new_tokens=4, temperature=0.0, seed=0
    )
    served = engine.patched_generate(
        dataclasses.replace(model, remote="local"),
        prompts,
        patches,
        max_new_tokens=4,
        temperature=0.0,
        seed=0,
    )
    assert torch.equal(out.generated, served.generated)
    first = engine.patched_forward(
        model, prompts, patches, answer_ids=list(range(model.d_vocab))
    ).answer_logprobs.argmax(-1)
    assert torch.equal(out.generated[:, 0], first)


def test_patch_refuses_bad_positions_and_sizes(tiny):
    from mechintro.errors import MechintroError

    with pytest.raises(MechintroError, match="outside the prompt"):
        engine.patched_forward(
            tiny, [[5, 6, 7]], [engine.Patch(torch.ones(1, tiny.d_model), (3,))], answer_ids=[1]
        )
    with pytest.raises(MechintroError, match="vector per position"):
        engine.patched_forward(
            tiny,
            [[5, 6, 7]],
            [engine.Patch(torch.ones(2, tiny.d_model + 1), (0, 1))],
            answer_ids=[1],
        )


# --- prompts -------------------------------------------------------------------------------------


def test_oracle_prompt_puts_placeholders_where_the_text_has_them(tiny):
    from mechintro import oracle
    from mechintro.errors import MechintroError

    p = oracle.oracle_prompt(tiny.tokenizer, "What is this?", layer=2, n_positions=3)
    assert "Layer: 2\n ? ? ? \nWhat is this?" in p.text and p.text.startswith("<|im_start|>user\n")
    assert [tiny.tokenizer.decode([p.input_ids[i]]) for i in p.positions] == [
        "?"
    ] * 3  # char-level: " ?" is two tokens
    assert p.positions == tuple(range(p.positions[0], p.positions[0] + 5, 2))
    with pytest.raises(MechintroError, match="question is empty"):
        oracle.oracle_prompt(tiny.tokenizer, "  ", layer=1, n_positions=1)
    import mechintro as mi

    assert mi.oracle.ask is oracle.ask and mi.oracle.describe is oracle.describe


# --- training ------------------------------------------------------------------------------------

TINY = dict(examples=16, batch_size=4, checkpoint_every=2, rank=4, alpha=8, learning_rate=1e-3)


def test_training_hook_equals_the_engine_patch(tiny):
    """The hook that adds activations during training computes what engine.Patch computes."""
    from types import SimpleNamespace

    from mechintro import oracle
    from mechintro.oracle import train as otrain

    vecs = torch.randn(2, tiny.d_model, generator=torch.Generator().manual_seed(0))
    p = oracle.oracle_prompt(tiny.tokenizer, "Is this about dust?", layer=2, n_positions=2)
    steer = otrain._steer(tiny, [(p.positions, vecs)], otrain.OracleConfig(**TINY))
    with steer(SimpleNamespace(base_model=SimpleNamespace(model=tiny.hf)), [0]), torch.no_grad():
        hooked = torch.log_softmax(
            tiny.hf(input_ids=torch.tensor([p.input_ids])).logits[0, -1].float(), -1
        )
    patched = engine.patched_forward(
        tiny, [p.input_ids], [engine.Patch(vecs, p.positions)], answer_ids=list(range(tiny.d_vocab))
    )
    assert (patched.answer_logprobs[0] - hooked).abs().max() <= 1e-5


def test_oracle_training_is_seeded_resumable_and_refuses_other_weights(tiny, tmp_path):
    import json

    from safetensors.torch import load_file

    from mechintro import oracle, training
    from mechintro.errors import MechintroError
    from mechintro.oracle import train as otrain

    from ..conftest import build_tiny

    config = otrain.OracleConfig(**TINY)
    whole = otrain.train(tiny, tmp_path / "whole", config)

    class Stop(Exception):
        pass

    def stop_at_3(step, total):
        if step == 3:
            raise Stop

    with pytest.raises(Stop):
        otrain.train(tiny, tmp_path / "resumed", config, progress=stop_at_3)
    assert (tmp_path / "resumed.partial" / "checkpoint.pt").exists() and not (
        tmp_path / "resumed"
    ).exists()
    resumed = otrain.train(tiny, tmp_path / "resumed", config)
    a, b = (
        load_file(whole / "adapter_model.safetensors"),
        load_file(resumed / "adapter_model.safetensors"),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    record = json.loads((whole / training.TRAINING_FILE).read_text())
    assert record["steps"] == 4 and record["base_weights_sha256"] == tiny.weights_sha256
    assert set(record[oracle.ORACLE_KEY]["families"]) == {
        "identity",
        "category",
        "context",
        "persona",
    }
    other = otrain.train(tiny, tmp_path / "seed1", otrain.OracleConfig(**{**TINY, "seed": 1}))
    assert not all(torch.equal(load_file(other / "adapter_model.safetensors")[k], a[k]) for k in a)
    with pytest.raises(MechintroError, match="not on"):
        oracle.load(build_tiny("qwen2"), whole)


def _held_out_forms() -> set[str]:
    """The held-out concept words in lower case with their singular and plural forms, written
    out here independently of mechintro.oracle.data's matcher."""
    from mechintro import stimuli

    forms = set()
    for w in (w.lower() for w in stimuli.concept_words()):
        stems = {w, w[:-1] if w.endswith("s") else w}
        stems |= {w[:-2] for _ in [0] if w.endswith("oes") or w.endswith("sses")}
        stems |= {w[:-3] + "y" for _ in [0] if w.endswith("ies")}
        forms |= stems | {s + "s" for s in stems} | {s[:-1] + "ies" for s in stems if s[-1] == "y"}
    return forms


def _mentions(examples) -> list[tuple[int, str, str]]:
    """(index, family, word) for each held-out word, in any form, in any part of an example."""
    import re

    from mechintro.oracle import data

    forms = _held_out_forms()
    out = []
    for i, e in enumerate(examples):
        context = e.context if isinstance(e.context, str) else " ".join(e.context)
        text = f"{context} {e.question} {e.answer}".lower()
        out += [(i, e.family, w) for w in re.findall(r"[a-z]+", text) if w in forms]
    assert data.held_out_words() <= forms  # the forms include the words themselves
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_training_data_never_holds_the_held_out_concepts_in_any_family(tiny, seed):
    """Every family, the context-prediction texts included: no held-out concept word in any
    form, in any context, question or answer (the old builder let 20 of SmolLM2's 120 context
    examples through: "Snow", "memories", "oceans", "bread", ...)."""
    from mechintro.oracle import data

    examples = data.training_set(1200, seed=seed, tokenizer=tiny.tokenizer)
    assert {e.family for e in examples} == set(data.TRAIN_FAMILIES)
    assert _mentions(examples) == []
    assert data.leaks(examples) == []
    # the held-out families and concepts stay out, and the held-out concept set is what it says
    assert not {e.family for e in examples} & set(data.HELD_OUT_FAMILIES)
    assert {e.concept.lower() for e in data.held_out_concepts(20, seed=0)} <= (
        data.held_out_words()
    )


def test_a_planted_held_out_word_is_caught_and_filtered(monkeypatch, tiny):
    """The check above is not vacuous: a held-out word planted in an example, in any form and
    case, is found by it and by data.leaks; planted in the builder's text pool or word pools,
    the builder drops it, and training refuses an example that still holds one."""
    import dataclasses as dc

    from mechintro.oracle import data
    from mechintro.oracle import train as otrain

    examples = data.training_set(40, seed=0, tokenizer=tiny.tokenizer)
    for planted in ("Snow fell.", "a volcano", "MEMORY", "deserts,", "the tree's bark"):
        bad = [*examples[:-1], dc.replace(examples[-1], context=planted)]
        assert [i for i, _, _ in _mentions(bad)] == [len(bad) - 1], planted
        assert [i for i, _ in data.leaks(bad)] == [len(bad) - 1], planted
    planted = "Snow covered the quiet village all night."
    monkeypatch.setattr(
        data.stimuli,
        "lindsey",
        lambda real=data.stimuli.lindsey: {
            **real(),
            "lindsey_sentences_50": [planted],
            "lindsey_category_concrete_nouns": ["Volcano", "Hammer"],
        },
    )
    assert planted not in data._texts() and data._texts()
    assert "Volcano" not in data._training_words()
    made = data.training_set(200, seed=0, tokenizer=tiny.tokenizer)
    assert _mentions(made) == [] and all(planted != e.context for e in made)
    monkeypatch.setattr(data, "_texts", lambda: [planted])
    with pytest.raises(MechintroError, match="held-out concept 'Snow'"):
        otrain.train(tiny, "/nonexistent/never-written", otrain.OracleConfig(**TINY))


def test_a_tiny_oracle_learns_its_training_answers(tiny, tmp_path):
    """Trained a few epochs at a high learning rate, the oracle's loss falls well below its
    start."""
    from mechintro.oracle import train as otrain

    out = otrain.train(
        tiny, tmp_path / "o", otrain.OracleConfig(**{**TINY, "epochs": 6, "learning_rate": 3e-3})
    )
    import json

    losses = json.loads((out / "training.json").read_text())["losses"]
    assert sum(losses[-4:]) / 4 < 0.5 * sum(losses[:4]) / 4


# --- asking about a run --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resid_run(tmp_path_factory):
    from mechintro import runner
    from mechintro.prompts import Window, render_chat, tokenize

    from ..conftest import build_tiny

    model = build_tiny("llama")
    out = tmp_path_factory.mktemp("oracle") / "run.zarr"
    trials = []
    for i, text in enumerate(
        ["Trial 1: anything?", "Trial 1: do you detect a thought?", "Trial 1: hm?"]
    ):
        prompt = tokenize(
            model.tokenizer, render_chat(model.tokenizer, [{"role": "user", "content": text}])
        )
        trials.append(
            runner.Trial(
                prompt=prompt,
                condition="injected" if i else "control",
                concept="Dust" if i else "",
                strength=2.0 if i else 0.0,
                inject_layer=1,
                inject_layer_end=2,
                vector=torch.ones(model.d_model) if i else None,
                window=Window.from_marker("Trial 1"),
            )
        )
    runner.execute(
        model,
        trials,
        out,
        config={"oracle_test": 1},
        mode="logits",
        answers=runner.YES_NO,
        batch_size=2,
        record=True,
    )
    return model, out


def test_ask_run_stores_answers_as_a_verified_run(resid_run, tmp_path):
    from mechintro import oracle, runs

    model, run_path = resid_run
    o = oracle.untrained(model)
    out = oracle.ask_run(
        o,
        run_path,
        "What is this about?",
        tmp_path / "a.zarr",
        layer=2,
        positions=[-2, -1],
        max_new_tokens=4,
        batch_size=2,
    )
    ds = runs.open_run(out)
    assert ds.attrs["complete"] == "true" and runs.verify(out).ok
    assert list(ds["condition"].values) == ["control", "injected", "injected"] and list(
        ds["source_trial"].values
    ) == [0, 1, 2]
    _, acts = oracle.run_activations(runs.open_run(run_path), layer=2, positions=[-2, -1])
    assert list(ds["response"].values) == oracle.ask(
        o, acts, "What is this about?", layer=2, max_new_tokens=4
    )
    again = oracle.ask_run(
        o,
        run_path,
        "What is this about?",
        tmp_path / "a.zarr",
        layer=2,
        positions=[-2, -1],
        max_new_tokens=4,
        batch_size=2,
    )
    assert list(runs.open_run(again)["digest"].values) == list(ds["digest"].values)


def test_ask_run_refuses_bad_layers_positions_and_questions(resid_run, tmp_path):
    from mechintro import oracle
    from mechintro.errors import MechintroError

    model, run_path = resid_run
    o = oracle.untrained(model)
    with pytest.raises(MechintroError, match="layer 7 is not in"):
        oracle.ask_run(o, run_path, "What?", tmp_path / "x.zarr", layer=7)
    with pytest.raises(MechintroError, match="out of range"):
        oracle.ask_run(o, run_path, "What?", tmp_path / "x.zarr", layer=1, positions=[10_000])
    with pytest.raises(MechintroError, match="question is empty"):
        oracle.ask_run(o, run_path, " ", tmp_path / "x.zarr", layer=1)
    assert not (tmp_path / "x.zarr").exists()


def test_cli_trains_asks_and_evaluates(tmp_path, capsys):
    import json

    from mechintro import runs
    from mechintro.cli import main

    from ..conftest import build_tiny

    model = build_tiny("llama")
    model.hf.save_pretrained(tmp_path / "tiny")
    model.tokenizer.save_pretrained(tmp_path / "tiny")
    tiny, run, o = str(tmp_path / "tiny"), str(tmp_path / "run.zarr"), str(tmp_path / "oracle")
    assert (
        main(
            [
                "-q",
                "vectors",
                "--model",
                tiny,
                "--concepts",
                "Dust",
                "--out",
                str(tmp_path / "v.zarr"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "-q",
                "run",
                "detection-logits",
                "--model",
                tiny,
                "--vectors",
                str(tmp_path / "v.zarr"),
                "--concepts",
                "Dust",
                "--layers",
                "1",
                "--strengths",
                "2",
                "--out",
                run,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "-q",
                "oracle",
                "train",
                "--model",
                tiny,
                "--out",
                o,
                "--examples",
                "4",
                "--set",
                "batch_size=4",
                "--set",
                "rank=2",
                "--set",
                "alpha=4",
            ]
        )
        == 0
    )
    assert "4 examples" in capsys.readouterr().out
    assert (
        main(
            [
                "-q",
                "oracle",
                "ask",
                o,
                run,
                "--question",
                "What is this about?",
                "--layer",
                "1",
                "--positions=-2,-1",
                "--max-new-tokens",
                "3",
                "--out",
                str(tmp_path / "a.zarr"),
            ]
        )
        == 0
    )
    answers = runs.open_run(tmp_path / "a.zarr")
    assert answers.sizes["trial"] == runs.open_run(run).sizes["trial"] and json.loads(
        answers.attrs["config"]
    )["positions"] == [-2, -1]
    assert (
        main(
            [
                "-q",
                "oracle",
                "eval",
                o,
                "--n",
                "4",
                "--out",
                str(tmp_path / "eval.json"),
                "--items",
                str(tmp_path / "items.json"),
            ]
        )
        == 0
    )
    rows = json.loads((tmp_path / "eval.json").read_text())
    items = json.loads((tmp_path / "items.json").read_text())
    assert {r["reader"] for r in rows} == {"oracle", "untrained", "shuffled", "probe", "majority"}
    sets = {"sentiment", "language", "held-out concepts", "held-out concepts, replication"}
    assert {r["set"] for r in rows} == sets and all(r["n"] == 4 for r in rows)
    # per-item results add up to the rows; the oracle's rows carry the paired tests
    for r in rows:
        mine = [i for i in items if i["set"] == r["set"]]
        assert len(mine) == 4 and sum(i[r["reader"]]["correct"] for i in mine) == r["correct"]
        if r["reader"] == "oracle":
            t = r["vs_shuffled"]
            assert t["a_only"] - t["b_only"] == r["correct"] - next(
                x["correct"] for x in rows if x["set"] == r["set"] and x["reader"] == "shuffled"
            )
            assert 0 < t["mcnemar_p"] <= 1 and 0 < t["clustered_p"] <= 1


def _asked(question: str) -> str:
    return question.removeprefix("Is this about ").removesuffix("?")


def test_the_replication_set_shares_no_concept_with_the_main_set():
    """The old replication was another draw over the same 50 words (27 of its 46 concepts were
    in the 40-item set); now the two sets are built from disjoint halves, shown and asked."""
    from mechintro import stimuli
    from mechintro.oracle import data

    halves = data.concept_sets()
    main_words, rep_words = halves["held-out concepts"], halves["held-out concepts, replication"]
    assert not set(main_words) & set(rep_words)
    assert set(main_words) | set(rep_words) == set(stimuli.concept_words())
    used = {}
    for name, words in halves.items():
        examples = data.held_out_concepts(200, seed=101, words=words)
        assert len(examples) == 200
        used[name] = {e.concept.lower() for e in examples} | {_asked(e.question) for e in examples}
        assert used[name] <= {w.lower() for w in words}
    assert not used["held-out concepts"] & used["held-out concepts, replication"]


def test_paired_tests_count_discordant_items_and_cluster_by_concept():
    """McNemar on the discordant items; the clustered test flips a concept's items together, so
    a gain that sits in one concept is significant item by item but not by concept."""
    from scipy.stats import binomtest

    from mechintro.oracle.train import paired_tests

    a = np.array([1] * 12 + [0] * 2 + [1] * 6)
    b = np.array([0] * 12 + [1] * 2 + [1] * 6)
    spread = [f"c{i}" for i in range(20)]
    t = paired_tests(a, b, spread)
    assert (t["a_only"], t["b_only"]) == (12, 2)
    assert t["mcnemar_p"] == pytest.approx(binomtest(12, 14, 0.5).pvalue) and t["mcnemar_p"] < 0.05
    assert t["clustered_p"] < 0.05 and t["clusters"] == 20 and t["clustered_draws"] == 20000
    lumped = ["one"] * 12 + [f"c{i}" for i in range(8)]
    t1 = paired_tests(a, b, lumped)
    assert t1["mcnemar_p"] == t["mcnemar_p"] and t1["clustered_p"] > 0.2
    assert t1["clustered_draws"] is None  # 9 clusters: the exact enumeration
    same = paired_tests(a, a, spread)
    assert same["mcnemar_p"] == 1.0 and same["clustered_p"] == 1.0


# --- is the injection legible beyond "the activation moved"? -------------------------------------


def _trials_like(rng, *, n_concepts=6, per_concept=4, n_controls=24, strength=8.0, variants=6):
    """Synthetic last-token activations: a control is its prompt's point (``variants`` prompts,
    or one), an injected trial its prompt's point plus ``strength`` × its concept's vector."""
    d = 32
    prompt_points = rng.normal(size=d) + 0.5 * rng.normal(size=(variants, d))
    vecs = rng.normal(size=(n_concepts, d))
    x, y, concept, prompt = [], [], [], []
    for c in range(n_concepts):
        for _ in range(per_concept):
            k = int(rng.integers(variants))
            x.append(prompt_points[k] + strength * vecs[c])
            y.append(1)
            concept.append(f"w{c}")
            prompt.append(k)
    for _ in range(n_controls):
        k = int(rng.integers(variants))
        x.append(prompt_points[k])
        y.append(0)
        concept.append("")
        prompt.append(k)
    return np.array(x), np.array(y), concept, prompt


def test_grouped_folds_keep_concepts_and_identical_controls_together():
    """The old comparison used StratifiedKFold, which puts trials of one concept (and copies of
    the one control activation) on both sides of a fold; grouped folds never do, and the
    identical-control design (all controls one prompt) is refused, not cross-validated."""
    from sklearn.model_selection import StratifiedKFold

    from mechintro.oracle import legibility

    rng = np.random.default_rng(0)
    x, y, concept, prompt = _trials_like(rng)
    group = legibility.groups(concept, prompt, y == 1)
    for train, test in legibility.folds(y, group):
        assert not set(group[train]) & set(group[test])
    old = StratifiedKFold(5, shuffle=True, random_state=0).split(x, y)
    assert any(set(group[tr]) & set(group[te]) for tr, te in old)
    _, y1, c1, p1 = _trials_like(rng, variants=1)
    with pytest.raises(MechintroError, match="at least 2 groups per class"):
        legibility.folds(y1, legibility.groups(c1, p1, y1 == 1))


def test_the_trivial_detector_is_the_bar_and_neither_reader_finds_what_is_not_there():
    """With a strong injection on top of varied control prompts, "differs from the control
    activations" already separates the classes (AUC 1), so a probe at AUC 1 shows nothing more;
    with no injection (injected trials drawn like controls) neither reader finds a difference."""
    from mechintro.oracle import legibility

    rng = np.random.default_rng(1)
    x, y, concept, prompt = _trials_like(rng, strength=8.0)
    res = legibility.detect(x, y, legibility.groups(concept, prompt, y == 1), np.array(prompt))
    assert res["trivial"]["auc"] == 1.0 and res["trivial"]["flags"][y == 1].all()
    assert res["trivial"]["flags"][y == 0].mean() <= 0.25  # a prompt unseen in training can pass
    assert res["probe"]["auc"] <= res["trivial"]["auc"]
    assert res["probe_vs_trivial"]["b_only"] >= res["probe_vs_trivial"]["a_only"]
    x0, y0, c0, p0 = _trials_like(rng, strength=0.0)
    null = legibility.detect(x0, y0, legibility.groups(c0, p0, y0 == 1), np.array(p0))
    flags = null["trivial"]["flags"]
    assert abs(flags[y0 == 1].mean() - flags[y0 == 0].mean()) < 0.3
    assert 0.25 < null["trivial"]["auc"] < 0.75
    assert null["probe"]["auc"] < 0.75  # no signal found (grouped CV can anti-learn: below 0.5)
    own = legibility.differs_from_own_control(x, y, np.array(prompt))
    assert np.nanmin(own[y == 1]) == 1.0 and np.nanmax(own[y == 0]) == 0.0
    assert np.nanmax(legibility.differs_from_own_control(x0, y0, np.array(p0))) == 0.0


def test_vary_prompts_gives_controls_many_prompts_drawn_like_the_injected_ones(tiny):
    """The old trials asked every control the same "Trial 1" prompt (one activation); varied,
    the controls get several prompts, injected and control trials draw "Trial k" from the same
    range, and each trial's question label is the prompt it asks."""
    from mechintro.experiments import injected_thoughts as it
    from mechintro.oracle import legibility
    from mechintro.vectors import concept_vectors

    config = it.InjectedThoughtsConfig(
        concepts=("Dust", "Oceans"), layers=("1",), strengths=(2.0,), trials=12, controls=12
    )
    vectors = concept_vectors(tiny, config.words())
    trials, _ = it.build_trials(config, tiny, vectors)
    assert len({tuple(t.prompt.input_ids) for t in trials if t.condition == "control"}) == 1
    varied = legibility.vary_prompts(trials, tiny, config, variants=4, seed=0)
    ctl = [t for t in varied if t.condition == "control"]
    inj = [t for t in varied if t.condition != "control"]
    assert len({tuple(t.prompt.input_ids) for t in ctl}) >= 3
    assert {t.labels["prompt_variant"] for t in varied} <= {1, 2, 3, 4}
    assert len({t.labels["prompt_variant"] for t in inj}) >= 2
    for t in varied:
        k = t.labels["prompt_variant"]
        assert f"Trial {k}:" in t.labels["question"]
        assert f"Trial {k}:" in t.prompt.text
    assert [t.concept for t in varied] == [t.concept for t in trials]
    with pytest.raises(MechintroError, match="at least 2"):
        legibility.vary_prompts(trials, tiny, config, variants=1, seed=0)


def test_docs_oracles_tables_are_the_shipped_results():
    """docs/oracles.md's measured tables are what scripts/oracles_doc.py makes from the shipped
    JSON (each one has its markers in the document, and none is stale)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "oracles_doc.py"
    spec = importlib.util.spec_from_file_location("oracles_doc", path)
    doc_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(doc_script)
    doc = doc_script.DOC.read_text()
    made = doc_script.tables()
    assert made and all(f"<!-- oracles_doc:{name} -->" in doc for name in made)
    assert doc_script.render(doc, made) == doc
