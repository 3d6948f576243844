"""Multi-agent MuJoCo on MJX: MaMuJoCo's tasks simulated by MuJoCo's JAX backend.

``MujocoMultiEnv`` is a *raw* jax_mat environment (its ``step`` never resets;
``envs.wrappers.AutoReset`` does): one robot whose joints are split among
agents as in Multi-Agent MuJoCo (``envs.mujoco_tasks``), stepped with
``mujoco.mjx`` inside the same jitted program as the policy and the PPO update.

Per environment step (gym's ``-v2`` environments, which MaMuJoCo wraps):

* actions ``[N, A]`` float32 in ``[-1, 1]``; agent ``i``'s dimension ``j``
  drives the actuator of its ``j``-th joint. MuJoCo clamps the torque command
  to ``[-1, 1]``; the control cost, as in gym, is charged on the action as
  given. A disabled joint (``disabled_joints``) gets zero torque and costs
  nothing, whatever its agent chooses: the agent still observes and acts (the
  report's robustness setting; upstream MAT zeroes that agent's action before
  the environment).
* ``frame_skip`` MJX steps; the shared reward is the single-agent reward:
  forward velocity of the root (``(x' - x) / dt``) minus the control cost,
  plus Ant's and Walker2d's alive bonus. HalfCheetah never terminates; Ant and
  Walker2d terminate when unhealthy (torso height, Walker2d's pitch, and for
  Ant a non-finite state). Episodes are truncated at ``max_episode_steps``
  (1000): ``truncated`` is true only where the time limit, not the task, ended
  the episode.
* observations ``[N, O]``: each agent's MaMuJoCo observation at graph distance
  ``agent_obsk`` (``mujoco_tasks.observation_layout``), zero-padded to the
  largest agent's size, its one-hot agent id appended, and the whole vector
  standardised to zero mean and unit variance (``(x - mean(x)) / std(x)`` over
  that one vector, as upstream MAT's ``MujocoMulti.get_obs`` does).
* world state ``[S]``: gym's single-agent observation (positions without the
  root's x, or x and y for Ant; velocities, clipped to ±10 for Walker2d),
  standardised the same way (upstream's shared observation without its id).
  Ant-v2's 84 contact forces are left out, and so is its contact cost: under
  mujoco-py 2, where gym's Ant-v2 ran, they were always zero.

A physics blow-up (NaN or inf in the state) makes the step's reward NaN even
where the episode ends on that step and auto-reset replaces the observation,
so ``rollout/nonfinite_steps`` always sees it and training stops there.

Models are brax's MJX-ready MJCF files (``brax/envs/assets``), which keep gym's
bodies, joints, gears and timesteps. Differences from gym's
models, for speed on MJX: four Newton solver iterations (brax's setting) with
at most ``LINESEARCH_ITERATIONS`` line-search steps, Euler integration where
gym uses RK4 (Ant, Walker2d), and brax's reduced contact sets for Ant (feet
only) and Walker2d (torso and feet); HalfCheetah gets gym's contact set back
(every body geom touches the floor). Numbers measured with these settings are
in ``docs/benchmarks.md`` and ``docs/results.md``.
"""

from __future__ import annotations

import os
import warnings

import chex
import flax.struct
import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from jax_mat.envs import mujoco_tasks
from jax_mat.envs.base import EnvSpec, Timestep
from jax_mat.envs.quiet_import import quiet_import

with quiet_import():
    from mujoco import mjx

# Line-search steps per Newton iteration (MuJoCo's default: 50). Vmapped, the solver
# runs every environment until the slowest has converged, so the cap bounds each step's cost.
LINESEARCH_ITERATIONS = 8


@flax.struct.dataclass
class MujocoState:
    """What carries over between steps of one environment (everything else MJX recomputes).

    Attributes:
      qpos: ``[nq]`` float32 generalised positions.
      qvel: ``[nv]`` float32 generalised velocities.
      qacc_warmstart: ``[nv]`` float32 the constraint solver's warm start.
      t: ``[]`` int32 steps taken in the episode.
    """

    qpos: jax.Array
    qvel: jax.Array
    qacc_warmstart: jax.Array
    t: jax.Array


