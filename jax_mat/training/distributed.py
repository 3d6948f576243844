"""Data-parallel training over devices and hosts: meshes, shardings and ``jax.distributed``.

The trainer's functions (``Trainer.init``, ``update``, ``train``, ``evaluate``) stay the
single-device programs. This module only tells ``jax.jit`` where each array lives, and
XLA's SPMD partitioner (GSPMD) splits the program accordingly:

- a ``Mesh`` with axes ``("seeds", "envs")``; one run uses a ``seeds`` axis of size 1, a seed sweep
  (``training.sweep``) splits its seeds over ``seeds`` (``train.seed_shards`` groups of devices);
- in ``RunnerState``, ``env_state`` and ``timestep`` (``[n_envs, ...]`` leaves) are split over
  ``envs``; ``params``, ``opt_state``, ``value_norm``, ``key`` and ``num_updates`` are replicated;
- the shuffled minibatches ``[minibatches, rows, ...]`` are split over ``envs`` through the
  trainer's ``shard_minibatches`` hook (the learners apply it where they form minibatches), so each device differentiates its own rows and the
  gradient is summed across devices (an all-reduce inside the jitted update) before the
  one clipped Adam step that every device applies to its copy of the parameters.

Why GSPMD rather than ``shard_map``: one PPO update reduces over the *global* batch in
many places: advantages are standardised over every active agent, the value normaliser
updates on each whole minibatch, every loss term is a masked mean, each epoch permutes
all rows, and the gradient is clipped by its global norm. Under GSPMD each of these is
written once, for one device, and XLA partitions it, so the global batch and every
hyperparameter mean exactly what they mean on one device, and N devices reproduce one
device's parameters up to summation order (``tests/test_distributed.py``). With
``shard_map`` each reduction would need its own ``psum``/``pmean`` inside the shared PPO
code (and in every algorithm added later), and the per-epoch shuffle would become a
per-device shuffle: a different algorithm. The price is that XLA chooses the
communication; the shuffle moves rows between devices once per epoch
(``docs/benchmarks.md`` measures the overhead).

Several hosts: ``initialize`` starts ``jax.distributed`` (from ``TrainConfig`` or the
``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID`` environment
variables, or JAX's own detection on TPU pods, SLURM and Open MPI); then ``jax.devices()``
lists every process's devices, the mesh spans them, and every process runs the same
program on its own shard of the environments. Replicated results (metrics, parameters)
are the same on every process; ``is_primary`` says which process writes files.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jax_mat.training import sweep

SEED_AXIS = "seeds"
ENV_AXIS = "envs"
ENV_ADDRESS, ENV_NUM_PROCESSES, ENV_PROCESS_ID = "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"


# --------------------------------------------------------------------------- #
# Processes                                                                     #
# --------------------------------------------------------------------------- #


@dataclasses.dataclass(frozen=True)
class ProcessGroup:
    """Arguments of ``jax.distributed.initialize``; None: JAX detects it (TPU pods, SLURM, Open MPI)."""

    coordinator_address: str | None
    num_processes: int | None
    process_id: int | None


def process_group(train: Any, environ: Mapping[str, str] = os.environ) -> ProcessGroup | None:
    """How this process joins a multi-process run (None: it runs alone), from ``train`` (a
    ``TrainConfig``) and, for fields left unset there, ``environ``.

    ``train.distributed``: ``off`` never joins; ``auto`` joins when any of the coordinator
    address, process count or process id is given, and then needs all three; ``on`` always
    joins, leaving what is not given to JAX's cluster detection. Raises ``ValueError`` on a
    malformed value or inconsistent process ids, before anything is started.
    """
    if train.distributed == "off":
        return None
    address, address_from = _given(train.coordinator_address or None, "train.coordinator_address", environ,
                                   ENV_ADDRESS, _parse_address)
    count, count_from = _given(train.num_processes or None, "train.num_processes", environ, ENV_NUM_PROCESSES,
                               lambda text: _parse_int(text, 1))
    pid, pid_from = _given(train.process_id if train.process_id >= 0 else None, "train.process_id", environ,
                           ENV_PROCESS_ID, lambda text: _parse_int(text, 0))
    if count is not None and pid is not None and pid >= count:
        raise ValueError(
            f"process id {pid} ({pid_from}) must be below the process count {count} ({count_from}): "
            f"process ids are 0..{count - 1}"
        )
    if train.distributed == "auto":
        given = {"coordinator address": address, "process count": count, "process id": pid}
        if all(v is None for v in given.values()):
            return None
        missing = [name for name, value in given.items() if value is None]
        if missing:
            raise ValueError(
                f"a multi-process run needs the coordinator address, the process count and this process's id; "
                f"missing: {', '.join(missing)} (set train.coordinator_address / train.num_processes / "
                f"train.process_id or ${ENV_ADDRESS} / ${ENV_NUM_PROCESSES} / ${ENV_PROCESS_ID}), "
                f"or use train.distributed=on to let JAX detect them (TPU pods, SLURM, Open MPI)"
            )
    return ProcessGroup(address, count, pid)


def _given(value, config_key: str, environ: Mapping[str, str], env_var: str, parse: Callable):
    """The config's value if set, else the parsed environment variable (or None), and where it came from."""
    if value is not None:
        return value, config_key
    text = environ.get(env_var, "").strip()
    if not text:
        return None, ""
    parsed = parse(text)
    if parsed is None:
        raise ValueError(f"${env_var}={text!r} is malformed: {_EXPECTED[env_var]}")
    return parsed, f"${env_var}"


