"""Property-based tests: valid specs, configs and datasets round-trip; invalid ones are refused
with a MechintroError (never another exception)."""

from __future__ import annotations

import dataclasses
import json
import string

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mechintro import engine, runs
from mechintro.errors import MechintroError
from mechintro.experiments.detection_logits import DetectionLogitsConfig
from mechintro.prompts import Window, render_chat, tokenize
from mechintro.vectors import resolve_layers

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
TEXT = st.text(alphabet=string.ascii_letters + string.digits + " .,!?\n", min_size=1, max_size=80)


@SETTINGS
@given(data=st.data(), content=TEXT)
def test_marker_windows_cover_the_marker(tiny, data, content):
    text = render_chat(tiny.tokenizer, [{"role": "user", "content": content}])
    prompt = tokenize(tiny.tokenizer, text)
    start = data.draw(st.integers(0, len(text) - 1))
    end = data.draw(st.integers(start + 1, len(text)))
    marker = text[start:end]
    first = text.find(marker)
    mask = Window.from_marker(marker).resolve(prompt)
    assert len(mask) == len(prompt)
    on = [i for i, m in enumerate(mask) if m]
    assert on == list(range(on[0], len(prompt)))  # contiguous to the end of the prompt
    a, b = prompt.offsets[on[0]]
    assert a <= first < b or (a == first)
    span = Window.span(marker).resolve(prompt)
    covered = "".join(text[a:b] for (a, b), m in zip(prompt.offsets, span, strict=True) if m)
    assert marker in covered


@SETTINGS
@given(content=TEXT, marker=st.text(alphabet="#@~", min_size=1, max_size=5))
def test_absent_marker_is_refused(tiny, content, marker):
    prompt = tokenize(
        tiny.tokenizer, render_chat(tiny.tokenizer, [{"role": "user", "content": content}])
    )
    with pytest.raises(MechintroError, match="does not occur"):
        Window.from_marker(marker).resolve(prompt)


numbers = st.floats(min_value=-100, max_value=100, allow_nan=False) | st.integers(-100, 100)
valid_configs = st.builds(
    DetectionLogitsConfig,
    concepts=st.lists(
        st.sampled_from(["Dust", "Oceans", "Poetry", "Bread", "Silver"]),
        min_size=1,
        max_size=5,
        unique=True,
    ).map(tuple),
    layers=st.lists(st.sampled_from(["0", "1", "2", "0.5", "-1"]), min_size=1, max_size=3).map(
        tuple
    ),
    strengths=st.lists(numbers, min_size=1, max_size=4, unique_by=float).map(
        tuple
    ),  # duplicates are refused
    strength_unit=st.sampled_from(["raw", "resid_norm"]),
    seed=st.integers(0, 2**31),
    batch_size=st.integers(1, 64),
    record_resid=st.booleans(),
)


@SETTINGS
@given(config=valid_configs)
def test_valid_configs_round_trip_through_json(config):
    stored = json.loads(json.dumps(dataclasses.asdict(config)))
    back = DetectionLogitsConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()}
    )
    assert back == config


junk = (
    st.none()
    | st.booleans()
    | st.text(max_size=5)
    | st.floats(allow_nan=True)
    | st.lists(st.integers(), max_size=2)
    | st.integers()
)


@SETTINGS
@given(
    field=st.sampled_from(
        [
            "concepts",
            "layers",
            "strengths",
            "strength_unit",
            "trials",
            "seed",
            "batch_size",
            "record_resid",
            "question",
            "model",
        ]
    ),
    value=junk,
)
def test_invalid_config_values_get_mechintro_errors(field, value):
    try:
        DetectionLogitsConfig(**{field: value})
    except MechintroError as exc:
        assert "\n" not in str(exc)


