"""Host bridges: the worker pool (faults, bad output), the io_callback environment, SMAC and Bi-DexHands adapters.

Everything runs on the stand-ins in ``jax_mat/standins`` and ``tests/standins`` (no StarCraft II, no
Isaac Gym). Pool tests use the numpy SMAC-API game ``faulty_smac``, whose
observation is ``[agent, episode step, seed % 97, 1]`` and which pays 1 per step.
"""

import json
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_mat import config as config_lib
from jax_mat import train
from jax_mat.envs.host_bridge import HostBridgeEnv
from jax_mat.host.pool import BatchRecipe, HostEnvError, HostEnvFailure, HostEnvPool
from jax_mat.host.worker import host_array, pack, unpack
from jax_mat.training import rollout
from tests.run_dirs import training_records

FAULTY = "tests.standins.faulty_smac:StarCraft2Env"
DEXHANDS_NUMPY = "jax_mat.standins.dexhands_mujoco:make_numpy_vec_env"
DEXHANDS_TORCH = "jax_mat.standins.dexhands_mujoco:make_torch_vec_env"
STOP = 1  # SMAC's stop: available to every live agent


def faulty_recipe(**faults) -> BatchRecipe:
    options = {"map_name": "count", "env_factory": FAULTY, "env_kwargs": faults}
    return BatchRecipe("jax_mat.host.smac_api:open_smac_batch", options, "faulty")


def dexhands_recipe(factory: str) -> BatchRecipe:
    options = {"task": "TwoArmReach", "env_factory": factory}
    return BatchRecipe("jax_mat.host.bidexhands_api:open_bidexhands_batch", options, "dexhands")


@pytest.fixture
def make_pool():
    pools = []

    def make(recipe, n_envs=4, n_workers=2, **options):
        pool = HostEnvPool(recipe, n_envs, n_workers, seed=0, **options)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


def stop_everyone(n_envs: int, n_agents: int = 2) -> np.ndarray:
    return np.full((n_envs, n_agents), STOP, np.int32)


# --------------------------------------------------------------------------- the pool


def test_crashed_workers_restart_and_close_their_episodes_as_truncated(make_pool):
    pool = make_pool(faulty_recipe(crash_every=4, episode_limit=100))
    first = pool.reset()
    assert first["obs"].shape == (4, 2, 4) and first["avail"].shape == (4, 2, 7)
    steps = [pool.step(stop_everyone(4)) for _ in range(10)]
    ended = np.array([s["done"] for s in steps])  # [T, E]
    assert ended[[3, 7]].all() and ended.sum() == 8, "every environment's episode ends at the crashes (steps 4, 8)"
    assert np.array([s["truncated"] for s in steps])[ended].all()
    rewards = np.array([s["reward"][:, 0] for s in steps])
    np.testing.assert_array_equal(rewards[ended], 0.0)
    np.testing.assert_array_equal(rewards[~ended], 1.0)
    episode_step = np.array([s["obs"][:, 0, 1] for s in steps])  # observations after each step
    np.testing.assert_array_equal(episode_step[3], 0.0)  # the restarted environments begin new episodes
    np.testing.assert_array_equal(episode_step[4], 1.0)
    stats = pool.stats
    assert (stats.restarts, stats.crashes, stats.timeouts) == (4, 4, 0)
    assert (stats.env_steps, stats.lost_steps, stats.truncated_by_restart) == (40, 8, 8)


def test_a_worker_that_stops_answering_is_killed_and_restarted(make_pool):
    pool = make_pool(faulty_recipe(hang_at=2, episode_limit=100), n_envs=3, n_workers=1, step_timeout_s=1.0)
    pool.reset()
    steps = [pool.step(stop_everyone(3)) for _ in range(3)]
    assert [bool(s["done"].all()) for s in steps] == [False, True, False]
    assert steps[1]["truncated"].all()
    assert (pool.stats.timeouts, pool.stats.restarts, pool.stats.lost_steps) == (1, 1, 3)


def test_a_worker_whose_simulator_raises_is_restarted(make_pool):
    pool = make_pool(faulty_recipe(raise_at=1), n_envs=2, n_workers=2)
    pool.reset()
    out = pool.step(stop_everyone(2))
    assert out["done"].all() and out["truncated"].all()
    assert pool.stats.crashes == 2


