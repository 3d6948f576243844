"""One worker process: a ``HostBatch`` of host environments serving its parent.

A worker is a fresh interpreter started by ``pool.HostEnvPool`` (never a fork of
a process running JAX). It receives ``("build", adapter, options, n_envs, seed)``,
builds the batch with ``resolve(adapter)(n_envs=..., seed=..., **options)``,
answers ``("ready", info)``, then serves commands until ``close`` or until its
parent goes away:

  parent -> worker: ("reset",) | ("step", actions) | ("close",)
  worker -> parent: ("ok", arrays) | ("bad_output", message) | ("crash", traceback)

Arrays travel as ``(dtype, shape, bytes)`` triples (``pack``/``unpack``), not as
numpy pickles, so a worker may run another interpreter with another numpy
(Isaac Gym Preview 4 needs Python 3.6-3.8; see ``pool.HostEnvPool(python=...)``).
This module therefore sticks to Python 3.8 syntax at run time.

``bad_output`` means the host environment answered, but with something that is
not the declared arrays (a wrong shape, a ragged list): a bug to report, not a
crash to restart. Any other exception is a ``crash`` (StarCraft II's protocol
errors, a simulator that died), and the parent restarts the worker.

Shapes: ``k`` environments in this worker, ``N`` agents, ``O`` observation,
``S`` state and ``A`` action sizes (the largest over agents where they differ).
"""

from __future__ import annotations

import importlib
import sys
import traceback
from multiprocessing.connection import Connection
from typing import Any, Callable, Protocol

import numpy as np

# The arrays of a reset (``OBSERVATION_FIELDS``) and of a step (all of them), with their dtypes.
OBSERVATION_FIELDS = {"obs": np.float32, "state": np.float32, "avail": np.float32, "active": np.float32}
TRANSITION_FIELDS = {"reward": np.float32, "done": np.bool_, "truncated": np.bool_, "won": np.bool_}
INFO_KEYS = ("n_envs", "n_agents", "obs_dim", "state_dim", "action_dim", "discrete", "max_episode_steps")


class BadHostOutput(ValueError):
    """A host environment returned something that is not the array its API promises."""


class HostBatch(Protocol):
    """``k`` environments of one host simulator, as numpy arrays.

    ``info()`` has the ``INFO_KEYS``. ``reset()`` starts every environment and
    returns ``obs [k, N, O]``, ``state [k, S]``, ``avail [k, N, A]`` (0/1; for
    continuous actions, 1 on each agent's own action dimensions and 0 on the
    padding) and ``active [k, N]``. ``step(actions)`` takes ``[k, N]`` int32
    (discrete) or ``[k, N, A]`` float32 actions and returns those arrays plus
    ``reward [k, N]``, ``done``, ``truncated`` and ``won`` (``[k]`` bool),
    restarting each finished environment itself, so that where ``done`` the
    observation arrays belong to its next episode.
    """

    def info(self) -> dict[str, Any]:
        ...

    def reset(self) -> dict[str, np.ndarray]:
        ...

    def step(self, actions: np.ndarray) -> dict[str, np.ndarray]:
        ...

    def close(self) -> None:
        ...


def resolve(path: str) -> Callable[..., Any]:
    """The object an import path ``"package.module:attribute"`` names."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"import path {path!r} must look like 'package.module:attribute'")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


def host_array(value: Any) -> np.ndarray:
    """A host environment's array (torch tensor, numpy array, list) as numpy.

    Anything that speaks DLPack (torch tensors, numpy and JAX arrays) crosses
    without a copy when it lives in host memory; a tensor on an accelerator is
    first copied to host memory with its own ``.cpu()``. Lists and scalars go
    through ``np.asarray``.
    """
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "__dlpack__"):
        if hasattr(value, "detach"):
            value = value.detach()
        device_type = value.__dlpack_device__()[0] if hasattr(value, "__dlpack_device__") else 1
        if device_type != 1 and hasattr(value, "cpu"):  # 1 is DLPack's kDLCPU
            value = value.cpu()
        return np.from_dlpack(value)
    return np.asarray(value)


def as_shaped(value: Any, shape: tuple[int, ...], dtype: Any, what: str) -> np.ndarray:
    """``value`` as a ``dtype`` array of exactly ``shape``; ``BadHostOutput`` naming ``what`` otherwise."""
    try:
        array = host_array(value)
    except (ValueError, TypeError) as err:
        raise BadHostOutput(f"{what} is not an array of shape {shape}: {err}") from None
    if array.shape != tuple(shape):
        raise BadHostOutput(f"{what} has shape {array.shape}; expected {tuple(shape)}")
    try:
        return array.astype(dtype)
    except (ValueError, TypeError) as err:
        raise BadHostOutput(f"{what} cannot be read as {np.dtype(dtype).name}: {err}") from None


def pack(arrays: dict[str, np.ndarray]) -> dict[str, tuple[str, tuple[int, ...], bytes]]:
    """Arrays as ``(dtype, shape, bytes)``: readable by any numpy version on the other side."""
    packed = {}
    for name, value in arrays.items():
        array = np.ascontiguousarray(value)
        packed[name] = (array.dtype.str, tuple(int(d) for d in array.shape), array.tobytes())
    return packed


def unpack(packed: dict[str, tuple[str, tuple[int, ...], bytes]]) -> dict[str, np.ndarray]:
    """The inverse of ``pack``."""
    return {name: np.frombuffer(data, np.dtype(dtype)).reshape(shape) for name, (dtype, shape, data) in packed.items()}


def serve(conn: Connection) -> None:
    """Builds the batch the first message asks for and answers commands until ``close`` or EOF."""
    _, adapter, options, n_envs, seed = conn.recv()
    try:
        batch = resolve(adapter)(n_envs=n_envs, seed=seed, **options)
        info = batch.info()
    except BadHostOutput as err:
        conn.send(("bad_output", str(err)))
        return
    except Exception:
        conn.send(("crash", traceback.format_exc()))
        return
    conn.send(("ready", info))
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return  # the parent is gone
            if message[0] == "close":
                return
            try:
                arrays = batch.reset() if message[0] == "reset" else batch.step(unpack(message[1])["actions"])
                reply = ("ok", pack(arrays))
            except BadHostOutput as err:
                reply = ("bad_output", str(err))
            except Exception:
                reply = ("crash", traceback.format_exc())
            try:
                conn.send(reply)
            except (BrokenPipeError, OSError):
                return
    finally:
        try:
            batch.close()
        except Exception:
            pass  # the process exits next; a simulator that fails to close cannot be helped here


def main(fd: int) -> None:
    """Entry point of a worker process: serve on the socket ``fd`` handed over by the parent."""
    conn = Connection(fd)
    try:
        serve(conn)
    finally:
        conn.close()
    sys.exit(0)
