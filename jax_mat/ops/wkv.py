"""WKV operators of RWKV-4, -5 and -6: one signature per version, two implementations.

The "time" axis ``T`` is the **agent** axis in MARWKV. Shapes: ``B`` batch,
``T`` sequence, ``C`` channels; v5/v6 split ``C = H * N`` into ``H`` heads of
size ``N``.

* ``wkv4(time_decay [C], time_first [C], k, v [B, T, C]) -> y [B, T, C]``::

      y_t = (sum_{i<t} e^{(t-1-i) w + k_i} v_i + e^{u + k_t} v_t)
            / (sum_{i<t} e^{(t-1-i) w + k_i}     + e^{u + k_t})

  with ``w = -exp(time_decay)``, ``u = time_first``, computed in the running-max
  form of upstream's CUDA kernel (``wkv_cuda.cu``), so keys of any size are safe.
* ``wkv6(r, k, v, w [B, T, C], u [H, N]) -> y [B, T, C]``, per head, with an
  ``N x N`` state ``S`` (key index ``j``, value index ``i``) starting at zero::

      y_t[i]  = sum_j r_t[j] (u[j] k_t[j] v_t[i] + S[j, i])
      S[j, i] = S[j, i] exp(-exp(w_t[j])) + k_t[j] v_t[i]

* ``wkv5(r, k, v, time_decay [H, N], u [H, N])``: ``wkv6`` with the decay
  static over time (RWKV-5 "Eagle").

Each has a one-step form (``wkv4_step`` ...) carrying an O(1) state, for
recurrent decoding, and a segment form (``wkv4_segment`` ...) that continues a
whole ``[B, S, C]`` stretch from such a state and returns the state after it
(``lax.scan`` of the step); ``lax.scan`` of the step from the empty state is
the parallel form's reference. They agree exactly for v5/v6 and up to
rounding for v4, whose step and segment forms (what ``act`` runs) get each
max-normalised pair of exponentials from one ``exp``. ``impl`` picks the
implementation of the parallel form: ``"scan"`` (this module, the reference),
``"chunked"`` (``wkv4_chunked``: the same recurrence run within chunks of
``T`` for all chunks at once, then across chunks; ``wkv5_chunked`` /
``wkv6_chunked``: a causal ``L x L`` product within each chunk and the
matrix state carried only across chunks), ``"pallas"`` (the kernels of
``pallas_kernels.wkv4`` / ``pallas_kernels.wkv6``; on a CPU only with
``interpret=True``) or ``"auto"``: Pallas on a GPU; elsewhere the form that
measured faster on the CPU (``AUTO_OFF_GPU``, docs/benchmarks.md "WKV operator"): the scan for v4, the
chunked form for v5/v6. On a GPU ``"auto"``
first checks once per process that the kernel compiles, runs and agrees with
the scan at a tiny shape (``kernel_failure``) and says in one log line what it
chose; a kernel that fails there (a jax without the Pallas backend it is
written for, a compiler error on that card) is replaced by ``AUTO_OFF_GPU``'s
form instead of failing the run.

The forms live in ``ops.wkv4`` (RWKV-4) and ``ops.wkv_matrix`` (RWKV-5/6); this module picks one and
re-exports them.

Accumulation is in float32 for narrower inputs (bfloat16, float16) and in the
input's own precision otherwise (float64 under x64); outputs keep the dtype of
``k``.
"""

from __future__ import annotations

import concurrent.futures
import functools
import importlib
import logging

import jax
import jax.numpy as jnp

from jax_mat.ops.wkv4 import (WKV4State, check_wkv4, wkv4_chunked, wkv4_init_state, wkv4_scan, wkv4_segment,
                              wkv4_step)
from jax_mat.ops.wkv_matrix import (check_matrix, wkv5_chunked, wkv5_init_state, wkv5_scan, wkv5_segment, wkv5_step,
                                    wkv6_chunked, wkv6_init_state, wkv6_scan, wkv6_segment, wkv6_step)
