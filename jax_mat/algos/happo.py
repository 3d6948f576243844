"""HAPPO's sequential update (Kuba et al., ICLR 2022), as HARL implements it.

Each update draws a random permutation of the agents and updates their
actors one after another. Agent ``i_m`` maximises the clipped surrogate of
its own ratio weighted, row by row, by the product of the ratios that the
previously updated agents ``i_1 .. i_{m-1}`` reached in their updates:

    M^{i_m}(s, a) = prod_{l < m} pi^{i_l}_new(a^{i_l} | o^{i_l}) / pi^{i_l}_old(a^{i_l} | o^{i_l})

    L^{i_m} = -mean_active( M^{i_m} * min(r^{i_m} A, clip(r^{i_m}, 1 - eps, 1 + eps) A) )
              - entropy_coef * mean_active(entropy)

Every agent trains ``ppo_epochs`` passes of
``num_mini_batch`` minibatches with its own Adam and gradient-norm clip;
advantages come from one centralised critic ``V(state)``, standardised per
agent over the steps where that agent is active; the critic then trains on
the value loss alone with its own optimizer. The actors' parameters are
stacked ``[N, ...]``: the agent loop is a ``lax.scan`` over the permutation
that slices one agent's parameters and optimizer state out and writes them
back, never a Python loop over agents.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jax_mat.algos import ppo, valuenorm
from jax_mat.algos.learner import MinibatchPlacement, epoch_minibatches, make_optimizer


def _take(tree: Any, i: jax.Array) -> Any:
    return jax.tree.map(lambda x: x[i], tree)


def _put(tree: Any, i: jax.Array, value: Any) -> Any:
    return jax.tree.map(lambda x, v: x.at[i].set(v), tree, value)


@dataclasses.dataclass(frozen=True)
class HAPPOLearner:
    """The HAPPO learner for an ``MLPPolicy`` with per-agent actors (``share_actor=False``)."""

    config: Any  # jax_mat.config.AlgoConfig
    policy: Any  # jax_mat.networks.mlp.MLPPolicy
    shard_minibatches: MinibatchPlacement | None = None  # epoch_minibatches' ``place``

    @property
    def optimizer(self) -> optax.GradientTransformation:
        algo = self.config
        return make_optimizer(algo.lr, algo.opti_eps, algo.max_grad_norm)

    def init(self, params):
        """One optimizer state per actor (stacked ``[N, ...]``) and one for the critic."""
        return {
            "actors": jax.vmap(self.optimizer.init)(self.policy.actors_of(params)),
            "critic": self.optimizer.init(self.policy.critic_of(params)),
        }

    def normalize_advantages(self, advantages: jax.Array, active: jax.Array) -> jax.Array:
        return ppo.normalize_advantages_per_agent(advantages, active)

    def update(self, params, opt_state, value_norm, rows, key):
        order_key, actor_key, critic_key = jax.random.split(key, 3)
        order = jax.random.permutation(order_key, self.policy.spec.n_agents)
        actors, actors_opt, actor_metrics, _ = self._update_actors(
            self.policy.actors_of(params), opt_state["actors"], rows, order, actor_key
        )
        critic, critic_opt, value_norm, value_metrics = self._update_critic(
            self.policy.critic_of(params), opt_state["critic"], value_norm, rows, critic_key
        )
        metrics = {**actor_metrics, **value_metrics}
        metrics["loss/total"] = ppo.combine(
            metrics["loss/policy"], metrics["loss/entropy"], metrics["loss/value"], self.config.loss_config()
        )
        params = self.policy.with_parts(params, actors, critic)
        return params, {"actors": actors_opt, "critic": critic_opt}, value_norm, metrics

    # -- actors ----------------------------------------------------------------------------- #

    def _agent_rows(self, rows, i):
        """Agent ``i``'s columns of ``rows``: ``obs [R, O]``, ``actions``, ``avail [R, A]``, ``logp [R, K]``, ..."""
        agent = {k: rows[k][:, i] for k in ("obs", "actions", "avail", "logp", "advantages", "active")}
        if not self.config.use_policy_active_masks:
            agent["active"] = jnp.ones_like(agent["active"])
        return agent

    def _actor_loss(self, actor_params, batch):
        algo = self.config
        logp, entropy = self.policy.agent_scores(actor_params, batch["obs"], batch["actions"], batch["avail"])
        terms = ppo.policy_terms(
            logp[:, None], entropy[:, None], batch["logp"][:, None], batch["advantages"][:, None],
            batch["active"][:, None], algo.clip, weight=batch["factor"][:, None],
        )
        return terms["loss/policy"] - algo.entropy_coef * terms["loss/entropy"], terms

    def _train_agent(self, actor_params, opt_state, batch, key):
        """``ppo_epochs`` x ``num_mini_batch`` steps of one agent's actor on its rows (with their factor)."""
        algo = self.config

        def step(carry, minibatch):
            p, o = carry
            (_, terms), grads = jax.value_and_grad(self._actor_loss, has_aux=True)(p, minibatch)
            updates, o = self.optimizer.update(grads, o, p)
            return (optax.apply_updates(p, updates), o), {**terms, "grad_norm": optax.global_norm(grads)}

        def epoch(carry, epoch_key):
            return jax.lax.scan(step, carry, epoch_minibatches(epoch_key, batch, algo.num_mini_batch,
                                                                self.shard_minibatches))

        (actor_params, opt_state), metrics = jax.lax.scan(
            epoch, (actor_params, opt_state), jax.random.split(key, algo.ppo_epochs)
        )
        return actor_params, opt_state, jax.tree.map(jnp.mean, metrics)

    def _update_actors(self, actors, opt_states, rows, order, key):
        """Trains the actors in ``order``; also returns ``[N, R]`` the factor ``M`` each position trained with.

        ``rows["logp"]`` holds the behaviour policy's log-probabilities, which
        are each agent's "before" values: no agent has changed since the rollout
        until its own turn.
        """
        n_rows = rows["advantages"].shape[0]

        def agent_step(carry, x):
            actors, opt_states, factor = carry
            i, agent_key = x
            batch = {**self._agent_rows(rows, i), "factor": factor}
            # An agent active in no row (a padded smax_multi slot, one dead all rollout) is skipped, as HARL
            # skips it: its masked means would be 0 / 0. It is trained on all-ones masks to stay finite, and
            # the result is dropped; the factor passes through unchanged.
            trains = batch["active"].sum() > 0
            batch["active"] = jnp.where(trains, batch["active"], 1.0)
            old_actor, old_opt = _take(actors, i), _take(opt_states, i)
            actor, opt_state, metrics = self._train_agent(old_actor, old_opt, batch, agent_key)
            actor = jax.tree.map(lambda new, old: jnp.where(trains, new, old), actor, old_actor)
            opt_state = jax.tree.map(lambda new, old: jnp.where(trains, new, old), opt_state, old_opt)
            new_logp, _ = self.policy.agent_scores(actor, batch["obs"], batch["actions"], batch["avail"])
            ratio = jnp.where(trains, jnp.exp((new_logp - batch["logp"]).sum(-1)), 1.0)
            next_factor = jax.lax.stop_gradient(factor * ratio)
            metrics["happo/factor_mean"] = factor.mean()
            return (_put(actors, i, actor), _put(opt_states, i, opt_state), next_factor), (metrics, factor, trains)

        init = (actors, opt_states, jnp.ones((n_rows,), jnp.float32))
        keys = jax.random.split(key, order.shape[0])
        (actors, opt_states, _), (metrics, factors, trained) = jax.lax.scan(agent_step, init, (order, keys))
        # Metrics: the mean over the agents that trained.
        weight = trained.astype(jnp.float32) / jnp.maximum(trained.sum(), 1)
        metrics = jax.tree.map(lambda m: (m * weight).sum(), metrics)
        return actors, opt_states, metrics, factors

    # -- critic ----------------------------------------------------------------------------- #

    def _update_critic(self, critic, opt_state, value_norm, rows, key):
        algo = self.config
        loss_config = algo.loss_config()
        fields = {k: rows[k] for k in ("obs", "world_state", "values", "returns", "active")}

        def step(carry, batch):
            critic, opt_state, value_norm = carry
            if algo.use_valuenorm:
                value_norm = valuenorm.update(value_norm, batch["returns"])
            targets = valuenorm.normalize(value_norm, batch["returns"]) if algo.use_valuenorm else batch["returns"]
            mask = batch["active"] if algo.use_value_active_masks else jnp.ones_like(batch["active"])

            def loss(c):
                values = self.policy.critic_values(c, batch["obs"], batch["world_state"])
                value_loss = ppo.value_loss(values, batch["values"], targets, mask, loss_config)
                return algo.value_loss_coef * value_loss, value_loss

            (_, value_loss), grads = jax.value_and_grad(loss, has_aux=True)(critic)
            updates, opt_state = self.optimizer.update(grads, opt_state, critic)
            metrics = {"loss/value": value_loss, "grad_norm/critic": optax.global_norm(grads)}
            return (optax.apply_updates(critic, updates), opt_state, value_norm), metrics

        def epoch(carry, epoch_key):
            return jax.lax.scan(step, carry, epoch_minibatches(epoch_key, fields, algo.num_mini_batch,
                                                                self.shard_minibatches))

        (critic, opt_state, value_norm), metrics = jax.lax.scan(
            epoch, (critic, opt_state, value_norm), jax.random.split(key, algo.ppo_epochs))
        return critic, opt_state, value_norm, jax.tree.map(jnp.mean, metrics)