_EXPECTED = {
    ENV_ADDRESS: "expected host:port of process 0, e.g. 10.0.0.1:1234",
    ENV_NUM_PROCESSES: "expected a process count >= 1",
    ENV_PROCESS_ID: "expected a process id >= 0",
}


def _parse_int(text: str, minimum: int) -> int | None:
    return int(text) if text.isdigit() and int(text) >= minimum else None


def _parse_address(text: str) -> str | None:
    host, _, port = text.rpartition(":")
    return text if host and port.isdigit() and 0 < int(port) < 65536 else None


def initialize(group: ProcessGroup | None) -> None:
    """Starts ``jax.distributed`` for ``group`` (nothing for None or when already started).

    Must run before anything touches JAX's devices (``jax.distributed`` refuses otherwise).
    """
    if group is None or jax.distributed.is_initialized():
        return
    jax.distributed.initialize(group.coordinator_address, group.num_processes, group.process_id)


def barrier(name: str, timeout_s: int = 3600) -> None:
    """Waits until every process of a multi-process run gets here (nothing with one process).

    A barrier of ``jax.distributed``'s coordination service (through orbax), not a collective, so it
    does not mind processes arriving minutes apart.
    """
    if jax.process_count() > 1:
        ocp.multihost.get_barrier_sync_fn()(key=name, timeout_ms=timeout_s * 1000)


def is_primary() -> bool:
    """Whether this process writes the run's files (logs, config, evaluation): process 0."""
    return jax.process_index() == 0


# --------------------------------------------------------------------------- #
# Meshes and shardings                                                          #
# --------------------------------------------------------------------------- #


def select_devices(devices: str | int, available: Sequence[jax.Device] | None = None) -> list[jax.Device]:
    """``"all"`` (every process's devices, ``available``: default ``jax.devices()``) or the first ``devices`` of
    them; ``ValueError`` if there are fewer, or if a multi-process run would leave some process's devices out."""
    available = jax.devices() if available is None else list(available)
    if devices == "all":
        return list(available)
    count = int(devices)
    if count > len(available):
        raise ValueError(
            f"train.devices={count} but only {len(available)} {available[0].platform} device(s) are visible; "
            f"ask for at most {len(available)}, or train.devices=all"
        )
    if jax.process_count() > 1 and count != len(available):
        raise ValueError(
            f"a run over {jax.process_count()} processes uses every process's devices: train.devices must be "
            f"'all' or {len(available)}, got {count}"
        )
    return list(available[:count])


def make_mesh(devices: Sequence[jax.Device], n_envs: int, seed_shards: int = 1) -> Mesh:
    """A ``(seeds, envs)`` mesh of ``devices``: ``seed_shards`` groups of devices, each splitting a seed's
    ``n_envs`` environments over its ``len(devices) // seed_shards`` devices; ``ValueError`` if that is uneven."""
    n = len(devices)
    if seed_shards < 1 or n % seed_shards:
        raise ValueError(f"{n} devices cannot be split into {seed_shards} equal groups of seeds")
    env_shards = n // seed_shards
    if n_envs % env_shards:
        groups = f" (each of {seed_shards} groups of seeds)" if seed_shards > 1 else ""
        raise ValueError(
            f"train.n_envs ({n_envs}) must be divisible by the {env_shards} devices the environments are split "
            f"over{groups}"
        )
    return Mesh(np.asarray(devices, dtype=object).reshape(seed_shards, env_shards), (SEED_AXIS, ENV_AXIS))


def mesh_from_config(train: Any) -> Mesh:
    """The mesh a run of ``train`` (a ``TrainConfig``) uses: ``train.devices`` in ``train.seed_shards`` groups
    (the seeds of a sweep spread over the groups), each splitting its seeds' environments over its devices."""
    return make_mesh(select_devices(train.devices), train.n_envs, train.seed_shards)


