"""Figure: the positive control (issue 33) — SmolLM2 trained to notice injected thoughts
(Fonseca Rivera's recipe) against the untrained model on the same held-out trials: detection and
identification vs injection strength (their question, greedy; the control false-positive rate as
a line), and held-out detection vs examples seen (the scaling curve). From the small results in
``analyses/data/positive-control/`` (``scripts/positive_control_train.py``).

    python analyses/positive_control.py [--data analyses/data/positive-control] [--out figures/]
"""

import json
from pathlib import Path
from types import SimpleNamespace

from _figure import SHIPPED, arguments, save

from mechintro.plotting import positive_control

args = arguments(__doc__, data=str(SHIPPED / "positive-control"))
data = Path(args.data)
if not (data / "eval_main.json").exists():
    raise SystemExit(
        f"positive_control.py: {data / 'eval_main.json'} does not exist: run "
        "scripts/positive_control_train.py first"
    )
evaluation = json.loads((data / "eval_main.json").read_text())
settings = json.loads((data / "settings.json").read_text())
scaling_file = data / "scaling.json"
scaling = json.loads(scaling_file.read_text()) if scaling_file.exists() else []
source = SimpleNamespace(  # what determines the pixels, as a run's attributes would say it
    attrs={
        "experiment": "positive-control",
        "model": settings["model"],
        "weights_sha256": settings["weights_sha256"],
        "config": json.dumps({"examples": evaluation["examples"], "steps": evaluation["steps"]}),
    }
)
save(positive_control(evaluation, scaling, settings), args.out, "positive_control", source)
