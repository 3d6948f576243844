"""Environment wrappers.

``AutoReset`` turns a raw environment (whose ``step`` never resets) into the
auto-resetting ``MultiAgentEnv`` the runner scans over, and keeps the episode
statistics. It is the single place where episodes are reset.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import chex
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jax_mat.envs.base import EnvSpec, MultiAgentEnv, Timestep


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


def episode_totals(episode_return: jax.Array, episode_length: jax.Array, reward: jax.Array, done: jax.Array
                   ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The episode statistics after one step, kept the one way every auto-resetting environment keeps them.

    Args:
      episode_return, episode_length: ``[...]`` float32 / int32 totals of the running episodes before the step.
      reward: ``[..., N]`` the step's reward; the episode return sums agent 0's (the team reward where it is
        shared, not a sum over agents).
      done: ``[...]`` bool, the step ended the episode.
    Returns:
      ``(ended_return, ended_length, next_return, next_length)``: the totals including this step (what the
      timestep reports), and what the state carries on (zero where the episode ended).
    """
    ended_return = episode_return + reward[..., 0].astype(jnp.float32)
    ended_length = episode_length + 1
    next_return = jnp.where(done, 0.0, ended_return).astype(jnp.float32)
    next_length = jnp.where(done, 0, ended_length).astype(jnp.int32)
    return ended_return, ended_length, next_return, next_length


def _select(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    """Leaf-wise ``pred ? on_true : on_false`` that keeps ``on_false``'s dtypes."""
    return jax.tree.map(lambda t, f: jnp.where(pred, t, f).astype(f.dtype), on_true, on_false)


class AutoReset(MultiAgentEnv):
    """Resets a raw environment when an episode ends and reports its statistics.

    On the step where ``done`` is true the returned timestep's ``obs``,
    ``world_state``, ``avail`` and ``active`` (and the wrapper state) belong to the
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
        episode_return, episode_length, next_return, next_length = episode_totals(
            state.episode_return, state.episode_length, timestep.reward, done)
        next_state = AutoResetState(
            env_state=_select(done, reset_env_state, env_state),
            episode_return=next_return,
            episode_length=next_length,
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
        "world_state": timestep.world_state,
        "avail": timestep.avail,
        "active": timestep.active,
    }


@flax.struct.dataclass
class AgentFeaturesState:
    """State of ``AgentFeatures``: the raw environment's state and ``last_action`` ``[N, A]`` one-hot
    (all zero before an episode's first step)."""

    env_state: Any
    last_action: jax.Array


class AgentFeatures:
    """Appends the per-agent features of upstream MAT's StarCraft environment to a raw discrete environment.

    Upstream's ``StarCraft2Env`` (``obs_last_action=True``, ``obs_agent_id=True``) gives each agent the last
    action of every ally it sees, its own last action and its one-hot id. MAT has no positional embedding:
    the id is the only way its encoder and decoder tell agents apart. Each ``obs [N, O]`` becomes
    ``[N, O + (N - 1) * A + A + N]`` (with both options), in this order:

    * ``last_action``: the other allies' last actions ``[(N - 1) * A]`` (one-hot, in agent order without
      the agent itself; zero for an ally the agent does not see, where ``visibility`` says so), then its
      own last action ``[A]`` (zero while it is dead, as SMAC zeroes a dead agent's observation);
    * ``agent_id``: the one-hot id ``[N]`` (kept for the dead, as upstream does).

    ``visibility(env_state) -> [N, N]`` (1 where agent ``i`` sees ally ``j``) gates the allies' actions;
    without it the allies' block is left out. Raw in, raw out: wrap the result in ``AutoReset``.
    """

    def __init__(self, env: RawMultiAgentEnv, agent_id: bool = True, last_action: bool = True,
                 visibility: Any = None) -> None:
        if not env.spec.discrete:
            raise ValueError("AgentFeatures appends one-hot actions: it needs a discrete action space")
        self.env = env
        self.agent_id = agent_id
        self.last_action = last_action
        self.visibility = visibility if last_action else None
        n, a = env.spec.n_agents, env.spec.action_dim
        extra = (n if agent_id else 0) + ((a + (n - 1) * a * (visibility is not None)) if last_action else 0)
        self.spec = dataclasses.replace(env.spec, obs_dim=env.spec.obs_dim + extra,
                                        agent_id_in_obs=env.spec.agent_id_in_obs or agent_id)

    @property
    def unwrapped(self) -> RawMultiAgentEnv:
        """The raw environment under these features."""
        return self.env

    def reset(self, key: chex.PRNGKey) -> tuple[AgentFeaturesState, Timestep]:
        env_state, timestep = self.env.reset(key)
        n, a = self.env.spec.n_agents, self.env.spec.action_dim
        state = AgentFeaturesState(env_state, jnp.zeros((n, a), jnp.float32))
        return state, timestep.replace(obs=self._features(state, timestep))

    def step(self, key: chex.PRNGKey, state: AgentFeaturesState, actions: jax.Array
             ) -> tuple[AgentFeaturesState, Timestep]:
        env_state, timestep = self.env.step(key, state.env_state, actions)
        last = jax.nn.one_hot(jnp.asarray(actions, jnp.int32), self.env.spec.action_dim, dtype=jnp.float32)
        state = AgentFeaturesState(env_state, last)
        return state, timestep.replace(obs=self._features(state, timestep))

    def _features(self, state: AgentFeaturesState, timestep: Timestep) -> jax.Array:
        """``[N, O]`` -> ``[N, spec.obs_dim]``."""
        n, a = self.env.spec.n_agents, self.env.spec.action_dim
        parts = [timestep.obs]
        if self.last_action:
            if self.visibility is not None:
                # Row i: the allies j != i in order.
                others = np.array([[j for j in range(n) if j != i] for i in range(n)], np.int32).reshape(n, n - 1)
                seen = jnp.take_along_axis(self.visibility(state.env_state), others, axis=1)  # [N, N - 1]
                parts.append((state.last_action[others] * seen[..., None]).reshape(n, (n - 1) * a))
            parts.append(state.last_action * timestep.active[:, None])
        if self.agent_id:
            parts.append(jnp.eye(n, dtype=jnp.float32))
        return jnp.concatenate(parts, axis=-1).astype(jnp.float32)