def _brax_asset(file_name: str) -> str:
    with quiet_import():
        import brax

    return os.path.join(os.path.dirname(brax.__file__), "envs", "assets", file_name)


def load_model(task: mujoco_tasks.MujocoTask) -> mujoco.MjModel:
    """The task's MuJoCo model: brax's MJCF with the solver and contact settings above."""
    spec = mujoco.MjSpec.from_file(_brax_asset(task.model_file))
    spec.option.ls_iterations = LINESEARCH_ITERATIONS
    if task.all_geoms_collide:
        for geom in spec.geoms:
            if geom.conaffinity == 0:  # every geom but the floor
                geom.contype = 1
    with warnings.catch_warnings():
        # brax's half_cheetah.xml sets the deprecated `settotalmass`; MuJoCo still honours it.
        warnings.filterwarnings("ignore", message=".*settotalmass.*")
        return spec.compile()


def _standardise(x: jax.Array) -> jax.Array:
    """``(x - mean) / std`` over the last axis (population std, as ``numpy.std``)."""
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(jnp.square(x - mean).mean(-1, keepdims=True))


class MujocoMultiEnv:
    """Raw (non auto-resetting) multi-agent MuJoCo environment on MJX.

    Shapes (per environment; vmap for a batch): ``N`` agents, ``A`` the largest
    agent's joint count, ``O = max_i(|observation_layout(i)|) + N``, ``S`` the
    single-agent gym observation size. ``avail`` is all ones ``[N, A]``,
    ``active`` all ones ``[N]``, ``won`` always false.
    """

    def __init__(
        self,
        task: str,
        disabled_joints: tuple[str, ...] = (),
        agent_obsk: int = 0,
        max_episode_steps: int = mujoco_tasks.EPISODE_STEPS,
    ) -> None:
        """Builds the MJX model; raises ``ValueError`` for an unknown task or joint.

        Args:
          task: one of ``mujoco_tasks.known_tasks()`` (``halfcheetah_6x1``, ``ant_2x4``, ``walker2d_2x3``).
          disabled_joints: joints (MaMuJoCo labels or aliases such as ``back_thigh``) that get zero torque.
          agent_obsk: MaMuJoCo's ``k``: agents observe the positions of joints up to ``k`` graph steps away.
          max_episode_steps: the time limit (1000, as gym's; shorter in tests).
        """
        self.task = mujoco_tasks.check_options(task, tuple(disabled_joints), agent_obsk)
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
        self.disabled_joints = mujoco_tasks.resolve_joints(self.task, tuple(disabled_joints))
        self.agent_obsk = agent_obsk
        self.mj_model = load_model(self.task)
        self.model = mjx.put_model(self.mj_model)
        self.dt = float(self.mj_model.opt.timestep) * self.task.frame_skip
        self._obs_index = self._observation_index()
        self._actuator_index, self._action_mask = self._actuator_tables()
        n_agents = self.task.n_agents
        self.spec = EnvSpec(
            n_agents=n_agents,
            obs_dim=self._obs_index.shape[1] + n_agents,
            state_dim=self.mj_model.nq - self.task.state_qpos_from + self.mj_model.nv,
            action_dim=self.task.action_dim,
            discrete=False,
            max_episode_steps=max_episode_steps,
        )

    # ------------------------------------------------------------------ tables

    def _joint_id(self, label: str) -> int:
        return mujoco.mj_name2id(self.mj_model, mujoco.mjtObj.mjOBJ_JOINT, self.task.mjcf_joint(label))

    def _observation_index(self) -> np.ndarray:
        """``[N, O - N]`` int32 indices into ``concat(qpos, qvel, [0])``; padding points at the 0."""
        m = self.mj_model
        offset = {"qpos": 0, "qvel": m.nq}
        address = {"qpos": m.jnt_qposadr, "qvel": m.jnt_dofadr}
        rows = []
        for agent in range(self.task.n_agents):
            row = []
            for field, where in mujoco_tasks.observation_layout(self.task, agent, self.agent_obsk):
                index = where if isinstance(where, int) else int(address[field][self._joint_id(where)])
                row.append(offset[field] + index)
            rows.append(row)
        width = max(len(row) for row in rows)
        pad = m.nq + m.nv
        return np.array([row + [pad] * (width - len(row)) for row in rows], np.int32)

    def _actuator_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """``[N, A]`` int32 actuator of each action dimension (``nu`` for padding) and ``[N, A]``
        float32 mask (0 for padding and disabled joints)."""
        m = self.mj_model
        actuator_of_joint = {int(m.actuator_trnid[i, 0]): i for i in range(m.nu)}
        shape = (self.task.n_agents, self.task.action_dim)
        index, mask = np.full(shape, m.nu, np.int32), np.zeros(shape, np.float32)
        for agent, joints in enumerate(self.task.agents):
            for dim, label in enumerate(joints):
                index[agent, dim] = actuator_of_joint[self._joint_id(label)]
                mask[agent, dim] = 0.0 if label in self.disabled_joints else 1.0
        return index, mask

    # ------------------------------------------------------------------ protocol

    def reset(self, key: chex.PRNGKey) -> tuple[MujocoState, Timestep]:
        """A fresh episode: the model's rest pose with gym's reset noise."""
        m, task = self.mj_model, self.task
        qpos_key, qvel_key = jax.random.split(key)
        noise = task.reset_noise
        qpos = jnp.asarray(m.qpos0, jnp.float32) + jax.random.uniform(qpos_key, (m.nq,), minval=-noise, maxval=noise)
        if m.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE:  # keep the noisy root orientation a unit quaternion
            qpos = qpos.at[3:7].set(qpos[3:7] / jnp.linalg.norm(qpos[3:7]))
        if task.qvel_noise_normal:
            qvel = noise * jax.random.normal(qvel_key, (m.nv,))
        else:
            qvel = jax.random.uniform(qvel_key, (m.nv,), minval=-noise, maxval=noise)
        state = MujocoState(qpos, qvel.astype(jnp.float32), jnp.zeros((m.nv,), jnp.float32), jnp.zeros((), jnp.int32))
        zero = jnp.zeros((), jnp.bool_)
        return state, self._timestep(state, jnp.zeros((), jnp.float32), zero, zero)

    def step(self, key: chex.PRNGKey, state: MujocoState, actions: jax.Array) -> tuple[MujocoState, Timestep]:
        """Advances ``frame_skip`` physics steps without resetting.

        Args:
          key: unused (the dynamics are deterministic); part of the protocol.
          state: from ``reset`` or a previous ``step``.
          actions: ``[N, A]`` float actions in ``[-1, 1]``.

        Raises:
          ValueError: ``actions`` is not ``[N, A]``.
        """
        del key
        ctrl, applied = self.control(actions)
        next_state = self._simulate(state, ctrl)
        return next_state, self.transition(state, next_state, applied)

    def control(self, actions: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The actuator commands ``[nu]`` for ``[N, A]`` actions, and the actions as applied ``[N, A]``
        (zero for disabled joints and for the padding of agents with fewer joints)."""
        n, a = self.spec.n_agents, self.spec.action_dim
        if tuple(jnp.shape(actions)) != (n, a):
            raise ValueError(
                f"MuJoCo task {self.task.name} takes actions of shape [{n} agents, {a}] (float, in [-1, 1]), "
                f"got {tuple(jnp.shape(actions))}"
            )
        applied = jnp.asarray(actions, jnp.float32) * self._action_mask
        ctrl = jnp.zeros((self.mj_model.nu,), jnp.float32).at[self._actuator_index.reshape(-1)].set(
            applied.reshape(-1), mode="drop"
        )
        return ctrl, applied

    def transition(self, before: MujocoState, after: MujocoState, applied: jax.Array) -> Timestep:
        """The timestep of the transition ``before -> after`` under ``applied`` actions ``[N, A]``:
        gym's reward, termination, and truncation at ``max_episode_steps``."""
        reward, terminated = self._reward(before, after, applied)
        out_of_time = after.t >= self.spec.max_episode_steps
        return self._timestep(after, reward, terminated | out_of_time, out_of_time & ~terminated)

    # ------------------------------------------------------------------ physics

    def _simulate(self, state: MujocoState, ctrl: jax.Array) -> MujocoState:
        data = mjx.make_data(self.model).replace(
            qpos=state.qpos, qvel=state.qvel, qacc_warmstart=state.qacc_warmstart, ctrl=ctrl
        )
        data = jax.lax.fori_loop(0, self.task.frame_skip, lambda _, d: mjx.step(self.model, d), data)
        return MujocoState(data.qpos, data.qvel, data.qacc_warmstart, state.t + 1)

    def _reward(self, before: MujocoState, after: MujocoState, applied: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The single-agent gym reward and whether the task terminated (``[]`` float32, ``[]`` bool)."""
        task = self.task
        forward = (after.qpos[0] - before.qpos[0]) / self.dt
        reward = forward - task.ctrl_cost_weight * jnp.sum(jnp.square(applied)) + task.healthy_reward
        finite = jnp.isfinite(after.qpos).all() & jnp.isfinite(after.qvel).all()
        terminated = jnp.zeros((), jnp.bool_)
        if task.healthy_height is not None:
            height = after.qpos[task.height_qpos] + task.height_offset
            healthy = (height >= task.healthy_height[0]) & (height <= task.healthy_height[1])
            if task.healthy_angle is not None:
                healthy &= (after.qpos[2] >= task.healthy_angle[0]) & (after.qpos[2] <= task.healthy_angle[1])
            terminated = ~(healthy & finite)
        return jnp.where(finite, reward, jnp.nan).astype(jnp.float32), terminated

    # ------------------------------------------------------------------ views

    def observations(self, state: MujocoState) -> jax.Array:
        """``[N, O]`` float32 standardised per-agent observations (see the module docstring)."""
        features = jnp.concatenate([state.qpos, state.qvel, jnp.zeros((1,), jnp.float32)])
        local = features[self._obs_index]
        ids = jnp.eye(self.spec.n_agents, dtype=jnp.float32)
        return _standardise(jnp.concatenate([local, ids], axis=-1)).astype(jnp.float32)

    def world_state(self, state: MujocoState) -> jax.Array:
        """``[S]`` float32: gym's single-agent observation, standardised."""
        task = self.task
        qpos = state.qpos.at[task.height_qpos].add(task.height_offset)[task.state_qpos_from:]
        qvel = state.qvel if task.state_qvel_clip is None else jnp.clip(state.qvel, -task.state_qvel_clip,
                                                                         task.state_qvel_clip)
        return _standardise(jnp.concatenate([qpos, qvel])).astype(jnp.float32)

    def _timestep(self, state: MujocoState, reward: jax.Array, done: jax.Array, truncated: jax.Array) -> Timestep:
        n, a = self.spec.n_agents, self.spec.action_dim
        return Timestep(
            obs=self.observations(state),
            world_state=self.world_state(state),
            avail=jnp.ones((n, a), jnp.float32),
            reward=jnp.full((n,), reward, jnp.float32),
            done=done,
            truncated=truncated,
            active=jnp.ones((n,), jnp.float32),
            episode_return=jnp.zeros((), jnp.float32),
            episode_length=jnp.zeros((), jnp.int32),
            won=jnp.zeros((), jnp.bool_),
        )
