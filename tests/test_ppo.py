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
