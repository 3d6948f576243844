"""Bi-DexHands' multi-agent vectorised task API (``MultiVecTaskPython``) over CPU MuJoCo.

Task ``TwoArmReach``: two planar arms, one agent each, whose tips must reach
their own targets; agent 0's arm has 2 joints, agent 1's has 3, so the agents'
action sizes differ (2 and 3) as Bi-DexHands' finger and hand agents do. Each
environment is its own ``mujoco.MjData`` of one model, stepped in a Python loop.

The interface is Bi-DexHands': ``num_envs``, ``num_agents``, per-agent
``observation_space``, ``share_observation_space`` and ``action_space`` (objects
with ``.shape``), ``task.max_episode_length``; ``reset() -> (obs, share_obs,
None)``; ``step(actions) -> (obs [E, N, O], share_obs [E, N, S], rewards
[E, N, 1], dones [E, N], infos, None)`` with ``actions[i]`` ``[E, A_i]``; and,
as in Isaac Gym tasks, an environment that reported ``done`` is reset at the
start of the next step (so the ``done`` step's observation is its last one).
Rewards are shared: minus the summed tip-to-target distances.

``make_torch_vec_env`` returns torch tensors (as Bi-DexHands does; needs torch),
``make_numpy_vec_env`` numpy arrays: both cross the bridge through DLPack.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np

TASKS = ("TwoArmReach",)
_ARMS = ((-0.3, 2), (0.3, 3))  # (base x, joints) of each agent's arm
_LINK = 0.2
_MAX_JOINTS = max(j for _, j in _ARMS)
OBS_DIM = 3 * _MAX_JOINTS + 4  # cos, sin and velocity of (padded) own joints, own tip, own target


def _arm_xml(index: int, base_x: float, joints: int) -> str:
    bodies, closing = [], []
    for j in range(joints):
        pos = f"{base_x} 0 0" if j == 0 else f"{_LINK} 0 0"
        bodies.append(
            f'<body name="a{index}_l{j}" pos="{pos}">'
            f'<joint name="a{index}_j{j}" type="hinge" axis="0 0 1" damping="0.05"/>'
            f'<geom type="capsule" fromto="0 0 0 {_LINK} 0 0" size="0.02" mass="0.1" contype="0" conaffinity="0"/>'
        )
        closing.append("</body>")
    tip = f'<site name="a{index}_tip" pos="{_LINK} 0 0"/>'
    return "".join(bodies) + tip + "".join(closing)


def _model_xml() -> str:
    arms = "".join(_arm_xml(i, x, j) for i, (x, j) in enumerate(_ARMS))
    motors = "".join(
        f'<motor joint="a{i}_j{j}" gear="0.05" ctrlrange="-1 1" ctrllimited="true"/>'
        for i, (_, joints) in enumerate(_ARMS) for j in range(joints)
    )
    return (f'<mujoco model="two_arm_reach"><option timestep="0.01" gravity="0 0 0"/>'
            f"<worldbody>{arms}</worldbody><actuator>{motors}</actuator></mujoco>")


class _Box:
    """What the bridge reads of a gym ``Box``: its shape (and bounds)."""

    def __init__(self, size: int, bound: float):
        self.shape = (size,)
        self.low, self.high = -bound * np.ones(size, np.float32), bound * np.ones(size, np.float32)


class TwoArmReachVecTask:
    """``num_envs`` two-arm reaching environments behind Bi-DexHands' ``MultiVecTaskPython`` interface."""

    def __init__(self, num_envs: int, seed: int, tensors: str, episode_length: int = 50, frame_skip: int = 4):
        import mujoco

        self._mujoco = mujoco
        self._torch = None
        if tensors == "torch":
            import torch

            self._torch = torch
        elif tensors != "numpy":
            raise ValueError(f"tensors must be 'torch' or 'numpy', got {tensors!r}")
        self.model = mujoco.MjModel.from_xml_string(_model_xml())
        self.data = [mujoco.MjData(self.model) for _ in range(num_envs)]
        self.num_envs, self.num_agents = num_envs, len(_ARMS)
        self.frame_skip = frame_skip
        self.task = types.SimpleNamespace(max_episode_length=episode_length)
        self.observation_space = [_Box(OBS_DIM, np.inf) for _ in _ARMS]
        self.share_observation_space = [_Box(OBS_DIM * len(_ARMS), np.inf) for _ in _ARMS]
        self.action_space = tuple(_Box(joints, 1.0) for _, joints in _ARMS)
        self._qpos_slices, start = [], 0
        for _, joints in _ARMS:
            self._qpos_slices.append(slice(start, start + joints))
            start += joints
        site = mujoco.mjtObj.mjOBJ_SITE
        self._tip_sites = [mujoco.mj_name2id(self.model, site, f"a{i}_tip") for i in range(len(_ARMS))]
        self._rng = np.random.default_rng(seed)
        self._targets = np.zeros((num_envs, len(_ARMS), 2))
        self._progress = np.zeros(num_envs, np.int64)
        self._reset_buf = np.zeros(num_envs, bool)

    def reset(self):
        for e in range(self.num_envs):
            self._reset_env(e)
        obs = self._observe()
        return self._out(obs), self._out(self._shared(obs)), None

    def step(self, actions):
        ctrl = np.concatenate([np.asarray(a, np.float64) for a in self._numpy(actions)], axis=1)
        for e in np.flatnonzero(self._reset_buf):
            self._reset_env(e)
        for e, data in enumerate(self.data):
            data.ctrl[:] = np.clip(ctrl[e], -1.0, 1.0)
            self._mujoco.mj_step(self.model, data, nstep=self.frame_skip)
        self._progress += 1
        obs = self._observe()
        distance = np.linalg.norm(self._tips() - self._targets, axis=-1).sum(axis=-1)
        reward = np.repeat(-distance[:, None, None], self.num_agents, axis=1).astype(np.float32)
        self._reset_buf = self._progress >= self.task.max_episode_length
        dones = np.repeat(self._reset_buf[:, None], self.num_agents, axis=1).astype(np.float32)
        infos = np.zeros((self.num_agents, 0), np.float32)
        return (self._out(obs), self._out(self._shared(obs)), self._out(reward), self._out(dones),
                self._out(infos), None)

    def close(self) -> None:
        self.data = []

    def _reset_env(self, e: int) -> None:
        data = self.data[e]
        self._mujoco.mj_resetData(self.model, data)
        data.qpos[:] = self._rng.uniform(-0.5, 0.5, size=self.model.nq)
        self._mujoco.mj_forward(self.model, data)
        for i, (base_x, joints) in enumerate(_ARMS):
            radius = self._rng.uniform(0.1, 0.9) * joints * _LINK
            angle = self._rng.uniform(-np.pi, np.pi)
            self._targets[e, i] = (base_x + radius * np.cos(angle), radius * np.sin(angle))
        self._progress[e] = 0
        self._reset_buf[e] = False

    def _tips(self) -> np.ndarray:
        """``[E, N, 2]`` tip positions."""
        return np.stack([[d.site_xpos[s, :2] for s in self._tip_sites] for d in self.data])

    def _observe(self) -> np.ndarray:
        """``[E, N, OBS_DIM]``: own joints' cos, sin, velocity (zero-padded to 3), own tip, own target."""
        obs = np.zeros((self.num_envs, self.num_agents, OBS_DIM), np.float32)
        tips = self._tips()
        for e, data in enumerate(self.data):
            for i, sl in enumerate(self._qpos_slices):
                q, v, n = data.qpos[sl], data.qvel[sl], sl.stop - sl.start
                obs[e, i, :n] = np.cos(q)
                obs[e, i, _MAX_JOINTS : _MAX_JOINTS + n] = np.sin(q)
                obs[e, i, 2 * _MAX_JOINTS : 2 * _MAX_JOINTS + n] = v
                obs[e, i, 3 * _MAX_JOINTS :] = np.concatenate([tips[e, i], self._targets[e, i]])
        return obs

    def _shared(self, obs: np.ndarray) -> np.ndarray:
        """``[E, N, S]``: every agent's observation, the same for each agent (Bi-DexHands' share_obs)."""
        flat = obs.reshape(self.num_envs, 1, -1)
        return np.repeat(flat, self.num_agents, axis=1)

    def _out(self, array: np.ndarray) -> Any:
        return self._torch.from_numpy(np.ascontiguousarray(array)) if self._torch is not None else array

    def _numpy(self, actions) -> list[np.ndarray]:
        return [a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a) for a in actions]


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r} for the MuJoCo Bi-DexHands stand-in; known: {', '.join(TASKS)}")


def make_torch_vec_env(task: str, num_envs: int, seed: int, **options: Any) -> TwoArmReachVecTask:
    """The stand-in with torch tensors, as Bi-DexHands hands them out (needs torch)."""
    _check_task(task)
    return TwoArmReachVecTask(num_envs, seed, tensors="torch", **options)


def make_numpy_vec_env(task: str, num_envs: int, seed: int, **options: Any) -> TwoArmReachVecTask:
    """The stand-in with numpy arrays (no torch needed)."""
    _check_task(task)
    return TwoArmReachVecTask(num_envs, seed, tensors="numpy", **options)
