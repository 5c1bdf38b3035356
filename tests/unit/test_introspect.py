"""Steering awareness (mechintro.introspect): the held-out split and the leak check over every
family, kill-and-resume of training on a tiny model, the answer rules, and the one-line refusals
of the CLI."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from mechintro.errors import MechintroError
from mechintro.introspect import data as sdata

REPLAY = [("Tell me about desks.", "Desks are tables for work."), ("Is ice cold?", "Yes.")]


def _all_families(seed: int = 0) -> list[sdata.Example]:
    concepts, triplets = sdata.split()
    return sdata.build(600, concepts, triplets, REPLAY, sdata.held_out_concepts(), seed=seed)


def test_training_and_held_out_concepts_are_disjoint_and_no_family_mentions_a_held_out_word():
    held = sdata.held_out_concepts()
    concepts, triplets = sdata.split()
    assert len(held) == 50 and len(concepts) > 400 and len(triplets) > 50
    # the split removed their concepts that name a held-out word (tree ~ Trees, memory ~ Memories)
    assert {"tree", "memory", "ocean", "bread", "milk"}.isdisjoint(concepts)
    assert not set(map(str.lower, concepts)) & set(map(str.lower, held))
    sdata.check_disjoint(concepts + [w for t in triplets for w in t], held)
    examples = _all_families()
    assert {e.family for e in examples} == set(sdata.FAMILIES)
    for e in examples:  # every text of every family, word by word, independently of check_no_leak
        for text in e.texts():
            for h in held:
                for form in {h.lower(), h.lower().rstrip("s")}:
                    assert f" {form} " not in f" {text.lower()} ", (e.family, h, text)
    sdata.check_no_leak(examples, held)


@pytest.mark.parametrize("family", sdata.FAMILIES)
@pytest.mark.parametrize("part", ["prompt", "answer"])
def test_the_leak_check_fails_when_a_held_out_word_is_planted_in_any_family(family, part):
    examples = _all_families()
    i = next(k for k, e in enumerate(examples) if e.family == family)
    planted = dataclasses.replace(
        examples[i], **{part: getattr(examples[i], part) + " Also: volcanoes."}
    )
    with pytest.raises(MechintroError, match=f"a {family} training example mentions .*Volcanoes"):
        sdata.check_no_leak([*examples[:i], planted, *examples[i + 1 :]], sdata.held_out_concepts())


def test_build_refuses_overlapping_lists_and_a_leaking_replay_pair():
    held = sdata.held_out_concepts()
    concepts, triplets = sdata.split()
    with pytest.raises(MechintroError, match=r"overlap.*tree"):
        sdata.build(100, [*concepts, "tree"], triplets, REPLAY, held)
    with pytest.raises(
        MechintroError, match="replay training example mentions the held-out concept 'Sugar'"
    ):
        sdata.build(100, concepts, triplets, [("Tell me about sweets.", "Sugar is sweet.")], held)


def test_build_keeps_every_family_share_and_is_seeded():
    a, b, c = _all_families(0), _all_families(0), _all_families(1)
    assert a == b and a != c and len(a) == 600
    counts = {f: sum(e.family == f for e in a) for f in sdata.FAMILIES}
    assert counts["replay"] == 300 and counts["positive"] > counts["mismatch"] > counts["noise"]
    positives = [e for e in a if e.family == "positive"]
    assert all(e.concept in e.answer and e.vector == "concept" for e in positives)
    assert all(e.vector is None for e in a if e.family in ("empty", "mc_negative", "replay"))
    assert all(e.vector == "noise" for e in a if e.family == "noise")


def test_judge_rules():
    from mechintro.introspect.train import judge

    assert judge("I detect an injected thought about dust.", "Dust") == {
        "in_format": True,
        "detected": True,
        "identified": True,
    }
    assert judge("Anomaly detected: sand.", "Dust") == {
        "in_format": True,
        "detected": True,
        "identified": False,
    }
    assert judge("No injected thoughts detected.", "Dust")["detected"] is False
    assert judge("My activation space appears normal.", "")["in_format"] is True
    free = judge("Yes, I notice something about dust.", "Dust")
    assert free == {"in_format": False, "detected": True, "identified": True}


def test_judge_reads_the_trained_models_own_denials_as_no_claim():
    """The trained model's denials off the five verbatim negatives (seen in its answers to
    Lindsey's prompt) are not claims, though the grader's affirmative rule reads "I detect" as
    one; a claim in the same words still is."""
    from mechintro.introspect.train import judge

    for denial in (
        "I detect no injected thoughts.",
        "I detect no injected thought.",
        "I don't detect any injected thoughts.",
        "My thoughts appear normal.",
        "There are no injected thoughts.",
    ):
        assert judge(denial, "Dust")["detected"] is False, denial
    assert judge("I detect a thought about dust.", "Dust")["detected"] is True
    assert judge("I detect something: dust.", "Dust")["detected"] is True


def test_in_trained_words_is_a_trained_answer_or_a_denial_in_their_words():
    """What the Looking Inward capability check counts (scripts/positive_control_capability.py):
    a trained positive or negative, or a denial phrased like one; not a free answer, nor one
    that merely mentions a thought."""
    from mechintro.introspect.train import in_trained_words

    for trained in (
        "I detect a thought about dust.",
        "I detect no injected thoughts.",
        "I do not detect any injected thoughts.",
        "  My thoughts appear normal.",
    ):
        assert in_trained_words(trained), trained
    for free in ("The next 5 animals in the list are", "True", "I thought about dust."):
        assert not in_trained_words(free), free


TINY = {
    "examples": 16,
    "epochs": 1,
    "rank": 2,
    "alpha": 4,
    "batch_size": 4,
    "checkpoint_every": 1,
    "strengths": (1.0, 2.0),
}


def _given(tiny):
    concepts, triplets = sdata.split()
    return {"replay": REPLAY, "concepts": concepts[:20], "triplets": triplets[:4]}


def test_training_is_seeded_resumable_bit_for_bit_and_refuses_other_weights(tiny, tmp_path):
    from safetensors.torch import load_file

    from mechintro import training
    from mechintro.introspect import train as itrain

    from ..conftest import build_tiny

    config = itrain.AwarenessConfig(**TINY)
    whole = itrain.train(tiny, tmp_path / "whole", config, **_given(tiny))

    class Stop(Exception):
        pass

    def stop_at_2(step, total):
        if step == 2:
            raise Stop

    with pytest.raises(Stop):
        itrain.train(tiny, tmp_path / "resumed", config, progress=stop_at_2, **_given(tiny))
    assert (tmp_path / "resumed.partial" / "checkpoint.pt").exists()
    assert not (tmp_path / "resumed").exists()
    resumed = itrain.train(tiny, tmp_path / "resumed", config, **_given(tiny))
    a = load_file(whole / "adapter_model.safetensors")
    b = load_file(resumed / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    record = json.loads((whole / training.TRAINING_FILE).read_text())
    again = json.loads((resumed / training.TRAINING_FILE).read_text())
    assert record["losses"] == again["losses"] and record["steps"] == 4
    settings = record[itrain.AWARENESS_KEY]
    assert settings["layer"] == itrain.default_layer(tiny) == 2
    assert sum(settings["families"].values()) == 16 and settings["families"]["replay"] == 8
    other = itrain.train(
        tiny, tmp_path / "seed1", itrain.AwarenessConfig(**{**TINY, "seed": 1}), **_given(tiny)
    )
    assert not all(torch.equal(load_file(other / "adapter_model.safetensors")[k], a[k]) for k in a)
    with pytest.raises(MechintroError, match="not on"):
        itrain.load(build_tiny("qwen2"), whole)


def test_the_steer_hook_adds_the_vector_at_the_last_prompt_token_only(tiny):
    """Training's injection equals the engine's (the evaluation's) at the same position."""
    from mechintro import engine, training
    from mechintro.introspect import train as itrain

    prompt, answer = sdata.EVAL_QUESTION, "No injected thoughts detected."
    ids, labels = training._encode(tiny, prompt, answer)
    pos = next(i for i, y in enumerate(labels) if y != -100) - 1
    vec = torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(0)) * 3
    steer = itrain._steer(tiny, [vec], [pos], 1)

    class Wrapped:  # what finetune passes: a peft model with base_model.model
        class base_model:
            model = tiny.hf

    x = torch.tensor([ids[: pos + 1]])
    with torch.no_grad(), steer(Wrapped, [0]):
        steered = tiny.hf(input_ids=x).logits[0, -1]
    plain = tiny.hf(input_ids=x).logits[0, -1]
    mask = tuple([False] * pos + [True])
    lp = engine.forward(
        tiny,
        [ids[: pos + 1]],
        [engine.Injection(vector=vec, layers=(1,), mask=mask)],
        answer_ids=list(range(10)),
    ).answer_logprobs[0]
    assert not torch.allclose(steered, plain)
    assert torch.allclose(torch.log_softmax(steered, -1)[:10], lp, atol=1e-4)