@SETTINGS
@given(
    specs=st.lists(
        st.integers(-40, 40) | st.floats(-2, 2, allow_nan=False) | st.text(max_size=4),
        min_size=0,
        max_size=4,
    ),
    n=st.integers(1, 40),
)
def test_resolve_layers_valid_or_mechintro_error(specs, n):
    try:
        layers = resolve_layers(specs, n)
    except MechintroError:
        return
    assert all(0 <= layer < n for layer in layers) and len(set(layers)) == len(layers)


@pytest.mark.parametrize("spec", ["\n", "1\n2", "\t\n"])
def test_a_layer_with_a_line_break_gets_a_one_line_error(spec):
    """Found by the property above: the message quoted the layer raw, so a line break in it made
    a two-line message (which MechintroError refuses); it is quoted with repr now."""
    with pytest.raises(MechintroError, match="is not a number") as info:
        resolve_layers([spec], 4)
    assert "\n" not in str(info.value)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    mask_bits=st.lists(st.booleans(), min_size=1),
    layers=st.sets(st.integers(0, 2), min_size=1),
    seed=st.integers(0, 1000),
)
def test_zero_strength_injection_is_bitwise_baseline(tiny, mask_bits, layers, seed):
    prompt = tokenize(
        tiny.tokenizer,
        render_chat(tiny.tokenizer, [{"role": "user", "content": "Do you detect it?"}]),
    )
    mask = tuple((mask_bits * len(prompt))[: len(prompt)])
    vec = torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(seed)) * 0.0
    inj = engine.Injection(vector=vec, layers=tuple(sorted(layers)), mask=mask)
    a = engine.forward(tiny, [prompt.input_ids], [None], answer_ids=[4, 5], record=True)
    b = engine.forward(tiny, [prompt.input_ids], [inj], answer_ids=[4, 5], record=True)
    assert torch.equal(a.answer_logprobs, b.answer_logprobs) and torch.equal(a.resid, b.resid)


@pytest.fixture(scope="module")
def valid_run(tiny, tmp_path_factory):
    from mechintro.experiments import detection_logits as D
    from mechintro.vectors import concept_vectors

    vectors = concept_vectors(tiny, ["Dust"], baseline=["Sand"])
    out = D.run(
        D.Config(model="tiny", concepts=("Dust",), layers=("1",), strengths=(1.0,)),
        tmp_path_factory.mktemp("v") / "r.zarr",
        model=tiny,
        vectors=vectors,
    )
    return runs.open_run(out).load()


@SETTINGS
@given(
    drop=st.sampled_from(
        [
            "input_ids",
            "attention_mask",
            "inject_mask",
            "injected_vector",
            "answer_logprobs",
            "committed",
            "nonfinite",
            "digest",
            "concept",
            "condition",
            "strength",
            "inject_layer",
            "inject_layer_end",
            "answer_label",
        ]
    )
)
def test_schema_refuses_any_missing_variable(valid_run, drop):
    runs.validate(valid_run, where="ok")
    with pytest.raises(MechintroError, match="not a valid mechintro run"):
        runs.validate(valid_run.drop_vars(drop), where="broken")


@SETTINGS
@given(
    attr=st.sampled_from(list(runs.REQUIRED_ATTRS)),
    value=st.none() | st.just("9") | st.just("not json {"),
)
def test_schema_refuses_missing_or_bad_attributes(valid_run, attr, value):
    ds = valid_run.copy()
    if value is None:
        del ds.attrs[attr]
    else:
        ds.attrs[attr] = value
        if attr not in ("schema_version", "mode", "config", "batch_size") or (
            attr == "batch_size" and value == "9"
        ):
            runs.validate(ds)  # free-text provenance may hold anything
            return
    with pytest.raises(MechintroError):
        runs.validate(ds)


@SETTINGS
@given(var=st.sampled_from(["input_ids", "answer_logprobs", "resid"]))
def test_schema_refuses_wrong_dims(valid_run, var):
    ds = valid_run.copy()
    ds[var] = (
        ds[var].rename({ds[var].dims[-1]: "oops"}) if var != "resid" else ds[var].astype(np.float32)
    )
    with pytest.raises(MechintroError):
        runs.validate(ds)