def test_a_worker_that_always_crashes_fails_with_a_clear_error(make_pool):
    pool = make_pool(faulty_recipe(crash_every=1), n_envs=2, n_workers=1, max_failures=2)
    pool.reset()
    with pytest.raises(HostEnvFailure, match=r"faulty: worker 0 \(envs 0-1\) failed 3 times in a row"):
        for _ in range(5):
            pool.step(stop_everyone(2))


@pytest.mark.parametrize("faults, message", [
    ({"nan_at": 3, "nan_seed": 2}, r"non-finite \(NaN or inf\) obs for env 2 \(worker 1, envs 2-3\) at step 3"),
    ({"bad_shape_at": 2}, r"at step 2: get_obs\(\) \(.*env 0 of this worker\) has shape \(2, 5\); expected \(2, 4\)"),
])  # fmt: skip
def test_bad_output_is_an_error_naming_the_env_and_the_step(make_pool, faults, message):
    pool = make_pool(faulty_recipe(**faults))
    pool.reset()
    with pytest.raises(HostEnvError, match=message):
        for _ in range(4):
            pool.step(stop_everyone(4))
    assert pool.stats.restarts == 0, "bad output is reported, not restarted away"


@pytest.mark.parametrize("options, message", [
    ({"map_name": "MMM3"}, r"could not be built .*unknown map 'MMM3' for the faulty stand-in; known: count"),
    ({"env_kwargs": {"crash_on_build": True}}, r"could not be built .*the worker process exited \(code 7\)"),
])  # fmt: skip
def test_an_environment_that_cannot_be_built_fails_before_anything_runs(options, message):
    recipe = faulty_recipe()
    recipe = BatchRecipe(recipe.adapter, {**recipe.options, **options}, recipe.name)
    with pytest.raises(HostEnvError, match=message):
        HostBridgeEnv(recipe, workers_for=lambda n: 1)


def test_workers_can_run_another_interpreter(make_pool, tmp_path):
    """``env.host_python``: Isaac Gym Preview 4 lives on Python <= 3.8; here a venv stands for that interpreter."""
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(tmp_path / "venv")],
                   check=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    pool = make_pool(faulty_recipe(), n_envs=2, n_workers=1, python=python)
    assert pool.reset()["obs"].shape == (2, 2, 4)
    assert pool.step(stop_everyone(2))["reward"].tolist() == [[1.0, 1.0], [1.0, 1.0]]
    assert [w.process.args[0] for w in pool._workers] == [python]


def test_arrays_cross_as_plain_bytes_and_dlpack_reads_jax_arrays():
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([True, False])}
    back = unpack(pack(arrays))
    for k in arrays:
        np.testing.assert_array_equal(back[k], arrays[k])
        assert back[k].dtype == arrays[k].dtype
    on_device = jnp.arange(4.0)
    np.testing.assert_array_equal(host_array(on_device), np.arange(4.0))


# --------------------------------------------------------------------------- the JAX side


@pytest.fixture
def faulty_env():
    env = HostBridgeEnv(faulty_recipe(crash_every=5, episode_limit=3), workers_for=lambda n: 2)
    yield env
    env.close()


def _scan_random_steps(env, n_steps):
    """Jitted ``(state, timestep, key) -> (state, [T, E] timesteps)`` with random available actions."""

    @jax.jit
    def run(state, timestep, key):
        def body(carry, step_key):
            state, timestep = carry
            action_key, env_key = jax.random.split(step_key)
            actions = rollout.random_actions(env.spec, action_key, timestep.avail)
            state, timestep = env.step_batch(env_key, state, actions)
            return (state, timestep), timestep

        (state, _), timesteps = jax.lax.scan(body, (state, timestep), jax.random.split(key, n_steps))
        return state, timesteps

    return run


