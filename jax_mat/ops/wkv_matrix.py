"""The RWKV-5 and RWKV-6 WKV forms (``jax_mat.ops.wkv`` picks among them): a multi-head ``N x N`` state per
head; the reference scan, the one-step and segment forms, and the chunked form (a causal ``L x L`` product
within each chunk, the state carried only across chunks). v5 is v6 with a decay static over time.

Shapes: ``B`` batch, ``T`` sequence (the agents), ``C = H * N`` channels in ``H`` heads of size ``N``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jax_mat.ops.wkv_shared import CHUNK, acc_dtype, check_float, check_same, time_major


def wkv6_init_state(batch: int, n_head: int, head_size: int, dtype=jnp.float32) -> jax.Array:
    """The zero state ``[B, H, N, N]`` (key index, then value index)."""
    return jnp.zeros((batch, n_head, head_size, head_size), dtype)


wkv5_init_state = wkv6_init_state


def check_matrix(op, r, k, v, w, u, w_name: str, seq_axis: bool) -> None:
    ndim = 3 if seq_axis else 2
    layout = "[B, T, C]" if seq_axis else "[B, C]"
    if r.ndim != ndim:
        raise ValueError(f"{op}: r must be {layout}, got shape {tuple(r.shape)}")
    seq = {"r": r, "k": k, "v": v}
    if w_name == "w":
        seq["w"] = w
    check_same(op, "shape", seq)
    if u.ndim != 2 or u.shape[0] * u.shape[1] != r.shape[-1]:
        raise ValueError(f"{op}: u must be [H, N] with H * N = C = {r.shape[-1]}, got shape {tuple(u.shape)}")
    if w_name != "w" and w.shape != u.shape:
        raise ValueError(f"{op}: {w_name} must be [H, N] = {tuple(u.shape)} like u, got shape {tuple(w.shape)}")
    for name, x in (*seq.items(), (w_name, w), ("u", u)):
        check_float(name, x)
    check_same(op, "dtype", seq)


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


def _matrix_scan(r, k, v, log_w, u, state=None):
    """``log_w``: ``[B, T, C]`` or ``[C]`` raw decay (``decay = exp(-exp(log_w))``); ``state``: the one before ``T``
    (``None``: zero). Returns ``y`` ``[B, T, C]`` and the state after ``T`` (in the accumulation dtype)."""
    acc = acc_dtype(r.dtype, log_w.dtype, u.dtype)
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

    state = wkv6_init_state(b, n_head, head_size, acc) if state is None else state.astype(acc)
    state, y = jax.lax.scan(step, state, time_major(*seq))
    return jnp.swapaxes(y, 0, 1).reshape(b, t, c).astype(r.dtype), state


def _matrix_chunked(op: str, r, k, v, log_w, u, chunk: int = CHUNK):
    """``_matrix_scan`` from the zero state in ``T / L`` sequential steps instead of ``T`` (``L = min(chunk, T)``).

    Within a chunk, with ``c_t = sum_{s<t} log decay_s`` (per key channel, so
    ``c_t - c_{s+1} <= 0`` and every factor below is at most 1), the state
    before ``t`` is the entering state decayed by ``e^{c_t}`` plus
    ``sum_{s<t} e^{c_t - c_{s+1}} k_s v_s^T``. So each chunk's output is a
    causal ``L x L`` product (all chunks at once), the bonus term, and the
    entering state read through ``r_t e^{c_t}``; only the state entering each
    chunk is carried sequentially. Padding after the last position has
    ``r = k = v = 0`` and decay 1, so it changes nothing.
    """
    if chunk < 1:
        raise ValueError(f"{op}: chunk must be >= 1, got {chunk}")
    acc = acc_dtype(r.dtype, log_w.dtype, u.dtype)
    n_head, head_size = u.shape
    b, t, c = r.shape
    size = min(chunk, t)
    n = -(-t // size)
    log_decay = -jnp.exp(log_w.astype(acc))
    if log_decay.ndim == 1:
        log_decay = jnp.broadcast_to(log_decay, r.shape)

    def chunks(x):  # [B, T, C] -> [B, n, L, H, N]
        x = jnp.pad(x.astype(acc), ((0, 0), (0, n * size - t), (0, 0)))
        return x.reshape(b, n, size, n_head, head_size)

    r, k, v, log_decay = (chunks(x) for x in (r, k, v, log_decay))
    u = u.astype(acc)
    inclusive = jnp.cumsum(log_decay, axis=2)  # c_{t+1}
    exclusive = inclusive - log_decay  # c_t
    causal = jnp.arange(size)[:, None] > jnp.arange(size)[None, :]  # [t, s]: s < t
    gap = exclusive[:, :, :, None] - inclusive[:, :, None, :]  # [B, n, t, s, H, N]
    weights = jnp.exp(jnp.where(causal[None, None, :, :, None, None], gap, -jnp.inf))
    scores = jnp.sum(r[:, :, :, None] * k[:, :, None, :] * weights, axis=-1)  # [B, n, t, s, H]
    hi = jax.lax.Precision.HIGHEST
    y = jnp.einsum("bntsh,bnshj->bnthj", scores, v, precision=hi)
    y = y + jnp.sum(r * u * k, axis=-1, keepdims=True) * v
    if n > 1:
        total = inclusive[:, :, -1]  # [B, n, H, N]: log decay over the whole chunk
        own = jnp.einsum("bnshi,bnshj->bnhij", k * jnp.exp(total[:, :, None] - inclusive), v, precision=hi)

        def across(state, x):
            chunk_total, chunk_own = x
            return jnp.exp(chunk_total)[..., None] * state + chunk_own, state

        init = wkv6_init_state(b, n_head, head_size, acc)
        _, entering = jax.lax.scan(across, init, (jnp.moveaxis(total, 1, 0), jnp.moveaxis(own, 1, 0)))
        entering = jnp.moveaxis(entering, 0, 1)  # [B, n, H, N, N]: the state before each chunk
        y = y + jnp.einsum("bnthi,bnhij->bnthj", r * jnp.exp(exclusive), entering, precision=hi)
    return y.reshape(b, n * size, c)[:, :t]


def _matrix_one_step(r_t, k_t, v_t, log_w, u, state):
    """``log_w``: ``[B, C]`` (v6) or ``[C]`` (v5) raw decay."""
    acc = acc_dtype(r_t.dtype, log_w.dtype, u.dtype)
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
    return _matrix_scan(r, k, v, w, u)[0]


def wkv6_chunked(r, k, v, w, u, chunk: int = CHUNK):
    """``wkv6`` by chunks of ``chunk`` positions (``_matrix_chunked``); equal to ``wkv6_scan`` up to rounding."""
    return _matrix_chunked("wkv6_chunked", r, k, v, w, u, chunk).astype(r.dtype)


def wkv6_segment(r, k, v, w, u, state):
    """``[B, S, C]`` positions continuing from ``state`` ``[B, H, N, N]``; returns ``y`` and the state after them."""
    check_matrix("wkv6_segment", r, k, v, w, u, "w", seq_axis=True)
    _check_state("wkv6_segment", state, r.shape[0], u)
    return _matrix_scan(r, k, v, w, u, state)


def wkv6_step(r_t, k_t, v_t, w_t, u, state):
    """One agent: ``r_t, k_t, v_t, w_t`` ``[B, C]``, state ``[B, H, N, N]`` -> ``y_t`` ``[B, C]``, state."""
    check_matrix("wkv6_step", r_t, k_t, v_t, w_t, u, "w", seq_axis=False)
    _check_state("wkv6_step", state, r_t.shape[0], u)
    return _matrix_one_step(r_t, k_t, v_t, w_t, u, state)


def wkv5_scan(r, k, v, time_decay, u):
    return _matrix_scan(r, k, v, time_decay.reshape(-1), u)[0]


def wkv5_chunked(r, k, v, time_decay, u, chunk: int = CHUNK):
    """``wkv5`` by chunks (``_matrix_chunked`` with the static decay)."""
    return _matrix_chunked("wkv5_chunked", r, k, v, time_decay.reshape(-1), u, chunk).astype(r.dtype)


def wkv5_segment(r, k, v, time_decay, u, state):
    """``wkv6_segment`` with the static decay ``time_decay`` ``[H, N]``."""
    check_matrix("wkv5_segment", r, k, v, time_decay, u, "time_decay", seq_axis=True)
    _check_state("wkv5_segment", state, r.shape[0], u)
    return _matrix_scan(r, k, v, time_decay.reshape(-1), u, state)


def wkv5_step(r_t, k_t, v_t, time_decay, u, state):
    """One agent of ``wkv5``: like ``wkv6_step`` with the static decay ``time_decay`` ``[H, N]``."""
    check_matrix("wkv5_step", r_t, k_t, v_t, time_decay, u, "time_decay", seq_axis=False)
    _check_state("wkv5_step", state, r_t.shape[0], u)
    return _matrix_one_step(r_t, k_t, v_t, time_decay.reshape(-1), u, state)
