"""MARWKV network: upstream parity, recurrent decoding, causality, masking, weight import, bad input.

Shapes are tiny and every jitted program is built once per (spec, config) and
shared across tests (``_programs``), to keep compilation time down.
"""

import dataclasses
import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_mat.config import AlgoConfig
from jax_mat.envs.base import EnvSpec
from jax_mat.algos import registry
from jax_mat.networks import rwkv, torch_import
from jax_mat.networks.marwkv import MARWKVConfig, MARWKVPolicy
from jax_mat.networks.policy import shift_actions
from jax_mat.parity import compare_fixture
from policy_checks import FAST_COMPILE, assert_rejects_bad_inputs, random_params

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "marwkv_reference"
MODEL_FIXTURES = sorted(p.name for p in FIXTURES.glob("marwkv_*.npz"))

DISCRETE = EnvSpec(n_agents=4, obs_dim=6, state_dim=0, action_dim=5, discrete=True, max_episode_steps=0)
CONTINUOUS = EnvSpec(n_agents=3, obs_dim=5, state_dim=0, action_dim=2, discrete=False, max_episode_steps=0)
CONFIGS = {
    "v4": MARWKVConfig(version=4, n_embd=16),
    "v5": MARWKVConfig(version=5, n_block=2, n_embd=16, n_head=2),
    "v6": MARWKVConfig(version=6, n_embd=16, n_head=2),
    "hybrid": MARWKVConfig(version=6, n_embd=16, n_head=2, hybrid=True),
}
SPECS = {"discrete": DISCRETE, "continuous": CONTINUOUS}
BATCH = 4


def _inputs(spec, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(BATCH, spec.n_agents, spec.obs_dim)).astype(np.float32)
    if not spec.discrete:
        return jnp.asarray(obs), None
    avail = (rng.uniform(size=(BATCH, spec.n_agents, spec.action_dim)) < 0.5).astype(np.float32)
    avail[..., 0] = 1.0
    return jnp.asarray(obs), jnp.asarray(avail)


def _actions(spec, seed):
    rng = np.random.default_rng(seed)
    if spec.discrete:
        return jnp.asarray(rng.integers(0, spec.action_dim, (BATCH, spec.n_agents)), jnp.int32)
    return jnp.asarray(rng.normal(size=(BATCH, spec.n_agents, spec.action_dim)), jnp.float32)


@functools.cache
def _programs(spec_name: str, config_name: str):
    """Policy, parameters and one jitted program per (spec, config), shared by the tests below.

    ``run(params, obs, avail, key, actions)`` returns the deterministic
    (recurrent) ``act``, ``evaluate`` of ``actions`` (one parallel pass) and the
    teacher-forced decoder outputs (logits or means) for ``actions``.
    """
    spec, config = SPECS[spec_name], CONFIGS[config_name]
    policy = MARWKVPolicy(spec, config)

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def run(params, obs, avail, key, actions):
        chosen = policy.act(params, obs, avail, key, True)
        scored = policy.evaluate(params, obs, actions, avail)
        _, rep = policy.model.apply(params, obs, method="encode")
        out = policy.model.apply(params, shift_actions(spec, actions), rep, method="decode")
        return chosen, scored, out

    return policy, random_params(policy.init, seed=len(spec_name) + 7 * len(config_name)), run


# --------------------------------------------------------------------------- #
# Parity with upstream MAT-MARWKV                                               #
# --------------------------------------------------------------------------- #


def test_model_fixtures_are_there():
    assert len(MODEL_FIXTURES) == 5, f"MARWKV fixtures not found under {FIXTURES} (CI keeps ../shared beside the clone)"


@pytest.mark.parametrize("name", MODEL_FIXTURES)
def test_parity_with_upstream_marwkv(name):
    rows = compare_fixture(str(FIXTURES / name), compiler_options=FAST_COMPILE)
    bad = [r for r in rows if not r.ok]
    assert not bad, f"{name}: {bad}"
    assert any(r.quantity.startswith("grad/") for r in rows)


def test_parity_with_upstream_marwkv_on_several_action_dimensions(multi_dim_fixture_paths):
    """v4 and v6 with 4 continuous action dimensions per agent (the entropy is summed over dimensions)."""
    paths = [p for p in multi_dim_fixture_paths if p.name.startswith("marwkv_")]
    assert len(paths) == 2
    for path in paths:
        bad = [r for r in compare_fixture(str(path), compiler_options=FAST_COMPILE) if not r.ok]
        assert not bad, f"{path.name}: {bad}"


# --------------------------------------------------------------------------- #
# Recurrent decoding == teacher forcing; causality over agents                  #
# --------------------------------------------------------------------------- #

COMBOS = [(c, s) for c in sorted(CONFIGS) for s in sorted(SPECS)]


