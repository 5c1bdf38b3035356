"""Figure: cosine of the anomaly direction with concept vectors — the anomaly words ("unusual",
"injected", ...), the mean of the 50 concept vectors, and the run's own concepts — per layer.

    python analyses/anomaly_cosines.py [--run RUN] [--vectors VECTORS] [--out figures/]
"""

import numpy as np
from _figure import ROOT, arguments, open_run, save, title

from mechintro import analysis, stimuli
from mechintro.plotting import anomaly_cosine_matrix
from mechintro.tables import table
from mechintro.vectors import load_vectors

args = arguments(
    __doc__, run=str(ROOT / "runs" / "demo.zarr"), vectors=str(ROOT / "runs" / "demo-vectors.zarr")
)
ds = open_run(args.run)
result = analysis.anomaly_directions(ds, analysis.detection_labels(ds), n_boot=10)
concepts = sorted({str(c) for c in ds.concept.values if str(c)})
everything = analysis.anomaly_cosines(
    result, load_vectors(args.vectors)
)  # every word the vectors hold
shown = [w for w in [*stimuli.ANOMALY_WORDS, *concepts, "mean of concepts"] if w in everything.word]
cos = everything.sel(word=shown)
top = everything.to_pandas().abs().max().sort_values(ascending=False).head(8)
print(f"largest |cosine| over all {everything.sizes['word']} words (any layer):")
print(
    table(
        [
            {
                "word": w,
                "max |cos|": float(v),
                "at layer": int(
                    everything.layer.values[np.abs(everything.sel(word=w).values).argmax()]
                ),
            }
            for w, v in top.items()
        ]
    )
)
first = int(ds.inject_layer.values[ds.inject_layer.values >= 0].min())
after = everything.sel(layer=slice(first, None))  # before the first injection there is no signal
peak = np.abs(after).max("layer")
controls = [w for w in stimuli.control_words() if w in peak.word]
print(f"from layer {first} on, max |cosine| per anomaly word vs the 100 unrelated control words:")
print(
    table(
        [
            {"word": w, "max |cos|": float(peak.sel(word=w))}
            for w in [*stimuli.ANOMALY_WORDS, "mean of concepts"]
            if w in peak.word
        ]
        + [
            {
                "word": f"control words: median (range) of {len(controls)}",
                "max |cos|": (
                    f"{float(np.median(peak.sel(word=controls))):.3f} "
                    f"({float(peak.sel(word=controls).min()):.3f}–{float(peak.sel(word=controls).max()):.3f})"
                ),
            }
        ]
    )
)
print(f"random-direction 95% bound: {cos.attrs['chance']:.3f}")
save(
    anomaly_cosine_matrix(
        cos, title=title(ds, "anomaly direction vs concept vectors"), no_signal_below=first
    ),
    args.out,
    "anomaly_cosines",
    ds,
)
