"""Multi-agent MuJoCo on MJX: partitions and observations as MaMuJoCo, physics against MuJoCo's C engine,
gym's rewards, disabled joints, time limits and termination, bad input, and the CLI end to end.

MJX programs take 20-40 s to compile on a 2-core CPU: the physics tests share one jitted step
(HalfCheetah with its back thigh disabled, two environments) and the CLI tests share one tiny run.
"""

import contextlib
import io
import json
import re
import shutil

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from jax_mat import evaluate, train
from jax_mat.config import EnvConfig, load_config
from jax_mat.envs import mujoco_tasks
from jax_mat.envs.mujoco import MujocoMultiEnv
from jax_mat.envs.registry import check_env_config, make_env
from jax_mat.training.checkpoint import Checkpointer
from tests.run_dirs import training_records

HALFCHEETAH_JOINTS = ("bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot")


def _standardise(x):
    return (x - x.mean(-1, keepdims=True)) / x.std(-1, keepdims=True)


def _actuator(env, label):
    """The actuator driving joint ``label``, found by name in the MuJoCo model."""
    m = env.mj_model
    joint = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, env.task.mjcf_joint(label))
    (actuator,) = [i for i in range(m.nu) if m.actuator_trnid[i, 0] == joint]
    return actuator


def _expected_obs(env, qpos, qvel, k):
    """Each agent's MaMuJoCo observation from ``qpos``/``qvel``, built from joint names."""
    m = env.mj_model
    rows = []
    for agent in range(env.spec.n_agents):
        row = []
        for field, where in mujoco_tasks.observation_layout(env.task, agent, k):
            values = qpos if field == "qpos" else qvel
            if isinstance(where, str):
                joint = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, env.task.mjcf_joint(where))
                where = (m.jnt_qposadr if field == "qpos" else m.jnt_dofadr)[joint]
            row.append(values[where])
        rows.append(row)
    width = max(map(len, rows))
    padded = np.array([r + [0.0] * (width - len(r)) for r in rows])
    return _standardise(np.concatenate([padded, np.eye(len(rows))], axis=1))


# --------------------------------------------------------------------------- #
# Tasks, partitions, observations (no physics compiled)                        #
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("task, agents, action_dim, obs_dim, state_dim", [
    ("halfcheetah_6x1", 6, 1, 7 + 6, 17),  # own qpos, qvel; rooty, rootz qpos; rootx, rooty, rootz qvel; id
    ("ant_2x4", 2, 4, 8 + 13 + 2, 27),     # 4 joints x (qpos, qvel); free joint qpos[:7], qvel[:6]; id
    ("walker2d_2x3", 2, 3, 6 + 2, 17),     # 3 joints x (qpos, qvel); no globals; id
])
def test_specs_follow_mamujoco_partitions(task, agents, action_dim, obs_dim, state_dim):
    spec = MujocoMultiEnv(task).spec
    assert (spec.n_agents, spec.action_dim, spec.obs_dim, spec.state_dim) == (agents, action_dim, obs_dim, state_dim)
    assert not spec.discrete and spec.max_episode_steps == 1000


def test_observation_layout_is_mamujocos_build_obs():
    cheetah, ant, walker = (mujoco_tasks.TASKS[t] for t in ("halfcheetah_6x1", "ant_2x4", "walker2d_2x3"))
    cheetah_globals = (("qpos", 2), ("qpos", 1), ("qvel", 0), ("qvel", 2), ("qvel", 1))
    assert mujoco_tasks.observation_layout(cheetah, 0, 0) == (("qpos", "bthigh"), ("qvel", "bthigh"), *cheetah_globals)
    # k = 1: neighbours' positions only, sorted by label.
    assert mujoco_tasks.observation_layout(cheetah, 0, 1)[:4] == (
        ("qpos", "bthigh"), ("qvel", "bthigh"), ("qpos", "bshin"), ("qpos", "fthigh"))
    assert len(mujoco_tasks.observation_layout(cheetah, 2, 1)) == 3 + 5  # the foot has one neighbour
    assert mujoco_tasks.observation_layout(cheetah, 2, 2)[3] == ("qpos", "bthigh")
    ant_local = mujoco_tasks.observation_layout(ant, 0, 0)[:8]
    assert [j for _, j in ant_local[::2]] == ["ankle1", "ankle2", "hip1", "hip2"]
    assert mujoco_tasks.observation_layout(ant, 0, 0)[8:] == tuple(
        [("qpos", i) for i in range(7)] + [("qvel", i) for i in range(6)])
    assert mujoco_tasks.observation_layout(walker, 1, 0) == tuple(
        (f, j) for j in ("foot_left_joint", "leg_left_joint", "thigh_left_joint") for f in ("qpos", "qvel"))