def one_device_mesh(train: Any) -> Mesh:
    """This process's first device as a mesh: where a saved run is evaluated or rendered, whatever devices it
    trained on."""
    return make_mesh(jax.local_devices()[:1], train.n_envs, 1)


def state_shardings(state: Any, mesh: Mesh, seeds: bool = False) -> Any:
    """``NamedSharding``s for a ``RunnerState`` (of arrays or shapes): ``env_state`` and ``timestep``
    split over ``envs`` on their leading ``[n_envs]`` axis, everything else replicated. With ``seeds``
    every leaf has a leading seed axis, split over ``seeds``. A state without one ``[n_envs]`` axis (smax_multi's per-map groups) is replicated on a one-device ``envs`` axis."""
    lead = (SEED_AXIS,) if seeds else ()
    replicated = NamedSharding(mesh, PartitionSpec(*lead))
    per_env = NamedSharding(mesh, PartitionSpec(*lead, ENV_AXIS))
    leading = {leaf.shape[len(lead)] if leaf.ndim > len(lead) else None
               for leaf in jax.tree.leaves((state.env_state, state.timestep))}
    if len(leading) != 1 or None in leading:
        if mesh.shape[ENV_AXIS] == 1:  # nothing to split: batched envs such as smax_multi keep their layout
            return jax.tree.map(lambda _: replicated, state)
        raise ValueError(f"env_state and timestep leaves must share a leading [n_envs] axis, found {leading}")
    shardings = jax.tree.map(lambda _: replicated, state)
    return shardings.replace(env_state=jax.tree.map(lambda _: per_env, state.env_state),
                             timestep=jax.tree.map(lambda _: per_env, state.timestep))


def with_sharding(shapes: Any, shardings: Any) -> Any:
    """``jax.ShapeDtypeStruct``s carrying ``shardings``: a restore template (orbax places each array there)."""
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Host values, equal on every process, as arrays replicated over ``mesh`` (valid across processes)."""
    sharding = NamedSharding(mesh, PartitionSpec())

    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(put, tree)


def split_minibatch_rows(mesh: Mesh) -> Callable[[Any], Any]:
    """The ``Trainer.shard_minibatches`` hook: ``[minibatches, rows, ...]`` leaves with rows split over ``envs``."""
    rows = NamedSharding(mesh, PartitionSpec(None, ENV_AXIS))
    return lambda tree: jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, rows), tree)


def data_parallel_trainer(trainer: Any, mesh: Mesh) -> Any:
    """``trainer`` with its minibatch rows split over the mesh's ``envs`` axis."""
    return dataclasses.replace(trainer, shard_minibatches=split_minibatch_rows(mesh))


# --------------------------------------------------------------------------- #
# Jitted, sharded training functions                                            #
# --------------------------------------------------------------------------- #


def compile_aligned(name: str, program: Any, *args: Any) -> Any:
    """``program`` (a ``jax.jit`` function) compiled for ``args`` (arrays or ``ShapeDtypeStruct``s), once every
    process has compiled it too.

    Processes finish compiling at different times (minutes apart on a busy host), while CPU collectives (gloo)
    give up when a peer reaches the first collective of a program more than 30 s after the others; so
    nothing runs before all processes hold the program.
    """
    compiled = program.lower(*args).compile()
    barrier(f"jax_mat: {name} compiled")
    return compiled


