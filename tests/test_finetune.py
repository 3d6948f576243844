"""Few-shot runs: ``--init-from`` restores another run's parameters (and optimiser state) into a new task."""

import os
import shutil

import jax
import numpy as np
import pytest

from jax_mat import config as config_lib
from jax_mat import train
from jax_mat.training import finetune
from jax_mat.training.checkpoint import Checkpointer

# The source: tests/test_envs_smax_multi.py's tiny two-map run (same programs, so the compile cache is shared);
# 3m and 2s3z padded to 5 agents and 5 enemies.
SOURCE = ["env=smax_multi", "env.maps=[3m,2s3z]", "train.n_envs=4", "train.episode_length=8", "algo.ppo_epochs=2",
          "algo.num_mini_batch=2", "train.eval_episodes=2", "train.checkpoint_every=1", "algo.n_embd=16"]
# The new task: 3m alone, padded to the source's sizes (so every parameter keeps its shape), another learning rate.
TARGET_ENV = ["env=smax_multi", "env.maps=[3m]", "env.pad_allies=5", "env.pad_enemies=5"]
TINY = ["train.n_envs=4", "train.episode_length=8", "algo.ppo_epochs=2", "algo.num_mini_batch=2",
        "train.eval_episodes=2", "train.checkpoint_every=1", "algo.n_embd=16", "algo.lr=1e-4", "train.total_steps=32"]
TARGET = [*TARGET_ENV, *TINY]


def _saved(run_dir, step):
    """Checkpoint ``step`` of a run as saved (nested dicts of arrays)."""
    checkpointer = Checkpointer(os.path.join(run_dir, "checkpoints"))
    try:
        return checkpointer.restore_as_saved(step)
    finally:
        checkpointer.close()


def _assert_trees_equal(a, b):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b) > 0
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("source") / "run"
    assert train.main([*SOURCE, "train.total_steps=64", "--run-dir", str(run_dir), "--no-progress"]) == 0
    return run_dir


def _fewshot_run(source_run, run_dir):
    assert train.main([*TARGET, "--init-from", str(source_run), "--run-dir", str(run_dir), "--no-progress"]) == 0
    return config_lib.config_from_file(run_dir / "config.yaml")


def test_restores_parameters_and_optimizer_state_into_a_new_task(source_run, tmp_path):
    run_dir = tmp_path / "fewshot"
    cfg = _fewshot_run(source_run, run_dir)
    assert cfg.train.init_from == os.path.join(str(source_run), "checkpoints", "2")  # the last one, resolved
    assert cfg.env.maps == ("3m",) and not cfg.train.reset_optimizer

    source, start, trained = _saved(source_run, 2), _saved(run_dir, 0), _saved(run_dir, 1)
    _assert_trees_equal(start["params"], source["params"])
    _assert_trees_equal(start["opt_state"], source["opt_state"])  # kept, from the same checkpoint
    assert int(start["num_updates"]) == 0
    # The new task's returns get a fresh value normaliser.
    assert any(float(v) != 0.0 for v in source["value_norm"].values())
    assert {k: float(v) for k, v in start["value_norm"].items()} == {k: 0.0 for k in source["value_norm"]}
    assert not np.array_equal(trained["params"]["params"]["encoder"]["obs_dense"]["kernel"],
                              start["params"]["params"]["encoder"]["obs_dense"]["kernel"])


@pytest.mark.slow  # a second few-shot run and its resume: scripts/check_slow_tests.sh
def test_a_few_shot_run_resumes_without_its_source(source_run, tmp_path):
    """--resume continues the new run from its own checkpoints: the source is not needed any more."""
    run_dir = tmp_path / "fewshot"
    cfg = _fewshot_run(source_run, run_dir)
    moved = source_run.parent / "moved"
    shutil.move(source_run, moved)
    try:
        assert train.main(["--resume", str(run_dir), "train.total_steps=64", "--no-progress"]) == 0
    finally:
        shutil.move(moved, source_run)
    assert Checkpointer(run_dir / "checkpoints").latest_step() == 2
    assert config_lib.config_from_file(run_dir / "config.yaml").train.init_from == cfg.train.init_from


