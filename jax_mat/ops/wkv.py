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
recurrent decoding; ``lax.scan`` of the step is the parallel form, so the two
agree exactly. ``impl`` picks the implementation of the parallel form:
``"scan"`` (this module, the reference), ``"pallas"`` (the kernels of
``pallas_kernels.wkv4`` / ``pallas_kernels.wkv6``; on a CPU only with
``interpret=True``) or ``"auto"`` (Pallas on a GPU, scan elsewhere).

Accumulation is in float32 for narrower inputs (bfloat16, float16) and in the
input's own precision otherwise (float64 under x64); outputs keep the dtype of
``k``.
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp

IMPLS = ("scan", "pallas", "auto")
_NEG_INF = -1e38  # upstream's initial running max


class WKV4State(NamedTuple):
    """Running numerator ``aa``, denominator ``bb`` and exponent ``pp``, each ``[B, C]``."""

    aa: jax.Array
    bb: jax.Array
    pp: jax.Array


# --------------------------------------------------------------------------- #
# Checks and dispatch                                                           #
# --------------------------------------------------------------------------- #


def _check_float(name: str, x) -> None:
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name} must be a floating-point array, got {x.dtype}")


def _check_same(op: str, what: str, named: dict) -> None:
    """All arrays in ``named`` share ``what`` ("shape" or "dtype")."""
    values = {n: getattr(x, what) for n, x in named.items()}
    if len(set(values.values())) > 1:
        listed = ", ".join(f"{n} {tuple(v) if what == 'shape' else v}" for n, v in values.items())
        raise ValueError(f"{op}: {', '.join(named)} must have the same {what}, got {listed}")


def _acc_dtype(*dtypes) -> jnp.dtype:
    """float32 for bfloat16/float16 inputs, else the widest input type."""
    return jnp.promote_types(jnp.result_type(*dtypes), jnp.float32)


def _resolve_impl(impl: str, interpret: bool, kernel_module: str) -> str:
    if impl not in IMPLS:
        raise ValueError(f"unknown WKV impl {impl!r}; allowed: {', '.join(map(repr, IMPLS))}")
    on_gpu = jax.default_backend() == "gpu"
    if impl == "auto":
        if not on_gpu:
            return "scan"
        if importlib.util.find_spec(f"pallas_kernels.{kernel_module}") is None:
            warnings.warn(f"pallas_kernels.{kernel_module} is not available; WKV falls back to impl='scan' on the GPU")
            return "scan"
        return "pallas"
    if impl == "pallas" and not on_gpu and not interpret:
        raise ValueError(
            f"WKV impl='pallas' needs a GPU (the default backend is {jax.default_backend()!r}); "
            "pass interpret=True to run the kernel in Pallas interpret mode, or use impl='scan'"
        )
    return impl


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


def _time_major(*xs):
    return tuple(jnp.swapaxes(x, 0, 1) for x in xs)


# --------------------------------------------------------------------------- #
# RWKV-4                                                                        #
# --------------------------------------------------------------------------- #


def wkv4_init_state(batch: int, channels: int, dtype=jnp.float32) -> WKV4State:
    """The state before the first token: ``aa = bb = 0``, ``pp = -1e38``."""
    zeros = jnp.zeros((batch, channels), dtype)
    return WKV4State(zeros, zeros, jnp.full((batch, channels), _NEG_INF, dtype))


def _check_wkv4(op, time_decay, time_first, k, v, seq_axis: bool) -> None:
    ndim = 3 if seq_axis else 2
    layout = "[B, T, C]" if seq_axis else "[B, C]"
    if k.ndim != ndim:
        raise ValueError(f"{op}: k must be {layout}, got shape {tuple(k.shape)}")
    _check_same(op, "shape", {"k": k, "v": v})
    c = k.shape[-1]
    if time_decay.shape != (c,) or time_first.shape != (c,):
        raise ValueError(
            f"{op}: time_decay and time_first must be [C] = ({c},), "
            f"got {tuple(time_decay.shape)} and {tuple(time_first.shape)}"
        )
    for name, x in (("time_decay", time_decay), ("time_first", time_first), ("k", k), ("v", v)):
        _check_float(name, x)
    _check_same(op, "dtype", {"k": k, "v": v})
    _check_same(op, "dtype", {"time_decay": time_decay, "time_first": time_first})