def test_every_transition_through_the_jitted_bridge_is_accounted_for(faulty_env):
    env, n_envs, n_steps = faulty_env, 4, 23
    state, first = jax.jit(lambda k: env.reset_batch(k, n_envs))(jax.random.PRNGKey(0))
    final, ts = jax.device_get(_scan_random_steps(env, n_steps)(state, first, jax.random.PRNGKey(1)))
    assert ts.obs.shape == (n_steps, n_envs, 2, 4) and ts.reward.shape == (n_steps, n_envs, 2)
    # Crashes at pool steps 5, 10, 15, 20 (both workers); otherwise every 3rd step of an episode hits the limit.
    crashed = np.zeros((n_steps, n_envs), bool)
    crashed[[4, 9, 14, 19]] = True
    assert ts.done[crashed].all() and ts.truncated[ts.done].all()
    np.testing.assert_array_equal(ts.reward[..., 0][crashed], 0.0)
    np.testing.assert_array_equal(ts.reward[..., 0][~crashed], 1.0)
    # Per environment, the finished episodes and the running one add up to every step taken.
    lengths = (ts.episode_length * ts.done).sum(0) + final.episode_length
    np.testing.assert_array_equal(lengths, n_steps)
    returns = (ts.episode_return * ts.done).sum(0) + final.episode_return
    np.testing.assert_array_equal(returns, n_steps - crashed.sum(0))
    metrics = env.host_metrics()
    assert metrics["bridge/env_steps"] == n_steps * n_envs
    assert metrics["bridge/lost_steps"] == metrics["bridge/truncated_by_restart"] == crashed.sum()
    assert metrics["bridge/restarts"] == 8


def test_evaluation_runs_in_its_own_pool_and_leaves_training_episodes_alone(faulty_env):
    env = faulty_env
    train_reset = jax.jit(lambda k: env.reset_batch(k, 2))
    eval_reset = jax.jit(lambda k: env.reset_batch(k, 3))
    step = jax.jit(env.step_batch)
    actions = jnp.full((2, 2), STOP, jnp.int32)
    state, _ = train_reset(jax.random.PRNGKey(0))
    state, ts = step(jax.random.PRNGKey(1), state, actions)
    eval_state, eval_ts = eval_reset(jax.random.PRNGKey(2))
    assert eval_ts.obs.shape[0] == 3
    state, ts = step(jax.random.PRNGKey(3), state, actions)
    np.testing.assert_array_equal(ts.obs[:, 0, 1], 2.0)  # the training episodes went on to their 2nd step
    assert env.host_metrics()["bridge/pools"] == 2
    assert jax.eval_shape(train_reset, jax.random.PRNGKey(0))[0].handle.shape == (3,)
    assert env.host_metrics()["bridge/pools"] == 2, "tracing starts nothing"


def test_a_state_from_another_process_starts_over_with_truncated_episodes(faulty_env):
    state, _ = jax.jit(lambda k: faulty_env.reset_batch(k, 2))(jax.random.PRNGKey(0))
    other_process = HostBridgeEnv(faulty_recipe(), workers_for=lambda n: 1)
    try:
        _, ts = jax.jit(other_process.step_batch)(jax.random.PRNGKey(1), state, jnp.full((2, 2), STOP, jnp.int32))
        assert ts.done.all() and ts.truncated.all()
        np.testing.assert_array_equal(ts.obs[:, 0, 1], 0.0)
        assert other_process.host_metrics()["bridge/adopted_pools"] == 1
    finally:
        other_process.close()


def test_a_stale_state_is_refused(faulty_env):
    reset = jax.jit(lambda k: faulty_env.reset_batch(k, 2))
    old, _ = reset(jax.random.PRNGKey(0))
    reset(jax.random.PRNGKey(1))
    with pytest.raises(jax.errors.JaxRuntimeError):
        jax.block_until_ready(jax.jit(faulty_env.step_batch)(jax.random.PRNGKey(2), old, jnp.ones((2, 2), jnp.int32)))
    assert isinstance(faulty_env.host_error(), HostEnvError)
    assert "from before the last reset" in str(faulty_env.host_error())


# --------------------------------------------------------------------------- Bi-DexHands API