@dataclasses.dataclass(frozen=True)
class ShardedTraining:
    """A trainer's ``init``, ``update`` and ``evaluate`` for a mesh, for one seed or a sweep of
    ``train.seeds`` seeds (``training.sweep``: the same functions ``jax.vmap``-ped over seeds).

    ``init(keys) -> RunnerState`` and ``update(state) -> (state, metrics)`` keep the state sharded as
    ``state_shardings`` says (``update`` donates its input); ``keys`` is ``sweep.run_keys(seed, seeds)``.
    Metrics and evaluation results (``evaluate(params, keys)``, ``train.eval_episodes`` greedy episodes
    per seed unless told otherwise) are replicated, so every process reads the same numbers; for a sweep each is ``[S]``.
    ``updates_done(state)`` is the update count on the host. Each program is compiled on first use
    (``compile_aligned``). ``abstract_state`` is the template that restores a checkpoint, written on any
    number of devices, onto this mesh; the ``*_program`` fields are the jitted functions
    (``.lower(...)``: HLO, cost analysis); ``evaluate_program(n_episodes, deterministic)`` builds the evaluation's.
    """

    trainer: Any
    mesh: Mesh
    abstract_state: Any
    abstract_keys: jax.ShapeDtypeStruct
    init_program: Callable
    update_program: Callable
    updates_done_program: Callable
    _evaluations: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)  # compiled, by size

    def init(self, keys: jax.Array) -> Any:
        return self._compiled_init(replicate(keys, self.mesh))

    def update(self, state: Any) -> tuple[Any, dict[str, jax.Array]]:
        return self._compiled_update(state)

    def evaluate(self, params: Any, keys: jax.Array, n_episodes: int | None = None,
                 deterministic: bool = True) -> dict[str, jax.Array]:
        """``n_episodes`` (default ``train.eval_episodes``) greedy or sampled episodes per seed."""
        n_episodes = self.trainer.config.train.eval_episodes if n_episodes is None else n_episodes
        return self._compiled_evaluation(n_episodes, deterministic)(params, replicate(keys, self.mesh))

    def updates_done(self, state: Any) -> int:
        """The updates ``state`` has done (the most over a sweep's seeds)."""
        return int(self._compiled_updates_done(state))

    @functools.cached_property
    def _compiled_init(self):
        return compile_aligned("init", self.init_program, self.abstract_keys)

    @functools.cached_property
    def _compiled_update(self):
        return compile_aligned("update", self.update_program, self.abstract_state)

    def evaluate_program(self, n_episodes: int, deterministic: bool = True) -> Callable:
        """The jitted evaluation of ``n_episodes`` per seed (``Trainer.evaluate``), vmapped over a sweep's seeds."""
        vmapped = functools.partial(sweep.over_seeds, n_seeds=self.trainer.config.train.seeds,
                                    spmd_axis_name=SEED_AXIS)
        params_sharding = jax.tree.map(lambda s: s.sharding, self.abstract_state.params)
        replicated = NamedSharding(self.mesh, PartitionSpec())
        return jax.jit(vmapped(lambda params, key: self.trainer.evaluate(params, key, n_episodes, deterministic)),
                       in_shardings=(params_sharding, replicated), out_shardings=replicated)

    def _compiled_evaluation(self, n_episodes: int, deterministic: bool):
        key = (n_episodes, deterministic)
        if key not in self._evaluations:
            self._evaluations[key] = compile_aligned(
                f"evaluate {n_episodes}", self.evaluate_program(n_episodes, deterministic),
                self.abstract_state.params, self.abstract_keys)
        return self._evaluations[key]

    @functools.cached_property
    def _compiled_updates_done(self):
        return compile_aligned("updates_done", self.updates_done_program, self.abstract_state)


def shard_training(trainer: Any, mesh: Mesh) -> ShardedTraining:
    """``trainer``'s functions jitted with the shardings of data-parallel training over ``mesh``.

    With ``train.seeds = S > 1`` they are ``jax.vmap``-ped over seeds (``sweep.over_seeds``), the seeds
    split over the mesh's ``seeds`` axis and each seed's environments over its ``envs`` axis: a
    ``(1, n)`` mesh keeps every seed on every device, each device holding its share of every seed's
    environments; an ``(n, 1)`` mesh gives each device whole seeds; ``(s, e)`` meshes mix both.
    ``ValueError`` if the seeds do not divide over the ``seeds`` axis.
    """
    n_seeds, seed_shards = trainer.config.train.seeds, mesh.shape[SEED_AXIS]
    if n_seeds % seed_shards:
        raise ValueError(
            f"train.seeds ({n_seeds}) must be divisible by the {seed_shards} groups of devices the seeds are "
            f"spread over (train.seed_shards)"
        )
    trainer = data_parallel_trainer(trainer, mesh)
    # The seed axis of the vmapped programs is the mesh's, so sharding constraints inside (the minibatch
    # rows) keep each seed on its own devices.
    vmapped = functools.partial(sweep.over_seeds, n_seeds=n_seeds, spmd_axis_name=SEED_AXIS)
    keys = jax.eval_shape(lambda: sweep.run_keys(trainer.config.seed, n_seeds))
    init = vmapped(trainer.init)
    shapes = jax.eval_shape(init, keys)
    shardings = state_shardings(shapes, mesh, seeds=n_seeds > 1)
    replicated = NamedSharding(mesh, PartitionSpec())
    return ShardedTraining(
        trainer=trainer,
        mesh=mesh,
        abstract_state=with_sharding(shapes, shardings),
        abstract_keys=jax.ShapeDtypeStruct(keys.shape, keys.dtype, sharding=replicated),
        init_program=jax.jit(init, in_shardings=replicated, out_shardings=shardings),
        update_program=jax.jit(vmapped(trainer.update), in_shardings=(shardings,),
                               out_shardings=(shardings, replicated), donate_argnums=0),
        updates_done_program=jax.jit(lambda state: state.num_updates.max(), in_shardings=(shardings,),
                                     out_shardings=replicated),
    )
