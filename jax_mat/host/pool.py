"""``HostEnvPool``: ``E`` host environments spread over worker processes.

Each worker is a fresh interpreter (``python -c``, its own session so that a
simulator it launched dies with it) holding a contiguous slice of the
environments as one ``worker.HostBatch``. ``step`` sends every worker its
actions first and then collects the answers, so the workers step in parallel.

Faults: a worker that exits, raises, or does not answer within
``step_timeout_s`` is killed (its whole process group) and started again; the
episodes it was running are closed as truncated (``done`` and ``truncated``
true, zero reward) and its environments continue from fresh episodes. A worker
that fails ``max_failures`` times in a row without a good step in between
raises ``HostEnvFailure``. Output that is not what the batch's ``info``
declares (a wrong shape, NaN or inf) raises ``HostEnvError`` naming the
environment and the step: that is a bug in the host environment, which a
restart would not cure.

Shapes: ``E`` environments, ``N`` agents, ``O``/``S``/``A`` the observation,
state and (padded) action sizes.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from typing import Any, Mapping

import numpy as np

from jax_mat.host.replies import HostEnvError, checked_arrays, expected_shapes
from jax_mat.host.worker import INFO_KEYS, OBSERVATION_FIELDS, TRANSITION_FIELDS, pack, unpack

# Between the seeds a worker's environments get on successive restarts (so a
# restarted worker does not replay the episodes that made it fail).
_RESTART_SEED_STRIDE = 1_000_003
# The folder that holds the ``jax_mat`` package (for workers running another interpreter).
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class HostEnvFailure(RuntimeError):
    """A host environment's worker keeps failing to start or to step."""