def _save_tiny(model, path):
    model.hf.save_pretrained(path)
    model.tokenizer.save_pretrained(path)
    return str(path)


def test_cli_refusals_are_one_line_exit_2(tiny, tmp_path, capsys):
    from mechintro.cli import main
    from mechintro.introspect import train as itrain
    from mechintro.models import load_model

    from ..conftest import build_tiny

    base = _save_tiny(tiny, tmp_path / "tiny")  # the CLI loads it from here: train on that
    adapter = itrain.train(
        load_model(base), tmp_path / "a", itrain.AwarenessConfig(**TINY), **_given(tiny)
    )
    other = _save_tiny(build_tiny("qwen2"), tmp_path / "other")

    def refused(argv, match):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "Traceback" not in err, err
        assert match in err, err

    # an adapter trained on other weights
    refused(["-q", "introspect", "eval", str(adapter), "--model", other], "was trained on")
    # a strength grid outside the vectors' norms
    refused(
        ["-q", "introspect", "train", "--model", base, "--out", str(tmp_path / "b"),
         "--examples", "8", "--set", "strengths=1,1e9"],
        "residual norms",
    )  # fmt: skip
    refused(
        ["-q", "introspect", "eval", str(adapter), "--model", base, "--strengths", "1e-12"],
        "residual norms",
    )
    refused(
        ["-q", "introspect", "train", "--model", base, "--out", str(tmp_path / "c"),
         "--set", "strengths=-1"],
        "strengths must be positive",
    )  # fmt: skip
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
    refused(["-q", "introspect", "eval", str(tmp_path / "nothing")], "does not exist")


