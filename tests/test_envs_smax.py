"""SMAX adapter: spec, auto-reset, episode statistics and map registry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_mat.envs import AutoReset, known_envs, known_smax_maps, make_env
from jax_mat.envs.smax import SmaxEnv

EXPECTED_MAPS = (
    "3m", "2s3z", "3s5z", "25m", "5m_vs_6m", "8m", "10m_vs_11m", "27m_vs_30m",
    "3s5z_vs_3s6z", "3s_vs_5z", "6h_vs_8z", "smacv2_5_units", "smacv2_10_units", "smacv2_20_units",
)
N_ENVS, N_STEPS = 8, 120
STOP = 4


def _random_valid_actions(key, avail):
    """``avail [..., N, A]`` -> uniformly sampled available actions ``[..., N]`` int32."""
    logits = jnp.where(avail > 0, 0.0, -jnp.inf)
    return jax.random.categorical(key, logits).astype(jnp.int32)


@pytest.fixture(scope="module")
def env():
    """The SMAX adapter under AutoReset alone (upstream MAT's agent features are tested further down)."""
    return make_env("smax", map_name="3m", obs_agent_id=False, obs_last_action=False)


@pytest.fixture(scope="module")
def batched(env):
    """Jitted ``reset``/``step`` vmapped over ``N_ENVS`` envs."""
    return jax.jit(jax.vmap(env.reset)), jax.jit(jax.vmap(env.step))


@pytest.fixture(scope="module")
def rollout(env, batched):
    """A jitted ``lax.scan`` of ``N_STEPS`` vmapped steps with random valid actions.

    Returns numpy arrays: the first timestep, whether each chosen action was
    available, and the timesteps the actions produced (leading axes ``[T, E]``).
    """
    reset, _ = batched

    @jax.jit
    def run(state, timestep, key):
        def body(carry, step_key):
            state, timestep = carry
            action_key, env_key = jax.random.split(step_key)
            actions = _random_valid_actions(action_key, timestep.avail)
            chosen_avail = jnp.take_along_axis(timestep.avail, actions[..., None], axis=-1)[..., 0]
            state, timestep = jax.vmap(env.step)(jax.random.split(env_key, N_ENVS), state, actions)
            return (state, timestep), (chosen_avail, timestep)

        _, outputs = jax.lax.scan(body, (state, timestep), jax.random.split(key, N_STEPS))
        return outputs

    reset_key, key = jax.random.split(jax.random.PRNGKey(0))
    state, first = reset(jax.random.split(reset_key, N_ENVS))
    chosen_avail, timesteps = run(state, first, key)
    return jax.tree.map(np.asarray, (first, chosen_avail, timesteps))


def test_known_maps_and_specs():
    assert set(EXPECTED_MAPS) <= set(known_smax_maps())
    assert "smax" in known_envs()
    for name in EXPECTED_MAPS:
        spec = SmaxEnv(name).spec
        assert spec.discrete and spec.max_episode_steps == 100
        assert spec.n_agents >= 3 and spec.action_dim > 5
    spec_3m = SmaxEnv("3m").spec
    assert (spec_3m.n_agents, spec_3m.obs_dim, spec_3m.state_dim, spec_3m.action_dim) == (3, 75, 73, 8)
    spec_3s5z = SmaxEnv("3s5z").spec
    assert (spec_3s5z.n_agents, spec_3s5z.obs_dim, spec_3s5z.state_dim, spec_3s5z.action_dim) == (8, 205, 193, 13)


def test_unknown_names_raise_value_error():
    with pytest.raises(ValueError, match=r"unknown SMAX map 'MMM3'; known: 3m, 2s3z, .*smacv2_20_units"):
        make_env("smax", map_name="MMM3")
    with pytest.raises(ValueError, match=r"no medivac.*env=smac"):
        make_env("smax", map_name="MMM2")
    with pytest.raises(ValueError, match=r"unknown environment 'starcraft'; known: .*smax"):
        make_env("starcraft")
    with pytest.raises(ValueError, match=r"map_name"):
        make_env("smax")
    with pytest.raises(ValueError, match=r"discrete"):
        SmaxEnv("3m", action_type="continuous")


def test_reset_matches_spec_on_3s5z():
    env = make_env("smax", map_name="3s5z")
    _, ts = jax.jit(env.reset)(jax.random.PRNGKey(1))
    spec = env.spec
    assert ts.obs.shape == (spec.n_agents, spec.obs_dim)
    assert ts.world_state.shape == (spec.state_dim,)
    assert ts.avail.shape == (spec.n_agents, spec.action_dim)
    assert np.all(np.asarray(ts.active) == 1.0)


def test_shapes_and_dtypes(env, rollout):
    first, _, ts = rollout
    n, spec = N_ENVS, env.spec
    expected = {
        "obs": ((n, spec.n_agents, spec.obs_dim), np.float32),
        "world_state": ((n, spec.state_dim), np.float32),
        "avail": ((n, spec.n_agents, spec.action_dim), np.float32),
        "reward": ((n, spec.n_agents), np.float32),
        "done": ((n,), np.bool_),
        "truncated": ((n,), np.bool_),
        "active": ((n, spec.n_agents), np.float32),
        "episode_return": ((n,), np.float32),
        "episode_length": ((n,), np.int32),
        "won": ((n,), np.bool_),
    }
    for field, (shape, dtype) in expected.items():
        for batch, leading in ((first, ()), (ts, (N_STEPS,))):
            value = getattr(batch, field)
            assert value.shape == leading + shape, field
            assert value.dtype == dtype, field
    assert not first.done.any() and np.all(first.episode_length == 0)
    assert np.all(np.isfinite(ts.obs)) and np.all(np.isfinite(ts.world_state))


def test_avail_and_active(rollout):
    _, chosen_avail, ts = rollout
    assert np.all(chosen_avail == 1.0)
    assert set(np.unique(ts.avail)) <= {0.0, 1.0}
    assert np.all(ts.avail.sum(-1) >= 1)
    dead = ts.active == 0.0
    assert dead.any(), "no agent died in the rollout"
    stop_only = np.eye(ts.avail.shape[-1], dtype=np.float32)[STOP]
    assert np.all(ts.avail[dead] == stop_only)
    assert np.all(ts.obs[dead] == 0.0)
    assert np.all(ts.reward == ts.reward[..., :1]), "SMAX reward is shared"


def test_episode_statistics_are_exact(rollout):
    _, _, ts = rollout
    done = ts.done
    assert done.any(axis=0).all(), "every env should finish an episode within 120 steps"
    running_return = np.zeros(N_ENVS)
    running_length = np.zeros(N_ENVS, np.int64)
    n_episodes = 0
    for t in range(N_STEPS):
        running_return += ts.reward[t, :, 0].astype(np.float64)
        running_length += 1
        np.testing.assert_allclose(ts.episode_return[t], running_return, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(ts.episode_length[t], running_length)
        for e in np.flatnonzero(done[t]):
            n_episodes += 1
            assert 1 <= ts.episode_length[t, e] <= 100
            assert ts.episode_return[t, e] >= 0.0
            if ts.won[t, e]:
                assert ts.episode_return[t, e] >= 1.0 and not ts.truncated[t, e]
            if ts.truncated[t, e]:
                assert ts.episode_length[t, e] == 100
            assert np.all(ts.active[t, e] == 1.0), "after done the obs belong to the new episode"
        running_return[done[t]] = 0.0
        running_length[done[t]] = 0
    assert n_episodes >= N_ENVS
    assert running_length.max() <= 100
    assert not ts.won[~done].any() and not ts.truncated[~done].any()
    rewards = ts.reward[..., 0]
    assert np.all(rewards >= 0.0) and np.all(rewards[~ts.won] < 1.0 + 1e-6)


def _avals(tree):
    return [(x.shape, x.dtype, x.weak_type) for x in jax.tree.leaves(tree)]


def _with_smax_state(state, **fields):
    """Replaces fields of the JaxMARL SMAX state inside an ``AutoResetState`` batch."""
    inner = state.env_state.state.replace(**fields)
    return state.replace(env_state=state.env_state.replace(state=inner))


def test_forced_win_time_limit_and_death(env, batched):
    """Crafted states: env 0 wins, env 1 times out, env 2 has a dead agent."""
    assert isinstance(env, AutoReset)
    reset, step = batched
    state, _ = reset(jax.random.split(jax.random.PRNGKey(2), N_ENVS))
    smax = state.env_state.state
    n = env.spec.n_agents
    # env 0: every enemy has almost no health and stands 1.0 to the right of an ally.
    positions = smax.unit_positions.at[0, n:].set(smax.unit_positions[0, :n] + jnp.array([1.0, 0.0]))
    health = smax.unit_health.at[0, n:].set(1e-3)
    # env 1: the last step before the time limit, teams far apart (no fighting).
    step_count = smax.step.at[1].set(env.spec.max_episode_steps - 1)
    # env 2: ally 0 is dead.
    health = health.at[2, 0].set(0.0)
    alive = smax.unit_alive.at[2, 0].set(False)
    state = _with_smax_state(state, unit_positions=positions, unit_health=health, step=step_count, unit_alive=alive)
    actions = jnp.full((N_ENVS, n), STOP, jnp.int32).at[0].set(5 + jnp.arange(n, dtype=jnp.int32))

    next_state, ts = step(jax.random.split(jax.random.PRNGKey(3), N_ENVS), state, actions)
    assert _avals(next_state) == _avals(state), "step must keep the state's types (else jit recompiles)"
    ts = jax.tree.map(lambda x: np.asarray(x)[:3], ts)

    np.testing.assert_array_equal(ts.done, [True, True, False])
    np.testing.assert_array_equal(ts.won, [True, False, False])
    np.testing.assert_array_equal(ts.truncated, [False, True, False])
    assert ts.reward[0, 0] >= 1.0 and ts.episode_return[0] >= 1.0
    np.testing.assert_array_equal(ts.episode_length, [1, 1, 1])
    np.testing.assert_array_equal(np.asarray(next_state.episode_length)[:3], [0, 0, 1])
    np.testing.assert_array_equal(np.asarray(next_state.env_state.state.step)[:3], [0, 0, 1])
    np.testing.assert_array_equal(ts.active[:2], 1.0)
    np.testing.assert_array_equal(ts.active[2], [0.0] + [1.0] * (n - 1))
    assert np.all(ts.obs[2, 0] == 0.0)
    np.testing.assert_array_equal(ts.avail[2, 0], np.eye(env.spec.action_dim)[STOP])


# --- SMAC fidelity: time limits and upstream MAT's agent features ------------------------------- #

def test_time_limit_presets():
    from jax_mat.envs.smax import SMAC_EPISODE_LIMITS, time_limit_steps

    # SMAC's limits in SMAC steps of 8 game loops; a SMAX step is 0.5 s at 22.4 loops/s = 11.2 loops.
    assert time_limit_steps("3s5z", "smac") == 108  # ceil(150 * 8 / 11.2) = ceil(107.14)
    assert time_limit_steps("3s_vs_5z", "smac") == 179
    assert time_limit_steps("5m_vs_6m", "smac") == 50
    assert all(time_limit_steps(m, "smac") * 11.2 >= limit * 8 for m, limit in SMAC_EPISODE_LIMITS.items())
    assert time_limit_steps("smacv2_5_units", "smac") == 100  # no SMAC namesake: JaxMARL's limit
    assert time_limit_steps("3s5z", "jaxmarl") == 100
    assert time_limit_steps("3s5z", "250") == 250
    for bad in ("smac2", "0", "-3", "1.5"):
        with pytest.raises(ValueError, match="env.time_limit must be a preset"):
            time_limit_steps("3s5z", bad)


def test_episodes_end_at_the_time_limit():
    env = make_env("smax", map_name="3m", time_limit="7")
    assert env.spec.max_episode_steps == 7
    state, ts = jax.jit(env.reset)(jax.random.PRNGKey(0))
    step = jax.jit(env.step)
    stop = jnp.full((3,), STOP, jnp.int32)  # both teams stand still (the enemy may still shoot)
    for t in range(1, 8):
        state, ts = step(jax.random.PRNGKey(t), state, stop)
        if bool(ts.done):
            break
    assert bool(ts.done) and int(ts.episode_length) <= 7
    if int(ts.episode_length) == 7 and bool(ts.truncated):
        assert not bool(ts.won)


def test_agent_features_follow_upstream_layout():
    """obs = [SMAX obs, seen allies' last actions (N-1)*A, own last action A, one-hot id N]."""
    env = make_env("smax", map_name="3m")
    n, a, base = 3, 8, 75
    assert env.spec.obs_dim == base + (n - 1) * a + a + n and env.spec.agent_id_in_obs
    state, ts = jax.jit(env.reset)(jax.random.PRNGKey(0))
    obs = np.asarray(ts.obs)
    np.testing.assert_array_equal(obs[:, base:base + n * a], 0.0)  # no action taken yet
    np.testing.assert_array_equal(obs[:, -n:], np.eye(n))
    actions = jnp.array([1, 4, 5], jnp.int32)
    state, ts = jax.jit(env.step)(jax.random.PRNGKey(1), state, actions)
    obs = np.asarray(ts.obs)
    raw = env.unwrapped
    seen = np.asarray(raw.visibility(state.env_state.env_state))
    one_hot = np.eye(a)[np.asarray(actions)]
    alive = np.asarray(ts.active)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        allies = obs[i, base:base + (n - 1) * a].reshape(n - 1, a)
        np.testing.assert_array_equal(allies, one_hot[others] * seen[i, others][:, None])
        np.testing.assert_array_equal(obs[i, base + (n - 1) * a:base + n * a], one_hot[i] * alive[i])
    np.testing.assert_array_equal(obs[:, -n:], np.eye(n))
    smax = raw.env  # the SMAX observation itself is untouched (AutoReset steps with the first half of its key)
    step_key, _ = jax.random.split(jax.random.PRNGKey(1))
    _, smax_ts = smax.step(step_key, smax.reset(jax.random.PRNGKey(0))[0], actions)
    np.testing.assert_allclose(obs[:, :base], np.asarray(smax_ts.obs), atol=1e-6)


def test_ally_visibility_is_jaxmarl_sight():
    raw = SmaxEnv("3s5z")
    state, _ = raw.reset(jax.random.PRNGKey(3))
    seen = np.asarray(raw.ally_visibility(state))
    inner = state.state
    pos = np.asarray(inner.unit_positions)[:8]
    sight = np.asarray(raw.jaxmarl_env.unit_type_sight_ranges)[np.asarray(inner.unit_types)[:8].astype(int)]
    expected = (np.linalg.norm(pos[:, None] - pos[None], axis=-1) < sight[:, None]).astype(np.float32)
    np.testing.assert_array_equal(seen, expected)


def test_agent_features_can_be_turned_off():
    env = make_env("smax", map_name="3m", obs_agent_id=False, obs_last_action=False)
    assert env.spec.obs_dim == 75 and not env.spec.agent_id_in_obs
    only_id = make_env("smax", map_name="3m", obs_last_action=False)
    assert only_id.spec.obs_dim == 78