@pytest.mark.parametrize("task, k", [("halfcheetah_6x1", 1), ("ant_2x4", 0), ("walker2d_2x3", 1)])
def test_observations_are_standardised_features_with_agent_ids(task, k):
    env = MujocoMultiEnv(task, agent_obsk=k)
    state, timestep = jax.jit(env.reset)(jax.random.PRNGKey(3))
    expected = _expected_obs(env, np.asarray(state.qpos, np.float64), np.asarray(state.qvel, np.float64), k)
    np.testing.assert_allclose(timestep.obs, expected, rtol=1e-4, atol=1e-4)
    assert timestep.obs.shape == (env.spec.n_agents, env.spec.obs_dim) and timestep.obs.dtype == jnp.float32
    np.testing.assert_allclose(timestep.obs.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(timestep.obs.std(-1), 1.0, atol=1e-4)
    assert timestep.world_state.shape == (env.spec.state_dim,) and np.isfinite(timestep.world_state).all()
    assert not timestep.done and timestep.avail.shape == (env.spec.n_agents, env.spec.action_dim)


def test_reset_is_gyms_rest_pose_with_noise():
    for task, noise in (("halfcheetah_6x1", 0.1), ("walker2d_2x3", 5e-3)):
        env = MujocoMultiEnv(task)
        states, _ = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(0), 64))
        offset = np.asarray(states.qpos) - env.mj_model.qpos0
        assert 0.5 * noise < np.abs(offset).max() <= noise
        assert len(np.unique(np.asarray(states.qpos[:, 0]))) == 64
    ant = MujocoMultiEnv("ant_2x4")
    qpos = jax.jit(ant.reset)(jax.random.PRNGKey(1))[0].qpos
    np.testing.assert_allclose(np.linalg.norm(qpos[3:7]), 1.0, rtol=1e-6)


def test_actions_reach_the_actuators_of_the_joints_they_name():
    ant = MujocoMultiEnv("ant_2x4")
    actions = jnp.arange(1.0, 9.0).reshape(2, 4) / 10
    ctrl, _ = ant.control(actions)
    for agent, joints in enumerate(ant.task.agents):
        for dim, label in enumerate(joints):
            assert ctrl[_actuator(ant, label)] == actions[agent, dim], label
    cheetah = MujocoMultiEnv("halfcheetah_6x1", disabled_joints=("fore_shin", "bthigh"))
    ctrl, applied = cheetah.control(jnp.full((6, 1), 0.7))
    for agent, label in enumerate(HALFCHEETAH_JOINTS):
        disabled = label in ("fshin", "bthigh")
        assert ctrl[_actuator(cheetah, label)] == (0.0 if disabled else np.float32(0.7)), label
        assert applied[agent, 0] == (0.0 if disabled else np.float32(0.7))


def test_unhealthy_ant_and_walker_terminate_and_only_time_limits_truncate():
    def outcome(env, qpos_changes, t=1):
        state, _ = env.reset(jax.random.PRNGKey(0))
        qpos = state.qpos.at[jnp.array(list(qpos_changes))].set(jnp.array(list(qpos_changes.values())))
        after = state.replace(qpos=qpos, t=jnp.int32(t))
        ts = jax.jit(env.transition)(state, after, jnp.zeros((env.spec.n_agents, env.spec.action_dim)))
        return bool(ts.done), bool(ts.truncated)

    ant, walker = MujocoMultiEnv("ant_2x4", max_episode_steps=50), MujocoMultiEnv("walker2d_2x3", max_episode_steps=50)
    assert outcome(ant, {2: 0.55}) == (False, False)
    assert outcome(ant, {2: 0.1}) == (True, False)           # torso below 0.2
    assert outcome(ant, {2: 1.2}) == (True, False)           # above 1.0
    assert outcome(ant, {2: 0.55}, t=50) == (True, True)     # time limit
    assert outcome(ant, {2: 0.1}, t=50) == (True, False)     # the task ended it, not the time limit
    assert outcome(walker, {1: 0.0}) == (False, False)       # height 1.25
    assert outcome(walker, {1: -0.6}) == (True, False)       # height 0.65 < 0.8
    assert outcome(walker, {2: 1.2}) == (True, False)        # pitched over
    assert outcome(walker, {1: jnp.nan}) == (True, False)