class _WorkerFailed(Exception):
    """A worker died, raised or timed out (internal: triggers a restart)."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind  # "crash", "timeout"


@dataclasses.dataclass(frozen=True)
class BatchRecipe:
    """How a worker builds its ``HostBatch``: ``resolve(adapter)(n_envs=k, seed=s, **options)``.

    Plain data, sent to each worker; ``name`` (``"smac:3m"``) is what messages call the environment.
    """

    adapter: str
    options: Mapping[str, Any]
    name: str


@dataclasses.dataclass
class PoolStats:
    """Counters of one pool since it started (host-side bookkeeping, not part of any JAX state).

    ``env_steps`` counts requested environment steps; of those, ``lost_steps``
    went to a worker that failed during the step (their transitions are the
    truncated episode ends). ``truncated_by_restart`` counts the episodes closed
    that way, ``restarts`` the worker restarts (``crashes`` + ``timeouts``
    failures, including failed restart attempts).
    """

    env_steps: int = 0
    lost_steps: int = 0
    restarts: int = 0
    crashes: int = 0
    timeouts: int = 0
    truncated_by_restart: int = 0
    host_seconds: float = 0.0

    def as_metrics(self) -> dict[str, float]:
        return {f"bridge/{k}": float(v) for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass
class _Worker:
    index: int
    lo: int  # first environment index
    hi: int  # one past the last
    process: subprocess.Popen | None = None
    conn: Connection | None = None
    restarts: int = 0
    failures_in_a_row: int = 0

    @property
    def n_envs(self) -> int:
        return self.hi - self.lo


def _worker_command(fd: int, python: str) -> list[str]:
    """``python -c`` running ``worker.main(fd)``, never re-importing this process's ``__main__``.

    With this interpreter the worker gets this process's ``sys.path``; another
    interpreter (``python``) keeps its own and gets the folder holding
    ``jax_mat`` and the working directory in front (its own packages, say Isaac
    Gym on Python 3.8, and ours).
    """
    if not python or python == sys.executable:
        setup = f"sys.path[:] = {list(sys.path)!r}"
        python = sys.executable
    else:
        setup = f"sys.path[:0] = {[_PACKAGE_ROOT, os.getcwd()]!r}"
    return [python, "-c", f"import sys; {setup}; from jax_mat.host.worker import main; main({fd})"]


def split_envs(n_envs: int, n_workers: int) -> list[tuple[int, int]]:
    """Contiguous ``[lo, hi)`` slices of ``n_envs`` environments over ``min(n_workers, n_envs)`` workers."""
    n_workers = max(1, min(n_workers, n_envs))
    bounds = np.linspace(0, n_envs, n_workers + 1).round().astype(int)
    return [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]


class HostEnvPool:
    """``n_envs`` host environments in ``n_workers`` worker processes, reset and stepped as ``[E, ...]`` arrays.

    The constructor starts the workers (in parallel) and reads the batch
    ``info`` they report, which must agree; ``reset()`` then starts the
    episodes. ``python`` runs the workers with another interpreter (default:
    this one). A worker's standard output is discarded (simulators and
    libraries print banners); its standard error is this process's. Not
    thread-safe; one caller steps a pool.
    """

    def __init__(
        self,
        recipe: BatchRecipe,
        n_envs: int,
        n_workers: int,
        seed: int,
        step_timeout_s: float = 60.0,
        start_timeout_s: float = 300.0,
        max_failures: int = 5,
        python: str = "",
    ):
        if n_envs < 1 or n_workers < 1:
            raise ValueError(f"a host pool needs n_envs >= 1 and n_workers >= 1, got {n_envs} and {n_workers}")
        self.recipe = recipe
        self.n_envs = n_envs
        self.seed = int(seed)
        self.step_timeout_s = step_timeout_s
        self.start_timeout_s = start_timeout_s
        self.max_failures = max_failures
        self.python = python
        self.stats = PoolStats()
        self.steps = 0  # pool steps since the last reset (the "step" error messages name)
        self._workers = [_Worker(i, lo, hi) for i, (lo, hi) in enumerate(split_envs(n_envs, n_workers))]
        self._closed = False
        try:
            infos = self._start_all()
        except BaseException:
            self.close()
            raise
        self.info = self._agreed_info(infos)
        self._shapes = expected_shapes(self.info)

    # ------------------------------------------------------------------ public

    @property
    def n_workers(self) -> int:
        return len(self._workers)

    def worker_pids(self) -> list[int]:
        """Process ids of the running workers (for measuring their CPU time)."""
        return [w.process.pid for w in self._workers if w.process is not None]

    def reset(self) -> dict[str, np.ndarray]:
        """Starts an episode in every environment: the ``OBSERVATION_FIELDS`` arrays, ``[E, ...]``."""
        self.steps = 0
        started = time.perf_counter()
        parts, failed = {}, []
        for worker in self._workers:
            self._send(worker, ("reset",))
        deadline = time.monotonic() + self.start_timeout_s  # a first reset may launch the simulator
        for worker in self._workers:
            try:
                reply = self._receive(worker, max(0.0, deadline - time.monotonic()))
                parts[worker.index] = self._checked(worker, reply, OBSERVATION_FIELDS)
            except _WorkerFailed as failure:
                failed.append((worker, failure))
        for worker, failure in failed:
            parts[worker.index] = self._restart(worker, failure)
        self.stats.host_seconds += time.perf_counter() - started
        return self._concatenate(parts, OBSERVATION_FIELDS)

    def step(self, actions: np.ndarray) -> dict[str, np.ndarray]:
        """Steps every environment with ``actions`` (``[E, N]`` int32 or ``[E, N, A]`` float32).

        Returns every field of ``TRANSITION_FIELDS`` and ``OBSERVATION_FIELDS``,
        ``[E, ...]``; where ``done``, the observation fields belong to the next
        episode. Environments of a worker that failed during the step report
        ``done`` and ``truncated`` with zero reward and continue in new episodes.
        """
        actions = np.asarray(actions)
        if actions.shape[0] != self.n_envs:
            raise ValueError(
                f"{self.recipe.name}: actions for {actions.shape[0]} environments, the pool has {self.n_envs}"
            )
        self.steps += 1
        self.stats.env_steps += self.n_envs
        started = time.perf_counter()
        fields = {**OBSERVATION_FIELDS, **TRANSITION_FIELDS}
        parts, failed = {}, []
        for worker in self._workers:
            self._send(worker, ("step", pack({"actions": actions[worker.lo : worker.hi]})))
        deadline = time.monotonic() + self.step_timeout_s
        for worker in self._workers:  # every answer first, so restarting one worker eats no one else's time
            try:
                reply = self._receive(worker, max(0.0, deadline - time.monotonic()))
                parts[worker.index] = self._checked(worker, reply, fields)
                worker.failures_in_a_row = 0
            except _WorkerFailed as failure:
                failed.append((worker, failure))
        for worker, failure in failed:
            self.stats.lost_steps += worker.n_envs
            self.stats.truncated_by_restart += worker.n_envs
            parts[worker.index] = ended_by_restart(self._restart(worker, failure), self.info["n_agents"])
        self.stats.host_seconds += time.perf_counter() - started
        return self._concatenate(parts, fields)

    def close(self) -> None:
        """Asks every worker to close its environments, then ends their process groups."""
        if self._closed:
            return
        self._closed = True
        for worker in self._workers:
            if worker.conn is not None:
                try:
                    worker.conn.send(("close",))
                except OSError:
                    pass
        for worker in self._workers:
            self._stop(worker, graceful_s=5.0)

    # ----------------------------------------------------------- workers' life

    def _start_all(self) -> list[dict[str, Any]]:
        """Starts every worker, then waits for each one's ``ready``; a worker that fails here is an error."""
        for worker in self._workers:
            self._spawn(worker, self._worker_seed(worker))
        infos = []
        for worker in self._workers:
            try:
                infos.append(self._await_ready(worker))
            except _WorkerFailed as failure:
                raise HostEnvError(
                    f"host environment {self.recipe.name} could not be built in a worker process "
                    f"(envs {worker.lo}-{worker.hi - 1}): {failure}"
                ) from None
        return infos

    def _worker_seed(self, worker: _Worker) -> int:
        return self.seed + worker.lo + _RESTART_SEED_STRIDE * worker.restarts

    def _spawn(self, worker: _Worker, seed: int) -> None:
        parent_end, child_end = socket.socketpair()
        fd = child_end.fileno()
        try:
            worker.process = subprocess.Popen(
                _worker_command(fd, self.python), pass_fds=(fd,), start_new_session=True,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            )
        finally:
            child_end.close()
        worker.conn = Connection(parent_end.detach())
        worker.conn.send(("build", self.recipe.adapter, dict(self.recipe.options), worker.n_envs, seed))

    def _await_ready(self, worker: _Worker) -> dict[str, Any]:
        kind, payload = self._receive(worker, self.start_timeout_s)
        if kind == "ready":
            return payload
        if kind == "bad_output":
            raise HostEnvError(f"host environment {self.recipe.name}: {payload}")
        raise _WorkerFailed("crash", _last_line(payload))

    def _restart(self, worker: _Worker, failure: _WorkerFailed) -> dict[str, np.ndarray]:
        """Kills ``worker``, starts it again and resets its environments; returns their first observations."""
        while True:
            self.stats.crashes += failure.kind == "crash"
            self.stats.timeouts += failure.kind == "timeout"
            worker.failures_in_a_row += 1
            if worker.failures_in_a_row > self.max_failures:
                raise HostEnvFailure(
                    f"host environment {self.recipe.name}: worker {worker.index} (envs {worker.lo}-{worker.hi - 1}) "
                    f"failed {worker.failures_in_a_row} times in a row at step {self.steps}; last failure: {failure}"
                )
            self._stop(worker, graceful_s=0.0)
            worker.restarts += 1
            self.stats.restarts += 1
            try:
                self._spawn(worker, self._worker_seed(worker))
                self._await_ready(worker)
                self._send(worker, ("reset",))
                return self._checked(worker, self._receive(worker, self.start_timeout_s), OBSERVATION_FIELDS)
            except _WorkerFailed as again:
                failure = again

    def _stop(self, worker: _Worker, graceful_s: float) -> None:
        """Ends the worker's process group (after ``graceful_s`` to exit by itself) and closes its socket."""
        process, worker.process = worker.process, None
        if worker.conn is not None:
            worker.conn.close()
            worker.conn = None
        if process is None:
            return
        if graceful_s > 0:
            _exit_status(process, graceful_s)
        try:
            # The worker leads its own session (pgid == pid), and is not reaped yet, so the id is still its.
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        process.wait()

    # --------------------------------------------------------------- messages

    def _send(self, worker: _Worker, message: tuple) -> None:
        try:
            worker.conn.send(message)
        except OSError:
            pass  # a dead worker: the receive that follows reports it

    def _receive(self, worker: _Worker, timeout_s: float) -> tuple[str, Any]:
        """The worker's next reply; ``_WorkerFailed`` if it died, crashed or timed out."""
        try:
            ready = worker.conn.poll(timeout_s)
        except OSError as err:
            raise _WorkerFailed("crash", f"its connection broke ({err})") from None
        if not ready:
            raise _WorkerFailed("timeout", f"no answer within {timeout_s:.1f} s")
        try:
            kind, payload = worker.conn.recv()
        except (EOFError, OSError):
            code = _exit_status(worker.process, 2.0) if worker.process is not None else None
            raise _WorkerFailed("crash", f"the worker process exited (code {code})") from None
        if kind == "crash":
            raise _WorkerFailed("crash", _last_line(payload))
        return kind, unpack(payload) if kind == "ok" else payload

    # ------------------------------------------------------------- the arrays

    def _agreed_info(self, infos: list[dict[str, Any]]) -> dict[str, Any]:
        first = {k: v for k, v in infos[0].items() if k != "n_envs"}
        missing = [k for k in INFO_KEYS if k not in infos[0]]
        if missing:
            raise HostEnvError(f"host environment {self.recipe.name}: its batch info lacks {', '.join(missing)}")
        for worker, info in zip(self._workers, infos):
            if info.get("n_envs") != worker.n_envs:
                raise HostEnvError(
                    f"host environment {self.recipe.name}: worker {worker.index} built {info.get('n_envs')} "
                    f"environments, {worker.n_envs} were asked for"
                )
            rest = {k: v for k, v in info.items() if k != "n_envs"}
            if rest != first:
                raise HostEnvError(
                    f"host environment {self.recipe.name}: workers disagree on the environment's sizes: "
                    f"{first} vs {rest}"
                )
        return {**first, "n_envs": self.n_envs}

    def _checked(self, worker: _Worker, reply: tuple[str, Any], fields: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The arrays of a worker's reply, checked (``replies.checked_arrays``); ``HostEnvError`` otherwise."""
        where = f"worker {worker.index}, envs {worker.lo}-{worker.hi - 1}"
        return checked_arrays(reply, fields, self._shapes, worker.n_envs, worker.lo,
                              f"host environment {self.recipe.name}", where, self.steps)

    def _concatenate(self, parts: dict[int, dict[str, np.ndarray]], fields: Mapping[str, Any]) -> dict[str, np.ndarray]:
        ordered = [parts[w.index] for w in self._workers]
        return {f: np.concatenate([p[f] for p in ordered], axis=0) for f in fields}


def ended_by_restart(fresh: Mapping[str, np.ndarray], n_agents: int) -> dict[str, np.ndarray]:
    """A step's result for environments whose simulator was restarted: each episode ended (truncated, zero
    reward, not won) and ``fresh``, the first observations of the new ones."""
    k = len(fresh["obs"])
    return {
        **fresh,
        "reward": np.zeros((k, n_agents), np.float32),
        "done": np.ones((k,), np.bool_),
        "truncated": np.ones((k,), np.bool_),
        "won": np.zeros((k,), np.bool_),
    }


def _exit_status(process: subprocess.Popen, timeout_s: float) -> int | None:
    """Waits up to ``timeout_s`` for ``process`` to exit, without reaping it; its exit code (negative: the
    signal that ended it), or None if it still runs. Not reaping keeps its process group id from being reused
    before ``_stop`` kills the group."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return process.returncode  # already reaped
        if result is not None:
            return result.si_status if result.si_code == os.CLD_EXITED else -result.si_status
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.01)


def _last_line(text: str) -> str:
    """The exception line of a traceback (what a one-line error message needs)."""
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "unknown error"
