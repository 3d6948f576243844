"""Environment wrappers.

``AutoReset`` turns a raw environment (whose ``step`` never resets) into the
auto-resetting ``MultiAgentEnv`` the runner scans over, and keeps the episode
statistics. It is the single place where episodes are reset.
"""

from __future__ import annotations

from typing import Any, Protocol

import chex
import flax.struct
import jax
import jax.numpy as jnp

from jax_mat.envs.base import EnvSpec, Timestep


class RawMultiAgentEnv(Protocol):
    """An environment whose ``step`` does not reset.

    Its timesteps carry ``reward``, ``done``, ``truncated`` and ``won`` of the
    transition; ``episode_return`` and ``episode_length`` are ignored.
    """

    spec: EnvSpec

    def reset(self, key: chex.PRNGKey) -> tuple[Any, Timestep]:
        ...

    def step(self, key: chex.PRNGKey, state: Any, actions: jax.Array) -> tuple[Any, Timestep]:
        ...


@flax.struct.dataclass
class AutoResetState:
    """State of ``AutoReset``.

    Attributes:
      env_state: the raw environment's state.
      episode_return: ``[]`` float32 shared reward summed over the running episode.
      episode_length: ``[]`` int32 steps taken in the running episode.
    """

    env_state: Any
    episode_return: jax.Array
    episode_length: jax.Array


def _strongly_typed(tree: Any) -> Any:
    """Drops weak types (JaxMARL's reset makes a few), so the state that ``step``
    returns has the same types as the one ``reset`` returned and a jitted
    ``step`` is not compiled twice."""
    return jax.tree.map(lambda x: jnp.asarray(x, dtype=x.dtype), tree)


def _select(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    """Leaf-wise ``pred ? on_true : on_false`` that keeps ``on_false``'s dtypes."""
    return jax.tree.map(lambda t, f: jnp.where(pred, t, f).astype(f.dtype), on_true, on_false)


class AutoReset:
    """Resets a raw environment when an episode ends and reports its statistics.

    On the step where ``done`` is true the returned timestep's ``obs``,
    ``state``, ``avail`` and ``active`` (and the wrapper state) belong to the
    first step of a fresh episode, while ``reward``, ``done``, ``truncated``,
    ``won``, ``episode_return`` and ``episode_length`` describe the episode
    that just ended. Where ``done`` is false, ``episode_return`` and
    ``episode_length`` hold the running episode's totals so far and ``won`` is
    false.

    The episode return is the sum of agent 0's reward (``reward[0]``): for
    shared-reward environments that is the team reward, not a sum over agents.

    Pure functions of their inputs: use under ``jax.jit``, ``jax.vmap`` and
    ``lax.scan``. Each ``step`` also computes a reset (selected per
    environment), as any vmapped auto-reset must.
    """

    def __init__(self, env: RawMultiAgentEnv) -> None:
        self.env = env
        self.spec = env.spec

    @property
    def unwrapped(self) -> RawMultiAgentEnv:
        """The raw environment."""
        return self.env

    def reset(self, key: chex.PRNGKey) -> tuple[AutoResetState, Timestep]:
        """Starts an episode; its timestep has zero episode statistics."""
        env_state, timestep = self.env.reset(key)
        state = AutoResetState(
            env_state=_strongly_typed(env_state),
            episode_return=jnp.zeros((), jnp.float32),
            episode_length=jnp.zeros((), jnp.int32),
        )
        return state, self._with_stats(timestep, state.episode_return, state.episode_length, timestep.done)

    def step(
        self, key: chex.PRNGKey, state: AutoResetState, actions: jax.Array
    ) -> tuple[AutoResetState, Timestep]:
        """Steps the environment and starts a new episode where one ended."""
        step_key, reset_key = jax.random.split(key)
        env_state, timestep = self.env.step(step_key, state.env_state, actions)
        reset_env_state, reset_timestep = self.env.reset(reset_key)
        done = timestep.done
        episode_return = state.episode_return + timestep.reward[0].astype(jnp.float32)
        episode_length = state.episode_length + 1
        next_state = AutoResetState(
            env_state=_select(done, reset_env_state, env_state),
            episode_return=jnp.where(done, 0.0, episode_return).astype(jnp.float32),
            episode_length=jnp.where(done, 0, episode_length).astype(jnp.int32),
        )
        observed = _select(done, _observation_fields(reset_timestep), _observation_fields(timestep))
        timestep = timestep.replace(**observed)
        return next_state, self._with_stats(timestep, episode_return, episode_length, done)

    @staticmethod
    def _with_stats(
        timestep: Timestep, episode_return: jax.Array, episode_length: jax.Array, done: jax.Array
    ) -> Timestep:
        """Puts the episode totals in ``timestep``; ``won`` only counts where ``done``."""
        return timestep.replace(
            episode_return=episode_return,
            episode_length=episode_length,
            won=jnp.logical_and(timestep.won, done),
        )


def _observation_fields(timestep: Timestep) -> dict[str, jax.Array]:
    """The fields that describe the current observation (replaced on reset)."""
    return {
        "obs": timestep.obs,
        "state": timestep.state,
        "avail": timestep.avail,
        "active": timestep.active,
    }
