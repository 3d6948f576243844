"""Starting a run from another run's checkpoint (few-shot fine-tuning): ``--init-from``.

``python -m jax_mat.train --init-from SOURCE env=... [key=value ...]``, where
``SOURCE`` is a run directory (its last complete checkpoint that can be
read: a newer damaged one is named in a ``warning:`` line and skipped), its
``checkpoints/`` folder, or one checkpoint ``RUN_DIR/checkpoints/<update>``.

What the new run takes from the source checkpoint: the network parameters,
and the optimiser state (Adam's moments and step count) from that same
checkpoint unless ``--reset-optimizer`` (``train.reset_optimizer``) asks for
a fresh one. What starts fresh, as in any new run: the value normaliser (the
new task's returns have their own scale), the environments, the PRNG key
(from ``seed``) and the update counter (0). The new run may change anything
that leaves the parameters' shapes alone: the environment or map, the
learning rate, the budget.

Seed sweeps (a source with ``train.seeds = S > 1`` stores every array with a
leading seed axis):

* ``--init-seed K`` (``train.init_seed``): every seed of the new run starts
  from the source's seed ``K``;
* otherwise a single-seed source starts every new seed from its one state,
  and a sweep of ``S`` seeds maps one to one onto a new run of ``S`` seeds
  (new seed ``k`` from source seed ``k``); any other combination is an error.

Everything is checked before anything is compiled or written: the path, the
checkpoint, the algorithm, the seeds, and every parameter's name and shape
(the first that differs is named, with both shapes). The resolved checkpoint
is recorded as ``train.init_from`` in the new run's ``config.yaml``, and the
new run's initial state is saved as its checkpoint 0, so ``--resume``
continues the new run from its own checkpoints and never reads the source
again.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jax_mat import config as config_lib
from jax_mat.training import run_dir as run_dir_lib


@dataclasses.dataclass(frozen=True)
class InitSource:
    """One complete checkpoint of a finished or running jax_mat run."""

    run_dir: str
    step: int
    config: config_lib.Config  # the source run's config

    @property
    def checkpoint_dir(self) -> str:
        return run_dir_lib.RunDir(self.run_dir).checkpoints

    @property
    def path(self) -> str:
        """``RUN_DIR/checkpoints/<update>``, absolute: what ``train.init_from`` records."""
        return run_dir_lib.RunDir(self.run_dir).checkpoint(self.step)


@dataclasses.dataclass(frozen=True)
class InitWeights:
    """What a new run starts from: host arrays shaped like its own state (seed axis included)."""

    source: InitSource
    params: Any
    opt_state: Any | None  # None: --reset-optimizer


def locate(path: str) -> InitSource:
    """The checkpoint ``path`` names (a run directory, its ``checkpoints/`` or ``checkpoints/<update>``).

    Raises ``ValueError`` when the path does not exist, is not a jax_mat run,
    holds no complete checkpoint, or names an update that is not one.
    """
    if not path:
        raise ValueError("--init-from needs a run directory or RUN_DIR/checkpoints/<update>")
    run, step = run_dir_lib.split_checkpoint_path(path)
    path = os.path.abspath(path)
    if not os.path.exists(run.path):
        raise ValueError(f"--init-from: {path} does not exist")
    if not os.path.isdir(run.path):
        raise ValueError(f"--init-from: {run.path} is a file, not a run directory")
    if not run.is_run():
        raise ValueError(
            f"--init-from: {path} is not a jax_mat run directory (no {run_dir_lib.CONFIG_FILE}); pass a run "
            f"directory, RUN_DIR/{run_dir_lib.CHECKPOINT_DIR} or RUN_DIR/{run_dir_lib.CHECKPOINT_DIR}/<update>"
        )
    source_config = config_lib.config_from_file(run.config)
    steps = _complete_steps(run.checkpoints)
    if not steps:
        raise ValueError(
            f"--init-from: {run.path} holds no complete checkpoint (nothing in {run_dir_lib.CHECKPOINT_DIR}/)")
    if step is None:
        step = _newest_readable(run.checkpoints)
    elif step not in steps:
        raise ValueError(
            f"--init-from: {path} is not a complete checkpoint; {run.path} has updates {', '.join(map(str, steps))}"
        )
    return InitSource(run_dir=run.path, step=step, config=source_config)


def _complete_steps(checkpoint_dir: str) -> list[int]:
    """The complete checkpoints' updates, sorted (none when the folder is missing; it is never created)."""
    if not os.path.isdir(checkpoint_dir):
        return []
    from jax_mat.training.checkpoint import Checkpointer

    checkpointer = Checkpointer(checkpoint_dir)
    try:
        return sorted(checkpointer.all_steps())
    finally:
        checkpointer.close()


