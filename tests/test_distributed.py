"""Data-parallel training (``jax_mat.training.distributed``): N devices train like one, checkpoints move
between device counts, seed sweeps compose with devices, two ``jax.distributed`` processes train together,
and bad device or process settings are refused before anything is compiled.

This process already runs JAX on one CPU device, so the multi-device runs are child processes with
``--xla_force_host_platform_device_count`` fake CPU devices; they share this process's persistent
compilation cache and run with XLA's LLVM optimisation off (the same HLO program, a third of the
compile time on a 2-core CPU; only float rounding differs). The one-device references are the
programs ``tests/test_training.py`` compiles too.
"""

import dataclasses
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
import yaml
from jax.sharding import PartitionSpec

from jax_mat import config as config_lib
from jax_mat import evaluate, train
from jax_mat.training import distributed, sweep
from jax_mat.training.checkpoint import Checkpointer
from jax_mat.training.runner import make_trainer
from tests.run_dirs import training_records

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = ["train.n_envs=4", "train.episode_length=8", "algo.ppo_epochs=2", "algo.num_mini_batch=2",
        "train.eval_episodes=2", "train.checkpoint_every=1", "algo.n_embd=16"]  # as tests/test_training.py
CHILD_TIMEOUT_S = 600  # a hung collective fails the test instead of stalling CI
# float32 summation order only; a lost, doubled or differently shuffled row moves Adam steps of 5e-4.
TOLERANCE = dict(rtol=1e-4, atol=1e-5)


def _tiny(updates: int, *extra: str) -> list[str]:
    return TINY + [f"train.total_steps={updates * 32}", *extra]


def _child_env(devices: int, **extra: str) -> dict[str, str]:
    flags = f"--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=0"
    return {**os.environ, "XLA_FLAGS": flags, "PYTHONPATH": str(REPO),
            "JAX_COMPILATION_CACHE_DIR": jax.config.jax_compilation_cache_dir,
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
            **extra}


def _run_child(args: list[str], devices: int, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, env=_child_env(devices, **env), capture_output=True,
                          text=True, timeout=CHILD_TIMEOUT_S)


def _checked(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _params_at(run_dir, step):
    """The parameters of checkpoint ``step`` of ``run_dir`` (``[S, ...]`` for a sweep), restored onto this
    process's one device."""
    trainer = make_trainer(config_lib.config_from_file(os.path.join(run_dir, "config.yaml")))
    checkpointer = Checkpointer(os.path.join(run_dir, "checkpoints"))
    try:
        state = checkpointer.restore(sweep.state_template(trainer), step)
    finally:
        checkpointer.close()
    assert np.all(np.asarray(state.num_updates) == step)
    return state.params


def _assert_close_trees(a, b):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b) > 0
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **TOLERANCE)


def _losses(run_dir):
    """Each logged update's total loss."""
    return [line["loss/total"] for line in training_records(run_dir)]


@pytest.fixture(scope="module")
def one_device_run(tmp_path_factory):
    """The reference: 3 updates on one device, a checkpoint after each."""
    run_dir = tmp_path_factory.mktemp("one_device") / "run"
    assert train.main([*_tiny(3), "--run-dir", str(run_dir), "--no-progress"]) == 0
    return run_dir


@pytest.mark.slow  # default-suite time (72 s with its fixture from a cold cache); scripts/check_slow_tests.sh
def test_four_devices_train_like_one_and_the_checkpoint_resumes_on_one(one_device_run, tmp_path, capfd):
    run_dir = tmp_path / "four"
    _checked(_run_child(["-m", "jax_mat.train", *_tiny(2), "train.devices=4", "--run-dir", str(run_dir),
                         "--no-progress"], devices=4))
    assert json.loads((run_dir / "eval.json").read_text())["devices"] == 4
    _assert_close_trees(_params_at(run_dir, 2), _params_at(one_device_run, 2))
    np.testing.assert_allclose(_losses(run_dir), _losses(one_device_run)[:2], **TOLERANCE)

    # Continue the 4-device run on this process's single device: update 3 is the reference's update 3.
    assert train.main(["--resume", str(run_dir), "train.devices=1", "train.total_steps=96", "--no-progress"]) == 0
    _assert_close_trees(_params_at(run_dir, 3), _params_at(one_device_run, 3))
    capfd.readouterr()
    assert evaluate.main([str(run_dir), "--episodes", "2", "--step", "2"]) == 0
    assert "checkpoint update 2: 2 greedy episodes" in capfd.readouterr().out