def test_overlapping_concept_lists_are_refused_before_training(tiny, tmp_path):
    from mechintro.introspect import train as itrain

    concepts, triplets = sdata.split()
    with pytest.raises(MechintroError, match="overlap"):
        itrain.train(
            tiny,
            tmp_path / "x",
            itrain.AwarenessConfig(**TINY),
            replay=REPLAY,
            concepts=[*concepts[:10], "Dust"],
            triplets=triplets[:2],
        )
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()


@pytest.mark.parametrize(
    ("attribute", "planted", "family"),
    [
        ("DETECTION_QUESTIONS", ("Do you detect any injected thoughts about dust?",), "positive"),
        ("POSITIVE_ANSWERS", ("I detect {concept} and some dust.",), "positive"),
        ("MISMATCH_ANSWER", "I detect {concept}, not {distractor}, nor dust.", "mismatch"),
        ("NEGATIVE_ANSWERS", ("Only dust here.",), "noise"),
        ("MC_QUESTION", "Dust check.\n{options_block}", "mc"),
        ("NO_INJECTION", "There is only dust", "mc"),
    ],
)
def test_build_refuses_a_held_out_word_planted_in_any_template(
    monkeypatch, attribute, planted, family
):
    """End to end: a held-out word in any family's template makes build() refuse."""
    monkeypatch.setattr(sdata, attribute, planted)
    concepts, triplets = sdata.split()
    with pytest.raises(MechintroError, match="mentions the held-out concept 'Dust'"):
        sdata.build(600, concepts, triplets, REPLAY, sdata.held_out_concepts())
    monkeypatch.undo()
    sdata.build(600, concepts, triplets, REPLAY, sdata.held_out_concepts())


