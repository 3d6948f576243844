"""What one update feeds the learner: the rollout's alignment of observations with what followed them, and
the truncated transitions that proper time limits drop from the loss. A counting environment and a
constant policy make every expected array writable by hand."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jax_mat import config as config_lib
from jax_mat.envs.base import EnvSpec, MultiAgentEnv, Timestep
from jax_mat.training import rollout
from jax_mat.training.runner import Trainer

N_AGENTS = 2
EPISODE = 3  # every episode ends after 3 steps ...
TIME_LIMIT_EVERY = 2  # ... and every second one by its time limit (truncated)


class CountingEnv(MultiAgentEnv):
    """State ``[2]`` int32: (steps into the episode, episodes finished). Each agent observes the step count;
    the reward of a step is the step count it reaches; an episode ends after ``EPISODE`` steps, auto-reset."""

    spec = EnvSpec(n_agents=N_AGENTS, obs_dim=1, state_dim=1, action_dim=2, discrete=True,
                   max_episode_steps=EPISODE)

    def _timestep(self, t, reward, done, truncated):
        return Timestep(
            obs=jnp.full((N_AGENTS, 1), t, jnp.float32), world_state=jnp.full((1,), t, jnp.float32),
            avail=jnp.ones((N_AGENTS, 2), jnp.float32), reward=jnp.full((N_AGENTS,), reward, jnp.float32),
            done=done, truncated=truncated, active=jnp.ones((N_AGENTS,), jnp.float32),
            episode_return=jnp.zeros((), jnp.float32), episode_length=jnp.zeros((), jnp.int32),
            won=jnp.zeros((), bool))

    def reset(self, key):
        return jnp.zeros((2,), jnp.int32), self._timestep(0, 0.0, jnp.bool_(False), jnp.bool_(False))

    def step(self, key, state, actions):
        reached = state[0] + 1
        done = reached == EPISODE
        truncated = done & ((state[1] + 1) % TIME_LIMIT_EVERY == 0)
        state = jnp.stack([jnp.where(done, 0, reached), state[1] + done])
        return state, self._timestep(state[0], reached.astype(jnp.float32), done, truncated)


class ConstantPolicy:
    """Always action 0 with log-probability 0; the value of an observation is its step count."""

    spec = CountingEnv.spec
    param_groups = ()

    def init(self, key):
        return {"w": jnp.zeros(())}

    def act(self, params, obs, avail, key, deterministic=False, world_state=None):
        return jnp.zeros(obs.shape[:2], jnp.int32), jnp.zeros((*obs.shape[:2], 1)), obs[..., 0]

    def value(self, params, obs, world_state=None):
        return obs[..., 0]


def test_collect_pairs_each_observation_with_the_reward_and_done_that_followed_it():
    env, n_envs, n_steps = CountingEnv(), 2, 7
    env_state, timestep = env.reset_batch(jax.random.PRNGKey(0), n_envs)
    (_, last), traj = jax.jit(lambda s, ts: rollout.collect(env, ConstantPolicy(), {}, s, ts, jax.random.PRNGKey(1),
                                                            n_steps))(env_state, timestep)
    steps = np.arange(n_steps) % EPISODE  # the step count each observation shows
    np.testing.assert_array_equal(traj.obs[:, 0, 0, 0], steps)
    np.testing.assert_array_equal(traj.values[:, 0, 0], steps)  # the value of that observation
    np.testing.assert_array_equal(traj.reward[:, 0, 0], steps + 1)  # the step taken from it reached steps + 1
    np.testing.assert_array_equal(traj.done[:, 0], steps + 1 == EPISODE)
    ends = np.flatnonzero(steps + 1 == EPISODE)
    np.testing.assert_array_equal(traj.truncated[:, 0], np.isin(np.arange(n_steps), ends[1::TIME_LIMIT_EVERY]))
    assert int(last.obs[0, 0, 0]) == n_steps % EPISODE  # the observation the next rollout starts from


class RecordingLearner:
    """Keeps the rows the trainer hands over, and changes nothing."""

    rows = None

    def init(self, params):
        return ()

    def normalize_advantages(self, advantages, active):
        return advantages

    def update(self, params, opt_state, vn, rows, key):
        RecordingLearner.rows = rows
        return params, opt_state, vn, {}


class RecordingTrainer(Trainer):
    @property
    def learner(self):
        return RecordingLearner()


def _rows_of_one_update(proper_time_limits: bool, n_steps: int):
    cfg = config_lib.read_config(None, ["train.n_envs=1", f"train.episode_length={n_steps}",
                                        f"train.total_steps={n_steps}", "algo.use_valuenorm=false",
                                        f"algo.use_proper_time_limits={str(proper_time_limits).lower()}"])
    trainer = RecordingTrainer(cfg, CountingEnv(), ConstantPolicy())
    trainer.update(trainer.init(jax.random.PRNGKey(0)))
    return jax.device_get(RecordingLearner.rows)


def test_proper_time_limits_drop_truncated_transitions_from_the_loss():
    n_steps = 12
    steps = np.arange(n_steps) % EPISODE
    ends = np.flatnonzero(steps + 1 == EPISODE)
    truncated = np.isin(np.arange(n_steps), ends[1::TIME_LIMIT_EVERY])
    assert truncated.sum() == 2 and (steps + 1 == EPISODE).sum() == 4
    kept = _rows_of_one_update(True, n_steps)
    np.testing.assert_array_equal(kept["active"], np.where(truncated, 0.0, 1.0)[:, None].repeat(N_AGENTS, 1))
    # Without proper time limits a time limit is terminal, and every transition trains.
    np.testing.assert_array_equal(_rows_of_one_update(False, n_steps)["active"], np.ones((n_steps, N_AGENTS)))


def test_proper_time_limits_bootstrap_through_truncations_and_not_through_terminations():
    """gamma = lambda = 1. A terminated episode's returns are its rewards to the end. In a truncated one the
    last transition's next observation was lost to the reset, so its return is its own value and the steps
    before it bootstrap from that value; without proper time limits the truncation is a termination."""
    n_steps = 6
    for proper in (True, False):
        cfg = config_lib.read_config(None, ["train.n_envs=1", f"train.episode_length={n_steps}",
                                            f"train.total_steps={n_steps}", "algo.use_valuenorm=false",
                                            f"algo.use_proper_time_limits={str(proper).lower()}"])
        cfg = dataclasses.replace(cfg, algo=dataclasses.replace(cfg.algo, gamma=1.0, gae_lambda=1.0))
        trainer = RecordingTrainer(cfg, CountingEnv(), ConstantPolicy())
        trainer.update(trainer.init(jax.random.PRNGKey(0)))
        returns = np.asarray(RecordingLearner.rows["returns"])[:, 0]
        # Episode 1 (steps 0-2, rewards 1, 2, 3) terminates; episode 2 (the same) ends by its time limit, its
        # last observation showing step count 2, which is its value.
        terminated = [1 + 2 + 3, 2 + 3, 3]
        second = [1 + 2 + 2, 2 + 2, 2] if proper else terminated
        np.testing.assert_allclose(returns, terminated + second, err_msg=f"proper time limits: {proper}")
