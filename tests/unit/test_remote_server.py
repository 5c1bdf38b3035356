"""End to end through nnsight's own ``RemoteBackend``: real ``remote=`` traces go over HTTP and a
websocket to an NDIF-protocol server on 127.0.0.1 (``tests/ndif_server.py``, a separate process
that cannot import mechintro while it runs a request), and must give bitwise the numbers of the
same model run here. What this does not cover: NDIF's GPUs, queueing, auth and model deployment;
and nnsight's call to huggingface.co that canonicalises a model key's repo id is replaced by
``local_model_keys`` (a directory is its own id)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import xarray as xr

from mechintro import engine, runs
from mechintro.errors import MechintroError
from mechintro.models import load_model

from ..conftest import build_tiny, local_model_keys

ROOT = Path(__file__).resolve().parents[2]
VOLATILE = {
    "created",
    "finished",
    "wall_seconds",
    "mechintro_version",
    "hostname",
    "weights_sha256",
    "model_load_seconds",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(url, model directory): the server serves a saved tiny llama; results over 4 kB are
    downloaded."""
    import httpx

    root = tmp_path_factory.mktemp("ndif")
    tiny = build_tiny("llama")
    tiny.hf.save_pretrained(root / "tiny", safe_serialization=True)
    tiny.tokenizer.save_pretrained(root / "tiny")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(root / "server.log", "w")
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests" / "ndif_server.py"),
            "--port",
            str(port),
            "--model",
            str(root / "tiny"),
            "--inline-limit",
            "4000",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                assert httpx.get(url + "/ping").json() == {"models": [str(root / "tiny")]}
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "the test server did not start: "
                        + (root / "server.log").read_text()[-2000:]
                    ) from None
                time.sleep(0.2)
        yield url, root / "tiny"
    finally:
        process.terminate()
        process.wait(30)
        log.close()


@pytest.fixture
def remote(server, monkeypatch):
    """The served model as a client sees it: weights on the meta device, traces sent to the
    server."""
    local_model_keys(monkeypatch)
    url, directory = server
    return load_model(str(directory), remote=url), load_model(str(directory))


def _batch(d_model):
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(5, 100, (20,), generator=g).tolist() for _ in range(2)] + [
        torch.randint(5, 100, (14,), generator=g).tolist()
    ]
    vec = torch.randn(d_model, generator=g)
    injections = [
        engine.Injection(
            vector=vec, layers=(1,), mask=(False,) * 10 + (True,) * 10, generated=True
        ),
        None,
        engine.Injection(vector=-vec, layers=(0, 2), mask=(True,) * 14),
    ]
    return prompts, injections, vec


def test_every_library_trace_gives_the_local_numbers(remote):
    served, local = remote
    assert served.hf.device.type == "meta" and served.device.type == "cpu"
    prompts, injections, vec = _batch(local.d_model)
    a = engine.forward(
        local, prompts, injections, answer_ids=[10, 11], record=True, ablate={2: vec}
    )
    b = engine.forward(
        served, prompts, injections, answer_ids=[10, 11], record=True, ablate={2: vec}
    )  # 20 kB: downloaded
    assert torch.equal(a.answer_logprobs, b.answer_logprobs) and torch.equal(a.resid, b.resid)
    # Sampling happens on the server: the seed has to travel inside the trace for the tokens to
    # match.
    a = engine.generate(
        local, prompts, injections, max_new_tokens=6, temperature=1.0, seed=3, record=True
    )
    b = engine.generate(
        served, prompts, injections, max_new_tokens=6, temperature=1.0, seed=3, record=True
    )
    assert torch.equal(a.generated, b.generated) and torch.equal(a.resid, b.resid)
    assert torch.equal(
        engine.last_token_resid(local, prompts[:1]), engine.last_token_resid(served, prompts[:1])
    )  # inline