def test_reset_optimizer_keeps_only_the_parameters_of_the_checkpoint_named(source_run, tmp_path):
    run_dir = tmp_path / "fewshot"
    argv = [*TARGET, "--init-from", str(source_run / "checkpoints" / "1"), "--reset-optimizer"]
    assert train.main([*argv, "--run-dir", str(run_dir), "--no-progress"]) == 0
    assert config_lib.config_from_file(run_dir / "config.yaml").train.reset_optimizer
    start = _saved(run_dir, 0)
    _assert_trees_equal(start["params"], _saved(source_run, 1)["params"])
    adam = start["opt_state"][1][0]
    assert int(adam["count"]) == 0
    assert all(not np.asarray(x).any() for x in jax.tree.leaves((adam["mu"], adam["nu"])))


@pytest.mark.parametrize("make_argv, message", [
    (lambda src, tmp: ["--init-from", str(tmp / "nothing")], "does not exist"),
    (lambda src, tmp: ["--init-from", str(tmp)], "is not a jax_mat run directory (no config.yaml)"),
    (lambda src, tmp: ["--init-from", str(_without_checkpoints(src, tmp))], "holds no complete checkpoint"),
    (lambda src, tmp: ["--init-from", str(src / "checkpoints" / "7")], "has updates 1, 2"),
    (lambda src, tmp: ["--init-from", str(src), "algo.n_embd=32"],
     "parameter params/decoder/action_embed has shape (11, 16) in"),
    (lambda src, tmp: ["--init-from", str(src), "--single-map"], "but (9, 16) in this run"),
    (lambda src, tmp: ["--init-from", str(src), "algo=marwkv"], "pass algo=mat"),
    (lambda src, tmp: ["--init-from", str(src), "env.obs_agent_id=false", "env.obs_last_action=false"],
     "pass env.obs_agent_id=true env.obs_last_action=true to match the source"),
    (lambda src, tmp: ["--init-from", str(src), "--init-seed", "1"], "the source run has 1 seed(s)"),
    (lambda src, tmp: ["--reset-optimizer"], "applies only with train.init_from"),
    (lambda src, tmp: ["--resume", str(src), "--init-from", str(src)], "--resume continues a run"),
])
def test_bad_init_from_fails_before_compiling_and_writes_nothing(source_run, tmp_path, make_argv, message):
    """What the command line checks before it compiles: its inputs (``train.prepare``), then the source
    checkpoint against the new run's network (``finetune.load``, as ``train.run`` calls it)."""
    from jax_mat.training.runner import make_trainer

    argv = make_argv(source_run, tmp_path)
    run_dir = tmp_path / "new"
    env = [] if "--single-map" in argv else TARGET_ENV  # the default env: SMAX 3m, unpadded
    argv = [a for a in argv if a != "--single-map"]
    extra = [] if "--resume" in argv else [*env, *TINY, "--run-dir", str(run_dir)]
    with pytest.raises(ValueError) as err:
        cfg, _, _ = train.prepare(train.parse_args([*extra, *argv, "--no-progress"]))
        finetune.load(make_trainer(cfg))
    assert message in str(err.value)
    assert not run_dir.exists()
    assert sorted(os.listdir(source_run / "checkpoints")) == ["1", "2"]


def _without_checkpoints(source_run, tmp):
    """A run directory holding only the source's config.yaml."""
    run_dir = tmp / "no_checkpoints"
    run_dir.mkdir()
    shutil.copy(source_run / "config.yaml", run_dir / "config.yaml")
    return run_dir