from jax_mat.ops.wkv_shared import CHUNK

__all__ = [
    "AUTO_OFF_GPU", "CHUNK", "IMPLS", "WKV4State", "kernel_failure", "wkv4", "wkv4_chunked", "wkv4_init_state",
    "wkv4_scan", "wkv4_segment", "wkv4_step", "wkv5", "wkv5_chunked", "wkv5_init_state", "wkv5_scan", "wkv5_segment", "wkv5_step",
    "wkv6", "wkv6_chunked", "wkv6_init_state", "wkv6_scan", "wkv6_segment", "wkv6_step",
]

IMPLS = ("scan", "chunked", "pallas", "auto")
# What impl="auto" runs without a GPU: the faster exact form measured on the CPU (docs/benchmarks.md).
AUTO_OFF_GPU = {"wkv4": "scan", "wkv5": "chunked", "wkv6": "chunked"}
PROBE_SHAPE = (2, 5, 64)  # [B, T, C] of kernel_failure's check: v6 as one head of 64, upstream's head size
_LOG = logging.getLogger(__name__)


# --------------------------------------------------------------------------- #
# Dispatch                                                                      #
# --------------------------------------------------------------------------- #


def _on_gpu() -> bool:
    return jax.default_backend() == "gpu"


def _resolve_impl(op: str, impl: str, interpret: bool, kernel_module: str) -> str:
    """The implementation ``op`` runs."""
    if impl not in IMPLS:
        raise ValueError(f"unknown WKV impl {impl!r}; allowed: {', '.join(map(repr, IMPLS))}")
    on_gpu = _on_gpu()
    if impl == "auto":
        return _auto_on_gpu(op, kernel_module) if on_gpu else AUTO_OFF_GPU[op]
    if impl == "pallas" and not on_gpu and not interpret:
        raise ValueError(
            f"WKV impl='pallas' needs a GPU (the default backend is {jax.default_backend()!r}); "
            "pass interpret=True to run the kernel in Pallas interpret mode, or use impl='scan'"
        )
    return impl


@functools.cache
def _auto_on_gpu(op: str, kernel_module: str) -> str:
    """``"pallas"`` when the kernel works on this GPU, else ``AUTO_OFF_GPU[op]``; logs the choice once."""
    failure = kernel_failure(kernel_module)
    device = jax.devices()[0].device_kind
    if failure is None:
        _LOG.warning("jax_mat: WKV impl=auto for %s on %s: the Pallas kernel (pallas_kernels.%s)", op, device,
                     kernel_module)
        return "pallas"
    fallback = AUTO_OFF_GPU[op]
    _LOG.warning("jax_mat: WKV impl=auto for %s on %s: impl=%r, since the Pallas kernel failed its check (%s)",
                 op, device, fallback, failure)
    return fallback


