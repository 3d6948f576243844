"""``HostBatch`` over SMAC's ``StarCraft2Env`` API (one object per environment).

What the adapter relies on, as SMAC defines it (``smac.env.StarCraft2Env``):

* ``get_env_info()`` -> ``{"n_agents", "obs_shape", "state_shape", "n_actions",
  "episode_limit"}``; works before the first ``reset`` (SC2 is not launched yet).
* ``reset()`` starts an episode (the first call launches StarCraft II);
  ``get_obs()`` is a list of ``N`` observations ``[O]``, ``get_state()`` the
  global state ``[S]``, ``get_avail_actions()`` ``N`` lists of ``A`` 0/1 flags.
* SMAC's action order: 0 no-op, 1 stop, 2-5 move north, south, east, west,
  ``6 + j`` attack (or, for a medivac, heal) unit ``j``. A dead agent's only
  available action is the no-op, so ``avail[:, 0]`` is 1 exactly for the dead:
  ``active = 1 - avail[:, 0]``.
* ``step(actions)`` takes ``N`` ints and returns ``(reward, terminated, info)``
  with ``info["battle_won"]`` on every normal step. On an SC2 protocol error it
  restarts StarCraft II itself and returns ``(0, True, {})`` without
  ``battle_won``: that episode ended by an accident, so it is truncated, as is
  one that reaches ``episode_limit`` (SMAC flags that with
  ``info["episode_limit"]`` only when ``continuing_episode`` is set, so the step
  count is compared too).

The policy acts in SMAC's action space directly; nothing is reordered here.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from jax_mat.host.worker import as_shaped, resolve

DEFAULT_ENV_FACTORY = "smac.env:StarCraft2Env"


def open_smac_batch(
    n_envs: int,
    seed: int,
    map_name: str,
    env_factory: str = DEFAULT_ENV_FACTORY,
    env_kwargs: Mapping[str, Any] | None = None,
    obs_agent_id: bool = False,
) -> "SmacBatch":
    """``n_envs`` environments ``resolve(env_factory)(map_name=..., seed=seed + i, **env_kwargs)``;
    ``obs_agent_id`` appends each agent's one-hot id to its observation."""
    make = resolve(env_factory)
    envs = [make(map_name=map_name, seed=seed + i, **dict(env_kwargs or {})) for i in range(n_envs)]
    return SmacBatch(envs, name=f"{env_factory} map {map_name}", obs_agent_id=obs_agent_id)


class SmacBatch:
    """``k`` ``StarCraft2Env``-API environments stepped one after another; see the module docstring."""

    def __init__(self, envs: Sequence[Any], name: str, obs_agent_id: bool = False):
        self.envs = list(envs)
        self.name = name
        env_info = self.envs[0].get_env_info()
        self.n_agents = int(env_info["n_agents"])
        self.smac_obs_dim = int(np.prod(env_info["obs_shape"]))
        self.obs_agent_id = obs_agent_id
        self.obs_dim = self.smac_obs_dim + (self.n_agents if obs_agent_id else 0)
        self.state_dim = int(np.prod(env_info["state_shape"]))
        self.n_actions = int(env_info["n_actions"])
        self.episode_limit = int(env_info["episode_limit"])
        self._episode_steps = np.zeros(len(self.envs), np.int64)

    def info(self) -> dict[str, Any]:
        return {
            "n_envs": len(self.envs),
            "n_agents": self.n_agents,
            "obs_dim": self.obs_dim,
            "state_dim": self.state_dim,
            "action_dim": self.n_actions,
            "discrete": True,
            "max_episode_steps": self.episode_limit,
            "agent_id_in_obs": self.obs_agent_id,
        }

    def reset(self) -> dict[str, np.ndarray]:
        for env in self.envs:
            env.reset()
        self._episode_steps[:] = 0
        return self._stack([self._observe(i) for i in range(len(self.envs))])

    def step(self, actions: np.ndarray) -> dict[str, np.ndarray]:
        """``actions``: ``[k, N]`` int32 in SMAC's action order."""
        observed, rewards, done, truncated, won = [], [], [], [], []
        for i, env in enumerate(self.envs):
            reward, terminated, info = env.step([int(a) for a in actions[i]])
            self._episode_steps[i] += 1
            terminated = bool(terminated)
            battle_won = bool(info.get("battle_won", False)) if terminated else False
            accident = "battle_won" not in info
            out_of_time = bool(info.get("episode_limit", False)) or self._episode_steps[i] >= self.episode_limit
            done.append(terminated)
            won.append(battle_won)
            truncated.append(terminated and not battle_won and (accident or out_of_time))
            rewards.append(np.full(self.n_agents, float(reward), np.float32))
            if terminated:
                env.reset()
                self._episode_steps[i] = 0
            observed.append(self._observe(i))
        arrays = self._stack(observed)
        arrays.update(
            reward=np.stack(rewards),
            done=np.array(done, np.bool_),
            truncated=np.array(truncated, np.bool_),
            won=np.array(won, np.bool_),
        )
        return arrays

    def close(self) -> None:
        for env in self.envs:
            env.close()

    def _observe(self, i: int) -> dict[str, np.ndarray]:
        env, n = self.envs[i], self.n_agents
        where = f"{self.name}, env {i} of this worker"
        avail = as_shaped(env.get_avail_actions(), (n, self.n_actions), np.float32, f"get_avail_actions() ({where})")
        obs = as_shaped(env.get_obs(), (n, self.smac_obs_dim), np.float32, f"get_obs() ({where})")
        if self.obs_agent_id:
            obs = np.concatenate([obs, np.eye(n, dtype=np.float32)], axis=1)
        return {
            "obs": obs,
            "state": as_shaped(env.get_state(), (self.state_dim,), np.float32, f"get_state() ({where})"),
            "avail": avail,
            "active": 1.0 - avail[:, 0],
        }

    @staticmethod
    def _stack(per_env: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {k: np.stack([p[k] for p in per_env]) for k in per_env[0]}
