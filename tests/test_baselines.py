"""The baselines: MAPPO's and HAPPO's MLP actor-critics and HAPPO's sequential update."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jax_mat.algos import learner as learner_lib
from jax_mat.algos import ppo, valuenorm
from jax_mat.algos.happo import HAPPOLearner
from jax_mat.config import load_config
from jax_mat.envs.base import EnvSpec
from jax_mat.networks.mlp import MLPConfig, MLPPolicy
from jax_mat.algos.registry import make_policy
from policy_checks import FAST_COMPILE, assert_rejects_bad_inputs, random_params

DISCRETE = EnvSpec(n_agents=3, obs_dim=6, state_dim=5, action_dim=4, discrete=True, max_episode_steps=0)
CONTINUOUS = EnvSpec(n_agents=3, obs_dim=6, state_dim=5, action_dim=2, discrete=False, max_episode_steps=0)
MAPPO = MLPConfig(hidden=16, n_layers=2, share_actor=True, agent_critic=True)
HAPPO = MLPConfig(hidden=16, n_layers=1, share_actor=False, agent_critic=False)


def _inputs(spec, batch=5, seed=0):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    obs = jax.random.normal(k1, (batch, spec.n_agents, spec.obs_dim))
    state = jax.random.normal(k2, (batch, spec.state_dim))
    avail = (jax.random.uniform(k3, (batch, spec.n_agents, spec.action_dim)) < 0.5).astype(jnp.float32)
    avail = avail.at[..., 0].set(1.0) if spec.discrete else jnp.ones_like(avail)
    return obs, state, avail


def _perturbed(policy, seed):
    """Parameters drawn with numpy (no compiled init), so the 0.01-gain heads do not hide mistakes."""
    return random_params(policy.init, seed)


class StateBound:
    """A policy with ``world_state`` bound, for the protocol's shared bad-input checks."""

    def __init__(self, policy, state):
        self.policy, self.state = policy, state

    def act(self, params, obs, avail, key, deterministic=False):
        return self.policy.act(params, obs, avail, key, deterministic, world_state=self.state)

    def evaluate(self, params, obs, actions, avail):
        return self.policy.evaluate(params, obs, actions, avail, world_state=self.state)