@pytest.mark.slow  # default-suite time on the 2-core CI machine; run by scripts/check_slow_tests.sh
def test_one_device_checkpoint_resumes_on_four_devices(one_device_run, tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(one_device_run / "config.yaml", run_dir / "config.yaml")
    shutil.copytree(one_device_run / "checkpoints" / "2", run_dir / "checkpoints" / "2")
    _checked(_run_child(["-m", "jax_mat.train", "--resume", str(run_dir), "train.devices=4", "train.total_steps=96",
                         "--no-progress"], devices=4))
    _assert_close_trees(_params_at(run_dir, 3), _params_at(one_device_run, 3))


@pytest.mark.slow  # default-suite time on the 2-core CI machine; run by scripts/check_slow_tests.sh
@pytest.mark.timeout(900)
def test_seeds_spread_over_and_vmapped_on_devices_equal_single_seed_runs(one_device_run, tmp_path):
    """``--seeds 2`` on a (2, 2) mesh: the seeds on two groups of devices, each seed's environments split
    over the two devices of its group; seed k equals the one-device run with ``seed=k``."""
    run_dir, seed_1 = tmp_path / "sweep", tmp_path / "seed_1"
    _checked(_run_child(["-m", "jax_mat.train", *_tiny(2), "--seeds", "2", "train.devices=4", "train.seed_shards=2",
                         "--run-dir", str(run_dir), "--no-progress"], devices=4))
    results = json.loads((run_dir / "eval.json").read_text())
    assert results["devices"] == 4 and results["mesh"] == {"seeds": 2, "envs": 2} and len(results["per_seed"]) == 2
    assert train.main([*_tiny(2), "seed=1", "--run-dir", str(seed_1), "--no-progress"]) == 0
    swept = _params_at(run_dir, 2)
    for seed, single_run in enumerate([one_device_run, seed_1]):
        _assert_close_trees(jax.tree.map(lambda x: x[seed], swept), _params_at(single_run, 2))
    losses = training_records(run_dir)
    np.testing.assert_allclose([x["loss/total"] for x in losses if x["seed"] == 1], _losses(seed_1), **TOLERANCE)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # default-suite time on the 2-core CI machine (three child compiles); scripts/check_slow_tests.sh
@pytest.mark.timeout(900)
def test_two_processes_train_together_and_only_process_0_writes(one_device_run, tmp_path):
    """Two ``jax.distributed`` processes on localhost with 2 CPU devices each: one 4-device mesh.

    Process 0 takes its settings from the config, process 1 from the environment variables.
    """
    run_dir = tmp_path / "run"
    address = f"127.0.0.1:{_free_port()}"
    command = [sys.executable, "-m", "jax_mat.train", *_tiny(2), "train.devices=all"]
    flags = ["--run-dir", str(run_dir), "--no-progress"]
    launches = [
        (command + [f"train.coordinator_address={address}", "train.num_processes=2", "train.process_id=0"], {}),
        (command, {"JAX_COORDINATOR_ADDRESS": address, "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}),
    ]
    procs = [subprocess.Popen(argv + flags, cwd=REPO, env=_child_env(2, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for argv, env in launches]
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=CHILD_TIMEOUT_S))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, f"process failed ({proc.returncode}):\n{out[-3000:]}\n{err[-3000:]}"
    assert "run directory" in outputs[0][0] and "run directory" not in outputs[1][0]
    results = json.loads((run_dir / "eval.json").read_text())
    assert results["processes"] == 2 and results["devices"] == 4
    assert [x["env_steps"] for x in training_records(run_dir)] == [32, 64]
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())["train"]
    assert saved["process_id"] == -1 and saved["num_processes"] == 2  # an id is one process's own
    _assert_close_trees(_params_at(run_dir, 2), _params_at(one_device_run, 2))


# --------------------------------------------------------------------------- #
# Bad input                                                                     #
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("argv, environ, message", [
    (["train.devices=2"], {}, "train.devices=2 but only 1 cpu device(s) are visible"),
    (["train.devices=4", "train.n_envs=6"], {}, "train.n_envs (6) must be divisible by train.devices (4)"),
    (["train.devices=-1"], {}, "train.devices must be 'all' or a device count >= 1"),
    (["--seeds", "3", "train.seed_shards=2"], {}, "train.seeds (3) must be divisible by train.seed_shards (2)"),
    (["--seeds", "3", "train.devices=4", "train.seed_shards=3"], {},
     "train.devices (4) must be divisible by train.seed_shards (3)"),
    (["--seeds", "2", "train.devices=4", "train.seed_shards=2", "train.n_envs=5"], {},
     "train.n_envs (5) must be divisible by the 2 devices of each of train.seed_shards (2) groups"),
    (["train.num_processes=2", "train.process_id=2"], {}, "train.process_id (2) must be below train.num_processes (2)"),
    (["train.num_processes=2"], {}, "missing: coordinator address, process id"),
    (["train.distributed=off", "train.process_id=1"], {}, "train.distributed=off contradicts train.process_id"),
    (["train.coordinator_address=localhost"], {}, "train.coordinator_address must be host:port"),
    ([], {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1234", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"},
     "process id 2 ($JAX_PROCESS_ID) must be below the process count 2 ($JAX_NUM_PROCESSES)"),
    (["train.num_processes=3"], {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1234", "JAX_PROCESS_ID": "3"},
     "process id 3 ($JAX_PROCESS_ID) must be below the process count 3 (train.num_processes)"),
    ([], {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1234", "JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"},
     "$JAX_NUM_PROCESSES='two' is malformed"),
])
def test_bad_device_and_process_settings_fail_before_anything_is_built(tmp_path, monkeypatch, argv, environ,
                                                                       message):
    for name in (distributed.ENV_ADDRESS, distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    run_dir = tmp_path / "run"
    with pytest.raises(ValueError) as err:
        train.prepare(train.parse_args([*_tiny(1), *argv, "--run-dir", str(run_dir), "--no-progress"]))
    assert message in str(err.value)
    assert not run_dir.exists()


def test_host_bridges_and_multi_map_smax_refuse_more_than_one_device():
    with pytest.raises(ValueError, match=r"env.name=smac cannot be split over 2 devices \(train.devices\)"):
        config_lib.load_config("smac_standin_3m", ["train.devices=2"])
    with pytest.raises(ValueError, match="env.name=smac cannot be split over 4 devices"):
        config_lib.check_splits_over_devices("smac", 4)  # what train.devices=all meets on 4 devices
    with pytest.raises(ValueError, match="env.name=smax_multi cannot be split over 4 devices.*one group of"):
        config_lib.check_splits_over_devices("smax_multi", 4)
    config_lib.check_splits_over_devices("smac", 1)
    config_lib.check_splits_over_devices("smax_multi", 1)
    config_lib.check_splits_over_devices("smax", 4)


def test_environments_that_do_not_divide_over_all_devices_fail_before_compiling(tmp_path):
    run_dir = tmp_path / "run"
    proc = _run_child(["-m", "jax_mat.train", *_tiny(1), "train.n_envs=6", "train.total_steps=48", "train.devices=all",
                       "--run-dir", str(run_dir), "--no-progress"], devices=4, JAX_LOG_COMPILES="1")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "error: train.n_envs (6) must be divisible by the 4 devices the environments are split over" in proc.stderr
    assert "compilation of jit(init)" not in proc.stderr and "compilation of jit(update)" not in proc.stderr
    assert not run_dir.exists()


# --------------------------------------------------------------------------- #
# Pieces                                                                        #
# --------------------------------------------------------------------------- #


def test_process_group_sources():
    train_cfg = config_lib.TrainConfig
    assert distributed.process_group(train_cfg(), {}) is None
    env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
    assert distributed.process_group(train_cfg(), env) == distributed.ProcessGroup("10.0.0.1:1234", 4, 3)
    # The config wins over the environment; `on` leaves what is unset to JAX's cluster detection.
    assert distributed.process_group(train_cfg(process_id=1), env).process_id == 1
    assert distributed.process_group(train_cfg(distributed="on"), {}) == distributed.ProcessGroup(None, None, None)
    assert distributed.process_group(train_cfg(distributed="off"), env) is None


def test_state_shardings_split_environments_and_replicate_the_rest():
    cfg = config_lib.load_config(None, _tiny(1))
    shapes = jax.eval_shape(make_trainer(cfg).init, jax.random.PRNGKey(0))
    mesh = distributed.make_mesh(jax.devices(), cfg.train.n_envs)
    shardings = distributed.state_shardings(shapes, mesh)
    specs = lambda tree: {s.spec for s in jax.tree.leaves(tree)}
    assert specs((shardings.env_state, shardings.timestep)) == {PartitionSpec("envs")}
    assert specs((shardings.params, shardings.opt_state, shardings.value_norm, shardings.key, shardings.num_updates)) == {
        PartitionSpec()}
    with pytest.raises(ValueError, match="cannot be split into 3 equal groups"):
        distributed.make_mesh(jax.devices(), 4, seed_shards=3)


@pytest.mark.parametrize("algo", ["mat", "mappo", "happo"])
def test_learners_hand_every_minibatch_to_the_placement_hook(algo):
    """Traced only: every minibatch the learner differentiates passes through ``shard_minibatches`` first
    (HAPPO: each actor's and the critic's), shaped ``[num_mini_batch, rows / num_mini_batch, ...]``."""
    cfg = config_lib.load_config(None, _tiny(1, f"algo={algo}"))
    placed = []

    def place(minibatches):
        placed.append(minibatches)
        return minibatches

    trainer = dataclasses.replace(make_trainer(cfg), shard_minibatches=place)
    assert trainer.learner.shard_minibatches is place
    jax.eval_shape(trainer.update, jax.eval_shape(trainer.init, jax.random.PRNGKey(0)))
    rows = cfg.train.n_envs * cfg.train.episode_length // cfg.algo.num_mini_batch
    assert placed and all(x.shape[:2] == (cfg.algo.num_mini_batch, rows) for mb in placed for x in mb.values())
    fields = [set(mb) for mb in placed]
    if algo == "happo":
        assert {"factor", "advantages"} <= fields[0] and {"returns", "world_state"} <= fields[-1]  # actors, then critic
    else:
        assert all({"obs", "advantages", "returns"} <= f for f in fields)
