"""RWKV-6 (and RWKV-5) WKV operator as Pallas GPU kernels (forward and backward, ``jax.custom_vjp``).

``wkv6_pallas(r, k, v, w [B,T,C], u [H,N]) -> y [B,T,C]`` with ``C = H*N``: per batch b and head h a matrix state
``S`` (N x N, key index j, value index i) starting at 0::

    y_t[i]  = sum_j r_t[j] * (u[j] k_t[j] v_t[i] + S[j, i])
    S[j, i] = S[j, i] * d_t[j] + k_t[j] v_t[i],        d_t = exp(-exp(w_t))   (w is the raw decay)

(upstream ``wkv6_cuda.cu``). ``wkv5_pallas`` is the same operator with a static per-channel decay
``time_decay [H,N]`` broadcast over (B, T) (RWKV-5 "Eagle"); its gradient is the sum over (B, T) of the
``w`` gradient, obtained by autodiff of the broadcast.

Kernels (all float32 accumulation; float64 when the inputs are float64, for interpret-mode ``check_grads``)
------------------------------------------------------------------------------------------------------
Every state entry ``S[j, i]`` evolves independently (outer-product update, per-row decay); only the
reductions couple entries, so each kernel partitions the state along the axis it does *not* reduce over:

* forward, grid ``(B, H, N // block_n)``: a program owns value columns ``S[:, i-block]`` (y sums over j).
* backward pass 1 (forward in time), grid ``(B, H, N // block_n)``: a program owns key rows ``S[j-block, :]``
  and computes ``dr_t = u k_t (v_t.g_t) + S_t g_t``, ``du = sum_t r_t k_t (v_t.g_t)`` and the residual
  ``F_t = r_t * (S_t g_t)`` (float32).
* backward pass 2 (reverse in time): the adjoint ``Sg_t = dL/dS_t = r_t g_t^T + diag(d_t) Sg_{t+1}``.
  dk and dw sum over i, dv over j: with ``block_n == N`` one kernel, grid ``(B, H)``, holds the full N x N
  adjoint; with ``block_n < N`` two kernels, grid ``(B, H, N // block_n)``, hold key rows (dk, dw) and value
  columns (dv) and each recomputes its part of ``Sg``. ``dk_t = r_t u (v_t.g_t) + Sg_{t+1} v_t``,
  ``dv_t = (sum_j r_t u k_t) g_t + Sg_{t+1}^T k_t``, and with ``K_t = k_t * (Sg_{t+1} v_t)``::

      dL/dlog d_t = sum_{tau < t < s} (pair terms) = sum_{s>t} F_s - sum_{tau>=t} K_tau
      dw_t = dL/dlog d_t * (-exp(w_t))

  (the same reversed-cumsum identity chunked RWKV-6 kernels use; it is a difference of sums, so its float32
  error grows with T like any prefix sum). ``w_{T-1}`` gets an exact zero gradient, and ``w_0`` is set to
  exactly zero (``S_0 = 0``).

The state lives in registers: N x block_n floats per program (N x N = 16 KiB for N = 64 in the fused pass 2).
N must be a power of two for the Triton backend; other N are zero-padded per head by the wrapper.

Backend choice: Triton (``pltriton.CompilerParams``), deliberately
-----------------------------------------------------------------
Same reasoning as ``wkv4.py``: a sequential per-step recurrence over small vectors and an N x N register tile
(N = 64 upstream), with a dynamic time index and no matmul worth a tensor core (each step is a rank-1 update
and two mat-vecs). Triton runs it on Ampere and Hopper; Mosaic GPU (``compiler_params=None``) needs Hopper, a
warpgroup-multiple transfer size (fails to lower for odd T such as 27 here) and, through ``pl.pallas_call``, is
deprecated in favour of ``plgpu.kernel``. The Triton backend is deprecated from jax 0.11.0 (still lowers; a
warning is expected). Checked as ``wkv4.py`` says: jax 0.10.2 and 0.11.2, interpret mode and ``cuda`` lowering on a
CPU machine. On CPU only ``interpret=True`` runs.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from pallas_kernels.wkv4 import _acc_dtype, _check_backend, _check_float, _compiler_params

__all__ = ["wkv6_pallas", "wkv5_pallas"]


# ----------------------------------------------------------------------------------------------------------------
# kernels
# ----------------------------------------------------------------------------------------------------------------


def _fwd_kernel(r_ref, k_ref, v_ref, w_ref, u_ref, y_ref, *, acc):
    """Program (b, h, i-block). r/k/w refs [T, N], v/y refs [T, bn], u ref [N]; state S [N, bn]."""
    n_steps, n = r_ref.shape
    bn = v_ref.shape[1]
    u = u_ref[...].astype(acc)

    def body(t, s):
        rt = r_ref[t, :].astype(acc)
        kt = k_ref[t, :].astype(acc)
        vt = v_ref[t, :].astype(acc)
        dt = jnp.exp(-jnp.exp(w_ref[t, :].astype(acc)))
        y = jnp.sum(rt * u * kt) * vt + jnp.sum(rt[:, None] * s, axis=0)
        y_ref[t, :] = y.astype(y_ref.dtype)
        return s * dt[:, None] + kt[:, None] * vt[None, :]

    lax.fori_loop(0, n_steps, body, jnp.zeros((n, bn), acc))


def _bwd1_kernel(r_ref, k_ref, v_ref, w_ref, u_ref, g_ref, gr_ref, f_ref, gu_ref, *, acc):
    """Pass 1, forward in time. Program (b, h, j-block). r/k/w/gr/f refs [T, bn], v/g refs [T, N], u/gu [bn];
    state S [bn, N] (rows j of the forward state)."""
    n_steps, bn = r_ref.shape
    n = v_ref.shape[1]
    u = u_ref[...].astype(acc)

    def body(t, carry):
        s, gu = carry
        rt = r_ref[t, :].astype(acc)
        kt = k_ref[t, :].astype(acc)
        vt = v_ref[t, :].astype(acc)
        gt = g_ref[t, :].astype(acc)
        dt = jnp.exp(-jnp.exp(w_ref[t, :].astype(acc)))
        vg = jnp.sum(vt * gt)
        sg = jnp.sum(s * gt[None, :], axis=1)  # (S_t g_t)[j]
        gr_ref[t, :] = (u * kt * vg + sg).astype(gr_ref.dtype)
        f_ref[t, :] = (rt * sg).astype(f_ref.dtype)
        gu = gu + rt * kt * vg
        return s * dt[:, None] + kt[:, None] * vt[None, :], gu

    _, gu = lax.fori_loop(0, n_steps, body, (jnp.zeros((bn, n), acc), jnp.zeros((bn,), acc)))
    gu_ref[...] = gu.astype(gu_ref.dtype)


def _bwd2_kernel(r_ref, k_ref, v_ref, w_ref, u_ref, g_ref, f_ref, gk_ref, gv_ref, gw_ref, *, acc):
    """Pass 2, reverse in time. Program (b, h). All sequence refs [T, N], u [N]; adjoint state Sg [N, N]."""
    n_steps, n = r_ref.shape
    u = u_ref[...].astype(acc)

    def body(i, carry):
        sg, cum = carry  # sg = dL/dS_{t+1};  cum = sum_{s>t} F_s - sum_{tau>t} K_tau
        t = n_steps - 1 - i
        rt = r_ref[t, :].astype(acc)
        kt = k_ref[t, :].astype(acc)
        vt = v_ref[t, :].astype(acc)
        gt = g_ref[t, :].astype(acc)
        ew = jnp.exp(w_ref[t, :].astype(acc))
        dt = jnp.exp(-ew)
        vg = jnp.sum(vt * gt)
        sv = jnp.sum(sg * vt[None, :], axis=1)  # (Sg_{t+1} v_t)[j]
        sk = jnp.sum(sg * kt[:, None], axis=0)  # (Sg_{t+1}^T k_t)[i]
        gk_ref[t, :] = (rt * u * vg + sv).astype(gk_ref.dtype)
        gv_ref[t, :] = (jnp.sum(rt * u * kt) * gt + sk).astype(gv_ref.dtype)
        kk = kt * sv
        cum = cum - kk
        # dL/dlog d_t = cum;  dlog d_t / dw_t = -exp(w_t).  S_0 = 0, so no pair straddles t = 0: write an exact
        # zero there instead of the rounding residue of (total F - total K).
        gw_ref[t, :] = jnp.where(t == 0, 0.0, -cum * ew).astype(gw_ref.dtype)
        cum = cum + f_ref[t, :].astype(acc)
        sg = sg * dt[:, None] + rt[:, None] * gt[None, :]
        return sg, cum

    lax.fori_loop(0, n_steps, body, (jnp.zeros((n, n), acc), jnp.zeros((n,), acc)))


def _bwd2_rows_kernel(r_ref, k_ref, v_ref, w_ref, u_ref, g_ref, f_ref, gk_ref, gw_ref, *, acc):
    """Pass 2 split by key rows (dk, dw sum over i only). Program (b, h, j-block). r/k/w/f/gk/gw refs [T, bn],
    u [bn], v/g [T, N]; adjoint rows Sg [bn, N]."""
    n_steps, bn = r_ref.shape
    n = v_ref.shape[1]
    u = u_ref[...].astype(acc)

    def body(i, carry):
        sg, cum = carry
        t = n_steps - 1 - i
        rt = r_ref[t, :].astype(acc)
        kt = k_ref[t, :].astype(acc)
        vt = v_ref[t, :].astype(acc)
        gt = g_ref[t, :].astype(acc)
        ew = jnp.exp(w_ref[t, :].astype(acc))
        sv = jnp.sum(sg * vt[None, :], axis=1)
        gk_ref[t, :] = (rt * u * jnp.sum(vt * gt) + sv).astype(gk_ref.dtype)
        cum = cum - kt * sv
        gw_ref[t, :] = jnp.where(t == 0, 0.0, -cum * ew).astype(gw_ref.dtype)
        cum = cum + f_ref[t, :].astype(acc)
        return sg * jnp.exp(-ew)[:, None] + rt[:, None] * gt[None, :], cum

    lax.fori_loop(0, n_steps, body, (jnp.zeros((bn, n), acc), jnp.zeros((bn,), acc)))


def _bwd2_cols_kernel(r_ref, k_ref, w_ref, u_ref, g_ref, gv_ref, *, acc):
    """Pass 2 split by value columns (dv sums over j only). Program (b, h, i-block). r/k/w refs [T, N], u [N],
    g/gv [T, bn]; adjoint columns Sg [N, bn]."""
    n_steps, n = r_ref.shape
    bn = g_ref.shape[1]
    u = u_ref[...].astype(acc)

    def body(i, sg):
        t = n_steps - 1 - i
        rt = r_ref[t, :].astype(acc)
        kt = k_ref[t, :].astype(acc)
        gt = g_ref[t, :].astype(acc)
        dt = jnp.exp(-jnp.exp(w_ref[t, :].astype(acc)))
        gv_ref[t, :] = (jnp.sum(rt * u * kt) * gt + jnp.sum(sg * kt[:, None], axis=0)).astype(gv_ref.dtype)
        return sg * dt[:, None] + rt[:, None] * gt[None, :]

    lax.fori_loop(0, n_steps, body, jnp.zeros((n, bn), acc))


# ----------------------------------------------------------------------------------------------------------------
# pallas_call wrappers (inputs already padded: N a power of two, C = H * N)
# ----------------------------------------------------------------------------------------------------------------


def _num_warps(elems: int) -> int:
    return max(1, min(8, elems // 1024))  # ~1 KiB of state per warp (32 floats per thread)


def _forward(r, k, v, w, u, bn, interpret):
    B, T, C = r.shape
    H, N = u.shape
    acc = _acc_dtype(r.dtype, k.dtype, v.dtype, w.dtype, u.dtype)
    head = pl.BlockSpec((None, T, N), lambda b, h, i: (b, 0, h))
    col = pl.BlockSpec((None, T, bn), lambda b, h, i: (b, 0, h * (N // bn) + i))
    uspec = pl.BlockSpec((None, N), lambda b, h, i: (h, 0))
    return pl.pallas_call(
        functools.partial(_fwd_kernel, acc=acc),
        out_shape=jax.ShapeDtypeStruct((B, T, C), r.dtype),
        grid=(B, H, N // bn),
        in_specs=[head, head, col, head, uspec],
        out_specs=col,
        compiler_params=_compiler_params(_num_warps(N * bn)),
        interpret=interpret,
        name="wkv6_forward",
    )(r, k, v, w, u)


def _backward(r, k, v, w, u, g, bn, interpret):
    B, T, C = r.shape
    H, N = u.shape
    acc = _acc_dtype(r.dtype, k.dtype, v.dtype, w.dtype, u.dtype)
    nb = N // bn
    head3 = pl.BlockSpec((None, T, N), lambda b, h, i: (b, 0, h))
    rows3 = pl.BlockSpec((None, T, bn), lambda b, h, j: (b, 0, h * nb + j))
    urows = pl.BlockSpec((None, bn), lambda b, h, j: (h, j))
    gu_spec = pl.BlockSpec((None, None, bn), lambda b, h, j: (b, h, j))
    gr, f, gu = pl.pallas_call(
        functools.partial(_bwd1_kernel, acc=acc),
        out_shape=[
            jax.ShapeDtypeStruct((B, T, C), r.dtype),
            jax.ShapeDtypeStruct((B, T, C), acc),
            jax.ShapeDtypeStruct((B, H, N), acc),
        ],
        grid=(B, H, nb),
        in_specs=[rows3, rows3, head3, rows3, urows, head3],
        out_specs=[rows3, rows3, gu_spec],
        compiler_params=_compiler_params(_num_warps(N * bn)),
        interpret=interpret,
        name="wkv6_backward_fwd_pass",
    )(r, k, v, w, u, g)

    if bn == N:  # one program per (b, h) holds the whole adjoint: dk, dv and dw in one pass
        head2 = pl.BlockSpec((None, T, N), lambda b, h: (b, 0, h))
        uspec2 = pl.BlockSpec((None, N), lambda b, h: (h, 0))
        gk, gv, gw = pl.pallas_call(
            functools.partial(_bwd2_kernel, acc=acc),
            out_shape=[
                jax.ShapeDtypeStruct((B, T, C), k.dtype),
                jax.ShapeDtypeStruct((B, T, C), v.dtype),
                jax.ShapeDtypeStruct((B, T, C), w.dtype),
            ],
            grid=(B, H),
            in_specs=[head2, head2, head2, head2, uspec2, head2, head2],
            out_specs=[head2, head2, head2],
            compiler_params=_compiler_params(_num_warps(N * N)),
            interpret=interpret,
            name="wkv6_backward_reverse_pass",
        )(r, k, v, w, u, g, f)
    else:  # more, smaller programs: key-row blocks for dk, dw and value-column blocks for dv (Sg recomputed)
        gk, gw = pl.pallas_call(
            functools.partial(_bwd2_rows_kernel, acc=acc),
            out_shape=[
                jax.ShapeDtypeStruct((B, T, C), k.dtype),
                jax.ShapeDtypeStruct((B, T, C), w.dtype),
            ],
            grid=(B, H, nb),
            in_specs=[rows3, rows3, head3, rows3, urows, head3, rows3],
            out_specs=[rows3, rows3],
            compiler_params=_compiler_params(_num_warps(N * bn)),
            interpret=interpret,
            name="wkv6_backward_reverse_rows",
        )(r, k, v, w, u, g, f)
        ufull = pl.BlockSpec((None, N), lambda b, h, i: (h, 0))
        gv = pl.pallas_call(
            functools.partial(_bwd2_cols_kernel, acc=acc),
            out_shape=jax.ShapeDtypeStruct((B, T, C), v.dtype),
            grid=(B, H, nb),
            in_specs=[head3, head3, head3, ufull, rows3],
            out_specs=rows3,
            compiler_params=_compiler_params(_num_warps(N * bn)),
            interpret=interpret,
            name="wkv6_backward_reverse_cols",
        )(r, k, w, u, g)
    return gr, gk, gv, gw, gu.sum(0).astype(u.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _wkv6(r, k, v, w, u, bn, interpret):
    return _forward(r, k, v, w, u, bn, interpret)


def _wkv6_fwd(r, k, v, w, u, bn, interpret):
    return _forward(r, k, v, w, u, bn, interpret), (r, k, v, w, u)


def _wkv6_bwd(bn, interpret, res, g):
    return _backward(*res, g, bn, interpret)


_wkv6.defvjp(_wkv6_fwd, _wkv6_bwd)


def _default_block_n(B: int, H: int, N: int, interpret: bool) -> int:
    if interpret:
        return N
    bn = N
    # Split the state over programs when (B, H) alone gives too few to fill the GPU.
    while bn > 16 and B * H * (N // bn) < 1024:
        bn //= 2
    return bn


def _check_inputs(fn, r, k, v, w, u):
    for name, x in (("r", r), ("k", k), ("v", v), ("w", w), ("u", u)):
        _check_float(name, x)
    if r.ndim != 3:
        raise ValueError(f"{fn}: r must have shape [B, T, C], got {r.shape}")
    for name, x in (("k", k), ("v", v)):
        if x.shape != r.shape:
            raise ValueError(f"{fn}: {name} must have the shape of r {r.shape}, got {x.shape}")
    if not (r.dtype == k.dtype == v.dtype):
        raise ValueError(f"{fn}: r, k and v must share one dtype, got {r.dtype}, {k.dtype}, {v.dtype}")
    if u.ndim != 2:
        raise ValueError(f"{fn}: u must have shape [H, N], got {u.shape}")
    B, T, C = r.shape
    H, N = u.shape
    if H * N != C:
        raise ValueError(f"{fn}: u has shape [H, N] = {u.shape} but C = {C} != H * N = {H * N}")
    if B == 0 or T == 0 or C == 0:
        raise ValueError(f"{fn}: needs non-empty inputs, got r.shape={r.shape}")


def wkv6_pallas(r, k, v, w, u, *, interpret: bool = False, block_n: int | None = None):
    """RWKV-6 WKV: ``y [B,T,C]`` from ``r, k, v, w [B,T,C]`` (``w`` the raw data-dependent decay; the state is
    multiplied by ``exp(-exp(w))``) and the bonus ``u [H,N]`` (``time_faaaa``), ``C = H*N``.

    ``r, k, v`` share one dtype (float32 or bfloat16; float16/float64 also accepted), which ``y`` has; ``w`` and
    ``u`` may have their own float dtypes. Accumulation is float32. Differentiable in all five arguments
    (``jax.custom_vjp`` with Pallas backward kernels); gradients in the arguments' dtypes. ``interpret=True``
    runs the Pallas interpreter (the only mode on CPU). ``block_n`` (power of two dividing N) sets the state
    columns/rows per program (``block_n < N`` splits every kernel, the reverse pass into a key-row and a
    value-column kernel); the default splits only when B * H is too small to fill a GPU.
    """
    _check_inputs("wkv6_pallas", r, k, v, w, u)
    if w.shape != r.shape:
        raise ValueError(f"wkv6_pallas: w must have the shape of r {r.shape}, got {w.shape}")
    _check_backend("wkv6_pallas", interpret, r, k, v, w, u)
    B, T, C = r.shape
    H, N = u.shape
    Np = pl.next_power_of_2(N)
    if Np != N:
        # Zero-pad each head to a power of two (Triton vectors): padded k = v = r = 0 keep the padded state
        # and outputs at zero; autodiff of pad/slice drops their gradients.
        def pad(x):
            x = x.reshape(B, T, H, N)
            return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, Np - N))).reshape(B, T, H * Np)

        r, k, v, w = pad(r), pad(k), pad(v), pad(w)
        u = jnp.pad(u, ((0, 0), (0, Np - N)))
    if block_n is None:
        block_n = _default_block_n(B, H, Np, interpret)
    elif block_n <= 0 or block_n & (block_n - 1) or Np % block_n:
        raise ValueError(f"block_n must be a power of two dividing N = {Np}, got {block_n}")
    y = _wkv6(r, k, v, w, u, int(block_n), bool(interpret))
    if Np != N:
        y = y.reshape(B, T, H, Np)[..., :N].reshape(B, T, C)
    return y


def wkv5_pallas(r, k, v, time_decay, u, *, interpret: bool = False, block_n: int | None = None):
    """RWKV-5 WKV: ``wkv6_pallas`` with a static decay ``time_decay [H,N]`` (state multiplied by
    ``exp(-exp(time_decay))`` every step) broadcast over (B, T). Gradient w.r.t. ``time_decay`` = sum over
    (B, T) of the per-step decay gradient."""
    _check_inputs("wkv5_pallas", r, k, v, time_decay, u)
    if time_decay.shape != u.shape:
        raise ValueError(f"wkv5_pallas: time_decay must have the shape of u {u.shape}, got {time_decay.shape}")
    _check_backend("wkv5_pallas", interpret, r, k, v, time_decay, u)
    B, T, C = r.shape
    w = jnp.broadcast_to(time_decay.reshape(1, 1, C), (B, T, C))
    return wkv6_pallas(r, k, v, w, u, interpret=interpret, block_n=block_n)
