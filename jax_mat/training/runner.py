"""Training as pure functions: ``Trainer(config, env, policy)``.

One update is one XLA program: a rollout of ``episode_length`` steps in
``n_envs`` environments, GAE on denormalised values, advantage
normalisation over active agents, then the algorithm's learner
(``algos.learner``): for PPO, ``ppo_epochs`` passes of ``num_mini_batch``
minibatches (rows are environment-steps holding all agents, as upstream MAT
samples them), each updating the value normaliser, computing the loss,
clipping the gradient norm and taking an Adam step; for HAPPO, the agents'
actors one after another in a random order, then the critic.

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

from jax_mat.algos import ppo
from jax_mat.algos import registry as algos
from jax_mat.algos import valuenorm
from jax_mat.envs.base import MultiAgentEnv, Timestep
from jax_mat.networks.policy import Policy
from jax_mat.training import rollout


def make_trainer(config: Any) -> "Trainer":
    """The ``Trainer`` of a config: its environment (``envs.registry``) and its algorithm's policy (the
    algorithm table, ``algos.registry``), built as every command and script builds them."""
    from jax_mat.envs.registry import make_env_from_config

    env = make_env_from_config(config.env)
    return Trainer(config, env, algos.make_policy(env.spec, config.algo))


@flax.struct.dataclass
class RunnerState:
    """Everything a run needs to continue, and exactly what a checkpoint holds (its field names are the
    checkpoint's; ``training.checkpoint.RENAMED`` maps the names of checkpoints saved before a rename)."""

    params: Any
    opt_state: Any
    value_norm: valuenorm.ValueNormState
    env_state: Any
    timestep: Timestep
    key: jax.Array
    num_updates: jax.Array  # [] int32 updates done


def _flatten_rows(tree):
    """``[T, E, ...]`` -> ``[T * E, ...]``."""
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), tree)