def test_configs_carry_table_4_and_select_tasks():
    cfg = load_config(None, ["env=mujoco"])
    a, t = cfg.algo, cfg.train
    assert (cfg.env.name, cfg.env.task, cfg.env.agent_obsk, cfg.run_name) == ("mujoco", "halfcheetah_6x1", 0,
                                                                               "mat-mujoco-halfcheetah_6x1")
    assert (t.n_envs, t.episode_length, a.num_mini_batch, a.ppo_epochs, a.clip, a.lr, a.entropy_coef,
            a.max_grad_norm, a.gamma, t.total_steps) == (40, 100, 40, 10, 0.05, 5e-5, 0.001, 0.5, 0.99, 10_000_000)
    assert a.use_proper_time_limits
    assert load_config("mujoco_halfcheetah_6x1").algo == a
    cpu = load_config("mujoco_halfcheetah_6x1_cpu", ["env.disabled_joints=[bthigh]"])
    assert (cpu.train.total_steps, cpu.env.disabled_joints, cpu.algo.use_proper_time_limits) == (
        2_000_000, ("bthigh",), True)
    for overrides in (["env=mujoco", "env.task=ant_2x4"], ["env.name=mujoco", "env.task=ant_2x4"]):
        cfg = load_config(None, overrides)
        assert (cfg.env.task, cfg.algo.num_mini_batch, cfg.algo.use_proper_time_limits) == ("ant_2x4", 40, True)


def test_bad_input_is_refused_before_building():
    with pytest.raises(ValueError, match="unknown MuJoCo task 'hopper_3x1'.*halfcheetah_6x1, ant_2x4, walker2d_2x3"):
        check_env_config(EnvConfig(name="mujoco", task="hopper_3x1"))
    joints = "bthigh, bshin, bfoot, fthigh, fshin, ffoot"
    with pytest.raises(ValueError, match=f"unknown joint 'knee'.*{joints}.*back_thigh"):
        check_env_config(EnvConfig(name="mujoco", task="halfcheetah_6x1", disabled_joints=("knee",)))
    with pytest.raises(ValueError, match="unknown joint 'bthigh' for MuJoCo task ant_2x4.*hip1"):
        make_env("mujoco", task="ant_2x4", disabled_joints=("bthigh",))
    with pytest.raises(ValueError, match="needs env.task"):
        check_env_config(EnvConfig(name="mujoco"))
    with pytest.raises(ValueError, match="agent_obsk"):
        check_env_config(EnvConfig(name="mujoco", task="halfcheetah_6x1", agent_obsk=-1))
    assert EnvConfig(name="mujoco", task="halfcheetah_6x1", disabled_joints=("back_thigh", "fshin")).variant == (
        "halfcheetah_6x1")
    env = MujocoMultiEnv("halfcheetah_6x1")
    state, _ = jax.jit(env.reset)(jax.random.PRNGKey(0))
    for shape in ((6,), (6, 2), (3, 1)):
        with pytest.raises(ValueError, match=r"actions of shape \[6 agents, 1\].*got " + re.escape(repr(shape))):
            env.step(jax.random.PRNGKey(0), state, jnp.zeros(shape))
    with pytest.raises(ValueError, match="unknown joint 'knee'"):
        load_config(None, ["env=mujoco", "env.disabled_joints=[back_thigh,knee]"])


# --------------------------------------------------------------------------- #
# Physics: one compiled step of HalfCheetah with the back thigh disabled       #
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def cheetah():
    """The env (back thigh disabled by its alias), a jitted step over [E=2] environments and reset states."""
    env = MujocoMultiEnv("halfcheetah_6x1", disabled_joints=("back_thigh",))
    states, _ = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(7), 2))
    step = jax.jit(lambda s, a: jax.vmap(env.step)(jax.random.split(jax.random.PRNGKey(0), 2), s, a))
    return env, step, states


def _mujoco_c_step(env, qpos, qvel, warmstart, actions):
    """One environment step of MuJoCo's C engine; the disabled back thigh gets no command."""
    m = env.mj_model
    data = mujoco.MjData(m)
    data.qpos[:], data.qvel[:], data.qacc_warmstart[:] = qpos, qvel, warmstart
    for agent, label in enumerate(HALFCHEETAH_JOINTS):
        data.ctrl[_actuator(env, label)] = 0.0 if label == "bthigh" else actions[agent, 0]
    for _ in range(5):  # gym's frame_skip
        mujoco.mj_step(m, data)
    return data.qpos.copy(), data.qvel.copy()