def _wkv4_step(w, u, k, v, state: WKV4State):
    """One token in the accumulation dtype; ``w = -exp(time_decay)`` already applied."""
    aa, bb, pp = state
    ww = u + k
    p = jnp.maximum(pp, ww)
    e1, e2 = jnp.exp(pp - p), jnp.exp(ww - p)
    y = (e1 * aa + e2 * v) / (e1 * bb + e2)
    ww = w + pp
    p = jnp.maximum(ww, k)
    e1, e2 = jnp.exp(ww - p), jnp.exp(k - p)
    return y, WKV4State(e1 * aa + e2 * v, e1 * bb + e2, p)


def wkv4_step(time_decay, time_first, k_t, v_t, state: WKV4State):
    """One agent: ``k_t``, ``v_t`` ``[B, C]``; returns ``y_t`` ``[B, C]`` and the next state."""
    _check_wkv4("wkv4_step", time_decay, time_first, k_t, v_t, seq_axis=False)
    acc = _acc_dtype(k_t.dtype, time_decay.dtype)
    w, u = -jnp.exp(time_decay.astype(acc)), time_first.astype(acc)
    state = WKV4State(*(s.astype(acc) for s in state))
    y, state = _wkv4_step(w, u, k_t.astype(acc), v_t.astype(acc), state)
    return y.astype(k_t.dtype), state


def wkv4_scan(time_decay, time_first, k, v):
    """The reference: ``lax.scan`` of the one-step form over ``T``."""
    acc = _acc_dtype(k.dtype, time_decay.dtype)
    w, u = -jnp.exp(time_decay.astype(acc)), time_first.astype(acc)

    def step(state, kv):
        y, state = _wkv4_step(w, u, kv[0], kv[1], state)
        return state, y

    state = wkv4_init_state(k.shape[0], k.shape[2], acc)
    _, y = jax.lax.scan(step, state, _time_major(k.astype(acc), v.astype(acc)))
    return jnp.swapaxes(y, 0, 1).astype(k.dtype)


def wkv4(time_decay, time_first, k, v, *, impl: str = "auto", interpret: bool = False):
    """RWKV-4 WKV over ``[B, T, C]`` keys and values (see the module docstring)."""
    _check_wkv4("wkv4", time_decay, time_first, k, v, seq_axis=True)
    if _resolve_impl(impl, interpret, "wkv4") == "pallas":
        return _kernel("wkv4", "wkv4_pallas")(time_decay, time_first, k, v, interpret=interpret)
    return wkv4_scan(time_decay, time_first, k, v)


# --------------------------------------------------------------------------- #
# RWKV-5 and RWKV-6                                                             #
# --------------------------------------------------------------------------- #


def wkv6_init_state(batch: int, n_head: int, head_size: int, dtype=jnp.float32) -> jax.Array:
    """The zero state ``[B, H, N, N]`` (key index, then value index)."""
    return jnp.zeros((batch, n_head, head_size, head_size), dtype)


wkv5_init_state = wkv6_init_state


def _check_matrix(op, r, k, v, w, u, w_name: str, seq_axis: bool) -> None:
    ndim = 3 if seq_axis else 2
    layout = "[B, T, C]" if seq_axis else "[B, C]"
    if r.ndim != ndim:
        raise ValueError(f"{op}: r must be {layout}, got shape {tuple(r.shape)}")
    seq = {"r": r, "k": k, "v": v}
    if w_name == "w":
        seq["w"] = w
    _check_same(op, "shape", seq)
    if u.ndim != 2 or u.shape[0] * u.shape[1] != r.shape[-1]:
        raise ValueError(f"{op}: u must be [H, N] with H * N = C = {r.shape[-1]}, got shape {tuple(u.shape)}")
    if w_name != "w" and w.shape != u.shape:
        raise ValueError(f"{op}: {w_name} must be [H, N] = {tuple(u.shape)} like u, got shape {tuple(w.shape)}")
    for name, x in (*seq.items(), (w_name, w), ("u", u)):
        _check_float(name, x)
    _check_same(op, "dtype", seq)


def _matrix_step(r, k, v, decay, u, state):
    """One token per head; ``r, k, v, decay``: ``[B, H, N]`` (``decay = exp(-exp(w))``), state ``[B, H, N, N]``.

    Written with elementwise products and sums rather than ``einsum`` so that a
    GPU does not silently run it at TF32 precision.
    """
    kv = k[..., :, None] * v[..., None, :]
    y = jnp.sum(r[..., :, None] * (u[..., :, None] * kv + state), axis=-2)
    return y, state * decay[..., :, None] + kv


