"""PPO as upstream MAT trains: GAE, the clipped losses, and the minibatch update.

Written once and shared by every algorithm. Array shapes in this module are
``[..., N]`` per-agent quantities over any leading batch axes, with
``logp``/``entropy`` carrying a trailing ``K`` (1 for discrete actions, the
action dimension for continuous ones).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """The PPO objective's knobs (upstream MAT's defaults)."""

    clip: float = 0.05
    entropy_coef: float = 0.01
    value_loss_coef: float = 1.0
    huber_delta: float = 10.0
    use_huber_loss: bool = True
    use_clipped_value_loss: bool = True
    use_value_active_masks: bool = True
    use_policy_active_masks: bool = True


def upstream_huber(error: jax.Array, delta: float) -> jax.Array:
    """Upstream's Huber loss, quirk included.

    ``a * e^2 / 2 + b * d * (|e| - d / 2)`` with ``a = |e| <= d`` and
    ``b = e > d``: for ``e < -d`` *both* indicators are zero, so the loss (and
    its gradient) vanishes. Kept for parity with the official MAT.
    """
    a = (jnp.abs(error) <= delta).astype(error.dtype)
    b = (error > delta).astype(error.dtype)
    return a * error**2 / 2 + b * delta * (jnp.abs(error) - delta / 2)


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """``sum(x * mask) / sum(mask)`` (``mask`` broadcasts against ``x``)."""
    mask = jnp.broadcast_to(mask, x.shape)
    return (x * mask).sum() / mask.sum()


def combine(policy_loss, entropy_loss, value_loss, config: LossConfig):
    """The total objective from its three terms."""
    return policy_loss - config.entropy_coef * entropy_loss + config.value_loss_coef * value_loss


def policy_terms(
    logp: jax.Array,
    entropy: jax.Array,
    old_logp: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    clip: float,
    weight: jax.Array | None = None,
    entropy_per_agent: bool = True,
) -> dict[str, jax.Array]:
    """The clipped surrogate and entropy terms (upstream MAT's, and HAPPO's with ``weight``).

    Args:
      logp, entropy, old_logp: ``[..., N, K]``; the ratio is clipped per
        trailing entry (per action dimension for MAT's continuous head, the
        joint ratio when ``K = 1``) and the surrogates are summed over ``K``.
      advantages, mask: ``[..., N]``; the means are over ``mask``.
      weight: optional ``[..., N]`` factor multiplying each agent's surrogate
        (HAPPO's product of the previously updated agents' ratios).
      entropy_per_agent: the entropy term is each agent's entropy summed over
        ``K``, averaged over ``mask`` (upstream with policy active masks:
        ``(entropy * active).sum() / active.sum()`` against ``[B * N, 1]``
        masks); False: the plain mean over agents and ``K`` (upstream's
        ``entropy.mean()`` without them). The two agree when ``K = 1``.
    Returns:
      ``loss/policy`` (to minimise), ``loss/entropy`` (to maximise),
      ``ppo/ratio`` and ``ppo/clip_frac`` (masked means).
    """
    ratio = jnp.exp(logp - old_logp)
    adv = advantages[..., None]
    surr1 = ratio * adv
    surr2 = jnp.clip(ratio, 1.0 - clip, 1.0 + clip) * adv
    surrogate = jnp.minimum(surr1, surr2).sum(-1)
    if weight is not None:
        surrogate = weight * surrogate
    return {
        "loss/policy": masked_mean(-surrogate, mask),
        "loss/entropy": masked_mean(entropy.sum(-1), mask) if entropy_per_agent else masked_mean(entropy, mask[..., None]),
        "ppo/ratio": masked_mean(ratio, mask[..., None]),
        "ppo/clip_frac": masked_mean((jnp.abs(ratio - 1.0) > clip).astype(ratio.dtype), mask[..., None]),
    }


def value_loss(
    values: jax.Array, value_preds: jax.Array, value_targets: jax.Array, mask: jax.Array, config: LossConfig
) -> jax.Array:
    """Upstream's clipped (Huber) value loss: ``[..., N]`` arrays, a masked mean over ``mask``.

    ``value_targets`` are in the value network's (normalised) scale; the
    prediction may move at most ``config.clip`` away from ``value_preds``.
    """
    clipped = value_preds + jnp.clip(values - value_preds, -config.clip, config.clip)
    err_clipped, err = value_targets - clipped, value_targets - values
    if config.use_huber_loss:
        loss_clipped, loss_orig = upstream_huber(err_clipped, config.huber_delta), upstream_huber(err, config.huber_delta)
    else:
        loss_clipped, loss_orig = err_clipped**2 / 2, err**2 / 2
    loss = jnp.maximum(loss_orig, loss_clipped) if config.use_clipped_value_loss else loss_orig
    return masked_mean(loss, mask)


def ppo_loss(
    logp: jax.Array,
    entropy: jax.Array,
    values: jax.Array,
    old_logp: jax.Array,
    advantages: jax.Array,
    value_preds: jax.Array,
    value_targets: jax.Array,
    active: jax.Array,
    config: LossConfig,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Upstream ``MATTrainer.ppo_update``'s objective: ``policy_terms`` and ``value_loss`` combined.

    Args:
      logp, entropy, old_logp: ``[..., N, K]``.
      values, value_preds, value_targets, advantages, active: ``[..., N]``;
        ``value_targets`` already in the value network's (normalised) scale.
    Returns:
      The total loss and its parts.
    """
    ones = jnp.ones_like(active)
    policy_mask = active if config.use_policy_active_masks else ones
    metrics = policy_terms(logp, entropy, old_logp, advantages, policy_mask, config.clip,
                           entropy_per_agent=config.use_policy_active_masks)
    metrics["loss/value"] = value_loss(
        values, value_preds, value_targets, active if config.use_value_active_masks else ones, config
    )
    total = combine(metrics["loss/policy"], metrics["loss/entropy"], metrics["loss/value"], config)
    return total, {"loss/total": total, **metrics}


