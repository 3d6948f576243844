"""Collecting experience: a ``lax.scan`` over time, environments vmapped.

The policy acts on the whole batch of environments at once (autoregressively
over agents inside ``act``); the environments step under ``vmap``. Shapes:
``T`` steps, ``E`` environments, ``N`` agents.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from jax_mat.envs.base import MultiAgentEnv, Timestep
from jax_mat.networks.policy import Policy


@flax.struct.dataclass
class Transition:
    """One step of experience, ``[E, ...]`` (``[T, E, ...]`` once stacked).

    ``obs``, ``avail`` and ``active`` are what the agents acted on; ``reward``
    and ``done`` what followed; ``won`` and ``episode_*`` are the finished
    episode's statistics where ``done``.
    """

    obs: jax.Array  # [E, N, O]
    avail: jax.Array  # [E, N, A]
    active: jax.Array  # [E, N]
    actions: jax.Array  # [E, N] int32 or [E, N, A]
    logp: jax.Array  # [E, N, K]
    values: jax.Array  # [E, N] (normalised scale)
    reward: jax.Array  # [E, N]
    done: jax.Array  # [E]
    won: jax.Array  # [E]
    episode_return: jax.Array  # [E]
    episode_length: jax.Array  # [E]


def reset_envs(env: MultiAgentEnv, key: jax.Array, n_envs: int) -> tuple[Any, Timestep]:
    return jax.vmap(env.reset)(jax.random.split(key, n_envs))


def collect(
    env: MultiAgentEnv,
    policy: Policy,
    params: Any,
    env_state: Any,
    timestep: Timestep,
    key: jax.Array,
    n_steps: int,
    deterministic: bool = False,
) -> tuple[tuple[Any, Timestep], Transition]:
    """Run ``n_steps`` of every environment; returns the final state and ``[T, E, ...]`` transitions."""
    n_envs = timestep.obs.shape[0]

    def step(carry, step_key):
        env_state, ts = carry
        act_key, env_key = jax.random.split(step_key)
        actions, logp, values = policy.act(params, ts.obs, ts.avail, act_key, deterministic)
        env_state, next_ts = jax.vmap(env.step)(jax.random.split(env_key, n_envs), env_state, actions)
        transition = Transition(
            obs=ts.obs,
            avail=ts.avail,
            active=ts.active,
            actions=actions,
            logp=logp,
            values=values,
            reward=next_ts.reward,
            done=next_ts.done,
            won=next_ts.won,
            episode_return=next_ts.episode_return,
            episode_length=next_ts.episode_length,
        )
        return (env_state, next_ts), transition

    return jax.lax.scan(step, (env_state, timestep), jax.random.split(key, n_steps))


def episode_metrics(traj: Transition) -> dict[str, jax.Array]:
    """Means over the episodes that finished in ``traj`` (NaN if none did)."""
    done = traj.done.astype(jnp.float32)
    count = done.sum()
    safe = jnp.maximum(count, 1.0)
    nan_if_none = lambda x: jnp.where(count > 0, x, jnp.nan)
    return {
        "episodes": count,
        "episode/return": nan_if_none((traj.episode_return * done).sum() / safe),
        "episode/length": nan_if_none((traj.episode_length * done).sum() / safe),
        "episode/win_rate": nan_if_none((traj.won * done).sum() / safe),
    }


def make_random_rollout(env, n_envs: int, n_steps: int):
    """Jitted ``(state, timestep, key) -> (state, timestep)`` running ``n_steps`` random valid steps."""

    def body(carry, key):
        state, timestep = carry
        action_key, env_key = jax.random.split(key)
        logits = jnp.where(timestep.avail > 0, 0.0, -jnp.inf)
        actions = jax.random.categorical(action_key, logits).astype(jnp.int32)
        return jax.vmap(env.step)(jax.random.split(env_key, n_envs), state, actions), None

    @jax.jit
    def rollout(state, timestep, key):
        return jax.lax.scan(body, (state, timestep), jax.random.split(key, n_steps))[0]

    return rollout
