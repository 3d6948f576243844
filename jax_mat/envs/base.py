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
      world_state: ``[S]`` float32 world state (the centralised critics' input; JaxMARL's name).
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
    world_state: chex.Array
    avail: chex.Array
    reward: chex.Array
    done: chex.Array
    truncated: chex.Array
    active: chex.Array
    episode_return: chex.Array
    episode_length: chex.Array
    won: chex.Array


class MultiAgentEnv(Protocol):
    """A pure-functional multi-agent environment, and what the rollout asks of it.

    An environment implements ``reset`` and an auto-resetting ``step`` (wrap a raw environment in
    ``envs.wrappers.AutoReset``) so that a rollout is a plain ``lax.scan``. The other methods are
    capabilities with defaults that environments may override by subclassing this protocol:

    * ``reset_batch`` / ``step_batch``: ``E`` environments at once (``[E, ...]`` states and timesteps);
      by default ``reset``/``step`` under ``jax.vmap``. A host bridge steps its whole pool of simulators
      in one ordered callback, which cannot be vmapped, and so overrides these (``BatchedMultiAgentEnv``).
    * ``host_metrics()``: host-side counters logged with every update (a bridge's ``bridge/*``); none here.
    * ``host_error()``: the host error that stopped a jitted call, to report in one line; none here.
    * ``close()``: releases host resources (a bridge's worker processes); nothing here.
    """

    spec: EnvSpec

    def reset(self, key: chex.PRNGKey) -> tuple[Any, Timestep]:
        ...

    def step(self, key: chex.PRNGKey, state: Any, actions: jax.Array) -> tuple[Any, Timestep]:
        """``actions``: ``[N]`` int32 (discrete) or ``[N, A]`` float32 (continuous)."""
        ...

    def reset_batch(self, key: chex.PRNGKey, n_envs: int) -> tuple[Any, Timestep]:
        """``n_envs`` fresh environments; every state and timestep leaf gains a leading ``[E]`` axis."""
        return jax.vmap(self.reset)(jax.random.split(key, n_envs))

    def step_batch(self, key: chex.PRNGKey, state: Any, actions: jax.Array) -> tuple[Any, Timestep]:
        """Steps ``[E, ...]`` environments with ``[E, N]`` int32 or ``[E, N, A]`` float32 actions."""
        return jax.vmap(self.step)(jax.random.split(key, actions.shape[0]), state, actions)

    def host_metrics(self) -> dict[str, float]:
        return {}

    def host_error(self) -> Exception | None:
        return None

    def close(self) -> None:
        pass


class BatchedMultiAgentEnv(MultiAgentEnv, Protocol):
    """An environment that only steps a whole batch of environments in one call.

    Host bridges (a pool of simulators in worker processes) and multi-map SMAX (one group of
    environments per map) implement ``reset_batch``/``step_batch`` and not the single-environment
    ``reset``/``step``. ``step_batch`` auto-resets finished environments, with the same ``Timestep``
    semantics as ``envs.wrappers.AutoReset``.
    """

    def reset(self, key: chex.PRNGKey) -> tuple[Any, Timestep]:
        raise TypeError(f"{type(self).__name__} steps whole batches of environments: use reset_batch")

    def step(self, key: chex.PRNGKey, state: Any, actions: jax.Array) -> tuple[Any, Timestep]:
        raise TypeError(f"{type(self).__name__} steps whole batches of environments: use step_batch")
