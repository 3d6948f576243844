"""Run directories without training: a config and one checkpoint of a fresh ``RunnerState``.

For tests of what reads run directories (``--render``, ``--init-from``, damaged checkpoints) where the parameters'
values do not matter; and ``training_records``, the training lines of a run's ``metrics.jsonl``.
"""

import json
import os
import pathlib

import jax

from jax_mat import config as config_lib
from jax_mat.training.run_dir import RunDir


def untrained_run(run_dir, overrides, update=0, with_checkpoint=True):
    """Writes ``run_dir`` (config.yaml and, if asked, checkpoint ``update`` of ``Trainer.init``); returns its state."""
    from jax_mat.training import sweep
    from jax_mat.training.checkpoint import Checkpointer
    from jax_mat.training.runner import make_trainer

    cfg = config_lib.load_config(None, list(overrides))
    run = RunDir(run_dir)
    os.makedirs(run.path)
    config_lib.save_config(cfg, run.config)
    if not with_checkpoint:
        return None
    trainer = make_trainer(cfg)
    n_seeds = cfg.train.seeds
    state = jax.jit(sweep.over_seeds(trainer.init, n_seeds))(sweep.run_keys(cfg.seed, n_seeds))
    checkpointer = Checkpointer(run.checkpoints)
    try:
        checkpointer.save(update, state)
    finally:
        checkpointer.close()
    return state


def truncate_arrays(step_dir: pathlib.Path) -> None:
    """Cuts every array data file of one checkpoint to 10 bytes (a disk that lost their tails)."""
    data = [p for p in step_dir.rglob("*") if p.is_file() and p.parent.name == "d"]
    assert data, f"no array data files under {step_dir}"
    for path in data:
        with open(path, "r+b") as f:
            f.truncate(10)


def training_records(run_dir) -> list[dict]:
    """The logged updates of ``metrics.jsonl`` (its evaluations' ``eval/`` lines carry no loss)."""
    lines = (pathlib.Path(RunDir(str(run_dir)).metrics)).read_text().splitlines()
    return [record for record in map(json.loads, lines) if "loss/total" in record]
