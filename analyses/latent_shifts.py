"""Figure: P(" yes") unsteered and steered for the introspection question under every prompt
variant and for the control questions (vgel, "Latent Introspection").

    python analyses/latent_shifts.py [--run RUN] [--out figures/]
"""

from _figure import SHIPPED, arguments, open_run, save, title

from mechintro.experiments import latent_introspection
from mechintro.plotting import latent_shifts

args = arguments(__doc__, run=str(SHIPPED / "smollm2-135m" / "latent-introspection.zarr"))
ds = open_run(args.run)
summary = latent_introspection.summarize(ds)
print(latent_introspection.format_summary(summary))
save(
    latent_shifts(
        summary, title=title(ds, "steering turn 1's KV cache: yes/no shifts with every control")
    ),
    args.out,
    "latent_shifts",
    ds,
)