def _dexhands_rollout(factory):
    env = HostBridgeEnv(dexhands_recipe(factory), workers_for=lambda n: 1)
    try:
        spec = env.spec
        assert (spec.n_agents, spec.obs_dim, spec.state_dim, spec.action_dim) == (2, 13, 26, 3)
        assert not spec.discrete and spec.max_episode_steps == 50
        state, first = jax.jit(lambda k: env.reset_batch(k, 2))(jax.random.PRNGKey(0))
        np.testing.assert_array_equal(first.avail[0], [[1, 1, 0], [1, 1, 1]])  # agent 0's arm has 2 joints
        _, ts = jax.device_get(_scan_random_steps(env, 60)(state, first, jax.random.PRNGKey(1)))
    finally:
        env.close()
    assert ts.done[49].all() and ts.truncated[49].all() and ts.done.sum() == 2
    assert np.isfinite(ts.obs).all() and (ts.reward < 0).all()
    np.testing.assert_array_equal(ts.episode_length[49], 50)
    moved = np.abs(np.diff(ts.obs[:40, :, :, :3], axis=0)).sum()
    assert moved > 0, "random actions move the arms"


def test_bidexhands_api_through_the_bridge_with_numpy_arrays():
    _dexhands_rollout(DEXHANDS_NUMPY)


def test_bidexhands_api_through_the_bridge_with_torch_tensors():
    pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[bridges]'); the numpy "
                                        "variant above exercises the same DLPack path")
    _dexhands_rollout(DEXHANDS_TORCH)


def test_dlpack_reads_torch_tensors_without_copying():
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[bridges]')")
    tensor = torch.arange(6, dtype=torch.float32).reshape(2, 3).t()  # a strided view
    array = host_array(tensor)
    np.testing.assert_array_equal(array, tensor.numpy())
    tensor[0, 0] = 42.0
    assert array[0, 0] == 42.0


# --------------------------------------------------------------------------- SMAC stand-in on SMAX


def test_smax_standin_speaks_smac():
    from jax_mat.standins.smax_smac import StarCraft2Env

    env = StarCraft2Env("3m", seed=0)
    info = env.get_env_info()
    assert info == {"state_shape": 73, "obs_shape": 75, "n_actions": 9, "n_agents": 3, "episode_limit": 100}
    obs, state = env.reset()
    assert len(obs) == 3 and obs[0].shape == (75,) and state.shape == (73,)
    avail = np.array(env.get_avail_actions())
    np.testing.assert_array_equal(avail[:, :2], [[0, 1]] * 3)  # alive: no no-op, stop
    with pytest.raises(AssertionError, match="Agent 0 cannot perform action 0"):
        env.step([0, 1, 1])
    # SMAC's moves 2-5 are north, south, east, west: watch agent 0's position in the world state.
    x_y = lambda: env.get_state()[1:3]
    for action, axis, sign in ((4, 0, 1), (5, 0, -1), (2, 1, 1), (3, 1, -1)):
        before = x_y()
        env.step([action, STOP, STOP])
        assert sign * (x_y()[axis] - before[axis]) > 0, f"SMAC action {action}"
    terminated, steps = False, 0
    while not terminated:
        avail = np.array(env.get_avail_actions())
        reward, terminated, step_info = env.step([int(np.flatnonzero(a)[-1]) for a in avail])
        steps += 1
    assert "battle_won" in step_info and steps <= 100
    final = np.array(env.get_avail_actions())
    dead = final[:, 0] == 1
    assert (final[dead, 1:] == 0).all() and (final[~dead, 0] == 0).all(), "the dead have only the no-op, and only they"


def test_smac_batches_append_the_agent_id_and_ask_smac_for_last_actions():
    """Upstream MAT's StarCraft2Env: obs_last_action=True (SMAC's own option) and the one-hot id appended."""
    from jax_mat.host.smac_api import open_smac_batch

    seen = {}

    class Recording:
        def __init__(self, map_name, seed, **kwargs):
            from jax_mat.standins.smax_smac import StarCraft2Env

            seen.update(kwargs)
            self._env = StarCraft2Env(map_name, seed=seed)

        def __getattr__(self, name):
            return getattr(self._env, name)

    import sys
    module = type(sys)("recording_smac")
    module.StarCraft2Env = Recording
    sys.modules["recording_smac"] = module
    try:
        batch = open_smac_batch(2, 0, "3m", "recording_smac:StarCraft2Env", {"obs_last_action": True}, obs_agent_id=True)
        info = batch.info()
        assert seen == {"obs_last_action": True}
        assert info["obs_dim"] == 75 + 3 and info["agent_id_in_obs"] is True
        obs = batch.reset()["obs"]
        assert obs.shape == (2, 3, 78)
        np.testing.assert_array_equal(obs[:, :, -3:], np.broadcast_to(np.eye(3), (2, 3, 3)))
    finally:
        del sys.modules["recording_smac"]


