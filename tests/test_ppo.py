"""GAE, value normalisation and advantage normalisation against hand-written loops."""

import jax.numpy as jnp
import numpy as np

from jax_mat.algos import ppo, valuenorm


def test_gae_matches_a_python_loop_with_episode_ends():
    rng = np.random.default_rng(0)
    t, e, n = 7, 3, 2
    rewards = rng.normal(size=(t, e, n)).astype(np.float32)
    values = rng.normal(size=(t, e, n)).astype(np.float32)
    dones = rng.random((t, e)) < 0.3
    last = rng.normal(size=(e, n)).astype(np.float32)
    gamma, lam = 0.99, 0.95
    adv_ref = np.zeros_like(rewards)
    next_adv, next_value = np.zeros((e, n)), last
    for s in reversed(range(t)):
        cont = 1.0 - dones[s][:, None]
        delta = rewards[s] + gamma * next_value * cont - values[s]
        next_adv = delta + gamma * lam * cont * next_adv
        adv_ref[s] = next_adv
        next_value = values[s]
    adv, ret = ppo.gae(jnp.asarray(rewards), jnp.asarray(values), jnp.asarray(dones), jnp.asarray(last), gamma, lam)
    np.testing.assert_allclose(adv, adv_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, adv_ref + values, rtol=1e-5, atol=1e-5)


