"""The layers MAT, MARWKV and the MLP baselines share, written for XLA's CPU backend with upstream's numbers.

Upstream MAT's building blocks to float32 precision: orthogonal initialisation (gain ``sqrt(2)`` before a
GELU, 0.01 for output heads), zero biases, LayerNorm with eps 1e-5 and exact erf GELU; multi-head attention
with a causal mask and a key/value cache for one query position at a time; the Gaussian head's ``log_std``
initialiser; and torch's GroupNorm (RWKV v5/v6). Same parameters as ``nn.Dense`` / ``nn.LayerNorm``, in
faster forms (docs/benchmarks.md measures them): LayerNorm has a hand-written backward pass, a LayerNorm's
affine map can be folded into the next ``Dense``'s kernel, attention runs on ``[B * H, N, E]`` operands
and the cache is stored that way.

Shapes: ``B`` batch, ``N`` positions (agents), ``D`` width, ``H`` heads, ``E = D // H``.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jax_mat.networks import initializers

RELU_GAIN = math.sqrt(2.0)
HEAD_GAIN = 0.01
LN_EPS = 1e-5


def orthogonal(gain: float, n_fused: int = 1):
    """Orthogonal init (``initializers.orthogonal``); a fused ``[in, k * out]`` kernel gets ``k`` independent blocks."""
    base = initializers.orthogonal(gain)

    def init(key, shape, dtype=jnp.float32):
        if n_fused == 1:
            return base(key, shape, dtype)
        d_in, d_out = shape
        keys = jax.random.split(key, n_fused)
        return jnp.concatenate([base(k, (d_in, d_out // n_fused), dtype) for k in keys], axis=1)

    return init


class Dense(nn.Module):
    """``nn.Dense`` with the same parameters (``kernel`` ``[in, out]``, ``bias`` ``[out]``).

    ``in_affine=(scale, shift)`` applies the layer to ``x * scale + shift`` by
    folding the affine map into the kernel and bias
    (``x @ (scale[:, None] * W) + (shift @ W + b)``): for a LayerNorm right
    before the layer on inputs that need no gradient (the observations), the
    backward pass then skips the ``[..., in]``-sized gradient of the
    normalised input.
    """

    features: int
    gain: float
    n_fused: int = 1
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, *, in_affine: tuple[jax.Array, jax.Array] | None = None) -> jax.Array:
        kernel = self.param("kernel", orthogonal(self.gain, self.n_fused), (x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,)) if self.use_bias else None
        if in_affine is not None:
            scale, shift = in_affine
            shifted_bias = shift @ kernel
            bias = shifted_bias if bias is None else bias + shifted_bias
            kernel = scale[:, None] * kernel
        return _linear(x, kernel, bias)


def _linear(x: jax.Array, kernel: jax.Array, bias: jax.Array | None) -> jax.Array:
    """``x @ kernel + bias`` with the leading axes flattened into one (a plain 2-D matmul)."""
    y = jnp.dot(x.reshape(-1, x.shape[-1]), kernel)
    if bias is not None:
        y = y + bias
    return y.reshape(*x.shape[:-1], kernel.shape[-1])


def dense(features: int, gain: float, n_fused: int = 1, use_bias: bool = True, name: str | None = None) -> Dense:
    return Dense(features, gain, n_fused, use_bias, name=name)


def standardize(x: jax.Array) -> jax.Array:
    """``(x - mean) / sqrt(var + eps)`` over the last axis (two-pass variance, as torch)."""
    centred = x - jnp.mean(x, axis=-1, keepdims=True)
    return centred * jax.lax.rsqrt(jnp.mean(centred * centred, axis=-1, keepdims=True) + LN_EPS)


@jax.custom_vjp
def layer_norm_fn(x: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
    """LayerNorm over the last axis with a hand-written backward pass.

    Autodiff of the forward pass keeps several ``x``-sized intermediates and
    materialises broadcasts of the per-row statistics; the backward here saves
    only the normalised input and the per-row inverse deviation and computes
    ``dx = inv * (g' - mean(g') - xhat * mean(g' * xhat))`` with ``g' = g * scale``.
    """
    return _layer_norm_fwd(x, scale, bias)[0]


def _layer_norm_fwd(x, scale, bias):
    centred = x - jnp.mean(x, axis=-1, keepdims=True)
    inv = jax.lax.rsqrt(jnp.mean(centred * centred, axis=-1, keepdims=True) + LN_EPS)
    xhat = centred * inv
    return xhat * scale + bias, (xhat, inv, scale)


def _layer_norm_bwd(res, g):
    xhat, inv, scale = res
    gs = g * scale
    dx = inv * (gs - jnp.mean(gs, axis=-1, keepdims=True) - xhat * jnp.mean(gs * xhat, axis=-1, keepdims=True))
    axes = tuple(range(g.ndim - 1))
    return dx, jnp.sum(g * xhat, axis=axes), jnp.sum(g, axis=axes)


layer_norm_fn.defvjp(_layer_norm_fwd, _layer_norm_bwd)


class LayerNorm(nn.Module):
    """``nn.LayerNorm(epsilon=1e-5)`` with the same parameters (``scale``, ``bias``), on ``layer_norm_fn``.

    ``affine=False`` returns the standardised input and ``(scale, bias)``
    instead, for ``Dense(..., in_affine=...)``.
    """

    @nn.compact
    def __call__(self, x: jax.Array, *, affine: bool = True):
        d = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (d,))
        bias = self.param("bias", nn.initializers.zeros, (d,))
        if not affine:
            return standardize(x), (scale, bias)
        return layer_norm_fn(x, scale, bias)


def layer_norm(name: str | None = None) -> LayerNorm:
    return LayerNorm(name=name)


def gelu(x: jax.Array) -> jax.Array:
    """Exact GELU as torch computes it, ``x / 2 * (1 + erf(x / sqrt(2)))`` (cheaper than flax's erfc form)."""
    return 0.5 * x * (1.0 + jax.lax.erf(x * (1.0 / math.sqrt(2.0))))


def split_heads(x: jax.Array, n_head: int) -> jax.Array:
    """``[..., D]`` -> ``[..., H, E]``."""
    return x.reshape(*x.shape[:-1], n_head, x.shape[-1] // n_head)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None) -> jax.Array:
    """Scaled dot-product attention.

    Args:
      q: ``[B, L, H, E]``; k, v: ``[B, M, H, E]``; mask: ``[L, M]``, true
        where attention is allowed.
    Returns:
      ``[B, L, H * E]``.

    Batch and heads are folded into one leading axis (``[B * H, L, E]``, a
    no-op for one head) so both products are plain batched matmuls; XLA's
    CPU backend runs the four-index einsum with transposes around it.
    """
    b, l, h, e = q.shape
    fold = lambda t: jnp.swapaxes(t, 1, 2).reshape(b * h, t.shape[1], e)
    scores = jnp.einsum("ble,bme->blm", fold(q) * (1.0 / math.sqrt(e)), fold(k))
    if mask is not None:
        scores = jnp.where(mask, scores, -jnp.inf)
    out = jnp.einsum("blm,bme->ble", jax.nn.softmax(scores, axis=-1), fold(v))
    return jnp.swapaxes(out.reshape(b, h, l, e), 1, 2).reshape(b, l, h * e)


def cache_write(cache: jax.Array, x: jax.Array, i: jax.Array) -> jax.Array:
    """Position ``i`` of a key or value cache ``[B * H, N, E]`` := ``x`` ``[B, H, E]``."""
    return jax.lax.dynamic_update_index_in_dim(cache, x.reshape(cache.shape[0], cache.shape[2]), i, axis=1)


def cache_attention(q: jax.Array, keys: jax.Array, values: jax.Array, visible: jax.Array) -> jax.Array:
    """One query position against a key/value cache.

    Args:
      q: ``[B, H, E]``; keys, values: ``[B * H, N, E]``; visible: ``[N]`` bool.
    Returns:
      ``[B, H * E]``.

    The cache layout is what the two batched mat-vec products read in place;
    with ``[B, N, H, E]`` XLA's CPU backend copies the whole cache into a
    transposed layout on every decoding step.
    """
    b, _, e = q.shape
    q = q.reshape(keys.shape[0], e) * (1.0 / math.sqrt(e))
    scores = jnp.where(visible, jnp.einsum("be,bne->bn", q, keys), -jnp.inf)
    out = jnp.einsum("bn,bne->be", jax.nn.softmax(scores, axis=-1), values)
    return out.reshape(b, -1)


def causal_mask(n: int) -> jax.Array:
    """``[N, N]`` lower-triangular (self included)."""
    return jnp.tril(jnp.ones((n, n), dtype=bool))


def log_std_init(zero_std: bool):
    """The Gaussian head's ``log_std`` initialiser: ones, as upstream builds it (std ``0.5 * sigmoid(1)``,
    about 0.37), or zeros after upstream's ``zero_std()``, which its Bi-DexHands runner calls (std 0.25)."""
    return nn.initializers.zeros if zero_std else nn.initializers.ones


class GroupNorm(nn.Module):
    """``torch.nn.GroupNorm`` over the last axis of ``[..., C]`` (``num_groups`` contiguous groups)."""

    num_groups: int
    epsilon: float
    scale_init: Any = nn.initializers.ones

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", self.scale_init, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        g = x.reshape(*x.shape[:-1], self.num_groups, c // self.num_groups)
        g = g.astype(jnp.promote_types(g.dtype, jnp.float32))  # statistics in float32 at least
        mean = g.mean(-1, keepdims=True)
        var = jnp.square(g - mean).mean(-1, keepdims=True)
        y = ((g - mean) * jax.lax.rsqrt(var + self.epsilon)).reshape(x.shape)
        return (y * scale + bias).astype(x.dtype)
