"""Untrusted files cannot run code; weights load only from verified files or safetensors."""

from __future__ import annotations

import inspect
import json
import pickle
import re
from pathlib import Path

import pytest

from mechintro import models
from mechintro.errors import MechintroError
from mechintro.runs import open_run
from mechintro.vectors import load_vectors

ROOT = Path(__file__).resolve().parents[2]


class _Payload:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _pickle_store(path: Path, marker: Path) -> Path:
    """A zarr v2 store whose one object array is pickled, with mechintro-looking attributes."""
    path.mkdir()
    (path / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    attrs = {
        "schema_version": "1",
        "mode": "logits",
        "model": "x",
        "weights_sha256": "x",
        "mechintro_version": "x",
        "git_commit": "x",
        "config": "{}",
        "package_versions": "{}",
        "batch_size": "1",
        "method": "lindsey",
    }
    (path / ".zattrs").write_text(json.dumps(attrs))
    for name in ("concept_vectors", "committed"):
        (path / name).mkdir()
        (path / name / ".zarray").write_text(
            json.dumps(
                {
                    "zarr_format": 2,
                    "shape": [1],
                    "chunks": [1],
                    "dtype": "|O",
                    "compressor": None,
                    "fill_value": None,
                    "order": "C",
                    "filters": [{"id": "pickle", "protocol": 5}],
                }
            )
        )
        (path / name / ".zattrs").write_text(json.dumps({"_ARRAY_DIMENSIONS": ["trial"]}))
        (path / name / "0").write_bytes(pickle.dumps([_Payload(marker)]))
    return path


def test_opening_a_pickle_store_runs_no_code(tmp_path):
    # zarr 3.1.6 itself refuses v2 object arrays with a pickle codec; mechintro also opens only
    # zarr v3 stores. This guards both, should either change.
    marker = tmp_path / "pwned"
    store = _pickle_store(tmp_path / "evil.zarr", marker)
    with pytest.raises(MechintroError):
        open_run(store)
    with pytest.raises(MechintroError):
        load_vectors(store)
    assert not marker.exists()


def test_no_unsafe_deserialisation_in_the_library():
    source = "\n".join(p.read_text() for p in (ROOT / "mechintro").rglob("*.py"))
    assert not re.search(
        r"\bpickle\.loads?\(|\bcloudpickle\b|\bdill\b|(?<![.\w])(eval|exec)\(", source
    )
    for call in re.findall(r"torch\.load\([^)]*\)", source):
        assert "weights_only=True" in call, call


def test_remote_code_is_off_unless_asked_and_weights_are_safetensors():
    assert inspect.signature(models.load_model).parameters["trust_remote_code"].default is False
    source = inspect.getsource(models._load_pretrained) + inspect.getsource(models._load_offline)
    assert source.count("use_safetensors=True") == 2
