"""Host simulators inside the jitted rollout: ``HostBridgeEnv``, a ``BatchedMultiAgentEnv``.

The rollout stays one XLA program. Once per rollout step it makes one ordered
``jax.experimental.io_callback`` that steps every host environment (a
``jax_mat.host.pool.HostEnvPool`` of worker processes) and returns fixed-shape
arrays, so the policy, GAE and PPO code are those of the JAX-native
environments. An ordered callback cannot be vmapped; that is why this is a
batched environment (``reset_batch``/``step_batch`` over all ``E``
environments, see ``envs.base.BatchedMultiAgentEnv``) and why seed sweeps with
``jax.vmap(trainer.train)`` do not apply to host environments.

The JAX state is small: a handle ``[3]`` int32 naming the pool (this process's
nonce, the pool's slot, the reset generation) and the running episode
return and length (auto-reset statistics kept exactly as
``envs.wrappers.AutoReset`` keeps them). The simulators' own state lives in the
worker processes.

Pools: every place that calls ``reset_batch`` in a traced program gets its own
pool, allocated when it is traced and started on its first call, so training
(``Trainer.init``) and greedy evaluation (``Trainer.evaluate``) run in separate
worker pools and evaluating never disturbs the training episodes. Tracing
alone (``jax.eval_shape`` on resume) starts nothing. A state restored from a
checkpoint written by another process names a pool this process does not have:
its first step starts a pool and closes every episode as truncated (the
simulators' episodes were lost with the old process), exactly as for a
restarted worker.

Host-side statistics (restarts, crashes, timeouts, truncated episodes, steps,
host seconds) are counters in the pools, read with ``env.host_metrics()``; the
training CLI logs them with each update. A host environment's bad output
(``HostEnvError``) or repeated failure (``HostEnvFailure``) stops the program
with that error, which ``env.host_error()`` returns for a one-line report.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import secrets
import weakref
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback

from jax_mat.envs.base import BatchedMultiAgentEnv, EnvSpec, Timestep
from jax_mat.envs.wrappers import episode_totals
from jax_mat.host.pool import BatchRecipe, HostEnvError, HostEnvFailure, HostEnvPool, PoolStats, ended_by_restart

__all__ = [
    "BridgeState", "HostBridgeEnv", "HostEnvError", "HostEnvFailure", "reporting_host_errors",
]


@flax.struct.dataclass
class BridgeState:
    """``HostBridgeEnv``'s state for ``E`` environments.

    Attributes:
      handle: ``[3]`` int32: process nonce, pool slot, reset generation.
      episode_return: ``[E]`` float32 return of each running episode so far.
      episode_length: ``[E]`` int32 its steps so far.
    """

    handle: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array


class _DropOwnErrors(logging.Filter):
    """Keeps JAX from logging a traceback for the host errors this module reports itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, (HostEnvError, HostEnvFailure))


_DROP_OWN_ERRORS = _DropOwnErrors()


