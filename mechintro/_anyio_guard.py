"""Keep anyio importable after nnsight, in either import order (docs/engineering.md).

`import nnsight` mounts `.save` on every object (its C extension, ``nnsight._c.mount``), after
which anyio can no longer define its typed-attribute classes: ``TypedAttributeSet`` rejects every
public attribute without an annotation, and ``save`` is now one, so
``from anyio.abc import SocketAttribute`` raises ``TypeError: Attribute 'save' is missing its type
annotation``. That breaks Jupyter, httpx and FastAPI code imported later. anyio defines those
classes lazily in three modules; defining them once, while no ``.save`` is mounted, keeps both
working.

- ``import mechintro`` first: nnsight is not loaded, the modules import cleanly (milliseconds).
- ``import nnsight`` first (what researchers do): the mount is lifted for the duration of the
  three imports and put back with nnsight's own ``save``, so ``tensor.save()`` keeps working.
"""

from __future__ import annotations

import importlib
import logging
import sys

log = logging.getLogger(__name__)

_MODULES = ("anyio.abc._sockets", "anyio.streams.file", "anyio.streams.tls")


def _import_all() -> None:
    for module in _MODULES:
        try:
            importlib.import_module(module)
        except ImportError:  # anyio is optional; without it there is nothing to break
            return


def define_anyio_classes() -> None:
    """Import anyio's typed-attribute modules so they are defined before nnsight's ``.save`` mount
    can break them; if nnsight is already loaded, lift its mount around the imports."""
    if all(m in sys.modules for m in _MODULES):
        return
    nnsight = sys.modules.get("nnsight")
    if nnsight is None or not hasattr(object, "save"):
        _import_all()
        return
    try:
        from nnsight._c import mount, unmount
    except ImportError:  # the extension did not build: nothing is mounted by it
        mount = unmount = None
    if mount is None or unmount is None:
        _import_all()
        return
    unmount("save")
    try:
        _import_all()
    finally:
        mount(nnsight.save, "save")
    log.debug("anyio classes defined with nnsight's .save mount lifted")