def gae(
    rewards: jax.Array,
    values: jax.Array,
    dones: jax.Array,
    last_values: jax.Array,
    gamma: float,
    gae_lambda: float,
    truncated: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation as a reverse scan.

    Args:
      rewards: ``[T, ..., N]`` reward of transition ``t``.
      values: ``[T, ..., N]`` value of the observation acted on at ``t``.
      dones: ``[T, ...]`` transition ``t`` ended its episode (no bootstrap
        through it; the next observation already belongs to a new episode).
      last_values: ``[..., N]`` value of the observation after the last step.
      truncated: optional ``[T, ...]``, transition ``t`` ended its episode by a
        time limit rather than by the task ("proper time limits"). Its own
        target would need the value of the observation after the limit, which
        auto-reset has replaced, so its advantage is 0 and its return its value
        (the runner also drops it from the loss); every earlier transition
        bootstraps from the observation it led to, as in an endless episode.
        ``None``: time limits are terminal (upstream MAT on SMAC).
    Returns:
      advantages and returns (``advantages + values``), both ``[T, ..., N]``.
    """
    not_done = 1.0 - dones.astype(values.dtype)[..., None]
    if truncated is None:
        keep = jnp.ones_like(not_done)
    else:
        keep = 1.0 - truncated.astype(values.dtype)[..., None]

    def step(carry, x):
        next_adv, next_value = carry
        reward, value, cont, kept = x
        delta = reward + gamma * next_value * cont - value
        adv = (delta + gamma * gae_lambda * cont * next_adv) * kept
        return (adv, value), adv

    init = (jnp.zeros_like(last_values), last_values)
    _, advantages = jax.lax.scan(step, init, (rewards, values, not_done, keep), reverse=True)
    return advantages, advantages + values


def normalize_advantages(advantages: jax.Array, active: jax.Array) -> jax.Array:
    """Standardise with the mean and std over active agents only (upstream's nanmean/nanstd)."""
    count = active.sum()
    mean = (advantages * active).sum() / count
    var = (((advantages - mean) * active) ** 2).sum() / count
    return (advantages - mean) / (jnp.sqrt(var) + 1e-5)


def normalize_advantages_per_agent(advantages: jax.Array, active: jax.Array) -> jax.Array:
    """``normalize_advantages`` for each agent (last axis) on its own, over the steps it is active.

    HAPPO (HARL) standardises the shared advantage separately in each agent's
    update, with that agent's active mask. An agent never active keeps its
    advantages merely shifted (its count is clamped to 1); they are masked out of
    its loss anyway.
    """
    axes = tuple(range(advantages.ndim - 1))
    count = jnp.maximum(active.sum(axes), 1.0)
    mean = (advantages * active).sum(axes) / count
    var = (((advantages - mean) * active) ** 2).sum(axes) / count
    return (advantages - mean) / (jnp.sqrt(var) + 1e-5)


def micro_batch_rows(rows: int, n_agents: int, max_tokens: int) -> int:
    """Rows per micro-batch: the largest divisor of ``rows`` holding at most ``max_tokens`` agent-tokens.

    ``0`` (no micro-batches) when ``max_tokens`` is 0 or the whole minibatch fits.
    """
    limit = max(1, max_tokens // n_agents) if max_tokens else rows
    if limit >= rows:
        return 0
    return max(d for d in range(1, limit + 1) if rows % d == 0)


def accumulated_loss_and_grad(loss_fn, params, batch: dict, config: LossConfig, micro_rows: int):
    """The gradient of ``loss_fn(params, batch)`` over the whole minibatch, computed micro-batch by micro-batch.

    ``loss_fn(params, batch) -> (total, metrics)`` is ``ppo_loss`` behind a policy.
    Every term of ``ppo_loss`` is a masked mean, so the whole minibatch's loss
    is the sum of each micro-batch's terms weighted by its share of the mask
    sums; the gradient (and the metrics) follow, equal to one whole-batch pass
    up to float rounding, while the working set stays one micro-batch (on a
    CPU that keeps activations in cache). ``batch["active"]`` is ``[rows, N]``;
    ``micro_rows == 0`` means one pass over the whole batch.
    """
    if not micro_rows:
        return jax.value_and_grad(loss_fn, has_aux=True)(params, batch)
    rows = batch["active"].shape[0]
    # Micro-batch i holds rows i, i + n, i + 2n, ... (n micro-batches): rows split over devices in contiguous
    # blocks (training.distributed) then give each micro-batch its share of every device's rows, no exchange.
    micro = jax.tree.map(lambda x: x.reshape(micro_rows, rows // micro_rows, *x.shape[1:]).swapaxes(0, 1), batch)

    def masks(active):
        ones = jnp.ones_like(active)
        return (active if config.use_policy_active_masks else ones, active if config.use_value_active_masks else ones)

    policy_total, value_total = (m.sum() for m in masks(batch["active"]))

    def objective(p, chunk):
        policy_w, value_w = (m.sum() / t for m, t in zip(masks(chunk["active"]), (policy_total, value_total)))
        # A micro-batch with no active agent has weight 0; all-ones masks keep its means finite.
        active = jnp.where(chunk["active"].sum() > 0, chunk["active"], 1.0)
        _, m = loss_fn(p, {**chunk, "active": active})
        weighted = {k: (value_w if k == "loss/value" else policy_w) * v for k, v in m.items() if k != "loss/total"}
        total = combine(weighted["loss/policy"], weighted["loss/entropy"], weighted["loss/value"], config)
        return total, {**weighted, "loss/total": total}

    def body(acc, chunk):
        out = jax.value_and_grad(objective, has_aux=True)(params, chunk)
        return jax.tree.map(jnp.add, acc, out), None

    first = jax.tree.map(lambda x: x[0], micro)
    shapes = jax.eval_shape(lambda: jax.value_and_grad(objective, has_aux=True)(params, first))
    zero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    return jax.lax.scan(body, zero, micro)[0]