class HostBridgeEnv(BatchedMultiAgentEnv):
    """A ``BatchedMultiAgentEnv`` whose environments are host simulators in worker processes.

    Args:
      recipe: how a worker builds its batch of host environments.
      workers_for: the number of worker processes for a pool of ``E`` environments.
      step_timeout_s: a worker that takes longer for one step is restarted.
      start_timeout_s: the same for starting a worker and its first reset.
      max_failures: consecutive failures of one worker before ``HostEnvFailure``.
      python: the interpreter the workers run ("" for this one).

    Building it starts one worker with one environment to read the sizes
    (``spec``), then stops it; bad recipes (unknown map or task, a missing
    simulator) fail here with ``HostEnvError``, before anything is traced.
    """

    def __init__(
        self,
        recipe: BatchRecipe,
        workers_for: Callable[[int], int],
        step_timeout_s: float = 60.0,
        start_timeout_s: float = 300.0,
        max_failures: int = 5,
        python: str = "",
    ):
        self.recipe = recipe
        self.name = recipe.name
        self._workers_for = workers_for
        self._pool_options = dict(step_timeout_s=step_timeout_s, start_timeout_s=start_timeout_s,
                                  max_failures=max_failures, python=python)
        probe = HostEnvPool(recipe, n_envs=1, n_workers=1, seed=0, **self._pool_options)
        probe.close()
        info = probe.info
        self.spec = EnvSpec(
            n_agents=int(info["n_agents"]),
            obs_dim=int(info["obs_dim"]),
            state_dim=int(info["state_dim"]),
            action_dim=int(info["action_dim"]),
            discrete=bool(info["discrete"]),
            max_episode_steps=int(info["max_episode_steps"]),
            agent_id_in_obs=bool(info.get("agent_id_in_obs", False)),
        )
        self._nonce = secrets.randbelow(2**31 - 2) + 1
        self._pools: dict[int, HostEnvPool] = {}
        self._generations: dict[int, int] = {}
        self._next_slot = 0
        self._adopted = 0
        self.last_host_error: Exception | None = None
        logging.getLogger("jax._src.callback").addFilter(_DROP_OWN_ERRORS)
        self._finalizer = weakref.finalize(self, _close_pools, self._pools)

    # ------------------------------------------------------------ JAX side

    def reset_batch(self, key: jax.Array, n_envs: int) -> tuple[BridgeState, Timestep]:
        """Starts ``n_envs`` host environments (a new pool per traced call site, reused when called again)."""
        slot = self._allocate_slot()
        seed = jax.random.randint(key, (), 0, 2**31 - 1, dtype=jnp.int32)
        shapes = (_struct((3,), jnp.int32), *self._observation_structs(n_envs))
        handle, obs, state, avail, active = io_callback(
            functools.partial(self._guarded, self._host_reset, slot, n_envs), shapes, seed, ordered=True
        )
        zeros_n = jnp.zeros((n_envs, self.spec.n_agents), jnp.float32)
        false = jnp.zeros((n_envs,), jnp.bool_)
        bridge_state = BridgeState(handle, jnp.zeros((n_envs,), jnp.float32), jnp.zeros((n_envs,), jnp.int32))
        timestep = Timestep(
            obs=obs, world_state=state, avail=avail, reward=zeros_n, done=false, truncated=false, active=active,
            episode_return=bridge_state.episode_return, episode_length=bridge_state.episode_length, won=false,
        )  # fmt: skip
        return bridge_state, timestep

    def step_batch(self, key: jax.Array, state: BridgeState, actions: jax.Array) -> tuple[BridgeState, Timestep]:
        """Steps every environment once (one host call); finished episodes restart on the host.

        ``actions``: ``[E, N]`` int32 (discrete) or ``[E, N, A]`` float32. The
        returned timestep follows ``AutoReset``'s convention (see ``envs.wrappers``).
        ``key`` is unused: the host simulators draw their own randomness.
        """
        n_envs = state.episode_return.shape[0]
        expected = (n_envs, self.spec.n_agents) + (() if self.spec.discrete else (self.spec.action_dim,))
        if tuple(actions.shape) != expected:
            raise ValueError(f"{self.name}: actions must have shape {list(expected)}, got {tuple(actions.shape)}")
        actions = actions.astype(jnp.int32 if self.spec.discrete else jnp.float32)
        shapes = (
            _struct((3,), jnp.int32),
            *self._observation_structs(n_envs),
            _struct((n_envs, self.spec.n_agents), jnp.float32),
            *(_struct((n_envs,), jnp.bool_) for _ in range(3)),
        )
        handle, obs, world, avail, active, reward, done, truncated, won = io_callback(
            functools.partial(self._guarded, self._host_step), shapes, state.handle, actions, ordered=True
        )
        episode_return, episode_length, next_return, next_length = episode_totals(
            state.episode_return, state.episode_length, reward, done)
        next_state = BridgeState(handle, next_return, next_length)
        timestep = Timestep(
            obs=obs, world_state=world, avail=avail, reward=reward, done=done, truncated=truncated, active=active,
            episode_return=episode_return, episode_length=episode_length, won=won & done,
        )  # fmt: skip
        return next_state, timestep

    # ----------------------------------------------------------- host side

    def host_metrics(self) -> dict[str, float]:
        """The pools' counters summed (``bridge/restarts``, ``bridge/timeouts``, ...), plus the pool count."""
        total = PoolStats()
        for pool in self._pools.values():
            for field, value in vars(pool.stats).items():
                setattr(total, field, getattr(total, field) + value)
        metrics = total.as_metrics()
        metrics["bridge/pools"] = float(len(self._pools))
        metrics["bridge/adopted_pools"] = float(self._adopted)
        return metrics

    def host_error(self) -> Exception | None:
        """The ``HostEnvError``/``HostEnvFailure`` that stopped this bridge's program, if any."""
        return self.last_host_error

    def pool_of(self, state: BridgeState) -> HostEnvPool:
        """The pool that steps ``state``'s environments (for host-side use: benchmarks, inspection)."""
        nonce, slot, _ = (int(x) for x in np.asarray(state.handle))
        if nonce != self._nonce or slot not in self._pools:
            raise ValueError(f"{self.name}: this state's pool lives in another process or has not started")
        return self._pools[slot]

    def close(self) -> None:
        """Stops every worker process (also done when the environment is garbage-collected or at exit)."""
        self._finalizer()

    def _allocate_slot(self) -> int:
        slot, self._next_slot = self._next_slot, self._next_slot + 1
        return slot

    def _observation_structs(self, n_envs: int) -> tuple[jax.ShapeDtypeStruct, ...]:
        s = self.spec
        return (
            _struct((n_envs, s.n_agents, s.obs_dim), jnp.float32),
            _struct((n_envs, s.state_dim), jnp.float32),
            _struct((n_envs, s.n_agents, s.action_dim), jnp.float32),
            _struct((n_envs, s.n_agents), jnp.float32),
        )

    def _guarded(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Runs a host callback, remembering a host error for ``host_error`` before JAX wraps it."""
        try:
            return fn(*args)
        except (HostEnvError, HostEnvFailure) as err:
            self.last_host_error = err
            raise

    def _pool(self, slot: int, n_envs: int, seed: int) -> HostEnvPool:
        pool = HostEnvPool(self.recipe, n_envs, self._workers_for(n_envs), seed, **self._pool_options)
        self._pools[slot] = pool
        self._generations[slot] = 0
        return pool

    def _host_reset(self, slot: int, n_envs: int, seed: np.ndarray) -> tuple[np.ndarray, ...]:
        pool = self._pools.get(slot) or self._pool(slot, n_envs, int(seed))
        arrays = pool.reset()
        self._generations[slot] += 1
        return (self._handle(slot), *(arrays[k] for k in ("obs", "state", "avail", "active")))

    def _host_step(self, handle: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        nonce, slot, generation = (int(x) for x in handle)
        if nonce != self._nonce or slot not in self._pools:
            slot, arrays = self._adopt(handle, actions.shape[0])
        else:
            if generation != self._generations[slot]:
                raise HostEnvError(
                    f"host environment {self.name}: stepped an environment state from before the last reset of "
                    f"its pool (generation {generation}, now {self._generations[slot]}); a host environment has "
                    f"one live state per reset"
                )
            arrays = self._pools[slot].step(actions)
        fields = ("obs", "state", "avail", "active", "reward", "done", "truncated", "won")
        return (self._handle(slot), *(arrays[k] for k in fields))

    def _adopt(self, handle: np.ndarray, n_envs: int) -> tuple[int, dict[str, np.ndarray]]:
        """A pool for a state from another process (a resumed run): every episode ends truncated."""
        slot = self._allocate_slot()
        seed = hash(tuple(int(x) for x in handle)) % (2**31 - 1)
        fresh = self._pool(slot, n_envs, seed).reset()
        self._generations[slot] = 1
        self._adopted += 1
        stats = self._pools[slot].stats
        stats.env_steps += n_envs
        stats.lost_steps += n_envs
        stats.truncated_by_restart += n_envs
        return slot, ended_by_restart(fresh, self.spec.n_agents)

    def _handle(self, slot: int) -> np.ndarray:
        return np.array([self._nonce, slot, self._generations[slot]], np.int32)


def _struct(shape: tuple[int, ...], dtype: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, dtype)


def _close_pools(pools: dict[int, HostEnvPool]) -> None:
    for pool in pools.values():
        pool.close()


@contextlib.contextmanager
def reporting_host_errors(env: Any):
    """Re-raises a host environment's error that stopped a jitted call as itself.

    JAX wraps an exception raised in a callback in a ``JaxRuntimeError``; inside
    this context that becomes the ``HostEnvError`` (bad output, a ``ValueError``)
    or ``HostEnvFailure`` (a worker that keeps failing) the bridge recorded, so
    a command line can report it in one line. Other errors pass unchanged.
    """
    try:
        yield
    except jax.errors.JaxRuntimeError:
        error = env.host_error()
        if error is None:
            raise
        raise error from None
