"""Pallas GPU kernels for the RWKV WKV operators (forward and backward, differentiable via ``jax.custom_vjp``).

* ``wkv4_pallas(time_decay [C], time_first [C], k, v [B,T,C]) -> y [B,T,C]``  (``pallas_kernels.wkv4``)
* ``wkv6_pallas(r, k, v, w [B,T,C], u [H,N]) -> y [B,T,C]``                   (``pallas_kernels.wkv6``)
* ``wkv5_pallas(r, k, v, time_decay [H,N], u [H,N]) -> y [B,T,C]``            (v6 with a static decay)

Triton backend (see the module docstrings for why); on the CPU only ``interpret=True`` runs. The ``lax.scan``
reference and the dispatching entry points (``impl="scan" | "pallas" | "auto"``) live in ``jax_mat.ops.wkv``.
"""

import importlib

__all__ = ["wkv4_pallas", "wkv5_pallas", "wkv6_pallas"]
_HOME = {"wkv4_pallas": "wkv4", "wkv5_pallas": "wkv6", "wkv6_pallas": "wkv6"}


def __getattr__(name):
    # Lazy: importing the package does not import the kernel modules (jax_mat.ops.wkv imports each on first use).
    if name in _HOME:
        return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
