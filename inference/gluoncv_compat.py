"""Importing GluonCV next to PyTorch 2.

GluonCV 0.10.5 checks at import time for an optional PyTorch and raises ``RuntimeError`` (not
``ImportError``, which it would tolerate) when it finds torch ≥ 2.0 — the torch runtime of this
package. Its MXNet half, which is all we use, does not need torch, so torch is hidden from that
one check: with ``sys.modules["torch"] = None`` its ``import torch`` raises ``ImportError`` and
GluonCV carries on without its PyTorch half. Call ``import_gluoncv()`` before any
``from gluoncv… import …``; afterwards GluonCV is in ``sys.modules`` and imports normally.
"""

from __future__ import annotations

import sys


def import_gluoncv():
    if "gluoncv" in sys.modules:
        return sys.modules["gluoncv"]
    import mxnet  # noqa: F401  -- before decord, which GluonCV's data package imports

    hidden = sys.modules.get("torch", ...)
    sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        import gluoncv
    finally:
        if hidden is ...:
            del sys.modules["torch"]
        else:
            sys.modules["torch"] = hidden
    return gluoncv
