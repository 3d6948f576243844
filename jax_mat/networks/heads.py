"""Action distributions of the MAT family, exactly as upstream builds them.

Discrete heads mask unavailable actions by setting their logits to ``-1e10``
(upstream's constant, not ``-inf``) before the softmax, for log-probabilities,
entropy and argmax alike. Continuous heads are diagonal Gaussians whose
standard deviation is ``0.5 * sigmoid(log_std)`` with ``log_std`` a free
vector; their log-probabilities and entropies are kept per action dimension
because the PPO loss clips each dimension's ratio separately.
"""

from __future__ import annotations

import distrax
import jax
import jax.numpy as jnp

MASKED_LOGIT = -1e10


def mask_logits(logits: jax.Array, avail: jax.Array | None) -> jax.Array:
    """``logits``, ``avail``: ``[..., A]``; unavailable entries become ``-1e10``."""
    if avail is None:
        return logits
    return jnp.where(avail > 0, logits, MASKED_LOGIT)


def categorical(logits: jax.Array, avail: jax.Array | None) -> distrax.Categorical:
    """A categorical over ``[..., A]`` masked logits."""
    return distrax.Categorical(logits=mask_logits(logits, avail))


def gaussian_std(log_std: jax.Array) -> jax.Array:
    """Upstream's standard deviation: ``0.5 * sigmoid(log_std)``, ``[A]``."""
    return 0.5 * jax.nn.sigmoid(log_std)


def gaussian(mean: jax.Array, log_std: jax.Array) -> distrax.Normal:
    """A per-dimension normal (not a joint ``MultivariateNormalDiag``): ``[..., A]``."""
    return distrax.Normal(mean, jnp.broadcast_to(gaussian_std(log_std), mean.shape))
