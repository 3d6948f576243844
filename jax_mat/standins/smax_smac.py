"""SMAC's ``StarCraft2Env`` API over JaxMARL's SMAX battle, stepped on the host.

A stand-in for the real StarCraft II in tests and in the bridge's learning
check: the same method names and return types as ``smac.env.StarCraft2Env``
(``get_env_info``, ``reset``, ``step -> (reward, terminated, info)`` with
``info["battle_won"]``, ``get_obs`` as a list of arrays, ``get_state``,
``get_avail_actions`` as lists, ``close``), one battle per object, with
``jax_mat.envs.smax.SmaxEnv`` computing it (each step one small jitted call).

What differs from StarCraft II, on purpose or by SMAX's design: the battle
(SMAX's simplified units and heuristic enemy), the observation and state
features (SMAX's ``[O]`` per agent and ``SmaxEnv.world_state``), the reward
(SMAX's: enemy damage as a fraction of its health plus 1 for a win) and the
episode limit (SMAX's 100 steps for every map).

What it translates to look like SMAC:

* actions, SMAC order -> SMAX order: 0 no-op and 1 stop -> SMAX 4 (stop);
  2 north -> 0, 3 south -> 2, 4 east -> 1, 5 west -> 3; ``6 + j`` attack -> ``5 + j``;
* availability, so there is one more action than in SMAX: a dead agent has
  only the no-op, a live one never has it.
* ``step`` asserts that every action is available, as SMAC does.

Jitted functions are compiled once per process and map and shared by all
instances (a worker holds several environments).
"""

from __future__ import annotations

from typing import Any

import numpy as np

# SMAC action -> SMAX action, before the attacks (SMAC 6 + j -> SMAX 5 + j).
_SMAC_TO_SMAX_MOVES = (4, 4, 0, 2, 1, 3)
# The SMAX moves (north, east, south, west) that SMAC's 2-5 (north, south, east, west) are.
_SMAX_MOVES_IN_SMAC_ORDER = (0, 2, 1, 3)
_SMAX_STOP, _SMAX_FIRST_ATTACK = 4, 5

_COMPILED: dict[str, Any] = {}  # map name -> _Battle, per process


def known_maps() -> tuple[str, ...]:
    """The SMAX maps this stand-in can play (imports JaxMARL: seconds)."""
    from jax_mat.envs.smax import known_smax_maps

    return known_smax_maps()


class _Battle:
    """The jitted reset and step of one SMAX map, returning flat float32 vectors (one host transfer each)."""

    def __init__(self, map_name: str):
        import jax
        import jax.numpy as jnp

        from jax_mat.envs.smax import SmaxEnv

        self.env = env = SmaxEnv(map_name)
        self.n_agents, self.n_enemies = env.n_allies, env.n_enemies
        self.obs_dim, self.state_dim = env.spec.obs_dim, env.spec.state_dim
        self.smax_actions = env.spec.action_dim
        self.episode_limit = env.spec.max_episode_steps

        def strong(tree):
            return jax.tree.map(lambda x: jnp.asarray(x, dtype=x.dtype), tree)

        def flat(ts):
            return jnp.concatenate([
                ts.obs.ravel(), ts.world_state, ts.avail.ravel(), ts.active,
                jnp.stack([ts.reward[0], ts.done.astype(jnp.float32), ts.won.astype(jnp.float32)]),
            ]).astype(jnp.float32)  # fmt: skip

        def reset(key):
            key, reset_key = jax.random.split(key)
            state, ts = env.reset(reset_key)
            return key, strong(state), flat(ts)

        def step(key, state, actions):
            key, step_key = jax.random.split(key)
            state, ts = env.step(step_key, state, actions)
            return key, strong(state), flat(ts)

        # (key, ...) -> (next key, battle state, flat timestep): one dispatch and one transfer per call.
        self.reset = jax.jit(reset)
        self.step = jax.jit(step)
        self.key = lambda seed: jax.random.PRNGKey(seed)

    def unpack(self, flat: np.ndarray) -> dict[str, Any]:
        n, o, s, a = self.n_agents, self.obs_dim, self.state_dim, self.smax_actions
        cuts = np.cumsum([n * o, s, n * a, n])
        obs, state, avail, alive, tail = np.split(flat, cuts)
        return {
            "obs": obs.reshape(n, o), "state": state, "avail": avail.reshape(n, a), "alive": alive > 0.5,
            "reward": float(tail[0]), "done": bool(tail[1] > 0.5), "won": bool(tail[2] > 0.5),
        }  # fmt: skip


