"""The store's residual codec (plain zstd, chosen by ``benchmarks/resid_storage.py``) finds
trials of a chunk that repeat one another — what every position before an injection is in a
protocol whose trials share one prompt — where Blosc's zstd, compressing blocks too small to see
the repeat, saved ~7 %."""

from __future__ import annotations

import numpy as np
import zarr

from mechintro import runs


def _stored_bytes(path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and f.name != "zarr.json")


def test_repeated_trials_in_a_chunk_compress(tmp_path):
    rng = np.random.default_rng(0)
    one = rng.standard_normal((1, 1, 150, 1024)).astype(np.float16)  # 300 KB: one trial, layer
    batch = np.repeat(one, 8, axis=0)  # 8 trials that are the same there
    array = zarr.create_array(
        str(tmp_path / "a.zarr"), shape=batch.shape, dtype=np.float16, chunks=batch.shape,
        compressors=(runs._COMPRESSOR,), fill_value=0,
    )  # fmt: skip
    array[:] = batch
    assert _stored_bytes(tmp_path / "a.zarr") < batch.nbytes / 5
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "a.zarr"), mode="r")[:], batch)


def test_noise_does_not_grow(tmp_path):
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((8, 1, 150, 1024)).astype(np.float16)
    array = zarr.create_array(
        str(tmp_path / "n.zarr"), shape=noise.shape, dtype=np.float16, chunks=noise.shape,
        compressors=(runs._COMPRESSOR,), fill_value=0,
    )  # fmt: skip
    array[:] = noise
    assert _stored_bytes(tmp_path / "n.zarr") < 1.01 * noise.nbytes
