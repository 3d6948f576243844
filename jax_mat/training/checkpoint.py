"""Orbax checkpoints of the whole ``RunnerState``, written atomically, restorable on any device count.

Orbax writes each step into a temporary directory and renames it into place
once complete, so a process killed mid-save (even by SIGKILL) leaves the
previous checkpoint intact and listed; the half-written one is ignored.

A complete checkpoint can still be damaged later (files truncated or lost on disk). Restoring tells the two
failures apart: the saved tree's metadata (every array's name and shape) is compared with the template
first, so a checkpoint of another network, environment or algorithm is reported as not fitting, naming the
first entry that differs; a checkpoint whose metadata or arrays cannot be read is damaged. Without a step,
``restore`` takes the newest checkpoint that restores cleanly, and each newer damaged one is reported in
one ``warning:`` line on standard error. Nothing here deletes a damaged checkpoint: a run that continues
from an older one moves the damaged folders aside (``set_aside``: ``<step>.damaged-<time>`` beside them,
which orbax does not list), so that it can save those updates again.

A checkpoint holds the ``RunnerState`` under its field names. Fields renamed since a checkpoint was written
(``RENAMED``: ``update`` is ``num_updates``, the timestep's ``state`` is ``world_state``) restore under
their new names: such a checkpoint is read as saved and its arrays placed by name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import os
import sys
from typing import Any, Callable, Iterator, TypeVar

import jax
import numpy as np
import orbax.checkpoint as ocp

T = TypeVar("T")

# Entries of checkpoints written before a field was renamed: {name as saved: name now}.
RENAMED = {"update": "num_updates", "timestep/state": "timestep/world_state"}


class DamagedCheckpointError(ValueError):
    """A checkpoint whose metadata or arrays cannot be read; the message names it and the reason."""

    def __init__(self, step: int, directory: str, reason: str):
        super().__init__(f"checkpoint {step} in {directory} is damaged (it cannot be read: {reason})")
        self.step = step
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Restored:
    """What ``Checkpointer.restore_newest`` found: the value, its step and the newer damaged steps skipped."""

    value: Any
    step: int
    damaged: tuple[DamagedCheckpointError, ...] = ()


class Checkpointer:
    """Saves and restores ``RunnerState`` pytrees under ``directory``."""

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 3):
        self.directory = os.path.abspath(os.fspath(directory))
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False)
        # The handler named up front lets a fresh manager read a step's metadata before restoring it.
        self._manager = ocp.CheckpointManager(self.directory, options=options,
                                              item_handlers=ocp.StandardCheckpointHandler())

    def save(self, step: int, state: Any) -> None:
        """Writes checkpoint ``step``. A folder already there for ``step`` is the same update saved before a
        resume went back past it (a best-parameters checkpoint of an evaluation that runs again): it is moved
        aside as ``<step>.replaced-<time>``, since orbax refuses to write over it."""
        if step in self._manager.all_steps():
            self.set_aside(step, "replaced")
        self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
        self._manager.wait_until_finished()

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def restore_latest(self, template: Any) -> Restored:
        """The newest checkpoint that restores cleanly into ``template`` (see ``restore``), with the newer
        damaged ones it skipped, unreported (``warn_skipped`` reports them)."""
        return self.restore_newest(lambda step: self.restore(template, step))

    def restore(self, template: Any, step: int | None = None, *, quiet: bool = False) -> Any:
        """Restore into the structure, shapes and dtypes of ``template`` (e.g. ``jax.eval_shape(trainer.init, key)``).

        ``step`` None: the newest checkpoint that restores cleanly (``restore_latest``), each newer damaged
        one reported in a ``warning:`` line unless ``quiet``. Each array is placed as its template leaf's ``sharding`` says
        (``distributed.ShardedTraining.abstract_state``), or on this process's first device when the leaf
        has none, whatever devices the checkpoint was written from.

        Raises ``ValueError`` naming the problem when there is no checkpoint, when it does not fit (another
        network shape, environment or algorithm: the first differing entry is named), or, as
        ``DamagedCheckpointError``, when it cannot be read (with ``step`` None: when none can).
        """
        if step is None:
            found = self.restore_latest(template)
            if not quiet:
                self.warn_skipped(found)
            return found.value
        self._check_listed(step)
        try:
            with _orbax_warnings_held():  # a damaged checkpoint is reported once, by us
                saved = self._manager.item_metadata(step)
        except Exception as err:  # orbax/tensorstore raise many kinds on unreadable files
            raise self._damaged(step, err) from None
        # None: the tree's metadata file is missing or unreadable; a template of plain dicts and lists may
        # still restore by its names, a RunnerState (dataclasses) cannot.
        if saved is not None:
            saved_names = leaves_by_path(saved.tree)
            difference = first_difference(template, current_names(saved_names))
            if difference:
                raise ValueError(
                    f"checkpoint {step} in {self.directory} does not fit this configuration (a different "
                    f"network shape, environment or algorithm): {difference}"
                )
            if any(name in RENAMED for name in saved_names):
                return self._restore_renamed(template, step)
        abstract = jax.tree.map(_restore_target, template)
        try:
            return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except Exception as err:
            raise self._damaged(step, err, None if saved is not None else "its tree metadata is missing") from None

    def restore_as_saved(self, step: int) -> Any:
        """Checkpoint ``step`` without a template, as nested dicts and lists of arrays (a ``RunnerState``
        becomes a dict of its fields, optimiser states lists): for reading another run's checkpoint.
        Raises ``DamagedCheckpointError`` when it cannot be read."""
        self._check_listed(step)
        try:
            return self._manager.restore(step, args=ocp.args.StandardRestore())
        except Exception as err:  # orbax/tensorstore raise many kinds on missing or unreadable files
            raise self._damaged(step, err) from None

    def _restore_renamed(self, template: Any, step: int) -> Any:
        """Checkpoint ``step``, saved with names ``RENAMED`` has changed since, in ``template``'s structure."""
        by_name = current_names(leaves_by_path(self.restore_as_saved(step)))
        flat, treedef = jax.tree_util.tree_flatten_with_path(template)
        leaves = []
        for path, like in flat:
            target = _restore_target(like)
            host = np.asarray(by_name[path_text(path)], dtype=target.dtype)
            leaves.append(jax.make_array_from_callback(target.shape, target.sharding, lambda index, x=host: x[index]))
        return jax.tree_util.tree_unflatten(treedef, leaves)

    def restore_newest(self, attempt: Callable[[int], T]) -> Restored:
        """``attempt(step)`` on the complete checkpoints, newest first, until one returns.

        A ``DamagedCheckpointError`` moves on to the next older step; any other error (a mismatch) is raised
        at once. Raises ``ValueError`` when there is no checkpoint, or when none can be read.
        """
        steps = sorted(self.all_steps(), reverse=True)
        if not steps:
            raise ValueError(f"no complete checkpoint in {self.directory}")
        damaged = []
        for step in steps:
            try:
                return Restored(attempt(step), step, tuple(damaged))
            except DamagedCheckpointError as err:
                damaged.append(err)
        reasons = "; ".join(f"{err.step}: {err.reason}" for err in damaged)
        raise ValueError(f"no checkpoint in {self.directory} can be read, all are damaged ({reasons})")

    def warn_skipped(self, found: Restored, moved: dict[int, str] | None = None) -> None:
        """One ``warning:`` line on standard error per damaged checkpoint ``found`` skipped (and where it was
        moved, when ``moved`` says)."""
        for err in found.damaged:
            kept = f"; it is kept as {moved[err.step]}" if moved and err.step in moved else "; it is left as it is"
            warn(f"{err}; using checkpoint {found.step} instead{kept}")

    def set_aside(self, step: int, why: str = "damaged") -> str:
        """Moves checkpoint ``step``'s folder to ``<step>.<why>-<time>`` beside it (out of orbax's list, never
        deleted) and returns the new path. Every process of a run calls it; process 0 moves the folder."""
        from jax_mat.training import distributed

        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        source = os.path.join(self.directory, str(step))
        target = f"{source}.{why}-{stamp}"
        n = 1
        while os.path.exists(target):
            n += 1
            target = f"{source}.{why}-{stamp}-{n}"
        if distributed.is_primary():
            os.rename(source, target)
        distributed.barrier(f"jax_mat: {self.directory} {step} set aside")
        self._manager.reload()
        return target

    def close(self) -> None:
        self._manager.close()

    def _check_listed(self, step: int) -> None:
        if step not in self._manager.all_steps():
            listed = ", ".join(map(str, sorted(self.all_steps()))) or "none"
            raise ValueError(f"no complete checkpoint {step} in {self.directory} (complete ones: {listed})")

    def _damaged(self, step: int, err: Exception, cause: str | None = None) -> DamagedCheckpointError:
        _hold_back_closed_loop_reports()
        reason = _first_line(err) if cause is None else f"{cause}; {_first_line(err)}"
        return DamagedCheckpointError(step, self.directory, reason)


