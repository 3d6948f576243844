"""Action distributions of the MAT family, exactly as upstream builds them.

Discrete heads mask unavailable actions by setting their logits to ``-1e10``
(upstream's constant, not ``-inf``) before the softmax, for log-probabilities,
entropy and argmax alike. Continuous heads are diagonal Gaussians whose
standard deviation is ``0.5 * sigmoid(log_std)`` with ``log_std`` a free
vector; their log-probabilities and entropies are kept per action dimension
because the PPO loss clips each dimension's ratio separately.

The two distributions are plain JAX (the interface of ``distrax.Categorical``
and ``distrax.Normal``: ``log_prob``, ``entropy``, ``mode``, ``sample(seed=)``,
with the same numbers and the same random draws): the log-softmax is computed
once and a log-probability is a gather, not a one-hot product. ``sample_with``
draws from noise made beforehand by ``sampling_noise``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

MASKED_LOGIT = -1e10
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def mask_logits(logits: jax.Array, avail: jax.Array | None) -> jax.Array:
    """``logits``, ``avail``: ``[..., A]``; unavailable entries become ``-1e10``."""
    if avail is None:
        return logits
    return jnp.where(avail > 0, logits, MASKED_LOGIT)


class Categorical(NamedTuple):
    """A categorical over the last axis; ``log_probs`` ``[..., A]`` are normalised."""

    log_probs: jax.Array

    def log_prob(self, value: jax.Array) -> jax.Array:
        """``value``: ``[...]`` integer actions -> ``[...]``."""
        return jnp.take_along_axis(self.log_probs, value[..., None].astype(jnp.int32), axis=-1)[..., 0]

    def entropy(self) -> jax.Array:
        probs = jnp.exp(self.log_probs)
        return -jnp.sum(jnp.where(probs == 0, 0.0, probs * self.log_probs), axis=-1)

    def mode(self) -> jax.Array:
        return jnp.argmax(self.log_probs, axis=-1).astype(jnp.int32)

    def sample(self, seed: jax.Array) -> jax.Array:
        return self.sample_with(jax.random.gumbel(seed, self.log_probs.shape, self.log_probs.dtype))

    def sample_with(self, noise: jax.Array) -> jax.Array:
        """A draw from standard Gumbel ``noise`` ``[..., A]`` (what ``jax.random.categorical`` does)."""
        return jnp.argmax(self.log_probs + noise, axis=-1).astype(jnp.int32)


class Normal(NamedTuple):
    """Independent normals, ``loc`` and ``scale`` ``[..., A]``; everything per dimension."""

    loc: jax.Array
    scale: jax.Array

    def log_prob(self, value: jax.Array) -> jax.Array:
        z = (value - self.loc) / self.scale
        return -0.5 * jnp.square(z) - (_HALF_LOG_2PI + jnp.log(self.scale))

    def entropy(self) -> jax.Array:
        return 0.5 + _HALF_LOG_2PI + jnp.log(self.scale)

    def mode(self) -> jax.Array:
        return self.loc

    def sample(self, seed: jax.Array) -> jax.Array:
        return self.sample_with(jax.random.normal(seed, self.loc.shape, self.loc.dtype))

    def sample_with(self, noise: jax.Array) -> jax.Array:
        """A draw from standard normal ``noise`` ``[..., A]``."""
        return self.loc + self.scale * noise


def sampling_noise(discrete: bool, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """The noise ``sample_with`` turns into a draw: standard Gumbel (discrete) or normal, ``shape + [A]``.

    Drawing it for all agents at once, before an autoregressive loop, keeps the
    random-number generator out of the loop body.
    """
    return jax.random.gumbel(key, shape) if discrete else jax.random.normal(key, shape)


def categorical(logits: jax.Array, avail: jax.Array | None) -> Categorical:
    """A categorical over ``[..., A]`` masked logits."""
    return Categorical(jax.nn.log_softmax(mask_logits(logits, avail), axis=-1))


def gaussian_std(log_std: jax.Array) -> jax.Array:
    """Upstream's standard deviation: ``0.5 * sigmoid(log_std)``, ``[A]``."""
    return 0.5 * jax.nn.sigmoid(log_std)


def gaussian(mean: jax.Array, log_std: jax.Array) -> Normal:
    """A per-dimension normal (not a joint ``MultivariateNormalDiag``): ``[..., A]``."""
    return Normal(mean, jnp.broadcast_to(gaussian_std(log_std), mean.shape))