def _heads(x, n_head):
    return x.reshape(*x.shape[:-1], n_head, x.shape[-1] // n_head)


def _matrix_scan(r, k, v, log_w, u):
    """``log_w``: ``[B, T, C]`` or ``[C]`` raw decay (``decay = exp(-exp(log_w))``)."""
    acc = _acc_dtype(r.dtype, log_w.dtype, u.dtype)
    n_head, head_size = u.shape
    b, t, c = r.shape
    u = u.astype(acc)
    decay = jnp.exp(-jnp.exp(log_w.astype(acc)))
    seq = [_heads(x.astype(acc), n_head) for x in (r, k, v)]
    if decay.ndim == 1:
        static = _heads(decay, n_head)

        def step(state, x):
            y, state = _matrix_step(*x, static, u, state)
            return state, y

    else:
        seq.append(_heads(decay, n_head))

        def step(state, x):
            y, state = _matrix_step(*x[:3], x[3], u, state)
            return state, y

    state = wkv6_init_state(b, n_head, head_size, acc)
    _, y = jax.lax.scan(step, state, _time_major(*seq))
    return jnp.swapaxes(y, 0, 1).reshape(b, t, c).astype(r.dtype)


def _matrix_one_step(r_t, k_t, v_t, log_w, u, state):
    """``log_w``: ``[B, C]`` (v6) or ``[C]`` (v5) raw decay."""
    acc = _acc_dtype(r_t.dtype, log_w.dtype, u.dtype)
    n_head = u.shape[0]
    decay = _heads(jnp.exp(-jnp.exp(log_w.astype(acc))), n_head)
    r, k, v = (_heads(x.astype(acc), n_head) for x in (r_t, k_t, v_t))
    y, state = _matrix_step(r, k, v, decay, u.astype(acc), state.astype(acc))
    return y.reshape(r_t.shape).astype(r_t.dtype), state


def _check_state(op, state, batch, u) -> None:
    expected = (batch, u.shape[0], u.shape[1], u.shape[1])
    if tuple(state.shape) != expected:
        raise ValueError(f"{op}: state must be [B, H, N, N] = {expected}, got shape {tuple(state.shape)}")


def wkv6_scan(r, k, v, w, u):
    """The reference: ``lax.scan`` over ``T`` of the one-step form."""
    return _matrix_scan(r, k, v, w, u)


def wkv6_step(r_t, k_t, v_t, w_t, u, state):
    """One agent: ``r_t, k_t, v_t, w_t`` ``[B, C]``, state ``[B, H, N, N]`` -> ``y_t`` ``[B, C]``, state."""
    _check_matrix("wkv6_step", r_t, k_t, v_t, w_t, u, "w", seq_axis=False)
    _check_state("wkv6_step", state, r_t.shape[0], u)
    return _matrix_one_step(r_t, k_t, v_t, w_t, u, state)


def wkv6(r, k, v, w, u, *, impl: str = "auto", interpret: bool = False):
    """RWKV-6 WKV with data-dependent decay ``w`` ``[B, T, C]`` and bonus ``u`` ``[H, N]``."""
    _check_matrix("wkv6", r, k, v, w, u, "w", seq_axis=True)
    if _resolve_impl(impl, interpret, "wkv6") == "pallas":
        return _kernel("wkv6", "wkv6_pallas")(r, k, v, w, u, interpret=interpret)
    return wkv6_scan(r, k, v, w, u)


def wkv5_scan(r, k, v, time_decay, u):
    return _matrix_scan(r, k, v, time_decay.reshape(-1), u)


def wkv5_step(r_t, k_t, v_t, time_decay, u, state):
    """One agent of ``wkv5``: like ``wkv6_step`` with the static decay ``time_decay`` ``[H, N]``."""
    _check_matrix("wkv5_step", r_t, k_t, v_t, time_decay, u, "time_decay", seq_axis=False)
    _check_state("wkv5_step", state, r_t.shape[0], u)
    return _matrix_one_step(r_t, k_t, v_t, time_decay.reshape(-1), u, state)


def wkv5(r, k, v, time_decay, u, *, impl: str = "auto", interpret: bool = False):
    """RWKV-5 WKV: static per-channel decay ``exp(-exp(time_decay))``, ``time_decay`` and ``u`` ``[H, N]``.

    The Pallas path is ``pallas_kernels.wkv6.wkv5_pallas``: the RWKV-6 kernel with the decay broadcast over time.
    """
    _check_matrix("wkv5", r, k, v, time_decay, u, "time_decay", seq_axis=True)
    if _resolve_impl(impl, interpret, "wkv6") == "pallas":
        return _kernel("wkv6", "wkv5_pallas")(r, k, v, time_decay, u, interpret=interpret)
    return wkv5_scan(r, k, v, time_decay, u)