def warn(message: str) -> None:
    """A ``warning:`` line on standard error."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- #
# Trees as the checkpoint names them                                            #
# --------------------------------------------------------------------------- #


def leaves_by_path(tree: Any) -> dict[str, Any]:
    """``{"a/b/c": leaf}``: a pytree's leaves named as orbax's saved nested dicts and lists name them (a
    dataclass field or dict key by its name, a list or tuple entry by its index; ``None`` entries, such as
    empty optimiser states, have no leaves)."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {path_text(path): leaf for path, leaf in flat}


def path_text(path: tuple) -> str:
    """A pytree key path as ``leaves_by_path`` names it."""
    return "/".join(str(_key_name(k)) for k in path)


def _key_name(key: Any) -> str | int:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return getattr(key, attr)
    raise TypeError(f"unexpected pytree key {key!r}")


def current_names(by_path: dict[str, Any]) -> dict[str, Any]:
    """``leaves_by_path`` of a checkpoint with the entries ``RENAMED`` since it was written under their new names."""
    return {RENAMED.get(name, name): leaf for name, leaf in by_path.items()}


def first_difference(template: Any, have: dict[str, Any]) -> str:
    """The first entry whose presence or shape differs between ``template`` (arrays or ``ShapeDtypeStruct``)
    and ``have`` (a checkpoint's tree metadata, ``current_names(leaves_by_path(...))``), in words; "" when
    they agree."""
    want = leaves_by_path(template)
    for name in want:
        if name not in have:
            return f"this run's state has {name}, the checkpoint does not"
    for name in have:
        if name not in want:
            return f"the checkpoint has {name}, this run's state does not"
    for name, like in want.items():
        shape = getattr(have[name], "shape", None)
        if shape is not None and tuple(shape) != tuple(like.shape):
            return f"{name} has shape {tuple(shape)} in the checkpoint but {tuple(like.shape)} in this run"
    return ""


