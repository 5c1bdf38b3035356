"""How to store residual streams: codec and chunk shape, measured on real SmolLM2 residuals.

Two measurements, printed as JSON lines (``docs/performance.md``, "Research scale", quotes them).
Every line carries the machine's 1-minute load average when it was taken (the machine is
shared: compare rows of one run, not runs).

1. ``codecs``: the float16 residual streams of ``--trials`` trials of two real runs (every
   layer, every prompt position; see :func:`residuals`) through each candidate codec — zstd at
   several levels, lz4, Blosc (zstd / lz4 / lz4hc / blosclz, byte or bit shuffle), zlib — as
   chunks of the store's shape (a batch of trials, one layer). Ratio, and encode and decode
   MB/s of raw data, one thread, best of ``--repeats``.
2. ``chunks``: the detection-logits residuals written into a zarr array with the store's codec
   under each candidate chunk shape, batch by batch as the runner writes them; then the two
   common reads — one layer across every trial (a probe, a lens), one trial across every layer
   (a transcript's residuals) — timed from a cold array object, best of ``--repeats``. Files
   per batch too.

    python benchmarks/resid_storage.py --parts codecs,chunks
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def residuals(protocol: str, n: int) -> np.ndarray:
    """float16 ``(trial, layer, pos, d_model)``: what a real SmolLM2 run stores, through the
    experiment's ``run`` and read back (the first ``n`` trials). ``detection-logits``: 8
    concepts injected at half depth at 4 strengths, with its control trials — one prompt, so
    every position before the injection and every layer before half depth repeat across trials,
    as in every run of the protocol. ``intentional-control``: 8 words x think / don't think, a
    different prompt per trial (left-padded to the longest)."""
    import mechintro as mi
    from mechintro import runs
    from mechintro.experiments import detection_logits, intentional_control

    model = mi.load_model("smollm2-135m", progress=False)
    concepts = ("Dust", "Oceans", "Trees", "Bread", "Silver", "Music", "Fire", "Clocks")
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        if protocol == "detection-logits":
            vectors = mi.concept_vectors(model, list(concepts), progress=False)
            config = detection_logits.Config(concepts=concepts, layers=("0.5",), record_resid=True,
                                             strengths=(1.0, 2.0, 4.0, 8.0))  # fmt: skip
            detection_logits.run(config, Path(tmp) / "r.zarr", model=model, vectors=vectors,
                                 progress=False)  # fmt: skip
        else:
            config = intentional_control.Config(concepts=concepts, pairs=n // 2,
                                                instructions=("think", "dont_think"))  # fmt: skip
            intentional_control.run(config, Path(tmp) / "r.zarr", model=model, progress=False)
        resid = runs.open_run(Path(tmp) / "r.zarr")["resid"]
        if resid.sizes["trial"] < n:
            raise SystemExit(f"the run has {resid.sizes['trial']} trials; ask for at most that")
        return np.ascontiguousarray(resid.isel(trial=slice(0, n)).values)


def codecs(data: np.ndarray, batch: int, repeats: int, label: str) -> list[dict]:
    import numcodecs
    from numcodecs import LZ4, Blosc, Zlib, Zstd

    numcodecs.blosc.set_nthreads(1)
    candidates = {
        "zstd 1": Zstd(1),
        "zstd 3 (the store's)": Zstd(3),
        "zstd 9": Zstd(9),
        "zstd 6": Zstd(6),
        "lz4": LZ4(1),
        "zlib 1": Zlib(1),
        "blosc zstd 1 shuffle": Blosc("zstd", 1, Blosc.SHUFFLE),
        "blosc zstd 3 shuffle (the store's until now)": Blosc("zstd", 3, Blosc.SHUFFLE),
        "blosc zstd 3 bitshuffle": Blosc("zstd", 3, Blosc.BITSHUFFLE),
        "blosc zstd 3 noshuffle": Blosc("zstd", 3, Blosc.NOSHUFFLE),
        "blosc lz4 5 shuffle": Blosc("lz4", 5, Blosc.SHUFFLE),
        "blosc lz4 5 bitshuffle": Blosc("lz4", 5, Blosc.BITSHUFFLE),
        "blosc lz4hc 5 shuffle": Blosc("lz4hc", 5, Blosc.SHUFFLE),
        "blosc blosclz 5 shuffle": Blosc("blosclz", 5, Blosc.SHUFFLE),
    }
    # the store's chunks: a batch of trials, one layer
    chunks = [
        np.ascontiguousarray(data[t : t + batch, layer]).tobytes()
        for t in range(0, len(data), batch)
        for layer in range(data.shape[1])
    ]
    raw = sum(len(c) for c in chunks)
    rows = []
    for name, codec in candidates.items():
        enc_t = dec_t = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            encoded = [codec.encode(c) for c in chunks]
            t1 = time.perf_counter()
            decoded = [codec.decode(e) for e in encoded]
            t2 = time.perf_counter()
            enc_t, dec_t = min(enc_t, t1 - t0), min(dec_t, t2 - t1)
        assert all(bytes(d) == c for d, c in zip(decoded, chunks, strict=True))
        row = {
            "part": "codecs",
            "residuals": label,
            "codec": name,
            "ratio": round(raw / sum(len(e) for e in encoded), 3),
            "encode_MB_s": round(raw / 1e6 / enc_t, 1),
            "decode_MB_s": round(raw / 1e6 / dec_t, 1),
            "raw_MB": round(raw / 1e6, 1),
            "load_1min": _load(),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def chunks(data: np.ndarray, batch: int, repeats: int) -> list[dict]:
    import zarr

    from mechintro.runs import _COMPRESSOR

    n, n_layers, n_pos, d = data.shape
    shapes = {
        "batch x 1 layer (the store's)": (batch, 1, n_pos, d),
        "1 trial x 1 layer": (1, 1, n_pos, d),
        "1 trial x all layers": (1, n_layers, n_pos, d),
        "batch x all layers": (batch, n_layers, n_pos, d),
    }
    rows = []
    layer, trial = n_layers // 2, n // 2
    for name, shape in shapes.items():
        write = read_layer = read_trial = float("inf")
        for _ in range(repeats):
            tmp = Path(tempfile.mkdtemp(prefix="resid-chunks-", dir=os.environ.get("TMPDIR")))
            try:
                array = zarr.create_array(
                    str(tmp / "a.zarr"), shape=data.shape, dtype=np.float16, chunks=shape,
                    compressors=(_COMPRESSOR,), fill_value=0,
                )  # fmt: skip
                t0 = time.perf_counter()
                for start in range(0, n, batch):  # as the runner writes: a batch at a time
                    array[start : start + batch] = data[start : start + batch]
                write = min(write, time.perf_counter() - t0)
                files = sum(1 for f in (tmp / "a.zarr").rglob("*") if f.is_file()) - 1
                size = sum(f.stat().st_size for f in (tmp / "a.zarr").rglob("*") if f.is_file())
                fresh = zarr.open_array(str(tmp / "a.zarr"), mode="r")
                t0 = time.perf_counter()
                got = fresh[:, layer]
                read_layer = min(read_layer, time.perf_counter() - t0)
                assert np.array_equal(got, data[:, layer])
                fresh = zarr.open_array(str(tmp / "a.zarr"), mode="r")
                t0 = time.perf_counter()
                got = fresh[trial]
                read_trial = min(read_trial, time.perf_counter() - t0)
                assert np.array_equal(got, data[trial])
            finally:
                shutil.rmtree(tmp)
        row = {
            "part": "chunks",
            "chunk": name,
            "chunk_MB": round(np.prod(shape) * 2 / 1e6, 2),
            "files_per_batch": round(files / (n / batch)),
            "ratio": round(data.nbytes / size, 3),
            "write_MB_s": round(data.nbytes / 1e6 / write, 1),
            "read_one_layer_all_trials_s": round(read_layer, 3),
            "read_one_layer_MB_useful": round(data[:, layer].nbytes / 1e6, 1),
            "read_one_trial_all_layers_s": round(read_trial, 3),
            "read_one_trial_MB_useful": round(data[trial].nbytes / 1e6, 1),
            "load_1min": _load(),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="codecs,chunks")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--protocols", default="detection-logits,intentional-control")
    args = parser.parse_args()
    parts = args.parts.split(",")
    for protocol in args.protocols.split(","):
        data = residuals(protocol, args.trials)
        print(
            json.dumps(
                {
                    "residuals": protocol,
                    "shape": list(data.shape),
                    "MB_float16": round(data.nbytes / 1e6, 1),
                    "zeros_share": round(float((data == 0).mean()), 3),
                    "load_1min": _load(),
                }
            ),
            flush=True,
        )
        if "codecs" in parts:
            codecs(data, args.batch_size, args.repeats, protocol)
        if "chunks" in parts and protocol == "detection-logits":
            chunks(data, args.batch_size, args.repeats)
    return 0


if __name__ == "__main__":
    from mechintro.cli import script_main

    script_main(main)
