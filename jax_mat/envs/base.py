"""The multi-agent environment protocol every jax_mat environment implements.

Shapes are per environment; the runner vmaps over environments. ``N`` is the
number of agents, ``O`` the per-agent observation size, ``S`` the world-state
size and ``A`` the number of discrete actions (or the action dimension for
continuous control).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import chex
import flax.struct
import jax


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """Static description of an environment's arrays."""

    n_agents: int
    obs_dim: int
    state_dim: int
    action_dim: int
    discrete: bool
    max_episode_steps: int
    agent_id_in_obs: bool = False  # each observation already ends with the agent's one-hot id


@flax.struct.dataclass
class Timestep:
    """What an environment returns after ``reset`` or ``step``.

    With auto-reset (``envs.wrappers.AutoReset``), when ``done`` is true the
    observation fields already belong to the first step of the next episode,
    while ``reward``, ``done``, ``truncated`` and the ``episode_*`` fields
    describe the transition that ended the old one.

    Attributes:
      obs: ``[N, O]`` float32 per-agent observations.
      state: ``[S]`` float32 world state.
      avail: ``[N, A]`` float32 0/1 availability of each discrete action
        (all ones for continuous control).
      reward: ``[N]`` float32 reward of the last transition (shared reward
        repeated per agent).
      done: ``[]`` bool, the last transition ended the episode.
      truncated: ``[]`` bool, it ended by the time limit rather than by the task.
      active: ``[N]`` float32 1 if the agent is alive in ``obs``.
      episode_return: ``[]`` float32 return of the episode that just ended
        (meaningful where ``done``).
      episode_length: ``[]`` int32 its length in steps.
      won: ``[]`` bool whether it was won (always false where there is no win).
    """

    obs: chex.Array
    state: chex.Array
    avail: chex.Array
    reward: chex.Array
    done: chex.Array
    truncated: chex.Array
    active: chex.Array
    episode_return: chex.Array
    episode_length: chex.Array
    won: chex.Array


class MultiAgentEnv(Protocol):
    """A pure-functional multi-agent environment.

    ``step`` must auto-reset (wrap a raw environment in ``AutoReset``) so that
    a rollout is a plain ``lax.scan``.
    """

    spec: EnvSpec

    def reset(self, key: chex.PRNGKey) -> tuple[Any, Timestep]:
        ...

    def step(self, key: chex.PRNGKey, state: Any, actions: jax.Array) -> tuple[Any, Timestep]:
        """``actions``: ``[N]`` int32 (discrete) or ``[N, A]`` float32 (continuous)."""
        ...


class BatchedMultiAgentEnv(Protocol):
    """An environment that steps a whole batch of environments in one call.

    Host bridges (a pool of simulators in worker processes) implement this
    instead of ``MultiAgentEnv``: an ordered host callback cannot be vmapped,
    so the rollout (``training.rollout.reset_envs`` / ``step_envs``) calls
    these once per step with ``E``-leading arrays rather than vmapping
    ``reset``/``step``. ``step_batch`` auto-resets finished environments, with
    the same ``Timestep`` semantics as ``envs.wrappers.AutoReset``.
    """

    spec: EnvSpec

    def reset_batch(self, key: chex.PRNGKey, n_envs: int) -> tuple[Any, Timestep]:
        """``n_envs`` fresh environments; every timestep field gains a leading ``[E]`` axis."""
        ...

    def step_batch(self, key: chex.PRNGKey, state: Any, actions: jax.Array) -> tuple[Any, Timestep]:
        """``actions``: ``[E, N]`` int32 or ``[E, N, A]`` float32."""
        ...