def test_cli_remote_runs_equal_local_runs(server, monkeypatch, tmp_path, capsys):
    from mechintro.cli import main

    local_model_keys(monkeypatch)
    url, directory = server
    for name, extra in [
        ("detection-logits", ["--strengths", "1,4"]),
        (
            "injected-thoughts",
            [
                "--strengths",
                "2",
                "--trials",
                "2",
                "--set",
                "max_new_tokens=5",
                "--set",
                "controls=1",
            ],
        ),
    ]:
        common = [
            "-q",
            "run",
            name,
            "--model",
            str(directory),
            "--concepts",
            "Dust,Oceans,Bread",
            "--layers",
            "1,2",
            *extra,
        ]
        assert main([*common, "--out", str(tmp_path / f"{name}-local.zarr")]) == 0
        assert (
            main([*common, "--remote", url, "--out", str(tmp_path / f"{name}-remote.zarr")]) == 0
        ), capsys.readouterr().err
        a, b = (
            runs.open_run(tmp_path / f"{name}-{where}.zarr").load() for where in ("local", "remote")
        )
        assert a.sizes["trial"] == b.sizes["trial"] > 0
        # The local run reuses the shared prefix's cache: equal up to float rounding (so are the
        # digests of the outputs).
        for var in set(a.data_vars) - {"digest"}:
            if a[var].dtype.kind == "f":
                xr.testing.assert_allclose(
                    a[var],
                    b[var],
                    rtol=2e-3 if var == "resid" else 0,
                    atol=1e-3 if var == "resid" else 1e-5,
                )  # fp16: 1 ulp
            else:
                assert a[var].equals(b[var]), (
                    f"{name}: {var} differs between the local and the remote run"
                )
        assert b.attrs["weights_sha256"].endswith("@remote")


def test_non_blocking_submit_then_poll(remote):
    """nnsight's other waiting mode: POST without a websocket, then GET /response/{id} until
    COMPLETED."""
    import nnsight
    from nnsight.intervention.backends.remote import RemoteBackend

    served, local = remote
    ids = {
        "input_ids": torch.tensor([[5, 6, 7, 8, 9]]),
        "attention_mask": torch.ones(1, 5, dtype=torch.long),
    }
    lm = served.lm  # the block may name only what the server can unpickle: no mechintro objects
    backend = RemoteBackend(lm.to_model_key(), host=served.remote, blocking=False)
    with lm.trace(ids, backend=backend):
        logits = nnsight.save(lm.output.logits)
    assert backend.job_id is not None
    deadline = time.monotonic() + 60
    result = None
    while result is None and time.monotonic() < deadline:
        result = backend()
        time.sleep(0.05)
    logits = result["logits"]
    with torch.no_grad():
        assert torch.equal(logits, local.hf(**ids).logits)


def test_server_side_failures_come_back_as_one_line(server, monkeypatch, tmp_path):
    local_model_keys(monkeypatch)
    url, _ = server
    other = tmp_path / "other"
    build_tiny("llama").hf.save_pretrained(other, safe_serialization=True)
    build_tiny("llama").tokenizer.save_pretrained(other)
    with pytest.raises(
        MechintroError,
        match=(
            r"the remote job failed on http://127\.0\.0\.1:\d+: LookupError: model .* is not "
            r"served here"
        ),
    ):
        engine.last_token_resid(load_model(str(other), remote=url), [[5, 6, 7]])


def test_the_server_really_lacks_mechintro(remote):
    """A trace that needs mechintro fails on the server — so the passing traces above do not."""
    import nnsight

    from mechintro import arch

    served, _ = remote
    lm = served.lm
    ids = {
        "input_ids": torch.tensor([[5, 6, 7]]),
        "attention_mask": torch.ones(1, 3, dtype=torch.long),
    }
    with (
        pytest.raises(MechintroError, match="No module named 'mechintro"),
        engine._remote_errors(served),
        lm.trace(ids, remote=served.remote),
    ):
        nnsight.save(arch.text_config(lm.config).hidden_size)
