"""``HostBatch`` over Bi-DexHands' multi-agent vectorised task API (``MultiVecTaskPython``).

One object simulates all ``k`` environments of a worker (Isaac Gym steps them
together on the GPU). What the adapter relies on, as Bi-DexHands defines it:

* ``num_envs``, ``num_agents``; ``observation_space``, ``share_observation_space``
  and ``action_space``: one space per agent with a ``.shape``. The agents'
  action sizes may differ (a hand split into finger agents); observation sizes
  may too.
* ``reset() -> (obs, share_obs, available_actions)`` and
  ``step(actions) -> (obs, share_obs, rewards, dones, infos, available_actions)``,
  with ``obs [k, N, O]`` (or one ``[k, O_i]`` per agent), ``share_obs [k, N, S]``,
  ``rewards [k, N, 1]``, ``dones [k, N]``, ``available_actions`` None for
  continuous control. ``actions`` is indexable by agent: ``actions[i]`` is
  ``[k, A_i]`` (the task concatenates them), as torch tensors on the task's device.
* The task resets a finished environment itself, at the start of the next
  step: on the step that reports ``done`` the observation is still the
  finished episode's last one (Isaac Gym's convention; the next action already
  acts on the new episode). ``task.max_episode_length``, where present, tells
  time-outs (truncated) from task ends.

Heterogeneous agents are padded: observations to the largest ``O`` with zeros,
actions to the largest ``A``; ``avail [k, N, A]`` is 1 on an agent's own action
dimensions and 0 on its padding (the padded dimensions are dropped before the
task sees the actions). Tensors become numpy through DLPack (``worker.host_array``:
no copy for tensors in host memory; GPU tensors are copied to the host first,
since the arrays cross a process boundary anyway), and actions become tensors
with ``torch.from_dlpack``, on the device the task's observations live on.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Mapping

import numpy as np

from jax_mat.host.worker import BadHostOutput, as_shaped, resolve

DEFAULT_ENV_FACTORY = "jax_mat.host.bidexhands_api:make_bidexhands_env"


def open_bidexhands_batch(
    n_envs: int,
    seed: int,
    task: str,
    env_factory: str = DEFAULT_ENV_FACTORY,
    env_kwargs: Mapping[str, Any] | None = None,
) -> "BiDexHandsBatch":
    """One vectorised task of ``n_envs`` environments: ``resolve(env_factory)(task=..., num_envs=..., seed=...)``."""
    vec_env = resolve(env_factory)(task=task, num_envs=n_envs, seed=seed, **dict(env_kwargs or {}))
    return BiDexHandsBatch(vec_env, n_envs, name=f"{env_factory} task {task}")


def make_bidexhands_env(task: str, num_envs: int, seed: int, device: str = "cuda:0") -> Any:
    """Bi-DexHands' ``MultiVecTaskPython`` for ``task``, built as its ``train.py`` builds it for MAPPO.

    Bi-DexHands reads its settings from the command line and from config files
    relative to its package folder, so this sets ``sys.argv`` and the working
    directory of this (worker) process accordingly. Needs ``isaacgym`` and
    ``bidexhands`` installed and a CUDA GPU; not exercised in this repository's
    tests (see ``jax_mat/standins/dexhands_mujoco.py`` for the API stand-in).
    """
    import isaacgym  # noqa: F401  (Isaac Gym must be imported before torch)
    import bidexhands
    from bidexhands.utils.config import get_args, load_cfg, parse_sim_params, set_seed
    from bidexhands.utils.parse_task import parse_task
    from bidexhands.utils.process_marl import get_AgentIndex

    os.chdir(os.path.dirname(bidexhands.__file__))
    sys.argv = [
        "bidexhands", f"--task={task}", "--algo=mappo", "--headless", f"--num_envs={num_envs}",
        f"--seed={seed}", f"--rl_device={device}", f"--sim_device={device}",
    ]  # fmt: skip
    args = get_args()
    args.task_type = "MultiAgent"
    cfg, cfg_train, _ = load_cfg(args)
    sim_params = parse_sim_params(args, cfg, cfg_train)
    set_seed(cfg_train.get("seed", seed), cfg_train.get("torch_deterministic", False))
    _, vec_env = parse_task(args, cfg, cfg_train, sim_params, get_AgentIndex(cfg))
    return vec_env


def _size(space: Any) -> int:
    return int(np.prod(space.shape))


class BiDexHandsBatch:
    """A Bi-DexHands-API vectorised task of ``k`` environments; see the module docstring."""

    def __init__(self, vec_env: Any, n_envs: int, name: str):
        self.env = vec_env
        self.name = name
        self.n_envs = int(vec_env.num_envs)
        if self.n_envs != n_envs:
            raise BadHostOutput(f"{name} built {self.n_envs} environments, {n_envs} were asked for")
        self.n_agents = int(vec_env.num_agents)
        self.obs_dims = [_size(s) for s in vec_env.observation_space]
        self.action_dims = [_size(s) for s in vec_env.action_space]
        if len(self.obs_dims) != self.n_agents or len(self.action_dims) != self.n_agents:
            raise BadHostOutput(
                f"{name}: {self.n_agents} agents but {len(self.obs_dims)} observation and "
                f"{len(self.action_dims)} action spaces"
            )
        self.state_dim = _size(vec_env.share_observation_space[0])
        self.obs_dim, self.action_dim = max(self.obs_dims), max(self.action_dims)
        task = getattr(vec_env, "task", None)
        self.max_episode_steps = int(getattr(task, "max_episode_length", 0) or 0)
        self._episode_steps = np.zeros(self.n_envs, np.int64)
        self._avail = np.zeros((self.n_envs, self.n_agents, self.action_dim), np.float32)
        for i, a in enumerate(self.action_dims):
            self._avail[:, i, :a] = 1.0
        self._tensor_like = None  # an observation tensor of the task: where actions must go

    def info(self) -> dict[str, Any]:
        return {
            "n_envs": self.n_envs,
            "n_agents": self.n_agents,
            "obs_dim": self.obs_dim,
            "state_dim": self.state_dim,
            "action_dim": self.action_dim,
            "discrete": False,
            "max_episode_steps": self.max_episode_steps,
        }

    def reset(self) -> dict[str, np.ndarray]:
        obs, share_obs, _ = self.env.reset()
        self._episode_steps[:] = 0
        return self._observation(obs, share_obs, "reset()")

    def step(self, actions: np.ndarray) -> dict[str, np.ndarray]:
        """``actions``: ``[k, N, A]`` float32, padded; each agent gets its first ``A_i`` dimensions."""
        per_agent = [self._to_task(np.array(actions[:, i, :a], np.float32)) for i, a in enumerate(self.action_dims)]
        obs, share_obs, rewards, dones, _, _ = self.env.step(per_agent)
        arrays = self._observation(obs, share_obs, "step()")
        k, n = self.n_envs, self.n_agents
        reward = as_shaped(rewards, (k, n, 1), np.float32, f"step() rewards ({self.name})")[..., 0]
        done = as_shaped(dones, (k, n), np.float32, f"step() dones ({self.name})").max(axis=1) > 0.5
        self._episode_steps += 1
        out_of_time = self._episode_steps >= self.max_episode_steps if self.max_episode_steps else np.zeros(k, bool)
        self._episode_steps[done] = 0
        arrays.update(reward=reward, done=done, truncated=done & out_of_time, won=np.zeros(k, np.bool_))
        return arrays

    def close(self) -> None:
        close = getattr(self.env, "close", None)
        if close is not None:
            close()

    def _observation(self, obs: Any, share_obs: Any, call: str) -> dict[str, np.ndarray]:
        k, n = self.n_envs, self.n_agents
        if self._tensor_like is None:
            self._tensor_like = obs[0] if isinstance(obs, (list, tuple)) else obs
        share = as_shaped(share_obs, (k, n, self.state_dim), np.float32, f"{call} share_obs ({self.name})")
        return {
            "obs": self._padded_obs(obs, call),
            "state": share[:, 0],
            "avail": self._avail.copy(),
            "active": np.ones((k, n), np.float32),
        }

    def _padded_obs(self, obs: Any, call: str) -> np.ndarray:
        """``[k, N, O]`` from a stacked ``[k, N, O]`` tensor or one ``[k, O_i]`` tensor per agent."""
        k, n = self.n_envs, self.n_agents
        if not isinstance(obs, (list, tuple)):
            return as_shaped(obs, (k, n, self.obs_dim), np.float32, f"{call} obs ({self.name})")
        if len(obs) != n:
            raise BadHostOutput(f"{call} obs ({self.name}) has {len(obs)} per-agent entries; expected {n}")
        padded = np.zeros((k, n, self.obs_dim), np.float32)
        for i, (o, size) in enumerate(zip(obs, self.obs_dims)):
            padded[:, i, :size] = as_shaped(o, (k, size), np.float32, f"{call} obs of agent {i} ({self.name})")
        return padded

    def _to_task(self, actions: np.ndarray) -> Any:
        """``actions`` as the task's own array type: a torch tensor on its device, or numpy."""
        like = self._tensor_like
        if type(like).__module__.split(".")[0] != "torch":
            return actions
        import torch

        return torch.from_dlpack(actions).to(like.device)