def test_step_matches_mujoco_c_engine_and_pays_gyms_reward(cheetah):
    env, step, states = cheetah
    assert env.dt == pytest.approx(0.05)
    actions = jax.random.uniform(jax.random.PRNGKey(1), (2, 6, 1), minval=-1.5, maxval=1.5)
    for _ in range(3):
        next_states, ts = step(states, actions)
        for e in range(2):
            start = (np.asarray(x[e], np.float64) for x in (states.qpos, states.qvel, states.qacc_warmstart))
            qpos, qvel = _mujoco_c_step(env, *start, np.asarray(actions[e]))
            np.testing.assert_allclose(next_states.qpos[e], qpos, atol=1e-4)
            np.testing.assert_allclose(next_states.qvel[e], qvel, atol=2e-3)
            # HalfCheetah-v2: forward velocity of rootx minus 0.1 * |action|^2, charged on the action as given
            # (beyond +-1 MuJoCo clamps the torque), nothing for the disabled joint.
            ctrl_cost = 0.1 * np.sum(np.square(np.asarray(actions[e, 1:, 0], np.float64)))
            expected = (qpos[0] - float(states.qpos[e, 0])) / 0.05 - ctrl_cost
            np.testing.assert_allclose(ts.reward[e], np.full(6, expected), rtol=1e-4, atol=5e-3)
            np.testing.assert_allclose(ts.obs[e], _expected_obs(env, qpos, qvel, 0), atol=2e-3)
        assert not ts.done.any() and not ts.truncated.any() and not ts.won.any()
        assert (ts.active == 1).all() and (ts.avail == 1).all()
        states = next_states


def test_disabled_joint_ignores_its_agents_action(cheetah):
    env, step, states = cheetah
    actions = jax.random.uniform(jax.random.PRNGKey(2), (2, 6, 1), minval=-1, maxval=1)
    a, ts_a = step(states, actions)
    b, ts_b = step(states, actions.at[:, 0].set(-actions[:, 0]))  # agent 0 drives the back thigh
    c, ts_c = step(states, actions.at[:, 1].set(-actions[:, 1]))  # agent 1 drives the back shin
    np.testing.assert_array_equal(a.qpos, b.qpos)
    np.testing.assert_array_equal(ts_a.reward, ts_b.reward)
    assert np.abs(np.asarray(a.qpos - c.qpos)).max() > 1e-4


def test_time_limit_truncates_and_physics_nan_poisons_the_reward(cheetah):
    env, step, states = cheetah
    actions = jnp.zeros((2, 6, 1))
    _, ts = step(states.replace(t=jnp.array([998, 999], jnp.int32)), actions)
    assert ts.done.tolist() == [False, True] and ts.truncated.tolist() == [False, True]
    _, ts = step(states.replace(qvel=states.qvel.at[0, 4].set(jnp.nan)), actions)
    assert np.isnan(ts.reward[0]).all() and np.isnan(ts.obs[0]).all() and not ts.done[0]
    assert np.isfinite(ts.reward[1]).all() and np.isfinite(ts.obs[1]).all()


@pytest.mark.slow
@pytest.mark.parametrize("task", ["ant_2x4", "walker2d_2x3"])
def test_ant_and_walker_steps_match_mujoco_c_engine(task):
    """Slow (an MJX compile per robot): the other robots' actuator mapping and frame skip, checked against the
    C engine from a random rollout's states."""
    env = MujocoMultiEnv(task)
    m = env.mj_model
    state, _ = jax.jit(env.reset)(jax.random.PRNGKey(0))
    step = jax.jit(env.step)
    for i in range(20):
        actions = jax.random.uniform(jax.random.PRNGKey(i), (env.spec.n_agents, env.spec.action_dim), minval=-1,
                                     maxval=1)
        data = mujoco.MjData(m)
        data.qpos[:], data.qvel[:], data.qacc_warmstart[:] = (np.asarray(x, np.float64) for x in
                                                               (state.qpos, state.qvel, state.qacc_warmstart))
        for agent, joints in enumerate(env.task.agents):
            for dim, label in enumerate(joints):
                data.ctrl[_actuator(env, label)] = actions[agent, dim]
        for _ in range(env.task.frame_skip):
            mujoco.mj_step(m, data)
        state, ts = step(jax.random.PRNGKey(0), state, actions)
        np.testing.assert_allclose(state.qpos, data.qpos, atol=1e-3)
        assert np.isfinite(ts.reward).all() and np.isfinite(ts.obs).all()


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["marwkv", "mat_rwkv"])
def test_rwkv_policies_train_on_halfcheetah(tmp_path, algo):
    """Slow (two MJX compiles each): continuous MARWKV and the hybrid through the CLI on HalfCheetah."""
    run_dir = tmp_path / "run"
    assert train.main([*TINY_RUN, f"algo={algo}", "--run-dir", str(run_dir)]) == 0
    lines = training_records(run_dir)
    assert len(lines) == 3 and all(np.isfinite(x["loss/total"]) and x["loss/entropy"] > 0 for x in lines)
    assert json.loads((run_dir / "eval.json").read_text())["mean_length"] == 1000


