"""Orbax checkpoints of the whole ``RunnerState``, written atomically, restorable on any device count.

Orbax writes each step into a temporary directory and renames it into place
once complete, so a process killed mid-save (even by SIGKILL) leaves the
previous checkpoint intact and listed; the half-written one is ignored.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Saves and restores ``RunnerState`` pytrees under ``directory``."""

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 3):
        self.directory = os.path.abspath(os.fspath(directory))
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, state: Any) -> None:
        self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
        self._manager.wait_until_finished()

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def restore(self, template: Any, step: int | None = None) -> Any:
        """Restore into the structure, shapes and dtypes of ``template`` (e.g. ``jax.eval_shape(trainer.init, key)``).

        Each array is placed as its template leaf's ``sharding`` says (``distributed.ShardedTraining.abstract_state``),
        or on this process's first device when the leaf has none, whatever devices the checkpoint was written from.

        Raises ``ValueError`` naming the problem when there is no checkpoint,
        or when it does not fit (another network shape, environment or
        algorithm) or cannot be read.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise ValueError(f"no complete checkpoint in {self.directory}")
        abstract = jax.tree.map(_restore_target, template)
        try:
            return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(
                f"checkpoint {step} in {self.directory} does not fit this configuration "
                f"(different network shape, environment or algorithm?): {_first_line(err)}"
            ) from None
        except Exception as err:  # orbax/tensorstore raise many kinds on unreadable files
            raise ValueError(f"checkpoint {step} in {self.directory} cannot be read: {_first_line(err)}") from None

    def restore_as_saved(self, step: int) -> Any:
        """Checkpoint ``step`` without a template, as nested dicts and lists of arrays (a ``RunnerState``
        becomes a dict of its fields, optimiser states lists): for reading another run's checkpoint.
        Raises ``ValueError`` when it cannot be read."""
        try:
            return self._manager.restore(step, args=ocp.args.StandardRestore())
        except Exception as err:  # orbax/tensorstore raise many kinds on missing or unreadable files
            raise ValueError(f"checkpoint {step} in {self.directory} cannot be read: {_first_line(err)}") from None

    def close(self) -> None:
        self._manager.close()


def _restore_target(leaf: Any) -> jax.ShapeDtypeStruct:
    target = ocp.utils.to_shape_dtype_struct(leaf)
    if target.sharding is None:
        target = jax.ShapeDtypeStruct(target.shape, target.dtype,
                                      sharding=jax.sharding.SingleDeviceSharding(jax.local_devices()[0]))
    return target


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__
