"""The RWKV-4 WKV forms (``jax_mat.ops.wkv`` picks among them): the reference scan, the one-step and segment
forms that carry a ``WKV4State``, and the chunked form. Running-max arithmetic as upstream's CUDA kernel.

Shapes: ``B`` batch, ``T`` sequence (the agents), ``C`` channels.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jax_mat.ops.wkv_shared import CHUNK, NEG_INF, acc_dtype, check_float, check_same, time_major


class WKV4State(NamedTuple):
    """Running numerator ``aa``, denominator ``bb`` and exponent ``pp``, each ``[B, C]``."""

    aa: jax.Array
    bb: jax.Array
    pp: jax.Array


def wkv4_init_state(batch: int, channels: int, dtype=jnp.float32) -> WKV4State:
    """The state before the first token: ``aa = bb = 0``, ``pp = -1e38``."""
    zeros = jnp.zeros((batch, channels), dtype)
    return WKV4State(zeros, zeros, jnp.full((batch, channels), NEG_INF, dtype))


def check_wkv4(op, time_decay, time_first, k, v, seq_axis: bool) -> None:
    ndim = 3 if seq_axis else 2
    layout = "[B, T, C]" if seq_axis else "[B, C]"
    if k.ndim != ndim:
        raise ValueError(f"{op}: k must be {layout}, got shape {tuple(k.shape)}")
    check_same(op, "shape", {"k": k, "v": v})
    c = k.shape[-1]
    if time_decay.shape != (c,) or time_first.shape != (c,):
        raise ValueError(
            f"{op}: time_decay and time_first must be [C] = ({c},), "
            f"got {tuple(time_decay.shape)} and {tuple(time_first.shape)}"
        )
    for name, x in (("time_decay", time_decay), ("time_first", time_first), ("k", k), ("v", v)):
        check_float(name, x)
    check_same(op, "dtype", {"k": k, "v": v})
    check_same(op, "dtype", {"time_decay": time_decay, "time_first": time_first})


def _wkv4_output(u, state: WKV4State, k, v):
    """``y_t`` from the state before token ``t`` (with the bonus ``u`` on the token itself)."""
    aa, bb, pp = state
    ww = u + k
    p = jnp.maximum(pp, ww)
    e1, e2 = jnp.exp(pp - p), jnp.exp(ww - p)
    return (e1 * aa + e2 * v) / (e1 * bb + e2)


def _wkv4_absorb(w, state: WKV4State, k, v) -> WKV4State:
    """The state after token ``t``: the old one decayed by ``e^w``, plus ``e^k v``."""
    aa, bb, pp = state
    ww = w + pp
    p = jnp.maximum(ww, k)
    e1, e2 = jnp.exp(ww - p), jnp.exp(k - p)
    return WKV4State(e1 * aa + e2 * v, e1 * bb + e2, p)


def _wkv4_step(w, u, k, v, state: WKV4State):
    """One token in the accumulation dtype; ``w = -exp(time_decay)`` already applied."""
    return _wkv4_output(u, state, k, v), _wkv4_absorb(w, state, k, v)


def _normalised_pair(a, b):
    """``(e^(a - m), e^(b - m), m)`` with ``m = max(a, b)``, from one ``exp``: one of the two is ``e^0 = 1``."""
    z = jnp.exp(-jnp.abs(a - b))
    a_wins = a >= b
    return jnp.where(a_wins, 1.0, z), jnp.where(a_wins, z, 1.0), jnp.maximum(a, b)


def _wkv4_step_one_exp(w, u, k, v, state: WKV4State):
    """``_wkv4_step`` with two ``exp`` instead of four (``_normalised_pair``); equal up to rounding.

    ``act`` runs this (``wkv4_step`` and ``wkv4_segment``); the reference scan
    keeps upstream's operation order.
    """
    aa, bb, pp = state
    e1, e2, _ = _normalised_pair(pp, u + k)
    y = (e1 * aa + e2 * v) / (e1 * bb + e2)
    e1, e2, p = _normalised_pair(w + pp, k)
    return y, WKV4State(e1 * aa + e2 * v, e1 * bb + e2, p)


def _wkv4_merge(a: WKV4State, b: WKV4State) -> WKV4State:
    """One state holding the tokens of both ``a`` and ``b`` (each already decayed to the same position)."""
    p = jnp.maximum(a.pp, b.pp)
    e1, e2 = jnp.exp(a.pp - p), jnp.exp(b.pp - p)
    return WKV4State(e1 * a.aa + e2 * b.aa, e1 * a.bb + e2 * b.bb, p)


def _wkv4_decay(state: WKV4State, log_decay) -> WKV4State:
    """``state`` carried ``log_decay / w`` positions on with no token added (only its exponent moves)."""
    return WKV4State(state.aa, state.bb, state.pp + log_decay)


def _wkv4_params(time_decay, time_first, k):
    """The accumulation dtype, ``w = -exp(time_decay)`` and ``u`` in it."""
    acc = acc_dtype(k.dtype, time_decay.dtype)
    return acc, -jnp.exp(time_decay.astype(acc)), time_first.astype(acc)


# Sequences this short are unrolled into straight-line code. XLA's CPU runtime runs a loop body on one
# thread, one iteration after another; unrolled, the few steps fuse into whole-batch kernels. Where that
# pays and where it stops paying: docs/benchmarks.md ("Figures kept out of the code").
FULL_UNROLL_MAX_T = 6


def _unroll(t: int) -> int:
    """``lax.scan``'s ``unroll`` for a sequence of ``t`` steps."""
    return t if 1 <= t <= FULL_UNROLL_MAX_T else 1


