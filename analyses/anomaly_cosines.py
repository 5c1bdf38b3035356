"""Figure: cosine of the anomaly direction with concept vectors — the anomaly words ("unusual",
"injected", ...), the mean of the 50 concept vectors, and the run's own concepts — per layer.

    python analyses/anomaly_cosines.py [--run RUN] [--vectors VECTORS] [--out figures/]
"""

import numpy as np
from _figure import ROOT, arguments, open_run, save, title

from mechintro import analysis, stimuli
from mechintro.experiments._common import table
from mechintro.plotting import anomaly_cosine_matrix
from mechintro.vectors import load_vectors

args = arguments(__doc__, run=str(ROOT / "runs" / "demo.zarr"), vectors=str(ROOT / "runs" / "demo-vectors.zarr"))
ds = open_run(args.run)
result = analysis.anomaly_directions(ds, analysis.detection_labels(ds), n_boot=10)
concepts = sorted({str(c) for c in ds.concept.values if str(c)})
cos = analysis.anomaly_cosines(result, load_vectors(args.vectors), words=[*stimuli.ANOMALY_WORDS, *concepts])
everything = analysis.anomaly_cosines(result, load_vectors(args.vectors))
top = everything.to_pandas().abs().max().sort_values(ascending=False).head(8)
print(f"largest |cosine| over all {everything.sizes['word']} words (any layer):")
print(table([{"word": w, "max |cos|": float(v), "at layer": int(everything.layer.values[np.abs(everything.sel(word=w).values).argmax()])} for w, v in top.items()]))
print(f"random-direction 95% bound: {cos.attrs['chance']:.3f}")
save(anomaly_cosine_matrix(cos, title=title(ds, "anomaly direction vs concept vectors")), args.out, "anomaly_cosines", ds)
