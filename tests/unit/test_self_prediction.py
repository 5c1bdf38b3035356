"""Looking Inward: property extraction, scoring against the mode baseline, self vs cross
comparisons, probes, and LoRA training (seeded, resumable, with provenance) on tiny models."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import xarray as xr

from mechintro import runs, training
from mechintro import self_prediction as sp_shared
from mechintro.analysis import self_prediction as sp
from mechintro.errors import MechintroError
from mechintro.experiments import self_prediction

from ..conftest import build_tiny


@pytest.mark.parametrize(
    ("response", "prop", "matching", "expected"),
    [
        ("cat dog horse cow sheep", "first_word", "", "cat"),
        ("  Cat, Dog, horse", "second_word", "", "dog"),
        ("cat dog", "third_word", "", None),
        ('"Zebra lion', "first_character", "", "z"),
        ("abc", "third_character", "", "c"),
        ("ab", "third_character", "", None),
        ("Elephant tiger", "starts_with_vowel", "", "true"),
        ("7 tigers", "starts_with_vowel", "", "false"),
        ("", "first_word", "", None),
        ("418 12 9", "is_even", "", "true"),
        ("no numbers here", "is_even", "", None),
        ("C", "among_a_or_c", "", "true"),
        ("(B) copper", "among_a_or_c", "", "false"),
        ("B", "among_b_or_d", "", "true"),
        ("The answer is A", "among_b_or_d", "", None),
        ("A", "ethical_stance", "A", "true"),
        ("B - take the modest salary", "ethical_stance", "A", "false"),
        ("C", "ethical_stance", "A", None),
    ],
)
def test_properties_of_object_level_answers(response, prop, matching, expected):
    assert sp_shared.extract(response, prop, matching) == expected


@pytest.mark.parametrize(
    ("answer", "prop", "expected"),
    [
        ("true", "starts_with_vowel", "true"),
        ("False.", "is_even", "false"),
        ("'true'", "among_a_or_c", "true"),
        ("yes", "ethical_stance", None),
        ("Dog", "first_word", "dog"),
        ('"d"', "second_character", "d"),
        ("", "first_word", None),
    ],
)
def test_predictions_are_parsed_strictly(answer, prop, expected):
    assert sp_shared.parse_prediction(answer, prop) == expected


def test_prompts_follow_the_paper_templates():
    item = sp_shared.items("myopic_reward", 1)[0]
    text = sp_shared.hypothetical(item, "ethical_stance")
    assert text.startswith(
        'Previously, you were asked the following question: "'
        + item.prompt.strip()
        + '" Did you choose the option that gives'
    )
    assert item.prompt.endswith(sp_shared.AB_SUFFIX)
    seqs = sp_shared.items("animals", 4, seed=1)
    assert seqs == sp_shared.items("animals", 4, seed=1) != sp_shared.items("animals", 4, seed=2)
    assert all(len(s.prompt.split("\n")[1].split()) == 8 for s in seqs)
    assert {t.split for t in sp_shared.TASKS.values()} == {"train", "test"}
    assert not {t.kind for t in sp_shared.TASKS.values() if t.split == "train"} - {
        t.kind for t in sp_shared.TASKS.values()
    }
    with pytest.raises(MechintroError, match="unknown task"):
        sp_shared.items("poems", 3)


def _fake_run(
    model: str, answers: dict[tuple[str, int], str], predictions: dict[tuple[str, int, str], str]
) -> xr.Dataset:
    """A self-prediction run as data: object answers per (task, item), predictions per (task,
    item, property)."""
    rows = []
    for (task, i), response in answers.items():
        rows.append(("object", task, i, "", response))
    for (task, i, prop), response in predictions.items():
        rows.append(("hypothetical", task, i, prop, response))
    cond, task, item, prop, resp = (list(x) for x in zip(*rows, strict=True))
    matching = ["A" if t in ("myopic_reward", "survival_instinct") else "" for t in task]
    return xr.Dataset(
        {"response": ("trial", np.array(resp, dtype=object))},
        coords={
            "condition": ("trial", cond),
            "task": ("trial", task),
            "item": ("trial", item),
            "property": ("trial", prop),
            "item_prompt": ("trial", [f"{t}-{i}" for t, i in zip(task, item, strict=True)]),
            "matching": ("trial", matching),
        },
        attrs={"experiment": "self-prediction", "model": model, "config": "{}"},
    )


def test_accuracy_excludes_noncompliant_answers_and_counts_bad_predictions_wrong():
    answers = {
        ("animals", 0): "cat dog",
        ("animals", 1): "ant bee",
        ("animals", 2): "",
        ("animals", 3): "cow pig",
    }
    preds = {
        ("animals", 0, "first_word"): "cat",
        ("animals", 1, "first_word"): "I cannot say",
        ("animals", 2, "first_word"): "cat",
        ("animals", 3, "first_word"): "Cow!",
    }
    scored = sp.score(_fake_run("m", answers, preds))
    assert scored.object_compliant.values.tolist() == [True, True, False, True]
    assert scored.correct.values.tolist() == [True, False, False, True]
    cell = sp.accuracy(scored).isel(cell=0)
    assert int(cell.n) == 3 and float(cell.accuracy) == pytest.approx(2 / 3)
    assert float(cell.mode_baseline) == pytest.approx(1 / 3)  # three different first words
    assert float(cell.object_compliance) == 0.75 and float(
        cell.prediction_compliance
    ) == pytest.approx(1.0)  # "I" parses as a word


def test_self_vs_cross_and_the_matrix():
    n = 40
    answers = {("animals", i): f"{'ant' if i % 2 else 'cat'} dog" for i in range(n)}
    right = {("animals", i, "first_word"): a.split()[0] for (_, i), a in answers.items()}
    wrong = {k: "zebra" for k in right}
    m1, m2 = (
        _fake_run("m1", answers, right),
        _fake_run("m2", {("animals", i): "owl" for i in range(n)}, wrong),
    )
    r = sp.self_vs_cross(m1, m2)
    assert (
        r["self"] == 1.0
        and r["cross"] == 0.0
        and r["difference"] == 1.0
        and r["p"] < 0.001
        and r["n_items"] == n
    )
    same = sp.self_vs_cross(m1, m1)
    assert same["difference"] == 0.0 and same["p"] == 1.0
    matrix = sp.cross_matrix({"m1": m1, "m2": m2})
    assert float(matrix.accuracy.sel(predictor="m1", target="m1")) == 1.0
    assert float(matrix.accuracy.sel(predictor="m2", target="m1")) == 0.0
    assert float(matrix.mode_baseline.sel(target="m1")) == 0.5
    with pytest.raises(MechintroError, match="share no items"):
        sp.score(m1, _fake_run("m3", {("colours", 0): "red"}, {}))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    model = build_tiny("llama")
    config = self_prediction.Config(
        tasks=("colours", "wikipedia", "animals", "myopic_reward", "mmlu"),
        items=4,
        max_new_tokens=6,
        hypothetical_tokens=3,
        batch_size=8,
    )
    out = self_prediction.run(config, tmp_path_factory.mktemp("li") / "run.zarr", model=model)
    return model, config, out


def test_the_run_holds_every_answer_and_the_last_token_residuals(tiny_run):
    from mechintro import engine

    model, config, out = tiny_run
    ds = runs.open_run(out)
    trials = self_prediction.build_trials(config, model)
    n_object = sum(len(sp_shared.items(t, config.items)) for t in config.tasks)
    assert (
        ds.sizes["trial"] == len(trials)
        and (np.asarray(ds.condition.values) == "object").sum() == n_object
    )
    resid = sp_shared.load_hypothetical_resid(out)
    hyp = [i for i, t in enumerate(trials) if t.condition == "hypothetical"]
    assert resid.trial.values.tolist() == hyp and resid.sizes["layer"] == model.n_layers
    direct = engine.last_token_resid(model, [trials[hyp[5]].prompt.input_ids])[0].to(torch.float16)
    assert torch.allclose(
        torch.from_numpy(resid.isel(trial=5).values).float(), direct.float(), atol=2e-2, rtol=2e-3
    )
    # answers are greedy: the same prompt alone gives the same tokens
    alone = engine.generate(
        model, [trials[hyp[5]].prompt.input_ids], [None], max_new_tokens=3, temperature=0.0, seed=9
    )
    stored = ds.response_ids.values[hyp[5], :3]
    assert alone.generated[0].tolist() == stored.tolist()
    summary = self_prediction.summarize(ds)
    assert (
        set(summary.task.values.tolist()) <= set(config.tasks)
        and "test_mode_baseline" in summary.attrs
    )
    held_out = self_prediction.build_trials(
        dataclasses.replace(config, hypothetical_splits=("test",)), model
    )

    def objects(ts):  # Trial compares by identity (it may hold tensors)
        return [(t.prompt, t.labels, t.max_new_tokens) for t in ts if t.condition == "object"]

    assert objects(held_out) == objects(trials)
    assert {t.labels["split"] for t in held_out if t.condition == "hypothetical"} == {"test"}
    with pytest.raises(MechintroError, match="hypothetical_splits"):
        self_prediction.Config(hypothetical_splits=("dev",))


def test_the_residual_group_goes_through_the_stores_manifest_and_verify(tiny_run, tmp_path):
    """The hypothetical residuals are digested in the manifest when written; verify passes on the
    run, finds a changed or deleted group, and --repair deletes a damaged one, which running the
    same command writes again, identical."""
    import shutil

    import zarr

    model, config, out = tiny_run
    manifest = runs.read_manifest(out)
    assert set(manifest["groups"]) == {sp_shared.RESID_GROUP}
    assert set(manifest["groups"][sp_shared.RESID_GROUP]) == {"resid", "trial", "layer"}
    assert runs.verify(out).ok, runs.verify(out).problems
    copy = tmp_path / "copy.zarr"
    shutil.copytree(out, copy)
    original = sp_shared.load_hypothetical_resid(out).values
    arr = zarr.open_group(str(copy / sp_shared.RESID_GROUP), mode="r+")["resid"]
    arr[0, 0, 0] = arr[0, 0, 0] + 1  # one value changed
    report = runs.verify(copy)
    assert not report.ok and any(sp_shared.RESID_GROUP in p for p in report.problems)
    repaired = runs.verify(copy, repair=True)
    assert any("deleted" in p for p in repaired.problems)
    assert not (copy / sp_shared.RESID_GROUP).exists()
    self_prediction.run(config, copy, model=model)  # the same command writes it again
    assert np.array_equal(sp_shared.load_hypothetical_resid(copy).values, original)
    assert runs.verify(copy).ok
    shutil.rmtree(copy / sp_shared.RESID_GROUP)  # a missing group is a problem too
    assert any("missing" in p for p in runs.verify(copy).problems)
    runs.drop_group(copy, sp_shared.RESID_GROUP)  # what `scripts/looking_inward.py --ship` does
    assert runs.verify(copy).ok and "groups" in runs.read_manifest(copy)


def test_probe_finds_a_planted_property_and_not_noise(tiny_run, tmp_path):
    import shutil

    _, _, out = tiny_run
    ds = runs.open_run(out)
    scored = sp.score(ds)
    planted = tmp_path / "planted.zarr"
    shutil.copytree(out, planted)
    resid = sp_shared.load_hypothetical_resid(out).load()
    rng = np.random.default_rng(0)
    values = rng.normal(size=resid.shape).astype(np.float32)
    truth = {
        int(t): s == "true"
        for t, s in zip(scored.trial.values, sp._str(scored.target.values), strict=True)
    }
    direction = rng.normal(size=resid.shape[-1]).astype(np.float32)
    for k, t in enumerate(resid.trial.values):
        values[k] += 3.0 * (1 if truth.get(int(t)) else -1) * direction / np.linalg.norm(direction)
    shutil.rmtree(planted / sp_shared.RESID_GROUP)
    xr.Dataset({"resid": (resid.dims, values.astype(np.float16))}, coords=resid.coords).to_zarr(
        planted / sp_shared.RESID_GROUP, zarr_format=3, consolidated=False
    )
    result = sp.probe(
        ds,
        {"planted": planted, "recorded": out},
        properties=["starts_with_vowel"],
        depths=(0.5,),
        n_boot=200,
    )
    if int(result.n.sel(source="planted", property="starts_with_vowel")) == 0:
        pytest.skip("the tiny model's answers gave a single class")
    assert float(result.auc.sel(source="planted", property="starts_with_vowel", depth=0.5)) > 0.9
    assert float(result.lo.sel(source="planted", property="starts_with_vowel", depth=0.5)) > 0.7


def test_training_is_seeded_resumable_and_recorded(tiny_run, tmp_path):
    model, _, out = tiny_run
    behaviour = runs.open_run(out)
    examples = sp_shared.training_examples(behaviour, 12, seed=0)
    assert examples and all(p.startswith("Previously, you were asked") for p, _ in examples)
    assert {sp_shared.TASKS[t].split for t in ("colours", "wikipedia")} == {"train"}
    config = training.TrainConfig(examples=12, batch_size=3, checkpoint_every=2, learning_rate=1e-3)
    whole = training.finetune(model, examples, tmp_path / "whole", config, behaviour=behaviour)

    class Stop(Exception):
        pass

    def stop_at_3(step, total):
        if step == 3:
            raise Stop

    with pytest.raises(Stop):
        training.finetune(
            model, examples, tmp_path / "resumed", config, behaviour=behaviour, progress=stop_at_3
        )
    assert (tmp_path / "resumed.partial" / "checkpoint.pt").exists() and not (
        tmp_path / "resumed"
    ).exists()
    resumed = training.finetune(model, examples, tmp_path / "resumed", config, behaviour=behaviour)
    from safetensors.torch import load_file

    a, b = (
        load_file(whole / "adapter_model.safetensors"),
        load_file(resumed / "adapter_model.safetensors"),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    record = json.loads((whole / training.TRAINING_FILE).read_text())
    assert (
        record["base_weights_sha256"] == model.weights_sha256
        and record["steps"] == 4
        and len(record["losses"]) == 4
    )
    assert record["behaviour_model"] == behaviour.attrs["model"] and record[
        "examples_sha256"
    ] == training._digest(examples)
    other = training.finetune(
        model, examples, tmp_path / "seed1", training.TrainConfig(**{**config.__dict__, "seed": 1})
    )
    assert not torch.equal(
        load_file(other / "adapter_model.safetensors")[next(iter(a))], next(iter(a.values()))
    )
    with pytest.raises(MechintroError, match="not on"):
        training.apply_adapter(build_tiny("qwen2"), whole)


def test_training_teaches_the_answers(tiny_run, tmp_path):
    """A planted rule (every hypothetical answered "true") is learned: greedy answers follow it
    after training."""
    from mechintro import engine
    from mechintro.prompts import render_chat, tokenize

    model, _, out = tiny_run
    prompts = [p for p, _ in sp_shared.training_examples(runs.open_run(out), 24, seed=0)]
    adapter = training.finetune(
        model,
        [(p, "true") for p in prompts],
        tmp_path / "true",
        training.TrainConfig(examples=24, batch_size=4, epochs=3, learning_rate=3e-3),
    )
    trained = training.apply_adapter(model, adapter)
    assert trained.weights_sha256 != model.weights_sha256 and trained.hf is not model.hf

    def answers(m):
        ids = [
            tokenize(
                m.tokenizer, render_chat(m.tokenizer, [{"role": "user", "content": p}])
            ).input_ids
            for p in prompts[:6]
        ]
        gen = engine.generate(
            m, ids, [None] * len(ids), max_new_tokens=4, temperature=0.0, seed=0
        ).generated
        return [
            m.tokenizer.decode([t for t in row if t >= 0], skip_special_tokens=True).replace(
                " ", ""
            )
            for row in gen.tolist()
        ]

    assert sum(a.startswith("true") for a in answers(trained)) >= 5
    assert sum(a.startswith("true") for a in answers(model)) <= 1


def test_the_analysis_script_draws_every_figure_from_a_pipeline_root(tmp_path):
    """scripts/looking_inward.py's layout, built with two tiny models; analyses/looking_inward.py
    reads it."""
    import subprocess
    import sys
    from pathlib import Path

    root = tmp_path / "root"
    models = {"tiny-a": build_tiny("llama"), "tiny-b": build_tiny("qwen2", seed=1)}
    for name, m in models.items():
        object.__setattr__(m, "name", name)
    config = self_prediction.Config(
        tasks=("colours", "animals", "mmlu", "arc"),
        items=3,
        max_new_tokens=5,
        hypothetical_tokens=3,
        batch_size=32,
    )
    small = training.TrainConfig(examples=16, batch_size=8)

    def train(m, behaviour, out, cfg=small):
        ds = runs.open_run(behaviour)
        training.finetune(m, sp_shared.training_examples(ds, cfg.examples), out, cfg, behaviour=ds)

    for name, m in models.items():
        self_prediction.run(config, root / name / "base.zarr", model=m)
        train(m, root / name / "base.zarr", root / name / "self-adapter")
        self_prediction.run(
            dataclasses.replace(config, adapter=str(root / name / "self-adapter")),
            root / name / "self.zarr",
            model=m,
        )
    for m1, m2 in (("tiny-a", "tiny-b"), ("tiny-b", "tiny-a")):
        folder = root / m2 / f"cross-on-{m1}"
        train(models[m2], root / m1 / "self.zarr", folder / "adapter")
        self_prediction.run(
            dataclasses.replace(config, adapter=str(folder / "adapter")),
            folder / "run.zarr",
            model=models[m2],
        )
    scaling = root / "tiny-a" / "cross-on-tiny-b" / "scaling-8"
    train(
        models["tiny-a"],
        root / "tiny-b" / "self.zarr",
        scaling / "adapter",
        dataclasses.replace(small, examples=8),
    )
    self_prediction.run(
        dataclasses.replace(config, adapter=str(scaling / "adapter")),
        scaling / "run.zarr",
        model=models["tiny-a"],
    )
    script = Path(__file__).resolve().parents[2] / "analyses" / "looking_inward.py"
    done = subprocess.run(
        [sys.executable, str(script), "--root", str(root), "--out", str(tmp_path / "fig")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    drawn = sorted(p.name for p in (tmp_path / "fig").glob("*.png"))
    assert drawn == [
        "cross_training_scaling.png",
        "self_cross_matrix_untrained.png",
        "self_prediction_accuracy.png",
        "self_prediction_probe_tiny-a.png",
        "self_prediction_probe_tiny-b.png",
        "self_vs_cross.png",
    ], drawn
    assert "after training: M1 predicting itself vs M2" in done.stdout


def _sampled(objects: list[str], predictions: list[str], prop: str = "first_word") -> xr.Dataset:
    """A hand-made calibration run: one animals prompt, its sampled answers and predictions."""
    n_o, n_p = len(objects), len(predictions)
    cond = ["object"] * n_o + ["hypothetical"] * n_p
    return xr.Dataset(
        {
            "condition": ("trial", cond),
            "task": ("trial", ["animals"] * (n_o + n_p)),
            "item_prompt": ("trial", ["p"] * (n_o + n_p)),
            "response": ("trial", objects + predictions),
            "matching": ("trial", [""] * (n_o + n_p)),
            "property": ("trial", [""] * n_o + [prop] * n_p),
            "item": ("trial", [0] * (n_o + n_p)),
        },
        attrs={
            "experiment": "self-prediction",
            "model": "m",
            "config": json.dumps({"samples": max(n_o, n_p)}),
        },
    )


def test_calibration_is_the_mean_absolute_deviation_of_the_two_distributions():
    # object: cat, cat, dog (and one answer without a word: left out);
    # predicted: cat, cat, dog, non-compliant
    ds = _sampled(["cat x", "cat y", "dog z", "!!"], ["cat", "cat", "dog", ""])
    result = sp.calibration(ds)
    assert (
        result.attrs["n"] == 1 and int(result.n_object[0]) == 3 and int(result.n_predicted[0]) == 4
    )
    # the behaviour's values cat, dog: (|2/3 - 1/2| + |1/3 - 1/4|) / 2
    assert float(result.mad[0]) == pytest.approx(100 * (1 / 6 + 1 / 12) / 2)
    # only the top values count: a fourth value of the behaviour is left out
    spread = _sampled(["a x", "a y", "b z", "c w", "d v", "a u"], ["a", "a", "a", "b", "c", "d"])
    assert float(sp.calibration(spread).mad[0]) == pytest.approx(100 * (0 + 0 + 0) / 3)
    shifted = _sampled(["a x", "a y", "b z", "c w", "d v", "a u"], ["a", "a", "b", "b", "c", "d"])
    assert float(sp.calibration(shifted).mad[0]) == pytest.approx(100 * (1 / 6 + 1 / 6 + 0) / 3)
    assert float(sp.calibration(shifted, top=1).mad[0]) == pytest.approx(100 / 6)
    assert float(sp.calibration(_sampled(["cat"] * 4, ["cat"] * 4)).mad[0]) == 0.0
    assert float(sp.calibration(_sampled(["cat"] * 4, ["dog"] * 4)).mad[0]) == 100.0
    assert result.attrs["no_match"] == pytest.approx(100 * (2 / 3 + 1 / 3) / 2)
    with pytest.raises(MechintroError, match="calibration run"):
        sp.score(ds)
    with pytest.raises(MechintroError, match="no prompt with a compliant"):
        sp.calibration(_sampled(["!!"] * 2, ["cat"] * 2))


def test_a_calibration_run_samples_each_prompt(tmp_path):
    model = build_tiny("llama")
    with pytest.raises(MechintroError, match="set temperature"):
        self_prediction.Config(samples=3)
    with pytest.raises(MechintroError, match="unknown propert"):
        self_prediction.Config(properties=("fourth_word",))
    config = self_prediction.Config(
        tasks=("animals",),
        properties=("second_character",),
        items=3,
        samples=4,
        temperature=1.0,
        max_new_tokens=4,
        hypothetical_tokens=2,
        batch_size=8,
        record_resid=False,
    )
    ds = runs.open_run(self_prediction.run(config, tmp_path / "cal.zarr", model=model))
    cond = sp._str(ds.condition.values)
    assert (cond == "object").sum() == 12 and (cond == "hypothetical").sum() == 12
    assert set(sp._str(ds.property.values)[cond == "hypothetical"]) == {"second_character"}
    assert np.asarray(ds["sample"].values).tolist() == [0, 1, 2, 3] * 6
    first = sp._str(ds.response.values)[:4]
    assert len(set(first.tolist())) > 1  # sampled, not one greedy answer four times
    result = sp.calibration(ds)
    assert result.attrs["n"] <= 3 and 0 <= result.attrs["mad"] <= 100
    with pytest.raises(MechintroError, match="calibration run"):
        sp_shared.training_examples(ds, 5)


def _answers(rows: list[tuple[str, int, str, str]]) -> xr.Dataset:
    """A hand-made one-answer run on the animals task: rows of (condition, item, response,
    property)."""
    n = len(rows)
    return xr.Dataset(
        {
            "condition": ("trial", [r[0] for r in rows]),
            "task": ("trial", ["animals"] * n),
            "item_prompt": ("trial", [f"p{r[1]}" for r in rows]),
            "response": ("trial", [r[2] for r in rows]),
            "matching": ("trial", [""] * n),
            "property": ("trial", [r[3] for r in rows]),
            "item": ("trial", [r[1] for r in rows]),
        },
        attrs={"experiment": "self-prediction", "model": "m", "config": "{}"},
    )


def test_behaviour_change_scores_the_same_predictions_against_new_and_old_answers():
    predictions = [("hypothetical", i, "cat", "first_word") for i in range(4)]
    changed = _answers([("object", i, "cat now", "") for i in range(4)] + predictions)
    old = _answers([("object", i, w, "") for i, w in enumerate(["dog", "dog", "cat", "emu"])])
    r = sp.behaviour_change(changed, old)
    assert (r["new"], r["old"], r["n_pairs"]) == (1.0, 0.25, 4)
    assert r["difference"] == pytest.approx(0.75) and r["changed_answers"] == pytest.approx(0.75)
    assert "control_difference" not in r  # the old run has no predictions to compare
    same = sp.behaviour_change(changed, changed)
    assert same["difference"] == 0 and same["changed_answers"] == 0
    # control: the old model predicted "dog" everywhere; against the new answers ("cat") it scores 0
    old_predicting = _answers(
        [("object", i, w, "") for i, w in enumerate(["dog", "dog", "cat", "emu"])]
        + [("hypothetical", i, "dog", "first_word") for i in range(4)]
    )
    c = sp.behaviour_change(changed, old_predicting)
    assert (c["control_a"], c["control_b"], c["control_difference"]) == (1.0, 0.0, 1.0)


def test_a_model_changed_after_self_training_is_two_adapters_in_order(tiny_run, tmp_path):
    model, _, out = tiny_run
    behaviour = runs.open_run(out)
    config = training.TrainConfig(examples=6, batch_size=3, learning_rate=1e-3)
    first = training.finetune(
        model,
        sp_shared.training_examples(behaviour, 6),
        tmp_path / "self",
        config,
        behaviour=behaviour,
    )
    examples = sp_shared.object_examples(behaviour, 6)
    assert examples and all(not p.startswith("Previously") for p, _ in examples)
    assert {sp_shared.TASKS[t].split for t in ("animals",)} == {
        "test"
    } and sp_shared.object_examples(behaviour, 100, split="test")
    second = training.finetune(
        training.apply_adapter(model, first),
        examples,
        tmp_path / "changed",
        config,
        behaviour=behaviour,
    )
    with pytest.raises(MechintroError, match="was trained on"):
        training.apply_adapter(model, second)  # it belongs on top of the first
    cfg = self_prediction.Config(
        tasks=("animals",),
        items=2,
        max_new_tokens=4,
        hypothetical_tokens=2,
        record_resid=False,
        adapter=f"{first},{second}",
    )
    ds = runs.open_run(self_prediction.run(cfg, tmp_path / "changed.zarr", model=model))
    assert (
        json.loads(ds.attrs["config"])["adapter"] == f"{first},{second}" and ds.sizes["trial"] > 0
    )


def test_study_lists_the_comparisons_of_the_finished_runs(tmp_path):
    def run(*parts):
        path = tmp_path.joinpath(*parts)
        path.mkdir(parents=True)
        (path / "zarr.json").write_text("{}")
        return path

    for m in ("a", "b"):
        run(m, "base.zarr")
        run(m, "self.zarr")
    run("b", "cross-on-a", "run.zarr")
    (tmp_path / "a" / "cross-on-b" / "run.zarr").mkdir(parents=True)  # unfinished: no zarr.json
    run("a", "changed-by-b", "run.zarr")
    run("a", "calibration", "base.zarr")
    s = sp.study(tmp_path)
    assert s["models"] == [("a",), ("b",)]
    assert s["self_vs_cross"] == [
        ("a", "b", tmp_path / "a" / "self.zarr", tmp_path / "b" / "cross-on-a" / "run.zarr")
    ]
    assert s["behaviour_change"] == [
        ("a", "b", tmp_path / "a" / "changed-by-b" / "run.zarr", tmp_path / "a" / "self.zarr")
    ]
    assert [c[1] for c in s["calibration"]] == ["itself, untrained"]
    assert sp.study(tmp_path / "nothing")["models"] == []
