"""RWKV-4 WKV operator as Pallas GPU kernels (forward and backward, ``jax.custom_vjp``).

``wkv4_pallas(time_decay [C], time_first [C], k [B,T,C], v [B,T,C]) -> y [B,T,C]`` computes, per batch b and
channel c, with ``w = -exp(time_decay)`` and ``u = time_first``::

    y_t = (sum_{i<t} e^{(t-1-i)w + k_i} v_i + e^{u+k_t} v_t) / (sum_{i<t} e^{(t-1-i)w + k_i} + e^{u+k_t})

with the numerically stable running-max recurrence of upstream's ``wkv_cuda.cu`` (state ``aa, bb`` scaled by
``e^{-pp}``). In MARWKV the "time" axis T is the agent axis.

Kernels
-------
* grid ``(B, C // block_c)``; each program owns ``block_c`` channels of one batch row and loops over all T steps
  with ``lax.fori_loop`` (no compile-time cap on T; upstream's CUDA kernel asserts T <= 45).
* forward: float32 accumulation (float64 when the inputs are float64, for ``check_grads`` in interpret mode).
  For autodiff the forward kernel also writes two float32 residuals per element: ``y`` in float32 and
  ``log D_t`` (log of the softmax denominator).
* backward: one reverse-time pass. With ``D_t`` the denominator and ``g_t = dL/dy_t``::

      alpha_t  = sum_{s>t} e^{(s-1-t)w} g_s / D_s            beta_t  = same with g_s y_s
      alpha'_t = sum_{s>t} (s-1-t) e^{(s-1-t)w} g_s / D_s     beta'_t = same with g_s y_s
      dk_t = g_t (v_t - y_t) e^{u+k_t} / D_t + e^{k_t} (v_t alpha_t - beta_t)
      dv_t = g_t e^{u+k_t} / D_t + e^{k_t} alpha_t
      du   = sum_t g_t (v_t - y_t) e^{u+k_t} / D_t
      dw   = sum_t e^{k_t} (v_t alpha'_t - beta'_t);   d time_decay = dw * w

  ``alpha, beta, alpha', beta'`` are kept scaled by a running max exponent ``q`` (the same trick as the forward,
  with "keys" ``-log D_s`` and decay ``w``), so every exponential evaluated is ``e^{x}`` with ``x <= 0``:
  ``k_t + q_t <= 0`` because ``D_s >= e^{(s-1-t)w + k_t}``. The recurrences are
  ``alpha_{t-1} = g_t/D_t + e^w alpha_t`` and ``alpha'_{t-1} = e^w (alpha'_t + alpha_t)``.
  ``d time_decay``/``d time_first`` are written per batch row ([B, C], float32) and summed outside the kernel.

Backend choice: Triton (``pltriton.CompilerParams``), deliberately
-----------------------------------------------------------------
* The kernel is a sequential elementwise recurrence over small per-step vectors (``block_c`` <= 64 channels of
  one (b, t) row) with a data-dependent time index. Triton's programming model (a program = a block of
  threads, arbitrary power-of-two vectors, masked/offset loads) fits it directly; nothing here uses tensor
  cores, TMA or warpgroup MMA, which is what Mosaic GPU is built around.
* Mosaic GPU (``compiler_params=None`` on jax >= 0.10) needs Hopper or newer and transfers in multiples of the
  128-thread warpgroup; the natural blocks here are not: lowering this kernel with Mosaic GPU for T=27,
  block_c=16 fails on this jax ("Only copies transferring a number of bytes divisible by the warpgroup size
  are supported"). MARWKV shapes (C = 64 upstream, T = number of agents, 3..50) would need padding
  everywhere. Triton also runs on Ampere (A100, RTX 30xx/40xx), which RL users commonly have.
* Cost of the choice: the JAX changelog marks the Pallas Triton backend deprecated from jax 0.11.0 (it still
  lowers; expect a deprecation warning), and using ``pl.pallas_call`` for Mosaic GPU is itself deprecated in
  favour of ``plgpu.kernel``. When Triton is removed, port these kernels to ``plgpu.kernel`` with
  128-element-padded channel blocks, or fall back to the ``lax.scan`` reference in ``jax_mat.ops.wkv``.
* Checked: jax 0.10.2 and 0.11.2 (interpret-mode numerics and lowering for ``cuda`` on a CPU machine; jax 0.11's
  Triton lowering asks for a GPU kind, which ``tests/test_pallas_wkv.py`` gives as an abstract H100, and warns that
  the backend is deprecated). PTX compilation and numerics on a real GPU are what ``scripts/gpu_suite.sh`` checks;
  where they fail, ``jax_mat.ops.wkv``'s ``impl="auto"`` falls back to a ``lax.scan``/chunked form and says so.

On the CPU only ``interpret=True`` runs (tests use it); ``interpret=False`` on CPU raises a ``ValueError``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

__all__ = ["wkv4_pallas"]

_MIN_VALUE = -1e38  # upstream's MIN_VALUE: "minus infinity" that stays finite under +/-
_ALLOWED_DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16, jnp.float64)


# ----------------------------------------------------------------------------------------------------------------
# shared helpers (also used by wkv6.py)
# ----------------------------------------------------------------------------------------------------------------


def _check_float(name: str, x) -> None:
    if not hasattr(x, "dtype") or not hasattr(x, "shape"):
        raise ValueError(f"{name} must be an array, got {type(x).__name__}")
    if jnp.dtype(x.dtype) not in [jnp.dtype(d) for d in _ALLOWED_DTYPES]:
        raise ValueError(f"{name} must be float32, bfloat16, float16 or float64, got dtype {x.dtype}")


def _check_backend(fn_name: str, interpret: bool, *arrays) -> None:
    """Eager calls with CPU data and no ``interpret`` fail early with a clear message.

    Under ``jit`` the arguments are tracers and the target platform is only known at lowering, where Pallas
    itself refuses the CPU (``ValueError: Only interpret mode is supported on CPU backend``); lowering for
    ``cuda`` from a CPU machine stays possible.
    """
    if interpret or any(isinstance(a, jax.core.Tracer) for a in arrays):
        return
    platforms = set()
    for a in arrays:
        if isinstance(a, jax.Array):
            platforms |= {d.platform for d in a.devices()}
        else:  # numpy: would be placed on the default device
            platforms.add(jax.default_backend())
    if platforms == {"cpu"}:
        raise ValueError(
            f"{fn_name}: the Pallas kernel needs a GPU; on the CPU pass interpret=True "
            "(slow, for tests) or use the lax.scan implementation in jax_mat.ops.wkv"
        )


def _acc_dtype(*dtypes):
    """float32 accumulation; float64 only when an input is float64 (interpret-mode gradient checks)."""
    return jnp.float64 if any(jnp.dtype(d) == jnp.float64 for d in dtypes) else jnp.float32


def _largest_pow2_divisor(n: int, cap: int) -> int:
    b = 1
    while b * 2 <= cap and n % (b * 2) == 0:
        b *= 2
    return b


def _compiler_params(num_warps: int):
    return pltriton.CompilerParams(num_warps=num_warps, num_stages=1)


# ----------------------------------------------------------------------------------------------------------------
# kernels
# ----------------------------------------------------------------------------------------------------------------


def _fwd_kernel(td_ref, tf_ref, k_ref, v_ref, y_ref, *res_refs, acc):
    """One program: batch row b, channels [c0, c0 + block_c). Refs: td/tf [bc], k/v/y [T, bc]."""
    n_steps = k_ref.shape[0]
    w = -jnp.exp(td_ref[...].astype(acc))
    u = tf_ref[...].astype(acc)
    zeros = jnp.zeros(w.shape, acc)

    def body(t, carry):
        aa, bb, pp = carry
        kt = k_ref[t, :].astype(acc)
        vt = v_ref[t, :].astype(acc)
        ww = u + kt
        p = jnp.maximum(pp, ww)
        e1 = jnp.exp(pp - p)
        e2 = jnp.exp(ww - p)
        den = e1 * bb + e2
        y_ref[t, :] = ((e1 * aa + e2 * vt) / den).astype(y_ref.dtype)
        if res_refs:
            res_refs[0][t, :] = (p + jnp.log(den)).astype(res_refs[0].dtype)  # log D_t
        ww = w + pp
        p = jnp.maximum(ww, kt)
        e1 = jnp.exp(ww - p)
        e2 = jnp.exp(kt - p)
        return e1 * aa + e2 * vt, e1 * bb + e2, p

    lax.fori_loop(0, n_steps, body, (zeros, zeros, zeros + _MIN_VALUE))


def _bwd_kernel(td_ref, tf_ref, k_ref, v_ref, y_ref, logd_ref, g_ref, gk_ref, gv_ref, gtd_ref, gtf_ref, *, acc):
    n_steps = k_ref.shape[0]
    w = -jnp.exp(td_ref[...].astype(acc))
    u = tf_ref[...].astype(acc)
    zeros = jnp.zeros(w.shape, acc)

    def body(i, carry):
        a, b, a2, b2, q, gw, gu = carry
        t = n_steps - 1 - i
        kt = k_ref[t, :].astype(acc)
        vt = v_ref[t, :].astype(acc)
        yt = y_ref[t, :].astype(acc)
        ld = logd_ref[t, :].astype(acc)
        gt = g_ref[t, :].astype(acc)
        gb = gt * jnp.exp(u + kt - ld)  # g_t e^{u+k_t} / D_t
        gbvy = gb * (vt - yt)
        ek = jnp.exp(kt + q)  # e^{k_t} * (scale of alpha, beta); exponent <= 0
        gk_ref[t, :] = (gbvy + ek * (vt * a - b)).astype(gk_ref.dtype)
        gv_ref[t, :] = (gb + ek * a).astype(gv_ref.dtype)
        gw = gw + ek * (vt * a2 - b2)
        gu = gu + gbvy
        # absorb step t: alpha_{t-1} = g_t / D_t + e^w alpha_t,  alpha'_{t-1} = e^w (alpha'_t + alpha_t)
        qw = q + w
        qn = jnp.maximum(qw, -ld)
        e1 = jnp.exp(qw - qn)
        e2 = gt * jnp.exp(-ld - qn)
        a2 = e1 * (a2 + a)
        b2 = e1 * (b2 + b)
        a = e1 * a + e2
        b = e1 * b + e2 * yt
        return a, b, a2, b2, qn, gw, gu

    init = (zeros, zeros, zeros, zeros, zeros + _MIN_VALUE, zeros, zeros)
    _, _, _, _, _, gw, gu = lax.fori_loop(0, n_steps, body, init)
    gtd_ref[...] = (gw * w).astype(gtd_ref.dtype)  # d w / d time_decay = -exp(time_decay) = w
    gtf_ref[...] = gu.astype(gtf_ref.dtype)


# ----------------------------------------------------------------------------------------------------------------
# pallas_call wrappers
# ----------------------------------------------------------------------------------------------------------------


def _specs(T: int, bc: int):
    vec = pl.BlockSpec((bc,), lambda b, c: (c,))
    seq = pl.BlockSpec((None, T, bc), lambda b, c: (b, 0, c))
    row = pl.BlockSpec((None, bc), lambda b, c: (b, c))
    return vec, seq, row


def _forward(td, tf, k, v, bc, interpret, residuals):
    B, T, C = k.shape
    acc = _acc_dtype(td.dtype, tf.dtype, k.dtype, v.dtype)
    vec, seq, _ = _specs(T, bc)
    y_dtype = acc if residuals else k.dtype
    out_shape = [jax.ShapeDtypeStruct((B, T, C), y_dtype)]
    out_specs = [seq]
    if residuals:
        out_shape.append(jax.ShapeDtypeStruct((B, T, C), acc))
        out_specs.append(seq)
    outs = pl.pallas_call(
        functools.partial(_fwd_kernel, acc=acc),
        out_shape=out_shape,
        grid=(B, C // bc),
        in_specs=[vec, vec, seq, seq],
        out_specs=out_specs,
        compiler_params=_compiler_params(num_warps=max(1, bc // 64)),
        interpret=interpret,
        name="wkv4_forward",
    )(td, tf, k, v)
    return outs


def _backward(td, tf, k, v, y, logd, g, bc, interpret):
    B, T, C = k.shape
    acc = _acc_dtype(td.dtype, tf.dtype, k.dtype, v.dtype)
    vec, seq, row = _specs(T, bc)
    gk, gv, gtd, gtf = pl.pallas_call(
        functools.partial(_bwd_kernel, acc=acc),
        out_shape=[
            jax.ShapeDtypeStruct((B, T, C), k.dtype),
            jax.ShapeDtypeStruct((B, T, C), v.dtype),
            jax.ShapeDtypeStruct((B, C), acc),
            jax.ShapeDtypeStruct((B, C), acc),
        ],
        grid=(B, C // bc),
        in_specs=[vec, vec, seq, seq, seq, seq, seq],
        out_specs=[seq, seq, row, row],
        compiler_params=_compiler_params(num_warps=max(1, bc // 64)),
        interpret=interpret,
        name="wkv4_backward",
    )(td, tf, k, v, y, logd, g)
    return gtd.sum(0).astype(td.dtype), gtf.sum(0).astype(tf.dtype), gk, gv


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _wkv4(td, tf, k, v, bc, interpret):
    return _forward(td, tf, k, v, bc, interpret, residuals=False)[0]


def _wkv4_fwd(td, tf, k, v, bc, interpret):
    y, logd = _forward(td, tf, k, v, bc, interpret, residuals=True)
    return y.astype(k.dtype), (td, tf, k, v, y, logd)


def _wkv4_bwd(bc, interpret, res, g):
    td, tf, k, v, y, logd = res
    return _backward(td, tf, k, v, y, logd, g, bc, interpret)


_wkv4.defvjp(_wkv4_fwd, _wkv4_bwd)


def _default_block_c(B: int, C: int, interpret: bool) -> int:
    """Channels per program: a power of two (C is padded to a multiple of it when it does not divide C)."""
    if interpret:  # the interpreter runs the grid sequentially: few, large programs
        return pl.next_power_of_2(C)
    d = _largest_pow2_divisor(C, 64)
    bc = d if d >= 16 else min(64, pl.next_power_of_2(C))
    # Keep enough programs in flight to fill the GPU (one program is latency-bound on its T-step loop).
    while bc > 16 and B * pl.cdiv(C, bc) < 2048:
        bc //= 2
    return bc


def wkv4_pallas(time_decay, time_first, k, v, *, interpret: bool = False, block_c: int | None = None):
    """RWKV-4 WKV: ``y [B,T,C]`` from ``time_decay [C]`` (raw: the op applies ``w = -exp``), ``time_first [C]``,
    ``k, v [B,T,C]``.

    ``k`` and ``v`` must share one dtype (float32 or bfloat16; float16/float64 also accepted); ``y`` has that
    dtype; accumulation is float32. Differentiable in all four arguments (``jax.custom_vjp`` with a Pallas
    backward kernel); gradients come back in the arguments' dtypes. ``interpret=True`` runs the kernels in
    the Pallas interpreter (the only mode on CPU). ``block_c`` (a power of two dividing C, or padded to) sets
    the channels per program; the default picks it from B and C.
    """
    for name, x in (("time_decay", time_decay), ("time_first", time_first), ("k", k), ("v", v)):
        _check_float(name, x)
    if k.ndim != 3:
        raise ValueError(f"k must have shape [B, T, C], got {k.shape}")
    if v.shape != k.shape:
        raise ValueError(f"v must have the shape of k {k.shape}, got {v.shape}")
    if k.dtype != v.dtype:
        raise ValueError(f"k and v must have the same dtype, got {k.dtype} and {v.dtype}")
    B, T, C = k.shape
    if time_decay.shape != (C,) or time_first.shape != (C,):
        raise ValueError(
            f"time_decay and time_first must have shape (C,) = ({C},), got {time_decay.shape} and {time_first.shape}"
        )
    if B == 0 or T == 0 or C == 0:
        raise ValueError(f"wkv4_pallas needs non-empty inputs, got k.shape={k.shape}")
    _check_backend("wkv4_pallas", interpret, time_decay, time_first, k, v)

    if block_c is None:
        block_c = _default_block_c(B, C, interpret)
    elif block_c <= 0 or block_c & (block_c - 1):
        raise ValueError(f"block_c must be a positive power of two, got {block_c}")
    pad = (-C) % block_c
    if pad:
        # Padded channels are independent of the real ones (td=0, tf=0, k=v=0) and sliced off; autodiff of
        # pad/slice (outside the custom_vjp) drops their gradients.
        time_decay = jnp.pad(time_decay, (0, pad))
        time_first = jnp.pad(time_first, (0, pad))
        k = jnp.pad(k, ((0, 0), (0, 0), (0, pad)))
        v = jnp.pad(v, ((0, 0), (0, 0), (0, pad)))
    y = _wkv4(time_decay, time_first, k, v, int(block_c), bool(interpret))
    return y[..., :C] if pad else y