# --------------------------------------------------------------------------- #
# The CLI end to end                                                           #
# --------------------------------------------------------------------------- #

# 2 envs x 10 steps per update, 3 updates, a 16-wide MAT, one greedy 1000-step evaluation episode.
TINY_RUN = ["env=mujoco", "env.disabled_joints=[back_thigh]", "train.n_envs=2", "train.episode_length=10",
            "algo.num_mini_batch=2", "algo.ppo_epochs=2", "algo.n_embd=16", "train.total_steps=60",
            "train.eval_episodes=1", "train.checkpoint_every=1", "--no-progress"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("mujoco") / "run"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = train.main([*TINY_RUN, "--run-dir", str(run_dir)])
    return code, run_dir, out.getvalue()


@pytest.mark.slow  # default-suite time on the 2-core CI machine; run by scripts/check_slow_tests.sh
def test_cli_trains_and_evaluates_halfcheetah(tiny_run):
    code, run_dir, out = tiny_run
    assert code == 0
    assert "1 greedy episodes): mean return" in out and "win rate" not in out
    results = json.loads((run_dir / "eval.json").read_text())
    assert results["episodes"] == 1 and results["mean_length"] == 1000 and np.isfinite(results["mean_return"])
    lines = training_records(run_dir)
    assert [x["env_steps"] for x in lines] == [20, 40, 60]
    assert all(x["rollout/nonfinite_steps"] == 0 and np.isfinite(x["loss/total"]) for x in lines)
    assert "back_thigh" in (run_dir / "config.yaml").read_text()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert evaluate.main([str(run_dir), "--episodes", "1"]) == 0
    assert "1 greedy episodes, mean return" in printed.getvalue() and "win rate" not in printed.getvalue()


@pytest.mark.slow  # default-suite time on the 2-core CI machine; run by scripts/check_slow_tests.sh
def test_physics_nan_stops_training_and_keeps_the_last_checkpoint(tiny_run, tmp_path, capfd, monkeypatch):
    """Resume the tiny run with one environment's velocities poisoned: MJX integrates the NaN into the state,
    the rollout counts non-finite steps and the CLI stops, naming the update and the last good checkpoint.

    Poisoning the restored state rather than the physics keeps the run's compiled update. Orbax restores
    arrays committed to the device, which changes the lowered program; a host round trip gives back the
    uncommitted arrays ``init`` made, so the update is found in the persistent compilation cache."""
    _, trained, _ = tiny_run
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    (run_dir / "eval.json").unlink()
    restore = Checkpointer.restore

    def restore_with_nan_velocity(self, template, step=None):
        state = jax.tree.map(lambda x: jnp.asarray(np.asarray(x)), restore(self, template, step))
        inner = state.env_state.env_state
        poisoned = inner.replace(qvel=inner.qvel.at[1, 3].set(jnp.nan))
        return state.replace(env_state=state.env_state.replace(env_state=poisoned))

    monkeypatch.setattr(Checkpointer, "restore", restore_with_nan_velocity)
    capfd.readouterr()
    assert train.main(["--resume", str(run_dir), "train.total_steps=100", "--no-progress"]) == 1
    err = capfd.readouterr().err
    assert "the environment returned NaN/inf observations or rewards in update 4" in err
    assert "env steps 61-80" in err and "Last good checkpoint: update 3" in err
    assert Checkpointer(run_dir / "checkpoints").latest_step() == 3
    assert not (run_dir / "eval.json").exists()