@functools.cache
def kernel_failure(kernel_module: str, interpret: bool = False) -> str | None:
    """Why ``pallas_kernels.<kernel_module>`` cannot serve on the default device, or ``None`` when it compiles,
    runs, and its output and every gradient agree with the scan (relative 1e-3) at ``PROBE_SHAPE``.

    Called while a function is being traced (``auto`` is resolved there), it still runs eagerly: in a thread of
    its own, whose JAX trace state is fresh.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_check_kernel, kernel_module, interpret).result()


def _check_kernel(kernel_module: str, interpret: bool) -> str | None:
    b, t, c = PROBE_SHAPE
    keys = jax.random.split(jax.random.PRNGKey(0), 6)
    try:
        if kernel_module == "wkv4":
            kernel = _kernel("wkv4", "wkv4_pallas")
            args = [jax.random.normal(keys[0], (c,)) - 1.0, jax.random.normal(keys[1], (c,)),
                    *(jax.random.normal(key, (b, t, c)) for key in keys[2:4])]
            reference = wkv4_scan
        else:
            kernel = _kernel(kernel_module, "wkv6_pallas")
            args = [*(jax.random.normal(key, (b, t, c)) for key in keys[:4]), jax.random.normal(keys[4], (1, c))]
            reference = wkv6_scan
        g = jax.random.normal(keys[5], (b, t, c))
        got = _value_and_vjp(lambda *a: kernel(*a, interpret=interpret), args, g)
        want = _value_and_vjp(reference, args, g)
        for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            err = float(jnp.max(jnp.abs(x - y)) / (jnp.max(jnp.abs(y)) + 1e-6))
            if not err <= 1e-3:  # also catches NaN
                return f"relative difference {err:.2g} from the scan"
    except Exception as err:  # noqa: BLE001 - any failure (import, lowering, compiling, running) means "do not use"
        first = (str(err).strip().splitlines() or [""])[0][:200]
        return f"{type(err).__name__}: {first}"
    return None


def _value_and_vjp(fn, args, g):
    """``fn(*args)`` and its vjp against ``g``, one jitted program."""

    def run(args, g):
        y, vjp = jax.vjp(fn, *args)
        return y, vjp(g)

    return jax.jit(run)(args, g)


def _kernel(module: str, name: str):
    """``pallas_kernels.<module>.<name>``, imported on first use."""
    try:
        mod = importlib.import_module(f"pallas_kernels.{module}")
    except ModuleNotFoundError as err:
        if err.name not in ("pallas_kernels", f"pallas_kernels.{module}"):
            raise
        raise ImportError(
            f"WKV impl='pallas' needs pallas_kernels/{module}.py (function {name}), which is not installed; "
            "use impl='scan'"
        ) from None
    if not hasattr(mod, name):
        raise ImportError(f"pallas_kernels.{module} has no {name}(); use impl='scan'")
    return getattr(mod, name)


# --------------------------------------------------------------------------- #
# The operators                                                                 #
# --------------------------------------------------------------------------- #


def wkv4(time_decay, time_first, k, v, *, impl: str = "auto", interpret: bool = False):
    """RWKV-4 WKV over ``[B, T, C]`` keys and values (see the module docstring)."""
    check_wkv4("wkv4", time_decay, time_first, k, v, seq_axis=True)
    impl = _resolve_impl("wkv4", impl, interpret, "wkv4")
    if impl == "pallas":
        return _kernel("wkv4", "wkv4_pallas")(time_decay, time_first, k, v, interpret=interpret)
    if impl == "chunked":
        return wkv4_chunked(time_decay, time_first, k, v)
    return wkv4_scan(time_decay, time_first, k, v)


def wkv6(r, k, v, w, u, *, impl: str = "auto", interpret: bool = False):
    """RWKV-6 WKV with data-dependent decay ``w`` ``[B, T, C]`` and bonus ``u`` ``[H, N]``."""
    check_matrix("wkv6", r, k, v, w, u, "w", seq_axis=True)
    impl = _resolve_impl("wkv6", impl, interpret, "wkv6")
    if impl == "pallas":
        return _kernel("wkv6", "wkv6_pallas")(r, k, v, w, u, interpret=interpret)
    if impl == "chunked":
        return wkv6_chunked(r, k, v, w, u)
    return wkv6_scan(r, k, v, w, u)


def wkv5(r, k, v, time_decay, u, *, impl: str = "auto", interpret: bool = False):
    """RWKV-5 WKV: static per-channel decay ``exp(-exp(time_decay))``, ``time_decay`` and ``u`` ``[H, N]``.

    The Pallas path is ``pallas_kernels.wkv6.wkv5_pallas``: the RWKV-6 kernel with the decay broadcast over time.
    """
    check_matrix("wkv5", r, k, v, time_decay, u, "time_decay", seq_axis=True)
    impl = _resolve_impl("wkv5", impl, interpret, "wkv6")
    if impl == "pallas":
        return _kernel("wkv6", "wkv5_pallas")(r, k, v, time_decay, u, interpret=interpret)
    if impl == "chunked":
        return wkv5_chunked(r, k, v, time_decay, u)
    return wkv5_scan(r, k, v, time_decay, u)
