"""Multi-map SMAX: padding masks, equality with the single-map environments, config errors, a tiny run."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_mat import config as config_lib
from jax_mat import train
from jax_mat.envs import make_env
from jax_mat.envs.smax import SmaxEnv
from jax_mat.envs.smax_multi import STOP, SmaxMultiEnv
from jax_mat.training import rollout
from tests.run_dirs import training_records

MAPS = ("3m", "2s3z")
PAD_ALLIES, PAD_ENEMIES = 5, 6  # 3m padded with 2 agents and 3 enemies
N_ENVS, N_STEPS = 4, 110  # past the 100-step limit: every environment auto-resets at least once
UNIT, OWN, STATE_UNIT = 13, 10, 12  # jaxmarl 0.2.0: observed-unit, own and world-state features per unit
BARE = dict(obs_agent_id=False, obs_last_action=False)  # SMAX's own observations, without upstream's features
# 4 envs (2 per map) x 8 steps per update: the tiny run, as tests/test_training.py's TINY.
TINY_MULTI = ["env=smax_multi", "env.maps=[3m,2s3z]", "train.n_envs=4", "train.episode_length=8",
              "algo.ppo_epochs=2", "algo.num_mini_batch=2", "train.eval_episodes=2", "train.checkpoint_every=1",
              "algo.n_embd=16"]


def test_spec_pads_to_the_largest_map_or_to_the_sizes_given():
    spec = SmaxMultiEnv(MAPS, **BARE).spec
    assert (spec.n_agents, spec.obs_dim, spec.state_dim, spec.action_dim) == (5, 127, 121, 10)
    # 2s3z is the largest: no padding needed for it.
    assert SmaxMultiEnv(MAPS, time_limit="jaxmarl", **BARE).spec == SmaxEnv("2s3z").spec
    # Upstream's agent features come after the padding: the one-hot id of 5 agents, the last actions of 10.
    featured = SmaxMultiEnv(MAPS).spec
    assert featured.obs_dim == 127 + 5 + 10 + (5 - 1) * 10 and featured.agent_id_in_obs
    spec_8 = SmaxMultiEnv(["3m", "5m_vs_6m"], pad_allies=8, pad_enemies=8, **BARE).spec
    spec_8m = SmaxEnv("8m").spec
    assert (spec_8.n_agents, spec_8.obs_dim, spec_8.state_dim, spec_8.action_dim) == (8, 205, 193, 13)
    assert (spec_8.obs_dim, spec_8.state_dim, spec_8.action_dim) == (spec_8m.obs_dim, spec_8m.state_dim,
                                                                     spec_8m.action_dim)


@pytest.fixture(scope="module")
def lockstep():
    """3m padded to 5 agents and 6 enemies, and 3m's own SMAX environment, stepped with the same keys and actions.

    Real agents act uniformly among their available actions; where one chooses
    "stop", the padded environment is sent the (unavailable) attack on the last
    padded enemy instead, which must act as "stop". Padded agents are sent
    arbitrary actions, which must be ignored. Returns numpy ``[T + 1, E, ...]``
    timesteps of both (the first is the reset).
    """
    padded = SmaxMultiEnv(["3m"], PAD_ALLIES, PAD_ENEMIES, **BARE)
    single = make_env("smax", map_name="3m", **BARE)

    @jax.jit
    def run(key):
        reset_key, key = jax.random.split(key)
        carry = (*padded.reset_batch(reset_key, N_ENVS), *single.reset_batch(reset_key, N_ENVS))

        def body(carry, step_key):
            p_state, _, s_state, s_ts = carry
            act_key, junk_key, env_key = jax.random.split(step_key, 3)
            real = rollout.random_actions(single.spec, act_key, s_ts.avail)
            sent = jax.random.randint(junk_key, (N_ENVS, PAD_ALLIES), 0, padded.spec.action_dim)
            sent = sent.at[:, :3].set(jnp.where(real == STOP, padded.spec.action_dim - 1, real))
            p_state, p_ts = padded.step_batch(env_key, p_state, sent)
            s_state, s_ts = single.step_batch(env_key, s_state, real)
            return (p_state, p_ts, s_state, s_ts), (p_ts, s_ts)

        _, (p_seq, s_seq) = jax.lax.scan(body, carry, jax.random.split(key, N_STEPS))
        cat = lambda first, seq: jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, seq)
        return cat(carry[1], p_seq), cat(carry[3], s_seq)

    return jax.tree.map(np.asarray, run(jax.random.PRNGKey(3)))


def test_real_agents_see_and_do_what_the_single_map_env_gives(lockstep):
    m, s = lockstep
    n_a, n_e = 3, 3
    assert s.done.any(), "no episode ended: the auto-reset was not exercised"

    # Observations: real ally blocks, then real enemy blocks, then own features; zeros in between.
    allies, enemies = UNIT * (n_a - 1), UNIT * n_e
    enemy_start = UNIT * (PAD_ALLIES - 1)
    obs = m.obs[:, :, :n_a]
    assert obs.shape[-1] == UNIT * (PAD_ALLIES - 1 + PAD_ENEMIES) + OWN
    np.testing.assert_array_equal(obs[..., :allies], s.obs[..., :allies])
    np.testing.assert_array_equal(obs[..., allies:enemy_start], 0.0)
    np.testing.assert_array_equal(obs[..., enemy_start : enemy_start + enemies], s.obs[..., allies:allies + enemies])
    np.testing.assert_array_equal(obs[..., enemy_start + enemies : -OWN], 0.0)
    np.testing.assert_array_equal(obs[..., -OWN:], s.obs[..., -OWN:])

    # Actions: the real ones as in the single-map env, padded attacks never available.
    n_actions = 5 + n_e
    np.testing.assert_array_equal(m.avail[:, :, :n_a, :n_actions], s.avail)
    np.testing.assert_array_equal(m.avail[:, :, :n_a, n_actions:], 0.0)

    # Padded agents: permanently dead allies.
    np.testing.assert_array_equal(m.obs[:, :, n_a:], 0.0)
    stop_only = np.broadcast_to(np.eye(5 + PAD_ENEMIES)[STOP], m.avail[:, :, n_a:].shape)
    np.testing.assert_array_equal(m.avail[:, :, n_a:], stop_only)
    np.testing.assert_array_equal(m.active[:, :, n_a:], 0.0)
    np.testing.assert_array_equal(m.active[:, :, :n_a], s.active)

    # Transitions, rewards and episode statistics are the single-map env's (padded agents share the team reward).
    np.testing.assert_array_equal(m.reward[:, :, :n_a], s.reward)
    np.testing.assert_array_equal(m.reward[:, :, n_a:], s.reward[:, :, :1].repeat(PAD_ALLIES - n_a, axis=-1))
    for field in ("done", "truncated", "won", "episode_return", "episode_length"):
        np.testing.assert_array_equal(getattr(m, field), getattr(s, field), err_msg=field)

    # World state: real unit blocks, dead-unit blocks for the padding (team 1 for enemies), then progress.
    w_allies, w_enemies = STATE_UNIT * n_a, STATE_UNIT * n_e
    enemy_block = STATE_UNIT * PAD_ALLIES
    np.testing.assert_array_equal(m.world_state[..., :w_allies], s.world_state[..., :w_allies])
    np.testing.assert_array_equal(m.world_state[..., w_allies:enemy_block], 0.0)
    np.testing.assert_array_equal(m.world_state[..., enemy_block : enemy_block + w_enemies],
                                  s.world_state[..., w_allies : w_allies + w_enemies])
    padded_enemies = m.world_state[..., enemy_block + w_enemies : -1].reshape(*m.world_state.shape[:2], -1, STATE_UNIT)
    assert padded_enemies.shape[2] == PAD_ENEMIES - n_e
    np.testing.assert_array_equal(padded_enemies[..., :-1], 0.0)
    np.testing.assert_array_equal(padded_enemies[..., -1], 1.0)
    np.testing.assert_array_equal(m.world_state[..., -1], s.world_state[..., -1])


def test_maps_take_equal_consecutive_groups_of_environments():
    multi = SmaxMultiEnv(MAPS, **BARE)
    singles = [SmaxEnv(m) for m in MAPS]
    key = jax.random.PRNGKey(2)
    keys = jax.random.split(key, 4)
    _, ts = jax.jit(lambda k: multi.reset_batch(k, 4))(key)
    for g, env in enumerate(singles):
        _, own = jax.jit(jax.vmap(env.reset))(keys[2 * g : 2 * g + 2])
        np.testing.assert_array_equal(ts.obs[2 * g : 2 * g + 2, : env.n_allies, -OWN:], own.obs[..., -OWN:])
        np.testing.assert_array_equal(ts.active[2 * g : 2 * g + 2].sum(-1), env.n_allies)
    with pytest.raises(ValueError, match=r"\(3\) must be a multiple of the 2 maps"):
        multi.reset_batch(key, 3)


@pytest.mark.parametrize("overrides, message", [
    (["env.maps=[3m,MMM3]"], "env.maps: unknown SMAX map 'MMM3'; known: 3m, 2s3z"),
    (["env.maps=[3m,3m]"], "more than once"),
    (["env.maps=[]"], "env.maps is empty"),
    (["env.maps=[3m,5m_vs_6m]", "env.pad_enemies=5"], "map 5m_vs_6m has 6 enemies, more than env.pad_enemies=5"),
    (["env.maps=[3m,2s3z]", "env.pad_allies=4"], "map 2s3z has 5 allies, more than env.pad_allies=4"),
    (["env.maps=[3m,2s3z,8m]", "train.n_envs=32"], "train.n_envs (32) must be a multiple of the 3 maps"),
    (["env.maps=[3m,2s3z,8m]", "train.n_envs=33", "train.eval_episodes=32"],
     "train.eval_episodes (32) must be a multiple of the 3 maps"),
])
def test_bad_map_lists_are_config_errors(overrides, message):
    with pytest.raises(ValueError) as err:
        config_lib.load_config(None, ["env=smax_multi", *overrides])
    assert message in str(err.value)


def test_smax_options_of_single_maps_do_not_apply():
    with pytest.raises(ValueError, match="env.pad_allies does not apply to env.name=smax"):
        config_lib.load_config(None, ["env.pad_allies=8"])
    with pytest.raises(ValueError, match="env.map does not apply to env.name=smax_multi"):
        config_lib.load_config(None, ["env=smax_multi", "env.map=8m"])


@pytest.fixture(scope="module")
def tiny_multi_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("smax_multi") / "run"
    assert train.main([*TINY_MULTI, "train.total_steps=64", "--run-dir", str(run_dir), "--no-progress"]) == 0
    return run_dir


@pytest.mark.slow  # default-suite time on the 2-core CI machine; run by scripts/check_slow_tests.sh
def test_tiny_multi_map_training_run(tiny_multi_run, capfd):
    cfg = config_lib.config_from_file(tiny_multi_run / "config.yaml")
    assert cfg.env.maps == MAPS and cfg.run_name == "mat-smax_multi-3m+2s3z"
    lines = training_records(tiny_multi_run)
    assert [x["env_steps"] for x in lines] == [32, 64] and all(np.isfinite(x["loss/total"]) for x in lines)
    # 3m's 3 real agents of 5 and 2s3z's 5 of 5, while alive: never more than 80% of the agent slots.
    assert all(0 < x["rollout/active_fraction"] <= 0.8 for x in lines)
    results = json.loads((tiny_multi_run / "eval.json").read_text())
    assert results["episodes"] == 2 and 0.0 <= results["win_rate"] <= 1.0

    from jax_mat import evaluate
    out = tiny_multi_run / "per_map.json"
    assert evaluate.main([str(tiny_multi_run), "--episodes", "1", "--per-map", "--out", str(out)]) == 0
    per_map = json.loads(out.read_text())["per_map"]
    assert list(per_map) == list(MAPS) and all(r["episodes"] == 1 for r in per_map.values())
    assert "3m: 1 greedy episodes" in capfd.readouterr().out
