"""A numpy game behind SMAC's ``StarCraft2Env`` API that fails on cue (crash, hang, raise, NaN, bad shape).

The game: ``n_agents`` agents, each observing ``[agent index, step, seed % 97, 1]``;
every step pays a shared reward of 1; an episode is won after ``win_after``
steps (if set) or runs into ``episode_limit``. Its availability follows SMAC:
a live agent may do everything but the no-op (action 0), and ``step`` rejects
an unavailable action with SMAC's assertion.

Faults count this instance's steps since it was built (``crash_every`` = K:
``os._exit`` at the K-th step, so a worker whose environments were all built
together crashes every K pool steps). A restarted worker builds fresh instances,
so the count starts again.
"""

from __future__ import annotations

import os
import time

import numpy as np

OBS_DIM, STATE_DIM = 4, 3


class StarCraft2Env:
    """SMAC-API game with optional faults (each ``*_at``/``*_every`` is a step count, 0 = never;
    ``nan_in_reset`` puts a NaN in the first observation, only in the environment built with seed ``nan_seed``
    if that is >= 0; ``crash_on_build`` exits in the constructor)."""

    def __init__(
        self,
        map_name: str = "count",
        seed: int | None = None,
        n_agents: int = 2,
        n_enemies: int = 1,
        episode_limit: int = 7,
        win_after: int = 0,
        crash_every: int = 0,
        hang_at: int = 0,
        raise_at: int = 0,
        nan_at: int = 0,
        nan_seed: int = -1,
        bad_shape_at: int = 0,
        nan_in_reset: bool = False,
        crash_on_build: bool = False,
        obs_last_action: bool = True,  # SMAC's option, which env=smac passes; this game's observations ignore it
    ):
        if map_name != "count":
            raise ValueError(f"unknown map {map_name!r} for the faulty stand-in; known: count")
        if crash_on_build:
            os._exit(7)
        self.map_name = map_name
        self.n_agents, self.n_enemies = n_agents, n_enemies
        self.n_actions = 6 + n_enemies
        self.episode_limit = episode_limit
        self.win_after = win_after
        self.faults = dict(crash_every=crash_every, hang_at=hang_at, raise_at=raise_at, nan_at=nan_at,
                           bad_shape_at=bad_shape_at)
        self.nan_in_reset = nan_in_reset
        self.nan_seed = nan_seed
        self._seed = 0 if seed is None else int(seed)
        self._t = 0
        self._steps_since_built = 0

    def get_env_info(self) -> dict:
        return {"state_shape": STATE_DIM, "obs_shape": OBS_DIM, "n_actions": self.n_actions,
                "n_agents": self.n_agents, "episode_limit": self.episode_limit}

    def reset(self):
        self._t = 0
        return self.get_obs(), self.get_state()

    def step(self, actions):
        avail = self.get_avail_actions()
        for agent, action in enumerate(actions):
            assert avail[agent][action] == 1, f"Agent {agent} cannot perform action {action}"
        self._steps_since_built += 1
        n = self._steps_since_built
        f = self.faults
        if f["crash_every"] and n % f["crash_every"] == 0:
            os._exit(3)
        if f["hang_at"] and n == f["hang_at"]:
            time.sleep(3600)
        if f["raise_at"] and n == f["raise_at"]:
            raise ConnectionError("simulated lost connection to the game")
        self._t += 1
        won = bool(self.win_after) and self._t >= self.win_after
        terminated = won or self._t >= self.episode_limit
        return 1.0, terminated, {"battle_won": won}

    def get_obs(self):
        n = self._steps_since_built
        size = OBS_DIM + 1 if self.faults["bad_shape_at"] and n == self.faults["bad_shape_at"] else OBS_DIM
        obs = [np.array([i, self._t, self._seed % 97, 1.0][:size] + [0.0] * (size - OBS_DIM), np.float32)
               for i in range(self.n_agents)]
        nan_here = self.nan_seed < 0 or self.nan_seed == self._seed
        if nan_here and ((self.faults["nan_at"] and n == self.faults["nan_at"]) or (self.nan_in_reset and n == 0)):
            obs[-1][1] = np.nan
        return obs

    def get_state(self):
        return np.array([self._t, self._seed, 0.0], np.float32)

    def get_avail_actions(self):
        return [[0] + [1] * (self.n_actions - 1) for _ in range(self.n_agents)]

    def close(self):
        pass


# Presets for the command line, which names a constructor but passes no options (env.host_env=MODULE:NAME).
def crashing_every_4(**options) -> StarCraft2Env:
    """``os._exit`` at every 4th step of a worker's environments."""
    return StarCraft2Env(crash_every=4, **options)


def nan_in_reset(**options) -> StarCraft2Env:
    """A NaN in the first observation."""
    return StarCraft2Env(nan_in_reset=True, **options)


def hanging_at_6(**options) -> StarCraft2Env:
    """Stops answering at the 6th step of a worker's environments (a hung StarCraft II)."""
    return StarCraft2Env(hang_at=6, **options)
