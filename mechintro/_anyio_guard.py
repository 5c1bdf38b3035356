"""Keep anyio importable after nnsight (ENGINEERING_NOTES G6).

`import nnsight` mounts `.save` on every object, after which anyio can no longer define its
typed-attribute classes (`from anyio.abc import SocketAttribute` raises), which breaks Jupyter,
httpx and FastAPI code imported later. anyio defines those classes lazily in these three modules;
defining them before nnsight loads keeps both working. Importing them takes milliseconds.
"""

from __future__ import annotations

import importlib


def define_anyio_classes() -> None:
    for module in ("anyio.abc._sockets", "anyio.streams.file", "anyio.streams.tls"):
        try:
            importlib.import_module(module)
        except ImportError:  # anyio is optional; without it there is nothing to break
            pass