def test_gae_with_proper_time_limits_bootstraps_through_the_limit():
    """A time limit at step k splits the trajectory: the steps before it are scored as a rollout that stops
    at k - 1 and bootstraps from V(s_{k-1}); step k - 1 itself (no next observation) gets advantage 0 and
    its value as return; the steps after it are an independent rollout."""
    rng = np.random.default_rng(3)
    t, e, n, k = 9, 2, 3, 5
    rewards = jnp.asarray(rng.normal(size=(t, e, n)), jnp.float32)
    values = jnp.asarray(rng.normal(size=(t, e, n)), jnp.float32)
    last = jnp.asarray(rng.normal(size=(e, n)), jnp.float32)
    dones = np.zeros((t, e), bool)
    dones[k - 1] = True
    truncated = dones.copy()
    gamma, lam = 0.9, 0.8
    adv, ret = ppo.gae(rewards, values, jnp.asarray(dones), last, gamma, lam, jnp.asarray(truncated))
    no_end = jnp.zeros((t, e), bool)
    before, _ = ppo.gae(rewards[: k - 1], values[: k - 1], no_end[: k - 1], values[k - 1], gamma, lam)
    after, _ = ppo.gae(rewards[k:], values[k:], no_end[k:], last, gamma, lam)
    np.testing.assert_allclose(adv[: k - 1], before, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(adv[k - 1], 0.0)
    np.testing.assert_allclose(ret[k - 1], values[k - 1])
    np.testing.assert_allclose(adv[k:], after, rtol=1e-5, atol=1e-6)
    # Without proper time limits the same end is terminal: step k - 1 keeps r - V as its advantage.
    terminal, _ = ppo.gae(rewards, values, jnp.asarray(dones), last, gamma, lam)
    np.testing.assert_allclose(terminal[k - 1], rewards[k - 1] - values[k - 1], rtol=1e-5, atol=1e-6)


def test_value_norm_matches_upstream_formulas():
    state = valuenorm.init()
    beta = 0.99999
    m = msq = d = 0.0
    rng = np.random.default_rng(1)
    for _ in range(3):
        x = rng.normal(3.0, 2.0, size=(50, 4)).astype(np.float32)
        state = valuenorm.update(state, jnp.asarray(x))
        m = m * beta + x.mean() * (1 - beta)
        msq = msq * beta + (x**2).mean() * (1 - beta)
        d = d * beta + (1 - beta)
    mean, var = m / d, max(msq / d - (m / d) ** 2, 1e-2)
    got_mean, got_var = valuenorm.mean_var(state)
    np.testing.assert_allclose(got_mean, mean, rtol=1e-3)
    np.testing.assert_allclose(got_var, var, rtol=1e-2)
    y = jnp.asarray([1.0, 5.0])
    np.testing.assert_allclose(valuenorm.denormalize(state, valuenorm.normalize(state, y)), y, rtol=1e-5)


def test_advantage_normalisation_ignores_inactive_agents():
    adv = jnp.asarray([[1.0, 2.0, 100.0], [3.0, 4.0, -50.0]])
    active = jnp.asarray([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    out = ppo.normalize_advantages(adv, active)
    live = np.asarray([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(np.asarray(out)[:, :2].ravel(), (live - live.mean()) / (live.std() + 1e-5), rtol=1e-5)


def test_upstream_huber_quirk():
    e = jnp.asarray([-20.0, -5.0, 0.0, 5.0, 20.0])
    np.testing.assert_allclose(ppo.upstream_huber(e, 10.0), [0.0, 12.5, 0.0, 12.5, 150.0])


def test_micro_batch_gradient_equals_whole_batch_gradient():
    import jax

    from jax_mat.envs.base import EnvSpec
    from jax_mat.networks.mat import MATConfig, MATPolicy

    spec = EnvSpec(n_agents=3, obs_dim=5, state_dim=0, action_dim=4, discrete=True, max_episode_steps=0)
    policy = MATPolicy(spec, MATConfig(n_embd=16))
    params = policy.init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    rows = 12
    active = (rng.random((rows, 3)) > 0.3).astype(np.float32)
    active[4:8] = 0.0  # one micro-batch of 4 rows without any active agent
    batch = {
        "obs": jnp.asarray(rng.normal(size=(rows, 3, 5)), jnp.float32),
        "avail": jnp.ones((rows, 3, 4)),
        "actions": jnp.asarray(rng.integers(0, 4, size=(rows, 3)), jnp.int32),
        "old_logp": jnp.asarray(rng.normal(size=(rows, 3, 1)) - 1.4, jnp.float32),
        "advantages": jnp.asarray(rng.normal(size=(rows, 3)), jnp.float32),
        "values": jnp.asarray(rng.normal(size=(rows, 3)), jnp.float32),
        "returns": jnp.asarray(rng.normal(size=(rows, 3)), jnp.float32),
        "active": jnp.asarray(active),
    }
    config = ppo.LossConfig(clip=0.2)

    def loss_fn(p, b):
        logp, ent, v = policy.evaluate(p, b["obs"], b["actions"], b["avail"])
        return ppo.ppo_loss(logp, ent, v, b["old_logp"], b["advantages"], b["values"], b["returns"], b["active"], config)

    assert ppo.micro_batch_rows(rows, 3, 12) == 4 and ppo.micro_batch_rows(rows, 3, 36) == 0
    (whole_loss, whole_m), whole_g = ppo.accumulated_loss_and_grad(loss_fn, params, batch, config, 0)
    (acc_loss, acc_m), acc_g = jax.jit(lambda p: ppo.accumulated_loss_and_grad(loss_fn, p, batch, config, 4))(params)
    np.testing.assert_allclose(acc_loss, whole_loss, rtol=1e-5, atol=1e-6)
    for k in whole_m:
        np.testing.assert_allclose(acc_m[k], whole_m[k], rtol=1e-4, atol=1e-6, err_msg=k)
    for a, b in zip(jax.tree.leaves(acc_g), jax.tree.leaves(whole_g)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_entropy_term_is_upstreams_with_and_without_policy_active_masks():
    """Masks on: ``(entropy * active).sum() / active.sum()`` against ``[B * N, 1]`` masks, i.e. each agent's
    entropy summed over action dimensions, averaged over active agents. Off: ``entropy.mean()`` over everything."""
    entropy = jnp.arange(2 * 3 * 4, dtype=jnp.float32).reshape(2, 3, 4)  # [B, N, K]
    active = jnp.asarray([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    zeros = jnp.zeros((2, 3, 4))
    terms = lambda mask, per_agent: ppo.policy_terms(zeros, entropy, zeros, jnp.zeros((2, 3)), mask, 0.2,
                                                     entropy_per_agent=per_agent)["loss/entropy"]
    e = np.asarray(entropy)
    np.testing.assert_allclose(terms(active, True), (e.sum(-1) * np.asarray(active)).sum() / 4.0, rtol=1e-6)
    np.testing.assert_allclose(terms(jnp.ones((2, 3)), False), e.mean(), rtol=1e-6)
    config = ppo.LossConfig(use_policy_active_masks=False)
    _, parts = ppo.ppo_loss(zeros, entropy, jnp.zeros((2, 3)), zeros, jnp.zeros((2, 3)), jnp.zeros((2, 3)),
                            jnp.zeros((2, 3)), active, config)
    np.testing.assert_allclose(parts["loss/entropy"], e.mean(), rtol=1e-6)