def _newest_readable(checkpoint_dir: str) -> int:
    """The newest checkpoint that reads cleanly; a newer damaged one is named in a ``warning:`` line."""
    from jax_mat.training.checkpoint import Checkpointer

    checkpointer = Checkpointer(checkpoint_dir)
    try:
        found = checkpointer.restore_newest(checkpointer.restore_as_saved)
    except ValueError as err:
        raise ValueError(f"--init-from: {err}") from None
    finally:
        checkpointer.close()
    checkpointer.warn_skipped(found)
    return found.step


def seed_sources(source_seeds: int, target_seeds: int, init_seed: int) -> list[int] | None:
    """Which source seed each new seed starts from (``None``: the source has no seed axis).

    Raises ``ValueError`` (saying what is allowed) when ``init_seed`` is out of
    range, or when a sweep meets a different number of seeds without ``--init-seed``.
    """
    if init_seed >= source_seeds:
        raise ValueError(
            f"--init-seed {init_seed}: the source run has {source_seeds} seed(s), 0..{source_seeds - 1}"
        )
    if source_seeds == 1:
        return None
    if init_seed >= 0:
        return [init_seed] * target_seeds
    if source_seeds == target_seeds:
        return list(range(target_seeds))
    raise ValueError(
        f"--init-from: the source run is a sweep of {source_seeds} seeds and this run has {target_seeds}; "
        f"pass --init-seed K (0..{source_seeds - 1}) to start every seed from seed K, or train "
        f"{source_seeds} seeds (--seeds {source_seeds}) to start seed k from seed k"
    )


# Environment options that change the observation size, and so the network's input layer.
AGENT_FEATURE_OPTIONS = ("obs_agent_id", "obs_last_action")


def load(trainer) -> InitWeights:
    """Reads and checks ``trainer.config.train.init_from`` for a new run of ``trainer``.

    Raises ``ValueError`` (before anything is compiled) when the checkpoint
    cannot be used: see the module docstring.
    """
    cfg = trainer.config
    source = locate(cfg.train.init_from)
    src_cfg = source.config
    if src_cfg.algo.name != cfg.algo.name:
        raise ValueError(
            f"--init-from: the source run trained algo={src_cfg.algo.name}, this run is algo={cfg.algo.name}; "
            f"fine-tuning keeps the network: pass algo={src_cfg.algo.name}"
        )
    differ = [f"env.{f}" for f in AGENT_FEATURE_OPTIONS if getattr(src_cfg.env, f) != getattr(cfg.env, f)]
    if differ:
        source_values = " ".join(f"{k}={str(getattr(src_cfg.env, k[4:])).lower()}" for k in differ)
        raise ValueError(
            f"--init-from: the source run's observations were built with {source_values} and this run's are not "
            f"(its network expects another observation size); pass {source_values} to match the source"
        )
    mapping = seed_sources(src_cfg.train.seeds, cfg.train.seeds, cfg.train.init_seed)
    target_seeds = cfg.train.seeds
    params_template = jax.eval_shape(trainer.policy.init, jax.random.PRNGKey(0))
    saved = _restore_as_saved(source)
    where = f"{source.path} ({src_cfg.algo.name} on {src_cfg.env.name}:{src_cfg.env.variant})"
    params = arrange_like(params_template, saved["params"], mapping, target_seeds, where, "parameter")
    opt_state = None
    if not cfg.train.reset_optimizer:
        opt_template = jax.eval_shape(trainer.learner.init, params_template)
        opt_state = arrange_like(opt_template, saved["opt_state"], mapping, target_seeds, where, "optimiser state")
    return InitWeights(source=source, params=params, opt_state=opt_state)


