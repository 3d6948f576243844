"""Running value normalisation, as upstream's ``ValueNorm`` (MAPPO/MAT).

Exponential moving averages of the targets' mean and mean square with
``beta = 0.99999`` and a debiasing term (like Adam's), a variance floor of
1e-2, updated once per minibatch with that minibatch's targets (all of them,
active or not, as upstream does). The critic predicts normalised values;
advantages and returns are computed on denormalised ones.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

BETA = 0.99999
EPSILON = 1e-5
VAR_FLOOR = 1e-2


@flax.struct.dataclass
class ValueNormState:
    running_mean: jax.Array  # []
    running_mean_sq: jax.Array  # []
    debiasing_term: jax.Array  # []


def init() -> ValueNormState:
    zero = jnp.zeros((), jnp.float32)
    return ValueNormState(zero, zero, zero)


def update(state: ValueNormState, targets: jax.Array, beta: float = BETA) -> ValueNormState:
    """Fold one batch of (unnormalised) targets, any shape, into the statistics."""
    return ValueNormState(
        running_mean=state.running_mean * beta + targets.mean() * (1.0 - beta),
        running_mean_sq=state.running_mean_sq * beta + (targets**2).mean() * (1.0 - beta),
        debiasing_term=state.debiasing_term * beta + (1.0 - beta),
    )


def mean_var(state: ValueNormState) -> tuple[jax.Array, jax.Array]:
    debias = jnp.maximum(state.debiasing_term, EPSILON)
    mean = state.running_mean / debias
    var = jnp.maximum(state.running_mean_sq / debias - mean**2, VAR_FLOOR)
    return mean, var


def normalize(state: ValueNormState, x: jax.Array) -> jax.Array:
    mean, var = mean_var(state)
    return (x - mean) / jnp.sqrt(var)


def denormalize(state: ValueNormState, x: jax.Array) -> jax.Array:
    mean, var = mean_var(state)
    return x * jnp.sqrt(var) + mean