@pytest.mark.parametrize("spec", [DISCRETE, CONTINUOUS], ids=["discrete", "continuous"])
@pytest.mark.parametrize("config", [MAPPO, HAPPO], ids=["mappo", "happo"])
def test_act_and_evaluate_agree_with_joint_log_probs(spec, config):
    policy = MLPPolicy(spec, config)
    params = _perturbed(policy, 1)
    obs, state, avail = _inputs(spec)

    @functools.partial(jax.jit, static_argnums=0, compiler_options=FAST_COMPILE)
    def act_and_evaluate(deterministic, params, obs, avail, state):
        actions, logp, values = policy.act(params, obs, avail, jax.random.PRNGKey(2), deterministic, world_state=state)
        return (actions, logp, values), policy.evaluate(params, obs, actions, avail, world_state=state)

    for deterministic in (True, False):
        (actions, logp, values), (logp_eval, entropy, values_eval) = act_and_evaluate(deterministic, params, obs,
                                                                                      avail, state)
        assert logp.shape == entropy.shape == (5, 3, 1)  # K = 1: one joint ratio per agent
        np.testing.assert_allclose(logp, logp_eval, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(values, values_eval, rtol=1e-6)
    if not spec.discrete:  # the joint log-prob is the sum of the per-dimension ones
        mean = policy.model.apply(params, obs, method="actor_out")
        std = 0.5 * jax.nn.sigmoid(params["params"]["actor" if config.share_actor else "actors"]["log_std"])
        per_dim = -0.5 * ((actions - mean) / std) ** 2 - jnp.log(std) - 0.5 * jnp.log(2 * jnp.pi)
        np.testing.assert_allclose(logp_eval[..., 0], per_dim.sum(-1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("config", [MAPPO, HAPPO], ids=["mappo", "happo"])
def test_masked_actions_are_never_sampled_and_bad_inputs_are_refused(config):
    policy = MLPPolicy(DISCRETE, config)
    params = _perturbed(policy, 3)
    obs, state, avail = _inputs(DISCRETE, batch=64)
    act = jax.jit(lambda k: policy.act(params, obs, avail, k, False, world_state=state)[0])
    for i in range(10):
        actions = act(jax.random.PRNGKey(i))
        chosen = jnp.take_along_axis(avail, actions[..., None], axis=-1)
        assert bool((chosen == 1.0).all())
    assert_rejects_bad_inputs(StateBound(policy, state), params, obs, avail)
    with pytest.raises(ValueError, match=r"the critic needs world_state of shape \[64, 5\]"):
        policy.act(params, obs, avail, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"the critic needs world_state of shape \[64, 5\]"):
        policy.value(params, obs, state[:, :-1])


def test_happo_actors_are_per_agent_and_decentralised_and_its_critic_is_shared():
    policy = MLPPolicy(DISCRETE, HAPPO)
    params = _perturbed(policy, 4)
    actors = policy.actors_of(params)
    assert all(x.shape[0] == 3 for x in jax.tree.leaves(actors))  # stacked [N, ...]
    obs, state, _ = _inputs(DISCRETE)
    # Agent i's logits depend on agent i's observation only.
    jac = jax.jacobian(lambda o: policy.model.apply(params, o, method="actor_out"))(obs)  # [B,N,A,B,N,O]
    cross = jnp.abs(jac).sum(axis=(0, 2, 3, 5))  # [N (logits), N (obs)]
    assert bool((jnp.diag(cross) > 0).all()) and float(cross.sum() - jnp.trace(cross)) == 0.0
    # Each agent scored with its own actor alone equals the vmapped actors.
    logits = policy.model.apply(params, obs, method="actor_out")
    actions = jnp.argmax(logits, -1)
    logp, _, values = policy.evaluate(params, obs, actions, jnp.ones((5, 3, 4)), world_state=state)
    for i in range(3):
        alone, _ = policy.agent_scores(jax.tree.map(lambda x: x[i], actors), obs[:, i], actions[:, i], None)
        np.testing.assert_allclose(alone, logp[:, i], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(values, jnp.broadcast_to(values[:, :1], values.shape))  # V(state) for all


def test_mappo_shares_one_actor_and_has_a_critic_per_agent():
    policy = MLPPolicy(DISCRETE, MAPPO)
    params = _perturbed(policy, 5)
    assert set(params["params"]) == {"actor", "critic"}
    obs, state, _ = _inputs(DISCRETE)
    same_obs = jnp.broadcast_to(obs[:, :1], obs.shape)  # every agent sees the same: only the id differs
    logits = policy.model.apply(params, same_obs, method="actor_out")
    assert float(jnp.abs(logits[:, 0] - logits[:, 1]).max()) > 1e-4
    values = policy.value(params, obs, state)
    assert values.shape == (5, 3) and float(jnp.abs(values[:, 0] - values[:, 1]).max()) > 1e-4


def test_actor_and_critic_clip_their_gradient_norms_separately():
    policy = MLPPolicy(DISCRETE, MAPPO)
    params = policy.init(jax.random.PRNGKey(6))
    opt = learner_lib.policy_optimizer(policy, lr=1e-3, eps=1e-5, max_grad_norm=1.0)
    grads = jax.tree.map(jnp.ones_like, params)
    grads["params"]["critic"] = jax.tree.map(lambda x: 1e6 * x, grads["params"]["critic"])
    updates, _ = opt.update(grads, opt.init(params), params)
    # Clipping each group alone: the huge critic gradient does not shrink the actor's (Adam's first
    # step is lr * sign for an unshrunk gradient; a joint clip would have scaled the actor's by ~1e-6).
    actor_step = jax.tree.leaves(updates["params"]["actor"])
    assert all(np.allclose(np.abs(u), 1e-3, rtol=1e-3) for u in actor_step)


def _initialised_and_perturbed(policy, key):
    """Init params plus noise (jitted): the by-hand HAPPO checks need an initialised policy's ratios, which
    ``_perturbed``'s draws would push to extremes."""

    @jax.jit
    def draw(key):
        leaves, tree = jax.tree.flatten(policy.init(key))
        keys = jax.random.split(key, len(leaves))
        return jax.tree.unflatten(tree, [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])

    return draw(key)


def _happo_setup(spec, seed=0, rows=8):
    policy = MLPPolicy(spec, HAPPO)
    params = _initialised_and_perturbed(policy, jax.random.PRNGKey(seed))
    algo = load_config(overrides=["algo=happo", "algo.ppo_epochs=1", "algo.num_mini_batch=1", "algo.lr=0.05",
                                  "algo.clip=0.2", "algo.entropy_coef=0.01"]).algo
    learner = HAPPOLearner(algo, policy)
    obs, state, avail = _inputs(spec, batch=rows, seed=seed + 1)
    actions, logp, values = policy.act(params, obs, avail, jax.random.PRNGKey(seed + 2), world_state=state)
    adv = jax.random.normal(jax.random.PRNGKey(seed + 3), (rows, spec.n_agents))
    batch = {"obs": obs, "world_state": state, "avail": avail, "actions": actions, "logp": logp, "values": values,
             "advantages": adv, "returns": adv, "active": jnp.ones((rows, spec.n_agents))}
    return policy, params, learner, batch


@pytest.mark.parametrize("spec", [DISCRETE, CONTINUOUS], ids=["discrete", "continuous"])
def test_happo_sequential_correction_factor_by_hand(spec):
    """Order (2, 0, 1): agent 2 trains with M = 1, agent 0 with agent 2's ratio, agent 1 with the product of
    both; and agent 1's step is the factor-weighted clipped surrogate's gradient step, redone by hand."""
    policy, params, learner, batch = _happo_setup(spec)
    order = jnp.asarray([2, 0, 1])
    before = policy.actors_of(params)
    opt_states = learner.init(params)["actors"]
    actors, _, _, factors = jax.jit(learner._update_actors)(before, opt_states, batch, order, jax.random.PRNGKey(9))

    agent = lambda tree, i: jax.tree.map(lambda x: x[i], tree)
    ratio = []
    for i in range(3):
        new_logp, _ = policy.agent_scores(agent(actors, i), batch["obs"][:, i], batch["actions"][:, i],
                                          batch["avail"][:, i])
        ratio.append(np.exp(np.asarray(new_logp[:, 0]) - np.asarray(batch["logp"][:, i, 0])))
    expected = np.stack([np.ones(8), ratio[2], ratio[2] * ratio[0]])
    np.testing.assert_allclose(factors, expected, rtol=1e-5)
    assert not np.allclose(expected[2], 1.0)  # the example is not trivial

    # Agent 1 by hand: one Adam step (after a norm clip) on -mean(M * min(r A, clip(r) A)) - c * mean(H).
    m, adv = jnp.asarray(expected[2]), batch["advantages"][:, 1]

    def loss(p):
        logp, ent = policy.agent_scores(p, batch["obs"][:, 1], batch["actions"][:, 1], batch["avail"][:, 1])
        r = jnp.exp(logp[:, 0] - batch["logp"][:, 1, 0])
        surrogate = jnp.minimum(r * adv, jnp.clip(r, 0.8, 1.2) * adv)
        return -jnp.mean(m * surrogate) - 0.01 * jnp.mean(ent[:, 0])

    p1 = agent(before, 1)
    opt = optax.chain(optax.clip_by_global_norm(learner.config.max_grad_norm), optax.adam(0.05, eps=1e-5))
    updates, _ = opt.update(jax.grad(loss)(p1), opt.init(p1), p1)
    for got, want in zip(jax.tree.leaves(agent(actors, 1)), jax.tree.leaves(optax.apply_updates(p1, updates))):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_happo_update_trains_every_actor_and_the_critic():
    policy, params, learner, batch = _happo_setup(DISCRETE, seed=4)
    new_params, _, _, metrics = jax.jit(learner.update)(
        params, learner.init(params), valuenorm.init(), batch, jax.random.PRNGKey(0)
    )
    for part in ("actors", "critic"):
        moved = [float(jnp.abs(a - b).max()) for a, b in
                 zip(jax.tree.leaves(new_params["params"][part]), jax.tree.leaves(params["params"][part]))]
        assert max(moved) > 0
    for i in range(3):  # every agent's own actor moved
        assert max(float(jnp.abs(a[i] - b[i]).max()) for a, b in
                   zip(jax.tree.leaves(policy.actors_of(new_params)), jax.tree.leaves(policy.actors_of(params)))) > 0
    for key in ("loss/policy", "loss/value", "loss/entropy", "loss/total", "happo/factor_mean", "grad_norm/critic"):
        assert np.isfinite(metrics[key]), key


def test_per_agent_advantage_normalisation_uses_each_agents_mask():
    adv = jnp.asarray([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [10.0, 10.0]])
    active = jnp.asarray([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    out = np.asarray(ppo.normalize_advantages_per_agent(adv, active))
    for col, live in ((0, np.array([1.0, 2.0, 3.0, 10.0])), (1, np.array([1.0, 2.0, 3.0]))):
        np.testing.assert_allclose(out[: len(live), col], (live - live.mean()) / (live.std() + 1e-5), rtol=1e-5)


def test_bad_baseline_configurations_are_clear_errors():
    one_agent = EnvSpec(n_agents=1, obs_dim=4, state_dim=3, action_dim=2, discrete=True, max_episode_steps=0)
    with pytest.raises(ValueError, match="HAPPO needs at least 2 agents"):
        make_policy(one_agent, load_config(overrides=["algo=happo"]).algo)
    make_policy(one_agent, load_config(overrides=["algo=mappo"]).algo)  # MAPPO is fine with one agent
    stateless = EnvSpec(n_agents=2, obs_dim=4, state_dim=0, action_dim=2, discrete=True, max_episode_steps=0)
    with pytest.raises(ValueError, match="need a world state"):
        make_policy(stateless, load_config(overrides=["algo=mappo"]).algo)
    with pytest.raises(ValueError, match="algo.share_actor applies to mat_dec only"):
        load_config(overrides=["algo=mappo", "algo.share_actor=true"])
    with pytest.raises(ValueError, match="algo.mlp_layers must be >= 1"):
        load_config(overrides=["algo=happo", "algo.mlp_layers=0"])


def test_happo_skips_an_agent_that_is_never_active_as_harl_does():
    """A padded smax_multi slot is dead in every row: its masked means would be 0 / 0 and its NaN actor would
    poison every later agent's factor. It is skipped: its actor and optimiser state stay, the others train."""
    from jax_mat.training.runner import make_trainer

    cfg = load_config(overrides=["algo=happo", "env=smax_multi", "env.maps=[3m]", "env.pad_allies=4",
                                 "train.n_envs=4", "train.episode_length=8", "train.total_steps=32",
                                 "train.eval_episodes=4", "algo.n_embd=16", "algo.ppo_epochs=2"])
    trainer = make_trainer(cfg)
    assert trainer.env.spec.n_agents == 4
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0))
    new_state, metrics = jax.jit(trainer.update)(state)
    assert float(jax.device_get(new_state.timestep.active)[:, 3].max()) == 0.0  # slot 3 is never alive
    policy = trainer.policy
    for new, old in zip(jax.tree.leaves(policy.actors_of(new_state.params)), jax.tree.leaves(policy.actors_of(state.params))):
        assert np.all(np.isfinite(np.asarray(new)))
        np.testing.assert_array_equal(np.asarray(new[3]), np.asarray(old[3]))
    moved = [float(jnp.abs(a[:3] - b[:3]).max()) for a, b in
             zip(jax.tree.leaves(policy.actors_of(new_state.params)), jax.tree.leaves(policy.actors_of(state.params)))]
    assert max(moved) > 0
    for key in ("loss/policy", "loss/entropy", "loss/total", "happo/factor_mean"):
        assert np.isfinite(float(metrics[key])), key


def test_mappo_takes_the_agent_id_from_the_observation_when_it_is_there():
    spec = EnvSpec(n_agents=3, obs_dim=6, state_dim=5, action_dim=4, discrete=True, max_episode_steps=0,
                   agent_id_in_obs=True)
    with_id = make_policy(spec, load_config(overrides=["algo=mappo"]).algo)
    without = make_policy(DISCRETE, load_config(overrides=["algo=mappo"]).algo)
    first_layer = lambda p, part: p["params"][part]["base"]["fc0"]["kernel"].shape[0]
    params, plain = with_id.init(jax.random.PRNGKey(0)), without.init(jax.random.PRNGKey(0))
    assert first_layer(params, "actor") == 6 and first_layer(plain, "actor") == 6 + 3
    assert first_layer(params, "critic") == 5 + 6 and first_layer(plain, "critic") == 5 + 6 + 3