def test_seed_sweeps_map_one_to_one_or_from_the_seed_named():
    assert finetune.seed_sources(1, 3, -1) is None
    assert finetune.seed_sources(3, 3, -1) == [0, 1, 2]
    assert finetune.seed_sources(3, 2, 2) == [2, 2]
    with pytest.raises(ValueError, match=r"sweep of 3 seeds and this run has 2; pass --init-seed K \(0..2\)"):
        finetune.seed_sources(3, 2, -1)
    with pytest.raises(ValueError, match="has 3 seed"):
        finetune.seed_sources(3, 1, 3)

    like = {"w": jax.ShapeDtypeStruct((2,), np.float32)}
    sweep = {"w": np.arange(6.0).reshape(3, 2)}  # 3 source seeds
    np.testing.assert_array_equal(finetune.arrange_like(like, sweep, [2, 0], 2, "src")["w"], [[4, 5], [0, 1]])
    np.testing.assert_array_equal(finetune.arrange_like(like, sweep, [1], 1, "src")["w"], [2, 3])
    single = {"w": np.array([7.0, 8.0])}
    np.testing.assert_array_equal(finetune.arrange_like(like, single, None, 3, "src")["w"], [[7, 8]] * 3)
    with pytest.raises(ValueError, match=r"parameter v of src is not in this run's network"):
        finetune.arrange_like(like, {**single, "v": np.zeros(1)}, None, 1, "src")


# MuJoCo: an intact HalfCheetah 6x1 checkpoint into a run with a disabled joint (same shapes: the agent still
# observes and acts), here a sweep of 2 seeds, each starting from the one source state.
CHEETAH = ["env=mujoco", "algo.n_embd=16", "algo.num_mini_batch=1", "train.n_envs=2", "train.episode_length=8",
           "train.total_steps=16", "train.eval_episodes=1"]


@pytest.fixture(scope="module")
def cheetah_source(tmp_path_factory):
    from tests.run_dirs import untrained_run

    run_dir = tmp_path_factory.mktemp("cheetah") / "intact"
    return run_dir, untrained_run(run_dir, CHEETAH, update=3)


def _trainer(overrides):
    from jax_mat.training.runner import make_trainer

    return make_trainer(config_lib.load_config(None, overrides))


def test_mujoco_intact_parameters_start_every_seed_of_a_disabled_joint_run(cheetah_source):
    import flax.struct

    @flax.struct.dataclass
    class Start:  # the fields of a fresh RunnerState that finetune.apply replaces (no MJX compile needed)
        params: object
        opt_state: object

    source_dir, source_state = cheetah_source
    trainer = _trainer([*CHEETAH, "env.disabled_joints=[bthigh]", "train.seeds=2", "train.reset_optimizer=true",
                        f"train.init_from={source_dir}"])
    weights = finetune.load(trainer)
    assert weights.source.step == 3 and weights.opt_state is None
    # Stand-ins for the new run's own initial parameters (compiling a MAT init for 2 seeds is slow here).
    params = jax.tree.map(lambda x: np.full((2, *x.shape), -1.0, x.dtype), source_state.params)
    fresh = Start(params=params, opt_state=jax.vmap(trainer.learner.init)(params))
    state = finetune.apply(fresh, weights)
    for seed in range(2):
        _assert_trees_equal(jax.tree.map(lambda x: x[seed], state.params), source_state.params)
    _assert_trees_equal(state.opt_state, fresh.opt_state)  # reset: the new run's own fresh Adam state


def test_mujoco_observation_change_names_the_parameter_and_both_shapes(cheetah_source):
    source_dir, _ = cheetah_source
    trainer = _trainer([*CHEETAH, "env.agent_obsk=1", f"train.init_from={source_dir}"])
    with pytest.raises(ValueError, match=r"parameter params/encoder/obs_dense/kernel has shape \(\d+, 16\) in .*"
                                         r"but \(\d+, 16\) in this run"):
        finetune.load(trainer)