@pytest.mark.parametrize("config_name,spec_name", COMBOS)
def test_deterministic_act_equals_evaluate(config_name, spec_name):
    spec = SPECS[spec_name]
    _, params, run = _programs(spec_name, config_name)
    obs, avail = _inputs(spec)
    key = jax.random.PRNGKey(2)
    (actions, logp, values), _, _ = run(params, obs, avail, key, _actions(spec, 0))
    _, (logp_eval, entropy, values_eval), _ = run(params, obs, avail, key, actions)
    k = 1 if spec.discrete else spec.action_dim
    assert logp.shape == logp_eval.shape == entropy.shape == (BATCH, spec.n_agents, k)
    assert values.shape == (BATCH, spec.n_agents)
    np.testing.assert_allclose(logp, logp_eval, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(values, values_eval, atol=1e-6)
    if spec.discrete:
        assert bool(jnp.all(jnp.take_along_axis(avail, actions[..., None], axis=-1) == 1.0))


@pytest.mark.parametrize("config_name,spec_name", COMBOS)
def test_agent_outputs_never_depend_on_later_agents_actions(config_name, spec_name):
    """Agent i's logits (means) are fixed when the actions of agents >= i change, and move with agent i-1's."""
    spec = SPECS[spec_name]
    n = spec.n_agents
    _, params, run = _programs(spec_name, config_name)
    obs, avail = _inputs(spec, seed=3)
    a = _actions(spec, 4)
    key = jax.random.PRNGKey(0)
    out_a = run(params, obs, avail, key, a)[2]
    for i in range(n):
        if spec.discrete:
            b = a.at[:, i:].set((a[:, i:] + 1 + jnp.arange(n - i)) % spec.action_dim)
        else:
            b = a.at[:, i:].add(1.0)
        out_b = run(params, obs, avail, key, b)[2]
        np.testing.assert_array_equal(out_a[:, : i + 1], out_b[:, : i + 1])
        if i + 1 < n:
            assert not np.allclose(out_a[:, i + 1], out_b[:, i + 1]), "agent i+1 must see agent i's action"


def test_sampling_never_picks_unavailable_actions_and_scores_what_it_sampled():
    policy, params, run = _programs("discrete", "v4")
    sample = jax.jit(policy.act, static_argnums=4, compiler_options=FAST_COMPILE)
    for seed in range(5):
        rng = np.random.default_rng(100 + seed)
        avail = (rng.uniform(size=(BATCH, DISCRETE.n_agents, DISCRETE.action_dim)) < 0.3).astype(np.float32)
        keep = rng.integers(0, DISCRETE.action_dim, (BATCH, DISCRETE.n_agents))
        avail = jnp.asarray(np.maximum(avail, np.eye(DISCRETE.action_dim, dtype=np.float32)[keep]))
        obs = jnp.asarray(rng.normal(size=(BATCH, DISCRETE.n_agents, DISCRETE.obs_dim)), jnp.float32)
        key = jax.random.PRNGKey(seed)
        actions, logp, values = sample(params, obs, avail, key, False)
        assert bool(jnp.all(jnp.take_along_axis(avail, actions[..., None], axis=-1) == 1.0))
        _, (logp_eval, _, _), _ = run(params, obs, avail, key, actions)
        np.testing.assert_allclose(logp, logp_eval, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(jax.jit(policy.value, compiler_options=FAST_COMPILE)(params, obs), values, atol=1e-6)


@pytest.mark.parametrize("version", rwkv.VERSIONS)
def test_recurrent_and_segmented_stacks_equal_parallel_stack(version):
    b, t, c, h = 3, 5, 16, 2
    stack = rwkv.RWKVStack(version, n_layer=2, n_embd=c, n_head=h, wkv_impl="scan")
    x = jnp.asarray(np.random.default_rng(version).normal(size=(b, t, c)), jnp.float32)
    params = random_params(lambda key: stack.init(key, x), seed=version)

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def three(params):
        def step(states, x_t):
            y, states = stack.apply(params, x_t, states, method="step")
            return states, y

        states = rwkv.initial_states(version, 2, b, c, h)
        _, ys = jax.lax.scan(step, states, jnp.swapaxes(x, 0, 1))
        pieces = []
        for start, stop in ((0, 2), (2, 3), (3, 5)):
            y, states = stack.apply(params, x[:, start:stop], states, method="segment")
            pieces.append(y)
        return stack.apply(params, x), jnp.swapaxes(ys, 0, 1), jnp.concatenate(pieces, axis=1)

    parallel, recurrent, segmented = three(params)
    np.testing.assert_allclose(recurrent, parallel, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(segmented, parallel, atol=3e-5, rtol=1e-5)  # other programs, other roundings


@pytest.mark.parametrize("config_name,spec_name", [("v4", "discrete"), ("v5", "continuous"), ("v6", "discrete")])
def test_streamed_act_equals_encoding_all_agents_first(config_name, spec_name):
    """Encoder segments of 1 and of 3 agents (the last one shorter) sample what one encoder pass samples."""
    spec = SPECS[spec_name]
    _, params, _ = _programs(spec_name, config_name)
    obs, avail = _inputs(spec, seed=5)
    key = jax.random.PRNGKey(7)
    results = {}
    for segment in (0, 1, 3):
        policy = MARWKVPolicy(spec, dataclasses.replace(CONFIGS[config_name], act_segment=segment))
        assert len(policy.segments()) == (0 if segment == 0 else -(-spec.n_agents // segment) - 1)
        act = jax.jit(policy.act, static_argnums=4, compiler_options=FAST_COMPILE)
        results[segment] = act(params, obs, avail, key, False)
    for segment in (1, 3):
        actions, logp, values = results[segment]
        if spec.discrete:
            np.testing.assert_array_equal(actions, results[0][0])
        else:
            np.testing.assert_allclose(actions, results[0][0], atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(logp, results[0][1], atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(values, results[0][2], atol=1e-6, rtol=1e-5)


# --------------------------------------------------------------------------- #
# Weights: our own formats round-trip; registry and config                      #
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("config_name", ["v5", "hybrid"])
def test_state_dict_round_trip_and_shape_inference(config_name):
    """v5 and the hybrid have no upstream fixtures; their tables must still invert and identify them."""
    config = CONFIGS[config_name]
    _, params, _ = _programs("discrete", config_name)
    sd = torch_import.flax_to_torch(params, config, True, DISCRETE.n_agents)
    shape = torch_import.infer_shape(sd)
    assert (shape.family, shape.version, shape.hybrid, shape.n_block, shape.n_embd) == (
        "marwkv", config.version, config.hybrid, config.n_block, config.n_embd)
    assert shape.n_head == config.n_head and shape.discrete
    back = torch_import.torch_to_flax(sd, config, True, DISCRETE.n_agents)
    jax.tree.map(np.testing.assert_array_equal, back, jax.tree.map(np.asarray, params))


def test_missing_and_unused_tensors_are_named():
    sd = torch_import.load_state_dict(FIXTURES / "marwkv_v6_discrete_small.npz")
    shape = torch_import.infer_shape(sd)
    assert (shape.family, shape.version, shape.n_head, shape.hybrid) == ("marwkv", 6, 1, False)
    config = MARWKVConfig(6, shape.n_block, shape.n_embd, shape.n_head)
    del sd["decoder.rwkv.0.att.time_maa_w2"]
    with pytest.raises(ValueError, match="missing 1 MARWKV v6 tensors.*decoder.rwkv.0.att.time_maa_w2"):
        torch_import.torch_to_flax(sd, config, True, 5)
    sd = torch_import.load_state_dict(FIXTURES / "marwkv_v4_discrete_small.npz")
    assert torch_import.infer_shape(sd).version == 4
    with pytest.raises(ValueError, match="missing .* MARWKV v6 tensors"):  # v4 weights read as v6
        torch_import.torch_to_flax(sd, config, True, 5)
    sd["decoder.rwkv.rwkv.h.0.attn.extra"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="does not use.*attn.extra"):
        torch_import.torch_to_flax(sd, MARWKVConfig(4, 1, 64), True, 5)


def test_registry_and_config_build_marwkv_and_the_hybrid():
    for name, version, hybrid in (("marwkv", 4, False), ("marwkv", 6, False), ("mat_rwkv", 5, True)):
        algo = AlgoConfig(name=name, rwkv_version=version, n_embd=16, n_head=2)
        policy = registry.make_policy(DISCRETE, algo)
        assert isinstance(policy, MARWKVPolicy)
        assert (policy.config.version, policy.config.hybrid, policy.config.n_embd) == (version, hybrid, 16)
    with pytest.raises(ValueError, match="algo.rwkv_version must be 4, 5 or 6, got 7"):
        AlgoConfig(name="marwkv", rwkv_version=7)


# --------------------------------------------------------------------------- #
# Bad input                                                                     #
# --------------------------------------------------------------------------- #


def test_bad_inputs_raise_clear_errors():
    policy = MARWKVPolicy(DISCRETE, CONFIGS["v4"])
    obs, avail = _inputs(DISCRETE)
    assert_rejects_bad_inputs(policy, None, obs, avail)
    with pytest.raises(ValueError, match="unknown RWKV version 7; allowed: 4, 5, 6"):
        MARWKVConfig(version=7)
    with pytest.raises(ValueError, match=r"n_embd \(64\) must be divisible by n_head \(3\)"):
        MARWKVConfig(version=5, n_head=3)
    with pytest.raises(ValueError, match="v6 needs n_embd >= 10"):
        MARWKVConfig(version=6, n_embd=8)
    with pytest.raises(ValueError, match="n_block must be >= 1"):
        MARWKVConfig(n_block=0)
    with pytest.raises(ValueError, match="unknown WKV impl 'cuda'"):
        MARWKVConfig(wkv_impl="cuda")
    with pytest.raises(ValueError, match="act_segment must be >= 0"):
        MARWKVConfig(act_segment=-1)