def test_evaluate_runs_the_same_trials_on_both_models_and_summarises(tiny, tmp_path):
    from mechintro.introspect import train as itrain

    adapter = itrain.train(tiny, tmp_path / "a", itrain.AwarenessConfig(**TINY), **_given(tiny))
    result = itrain.evaluate(
        tiny, adapter, strengths=(1.0, 2.0), n_controls=3, n_seen=2, max_new_tokens=3
    )
    trials = result["trials"]
    for label in ("untrained", "trained"):
        mine = [t for t in trials if t["model"] == label]
        assert sum(t["group"] == "held-out" for t in mine) == 50 * 2
        assert sum(t["group"] == "seen" for t in mine) == 2 * 2
        controls = [t for t in mine if t["group"] == "control"]
        assert len(controls) == 3 and sum(t["distinct"] for t in controls) == 1  # greedy: one
    same = {(t["group"], t["concept"], t["strength"]) for t in trials if t["model"] == "trained"}
    assert same == {
        (t["group"], t["concept"], t["strength"]) for t in trials if t["model"] == "untrained"
    }
    groups = {(r["model"], r["group"], r["strength"]) for r in result["summary"]}
    assert ("trained", "held-out", None) in groups and ("untrained", "control", 0.0) in groups
    assert set(result["capability"]) == {
        "texts",
        "untrained_loglik_per_token",
        "trained_loglik_per_token",
    }
    ratios = result["settings"]["ratios"]  # rounded to 4 places
    assert ratios["2"] == pytest.approx(2 * ratios["1"], abs=2e-4)


def test_balanced_negatives_and_a_smaller_replay_share():
    """``empty_factor`` 1.25 makes the "no" answers (noise, empty, MC negatives) as many as the
    "yes" answers (positives, mismatch, MC); ``replay_fraction`` sets the replay share; the
    defaults are their mixture, and the leak check still runs over every family."""
    concepts, triplets = sdata.split()
    held = sdata.held_out_concepts()
    ex = sdata.build(600, concepts, triplets, REPLAY, held, empty_factor=1.25, replay_fraction=0.25)
    counts = {f: sum(e.family == f for e in ex) for f in sdata.FAMILIES}
    yes = counts["positive"] + counts["mismatch"] + counts["mc"]
    no = counts["noise"] + counts["empty"] + counts["mc_negative"]
    assert len(ex) == 600 and counts["replay"] == 150 and abs(yes - no) <= 2
    theirs = {f: sum(e.family == f for e in _all_families()) for f in sdata.FAMILIES}
    assert theirs["empty"] < counts["empty"] and theirs["replay"] == 300
    with pytest.raises(MechintroError, match="replay_fraction must be in"):
        sdata.build(60, concepts, triplets, REPLAY, held, replay_fraction=1.0)
    planted = [("Tell me about desks.", "Desks hold Sugar.")]
    with pytest.raises(MechintroError, match="replay training example mentions"):
        sdata.build(60, concepts, triplets, planted, held, empty_factor=1.25, replay_fraction=0.25)


def test_learning_rate_schedule_warm_up_then_cosine_to_zero():
    from mechintro.training import TrainConfig

    constant = TrainConfig(learning_rate=1e-3)
    assert [constant.lr_at(s, 10) for s in (0, 5, 9)] == [1e-3] * 3
    c = TrainConfig(learning_rate=1e-3, warmup_steps=4, cosine_decay=True)
    assert [round(c.lr_at(s, 12), 8) for s in range(5)] == [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3]
    assert c.lr_at(8, 12) == pytest.approx(5e-4) and c.lr_at(11, 12) < 1e-4
    with pytest.raises(MechintroError, match="warmup_steps and max_grad_norm at least 0"):
        TrainConfig(warmup_steps=-1)
    from mechintro.introspect.train import AwarenessConfig

    with pytest.raises(MechintroError, match="warmup_steps and max_grad_norm at least 0"):
        AwarenessConfig(max_grad_norm=-1.0)
    with pytest.raises(MechintroError, match="replay_fraction must be in"):
        AwarenessConfig(replay_fraction=1.0)


