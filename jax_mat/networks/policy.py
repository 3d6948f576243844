"""The policy protocol shared by every network, and its input checks.

A ``Policy`` is a plain object built from an ``EnvSpec`` and a network
configuration; all its methods are pure functions of ``params`` and arrays,
batched over environments:

* ``init(key) -> params``
* ``act(params, obs, avail, key, deterministic) -> (actions, logp, values)``
  samples (or takes the mode of) every agent's action, autoregressively for
  the sequence models.
* ``evaluate(params, obs, actions, avail) -> (logp, entropy, values)``
  scores given actions in one teacher-forced pass.
* ``value(params, obs) -> values``: the critic alone (bootstrap values).

Shapes: ``obs`` ``[B, N, O]``; ``avail`` ``[B, N, A]`` (ignored for continuous
actions, may be ``None``); ``actions`` ``[B, N]`` int32 (discrete) or
``[B, N, A]`` float32 (continuous); ``logp`` and ``entropy`` ``[B, N, K]`` with
``K = 1`` for discrete and ``K = A`` for continuous actions (upstream clips the
ratio per action dimension); ``values`` ``[B, N]``.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from jax_mat.envs.base import EnvSpec

Params = Any


class Policy(Protocol):
    spec: EnvSpec

    def init(self, key: jax.Array) -> Params: ...

    def act(
        self, params: Params, obs: jax.Array, avail: jax.Array | None, key: jax.Array, deterministic: bool = False
    ) -> tuple[jax.Array, jax.Array, jax.Array]: ...

    def evaluate(
        self, params: Params, obs: jax.Array, actions: jax.Array, avail: jax.Array | None
    ) -> tuple[jax.Array, jax.Array, jax.Array]: ...

    def value(self, params: Params, obs: jax.Array) -> jax.Array: ...


def logp_dims(spec: EnvSpec) -> int:
    """``K``: the trailing size of ``logp`` and ``entropy``."""
    return 1 if spec.discrete else spec.action_dim


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_obs(spec: EnvSpec, obs) -> None:
    if obs.ndim != 3 or obs.shape[1:] != (spec.n_agents, spec.obs_dim):
        raise ValueError(
            f"obs must have shape [batch, {spec.n_agents} agents, {spec.obs_dim} obs], got {tuple(obs.shape)}"
        )


def check_avail(spec: EnvSpec, avail, batch: int) -> None:
    """Shape check always; the every-agent-has-an-action check where ``avail`` is concrete.

    Under ``jit`` the values are unknown at trace time; environments guarantee
    the invariant there (an agent always has its no-op), and the check runs on
    every concrete input a user passes directly.
    """
    if not spec.discrete:
        return
    if avail is None:
        raise ValueError("avail is required for discrete actions: shape [batch, agents, actions]")
    expected = (batch, spec.n_agents, spec.action_dim)
    if tuple(avail.shape) != expected:
        raise ValueError(f"avail must have shape {list(expected)} [batch, agents, actions], got {tuple(avail.shape)}")
    if _is_concrete(avail):
        empty = np.argwhere(~(np.asarray(avail) > 0).any(axis=-1))
        if empty.size:
            b, n = empty[0]
            raise ValueError(
                f"avail has no available action for agent {n} in batch row {b} "
                f"({len(empty)} agent rows in all): every agent needs at least one"
            )


def check_actions(spec: EnvSpec, actions, batch: int) -> None:
    if spec.discrete:
        expected = (batch, spec.n_agents)
        if tuple(actions.shape) != expected or not jnp.issubdtype(actions.dtype, jnp.integer):
            raise ValueError(
                f"discrete actions must be integers of shape {list(expected)} [batch, agents], "
                f"got {actions.dtype} {tuple(actions.shape)}"
            )
    else:
        expected = (batch, spec.n_agents, spec.action_dim)
        if tuple(actions.shape) != expected:
            raise ValueError(
                f"continuous actions must have shape {list(expected)} [batch, agents, action_dim], "
                f"got {tuple(actions.shape)}"
            )


def shift_actions(spec: EnvSpec, actions: jax.Array) -> jax.Array:
    """The decoder's input: agent ``i`` sees agent ``i - 1``'s action.

    Discrete: ``[B, N]`` int32 tokens, 0 the start token and ``1 + a`` action
    ``a``. Continuous: ``[B, N, A]`` with zeros for agent 0.
    """
    if spec.discrete:
        start = jnp.zeros_like(actions[:, :1])
        return jnp.concatenate([start, actions[:, :-1] + 1], axis=1)
    return jnp.concatenate([jnp.zeros_like(actions[:, :1]), actions[:, :-1]], axis=1)


def start_tokens(spec: EnvSpec, batch: int) -> jax.Array:
    """Agent 0's decoder input: ``[B]`` zeros (discrete) or ``[B, A]`` zeros."""
    if spec.discrete:
        return jnp.zeros((batch,), jnp.int32)
    return jnp.zeros((batch, spec.action_dim), jnp.float32)


def next_token(spec: EnvSpec, action: jax.Array) -> jax.Array:
    """The next agent's decoder input from this agent's action."""
    return action + 1 if spec.discrete else action
