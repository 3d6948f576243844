"""MAT network: parity with upstream, KV-cache decoding, causality, masking, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_mat.envs.base import EnvSpec
from jax_mat.networks.mat import MATConfig, MATPolicy
from jax_mat.parity import compare_fixture
from policy_checks import assert_rejects_bad_inputs

DISCRETE = EnvSpec(n_agents=6, obs_dim=11, state_dim=0, action_dim=7, discrete=True, max_episode_steps=0)
CONTINUOUS = EnvSpec(n_agents=5, obs_dim=9, state_dim=0, action_dim=3, discrete=False, max_episode_steps=0)
DEEP = MATConfig(n_block=2, n_embd=32, n_head=4)


def _inputs(spec, batch=4, seed=0):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    obs = jax.random.normal(k1, (batch, spec.n_agents, spec.obs_dim))
    avail = (jax.random.uniform(k2, (batch, spec.n_agents, spec.action_dim)) < 0.5).astype(jnp.float32)
    avail = avail.at[..., 0].set(1.0)
    return obs, (avail if spec.discrete else None)


def _perturbed_params(policy, key):
    """Init params plus noise, so the 0.01-gain heads do not hide mistakes."""
    params = policy.init(key)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tree, [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def test_parity_with_official_mat(mat_fixture_paths):
    for path in mat_fixture_paths:
        bad = [r for r in compare_fixture(str(path)) if not r.ok]
        assert not bad, f"{path.name}: {bad}"


def test_parity_with_official_mat_on_several_action_dimensions(multi_dim_fixture_paths):
    """4 action dimensions per agent with policy active masks: upstream sums the entropy over dimensions
    before averaging over active agents (one dimension, as in the cheetah fixtures, cannot show it)."""
    paths = [p for p in multi_dim_fixture_paths if p.name.startswith("mat_")]
    assert paths
    for path in paths:
        bad = [r for r in compare_fixture(str(path)) if not r.ok]
        assert not bad, f"{path.name}: {bad}"


@pytest.mark.parametrize("spec", [DISCRETE, CONTINUOUS], ids=["discrete", "continuous"])
@pytest.mark.parametrize("config", [MATConfig(), DEEP, MATConfig(dec_actor=True), MATConfig(dec_actor=True, share_actor=True)],
                         ids=["mat", "deep", "mat_dec", "mat_dec_shared"])
def test_deterministic_act_equals_evaluate(spec, config):
    policy = MATPolicy(spec, config)
    params = _perturbed_params(policy, jax.random.PRNGKey(1))
    obs, avail = _inputs(spec)
    actions, logp, values = jax.jit(policy.act, static_argnums=4)(params, obs, avail, jax.random.PRNGKey(2), True)
    logp_eval, entropy, values_eval = jax.jit(policy.evaluate)(params, obs, actions, avail)
    k = 1 if spec.discrete else spec.action_dim
    assert logp.shape == logp_eval.shape == entropy.shape == (4, spec.n_agents, k)
    np.testing.assert_allclose(logp, logp_eval, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(values, values_eval, atol=1e-6)


@pytest.mark.parametrize("spec", [DISCRETE, CONTINUOUS], ids=["discrete", "continuous"])
def test_sampled_logp_equals_evaluate(spec):
    policy = MATPolicy(spec, DEEP)
    params = _perturbed_params(policy, jax.random.PRNGKey(3))
    obs, avail = _inputs(spec, batch=8)
    actions, logp, _ = policy.act(params, obs, avail, jax.random.PRNGKey(4))
    logp_eval, _, _ = policy.evaluate(params, obs, actions, avail)
    np.testing.assert_allclose(logp, logp_eval, atol=1e-5, rtol=1e-5)


def test_kv_cache_decoder_equals_full_decoder():
    policy = MATPolicy(DISCRETE, DEEP)
    params = _perturbed_params(policy, jax.random.PRNGKey(5))
    obs, _ = _inputs(DISCRETE)
    actions = jax.random.randint(jax.random.PRNGKey(6), (4, DISCRETE.n_agents), 0, DISCRETE.action_dim)
    _, rep = policy.model.apply(params, obs, method="encode")
    shifted = jnp.concatenate([jnp.zeros((4, 1), jnp.int32), actions[:, :-1] + 1], axis=1)
    full = policy.model.apply(params, shifted, rep, obs, method="decode")
    queries, caches = policy.model.apply(params, rep, method="init_decode")
    for i in range(DISCRETE.n_agents):
        out, caches = policy.model.apply(params, shifted[:, i], [q[:, i] for q in queries], rep[:, i], caches, i,
                                         method="decode_step")
        np.testing.assert_allclose(out, full[:, i], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("i", range(DISCRETE.n_agents))
def test_agent_logits_never_depend_on_later_agents_actions(i):
    policy = MATPolicy(DISCRETE, DEEP)
    params = _perturbed_params(policy, jax.random.PRNGKey(7))
    obs, _ = _inputs(DISCRETE)
    a = jax.random.randint(jax.random.PRNGKey(8), (4, DISCRETE.n_agents), 0, DISCRETE.action_dim)
    b = a.at[:, i:].set((a[:, i:] + 1 + jnp.arange(DISCRETE.n_agents - i)) % DISCRETE.action_dim)
    _, rep = policy.model.apply(params, obs, method="encode")
    shift = lambda x: jnp.concatenate([jnp.zeros((4, 1), jnp.int32), x[:, :-1] + 1], axis=1)
    la = policy.model.apply(params, shift(a), rep, obs, method="decode")
    lb = policy.model.apply(params, shift(b), rep, obs, method="decode")
    np.testing.assert_array_equal(la[:, : i + 1], lb[:, : i + 1])
    if i + 1 < DISCRETE.n_agents:
        assert not np.allclose(la[:, i + 1], lb[:, i + 1]), "agent i+1 must see agent i's action"


def test_continuous_causality_by_gradient():
    policy = MATPolicy(CONTINUOUS, DEEP)
    params = _perturbed_params(policy, jax.random.PRNGKey(9))
    obs, _ = _inputs(CONTINUOUS, batch=1)
    actions = jax.random.normal(jax.random.PRNGKey(10), (1, CONTINUOUS.n_agents, CONTINUOUS.action_dim))
    _, rep = policy.model.apply(params, obs, method="encode")

    def mean_of_agent(acts, i):
        shifted = jnp.concatenate([jnp.zeros_like(acts[:, :1]), acts[:, :-1]], axis=1)
        return policy.model.apply(params, shifted, rep, obs, method="decode")[0, i].sum()

    for i in range(CONTINUOUS.n_agents):
        g = jax.grad(mean_of_agent)(actions, i)[0]
        assert np.all(g[i:] == 0), f"agent {i}'s mean depends on a later (or its own) action"
        if i > 0:
            assert np.any(g[:i] != 0)


def test_sampling_never_picks_unavailable_actions():
    policy = MATPolicy(DISCRETE, DEEP)
    params = _perturbed_params(policy, jax.random.PRNGKey(11))
    act = jax.jit(policy.act, static_argnums=4)
    for seed in range(20):
        k_mask, k_obs, k_act = jax.random.split(jax.random.PRNGKey(100 + seed), 3)
        avail = (jax.random.uniform(k_mask, (16, DISCRETE.n_agents, DISCRETE.action_dim)) < 0.3).astype(jnp.float32)
        # Make sure every agent keeps one random action (not always action 0).
        keep = jax.random.randint(k_mask, (16, DISCRETE.n_agents), 0, DISCRETE.action_dim)
        avail = jnp.maximum(avail, jax.nn.one_hot(keep, DISCRETE.action_dim))
        obs = jax.random.normal(k_obs, (16, DISCRETE.n_agents, DISCRETE.obs_dim))
        for deterministic in (False, True):
            actions, _, _ = act(params, obs, avail, k_act, deterministic)
            chosen = jnp.take_along_axis(avail, actions[..., None], axis=-1)
            assert bool(jnp.all(chosen == 1.0))


def test_bad_inputs_raise_clear_errors():
    policy = MATPolicy(DISCRETE)
    params = policy.init(jax.random.PRNGKey(0))
    obs, avail = _inputs(DISCRETE)
    assert_rejects_bad_inputs(policy, params, obs, avail)
    with pytest.raises(ValueError, match="divisible by n_head"):
        MATConfig(n_embd=64, n_head=3)
    with pytest.raises(ValueError, match="n_block must be >= 1"):
        MATConfig(n_block=0)
