"""What turns one rollout into new parameters: the learner of each algorithm.

A learner is a small frozen object with two pure functions:

* ``init(params) -> opt_state``
* ``update(params, opt_state, value_norm, rows, key) -> (params, opt_state, value_norm, metrics)``

where ``rows`` is the rollout flattened to ``R = T * E`` environment-steps
(each row holds all agents), with keys ``obs [R, N, O]``, ``world_state [R, S]``,
``avail [R, N, A]``, ``actions``, ``logp [R, N, K]``, ``values [R, N]``
(normalised scale), ``active [R, N]``, ``advantages [R, N]`` and
``returns [R, N]`` (unnormalised). It also chooses how advantages are
standardised (``normalize_advantages``).

``PPOLearner`` is upstream MAT's update, used by every algorithm that trains
all agents jointly (MAT, MAT-Dec, MARWKV, MAPPO); HAPPO's sequential update
is ``algos.happo.HAPPOLearner``. Which algorithm uses which is the algorithm
table's to say (``algos.registry``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import optax

from jax_mat.algos import ppo, valuenorm
from jax_mat.networks.policy import Policy

GRAD_ACCUMULATION_TOKENS_CPU = 2048


def grad_accumulation_tokens() -> int:
    """Agent-tokens per gradient micro-batch: on a CPU, minibatches are differentiated in
    micro-batches of this size (the same gradient, with the activations kept in cache; the gain per
    update is in docs/benchmarks.md, "MAT network"); elsewhere in one pass."""
    return GRAD_ACCUMULATION_TOKENS_CPU if jax.default_backend() == "cpu" else 0


def make_optimizer(lr: float, eps: float, max_grad_norm: float) -> optax.GradientTransformation:
    """Global-norm clipping then Adam, as upstream."""
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(lr, eps=eps))


def policy_optimizer(policy: Policy, lr: float, eps: float, max_grad_norm: float) -> optax.GradientTransformation:
    """``make_optimizer`` over all parameters, or one per parameter group of the policy.

    Upstream MAPPO and HAPPO keep separate actor and critic optimizers, each
    clipping its own gradient norm: a policy with ``param_groups`` (group
    names) and ``param_labels(params)`` (each leaf's group) gets one
    ``make_optimizer`` per group through ``optax.multi_transform``.
    """
    groups = policy.param_groups
    if not groups:
        return make_optimizer(lr, eps, max_grad_norm)
    return optax.multi_transform({g: make_optimizer(lr, eps, max_grad_norm) for g in groups}, policy.param_labels)


MinibatchPlacement = Callable[[dict[str, jax.Array]], dict[str, jax.Array]]


def epoch_minibatches(key: jax.Array, rows: Mapping[str, jax.Array], num_mini_batch: int,
                      place: MinibatchPlacement | None = None) -> dict[str, jax.Array]:
    """Shuffled ``rows`` cut into ``[num_mini_batch, R / num_mini_batch, ...]`` (upstream's random sampler),
    then put where ``place`` says (``training.distributed`` splits the rows over devices)."""
    n_rows = jax.tree.leaves(rows)[0].shape[0]
    perm = jax.random.permutation(key, n_rows)
    minibatches = jax.tree.map(lambda x: x[perm].reshape((num_mini_batch, -1) + x.shape[1:]), dict(rows))
    return minibatches if place is None else place(minibatches)


@dataclasses.dataclass(frozen=True)
class PPOLearner:
    """Upstream MAT's update: ``ppo_epochs`` passes of ``num_mini_batch`` shuffled minibatches.

    Each minibatch updates the value normaliser with its returns, computes
    ``ppo.ppo_loss`` over all agents jointly, clips the gradient norm (per
    parameter group) and takes an Adam step.
    """

    config: Any  # jax_mat.config.AlgoConfig
    policy: Policy
    shard_minibatches: MinibatchPlacement | None = None  # epoch_minibatches' ``place``

    @property
    def optimizer(self) -> optax.GradientTransformation:
        algo = self.config
        return policy_optimizer(self.policy, algo.lr, algo.opti_eps, algo.max_grad_norm)

    def init(self, params):
        return self.optimizer.init(params)

    def normalize_advantages(self, advantages: jax.Array, active: jax.Array) -> jax.Array:
        return ppo.normalize_advantages(advantages, active)

    def _loss(self, params, value_norm, batch):
        algo = self.config
        logp, entropy, values = self.policy.evaluate(
            params, batch["obs"], batch["actions"], batch["avail"], world_state=batch["world_state"]
        )
        targets = valuenorm.normalize(value_norm, batch["returns"]) if algo.use_valuenorm else batch["returns"]
        return ppo.ppo_loss(
            logp, entropy, values,
            old_logp=batch["logp"],
            advantages=batch["advantages"],
            value_preds=batch["values"],
            value_targets=targets,
            active=batch["active"],
            config=algo.loss_config(),
        )

    def _minibatch_step(self, carry, batch):
        params, opt_state, value_norm = carry
        if self.config.use_valuenorm:
            value_norm = valuenorm.update(value_norm, batch["returns"])
        rows, n_agents = batch["active"].shape
        micro_rows = ppo.micro_batch_rows(rows, n_agents, grad_accumulation_tokens())
        (_, metrics), grads = ppo.accumulated_loss_and_grad(
            lambda p, b: self._loss(p, value_norm, b), params, batch, self.config.loss_config(), micro_rows
        )
        updates, opt_state = self.optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics["grad_norm"] = optax.global_norm(grads)
        return (params, opt_state, value_norm), metrics

    def update(self, params, opt_state, value_norm, rows, key):
        algo = self.config

        def epoch(carry, epoch_key):
            minibatches = epoch_minibatches(epoch_key, rows, algo.num_mini_batch, self.shard_minibatches)
            return jax.lax.scan(self._minibatch_step, carry, minibatches)

        (params, opt_state, value_norm), losses = jax.lax.scan(
            epoch, (params, opt_state, value_norm), jax.random.split(key, algo.ppo_epochs)
        )
        return params, opt_state, value_norm, {k: v.mean() for k, v in losses.items()}
