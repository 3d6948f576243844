"""PPO training as pure functions: ``make_train(config, env, policy)``.

One update is one XLA program: a rollout of ``episode_length`` steps in
``n_envs`` environments, GAE on denormalised values, advantage
normalisation over active agents, then ``ppo_epochs`` passes of
``num_mini_batch`` minibatches (rows are environment-steps holding all
agents, as upstream MAT samples them), each updating the value normaliser,
computing the loss, clipping the global gradient norm and taking an Adam step.

``Trainer.train(key)`` scans that update over the whole budget and is what
``jax.vmap`` runs for seed sweeps; the command line drives ``init`` and
``update`` from the host so it can log, checkpoint and stop cleanly.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jax_mat.algos import ppo
from jax_mat.algos import valuenorm
from jax_mat.envs.base import MultiAgentEnv, Timestep
from jax_mat.networks.policy import Policy
from jax_mat.training import rollout


@flax.struct.dataclass
class RunnerState:
    """Everything a run needs to continue, and exactly what a checkpoint holds."""

    params: Any
    opt_state: Any
    value_norm: valuenorm.ValueNormState
    env_state: Any
    timestep: Timestep
    key: jax.Array
    update: jax.Array  # [] int32 updates done


GRAD_ACCUMULATION_TOKENS_CPU = 2048


def grad_accumulation_tokens() -> int:
    """Agent-tokens per gradient micro-batch: on a CPU, minibatches are differentiated in
    micro-batches of this size (the same gradient; activations stay in cache, measured 1.2-1.5x
    faster per update in ``docs/benchmarks.md``); elsewhere in one pass."""
    return GRAD_ACCUMULATION_TOKENS_CPU if jax.default_backend() == "cpu" else 0


def make_optimizer(lr: float, eps: float, max_grad_norm: float) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(lr, eps=eps))


def _flatten_rows(tree):
    """``[T, E, ...]`` -> ``[T * E, ...]``."""
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), tree)


@dataclasses.dataclass(frozen=True)
class Trainer:
    """The pure training functions of one configuration."""

    config: Any  # jax_mat.config.Config
    env: MultiAgentEnv
    policy: Policy
    # Places the shuffled ``[minibatches, rows, ...]`` on devices (``training.distributed`` splits the rows over
    # them, so each device differentiates its own rows); None: wherever XLA puts them.
    shard_minibatches: Callable[[Any], Any] | None = None

    @property
    def optimizer(self) -> optax.GradientTransformation:
        a = self.config.algo
        return make_optimizer(a.lr, a.opti_eps, a.max_grad_norm)

    def init(self, key: jax.Array) -> RunnerState:
        param_key, env_key, run_key = jax.random.split(key, 3)
        params = self.policy.init(param_key)
        env_state, timestep = rollout.reset_envs(self.env, env_key, self.config.train.n_envs)
        return RunnerState(
            params=params,
            opt_state=self.optimizer.init(params),
            value_norm=valuenorm.init(),
            env_state=env_state,
            timestep=timestep,
            key=run_key,
            update=jnp.zeros((), jnp.int32),
        )

    def _denorm(self, vn, values):
        return valuenorm.denormalize(vn, values) if self.config.algo.use_valuenorm else values

    def _loss(self, params, vn, batch):
        a = self.config.algo
        logp, entropy, values = self.policy.evaluate(
            params, batch["obs"], batch["actions"], batch["avail"], state=batch["state"]
        )
        targets = valuenorm.normalize(vn, batch["returns"]) if a.use_valuenorm else batch["returns"]
        return ppo.ppo_loss(
            logp, entropy, values,
            old_logp=batch["logp"],
            advantages=batch["advantages"],
            value_preds=batch["values"],
            value_targets=targets,
            active=batch["active"],
            config=a.loss_config(),
        )

    def _minibatch_step(self, carry, batch):
        params, opt_state, vn = carry
        if self.config.algo.use_valuenorm:
            vn = valuenorm.update(vn, batch["returns"])
        rows, n_agents = batch["active"].shape
        micro_rows = ppo.micro_batch_rows(rows, n_agents, grad_accumulation_tokens())
        (_, metrics), grads = ppo.accumulated_loss_and_grad(
            lambda p, b: self._loss(p, vn, b), params, batch, self.config.algo.loss_config(), micro_rows
        )
        updates, opt_state = self.optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics["grad_norm"] = optax.global_norm(grads)
        return (params, opt_state, vn), metrics

    def _epoch(self, carry, key, rows):
        a = self.config.algo
        n_rows = jax.tree.leaves(rows)[0].shape[0]
        perm = jax.random.permutation(key, n_rows)
        shuffled = jax.tree.map(lambda x: x[perm].reshape((a.num_mini_batch, -1) + x.shape[1:]), rows)
        if self.shard_minibatches is not None:
            shuffled = self.shard_minibatches(shuffled)
        return jax.lax.scan(self._minibatch_step, carry, shuffled)

    def update(self, state: RunnerState) -> tuple[RunnerState, dict[str, jax.Array]]:
        """One PPO update: rollout, advantages, epochs of minibatches."""
        a, t = self.config.algo, self.config.train
        key, rollout_key, epoch_key = jax.random.split(state.key, 3)
        (env_state, timestep), traj = rollout.collect(
            self.env, self.policy, state.params, state.env_state, state.timestep, rollout_key, t.episode_length
        )
        last_values = self.policy.value(state.params, timestep.obs, state=timestep.state)
        vn = state.value_norm
        truncated = traj.truncated if a.use_proper_time_limits else None
        advantages, returns = ppo.gae(
            traj.reward, self._denorm(vn, traj.values), traj.done, self._denorm(vn, last_values), a.gamma,
            a.gae_lambda, truncated,
        )
        # A transition that ran into a time limit has no next observation to bootstrap from (the
        # environment has already reset): with proper time limits it leaves the loss altogether.
        active = traj.active if truncated is None else traj.active * (1.0 - truncated[..., None])
        advantages = ppo.normalize_advantages(advantages, active)
        rows = _flatten_rows({
            "obs": traj.obs, "state": traj.state, "avail": traj.avail, "actions": traj.actions, "logp": traj.logp,
            "values": traj.values, "active": active, "advantages": advantages, "returns": returns,
        })
        carry = (state.params, state.opt_state, vn)
        (params, opt_state, vn), losses = jax.lax.scan(
            lambda c, k: self._epoch(c, k, rows), carry, jax.random.split(epoch_key, a.ppo_epochs)
        )
        metrics = {k: v.mean() for k, v in losses.items()}
        metrics.update(rollout.episode_metrics(traj))
        mean, var = valuenorm.mean_var(vn)
        metrics.update({
            "value/mean_prediction": self._denorm(vn, traj.values).mean(),
            "value/mean_return": returns.mean(),
            "value/norm_mean": mean,
            "value/norm_std": jnp.sqrt(var),
            "rollout/active_fraction": traj.active.mean(),
        })
        new_state = RunnerState(params, opt_state, vn, env_state, timestep, key, state.update + 1)
        return new_state, metrics

    def train(self, key: jax.Array) -> tuple[RunnerState, dict[str, jax.Array]]:
        """The whole budget as one program: ``jax.vmap(trainer.train)(keys)`` runs seeds."""
        state = self.init(key)
        return jax.lax.scan(lambda s, _: self.update(s), state, None, length=self.config.num_updates)

    def evaluate(self, params: Any, key: jax.Array, n_episodes: int) -> dict[str, jax.Array]:
        """Greedy evaluation: ``n_episodes`` environments, each's first episode counted."""
        reset_key, run_key = jax.random.split(key)
        env_state, timestep = rollout.reset_envs(self.env, reset_key, n_episodes)
        steps = self.env.spec.max_episode_steps
        _, traj = rollout.collect(self.env, self.policy, params, env_state, timestep, run_key, steps, True)
        first = jnp.cumsum(traj.done, axis=0) == 1
        first_done = (traj.done & first).astype(jnp.float32)
        finished = first_done.sum()
        per_env = lambda x: (x * first_done).sum(0)
        return {
            "episodes": finished,
            "win_rate": per_env(traj.won).sum() / jnp.maximum(finished, 1.0),
            "mean_return": per_env(traj.episode_return).sum() / jnp.maximum(finished, 1.0),
            "mean_length": per_env(traj.episode_length).sum() / jnp.maximum(finished, 1.0),
        }