@dataclasses.dataclass(frozen=True)
class Trainer:
    """The pure training functions of one configuration."""

    config: Any  # jax_mat.config.Config
    env: MultiAgentEnv
    policy: Policy
    # Handed to the learner, which applies it to each epoch's shuffled ``[minibatches, rows, ...]``
    # (``training.distributed`` splits the rows over devices); None: XLA places them.
    shard_minibatches: Callable[[Any], Any] | None = None

    @property
    def learner(self):
        """The algorithm's update, from the algorithm table (``algos.learner.PPOLearner`` or
        ``algos.happo.HAPPOLearner``)."""
        return algos.make_learner(self.config.algo, self.policy, self.shard_minibatches)

    def init(self, key: jax.Array) -> RunnerState:
        param_key, env_key, run_key = jax.random.split(key, 3)
        params = self.policy.init(param_key)
        env_state, timestep = self.env.reset_batch(env_key, self.config.train.n_envs)
        return RunnerState(
            params=params,
            opt_state=self.learner.init(params),
            value_norm=valuenorm.init(),
            env_state=env_state,
            timestep=timestep,
            key=run_key,
            num_updates=jnp.zeros((), jnp.int32),
        )

    def _denorm(self, value_norm, values):
        return valuenorm.denormalize(value_norm, values) if self.config.algo.use_valuenorm else values

    def update(self, state: RunnerState) -> tuple[RunnerState, dict[str, jax.Array]]:
        """One update: rollout, advantages, then the algorithm's learner (PPO epochs of minibatches)."""
        algo, train = self.config.algo, self.config.train
        key, rollout_key, learn_key = jax.random.split(state.key, 3)
        (env_state, timestep), traj = rollout.collect(
            self.env, self.policy, state.params, state.env_state, state.timestep, rollout_key, train.episode_length
        )
        last_values = self.policy.value(state.params, timestep.obs, world_state=timestep.world_state)
        value_norm = state.value_norm
        truncated = traj.truncated if algo.use_proper_time_limits else None
        advantages, returns = ppo.gae(
            traj.reward, self._denorm(value_norm, traj.values), traj.done, self._denorm(value_norm, last_values),
            algo.gamma, algo.gae_lambda, truncated,
        )
        # A transition that ran into a time limit has no next observation to bootstrap from (the
        # environment has already reset): with proper time limits it leaves the loss altogether.
        active = traj.active if truncated is None else traj.active * (1.0 - truncated[..., None])
        advantages = self.learner.normalize_advantages(advantages, active)
        rows = _flatten_rows({
            "obs": traj.obs, "world_state": traj.world_state, "avail": traj.avail, "actions": traj.actions,
            "logp": traj.logp, "values": traj.values, "active": active, "advantages": advantages, "returns": returns,
        })
        params, opt_state, value_norm, metrics = self.learner.update(state.params, state.opt_state, value_norm, rows,
                                                                     learn_key)
        metrics.update(rollout.episode_metrics(traj))
        mean, var = valuenorm.mean_var(value_norm)
        metrics.update({
            "value/mean_prediction": self._denorm(value_norm, traj.values).mean(),
            "value/mean_return": returns.mean(),
            "value/norm_mean": mean,
            "value/norm_std": jnp.sqrt(var),
            "rollout/active_fraction": traj.active.mean(),
        })
        new_state = RunnerState(params, opt_state, value_norm, env_state, timestep, key, state.num_updates + 1)
        return new_state, metrics

    def train(self, key: jax.Array) -> tuple[RunnerState, dict[str, jax.Array]]:
        """The whole budget as one program: ``jax.vmap(trainer.train)(keys)`` runs seeds."""
        state = self.init(key)
        return jax.lax.scan(lambda s, _: self.update(s), state, None, length=self.config.num_updates)

    def evaluate(self, params: Any, key: jax.Array, n_episodes: int, deterministic: bool = True
                 ) -> dict[str, jax.Array]:
        """``n_episodes`` environments played for one episode each, greedy (``deterministic``) or sampled.

        Returns ``episodes`` (how many finished within ``max_episode_steps``), their ``win_rate``,
        ``mean_return`` and ``mean_length`` (scalars), and each environment's first episode as
        ``episode_return`` and ``episode_won`` (``[n_episodes]``; 0 where it did not finish). Only those
        statistics are carried through the steps, not the trajectories, so large evaluations fit in memory.
        """
        reset_key, run_key = jax.random.split(key)
        env_state, timestep = self.env.reset_batch(reset_key, n_episodes)
        zeros = jnp.zeros((n_episodes,), jnp.float32)

        def step(carry, step_key):
            env_state, ts, finished, episode_return, won, length = carry
            act_key, env_key = jax.random.split(step_key)
            actions, _, _ = self.policy.act(params, ts.obs, ts.avail, act_key, deterministic,
                                            world_state=ts.world_state)
            env_state, next_ts = self.env.step_batch(env_key, env_state, actions)
            first = next_ts.done & ~finished
            keep = lambda new, old: jnp.where(first, new.astype(jnp.float32), old)
            carry = (env_state, next_ts, finished | next_ts.done, keep(next_ts.episode_return, episode_return),
                     keep(next_ts.won, won), keep(next_ts.episode_length, length))
            return carry, None

        init = (env_state, timestep, jnp.zeros((n_episodes,), bool), zeros, zeros, zeros)
        steps = jax.random.split(run_key, self.env.spec.max_episode_steps)
        (_, _, finished, episode_return, won, length), _ = jax.lax.scan(step, init, steps)
        count = finished.sum().astype(jnp.float32)
        mean = lambda x: x.sum() / jnp.maximum(count, 1.0)
        return {
            "episodes": count,
            "win_rate": mean(won),
            "mean_return": mean(episode_return),
            "mean_length": mean(length),
            "episode_return": episode_return,
            "episode_won": won,
        }