class StarCraft2Env:
    """``smac.env.StarCraft2Env``'s interface over one SMAX battle (see the module docstring)."""

    def __init__(self, map_name: str = "8m", seed: int | None = None, **smac_options: Any):
        """``smac_options``: SMAC's other keyword arguments are accepted and ignored (this is not StarCraft II)."""
        if map_name not in known_maps():
            raise ValueError(f"unknown map {map_name!r} for the SMAX stand-in; known: {', '.join(known_maps())}")
        if map_name not in _COMPILED:
            _COMPILED[map_name] = _Battle(map_name)
        self._battle = _COMPILED[map_name]
        self.map_name = map_name
        self.n_agents = self._battle.n_agents
        self.n_enemies = self._battle.n_enemies
        self.n_actions = len(_SMAC_TO_SMAX_MOVES) + self.n_enemies
        self.episode_limit = self._battle.episode_limit
        self._key = self._battle.key(0 if seed is None else int(seed))
        self._smac_to_smax = np.array(_SMAC_TO_SMAX_MOVES + tuple(
            _SMAX_FIRST_ATTACK + j for j in range(self.n_enemies)), np.int32)
        self._state = None
        self._now: dict[str, Any] = {}
        self._avail = np.zeros((self.n_agents, self.n_actions), np.int64)
        self.battles_won = 0
        self.battles_game = 0

    # SMAC's size queries
    def get_env_info(self) -> dict[str, int]:
        return {"state_shape": self.get_state_size(), "obs_shape": self.get_obs_size(),
                "n_actions": self.get_total_actions(), "n_agents": self.n_agents,
                "episode_limit": self.episode_limit}

    def get_obs_size(self) -> int:
        return self._battle.obs_dim

    def get_state_size(self) -> int:
        return self._battle.state_dim

    def get_total_actions(self) -> int:
        return self.n_actions

    # an episode
    def reset(self):
        self._key, self._state, flat = self._battle.reset(self._key)
        self._observe(flat)
        return self.get_obs(), self.get_state()

    def step(self, actions):
        actions = np.asarray(actions, np.int64)
        for agent, action in enumerate(actions):
            assert self._avail[agent, action] == 1, f"Agent {agent} cannot perform action {action}"
        smax_actions = self._smac_to_smax[actions]
        self._key, self._state, flat = self._battle.step(self._key, self._state, smax_actions)
        self._observe(flat)
        terminated, won = self._now["done"], self._now["won"]
        if terminated:
            self.battles_game += 1
            self.battles_won += int(won)
        alive = self._now["alive"]
        info = {"battle_won": won, "dead_allies": int((~alive).sum())}
        return self._now["reward"], terminated, info

    # what the agents see
    def get_obs(self) -> list[np.ndarray]:
        return [self.get_obs_agent(i) for i in range(self.n_agents)]

    def get_obs_agent(self, agent_id: int) -> np.ndarray:
        return self._now["obs"][agent_id].copy()

    def get_state(self) -> np.ndarray:
        return self._now["state"].copy()

    def get_avail_actions(self) -> list[list[int]]:
        return self._avail.tolist()

    def get_avail_agent_actions(self, agent_id: int) -> list[int]:
        return self._avail[agent_id].tolist()

    def _observe(self, flat) -> None:
        """Unpacks a battle step and translates SMAX's availability into SMAC's ``[N, 6 + n_enemies]``."""
        self._now = now = self._battle.unpack(np.asarray(flat))
        smax, alive = now["avail"] > 0, now["alive"]
        avail = np.zeros((self.n_agents, self.n_actions), np.int64)
        avail[:, 0] = ~alive
        avail[:, 1] = alive
        avail[:, 2:6] = smax[:, list(_SMAX_MOVES_IN_SMAC_ORDER)] & alive[:, None]
        avail[:, 6:] = smax[:, _SMAX_FIRST_ATTACK:] & alive[:, None]
        self._avail = avail

    def close(self) -> None:
        self._state = None

    def seed(self) -> int:
        return int(np.asarray(self._key)[-1])