def _restore_target(leaf: Any) -> jax.ShapeDtypeStruct:
    target = ocp.utils.to_shape_dtype_struct(leaf)
    if target.sharding is None:
        target = jax.ShapeDtypeStruct(target.shape, target.dtype,
                                      sharding=jax.sharding.SingleDeviceSharding(jax.local_devices()[0]))
    return target


def _first_line(err: Exception, limit: int = 200) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else type(err).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


@contextlib.contextmanager
def _orbax_warnings_held() -> Iterator[None]:
    """Orbax's own warnings (absl logging) held back: reading a step's metadata logs one for an unreadable
    tree, which ``DamagedCheckpointError`` reports in its own words. Errors still pass."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        logger.setLevel(level)


_HOOK_INSTALLED = False


def _hold_back_closed_loop_reports() -> None:
    """After a failed read, tensorstore completes the read's other pending futures on orbax's event loop,
    which orbax has closed by then; Python reports each as an unraisable ``RuntimeError('Event loop is
    closed')`` with a traceback on standard error, after we have said what was damaged. This drops exactly
    those reports (installed at the first damaged checkpoint); every other unraisable error goes on to the
    previous hook."""
    global _HOOK_INSTALLED
    if _HOOK_INSTALLED:
        return
    previous = sys.unraisablehook

    def hook(unraisable):
        exc = unraisable.exc_value
        if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
            return
        previous(unraisable)

    sys.unraisablehook = hook
    _HOOK_INSTALLED = True
