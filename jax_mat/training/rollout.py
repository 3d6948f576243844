"""Collecting experience: a ``lax.scan`` over time, environments vmapped.

The policy acts on the whole batch of environments at once (autoregressively
over agents inside ``act``); the environments step as one batch
(``MultiAgentEnv.step_batch``: ``step`` under ``vmap``, or a host bridge's one callback). Shapes:
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
    world_state: jax.Array  # [E, S] (the centralised critics' input)
    avail: jax.Array  # [E, N, A]
    active: jax.Array  # [E, N]
    actions: jax.Array  # [E, N] int32 or [E, N, A]
    logp: jax.Array  # [E, N, K]
    values: jax.Array  # [E, N] (normalised scale)
    reward: jax.Array  # [E, N]
    done: jax.Array  # [E]
    truncated: jax.Array  # [E] the episode ended by its time limit (or a restarted host env)
    won: jax.Array  # [E]
    episode_return: jax.Array  # [E]
    episode_length: jax.Array  # [E]


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

    def step(carry, step_key):
        env_state, ts = carry
        act_key, env_key = jax.random.split(step_key)
        actions, logp, values = policy.act(params, ts.obs, ts.avail, act_key, deterministic,
                                           world_state=ts.world_state)
        env_state, next_ts = env.step_batch(env_key, env_state, actions)
        transition = Transition(
            obs=ts.obs,
            world_state=ts.world_state,
            avail=ts.avail,
            active=ts.active,
            actions=actions,
            logp=logp,
            values=values,
            reward=next_ts.reward,
            done=next_ts.done,
            truncated=next_ts.truncated,
            won=next_ts.won,
            episode_return=next_ts.episode_return,
            episode_length=next_ts.episode_length,
        )
        return (env_state, next_ts), transition

    return jax.lax.scan(step, (env_state, timestep), jax.random.split(key, n_steps))


def episode_metrics(traj: Transition) -> dict[str, jax.Array]:
    """Means over the episodes that finished in ``traj`` (NaN if none did), and the count of
    environment steps whose observation or reward is not finite (physics blow-ups)."""
    done = traj.done.astype(jnp.float32)
    count = done.sum()
    safe = jnp.maximum(count, 1.0)
    nan_if_none = lambda x: jnp.where(count > 0, x, jnp.nan)
    finite = lambda x: jnp.isfinite(x).reshape(x.shape[0], x.shape[1], -1).all(-1)  # [T, E]
    return {
        "rollout/nonfinite_steps": (~(finite(traj.obs) & finite(traj.reward))).sum().astype(jnp.float32),
        "episodes": count,
        "episode/return": nan_if_none((traj.episode_return * done).sum() / safe),
        "episode/length": nan_if_none((traj.episode_length * done).sum() / safe),
        "episode/win_rate": nan_if_none((traj.won * done).sum() / safe),
    }


def random_actions(spec, key: jax.Array, avail: jax.Array) -> jax.Array:
    """Uniformly random actions for ``[E, N, A]`` ``avail``: a random available action ``[E, N]`` int32
    (discrete), or ``[E, N, A]`` uniform in ``[-1, 1]`` (continuous)."""
    if spec.discrete:
        return jax.random.categorical(key, jnp.where(avail > 0, 0.0, -jnp.inf)).astype(jnp.int32)
    return jax.random.uniform(key, avail.shape, minval=-1.0, maxval=1.0)


def make_random_rollout(env, n_steps: int):
    """Jitted ``(state, timestep, key) -> (state, timestep)`` running ``n_steps`` random valid steps."""

    def body(carry, key):
        state, timestep = carry
        action_key, env_key = jax.random.split(key)
        actions = random_actions(env.spec, action_key, timestep.avail)
        return env.step_batch(env_key, state, actions), None

    @jax.jit
    def rollout(state, timestep, key):
        return jax.lax.scan(body, (state, timestep), jax.random.split(key, n_steps))[0]

    return rollout