def _wkv4_scan_from(w, u, k, v, state: WKV4State, step_fn=_wkv4_step):
    """``k``, ``v`` ``[B, T, C]`` continuing from ``state``: ``y`` ``[B, T, C]`` and the state after ``T``."""

    def step(state, kv):
        y, state = step_fn(w, u, kv[0], kv[1], state)
        return state, y

    state, y = jax.lax.scan(step, state, time_major(k, v), unroll=_unroll(k.shape[1]))
    return jnp.swapaxes(y, 0, 1), state


def _check_wkv4_state(op, state, k) -> None:
    expected = (k.shape[0], k.shape[-1])
    shapes = [tuple(s.shape) for s in state] if isinstance(state, tuple) else type(state).__name__
    if not isinstance(state, WKV4State) or any(s != expected for s in shapes):
        raise ValueError(f"{op}: state must be a WKV4State of three [B, C] = {expected} arrays, got {shapes}")


def wkv4_step(time_decay, time_first, k_t, v_t, state: WKV4State):
    """One agent: ``k_t``, ``v_t`` ``[B, C]``; returns ``y_t`` ``[B, C]`` and the next state."""
    check_wkv4("wkv4_step", time_decay, time_first, k_t, v_t, seq_axis=False)
    acc, w, u = _wkv4_params(time_decay, time_first, k_t)
    state = WKV4State(*(s.astype(acc) for s in state))
    y, state = _wkv4_step_one_exp(w, u, k_t.astype(acc), v_t.astype(acc), state)
    return y.astype(k_t.dtype), state


def wkv4_segment(time_decay, time_first, k, v, state: WKV4State):
    """``k``, ``v`` ``[B, S, C]`` continuing from ``state``; returns ``y`` ``[B, S, C]`` and the state after them.

    ``wkv4`` of a sequence equals ``wkv4_segment`` of its pieces in order, each
    starting from the state the previous one returned (the first from
    ``wkv4_init_state``).
    """
    check_wkv4("wkv4_segment", time_decay, time_first, k, v, seq_axis=True)
    _check_wkv4_state("wkv4_segment", state, k)
    acc, w, u = _wkv4_params(time_decay, time_first, k)
    state = WKV4State(*(s.astype(acc) for s in state))
    y, state = _wkv4_scan_from(w, u, k.astype(acc), v.astype(acc), state, _wkv4_step_one_exp)
    return y.astype(k.dtype), state


def wkv4_scan(time_decay, time_first, k, v):
    """The reference: ``lax.scan`` of the one-step form over ``T``."""
    acc, w, u = _wkv4_params(time_decay, time_first, k)
    y, _ = _wkv4_scan_from(w, u, k.astype(acc), v.astype(acc), wkv4_init_state(k.shape[0], k.shape[2], acc))
    return y.astype(k.dtype)


def wkv4_chunked(time_decay, time_first, k, v, chunk: int = CHUNK):
    """``wkv4`` in ``L + T / L`` sequential steps instead of ``T`` (``L = min(chunk, T)``).

    ``T`` is cut into chunks of ``L`` positions (the last one zero-padded;
    padding only follows real positions, so it changes nothing they see).
    Three passes, all in the running-max form, so keys of any size stay exact:

    1. each chunk's own recurrence from the empty state, all chunks at once
       (``L`` steps over ``[L, B, T / L, C]``), keeping the state before each
       position;
    2. the state entering each chunk (``T / L`` steps over ``[B, C]``): the
       entering state decayed by ``L`` positions, merged with the chunk's own
       final state;
    3. elementwise at every position: the entering state decayed to it, merged
       with the chunk-local state before it, then the output.
    """
    if chunk < 1:
        raise ValueError(f"wkv4_chunked: chunk must be >= 1, got {chunk}")
    acc, w, u = _wkv4_params(time_decay, time_first, k)
    b, t, c = k.shape
    size = min(chunk, t)
    n = -(-t // size)
    pad = ((0, 0), (0, n * size - t), (0, 0))
    kc, vc = (jnp.moveaxis(jnp.pad(x.astype(acc), pad).reshape(b, n, size, c), 2, 0) for x in (k, v))

    def local(state, kv):
        return _wkv4_absorb(w, state, *kv), state

    empty = WKV4State(*(s.reshape(b, n, c) for s in wkv4_init_state(b * n, c, acc)))
    own, before_local = jax.lax.scan(local, empty, (kc, vc))

    def across(state, chunk_own):
        return _wkv4_merge(_wkv4_decay(state, size * w), chunk_own), state

    _, entering = jax.lax.scan(across, wkv4_init_state(b, c, acc), WKV4State(*(jnp.swapaxes(s, 0, 1) for s in own)))
    entering = WKV4State(*(jnp.swapaxes(s, 0, 1)[None] for s in entering))  # [1, B, n, C]
    offset = jnp.arange(size, dtype=acc)[:, None, None, None]
    before = _wkv4_merge(_wkv4_decay(entering, offset * w), before_local)
    y = _wkv4_output(u, before, kc, vc)  # [L, B, n, C]
    return jnp.moveaxis(y, 0, 2).reshape(b, n * size, c)[:, :t].astype(k.dtype)
