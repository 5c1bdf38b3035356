"""Looking Inward (Binder et al. 2024, arXiv 2410.13787; docs/looking-inward.md), one package:

* :mod:`~mechintro.looking_inward.tasks` — what the runs, the scoring and the finetuning share:
  tasks, prompts, behaviour properties, their extraction and compliance checks, the run's name and
  residual group, the training examples drawn from a run (study data: numpy and xarray only);
* :mod:`~mechintro.looking_inward.score` — scoring saved runs: self- and cross-prediction,
  behaviour change, calibration, probes (analysis: it reads runs, never the model);
* :mod:`~mechintro.looking_inward.experiment` — the ``self-prediction`` experiment (registered in
  :data:`mechintro.experiments.EXPERIMENTS`).

The three sit in three rows of the layer table (docs/architecture.md): ``tasks`` imports neither
of the others and ``score`` never imports ``experiment``. This module imports none of them, so
importing one loads only what it needs.
"""