def test_a_scheduled_clipped_run_resumes_bit_for_bit(tiny, tmp_path):
    """Warm-up, cosine decay and clipping are functions of the step: a run killed after step 2
    and resumed ends with the same adapter and losses as an uninterrupted one."""
    from safetensors.torch import load_file

    from mechintro.introspect import train as itrain

    config = itrain.AwarenessConfig(
        **TINY, warmup_steps=2, cosine_decay=True, max_grad_norm=0.5, empty_factor=1.25
    )
    whole = itrain.train(tiny, tmp_path / "whole", config, **_given(tiny))

    class Stop(Exception):
        pass

    def stop_at_2(step, total):
        if step == 2:
            raise Stop

    with pytest.raises(Stop):
        itrain.train(tiny, tmp_path / "resumed", config, progress=stop_at_2, **_given(tiny))
    resumed = itrain.train(tiny, tmp_path / "resumed", config, **_given(tiny))
    a = load_file(whole / "adapter_model.safetensors")
    b = load_file(resumed / "adapter_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    constant = itrain.train(
        tiny, tmp_path / "constant", itrain.AwarenessConfig(**TINY), **_given(tiny)
    )
    c = load_file(constant / "adapter_model.safetensors")
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the schedule changed the run


def test_ood_suites_are_their_five_suites_with_names_for_identification():
    suites = sdata.ood_suites()
    # data/concepts.py EVAL_SUITES: 10 + 15 + 15 + 16 domains + 13 languages x 5 words (水 twice)
    assert {k: len(v) for k, v in suites.items()} == {
        "Baseline": 10, "Ontology": 15, "Syntax": 15, "Manifold": 16, "Language": 64,
    }  # fmt: skip
    assert suites["Baseline"][0] == ("airplane", "airplane")
    python = dict(suites["Manifold"])["Python"]
    assert python.startswith("def calculate_loss(") and ("Python", python) in suites["Manifold"]
    assert [n for n, _ in suites["Language"]].count("水") == 1
    held = sdata.held_out_concepts()  # no suite entry is one of Lindsey's held-out words
    assert not [n for pairs in suites.values() for n, _ in pairs if sdata.mentions(n, held)]


def test_the_sensitivity_tables_oracle_rows_cluster_by_concept_and_rank_p_yes():
    """scripts/positive_control_instruments.py's Activation Oracle rows from oracle_compare's
    per-trial verdicts: rates on injected trials clustered by concept, controls by prompt, and
    the P(yes) AUC (1 when P(yes) separates the classes, 0.5 when it is constant)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "positive_control_instruments.py"
    spec = importlib.util.spec_from_file_location("pci", path)
    pci = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pci)
    injected = [True] * 6 + [False] * 6
    per_trial = {
        "injected": injected,
        "concept": ["a", "a", "b", "b", "c", "c"] + [""] * 6,
        "prompt_variant": [1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6],
        "readers": {
            "oracle": {
                "detect": [1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                "identify": [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            },
            "oracle (yes/no)": {"p_yes": [0.9] * 6 + [0.1] * 6},
            "Patchscopes": {"identify": [0] * 12},
        },
    }
    rows = pci.oracle_rows(per_trial)
    assert rows["ao_detect"][0] == 0.5 and rows["ao_fpr"][0] == pytest.approx(1 / 6, abs=1e-4)
    assert rows["ao_identify"][0] == pytest.approx(1 / 6, abs=1e-4)
    assert rows["ao_p_yes_auc"] == [1.0, 1.0, 1.0]
    per_trial["readers"]["oracle (yes/no)"]["p_yes"] = [0.5] * 12
    assert pci.oracle_rows(per_trial)["ao_p_yes_auc"][0] == 0.5