# --------------------------------------------------------------------------- configs and the CLI


def _tiny_cli(host_env, *extra):
    return ["env.name=smac", "env.map=count", f"env.host_env={host_env}", "env.host_workers=2",
            "train.n_envs=4", "train.episode_length=6", "train.total_steps=48", "train.eval_episodes=2",
            "algo.n_embd=16", "algo.ppo_epochs=1", "--no-progress", *extra]


def test_training_through_the_bridge_survives_crashes_and_logs_restarts(tmp_path):
    run_dir = tmp_path / "run"
    assert train.main(_tiny_cli("tests.standins.faulty_smac:crashing_every_4", "--run-dir", str(run_dir))) == 0
    records = training_records(run_dir)
    assert [r["env_steps"] for r in records] == [24, 48]
    assert records[-1]["bridge/env_steps"] == 48 and records[-1]["bridge/restarts"] == 2 * 3
    assert records[-1]["bridge/truncated_by_restart"] == records[-1]["bridge/lost_steps"] == 4 * 3
    assert json.loads((run_dir / "eval.json").read_text())["episodes"] == 2


def test_bad_host_output_is_one_error_line(tmp_path, capfd):
    run_dir = tmp_path / "run"
    assert train.main(_tiny_cli("tests.standins.faulty_smac:nan_in_reset", "--run-dir", str(run_dir))) == 2
    err = capfd.readouterr().err
    assert "error: host environment smac:count" in err and "non-finite (NaN or inf) obs for env 0" in err
    assert "at step 0" in err and "Traceback" not in err


@pytest.mark.parametrize("overrides, message", [
    (["env.name=smac", "env.map=MMM2"], "pip install git+https://github.com/oxwhirl/smac.git"),
    (["env=isaac"], "env=isaac needs NVIDIA Isaac Gym"),
    (["env.name=smac", "env.host_env=smac.env.StarCraft2Env"], "must name a constructor as 'package.module:attr"),
    (["env.name=smac", "env.host_env=no_such_module:Env"], "no module 'no_such_module' can be imported"),
    (["env.name=smac", f"env.host_env={FAULTY}", "env.host_workers=-1"], "env.host_workers must be >= 0"),
    (["env.name=smac", f"env.host_env={FAULTY}", "env.host_timeout_s=0"], "env.host_timeout_s must be > 0"),
    (["env.host_workers=2"], "env.host_workers does not apply to env.name=smax"),
])  # fmt: skip
def test_missing_simulators_and_bad_host_options_fail_at_config_time(overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        config_lib.load_config(None, overrides)


def test_bridge_configs_carry_the_reports_tables():
    mmm2 = config_lib.load_config(None, ["env=smac", "env.map=MMM2", f"env.host_env={FAULTY}"])
    assert (mmm2.env.name, mmm2.env.map, mmm2.algo.ppo_epochs, mmm2.algo.clip, mmm2.train.total_steps) == (
        "smac", "MMM2", 5, 0.05, 10_000_000)  # Table 3
    door = config_lib.load_config(None, ["env=isaac", f"env.host_env={DEXHANDS_NUMPY}"])
    a, t = door.algo, door.train
    assert door.env.task == "ShadowHandDoorOpenInward"
    assert (a.gamma, a.ppo_epochs, a.clip, a.entropy_coef, a.max_grad_norm, a.lr) == (0.96, 5, 0.2, 0.001, 0.5, 5e-5)
    assert (t.n_envs, t.episode_length, door.batch_size, t.total_steps) == (80, 75, 6000, 50_000_000)  # Tables 5-6
    close = config_lib.load_config(None, ["env=isaac", "env.task=ShadowHandDoorCloseOutward",
                                          f"env.host_env={DEXHANDS_NUMPY}"])
    assert (close.algo.lr, close.train.total_steps) == (5e-4, 40_000_000)
    standin = config_lib.load_config("smac_standin_3m")
    smax = config_lib.load_config("smax_3m")
    assert standin.algo == smax.algo and standin.train == smax.train
