"""MAT network: parity with upstream, KV-cache decoding, causality, masking, bad input.

Parameters are drawn with numpy and every check runs one jitted program (compiled at LLVM -O0, cached per
shape): compiling dominates these tests, not running them.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_mat.envs.base import EnvSpec
from jax_mat.networks.mat import MATConfig, MATPolicy
from jax_mat.networks.policy import shift_actions
from jax_mat.parity import compare_fixture
from policy_checks import FAST_COMPILE, assert_rejects_bad_inputs, random_params

DISCRETE = EnvSpec(n_agents=6, obs_dim=11, state_dim=0, action_dim=7, discrete=True, max_episode_steps=0)
CONTINUOUS = EnvSpec(n_agents=5, obs_dim=9, state_dim=0, action_dim=3, discrete=False, max_episode_steps=0)
DEEP = MATConfig(n_block=2, n_embd=32, n_head=4)
CONFIGS = {"mat": MATConfig(), "deep": DEEP, "mat_dec": MATConfig(dec_actor=True),
           "mat_dec_shared": MATConfig(dec_actor=True, share_actor=True)}
SPECS = {"discrete": DISCRETE, "continuous": CONTINUOUS}
fast_jit = functools.partial(jax.jit, compiler_options=FAST_COMPILE)


def _inputs(spec, batch=4, seed=0):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    obs = jax.random.normal(k1, (batch, spec.n_agents, spec.obs_dim))
    avail = (jax.random.uniform(k2, (batch, spec.n_agents, spec.action_dim)) < 0.5).astype(jnp.float32)
    avail = avail.at[..., 0].set(1.0)
    return obs, (avail if spec.discrete else None)


@functools.cache
def _policy(spec_name: str, config_name: str, seed: int):
    """A MAT policy and parameters drawn with numpy (so the 0.01-gain heads do not hide mistakes)."""
    policy = MATPolicy(SPECS[spec_name], CONFIGS[config_name])
    return policy, random_params(policy.init, seed)


@functools.cache
def _act_and_evaluate(spec_name: str, config_name: str, deterministic: bool):
    """``run(params, obs, avail, key) -> (act's (actions, logp, values), evaluate of those actions)``, jitted."""
    policy, _ = _policy(spec_name, config_name, 1)

    @fast_jit
    def run(params, obs, avail, key):
        actions, logp, values = policy.act(params, obs, avail, key, deterministic)
        return (actions, logp, values), policy.evaluate(params, obs, actions, avail)

    return run


@functools.cache
def _decoders(spec_name: str):
    """``run(params, obs, shifted) -> (teacher-forced decoder output [B, N, A], each decode_step's [N, B, A])``."""
    policy, _ = _policy(spec_name, "deep", 5)
    n = SPECS[spec_name].n_agents

    @fast_jit
    def run(params, obs, shifted):
        _, rep = policy.model.apply(params, obs, method="encode")
        full = policy.model.apply(params, shifted, rep, obs, method="decode")
        queries, caches = policy.model.apply(params, rep, method="init_decode")
        steps = []
        for i in range(n):
            out, caches = policy.model.apply(params, shifted[:, i], [q[:, i] for q in queries], rep[:, i], caches, i,
                                             method="decode_step")
            steps.append(out)
        return full, jnp.stack(steps)

    return run


def test_parity_with_official_mat(mat_fixture_paths):
    for path in mat_fixture_paths:
        bad = [r for r in compare_fixture(str(path), compiler_options=FAST_COMPILE) if not r.ok]
        assert not bad, f"{path.name}: {bad}"


def test_parity_with_official_mat_on_several_action_dimensions(multi_dim_fixture_paths):
    """4 action dimensions per agent with policy active masks: upstream sums the entropy over dimensions
    before averaging over active agents (one dimension, as in the cheetah fixtures, cannot show it)."""
    paths = [p for p in multi_dim_fixture_paths if p.name.startswith("mat_")]
    assert paths
    for path in paths:
        bad = [r for r in compare_fixture(str(path), compiler_options=FAST_COMPILE) if not r.ok]
        assert not bad, f"{path.name}: {bad}"


@pytest.mark.parametrize("spec_name", list(SPECS))
@pytest.mark.parametrize("config_name", list(CONFIGS))
def test_deterministic_act_equals_evaluate(spec_name, config_name):
    spec = SPECS[spec_name]
    _, params = _policy(spec_name, config_name, 1)
    obs, avail = _inputs(spec)
    (actions, logp, values), (logp_eval, entropy, values_eval) = _act_and_evaluate(spec_name, config_name, True)(
        params, obs, avail, jax.random.PRNGKey(2))
    k = 1 if spec.discrete else spec.action_dim
    assert logp.shape == logp_eval.shape == entropy.shape == (4, spec.n_agents, k)
    np.testing.assert_allclose(logp, logp_eval, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(values, values_eval, atol=1e-6)


@pytest.mark.parametrize("spec_name", list(SPECS))
def test_sampled_logp_equals_evaluate(spec_name):
    _, params = _policy(spec_name, "deep", 3)
    obs, avail = _inputs(SPECS[spec_name], batch=8)
    (_, logp, _), (logp_eval, _, _) = _act_and_evaluate(spec_name, "deep", False)(params, obs, avail,
                                                                                 jax.random.PRNGKey(4))
    np.testing.assert_allclose(logp, logp_eval, atol=1e-5, rtol=1e-5)


def test_kv_cache_decoder_equals_full_decoder():
    _, params = _policy("discrete", "deep", 5)
    obs, _ = _inputs(DISCRETE)
    actions = jax.random.randint(jax.random.PRNGKey(6), (4, DISCRETE.n_agents), 0, DISCRETE.action_dim)
    full, steps = _decoders("discrete")(params, obs, shift_actions(DISCRETE, actions))
    for i in range(DISCRETE.n_agents):
        np.testing.assert_allclose(steps[i], full[:, i], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("i", range(DISCRETE.n_agents))
def test_agent_logits_never_depend_on_later_agents_actions(i):
    _, params = _policy("discrete", "deep", 5)
    obs, _ = _inputs(DISCRETE)
    a = jax.random.randint(jax.random.PRNGKey(8), (4, DISCRETE.n_agents), 0, DISCRETE.action_dim)
    b = a.at[:, i:].set((a[:, i:] + 1 + jnp.arange(DISCRETE.n_agents - i)) % DISCRETE.action_dim)
    la, _ = _decoders("discrete")(params, obs, shift_actions(DISCRETE, a))
    lb, _ = _decoders("discrete")(params, obs, shift_actions(DISCRETE, b))
    np.testing.assert_array_equal(la[:, : i + 1], lb[:, : i + 1])
    if i + 1 < DISCRETE.n_agents:
        assert not np.allclose(la[:, i + 1], lb[:, i + 1]), "agent i+1 must see agent i's action"


def test_continuous_causality_by_gradient():
    policy, params = _policy("continuous", "deep", 9)
    obs, _ = _inputs(CONTINUOUS, batch=1)
    actions = jax.random.normal(jax.random.PRNGKey(10), (1, CONTINUOUS.n_agents, CONTINUOUS.action_dim))

    @fast_jit
    def means_by_actions(params, obs, actions):
        """``d mean_i / d action_j`` summed over the dimensions: ``[N (means), N (actions), A]``."""
        _, rep = policy.model.apply(params, obs, method="encode")
        means = lambda acts: policy.model.apply(params, shift_actions(CONTINUOUS, acts), rep, obs,
                                                method="decode")[0].sum(-1)
        return jax.jacobian(means)(actions)[:, 0]

    jacobian = means_by_actions(params, obs, actions)
    for i in range(CONTINUOUS.n_agents):
        g = jacobian[i]
        assert np.all(g[i:] == 0), f"agent {i}'s mean depends on a later (or its own) action"
        if i > 0:
            assert np.any(g[:i] != 0)


def test_sampling_never_picks_unavailable_actions():
    policy, params = _policy("discrete", "deep", 11)
    act = fast_jit(policy.act, static_argnums=4)
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
    policy, params = _policy("discrete", "mat", 0)
    obs, avail = _inputs(DISCRETE)
    assert_rejects_bad_inputs(policy, params, obs, avail)
    with pytest.raises(ValueError, match="divisible by n_head"):
        MATConfig(n_embd=64, n_head=3)
    with pytest.raises(ValueError, match="n_block must be >= 1"):
        MATConfig(n_block=0)
