"""Figure: yes/no shift under injection (detection-logits run) — reads a saved run only.

    .venv/bin/python analyses/detection_logits_shift.py [runs/demo.zarr] [figures/]
"""

import sys
from pathlib import Path

import mechintro as mi
from mechintro.experiments import detection_logits
from mechintro.plotting import detection_shift
from mechintro.provenance import figure_metadata

run = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo.zarr")
out_dir = Path(sys.argv[2] if len(sys.argv) > 2 else "figures")
ds = mi.open_run(run)
summary = detection_logits.summarize(ds)
fig = detection_shift(summary, title=f"{ds.attrs['model']}: injected-thoughts prompt, logit readout (n={int(summary.n.max())} concepts per cell)")
out_dir.mkdir(parents=True, exist_ok=True)
fig.savefig(out_dir / "detection_logits_shift.png", dpi=120, metadata=figure_metadata(ds))
print(out_dir / "detection_logits_shift.png")
