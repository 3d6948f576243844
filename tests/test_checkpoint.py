"""Damaged checkpoints are skipped, not fatal; a checkpoint of another network is a mismatch, not damage.

The run directories hold checkpoints of a freshly initialised state (``tests/run_dirs.py``): what is read
matters here, not what was learned. The resumed training run is in ``tests/test_training.py``.
"""

import os
import pathlib
import re

import pytest

from jax_mat import config as config_lib
from jax_mat import evaluate
from jax_mat.training import checkpoint as checkpoint_lib
from jax_mat.training import finetune, sweep
from jax_mat.training.checkpoint import Checkpointer, DamagedCheckpointError
from jax_mat.training.runner import make_trainer
from tests.run_dirs import truncate_arrays, untrained_run

TINY = ["train.n_envs=4", "train.episode_length=8", "algo.ppo_epochs=2", "algo.num_mini_batch=2",
        "train.eval_episodes=2", "train.checkpoint_every=1", "algo.n_embd=16"]


@pytest.fixture
def two_checkpoints(tmp_path):
    """A run directory with checkpoints 1 and 2 of one untrained state."""
    run_dir = tmp_path / "run"
    state = untrained_run(run_dir, TINY, update=1)
    checkpointer = Checkpointer(run_dir / "checkpoints")
    try:
        checkpointer.save(2, state)
    finally:
        checkpointer.close()
    return run_dir


def _warnings(err: str) -> list[str]:
    lines = err.strip().splitlines()
    assert all(line.startswith("warning: ") for line in lines), err
    return lines


def test_a_truncated_newest_checkpoint_is_skipped_with_one_warning_and_left_alone(two_checkpoints, capfd):
    truncate_arrays(two_checkpoints / "checkpoints" / "2")
    capfd.readouterr()
    _, _, _, used = evaluate.load_run(str(two_checkpoints))
    assert used == 1
    (line,) = _warnings(capfd.readouterr().err)
    assert "checkpoint 2 in" in line and "damaged" in line and "using checkpoint 1 instead" in line
    assert "does not fit" not in line
    assert sorted(p.name for p in (two_checkpoints / "checkpoints").iterdir()) == ["1", "2"]

    # Asked for by number, the damaged checkpoint is an error that says so.
    with pytest.raises(DamagedCheckpointError, match="checkpoint 2 in .* is damaged"):
        evaluate.load_run(str(two_checkpoints), step=2)


def test_a_lost_metadata_file_is_skipped_by_evaluate_and_init_from(two_checkpoints, capfd):
    (two_checkpoints / "checkpoints" / "2" / "default" / "_METADATA").unlink()
    capfd.readouterr()
    assert evaluate.load_run(str(two_checkpoints))[3] == 1
    assert finetune.locate(str(two_checkpoints)).step == 1
    lines = _warnings(capfd.readouterr().err)
    assert len(lines) == 2  # one each
    for line in lines:
        assert "checkpoint 2 in" in line and "metadata" in line.lower() and "using checkpoint 1 instead" in line


def test_when_no_checkpoint_can_be_read_one_error_says_so(two_checkpoints, capfd):
    for step in ("1", "2"):
        truncate_arrays(two_checkpoints / "checkpoints" / step)
    with pytest.raises(ValueError, match="no checkpoint in .* can be read, all are damaged") as err:
        evaluate.load_run(str(two_checkpoints))
    assert "\n" not in str(err.value)
    assert evaluate.main([str(two_checkpoints), "--episodes", "1"]) == 2
    (line,) = capfd.readouterr().err.strip().splitlines()
    assert line.startswith("error: no checkpoint in")


def test_a_checkpoint_of_another_network_does_not_fit_and_names_the_entry(two_checkpoints):
    cfg = config_lib.config_from_file(os.path.join(two_checkpoints, "config.yaml"), ["algo.n_embd=32"])
    template = sweep.state_template(make_trainer(cfg))
    checkpointer = Checkpointer(two_checkpoints / "checkpoints")
    try:
        with pytest.raises(ValueError) as err:
            checkpointer.restore(template)
    finally:
        checkpointer.close()
    assert not isinstance(err.value, DamagedCheckpointError)
    message = str(err.value)
    assert message.startswith("checkpoint 2 in") and "does not fit this configuration" in message
    assert re.search(r"has shape \(\d+, 16\) in the checkpoint but \(\d+, 32\) in this run", message), message


# A run directory written before issue 17 renamed RunnerState.update to num_updates and the timestep's state
# to world_state: the config and checkpoint 1 of an untrained tiny MAT on SMAX 3m, as orbax saved them then.
RUN_BEFORE_RENAMES = pathlib.Path(__file__).parent / "data" / "run_before_issue17"


def test_a_checkpoint_saved_with_the_old_field_names_restores_under_the_new_ones(tmp_path):
    import shutil

    import numpy as np

    run_dir = tmp_path / "run"
    shutil.copytree(RUN_BEFORE_RENAMES, run_dir)
    checkpointer = Checkpointer(run_dir / "checkpoints")
    try:
        saved = checkpointer.restore_as_saved(1)
    finally:
        checkpointer.close()
    assert "update" in saved and "state" in saved["timestep"] and "num_updates" not in saved
    run = evaluate.load_run(str(run_dir))
    assert run.step == 1 and int(run.state.num_updates) == int(saved["update"])
    np.testing.assert_array_equal(run.state.timestep.world_state, saved["timestep"]["state"])
    restored = checkpoint_lib.leaves_by_path(run.state)
    for name, array in checkpoint_lib.leaves_by_path(saved).items():
        np.testing.assert_array_equal(restored[checkpoint_lib.RENAMED.get(name, name)], array, err_msg=name)
    assert evaluate.evaluate_run(str(run_dir), episodes=2)["checkpoint_update"] == 1  # and it plays