def apply(state: Any, weights: InitWeights) -> Any:
    """``state`` (a fresh ``RunnerState``) with the source's parameters and, if kept, optimiser state."""
    put = lambda tree, like: jax.tree.map(lambda x, y: jnp.asarray(x, y.dtype), tree, like)
    state = state.replace(params=put(weights.params, state.params))
    if weights.opt_state is not None:
        state = state.replace(opt_state=put(weights.opt_state, state.opt_state))
    return state


def _restore_as_saved(source: InitSource) -> dict:
    """The source checkpoint as saved: nested dicts and lists of arrays."""
    from jax_mat.training.checkpoint import Checkpointer

    checkpointer = Checkpointer(source.checkpoint_dir)
    try:
        return checkpointer.restore_as_saved(source.step)
    except ValueError as err:
        raise ValueError(f"--init-from: {err}") from None
    finally:
        checkpointer.close()


def arrange_like(template: Any, saved: Any, mapping: list[int] | None, target_seeds: int, where: str,
                 what: str = "parameter") -> Any:
    """``saved`` (nested dicts/lists as orbax restores them) as numpy arrays in ``template``'s structure.

    Args:
      template: one seed's pytree of arrays or ``ShapeDtypeStruct`` (e.g. the new run's parameters).
      saved: the source's tree, each array with a leading seed axis when ``mapping`` is not None.
      mapping: ``seed_sources(...)``: the source seed of each new seed, or None (no seed axis).
      target_seeds: the new run's seeds; above 1 every result gets a leading ``[target_seeds]`` axis.
      where: how error messages name the source.
      what: how error messages name an entry ("parameter", "optimiser state").

    Raises:
      ValueError: naming the first entry missing on either side, or whose
        (per-seed) shape differs, with both shapes.
    """
    from jax_mat.training.checkpoint import leaves_by_path, path_text

    by_path = leaves_by_path(saved)
    flat, treedef = jax.tree_util.tree_flatten_with_path(template)
    names = [path_text(path) for path, _ in flat]
    hint = "" if what == "parameter" else "; pass --reset-optimizer to start with a fresh optimiser state"
    known = set(names)
    extra = [name for name in by_path if name not in known]
    if extra:
        raise ValueError(f"--init-from: {what} {extra[0]} of {where} is not in this run's network{hint}")
    leaves = []
    for name, (_, like) in zip(names, flat):
        if name not in by_path:
            raise ValueError(f"--init-from: this run's {what} {name} is not in {where}{hint}")
        array = np.asarray(by_path[name])
        per_seed = array.shape[1:] if mapping is not None else array.shape
        if tuple(per_seed) != tuple(like.shape):
            raise ValueError(
                f"--init-from: {what} {name} has shape {tuple(per_seed)} in {where} but {tuple(like.shape)} in "
                f"this run (a different network size, observation or action space){hint}"
            )
        if mapping is not None:
            array = array[np.asarray(mapping)]
            array = array if target_seeds > 1 else array[0]
        elif target_seeds > 1:
            array = np.broadcast_to(array, (target_seeds, *array.shape))
        leaves.append(array)
    return jax.tree_util.tree_unflatten(treedef, leaves)


def record_source(cfg: config_lib.Config) -> config_lib.Config:
    """``cfg`` with ``train.init_from`` resolved to the exact checkpoint (``RUN_DIR/checkpoints/<update>``)."""
    source = locate(cfg.train.init_from)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, init_from=source.path))
